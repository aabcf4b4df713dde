//! Hourglass's own send, for people who do not speak Meta's request format:
//! `POST /v1/numbers/{phone_number_id}/contacts/{contact}/messages` with
//! `{"text": "…"}` or `{"template": {"name", "language", "params", "header", "buttons"}}`.
//! It builds Meta's request, puts it through the same checks as the Cloud API endpoint
//! (window, registry, parameters), and answers with Hourglass's record of the message.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use hourglass_core::template::TemplateDefinition;
use hourglass_meta::parse_send_request;
use hourglass_meta::template::{components_from_render_params, parse_template_definition};
use serde_json::{json, Value};

use crate::api::principal_for_number;
use crate::app::AppState;
use crate::cloud_api::{check_and_forward, contact_of};
use crate::error::{ApiError, MetaApiError};
use crate::templates::params_of_request;
use crate::time::now;
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

/// `POST /v1/numbers/{phone_number_id}/contacts/{contact}/messages`
pub async fn send_to_contact(
    State(state): State<AppState>,
    Path((phone_number_id, contact)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    principal_for_number(&state, &headers, &phone_number_id).await?;
    let request: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request("invalid_body", format!("the body is not JSON: {e}")))?;
    let meta_body = meta_request(&state, &phone_number_id, &contact, &request).await?;
    let meta_bytes = meta_body.to_string().into_bytes();
    let send = parse_send_request(&meta_bytes)
        .map_err(|e| ApiError::bad_request("invalid_body", e.to_string()))?;
    let contact_key = contact_of(&send).ok_or_else(|| {
        ApiError::bad_request(
            "invalid_contact",
            "the contact must be a phone number or a user id",
        )
    })?;
    let version = state.config().meta.graph_version.clone();
    let forwarded = match check_and_forward(
        &state,
        &version,
        &phone_number_id,
        &meta_bytes,
        &send,
        contact_key,
    )
    .await
    {
        Ok(forwarded) => forwarded,
        Err(error) => return Ok(refused(error)),
    };
    let Some(message_id) = forwarded.message_id else {
        let meta: Value = serde_json::from_slice(&forwarded.body).unwrap_or(Value::Null);
        let status = StatusCode::from_u16(forwarded.status)
            .ok()
            .filter(|s| s.is_client_error() || s.is_server_error())
            .unwrap_or(StatusCode::BAD_GATEWAY);
        return Ok((
            status,
            Json(json!({"error": {
                "code": "meta_refused",
                "message": meta["error"]["error_data"]["details"]
                    .as_str()
                    .or(meta["error"]["message"].as_str())
                    .unwrap_or("Meta did not accept the message"),
                "meta_code": meta["error"]["code"],
            }})),
        )
            .into_response());
    };
    // Answer with the stored record, so that it reads exactly as the thread's messages do.
    let thread = state
        .store()
        .find_thread(&phone_number_id, &contact)
        .await?;
    let mut record = json!({"id": message_id, "direction": "outbound"});
    if let Some(thread) = thread {
        let messages = state.store().thread_messages(thread.id).await?;
        let listed = messages_json(&state, &thread, &messages).await?;
        if let Some(item) = listed["messages"]
            .as_array()
            .and_then(|m| m.iter().find(|m| m["id"] == json!(message_id)))
        {
            record = item.clone();
        }
        // Until Meta reports the delivery, the charge is what a message of its category
        // delivered now would cost.
        let category = record["category"]
            .as_str()
            .and_then(hourglass_core::MessageCategory::from_meta);
        if let (true, Some(category)) = (record["charge"].is_null(), category) {
            let window = window_state(&state, &thread, now()).await?;
            record["charge"] = charge_json(window.charge(category));
            record["charge_is_estimate"] = json!(true);
        }
    }
    record["meta_message_id"] = json!(message_id);
    record["rendered"] = forwarded
        .rendered
        .as_ref()
        .map(crate::templates::rendered_json)
        .unwrap_or(Value::Null);
    Ok((StatusCode::CREATED, Json(json!({"message": record}))).into_response())
}
