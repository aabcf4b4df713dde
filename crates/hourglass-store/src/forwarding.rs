//! Forwarded webhooks: subscriptions, and one row per item to deliver to each.
//!
//! Rows are written by the ingest writers in the transaction that stores the item (so a
//! 200 to Meta means the forward is durable too), claimed by the forwarding worker with a
//! lease, oldest first within a thread (a thread's next item waits until the one before
//! it is delivered or dead), and deleted once delivered: the raw delivery is kept anyway.

use hourglass_core::{FepPhase, Instant};

/// The forward-row insert, with `$extra` conditions on the subscription.
macro_rules! enqueue_forwards_sql {
    ($extra:literal) => {
        concat!(
            "INSERT INTO webhook_forwards (subscription_id, thread_key, kind, body, state, attempts, next_attempt_at, created_at)
     SELECT id, $1, $2, $3, 'pending', 0, $4, $4 FROM webhook_subscriptions
      WHERE active = 1
        AND (events = '*' OR (',' || events || ',') LIKE ('%,' || $2 || ',%'))
        AND (phone_number_ids IS NULL OR (',' || phone_number_ids || ',') LIKE ('%,' || $5 || ',%'))",
            $extra
        )
    };
}

/// Adds one forward row per active subscription that wants this kind of item from this
/// number. `$1` thread key, `$2` kind, `$3` body, `$4` now, `$5` phone_number_id.
pub(crate) const ENQUEUE_FORWARDS: &str = enqueue_forwards_sql!("");

/// [`ENQUEUE_FORWARDS`] for one subscription only (`$6`): a replay.
pub(crate) const ENQUEUE_FORWARDS_TO_ONE: &str = enqueue_forwards_sql!(" AND id = $6");

/// Raw deliveries received in `[$1, $2)` that arrived after the one numbered `$3`, in
/// the order they arrived, `$4` at most. SQLite numbers rows by `rowid`; PostgreSQL by
/// the `seq` column.
pub(crate) fn raw_deliveries_page_sql(postgres: bool) -> String {
    let seq = if postgres { "seq" } else { "rowid" };
    format!(
        "SELECT {seq} AS seq, sha256, received_at, body FROM webhook_deliveries
          WHERE {seq} > $3 AND received_at >= $1 AND received_at < $2
          ORDER BY {seq} LIMIT $4"
    )
}

/// The number of the first delivery received at or after `$1`, less one: where a replay
/// from `$1` starts reading.
pub(crate) fn raw_deliveries_start_sql(postgres: bool) -> String {
    let seq = if postgres { "seq" } else { "rowid" };
    format!("SELECT MIN({seq}) - 1 FROM webhook_deliveries WHERE received_at >= $1")
}

/// The clock cursor of the window events (closing soon, closed).
pub const WINDOW_CLOCK: &str = "window_events";

/// The clock cursor of the free entry point events (opened, closed).
pub const FEP_CLOCK: &str = "fep_events";

/// What the FEP clock last found about a thread and the last free entry point it
/// reported (DESIGN.md §3.5): kept so that each FEP is reported opened once and closed
/// once, however late the webhooks that decide it arrive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FepNotice {
    /// The phase at the last evaluation.
    pub phase: FepPhase,
    /// The thread's `last_fep_signal_at` when it was evaluated.
    pub signal_at: Option<Instant>,
    /// The last free entry point reported opened.
    pub reported: Option<ReportedFep>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReportedFep {
    pub opened_at: Instant,
    pub closes_at: Instant,
    /// Whether its close was reported too.
    pub closed: bool,
}

/// A thread whose free entry point may have changed: it has a recent ad message or FEP
/// status that was not evaluated yet, it was eligible or pending (a delivery may open
/// it), or the FEP it reported open has reached its end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FepCandidate {
    pub thread_id: i64,
    pub phone_number_id: String,
    pub wa_id: Option<String>,
    pub user_id: Option<String>,
    pub last_fep_signal_at: Option<Instant>,
    pub notice: Option<FepNotice>,
}

/// The FEP candidates at `$2`, among threads with a signal after `$1`, and any thread
/// whose reported FEP closes by `$2`.
pub(crate) const FEP_CANDIDATES: &str = "
    SELECT t.id, t.phone_number_id, t.wa_id, t.user_id, t.last_fep_signal_at,
           n.phase, n.signal_at, n.opened_at, n.closes_at, n.closed
      FROM threads t LEFT JOIN fep_notices n ON n.thread_id = t.id
     WHERE t.last_fep_signal_at > $1
       AND (n.thread_id IS NULL OR n.signal_at IS NULL OR n.signal_at <> t.last_fep_signal_at
            OR n.phase IN ('eligible', 'pending')
            OR (n.opened_at IS NOT NULL AND NOT n.closed AND n.closes_at <= $2))
    UNION
    SELECT t.id, t.phone_number_id, t.wa_id, t.user_id, t.last_fep_signal_at,
           n.phase, n.signal_at, n.opened_at, n.closes_at, n.closed
      FROM fep_notices n JOIN threads t ON t.id = n.thread_id
     WHERE n.opened_at IS NOT NULL AND NOT n.closed AND n.closes_at <= $2
     ORDER BY 1";

/// Records what the FEP clock found about thread `$1`.
pub(crate) const UPSERT_FEP_NOTICE: &str = "
    INSERT INTO fep_notices (thread_id, phase, signal_at, opened_at, closes_at, closed)
    VALUES ($1, $2, $3, $4, $5, $6)
    ON CONFLICT (thread_id) DO UPDATE SET
      phase = excluded.phase, signal_at = excluded.signal_at, opened_at = excluded.opened_at,
      closes_at = excluded.closes_at, closed = excluded.closed";

/// A thread whose window anchor (its latest customer message, or reaction where they
/// count) is in a span: its window closes 24 hours later.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WindowThread {
    pub phone_number_id: String,
    pub wa_id: Option<String>,
    pub user_id: Option<String>,
    pub anchor_at: Instant,
}

/// A webhook body as Meta sent it, kept byte for byte.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawDelivery {
    /// Its place in the order of arrival.
    pub seq: i64,
    pub sha256: String,
    pub received_at: Instant,
    pub body: Vec<u8>,
}

const CLAIM_SELECT: &str = "SELECT f.id FROM webhook_forwards f
                   WHERE f.state = 'pending' AND f.next_attempt_at <= $1
                     AND (f.lease_until IS NULL OR f.lease_until <= $1)
                     AND NOT EXISTS (SELECT 1 FROM webhook_forwards g
                                      WHERE g.subscription_id = f.subscription_id AND g.thread_key = f.thread_key
                                        AND g.state = 'pending' AND g.id < f.id)
                   ORDER BY f.next_attempt_at, f.id LIMIT $3";

pub(crate) fn claim_sql(postgres: bool) -> String {
    format!(
        "UPDATE webhook_forwards SET attempts = attempts + 1, lease_until = $1 + $2
          WHERE id IN ({CLAIM_SELECT}{})
          RETURNING id, subscription_id, thread_key, kind, body, attempts, created_at",
        if postgres {
            " FOR UPDATE OF f SKIP LOCKED"
        } else {
            ""
        }
    )
}

/// An item to forward, as the edge built it: Meta's envelope around this one item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForwardItem {
    /// `messages`, `statuses` or `calls`: what subscriptions choose by.
    pub kind: &'static str,
    /// The business number and the contact: delivery is in order within it.
    pub thread_key: String,
    pub body: Vec<u8>,
}

#[derive(Clone, Debug)]
pub struct NewSubscription {
    pub url: String,
    pub secret: String,
    /// Kinds, or `["*"]`.
    pub events: Vec<String>,
    /// `None` for every number.
    pub phone_number_ids: Option<Vec<String>>,
    pub created_at: Instant,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subscription {
    pub id: i64,
    pub url: String,
    pub secret: String,
    pub events: Vec<String>,
    pub phone_number_ids: Option<Vec<String>>,
    pub created_at: Instant,
    /// Items waiting to be delivered, and dead letters.
    pub pending: i64,
    pub dead: i64,
}

/// A claimed forward, or a dead letter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForwardRow {
    pub id: i64,
    pub subscription_id: i64,
    pub thread_key: String,
    pub kind: String,
    pub body: Vec<u8>,
    pub attempts: i64,
    pub created_at: Instant,
    pub last_error: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ForwardOutcome {
    Delivered,
    Retry {
        next_attempt_at: Instant,
        error: String,
    },
    Dead {
        error: String,
    },
}

pub(crate) fn join(list: &[String]) -> String {
    list.join(",")
}

pub(crate) fn split(text: &str) -> Vec<String> {
    text.split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Expands the forwarding queries for one sqlx database type.
macro_rules! define_forwarding {
    ($db:ty, $postgres:expr) => {
        use hourglass_core::{FepPhase, Instant};
        use sqlx::Row;

        use crate::forwarding::*;
        use crate::StoreError;

        pub(crate) struct Forwarding {
            pub pool: sqlx::Pool<$db>,
            pub read: sqlx::Pool<$db>,
        }

        fn forward_from_row(row: &<$db as sqlx::Database>::Row) -> Result<ForwardRow, sqlx::Error> {
            Ok(ForwardRow {
                id: row.try_get("id")?,
                subscription_id: row.try_get("subscription_id")?,
                thread_key: row.try_get("thread_key")?,
                kind: row.try_get("kind")?,
                body: row.try_get("body")?,
                attempts: row.try_get("attempts")?,
                created_at: Instant::from_unix_seconds(row.try_get("created_at")?),
                last_error: row.try_get("last_error").unwrap_or(None),
            })
        }

        #[async_trait::async_trait]
        impl crate::Forwarding for Forwarding {
            async fn create_subscription(
                &self,
                new: &NewSubscription,
            ) -> Result<Subscription, StoreError> {
                let id: i64 = sqlx::query_scalar(
                    "INSERT INTO webhook_subscriptions (url, secret, events, phone_number_ids, active, created_at)
                     VALUES ($1, $2, $3, $4, 1, $5) RETURNING id",
                )
                .bind(&new.url)
                .bind(&new.secret)
                .bind(join(&new.events))
                .bind(new.phone_number_ids.as_deref().map(join))
                .bind(new.created_at.unix_seconds())
                .fetch_one(&self.pool)
                .await?;
                Ok(Subscription {
                    id,
                    url: new.url.clone(),
                    secret: new.secret.clone(),
                    events: new.events.clone(),
                    phone_number_ids: new.phone_number_ids.clone(),
                    created_at: new.created_at,
                    pending: 0,
                    dead: 0,
                })
            }

            async fn subscriptions(&self) -> Result<Vec<Subscription>, StoreError> {
                let rows = sqlx::query(
                    "SELECT s.id, s.url, s.secret, s.events, s.phone_number_ids, s.created_at,
                            (SELECT COUNT(*) FROM webhook_forwards f WHERE f.subscription_id = s.id AND f.state = 'pending') AS pending,
                            (SELECT COUNT(*) FROM webhook_forwards f WHERE f.subscription_id = s.id AND f.state = 'dead') AS dead
                       FROM webhook_subscriptions s WHERE s.active = 1 ORDER BY s.id",
                )
                .fetch_all(&self.read)
                .await?;
                rows.iter()
                    .map(|row| {
                        let events: String = row.try_get("events")?;
                        let numbers: Option<String> = row.try_get("phone_number_ids")?;
                        Ok(Subscription {
                            id: row.try_get("id")?,
                            url: row.try_get("url")?,
                            secret: row.try_get("secret")?,
                            events: split(&events),
                            phone_number_ids: numbers.as_deref().map(split),
                            created_at: Instant::from_unix_seconds(row.try_get("created_at")?),
                            pending: row.try_get("pending")?,
                            dead: row.try_get("dead")?,
                        })
                    })
                    .collect()
            }

            async fn delete_subscription(&self, id: i64) -> Result<bool, StoreError> {
                let mut tx = self.pool.begin().await?;
                sqlx::query("DELETE FROM webhook_forwards WHERE subscription_id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                let gone = sqlx::query("DELETE FROM webhook_subscriptions WHERE id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                tx.commit().await?;
                Ok(gone == 1)
            }

            async fn claim_forwards(
                &self,
                now: Instant,
                lease_seconds: i64,
                limit: u32,
            ) -> Result<Vec<ForwardRow>, StoreError> {
                let rows = sqlx::query(&claim_sql($postgres))
                    .bind(now.unix_seconds())
                    .bind(lease_seconds)
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await?;
                Ok(rows.iter().map(forward_from_row).collect::<Result<_, _>>()?)
            }

            async fn finish_forward(
                &self,
                id: i64,
                attempt: i64,
                outcome: &ForwardOutcome,
            ) -> Result<bool, StoreError> {
                let query = match outcome {
                    // Delivered rows are not kept: the raw delivery is.
                    ForwardOutcome::Delivered => {
                        sqlx::query("DELETE FROM webhook_forwards WHERE id = $1 AND attempts = $2")
                            .bind(id)
                            .bind(attempt)
                    }
                    ForwardOutcome::Retry { next_attempt_at, error } => sqlx::query(
                        "UPDATE webhook_forwards SET next_attempt_at = $3, last_error = $4, lease_until = NULL
                         WHERE id = $1 AND attempts = $2 AND state = 'pending'",
                    )
                    .bind(id)
                    .bind(attempt)
                    .bind(next_attempt_at.unix_seconds())
                    .bind(error),
                    ForwardOutcome::Dead { error } => sqlx::query(
                        "UPDATE webhook_forwards SET state = 'dead', last_error = $3, lease_until = NULL
                         WHERE id = $1 AND attempts = $2 AND state = 'pending'",
                    )
                    .bind(id)
                    .bind(attempt)
                    .bind(error),
                };
                Ok(query.execute(&self.pool).await?.rows_affected() == 1)
            }

            async fn dead_letters(
                &self,
                subscription_id: i64,
                limit: u32,
            ) -> Result<Vec<ForwardRow>, StoreError> {
                let rows = sqlx::query(
                    "SELECT id, subscription_id, thread_key, kind, body, attempts, created_at, last_error
                       FROM webhook_forwards WHERE subscription_id = $1 AND state = 'dead'
                      ORDER BY id LIMIT $2",
                )
                .bind(subscription_id)
                .bind(i64::from(limit))
                .fetch_all(&self.read)
                .await?;
                Ok(rows.iter().map(forward_from_row).collect::<Result<_, _>>()?)
            }

            async fn replay_dead_letters(
                &self,
                subscription_id: i64,
                now: Instant,
            ) -> Result<u64, StoreError> {
                Ok(sqlx::query(
                    "UPDATE webhook_forwards SET state = 'pending', attempts = 0, next_attempt_at = $2,
                                                 created_at = $2, last_error = NULL, lease_until = NULL
                      WHERE subscription_id = $1 AND state = 'dead'",
                )
                .bind(subscription_id)
                .bind(now.unix_seconds())
                .execute(&self.pool)
                .await?
                .rows_affected())
            }

            async fn enqueue_forwards(
                &self,
                subscription_id: i64,
                items: &[(String, ForwardItem)],
                now: Instant,
            ) -> Result<u64, StoreError> {
                let mut tx = self.pool.begin().await?;
                let mut added = 0;
                for (phone_number_id, item) in items {
                    added += sqlx::query(ENQUEUE_FORWARDS_TO_ONE)
                        .bind(&item.thread_key)
                        .bind(item.kind)
                        .bind(&item.body)
                        .bind(now.unix_seconds())
                        .bind(phone_number_id)
                        .bind(subscription_id)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                }
                tx.commit().await?;
                Ok(added)
            }

            async fn clock(&self, name: &str) -> Result<Option<Instant>, StoreError> {
                let at: Option<i64> = sqlx::query_scalar("SELECT at FROM clock_cursors WHERE name = $1")
                    .bind(name)
                    .fetch_optional(&self.pool)
                    .await?;
                Ok(at.map(Instant::from_unix_seconds))
            }

            async fn threads_by_window_anchor(
                &self,
                after: Instant,
                until: Instant,
                settings: hourglass_core::RuleSettings,
            ) -> Result<Vec<WindowThread>, StoreError> {
                // The anchoring messages of the span, number by number (business numbers
                // are few), so that each number's are one range of its partial index;
                // of their threads, those whose anchor is in the span.
                let anchor = crate::anchor::anchor_sql("t", settings);
                let messages = crate::anchor::anchoring_messages_sql(
                    "business_numbers b CROSS JOIN messages m",
                    "m.phone_number_id = b.phone_number_id AND m.timestamp > $1 AND m.timestamp <= $2",
                    settings,
                );
                let rows = sqlx::query(&format!(
                    "SELECT t.phone_number_id, t.wa_id, t.user_id, {anchor} AS anchor_at FROM threads t
                      WHERE t.id IN ({messages})
                        AND {anchor} > $1 AND {anchor} <= $2
                      ORDER BY anchor_at, t.id"
                ))
                .bind(after.unix_seconds())
                .bind(until.unix_seconds())
                .fetch_all(&self.read)
                .await?;
                rows.iter()
                    .map(|row| {
                        Ok(WindowThread {
                            phone_number_id: row.try_get("phone_number_id")?,
                            wa_id: row.try_get("wa_id")?,
                            user_id: row.try_get("user_id")?,
                            anchor_at: Instant::from_unix_seconds(row.try_get("anchor_at")?),
                        })
                    })
                    .collect()
            }

            async fn advance_clock(
                &self,
                name: &str,
                from: Option<Instant>,
                to: Instant,
                items: &[(String, ForwardItem)],
                notices: &[(i64, FepNotice)],
            ) -> Result<bool, StoreError> {
                let mut tx = self.pool.begin().await?;
                let moved = match from {
                    None => sqlx::query(
                        "INSERT INTO clock_cursors (name, at) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
                    )
                    .bind(name)
                    .bind(to.unix_seconds()),
                    Some(from) => sqlx::query(
                        "UPDATE clock_cursors SET at = $2 WHERE name = $1 AND at = $3",
                    )
                    .bind(name)
                    .bind(to.unix_seconds())
                    .bind(from.unix_seconds()),
                }
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if moved != 1 {
                    // Another process emitted this span first.
                    tx.rollback().await?;
                    return Ok(false);
                }
                for (phone_number_id, item) in items {
                    sqlx::query(ENQUEUE_FORWARDS)
                        .bind(&item.thread_key)
                        .bind(item.kind)
                        .bind(&item.body)
                        .bind(to.unix_seconds())
                        .bind(phone_number_id)
                        .execute(&mut *tx)
                        .await?;
                }
                for (thread_id, notice) in notices {
                    let reported = notice.reported;
                    sqlx::query(UPSERT_FEP_NOTICE)
                        .bind(thread_id)
                        .bind(notice.phase.as_str())
                        .bind(notice.signal_at.map(Instant::unix_seconds))
                        .bind(reported.map(|r| r.opened_at.unix_seconds()))
                        .bind(reported.map(|r| r.closes_at.unix_seconds()))
                        .bind(reported.is_some_and(|r| r.closed))
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                Ok(true)
            }

            async fn fep_candidates(
                &self,
                signal_after: Instant,
                at: Instant,
            ) -> Result<Vec<FepCandidate>, StoreError> {
                let rows = sqlx::query(FEP_CANDIDATES)
                    .bind(signal_after.unix_seconds())
                    .bind(at.unix_seconds())
                    .fetch_all(&self.read)
                    .await?;
                let instant = |value: Option<i64>| value.map(Instant::from_unix_seconds);
                rows.iter()
                    .map(|row| {
                        let phase: Option<String> = row.try_get("phase")?;
                        let notice = phase.map(|phase| -> Result<FepNotice, StoreError> {
                            let opened_at = instant(row.try_get("opened_at")?);
                            let closes_at = instant(row.try_get("closes_at")?);
                            Ok(FepNotice {
                                phase: FepPhase::from_name(&phase).ok_or_else(|| {
                                    StoreError::Corrupt(format!("fep_notices.phase {phase:?}"))
                                })?,
                                signal_at: instant(row.try_get("signal_at")?),
                                reported: opened_at.zip(closes_at).map(|(opened_at, closes_at)| ReportedFep {
                                    opened_at,
                                    closes_at,
                                    closed: row.try_get("closed").unwrap_or(false),
                                }),
                            })
                        });
                        Ok(FepCandidate {
                            thread_id: row.try_get("id")?,
                            phone_number_id: row.try_get("phone_number_id")?,
                            wa_id: row.try_get("wa_id")?,
                            user_id: row.try_get("user_id")?,
                            last_fep_signal_at: instant(row.try_get("last_fep_signal_at")?),
                            notice: notice.transpose()?,
                        })
                    })
                    .collect()
            }

            async fn raw_deliveries(
                &self,
                from: Instant,
                until: Instant,
                after: Option<i64>,
                limit: u32,
            ) -> Result<Vec<RawDelivery>, StoreError> {
                let after = match after {
                    Some(seq) => seq,
                    None => {
                        let start: Option<i64> = sqlx::query_scalar(&raw_deliveries_start_sql($postgres))
                            .bind(from.unix_seconds())
                            .fetch_one(&self.read)
                            .await?;
                        match start {
                            Some(start) => start,
                            None => return Ok(Vec::new()),
                        }
                    }
                };
                let rows = sqlx::query(&raw_deliveries_page_sql($postgres))
                    .bind(from.unix_seconds())
                    .bind(until.unix_seconds())
                    .bind(after)
                    .bind(i64::from(limit))
                    .fetch_all(&self.read)
                    .await?;
                rows.iter()
                    .map(|row| {
                        Ok(RawDelivery {
                            seq: row.try_get("seq")?,
                            sha256: row.try_get("sha256")?,
                            received_at: Instant::from_unix_seconds(row.try_get("received_at")?),
                            body: row.try_get("body")?,
                        })
                    })
                    .collect()
            }
        }
    };
}

pub(crate) use define_forwarding;
