//! Hourglass's own API under `/v1` (DESIGN.md §3.4), and the operational endpoints.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use hourglass_core::{Instant, CSW_SECONDS};
use hourglass_store::{BusinessNumber, ThreadCursor, ThreadRow};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::app::AppState;
use crate::auth::{authenticate, Principal};
use crate::error::ApiError;
use crate::time::{now, parse_instant};
use crate::windows::{contact_window_state, messages_json, window_json, window_state};

pub(crate) async fn principal_for_number(
    state: &AppState,
    headers: &HeaderMap,
    phone_number_id: &str,
) -> Result<Principal, ApiError> {
    let principal = authenticate(state.store(), state.config().api_key.as_ref(), headers).await?;
    if !principal.may_use(phone_number_id) {
        return Err(unknown_number(phone_number_id));
    }
    Ok(principal)
}

fn unknown_number(phone_number_id: &str) -> ApiError {
    ApiError::not_found(
        "unknown_number",
        format!("business number {phone_number_id} is not known to Hourglass, or this API key may not use it"),
    )
}

fn at_param(query: &HashMap<String, String>) -> Result<Instant, ApiError> {
    match query.get("at") {
        None => Ok(now()),
        Some(text) => parse_instant(text).map_err(|m| ApiError::bad_request("invalid_at", m)),
    }
}

fn unknown_contact(phone_number_id: &str, contact: &str) -> ApiError {
    ApiError::not_found(
        "unknown_contact",
        format!(
            "contact {contact} has no thread with business number {phone_number_id}: \
             Hourglass learns contacts from Meta's webhooks and from sends (use a wa_id or a user_id)"
        ),
    )
}

async fn thread_of(
    state: &AppState,
    phone_number_id: &str,
    contact: &str,
) -> Result<ThreadRow, ApiError> {
    state
        .store()
        .find_thread(phone_number_id, contact)
        .await?
        .ok_or_else(|| unknown_contact(phone_number_id, contact))
}

/// `GET /v1/numbers/{phone_number_id}/contacts/{contact}/window?at=`
pub async fn contact_window(
    State(state): State<AppState>,
    Path((phone_number_id, contact)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    principal_for_number(&state, &headers, &phone_number_id).await?;
    let at = at_param(&query)?;
    let (thread, window) = contact_window_state(&state, &phone_number_id, &contact, at)
        .await?
        .ok_or_else(|| unknown_contact(&phone_number_id, &contact))?;
    Ok(Json(window_json(&thread, &window)))
}

/// `GET /v1/numbers/{phone_number_id}/contacts/{contact}/messages`
pub async fn contact_messages(
    State(state): State<AppState>,
    Path((phone_number_id, contact)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    principal_for_number(&state, &headers, &phone_number_id).await?;
    let thread = thread_of(&state, &phone_number_id, &contact).await?;
    let messages = state.store().thread_messages(thread.id).await?;
    Ok(Json(messages_json(&state, &thread, &messages).await?))
}

fn parse_cursor(text: &str) -> Result<ThreadCursor, ApiError> {
    let invalid = || {
        ApiError::bad_request(
            "invalid_cursor",
            "`cursor` must be a value of `next` from an earlier page",
        )
    };
    let (at, id) = text.split_once('.').ok_or_else(invalid)?;
    Ok(ThreadCursor {
        anchor_at: Instant::from_unix_seconds(at.parse().map_err(|_| invalid())?),
        id: id.parse().map_err(|_| invalid())?,
    })
}

/// `GET /v1/numbers/{phone_number_id}/windows?closing_within=SECONDS&at=&cursor=&limit=`:
/// the threads whose window is open at `at` and closes within `closing_within` seconds,
/// soonest first.
pub async fn closing_windows(
    State(state): State<AppState>,
    Path(phone_number_id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    principal_for_number(&state, &headers, &phone_number_id).await?;
    let at = at_param(&query)?;
    let within: i64 = match query.get("closing_within") {
        None => CSW_SECONDS,
        Some(text) => text
            .parse()
            .ok()
            .filter(|s| (0..=CSW_SECONDS).contains(s))
            .ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_closing_within",
                    "`closing_within` must be a number of seconds from 0 to 86400",
                )
            })?,
    };
    let limit: u32 = match query.get("limit") {
        None => 100,
        Some(text) => text
            .parse()
            .ok()
            .filter(|l| (1..=1000).contains(l))
            .ok_or_else(|| {
                ApiError::bad_request("invalid_limit", "`limit` must be from 1 to 1000")
            })?,
    };
    let cursor = query.get("cursor").map(|c| parse_cursor(c)).transpose()?;
    // Open at `at` and closing within `within`: the window anchor (the latest customer
    // message, or reaction where they count) is in (at - 24 h, at - 24 h + within], and
    // not after `at`.
    let from = at.plus_seconds(-CSW_SECONDS);
    let to = at.plus_seconds(-CSW_SECONDS + within).min(at);
    let settings = state.rule_settings();
    let threads = state
        .store()
        .threads_by_window_anchor(&phone_number_id, from, to, cursor, limit, settings)
        .await?;
    let next = (threads.len() == limit as usize)
        .then(|| threads.last())
        .flatten()
        .and_then(|t| {
            t.window_anchor(settings)
                .map(|l| format!("{}.{}", l.unix_seconds(), t.id))
        });
    let mut windows = Vec::with_capacity(threads.len());
    for thread in &threads {
        let window = window_state(&state, thread, at).await?;
        windows.push(window_json(thread, &window));
    }
    Ok(Json(json!({"windows": windows, "next": next})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NumberSettings {
    /// IANA time zone name: where the number's pricing eras and months begin.
    time_zone: Option<String>,
    /// The WhatsApp Business Account the number belongs to (Meta's webhooks tell it too):
    /// which template registry its sends are checked against.
    waba_id: Option<String>,
}

fn number_json(number: &BusinessNumber) -> Value {
    json!({
        "phone_number_id": number.phone_number_id,
        "waba_id": number.waba_id,
        "display_phone_number": number.display_phone_number,
        "time_zone": number.time_zone,
    })
}

/// `GET /v1/numbers/{phone_number_id}`
pub async fn get_number(
    State(state): State<AppState>,
    Path(phone_number_id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    principal_for_number(&state, &headers, &phone_number_id).await?;
    let number = state
        .store()
        .business_number(&phone_number_id)
        .await?
        .ok_or_else(|| unknown_number(&phone_number_id))?;
    Ok(Json(number_json(&number)))
}

/// `PUT /v1/numbers/{phone_number_id}` with `{"time_zone": "America/Sao_Paulo"}`.
pub async fn put_number(
    State(state): State<AppState>,
    Path(phone_number_id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let principal = principal_for_number(&state, &headers, &phone_number_id).await?;
    let settings: NumberSettings = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(
            "invalid_body",
            format!("expected {{\"time_zone\": \"IANA name\", \"waba_id\": \"…\"}} (either or both): {e}"),
        )
    })?;
    if let Some(zone) = &settings.time_zone {
        state
            .calendars()
            .get(zone)
            .map_err(|m| ApiError::bad_request("invalid_time_zone", m))?;
    }
    // Which WABA a number belongs to decides whose templates a key may manage: only an
    // admin key may say it (Meta's webhooks also tell it).
    if settings.waba_id.is_some() && principal != Principal::Admin {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "admin_key_required",
            "only an admin API key may set a number's waba_id (Meta's webhooks set it too)",
        ));
    }
    if settings
        .waba_id
        .as_deref()
        .is_some_and(|w| w.trim().is_empty())
    {
        return Err(ApiError::bad_request(
            "invalid_waba_id",
            "`waba_id` must not be empty",
        ));
    }
    let existing = state.store().business_number(&phone_number_id).await?;
    let number = BusinessNumber {
        phone_number_id: phone_number_id.clone(),
        waba_id: settings
            .waba_id
            .or(existing.as_ref().and_then(|n| n.waba_id.clone())),
        display_phone_number: existing
            .as_ref()
            .and_then(|n| n.display_phone_number.clone()),
        time_zone: settings
            .time_zone
            .or(existing.map(|n| n.time_zone))
            .unwrap_or_else(|| "UTC".into()),
    };
    state.store().upsert_business_number(&number).await?;
    state.calendars().forget_number(&phone_number_id);
    Ok(Json(number_json(&number)))
}

/// `GET /healthz`: the process serves and the database answers.
pub async fn healthz(State(state): State<AppState>) -> Response {
    match state.store().ping().await {
        Ok(()) => Json(json!({"status": "ok"})).into_response(),
        Err(error) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "unavailable", "reason": error.to_string()})),
        )
            .into_response(),
    }
}

/// `GET /metrics`: Prometheus text.
pub async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics().render(state.store().group_commit_counts()),
    )
        .into_response()
}

/// `GET /openapi.json`
pub async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        include_str!("openapi.json"),
    )
        .into_response()
}

pub async fn not_found() -> ApiError {
    ApiError::not_found(
        "not_found",
        "no such endpoint: see /openapi.json for the API",
    )
}
