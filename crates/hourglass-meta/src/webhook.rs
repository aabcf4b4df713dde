//! Webhook payloads Meta POSTs to `/webhook`.
//!
//! The envelope follows Meta's "Webhooks overview" and "messages webhook reference"
//! pages for the WhatsApp Business Platform: `{"object": …, "entry": [{"id": WABA id,
//! "changes": [{"field": …, "value": …}]}]}`. The envelope is parsed strictly, because a
//! body without it is not from Meta. Everything inside is parsed item by item: a change,
//! message, status or call that does not match Meta's documented shape is kept raw with
//! the reason, and the rest of the payload is still read.

use crate::json::{flag, optional_timestamp, string_at, timestamp};
use serde::Deserialize;
use serde_json::Value;

/// The webhook body did not have Meta's envelope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    /// Not JSON, or JSON without `object` (a string) and `entry` (an array of entries).
    /// The text is serde's, with line and column where it has them.
    #[error("webhook body is not Meta's JSON envelope: {0}")]
    Malformed(String),
}

/// One webhook request body.
#[derive(Debug, Clone, PartialEq)]
pub struct Webhook {
    /// Meta's `object`: `whatsapp_business_account` for everything Hourglass handles.
    pub object: String,
    /// Meta's `entry` array, in order.
    pub entries: Vec<Entry>,
}

/// One `entry[]` item: the changes for one WhatsApp Business Account.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The WhatsApp Business Account (WABA) id.
    pub id: String,
    /// Meta's `time`: when the entry's event happened (template webhooks carry no other
    /// instant). `None` when absent or unreadable.
    pub time: Option<i64>,
    /// The entry's `changes`, in order.
    pub changes: Vec<Change>,
}

/// One `changes[]` item.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// Meta's `field`: `messages`, `calls`, `account_update`, … Empty when the change had
    /// no readable `field` (its `value` is then [`ChangeValue::Unparsed`]).
    pub field: String,
    /// What Hourglass understood of the change.
    pub value: ChangeValue,
    /// The change's `value` as received; the whole change when it had no `value`.
    pub raw: Value,
}

/// What a change carries, by `field`.
#[derive(Debug, Clone, PartialEq)]
pub enum ChangeValue {
    /// `field: "messages"`: inbound messages, statuses of business messages, errors.
    Messages(MessagesValue),
    /// `field: "calls"`: Calling API events.
    Calls(CallsValue),
    /// `field: "message_template_status_update"`, `"template_category_update"` or
    /// `"message_template_quality_update"`.
    Template(TemplateUpdate),
    /// Any other field (`account_update`, …): only [`Change::raw`] is kept.
    Other,
    /// A `messages` or `calls` change (or a change without `field`) that could not be read.
    Unparsed {
        /// Why, in serde's words.
        reason: String,
    },
}

/// A list item that either matched Meta's documented shape or is kept raw.
#[derive(Debug, Clone, PartialEq)]
pub enum Item<T> {
    /// The item, read.
    Parsed(T),
    /// The item as received, and why it could not be read.
    Unparsed {
        /// The item exactly as Meta sent it.
        raw: Value,
        /// Why it could not be read, in serde's words.
        reason: String,
    },
}

impl<T> Item<T> {
    /// The parsed item, if it was read.
    pub fn parsed(&self) -> Option<&T> {
        match self {
            Item::Parsed(item) => Some(item),
            Item::Unparsed { .. } => None,
        }
    }
}

/// The business phone number a change is about.
///
/// Follows "messages webhook reference": `value.metadata`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Metadata {
    /// The business number as displayed, digits only (e.g. `15550783881`).
    pub display_phone_number: String,
    /// Meta's id for the business number; identifies it in the Cloud API.
    pub phone_number_id: String,
}

/// The `value` of a `messages` change.
///
/// Follows "messages webhook reference" (incoming messages, statuses and errors share
/// this value; each list is absent when empty).
#[derive(Debug, Clone, PartialEq)]
pub struct MessagesValue {
    /// Which business number.
    pub metadata: Metadata,
    /// The WhatsApp users the messages came from.
    pub contacts: Vec<Contact>,
    /// Inbound messages.
    pub messages: Vec<Item<InboundMessage>>,
    /// Statuses of messages the business sent.
    pub statuses: Vec<Item<Status>>,
    /// Errors about the account or number rather than one message (e.g. 130429).
    pub errors: Vec<MetaError>,
}

/// One `contacts[]` item: a WhatsApp user.
///
/// Follows "messages webhook reference" and "Business-scoped user IDs" (`user_id` and
/// `parent_user_id` appear from 2026; `wa_id` is omitted for users with a username).
/// Every field is optional and read leniently: a field of an unexpected type is `None`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Contact {
    /// The user's WhatsApp id: their phone number, digits only.
    pub wa_id: Option<String>,
    /// The business-scoped user id (BSUID), e.g. `US.13491208655302741918`.
    pub user_id: Option<String>,
    /// The parent BSUID shared across linked business portfolios, e.g. `US.ENT.…`.
    pub parent_user_id: Option<String>,
    /// `profile.name`: the name the user set in WhatsApp.
    pub profile_name: Option<String>,
}

/// One `messages[]` item: something a WhatsApp user sent to the business.
///
/// Follows "messages webhook reference" and its per-type pages ("Text messages", "Audio
/// messages", "Document messages", "Button messages", "Interactive messages",
/// "Reaction messages", "Unsupported messages", "System messages" webhook references).
/// `id`, `timestamp` and `type` are required; the content fields below are read leniently.
#[derive(Debug, Clone, PartialEq)]
pub struct InboundMessage {
    /// Meta's message id (`wamid.…`).
    pub id: String,
    /// The sender's phone number; absent for users with a username.
    pub from: Option<String>,
    /// The sender's business-scoped user id ("Business-scoped user IDs").
    pub from_user_id: Option<String>,
    /// When the user sent it, Unix seconds.
    pub timestamp: i64,
    /// Meta's `type`.
    pub kind: MessageKind,
    /// Where the user came from, when they tapped an ad or a post.
    pub referral: Option<Referral>,
    /// The message this one replies to or was forwarded from.
    pub context: Option<Context>,
    /// The media of an image, audio, video, document or sticker message.
    pub media: Option<Media>,
    /// Readable text: a text body, a quick-reply button's text, an interactive reply's
    /// title, or a media caption.
    pub text: Option<String>,
    /// Errors Meta attached to the message (e.g. 131051 on `unsupported`).
    pub errors: Vec<MetaError>,
    /// The message exactly as received.
    pub raw: Value,
}

/// Meta's message `type`.
///
/// Follows "messages webhook reference". Types Hourglass does not know are kept as
/// [`MessageKind::Other`] with Meta's string.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MessageKind {
    Text,
    Image,
    Audio,
    Video,
    Document,
    Sticker,
    Location,
    Contacts,
    /// A reply to an interactive message: button, list or flow reply.
    Interactive,
    /// A tap on a template's quick-reply button.
    Button,
    Order,
    Reaction,
    /// A notice from WhatsApp (e.g. the user changed number), not from the user.
    System,
    /// A type Cloud API does not support; carries error 131051.
    Unsupported,
    /// Meta's `request_welcome`: the user opened a chat for the first time.
    Request,
    /// Any other `type`, as Meta spelled it.
    Other(String),
}

impl MessageKind {
    /// Meta's `type` string for this kind.
    pub fn as_str(&self) -> &str {
        match self {
            MessageKind::Text => "text",
            MessageKind::Image => "image",
            MessageKind::Audio => "audio",
            MessageKind::Video => "video",
            MessageKind::Document => "document",
            MessageKind::Sticker => "sticker",
            MessageKind::Location => "location",
            MessageKind::Contacts => "contacts",
            MessageKind::Interactive => "interactive",
            MessageKind::Button => "button",
            MessageKind::Order => "order",
            MessageKind::Reaction => "reaction",
            MessageKind::System => "system",
            MessageKind::Unsupported => "unsupported",
            MessageKind::Request => "request_welcome",
            MessageKind::Other(other) => other,
        }
    }

    /// The kind for Meta's `type` string; unknown strings become [`MessageKind::Other`].
    pub fn from_meta(s: &str) -> Self {
        match s {
            "text" => MessageKind::Text,
            "image" => MessageKind::Image,
            "audio" => MessageKind::Audio,
            "video" => MessageKind::Video,
            "document" => MessageKind::Document,
            "sticker" => MessageKind::Sticker,
            "location" => MessageKind::Location,
            "contacts" => MessageKind::Contacts,
            "interactive" => MessageKind::Interactive,
            "button" => MessageKind::Button,
            "order" => MessageKind::Order,
            "reaction" => MessageKind::Reaction,
            "system" => MessageKind::System,
            "unsupported" => MessageKind::Unsupported,
            "request_welcome" => MessageKind::Request,
            other => MessageKind::Other(other.to_owned()),
        }
    }

    /// Whether messages of this kind carry a media object under the key [`Self::as_str`].
    fn has_media(&self) -> bool {
        matches!(
            self,
            MessageKind::Image
                | MessageKind::Audio
                | MessageKind::Video
                | MessageKind::Document
                | MessageKind::Sticker
        )
    }
}

/// Where a user came from: a Click-to-WhatsApp ad, a Page call to action, or a post.
///
/// Follows "messages webhook reference", the `referral` object of messages sent after
/// tapping an ad ("Click to WhatsApp ads").
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Referral {
    /// `ad` or `post`.
    pub source_type: Option<String>,
    /// The ad's or post's id.
    pub source_id: Option<String>,
    /// The URL of the ad or post.
    pub source_url: Option<String>,
    /// The Click-to-WhatsApp click id.
    pub ctwa_clid: Option<String>,
    /// The ad's headline.
    pub headline: Option<String>,
}

impl Referral {
    /// Whether the user came from an ad (`source_type == "ad"`), which makes the thread
    /// eligible for a free entry point; a boosted post (`post`) does not.
    pub fn is_ad(&self) -> bool {
        self.source_type.as_deref() == Some("ad")
    }
}

/// A message's `context`.
///
/// Follows "messages webhook reference" (`context.from`, `context.id`, `context.forwarded`,
/// `context.frequently_forwarded`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Context {
    /// The business number the replied-to message came from.
    pub from: Option<String>,
    /// The id of the message replied to.
    pub id: Option<String>,
    /// Whether the user forwarded this message (`forwarded`, or `frequently_forwarded`,
    /// which implies it).
    pub forwarded: bool,
}

/// The media object of an image, audio, video, document or sticker message.
///
/// Follows "Audio messages webhook reference" and "Document messages webhook reference".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Media {
    /// Meta's media id; download it through the Graph API.
    pub id: String,
    /// e.g. `audio/ogg; codecs=opus`.
    pub mime_type: Option<String>,
    /// Base64 SHA-256 of the file.
    pub sha256: Option<String>,
    /// A document's file name.
    pub filename: Option<String>,
    /// Whether an audio message is a voice note recorded in WhatsApp.
    pub voice: bool,
}

/// One `statuses[]` item: news about a message the business sent.
///
/// Follows "Status messages webhook reference", and "Business-scoped user IDs" for
/// `recipient_user_id`. The whole item is read strictly: a conversation expiration that
/// is not a timestamp makes the status [`Item::Unparsed`].
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    /// Meta's id of the business message (`wamid.…`).
    pub id: String,
    /// `sent`, `delivered`, `read`, `failed`, …
    pub status: StatusKind,
    /// When the message reached that status, Unix seconds.
    pub timestamp: i64,
    /// The recipient's phone number; absent when sent to a business-scoped user id.
    pub recipient_id: Option<String>,
    /// The recipient's business-scoped user id.
    pub recipient_user_id: Option<String>,
    /// The billing conversation (conversation-based pricing, and free entry points).
    pub conversation: Option<Conversation>,
    /// How Meta priced the message.
    pub pricing: Option<Pricing>,
    /// Why a `failed` message failed.
    pub errors: Vec<MetaError>,
    /// The opaque string the sender attached to the message, echoed back.
    pub biz_opaque_callback_data: Option<String>,
    /// The status exactly as received.
    pub raw: Value,
}

/// Meta's status value.
///
/// Follows "Status messages webhook reference"; `deleted` is from the older statuses
/// list. Other values (such as `played` for voice notes) are kept as
/// [`StatusKind::Other`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum StatusKind {
    Sent,
    Delivered,
    Read,
    Failed,
    Deleted,
    /// Any other status, as Meta spelled it.
    Other(String),
}

impl StatusKind {
    /// Meta's string for this status.
    pub fn as_str(&self) -> &str {
        match self {
            StatusKind::Sent => "sent",
            StatusKind::Delivered => "delivered",
            StatusKind::Read => "read",
            StatusKind::Failed => "failed",
            StatusKind::Deleted => "deleted",
            StatusKind::Other(other) => other,
        }
    }

    /// The status for Meta's string; unknown strings become [`StatusKind::Other`].
    pub fn from_meta(s: &str) -> Self {
        match s {
            "sent" => StatusKind::Sent,
            "delivered" => StatusKind::Delivered,
            "read" => StatusKind::Read,
            "failed" => StatusKind::Failed,
            "deleted" => StatusKind::Deleted,
            other => StatusKind::Other(other.to_owned()),
        }
    }
}

/// A status's `conversation` object.
///
/// Follows "Status messages webhook reference": `id`, `expiration_timestamp` (only on the
/// status that opened the conversation), `origin.type`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Conversation {
    /// Meta's billing conversation id.
    pub id: Option<String>,
    /// When the conversation (or free entry point) ends, Unix seconds.
    pub expiration_timestamp: Option<i64>,
    /// `origin.type`: `marketing`, `utility`, `authentication`, `service`,
    /// `referral_conversion`, …
    pub origin_type: Option<String>,
}

impl Conversation {
    /// Whether this is a free entry point conversation (`origin.type ==
    /// "referral_conversion"`), whose `expiration_timestamp` is the entry point's end.
    pub fn is_referral_conversion(&self) -> bool {
        self.origin_type.as_deref() == Some("referral_conversion")
    }
}

/// A status's `pricing` object.
///
/// Follows "Status messages webhook reference" and "Pricing on the WhatsApp Business
/// Platform" (`pricing_model` `CBP` or `PMP`; `type` `regular`, `free_customer_service`,
/// `free_entry_point`; `type` is absent under conversation-based pricing).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Pricing {
    /// Whether Meta charges for the message.
    pub billable: Option<bool>,
    /// `CBP` (conversation-based) or `PMP` (per-message).
    pub pricing_model: Option<String>,
    /// Meta's `type`: why it is charged or free.
    pub kind: Option<String>,
    /// `marketing`, `utility`, `authentication`, `service`, `referral_conversion`, …
    pub category: Option<String>,
}

/// An error object inside a webhook (value, message or status level).
///
/// Follows "Error codes" ("Error response webhooks and syntax"): `code`, `title`,
/// `message`, `error_data.details`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaError {
    /// Meta's error code, e.g. 131047.
    pub code: i64,
    /// Meta's title; Meta says titles will be deprecated.
    pub title: Option<String>,
    /// Meta's message, usually the title again.
    pub message: Option<String>,
    /// `error_data.details`: the explanation.
    pub details: Option<String>,
}

/// The `value` of a `calls` change.
///
/// Follows the Calling API pages "User-initiated calls", "Business-initiated calls" and
/// "API and Webhook Reference": `metadata`, `contacts` and a `calls` array.
#[derive(Debug, Clone, PartialEq)]
pub struct CallsValue {
    /// Which business number.
    pub metadata: Metadata,
    /// The WhatsApp users involved, when Meta includes them.
    pub contacts: Vec<Contact>,
    /// Call events.
    pub calls: Vec<Item<Call>>,
}

/// One `calls[]` item: a call event.
///
/// Follows the Calling API "API and Webhook Reference" (`id` is a `wacid.…`, `event` is
/// `connect` or `terminate`, `direction` is `USER_INITIATED` or `BUSINESS_INITIATED`).
/// Call status updates for business-initiated calls (`statuses[]` under `field: "calls"`)
/// are kept only in [`Change::raw`].
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    /// Meta's call id (`wacid.…`).
    pub id: String,
    /// The caller: the user's phone number for a user-initiated call, the business
    /// number for a business-initiated one.
    pub from: Option<String>,
    /// The callee.
    pub to: Option<String>,
    /// The caller's business-scoped user id, for a user-initiated call.
    pub from_user_id: Option<String>,
    /// When the event happened, Unix seconds.
    pub timestamp: i64,
    /// `connect`, `terminate`, …
    pub event: Option<String>,
    /// `USER_INITIATED` or `BUSINESS_INITIATED`.
    pub direction: Option<String>,
    /// The call event exactly as received.
    pub raw: Value,
}

/// Parses a webhook body.
///
/// Fails only when the body is not Meta's envelope; see the module documentation.
pub fn parse_webhook(body: &[u8]) -> Result<Webhook, WebhookError> {
    let envelope: RawEnvelope =
        serde_json::from_slice(body).map_err(|e| WebhookError::Malformed(e.to_string()))?;
    let entries = envelope
        .entry
        .into_iter()
        .map(|entry| Entry {
            id: entry.id,
            time: entry
                .time
                .as_ref()
                .and_then(|t| crate::json::timestamp(t).ok().filter(|&t| t > 0)),
            changes: entry.changes.into_iter().map(parse_change).collect(),
        })
        .collect();
    Ok(Webhook {
        object: envelope.object,
        entries,
    })
}

#[derive(Deserialize)]
#[serde(expecting = "a JSON object with `object` (a string) and `entry` (an array)")]
struct RawEnvelope {
    object: String,
    entry: Vec<RawEntry>,
}

#[derive(Deserialize)]
#[serde(expecting = "an entry object with `id` (the WABA id) and `changes`")]
struct RawEntry {
    id: String,
    #[serde(default)]
    time: Option<Value>,
    #[serde(default)]
    changes: Vec<Value>,
}

fn parse_change(change: Value) -> Change {
    // Taken apart in place: a copy of the change (every item in it) cost a tenth of
    // parsing a webhook.
    let (field, value) = match change {
        Value::Object(mut object)
            if object.get("field").is_some_and(Value::is_string)
                && object.contains_key("value") =>
        {
            let field = match object.remove("field") {
                Some(Value::String(field)) => field,
                _ => String::new(),
            };
            (field, object.remove("value").unwrap_or_default())
        }
        change => {
            let reason = match change.get("field") {
                _ if !change.is_object() => "a change must be an object with `field` and `value`",
                Some(Value::String(_)) => "a change needs `value`",
                Some(_) => "a change's `field` must be a string",
                None => "a change needs `field` (a string)",
            };
            return Change {
                field: string_at(&change, &["field"]).unwrap_or_default(),
                value: ChangeValue::Unparsed {
                    reason: reason.to_owned(),
                },
                raw: change,
            };
        }
    };
    let parsed = match field.as_str() {
        "messages" => parse_messages_value(&value).map(ChangeValue::Messages),
        "calls" => parse_calls_value(&value).map(ChangeValue::Calls),
        "message_template_status_update"
        | "template_category_update"
        | "message_template_quality_update" => {
            parse_template_update(&field, &value).map(ChangeValue::Template)
        }
        _ => Ok(ChangeValue::Other),
    };
    Change {
        field,
        value: parsed.unwrap_or_else(|reason| ChangeValue::Unparsed { reason }),
        raw: value,
    }
}

/// A change to one of the WABA's templates, from the webhook fields
/// `message_template_status_update`, `template_category_update` and
/// `message_template_quality_update` (Meta: "Webhooks reference" pages of those names).
#[derive(Debug, Clone, PartialEq)]
pub struct TemplateUpdate {
    /// `message_template_id`: Meta documents an integer, some senders quote it; kept as
    /// its digits.
    pub template_id: Option<String>,
    /// `message_template_name`.
    pub name: Option<String>,
    /// `message_template_language`, with Meta's webhook spelling `en-US` normalised to the
    /// Graph API's `en_US` so that it matches the registry.
    pub language: Option<String>,
    pub change: TemplateUpdateKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum TemplateUpdateKind {
    /// `event` (`APPROVED`, `REJECTED`, `PAUSED`, `DISABLED`, …, kept as Meta spells it),
    /// with `reason` (`null` or `NONE` when there is none) and the most telling of
    /// `other_info.description`, `rejection_info.reason` and `disable_info`.
    Status {
        event: String,
        reason: Option<String>,
        category: Option<String>,
    },
    /// A completed recategorisation (`previous_category` → `new_category`), or Meta's
    /// notice of one coming (`correct_category` set: then `new_category` is the *current*
    /// category, and the change happens at `category_update_timestamp`).
    Category {
        previous: Option<String>,
        new: String,
        upcoming: Option<String>,
        upcoming_at: Option<i64>,
    },
    /// `previous_quality_score` → `new_quality_score` (`GREEN`, `YELLOW`, `RED`, `UNKNOWN`).
    Quality {
        previous: Option<String>,
        new: String,
    },
}

fn parse_template_update(field: &str, value: &Value) -> Result<TemplateUpdate, String> {
    if !value.is_object() {
        return Err(format!("a `{field}` value must be an object"));
    }
    let text = |key: &str| -> Option<String> {
        match value.get(key)? {
            Value::String(s) if !s.is_empty() => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    };
    let required =
        |key: &str| text(key).ok_or_else(|| format!("a `{field}` value needs `{key}` (a string)"));
    let change = match field {
        "message_template_status_update" => TemplateUpdateKind::Status {
            event: required("event")?.to_ascii_uppercase(),
            reason: text("reason")
                .filter(|r| r != "NONE")
                .or_else(|| string_at(value, &["rejection_info", "reason"]))
                .or_else(|| string_at(value, &["other_info", "description"])),
            category: text("message_template_category"),
        },
        "template_category_update" => TemplateUpdateKind::Category {
            previous: text("previous_category"),
            new: required("new_category")?,
            upcoming: text("correct_category"),
            upcoming_at: value
                .get("category_update_timestamp")
                .and_then(|t| crate::json::timestamp(t).ok()),
        },
        _ => TemplateUpdateKind::Quality {
            previous: text("previous_quality_score"),
            new: required("new_quality_score")?,
        },
    };
    let update = TemplateUpdate {
        template_id: text("message_template_id"),
        name: text("message_template_name"),
        language: text("message_template_language").map(|l| l.replace('-', "_")),
        change,
    };
    if update.template_id.is_none() && update.name.is_none() {
        return Err(format!(
            "a `{field}` value names no template (`message_template_id` or `message_template_name`)"
        ));
    }
    Ok(update)
}

#[derive(Deserialize)]
#[serde(expecting = "a `messages` value object with `metadata`")]
struct RawMessagesValue {
    metadata: Metadata,
    #[serde(default)]
    contacts: Vec<Value>,
    #[serde(default)]
    messages: Vec<Value>,
    #[serde(default)]
    statuses: Vec<Value>,
    #[serde(default)]
    errors: Vec<Value>,
}

fn parse_messages_value(value: &Value) -> Result<MessagesValue, String> {
    let raw = RawMessagesValue::deserialize(value).map_err(|e| e.to_string())?;
    Ok(MessagesValue {
        metadata: raw.metadata,
        contacts: parse_contacts(&raw.contacts),
        messages: raw.messages.into_iter().map(parse_message).collect(),
        statuses: raw.statuses.into_iter().map(parse_status).collect(),
        errors: parse_errors(&raw.errors),
    })
}

#[derive(Deserialize)]
#[serde(expecting = "a `calls` value object with `metadata`")]
struct RawCallsValue {
    metadata: Metadata,
    #[serde(default)]
    contacts: Vec<Value>,
    #[serde(default)]
    calls: Vec<Value>,
}

fn parse_calls_value(value: &Value) -> Result<CallsValue, String> {
    let raw = RawCallsValue::deserialize(value).map_err(|e| e.to_string())?;
    Ok(CallsValue {
        metadata: raw.metadata,
        contacts: parse_contacts(&raw.contacts),
        calls: raw.calls.into_iter().map(parse_call).collect(),
    })
}

/// Reads contacts leniently. A contact that is not an object says nothing usable and is
/// left out here; it is still in [`Change::raw`].
fn parse_contacts(contacts: &[Value]) -> Vec<Contact> {
    contacts
        .iter()
        .filter(|contact| contact.is_object())
        .map(|contact| Contact {
            wa_id: string_at(contact, &["wa_id"]),
            user_id: string_at(contact, &["user_id"]),
            parent_user_id: string_at(contact, &["parent_user_id"]),
            profile_name: string_at(contact, &["profile", "name"]),
        })
        .collect()
}

#[derive(Deserialize)]
struct RawMetaError {
    code: i64,
    title: Option<String>,
    message: Option<String>,
    error_data: Option<RawErrorData>,
}

#[derive(Deserialize)]
struct RawErrorData {
    details: Option<String>,
}

/// Reads error objects. One without an integer `code` cannot be acted on and is left out
/// here; it is still in the raw item or change.
fn parse_errors(errors: &[Value]) -> Vec<MetaError> {
    errors
        .iter()
        .filter_map(|error| RawMetaError::deserialize(error).ok())
        .map(|error| MetaError {
            code: error.code,
            title: error.title,
            message: error.message,
            details: error.error_data.and_then(|data| data.details),
        })
        .collect()
}

/// The required part of a message; everything else is read leniently from the raw value,
/// because losing a customer message costs its window, while losing a caption does not.
#[derive(Deserialize)]
#[serde(expecting = "a message object with `id`, `timestamp` and `type`")]
struct RawMessage {
    id: String,
    from: Option<String>,
    from_user_id: Option<String>,
    #[serde(deserialize_with = "timestamp")]
    timestamp: i64,
    #[serde(rename = "type")]
    kind: String,
}

fn parse_message(raw: Value) -> Item<InboundMessage> {
    let required = match RawMessage::deserialize(&raw) {
        Ok(required) => required,
        Err(error) => {
            return Item::Unparsed {
                reason: error.to_string(),
                raw,
            }
        }
    };
    let kind = MessageKind::from_meta(&required.kind);
    let content = raw.get(kind.as_str()).filter(|content| content.is_object());
    let media = content.filter(|_| kind.has_media()).and_then(|media| {
        Some(Media {
            id: string_at(media, &["id"])?,
            mime_type: string_at(media, &["mime_type"]),
            sha256: string_at(media, &["sha256"]),
            filename: string_at(media, &["filename"]),
            voice: flag(media, "voice"),
        })
    });
    let text = content.and_then(|content| message_text(&kind, content));
    let referral = raw
        .get("referral")
        .filter(|referral| referral.is_object())
        .map(|referral| Referral {
            source_type: string_at(referral, &["source_type"]),
            source_id: string_at(referral, &["source_id"]),
            source_url: string_at(referral, &["source_url"]),
            ctwa_clid: string_at(referral, &["ctwa_clid"]),
            headline: string_at(referral, &["headline"]),
        });
    let context = raw
        .get("context")
        .filter(|context| context.is_object())
        .map(|context| Context {
            from: string_at(context, &["from"]),
            id: string_at(context, &["id"]),
            forwarded: flag(context, "forwarded") || flag(context, "frequently_forwarded"),
        });
    let errors = raw
        .get("errors")
        .and_then(Value::as_array)
        .map(|errors| parse_errors(errors))
        .unwrap_or_default();
    Item::Parsed(InboundMessage {
        id: required.id,
        from: required.from,
        from_user_id: required.from_user_id,
        timestamp: required.timestamp,
        kind,
        referral,
        context,
        media,
        text,
        errors,
        raw,
    })
}

/// The readable text of a message, from its type's object.
///
/// Follows "Text messages" (`text.body`), "Button messages" (`button.text`),
/// "Interactive messages" (`button_reply.title`, `list_reply.title`, `nfm_reply.body`)
/// and the media pages (`caption`) webhook references.
fn message_text(kind: &MessageKind, content: &Value) -> Option<String> {
    match kind {
        MessageKind::Text => string_at(content, &["body"]),
        MessageKind::Button => string_at(content, &["text"]),
        MessageKind::Interactive => string_at(content, &["button_reply", "title"])
            .or_else(|| string_at(content, &["list_reply", "title"]))
            .or_else(|| string_at(content, &["nfm_reply", "body"])),
        kind if kind.has_media() => string_at(content, &["caption"]),
        _ => None,
    }
}

#[derive(Deserialize)]
#[serde(expecting = "a status object with `id`, `status` and `timestamp`")]
struct RawStatus {
    id: String,
    status: String,
    #[serde(deserialize_with = "timestamp")]
    timestamp: i64,
    recipient_id: Option<String>,
    recipient_user_id: Option<String>,
    /// Read on its own, leniently: a malformed `conversation` or `pricing` must not cost
    /// the status itself (a lost `delivered` changes windows and charges).
    conversation: Option<Value>,
    pricing: Option<Value>,
    #[serde(default)]
    errors: Vec<Value>,
    biz_opaque_callback_data: Option<String>,
}

#[derive(Deserialize)]
struct RawConversation {
    id: Option<String>,
    #[serde(default, deserialize_with = "optional_timestamp")]
    expiration_timestamp: Option<i64>,
    origin: Option<RawOrigin>,
}

#[derive(Deserialize)]
struct RawOrigin {
    #[serde(rename = "type")]
    kind: Option<String>,
}

#[derive(Deserialize)]
struct RawPricing {
    billable: Option<bool>,
    pricing_model: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    category: Option<String>,
}

fn parse_status(raw: Value) -> Item<Status> {
    let status = match RawStatus::deserialize(&raw) {
        Ok(status) => status,
        Err(error) => {
            return Item::Unparsed {
                reason: error.to_string(),
                raw,
            }
        }
    };
    Item::Parsed(Status {
        id: status.id,
        status: StatusKind::from_meta(&status.status),
        timestamp: status.timestamp,
        recipient_id: status.recipient_id,
        recipient_user_id: status.recipient_user_id,
        conversation: status
            .conversation
            .and_then(|c| RawConversation::deserialize(&c).ok())
            .map(|conversation| Conversation {
                id: conversation.id,
                expiration_timestamp: conversation.expiration_timestamp,
                origin_type: conversation.origin.and_then(|origin| origin.kind),
            }),
        pricing: status
            .pricing
            .and_then(|p| RawPricing::deserialize(&p).ok())
            .map(|pricing| Pricing {
                billable: pricing.billable,
                pricing_model: pricing.pricing_model,
                kind: pricing.kind,
                category: pricing.category,
            }),
        errors: parse_errors(&status.errors),
        biz_opaque_callback_data: status.biz_opaque_callback_data,
        raw,
    })
}

#[derive(Deserialize)]
#[serde(expecting = "a call object with `id` and `timestamp`")]
struct RawCall {
    id: String,
    from: Option<String>,
    to: Option<String>,
    from_user_id: Option<String>,
    #[serde(deserialize_with = "timestamp")]
    timestamp: i64,
    event: Option<String>,
    direction: Option<String>,
}

fn parse_call(raw: Value) -> Item<Call> {
    match RawCall::deserialize(&raw) {
        Ok(call) => Item::Parsed(Call {
            id: call.id,
            from: call.from,
            to: call.to,
            from_user_id: call.from_user_id,
            timestamp: call.timestamp,
            event: call.event,
            direction: call.direction,
            raw,
        }),
        Err(error) => Item::Unparsed {
            reason: error.to_string(),
            raw,
        },
    }
}

/// One item of a `messages` or `calls` change, alone in Meta's envelope, as Hourglass
/// forwards it: several clients read only the first item of a payload
/// (whatsapp-api-js), so each forwarded request carries exactly one. `value` is the
/// change's value as received (its `messaging_product` and `metadata` are kept); `list`
/// is `messages`, `statuses` or `calls`; `contact` is the sender's entry of `contacts`.
pub fn single_item_webhook(
    waba_id: &str,
    field: &str,
    value: &Value,
    list: &str,
    item: &Value,
    contact: Option<&Value>,
) -> Vec<u8> {
    let mut one = serde_json::Map::new();
    one.insert(
        "messaging_product".into(),
        value
            .get("messaging_product")
            .cloned()
            .unwrap_or_else(|| Value::String("whatsapp".into())),
    );
    if let Some(metadata) = value.get("metadata") {
        one.insert("metadata".into(), metadata.clone());
    }
    if let Some(contact) = contact {
        one.insert("contacts".into(), Value::Array(vec![contact.clone()]));
    }
    one.insert(list.into(), Value::Array(vec![item.clone()]));
    serde_json::json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": waba_id, "changes": [{"value": Value::Object(one), "field": field}]}]
    })
    .to_string()
    .into_bytes()
}

/// The entry of a change's raw `contacts` that names the sender (`wa_id` or `user_id`).
pub fn sender_contact<'v>(
    value: &'v Value,
    from: Option<&str>,
    from_user_id: Option<&str>,
) -> Option<&'v Value> {
    value.get("contacts")?.as_array()?.iter().find(|c| {
        let wa_id = c.get("wa_id").and_then(Value::as_str);
        let user_id = c.get("user_id").and_then(Value::as_str);
        (from.is_some() && wa_id == from) || (from_user_id.is_some() && user_id == from_user_id)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn messages_change(value: Value) -> Vec<u8> {
        json!({
            "object": "whatsapp_business_account",
            "entry": [{"id": "1", "changes": [{"field": "messages", "value": value}]}]
        })
        .to_string()
        .into_bytes()
    }

    fn only_value(body: &[u8]) -> ChangeValue {
        let webhook = parse_webhook(body).unwrap();
        webhook.entries[0].changes[0].value.clone()
    }

    fn metadata() -> Value {
        json!({"display_phone_number": "15550783881", "phone_number_id": "106540352242922"})
    }

    #[test]
    fn every_message_kind_round_trips_through_its_meta_string() {
        for kind in [
            MessageKind::Text,
            MessageKind::Image,
            MessageKind::Audio,
            MessageKind::Video,
            MessageKind::Document,
            MessageKind::Sticker,
            MessageKind::Location,
            MessageKind::Contacts,
            MessageKind::Interactive,
            MessageKind::Button,
            MessageKind::Order,
            MessageKind::Reaction,
            MessageKind::System,
            MessageKind::Unsupported,
            MessageKind::Request,
            MessageKind::Other("banana".into()),
        ] {
            assert_eq!(MessageKind::from_meta(kind.as_str()), kind);
        }
    }

    #[test]
    fn every_status_kind_round_trips_through_its_meta_string() {
        for kind in [
            StatusKind::Sent,
            StatusKind::Delivered,
            StatusKind::Read,
            StatusKind::Failed,
            StatusKind::Deleted,
            StatusKind::Other("played".into()),
        ] {
            assert_eq!(StatusKind::from_meta(kind.as_str()), kind);
        }
    }

    #[test]
    fn a_messages_change_without_metadata_is_unparsed_not_fatal() {
        let body = messages_change(json!({"messages": []}));
        let ChangeValue::Unparsed { reason } = only_value(&body) else {
            panic!("expected Unparsed");
        };
        assert!(reason.contains("metadata"), "{reason}");
    }

    #[test]
    fn a_change_without_field_is_unparsed_and_kept_whole() {
        let change = json!({"value": {"anything": 1}});
        let body = json!({"object": "o", "entry": [{"id": "1", "changes": [change.clone()]}]});
        let webhook = parse_webhook(body.to_string().as_bytes()).unwrap();
        let parsed = &webhook.entries[0].changes[0];
        assert_eq!(parsed.field, "");
        assert!(
            matches!(&parsed.value, ChangeValue::Unparsed { reason } if reason.contains("field"))
        );
        assert_eq!(parsed.raw, change);
    }

    #[test]
    fn a_change_of_any_other_shape_is_unparsed_and_kept_whole_beside_good_ones() {
        let good = json!({"field": "messages", "value": {"metadata": metadata()}});
        let cases = [
            (json!({"field": "messages"}), "messages", "`value`"),
            (json!({"field": 7, "value": {}}), "", "string"),
            (json!("messages"), "", "object"),
        ];
        for (change, field, said) in cases {
            let body = json!({"object": "o", "entry": [{"id": "1", "changes": [change.clone(), good.clone()]}]});
            let webhook = parse_webhook(body.to_string().as_bytes()).unwrap();
            let [parsed, next] = &webhook.entries[0].changes[..] else {
                panic!("expected two changes");
            };
            assert_eq!(parsed.field, field, "{change}");
            assert!(
                matches!(&parsed.value, ChangeValue::Unparsed { reason } if reason.contains(said)),
                "{change}: {:?}",
                parsed.value
            );
            assert_eq!(parsed.raw, change);
            assert!(matches!(next.value, ChangeValue::Messages(_)), "{change}");
            assert_eq!(next.raw, good["value"]);
        }
    }

    #[test]
    fn an_interactive_list_reply_title_is_the_text() {
        let body = messages_change(json!({
            "metadata": metadata(),
            "messages": [{
                "from": "16505551234", "id": "wamid.list", "timestamp": "1", "type": "interactive",
                "interactive": {"type": "list_reply", "list_reply": {"id": "x", "title": "Blue"}}
            }]
        }));
        let ChangeValue::Messages(value) = only_value(&body) else {
            panic!("expected Messages");
        };
        let message = value.messages[0].parsed().unwrap();
        assert_eq!(message.text.as_deref(), Some("Blue"));
    }

    #[test]
    fn a_frequently_forwarded_message_counts_as_forwarded() {
        let body = messages_change(json!({
            "metadata": metadata(),
            "messages": [{
                "from": "1", "id": "wamid.f", "timestamp": 1, "type": "text",
                "text": {"body": "hi"}, "context": {"frequently_forwarded": true}
            }]
        }));
        let ChangeValue::Messages(value) = only_value(&body) else {
            panic!("expected Messages");
        };
        assert!(
            value.messages[0]
                .parsed()
                .unwrap()
                .context
                .as_ref()
                .unwrap()
                .forwarded
        );
    }

    #[test]
    fn a_badly_typed_referral_field_is_dropped_but_the_message_is_kept() {
        let body = messages_change(json!({
            "metadata": metadata(),
            "messages": [{
                "from": "1", "id": "wamid.r", "timestamp": "5", "type": "text", "text": {"body": "hi"},
                "referral": {"source_type": "ad", "source_id": 42}
            }]
        }));
        let ChangeValue::Messages(value) = only_value(&body) else {
            panic!("expected Messages");
        };
        let referral = value.messages[0]
            .parsed()
            .unwrap()
            .referral
            .clone()
            .unwrap();
        assert!(referral.is_ad());
        assert_eq!(referral.source_id, None);
    }

    #[test]
    fn a_username_user_without_a_phone_number_is_read_by_business_scoped_id() {
        let body = messages_change(json!({
            "metadata": metadata(),
            "contacts": [{"profile": {"name": "Ana", "username": "@ana"}, "user_id": "US.1349"}],
            "messages": [{"from_user_id": "US.1349", "id": "wamid.u", "timestamp": "7", "type": "text",
                          "text": {"body": "hi"}}],
            "statuses": [{"id": "wamid.s", "status": "delivered", "timestamp": "8",
                          "recipient_user_id": "US.1349"}]
        }));
        let ChangeValue::Messages(value) = only_value(&body) else {
            panic!("expected Messages");
        };
        assert_eq!(value.contacts[0].wa_id, None);
        assert_eq!(value.contacts[0].user_id.as_deref(), Some("US.1349"));
        let message = value.messages[0].parsed().unwrap();
        assert_eq!(message.from, None);
        assert_eq!(message.from_user_id.as_deref(), Some("US.1349"));
        let status = value.statuses[0].parsed().unwrap();
        assert_eq!(status.recipient_id, None);
        assert_eq!(status.recipient_user_id.as_deref(), Some("US.1349"));
    }

    #[test]
    fn a_malformed_conversation_or_pricing_does_not_cost_the_status() {
        let body = messages_change(json!({
            "metadata": metadata(),
            "statuses": [{"id": "wamid.s", "status": "delivered", "timestamp": "8",
                          "conversation": {"id": "c", "expiration_timestamp": "tomorrow"},
                          "pricing": {"billable": "yes"}}]
        }));
        let ChangeValue::Messages(value) = only_value(&body) else {
            panic!("expected Messages");
        };
        let status = value.statuses[0]
            .parsed()
            .expect("the status itself is kept");
        assert_eq!(status.status, StatusKind::Delivered);
        assert_eq!(status.conversation, None);
        assert_eq!(status.pricing, None);
    }

    #[test]
    fn a_user_initiated_call_is_read_from_a_calls_change() {
        // Shape from Meta's Calling API page "User-initiated calls" (connect webhook).
        let body = json!({
            "object": "whatsapp_business_account",
            "entry": [{"id": "366634483210360", "changes": [{"field": "calls", "value": {
                "messaging_product": "whatsapp",
                "metadata": {"phone_number_id": "436666719526789", "display_phone_number": "13175551399"},
                "contacts": [{"profile": {"name": "Ana"}, "wa_id": "16315553601", "user_id": "US.1"}],
                "calls": [
                    {"id": "wacid.ABGG", "from": "16315553601", "from_user_id": "US.1",
                     "to": "13175551399", "event": "connect", "timestamp": "1671644824",
                     "direction": "USER_INITIATED",
                     "session": {"sdp_type": "offer", "sdp": "<RFC 8866 SDP>"}},
                    {"from": "16315553601", "event": "terminate", "timestamp": "1671644900"}
                ]
            }}]}]
        });
        let ChangeValue::Calls(value) = only_value(body.to_string().as_bytes()) else {
            panic!("expected Calls");
        };
        assert_eq!(value.metadata.phone_number_id, "436666719526789");
        assert_eq!(value.contacts[0].wa_id.as_deref(), Some("16315553601"));
        let call = value.calls[0].parsed().unwrap();
        assert_eq!(call.id, "wacid.ABGG");
        assert_eq!(call.timestamp, 1_671_644_824);
        assert_eq!(call.event.as_deref(), Some("connect"));
        assert_eq!(call.direction.as_deref(), Some("USER_INITIATED"));
        assert_eq!(call.from_user_id.as_deref(), Some("US.1"));
        assert!(matches!(&value.calls[1], Item::Unparsed { reason, .. } if reason.contains("id")));
    }

    #[test]
    fn the_malformed_message_says_what_was_expected_and_where() {
        let error = parse_webhook(b"[]").unwrap_err();
        let message = error.to_string();
        assert!(
            message.starts_with("webhook body is not Meta's JSON envelope: "),
            "{message}"
        );
        assert!(message.contains("`entry`"), "{message}");
        assert!(message.contains("line 1"), "{message}");
    }
}
