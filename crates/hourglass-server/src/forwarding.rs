//! Forwarded webhooks (DESIGN.md §3.5): what Meta sends, passed on to the business's apps,
//! one item per request, signed with each subscription's secret over the exact bytes, at
//! least once, in order within a thread, retried with backoff for up to 7 days, then kept
//! as a dead letter until replayed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hourglass_core::Instant;
use hourglass_store::{ForwardOutcome, ForwardRow};

use crate::app::AppState;
use crate::time::now;

/// How long one delivery attempt may take.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
const LEASE_SECONDS: i64 = 30;

/// When attempt `attempts` failed: 1 s, doubling, at most an hour; dead once it has
/// been failing for `retry_for_seconds` (7 days by default, as Meta retries its own).
pub fn outcome_of_failure(
    attempts: i64,
    created_at: Instant,
    at: Instant,
    retry_for_seconds: i64,
    error: String,
) -> ForwardOutcome {
    if created_at.seconds_until(at) >= retry_for_seconds {
        return ForwardOutcome::Dead {
            error: format!(
                "still failing after {} and {attempts} attempt(s): {error}",
                crate::time::describe_duration(retry_for_seconds)
            ),
        };
    }
    let delay = 2i64
        .saturating_pow(attempts.clamp(1, 20) as u32 - 1)
        .min(3600);
    ForwardOutcome::Retry {
        next_attempt_at: at.plus_seconds(delay),
        error,
    }
}

/// Whether any subscription exists, so that ingestion builds payloads only when someone
/// will read them. Refreshed by the worker, and at once on a change in this process.
#[derive(Default)]
pub struct ForwardingSwitch {
    enabled: AtomicBool,
    wake: tokio::sync::Notify,
}

impl ForwardingSwitch {
    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    pub fn set(&self, enabled: bool) {
        self.enabled.store(enabled, Ordering::Relaxed);
    }

    /// Something may be due now.
    pub fn wake(&self) {
        self.wake.notify_one();
    }
}

/// Runs the forwarding worker until the runtime stops.
pub async fn run(state: AppState) {
    let client = reqwest::Client::builder()
        .timeout(ATTEMPT_TIMEOUT)
        .build()
        .expect("an HTTP client builds with default settings");
    let switch = state.forwarding();
    let mut last_refresh = None::<tokio::time::Instant>;
    loop {
        // Another process may have added or removed subscriptions.
        if last_refresh.is_none_or(|t| t.elapsed() > Duration::from_secs(5)) {
            match state.store().forwarding().subscriptions().await {
                Ok(subscriptions) => switch.set(!subscriptions.is_empty()),
                Err(error) => tracing::warn!(%error, "forwarding: could not read subscriptions"),
            }
            last_refresh = Some(tokio::time::Instant::now());
        }
        let claimed = if switch.enabled() {
            state
                .store()
                .forwarding()
                .claim_forwards(now(), LEASE_SECONDS, 64)
                .await
        } else {
            Ok(Vec::new())
        };
        match claimed {
            Ok(rows) if !rows.is_empty() => {
                let subscriptions = match state.store().forwarding().subscriptions().await {
                    Ok(s) => s,
                    Err(error) => {
                        tracing::warn!(%error, "forwarding: could not read subscriptions");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                };
                let mut attempts = tokio::task::JoinSet::new();
                for row in rows {
                    let Some(subscription) =
                        subscriptions.iter().find(|s| s.id == row.subscription_id)
                    else {
                        continue;
                    };
                    let (state, client) = (state.clone(), client.clone());
                    let (url, secret) = (subscription.url.clone(), subscription.secret.clone());
                    attempts
                        .spawn(async move { deliver(&state, &client, &url, &secret, row).await });
                }
                while attempts.join_next().await.is_some() {}
                continue;
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "forwarding: could not claim items"),
        }
        tokio::select! {
            _ = switch.wake.notified() => {}
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}

async fn deliver(
    state: &AppState,
    client: &reqwest::Client,
    url: &str,
    secret: &str,
    row: ForwardRow,
) {
    let signature = hourglass_meta::sign(secret.as_bytes(), &row.body);
    let result = client
        .post(url)
        .header("content-type", "application/json")
        .header("x-hub-signature-256", signature)
        .body(row.body.clone())
        .send()
        .await;
    let outcome = match result {
        Ok(response) if response.status().is_success() => ForwardOutcome::Delivered,
        Ok(response) => outcome_of_failure(
            row.attempts,
            row.created_at,
            now(),
            state.config().forwarding.retry_for_seconds,
            format!("{url} answered HTTP {}", response.status().as_u16()),
        ),
        Err(error) => outcome_of_failure(
            row.attempts,
            row.created_at,
            now(),
            state.config().forwarding.retry_for_seconds,
            format!("{url} could not be reached: {error}"),
        ),
    };
    if let Err(error) = state
        .store()
        .forwarding()
        .finish_forward(row.id, row.attempts, &outcome)
        .await
    {
        tracing::error!(%error, id = row.id, "forwarding: could not record an attempt");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_back_off_doubling_to_an_hour_and_die_after_seven_days() {
        let t0 = Instant::from_unix_seconds(1_800_000_000);
        let at = t0.plus_seconds(10);
        let week = 7 * 86_400;
        let next = |attempts| match outcome_of_failure(attempts, t0, at, week, "x".into()) {
            ForwardOutcome::Retry {
                next_attempt_at, ..
            } => at.seconds_until(next_attempt_at),
            other => panic!("{other:?}"),
        };
        assert_eq!(next(1), 1);
        assert_eq!(next(4), 8);
        assert_eq!(next(15), 3600);
        let late = t0.plus_seconds(week);
        assert!(matches!(
            outcome_of_failure(40, t0, late, week, "x".into()),
            ForwardOutcome::Dead { .. }
        ));
    }
}
