//! `/webhook`: Meta's subscription challenge, and signed webhook deliveries stored before
//! they are acknowledged (DESIGN.md §3.2; Meta: "Webhooks: Getting Started", "Validate
//! payloads").

use std::collections::HashMap;

use axum::body::{to_bytes, Body};
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::app::AppState;
use crate::ingest::delivery_from_webhook;
use crate::metrics::WebhookOutcome;
use crate::time::now;

/// `GET /webhook?hub.mode=subscribe&hub.verify_token=T&hub.challenge=C`.
pub async fn verify_subscription(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let expected = state.config().meta.verify_token.as_ref();
    let mode = query.get("hub.mode").map(String::as_str);
    let token = query.get("hub.verify_token");
    let challenge = query.get("hub.challenge");
    match (expected, mode, token, challenge) {
        (Some(expected), Some("subscribe"), Some(token), Some(challenge))
            if crate::auth::same_secret(expected.expose(), token) =>
        {
            (StatusCode::OK, challenge.clone()).into_response()
        }
        (None, ..) => (
            StatusCode::FORBIDDEN,
            "no verify token is configured: set HOURGLASS_META_VERIFY_TOKEN to the token entered in Meta's app dashboard",
        )
            .into_response(),
        _ => (StatusCode::FORBIDDEN, "hub.verify_token does not match HOURGLASS_META_VERIFY_TOKEN").into_response(),
    }
}

fn plain(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        message.into(),
    )
        .into_response()
}

/// `POST /webhook`: check the signature over the exact bytes, parse, store durably, and
/// only then answer 200.
pub async fn receive_webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let metrics = state.metrics();
    let limit = state.config().max_webhook_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let too_large = || {
        plain(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("webhook body is larger than {limit} bytes (max_webhook_bytes)"),
        )
    };
    if declared.is_some_and(|n| n > limit) {
        metrics.webhook(WebhookOutcome::TooLarge);
        return too_large();
    }
    let Ok(body) = to_bytes(body, limit).await else {
        metrics.webhook(WebhookOutcome::TooLarge);
        return too_large();
    };
    let Some(secret) = state.config().meta.app_secret.as_ref() else {
        metrics.webhook(WebhookOutcome::Unsigned);
        return plain(
            StatusCode::SERVICE_UNAVAILABLE,
            "webhooks are refused until HOURGLASS_META_APP_SECRET is set to your Meta app's secret",
        );
    };
    let signature = headers
        .get("x-hub-signature-256")
        .and_then(|v| v.to_str().ok());
    if let Err(error) =
        hourglass_meta::verify_signature(secret.expose().as_bytes(), &body, signature)
    {
        metrics.webhook(match error {
            hourglass_meta::SignatureError::Missing => WebhookOutcome::Unsigned,
            _ => WebhookOutcome::BadSignature,
        });
        return plain(StatusCode::UNAUTHORIZED, error.to_string());
    }
    let webhook = match hourglass_meta::parse_webhook(&body) {
        Ok(webhook) => webhook,
        Err(error) => {
            metrics.webhook(WebhookOutcome::Malformed);
            return plain(StatusCode::BAD_REQUEST, error.to_string());
        }
    };
    let forwarding = state.forwarding_enabled();
    let delivery = delivery_from_webhook(&body, &webhook, now(), forwarding, state.rule_settings());
    match state.ingest().submit(delivery).await {
        Ok(_) => {
            metrics.webhook(WebhookOutcome::Accepted);
            if forwarding {
                state.forwarding().wake();
            }
            plain(StatusCode::OK, "EVENT_RECEIVED")
        }
        Err(error) => {
            metrics.webhook(WebhookOutcome::StoreFailed);
            tracing::error!(%error, "webhook not stored; Meta will retry it");
            plain(
                StatusCode::SERVICE_UNAVAILABLE,
                "the webhook could not be stored right now; it was not acknowledged, so Meta will retry it",
            )
        }
    }
}
