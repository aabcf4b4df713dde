//! The SQLite ingest writer: one OS thread that owns a connection and runs each batch of
//! webhook deliveries as one transaction of cached prepared statements.
//!
//! Why not sqlx here: sqlx runs SQLite on a worker thread of its own and pays a
//! cross-thread round trip for every statement. Under load, with two cores shared by the
//! HTTP workers, those round trips, not SQLite, limited ingestion. On a thread that owns
//! the connection, a statement costs microseconds, so a batch needs one hand-off in and
//! one out, however many items it holds. Everything else in [`crate::SqliteStore`] still
//! goes through sqlx.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use hourglass_core::{EntryPoint, StatusKind};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use tokio::sync::{mpsc, oneshot};

use crate::model::*;
use crate::window_cache::WindowCache;
use crate::StoreError;

/// What a batch changed, for the window cache.
#[derive(Default)]
struct Touched {
    threads: HashSet<i64>,
    /// Numbers whose business messages got new statuses (their free-form delivery count
    /// may have moved).
    numbers: HashSet<String>,
}

type Job = (
    Vec<WebhookDelivery>,
    oneshot::Sender<Result<IngestReport, StoreError>>,
);

/// A handle to the writer thread. Dropping every handle stops the thread.
#[derive(Clone)]
pub struct SqliteIngestWriter {
    jobs: mpsc::Sender<Job>,
}

impl SqliteIngestWriter {
    /// Opens the writer's own connection to an already-migrated database.
    pub fn start(path: &str, cache: Arc<WindowCache>) -> Result<Self, StoreError> {
        let conn = Connection::open(path).map_err(embedded)?;
        conn.busy_timeout(Duration::from_secs(10))
            .map_err(embedded)?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             PRAGMA foreign_keys = ON;
             PRAGMA cache_size = -65536;",
        )
        .map_err(embedded)?;
        let (jobs, mut receiver) = mpsc::channel::<Job>(64);
        std::thread::Builder::new()
            .name("sqlite-ingest".into())
            .spawn(move || {
                let mut conn = conn;
                while let Some((deliveries, done)) = receiver.blocking_recv() {
                    let mut touched = Touched::default();
                    let result = ingest_batch(&mut conn, &deliveries, &mut touched);
                    // After the commit (or the rollback), before anyone is answered.
                    cache.forget_threads(&touched.threads);
                    cache.forget_services(&touched.numbers);
                    let _ = done.send(result.map_err(embedded));
                }
            })
            .map_err(|e| {
                StoreError::Corrupt(format!("could not start the SQLite writer thread: {e}"))
            })?;
        Ok(SqliteIngestWriter { jobs })
    }

    pub async fn ingest(&self, deliveries: &[WebhookDelivery]) -> Result<IngestReport, StoreError> {
        let (done, receipt) = oneshot::channel();
        let stopped = || StoreError::Corrupt("the SQLite writer thread has stopped".into());
        self.jobs
            .send((deliveries.to_vec(), done))
            .await
            .map_err(|_| stopped())?;
        receipt.await.map_err(|_| stopped())?
    }
}

fn embedded(error: rusqlite::Error) -> StoreError {
    StoreError::Embedded(error.to_string())
}

/// The thread of a contact, found by `wa_id` first, then `user_id`; created if absent;
/// taught the key it lacked. Returns the thread and, when the contact's two keys had two
/// threads that are now merged into it, the id of the one that is gone.
fn resolve_thread(
    conn: &Connection,
    phone_number_id: &str,
    contact: &ContactKey,
) -> rusqlite::Result<(i64, Option<i64>)> {
    let found = conn
        .prepare_cached(
            "SELECT id, wa_id, user_id FROM (
               SELECT 0 AS rank, id, wa_id, user_id FROM threads WHERE phone_number_id = ?1 AND wa_id = ?2
               UNION ALL
               SELECT 1 AS rank, id, wa_id, user_id FROM threads WHERE phone_number_id = ?1 AND user_id = ?3
             ) AS found ORDER BY rank LIMIT 1",
        )?
        .query_row(params![phone_number_id, contact.wa_id, contact.user_id], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, Option<String>>(1)?, r.get::<_, Option<String>>(2)?))
        })
        .optional()?;
    let Some((id, wa_id, user_id)) = found else {
        let id = conn
            .prepare_cached("INSERT INTO threads (phone_number_id, wa_id, user_id) VALUES (?1, ?2, ?3) RETURNING id")?
            .query_row(params![phone_number_id, contact.wa_id, contact.user_id], |r| r.get(0))?;
        return Ok((id, None));
    };
    // Found by phone number, but the business-scoped id already has a thread of its own
    // (the contact wrote once with each): they are one contact, so one thread.
    let mut merged = None;
    if let (Some(_), None, Some(learned)) = (&wa_id, &user_id, &contact.user_id) {
        merged = conn
            .prepare_cached(
                "SELECT id FROM threads WHERE phone_number_id = ?1 AND user_id = ?2 AND id <> ?3",
            )?
            .query_row(params![phone_number_id, learned, id], |r| {
                r.get::<_, i64>(0)
            })
            .optional()?;
        if let Some(gone) = merged {
            for sql in MERGE_THREADS_SQLITE {
                conn.prepare_cached(sql)?.execute(params![id, gone])?;
            }
        }
    }
    for (column, have, learned) in [
        ("wa_id", &wa_id, &contact.wa_id),
        ("user_id", &user_id, &contact.user_id),
    ] {
        if have.is_none() && learned.is_some() {
            conn.prepare_cached(&format!(
                "UPDATE threads SET {column} = ?2 WHERE id = ?1 AND {column} IS NULL
                 AND NOT EXISTS (SELECT 1 FROM threads other WHERE other.phone_number_id = ?3 AND other.{column} = ?2)"
            ))?
            .execute(params![id, learned, phone_number_id])?;
        }
    }
    Ok((id, merged))
}

/// Moves thread `?2` into thread `?1`: its messages and refusals, its summary (latest of
/// each), then deletes it.
const MERGE_THREADS_SQLITE: [&str; 4] = [
    "UPDATE messages SET thread_id = ?1 WHERE thread_id = ?2",
    "UPDATE refusals SET thread_id = ?1 WHERE thread_id = ?2",
    "UPDATE threads SET
       last_customer_at = MAX(COALESCE(threads.last_customer_at, gone.c), COALESCE(gone.c, threads.last_customer_at)),
       last_reaction_at = MAX(COALESCE(threads.last_reaction_at, gone.r), COALESCE(gone.r, threads.last_reaction_at)),
       last_fep_signal_at = MAX(COALESCE(threads.last_fep_signal_at, gone.f), COALESCE(gone.f, threads.last_fep_signal_at)),
       profile_name = COALESCE(threads.profile_name, gone.p)
     FROM (SELECT last_customer_at AS c, last_reaction_at AS r, last_fep_signal_at AS f, profile_name AS p
             FROM threads WHERE id = ?2) AS gone
     WHERE threads.id = ?1",
    "DELETE FROM threads WHERE id = ?2",
];

fn enqueue_forward(
    tx: &rusqlite::Transaction<'_>,
    phone_number_id: &str,
    forward: &crate::ForwardItem,
    at: hourglass_core::Instant,
) -> rusqlite::Result<()> {
    tx.prepare_cached(&crate::outbox::numbered_for_rusqlite(
        crate::forwarding::ENQUEUE_FORWARDS,
    ))?
    .execute(params![
        forward.thread_key,
        forward.kind,
        forward.body,
        at.unix_seconds(),
        phone_number_id
    ])?;
    Ok(())
}

fn ingest_batch(
    conn: &mut Connection,
    deliveries: &[WebhookDelivery],
    touched: &mut Touched,
) -> rusqlite::Result<IngestReport> {
    let mut report = IngestReport::default();
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut threads: HashMap<(&str, &ContactKey), i64> = HashMap::new();
    let mut numbers: Vec<&str> = Vec::new();
    for delivery in deliveries {
        let new = tx
            .prepare_cached(
                "INSERT INTO webhook_deliveries (sha256, received_at, body) VALUES (?1, ?2, ?3)
                 ON CONFLICT (sha256) DO NOTHING",
            )?
            .execute(params![
                delivery.body_sha256,
                delivery.received_at.unix_seconds(),
                delivery.body
            ])?;
        if new == 0 {
            // The same bytes were stored, with all their items, in an earlier commit.
            report.duplicates += delivery.items.len() as u64;
            continue;
        }
        report.deliveries_new += 1;
        for item in &delivery.items {
            let (number, contact) = match item {
                IngestItem::Inbound {
                    number, contact, ..
                }
                | IngestItem::Status {
                    number, contact, ..
                } => (number, contact),
                IngestItem::TemplateChange(change) => {
                    crate::templates::apply_change_sqlite(&tx, change)?;
                    continue;
                }
                IngestItem::Unprocessed { field, reason, raw } => {
                    tx.prepare_cached(
                        "INSERT INTO unprocessed_items (delivery_sha256, field, reason, raw) VALUES (?1, ?2, ?3, ?4)
                         ON CONFLICT DO NOTHING",
                    )?
                    .execute(params![delivery.body_sha256, field, reason, raw])?;
                    continue;
                }
            };
            if !numbers.contains(&number.phone_number_id.as_str()) {
                tx.prepare_cached(
                    "INSERT INTO business_numbers (phone_number_id, waba_id, display_phone_number) VALUES (?1, ?2, ?3)
                     ON CONFLICT (phone_number_id) DO UPDATE SET
                       waba_id = COALESCE(business_numbers.waba_id, excluded.waba_id),
                       display_phone_number = COALESCE(business_numbers.display_phone_number, excluded.display_phone_number)",
                )?
                .execute(params![number.phone_number_id, number.waba_id, number.display_phone_number])?;
                numbers.push(&number.phone_number_id);
            }
            let thread_id = match threads.get(&(number.phone_number_id.as_str(), contact)) {
                Some(id) => *id,
                None => {
                    let (id, merged) = resolve_thread(&tx, &number.phone_number_id, contact)?;
                    touched.threads.insert(id);
                    touched.threads.extend(merged);
                    if let Some(gone) = merged {
                        for thread in threads.values_mut().filter(|t| **t == gone) {
                            *thread = id;
                        }
                    }
                    threads.insert((&number.phone_number_id, contact), id);
                    id
                }
            };
            match item {
                IngestItem::Inbound {
                    profile_name,
                    message_id,
                    timestamp,
                    message_type,
                    entry_point,
                    is_reaction,
                    counts_for_window,
                    raw,
                    forward,
                    media,
                    ..
                } => {
                    let inserted = tx
                        .prepare_cached(
                            "INSERT INTO messages (wamid, thread_id, phone_number_id, direction, type, timestamp,
                                                   entry_point, is_reaction, counts_for_window, body)
                             VALUES (?1, ?2, ?3, 'inbound', ?4, ?5, ?6, ?7, ?8, ?9)
                             ON CONFLICT (wamid) DO NOTHING",
                        )?
                        .execute(params![
                            message_id, thread_id, number.phone_number_id, message_type, timestamp.unix_seconds(),
                            entry_point_name(*entry_point), is_reaction, counts_for_window, raw
                        ])?;
                    if inserted == 0 {
                        report.duplicates += 1;
                        continue;
                    }
                    report.messages_new += 1;
                    if let Some(forward) = forward {
                        enqueue_forward(
                            &tx,
                            &number.phone_number_id,
                            forward,
                            delivery.received_at,
                        )?;
                    }
                    if let Some(media) = media {
                        tx.prepare_cached(&crate::outbox::numbered_for_rusqlite(
                            crate::media::INSERT_MEDIA,
                        ))?
                        .execute(params![
                            media.id,
                            number.phone_number_id,
                            message_id,
                            media.mime_type,
                            media.sha256,
                            delivery.received_at.unix_seconds()
                        ])?;
                    }
                    if *counts_for_window {
                        tx.prepare_cached(
                            "UPDATE threads SET
                               last_customer_at = CASE WHEN NOT ?2 AND (last_customer_at IS NULL OR last_customer_at < ?3)
                                                       THEN ?3 ELSE last_customer_at END,
                               last_reaction_at = CASE WHEN ?2 AND (last_reaction_at IS NULL OR last_reaction_at < ?3)
                                                       THEN ?3 ELSE last_reaction_at END,
                               last_fep_signal_at = CASE WHEN ?4 AND (last_fep_signal_at IS NULL OR last_fep_signal_at < ?3)
                                                         THEN ?3 ELSE last_fep_signal_at END,
                               profile_name = COALESCE(?5, profile_name)
                             WHERE id = ?1",
                        )?
                        .execute(params![
                            thread_id, is_reaction, timestamp.unix_seconds(), *entry_point == EntryPoint::Ad, profile_name
                        ])?;
                    }
                }
                IngestItem::Status {
                    message_id,
                    status,
                    timestamp,
                    category,
                    fep_expires_at,
                    pricing,
                    conversation,
                    errors,
                    outbox_id,
                    forward,
                    ..
                } => {
                    if let Some(outbox_id) = outbox_id {
                        tx.prepare_cached(&crate::outbox::numbered_for_rusqlite(
                            crate::outbox::RECONCILE_FROM_STATUS,
                        ))?
                        .execute(params![
                            outbox_id,
                            message_id,
                            number.phone_number_id,
                            timestamp.unix_seconds()
                        ])?;
                    }
                    let inserted = tx
                        .prepare_cached(
                            "INSERT INTO statuses (wamid, status, timestamp, category, fep_expires_at, pricing, conversation, errors)
                             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                             ON CONFLICT (wamid, status) DO NOTHING",
                        )?
                        .execute(params![
                            message_id, status_name(*status), timestamp.unix_seconds(), category.map(|c| c.as_str()),
                            fep_expires_at.map(|i| i.unix_seconds()), pricing, conversation, errors
                        ])?;
                    if inserted == 0 {
                        report.duplicates += 1;
                        continue;
                    }
                    report.statuses_new += 1;
                    touched.numbers.insert(number.phone_number_id.clone());
                    if let Some(forward) = forward {
                        enqueue_forward(
                            &tx,
                            &number.phone_number_id,
                            forward,
                            delivery.received_at,
                        )?;
                    }
                    // A business message sent outside Hourglass is first heard of through its
                    // statuses: they still count.
                    let delivered = matches!(status, StatusKind::Delivered | StatusKind::Read);
                    tx.prepare_cached(
                        "INSERT INTO messages (wamid, thread_id, phone_number_id, direction, type, timestamp, category, delivered_at)
                         VALUES (?1, ?2, ?3, 'outbound', 'unknown', ?4, ?5, CASE WHEN ?6 THEN ?4 END)
                         ON CONFLICT (wamid) DO UPDATE SET
                           timestamp = MIN(messages.timestamp, excluded.timestamp),
                           category = COALESCE(messages.category, excluded.category),
                           delivered_at = CASE WHEN excluded.delivered_at IS NULL THEN messages.delivered_at
                                               ELSE MIN(COALESCE(messages.delivered_at, excluded.delivered_at), excluded.delivered_at) END",
                    )?
                    .execute(params![
                        message_id, thread_id, number.phone_number_id, timestamp.unix_seconds(),
                        category.map(|c| c.as_str()), delivered
                    ])?;
                    if fep_expires_at.is_some() {
                        tx.prepare_cached(
                            "UPDATE threads SET last_fep_signal_at = MAX(COALESCE(last_fep_signal_at, ?2), ?2) WHERE id = ?1",
                        )?
                        .execute(params![thread_id, timestamp.unix_seconds()])?;
                    }
                }
                IngestItem::Unprocessed { .. } | IngestItem::TemplateChange(_) => {
                    unreachable!("handled above")
                }
            }
        }
    }
    tx.commit()?;
    Ok(report)
}
