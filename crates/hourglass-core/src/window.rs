//! The customer service window, the free entry point, and what they allow and cost at an
//! instant (DESIGN.md §2.1–2.3; Meta: "Customer service windows", "Free entry point
//! conversations", "Pricing on the WhatsApp Business Platform").

use crate::history::{BusinessMessage, EntryPoint, MessageCategory, ThreadHistory};
use crate::instant::{Instant, DAY};
use crate::pricing::{service_charge, Charge, ChargeType, Era, PricingContext, PricingModel};

/// A customer message keeps the window open for 24 hours.
pub const CSW_SECONDS: i64 = DAY;
/// An ad message makes the thread eligible for a free entry point for 24 hours.
pub const FEP_ELIGIBILITY_SECONDS: i64 = DAY;
/// A free entry point lasts 72 hours from the delivery of the first reply.
pub const FEP_SECONDS: i64 = 3 * DAY;
/// How far back before an instant the rules look at a thread's events: long enough for
/// any free entry point (24 h eligibility + 72 h window, with room for late deliveries)
/// and for conversation-based billing chains. Storage may hand the core only the events
/// in `[at - HISTORY_LOOKBACK_SECONDS, at]` plus the latest customer message before `at`.
pub const HISTORY_LOOKBACK_SECONDS: i64 = 7 * DAY;

/// Whether a customer message at `at` opens a new customer service window, given the
/// contact's latest earlier customer message: it does when there was none, or when that
/// one's window had closed by `at` (the 24 hours are up at `previous + 24 h` exactly). A
/// message no newer than the latest one (a late webhook) opens nothing now.
pub fn opens_window(previous: Option<Instant>, at: Instant) -> bool {
    previous.is_none_or(|previous| at >= previous.plus_seconds(CSW_SECONDS))
}

/// Settings a business chooses that change the rules.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct RuleSettings {
    /// Whether a reaction from the contact opens the window. Meta does not say that it
    /// does, so it is off by default.
    pub reactions_open_window: bool,
}

impl RuleSettings {
    /// Whether a contact's message counts as a customer message: every kind does but a
    /// reaction, which counts only where `reactions_open_window` says so.
    pub fn counts_as_customer_message(self, is_reaction: bool) -> bool {
        !is_reaction || self.reactions_open_window
    }

    /// The instant a thread's customer service window runs from, given its latest
    /// customer message and its latest reaction: the first, or the later of the two where
    /// reactions count.
    pub fn window_anchor<T: Ord>(
        self,
        customer_message: Option<T>,
        reaction: Option<T>,
    ) -> Option<T> {
        if self.reactions_open_window {
            customer_message.max(reaction)
        } else {
            customer_message
        }
    }
}

/// The customer service window at an instant.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct CustomerServiceWindow {
    pub open: bool,
    /// The latest customer message at or before the instant, if any.
    pub opened_at: Option<Instant>,
    /// 24 hours after `opened_at`: in the future while open, in the past once closed.
    pub closes_at: Option<Instant>,
}

impl CustomerServiceWindow {
    /// Seconds until it closes, while it is open.
    pub fn seconds_left(&self, at: Instant) -> Option<i64> {
        match (self.open, self.closes_at) {
            (true, Some(closes_at)) => Some(at.seconds_until(closes_at)),
            _ => None,
        }
    }
}

/// Where a thread stands with respect to the free entry point.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum FepPhase {
    /// No ad message, or its 24 hours lapsed without a reply.
    None,
    /// An ad message was seen and no reply has been sent yet.
    Eligible,
    /// A reply was sent; its delivery is not yet known.
    Pending,
    Open,
    /// A free entry point was open and has ended.
    Closed,
}

impl FepPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            FepPhase::None => "none",
            FepPhase::Eligible => "eligible",
            FepPhase::Pending => "pending",
            FepPhase::Open => "open",
            FepPhase::Closed => "closed",
        }
    }

    /// The phase named by [`FepPhase::as_str`].
    pub fn from_name(name: &str) -> Option<FepPhase> {
        [
            FepPhase::None,
            FepPhase::Eligible,
            FepPhase::Pending,
            FepPhase::Open,
            FepPhase::Closed,
        ]
        .into_iter()
        .find(|phase| phase.as_str() == name)
    }
}

/// The free entry point at an instant. Fields that do not apply to the phase are `None`.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct FreeEntryPoint {
    pub phase: FepPhase,
    /// While eligible: the last instant a reply can be sent and still open one.
    pub eligible_until: Option<Instant>,
    /// While open or closed: the delivery of the first reply.
    pub opened_at: Option<Instant>,
    /// While open or closed: Meta's `expiration_timestamp` if it gave one, else 72 hours
    /// after `opened_at`.
    pub closes_at: Option<Instant>,
}

impl FreeEntryPoint {
    const NONE: FreeEntryPoint = FreeEntryPoint {
        phase: FepPhase::None,
        eligible_until: None,
        opened_at: None,
        closes_at: None,
    };

    pub fn is_open(&self) -> bool {
        self.phase == FepPhase::Open
    }
}

/// Everything the rules say about a thread at one instant.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct WindowState {
    pub at: Instant,
    pub customer_service_window: CustomerServiceWindow,
    pub free_entry_point: FreeEntryPoint,
    /// The FEP makes messages free, never allowed: only the CSW allows free-form messages.
    pub free_form_allowed: bool,
    pub pricing_era: Era,
    /// What a message of each category delivered at `at` would cost, indexed like
    /// [`MessageCategory::ALL`]; read it with [`WindowState::charge`].
    charges: [Charge; 4],
}

impl WindowState {
    pub fn charge(&self, category: MessageCategory) -> Charge {
        self.charges[category_index(category)]
    }
}

fn category_index(category: MessageCategory) -> usize {
    match category {
        MessageCategory::Service => 0,
        MessageCategory::Marketing => 1,
        MessageCategory::Utility => 2,
        MessageCategory::Authentication => 3,
    }
}

/// The answer to "may this free-form message be sent now?".
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum SendDecision {
    Allow,
    /// Meta would refuse it with 131047 "Re-engagement message": only a template may be
    /// sent. `closed_at` is when the window closed, if the contact ever wrote.
    RefuseWindowClosed {
        closed_at: Option<Instant>,
    },
}

/// Whether a free-form (non-template) message may be sent in the state `state`.
pub fn decide_free_form_send(state: &WindowState) -> SendDecision {
    if state.free_form_allowed {
        SendDecision::Allow
    } else {
        SendDecision::RefuseWindowClosed {
            closed_at: state.customer_service_window.closes_at,
        }
    }
}

/// Whether a free-form message may be sent at `at`: the customer service window alone
/// decides it, so `history` needs only the contact's messages (the latest before `at`,
/// and the latest reaction); free entry points and prices do not change the answer. The
/// same decision as [`decide_free_form_send`] on [`evaluate`]'s answer, for less.
pub fn decide_free_form_send_at(
    history: &ThreadHistory,
    at: Instant,
    settings: RuleSettings,
) -> SendDecision {
    let csw = customer_service_window_at(history, at, settings);
    if csw.open {
        SendDecision::Allow
    } else {
        SendDecision::RefuseWindowClosed {
            closed_at: csw.closes_at,
        }
    }
}

/// The state of a thread at `at`, from the events in `history` that happened at or
/// before `at`. Events after `at` are ignored, so the answer for a past instant is what
/// was true then, as far as anything is now known about then.
pub fn evaluate(
    history: &ThreadHistory,
    at: Instant,
    settings: RuleSettings,
    pricing: PricingContext<'_>,
) -> WindowState {
    let csw = customer_service_window_at(history, at, settings);
    let episodes = FepEpisodes::at(history, at);
    let fep = episodes.state_at(at);
    let era = *pricing.eras.era_at(at);
    let mut charges = [Charge::REGULAR; 4];
    for category in MessageCategory::ALL {
        charges[category_index(category)] = charge_at(
            history,
            at,
            category,
            csw.open,
            &fep,
            &episodes,
            &era,
            pricing.service_messages_this_month,
        );
    }
    WindowState {
        at,
        customer_service_window: csw,
        free_entry_point: fep,
        free_form_allowed: csw.open,
        pricing_era: era,
        charges,
    }
}

/// The free entry point of a thread at `at`, without pricing: what Hourglass's FEP events
/// compare with what they last reported.
pub fn free_entry_point_at(history: &ThreadHistory, at: Instant) -> FreeEntryPoint {
    FepEpisodes::at(history, at).state_at(at)
}

/// What one business message of the history cost, priced at its delivery against
/// everything else in the thread. `None` until it is delivered (only delivered messages
/// are charged), or if its category is unknown.
pub fn charge_of_message(
    history: &ThreadHistory,
    message_id: &str,
    settings: RuleSettings,
    pricing: PricingContext<'_>,
) -> Option<Charge> {
    let message = history
        .business_messages()
        .iter()
        .find(|m| m.id == message_id)?;
    let delivered_at = message.delivered_at?;
    let category = message.category()?;
    // A free entry point opened by this very message's delivery applies to it, so only
    // its own effect on billing conversations is removed.
    let others = history.without_business_message(message_id);
    let episodes = FepEpisodes::at(history, delivered_at);
    let fep = episodes.state_at(delivered_at);
    let csw = customer_service_window_at(&others, delivered_at, settings);
    let era = *pricing.eras.era_at(delivered_at);
    Some(charge_at(
        &others,
        delivered_at,
        category,
        csw.open,
        &fep,
        &episodes,
        &era,
        pricing.service_messages_this_month,
    ))
}

fn customer_service_window_at(
    history: &ThreadHistory,
    at: Instant,
    settings: RuleSettings,
) -> CustomerServiceWindow {
    // Sorted by instant: the latest counting message at or before `at` is found from the
    // end, usually in one step.
    let latest = history
        .customer_messages()
        .iter()
        .rev()
        .filter(|m| m.at <= at)
        .find(|m| settings.counts_as_customer_message(m.is_reaction))
        .map(|m| m.at);
    match latest {
        None => CustomerServiceWindow {
            open: false,
            opened_at: None,
            closes_at: None,
        },
        Some(opened_at) => {
            let closes_at = opened_at.plus_seconds(CSW_SECONDS);
            CustomerServiceWindow {
                open: at < closes_at,
                opened_at: Some(opened_at),
                closes_at: Some(closes_at),
            }
        }
    }
}

/// The free entry points a thread has had, as known at an instant.
struct FepEpisodes {
    /// `(opened_at, closes_at)` of every free entry point opened at or before the instant.
    opened: Vec<(Instant, Instant)>,
    /// The phase of the latest ad message's eligibility, if that phase is `Eligible` or
    /// `Pending`, with `eligible_until`.
    latest_unopened: Option<(FepPhase, Instant)>,
}

impl FepEpisodes {
    fn at(history: &ThreadHistory, at: Instant) -> Self {
        let mut episodes = FepEpisodes {
            opened: Vec::new(),
            latest_unopened: None,
        };
        let ads = history
            .customer_messages()
            .iter()
            .filter(|m| m.at <= at && m.entry_point == EntryPoint::Ad);
        for ad in ads {
            let eligible_until = ad.at.plus_seconds(FEP_ELIGIBILITY_SECONDS);
            // Replies: business messages sent in [R, R + 24 h), known by `at`, that have
            // not failed. A failed reply does not open the window; the next one may.
            let replies = history.business_messages().iter().filter(|m| {
                let sent = m.sent_at();
                sent >= ad.at && sent < eligible_until && sent <= at && !m.is_failed_by(at)
            });
            let mut any_reply = false;
            let mut opened_at: Option<Instant> = None;
            let mut meta_closes_at: Option<Instant> = None;
            for reply in replies {
                any_reply = true;
                if let Some(delivered) = reply.delivered_at.filter(|d| *d <= at) {
                    opened_at = Some(opened_at.map_or(delivered, |o| o.min(delivered)));
                }
                meta_closes_at = meta_closes_at.max(reply.fep_expires_at);
            }
            // Ads are visited oldest first, so the last one left here is the latest.
            episodes.latest_unopened = None;
            match opened_at {
                Some(opened_at) => {
                    let closes_at = meta_closes_at.unwrap_or(opened_at.plus_seconds(FEP_SECONDS));
                    episodes.opened.push((opened_at, closes_at));
                }
                None if any_reply => {
                    episodes.latest_unopened = Some((FepPhase::Pending, eligible_until))
                }
                None if at < eligible_until => {
                    episodes.latest_unopened = Some((FepPhase::Eligible, eligible_until))
                }
                None => {}
            }
        }
        // Meta's word beats our arithmetic: a delivered message whose status says it is in
        // a `referral_conversion` conversation is in a free entry point even if the ad
        // message itself never reached us.
        for message in history.business_messages() {
            if let Some(opened) = meta_declared_fep(message, at) {
                episodes.opened.push(opened);
            }
        }
        episodes
    }

    /// The free entry point in force at `at`: the one open then that lasts longest
    /// (earliest opening among equals); failing that, a pending or eligible ad; failing
    /// that, the last one to close.
    fn state_at(&self, at: Instant) -> FreeEntryPoint {
        let best = |candidates: &mut dyn Iterator<Item = &(Instant, Instant)>| {
            candidates
                .copied()
                .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0)))
        };
        let open = best(&mut self.opened.iter().filter(|(o, c)| *o <= at && at < *c));
        if let Some((opened_at, closes_at)) = open {
            return FreeEntryPoint {
                phase: FepPhase::Open,
                eligible_until: None,
                opened_at: Some(opened_at),
                closes_at: Some(closes_at),
            };
        }
        if let Some((phase, eligible_until)) = self.latest_unopened {
            return FreeEntryPoint {
                phase,
                eligible_until: (phase == FepPhase::Eligible).then_some(eligible_until),
                opened_at: None,
                closes_at: None,
            };
        }
        match best(&mut self.opened.iter().filter(|(o, _)| *o <= at)) {
            Some((opened_at, closes_at)) => FreeEntryPoint {
                phase: FepPhase::Closed,
                eligible_until: None,
                opened_at: Some(opened_at),
                closes_at: Some(closes_at),
            },
            None => FreeEntryPoint::NONE,
        }
    }

    fn covers(&self, instant: Instant) -> bool {
        self.opened
            .iter()
            .any(|(o, c)| *o <= instant && instant < *c)
    }
}

fn meta_declared_fep(message: &BusinessMessage, at: Instant) -> Option<(Instant, Instant)> {
    let closes_at = message.fep_expires_at?;
    let delivered = message.delivered_at.filter(|d| *d <= at)?;
    (message.sent_at() <= at).then_some((delivered, closes_at))
}

#[allow(clippy::too_many_arguments)]
fn charge_at(
    history: &ThreadHistory,
    at: Instant,
    category: MessageCategory,
    csw_open: bool,
    fep: &FreeEntryPoint,
    episodes: &FepEpisodes,
    era: &Era,
    service_messages_this_month: u32,
) -> Charge {
    if fep.is_open() {
        return Charge::free(ChargeType::FreeEntryPoint);
    }
    match era.model {
        PricingModel::PerMessage(rules) => match category {
            MessageCategory::Service => service_charge(rules.service, service_messages_this_month),
            MessageCategory::Utility if csw_open && rules.utility_free_in_csw => {
                Charge::free(ChargeType::FreeCustomerService)
            }
            MessageCategory::Utility
            | MessageCategory::Marketing
            | MessageCategory::Authentication => Charge::REGULAR,
        },
        PricingModel::ConversationBased(rules) => {
            let open = open_billing_conversations(history, at, episodes);
            match category {
                MessageCategory::Service if open.iter().any(|c| c.is_some()) => {
                    Charge::free(ChargeType::InOpenConversation)
                }
                MessageCategory::Service => {
                    service_charge(rules.service, service_messages_this_month)
                }
                other if open[category_index(other)].is_some() => {
                    Charge::free(ChargeType::InOpenConversation)
                }
                _ => Charge::REGULAR,
            }
        }
    }
}

/// Under conversation-based pricing: for each category (indexed like
/// [`MessageCategory::ALL`]), when the billing conversation open at `at` closes, if one is.
///
/// A delivered business message of a category opens a 24-hour conversation of that
/// category when none of it is open; a free-form message opens a service conversation
/// only when no conversation of any category is open; inside a free entry point nothing
/// opens one (Meta: "Conversation-based pricing", which this era followed).
fn open_billing_conversations(
    history: &ThreadHistory,
    at: Instant,
    episodes: &FepEpisodes,
) -> [Option<Instant>; 4] {
    let mut delivered: Vec<(Instant, &str, MessageCategory)> = history
        .business_messages()
        .iter()
        .filter_map(|m| {
            let d = m.delivered_at.filter(|d| *d <= at)?;
            Some((d, m.id.as_str(), m.category()?))
        })
        .collect();
    delivered.sort();
    let mut open_until: [Option<Instant>; 4] = [None; 4];
    for (delivered_at, _, category) in delivered {
        if episodes.covers(delivered_at) {
            continue;
        }
        for slot in open_until.iter_mut() {
            if slot.is_some_and(|until| until <= delivered_at) {
                *slot = None;
            }
        }
        let index = category_index(category);
        let opens = match category {
            MessageCategory::Service => open_until.iter().all(|c| c.is_none()),
            _ => open_until[index].is_none(),
        };
        if opens {
            open_until[index] = Some(delivered_at.plus_seconds(DAY));
        }
    }
    for slot in open_until.iter_mut() {
        if slot.is_some_and(|until| until <= at) {
            *slot = None;
        }
    }
    open_until
}

#[cfg(test)]
mod tests;
