//! Hourglass's own events about free entry points (DESIGN.md §3.5), forwarded with the
//! window events to subscriptions that choose the `windows` kind:
//!
//! - `fep.opened`: the first reply to an ad message was delivered within its 24 hours
//!   (or Meta's status said the conversation is a free entry point); `at` is that delivery.
//! - `fep.closed`: the free entry point reached its end (72 hours, or Meta's
//!   `expiration_timestamp`); `at` is that end.
//!
//! Unlike a window, a free entry point cannot be found by one column: it depends on an ad
//! message, the replies after it and their deliveries, whose webhooks may come late and
//! in any order. So the clock worker evaluates the threads it may concern with the rule
//! core ([`hourglass_core::free_entry_point_at`]) and compares the answer with what it
//! last noted for the thread (a `fep_notices` row). It reports the difference, and notes
//! the new answer, in the transaction that moves the FEP clock's cursor with
//! compare-and-set: several processes report each change once, and a status that moves
//! the opening into the past still gets its event (with the past instant). The first
//! pass after the first subscription reports only what happened after it.
//!
//! The threads looked at on a tick ([`hourglass_store::FepCandidate`]): those whose
//! latest ad message or FEP status is newer than what was noted, those still eligible
//! or pending (a delivery status opens them without any new signal), and those whose
//! reported free entry point has reached its end.

use hourglass_core::{free_entry_point_at, FepPhase, FreeEntryPoint, Instant};
use hourglass_store::{
    ContactKey, FepCandidate, FepNotice, ForwardItem, ReportedFep, StoreError, FEP_CLOCK,
};

use crate::app::AppState;
use crate::time::now;
use crate::window_events::{hourglass_event, next_span};

/// How far back a thread's latest ad message or FEP status can be and still bear on a
/// free entry point now: the rules' own look-back.
const SIGNAL_HORIZON_SECONDS: i64 = hourglass_core::HISTORY_LOOKBACK_SECONDS;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FepEvent {
    Opened,
    Closed,
}

impl FepEvent {
    pub fn name(self) -> &'static str {
        match self {
            FepEvent::Opened => "fep.opened",
            FepEvent::Closed => "fep.closed",
        }
    }
}

/// An event to report: what happened, when, and to which free entry point.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FepReport {
    pub event: FepEvent,
    pub at: Instant,
    pub opened_at: Instant,
    pub closes_at: Instant,
}

/// What to report about a thread whose free entry point is `current` at `at`, given
/// what was noted last (`previous`), and what to note now. Events that happened before
/// `report_from` are noted but not reported (see [`emit_due`]).
pub fn fep_changes(
    previous: Option<&FepNotice>,
    current: &FreeEntryPoint,
    signal_at: Option<Instant>,
    at: Instant,
    report_from: Option<Instant>,
) -> (Vec<FepReport>, FepNotice) {
    let mut reports = Vec::new();
    let mut reported = previous.and_then(|p| p.reported);
    let report = |event, fep: &ReportedFep| FepReport {
        event,
        at: match event {
            FepEvent::Opened => fep.opened_at,
            FepEvent::Closed => fep.closes_at,
        },
        opened_at: fep.opened_at,
        closes_at: fep.closes_at,
    };
    match (current.opened_at, current.closes_at) {
        // Open or closed: the core names the free entry point that matters at `at`.
        (Some(opened_at), Some(closes_at)) => {
            let closed = current.phase == FepPhase::Closed || closes_at <= at;
            let fep = ReportedFep {
                opened_at,
                closes_at,
                closed,
            };
            match reported {
                // The same one: only its close can be new (its end may have moved, when
                // Meta's status gave an expiration).
                Some(last) if last.opened_at == opened_at => {
                    if closed && !last.closed {
                        reports.push(report(FepEvent::Closed, &fep));
                    }
                }
                _ => {
                    reports.push(report(FepEvent::Opened, &fep));
                    if closed {
                        reports.push(report(FepEvent::Closed, &fep));
                    }
                }
            }
            reported = Some(ReportedFep {
                closed: closed || reported.is_some_and(|l| l.opened_at == opened_at && l.closed),
                ..fep
            });
        }
        // Eligible, pending or none: a newer ad hides the free entry point reported
        // before, which may have ended meanwhile.
        _ => {
            if let Some(last) = reported.filter(|l| !l.closed && l.closes_at <= at) {
                reports.push(report(FepEvent::Closed, &last));
                reported = Some(ReportedFep {
                    closed: true,
                    ..last
                });
            }
        }
    }
    if let Some(report_from) = report_from {
        reports.retain(|r| r.at >= report_from);
    }
    let notice = FepNotice {
        phase: current.phase,
        signal_at,
        reported,
    };
    (reports, notice)
}

fn forward_item(candidate: &FepCandidate, report: &FepReport) -> ForwardItem {
    let contact = ContactKey {
        wa_id: candidate.wa_id.clone(),
        user_id: candidate.user_id.clone(),
    };
    hourglass_event(
        report.event.name(),
        report.at,
        &candidate.phone_number_id,
        &contact,
        ("free_entry_point", report.opened_at, report.closes_at),
    )
}

/// One pass of the FEP clock: evaluates the candidate threads at now, and reports and
/// notes what changed while moving the cursor. `since`: when the first subscription to
/// these events was made. Losing the compare-and-set to another process is not an
/// error: it reported the same changes.
pub async fn emit_due(state: &AppState, since: Instant) -> Result<(), StoreError> {
    let forwarding = state.store().forwarding();
    let cursor = forwarding.clock(FEP_CLOCK).await?;
    let Some((_, to)) = next_span(cursor, since, now()) else {
        return Ok(());
    };
    // The first pass after someone subscribed notes what was already known and reports
    // only what happened since; later passes report every change they find, however
    // long ago it happened (a late delivery status opens a free entry point in the past).
    let report_from = cursor.is_none_or(|c| c < since).then_some(since);
    let candidates = forwarding
        .fep_candidates(to.plus_seconds(-SIGNAL_HORIZON_SECONDS), to)
        .await?;
    let mut due: Vec<(Instant, (String, ForwardItem))> = Vec::new();
    let mut notices = Vec::new();
    for candidate in &candidates {
        let history = state
            .store()
            .thread_history(candidate.thread_id, to)
            .await?;
        let current = free_entry_point_at(&history, to);
        let (reports, notice) = fep_changes(
            candidate.notice.as_ref(),
            &current,
            candidate.last_fep_signal_at,
            to,
            report_from,
        );
        for report in &reports {
            let item = forward_item(candidate, report);
            due.push((report.at, (candidate.phone_number_id.clone(), item)));
        }
        if candidate.notice != Some(notice) {
            notices.push((candidate.thread_id, notice));
        }
    }
    // Stable: a thread's `opened` comes before its `closed` at the same instant.
    due.sort_by_key(|(at, _)| *at);
    let items: Vec<_> = due.into_iter().map(|(_, item)| item).collect();
    if forwarding
        .advance_clock(FEP_CLOCK, cursor, to, &items, &notices)
        .await?
        && !items.is_empty()
    {
        state.forwarding().wake();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> Instant {
        Instant::from_unix_seconds(s)
    }

    fn fep(phase: FepPhase, opened: i64, closes: i64) -> FreeEntryPoint {
        FreeEntryPoint {
            phase,
            eligible_until: None,
            opened_at: Some(at(opened)),
            closes_at: Some(at(closes)),
        }
    }

    fn eligible() -> FreeEntryPoint {
        FreeEntryPoint {
            phase: FepPhase::Eligible,
            eligible_until: Some(at(5_000)),
            opened_at: None,
            closes_at: None,
        }
    }

    /// The note after an FEP open from 300 to 1,000 was reported at 400.
    fn noted_open() -> FepNotice {
        let open = fep(FepPhase::Open, 300, 1_000);
        fep_changes(None, &open, Some(at(100)), at(400), None).1
    }

    fn events(reports: &[FepReport]) -> Vec<(&'static str, i64)> {
        reports
            .iter()
            .map(|r| (r.event.name(), r.at.unix_seconds()))
            .collect()
    }

    #[test]
    fn an_fep_is_reported_opened_once_then_closed_once() {
        let (reports, noted) = fep_changes(None, &eligible(), Some(at(100)), at(200), None);
        assert!(reports.is_empty());
        let open = fep(FepPhase::Open, 300, 1_000);
        let (reports, noted) = fep_changes(Some(&noted), &open, Some(at(100)), at(400), None);
        assert_eq!(events(&reports), [("fep.opened", 300)]);
        let (reports, noted) = fep_changes(Some(&noted), &open, Some(at(100)), at(500), None);
        assert!(reports.is_empty());
        let closed = fep(FepPhase::Closed, 300, 1_000);
        let (reports, noted) = fep_changes(Some(&noted), &closed, Some(at(100)), at(1_000), None);
        assert_eq!(events(&reports), [("fep.closed", 1_000)]);
        let (reports, _) = fep_changes(Some(&noted), &closed, Some(at(100)), at(2_000), None);
        assert!(reports.is_empty());
    }

    #[test]
    fn an_fep_found_after_it_ended_is_reported_opened_and_closed_with_their_instants() {
        let closed = fep(FepPhase::Closed, 300, 1_000);
        let (reports, noted) = fep_changes(None, &closed, Some(at(100)), at(5_000), None);
        assert_eq!(
            events(&reports),
            [("fep.opened", 300), ("fep.closed", 1_000)]
        );
        assert_eq!(
            noted.reported,
            Some(ReportedFep {
                opened_at: at(300),
                closes_at: at(1_000),
                closed: true
            })
        );
    }

    #[test]
    fn meta_moving_the_end_is_noted_without_a_new_event() {
        let noted = noted_open();
        let moved = fep(FepPhase::Open, 300, 1_200);
        let (reports, noted) = fep_changes(Some(&noted), &moved, Some(at(300)), at(1_100), None);
        assert!(reports.is_empty());
        assert_eq!(noted.reported.unwrap().closes_at, at(1_200));
    }

    #[test]
    fn a_newer_ad_does_not_hide_the_close_of_the_fep_before_it() {
        let noted = noted_open();
        // A new ad message at 900: the core now answers `eligible` about it.
        let (reports, noted) = fep_changes(Some(&noted), &eligible(), Some(at(900)), at(950), None);
        assert!(reports.is_empty(), "the first one is still open");
        let (reports, noted) =
            fep_changes(Some(&noted), &eligible(), Some(at(900)), at(1_001), None);
        assert_eq!(events(&reports), [("fep.closed", 1_000)]);
        // The new ad lapses without a reply: the core names the old one again, closed.
        let (reports, _) = fep_changes(
            Some(&noted),
            &fep(FepPhase::Closed, 300, 1_000),
            Some(at(900)),
            at(90_000),
            None,
        );
        assert!(reports.is_empty(), "{reports:?}");
    }

    #[test]
    fn a_second_fep_is_reported_as_a_new_one() {
        let (_, noted) = fep_changes(
            None,
            &fep(FepPhase::Closed, 300, 1_000),
            Some(at(100)),
            at(2_000),
            None,
        );
        let (reports, _) = fep_changes(
            Some(&noted),
            &fep(FepPhase::Open, 3_000, 9_000),
            Some(at(2_500)),
            at(3_100),
            None,
        );
        assert_eq!(events(&reports), [("fep.opened", 3_000)]);
    }

    #[test]
    fn on_the_first_pass_only_what_happened_since_the_subscription_is_reported() {
        let open = fep(FepPhase::Open, 300, 1_000);
        let (reports, noted) = fep_changes(None, &open, Some(at(100)), at(600), Some(at(500)));
        assert!(reports.is_empty());
        let closed = fep(FepPhase::Closed, 300, 1_000);
        let (reports, _) = fep_changes(Some(&noted), &closed, Some(at(100)), at(1_000), None);
        assert_eq!(events(&reports), [("fep.closed", 1_000)]);
    }
}
