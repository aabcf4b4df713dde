//! Hourglass's own send, for people who do not speak Meta's request format:
//! `POST /v1/numbers/{phone_number_id}/contacts/{contact}/messages` with
//! `{"text": "…"}` or `{"template": {"name", "language", "params", "header", "buttons"}}`.
//! It builds Meta's request and writes it to the durable outbox (the worker in `outbox`
//! puts it through the same checks as the Cloud API endpoint — window, registry,
//! parameters — at the moment it is sent), and answers with Hourglass's record of the
//! message. `Idempotency-Key` makes a retried request the same message; `send_at`
//! schedules it.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use hourglass_core::template::TemplateDefinition;
use hourglass_core::Instant;
use hourglass_meta::parse_send_request;
use hourglass_meta::template::{components_from_render_params, parse_template_definition};
use hourglass_store::{Enqueued, NewOutboxMessage, OutboxRow, OutboxState};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::time::Duration;

use crate::api::principal_for_number;
use crate::app::AppState;
use crate::cloud_api::contact_of;
use crate::error::{ApiError, MetaApiError};
use crate::templates::params_of_request;
use crate::time::{format_instant, now, parse_instant};
use crate::windows::{charge_json, messages_json, window_state};

/// How Meta names a contact in a send: a phone number goes in `to`, a business-scoped
/// user id (`US.1349…`) in `recipient`.
fn recipient_fields(contact: &str) -> Value {
    let digits = contact.strip_prefix('+').unwrap_or(contact);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        json!({"to": digits})
    } else {
        json!({"recipient": contact})
    }
}

/// The registry's definition of a template, when the number's WABA has it.
async fn registry_definition(
    state: &AppState,
    phone_number_id: &str,
    name: &str,
    language: &str,
) -> Result<Option<TemplateDefinition>, ApiError> {
    let Some(waba_id) = state
        .store()
        .business_number(phone_number_id)
        .await?
        .and_then(|n| n.waba_id)
    else {
        return Ok(None);
    };
    let Some(record) = state
        .store()
        .template_registry()
        .template(&waba_id, name, language)
        .await?
    else {
        return Ok(None);
    };
    Ok(record
        .definition
        .as_deref()
        .and_then(|t| serde_json::from_str::<Value>(t).ok())
        .and_then(|v| parse_template_definition(&v).ok())
        .map(|(d, _)| d))
}

/// Meta's request body for a simple send.
async fn meta_request(
    state: &AppState,
    phone_number_id: &str,
    contact: &str,
    request: &Value,
) -> Result<Value, ApiError> {
    let mut body = json!({"messaging_product": "whatsapp", "recipient_type": "individual"});
    for (key, value) in recipient_fields(contact).as_object().into_iter().flatten() {
        body[key] = value.clone();
    }
    match (request.get("text"), request.get("template")) {
        (Some(Value::String(text)), None) => {
            body["type"] = json!("text");
            body["text"] = json!({"body": text});
        }
        (None, Some(template)) => {
            let field = |key: &str| {
                template
                    .get(key)
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
                    .ok_or_else(|| {
                        ApiError::bad_request(
                            "invalid_body",
                            format!("`template.{key}` must be a non-empty string"),
                        )
                    })
            };
            let (name, language) = (field("name")?, field("language")?);
            let definition = registry_definition(state, phone_number_id, name, language).await?;
            let params = params_of_request(definition.as_ref(), template)
                .map_err(|e| ApiError::bad_request("invalid_parameters", e))?;
            body["type"] = json!("template");
            body["template"] = json!({
                "name": name,
                "language": {"code": language},
                "components": components_from_render_params(definition.as_ref(), &params),
            });
        }
        _ => {
            return Err(ApiError::bad_request(
                "invalid_body",
                "send {\"text\": \"…\"} or {\"template\": {\"name\": …, \"language\": …, \"params\": {…} or […]}}",
            ))
        }
    }
    Ok(body)
}

/// A refusal on this API: Hourglass's error shape, with Meta's code beside it.
fn refused(error: MetaApiError) -> Response {
    let code = match error.code {
        131047 => "window_closed",
        132000 => "template_parameters_mismatch",
        132001 => "template_not_found",
        132005 => "template_text_too_long",
        132012 => "template_parameter_format_mismatch",
        132015 => "template_paused",
        132016 => "template_disabled",
        131000 => "unavailable",
        _ => "send_refused",
    };
    let status = StatusCode::from_u16(hourglass_meta::http_status_for(error.code))
        .unwrap_or(StatusCode::BAD_REQUEST);
    (
        status,
        Json(json!({"error": {
            "code": code,
            "message": error.details,
            "meta_code": error.code,
            "meta_title": error.title,
        }})),
    )
        .into_response()
}

/// The Idempotency-Key header: a client's name for one message, so that retrying a
/// request whose answer was lost sends nothing twice.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .map(str::trim)
        .filter(|k| !k.is_empty() && k.len() <= 255)
        .map(|k| Some(k.to_owned()))
        .ok_or_else(|| {
            ApiError::bad_request(
                "invalid_idempotency_key",
                "`Idempotency-Key` must be 1 to 255 visible ASCII characters",
            )
        })
}

/// What makes two requests under one Idempotency-Key the same: the contact and the body.
fn request_fingerprint(contact: &str, body: &[u8]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(contact.as_bytes());
    hasher.update([0]);
    hasher.update(body);
    hex::encode(hasher.finalize())
}

/// `POST /v1/numbers/{phone_number_id}/contacts/{contact}/messages`: the message becomes an
/// outbox row (deduplicated on `Idempotency-Key`), and the answer waits for it to be sent:
/// 201 with the stored message, the refusal or Meta's error, or 202 while it is scheduled
/// (`send_at`) or waiting for a retry.
pub async fn send_to_contact(
    State(state): State<AppState>,
    Path((phone_number_id, contact)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    principal_for_number(&state, &headers, &phone_number_id).await?;
    let key = idempotency_key(&headers)?;
    let request: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request("invalid_body", format!("the body is not JSON: {e}")))?;
    let at = now();
    let send_at = match request.get("send_at") {
        None | Some(Value::Null) => at,
        Some(Value::Number(n)) => n.as_i64().map(Instant::from_unix_seconds).ok_or_else(|| {
            ApiError::bad_request("invalid_send_at", "`send_at` must be an instant")
        })?,
        Some(Value::String(text)) => {
            parse_instant(text).map_err(|m| ApiError::bad_request("invalid_send_at", m))?
        }
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid_send_at",
                "`send_at` must be RFC 3339 or Unix seconds",
            ))
        }
    };
    let meta_body = meta_request(&state, &phone_number_id, &contact, &request).await?;
    let meta_bytes = meta_body.to_string().into_bytes();
    let send = parse_send_request(&meta_bytes)
        .map_err(|e| ApiError::bad_request("invalid_body", e.to_string()))?;
    contact_of(&send).ok_or_else(|| {
        ApiError::bad_request(
            "invalid_contact",
            "the contact must be a phone number or a user id",
        )
    })?;
    let enqueued = state
        .store()
        .outbox()
        .enqueue(&NewOutboxMessage {
            phone_number_id: phone_number_id.clone(),
            contact: contact.clone(),
            idempotency_key: key,
            request_sha256: request_fingerprint(&contact, &body),
            body: String::from_utf8(meta_bytes).expect("serde_json writes UTF-8"),
            send_at: send_at.max(at),
            created_at: at,
        })
        .await?;
    let row = match enqueued {
        Enqueued::New(row) => {
            state.outbox_worker().wake();
            row
        }
        Enqueued::Existing(row) if row.request_sha256 != request_fingerprint(&contact, &body) => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                format!(
                    "this Idempotency-Key was used for another request (outbox message {}): use a new key for a new message",
                    row.id
                ),
            ))
        }
        Enqueued::Existing(row) => row,
    };
    let wait = Duration::from_millis(state.config().outbox.wait_ms);
    let row = state
        .outbox_worker()
        .wait(&state, row.id, wait)
        .await?
        .unwrap_or(row);
    answer_for(&state, &phone_number_id, &row, &request).await
}

/// `GET /v1/numbers/{phone_number_id}/outbox/{id}`: a message of the outbox as it is now.
pub async fn outbox_message(
    State(state): State<AppState>,
    Path((phone_number_id, id)): Path<(String, i64)>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    principal_for_number(&state, &headers, &phone_number_id).await?;
    let row = state
        .store()
        .outbox()
        .outbox_message(id)
        .await?
        .filter(|r| r.phone_number_id == phone_number_id)
        .ok_or_else(|| {
            ApiError::not_found(
                "unknown_outbox_message",
                format!("number {phone_number_id} has no outbox message {id}"),
            )
        })?;
    Ok(Json(outbox_json(&row)))
}

fn outbox_json(row: &OutboxRow) -> Value {
    json!({
        "outbox_id": row.id,
        "state": row.state.as_str(),
        "contact": row.contact,
        "idempotency_key": row.idempotency_key,
        "attempts": row.attempts,
        "send_at": format_instant(row.send_at),
        "next_attempt_at": (!row.state.is_final()).then(|| format_instant(row.next_attempt_at)),
        "finished_at": row.finished_at.map(format_instant),
        "meta_message_id": row.wamid,
        "last_error": (row.error_code.is_some() || row.error_message.is_some())
            .then(|| json!({"meta_code": row.error_code, "message": row.error_message})),
    })
}

/// The answer for an outbox row: the same for the first request and for every retry of
/// it with the same Idempotency-Key.
async fn answer_for(
    state: &AppState,
    phone_number_id: &str,
    row: &OutboxRow,
    request: &Value,
) -> Result<Response, ApiError> {
    match row.state {
        OutboxState::Queued | OutboxState::Sending => Ok((
            StatusCode::ACCEPTED,
            Json(json!({"message": outbox_json(row)})),
        )
            .into_response()),
        OutboxState::Refused => {
            let code = row.error_code.unwrap_or(131000);
            Ok(refused(MetaApiError::new(
                code,
                meta_title(code),
                row.error_message.clone().unwrap_or_default(),
            )))
        }
        OutboxState::Failed => {
            let code = row.error_code;
            let status = code
                .map(hourglass_meta::http_status_for)
                .and_then(|s| StatusCode::from_u16(s).ok())
                .unwrap_or(StatusCode::BAD_GATEWAY);
            Ok((
                status,
                Json(json!({"error": {
                    "code": "meta_refused",
                    "message": row.error_message.clone().unwrap_or_else(|| "Meta did not accept the message".into()),
                    "meta_code": code,
                    "outbox_id": row.id,
                }})),
            )
                .into_response())
        }
        OutboxState::Sent => {
            let message_id = row.wamid.clone();
            let mut record = json!({"id": message_id, "direction": "outbound"});
            // The contact as a thread knows it: a phone number without its `+`.
            let contact = row.contact.strip_prefix('+').unwrap_or(&row.contact);
            if let Some(thread) = state.store().find_thread(phone_number_id, contact).await? {
                let messages = state.store().thread_messages(thread.id).await?;
                let listed = messages_json(state, &thread, &messages).await?;
                if let Some(item) = listed["messages"]
                    .as_array()
                    .and_then(|m| m.iter().find(|m| m["id"] == json!(message_id)))
                {
                    record = item.clone();
                }
                // Until Meta reports the delivery, the charge is what a message of its
                // category delivered now would cost.
                let category = record["category"]
                    .as_str()
                    .and_then(hourglass_core::MessageCategory::from_meta);
                if let (true, Some(category)) = (record["charge"].is_null(), category) {
                    let window = window_state(state, &thread, now()).await?;
                    record["charge"] = charge_json(window.charge(category));
                    record["charge_is_estimate"] = json!(true);
                }
            }
            record["meta_message_id"] = json!(message_id);
            record["outbox_id"] = json!(row.id);
            record["rendered"] = rendered_of(state, phone_number_id, request)
                .await
                .map(|r| crate::templates::rendered_json(&r))
                .unwrap_or(Value::Null);
            Ok((StatusCode::CREATED, Json(json!({"message": record}))).into_response())
        }
    }
}

/// What the customer sees of a template send, when the registry knows the template.
async fn rendered_of(
    state: &AppState,
    phone_number_id: &str,
    request: &Value,
) -> Option<hourglass_core::template::Rendered> {
    let template = request.get("template")?;
    let name = template.get("name")?.as_str()?;
    let language = template.get("language")?.as_str()?;
    let definition = registry_definition(state, phone_number_id, name, language)
        .await
        .ok()
        .flatten()?;
    let params = params_of_request(Some(&definition), template).ok()?;
    hourglass_core::template::render(&definition, &params).ok()
}

/// Meta's title for the codes Hourglass refuses with.
fn meta_title(code: i64) -> &'static str {
    use hourglass_meta::send::*;
    match code {
        131047 => RE_ENGAGEMENT.1,
        132000 => PARAM_COUNT_MISMATCH.1,
        132001 => TEMPLATE_DOES_NOT_EXIST.1,
        132005 => TEMPLATE_TEXT_TOO_LONG.1,
        132012 => PARAM_FORMAT_MISMATCH.1,
        132015 => TEMPLATE_PAUSED.1,
        132016 => TEMPLATE_DISABLED.1,
        131008 => REQUIRED_PARAMETER_MISSING.1,
        132018 => TEMPLATE_PARAM_TEXT_INVALID.1,
        _ => INVALID_PARAMETER.1,
    }
}
