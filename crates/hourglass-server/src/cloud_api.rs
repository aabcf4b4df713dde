//! The drop-in Cloud API endpoint, `POST /{version}/{phone_number_id}/messages`: Meta's
//! request in, Meta's answer out; free-form messages outside the customer service window
//! are refused here, with Meta's own 131047 envelope, before they cost anything
//! (DESIGN.md §3.3; Meta: "Send messages", "Error codes").

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use hourglass_core::{Instant, MessageCategory, SendDecision};
use hourglass_meta::send::{INVALID_PARAMETER, RE_ENGAGEMENT};
use hourglass_meta::{parse_send_request, SendRequest, SendResponse};
use hourglass_store::{ContactKey, OutboundMessage, Refusal, ThreadRow};

use crate::app::AppState;
use crate::auth::{authenticate, AuthError};
use crate::error::{meta_answer, MetaApiError};
use crate::metrics::SendOutcome;
use crate::templates::{check_template_send, reopening_templates};
use crate::time::{format_instant, now};
use crate::windows::free_form_decision;

/// Meta's versions look like `v21.0`.
fn is_graph_version(version: &str) -> bool {
    version
        .strip_prefix('v')
        .and_then(|rest| rest.split_once('.'))
        .is_some_and(|(major, minor)| {
            !major.is_empty()
                && !minor.is_empty()
                && major.bytes().all(|b| b.is_ascii_digit())
                && minor.bytes().all(|b| b.is_ascii_digit())
        })
}

fn describe_ago(seconds: i64) -> String {
    match seconds {
        s if s < 120 => format!("{s} seconds ago"),
        s if s < 2 * 3600 => format!("{} minutes ago", s / 60),
        s if s < 2 * 86_400 => format!("{} hours ago", s / 3600),
        s => format!("{} days ago", s / 86_400),
    }
}

/// The `details` of a 131047 refusal: when the window closed, and what to do instead,
/// naming approved templates that could reopen the conversation when the registry has
/// some.
pub fn window_closed_details(
    contact: &str,
    closed_at: Option<Instant>,
    at: Instant,
    templates: &[String],
) -> String {
    let mut details = match closed_at {
        Some(closed_at) => format!(
            "Message failed to send because more than 24 hours have passed since the customer last replied to this number. \
             The customer service window with {contact} closed at {} ({}): send an approved template to reopen the conversation.",
            format_instant(closed_at),
            describe_ago(closed_at.seconds_until(at)),
        ),
        None => format!(
            "Message failed to send because {contact} has never written to this number, so no customer service window is open: \
             only an approved template can start the conversation."
        ),
    };
    if !templates.is_empty() {
        details.push_str(&format!(
            " Approved templates that could reopen it: {}.",
            templates.join(", ")
        ));
    }
    details
}

pub async fn send_message(
    State(state): State<AppState>,
    Path((version, phone_number_id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, MetaApiError> {
    let metrics = state.metrics();
    if !is_graph_version(&version) {
        return Err(MetaApiError::new(
            INVALID_PARAMETER.0,
            INVALID_PARAMETER.1,
            format!("`{version}` is not a Graph API version: use a path like /v21.0/{phone_number_id}/messages"),
        ));
    }
    let principal = authenticate(state.store(), state.config().api_key.as_ref(), &headers)
        .await
        .map_err(|e| match e {
            AuthError::Store(e) => {
                tracing::error!(error = %e, "could not check an API key");
                MetaApiError::new(
                    131000,
                    "Something went wrong",
                    "Hourglass could not check the API key: retry shortly",
                )
            }
            other => MetaApiError::new(190, "Invalid OAuth access token", other.to_string()),
        })?;
    if !principal.may_use(&phone_number_id) {
        return Err(not_found_number(&phone_number_id));
    }
    if is_read_receipt(&body) {
        // Marking a message read (and the typing indicator that rides on it) is not a
        // message: Meta takes it on this endpoint in any window, and so does Hourglass.
        return forward_as_is(&state, &version, &phone_number_id, &body).await;
    }
    let request = parse_send_request(&body).map_err(|e| {
        metrics.send(SendOutcome::Invalid);
        MetaApiError::new(e.meta_code(), INVALID_PARAMETER.1, e.to_string())
    })?;
    let contact = contact_of(&request).ok_or_else(|| {
        metrics.send(SendOutcome::Invalid);
        MetaApiError::new(
            INVALID_PARAMETER.0,
            INVALID_PARAMETER.1,
            "`to` must be the recipient's phone number in international format (or `recipient` a business-scoped user id)",
        )
    })?;
    let answer =
        check_and_forward(&state, &version, &phone_number_id, &body, &request, contact).await?;
    Ok(meta_answer(answer.status, answer.body))
}

/// What the upstream answered to a send that passed Hourglass's checks.
pub struct Forwarded {
    pub status: u16,
    pub body: Vec<u8>,
    /// Meta's id of the message, when Meta accepted it.
    pub message_id: Option<String>,
    /// The message as the customer sees it, when it is a template the registry knows.
    pub rendered: Option<hourglass_core::template::Rendered>,
}

/// The checks every send goes through, then the upstream: a free-form message needs the
/// customer service window open; a template must be known, approved and filled in as the
/// registry says. A refusal is recorded and never reaches Meta; an accepted send is
/// recorded with its category so that its statuses attach and its charge is right.
pub async fn check_and_forward(
    state: &AppState,
    version: &str,
    phone_number_id: &str,
    body: &[u8],
    request: &SendRequest,
    contact: ContactKey,
) -> Result<Forwarded, MetaApiError> {
    let metrics = state.metrics();
    let at = now();
    let recipient = contact
        .wa_id
        .clone()
        .or(contact.user_id.clone())
        .unwrap_or_default();
    let recipient_of_refusal = &recipient;
    let refuse = |thread_id: Option<i64>, error: MetaApiError| async move {
        let refusal = Refusal {
            phone_number_id: phone_number_id.to_owned(),
            thread_id,
            recipient: Some(recipient_of_refusal.clone()),
            at,
            code: error.code,
            reason: error.details.clone(),
            request: String::from_utf8_lossy(body).into_owned(),
        };
        if let Err(error) = state.store().record_refusal(&refusal).await {
            tracing::error!(%error, "could not record a refused send");
        }
        error
    };

    let category;
    let mut rendered = None;
    if let Some(template) = &request.template {
        let params = hourglass_meta::template::render_params_from_components(&template.components)
            .map_err(|e| e.to_string());
        match check_template_send(
            state,
            phone_number_id,
            &template.name,
            &template.language,
            params,
        )
        .await
        {
            Ok(checked) => {
                category = checked.category;
                rendered = checked.rendered;
            }
            Err(error) => {
                metrics.send(SendOutcome::RefusedTemplate);
                let thread_id = find_contact_thread(state, phone_number_id, &contact)
                    .await
                    .ok()
                    .flatten()
                    .map(|t| t.id);
                return Err(refuse(thread_id, error).await);
            }
        }
    } else {
        category = Some(MessageCategory::Service);
        let thread = find_contact_thread(state, phone_number_id, &contact).await?;
        let closed_at = match &thread {
            None => Some(None),
            Some(thread) => {
                // Meta's timestamp on the contact's latest message (or reaction, where
                // they count) may be a moment ahead of our clock; a reply sent at once
                // must not be judged before it.
                let at = at.max(thread.window_anchor(state.rule_settings()).unwrap_or(at));
                match free_form_decision(state, thread, at) {
                    SendDecision::Allow => None,
                    SendDecision::RefuseWindowClosed { closed_at } => Some(closed_at),
                }
            }
        };
        if let Some(closed_at) = closed_at {
            metrics.send(SendOutcome::RefusedWindowClosed);
            let suggestions = reopening_templates(state, phone_number_id).await;
            let details = window_closed_details(&recipient, closed_at, at, &suggestions);
            let error = MetaApiError::new(RE_ENGAGEMENT.0, RE_ENGAGEMENT.1, details);
            return Err(refuse(thread.as_ref().map(|t| t.id), error).await);
        }
    }

    let answer = state
        .upstream()
        .send_message(version, phone_number_id, body, request)
        .await
        .map_err(|error| {
            metrics.send(SendOutcome::UpstreamError);
            tracing::error!(%error, "upstream unreachable");
            // A timeout is ambiguous: Meta may have taken the message without answering.
            MetaApiError::upstream_unreachable(
                error,
                "if it timed out, Meta may still have sent the message (its status webhook will tell)",
            )
        })?;
    let mut message_id = None;
    if (200..300).contains(&answer.status) {
        metrics.send(SendOutcome::Forwarded);
        message_id = record_accepted_send(
            state,
            phone_number_id,
            contact,
            request,
            category,
            &answer.body,
            at,
        )
        .await;
    }
    Ok(Forwarded {
        status: answer.status,
        body: answer.body,
        message_id,
        rendered,
    })
}

/// The thread of a contact named by a send: by phone number, else by business-scoped id.
async fn find_contact_thread(
    state: &AppState,
    phone_number_id: &str,
    contact: &ContactKey,
) -> Result<Option<ThreadRow>, MetaApiError> {
    for key in [contact.wa_id.as_deref(), contact.user_id.as_deref()]
        .into_iter()
        .flatten()
    {
        let thread = state
            .store()
            .find_thread(phone_number_id, key)
            .await
            .map_err(storage_unavailable)?;
        if thread.is_some() {
            return Ok(thread);
        }
    }
    Ok(None)
}

/// `{"messaging_product": "whatsapp", "status": "read", "message_id": "wamid…"}`
/// (Meta: "Mark messages as read").
fn is_read_receipt(body: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(body).is_ok_and(|v| {
        v.get("status").and_then(|s| s.as_str()) == Some("read") && v.get("message_id").is_some()
    })
}

async fn forward_as_is(
    state: &AppState,
    version: &str,
    phone_number_id: &str,
    body: &[u8],
) -> Result<Response, MetaApiError> {
    let answer = state
        .upstream()
        .forward(version, phone_number_id, body)
        .await
        .map_err(|error| {
            state.metrics().send(SendOutcome::UpstreamError);
            MetaApiError::upstream_unreachable(error, "nothing was changed")
        })?;
    Ok(meta_answer(answer.status, answer.body))
}

pub(crate) fn contact_of(request: &SendRequest) -> Option<ContactKey> {
    match (request.recipient_wa_id(), &request.recipient) {
        (None, None) => None,
        (wa_id, user_id) => Some(ContactKey {
            wa_id,
            user_id: user_id.clone(),
        }),
    }
}

fn not_found_number(phone_number_id: &str) -> MetaApiError {
    MetaApiError {
        code: 100,
        title: "Invalid parameter".into(),
        details: format!(
            "Unsupported post request. Object with ID '{phone_number_id}' does not exist, or this API key may not use it"
        ),
    }
}

fn storage_unavailable(error: hourglass_store::StoreError) -> MetaApiError {
    tracing::error!(%error, "storage unavailable while checking a send");
    MetaApiError::new(
        131000,
        "Something went wrong",
        "Hourglass could not check the customer service window (storage unavailable); nothing was sent: retry shortly",
    )
}

/// Records a send Meta accepted, so its statuses attach and its charge can be decided.
/// A failure here is logged, not returned: the message has left, and its status webhooks
/// will record it anyway.
async fn record_accepted_send(
    state: &AppState,
    phone_number_id: &str,
    contact: ContactKey,
    request: &SendRequest,
    category: Option<MessageCategory>,
    answer: &[u8],
    at: Instant,
) -> Option<String> {
    let Ok(response) = serde_json::from_slice::<SendResponse>(answer) else {
        tracing::warn!("upstream answered 2xx with a body that is not Meta's send response");
        return None;
    };
    let message_id = response.first_message_id()?;
    // Meta's `wa_id` is the contact's real id: the number as typed may differ (Brazil's
    // extra 9, Mexico's 521), and the statuses will name Meta's.
    let contact = ContactKey {
        wa_id: response
            .contacts
            .first()
            .and_then(|c| c.wa_id.clone())
            .or(contact.wa_id),
        user_id: contact.user_id,
    };
    let template = request.template.as_ref();
    let message = OutboundMessage {
        message_id: message_id.to_owned(),
        phone_number_id: phone_number_id.to_owned(),
        contact,
        sent_at: at,
        message_type: request.kind.clone(),
        // A template's category comes from the registry; when the registry does not know
        // the template, Meta's statuses tell it.
        category,
        template_name: template.map(|t| t.name.clone()),
        template_language: template.map(|t| t.language.clone()),
        body: request.raw.to_string(),
    };
    if let Err(error) = state.store().record_outbound(&message).await {
        tracing::error!(%error, message_id, "could not record an accepted send");
    }
    Some(message_id.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn graph_versions_are_recognised() {
        assert!(is_graph_version("v21.0"));
        assert!(is_graph_version("v9.12"));
        assert!(!is_graph_version("v1"));
        assert!(!is_graph_version("21.0"));
        assert!(!is_graph_version("vx.0"));
    }

    #[test]
    fn refusal_details_say_when_the_window_closed_and_what_to_do() {
        let at = Instant::from_unix_seconds(1_795_000_000);
        let closed = at.plus_seconds(-22 * 3600);
        let details = window_closed_details("16505551234", Some(closed), at, &[]);
        assert!(details.contains("22 hours ago"), "{details}");
        assert!(details.contains(&format_instant(closed)), "{details}");
        assert!(details.contains("template"), "{details}");
    }
}
