//! Counters for `/metrics`, in Prometheus's text format. Plain atomics: a handful of
//! counters do not earn a metrics framework.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use hourglass_store::IngestReport;

#[derive(Default)]
pub struct Metrics {
    webhooks_accepted: AtomicU64,
    webhooks_unsigned: AtomicU64,
    webhooks_bad_signature: AtomicU64,
    webhooks_malformed: AtomicU64,
    webhooks_too_large: AtomicU64,
    webhooks_store_failed: AtomicU64,
    ingest_batches: AtomicU64,
    ingest_batch_deliveries: AtomicU64,
    messages_stored: AtomicU64,
    statuses_stored: AtomicU64,
    duplicates: AtomicU64,
    sends_forwarded: AtomicU64,
    sends_refused_window: AtomicU64,
    sends_refused_template: AtomicU64,
    sends_invalid: AtomicU64,
    upstream_errors: AtomicU64,
    window_queries: AtomicU64,
}

/// What happened to one webhook POST.
pub enum WebhookOutcome {
    Accepted,
    Unsigned,
    BadSignature,
    Malformed,
    TooLarge,
    StoreFailed,
}

pub enum SendOutcome {
    Forwarded,
    RefusedWindowClosed,
    /// Refused by the template registry (unknown, not approved, wrong parameters).
    RefusedTemplate,
    Invalid,
    UpstreamError,
}

impl Metrics {
    pub fn webhook(&self, outcome: WebhookOutcome) {
        let counter = match outcome {
            WebhookOutcome::Accepted => &self.webhooks_accepted,
            WebhookOutcome::Unsigned => &self.webhooks_unsigned,
            WebhookOutcome::BadSignature => &self.webhooks_bad_signature,
            WebhookOutcome::Malformed => &self.webhooks_malformed,
            WebhookOutcome::TooLarge => &self.webhooks_too_large,
            WebhookOutcome::StoreFailed => &self.webhooks_store_failed,
        };
        counter.fetch_add(1, Relaxed);
    }

    pub fn send(&self, outcome: SendOutcome) {
        let counter = match outcome {
            SendOutcome::Forwarded => &self.sends_forwarded,
            SendOutcome::RefusedWindowClosed => &self.sends_refused_window,
            SendOutcome::RefusedTemplate => &self.sends_refused_template,
            SendOutcome::Invalid => &self.sends_invalid,
            SendOutcome::UpstreamError => &self.upstream_errors,
        };
        counter.fetch_add(1, Relaxed);
    }

    pub fn ingest_batch(&self, deliveries: usize) {
        self.ingest_batches.fetch_add(1, Relaxed);
        self.ingest_batch_deliveries
            .fetch_add(deliveries as u64, Relaxed);
    }

    pub fn ingested(&self, report: &IngestReport) {
        self.messages_stored.fetch_add(report.messages_new, Relaxed);
        self.statuses_stored.fetch_add(report.statuses_new, Relaxed);
        self.duplicates.fetch_add(report.duplicates, Relaxed);
    }

    pub fn window_query(&self) {
        self.window_queries.fetch_add(1, Relaxed);
    }

    /// The Prometheus text exposition of every counter, with the group commits of a store
    /// that gathers deliveries itself ([`hourglass_store::Store::group_commit_counts`]).
    pub fn render(&self, store_group_commits: (u64, u64)) -> String {
        let (commits, deliveries) = store_group_commits;
        let ingest_batches = AtomicU64::new(self.ingest_batches.load(Relaxed) + commits);
        let ingest_batch_deliveries =
            AtomicU64::new(self.ingest_batch_deliveries.load(Relaxed) + deliveries);
        let mut out = String::new();
        let mut counter = |name: &str, help: &str, samples: &[(&str, &AtomicU64)]| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for (labels, value) in samples {
                let _ = writeln!(out, "{name}{labels} {}", value.load(Relaxed));
            }
        };
        counter(
            "hourglass_webhooks_total",
            "Webhook POSTs by outcome.",
            &[
                ("{outcome=\"accepted\"}", &self.webhooks_accepted),
                ("{outcome=\"unsigned\"}", &self.webhooks_unsigned),
                ("{outcome=\"bad_signature\"}", &self.webhooks_bad_signature),
                ("{outcome=\"malformed\"}", &self.webhooks_malformed),
                ("{outcome=\"too_large\"}", &self.webhooks_too_large),
                ("{outcome=\"store_failed\"}", &self.webhooks_store_failed),
            ],
        );
        counter(
            "hourglass_ingest_batches_total",
            "Database transactions that stored webhook deliveries (group commits).",
            &[("", &ingest_batches)],
        );
        counter(
            "hourglass_ingest_batch_deliveries_total",
            "Webhook deliveries carried by those transactions.",
            &[("", &ingest_batch_deliveries)],
        );
        counter(
            "hourglass_items_stored_total",
            "New items stored from webhooks.",
            &[
                ("{kind=\"message\"}", &self.messages_stored),
                ("{kind=\"status\"}", &self.statuses_stored),
            ],
        );
        counter(
            "hourglass_items_duplicate_total",
            "Items received again and ignored.",
            &[("", &self.duplicates)],
        );
        counter(
            "hourglass_sends_total",
            "Cloud API sends by outcome.",
            &[
                ("{outcome=\"forwarded\"}", &self.sends_forwarded),
                (
                    "{outcome=\"refused_window_closed\"}",
                    &self.sends_refused_window,
                ),
                (
                    "{outcome=\"refused_template\"}",
                    &self.sends_refused_template,
                ),
                ("{outcome=\"invalid\"}", &self.sends_invalid),
                ("{outcome=\"upstream_error\"}", &self.upstream_errors),
            ],
        );
        counter(
            "hourglass_window_queries_total",
            "Window answers computed for the API.",
            &[("", &self.window_queries)],
        );
        out
    }
}
