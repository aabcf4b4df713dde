//! The durable outbox: a message is a row before it is anything else.
//!
//! A send is enqueued (deduplicated on the number and the client's `Idempotency-Key`),
//! claimed by a worker with an atomic `UPDATE … RETURNING` that sets a lease (with
//! `FOR UPDATE SKIP LOCKED` on PostgreSQL, so several processes never claim the same
//! row), and finished with Meta's answer. A worker that dies lets its lease expire and
//! the row is claimed again. `attempts`, incremented by each claim, is the claim's token:
//! only the claim that is still current may finish the row.

use hourglass_core::Instant;

/// Columns of `outbox`, in the order `outbox_from_row` reads them.
pub(crate) const OUTBOX_COLUMNS: &str = "id, phone_number_id, contact, idempotency_key, request_sha256, body, state, attempts, next_attempt_at, lease_until, created_at, send_at, finished_at, wamid, error_code, error_message";

/// Claims due rows: queued ones whose instant has come, and sending ones whose lease
/// expired more than `$4` seconds ago (time for a status webhook to say that Meta did
/// accept the attempt that was cut short). `$1` now, `$2` lease seconds, `$3` how many.
pub(crate) const CLAIM_SQLITE: &str = "UPDATE outbox SET state = 'sending', attempts = attempts + 1, lease_until = $1 + $2
     WHERE id IN (SELECT id FROM outbox
                   WHERE state IN ('queued', 'sending') AND next_attempt_at <= $1
                     AND (state = 'queued' OR lease_until <= $1 - $4)
                   ORDER BY next_attempt_at, id LIMIT $3)
     RETURNING id, phone_number_id, contact, idempotency_key, request_sha256, body, state, attempts, next_attempt_at, lease_until, created_at, send_at, finished_at, wamid, error_code, error_message";

pub(crate) const CLAIM_POSTGRES: &str = "UPDATE outbox SET state = 'sending', attempts = attempts + 1, lease_until = $1 + $2
     WHERE id IN (SELECT id FROM outbox
                   WHERE state IN ('queued', 'sending') AND next_attempt_at <= $1
                     AND (state = 'queued' OR lease_until <= $1 - $4)
                   ORDER BY next_attempt_at, id LIMIT $3
                   FOR UPDATE SKIP LOCKED)
     RETURNING id, phone_number_id, contact, idempotency_key, request_sha256, body, state, attempts, next_attempt_at, lease_until, created_at, send_at, finished_at, wamid, error_code, error_message";

/// Finishes an outbox row from a status webhook that carries its callback data: Meta
/// accepted the message with id `$2`. Only a row of the same number, not already
/// holding another message id, is touched. `$1` outbox id, `$3` number, `$4` instant.
pub(crate) const RECONCILE_FROM_STATUS: &str = "UPDATE outbox SET
       wamid = $2,
       finished_at = COALESCE(finished_at, $4),
       state = CASE WHEN state IN ('queued', 'sending') THEN 'sent' ELSE state END,
       lease_until = NULL, error_code = NULL, error_message = NULL
     WHERE id = $1 AND phone_number_id = $3 AND (wamid IS NULL OR wamid = $2)
       AND state IN ('queued', 'sending', 'sent')";

/// The statement that finishes an attempt, by how it ended. Every one binds `$1` the
/// row's id and `$2` the claim's attempt number (only the current claim may finish it),
/// then the outcome's own values in the order of [`OutboxOutcome`]'s fields (`Refused`
/// binds its code as nullable, like `Failed`).
pub(crate) fn finish_sql(outcome: &OutboxOutcome) -> &'static str {
    match outcome {
        // A status webhook may have finished the row first (`sent`).
        OutboxOutcome::Sent { .. } => {
            "UPDATE outbox SET state = 'sent', wamid = COALESCE($3, wamid), finished_at = COALESCE(finished_at, $4),
                               lease_until = NULL, error_code = NULL, error_message = NULL
             WHERE id = $1 AND attempts = $2 AND state IN ('sending', 'sent')"
        }
        OutboxOutcome::Retry { .. } => {
            "UPDATE outbox SET state = 'queued', next_attempt_at = $3, error_code = $4,
                               error_message = $5, lease_until = NULL
             WHERE id = $1 AND attempts = $2 AND state = 'sending'"
        }
        // Not an attempt: the claim's count is given back.
        OutboxOutcome::Deferred { .. } => {
            "UPDATE outbox SET state = 'queued', next_attempt_at = $3, lease_until = NULL,
                               attempts = attempts - 1
             WHERE id = $1 AND attempts = $2 AND state = 'sending'"
        }
        OutboxOutcome::Failed { .. } => {
            "UPDATE outbox SET state = 'failed', error_code = $3, error_message = $4,
                               finished_at = $5, lease_until = NULL
             WHERE id = $1 AND attempts = $2 AND state = 'sending'"
        }
        OutboxOutcome::Refused { .. } => {
            "UPDATE outbox SET state = 'refused', error_code = $3, error_message = $4,
                               finished_at = $5, lease_until = NULL
             WHERE id = $1 AND attempts = $2 AND state = 'sending'"
        }
    }
}

/// Enqueues unless the number already holds the idempotency key. `$1` number, `$2`
/// contact, `$3` key, `$4` request hash, `$5` body, `$6` send at, `$7` created at.
pub(crate) fn enqueue_sql() -> String {
    format!(
        "INSERT INTO outbox (phone_number_id, contact, idempotency_key, request_sha256, body, state,
                             next_attempt_at, created_at, send_at)
         VALUES ($1, $2, $3, $4, $5, 'queued', $6, $7, $6)
         ON CONFLICT (phone_number_id, idempotency_key) DO NOTHING
         RETURNING {OUTBOX_COLUMNS}"
    )
}

/// The row holding a number's idempotency key. `$1` number, `$2` key.
pub(crate) fn by_idempotency_key_sql() -> String {
    format!(
        "SELECT {OUTBOX_COLUMNS} FROM outbox WHERE phone_number_id = $1 AND idempotency_key = $2"
    )
}

/// rusqlite binds by position, and SQLite numbers `$N` by first appearance: the ingest
/// writer uses `?N`.
pub(crate) fn numbered_for_rusqlite(sql: &str) -> String {
    sql.replace('$', "?")
}

/// A message to enqueue.
#[derive(Clone, Debug)]
pub struct NewOutboxMessage {
    pub phone_number_id: String,
    pub contact: String,
    pub idempotency_key: Option<String>,
    /// SHA-256 (hex) of the client's request, to tell a retry from a different request
    /// under the same key.
    pub request_sha256: String,
    /// Meta's request body.
    pub body: String,
    pub send_at: Instant,
    pub created_at: Instant,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutboxState {
    Queued,
    Sending,
    Sent,
    Failed,
    Refused,
}

impl OutboxState {
    pub fn as_str(self) -> &'static str {
        match self {
            OutboxState::Queued => "queued",
            OutboxState::Sending => "sending",
            OutboxState::Sent => "sent",
            OutboxState::Failed => "failed",
            OutboxState::Refused => "refused",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "queued" => Some(OutboxState::Queued),
            "sending" => Some(OutboxState::Sending),
            "sent" => Some(OutboxState::Sent),
            "failed" => Some(OutboxState::Failed),
            "refused" => Some(OutboxState::Refused),
            _ => None,
        }
    }

    /// Whether the row will not change any more.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            OutboxState::Sent | OutboxState::Failed | OutboxState::Refused
        )
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboxRow {
    pub id: i64,
    pub phone_number_id: String,
    pub contact: String,
    pub idempotency_key: Option<String>,
    pub request_sha256: String,
    pub body: String,
    pub state: OutboxState,
    /// Claims so far (each claim is one attempt to send).
    pub attempts: i64,
    pub next_attempt_at: Instant,
    pub lease_until: Option<Instant>,
    pub created_at: Instant,
    pub send_at: Instant,
    pub finished_at: Option<Instant>,
    pub wamid: Option<String>,
    pub error_code: Option<i64>,
    pub error_message: Option<String>,
}

/// What enqueueing did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Enqueued {
    New(OutboxRow),
    /// A row with the same number and idempotency key already existed: this is it.
    Existing(OutboxRow),
}

/// How an attempt ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OutboxOutcome {
    /// Meta accepted the message; its id, when Meta's answer could be read (a status
    /// webhook fills it in otherwise).
    Sent { wamid: Option<String>, at: Instant },
    /// A transient failure: try again at `next_attempt_at`.
    Retry {
        next_attempt_at: Instant,
        code: Option<i64>,
        message: String,
    },
    /// Meta refused it for good.
    Failed {
        code: Option<i64>,
        message: String,
        at: Instant,
    },
    /// Not sent yet because of Meta's limits: back in the queue until `next_attempt_at`,
    /// without counting as an attempt.
    Deferred { next_attempt_at: Instant },
    /// Hourglass refused it before it reached Meta (window closed, template refused).
    Refused {
        code: i64,
        message: String,
        at: Instant,
    },
}

/// Expands the outbox's queries for one sqlx database type (`$db`) and its claim SQL.
macro_rules! define_outbox {
    ($db:ty, $claim:expr) => {
        use hourglass_core::Instant;
        use sqlx::Row;

        use crate::outbox::*;
        use crate::StoreError;

        fn outbox_from_row(row: &<$db as sqlx::Database>::Row) -> Result<OutboxRow, StoreError> {
            let at = |v: Option<i64>| v.map(Instant::from_unix_seconds);
            let state: String = row.try_get("state")?;
            Ok(OutboxRow {
                id: row.try_get("id")?,
                phone_number_id: row.try_get("phone_number_id")?,
                contact: row.try_get("contact")?,
                idempotency_key: row.try_get("idempotency_key")?,
                request_sha256: row.try_get("request_sha256")?,
                body: row.try_get("body")?,
                state: OutboxState::parse(&state)
                    .ok_or_else(|| StoreError::Corrupt(format!("outbox.state `{state}`")))?,
                attempts: row.try_get("attempts")?,
                next_attempt_at: Instant::from_unix_seconds(row.try_get("next_attempt_at")?),
                lease_until: at(row.try_get("lease_until")?),
                created_at: Instant::from_unix_seconds(row.try_get("created_at")?),
                send_at: Instant::from_unix_seconds(row.try_get("send_at")?),
                finished_at: at(row.try_get("finished_at")?),
                wamid: row.try_get("wamid")?,
                error_code: row.try_get("error_code")?,
                error_message: row.try_get("error_message")?,
            })
        }

        pub(crate) struct Outbox {
            pub pool: sqlx::Pool<$db>,
            pub read: sqlx::Pool<$db>,
        }

        #[async_trait::async_trait]
        impl crate::Outbox for Outbox {
            async fn enqueue(&self, message: &NewOutboxMessage) -> Result<Enqueued, StoreError> {
                let inserted = sqlx::query(&enqueue_sql())
                .bind(&message.phone_number_id)
                .bind(&message.contact)
                .bind(&message.idempotency_key)
                .bind(&message.request_sha256)
                .bind(&message.body)
                .bind(message.send_at.unix_seconds())
                .bind(message.created_at.unix_seconds())
                .fetch_optional(&self.pool)
                .await?;
                if let Some(row) = inserted {
                    return Ok(Enqueued::New(outbox_from_row(&row)?));
                }
                let existing = sqlx::query(&by_idempotency_key_sql())
                .bind(&message.phone_number_id)
                .bind(&message.idempotency_key)
                .fetch_one(&self.pool)
                .await?;
                Ok(Enqueued::Existing(outbox_from_row(&existing)?))
            }

            async fn claim_due(
                &self,
                now: Instant,
                lease_seconds: i64,
                reconcile_seconds: i64,
                limit: u32,
            ) -> Result<Vec<OutboxRow>, StoreError> {
                let rows = sqlx::query($claim)
                    .bind(now.unix_seconds())
                    .bind(lease_seconds)
                    .bind(i64::from(limit))
                    .bind(reconcile_seconds)
                    .fetch_all(&self.pool)
                    .await?;
                rows.iter().map(outbox_from_row).collect()
            }

            async fn finish(
                &self,
                id: i64,
                attempt: i64,
                outcome: &OutboxOutcome,
            ) -> Result<bool, StoreError> {
                let query = sqlx::query(finish_sql(outcome)).bind(id).bind(attempt);
                let query = match outcome {
                    OutboxOutcome::Sent { wamid, at } => query.bind(wamid).bind(at.unix_seconds()),
                    OutboxOutcome::Retry { next_attempt_at, code, message } => {
                        query.bind(next_attempt_at.unix_seconds()).bind(*code).bind(message)
                    }
                    OutboxOutcome::Deferred { next_attempt_at } => {
                        query.bind(next_attempt_at.unix_seconds())
                    }
                    OutboxOutcome::Failed { code, message, at } => {
                        query.bind(*code).bind(message).bind(at.unix_seconds())
                    }
                    OutboxOutcome::Refused { code, message, at } => {
                        query.bind(Some(*code)).bind(message).bind(at.unix_seconds())
                    }
                };
                Ok(query.execute(&self.pool).await?.rows_affected() == 1)
            }

            async fn outbox_message(&self, id: i64) -> Result<Option<OutboxRow>, StoreError> {
                sqlx::query(&format!("SELECT {OUTBOX_COLUMNS} FROM outbox WHERE id = $1"))
                    .bind(id)
                    .fetch_optional(&self.read)
                    .await?
                    .as_ref()
                    .map(outbox_from_row)
                    .transpose()
            }

            async fn next_due(&self) -> Result<Option<Instant>, StoreError> {
                let at: Option<i64> = sqlx::query_scalar(
                    "SELECT MIN(CASE WHEN state = 'queued' THEN next_attempt_at ELSE lease_until END)
                       FROM outbox WHERE state IN ('queued', 'sending')",
                )
                .fetch_one(&self.read)
                .await?;
                Ok(at.map(Instant::from_unix_seconds))
            }
        }
    };
}

pub(crate) use define_outbox;
