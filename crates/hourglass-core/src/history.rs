//! The events of one thread, folded into a value that does not depend on their order.
//!
//! Meta delivers webhooks late, twice and out of order (it retries for up to seven days), so
//! a thread's history is kept as a *set*: recording an event that is already there changes
//! nothing, and any permutation of the same events gives an equal `ThreadHistory`.

use crate::instant::Instant;

/// How a customer reached the business, from the message's `referral.source_type`
/// (Meta: "Webhooks reference: messages", the `referral` object).
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EntryPoint {
    /// No referral: the customer wrote on their own.
    Organic,
    /// `source_type: "ad"`: a Click-to-WhatsApp ad or a Facebook Page call-to-action.
    /// The only entry point that makes a thread eligible for a free entry point window.
    Ad,
    /// `source_type: "post"`: a boosted post. No free entry point.
    Post,
    /// Any other `source_type` Meta may add; treated like `Organic` by the rules.
    Other,
}

/// The category a business message is priced under. `Service` is Meta's word for a
/// free-form (non-template) message.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MessageCategory {
    Marketing,
    Utility,
    Authentication,
    Service,
}

impl MessageCategory {
    pub const ALL: [MessageCategory; 4] = [
        MessageCategory::Service,
        MessageCategory::Marketing,
        MessageCategory::Utility,
        MessageCategory::Authentication,
    ];

    /// Meta's lower-case name, as in a status webhook's `pricing.category`.
    pub fn as_str(self) -> &'static str {
        match self {
            MessageCategory::Marketing => "marketing",
            MessageCategory::Utility => "utility",
            MessageCategory::Authentication => "authentication",
            MessageCategory::Service => "service",
        }
    }

    /// Reads Meta's category names, in either case. `authentication_international`
    /// is priced as authentication; anything else (`referral_conversion`, …) is not a
    /// category of the message itself and gives `None`.
    pub fn from_meta(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "marketing" | "marketing_lite" => Some(MessageCategory::Marketing),
            "utility" => Some(MessageCategory::Utility),
            "authentication" | "authentication_international" => {
                Some(MessageCategory::Authentication)
            }
            "service" => Some(MessageCategory::Service),
            _ => None,
        }
    }
}

/// The statuses of a business message that matter to the rules
/// (Meta: "Webhooks reference: statuses").
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum StatusKind {
    Sent,
    Delivered,
    Read,
    Failed,
}

/// One fact about a thread, as the edges learn it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ThreadEvent {
    /// A message from the contact (any user-content type, or an inbound call).
    CustomerMessage {
        id: String,
        at: Instant,
        entry_point: EntryPoint,
        /// Reactions open the window only when the business configures them to.
        is_reaction: bool,
    },
    /// A business message Hourglass itself sent (so it knows the category up front).
    BusinessMessageSent {
        id: String,
        at: Instant,
        category: Option<MessageCategory>,
    },
    /// A status webhook for a business message, whoever sent it.
    Status {
        id: String,
        kind: StatusKind,
        at: Instant,
        /// `pricing.category` when Meta sent one that names a message category.
        category: Option<MessageCategory>,
        /// `conversation.expiration_timestamp` when `conversation.origin.type` is
        /// `referral_conversion`: Meta's own end of the free entry point.
        fep_expires_at: Option<Instant>,
    },
}

/// A message from the contact.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct CustomerMessage {
    pub at: Instant,
    pub id: String,
    pub entry_point: EntryPoint,
    pub is_reaction: bool,
}

/// A business message and everything its statuses have told about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BusinessMessage {
    pub id: String,
    /// When Hourglass sent it, if it went through Hourglass.
    pub recorded_sent_at: Option<Instant>,
    /// The category Hourglass knew when sending (from the request or the template registry).
    pub sent_category: Option<MessageCategory>,
    /// The earliest `sent` status.
    pub sent_status_at: Option<Instant>,
    /// The earliest `delivered` or `read` status: a read implies delivery.
    pub delivered_at: Option<Instant>,
    /// The earliest `failed` status.
    pub failed_at: Option<Instant>,
    /// The smallest category named by any status's `pricing.category`.
    pub status_category: Option<MessageCategory>,
    /// Meta's end of a free entry point, from a `referral_conversion` status.
    pub fep_expires_at: Option<Instant>,
}

impl BusinessMessage {
    fn new(id: String) -> Self {
        BusinessMessage {
            id,
            recorded_sent_at: None,
            sent_category: None,
            sent_status_at: None,
            delivered_at: None,
            failed_at: None,
            status_category: None,
            fep_expires_at: None,
        }
    }

    /// When the message left: our own record or Meta's `sent` status, whichever is
    /// earlier; failing both, the earliest later status (a message is sent before it is
    /// delivered or fails).
    pub fn sent_at(&self) -> Instant {
        min_known(self.recorded_sent_at, self.sent_status_at)
            .or(min_known(self.delivered_at, self.failed_at))
            .unwrap_or(Instant::from_unix_seconds(i64::MAX))
    }

    /// The category the message is priced under, if anyone has said.
    pub fn category(&self) -> Option<MessageCategory> {
        self.sent_category.or(self.status_category)
    }

    /// Delivered at or before `at`.
    pub fn is_delivered_by(&self, at: Instant) -> bool {
        self.delivered_at.is_some_and(|d| d <= at)
    }

    /// Failed at or before `at`, and never delivered by then: a message that Meta reports
    /// both ways is taken as delivered.
    pub fn is_failed_by(&self, at: Instant) -> bool {
        self.failed_at.is_some_and(|f| f <= at) && !self.is_delivered_by(at)
    }
}

fn min_known(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

fn max_known(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

fn min_category(a: Option<MessageCategory>, b: Option<MessageCategory>) -> Option<MessageCategory> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

/// The set of a thread's events, merged per message id.
///
/// Customer messages are kept sorted by instant, business messages by id; both are
/// deduplicated on Meta's message id, and every merge is commutative and idempotent
/// (minimum of instants, first-known category), so the value depends only on the set of
/// events recorded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ThreadHistory {
    customer_messages: Vec<CustomerMessage>,
    business_messages: Vec<BusinessMessage>,
}

impl ThreadHistory {
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds a history from a list of events, in any order, duplicates allowed.
    pub fn from_events<I: IntoIterator<Item = ThreadEvent>>(events: I) -> Self {
        let mut history = Self::new();
        for event in events {
            history.record(event);
        }
        history
    }

    pub fn customer_messages(&self) -> &[CustomerMessage] {
        &self.customer_messages
    }

    pub fn business_messages(&self) -> &[BusinessMessage] {
        &self.business_messages
    }

    /// Folds one event in. Recording an event already recorded changes nothing.
    pub fn record(&mut self, event: ThreadEvent) {
        match event {
            ThreadEvent::CustomerMessage {
                id,
                at,
                entry_point,
                is_reaction,
            } => {
                let message = CustomerMessage {
                    at,
                    id,
                    entry_point,
                    is_reaction,
                };
                // Meta's id is the identity; a second copy with the same id is the same
                // message. Should two copies disagree, the smaller one wins, which keeps
                // the fold independent of order.
                if let Some(i) = self
                    .customer_messages
                    .iter()
                    .position(|m| m.id == message.id)
                {
                    if message < self.customer_messages[i] {
                        self.customer_messages.remove(i);
                    } else {
                        return;
                    }
                }
                let at = self.customer_messages.partition_point(|m| *m < message);
                self.customer_messages.insert(at, message);
            }
            ThreadEvent::BusinessMessageSent { id, at, category } => {
                let message = self.business_message_mut(id);
                message.recorded_sent_at = min_known(message.recorded_sent_at, Some(at));
                message.sent_category = min_category(message.sent_category, category);
            }
            ThreadEvent::Status {
                id,
                kind,
                at,
                category,
                fep_expires_at,
            } => {
                let message = self.business_message_mut(id);
                match kind {
                    StatusKind::Sent => {
                        message.sent_status_at = min_known(message.sent_status_at, Some(at))
                    }
                    StatusKind::Delivered | StatusKind::Read => {
                        message.delivered_at = min_known(message.delivered_at, Some(at))
                    }
                    StatusKind::Failed => {
                        message.failed_at = min_known(message.failed_at, Some(at))
                    }
                }
                message.status_category = min_category(message.status_category, category);
                message.fep_expires_at = max_known(message.fep_expires_at, fep_expires_at);
            }
        }
    }

    fn business_message_mut(&mut self, id: String) -> &mut BusinessMessage {
        let index = match self
            .business_messages
            .binary_search_by(|m| m.id.as_str().cmp(id.as_str()))
        {
            Ok(i) => i,
            Err(i) => {
                self.business_messages.insert(i, BusinessMessage::new(id));
                i
            }
        };
        &mut self.business_messages[index]
    }

    /// The history without one business message: used to price that message against
    /// everything else that happened.
    pub fn without_business_message(&self, id: &str) -> ThreadHistory {
        ThreadHistory {
            customer_messages: self.customer_messages.clone(),
            business_messages: self
                .business_messages
                .iter()
                .filter(|m| m.id != id)
                .cloned()
                .collect(),
        }
    }
}
