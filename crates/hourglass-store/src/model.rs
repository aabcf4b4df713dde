//! The values that cross the storage boundary. They carry Meta's JSON only as opaque text.

use hourglass_core::{
    EntryPoint, Instant, MessageCategory, StatusKind, ThreadEvent, ThreadHistory,
};

/// A contact as the edges know it: by `wa_id`, by business-scoped `user_id`, or both.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ContactKey {
    pub wa_id: Option<String>,
    pub user_id: Option<String>,
}

/// One POST to `/webhook`: its exact bytes and the items read from them.
#[derive(Clone, Debug)]
pub struct WebhookDelivery {
    /// Hex SHA-256 of `body`: the key that makes a retried delivery a no-op.
    pub body_sha256: String,
    pub received_at: Instant,
    pub body: Vec<u8>,
    pub items: Vec<IngestItem>,
}

/// A message that opens the customer service window if the contact's previous one (by
/// the same rule) is 24 hours or more older, and the event to forward if it does.
#[derive(Clone, Debug)]
pub struct WindowOpening {
    pub event: crate::ForwardItem,
    /// The rules it was judged by: where reactions count, the previous message may be a
    /// reaction, and this one may be.
    pub settings: hourglass_core::RuleSettings,
}

impl WindowOpening {
    /// The contact's latest message before, as this opening counts them.
    pub fn previous(&self, customer_at: Option<i64>, reaction_at: Option<i64>) -> Option<i64> {
        self.settings.window_anchor(customer_at, reaction_at)
    }
}

/// Where an item came from: the business number and its WABA.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NumberRef {
    pub phone_number_id: String,
    pub waba_id: String,
    pub display_phone_number: String,
}

#[derive(Clone, Debug)]
pub enum IngestItem {
    /// A message from the contact (or a `system` item, which is kept but never counts).
    Inbound {
        number: NumberRef,
        contact: ContactKey,
        profile_name: Option<String>,
        message_id: String,
        timestamp: Instant,
        message_type: String,
        entry_point: EntryPoint,
        is_reaction: bool,
        /// False for `system` items: they are stored but never open a window.
        counts_for_window: bool,
        raw: String,
        /// What to forward to subscribed apps, when any subscription exists.
        forward: Option<Box<crate::ForwardItem>>,
        /// Hourglass's `window.opened` event, to forward if this message opens the
        /// customer service window (the contact's previous message, if any, is 24 hours
        /// or more older); only the store knows that.
        window_opened: Option<Box<WindowOpening>>,
        /// The medium it carries (voice note, image, document…), to download.
        media: Option<Box<crate::MediaRef>>,
    },
    /// A status of a business message, whoever sent it.
    Status {
        number: NumberRef,
        /// The recipient (`recipient_id` / `recipient_user_id`), when Meta says.
        contact: ContactKey,
        message_id: String,
        status: StatusKind,
        timestamp: Instant,
        /// `pricing.category` when it names a message category.
        category: Option<MessageCategory>,
        fep_expires_at: Option<Instant>,
        pricing: Option<String>,
        conversation: Option<String>,
        errors: Option<String>,
        /// The outbox message this status answers, when Hourglass sent it (Meta echoes
        /// the `biz_opaque_callback_data` the outbox attached): proof that Meta accepted
        /// it, whatever happened to the process that sent it.
        outbox_id: Option<i64>,
        /// What to forward to subscribed apps, when any subscription exists.
        forward: Option<Box<crate::ForwardItem>>,
    },
    /// A change of a template's status, category or quality, from Meta's template
    /// webhooks (`message_template_status_update`, `template_category_update`,
    /// `message_template_quality_update`).
    TemplateChange(TemplateChange),
    /// Anything else: kept raw beside the delivery, never fatal.
    Unprocessed {
        field: String,
        reason: String,
        raw: String,
    },
}

/// What a call to [`crate::Store::ingest`] changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IngestReport {
    pub deliveries_new: u64,
    pub messages_new: u64,
    pub statuses_new: u64,
    pub duplicates: u64,
}

/// A business message Meta accepted from Hourglass.
#[derive(Clone, Debug)]
pub struct OutboundMessage {
    pub message_id: String,
    pub phone_number_id: String,
    pub contact: ContactKey,
    pub sent_at: Instant,
    pub message_type: String,
    pub category: Option<MessageCategory>,
    pub template_name: Option<String>,
    pub template_language: Option<String>,
    pub body: String,
}

#[derive(Clone, Debug)]
pub struct Refusal {
    pub phone_number_id: String,
    pub thread_id: Option<i64>,
    pub recipient: Option<String>,
    pub at: Instant,
    pub code: i64,
    pub reason: String,
    pub request: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ThreadRow {
    pub id: i64,
    pub phone_number_id: String,
    pub wa_id: Option<String>,
    pub user_id: Option<String>,
    pub profile_name: Option<String>,
    pub last_customer_at: Option<Instant>,
    pub last_reaction_at: Option<Instant>,
    pub last_fep_signal_at: Option<Instant>,
}

impl ThreadRow {
    /// The instant the thread's customer service window runs from: its latest customer
    /// message, or, where reactions count, the later of that and its latest reaction.
    pub fn window_anchor(&self, settings: hourglass_core::RuleSettings) -> Option<Instant> {
        settings.window_anchor(self.last_customer_at, self.last_reaction_at)
    }
}

/// Which free-form deliveries of the thread's number to count: those in `[from, before)`,
/// up to `cap`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServiceCount {
    pub from: Instant,
    pub before: Instant,
    pub cap: u32,
}

impl ServiceCount {
    /// Count nothing.
    pub const NONE: ServiceCount = ServiceCount {
        from: Instant::from_unix_seconds(0),
        before: Instant::from_unix_seconds(0),
        cap: 0,
    };
}

/// Position in a list of threads ordered by window anchor ([`ThreadRow::window_anchor`]),
/// then id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ThreadCursor {
    pub anchor_at: Instant,
    pub id: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusRow {
    pub status: String,
    pub timestamp: Instant,
    /// `pricing.category`, when it named a message category.
    pub category: Option<String>,
    pub fep_expires_at: Option<Instant>,
    /// Meta's `pricing` object, as received.
    pub pricing: Option<String>,
    pub errors: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageRow {
    pub message_id: String,
    pub direction: String,
    pub message_type: String,
    pub timestamp: Instant,
    /// Inbound only: how the contact arrived, and whether it counts for the window.
    pub entry_point: Option<String>,
    pub is_reaction: bool,
    pub counts_for_window: bool,
    pub category: Option<String>,
    pub template_name: Option<String>,
    pub sent_via_hourglass: bool,
    pub delivered_at: Option<Instant>,
    pub body: Option<String>,
    /// Oldest first.
    pub statuses: Vec<StatusRow>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BusinessNumber {
    pub phone_number_id: String,
    pub waba_id: Option<String>,
    pub display_phone_number: Option<String>,
    pub time_zone: String,
}

#[derive(Clone, Debug)]
pub struct NewApiKey {
    pub key_hash: String,
    pub label: String,
    /// `None` for an admin key.
    pub numbers: Option<Vec<String>>,
    pub created_at: Instant,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiKeyRow {
    pub id: i64,
    pub label: String,
    pub numbers: Option<Vec<String>>,
}

/// One template (a name in one language) of a WABA, as the registry holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TemplateRecord {
    pub waba_id: String,
    pub name: String,
    pub language: String,
    /// Meta's id of this name-and-language.
    pub meta_template_id: Option<String>,
    /// `MARKETING`, `UTILITY` or `AUTHENTICATION`, as Meta last said.
    pub category: Option<String>,
    /// Meta's status (`APPROVED`, `PAUSED`, …); `None` while only a category or quality
    /// webhook has named the template.
    pub status: Option<String>,
    /// Why Meta rejected, paused or disabled it, when it said.
    pub status_reason: Option<String>,
    /// `GREEN`, `YELLOW`, `RED` or `UNKNOWN`.
    pub quality: Option<String>,
    /// Meta's JSON of the template (components, parameter format); `None` for a template
    /// known only from webhooks.
    pub definition: Option<String>,
    pub status_at: Option<Instant>,
    pub category_at: Option<Instant>,
    pub quality_at: Option<Instant>,
    pub updated_at: Instant,
}

/// What a template change is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TemplateChangeKind {
    Status,
    Category,
    Quality,
}

impl TemplateChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TemplateChangeKind::Status => "status",
            TemplateChangeKind::Category => "category",
            TemplateChangeKind::Quality => "quality",
        }
    }

    pub(crate) fn parse(name: &str) -> Option<Self> {
        match name {
            "status" => Some(TemplateChangeKind::Status),
            "category" => Some(TemplateChangeKind::Category),
            "quality" => Some(TemplateChangeKind::Quality),
            _ => None,
        }
    }
}

/// Who told Hourglass about a template change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TemplateChangeSource {
    /// One of Meta's template webhooks.
    Webhook,
    /// A sync found Meta's list different from the registry.
    Sync,
    /// Created through Hourglass (Meta's answer to the creation).
    Create,
    /// Deleted through Hourglass.
    Delete,
}

impl TemplateChangeSource {
    pub fn as_str(self) -> &'static str {
        match self {
            TemplateChangeSource::Webhook => "webhook",
            TemplateChangeSource::Sync => "sync",
            TemplateChangeSource::Create => "create",
            TemplateChangeSource::Delete => "delete",
        }
    }

    pub(crate) fn parse(name: &str) -> Option<Self> {
        match name {
            "webhook" => Some(TemplateChangeSource::Webhook),
            "sync" => Some(TemplateChangeSource::Sync),
            "create" => Some(TemplateChangeSource::Create),
            "delete" => Some(TemplateChangeSource::Delete),
            _ => None,
        }
    }
}

/// One entry of a template's history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TemplateChange {
    pub waba_id: String,
    pub meta_template_id: Option<String>,
    /// Webhooks name the template; a change known only by Meta's id has `None`.
    pub name: Option<String>,
    pub language: Option<String>,
    pub kind: TemplateChangeKind,
    /// The new status, category or quality score.
    pub value: String,
    pub previous: Option<String>,
    /// Meta's reason (a rejection's or a pause's), when it gave one.
    pub reason: Option<String>,
    /// Meta's instant for the change (a webhook entry's `time`), else when we learnt it.
    pub at: Instant,
    pub source: TemplateChangeSource,
}

/// What a sync changed in a WABA's registry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TemplateSyncReport {
    pub added: u32,
    pub changed: u32,
    pub removed: u32,
    pub unchanged: u32,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreCounts {
    pub deliveries: i64,
    pub messages: i64,
    pub statuses: i64,
    pub threads: i64,
    pub refusals: i64,
}

// ---- Shared conversions between rows and core values --------------------------------------

pub(crate) fn entry_point_name(entry_point: EntryPoint) -> &'static str {
    match entry_point {
        EntryPoint::Organic => "organic",
        EntryPoint::Ad => "ad",
        EntryPoint::Post => "post",
        EntryPoint::Other => "other",
    }
}

pub(crate) fn entry_point_from_name(name: Option<&str>) -> EntryPoint {
    match name {
        Some("ad") => EntryPoint::Ad,
        Some("post") => EntryPoint::Post,
        Some("other") => EntryPoint::Other,
        _ => EntryPoint::Organic,
    }
}

pub(crate) fn status_name(status: StatusKind) -> &'static str {
    match status {
        StatusKind::Sent => "sent",
        StatusKind::Delivered => "delivered",
        StatusKind::Read => "read",
        StatusKind::Failed => "failed",
    }
}

pub(crate) fn status_from_name(name: &str) -> Option<StatusKind> {
    match name {
        "sent" => Some(StatusKind::Sent),
        "delivered" => Some(StatusKind::Delivered),
        "read" => Some(StatusKind::Read),
        "failed" => Some(StatusKind::Failed),
        _ => None,
    }
}

/// A customer message row, as loaded for the rule core.
pub(crate) struct CustomerEventRow {
    pub wamid: String,
    pub timestamp: i64,
    pub entry_point: Option<String>,
    pub is_reaction: bool,
}

/// An outbound message row joined with one of its statuses (or none).
pub(crate) struct BusinessEventRow {
    pub wamid: String,
    pub timestamp: i64,
    pub sent_via_hourglass: bool,
    pub category: Option<String>,
    pub status: Option<String>,
    pub status_timestamp: Option<i64>,
    pub status_category: Option<String>,
    pub fep_expires_at: Option<i64>,
}

/// Turns loaded rows into the rule core's history: the one place where rows become events.
pub(crate) fn history_from_rows(
    customers: Vec<CustomerEventRow>,
    business: Vec<BusinessEventRow>,
) -> ThreadHistory {
    let mut history = ThreadHistory::new();
    for row in customers {
        history.record(ThreadEvent::CustomerMessage {
            id: row.wamid,
            at: Instant::from_unix_seconds(row.timestamp),
            entry_point: entry_point_from_name(row.entry_point.as_deref()),
            is_reaction: row.is_reaction,
        });
    }
    for row in business {
        let category = row.category.as_deref().and_then(MessageCategory::from_meta);
        // The message row's own timestamp is its send instant; whether we sent it or only
        // heard of it from a status, it is the earliest instant known for it.
        history.record(ThreadEvent::BusinessMessageSent {
            id: row.wamid.clone(),
            at: Instant::from_unix_seconds(row.timestamp),
            category: if row.sent_via_hourglass {
                category
            } else {
                None
            },
        });
        if let (Some(status), Some(at)) = (
            row.status.as_deref().and_then(status_from_name),
            row.status_timestamp,
        ) {
            history.record(ThreadEvent::Status {
                id: row.wamid,
                kind: status,
                at: Instant::from_unix_seconds(at),
                category: row
                    .status_category
                    .as_deref()
                    .and_then(MessageCategory::from_meta)
                    .or(if row.sent_via_hourglass {
                        None
                    } else {
                        category
                    }),
                fep_expires_at: row.fep_expires_at.map(Instant::from_unix_seconds),
            });
        }
    }
    history
}

pub(crate) fn numbers_to_json(numbers: &Option<Vec<String>>) -> Option<String> {
    numbers
        .as_ref()
        .map(|n| serde_json::to_string(n).expect("a list of strings serializes"))
}

pub(crate) fn numbers_from_json(
    text: Option<String>,
) -> Result<Option<Vec<String>>, crate::StoreError> {
    text.map(|t| {
        serde_json::from_str(&t).map_err(|e| {
            crate::StoreError::Corrupt(format!("api_keys.numbers is not a JSON list: {e}"))
        })
    })
    .transpose()
}

pub(crate) fn instant(seconds: Option<i64>) -> Option<Instant> {
    seconds.map(Instant::from_unix_seconds)
}

/// The whole of a thread as the rule core sees it, from its stored messages: used where
/// every message is at hand anyway (a thread's timeline, pricing each of its messages).
pub fn history_from_messages(messages: &[MessageRow]) -> ThreadHistory {
    let mut customers = Vec::new();
    let mut business = Vec::new();
    for m in messages {
        if m.direction == "inbound" {
            if m.counts_for_window {
                customers.push(CustomerEventRow {
                    wamid: m.message_id.clone(),
                    timestamp: m.timestamp.unix_seconds(),
                    entry_point: m.entry_point.clone(),
                    is_reaction: m.is_reaction,
                });
            }
            continue;
        }
        let row = |s: Option<&StatusRow>| BusinessEventRow {
            wamid: m.message_id.clone(),
            timestamp: m.timestamp.unix_seconds(),
            sent_via_hourglass: m.sent_via_hourglass,
            category: m.category.clone(),
            status: s.map(|s| s.status.clone()),
            status_timestamp: s.map(|s| s.timestamp.unix_seconds()),
            status_category: s.and_then(|s| s.category.clone()),
            fep_expires_at: s.and_then(|s| s.fep_expires_at.map(|i| i.unix_seconds())),
        };
        if m.statuses.is_empty() {
            business.push(row(None));
        }
        for status in &m.statuses {
            business.push(row(Some(status)));
        }
    }
    history_from_rows(customers, business)
}

/// The send instants of the replies that can open the free entry point of the latest ad
/// message among `customers` (an empty range when there is none): `[R, min(R + 24 h, at)]`.
pub(crate) fn latest_ad_replies(customers: &[CustomerEventRow], at: Instant) -> (i64, i64) {
    customers
        .iter()
        .filter(|c| c.entry_point.as_deref() == Some("ad"))
        .map(|c| c.timestamp)
        .max()
        .map(|r| {
            (
                r,
                (r + hourglass_core::FEP_ELIGIBILITY_SECONDS).min(at.unix_seconds()),
            )
        })
        .unwrap_or((1, 0))
}
