//! The outbox and the rate limits on SQLite: their writes (enqueue, claim, finish, take
//! tokens) run on the writer thread ([`SqliteWriter`]), so they share its group commits
//! with the webhooks the same sends cause; their reads go through sqlx's readers (the
//! sqlx implementations, which PostgreSQL uses whole).

use hourglass_core::Instant;
use rusqlite::{params, Connection, OptionalExtension};

use crate::outbox::*;
use crate::rate_limits::{level_sql, take_sql, wait_for_token, Admission, Bucket};
use crate::sqlite_writer::SqliteWriter;
use crate::StoreError;

pub(crate) struct SqliteOutbox {
    pub writer: SqliteWriter,
    /// Answers the reads.
    pub reads: crate::sqlite::outbox_store::Outbox,
}

/// A row of `outbox`, selected as [`OUTBOX_COLUMNS`].
fn outbox_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<(OutboxRow, String)> {
    let at = |v: Option<i64>| v.map(Instant::from_unix_seconds);
    let state: String = row.get(6)?;
    Ok((
        OutboxRow {
            id: row.get(0)?,
            phone_number_id: row.get(1)?,
            contact: row.get(2)?,
            idempotency_key: row.get(3)?,
            request_sha256: row.get(4)?,
            body: row.get(5)?,
            // Checked by `checked` below, where the error can say what was wrong.
            state: OutboxState::parse(&state).unwrap_or(OutboxState::Queued),
            attempts: row.get(7)?,
            next_attempt_at: Instant::from_unix_seconds(row.get(8)?),
            lease_until: at(row.get(9)?),
            created_at: Instant::from_unix_seconds(row.get(10)?),
            send_at: Instant::from_unix_seconds(row.get(11)?),
            finished_at: at(row.get(12)?),
            wamid: row.get(13)?,
            error_code: row.get(14)?,
            error_message: row.get(15)?,
        },
        state,
    ))
}

fn checked((row, state): (OutboxRow, String)) -> Result<OutboxRow, StoreError> {
    match OutboxState::parse(&state) {
        Some(_) => Ok(row),
        None => Err(StoreError::Corrupt(format!("outbox.state `{state}`"))),
    }
}

fn enqueue(conn: &Connection, message: &NewOutboxMessage) -> Result<Enqueued, StoreError> {
    let inserted = conn
        .prepare_cached(&numbered_for_rusqlite(&enqueue_sql()))?
        .query_row(
            params![
                message.phone_number_id,
                message.contact,
                message.idempotency_key,
                message.request_sha256,
                message.body,
                message.send_at.unix_seconds(),
                message.created_at.unix_seconds()
            ],
            outbox_row,
        )
        .optional()?;
    if let Some(row) = inserted {
        return Ok(Enqueued::New(checked(row)?));
    }
    let existing = conn
        .prepare_cached(&numbered_for_rusqlite(&by_idempotency_key_sql()))?
        .query_row(
            params![message.phone_number_id, message.idempotency_key],
            outbox_row,
        )?;
    Ok(Enqueued::Existing(checked(existing)?))
}

fn finish(
    conn: &Connection,
    id: i64,
    attempt: i64,
    outcome: &OutboxOutcome,
) -> Result<bool, StoreError> {
    let mut statement = conn.prepare_cached(&numbered_for_rusqlite(finish_sql(outcome)))?;
    let changed = match outcome {
        OutboxOutcome::Sent { wamid, at } => {
            statement.execute(params![id, attempt, wamid, at.unix_seconds()])?
        }
        OutboxOutcome::Retry {
            next_attempt_at,
            code,
            message,
        } => statement.execute(params![
            id,
            attempt,
            next_attempt_at.unix_seconds(),
            code,
            message
        ])?,
        OutboxOutcome::Deferred { next_attempt_at } => {
            statement.execute(params![id, attempt, next_attempt_at.unix_seconds()])?
        }
        OutboxOutcome::Failed { code, message, at } => {
            statement.execute(params![id, attempt, code, message, at.unix_seconds()])?
        }
        OutboxOutcome::Refused { code, message, at } => {
            statement.execute(params![id, attempt, code, message, at.unix_seconds()])?
        }
    };
    Ok(changed == 1)
}

#[async_trait::async_trait]
impl crate::Outbox for SqliteOutbox {
    async fn enqueue(&self, message: &NewOutboxMessage) -> Result<Enqueued, StoreError> {
        let message = message.clone();
        self.writer.write(move |conn| enqueue(conn, &message)).await
    }

    async fn claim_due(
        &self,
        now: Instant,
        lease_seconds: i64,
        reconcile_seconds: i64,
        limit: u32,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        self.writer
            .write(move |conn| {
                let mut statement = conn.prepare_cached(&numbered_for_rusqlite(CLAIM_SQLITE))?;
                let rows = statement.query_map(
                    params![
                        now.unix_seconds(),
                        lease_seconds,
                        i64::from(limit),
                        reconcile_seconds
                    ],
                    outbox_row,
                )?;
                let mut claimed = Vec::new();
                for row in rows {
                    claimed.push(checked(row?)?);
                }
                Ok(claimed)
            })
            .await
    }

    async fn finish(
        &self,
        id: i64,
        attempt: i64,
        outcome: &OutboxOutcome,
    ) -> Result<bool, StoreError> {
        let outcome = outcome.clone();
        self.writer
            .write(move |conn| finish(conn, id, attempt, &outcome))
            .await
    }

    async fn outbox_message(&self, id: i64) -> Result<Option<OutboxRow>, StoreError> {
        self.reads.outbox_message(id).await
    }

    async fn next_due(&self) -> Result<Option<Instant>, StoreError> {
        self.reads.next_due().await
    }
}

/// Token buckets on the writer thread: each bucket's token is taken in turn; if one has
/// none, the tokens already taken are given back (nothing else writes in between) and
/// the wait is that bucket's.
pub(crate) struct SqliteRateLimits {
    pub writer: SqliteWriter,
}

fn admit(conn: &Connection, buckets: &[Bucket], now_ms: i64) -> Result<Admission, StoreError> {
    for (taken, bucket) in buckets.iter().enumerate() {
        let took = conn
            .prepare_cached(&numbered_for_rusqlite(&take_sql(false)))?
            .query_row(
                params![bucket.key, bucket.capacity, now_ms, bucket.per_second],
                |r| r.get::<_, f64>(0),
            )
            .optional()?;
        if took.is_some() {
            continue;
        }
        for earlier in &buckets[..taken] {
            conn.prepare_cached("UPDATE rate_buckets SET tokens = tokens + 1 WHERE key = ?1")?
                .execute(params![earlier.key])?;
        }
        let level: f64 = conn
            .prepare_cached(&numbered_for_rusqlite(&level_sql(false)))?
            .query_row(
                params![bucket.key, bucket.capacity, now_ms, bucket.per_second],
                |r| r.get(0),
            )?;
        return Ok(Admission::Wait(
            wait_for_token(level, bucket.per_second).max(1),
        ));
    }
    Ok(Admission::Granted)
}

#[async_trait::async_trait]
impl crate::RateLimits for SqliteRateLimits {
    async fn admit(&self, buckets: &[Bucket], now_ms: i64) -> Result<Admission, StoreError> {
        let buckets = buckets.to_vec();
        self.writer
            .write(move |conn| admit(conn, &buckets, now_ms))
            .await
    }
}
