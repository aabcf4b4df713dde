//! `/v1/webhooks`: the apps Hourglass forwards Meta's webhooks to (DESIGN.md §3.5), their
//! dead letters, and replays. Subscriptions see every number's traffic, so only admin keys
//! manage them.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use hourglass_core::Instant;
use hourglass_meta::parse_webhook;
use hourglass_store::{
    ForwardItem, Forwarding, IngestItem, NewSubscription, StoreError, Subscription,
};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::app::AppState;
use crate::auth::{authenticate, Principal};
use crate::error::ApiError;
use crate::ingest::delivery_from_webhook;
use crate::time::{format_instant, now, parse_instant};

/// The kinds of item a subscription may choose: Meta's, and Hourglass's own window
/// events (see `window_events`).
pub const FORWARDED_KINDS: [&str; 4] = ["messages", "statuses", "calls", "windows"];

/// What a subscription that names no `events` gets: Meta's items only, so that a bot
/// written for Meta's webhooks sees nothing else (`"*"` means every kind).
pub const DEFAULT_KINDS: [&str; 3] = ["messages", "statuses", "calls"];

async fn admin(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    match authenticate(state.store(), state.config().api_key.as_ref(), headers).await? {
        Principal::Admin => Ok(()),
        Principal::Numbers(_) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "admin_key_required",
            "webhook subscriptions see every number's traffic: use an admin API key",
        )),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionRequest {
    pub url: String,
    pub secret: String,
    pub events: Option<Vec<String>>,
    pub phone_number_ids: Option<Vec<String>>,
}

/// Checks a subscription request; the error says what to change.
pub fn new_subscription(request: SubscriptionRequest) -> Result<NewSubscription, String> {
    if !(request.url.starts_with("http://") || request.url.starts_with("https://")) {
        return Err(format!(
            "`url` must be an http(s) URL, not `{}`",
            request.url
        ));
    }
    if request.secret.len() < 8 {
        return Err("`secret` must be at least 8 characters: it signs every forwarded request (X-Hub-Signature-256)".into());
    }
    let events = request
        .events
        .unwrap_or_else(|| DEFAULT_KINDS.iter().map(|k| k.to_string()).collect());
    if events.is_empty() {
        return Err("`events` must name at least one kind".into());
    }
    for event in &events {
        if event != "*" && !FORWARDED_KINDS.contains(&event.as_str()) {
            return Err(format!(
                "`events` may hold {} or \"*\", not `{event}`",
                FORWARDED_KINDS.join(", ")
            ));
        }
    }
    if let Some(numbers) = &request.phone_number_ids {
        if numbers.is_empty() || numbers.iter().any(|n| n.is_empty() || n.contains(',')) {
            return Err(
                "`phone_number_ids` must list business number ids (or be left out for all)".into(),
            );
        }
    }
    Ok(NewSubscription {
        url: request.url,
        secret: request.secret,
        events,
        phone_number_ids: request.phone_number_ids,
        created_at: now(),
    })
}

/// A subscription as answered: the secret is never shown again.
pub fn subscription_json(s: &Subscription) -> Value {
    json!({
        "id": s.id,
        "url": s.url,
        "events": s.events,
        "phone_number_ids": s.phone_number_ids,
        "created_at": format_instant(s.created_at),
        "pending": s.pending,
        "dead_letters": s.dead,
    })
}

/// `POST /v1/webhooks`
pub async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    admin(&state, &headers).await?;
    let request: SubscriptionRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(
            "invalid_body",
            format!("expected {{\"url\", \"secret\", \"events\"?, \"phone_number_ids\"?}}: {e}"),
        )
    })?;
    let new =
        new_subscription(request).map_err(|m| ApiError::bad_request("invalid_subscription", m))?;
    let created = state.store().forwarding().create_subscription(&new).await?;
    state.forwarding().set(true);
    Ok((StatusCode::CREATED, Json(subscription_json(&created))))
}

/// `GET /v1/webhooks`
pub async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    admin(&state, &headers).await?;
    let subscriptions = state.store().forwarding().subscriptions().await?;
    Ok(Json(json!({
        "webhooks": subscriptions.iter().map(subscription_json).collect::<Vec<_>>()
    })))
}

fn unknown(id: i64) -> ApiError {
    ApiError::not_found(
        "unknown_webhook",
        format!("there is no webhook subscription {id}"),
    )
}

async fn ensure_known(state: &AppState, id: i64) -> Result<(), ApiError> {
    let known = state.store().forwarding().subscriptions().await?;
    if known.iter().any(|s| s.id == id) {
        Ok(())
    } else {
        Err(unknown(id))
    }
}

/// `DELETE /v1/webhooks/{id}`
pub async fn delete(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    admin(&state, &headers).await?;
    if !state.store().forwarding().delete_subscription(id).await? {
        return Err(unknown(id));
    }
    let left = state.store().forwarding().subscriptions().await?;
    state.forwarding().set(!left.is_empty());
    Ok(Json(json!({"deleted": id})))
}

/// `GET /v1/webhooks/{id}/dead-letters`: items that could not be delivered in 7 days.
pub async fn dead_letters(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    admin(&state, &headers).await?;
    ensure_known(&state, id).await?;
    let letters = state.store().forwarding().dead_letters(id, 1000).await?;
    let letters: Vec<Value> = letters
        .iter()
        .map(|l| {
            json!({
                "id": l.id,
                "kind": l.kind,
                "thread": l.thread_key,
                "attempts": l.attempts,
                "first_tried_at": format_instant(l.created_at),
                "last_error": l.last_error,
                "payload": serde_json::from_slice::<Value>(&l.body).unwrap_or(Value::Null),
            })
        })
        .collect();
    Ok(Json(json!({"dead_letters": letters})))
}

/// What `POST /v1/webhooks/{id}/replay` may ask for: with no body, the dead letters;
/// with `since` (and `until`), every item of the raw deliveries received then.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ReplayRequest {
    pub since: Option<String>,
    pub until: Option<String>,
}

/// Raw deliveries read per page during a replay.
const REPLAY_PAGE: u32 = 500;

/// `POST /v1/webhooks/{id}/replay`: with no body, every dead letter is tried again for 7
/// more days. With `{"since": "…", "until"?: "…"}`, the raw deliveries Hourglass received
/// in that span are read again, byte for byte as Meta sent them, and every message,
/// status and call in them that the subscription wants is forwarded again, in the order
/// they arrived (at least once: an app that already had an item gets it again).
pub async fn replay(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    admin(&state, &headers).await?;
    ensure_known(&state, id).await?;
    let request: ReplayRequest = if body.iter().all(u8::is_ascii_whitespace) {
        ReplayRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::bad_request(
                "invalid_body",
                format!("expected no body (replay dead letters) or {{\"since\", \"until\"?}} (RFC 3339 instants): {e}"),
            )
        })?
    };
    let at = now();
    let Some(since) = request.since else {
        if request.until.is_some() {
            return Err(ApiError::bad_request(
                "invalid_body",
                "`until` needs `since`: the span of raw deliveries to replay",
            ));
        }
        let replayed = state
            .store()
            .forwarding()
            .replay_dead_letters(id, at)
            .await?;
        state.forwarding().wake();
        return Ok(Json(json!({"replayed": replayed})));
    };
    let instant = |name: &str, text: &str| {
        parse_instant(text)
            .map_err(|e| ApiError::bad_request("invalid_instant", format!("`{name}`: {e}")))
    };
    let since = instant("since", &since)?;
    let until = match &request.until {
        Some(text) => instant("until", text)?,
        None => at.plus_seconds(1),
    };
    if until <= since {
        return Err(ApiError::bad_request(
            "invalid_span",
            "`until` must be after `since`",
        ));
    }
    let (deliveries, replayed) =
        replay_raw(state.store().forwarding(), id, since, until, at).await?;
    state.forwarding().wake();
    Ok(Json(json!({
        "replayed": replayed,
        "deliveries_read": deliveries,
        "since": format_instant(since),
        "until": format_instant(until),
    })))
}

/// Reads the raw deliveries of `[since, until)` page by page and enqueues their items
/// for subscription `id`. Returns the deliveries read and the forwards added.
pub async fn replay_raw(
    forwarding: &dyn Forwarding,
    id: i64,
    since: Instant,
    until: Instant,
    at: Instant,
) -> Result<(u64, u64), StoreError> {
    let (mut read, mut added) = (0, 0);
    let mut after = None;
    loop {
        let page = forwarding
            .raw_deliveries(since, until, after.take(), REPLAY_PAGE)
            .await?;
        let Some(last) = page.last() else { break };
        after = Some(last.seq);
        let mut items = Vec::new();
        for raw in &page {
            read += 1;
            // Stored only once it was read; a body that no longer reads (an older parser's
            // leniency) is skipped, and said so.
            let Ok(webhook) = parse_webhook(&raw.body) else {
                tracing::warn!(
                    sha256 = raw.sha256,
                    "replay: a stored delivery no longer parses; skipped"
                );
                continue;
            };
            // Only the items' own forwards are replayed, never a window event: the rule
            // settings, which decide those, do not matter here.
            let delivery = delivery_from_webhook(
                &raw.body,
                &webhook,
                raw.received_at,
                true,
                hourglass_core::RuleSettings::default(),
            );
            items.extend(delivery.items.into_iter().filter_map(forward_of));
        }
        added += forwarding.enqueue_forwards(id, &items, at).await?;
        if page.len() < REPLAY_PAGE as usize {
            break;
        }
    }
    Ok((read, added))
}

/// The forward an ingest item carries, with its business number.
fn forward_of(item: IngestItem) -> Option<(String, ForwardItem)> {
    match item {
        IngestItem::Inbound {
            number, forward, ..
        }
        | IngestItem::Status {
            number, forward, ..
        } => forward.map(|f| (number.phone_number_id, *f)),
        IngestItem::Unprocessed { .. } | IngestItem::TemplateChange(_) => None,
    }
}
