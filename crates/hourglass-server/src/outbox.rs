//! The outbox worker: claims due messages, puts each through the same checks and the
//! same upstream as the Cloud API endpoint at the moment it is sent (a free-form message
//! whose window closed while it waited is refused then, not sent), and finishes it with
//! Meta's answer, retrying transient failures with capped exponential backoff.
//!
//! Requests that enqueued a message may wait for it here ([`OutboxWorker::wait`]): the
//! worker wakes them when it finishes the row. A waiter in another process simply reads
//! the row when its wait times out.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use hourglass_core::Instant;
use hourglass_meta::parse_send_request;
use hourglass_store::{Admission, Bucket, OutboxOutcome, OutboxRow, StoreError};
use serde_json::Value;
use tokio::sync::{oneshot, Notify};

use crate::app::AppState;
use crate::cloud_api::{check_and_forward, contact_of};
use crate::config::OutboxConfig;
use crate::time::now;

/// What the outbox attaches to a message as `biz_opaque_callback_data`, which Meta echoes
/// on its status webhooks: `hourglass-outbox:{id}`. A status bearing it proves Meta
/// accepted the message, even if the process that sent it died before it could record
/// Meta's answer; the ingest path then finishes the row as sent, and it is not sent again.
pub const OUTBOX_CALLBACK_PREFIX: &str = "hourglass-outbox:";

pub fn outbox_callback(id: i64) -> String {
    format!("{OUTBOX_CALLBACK_PREFIX}{id}")
}

pub fn outbox_id_of_callback(data: &str) -> Option<i64> {
    data.strip_prefix(OUTBOX_CALLBACK_PREFIX)?.parse().ok()
}

/// Meta's error codes worth retrying (Meta: "Error codes"): throughput (130429), pair
/// rate limit (131056), "Something went wrong" (131000), "Service unavailable" (131016),
/// and 1 / 2 (API unknown / service temporarily unavailable). Every other code is final:
/// retrying 131026 (undeliverable), 131047 (window), 131049, 131050, 132xxx or 190 would
/// fail the same way.
pub fn is_transient_meta_error(code: Option<i64>, http_status: u16) -> bool {
    match code {
        Some(130429 | 131056 | 131000 | 131016 | 1 | 2) => true,
        Some(_) => http_status >= 500,
        None => http_status >= 500 || http_status == 429,
    }
}

/// When the next attempt may run, after `attempts` attempts, the last of which failed
/// with `code`: Meta advises 4^n seconds for the pair rate limit (131056); everything
/// else doubles from `retry_base_seconds`. Both are capped.
pub fn retry_delay_seconds(settings: &OutboxConfig, attempts: i64, code: Option<i64>) -> i64 {
    let n = attempts.clamp(1, 30) as u32;
    let delay = match code {
        Some(131056) => 4i64.saturating_pow(n),
        _ => settings
            .retry_base_seconds
            .saturating_mul(2i64.saturating_pow(n - 1)),
    };
    delay.clamp(0, settings.retry_max_delay_seconds.max(0))
}

/// What one attempt to send ran into.
#[derive(Clone, Debug)]
pub enum Attempt {
    /// Hourglass did not send it: it refused it (window, registry), or could not check
    /// it or reach Meta (131000). Meta's code and the details.
    NotSent { code: i64, details: String },
    /// The upstream answered: its HTTP status, Meta's message id when it accepted, and
    /// Meta's error code and text when it did not.
    Answered {
        status: u16,
        wamid: Option<String>,
        error: Option<(i64, String)>,
    },
}

/// What the worker decided about one attempt, from what happened.
pub fn outcome_of_attempt(
    settings: &OutboxConfig,
    row: &OutboxRow,
    result: Attempt,
    at: Instant,
) -> OutboxOutcome {
    let retry_or_fail = |code: Option<i64>, message: String| {
        if row.attempts >= settings.max_attempts {
            OutboxOutcome::Failed {
                code,
                message: format!("gave up after {} attempts: {message}", row.attempts),
                at,
            }
        } else {
            OutboxOutcome::Retry {
                next_attempt_at: at.plus_seconds(retry_delay_seconds(settings, row.attempts, code)),
                code,
                message,
            }
        }
    };
    match result {
        // Hourglass could not check, or could not reach Meta, or Meta did not answer in
        // time: perhaps nothing left, perhaps it did (a timeout is ambiguous). Try again,
        // but not before Meta's status could have said the send got through.
        Attempt::NotSent {
            code: 131000,
            details,
        } => match retry_or_fail(Some(131000), details) {
            OutboxOutcome::Retry {
                next_attempt_at,
                code,
                message,
            } => OutboxOutcome::Retry {
                next_attempt_at: next_attempt_at
                    .max(at.plus_seconds(settings.lease_seconds.min(settings.reconcile_seconds))),
                code,
                message,
            },
            other => other,
        },
        // Hourglass refused it (window, registry): recorded as a refusal, never sent.
        Attempt::NotSent { code, details } => OutboxOutcome::Refused {
            code,
            message: details,
            at,
        },
        // A 2xx is Meta's acceptance even when its body cannot be read: failing the row
        // would invite the client to send the message again. The status webhook, which
        // carries the outbox's callback data, fills in Meta's id.
        Attempt::Answered { status, wamid, .. } if (200..300).contains(&status) => {
            OutboxOutcome::Sent { wamid, at }
        }
        Attempt::Answered { status, error, .. } => {
            let (code, message) = match error {
                Some((code, message)) => (Some(code), message),
                None => (None, format!("Meta answered HTTP {status}")),
            };
            if is_transient_meta_error(code, status) {
                retry_or_fail(code, message)
            } else {
                OutboxOutcome::Failed { code, message, at }
            }
        }
    }
}

/// Meta's error code and its most telling text, from an error answer.
fn meta_error_of(body: &[u8]) -> Option<(i64, String)> {
    let value: Value = serde_json::from_slice(body).ok()?;
    let error = value.get("error")?;
    let code = error.get("code")?.as_i64()?;
    let message = error["error_data"]["details"]
        .as_str()
        .or(error["message"].as_str())
        .unwrap_or("")
        .to_owned();
    Some((code, message))
}

/// The worker's shared state: its wake-up signal and the requests waiting on rows.
#[derive(Default)]
pub struct OutboxWorker {
    wake: Notify,
    waiters: Mutex<HashMap<i64, Vec<oneshot::Sender<()>>>>,
}

impl OutboxWorker {
    /// Tells the worker a message was enqueued.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Waits until row `id` is final, or `timeout` passes; returns the row as it is then.
    pub async fn wait(
        &self,
        state: &AppState,
        id: i64,
        timeout: Duration,
    ) -> Result<Option<OutboxRow>, StoreError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let (sender, receiver) = oneshot::channel();
            self.waiters
                .lock()
                .expect("outbox waiters lock")
                .entry(id)
                .or_default()
                .push(sender);
            let row = state.store().outbox().outbox_message(id).await?;
            if row.as_ref().is_none_or(|r| r.state.is_final()) {
                return Ok(row);
            }
            // A retry may be due later than the deadline; then the answer is "queued".
            if tokio::time::timeout_at(deadline, receiver).await.is_err() {
                return state.store().outbox().outbox_message(id).await;
            }
        }
    }

    fn finished(&self, id: i64) {
        let waiters = self
            .waiters
            .lock()
            .expect("outbox waiters lock")
            .remove(&id);
        for waiter in waiters.into_iter().flatten() {
            let _ = waiter.send(());
        }
    }
}

/// Runs the worker until the runtime stops.
pub async fn run(state: AppState) {
    let settings = state.config().outbox.clone();
    let poll = Duration::from_millis(500);
    // Up to `batch` attempts are in flight at once; a slow one (a timeout) holds only its
    // own slot, and a freed slot is filled by the next claim.
    let mut in_flight = tokio::task::JoinSet::new();
    loop {
        // Reap every attempt that finished, so one claim fills all the freed slots (not
        // one claim, a writer round trip, per finished attempt).
        while in_flight.try_join_next().is_some() {}
        let free = (settings.batch as usize).saturating_sub(in_flight.len());
        let mut claimed_any = false;
        if free > 0 {
            match state
                .store()
                .outbox()
                .claim_due(
                    now(),
                    settings.lease_seconds,
                    settings.reconcile_seconds,
                    free as u32,
                )
                .await
            {
                Ok(rows) => {
                    claimed_any = !rows.is_empty();
                    for row in rows {
                        let state = state.clone();
                        in_flight.spawn(async move { attempt(&state, row).await });
                    }
                }
                Err(error) => tracing::error!(%error, "outbox: could not claim due messages"),
            }
        }
        if claimed_any && in_flight.len() < settings.batch as usize {
            // More may be due right away.
            continue;
        }
        let wait = if in_flight.is_empty() {
            match state.store().outbox().next_due().await {
                Ok(Some(due)) => {
                    Duration::from_secs(now().seconds_until(due).clamp(0, 60) as u64).min(poll)
                }
                _ => poll,
            }
        } else {
            poll
        };
        tokio::select! {
            Some(_) = in_flight.join_next(), if !in_flight.is_empty() => {}
            _ = state.outbox_worker().wake.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// The stored request with the outbox's callback data attached (unless the request
/// brought its own), so that Meta's statuses name the row.
fn with_callback(row: &OutboxRow) -> Vec<u8> {
    match serde_json::from_str::<Value>(&row.body) {
        Ok(Value::Object(mut request)) => {
            request
                .entry("biz_opaque_callback_data")
                .or_insert_with(|| Value::String(outbox_callback(row.id)));
            Value::Object(request).to_string().into_bytes()
        }
        _ => row.body.clone().into_bytes(),
    }
}

/// The buckets a send takes a token from: the pair's (the first to run out, usually) and
/// the number's throughput.
pub fn buckets_for(settings: &OutboxConfig, row: &OutboxRow) -> [Bucket; 2] {
    let contact = row.contact.strip_prefix('+').unwrap_or(&row.contact);
    [
        Bucket {
            key: format!("pair|{}|{contact}", row.phone_number_id),
            capacity: settings.pair_burst,
            per_second: 1.0 / settings.pair_interval_seconds,
        },
        Bucket {
            key: format!("number|{}", row.phone_number_id),
            capacity: settings.messages_per_second,
            per_second: settings.messages_per_second,
        },
    ]
}

/// Waits for Meta's limits to allow the send: briefly in place, or, when the wait is
/// long (a pair limit), by putting the message back in the queue. `false` when deferred.
async fn admitted(state: &AppState, row: &OutboxRow) -> bool {
    let settings = &state.config().outbox;
    let buckets = buckets_for(settings, row);
    loop {
        match state
            .store()
            .rate_limits()
            .admit(&buckets, crate::time::now_millis())
            .await
        {
            Ok(Admission::Granted) => return true,
            Ok(Admission::Wait(ms)) if ms <= 2_000 => {
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            Ok(Admission::Wait(ms)) => {
                let next = now().plus_seconds((ms / 1000 + 1) as i64);
                let deferred = OutboxOutcome::Deferred {
                    next_attempt_at: next,
                };
                if let Err(error) = state
                    .store()
                    .outbox()
                    .finish(row.id, row.attempts, &deferred)
                    .await
                {
                    tracing::error!(%error, id = row.id, "outbox: could not defer a message");
                }
                return false;
            }
            Err(error) => {
                // The limits cannot be read: waiting is safer than exceeding them.
                tracing::warn!(%error, "outbox: could not check the rate limits");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

/// One attempt at one claimed message.
async fn attempt(state: &AppState, row: OutboxRow) {
    let settings = &state.config().outbox;
    if !admitted(state, &row).await {
        return;
    }
    let not_sent = |code, details: String| Attempt::NotSent { code, details };
    let body = with_callback(&row);
    let result = match parse_send_request(&body) {
        Err(error) => not_sent(
            100,
            format!("the stored request is not a Cloud API send: {error}"),
        ),
        Ok(request) => match contact_of(&request) {
            None => not_sent(100, "the stored request names no recipient".to_owned()),
            Some(contact) => {
                let version = state.config().meta.graph_version.clone();
                match check_and_forward(
                    state,
                    &version,
                    &row.phone_number_id,
                    &body,
                    &request,
                    contact,
                )
                .await
                {
                    Ok(forwarded) => Attempt::Answered {
                        status: forwarded.status,
                        error: meta_error_of(&forwarded.body),
                        wamid: forwarded.message_id,
                    },
                    Err(refusal) => not_sent(refusal.code, refusal.details),
                }
            }
        },
    };
    let outcome = outcome_of_attempt(settings, &row, result, now());
    match state
        .store()
        .outbox()
        .finish(row.id, row.attempts, &outcome)
        .await
    {
        Ok(true) => {}
        Ok(false) => tracing::warn!(
            id = row.id,
            "outbox: a claim expired before its attempt finished; the newer claim decides"
        ),
        Err(error) => tracing::error!(%error, id = row.id, "outbox: could not record an attempt"),
    }
    state.outbox_worker().finished(row.id);
}

#[cfg(test)]
mod tests {
    use super::*;
    use hourglass_store::OutboxState;

    fn row(attempts: i64) -> OutboxRow {
        let at = Instant::from_unix_seconds(1_800_000_000);
        OutboxRow {
            id: 1,
            phone_number_id: "n".into(),
            contact: "c".into(),
            idempotency_key: None,
            request_sha256: String::new(),
            body: String::new(),
            state: OutboxState::Sending,
            attempts,
            next_attempt_at: at,
            lease_until: None,
            created_at: at,
            send_at: at,
            finished_at: None,
            wamid: None,
            error_code: None,
            error_message: None,
        }
    }

    #[test]
    fn the_pair_rate_limit_waits_four_to_the_n_seconds_and_others_double() {
        let settings = OutboxConfig::default();
        assert_eq!(retry_delay_seconds(&settings, 1, Some(131056)), 4);
        assert_eq!(retry_delay_seconds(&settings, 3, Some(131056)), 64);
        assert_eq!(retry_delay_seconds(&settings, 1, Some(130429)), 2);
        assert_eq!(retry_delay_seconds(&settings, 4, None), 16);
        assert_eq!(
            retry_delay_seconds(&settings, 30, Some(131056)),
            900,
            "capped"
        );
    }

    #[test]
    fn transient_errors_retry_and_permanent_ones_fail_at_once() {
        let settings = OutboxConfig::default();
        let at = Instant::from_unix_seconds(1_800_000_100);
        let retried = outcome_of_attempt(
            &settings,
            &row(1),
            Attempt::Answered {
                status: 429,
                wamid: None,
                error: Some((130429, "throughput".into())),
            },
            at,
        );
        assert!(
            matches!(retried, OutboxOutcome::Retry { next_attempt_at, .. } if next_attempt_at == at.plus_seconds(2))
        );
        let server_error = outcome_of_attempt(
            &settings,
            &row(2),
            Attempt::Answered {
                status: 503,
                wamid: None,
                error: None,
            },
            at,
        );
        assert!(matches!(server_error, OutboxOutcome::Retry { .. }));
        for code in [131026, 131047, 131049, 131050, 132000, 190] {
            let failed = outcome_of_attempt(
                &settings,
                &row(1),
                Attempt::Answered {
                    status: 400,
                    wamid: None,
                    error: Some((code, "no".into())),
                },
                at,
            );
            assert!(
                matches!(failed, OutboxOutcome::Failed { code: Some(c), .. } if c == code),
                "{code}"
            );
        }
    }

    #[test]
    fn a_message_that_keeps_failing_is_given_up_after_max_attempts() {
        let settings = OutboxConfig::default();
        let at = Instant::from_unix_seconds(1_800_000_100);
        let last = outcome_of_attempt(
            &settings,
            &row(settings.max_attempts),
            Attempt::Answered {
                status: 500,
                wamid: None,
                error: None,
            },
            at,
        );
        assert!(
            matches!(&last, OutboxOutcome::Failed { message, .. } if message.starts_with("gave up after 12 attempts")),
            "{last:?}"
        );
    }

    #[test]
    fn a_2xx_whose_body_cannot_be_read_is_still_sent() {
        let settings = OutboxConfig::default();
        let at = Instant::from_unix_seconds(1_800_000_100);
        let outcome = outcome_of_attempt(
            &settings,
            &row(1),
            Attempt::Answered {
                status: 200,
                wamid: None,
                error: None,
            },
            at,
        );
        assert_eq!(outcome, OutboxOutcome::Sent { wamid: None, at });
    }

    #[test]
    fn hourglass_refusals_are_final_and_its_own_outages_retry() {
        let settings = OutboxConfig::default();
        let at = Instant::from_unix_seconds(1_800_000_100);
        assert!(matches!(
            outcome_of_attempt(
                &settings,
                &row(1),
                Attempt::NotSent {
                    code: 131047,
                    details: "closed".into()
                },
                at
            ),
            OutboxOutcome::Refused { code: 131047, .. }
        ));
        assert!(matches!(
            outcome_of_attempt(
                &settings,
                &row(1),
                Attempt::NotSent {
                    code: 131000,
                    details: "storage".into()
                },
                at
            ),
            OutboxOutcome::Retry { .. }
        ));
    }
}
