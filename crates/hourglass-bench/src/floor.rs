//! The durable floor: the least any webhook gateway that keeps Meta's raw bodies must do
//! after verifying and parsing, which is to append each body durably before answering 200.
//!
//! It stores one row per body (its SHA-256, when it came, the bytes) in a table with one
//! unique index, committing whatever requests are waiting together (group commit), and
//! answers each request after the commit is on disk. No threads, messages, statuses or
//! window state. Hourglass does all of that besides, so its throughput cannot pass this
//! one's; the ratio of this floor to the verify-and-parse ceiling is how close to the
//! ceiling a durable gateway can come on this machine and database.

use std::sync::Arc;

use axum::body::Bytes;
use axum::http::StatusCode;
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot, Mutex};

/// Requests committed together at most (as `hourglass serve`'s batches).
const MAX_BATCH: usize = 512;

struct Pending {
    sha256: String,
    received_at: i64,
    body: Bytes,
    done: oneshot::Sender<bool>,
}

#[derive(Clone)]
pub struct Floor {
    queue: mpsc::Sender<Pending>,
}

impl Floor {
    pub async fn start(url: &str) -> anyhow::Result<Floor> {
        let (queue, receiver) = mpsc::channel(MAX_BATCH * 4);
        if let Some(path) = url.strip_prefix("sqlite://") {
            start_sqlite(path, receiver)?;
        } else {
            start_postgres(url, receiver).await?;
        }
        Ok(Floor { queue })
    }

    /// Appends the body; 200 once it is durable, 503 if it could not be stored.
    pub async fn store(&self, body: Bytes) -> StatusCode {
        let (done, stored) = oneshot::channel();
        let pending = Pending {
            sha256: format!("{:x}", Sha256::digest(&body)),
            received_at: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64),
            body,
            done,
        };
        if self.queue.send(pending).await.is_err() {
            return StatusCode::SERVICE_UNAVAILABLE;
        }
        match stored.await {
            Ok(true) => StatusCode::OK,
            _ => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// How many bodies the floor's database holds (the bench checks that every acknowledged
/// webhook is there).
pub async fn stored(url: &str) -> anyhow::Result<i64> {
    use sqlx::Connection;
    Ok(match url.strip_prefix("sqlite://") {
        Some(path) => rusqlite::Connection::open(path)?.query_row(
            "SELECT count(*) FROM deliveries",
            [],
            |row| row.get(0),
        )?,
        None => {
            sqlx::query_scalar("SELECT count(*) FROM deliveries")
                .fetch_one(&mut sqlx::PgConnection::connect(url).await?)
                .await?
        }
    })
}

/// SQLite: a writer thread commits each batch in WAL mode without waiting for the disk
/// (`synchronous = NORMAL`) and hands it to a syncer thread, which `fdatasync`s the WAL
/// once for every commit written since its last and only then answers: the same
/// pipeline as Hourglass's writer. Checkpoints are off, so the floor never pays for one.
fn start_sqlite(path: &str, mut receiver: mpsc::Receiver<Pending>) -> anyhow::Result<()> {
    let conn = rusqlite::Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "wal_autocheckpoint", 0)?;
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS deliveries (
             sha256 TEXT PRIMARY KEY, received_at INTEGER NOT NULL, body BLOB NOT NULL)",
    )?;
    let wal = std::fs::OpenOptions::new()
        .write(true)
        .open(format!("{path}-wal"))?;
    let (to_syncer, synced) = std::sync::mpsc::channel::<Vec<oneshot::Sender<bool>>>();
    std::thread::spawn(move || {
        while let Ok(mut waiting) = synced.recv() {
            while let Ok(more) = synced.try_recv() {
                waiting.extend(more);
            }
            let ok = wal.sync_data().is_ok();
            for done in waiting {
                let _ = done.send(ok);
            }
        }
    });
    std::thread::spawn(move || {
        while let Some(first) = receiver.blocking_recv() {
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match receiver.try_recv() {
                    Ok(next) => batch.push(next),
                    Err(_) => break,
                }
            }
            let written = (|| -> rusqlite::Result<()> {
                let tx = conn.unchecked_transaction()?;
                {
                    let mut insert = tx.prepare_cached(
                        "INSERT INTO deliveries (sha256, received_at, body) VALUES (?1, ?2, ?3)
                         ON CONFLICT (sha256) DO NOTHING",
                    )?;
                    for p in &batch {
                        insert.execute(rusqlite::params![p.sha256, p.received_at, &p.body[..]])?;
                    }
                }
                tx.commit()
            })();
            let waiting = batch.into_iter().map(|p| p.done);
            if written.is_ok() {
                let _ = to_syncer.send(waiting.collect());
            } else {
                waiting.for_each(|done| {
                    let _ = done.send(false);
                });
            }
        }
    });
    Ok(())
}

/// PostgreSQL: two writer tasks (as `hourglass serve`'s default), each with its own
/// connection, take whatever is waiting and store it with one statement, which
/// PostgreSQL commits (and flushes) by itself.
async fn start_postgres(url: &str, receiver: mpsc::Receiver<Pending>) -> anyhow::Result<()> {
    use sqlx::Connection;
    let mut setup = sqlx::PgConnection::connect(url).await?;
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS deliveries (
             sha256 TEXT PRIMARY KEY, received_at BIGINT NOT NULL, body BYTEA NOT NULL)",
    )
    .execute(&mut setup)
    .await?;
    let receiver = Arc::new(Mutex::new(receiver));
    for _ in 0..2 {
        let mut conn = sqlx::PgConnection::connect(url).await?;
        let receiver = receiver.clone();
        tokio::spawn(async move {
            loop {
                let mut batch = Vec::new();
                {
                    let mut receiver = receiver.lock().await;
                    let Some(first) = receiver.recv().await else {
                        return;
                    };
                    batch.push(first);
                    while batch.len() < MAX_BATCH {
                        match receiver.try_recv() {
                            Ok(next) => batch.push(next),
                            Err(_) => break,
                        }
                    }
                }
                let shas: Vec<&str> = batch.iter().map(|p| p.sha256.as_str()).collect();
                let times: Vec<i64> = batch.iter().map(|p| p.received_at).collect();
                let bodies: Vec<&[u8]> = batch.iter().map(|p| &p.body[..]).collect();
                let ok = sqlx::query(
                    "INSERT INTO deliveries (sha256, received_at, body)
                     SELECT * FROM unnest($1::text[], $2::bigint[], $3::bytea[])
                     ON CONFLICT (sha256) DO NOTHING",
                )
                .bind(&shas)
                .bind(&times)
                .bind(&bodies)
                .execute(&mut conn)
                .await
                .is_ok();
                drop((shas, bodies));
                for p in batch {
                    let _ = p.done.send(ok);
                }
            }
        });
    }
    Ok(())
}
