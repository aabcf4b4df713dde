//! The worked examples of DESIGN.md §2.1–2.3, to the second, and the properties the rules
//! must keep whatever order events arrive in.

use super::*;
use crate::history::{StatusKind, ThreadEvent};
use crate::pricing::{utc_midnight, CivilDate, ResolvedEras};
use crate::{Instant, HOUR};
use proptest::prelude::*;

fn utc(year: i16, month: i8, day: i8, h: i64, m: i64, s: i64) -> Instant {
    utc_midnight(CivilDate { year, month, day }).plus_seconds(h * 3600 + m * 60 + s)
}

fn customer(id: &str, at: Instant) -> ThreadEvent {
    ThreadEvent::CustomerMessage {
        id: id.into(),
        at,
        entry_point: EntryPoint::Organic,
        is_reaction: false,
    }
}

fn from_ad(id: &str, at: Instant, entry_point: EntryPoint) -> ThreadEvent {
    ThreadEvent::CustomerMessage {
        id: id.into(),
        at,
        entry_point,
        is_reaction: false,
    }
}

fn sent(id: &str, at: Instant, category: MessageCategory) -> ThreadEvent {
    ThreadEvent::BusinessMessageSent {
        id: id.into(),
        at,
        category: Some(category),
    }
}

fn status(id: &str, kind: StatusKind, at: Instant) -> ThreadEvent {
    ThreadEvent::Status {
        id: id.into(),
        kind,
        at,
        category: None,
        fep_expires_at: None,
    }
}

fn state(history: &ThreadHistory, at: Instant) -> WindowState {
    state_with_count(history, at, 0)
}

fn state_with_count(history: &ThreadHistory, at: Instant, month_count: u32) -> WindowState {
    let eras = ResolvedEras::meta_utc();
    evaluate(
        history,
        at,
        RuleSettings::default(),
        PricingContext {
            eras: &eras,
            service_messages_this_month: month_count,
        },
    )
}

// ---- §2.1 Customer service window -------------------------------------------------------

#[test]
fn free_form_is_allowed_one_second_before_the_window_closes_and_refused_at_the_close() {
    // A contact writes at 23:32 on day 1; the window ends at 23:32:00 on day 2.
    let wrote = utc(2026, 11, 20, 23, 32, 0);
    let history = ThreadHistory::from_events([customer("wamid.a", wrote)]);

    let before = state(&history, utc(2026, 11, 21, 23, 31, 59));
    assert!(before.free_form_allowed);
    assert_eq!(
        before.customer_service_window.closes_at,
        Some(utc(2026, 11, 21, 23, 32, 0))
    );
    assert_eq!(
        before.customer_service_window.seconds_left(before.at),
        Some(1)
    );
    assert_eq!(decide_free_form_send(&before), SendDecision::Allow);

    let at_close = state(&history, utc(2026, 11, 21, 23, 32, 0));
    assert!(!at_close.free_form_allowed);
    assert_eq!(
        decide_free_form_send(&at_close),
        SendDecision::RefuseWindowClosed {
            closed_at: Some(utc(2026, 11, 21, 23, 32, 0))
        }
    );
}

#[test]
fn the_window_opens_at_the_instant_of_the_customer_message_not_before() {
    let wrote = utc(2026, 11, 20, 12, 0, 0);
    let history = ThreadHistory::from_events([customer("wamid.a", wrote)]);
    assert!(!state(&history, wrote.plus_seconds(-1)).free_form_allowed);
    assert!(state(&history, wrote).free_form_allowed);
}

#[test]
fn the_latest_customer_message_refreshes_the_window() {
    let first = utc(2026, 11, 20, 8, 0, 0);
    let second = utc(2026, 11, 20, 20, 0, 0);
    let history =
        ThreadHistory::from_events([customer("wamid.b", second), customer("wamid.a", first)]);
    let at = utc(2026, 11, 21, 10, 0, 0);
    let window = state(&history, at).customer_service_window;
    assert!(window.open);
    assert_eq!(window.opened_at, Some(second));
    assert_eq!(window.closes_at, Some(second.plus_seconds(24 * HOUR)));
}

#[test]
fn business_messages_never_open_or_extend_the_window() {
    let wrote = utc(2026, 11, 20, 12, 0, 0);
    let history = ThreadHistory::from_events([
        customer("wamid.in", wrote),
        sent(
            "wamid.out",
            wrote.plus_seconds(23 * HOUR),
            MessageCategory::Service,
        ),
        status(
            "wamid.out",
            StatusKind::Delivered,
            wrote.plus_seconds(23 * HOUR + 5),
        ),
    ]);
    assert!(!state(&history, wrote.plus_seconds(24 * HOUR)).free_form_allowed);
    assert!(
        !state(
            &ThreadHistory::from_events([sent("x", wrote, MessageCategory::Marketing)]),
            wrote
        )
        .free_form_allowed
    );
}

#[test]
fn a_contact_who_never_wrote_has_no_window_and_no_instants() {
    let history = ThreadHistory::new();
    let at = utc(2026, 11, 21, 0, 0, 0);
    let s = state(&history, at);
    assert!(!s.free_form_allowed);
    assert_eq!(s.customer_service_window.opened_at, None);
    assert_eq!(
        decide_free_form_send(&s),
        SendDecision::RefuseWindowClosed { closed_at: None }
    );
}

#[test]
fn a_reaction_does_not_open_the_window_unless_configured() {
    let at = utc(2026, 11, 21, 10, 0, 0);
    let history = ThreadHistory::from_events([ThreadEvent::CustomerMessage {
        id: "wamid.react".into(),
        at,
        entry_point: EntryPoint::Organic,
        is_reaction: true,
    }]);
    assert!(!state(&history, at).free_form_allowed);
    let eras = ResolvedEras::meta_utc();
    let configured = evaluate(
        &history,
        at,
        RuleSettings {
            reactions_open_window: true,
        },
        PricingContext {
            eras: &eras,
            service_messages_this_month: 0,
        },
    );
    assert!(configured.free_form_allowed);
}

#[test]
fn a_question_about_the_past_ignores_what_happened_after_it() {
    let first = utc(2026, 11, 18, 9, 0, 0);
    let later = utc(2026, 11, 20, 9, 0, 0);
    let history = ThreadHistory::from_events([customer("a", first), customer("b", later)]);
    let then = state(&history, utc(2026, 11, 19, 12, 0, 0));
    assert!(!then.free_form_allowed);
    assert_eq!(then.customer_service_window.opened_at, Some(first));
}

// ---- §2.2 Free entry point --------------------------------------------------------------

#[test]
fn fep_worked_example_from_the_brief() {
    // The contact writes through an ad at 10:00; a template reply is delivered at 22:00.
    let ad = utc(2026, 11, 10, 10, 0, 0);
    let reply_sent = utc(2026, 11, 10, 21, 59, 58);
    let delivered = utc(2026, 11, 10, 22, 0, 0);
    let history = ThreadHistory::from_events([
        from_ad("wamid.ad", ad, EntryPoint::Ad),
        sent("wamid.reply", reply_sent, MessageCategory::Marketing),
        status("wamid.reply", StatusKind::Sent, reply_sent),
        status("wamid.reply", StatusKind::Delivered, delivered),
    ]);

    // Before the delivery is known: pending.
    let pending = state(&history, utc(2026, 11, 10, 21, 59, 59));
    assert_eq!(pending.free_entry_point.phase, FepPhase::Pending);

    // From 22:00, open for 72 hours, and every category is free.
    let open = state(&history, delivered);
    assert_eq!(open.free_entry_point.phase, FepPhase::Open);
    assert_eq!(open.free_entry_point.opened_at, Some(delivered));
    assert_eq!(
        open.free_entry_point.closes_at,
        Some(delivered.plus_seconds(72 * HOUR))
    );
    for category in MessageCategory::ALL {
        assert_eq!(
            open.charge(category),
            Charge::free(ChargeType::FreeEntryPoint)
        );
    }

    // Free-form allowed until 10:00 the next day, when the CSW closes.
    assert!(state(&history, utc(2026, 11, 11, 9, 59, 59)).free_form_allowed);
    let after_csw = state(&history, utc(2026, 11, 11, 10, 0, 0));
    assert!(!after_csw.free_form_allowed);
    // ...after which templates are still free until the FEP ends.
    assert!(after_csw.free_entry_point.is_open());
    assert_eq!(
        after_csw.charge(MessageCategory::Marketing),
        Charge::free(ChargeType::FreeEntryPoint)
    );
    let last_second = state(&history, delivered.plus_seconds(72 * HOUR - 1));
    assert!(last_second.free_entry_point.is_open());
    let ended = state(&history, delivered.plus_seconds(72 * HOUR));
    assert_eq!(ended.free_entry_point.phase, FepPhase::Closed);
    assert_eq!(ended.charge(MessageCategory::Marketing), Charge::REGULAR);

    // If the contact writes again, a new 24-hour CSW opens; the FEP is unchanged.
    let wrote_again = utc(2026, 11, 12, 15, 0, 0);
    let mut history = history;
    history.record(customer("wamid.again", wrote_again));
    let s = state(&history, wrote_again.plus_seconds(HOUR));
    assert!(s.free_form_allowed);
    assert_eq!(
        s.customer_service_window.closes_at,
        Some(wrote_again.plus_seconds(24 * HOUR))
    );
    assert_eq!(
        s.free_entry_point.closes_at,
        Some(delivered.plus_seconds(72 * HOUR))
    );
}

#[test]
fn an_ad_message_without_a_reply_is_eligible_for_24_hours_then_nothing() {
    let ad = utc(2026, 11, 10, 10, 0, 0);
    let history = ThreadHistory::from_events([from_ad("wamid.ad", ad, EntryPoint::Ad)]);
    let eligible = state(&history, ad.plus_seconds(24 * HOUR - 1)).free_entry_point;
    assert_eq!(eligible.phase, FepPhase::Eligible);
    assert_eq!(eligible.eligible_until, Some(ad.plus_seconds(24 * HOUR)));
    assert_eq!(
        state(&history, ad.plus_seconds(24 * HOUR))
            .free_entry_point
            .phase,
        FepPhase::None
    );
}

#[test]
fn a_reply_sent_after_24_hours_opens_no_free_entry_point() {
    let ad = utc(2026, 11, 10, 10, 0, 0);
    let late = ad.plus_seconds(24 * HOUR);
    let history = ThreadHistory::from_events([
        from_ad("wamid.ad", ad, EntryPoint::Ad),
        sent("wamid.late", late, MessageCategory::Marketing),
        status("wamid.late", StatusKind::Delivered, late.plus_seconds(2)),
    ]);
    let s = state(&history, late.plus_seconds(HOUR));
    assert_eq!(s.free_entry_point.phase, FepPhase::None);
    assert_eq!(s.charge(MessageCategory::Marketing), Charge::REGULAR);
}

#[test]
fn a_boosted_post_gives_no_free_entry_point() {
    let post = utc(2026, 11, 10, 10, 0, 0);
    let history = ThreadHistory::from_events([
        from_ad("wamid.post", post, EntryPoint::Post),
        sent(
            "wamid.reply",
            post.plus_seconds(60),
            MessageCategory::Service,
        ),
        status("wamid.reply", StatusKind::Delivered, post.plus_seconds(61)),
    ]);
    assert_eq!(
        state(&history, post.plus_seconds(120))
            .free_entry_point
            .phase,
        FepPhase::None
    );
}

#[test]
fn a_failed_reply_does_not_open_the_free_entry_point_but_the_next_delivered_one_does() {
    let ad = utc(2026, 11, 10, 10, 0, 0);
    let history = ThreadHistory::from_events([
        from_ad("wamid.ad", ad, EntryPoint::Ad),
        sent("wamid.r1", ad.plus_seconds(60), MessageCategory::Service),
        status("wamid.r1", StatusKind::Failed, ad.plus_seconds(62)),
        sent("wamid.r2", ad.plus_seconds(600), MessageCategory::Service),
        status("wamid.r2", StatusKind::Delivered, ad.plus_seconds(605)),
    ]);
    // Between the failure and the second reply, the thread is still only eligible.
    assert_eq!(
        state(&history, ad.plus_seconds(100)).free_entry_point.phase,
        FepPhase::Eligible
    );
    let open = state(&history, ad.plus_seconds(605)).free_entry_point;
    assert_eq!(open.phase, FepPhase::Open);
    assert_eq!(open.opened_at, Some(ad.plus_seconds(605)));
}

#[test]
fn a_read_without_a_delivered_status_implies_delivery() {
    let ad = utc(2026, 11, 10, 10, 0, 0);
    let read = ad.plus_seconds(300);
    let history = ThreadHistory::from_events([
        from_ad("wamid.ad", ad, EntryPoint::Ad),
        sent("wamid.r", ad.plus_seconds(60), MessageCategory::Utility),
        status("wamid.r", StatusKind::Read, read),
    ]);
    let fep = state(&history, read).free_entry_point;
    assert_eq!(fep.phase, FepPhase::Open);
    assert_eq!(fep.opened_at, Some(read));
}

#[test]
fn metas_expiration_timestamp_beats_our_arithmetic() {
    let ad = utc(2026, 11, 10, 10, 0, 0);
    let meta_end = ad.plus_seconds(70 * HOUR);
    let history = ThreadHistory::from_events([
        from_ad("wamid.ad", ad, EntryPoint::Ad),
        sent("wamid.r", ad.plus_seconds(60), MessageCategory::Service),
        ThreadEvent::Status {
            id: "wamid.r".into(),
            kind: StatusKind::Sent,
            at: ad.plus_seconds(61),
            category: None,
            fep_expires_at: Some(meta_end),
        },
        status("wamid.r", StatusKind::Delivered, ad.plus_seconds(65)),
    ]);
    assert_eq!(
        state(&history, ad.plus_seconds(65))
            .free_entry_point
            .closes_at,
        Some(meta_end)
    );
    assert!(state(&history, meta_end.plus_seconds(-1))
        .free_entry_point
        .is_open());
    assert_eq!(
        state(&history, meta_end).free_entry_point.phase,
        FepPhase::Closed
    );
}

#[test]
fn a_referral_conversion_status_opens_the_free_entry_point_even_without_the_ad_message() {
    let sent_at = utc(2026, 11, 10, 10, 0, 0);
    let history = ThreadHistory::from_events([
        ThreadEvent::Status {
            id: "wamid.r".into(),
            kind: StatusKind::Sent,
            at: sent_at,
            category: None,
            fep_expires_at: Some(sent_at.plus_seconds(72 * HOUR)),
        },
        status("wamid.r", StatusKind::Delivered, sent_at.plus_seconds(3)),
    ]);
    let fep = state(&history, sent_at.plus_seconds(10)).free_entry_point;
    assert_eq!(fep.phase, FepPhase::Open);
    assert_eq!(fep.closes_at, Some(sent_at.plus_seconds(72 * HOUR)));
}

// ---- §2.3 Pricing ------------------------------------------------------------------------

/// Meta's own worked example: marketing at hour 0, the contact writes at hour 2, a text
/// reply at hour 3, a utility template at hour 4 and another at hour 30.
fn metas_pricing_example(hour0: Instant) -> ThreadHistory {
    let h = |n: i64| hour0.plus_seconds(n * HOUR);
    ThreadHistory::from_events([
        sent("m0", h(0), MessageCategory::Marketing),
        status("m0", StatusKind::Delivered, h(0)),
        customer("c2", h(2)),
        sent("t3", h(3), MessageCategory::Service),
        status("t3", StatusKind::Delivered, h(3)),
        sent("u4", h(4), MessageCategory::Utility),
        status("u4", StatusKind::Delivered, h(4)),
        sent("u30", h(30), MessageCategory::Utility),
        status("u30", StatusKind::Delivered, h(30)),
    ])
}

fn charge_of(history: &ThreadHistory, id: &str, month_count: u32) -> Charge {
    let eras = ResolvedEras::meta_utc();
    charge_of_message(
        history,
        id,
        RuleSettings::default(),
        PricingContext {
            eras: &eras,
            service_messages_this_month: month_count,
        },
    )
    .expect("delivered message with a category")
}

#[test]
fn pmp_2025_worked_example() {
    let hour0 = utc(2025, 8, 4, 9, 0, 0);
    let history = metas_pricing_example(hour0);
    assert_eq!(state(&history, hour0).pricing_era.name, "PMP_2025");
    assert_eq!(charge_of(&history, "m0", 0), Charge::REGULAR);
    assert_eq!(
        charge_of(&history, "t3", 0),
        Charge::free(ChargeType::FreeCustomerService)
    );
    assert_eq!(
        charge_of(&history, "u4", 0),
        Charge::free(ChargeType::FreeCustomerService)
    );
    assert_eq!(charge_of(&history, "u30", 0), Charge::REGULAR);
    // The CSW opened at hour 2 closes at hour 26, to the second.
    let h26 = hour0.plus_seconds(26 * HOUR);
    assert_eq!(
        state(&history, h26.plus_seconds(-1)).charge(MessageCategory::Utility),
        Charge::free(ChargeType::FreeCustomerService)
    );
    assert_eq!(
        state(&history, h26).charge(MessageCategory::Utility),
        Charge::REGULAR
    );
}

#[test]
fn pmp_2026_worked_example() {
    let hour0 = utc(2026, 11, 2, 9, 0, 0);
    let history = metas_pricing_example(hour0);
    assert_eq!(state(&history, hour0).pricing_era.name, "PMP_2026");
    assert_eq!(charge_of(&history, "m0", 0), Charge::REGULAR);
    // The text reply is one of the month's 1,000 free service messages...
    assert_eq!(
        charge_of(&history, "t3", 999),
        Charge::free(ChargeType::FreeTier)
    );
    // ...or charged once they are used up.
    assert_eq!(charge_of(&history, "t3", 1_000), Charge::REGULAR);
    // Utility templates in an open CSW are charged from October 2026.
    assert_eq!(charge_of(&history, "u4", 0), Charge::REGULAR);
    assert_eq!(charge_of(&history, "u30", 0), Charge::REGULAR);
}

#[test]
fn pmp_2026_charges_follow_the_monthly_count_at_the_instant_asked() {
    let at = utc(2026, 11, 21, 10, 0, 0);
    let history = ThreadHistory::from_events([customer("c", at.plus_seconds(-HOUR))]);
    assert_eq!(
        state_with_count(&history, at, 0).charge(MessageCategory::Service),
        Charge::free(ChargeType::FreeTier)
    );
    assert_eq!(
        state_with_count(&history, at, 1_000).charge(MessageCategory::Service),
        Charge::REGULAR
    );
}

#[test]
fn cbp_opens_one_billing_conversation_per_category_for_24_hours() {
    let start = utc(2025, 3, 3, 9, 0, 0);
    let h = |n: i64| start.plus_seconds(n * HOUR);
    let history = ThreadHistory::from_events([
        sent("m1", h(0), MessageCategory::Marketing),
        status("m1", StatusKind::Delivered, h(0)),
        sent("m2", h(5), MessageCategory::Marketing),
        status("m2", StatusKind::Delivered, h(5)),
        sent("u1", h(6), MessageCategory::Utility),
        status("u1", StatusKind::Delivered, h(6)),
        sent("s1", h(7), MessageCategory::Service),
        status("s1", StatusKind::Delivered, h(7)),
        sent("m3", h(24), MessageCategory::Marketing),
        status("m3", StatusKind::Delivered, h(24)),
    ]);
    assert_eq!(state(&history, start).pricing_era.name, "CBP");
    assert_eq!(charge_of(&history, "m1", 0), Charge::REGULAR);
    assert_eq!(
        charge_of(&history, "m2", 0),
        Charge::free(ChargeType::InOpenConversation)
    );
    // Utility is its own category: a new conversation.
    assert_eq!(charge_of(&history, "u1", 0), Charge::REGULAR);
    // A free-form message opens no service conversation while any conversation is open.
    assert_eq!(
        charge_of(&history, "s1", 0),
        Charge::free(ChargeType::InOpenConversation)
    );
    // The marketing conversation opened at hour 0 has closed at hour 24.
    assert_eq!(charge_of(&history, "m3", 0), Charge::REGULAR);
}

#[test]
fn cbp_service_conversations_are_free_from_november_2024_and_a_free_tier_before() {
    let history = ThreadHistory::new();
    let before = utc(2024, 10, 31, 23, 59, 59);
    assert_eq!(
        state_with_count(&history, before, 999).charge(MessageCategory::Service),
        Charge::free(ChargeType::FreeTier)
    );
    assert_eq!(
        state_with_count(&history, before, 1_000).charge(MessageCategory::Service),
        Charge::REGULAR
    );
    assert_eq!(
        state_with_count(&history, before.plus_seconds(1), 5_000).charge(MessageCategory::Service),
        Charge::free(ChargeType::FreeCustomerService)
    );
}

#[test]
fn era_boundary_changes_the_price_of_a_utility_template_in_the_window() {
    let boundary = utc(2026, 10, 1, 0, 0, 0);
    let history = ThreadHistory::from_events([customer("c", boundary.plus_seconds(-HOUR))]);
    assert_eq!(
        state(&history, boundary.plus_seconds(-1)).charge(MessageCategory::Utility),
        Charge::free(ChargeType::FreeCustomerService)
    );
    assert_eq!(
        state(&history, boundary).charge(MessageCategory::Utility),
        Charge::REGULAR
    );
}

#[test]
fn undelivered_messages_have_no_charge_yet() {
    let at = utc(2026, 11, 21, 10, 0, 0);
    let history = ThreadHistory::from_events([sent("x", at, MessageCategory::Marketing)]);
    let eras = ResolvedEras::meta_utc();
    let ctx = PricingContext {
        eras: &eras,
        service_messages_this_month: 0,
    };
    assert_eq!(
        charge_of_message(&history, "x", RuleSettings::default(), ctx),
        None
    );
}

// ---- Order does not matter ---------------------------------------------------------------

fn arbitrary_event() -> impl Strategy<Value = ThreadEvent> {
    let base = 1_790_000_000i64;
    let instant = (0i64..(10 * 24 * 3600)).prop_map(move |s| Instant::from_unix_seconds(base + s));
    let id = (0u8..6).prop_map(|n| format!("wamid.{n}"));
    let category = prop_oneof![
        Just(None),
        Just(Some(MessageCategory::Marketing)),
        Just(Some(MessageCategory::Utility)),
        Just(Some(MessageCategory::Service)),
    ];
    prop_oneof![
        (
            id.clone(),
            instant.clone(),
            prop_oneof![
                Just(EntryPoint::Organic),
                Just(EntryPoint::Ad),
                Just(EntryPoint::Post)
            ],
            any::<bool>()
        )
            .prop_map(
                |(id, at, entry_point, is_reaction)| ThreadEvent::CustomerMessage {
                    id: format!("in.{id}"),
                    at,
                    entry_point,
                    is_reaction
                }
            ),
        (id.clone(), instant.clone(), category.clone())
            .prop_map(|(id, at, category)| ThreadEvent::BusinessMessageSent { id, at, category }),
        (
            id,
            instant.clone(),
            prop_oneof![
                Just(StatusKind::Sent),
                Just(StatusKind::Delivered),
                Just(StatusKind::Read),
                Just(StatusKind::Failed)
            ],
            category,
            proptest::option::of(instant)
        )
            .prop_map(
                |(id, at, kind, category, fep_expires_at)| ThreadEvent::Status {
                    id,
                    kind,
                    at,
                    category,
                    fep_expires_at
                }
            ),
    ]
}

proptest! {
    #[test]
    fn any_permutation_and_duplication_of_events_gives_the_same_answers(
        events in proptest::collection::vec(arbitrary_event(), 0..24),
        shuffle_seed in any::<u64>(),
        duplicates in proptest::collection::vec(any::<prop::sample::Index>(), 0..8),
        probe_offsets in proptest::collection::vec(0i64..(12 * 24 * 3600), 1..6),
    ) {
        let original = ThreadHistory::from_events(events.clone());

        let mut reordered = events.clone();
        for pick in &duplicates {
            if !events.is_empty() {
                reordered.push(pick.get(&events).clone());
            }
        }
        // A deterministic Fisher–Yates shuffle driven by the seed.
        let mut seed = shuffle_seed;
        for i in (1..reordered.len()).rev() {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let j = (seed >> 33) as usize % (i + 1);
            reordered.swap(i, j);
        }
        let shuffled = ThreadHistory::from_events(reordered);
        prop_assert_eq!(&original, &shuffled);

        for offset in probe_offsets {
            let at = Instant::from_unix_seconds(1_790_000_000 + offset);
            prop_assert_eq!(state(&original, at), state(&shuffled, at));
        }
    }

    #[test]
    fn the_send_gate_decides_from_the_latest_messages_alone_as_the_full_evaluation_does(
        events in proptest::collection::vec(arbitrary_event(), 0..24),
        probe in 0i64..(12 * 24 * 3600),
        reactions_open_window in any::<bool>(),
    ) {
        let at = Instant::from_unix_seconds(1_790_000_000 + probe);
        let settings = RuleSettings { reactions_open_window };
        let full = ThreadHistory::from_events(events.clone());
        // What a thread row keeps: the latest customer message and the latest reaction.
        let latest = |reaction: bool| {
            full.customer_messages()
                .iter()
                .filter(|m| m.at <= at && m.is_reaction == reaction)
                .max_by_key(|m| m.at)
                .cloned()
        };
        let summary = ThreadHistory::from_events(
            [latest(false), latest(true)].into_iter().flatten().map(|m| {
                ThreadEvent::CustomerMessage {
                    id: m.id.clone(),
                    at: m.at,
                    entry_point: m.entry_point,
                    is_reaction: m.is_reaction,
                }
            }),
        );
        let eras = ResolvedEras::meta_utc();
        let pricing = PricingContext { eras: &eras, service_messages_this_month: 0 };
        prop_assert_eq!(
            decide_free_form_send_at(&summary, at, settings),
            decide_free_form_send(&evaluate(&full, at, settings, pricing))
        );
    }

    #[test]
    fn the_window_is_open_exactly_on_the_half_open_day_after_the_latest_message(
        messages in proptest::collection::vec(0i64..(5 * 24 * 3600), 1..6),
        probe in 0i64..(7 * 24 * 3600),
    ) {
        let base = 1_790_000_000i64;
        let history = ThreadHistory::from_events(messages.iter().enumerate().map(|(i, s)| {
            customer(&format!("m{i}"), Instant::from_unix_seconds(base + s))
        }));
        let at = Instant::from_unix_seconds(base + probe);
        let expected = messages.iter().any(|s| *s <= probe && probe < s + 24 * 3600);
        prop_assert_eq!(state(&history, at).free_form_allowed, expected);
    }
}

#[test]
fn a_message_opens_a_window_only_when_the_previous_one_has_closed_to_the_second() {
    let previous = utc(2026, 3, 2, 9, 0, 0);
    assert!(opens_window(None, previous), "a first message opens one");
    assert!(!opens_window(
        Some(previous),
        previous.plus_seconds(CSW_SECONDS - 1)
    ));
    assert!(opens_window(
        Some(previous),
        previous.plus_seconds(CSW_SECONDS)
    ));
    assert!(
        !opens_window(Some(previous), previous.plus_seconds(-60)),
        "a late webhook for an older message opens nothing now"
    );
    // The same boundary as the window itself: closed at `previous + 24 h` exactly.
    for offset in [CSW_SECONDS - 1, CSW_SECONDS, CSW_SECONDS + 1] {
        let at = previous.plus_seconds(offset);
        let history = ThreadHistory::from_events([customer("m1", previous)]);
        assert_eq!(
            opens_window(Some(previous), at),
            !state(&history, at).free_form_allowed,
            "{offset}"
        );
    }
}
