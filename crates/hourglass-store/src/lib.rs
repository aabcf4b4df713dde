//! Durable storage for Hourglass.
//!
//! It owns the schema, the migrations (one set per database) and the SQL (kept per
//! dialect, never a lowest common denominator), behind one [`Store`] trait with a SQLite
//! and a PostgreSQL implementation, chosen from the database URL by [`connect`].
//! It must not know HTTP or Meta's JSON beyond storing it as text, and it never decides a
//! rule: it hands the rule core the events it needs ([`Store::thread_history`]) and keeps
//! per-thread summaries current so that a question about now needs no replay.

mod anchor;
mod batch;
mod contact_threads;
mod forwarding;
mod media;
mod model;
mod outbox;
mod postgres;
mod postgres_ingest;
mod rate_limits;
mod sqlite;
mod sqlite_outbox;
mod sqlite_writer;
mod templates;
mod window_cache;

use async_trait::async_trait;
use hourglass_core::{Instant, RuleSettings, ThreadHistory};

pub use forwarding::{
    FepCandidate, FepNotice, ForwardItem, ForwardOutcome, ForwardRow, NewSubscription, RawDelivery,
    ReportedFep, Subscription, WindowThread, FEP_CLOCK, WINDOW_CLOCK,
};
pub use media::{MediaOutcome, MediaRef, MediaRow};
pub use model::*;
pub use outbox::{Enqueued, NewOutboxMessage, OutboxOutcome, OutboxRow, OutboxState};
pub use postgres::PostgresStore;
pub use rate_limits::{Admission, Bucket};
pub use sqlite::SqliteStore;

/// What went wrong in storage, said so that an operator knows where to look.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database URL `{0}` is not understood: use sqlite://PATH or postgres://USER@HOST/DB")]
    UnsupportedUrl(String),
    #[error("SQLite database `sqlite://{given}`: {why}")]
    SqlitePath { given: String, why: &'static str },
    #[error("could not open the database: {0}")]
    Connect(#[source] sqlx::Error),
    #[error("could not apply the database migrations: {0}")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database error: {0}")]
    Embedded(String),
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
}

/// Hourglass's durable state. Every method is one transaction or one read.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Stores many webhook deliveries in one transaction (group commit): raw bodies,
    /// then every item, deduplicated on Meta's ids. When this returns `Ok`, all of it is
    /// durable; on `Err`, none of it is.
    /// (Shared, not borrowed: the SQLite writer thread reads them without a copy.)
    async fn ingest(
        &self,
        deliveries: std::sync::Arc<Vec<WebhookDelivery>>,
    ) -> Result<IngestReport, StoreError>;

    /// Whether [`Store::ingest`] gathers the deliveries of concurrent calls into shared
    /// commits by itself (SQLite's writer thread does), so that each webhook request may
    /// hand over its own delivery; otherwise the caller batches them.
    fn gathers_deliveries(&self) -> bool {
        false
    }

    /// For a store that gathers deliveries: how many commits stored them, and how many
    /// deliveries those commits carried.
    fn group_commit_counts(&self) -> (u64, u64) {
        (0, 0)
    }

    /// Records a business message Hourglass forwarded to Meta and Meta accepted.
    async fn record_outbound(&self, message: &OutboundMessage) -> Result<(), StoreError>;

    /// Records a send Hourglass refused before it reached Meta.
    async fn record_refusal(&self, refusal: &Refusal) -> Result<(), StoreError>;

    /// Finds the thread of a business number and a contact (a `wa_id` or a `user_id`).
    async fn find_thread(
        &self,
        phone_number_id: &str,
        contact: &str,
    ) -> Result<Option<ThreadRow>, StoreError> {
        Ok(self
            .find_thread_and_count_services(phone_number_id, contact, ServiceCount::NONE)
            .await?
            .map(|(thread, _)| thread))
    }

    /// [`Store::find_thread`] and [`Store::count_service_deliveries`] in one round trip:
    /// everything a window question about a contact needs from the database.
    async fn find_thread_and_count_services(
        &self,
        phone_number_id: &str,
        contact: &str,
        count: ServiceCount,
    ) -> Result<Option<(ThreadRow, u32)>, StoreError>;

    /// The events the rule core needs to answer about `at`: every event of the thread in
    /// `[at - HISTORY_LOOKBACK_SECONDS, at]`, and the latest customer message and
    /// reaction at or before `at`, however old.
    async fn thread_history(
        &self,
        thread_id: i64,
        at: Instant,
    ) -> Result<ThreadHistory, StoreError>;

    /// Free-form messages of a business number delivered in `[from, before)`, counted up
    /// to `cap` (the rules never need to know more than the allowance).
    async fn count_service_deliveries(
        &self,
        phone_number_id: &str,
        from: Instant,
        before: Instant,
        cap: u32,
    ) -> Result<u32, StoreError>;

    /// The thread's messages, oldest first, with their statuses.
    async fn thread_messages(&self, thread_id: i64) -> Result<Vec<MessageRow>, StoreError>;

    /// Threads of a number whose window anchor ([`ThreadRow::window_anchor`]: the latest
    /// customer message, or reaction where `settings` count them) is in `(from, to]`,
    /// ordered by it (then by id), after `cursor`, at most `limit`.
    async fn threads_by_window_anchor(
        &self,
        phone_number_id: &str,
        from: Instant,
        to: Instant,
        cursor: Option<ThreadCursor>,
        limit: u32,
        settings: RuleSettings,
    ) -> Result<Vec<ThreadRow>, StoreError>;

    async fn business_number(
        &self,
        phone_number_id: &str,
    ) -> Result<Option<BusinessNumber>, StoreError>;

    /// Sets a number's time zone (IANA name), creating the number if needed.
    async fn upsert_business_number(&self, number: &BusinessNumber) -> Result<(), StoreError>;

    /// The template registry of every WABA.
    fn template_registry(&self) -> &dyn TemplateRegistry;

    /// The durable outbox of Hourglass's own send API.
    fn outbox(&self) -> &dyn Outbox;

    /// Forwarded webhooks: subscriptions and the items waiting for them.
    fn forwarding(&self) -> &dyn Forwarding;

    /// Meta's limits, as token buckets shared by every process.
    fn rate_limits(&self) -> &dyn RateLimits;

    /// Media customers sent, downloaded from Meta and kept.
    fn media(&self) -> &dyn MediaStore;

    async fn create_api_key(&self, key: &NewApiKey) -> Result<(), StoreError>;
    async fn find_api_key(&self, key_hash: &str) -> Result<Option<ApiKeyRow>, StoreError>;

    /// Counts for tests and metrics: messages, statuses, raw deliveries, threads.
    async fn counts(&self) -> Result<StoreCounts, StoreError>;

    /// A cheap round trip, for `/healthz`.
    async fn ping(&self) -> Result<(), StoreError>;
}

/// Each WABA's templates and their history (see `templates`), in the same database as the
/// rest; Meta's template webhooks reach it through [`Store::ingest`].
#[async_trait]
pub trait TemplateRegistry: Send + Sync {
    /// Replaces a WABA's registry with Meta's complete list, observed at `at`: listed
    /// templates are added or updated (each difference recorded in their history), the
    /// ones Meta no longer lists are removed, and the WABA is marked as synced.
    async fn replace_templates(
        &self,
        waba_id: &str,
        listed: &[TemplateRecord],
        at: Instant,
    ) -> Result<TemplateSyncReport, StoreError>;

    /// Writes one template (a creation through Hourglass, or Meta's answer about it),
    /// recording what changed; fields set after `template.updated_at` are kept. Returns
    /// the row as stored.
    async fn save_template(
        &self,
        template: &TemplateRecord,
        source: TemplateChangeSource,
    ) -> Result<TemplateRecord, StoreError>;

    /// Removes a template in every language (`language: None`) or in one, recording the
    /// deletion. Returns what was removed.
    async fn delete_templates(
        &self,
        waba_id: &str,
        name: &str,
        language: Option<&str>,
        at: Instant,
    ) -> Result<Vec<TemplateRecord>, StoreError>;

    async fn template(
        &self,
        waba_id: &str,
        name: &str,
        language: &str,
    ) -> Result<Option<TemplateRecord>, StoreError>;

    /// A WABA's templates, by name then language.
    async fn templates(&self, waba_id: &str) -> Result<Vec<TemplateRecord>, StoreError>;

    /// A template's status, category and quality changes, oldest first.
    async fn template_history(
        &self,
        waba_id: &str,
        name: &str,
        language: &str,
    ) -> Result<Vec<TemplateChange>, StoreError>;

    /// When the WABA's registry was last replaced by a complete sync, if ever.
    async fn synced_at(&self, waba_id: &str) -> Result<Option<Instant>, StoreError>;

    /// Every WABA Hourglass knows of (from webhooks, numbers or templates).
    async fn waba_ids(&self) -> Result<Vec<String>, StoreError>;
}

/// The durable outbox (see `outbox`): messages as rows, claimed with a lease, finished
/// with Meta's answer.
#[async_trait]
pub trait Outbox: Send + Sync {
    /// Adds a message, or returns the existing row with the same number and idempotency
    /// key.
    async fn enqueue(&self, message: &NewOutboxMessage) -> Result<Enqueued, StoreError>;

    /// Claims up to `limit` due rows for `lease_seconds`: each claim is an attempt. A row
    /// whose lease expired is claimed again only `reconcile_seconds` later.
    async fn claim_due(
        &self,
        now: Instant,
        lease_seconds: i64,
        reconcile_seconds: i64,
        limit: u32,
    ) -> Result<Vec<OutboxRow>, StoreError>;

    /// Records how attempt `attempt` of row `id` ended. `false` when that claim is no
    /// longer current (its lease expired and another claim took the row): nothing changes.
    async fn finish(
        &self,
        id: i64,
        attempt: i64,
        outcome: &OutboxOutcome,
    ) -> Result<bool, StoreError>;

    async fn outbox_message(&self, id: i64) -> Result<Option<OutboxRow>, StoreError>;

    /// The earliest instant at which a row becomes due, if any row is pending.
    async fn next_due(&self) -> Result<Option<Instant>, StoreError>;
}

/// Forwarded webhooks (see `forwarding`). The ingest writers add the rows; the
/// forwarding worker claims and finishes them.
#[async_trait]
pub trait Forwarding: Send + Sync {
    async fn create_subscription(&self, new: &NewSubscription) -> Result<Subscription, StoreError>;
    async fn subscriptions(&self) -> Result<Vec<Subscription>, StoreError>;
    /// Removes a subscription and everything waiting for it.
    async fn delete_subscription(&self, id: i64) -> Result<bool, StoreError>;
    /// Claims up to `limit` due items, at most one per subscription and thread (the oldest
    /// one waiting), for `lease_seconds`.
    async fn claim_forwards(
        &self,
        now: Instant,
        lease_seconds: i64,
        limit: u32,
    ) -> Result<Vec<ForwardRow>, StoreError>;
    /// `false` when the claim is no longer current.
    async fn finish_forward(
        &self,
        id: i64,
        attempt: i64,
        outcome: &ForwardOutcome,
    ) -> Result<bool, StoreError>;
    async fn dead_letters(
        &self,
        subscription_id: i64,
        limit: u32,
    ) -> Result<Vec<ForwardRow>, StoreError>;
    /// Makes every dead letter of the subscription pending again, with a fresh 7 days.
    async fn replay_dead_letters(
        &self,
        subscription_id: i64,
        now: Instant,
    ) -> Result<u64, StoreError>;
    /// Adds forwards to one subscription, if it wants them, for items read again from
    /// stored raw deliveries (a replay): each with its business number's id.
    async fn enqueue_forwards(
        &self,
        subscription_id: i64,
        items: &[(String, ForwardItem)],
        now: Instant,
    ) -> Result<u64, StoreError>;
    /// Where the clock-driven events named `name` were last emitted up to.
    async fn clock(&self, name: &str) -> Result<Option<Instant>, StoreError>;
    /// Threads (of known business numbers) whose window anchor (the latest customer
    /// message, or reaction where `settings` count them) is in `(after, until]`, oldest
    /// first.
    async fn threads_by_window_anchor(
        &self,
        after: Instant,
        until: Instant,
        settings: RuleSettings,
    ) -> Result<Vec<WindowThread>, StoreError>;
    /// Moves clock `name` from `from` (`None`: not set yet) to `to` and enqueues the
    /// events of that span, with what the FEP clock noted per thread, in one transaction. `false`, with nothing enqueued, when the
    /// clock was no longer at `from`: another process emitted the span.
    async fn advance_clock(
        &self,
        name: &str,
        from: Option<Instant>,
        to: Instant,
        items: &[(String, ForwardItem)],
        notices: &[(i64, FepNotice)],
    ) -> Result<bool, StoreError>;
    /// The threads whose free entry point may have changed by `at` (see [`FepCandidate`]),
    /// looking at signals after `signal_after`, by thread id.
    async fn fep_candidates(
        &self,
        signal_after: Instant,
        at: Instant,
    ) -> Result<Vec<FepCandidate>, StoreError>;
    /// Stored raw webhook deliveries received in `[from, until)`, in the order they
    /// arrived, after the one numbered `after` (the last of the previous page; `None`
    /// for the first page).
    async fn raw_deliveries(
        &self,
        from: Instant,
        until: Instant,
        after: Option<i64>,
        limit: u32,
    ) -> Result<Vec<RawDelivery>, StoreError>;
}

/// Media rows (see `media`). The ingest writers add them with their messages.
#[async_trait]
pub trait MediaStore: Send + Sync {
    async fn claim_media(
        &self,
        now: Instant,
        lease_seconds: i64,
        limit: u32,
    ) -> Result<Vec<MediaRow>, StoreError>;
    /// `false` when the claim is no longer current.
    async fn finish_media(
        &self,
        media_id: &str,
        attempt: i64,
        outcome: &MediaOutcome,
    ) -> Result<bool, StoreError>;
    async fn media(&self, media_id: &str) -> Result<Option<MediaRow>, StoreError>;
}

/// Token buckets (see `rate_limits`).
#[async_trait]
pub trait RateLimits: Send + Sync {
    /// Takes one token from every bucket, all or none, at `now_ms` (milliseconds since the
    /// Unix epoch); or says how long to wait for the first bucket that has none.
    async fn admit(&self, buckets: &[Bucket], now_ms: i64) -> Result<Admission, StoreError>;
}

/// The file named after `sqlite://`, taken as a plain path.
///
/// Two connections open it: sqlx's (reads and rare writes) and the group writer's
/// (rusqlite). Each would read a URL's query (`?mode=rwc`) or percent-escapes its own
/// way, and they could end up on two different files; so the text is a path and nothing
/// else, and Hourglass sets SQLite's options itself.
pub fn sqlite_file(path: &str) -> Result<&str, StoreError> {
    let refuse = |why| {
        Err(StoreError::SqlitePath {
            given: path.to_owned(),
            why,
        })
    };
    if path.is_empty() {
        refuse("no file named: use sqlite://PATH, e.g. sqlite://hourglass.db")
    } else if path.contains('?') {
        refuse("Hourglass sets SQLite's options itself: give the file's path alone, without `?…`")
    } else if path.starts_with(':') || path.starts_with("file:") {
        refuse("in-memory and `file:` URI databases are not supported: name a file, e.g. sqlite://hourglass.db")
    } else {
        Ok(path)
    }
}

/// Opens the store named by `url` and applies its migrations.
pub async fn connect(url: &str) -> Result<std::sync::Arc<dyn Store>, StoreError> {
    if let Some(path) = url.strip_prefix("sqlite://") {
        Ok(std::sync::Arc::new(
            SqliteStore::open(sqlite_file(path)?).await?,
        ))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(std::sync::Arc::new(PostgresStore::open(url).await?))
    } else {
        Err(StoreError::UnsupportedUrl(url.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::sqlite_file;

    #[test]
    fn a_sqlite_url_is_a_path_and_nothing_else() {
        assert_eq!(
            sqlite_file("data/hourglass.db").unwrap(),
            "data/hourglass.db"
        );
        for (given, says) in [
            ("hourglass.db?mode=rwc", "without `?"),
            (":memory:", "in-memory"),
            ("file:x.db", "in-memory"),
            ("", "no file named"),
        ] {
            let error = sqlite_file(given).unwrap_err().to_string();
            assert!(error.contains(says), "{given}: {error}");
        }
    }
}
