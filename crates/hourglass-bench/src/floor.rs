//! The durable floor: a server that, after verifying and parsing like the ceiling, only
//! appends each raw body durably before answering 200, with Hourglass's own commit
//! choices.
//!
//! It stores one row per body (its SHA-256, when it came, the bytes) in a table with one
//! unique index, committing whatever requests are waiting together (group commit), and
//! answers each request once the commit is on disk. No threads, messages, statuses or
//! window state: Hourglass keeps the same raw body and does all of that besides. So the
//! floor's ratio to the verify-and-parse ceiling estimates how close a gateway that keeps
//! and deduplicates Meta's raw bodies gets to the ceiling with this machine, database and
//! commit pipeline, and Hourglass's share of the floor's events/s is what tuning Hourglass
//! can still raise. It is an estimate, not a proof: another storage design could append
//! faster than this one.

use axum::body::Bytes;
use axum::http::StatusCode;
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot};

/// Requests committed together at most (as `hourglass serve`'s batches).
const MAX_BATCH: usize = 512;

/// What became of a body handed to the floor's writer.
#[derive(Clone, Copy)]
enum Stored {
    /// Its commit is on disk.
    Durable,
    /// The commit or the sync failed: the request is answered 503 (and retried).
    Failed,
}

/// A body waiting for its commit.
struct Pending {
    /// Hex SHA-256 of the body: the key that deduplicates Meta's retries.
    sha256: String,
    /// Unix seconds when it came.
    received_at: i64,
    body: Bytes,
    done: oneshot::Sender<Stored>,
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
            Ok(Stored::Durable) => StatusCode::OK,
            Ok(Stored::Failed) | Err(_) => StatusCode::SERVICE_UNAVAILABLE,
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

/// Takes the first waiting body (waiting for one if none is), then whatever else is
/// already waiting, up to `MAX_BATCH`.
fn take_batch(first: Pending, receiver: &mut mpsc::Receiver<Pending>) -> Vec<Pending> {
    let mut batch = vec![first];
    while batch.len() < MAX_BATCH {
        match receiver.try_recv() {
            Ok(next) => batch.push(next),
            Err(_) => break,
        }
    }
    batch
}

fn answer(batch: impl IntoIterator<Item = oneshot::Sender<Stored>>, stored: Stored) {
    for done in batch {
        let _ = done.send(stored);
    }
}

/// SQLite, as Hourglass's writer: a writer thread commits each batch in WAL mode without
/// waiting for the disk (`synchronous = NORMAL`, a 4 MiB page cache) and hands it to a
/// syncer thread, which `fdatasync`s the WAL once for every commit written since its last
/// (and the directory once, for the new files' names) and only then answers. Checkpoints
/// are off, so the floor never pays for one (Hourglass copies the WAL on a third thread).
fn start_sqlite(path: &str, mut receiver: mpsc::Receiver<Pending>) -> anyhow::Result<()> {
    let conn = rusqlite::Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "wal_autocheckpoint", 0)?;
    conn.pragma_update(None, "cache_size", -4096)?;
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS deliveries (
             sha256 TEXT PRIMARY KEY, received_at INTEGER NOT NULL, body BLOB NOT NULL)",
    )?;
    // With checkpoints off the WAL is never restarted or removed while this connection is
    // open, so one handle to it serves every sync.
    let wal = std::fs::File::open(format!("{path}-wal"))?;
    let directory = std::path::Path::new(path)
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    std::fs::File::open(directory)?.sync_all()?;
    let (to_syncer, synced) = std::sync::mpsc::channel::<Vec<oneshot::Sender<Stored>>>();
    std::thread::spawn(move || {
        while let Ok(mut waiting) = synced.recv() {
            while let Ok(more) = synced.try_recv() {
                waiting.extend(more);
            }
            let stored = match wal.sync_data() {
                Ok(()) => Stored::Durable,
                Err(_) => Stored::Failed,
            };
            answer(waiting, stored);
        }
    });
    std::thread::spawn(move || {
        while let Some(first) = receiver.blocking_recv() {
            let batch = take_batch(first, &mut receiver);
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
            match written {
                Ok(()) => {
                    let _ = to_syncer.send(waiting.collect());
                }
                Err(_) => answer(waiting, Stored::Failed),
            }
        }
    });
    Ok(())
}

/// PostgreSQL, as Hourglass's default (`ingest_writers = 1`): one writer task with its own
/// connection takes whatever is waiting and stores it with one statement, which
/// PostgreSQL commits (and flushes) by itself. Stored bodies are skipped with `NOT EXISTS`,
/// as Hourglass's batch does (`ON CONFLICT` writes a confirmation record per row).
async fn start_postgres(url: &str, mut receiver: mpsc::Receiver<Pending>) -> anyhow::Result<()> {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(url).await?;
    // As Hourglass's ingest connections: a table that starts empty has statistics that
    // make a sequential scan look cheapest for the `NOT EXISTS` probe, and it stays the
    // plan while the table grows.
    sqlx::query("SET enable_seqscan = off")
        .execute(&mut conn)
        .await?;
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS deliveries (
             sha256 TEXT PRIMARY KEY, received_at BIGINT NOT NULL, body BYTEA NOT NULL)",
    )
    .execute(&mut conn)
    .await?;
    tokio::spawn(async move {
        while let Some(first) = receiver.recv().await {
            let batch = take_batch(first, &mut receiver);
            // Each body once: `NOT EXISTS` does not see the statement's own rows.
            let mut seen = std::collections::HashSet::new();
            let unique: Vec<&Pending> = batch
                .iter()
                .filter(|p| seen.insert(p.sha256.as_str()))
                .collect();
            let shas: Vec<&str> = unique.iter().map(|p| p.sha256.as_str()).collect();
            let times: Vec<i64> = unique.iter().map(|p| p.received_at).collect();
            let bodies: Vec<&[u8]> = unique.iter().map(|p| &p.body[..]).collect();
            let stored = match sqlx::query(
                "INSERT INTO deliveries (sha256, received_at, body)
                 SELECT d.* FROM unnest($1::text[], $2::int8[], $3::bytea[]) AS d(sha256, received_at, body)
                  WHERE NOT EXISTS (SELECT 1 FROM deliveries w WHERE w.sha256 = d.sha256)",
            )
            .bind(&shas)
            .bind(&times)
            .bind(&bodies)
            .execute(&mut conn)
            .await
            {
                Ok(_) => Stored::Durable,
                Err(_) => Stored::Failed,
            };
            answer(batch.into_iter().map(|p| p.done), stored);
        }
    });
    Ok(())
}
