//! The scale-out store: PostgreSQL. Several `hourglass serve` processes may share one
//! database; every write is idempotent on Meta's ids (rows already stored are skipped),
//! and a batch that loses a deadlock, or a race to store the same row, to another
//! process is retried whole.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use hourglass_core::{Instant, RuleSettings, ThreadHistory, HISTORY_LOOKBACK_SECONDS};
use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::Row;

use crate::contact_threads::ContactThreads;
use crate::model::*;
use crate::window_cache::{Touched, WindowCache, CHANGES_CHANNEL};
use crate::{Forwarding, MediaStore, Outbox, RateLimits, Store, StoreError, TemplateRegistry};

pub struct PostgresStore {
    pool: PgPool,
    /// The ingest writers' connections, which plan without sequential scans
    /// (`enable_seqscan = off`): their statements touch a handful of rows by key, and a
    /// plan cached while the tables were small (a scan of `threads`) would otherwise be
    /// kept long after they have grown; a fresh database grows by thousands of rows a
    /// second under load, faster than PostgreSQL's statistics follow.
    ingest_pool: PgPool,
    /// What window questions read, kept while this process hears of every change (see
    /// `window_cache`).
    cache: Arc<WindowCache>,
    /// The task that listens for other processes' changes; stopped with the store.
    listener: tokio::task::JoinHandle<()>,
    templates: template_store::Registry,
    outbox: outbox_store::Outbox,
    forwarding: forwarding_store::Forwarding,
    rate_limits: rate_limit_store::RateLimits,
    media: media_store::Media,
    /// Which thread each known contact's messages go to, shared by the ingest writers
    /// (see `contact_threads`).
    contact_threads: std::sync::Mutex<ContactThreads>,
    /// Business numbers whose row this process has seen complete: a batch of theirs
    /// needs no upsert.
    numbers_known: std::sync::Mutex<HashSet<String>>,
}

/// How often a batch is retried after losing a deadlock or a serialization conflict to a
/// concurrent writer before the error is reported.
const CONFLICT_RETRIES: usize = 8;

impl PostgresStore {
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(url).map_err(StoreError::Connect)?;
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options.clone())
            .await
            .map_err(StoreError::Connect)?;
        sqlx::migrate!("./migrations/postgres")
            .run(&pool)
            .await
            .map_err(StoreError::Migrate)?;
        let ingest_pool = PgPoolOptions::new()
            .max_connections(8)
            // A broken connection fails the batch, which Meta's retry stores again; a
            // check before every batch would cost a round trip each.
            .test_before_acquire(false)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options.options([("enable_seqscan", "off")]))
            .await
            .map_err(StoreError::Connect)?;
        let cache = Arc::new(WindowCache::new(false));
        let listener = tokio::spawn(listen_for_changes(pool.clone(), cache.clone()));
        Ok(PostgresStore {
            cache,
            listener,
            media: media_store::Media {
                pool: pool.clone(),
                read: pool.clone(),
            },
            rate_limits: rate_limit_store::RateLimits { pool: pool.clone() },
            forwarding: forwarding_store::Forwarding {
                pool: pool.clone(),
                read: pool.clone(),
            },
            outbox: outbox_store::Outbox {
                pool: pool.clone(),
                read: pool.clone(),
            },
            templates: template_store::Registry {
                write: pool.clone(),
                read: pool.clone(),
            },
            contact_threads: Default::default(),
            numbers_known: Default::default(),
            ingest_pool,
            pool,
        })
    }

    async fn ingest_once(
        &self,
        deliveries: &[WebhookDelivery],
    ) -> Result<IngestReport, StoreError> {
        let mut conn = self.ingest_pool.acquire().await?;
        let mut touched = Touched::default();
        // The batch's statement also sends the notification of what it touched. Most
        // batches are that one statement alone; the others say so before they write, and
        // run in a transaction.
        let alone = crate::postgres_ingest::ingest_batch(
            &mut conn,
            &self.contact_threads,
            &self.numbers_known,
            deliveries,
            &mut touched,
            false,
        )
        .await?;
        let outcome = match alone {
            Some(outcome) => outcome,
            None => {
                touched = Touched::default();
                let mut tx = sqlx::Connection::begin(&mut *conn).await?;
                let outcome = crate::postgres_ingest::ingest_batch(
                    &mut tx,
                    &self.contact_threads,
                    &self.numbers_known,
                    deliveries,
                    &mut touched,
                    true,
                )
                .await?
                .ok_or_else(|| {
                    StoreError::Corrupt("an ingest batch refused its transaction".into())
                })?;
                tx.commit().await?;
                outcome
            }
        };
        self.cache.forget(&touched);
        {
            let mut contact_threads = self.contact_threads.lock().expect("thread cache lock");
            // Another batch of this process may have remembered a thread this one merged
            // away: forgotten here, its next batch does not fail on it and start over.
            for (phone_number_id, gone) in &outcome.merged_away {
                contact_threads.forget(phone_number_id, *gone);
            }
            contact_threads.learn(outcome.learned);
        }
        self.numbers_known
            .lock()
            .expect("numbers cache lock")
            .extend(outcome.numbers_known);
        Ok(outcome.report)
    }
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

/// Tells every process (this one included) what a transaction changed, when it commits.
async fn notify_changes(
    conn: &mut sqlx::PgConnection,
    touched: &Touched,
) -> Result<(), StoreError> {
    if !touched.is_empty() {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANGES_CHANNEL)
            .bind(touched.notification())
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Listens for the changes other processes commit and forgets them; the cache is on
/// only while listening. A lost connection switches it off (and empties it) until a new
/// one listens.
async fn listen_for_changes(pool: PgPool, cache: Arc<WindowCache>) {
    loop {
        let listening = async {
            let mut listener = sqlx::postgres::PgListener::connect_with(&pool).await?;
            listener.listen(CHANGES_CHANNEL).await?;
            Ok::<_, sqlx::Error>(listener)
        };
        let mut listener = match listening.await {
            Ok(listener) => listener,
            Err(error) => {
                tracing::warn!(%error, "window cache: cannot listen for changes; answering from the database");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        cache.set_enabled(true);
        loop {
            match listener.try_recv().await {
                Ok(Some(notification)) => {
                    match Touched::from_notification(notification.payload()) {
                        Some(touched) => cache.forget(&touched),
                        None => {
                            cache.set_enabled(false);
                            cache.set_enabled(true);
                        }
                    }
                }
                // The connection was lost: what was sent meanwhile is gone.
                Ok(None) | Err(_) => {
                    cache.set_enabled(false);
                    tracing::warn!("window cache: lost the change notifications; answering from the database until listening again");
                    break;
                }
            }
        }
    }
}

/// Deadlock (40P01) or serialization failure (40001): another process wrote the same
/// rows in another order; or a unique violation (23505): another process stored the same
/// delivery, message or status between the batch's check and its insert. Either way the
/// batch can simply run again.
fn is_conflict(error: &StoreError) -> bool {
    match error {
        StoreError::Database(sqlx::Error::Database(e)) => {
            matches!(
                e.code().as_deref(),
                Some("40P01") | Some("40001") | Some("23505")
            )
        }
        _ => false,
    }
}

/// A remembered thread that no longer exists: the batch's own check, or the foreign key
/// of a message to its thread (23503).
fn is_stale_thread(error: &StoreError) -> bool {
    match error {
        StoreError::Database(sqlx::Error::Database(e)) => matches!(
            e.code().as_deref(),
            Some("23503") | Some(crate::postgres_ingest::STALE_THREAD_CODE)
        ),
        _ => false,
    }
}

/// Finds the thread by `wa_id` or `user_id`, filling in whichever key it lacked, or
/// creates it.
async fn resolve_thread(
    conn: &mut sqlx::PgConnection,
    phone_number_id: &str,
    contact: &ContactKey,
) -> Result<i64, StoreError> {
    let found: Option<(i64, Option<String>, Option<String>)> = sqlx::query_as(
        "SELECT id, wa_id, user_id FROM (
           SELECT 0 AS rank, id, wa_id, user_id FROM threads WHERE phone_number_id = $1 AND wa_id = $2
           UNION ALL
           SELECT 1 AS rank, id, wa_id, user_id FROM threads WHERE phone_number_id = $1 AND user_id = $3
         ) AS found ORDER BY rank LIMIT 1",
    )
    .bind(phone_number_id)
    .bind(&contact.wa_id)
    .bind(&contact.user_id)
    .fetch_optional(&mut *conn)
    .await?;
    match found {
        Some((id, wa_id, user_id)) => {
            if wa_id.is_none() && contact.wa_id.is_some() {
                sqlx::query(
                    "UPDATE threads SET wa_id = $2 WHERE id = $1 AND wa_id IS NULL
                     AND NOT EXISTS (SELECT 1 FROM threads WHERE phone_number_id = $3 AND wa_id = $2)",
                )
                .bind(id)
                .bind(&contact.wa_id)
                .bind(phone_number_id)
                .execute(&mut *conn)
                .await?;
            }
            if user_id.is_none() && contact.user_id.is_some() {
                sqlx::query(
                    "UPDATE threads SET user_id = $2 WHERE id = $1 AND user_id IS NULL
                     AND NOT EXISTS (SELECT 1 FROM threads WHERE phone_number_id = $3 AND user_id = $2)",
                )
                .bind(id)
                .bind(&contact.user_id)
                .bind(phone_number_id)
                .execute(&mut *conn)
                .await?;
            }
            Ok(id)
        }
        None => {
            // Another process may be creating the same thread right now: the insert then
            // waits for it and does nothing, and the thread is read back.
            let inserted: Option<(i64,)> = sqlx::query_as(
                "INSERT INTO threads (phone_number_id, wa_id, user_id) VALUES ($1, $2, $3)
                 ON CONFLICT DO NOTHING RETURNING id",
            )
            .bind(phone_number_id)
            .bind(&contact.wa_id)
            .bind(&contact.user_id)
            .fetch_optional(&mut *conn)
            .await?;
            match inserted {
                Some((id,)) => Ok(id),
                None => {
                    let (id,): (i64,) = sqlx::query_as(
                        "SELECT id FROM (
                           SELECT 0 AS rank, id FROM threads WHERE phone_number_id = $1 AND wa_id = $2
                           UNION ALL
                           SELECT 1 AS rank, id FROM threads WHERE phone_number_id = $1 AND user_id = $3
                         ) AS found ORDER BY rank LIMIT 1",
                    )
                    .bind(phone_number_id)
                    .bind(&contact.wa_id)
                    .bind(&contact.user_id)
                    .fetch_one(&mut *conn)
                    .await?;
                    Ok(id)
                }
            }
        }
    }
}

fn thread_row(row: &sqlx::postgres::PgRow) -> ThreadRow {
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
    crate::forwarding::define_forwarding!(sqlx::Postgres, true);
}

mod rate_limit_store {
    crate::rate_limits::define_rate_limits!(sqlx::Postgres, true);
}

mod media_store {
    crate::media::define_media!(sqlx::Postgres, true);
}

mod outbox_store {
    crate::outbox::define_outbox!(sqlx::Postgres, crate::outbox::CLAIM_POSTGRES);
}

mod template_store {
    crate::templates::define_template_store!(sqlx::Postgres);
}

#[async_trait]
impl Store for PostgresStore {
    async fn ingest(
        &self,
        deliveries: Arc<Vec<WebhookDelivery>>,
    ) -> Result<IngestReport, StoreError> {
        let deliveries = deliveries.as_slice();
        let mut attempt = 0;
        loop {
            match self.ingest_once(deliveries).await {
                Err(e) if is_stale_thread(&e) && attempt < CONFLICT_RETRIES => {
                    // A thread this process remembered was merged away by another one.
                    attempt += 1;
                    self.contact_threads
                        .lock()
                        .expect("thread cache lock")
                        .clear();
                }
                Err(e) if is_conflict(&e) && attempt < CONFLICT_RETRIES => {
                    attempt += 1;
                    tracing::debug!(
                        attempt,
                        "ingest batch lost a conflict to another writer; retrying"
                    );
                    tokio::time::sleep(Duration::from_millis(5 * attempt as u64)).await;
                }
                other => return other,
            }
        }
    }

    async fn record_outbound(&self, message: &OutboundMessage) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?;
        let thread_id =
            resolve_thread(&mut conn, &message.phone_number_id, &message.contact).await?;
        sqlx::query(
            "INSERT INTO messages (wamid, thread_id, phone_number_id, direction, type, timestamp, category,
                                   template_name, template_language, sent_via_hourglass, body)
             VALUES ($1, $2, $3, 'outbound', $4, $5, $6, $7, $8, TRUE, $9)
             ON CONFLICT (wamid) DO UPDATE SET
               type = excluded.type,
               timestamp = LEAST(messages.timestamp, excluded.timestamp),
               category = COALESCE(excluded.category, messages.category),
               template_name = excluded.template_name,
               template_language = excluded.template_language,
               sent_via_hourglass = TRUE,
               body = excluded.body",
        )
        .bind(&message.message_id)
        .bind(thread_id)
        .bind(&message.phone_number_id)
        .bind(&message.message_type)
        .bind(message.sent_at.unix_seconds())
        .bind(message.category.map(|c| c.as_str()))
        .bind(&message.template_name)
        .bind(&message.template_language)
        .bind(&message.body)
        .execute(&mut *conn)
        .await?;
        let mut touched = Touched::default();
        touched.threads.insert(thread_id);
        touched.numbers.insert(message.phone_number_id.clone());
        notify_changes(&mut conn, &touched).await?;
        self.cache.forget(&touched);
        Ok(())
    }

    async fn record_refusal(&self, refusal: &Refusal) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO refusals (phone_number_id, thread_id, recipient, at, code, reason, request)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&refusal.phone_number_id)
        .bind(refusal.thread_id)
        .bind(&refusal.recipient)
        .bind(refusal.at.unix_seconds())
        .bind(refusal.code)
        .bind(&refusal.reason)
        .bind(&refusal.request)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn find_thread_and_count_services(
        &self,
        phone_number_id: &str,
        contact: &str,
        count: ServiceCount,
    ) -> Result<Option<(ThreadRow, u32)>, StoreError> {
        // One round trip: the thread, and the earliest `cap` free-form deliveries of the
        // counting window (remembered, so later questions count them in process).
        self.cache
            .thread_and_services(phone_number_id, contact, count, |_| async move {
                let row = sqlx::query(&format!(
                    "SELECT {THREAD_COLUMNS},
                            ARRAY(SELECT delivered_at FROM messages
                                   WHERE phone_number_id = $1 AND direction = 'outbound' AND category = 'service'
                                     AND delivered_at >= $3 ORDER BY delivered_at LIMIT $4) AS service_deliveries
                     FROM (
                       SELECT 0 AS rank, {THREAD_COLUMNS} FROM threads WHERE phone_number_id = $1 AND wa_id = $2
                       UNION ALL
                       SELECT 1 AS rank, {THREAD_COLUMNS} FROM threads WHERE phone_number_id = $1 AND user_id = $2
                     ) AS found ORDER BY rank LIMIT 1"
                ))
                .bind(phone_number_id)
                .bind(contact)
                .bind(count.from.unix_seconds())
                .bind(count.cap as i64)
                .fetch_optional(&self.pool)
                .await?;
                row.map(|row| Ok((thread_row(&row), row.try_get("service_deliveries")?)))
                    .transpose()
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
        let mut conn = self.pool.acquire().await?;
        let customers = sqlx::query(
            "SELECT wamid, timestamp, entry_point, is_reaction FROM messages
               WHERE thread_id = $1 AND direction = 'inbound' AND counts_for_window
                 AND timestamp BETWEEN $2 AND $3
             UNION
             SELECT * FROM (SELECT wamid, timestamp, entry_point, is_reaction FROM messages
               WHERE thread_id = $1 AND direction = 'inbound' AND counts_for_window
                 AND NOT is_reaction AND timestamp <= $3 ORDER BY timestamp DESC LIMIT 1) AS latest_customer_message
             UNION
             SELECT * FROM (SELECT wamid, timestamp, entry_point, is_reaction FROM messages
               WHERE thread_id = $1 AND direction = 'inbound' AND counts_for_window
                 AND is_reaction AND timestamp <= $3 ORDER BY timestamp DESC LIMIT 1) AS latest_reaction
             UNION
             SELECT * FROM (SELECT wamid, timestamp, entry_point, is_reaction FROM messages
               WHERE thread_id = $1 AND direction = 'inbound' AND counts_for_window
                 AND entry_point = 'ad' AND timestamp <= $3 ORDER BY timestamp DESC LIMIT 1) AS latest_ad",
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
               FROM messages m LEFT JOIN statuses s ON s.wamid = m.wamid AND s.timestamp <= $3
              WHERE m.thread_id = $1 AND m.direction = 'outbound'
                AND (m.timestamp BETWEEN $2 AND $3 OR m.timestamp BETWEEN $4 AND $5)",
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
               WHERE phone_number_id = $1 AND direction = 'outbound' AND category = 'service'
                 AND delivered_at >= $2 AND delivered_at < $3 LIMIT $4) AS capped",
        )
        .bind(phone_number_id)
        .bind(from.unix_seconds())
        .bind(before.unix_seconds())
        .bind(cap as i64)
        .fetch_one(&self.pool)
        .await?;
        Ok(count as u32)
    }

    async fn thread_messages(&self, thread_id: i64) -> Result<Vec<MessageRow>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        let mut messages: Vec<MessageRow> = sqlx::query(
            "SELECT wamid, direction, type, timestamp, category, template_name, sent_via_hourglass, delivered_at, body,
                    entry_point, is_reaction, counts_for_window
               FROM messages WHERE thread_id = $1 ORDER BY timestamp, wamid",
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
              WHERE m.thread_id = $1 ORDER BY s.timestamp, s.status",
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
            crate::anchor::threads_by_anchor_sql(THREAD_COLUMNS, |n| format!("${n}"), settings);
        let mut query = sqlx::query(&sql).bind(phone_number_id);
        for value in crate::anchor::threads_by_anchor_args(from, to, cursor, limit) {
            query = query.bind(value);
        }
        let rows = query.fetch_all(&self.pool).await?;
        Ok(rows.iter().map(thread_row).collect())
    }

    async fn business_number(
        &self,
        phone_number_id: &str,
    ) -> Result<Option<BusinessNumber>, StoreError> {
        let row: Option<(String, Option<String>, Option<String>, String)> = sqlx::query_as(
            "SELECT phone_number_id, waba_id, display_phone_number, time_zone FROM business_numbers WHERE phone_number_id = $1",
        )
        .bind(phone_number_id)
        .fetch_optional(&self.pool)
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
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (phone_number_id) DO UPDATE SET
               waba_id = COALESCE(excluded.waba_id, business_numbers.waba_id),
               display_phone_number = COALESCE(excluded.display_phone_number, business_numbers.display_phone_number),
               time_zone = excluded.time_zone",
        )
        .bind(&number.phone_number_id)
        .bind(&number.waba_id)
        .bind(&number.display_phone_number)
        .bind(&number.time_zone)
        .execute(&self.pool)
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
            "INSERT INTO api_keys (key_hash, label, numbers, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(&key.key_hash)
        .bind(&key.label)
        .bind(numbers_to_json(&key.numbers))
        .bind(key.created_at.unix_seconds())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn find_api_key(&self, key_hash: &str) -> Result<Option<ApiKeyRow>, StoreError> {
        let row: Option<(i64, String, Option<String>)> =
            sqlx::query_as("SELECT id, label, numbers FROM api_keys WHERE key_hash = $1")
                .bind(key_hash)
                .fetch_optional(&self.pool)
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
            .fetch_one(&self.pool)
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
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}
