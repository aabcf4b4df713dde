//! The embedded default: SQLite in WAL mode, where an acknowledged write survives power
//! loss: sqlx's connections commit with `synchronous=FULL`, and the writer thread's
//! commits are answered only once its syncer has made the WAL durable
//! (`sqlite_writer`). One sqlx writer connection for the rare writes, and a pool of
//! readers.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use hourglass_core::{Instant, RuleSettings, ThreadHistory, HISTORY_LOOKBACK_SECONDS};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::Row;

use crate::model::*;
use crate::sqlite_outbox::{SqliteOutbox, SqliteRateLimits};
use crate::sqlite_writer::SqliteWriter;
use crate::window_cache::WindowCache;
use crate::{Forwarding, MediaStore, Outbox, RateLimits, Store, StoreError, TemplateRegistry};
use std::sync::Arc;

pub struct SqliteStore {
    /// The writes that come often (webhooks, the outbox, recorded sends): a thread of
    /// their own, committed together (see `sqlite_writer`).
    group_writer: SqliteWriter,
    /// What window questions read, kept in process (see `window_cache`).
    cache: Arc<WindowCache>,
    /// The rare writes (templates, keys, subscriptions, media): exactly one connection,
    /// which waits for the write lock when the group writer holds it.
    writer: SqlitePool,
    readers: SqlitePool,
    templates: template_store::Registry,
    outbox: SqliteOutbox,
    forwarding: forwarding_store::Forwarding,
    rate_limits: SqliteRateLimits,
    media: media_store::Media,
}

impl SqliteStore {
    pub async fn open(path: &str) -> Result<Self, StoreError> {
        // The same file as the group writer's, byte for byte: `filename` takes the path as
        // it is, where a `sqlite://` URL would be parsed (see `crate::sqlite_file`).
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true)
            .pragma("cache_size", "-65536")
            .pragma("wal_autocheckpoint", "16384");
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .connect_with(options.clone())
            .await
            .map_err(StoreError::Connect)?;
        sqlx::migrate!("./migrations/sqlite")
            .run(&writer)
            .await
            .map_err(StoreError::Migrate)?;
        let readers = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options.read_only(true))
            .await
            .map_err(StoreError::Connect)?;
        let cache = Arc::new(WindowCache::new(true));
        let group_writer = SqliteWriter::start(path, cache.clone())?;
        Ok(SqliteStore {
            cache,
            media: media_store::Media {
                pool: writer.clone(),
                read: readers.clone(),
            },
            rate_limits: SqliteRateLimits {
                writer: group_writer.clone(),
            },
            forwarding: forwarding_store::Forwarding {
                pool: writer.clone(),
                read: readers.clone(),
            },
            outbox: SqliteOutbox {
                writer: group_writer.clone(),
                reads: outbox_store::Outbox {
                    pool: writer.clone(),
                    read: readers.clone(),
                },
            },
            templates: template_store::Registry {
                write: writer.clone(),
                read: readers.clone(),
            },
            group_writer,
            writer,
            readers,
        })
    }
}

fn thread_row(row: &sqlx::sqlite::SqliteRow) -> ThreadRow {
    ThreadRow {
        id: row.get("id"),
        phone_number_id: row.get("phone_number_id"),
        wa_id: row.get("wa_id"),
        user_id: row.get("user_id"),
        profile_name: row.get("profile_name"),
        last_customer_at: instant(row.get("last_customer_at")),
        last_reaction_at: instant(row.get("last_reaction_at")),
        last_fep_signal_at: instant(row.get("last_fep_signal_at")),
    }
}

const THREAD_COLUMNS: &str = "id, phone_number_id, wa_id, user_id, profile_name, last_customer_at, last_reaction_at, last_fep_signal_at";

mod forwarding_store {
    crate::forwarding::define_forwarding!(sqlx::Sqlite, false);
}

mod media_store {
    crate::media::define_media!(sqlx::Sqlite, false);
}

pub(crate) mod outbox_store {
    crate::outbox::define_outbox!(sqlx::Sqlite, crate::outbox::CLAIM_SQLITE);
}

mod template_store {
    crate::templates::define_template_store!(sqlx::Sqlite);
}

#[async_trait]
impl Store for SqliteStore {
    async fn ingest(
        &self,
        deliveries: Arc<Vec<WebhookDelivery>>,
    ) -> Result<IngestReport, StoreError> {
        self.group_writer.ingest(deliveries).await
    }

    fn gathers_deliveries(&self) -> bool {
        true
    }

    fn group_commit_counts(&self) -> (u64, u64) {
        self.group_writer.group_commit_counts()
    }

    async fn record_outbound(&self, message: &OutboundMessage) -> Result<(), StoreError> {
        self.group_writer.record_outbound(message).await
    }

    async fn record_refusal(&self, refusal: &Refusal) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO refusals (phone_number_id, thread_id, recipient, at, code, reason, request)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )
        .bind(&refusal.phone_number_id)
        .bind(refusal.thread_id)
        .bind(&refusal.recipient)
        .bind(refusal.at.unix_seconds())
        .bind(refusal.code)
        .bind(&refusal.reason)
        .bind(&refusal.request)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn find_thread_and_count_services(
        &self,
        phone_number_id: &str,
        contact: &str,
        count: ServiceCount,
    ) -> Result<Option<(ThreadRow, u32)>, StoreError> {
        self.cache
            .thread_and_services(phone_number_id, contact, count, |need_instants| async move {
                let row = sqlx::query(&format!(
                    "SELECT {THREAD_COLUMNS} FROM (
                       SELECT 0 AS rank, {THREAD_COLUMNS} FROM threads WHERE phone_number_id = ?1 AND wa_id = ?2
                       UNION ALL
                       SELECT 1 AS rank, {THREAD_COLUMNS} FROM threads WHERE phone_number_id = ?1 AND user_id = ?2
                     ) AS found ORDER BY rank LIMIT 1"
                ))
                .bind(phone_number_id)
                .bind(contact)
                .fetch_optional(&self.readers)
                .await?;
                let Some(row) = row else { return Ok(None) };
                let instants = if need_instants {
                    sqlx::query_scalar(
                        "SELECT delivered_at FROM messages
                          WHERE phone_number_id = ?1 AND direction = 'outbound' AND category = 'service'
                            AND delivered_at >= ?2 ORDER BY delivered_at LIMIT ?3",
                    )
                    .bind(phone_number_id)
                    .bind(count.from.unix_seconds())
                    .bind(count.cap as i64)
                    .fetch_all(&self.readers)
                    .await?
                } else {
                    Vec::new()
                };
                Ok(Some((thread_row(&row), instants)))
            })
            .await
    }

    async fn thread_history(
        &self,
        thread_id: i64,
        at: Instant,
    ) -> Result<ThreadHistory, StoreError> {
        let at_s = at.unix_seconds();
        let from = at.plus_seconds(-HISTORY_LOOKBACK_SECONDS).unix_seconds();
        let mut conn = self.readers.acquire().await?;
        let customers = sqlx::query(
            "SELECT wamid, timestamp, entry_point, is_reaction FROM messages
               WHERE thread_id = ?1 AND direction = 'inbound' AND counts_for_window = 1
                 AND timestamp BETWEEN ?2 AND ?3
             UNION
             SELECT * FROM (SELECT wamid, timestamp, entry_point, is_reaction FROM messages
               WHERE thread_id = ?1 AND direction = 'inbound' AND counts_for_window = 1
                 AND is_reaction = 0 AND timestamp <= ?3 ORDER BY timestamp DESC LIMIT 1) AS latest_customer_message
             UNION
             SELECT * FROM (SELECT wamid, timestamp, entry_point, is_reaction FROM messages
               WHERE thread_id = ?1 AND direction = 'inbound' AND counts_for_window = 1
                 AND is_reaction = 1 AND timestamp <= ?3 ORDER BY timestamp DESC LIMIT 1) AS latest_reaction
             UNION
             SELECT * FROM (SELECT wamid, timestamp, entry_point, is_reaction FROM messages
               WHERE thread_id = ?1 AND direction = 'inbound' AND counts_for_window = 1
                 AND entry_point = 'ad' AND timestamp <= ?3 ORDER BY timestamp DESC LIMIT 1) AS latest_ad",
        )
        .bind(thread_id)
        .bind(from)
        .bind(at_s)
        .fetch_all(&mut *conn)
        .await?
        .into_iter()
        .map(|r| CustomerEventRow {
            wamid: r.get(0),
            timestamp: r.get(1),
            entry_point: r.get(2),
            is_reaction: r.get(3),
        })
        .collect::<Vec<_>>();
        // The latest ad message, however old, and the replies that may have opened its
        // free entry point, so an FEP that ended long ago still reads `closed`.
        let (ad_from, ad_to) = latest_ad_replies(&customers, at);
        let business = sqlx::query(
            "SELECT m.wamid, m.timestamp, m.sent_via_hourglass, m.category,
                    s.status, s.timestamp, s.category, s.fep_expires_at
               FROM messages m LEFT JOIN statuses s ON s.wamid = m.wamid AND s.timestamp <= ?3
              WHERE m.thread_id = ?1 AND m.direction = 'outbound'
                AND (m.timestamp BETWEEN ?2 AND ?3 OR m.timestamp BETWEEN ?4 AND ?5)",
        )
        .bind(thread_id)
        .bind(from)
        .bind(at_s)
        .bind(ad_from)
        .bind(ad_to)
        .fetch_all(&mut *conn)
        .await?
        .into_iter()
        .map(|r| BusinessEventRow {
            wamid: r.get(0),
            timestamp: r.get(1),
            sent_via_hourglass: r.get(2),
            category: r.get(3),
            status: r.get(4),
            status_timestamp: r.get(5),
            status_category: r.get(6),
            fep_expires_at: r.get(7),
        })
        .collect();
        Ok(history_from_rows(customers, business))
    }

    async fn count_service_deliveries(
        &self,
        phone_number_id: &str,
        from: Instant,
        before: Instant,
        cap: u32,
    ) -> Result<u32, StoreError> {
        let (count,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM (SELECT 1 FROM messages
               WHERE phone_number_id = ?1 AND direction = 'outbound' AND category = 'service'
                 AND delivered_at >= ?2 AND delivered_at < ?3 LIMIT ?4) AS capped",
        )
        .bind(phone_number_id)
        .bind(from.unix_seconds())
        .bind(before.unix_seconds())
        .bind(cap as i64)
        .fetch_one(&self.readers)
        .await?;
        Ok(count as u32)
    }

    async fn thread_messages(&self, thread_id: i64) -> Result<Vec<MessageRow>, StoreError> {
        let mut conn = self.readers.acquire().await?;
        let mut messages: Vec<MessageRow> = sqlx::query(
            "SELECT wamid, direction, type, timestamp, category, template_name, sent_via_hourglass, delivered_at, body,
                    entry_point, is_reaction, counts_for_window
               FROM messages WHERE thread_id = ?1 ORDER BY timestamp, wamid",
        )
        .bind(thread_id)
        .fetch_all(&mut *conn)
        .await?
        .into_iter()
        .map(|r| MessageRow {
            message_id: r.get(0),
            direction: r.get(1),
            message_type: r.get(2),
            timestamp: Instant::from_unix_seconds(r.get(3)),
            category: r.get(4),
            template_name: r.get(5),
            sent_via_hourglass: r.get(6),
            delivered_at: instant(r.get(7)),
            body: r.get(8),
            entry_point: r.get(9),
            is_reaction: r.get(10),
            counts_for_window: r.get(11),
            statuses: Vec::new(),
        })
        .collect();
        let statuses = sqlx::query(
            "SELECT s.wamid, s.status, s.timestamp, s.pricing, s.errors, s.category, s.fep_expires_at
               FROM statuses s JOIN messages m ON m.wamid = s.wamid
              WHERE m.thread_id = ?1 ORDER BY s.timestamp, s.status",
        )
        .bind(thread_id)
        .fetch_all(&mut *conn)
        .await?;
        let index: HashMap<String, usize> = messages
            .iter()
            .enumerate()
            .map(|(i, m)| (m.message_id.clone(), i))
            .collect();
        for r in statuses {
            let wamid: String = r.get(0);
            if let Some(i) = index.get(&wamid) {
                messages[*i].statuses.push(StatusRow {
                    status: r.get(1),
                    timestamp: Instant::from_unix_seconds(r.get(2)),
                    pricing: r.get(3),
                    errors: r.get(4),
                    category: r.get(5),
                    fep_expires_at: instant(r.get(6)),
                });
            }
        }
        Ok(messages)
    }

    async fn threads_by_window_anchor(
        &self,
        phone_number_id: &str,
        from: Instant,
        to: Instant,
        cursor: Option<ThreadCursor>,
        limit: u32,
        settings: RuleSettings,
    ) -> Result<Vec<ThreadRow>, StoreError> {
        let sql =
            crate::anchor::threads_by_anchor_sql(THREAD_COLUMNS, |n| format!("?{n}"), settings);
        let mut query = sqlx::query(&sql).bind(phone_number_id);
        for value in crate::anchor::threads_by_anchor_args(from, to, cursor, limit) {
            query = query.bind(value);
        }
        let rows = query.fetch_all(&self.readers).await?;
        Ok(rows.iter().map(thread_row).collect())
    }

    async fn business_number(
        &self,
        phone_number_id: &str,
    ) -> Result<Option<BusinessNumber>, StoreError> {
        let row: Option<(String, Option<String>, Option<String>, String)> = sqlx::query_as(
            "SELECT phone_number_id, waba_id, display_phone_number, time_zone FROM business_numbers WHERE phone_number_id = ?1",
        )
        .bind(phone_number_id)
        .fetch_optional(&self.readers)
        .await?;
        Ok(row.map(
            |(phone_number_id, waba_id, display_phone_number, time_zone)| BusinessNumber {
                phone_number_id,
                waba_id,
                display_phone_number,
                time_zone,
            },
        ))
    }

    async fn upsert_business_number(&self, number: &BusinessNumber) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO business_numbers (phone_number_id, waba_id, display_phone_number, time_zone)
             VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (phone_number_id) DO UPDATE SET
               waba_id = COALESCE(excluded.waba_id, business_numbers.waba_id),
               display_phone_number = COALESCE(excluded.display_phone_number, business_numbers.display_phone_number),
               time_zone = excluded.time_zone",
        )
        .bind(&number.phone_number_id)
        .bind(&number.waba_id)
        .bind(&number.display_phone_number)
        .bind(&number.time_zone)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    fn template_registry(&self) -> &dyn TemplateRegistry {
        &self.templates
    }

    fn outbox(&self) -> &dyn Outbox {
        &self.outbox
    }

    fn forwarding(&self) -> &dyn Forwarding {
        &self.forwarding
    }

    fn rate_limits(&self) -> &dyn RateLimits {
        &self.rate_limits
    }

    fn media(&self) -> &dyn MediaStore {
        &self.media
    }

    async fn create_api_key(&self, key: &NewApiKey) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO api_keys (key_hash, label, numbers, created_at) VALUES (?1, ?2, ?3, ?4)",
        )
        .bind(&key.key_hash)
        .bind(&key.label)
        .bind(numbers_to_json(&key.numbers))
        .bind(key.created_at.unix_seconds())
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn find_api_key(&self, key_hash: &str) -> Result<Option<ApiKeyRow>, StoreError> {
        let row: Option<(i64, String, Option<String>)> =
            sqlx::query_as("SELECT id, label, numbers FROM api_keys WHERE key_hash = ?1")
                .bind(key_hash)
                .fetch_optional(&self.readers)
                .await?;
        row.map(|(id, label, numbers)| {
            Ok(ApiKeyRow {
                id,
                label,
                numbers: numbers_from_json(numbers)?,
            })
        })
        .transpose()
    }

    async fn counts(&self) -> Result<StoreCounts, StoreError> {
        let (deliveries, messages, statuses, threads, refusals): (i64, i64, i64, i64, i64) =
            sqlx::query_as(
                "SELECT (SELECT COUNT(*) FROM webhook_deliveries), (SELECT COUNT(*) FROM messages),
                    (SELECT COUNT(*) FROM statuses), (SELECT COUNT(*) FROM threads),
                    (SELECT COUNT(*) FROM refusals)",
            )
            .fetch_one(&self.readers)
            .await?;
        Ok(StoreCounts {
            deliveries,
            messages,
            statuses,
            threads,
            refusals,
        })
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.readers).await?;
        Ok(())
    }
}
