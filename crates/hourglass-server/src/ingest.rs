//! From Meta's webhook bytes to durable rows: converting wire items into storage items
//! by hand, and the group committer that lets many concurrent requests share one
//! transaction, each answered only after that transaction commits.

use std::sync::Arc;

use hourglass_core::{EntryPoint, Instant, MessageCategory, RuleSettings, StatusKind};
use hourglass_meta::webhook::{
    sender_contact, single_item_webhook, Call, ChangeValue, Contact, InboundMessage, Item,
    MessageKind, Metadata, Status, StatusKind as WireStatus, TemplateUpdate, TemplateUpdateKind,
};
use hourglass_meta::Webhook;
use hourglass_store::{
    ContactKey, ForwardItem, IngestItem, IngestReport, MediaRef, NumberRef, Store, StoreError,
    TemplateChange, TemplateChangeKind, TemplateChangeSource, WebhookDelivery, WindowOpening,
};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot, Mutex};

use crate::metrics::Metrics;
use crate::window_events::{window_event, WindowEvent};

/// WhatsApp did not exist before 2009; Meta's retries last 7 days. An event timestamp
/// before `EARLIEST_PLAUSIBLE` or more than a day ahead of our clock is not believed: the
/// item is kept raw with the reason, and it changes no window.
const EARLIEST_PLAUSIBLE: i64 = 1_230_768_000; // 2009-01-01T00:00:00Z
const LATEST_AHEAD_SECONDS: i64 = 86_400;

/// The stored form of one webhook POST: its bytes, and its items converted for storage.
///
/// With `forwarding`, each new message, status and call also carries the single-item
/// payload to forward to subscribed apps, and each that may open the customer service
/// window (reactions too where `settings` count them) its `window.opened` event.
pub fn delivery_from_webhook(
    body: &[u8],
    webhook: &Webhook,
    received_at: Instant,
    forwarding: bool,
    settings: RuleSettings,
) -> WebhookDelivery {
    let mut items = Vec::new();
    for entry in &webhook.entries {
        for change in &entry.changes {
            match &change.value {
                ChangeValue::Messages(value) => {
                    let number = number_ref(&value.metadata, &entry.id);
                    for message in &value.messages {
                        items.push(match message {
                            Item::Parsed(m) => {
                                let mut item =
                                    inbound_item(&number, &value.contacts, m, received_at);
                                if forwarding {
                                    let contact = sender_contact(
                                        &change.raw,
                                        m.from.as_deref(),
                                        m.from_user_id.as_deref(),
                                    );
                                    attach_forward(&mut item, settings, || {
                                        single_item_webhook(
                                            &entry.id,
                                            "messages",
                                            &change.raw,
                                            "messages",
                                            &m.raw,
                                            contact,
                                        )
                                    });
                                }
                                item
                            }
                            Item::Unparsed { raw, reason } => {
                                unprocessed("messages.messages", reason, raw)
                            }
                        });
                    }
                    for status in &value.statuses {
                        items.push(match status {
                            Item::Parsed(s) => {
                                let mut item = status_item(&number, s, received_at);
                                if forwarding {
                                    // Meta's status payloads may leave out `contacts`, which
                                    // clients such as pywa 4.5 read: the recipient, as the
                                    // status names it, stands in.
                                    let recipient = serde_json::json!({
                                        "wa_id": s.recipient_id,
                                        "user_id": s.recipient_user_id,
                                    });
                                    let contact = sender_contact(
                                        &change.raw,
                                        s.recipient_id.as_deref(),
                                        s.recipient_user_id.as_deref(),
                                    )
                                    .unwrap_or(&recipient);
                                    attach_forward(&mut item, settings, || {
                                        single_item_webhook(
                                            &entry.id,
                                            "messages",
                                            &change.raw,
                                            "statuses",
                                            &s.raw,
                                            Some(contact),
                                        )
                                    });
                                }
                                item
                            }
                            Item::Unparsed { raw, reason } => {
                                unprocessed("messages.statuses", reason, raw)
                            }
                        });
                    }
                    for error in &value.errors {
                        // Account-level errors (rate limits and the like) are kept for the
                        // operator; they bear on no thread.
                        items.push(IngestItem::Unprocessed {
                            field: "messages.errors".into(),
                            reason: format!(
                                "account-level error {}: {}",
                                error.code,
                                error
                                    .title
                                    .as_deref()
                                    .or(error.message.as_deref())
                                    .unwrap_or("")
                            ),
                            raw: format!("{error:?}"),
                        });
                    }
                }
                ChangeValue::Calls(value) => {
                    let number = number_ref(&value.metadata, &entry.id);
                    for call in &value.calls {
                        items.push(match call {
                            Item::Parsed(c) => {
                                let mut item = call_item(&number, &value.contacts, c, received_at);
                                if forwarding {
                                    let contact = sender_contact(
                                        &change.raw,
                                        c.from.as_deref(),
                                        c.from_user_id.as_deref(),
                                    );
                                    attach_forward(&mut item, settings, || {
                                        single_item_webhook(
                                            &entry.id,
                                            "calls",
                                            &change.raw,
                                            "calls",
                                            &c.raw,
                                            contact,
                                        )
                                    });
                                }
                                item
                            }
                            Item::Unparsed { raw, reason } => unprocessed("calls", reason, raw),
                        });
                    }
                }
                ChangeValue::Template(update) => {
                    let at = entry
                        .time
                        .map(Instant::from_unix_seconds)
                        .filter(|at| implausible(at.unix_seconds(), received_at).is_none())
                        .unwrap_or(received_at);
                    items.push(IngestItem::TemplateChange(template_change(
                        &entry.id, update, at,
                    )));
                }
                ChangeValue::Other => items.push(IngestItem::Unprocessed {
                    field: change.field.clone(),
                    reason: format!(
                        "the `{}` field is stored but not used by Hourglass",
                        change.field
                    ),
                    raw: json_text(&change.raw),
                }),
                ChangeValue::Unparsed { reason } => {
                    items.push(unprocessed(&change.field, reason, &change.raw))
                }
            }
        }
    }
    WebhookDelivery {
        body_sha256: hex::encode(Sha256::digest(body)),
        received_at,
        body: body.to_vec(),
        items,
    }
}

/// One of Meta's template webhooks as a registry change (Meta: "Webhooks reference",
/// `message_template_status_update`, `template_category_update`,
/// `message_template_quality_update`).
fn template_change(waba_id: &str, update: &TemplateUpdate, at: Instant) -> TemplateChange {
    let (kind, value, previous, reason) = match &update.change {
        TemplateUpdateKind::Status { event, reason, .. } => (
            TemplateChangeKind::Status,
            event.clone(),
            None,
            reason.clone(),
        ),
        TemplateUpdateKind::Category {
            previous,
            new,
            upcoming,
            upcoming_at,
        } => {
            // Meta's notice of a coming recategorisation names the *current* category in
            // `new_category`: the registry keeps it, and the notice goes in the history.
            let notice = upcoming.as_ref().map(|upcoming| match upcoming_at {
                Some(t) => format!(
                    "Meta will recategorise this template as {upcoming} at {}",
                    crate::time::format_instant(Instant::from_unix_seconds(*t))
                ),
                None => format!("Meta will recategorise this template as {upcoming}"),
            });
            (
                TemplateChangeKind::Category,
                new.clone(),
                previous.clone(),
                notice,
            )
        }
        TemplateUpdateKind::Quality { previous, new } => (
            TemplateChangeKind::Quality,
            new.clone(),
            previous.clone(),
            None,
        ),
    };
    TemplateChange {
        waba_id: waba_id.to_owned(),
        meta_template_id: update.template_id.clone(),
        name: update.name.clone(),
        language: update.language.clone(),
        kind,
        value,
        previous,
        reason,
        at,
        source: TemplateChangeSource::Webhook,
    }
}

/// The key forwards are ordered by: the business number and the contact.
pub fn thread_key(phone_number_id: &str, contact: &ContactKey) -> String {
    let who = contact
        .wa_id
        .as_deref()
        .or(contact.user_id.as_deref())
        .unwrap_or("");
    format!("{phone_number_id}|{who}")
}

/// Gives a stored item the payload to forward (only messages, statuses and calls that
/// were understood; the rest is kept raw and not forwarded), and a customer message (or a
/// reaction, where `settings` count them) the `window.opened` event to forward if the
/// store finds that it opens the window.
fn attach_forward(item: &mut IngestItem, settings: RuleSettings, body: impl FnOnce() -> Vec<u8>) {
    let (kind, number, contact, slot) = match item {
        IngestItem::Inbound {
            number,
            contact,
            message_type,
            forward,
            window_opened,
            timestamp,
            counts_for_window,
            is_reaction,
            ..
        } => {
            if *counts_for_window && settings.counts_as_customer_message(*is_reaction) {
                *window_opened = Some(Box::new(WindowOpening {
                    event: window_event(
                        WindowEvent::Opened,
                        &number.phone_number_id,
                        contact,
                        *timestamp,
                    ),
                    settings,
                }));
            }
            (
                if message_type == "call" {
                    "calls"
                } else {
                    "messages"
                },
                number,
                contact,
                forward,
            )
        }
        IngestItem::Status {
            number,
            contact,
            forward,
            ..
        } => ("statuses", number, contact, forward),
        _ => return,
    };
    *slot = Some(Box::new(ForwardItem {
        kind,
        thread_key: thread_key(&number.phone_number_id, contact),
        body: body(),
    }));
}

fn number_ref(metadata: &Metadata, waba_id: &str) -> NumberRef {
    NumberRef {
        phone_number_id: metadata.phone_number_id.clone(),
        waba_id: waba_id.to_owned(),
        display_phone_number: metadata.display_phone_number.clone(),
    }
}

fn unprocessed(field: &str, reason: &str, raw: &Value) -> IngestItem {
    IngestItem::Unprocessed {
        field: field.to_owned(),
        reason: reason.to_owned(),
        raw: json_text(raw),
    }
}

/// A JSON value as compact text, the same bytes as its `Display`. `serde_json::to_string`
/// writes into one buffer; `to_string()` goes through `fmt::Write` a token at a time,
/// which took about three times as long per message (a 0.2 KB text message: 220 against
/// 600–870 ns in a loop).
fn json_text(value: &Value) -> String {
    // A `Value`'s map keys are strings, so serializing it cannot fail.
    serde_json::to_string(value).unwrap_or_else(|_| value.to_string())
}

fn implausible(timestamp: i64, received_at: Instant) -> Option<String> {
    if timestamp < EARLIEST_PLAUSIBLE {
        Some(format!(
            "timestamp {timestamp} is before 2009: not believed"
        ))
    } else if timestamp > received_at.unix_seconds() + LATEST_AHEAD_SECONDS {
        Some(format!(
            "timestamp {timestamp} is more than a day after it reached us ({}): not believed",
            received_at.unix_seconds()
        ))
    } else {
        None
    }
}

/// The contact of an inbound item: its own `from`/`from_user_id`, completed from the
/// payload's `contacts[]` entry that matches either.
fn sender(
    contacts: &[Contact],
    from: Option<&str>,
    from_user_id: Option<&str>,
) -> (ContactKey, Option<String>) {
    let matching = contacts.iter().find(|c| {
        (from.is_some() && c.wa_id.as_deref() == from)
            || (from_user_id.is_some() && c.user_id.as_deref() == from_user_id)
    });
    let key = ContactKey {
        wa_id: from
            .map(str::to_owned)
            .or_else(|| matching.and_then(|c| c.wa_id.clone())),
        user_id: from_user_id
            .map(str::to_owned)
            .or_else(|| matching.and_then(|c| c.user_id.clone())),
    };
    (key, matching.and_then(|c| c.profile_name.clone()))
}

fn inbound_item(
    number: &NumberRef,
    contacts: &[Contact],
    m: &InboundMessage,
    received_at: Instant,
) -> IngestItem {
    if let Some(reason) = implausible(m.timestamp, received_at) {
        return unprocessed("messages.messages", &reason, &m.raw);
    }
    let (contact, profile_name) = sender(contacts, m.from.as_deref(), m.from_user_id.as_deref());
    if contact.wa_id.is_none() && contact.user_id.is_none() {
        return unprocessed(
            "messages.messages",
            "message has neither `from` nor `from_user_id`: no contact to attach it to",
            &m.raw,
        );
    }
    let entry_point = match m.referral.as_ref().and_then(|r| r.source_type.as_deref()) {
        None => EntryPoint::Organic,
        Some("ad") => EntryPoint::Ad,
        Some("post") => EntryPoint::Post,
        Some(_) => EntryPoint::Other,
    };
    IngestItem::Inbound {
        number: number.clone(),
        contact,
        profile_name,
        message_id: m.id.clone(),
        timestamp: Instant::from_unix_seconds(m.timestamp),
        message_type: m.kind.as_str().to_owned(),
        entry_point,
        is_reaction: m.kind == MessageKind::Reaction,
        // `system` items (number changes and the like) come from WhatsApp, not from the
        // contact. Every other type, including ones Meta adds later, is the contact
        // writing: it counts, because refusing a reply Meta would allow is the worse error.
        counts_for_window: m.kind != MessageKind::System,
        raw: json_text(&m.raw),
        forward: None,
        window_opened: None,
        media: media_of(m),
    }
}

/// The medium of an audio, image, video, document or sticker message (Meta: "messages
/// webhook reference": `{type: {id, mime_type, sha256}}`), to download while its id lives.
fn media_of(m: &InboundMessage) -> Option<Box<MediaRef>> {
    let kind = m.kind.as_str();
    if !matches!(kind, "audio" | "image" | "video" | "document" | "sticker") {
        return None;
    }
    let object = m.raw.get(kind)?;
    let text = |key: &str| object.get(key).and_then(Value::as_str).map(str::to_owned);
    Some(Box::new(MediaRef {
        id: text("id")?,
        mime_type: text("mime_type"),
        sha256: text("sha256"),
    }))
}

fn call_item(
    number: &NumberRef,
    contacts: &[Contact],
    c: &Call,
    received_at: Instant,
) -> IngestItem {
    let user_initiated = c
        .direction
        .as_deref()
        .is_none_or(|d| d.eq_ignore_ascii_case("USER_INITIATED"));
    let connect = c.event.as_deref().is_none_or(|e| e == "connect");
    if !(user_initiated && connect) {
        return unprocessed(
            "calls",
            "only a call the contact starts counts as a customer message",
            &c.raw,
        );
    }
    if let Some(reason) = implausible(c.timestamp, received_at) {
        return unprocessed("calls", &reason, &c.raw);
    }
    let (contact, profile_name) = sender(contacts, c.from.as_deref(), c.from_user_id.as_deref());
    if contact.wa_id.is_none() && contact.user_id.is_none() {
        return unprocessed("calls", "call has no caller", &c.raw);
    }
    IngestItem::Inbound {
        number: number.clone(),
        contact,
        profile_name,
        message_id: c.id.clone(),
        timestamp: Instant::from_unix_seconds(c.timestamp),
        message_type: "call".into(),
        entry_point: EntryPoint::Organic,
        is_reaction: false,
        counts_for_window: true,
        raw: json_text(&c.raw),
        forward: None,
        window_opened: None,
        media: None,
    }
}

fn status_item(number: &NumberRef, s: &Status, received_at: Instant) -> IngestItem {
    let kind = match s.status {
        WireStatus::Sent => StatusKind::Sent,
        WireStatus::Delivered => StatusKind::Delivered,
        WireStatus::Read => StatusKind::Read,
        WireStatus::Failed => StatusKind::Failed,
        _ => {
            return unprocessed(
                "messages.statuses",
                &format!(
                    "status `{}` is stored but does not bear on windows or charges",
                    s.status.as_str()
                ),
                &s.raw,
            )
        }
    };
    if let Some(reason) = implausible(s.timestamp, received_at) {
        return unprocessed("messages.statuses", &reason, &s.raw);
    }
    let contact = ContactKey {
        wa_id: s.recipient_id.clone(),
        user_id: s.recipient_user_id.clone(),
    };
    if contact.wa_id.is_none() && contact.user_id.is_none() {
        return unprocessed(
            "messages.statuses",
            "status has neither `recipient_id` nor `recipient_user_id`",
            &s.raw,
        );
    }
    let fep_expires_at = s
        .conversation
        .as_ref()
        .filter(|c| c.is_referral_conversion())
        .and_then(|c| c.expiration_timestamp)
        .map(Instant::from_unix_seconds);
    IngestItem::Status {
        number: number.clone(),
        contact,
        message_id: s.id.clone(),
        status: kind,
        timestamp: Instant::from_unix_seconds(s.timestamp),
        category: s
            .pricing
            .as_ref()
            .and_then(|p| p.category.as_deref())
            .and_then(MessageCategory::from_meta),
        fep_expires_at,
        pricing: s.raw.get("pricing").map(json_text),
        conversation: s.raw.get("conversation").map(json_text),
        errors: s.raw.get("errors").map(json_text),
        outbox_id: s
            .biz_opaque_callback_data
            .as_deref()
            .and_then(crate::outbox::outbox_id_of_callback),
        forward: None,
    }
}

// ---- Group commit ------------------------------------------------------------------------

struct Job {
    delivery: WebhookDelivery,
    done: oneshot::Sender<Result<IngestReport, String>>,
}

/// Why a delivery could not be stored. The webhook is answered 503 so Meta retries it.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("the database did not store the webhook: {0}")]
    Store(String),
    #[error("the ingest queue is shut down")]
    Closed,
}

/// Batches concurrent deliveries into shared transactions.
///
/// Each writer task takes whatever deliveries are waiting (up to `max_batch`), stores
/// them in one transaction, and only then answers each waiting request. Under load this
/// turns one fsync per webhook into one per batch; with no load, a lone delivery is
/// committed at once. A store that gathers deliveries itself (SQLite's writer thread)
/// gets each request's delivery directly: a batching task between them would only add a
/// hand-off, during which the writer waits for work.
#[derive(Clone)]
pub struct IngestQueue {
    route: Route,
}

#[derive(Clone)]
enum Route {
    Batched(mpsc::Sender<Job>),
    Direct {
        store: Arc<dyn Store>,
        metrics: Arc<Metrics>,
    },
}

impl IngestQueue {
    pub fn start(
        store: Arc<dyn Store>,
        max_batch: usize,
        writers: usize,
        metrics: Arc<Metrics>,
    ) -> Self {
        if store.gathers_deliveries() {
            return IngestQueue {
                route: Route::Direct { store, metrics },
            };
        }
        let (sender, receiver) = mpsc::channel::<Job>(max_batch.max(1) * 4);
        let receiver = Arc::new(Mutex::new(receiver));
        for _ in 0..writers.max(1) {
            let store = store.clone();
            let receiver = receiver.clone();
            let metrics = metrics.clone();
            tokio::spawn(async move {
                loop {
                    let mut jobs = Vec::new();
                    {
                        let mut receiver = receiver.lock().await;
                        let Some(first) = receiver.recv().await else {
                            return;
                        };
                        jobs.push(first);
                        while jobs.len() < max_batch {
                            match receiver.try_recv() {
                                Ok(job) => jobs.push(job),
                                Err(_) => break,
                            }
                        }
                    }
                    commit_batch(store.as_ref(), jobs, &metrics).await;
                }
            });
        }
        IngestQueue {
            route: Route::Batched(sender),
        }
    }

    /// Stores one delivery; returns once it is committed (or has failed).
    pub async fn submit(&self, delivery: WebhookDelivery) -> Result<IngestReport, IngestError> {
        match &self.route {
            Route::Batched(sender) => {
                let (done, receipt) = oneshot::channel();
                sender
                    .send(Job { delivery, done })
                    .await
                    .map_err(|_| IngestError::Closed)?;
                receipt
                    .await
                    .map_err(|_| IngestError::Closed)?
                    .map_err(IngestError::Store)
            }
            Route::Direct { store, metrics } => {
                let report = store
                    .ingest(Arc::new(vec![delivery]))
                    .await
                    .map_err(|e| IngestError::Store(e.to_string()))?;
                metrics.ingested(&report);
                Ok(report)
            }
        }
    }
}

async fn commit_batch(store: &dyn Store, jobs: Vec<Job>, metrics: &Metrics) {
    // The deliveries move out of the jobs (a delivery holds the raw body and every item:
    // copying them cost the HTTP side a share of its CPU).
    let (deliveries, waiting): (Vec<WebhookDelivery>, Vec<_>) =
        jobs.into_iter().map(|j| (j.delivery, j.done)).unzip();
    metrics.ingest_batch(deliveries.len());
    let deliveries = Arc::new(deliveries);
    match store.ingest(deliveries.clone()).await {
        Ok(report) => {
            metrics.ingested(&report);
            // The report is for the whole batch; each request only needs to know that its
            // delivery is durable.
            for done in waiting {
                let _ = done.send(Ok(report));
            }
        }
        Err(error) if deliveries.len() > 1 => {
            // One bad delivery must not sink the others: store them one by one.
            tracing::warn!(%error, size = deliveries.len(), "batch failed; retrying its deliveries one by one");
            for (delivery, done) in deliveries.iter().zip(waiting) {
                let result = store.ingest(Arc::new(vec![delivery.clone()])).await;
                if let Ok(report) = &result {
                    metrics.ingested(report);
                }
                let _ = done.send(result.map_err(|e: StoreError| e.to_string()));
            }
        }
        Err(error) => {
            tracing::error!(%error, "could not store a webhook delivery");
            for done in waiting {
                let _ = done.send(Err(error.to_string()));
            }
        }
    }
}
