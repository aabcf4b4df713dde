//! The Cloud API's send endpoint, `POST /{version}/{phone_number_id}/messages`: the
//! request body clients send, the response Meta answers with, Meta's error envelope, and
//! builders for the webhooks Meta sends about such messages (used by the sandbox and by
//! tests).

use crate::json::string_at;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

/// A send request body, as far as Hourglass needs to understand it.
///
/// Follows Meta's "Messages API reference" (`POST /<PHONE_NUMBER_ID>/messages`) and
/// "Send messages"; `recipient` follows "Business-scoped user IDs". The rest of the body
/// (the text, the media, …) stays in [`SendRequest::raw`] and is forwarded unchanged.
#[derive(Debug, Clone, PartialEq)]
pub struct SendRequest {
    /// `whatsapp`, which Meta requires.
    pub messaging_product: Option<String>,
    /// `individual` (Meta's default) or `group`.
    pub recipient_type: Option<String>,
    /// The recipient's phone number, as the client wrote it.
    pub to: Option<String>,
    /// The recipient's business-scoped user id (or parent id). Meta uses `to` when both
    /// are present.
    pub recipient: Option<String>,
    /// Meta's `type`; `text` when absent, as Meta defaults it.
    pub kind: String,
    /// The template, for `type: "template"`.
    pub template: Option<TemplateRef>,
    /// The body exactly as received.
    pub raw: Value,
}

/// The template a send request names.
///
/// Follows "Send template messages": `template.name`, `template.language.code`,
/// `template.components`.
#[derive(Debug, Clone, PartialEq)]
pub struct TemplateRef {
    /// The template's name.
    pub name: String,
    /// `language.code`, e.g. `en_US`.
    pub language: String,
    /// The `components` array as sent (parameters for header, body and buttons); `[]`
    /// when the client sent none.
    pub components: Value,
}

impl SendRequest {
    /// Whether this sends a template (everything else is a free-form message).
    pub fn is_template(&self) -> bool {
        self.kind == "template"
    }

    /// The recipient's WhatsApp id: `to` without the `+`, spaces, hyphens and
    /// parentheses that Meta's "Phone number formats" (in "Send messages") allows.
    /// `None` when there is no `to` or what is left is not all digits.
    pub fn recipient_wa_id(&self) -> Option<String> {
        let digits: String = self
            .to
            .as_deref()?
            .chars()
            .filter(|c| !matches!(c, '+' | ' ' | '-' | '(' | ')'))
            .collect();
        (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())).then_some(digits)
    }
}

/// Why a send request body was refused before anything reached Meta.
///
/// Meta answers a malformed request with code 100, "Invalid parameter"; see
/// [`SendRequestError::meta_code`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendRequestError {
    /// The body is not JSON.
    #[error("request body is not JSON: {0}")]
    NotJson(String),
    /// The body is JSON but not an object.
    #[error("request body must be a JSON object, as in Meta's Messages API reference")]
    NotObject,
    /// A field has the wrong JSON type.
    #[error("`{field}` must be {expected}")]
    WrongType {
        /// The field, as a path (`template.name`).
        field: &'static str,
        /// What it must be, in words.
        expected: &'static str,
    },
    /// Neither `to` nor `recipient` is present.
    #[error(
        "`to` is required: the recipient's phone number (or `recipient`, their \
         business-scoped user id)"
    )]
    MissingRecipient,
    /// `type` is `template` but there is no `template` object.
    #[error("`template` is required when `type` is \"template\": give its `name` and `language`")]
    MissingTemplate,
    /// The template has no name.
    #[error("`template.name` is required: the name of an approved template")]
    MissingTemplateName,
    /// The template has no language code.
    #[error("`template.language.code` is required: the template's language, e.g. \"en_US\"")]
    MissingTemplateLanguage,
}

impl SendRequestError {
    /// Meta's error code for this refusal: 100, "Invalid parameter" ("Error codes").
    pub fn meta_code(&self) -> i64 {
        INVALID_PARAMETER.0
    }
}

/// Parses a send request body.
pub fn parse_send_request(body: &[u8]) -> Result<SendRequest, SendRequestError> {
    let raw: Value =
        serde_json::from_slice(body).map_err(|e| SendRequestError::NotJson(e.to_string()))?;
    let object = raw.as_object().ok_or(SendRequestError::NotObject)?;
    let messaging_product = optional_string(object, "messaging_product")?;
    let recipient_type = optional_string(object, "recipient_type")?;
    let to = optional_string(object, "to")?;
    let recipient = optional_string(object, "recipient")?;
    if to.is_none() && recipient.is_none() {
        return Err(SendRequestError::MissingRecipient);
    }
    let kind = optional_string(object, "type")?.unwrap_or_else(|| "text".to_owned());
    let template = if kind == "template" {
        Some(parse_template(object.get("template"))?)
    } else {
        None
    };
    Ok(SendRequest {
        messaging_product,
        recipient_type,
        to,
        recipient,
        kind,
        template,
        raw,
    })
}

fn optional_string(
    object: &Map<String, Value>,
    field: &'static str,
) -> Result<Option<String>, SendRequestError> {
    match object.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(SendRequestError::WrongType {
            field,
            expected: "a string",
        }),
    }
}

fn parse_template(template: Option<&Value>) -> Result<TemplateRef, SendRequestError> {
    let template = match template {
        None | Some(Value::Null) => return Err(SendRequestError::MissingTemplate),
        Some(template) => template.as_object().ok_or(SendRequestError::WrongType {
            field: "template",
            expected: "an object with `name` and `language`",
        })?,
    };
    let name = optional_string(template, "name")
        .map_err(|_| SendRequestError::WrongType {
            field: "template.name",
            expected: "a string",
        })?
        .filter(|name| !name.is_empty())
        .ok_or(SendRequestError::MissingTemplateName)?;
    let language = template
        .get("language")
        .and_then(|language| string_at(language, &["code"]))
        .filter(|code| !code.is_empty())
        .ok_or(SendRequestError::MissingTemplateLanguage)?;
    let components = match template.get("components") {
        None | Some(Value::Null) => Value::Array(Vec::new()),
        Some(components @ Value::Array(_)) => components.clone(),
        Some(_) => {
            return Err(SendRequestError::WrongType {
                field: "template.components",
                expected: "an array",
            })
        }
    };
    Ok(TemplateRef {
        name,
        language,
        components,
    })
}

/// Meta's answer to a successful send.
///
/// Follows "Messages API reference" (response) and "Business-scoped user IDs"
/// (`contacts[].wa_id` is omitted and `contacts[].user_id` returned for sends to a
/// business-scoped user id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendResponse {
    /// Always `whatsapp`.
    pub messaging_product: String,
    /// Who the message went to.
    pub contacts: Vec<SendResponseContact>,
    /// The message ids Meta assigned; one per send.
    pub messages: Vec<SendResponseMessage>,
}

/// One `contacts[]` item of a [`SendResponse`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendResponseContact {
    /// The `to` (or `recipient`) exactly as the client sent it.
    pub input: String,
    /// The recipient's WhatsApp id; absent for sends to a business-scoped user id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wa_id: Option<String>,
    /// The recipient's business-scoped user id, for sends to one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
}

/// One `messages[]` item of a [`SendResponse`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendResponseMessage {
    /// Meta's message id (`wamid.…`).
    pub id: String,
    /// `accepted` or `held_for_quality_assessment`, for template sends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_status: Option<String>,
}

impl SendResponse {
    /// The id of the (first and usually only) message sent.
    pub fn first_message_id(&self) -> Option<&str> {
        self.messages.first().map(|message| message.id.as_str())
    }
}

// Error codes and titles, from Meta's "Error codes" page (WhatsApp Business Platform,
// Support). The synchronous message is "(#CODE) Title".

/// 100: the request had an unsupported, misspelled or missing parameter. HTTP 400.
pub const INVALID_PARAMETER: (i64, &str) = (100, "Invalid parameter");
/// 131047: more than 24 hours since the customer last wrote; only templates may be
/// sent. HTTP 400.
pub const RE_ENGAGEMENT: (i64, &str) = (131047, "Re-engagement message");
/// 132000: the number of template parameters sent does not match the template. HTTP 400.
pub const PARAM_COUNT_MISMATCH: (i64, &str) = (
    132000,
    "Number of parameters does not match the expected number of params",
);
/// 132001: no template of that name in that language. HTTP 404.
pub const TEMPLATE_DOES_NOT_EXIST: (i64, &str) = (132001, "Template does not exist");
/// 131008: a required parameter is missing, e.g. the suffix of a URL button whose URL has a
/// parameter (Meta's details: "Button at index 0 of type Url requires a parameter").
/// HTTP 400.
pub const REQUIRED_PARAMETER_MISSING: (i64, &str) = (131008, "Required parameter is missing");
/// 132005: the template is too long once its parameters are filled in. Meta's error page
/// calls it "Template Hydrated Text Too Long"; the synchronous message reads as below.
/// HTTP 400.
pub const TEMPLATE_TEXT_TOO_LONG: (i64, &str) = (132005, "Translated text too long");
/// 132012: the parameter values do not use the format of the template, e.g. no media for a
/// media header ("header: Format mismatch, expected IMAGE, received UNKNOWN"). Meta's error
/// page calls it "Template Parameter Format Mismatch"; the synchronous message reads as
/// below. HTTP 400.
pub const PARAM_FORMAT_MISMATCH: (i64, &str) = (
    132012,
    "Parameter format does not match format in the created template",
);
/// 132018: a parameter's text has a new line, a tab or more than four spaces in a row
/// (Meta's details: "Param text cannot have new-line/tab characters or more than 4
/// consecutive spaces"). Known from Meta's answers quoted by integrators since v23.0; the
/// error page Hourglass follows does not list it, so the title is theirs. HTTP 400.
pub const TEMPLATE_PARAM_TEXT_INVALID: (i64, &str) = (
    132018,
    "There's an issue with the parameters in your template",
);
/// 132015: the template is paused for low quality. HTTP 400.
pub const TEMPLATE_PAUSED: (i64, &str) = (132015, "Template is Paused");
/// 132016: the template was paused too many times and is disabled for good. HTTP 400.
pub const TEMPLATE_DISABLED: (i64, &str) = (132016, "Template is Disabled");

/// Meta's error envelope, as the Graph API returns it on a refused request.
///
/// Follows "Error codes" ("Error response syntax").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetaErrorEnvelope {
    /// The error.
    pub error: MetaErrorBody,
}

/// The `error` object of a [`MetaErrorEnvelope`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetaErrorBody {
    /// `(#CODE) Title`.
    pub message: String,
    /// The Graph API exception type; `OAuthException` for Cloud API errors.
    #[serde(rename = "type")]
    pub kind: String,
    /// Meta's error code.
    pub code: i64,
    /// `messaging_product` and the explanation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_data: Option<MetaErrorData>,
    /// Meta's trace id, for support requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fbtrace_id: Option<String>,
}

/// The `error.error_data` object of a [`MetaErrorEnvelope`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetaErrorData {
    /// Always `whatsapp`.
    pub messaging_product: String,
    /// What went wrong and what to do.
    pub details: String,
}

/// Builds Meta's error envelope:
/// `{"error": {"message": "(#CODE) Title", "type": "OAuthException", "code": CODE,
/// "error_data": {"messaging_product": "whatsapp", "details": …}, "fbtrace_id": …}}`.
///
/// Follows "Error codes" ("Error response syntax").
pub fn error_envelope(code: i64, title: &str, details: &str, fbtrace_id: &str) -> Value {
    json!({
        "error": {
            "message": format!("(#{code}) {title}"),
            "type": "OAuthException",
            "code": code,
            "error_data": {
                "messaging_product": "whatsapp",
                "details": details,
            },
            "fbtrace_id": fbtrace_id,
        }
    })
}

/// The HTTP status Meta answers with for an error code.
///
/// Follows the "HTTP Status" column of Meta's "Error codes" page; codes it does not list
/// get 400 Bad Request, the status of most Cloud API request errors.
pub fn http_status_for(code: i64) -> u16 {
    match code {
        // AuthException; Access token has expired.
        0 | 190 => 401,
        // Permission denied; API permission.
        10 | 200..=299 => 403,
        // Temporarily blocked for policy violations; business account restricted from
        // messaging users in this country.
        368 | 130497 => 403,
        // Template does not exist.
        132001 => 404,
        // Rate limit hit (Cloud API throughput).
        130429 => 429,
        // API method (capability or permissions issue); something went wrong.
        3 | 131000 => 500,
        // API service (temporary downtime or overload); service unavailable.
        2 | 131016 => 503,
        // Everything else, including 100 Invalid parameter, 131008 Required parameter is
        // missing, 131026 Message undeliverable, 131047 Re-engagement message, 132000
        // parameter count mismatch, 132015 Template is Paused, 132016 Template is Disabled.
        _ => 400,
    }
}

/// One inbound text message, for [`build_inbound_webhook`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundTextParams<'a> {
    /// The WhatsApp Business Account id (`entry[].id`).
    pub waba_id: &'a str,
    /// The business number's id.
    pub phone_number_id: &'a str,
    /// The business number as displayed, digits only.
    pub display_phone_number: &'a str,
    /// The sender's WhatsApp id (phone number, digits only).
    pub wa_id: &'a str,
    /// The sender's business-scoped user id; when given it appears as
    /// `contacts[].user_id` and `messages[].from_user_id`, as Meta sends it since 2026.
    pub user_id: Option<&'a str>,
    /// The sender's profile name.
    pub profile_name: &'a str,
    /// Meta's message id (`wamid.…`).
    pub message_id: &'a str,
    /// When the message was sent, Unix seconds.
    pub timestamp: i64,
    /// The text.
    pub body: &'a str,
    /// `referral.source_type` (`ad` or `post`), when the user came from an ad or post.
    pub referral_source_type: Option<&'a str>,
}

/// Builds the `messages` webhook Meta sends for one inbound text message.
///
/// Follows "Text messages webhook reference" (and its `referral` for Click-to-WhatsApp
/// ads); the output has the shape of the `inbound_text.json` fixture.
pub fn build_inbound_webhook(params: &InboundTextParams<'_>) -> Value {
    let mut contact = json!({
        "profile": {"name": params.profile_name},
        "wa_id": params.wa_id,
    });
    let mut message = json!({
        "from": params.wa_id,
        "id": params.message_id,
        "timestamp": params.timestamp.to_string(),
        "type": "text",
        "text": {"body": params.body},
    });
    if let Some(user_id) = params.user_id {
        contact["user_id"] = json!(user_id);
        message["from_user_id"] = json!(user_id);
    }
    if let Some(source_type) = params.referral_source_type {
        message["referral"] = json!({"source_type": source_type});
    }
    envelope(
        params.waba_id,
        params.phone_number_id,
        params.display_phone_number,
        [
            ("contacts", json!([contact])),
            ("messages", json!([message])),
        ],
    )
}

/// One status of a business message, for [`build_status_webhook`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusParams<'a> {
    /// The WhatsApp Business Account id (`entry[].id`).
    pub waba_id: &'a str,
    /// The business number's id.
    pub phone_number_id: &'a str,
    /// The business number as displayed, digits only.
    pub display_phone_number: &'a str,
    /// Meta's id of the business message.
    pub message_id: &'a str,
    /// The recipient's WhatsApp id.
    pub recipient_wa_id: &'a str,
    /// The recipient's business-scoped user id, as `recipient_user_id`.
    pub recipient_user_id: Option<&'a str>,
    /// `sent`, `delivered`, `read` or `failed`.
    pub status: &'a str,
    /// When the message reached that status, Unix seconds.
    pub timestamp: i64,
    /// The billing conversation, when there is one.
    pub conversation: Option<ConversationParams<'a>>,
    /// How the message is priced, when Meta says (it does not on `read` since v24).
    pub pricing: Option<PricingParams<'a>>,
    /// The sender's `biz_opaque_callback_data`, which Meta echoes on every status.
    pub biz_opaque_callback_data: Option<&'a str>,
}

/// The `conversation` object of a status, for [`StatusParams`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationParams<'a> {
    /// Meta's billing conversation id.
    pub id: &'a str,
    /// `origin.type`: `marketing`, `service`, `referral_conversion`, …
    pub origin_type: &'a str,
    /// When it ends, Unix seconds; Meta sends it on the status that opened it.
    pub expiration_timestamp: Option<i64>,
}

/// The `pricing` object of a status, for [`StatusParams`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PricingParams<'a> {
    /// Whether the message is charged.
    pub billable: bool,
    /// `PMP` or `CBP`.
    pub pricing_model: &'a str,
    /// Meta's `type` (`regular`, `free_customer_service`, `free_entry_point`); absent
    /// under conversation-based pricing.
    pub kind: Option<&'a str>,
    /// `marketing`, `utility`, `authentication`, `service`, `referral_conversion`.
    pub category: &'a str,
}

/// Builds the `messages` webhook Meta sends for one status of a business message.
///
/// Follows "Status messages webhook reference"; the output has the shape of the
/// `status_*.json` fixtures.
pub fn build_status_webhook(params: &StatusParams<'_>) -> Value {
    let mut status = json!({
        "id": params.message_id,
        "status": params.status,
        "timestamp": params.timestamp.to_string(),
        "recipient_id": params.recipient_wa_id,
    });
    if let Some(user_id) = params.recipient_user_id {
        status["recipient_user_id"] = json!(user_id);
    }
    if let Some(data) = params.biz_opaque_callback_data {
        status["biz_opaque_callback_data"] = json!(data);
    }
    if let Some(conversation) = &params.conversation {
        let mut object = json!({"id": conversation.id});
        if let Some(expiration) = conversation.expiration_timestamp {
            object["expiration_timestamp"] = json!(expiration.to_string());
        }
        object["origin"] = json!({"type": conversation.origin_type});
        status["conversation"] = object;
    }
    if let Some(pricing) = &params.pricing {
        let mut object = json!({
            "billable": pricing.billable,
            "pricing_model": pricing.pricing_model,
        });
        if let Some(kind) = pricing.kind {
            object["type"] = json!(kind);
        }
        object["category"] = json!(pricing.category);
        status["pricing"] = object;
    }
    envelope(
        params.waba_id,
        params.phone_number_id,
        params.display_phone_number,
        [("statuses", json!([status]))],
    )
}

/// The `whatsapp_business_account` envelope around one `messages` change, per
/// "messages webhook reference"; `lists` are the change value's arrays.
fn envelope<const N: usize>(
    waba_id: &str,
    phone_number_id: &str,
    display_phone_number: &str,
    lists: [(&str, Value); N],
) -> Value {
    let mut value = json!({
        "messaging_product": "whatsapp",
        "metadata": {
            "display_phone_number": display_phone_number,
            "phone_number_id": phone_number_id,
        },
    });
    for (key, list) in lists {
        value[key] = list;
    }
    json!({
        "object": "whatsapp_business_account",
        "entry": [{
            "id": waba_id,
            "changes": [{"value": value, "field": "messages"}],
        }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(json: Value) -> Result<SendRequest, SendRequestError> {
        parse_send_request(json.to_string().as_bytes())
    }

    #[test]
    fn a_request_without_type_is_text_as_meta_defaults_it() {
        let parsed =
            request(json!({"messaging_product": "whatsapp", "to": "1", "text": {"body": "x"}}))
                .unwrap();
        assert_eq!(parsed.kind, "text");
        assert!(!parsed.is_template());
    }

    #[test]
    fn a_request_without_to_or_recipient_says_to_is_required() {
        let error = request(json!({"type": "text", "text": {"body": "x"}})).unwrap_err();
        assert_eq!(error, SendRequestError::MissingRecipient);
        assert!(error
            .to_string()
            .starts_with("`to` is required: the recipient's phone number"));
        assert_eq!(error.meta_code(), 100);
    }

    #[test]
    fn a_request_to_a_business_scoped_user_id_needs_no_to() {
        let parsed =
            request(json!({"recipient": "US.13491208655302741918", "type": "text"})).unwrap();
        assert_eq!(parsed.recipient.as_deref(), Some("US.13491208655302741918"));
        assert_eq!(parsed.recipient_wa_id(), None);
    }

    #[test]
    fn template_requests_need_a_name_and_a_language_code() {
        assert_eq!(
            request(json!({"to": "1", "type": "template"})).unwrap_err(),
            SendRequestError::MissingTemplate
        );
        assert_eq!(
            request(
                json!({"to": "1", "type": "template", "template": {"language": {"code": "en"}}})
            )
            .unwrap_err(),
            SendRequestError::MissingTemplateName
        );
        assert_eq!(
            request(
                json!({"to": "1", "type": "template", "template": {"name": "t", "language": "en"}})
            )
            .unwrap_err(),
            SendRequestError::MissingTemplateLanguage
        );
        let parsed =
            request(json!({"to": "1", "type": "template", "template": {"name": "t", "language": {"code": "en"}}}))
                .unwrap();
        assert_eq!(parsed.template.unwrap().components, json!([]));
    }

    #[test]
    fn wrongly_typed_fields_are_named() {
        let error = request(json!({"to": 16505551234_i64})).unwrap_err();
        assert_eq!(error.to_string(), "`to` must be a string");
    }

    #[test]
    fn bodies_that_are_not_json_objects_are_refused() {
        assert!(matches!(
            parse_send_request(b"to=1"),
            Err(SendRequestError::NotJson(_))
        ));
        assert_eq!(
            parse_send_request(b"[1]").unwrap_err(),
            SendRequestError::NotObject
        );
    }

    #[test]
    fn recipient_wa_id_keeps_digits_only() {
        let with_to = |to: &str| SendRequest {
            messaging_product: None,
            recipient_type: None,
            to: Some(to.to_owned()),
            recipient: None,
            kind: "text".to_owned(),
            template: None,
            raw: Value::Null,
        };
        assert_eq!(
            with_to("+1 (650) 555-1234").recipient_wa_id().as_deref(),
            Some("16505551234")
        );
        assert_eq!(
            with_to("16505551234").recipient_wa_id().as_deref(),
            Some("16505551234")
        );
        assert_eq!(with_to("+1 650 CALL-NOW").recipient_wa_id(), None);
        assert_eq!(with_to("+").recipient_wa_id(), None);
    }

    #[test]
    fn http_statuses_follow_metas_error_codes_page() {
        for (code, status) in [
            (RE_ENGAGEMENT.0, 400),
            (PARAM_COUNT_MISMATCH.0, 400),
            (TEMPLATE_DOES_NOT_EXIST.0, 404),
            (TEMPLATE_PAUSED.0, 400),
            (TEMPLATE_DISABLED.0, 400),
            (INVALID_PARAMETER.0, 400),
            (190, 401),
            (130429, 429),
            (131000, 500),
        ] {
            assert_eq!(http_status_for(code), status, "code {code}");
        }
    }

    #[test]
    fn the_error_envelope_puts_code_and_title_in_the_message() {
        let (code, title) = TEMPLATE_DOES_NOT_EXIST;
        let envelope = error_envelope(code, title, "no template `x` in en_US", "trace");
        assert_eq!(
            envelope["error"]["message"],
            "(#132001) Template does not exist"
        );
        assert_eq!(envelope["error"]["code"], 132001);
        let typed: MetaErrorEnvelope = serde_json::from_value(envelope).unwrap();
        assert_eq!(
            typed.error.error_data.unwrap().details,
            "no template `x` in en_US"
        );
    }
}
