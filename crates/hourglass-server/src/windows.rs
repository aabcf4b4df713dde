//! Asking the rule core about a thread: gathering what it needs from storage (as little
//! as the question allows), and rendering its answer as the API's JSON (DESIGN.md §3.4).

use hourglass_core::{
    charge_of_message, decide_free_form_send_at, evaluate, Charge, Instant, MessageCategory,
    PricingContext, PricingModel, SendDecision, ServicePricing, ThreadEvent, ThreadHistory,
    WindowState,
};
use hourglass_store::{
    history_from_messages, MessageRow, ServiceCount, Store, StoreError, ThreadRow,
};
use serde_json::{json, Value};

use crate::app::AppState;
use crate::time::{format_instant, NumberCalendar};

/// The calendar of a business number: its time zone's eras and months.
pub async fn calendar_of(
    state: &AppState,
    phone_number_id: &str,
) -> Result<std::sync::Arc<NumberCalendar>, StoreError> {
    if let Some(calendar) = state.calendars().of_number(phone_number_id) {
        return Ok(calendar);
    }
    let zone = state
        .store()
        .business_number(phone_number_id)
        .await?
        .map(|n| n.time_zone)
        .unwrap_or_else(|| "UTC".to_owned());
    let calendar = state.calendars().get(&zone).unwrap_or_else(|error| {
        tracing::warn!(%error, phone_number_id, "falling back to UTC");
        state
            .calendars()
            .get("UTC")
            .expect("UTC is always a time zone")
    });
    state
        .calendars()
        .remember_number(phone_number_id, calendar.clone());
    Ok(calendar)
}

/// Which deliveries to count for the monthly free allowance of the era in force at `at`:
/// the number's free-form messages delivered this month before `at`, up to the allowance
/// (nothing, when the era has none).
fn service_count_query(calendar: &NumberCalendar, at: Instant) -> ServiceCount {
    let allowance = match calendar.eras.era_at(at).model {
        PricingModel::PerMessage(rules) => rules.service,
        PricingModel::ConversationBased(rules) => rules.service,
    };
    match allowance {
        ServicePricing::Free => ServiceCount::NONE,
        ServicePricing::FreeMonthlyAllowance { free_per_month } => ServiceCount {
            from: calendar.month_start(at),
            before: at,
            cap: free_per_month,
        },
    }
}

async fn service_count(
    store: &dyn Store,
    calendar: &NumberCalendar,
    phone_number_id: &str,
    at: Instant,
) -> Result<u32, StoreError> {
    let query = service_count_query(calendar, at);
    if query.cap == 0 {
        return Ok(0);
    }
    store
        .count_service_deliveries(phone_number_id, query.from, query.before, query.cap)
        .await
}

/// The thread's events that bear on `at`. For a question about now on a thread with no
/// recent ad or free entry point, the thread row's summary is the whole answer; anything
/// else reads the bounded slice of history the rules need.
async fn history_for(
    store: &dyn Store,
    calendar: &NumberCalendar,
    thread: &ThreadRow,
    at: Instant,
) -> Result<ThreadHistory, StoreError> {
    let latest_known = thread.last_customer_at.max(thread.last_reaction_at);
    // Any ad or free-entry-point status, however old, takes the full path: an FEP that
    // ended long ago still reads `closed`.
    let no_fep_signal = thread.last_fep_signal_at.is_none();
    let per_message = matches!(calendar.eras.era_at(at).model, PricingModel::PerMessage(_));
    if no_fep_signal && per_message && latest_known.is_none_or(|l| l <= at) {
        return Ok(summary_history(thread));
    }
    store.thread_history(thread.id, at).await
}

/// The thread row's summary as a history: its latest customer message and its latest
/// reaction, all that the customer service window depends on.
fn summary_history(thread: &ThreadRow) -> ThreadHistory {
    let mut history = ThreadHistory::new();
    for (id, at, is_reaction) in [
        ("latest-customer-message", thread.last_customer_at, false),
        ("latest-reaction", thread.last_reaction_at, true),
    ] {
        if let Some(at) = at {
            history.record(ThreadEvent::CustomerMessage {
                id: id.into(),
                at,
                entry_point: hourglass_core::EntryPoint::Organic,
                is_reaction,
            });
        }
    }
    history
}

/// The send gate's decision for a free-form message to a thread at `at` (its latest
/// customer message or later): the customer service window alone decides, and the thread
/// row as just read holds all it depends on, so the gate reads nothing more (no month's
/// count, no history) on the path every send takes.
pub fn free_form_decision(state: &AppState, thread: &ThreadRow, at: Instant) -> SendDecision {
    decide_free_form_send_at(&summary_history(thread), at, state.rule_settings())
}

/// The window of a contact at `at`, with one database round trip in the common case:
/// `None` if Hourglass has never seen the contact.
pub async fn contact_window_state(
    state: &AppState,
    phone_number_id: &str,
    contact: &str,
    at: Instant,
) -> Result<Option<(ThreadRow, WindowState)>, StoreError> {
    state.metrics().window_query();
    let calendar = calendar_of(state, phone_number_id).await?;
    let Some((thread, count)) = state
        .store()
        .find_thread_and_count_services(
            phone_number_id,
            contact,
            service_count_query(&calendar, at),
        )
        .await?
    else {
        return Ok(None);
    };
    let window = evaluate_thread(state, &calendar, &thread, count, at).await?;
    Ok(Some((thread, window)))
}

pub async fn window_state(
    state: &AppState,
    thread: &ThreadRow,
    at: Instant,
) -> Result<WindowState, StoreError> {
    state.metrics().window_query();
    let calendar = calendar_of(state, &thread.phone_number_id).await?;
    let count = service_count(state.store(), &calendar, &thread.phone_number_id, at).await?;
    evaluate_thread(state, &calendar, thread, count, at).await
}

/// The rule core's answer for a thread, given the month's free-form delivery count.
async fn evaluate_thread(
    state: &AppState,
    calendar: &NumberCalendar,
    thread: &ThreadRow,
    service_messages_this_month: u32,
    at: Instant,
) -> Result<WindowState, StoreError> {
    let history = history_for(state.store(), calendar, thread, at).await?;
    Ok(evaluate(
        &history,
        at,
        state.rule_settings(),
        PricingContext {
            eras: &calendar.eras,
            service_messages_this_month,
        },
    ))
}

fn instant_json(instant: Option<Instant>) -> Value {
    instant.map_or(Value::Null, |i| Value::String(format_instant(i)))
}

pub fn charge_json(charge: Charge) -> Value {
    json!({"billable": charge.billable, "type": charge.kind.as_str()})
}

pub fn contact_json(thread: &ThreadRow) -> Value {
    json!({"wa_id": thread.wa_id, "user_id": thread.user_id, "profile_name": thread.profile_name})
}

/// The window answer of DESIGN.md §3.4.
pub fn window_json(thread: &ThreadRow, state: &WindowState) -> Value {
    let csw = &state.customer_service_window;
    let fep = &state.free_entry_point;
    json!({
        "phone_number_id": thread.phone_number_id,
        "contact": contact_json(thread),
        "at": format_instant(state.at),
        "customer_service_window": {
            "open": csw.open,
            "opened_at": instant_json(csw.opened_at),
            "closes_at": instant_json(csw.closes_at),
            "seconds_left": csw.seconds_left(state.at),
        },
        "free_entry_point": {
            "state": fep.phase.as_str(),
            "eligible_until": instant_json(fep.eligible_until),
            "opened_at": instant_json(fep.opened_at),
            "closes_at": instant_json(fep.closes_at),
        },
        "free_form_allowed": state.free_form_allowed,
        "pricing_era": state.pricing_era.name,
        "charges": {
            "service": charge_json(state.charge(MessageCategory::Service)),
            "marketing": charge_json(state.charge(MessageCategory::Marketing)),
            "utility": charge_json(state.charge(MessageCategory::Utility)),
            "authentication": charge_json(state.charge(MessageCategory::Authentication)),
        },
    })
}

/// The latest status of a message: the furthest it got (read beats delivered beats sent),
/// with `failed` winning only over nothing-delivered.
fn latest_status(message: &MessageRow) -> Option<&str> {
    let rank = |s: &str| match s {
        "sent" => 1,
        "failed" => 2,
        "delivered" => 3,
        "read" => 4,
        _ => 0,
    };
    message
        .statuses
        .iter()
        .map(|s| s.status.as_str())
        .max_by_key(|s| rank(s))
}

/// A thread's messages as the API shows them, each outbound one with Hourglass's charge
/// beside Meta's `pricing` (and whether they disagree).
pub async fn messages_json(
    state: &AppState,
    thread: &ThreadRow,
    messages: &[MessageRow],
) -> Result<Value, StoreError> {
    let history = history_from_messages(messages);
    let calendar = calendar_of(state, &thread.phone_number_id).await?;
    let mut out = Vec::with_capacity(messages.len());
    for m in messages {
        let mut item = json!({
            "id": m.message_id,
            "direction": m.direction,
            "type": m.message_type,
            "timestamp": format_instant(m.timestamp),
        });
        if m.direction == "outbound" {
            let count = match m.delivered_at {
                Some(d) => {
                    service_count(state.store(), &calendar, &thread.phone_number_id, d).await?
                }
                None => 0,
            };
            let charge = charge_of_message(
                &history,
                &m.message_id,
                state.rule_settings(),
                PricingContext {
                    eras: &calendar.eras,
                    service_messages_this_month: count,
                },
            );
            let pricing: Option<Value> = m
                .statuses
                .iter()
                .rev()
                .filter_map(|s| s.pricing.as_deref())
                .find_map(|p| serde_json::from_str(p).ok());
            let disagrees = match (&charge, &pricing) {
                (Some(charge), Some(pricing)) => {
                    pricing.get("billable").and_then(Value::as_bool) != Some(charge.billable)
                        || pricing
                            .get("type")
                            .and_then(Value::as_str)
                            .is_some_and(|t| t != charge.kind.as_str())
                }
                _ => false,
            };
            item["status"] = json!(latest_status(m));
            item["category"] = json!(m.category);
            item["template"] = json!(m.template_name);
            item["sent_via_hourglass"] = json!(m.sent_via_hourglass);
            item["delivered_at"] = instant_json(m.delivered_at);
            item["charge"] = charge.map_or(Value::Null, charge_json);
            item["pricing"] = pricing.unwrap_or(Value::Null);
            item["charge_differs_from_meta"] = json!(disagrees);
        }
        out.push(item);
    }
    Ok(json!({"messages": out}))
}
