//! Window decisions per second, in-process, on one core.
//!
//! Run: `cargo bench -p hourglass-core --bench window_decisions`.
//! Each iteration evaluates the full `WindowState` (CSW, FEP, era and the four charges)
//! of one thread, cycling through a pool of prebuilt threads of typical shapes.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use hourglass_core::{
    evaluate, EntryPoint, Instant, MessageCategory, PricingContext, ResolvedEras, RuleSettings,
    StatusKind, ThreadEvent, ThreadHistory, HOUR,
};

fn typical_threads(count: usize, base: Instant) -> Vec<ThreadHistory> {
    (0..count)
        .map(|i| {
            let at = base.plus_seconds(-((i as i64 * 7919) % (48 * HOUR)));
            let mut events = vec![ThreadEvent::CustomerMessage {
                id: format!("in.{i}"),
                at,
                entry_point: if i % 20 == 0 {
                    EntryPoint::Ad
                } else {
                    EntryPoint::Organic
                },
                is_reaction: false,
            }];
            if i % 3 == 0 {
                let id = format!("out.{i}");
                events.push(ThreadEvent::BusinessMessageSent {
                    id: id.clone(),
                    at: at.plus_seconds(60),
                    category: Some(MessageCategory::Service),
                });
                events.push(ThreadEvent::Status {
                    id,
                    kind: StatusKind::Delivered,
                    at: at.plus_seconds(62),
                    category: None,
                    fep_expires_at: None,
                });
            }
            ThreadHistory::from_events(events)
        })
        .collect()
}

fn window_decisions(c: &mut Criterion) {
    let now = Instant::from_unix_seconds(1_795_000_000);
    let threads = typical_threads(4_096, now);
    let eras = ResolvedEras::meta_utc();
    let pricing = PricingContext {
        eras: &eras,
        service_messages_this_month: 10,
    };
    let mut group = c.benchmark_group("rule_core");
    group.throughput(Throughput::Elements(1));
    let mut i = 0usize;
    group.bench_function("evaluate_window_state", |b| {
        b.iter(|| {
            i = (i + 1) & 4095;
            black_box(evaluate(
                black_box(&threads[i]),
                now,
                RuleSettings::default(),
                pricing,
            ))
        })
    });
    // The same-run peer: a lookup in a 1,000,000-entry std HashMap, the cost CEILINGS.md
    // prices a window decision against.
    let map: std::collections::HashMap<u64, u64> = (0..1_000_000u64).map(|k| (k, k)).collect();
    let mut key = 0u64;
    group.bench_function("peer_hashmap_lookup_1m", |b| {
        b.iter(|| {
            key = key
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            black_box(map.get(&((key >> 33) % 1_000_000)))
        })
    });
    group.finish();
}

criterion_group!(benches, window_decisions);
criterion_main!(benches);
