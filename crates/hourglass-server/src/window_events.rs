//! Hourglass's own events about customer service windows (DESIGN.md §3.5), forwarded to
//! subscriptions that choose the `windows` kind, beside Meta's items:
//!
//! - `window.opened`: a customer message opened a window (none was open at its instant).
//!   Built at the edge with each customer message; the store enqueues it only when the
//!   message does open one, in the transaction that stores the message.
//! - `window.closing_soon` and `window.closed`: due at an instant, not caused by a
//!   webhook. A clock worker ([`run`]) finds the threads whose window closes (or enters
//!   its last `window_closing_soon_seconds`) in the span since it last looked, and
//!   enqueues their events while moving a clock cursor in the database with
//!   compare-and-set: several processes emit each span once, and a process that was down
//!   catches up on the span it missed. A window that a newer message extended is not
//!   found at its old closing instant, so nothing false is sent.
//!
//! The payload is Hourglass's own envelope (not Meta's), signed like every forward:
//! `{"object": "hourglass", "event", "at", "phone_number_id", "contact": {"wa_id",
//! "user_id"}, "window": {"opened_at", "closes_at"}}`. The same kind carries the free
//! entry point events (`fep_events`), whose envelope has `free_entry_point` in place of
//! `window`; the clock worker here runs both.

use std::time::Duration;

use hourglass_core::{Instant, CSW_SECONDS};
use hourglass_store::{ContactKey, ForwardItem, WindowThread, WINDOW_CLOCK};
use serde_json::json;

use crate::app::AppState;
use crate::ingest::thread_key;
use crate::time::{format_instant, now};

/// The kind subscriptions choose to receive window events.
pub const WINDOW_EVENTS_KIND: &str = "windows";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WindowEvent {
    Opened,
    ClosingSoon,
    Closed,
}

impl WindowEvent {
    pub fn name(self) -> &'static str {
        match self {
            WindowEvent::Opened => "window.opened",
            WindowEvent::ClosingSoon => "window.closing_soon",
            WindowEvent::Closed => "window.closed",
        }
    }
}

/// The event about the window that the customer message at `opened_at` opened, to
/// forward as it is; its `at` is the instant the event happened.
pub fn window_event(
    event: WindowEvent,
    phone_number_id: &str,
    contact: &ContactKey,
    opened_at: Instant,
) -> ForwardItem {
    window_event_at(event, phone_number_id, contact, opened_at, None)
}

fn window_event_at(
    event: WindowEvent,
    phone_number_id: &str,
    contact: &ContactKey,
    opened_at: Instant,
    closing_soon_seconds: Option<i64>,
) -> ForwardItem {
    let closes_at = opened_at.plus_seconds(CSW_SECONDS);
    let at = event_instant(event, opened_at, closing_soon_seconds.unwrap_or(0));
    hourglass_event(
        event.name(),
        at,
        phone_number_id,
        contact,
        ("window", opened_at, closes_at),
    )
}

/// One of Hourglass's own events in its envelope: `about` names the window the event is
/// about (`"window"` or `"free_entry_point"`) with its opening and closing instants.
pub(crate) fn hourglass_event(
    name: &str,
    at: Instant,
    phone_number_id: &str,
    contact: &ContactKey,
    about: (&str, Instant, Instant),
) -> ForwardItem {
    let (field, opened_at, closes_at) = about;
    let mut body = json!({
        "object": "hourglass",
        "event": name,
        "at": format_instant(at),
        "phone_number_id": phone_number_id,
        "contact": {"wa_id": contact.wa_id, "user_id": contact.user_id},
    });
    body[field] = json!({
        "opened_at": format_instant(opened_at),
        "closes_at": format_instant(closes_at),
    });
    ForwardItem {
        kind: WINDOW_EVENTS_KIND,
        thread_key: thread_key(phone_number_id, contact),
        body: body.to_string().into_bytes(),
    }
}

/// When `event` happens for the window that the customer message at `opened_at` opened.
fn event_instant(event: WindowEvent, opened_at: Instant, closing_soon_seconds: i64) -> Instant {
    let closes_at = opened_at.plus_seconds(CSW_SECONDS);
    match event {
        WindowEvent::Opened => opened_at,
        WindowEvent::ClosingSoon => closes_at.plus_seconds(-closing_soon_seconds),
        WindowEvent::Closed => closes_at,
    }
}

/// The clock events due in `(from, to]`, given the threads whose window anchor (latest
/// customer message, or reaction where they count) makes their window close, or enter its
/// last `closing_soon_seconds`, in that span (`closing`: anchor in
/// `(from - 24 h, to - 24 h]`; `soon`: in
/// `(from - 24 h + lead, to - 24 h + lead]`), each with its business number, in the
/// order they fall due.
pub fn clock_events(
    closing: &[WindowThread],
    soon: &[WindowThread],
    closing_soon_seconds: i64,
) -> Vec<(String, ForwardItem)> {
    let mut due: Vec<(Instant, u8, (String, ForwardItem))> = Vec::new();
    for (threads, event) in [
        (soon, WindowEvent::ClosingSoon),
        (closing, WindowEvent::Closed),
    ] {
        for thread in threads {
            let contact = ContactKey {
                wa_id: thread.wa_id.clone(),
                user_id: thread.user_id.clone(),
            };
            let item = window_event_at(
                event,
                &thread.phone_number_id,
                &contact,
                thread.anchor_at,
                Some(closing_soon_seconds),
            );
            let at = event_instant(event, thread.anchor_at, closing_soon_seconds);
            due.push((at, event as u8, (thread.phone_number_id.clone(), item)));
        }
    }
    due.sort_by_key(|(at, order, _)| (*at, *order));
    due.into_iter().map(|(_, _, item)| item).collect()
}

/// The span the clock worker emits next: from its cursor, or from when the first
/// subscription to window events was made (never the past before anyone asked), to `at`.
pub fn next_span(
    cursor: Option<Instant>,
    first_subscribed_at: Instant,
    at: Instant,
) -> Option<(Instant, Instant)> {
    let from = cursor
        .unwrap_or(first_subscribed_at)
        .max(first_subscribed_at);
    (at > from).then_some((from, at))
}

/// Runs the clock worker until the runtime stops.
pub async fn run(state: AppState) {
    let settings = state.config().forwarding.clone();
    let tick = Duration::from_millis(settings.window_tick_ms);
    loop {
        tokio::time::sleep(tick).await;
        if !state.forwarding().enabled() {
            continue;
        }
        // Both kinds of clock event start from the first subscription that wants them.
        let since = match first_subscribed_at(&state).await {
            Ok(Some(since)) => since,
            Ok(None) => continue,
            Err(error) => {
                tracing::warn!(%error, "window events: could not read the subscriptions");
                continue;
            }
        };
        if let Err(error) = emit_due(&state, since, settings.window_closing_soon_seconds).await {
            tracing::warn!(%error, "window events: could not emit the events due");
        }
        if let Err(error) = crate::fep_events::emit_due(&state, since).await {
            tracing::warn!(%error, "free entry point events: could not emit the events due");
        }
    }
}

/// When the first subscription that wants window events was made; `None` while none does.
async fn first_subscribed_at(
    state: &AppState,
) -> Result<Option<Instant>, hourglass_store::StoreError> {
    Ok(state
        .store()
        .forwarding()
        .subscriptions()
        .await?
        .into_iter()
        .filter(|s| s.events.iter().any(|e| e == "*" || e == WINDOW_EVENTS_KIND))
        .map(|s| s.created_at)
        .min())
}

/// One pass of the clock: reads the cursor, finds what fell due since (never before
/// `first_subscribed_at`), and moves the cursor with the events. Losing the
/// compare-and-set to another process is not an error: it emitted the span.
async fn emit_due(
    state: &AppState,
    first_subscribed_at: Instant,
    closing_soon_seconds: i64,
) -> Result<(), hourglass_store::StoreError> {
    let forwarding = state.store().forwarding();
    let cursor = forwarding.clock(WINDOW_CLOCK).await?;
    let Some((from, to)) = next_span(cursor, first_subscribed_at, now()) else {
        return Ok(());
    };
    let settings = state.rule_settings();
    let closing = forwarding
        .threads_by_window_anchor(
            from.plus_seconds(-CSW_SECONDS),
            to.plus_seconds(-CSW_SECONDS),
            settings,
        )
        .await?;
    let lead = CSW_SECONDS - closing_soon_seconds;
    let soon = forwarding
        .threads_by_window_anchor(from.plus_seconds(-lead), to.plus_seconds(-lead), settings)
        .await?;
    let events = clock_events(&closing, &soon, closing_soon_seconds);
    if forwarding
        .advance_clock(WINDOW_CLOCK, cursor, to, &events, &[])
        .await?
        && !events.is_empty()
    {
        state.forwarding().wake();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn thread(wa_id: &str, last: i64) -> WindowThread {
        WindowThread {
            phone_number_id: "106540352242922".into(),
            wa_id: Some(wa_id.into()),
            user_id: None,
            anchor_at: Instant::from_unix_seconds(last),
        }
    }

    fn event_of(item: &ForwardItem) -> (String, String) {
        let body: serde_json::Value = serde_json::from_slice(&item.body).unwrap();
        (
            body["event"].as_str().unwrap().to_owned(),
            body["at"].as_str().unwrap().to_owned(),
        )
    }

    #[test]
    fn clock_events_say_when_each_window_closes_and_come_in_the_order_they_fall_due() {
        let t = 1_790_000_000;
        let closing = [thread("1", t - CSW_SECONDS + 30)];
        let soon = [thread("2", t - CSW_SECONDS + 3600 + 10)];
        let events = clock_events(&closing, &soon, 3600);
        let got: Vec<_> = events.iter().map(|(_, item)| event_of(item)).collect();
        assert_eq!(
            got,
            [
                (
                    "window.closing_soon".to_owned(),
                    format_instant(Instant::from_unix_seconds(t + 10))
                ),
                (
                    "window.closed".to_owned(),
                    format_instant(Instant::from_unix_seconds(t + 30))
                ),
            ]
        );
        assert_eq!(events[0].1.kind, WINDOW_EVENTS_KIND);
        assert_eq!(events[0].1.thread_key, "106540352242922|2");
    }

    #[test]
    fn the_span_starts_at_the_cursor_but_never_before_anyone_subscribed() {
        let at = |s| Instant::from_unix_seconds(s);
        assert_eq!(next_span(None, at(100), at(105)), Some((at(100), at(105))));
        assert_eq!(
            next_span(Some(at(90)), at(100), at(105)),
            Some((at(100), at(105)))
        );
        assert_eq!(
            next_span(Some(at(103)), at(100), at(105)),
            Some((at(103), at(105)))
        );
        assert_eq!(next_span(Some(at(105)), at(100), at(105)), None);
    }

    #[test]
    fn an_opened_event_names_the_window_it_opened() {
        let contact = ContactKey {
            wa_id: None,
            user_id: Some("US.1".into()),
        };
        let item = window_event(
            WindowEvent::Opened,
            "106540352242922",
            &contact,
            Instant::from_unix_seconds(1_790_000_000),
        );
        let body: serde_json::Value = serde_json::from_slice(&item.body).unwrap();
        assert_eq!(body["object"], "hourglass");
        assert_eq!(body["event"], "window.opened");
        assert_eq!(body["contact"]["user_id"], "US.1");
        assert_eq!(body["window"]["opened_at"], body["at"]);
        assert_eq!(
            body["window"]["closes_at"],
            format_instant(Instant::from_unix_seconds(1_790_000_000 + CSW_SECONDS))
        );
        assert_eq!(item.thread_key, "106540352242922|US.1");
    }
}
