//! The SQLite writer: one OS thread that owns the write connection and commits whatever
//! work is waiting (webhook batches, outbox claims and finishes, rate-limit tokens,
//! recorded sends) as one transaction: group commit across every kind of write.
//!
//! Why a thread of its own: sqlx runs SQLite on a worker thread of its own and pays a
//! cross-thread round trip for every statement. Under load, with two cores shared by the
//! HTTP workers, those round trips, not SQLite, limited ingestion. On a thread that owns
//! the connection a statement costs microseconds, so a job needs one hand-off in and one
//! out, however many statements it runs.
//!
//! Why one transaction for many jobs: with `synchronous=FULL` every commit is an fsync,
//! and SQLite has one writer at a time. Two writers (this thread and sqlx's connection)
//! took turns at the write lock, each paying its own fsync; the outbox paid about four
//! per message. Here each job runs inside a savepoint of the shared transaction, so a job
//! that fails rolls back alone, and every job's caller is answered only after the commit
//! (or told that it failed). Writes that are rare (templates, keys, subscriptions) still
//! go through sqlx's writer connection and simply wait for the lock.
//!
//! Why a checkpointer thread: copying the WAL into the database is work the writer would
//! otherwise do between commits (SQLite's autocheckpoint), holding every waiting request
//! for as long (a tenth of the writer's time, and the slowest commits). A second
//! connection copies beside it instead (see `CheckpointPolicy`). The writer only makes
//! the WAL start over, between two transactions, when the checkpointer has copied nearly
//! all of it and asks (see `restart_wal`).
//!
//! Why a syncer thread: waiting for the disk to take a commit (the WAL's `fdatasync`)
//! was about a third of the writer's time, during which the jobs that had arrived
//! waited too. The writer commits with `synchronous = NORMAL`, which writes the WAL but
//! does not wait for the disk, and hands the commit's jobs to the syncer thread; the
//! syncer calls `fdatasync` on the WAL (once for every commit written since its last)
//! and only then answers them, while the writer already runs the next transaction. So
//! nothing is acknowledged before it is on disk, as with `synchronous = FULL`. Readers
//! may see a commit a moment before it is durable; if the machine loses power in that
//! moment, the commit is lost, but none of its writers was told it succeeded (Meta
//! retries an unacknowledged webhook). (BENCHMARKS.md, session 8.)

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use hourglass_core::{opens_window, EntryPoint, Instant, StatusKind};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use tokio::sync::{mpsc, oneshot};

use crate::contact_threads::{ContactThreads, Learned};
use crate::model::*;
use crate::window_cache::{Touched, WindowCache};
use crate::StoreError;

/// Jobs committed together at most: bounds a transaction's size and the wait of the
/// first job in it.
const MAX_JOBS_PER_COMMIT: usize = 512;

/// What the writer thread keeps between jobs: which thread each known contact's
/// messages go to (see `contact_threads`), and what the jobs of the open transaction
/// taught it, learned only once that transaction commits.
#[derive(Default)]
pub(crate) struct WriterState {
    threads: ContactThreads,
    pending: Vec<Learned>,
    /// Threads the open transaction merged away. One of them may have been made or read
    /// earlier in the same transaction, so be in `pending`: it is not learned. (A job
    /// rolled back may leave an id here; that only costs a lookup.)
    merged_away: Vec<i64>,
}

impl WriterState {
    /// The open transaction committed: what it taught is true now.
    fn committed(&mut self) {
        let gone = std::mem::take(&mut self.merged_away);
        let learned = std::mem::take(&mut self.pending);
        self.threads
            .learn(learned.into_iter().filter(|l| !gone.contains(&l.thread_id)));
    }

    /// The open transaction was rolled back or failed: it taught nothing.
    fn rolled_back(&mut self) {
        self.pending.clear();
        self.merged_away.clear();
    }
}

/// A job with its result type erased, so jobs of every kind share one queue.
trait Job: Send {
    /// Runs the job's statements. Unless they all succeeded, what they changed must be
    /// rolled back (see [`Outcome`]).
    fn run(self: Box<Self>, conn: &Connection, state: &mut WriterState) -> Outcome;
    /// The transaction could not begin: the job never ran.
    fn abandon(self: Box<Self>, error: StoreError);
    /// Whether this is webhook deliveries to store, which the writer runs together (see
    /// [`IngestGroup`]).
    fn into_ingest(self: Box<Self>) -> Result<IngestJob, Box<dyn Job>>;
}

/// What running a job came to.
enum Outcome {
    /// Its statements ran; it waits for the commit.
    Ran(Box<dyn Ran>),
    /// They failed, and the job has told its caller.
    Failed,
    /// A group of jobs failed as a whole: each is to run again on its own, so that one
    /// bad job does not sink the others.
    Split(Vec<Box<dyn Job>>),
}

/// A job whose statements ran, waiting for the commit.
trait Ran: Send {
    fn committed(self: Box<Self>, cache: &WindowCache);
    fn lost(self: Box<Self>, error: StoreError);
    /// How many webhook deliveries it stored (for the group-commit counts).
    fn deliveries(&self) -> usize {
        0
    }
}

struct TypedJob<T, F> {
    work: F,
    reply: oneshot::Sender<Result<T, StoreError>>,
}

struct TypedRan<T> {
    value: T,
    touched: Touched,
    reply: oneshot::Sender<Result<T, StoreError>>,
}

impl<T, F> Job for TypedJob<T, F>
where
    T: Send + 'static,
    F: FnOnce(&Connection, &mut WriterState) -> Result<(T, Touched), StoreError> + Send + 'static,
{
    fn run(self: Box<Self>, conn: &Connection, state: &mut WriterState) -> Outcome {
        match (self.work)(conn, state) {
            Ok((value, touched)) => Outcome::Ran(Box::new(TypedRan {
                value,
                touched,
                reply: self.reply,
            })),
            Err(error) => {
                let _ = self.reply.send(Err(error));
                Outcome::Failed
            }
        }
    }

    fn abandon(self: Box<Self>, error: StoreError) {
        let _ = self.reply.send(Err(error));
    }

    fn into_ingest(self: Box<Self>) -> Result<IngestJob, Box<dyn Job>> {
        Err(self)
    }
}

impl<T: Send + 'static> Ran for TypedRan<T> {
    fn committed(self: Box<Self>, cache: &WindowCache) {
        cache.forget(&self.touched);
        let _ = self.reply.send(Ok(self.value));
    }

    fn lost(self: Box<Self>, error: StoreError) {
        let _ = self.reply.send(Err(error));
    }
}

/// Webhook deliveries to store, and whom to tell.
pub(crate) struct IngestJob {
    deliveries: Arc<Vec<WebhookDelivery>>,
    reply: oneshot::Sender<Result<IngestReport, StoreError>>,
}

impl Job for IngestJob {
    fn run(self: Box<Self>, conn: &Connection, state: &mut WriterState) -> Outcome {
        Box::new(IngestGroup(vec![*self])).run(conn, state)
    }

    fn abandon(self: Box<Self>, error: StoreError) {
        let _ = self.reply.send(Err(error));
    }

    fn into_ingest(self: Box<Self>) -> Result<IngestJob, Box<dyn Job>> {
        Ok(*self)
    }
}

/// Every ingest job of one commit, run as one job: each webhook request submits its own
/// delivery, and running them one savepoint each would make SQLite copy every page they
/// change into a sub-journal (a sixth of the writer's time when it was measured). They
/// run together instead; in the rare case that they fail, they run again one by one.
struct IngestGroup(Vec<IngestJob>);

impl Job for IngestGroup {
    fn run(self: Box<Self>, conn: &Connection, state: &mut WriterState) -> Outcome {
        let mut touched = Touched::default();
        let groups: Vec<&[WebhookDelivery]> =
            self.0.iter().map(|job| job.deliveries.as_slice()).collect();
        let deliveries = groups.iter().map(|g| g.len()).sum();
        let result = ingest_batch(conn, state, &groups, &mut touched);
        drop(groups);
        match result {
            Ok(reports) => Outcome::Ran(Box::new(IngestedGroup {
                replies: self
                    .0
                    .into_iter()
                    .map(|job| job.reply)
                    .zip(reports)
                    .collect(),
                deliveries,
                touched,
            })),
            Err(error) if self.0.len() > 1 => {
                tracing::warn!(%error, jobs = self.0.len(), "SQLite writer: webhook deliveries failed together; storing them one by one");
                Outcome::Split(
                    self.0
                        .into_iter()
                        .map(|job| Box::new(job) as Box<dyn Job>)
                        .collect(),
                )
            }
            Err(error) => {
                // The group's one job: nothing to split.
                if let Some(job) = self.0.into_iter().next() {
                    let _ = job.reply.send(Err(error.into()));
                }
                Outcome::Failed
            }
        }
    }

    fn abandon(self: Box<Self>, error: StoreError) {
        for job in self.0 {
            let _ = job.reply.send(Err(StoreError::Embedded(error.to_string())));
        }
    }

    fn into_ingest(self: Box<Self>) -> Result<IngestJob, Box<dyn Job>> {
        Err(self)
    }
}

struct IngestedGroup {
    replies: Vec<(
        oneshot::Sender<Result<IngestReport, StoreError>>,
        IngestReport,
    )>,
    deliveries: usize,
    touched: Touched,
}

impl Ran for IngestedGroup {
    fn committed(self: Box<Self>, cache: &WindowCache) {
        cache.forget(&self.touched);
        for (reply, report) in self.replies {
            let _ = reply.send(Ok(report));
        }
    }

    fn lost(self: Box<Self>, error: StoreError) {
        for (reply, _) in self.replies {
            let _ = reply.send(Err(StoreError::Embedded(error.to_string())));
        }
    }

    fn deliveries(&self) -> usize {
        self.deliveries
    }
}

/// How many commits stored webhook deliveries, and how many deliveries they carried.
#[derive(Debug, Default)]
pub struct GroupCommitCounts {
    commits: std::sync::atomic::AtomicU64,
    deliveries: std::sync::atomic::AtomicU64,
}

impl GroupCommitCounts {
    fn add(&self, deliveries: usize) {
        use std::sync::atomic::Ordering::Relaxed;
        self.commits.fetch_add(1, Relaxed);
        self.deliveries.fetch_add(deliveries as u64, Relaxed);
    }

    /// (commits, deliveries).
    pub fn read(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (self.commits.load(Relaxed), self.deliveries.load(Relaxed))
    }
}

/// A handle to the writer thread. Dropping every handle stops the thread.
#[derive(Clone)]
pub struct SqliteWriter {
    jobs: mpsc::Sender<Box<dyn Job>>,
    counts: Arc<GroupCommitCounts>,
}

impl SqliteWriter {
    /// Opens the writer's own connection to an already-migrated database.
    pub fn start(path: &str, cache: Arc<WindowCache>) -> Result<Self, StoreError> {
        Self::start_with(path, cache, CheckpointPolicy::default(), wal_syncer(path))
    }

    fn start_with(
        path: &str,
        cache: Arc<WindowCache>,
        checkpoint_policy: CheckpointPolicy,
        sync_wal: impl FnMut() -> std::io::Result<()> + Send + 'static,
    ) -> Result<Self, StoreError> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(WRITER_BUSY_WAIT)?;
        // A 4 MiB page cache. At the end of a transaction in which a b-tree balance
        // swapped two pages, SQLite walks the whole of the cache's hash table
        // (`pcache1TruncateUnsafe`: the swap parks a page at the pending-byte page number,
        // far above the database's size), and under random index inserts nearly every
        // commit swaps: with 64 MiB the walk took a fifth of the writer's time, with 16 MiB
        // a tenth. Pages the cache no longer holds come from the OS's cache. (BENCHMARKS.md,
        // sessions 4 and 10.)
        // No checkpoint on this connection: the checkpointer thread copies the WAL into
        // the database beside it, so that the writer never stops committing to do it.
        // `synchronous = NORMAL`: a commit writes the WAL without waiting for the disk;
        // the syncer thread then makes it durable before anyone is answered (see the
        // module's documentation).
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = NORMAL;
             PRAGMA foreign_keys = ON;
             PRAGMA cache_size = -4096;
             PRAGMA wal_autocheckpoint = 0;",
        )?;
        let checkpoints = Connection::open(path)?;
        // A restart waits this long at most for the writer's transaction and for readers
        // of older snapshots (each takes milliseconds), and holds new transactions back
        // while it waits: if it cannot get in, it tries again a second later.
        checkpoints.busy_timeout(Duration::from_millis(200))?;
        checkpoints.execute_batch("PRAGMA synchronous = FULL;")?;
        let (nudge, nudged) = std::sync::mpsc::sync_channel::<()>(1);
        let restart = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let asks_restart = restart.clone();
        std::thread::Builder::new()
            .name("sqlite-checkpointer".into())
            .spawn(move || checkpoint_loop(checkpoints, nudged, &asks_restart, checkpoint_policy))
            .map_err(|e| {
                StoreError::Corrupt(format!(
                    "could not start the SQLite checkpointer thread: {e}"
                ))
            })?;
        let (jobs, receiver) = mpsc::channel::<Box<dyn Job>>(4 * MAX_JOBS_PER_COMMIT);
        let (synced, commits) = std::sync::mpsc::channel::<Vec<Box<dyn Ran>>>();
        std::thread::Builder::new()
            .name("sqlite-syncer".into())
            .spawn(move || sync_loop(commits, sync_wal, &cache))
            .map_err(|e| {
                StoreError::Corrupt(format!("could not start the SQLite syncer thread: {e}"))
            })?;
        let counts = Arc::new(GroupCommitCounts::default());
        let counted = counts.clone();
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || {
                let checkpointer = Checkpointer { nudge, restart };
                commit_loop(conn, receiver, synced, checkpointer, &counted)
            })
            .map_err(|e| {
                StoreError::Corrupt(format!("could not start the SQLite writer thread: {e}"))
            })?;
        Ok(SqliteWriter { jobs, counts })
    }

    /// How many commits stored webhook deliveries, and how many they carried.
    pub fn group_commit_counts(&self) -> (u64, u64) {
        self.counts.read()
    }

    /// Runs `work` on the writer thread inside the next commit; answers once it is
    /// durable. `work` returns what it changed, for the window cache.
    pub(crate) async fn write_touching<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<(T, Touched), StoreError> + Send + 'static,
    {
        self.write_with_state(move |conn, _| work(conn)).await
    }

    /// [`Self::write_touching`] for work that also reads or teaches the writer's state.
    async fn write_with_state<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection, &mut WriterState) -> Result<(T, Touched), StoreError>
            + Send
            + 'static,
    {
        self.submit(|reply| Box::new(TypedJob { work, reply }))
            .await
    }

    /// Queues the job `job` makes with the sender of its answer, and waits for the answer.
    async fn submit<T>(
        &self,
        job: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Box<dyn Job>,
    ) -> Result<T, StoreError> {
        let (reply, receipt) = oneshot::channel();
        let stopped = || StoreError::Corrupt("the SQLite writer thread has stopped".into());
        self.jobs.send(job(reply)).await.map_err(|_| stopped())?;
        receipt.await.map_err(|_| stopped())?
    }

    /// [`Self::write_touching`] for work that changes no thread's window.
    pub(crate) async fn write<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.write_touching(move |conn| Ok((work(conn)?, Touched::default())))
            .await
    }

    /// Stores webhook deliveries in the next commit, together with every other request's
    /// deliveries waiting for it: callers need not batch them.
    pub async fn ingest(
        &self,
        deliveries: Arc<Vec<WebhookDelivery>>,
    ) -> Result<IngestReport, StoreError> {
        self.submit(|reply| Box::new(IngestJob { deliveries, reply }))
            .await
    }

    /// Records a business message Meta accepted (see [`crate::Store::record_outbound`]).
    pub async fn record_outbound(&self, message: &OutboundMessage) -> Result<(), StoreError> {
        let message = message.clone();
        self.write_with_state(move |conn, state| {
            let (thread_id, merged) =
                thread_for(conn, state, &message.phone_number_id, &message.contact)?;
            conn.prepare_cached(
                "INSERT INTO messages (wamid, thread_id, phone_number_id, direction, type, timestamp, category,
                                       template_name, template_language, sent_via_hourglass, body)
                 VALUES (?1, ?2, ?3, 'outbound', ?4, ?5, ?6, ?7, ?8, 1, ?9)
                 ON CONFLICT (wamid) DO UPDATE SET
                   type = excluded.type,
                   timestamp = MIN(messages.timestamp, excluded.timestamp),
                   category = COALESCE(excluded.category, messages.category),
                   template_name = excluded.template_name,
                   template_language = excluded.template_language,
                   sent_via_hourglass = 1,
                   body = excluded.body",
            )?
            .execute(params![
                message.message_id,
                thread_id,
                message.phone_number_id,
                message.message_type,
                message.sent_at.unix_seconds(),
                message.category.map(|c| c.as_str()),
                message.template_name,
                message.template_language,
                message.body
            ])?;
            let mut touched = Touched::default();
            touched.threads.insert(thread_id);
            touched.threads.extend(merged);
            touched.numbers.insert(message.phone_number_id.clone());
            Ok(((), touched))
        })
        .await
    }
}

/// The writer thread: takes every job waiting (up to [`MAX_JOBS_PER_COMMIT`]), runs each
/// in a savepoint of one transaction (webhook deliveries all in one, see
/// [`IngestGroup`]), commits, then answers them all.
fn commit_loop(
    mut conn: Connection,
    mut receiver: mpsc::Receiver<Box<dyn Job>>,
    synced: std::sync::mpsc::Sender<Vec<Box<dyn Ran>>>,
    checkpointer: Checkpointer,
    counts: &GroupCommitCounts,
) {
    let mut last_commit = std::time::Instant::now();
    let mut last_jobs = 0;
    let mut state = WriterState::default();
    // The jobs of a group that failed as a whole, to run again each on its own.
    let mut again: Vec<Box<dyn Job>> = Vec::new();
    loop {
        let jobs = if again.is_empty() {
            let Some(first) = receiver.blocking_recv() else {
                break;
            };
            let mut jobs = vec![first];
            drain(&mut receiver, &mut jobs);
            // Under load from several producers (the last commit just ended and carried
            // more than one job), more jobs are on their way: a short wait lets one commit
            // carry them, instead of one commit (and fsync) per handful. An idle writer,
            // or one fed by a single producer that waits for each commit, commits at once.
            if jobs.len() < MAX_JOBS_PER_COMMIT
                && last_jobs > 1
                && last_commit.elapsed() < BUSY_WITHIN
            {
                std::thread::sleep(GATHER_FOR);
                drain(&mut receiver, &mut jobs);
            }
            last_jobs = jobs.len();
            group_ingests(jobs)
        } else {
            std::mem::take(&mut again)
        };
        let tx = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
            Ok(tx) => tx,
            Err(error) => {
                let message = error.to_string();
                for job in jobs {
                    job.abandon(StoreError::Embedded(message.clone()));
                }
                continue;
            }
        };
        // A lone job needs no savepoint: if it fails, nothing ran and the whole
        // transaction is rolled back (below). A savepoint is not free: SQLite copies every
        // page the job changes into a sub-journal so that the savepoint could be undone
        // (a sixth of the writer's time when webhook batches committed alone).
        let in_savepoints = jobs.len() > 1;
        let mut queue = std::collections::VecDeque::from(jobs);
        let mut ran = Vec::with_capacity(queue.len());
        while let Some(job) = queue.pop_front() {
            // What a job teaches the state is kept only if the job's work is.
            let mark = state.pending.len();
            if !in_savepoints {
                match job.run(&tx, &mut state) {
                    Outcome::Ran(done) => ran.push(done),
                    Outcome::Failed => state.pending.truncate(mark),
                    Outcome::Split(jobs) => {
                        // Alone in the transaction, which is rolled back below; its jobs
                        // run again in the next one.
                        state.pending.truncate(mark);
                        again = jobs;
                    }
                }
                continue;
            }
            if let Err(error) = savepoint(&tx, "SAVEPOINT job") {
                job.abandon(error.into());
                continue;
            }
            let split = match job.run(&tx, &mut state) {
                Outcome::Ran(done) => match savepoint(&tx, "RELEASE job") {
                    Ok(()) => {
                        ran.push(done);
                        continue;
                    }
                    Err(error) => {
                        state.pending.truncate(mark);
                        done.lost(error.into());
                        continue;
                    }
                },
                Outcome::Failed => Vec::new(),
                Outcome::Split(jobs) => jobs,
            };
            state.pending.truncate(mark);
            if let Err(error) =
                savepoint(&tx, "ROLLBACK TO job").and_then(|()| savepoint(&tx, "RELEASE job"))
            {
                // The transaction is in an unknown state: give it all up.
                tracing::error!(%error, "SQLite writer: a failed job could not be rolled back");
                let message = error.to_string();
                for done in ran.drain(..) {
                    done.lost(StoreError::Embedded(message.clone()));
                }
                for job in split.into_iter().chain(queue.drain(..)) {
                    job.abandon(StoreError::Embedded(message.clone()));
                }
                break;
            }
            // Each job of a group that failed runs next in a savepoint of its own.
            queue.extend(split);
        }
        if ran.is_empty() {
            // Nothing to keep (a lone job failed, or every job did).
            state.rolled_back();
            if let Err(error) = tx.rollback() {
                tracing::error!(%error, "SQLite writer: a failed transaction could not be rolled back");
            }
            last_commit = std::time::Instant::now();
            continue;
        }
        let result = tx.commit();
        last_commit = std::time::Instant::now();
        match result {
            Ok(()) => {
                // The WAL grew: the checkpointer may copy it (a nudge already waiting is
                // enough).
                let _ = checkpointer.nudge.try_send(());
                state.committed();
                let deliveries: usize = ran.iter().map(|done| done.deliveries()).sum();
                if deliveries > 0 {
                    counts.add(deliveries);
                }
                // Answered once the syncer has made the WAL durable.
                if let Err(unsent) = synced.send(ran) {
                    for done in unsent.0 {
                        done.lost(StoreError::Corrupt(
                            "the SQLite syncer thread has stopped".into(),
                        ));
                    }
                }
                // While the syncer works, between two transactions: the one moment the
                // WAL can start over under load.
                if checkpointer
                    .restart
                    .swap(false, std::sync::atomic::Ordering::Relaxed)
                {
                    restart_wal(&conn);
                }
            }
            Err(error) => {
                state.rolled_back();
                let message = error.to_string();
                for done in ran {
                    done.lost(StoreError::Embedded(message.clone()));
                }
            }
        }
    }
}

/// The syncer thread: makes the WAL durable (one `fdatasync` for every commit written
/// since the last), then answers the jobs of those commits.
fn sync_loop(
    commits: std::sync::mpsc::Receiver<Vec<Box<dyn Ran>>>,
    mut sync_wal: impl FnMut() -> std::io::Result<()>,
    cache: &WindowCache,
) {
    while let Ok(first) = commits.recv() {
        let mut waiting = first;
        while let Ok(more) = commits.try_recv() {
            waiting.extend(more);
        }
        match sync_wal() {
            Ok(()) => {
                for done in waiting {
                    done.committed(cache);
                }
            }
            Err(error) => {
                tracing::error!(%error, "SQLite syncer: the write-ahead log could not be made durable; its commits are reported as failed, so their webhooks are not acknowledged and Meta retries them");
                for done in waiting {
                    done.lost(StoreError::Embedded(format!(
                        "the write-ahead log could not be made durable: {error}"
                    )));
                }
            }
        }
    }
}

/// Makes a database's WAL durable: `fdatasync` on the `-wal` file, opened afresh each
/// time so that it is the file SQLite writes now (an `fsync` applies to the file, not to
/// the descriptor). The first time, the directory too, which holds the WAL's name.
fn wal_syncer(database: &str) -> impl FnMut() -> std::io::Result<()> + Send + 'static {
    let wal = format!("{database}-wal");
    let directory = std::path::Path::new(database)
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(std::path::Path::to_path_buf)
        .unwrap_or_else(|| ".".into());
    let mut directory_synced = false;
    move || {
        std::fs::File::open(&wal)?.sync_data()?;
        if !directory_synced {
            std::fs::File::open(&directory)?.sync_all()?;
            directory_synced = true;
        }
        Ok(())
    }
}

/// The jobs of one commit, with every ingest job folded into one [`IngestGroup`] where the
/// first of them stood.
fn group_ingests(jobs: Vec<Box<dyn Job>>) -> Vec<Box<dyn Job>> {
    let mut units: Vec<Box<dyn Job>> = Vec::with_capacity(jobs.len());
    let mut ingests = Vec::new();
    let mut group_at = None;
    for job in jobs {
        match job.into_ingest() {
            Ok(ingest) => {
                group_at.get_or_insert(units.len());
                ingests.push(ingest);
            }
            Err(other) => units.push(other),
        }
    }
    if let Some(at) = group_at {
        units.insert(at, Box::new(IngestGroup(ingests)));
    }
    units
}

/// When the checkpointer copies the WAL into the database.
#[derive(Clone, Copy, Debug)]
struct CheckpointPolicy {
    /// How often at most. Each copy writes a page once however many commits rewrote it
    /// since the last, so copies far apart write less; but the WAL can start over only
    /// after a copy, and a WAL that starts over often stays small and is rewritten in
    /// place, which costs the writer less than a WAL that grows (see [`restart_wal`]).
    /// At 100 ms, under load, it starts over a few times a second and stays under about
    /// 30 MB (BENCHMARKS.md, session 9: 1 s let it grow to 100–200 MB in a bench, and
    /// cost the writer more per delivery).
    every: Duration,
    /// WAL pages past which the WAL starts over.
    restart_at_pages: i64,
}

impl Default for CheckpointPolicy {
    fn default() -> Self {
        CheckpointPolicy {
            every: Duration::from_millis(100),
            restart_at_pages: 4_096,
        }
    }
}

/// The writer's side of the checkpointer: a nudge after each commit, and the checkpointer's
/// request that the WAL start over.
struct Checkpointer {
    nudge: std::sync::mpsc::SyncSender<()>,
    restart: Arc<std::sync::atomic::AtomicBool>,
}

/// `PRAGMA wal_checkpoint(mode)`: (busy, WAL pages, pages copied).
fn checkpoint(conn: &Connection, mode: &str) -> rusqlite::Result<(i64, i64, i64)> {
    conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
    })
}

/// How long the writer waits for the write lock when sqlx's writer connection holds it.
const WRITER_BUSY_WAIT: Duration = Duration::from_secs(10);

/// How long the writer waits, at most, for readers of an older snapshot before it gives a
/// WAL restart up (the next request tries again): it answers nobody while it waits.
const RESTART_WAIT: Duration = Duration::from_millis(10);

/// Makes the WAL start over from its beginning, from the writer's thread between two
/// transactions. The checkpointer has just copied nearly all of it, so this copies the
/// last few commits' pages.
///
/// Under load the WAL cannot start over otherwise: SQLite starts it over when a write
/// transaction begins with every frame copied, and the writer begins the next
/// transaction before the checkpointer's copy ends. A WAL that only grows costs the
/// writer at every commit (the file system allocates and zeroes each new block; rewriting
/// cached blocks of a WAL that started over costs neither) and holds disk space.
fn restart_wal(conn: &Connection) {
    let outcome = conn
        .busy_timeout(RESTART_WAIT)
        .and_then(|()| checkpoint(conn, "RESTART"));
    if let Err(error) = conn.busy_timeout(WRITER_BUSY_WAIT) {
        tracing::warn!(%error, "SQLite writer: could not set its busy timeout back");
    }
    match outcome {
        Ok((0, _, _)) => {}
        Ok(_) => tracing::debug!("SQLite writer: the WAL did not start over (readers of an older snapshot); the checkpointer asks again"),
        Err(error) => tracing::warn!(%error, "SQLite writer: could not start the WAL over"),
    }
}

/// The checkpointer thread: after commits (a nudge from the writer), at most once per
/// `policy.every`, copies the WAL into the database; stops with the writer. Past
/// `policy.restart_at_pages` it copies again what was written meanwhile, and asks the
/// writer to start the WAL over (see [`restart_wal`]).
fn checkpoint_loop(
    conn: Connection,
    nudged: std::sync::mpsc::Receiver<()>,
    restart: &std::sync::atomic::AtomicBool,
    policy: CheckpointPolicy,
) {
    while nudged.recv().is_ok() {
        let started = std::time::Instant::now();
        match checkpoint(&conn, "PASSIVE") {
            Ok((_, wal_pages, _)) if wal_pages >= policy.restart_at_pages => {
                match checkpoint(&conn, "PASSIVE") {
                    // Everything was copied: the writer's restart has only its newest
                    // commits to copy. Otherwise a reader holds an older snapshot, and a
                    // restart would only make the writer wait for it.
                    Ok((_, wal_pages, copied)) if copied == wal_pages => {
                        restart.store(true, std::sync::atomic::Ordering::Relaxed)
                    }
                    Ok(_) => {}
                    Err(error) => {
                        tracing::warn!(%error, "SQLite checkpointer: checkpoint failed")
                    }
                }
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "SQLite checkpointer: checkpoint failed"),
        }
        if let Some(rest) = policy.every.checked_sub(started.elapsed()) {
            std::thread::sleep(rest);
        }
    }
}

/// A commit that ended this recently means the writer is under load.
const BUSY_WITHIN: Duration = Duration::from_millis(2);
/// How long a writer under load waits for more jobs before it commits.
const GATHER_FOR: Duration = Duration::from_micros(300);

fn drain(receiver: &mut mpsc::Receiver<Box<dyn Job>>, jobs: &mut Vec<Box<dyn Job>>) {
    while jobs.len() < MAX_JOBS_PER_COMMIT {
        match receiver.try_recv() {
            Ok(job) => jobs.push(job),
            Err(_) => break,
        }
    }
}

/// Runs a savepoint statement, prepared once (rusqlite's `Savepoint` parses its SQL
/// every time, which the writer did several thousand times a second).
fn savepoint(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([])?;
    Ok(())
}

impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> Self {
        StoreError::Embedded(error.to_string())
    }
}

/// The thread of a contact: from the writer's memory when it can tell (one map lookup
/// instead of an index search), else [`resolve_thread`], whose answer it learns once the
/// transaction commits (returns the thread and the one merged into it, if any).
fn thread_for(
    conn: &Connection,
    state: &mut WriterState,
    phone_number_id: &str,
    contact: &ContactKey,
) -> rusqlite::Result<(i64, Option<i64>)> {
    if let Some(id) = state.threads.thread_of(phone_number_id, contact) {
        return Ok((id, None));
    }
    let Resolved { id, merged, keys } = resolve_thread(conn, phone_number_id, contact)?;
    if let Some(gone) = merged {
        state.threads.forget(phone_number_id, gone);
        state.merged_away.push(gone);
    }
    if let Some((wa_id, user_id)) = keys {
        state.pending.push(Learned {
            phone_number_id: phone_number_id.to_owned(),
            thread_id: id,
            wa_id,
            user_id,
        });
    }
    Ok((id, merged))
}

/// The thread of a contact, found by `wa_id` first, then `user_id`; created if absent;
/// taught the key it lacked. Returns the thread and, when the contact's two keys had two
/// threads that are now merged into it, the id of the one that is gone.
fn resolve_thread(
    conn: &Connection,
    phone_number_id: &str,
    contact: &ContactKey,
) -> rusqlite::Result<Resolved> {
    // Two point lookups, one per unique index. (One statement ranking the two with
    // `UNION ALL … ORDER BY … LIMIT 1` made SQLite build and drop a temporary b-tree for
    // every message.)
    let mut found = None;
    for (column, key) in [("wa_id", &contact.wa_id), ("user_id", &contact.user_id)] {
        let Some(key) = key else { continue };
        found = conn
            .prepare_cached(&format!(
                "SELECT id, wa_id, user_id FROM threads WHERE phone_number_id = ?1 AND {column} = ?2"
            ))?
            .query_row(params![phone_number_id, key], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, Option<String>>(1)?, r.get::<_, Option<String>>(2)?))
            })
            .optional()?;
        if found.is_some() {
            break;
        }
    }
    let Some((id, wa_id, user_id)) = found else {
        let id = conn
            .prepare_cached("INSERT INTO threads (phone_number_id, wa_id, user_id) VALUES (?1, ?2, ?3) RETURNING id")?
            .query_row(params![phone_number_id, contact.wa_id, contact.user_id], |r| r.get(0))?;
        return Ok(Resolved {
            id,
            merged: None,
            keys: Some((contact.wa_id.clone(), contact.user_id.clone())),
        });
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
    let mut learned_a_key = false;
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
            learned_a_key = true;
        }
    }
    Ok(Resolved {
        id,
        merged,
        // A thread that merged or may have learned a key is read again next time.
        keys: (merged.is_none() && !learned_a_key).then_some((wa_id, user_id)),
    })
}

/// A contact's thread as [`resolve_thread`] found or made it.
struct Resolved {
    id: i64,
    /// The thread merged into it, now gone.
    merged: Option<i64>,
    /// The keys it holds, when they are certain.
    keys: Option<(Option<String>, Option<String>)>,
}

/// Moves thread `?2` into thread `?1`: its messages and refusals, its summary (latest of
/// each), then deletes it with what the FEP clock noted about it.
const MERGE_THREADS_SQLITE: [&str; 5] = [
    "DELETE FROM fep_notices WHERE thread_id = ?2 AND thread_id <> ?1",
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
    tx: &Connection,
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

/// Stores groups of deliveries (inside the writer's transaction): the report of each.
fn ingest_batch(
    tx: &Connection,
    state: &mut WriterState,
    groups: &[&[WebhookDelivery]],
    touched: &mut Touched,
) -> rusqlite::Result<Vec<IngestReport>> {
    let mut reports = Vec::with_capacity(groups.len());
    let mut batch = BatchMemory {
        threads: HashMap::new(),
        numbers: Vec::new(),
        touched,
    };
    for deliveries in groups {
        let mut report = IngestReport::default();
        ingest_deliveries(tx, state, deliveries, &mut batch, &mut report)?;
        reports.push(report);
    }
    Ok(reports)
}

/// What a batch learned once, for every delivery in it: the thread of each (number,
/// contact), the business numbers already upserted, and the threads and numbers whose
/// cached windows its commit must drop.
struct BatchMemory<'d, 't> {
    threads: HashMap<(&'d str, &'d ContactKey), i64>,
    numbers: Vec<&'d str>,
    touched: &'t mut Touched,
}

fn ingest_deliveries<'d>(
    tx: &Connection,
    state: &mut WriterState,
    deliveries: &'d [WebhookDelivery],
    batch: &mut BatchMemory<'d, '_>,
    report: &mut IngestReport,
) -> rusqlite::Result<()> {
    let BatchMemory {
        threads,
        numbers,
        touched,
    } = batch;
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
                    crate::templates::apply_change_sqlite(tx, change)?;
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
                    let (id, merged) = thread_for(tx, state, &number.phone_number_id, contact)?;
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
                    window_opened,
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
                            tx,
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
                    if let (Some(opening), true) = (window_opened, *counts_for_window) {
                        let (customer_at, reaction_at): (Option<i64>, Option<i64>) = tx
                            .prepare_cached(
                                "SELECT last_customer_at, last_reaction_at FROM threads WHERE id = ?1",
                            )?
                            .query_row(params![thread_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
                        let previous = opening.previous(customer_at, reaction_at);
                        if opens_window(previous.map(Instant::from_unix_seconds), *timestamp) {
                            enqueue_forward(
                                tx,
                                &number.phone_number_id,
                                &opening.event,
                                delivery.received_at,
                            )?;
                        }
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
                            tx,
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
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An empty directory of this test's own, and the path of a database file in it.
    fn fresh_dir(name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
        let dir =
            std::env::temp_dir().join(format!("hourglass-writer-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("w.db");
        (dir, path)
    }

    /// A writer on a fresh database file with one table, `t (x INTEGER PRIMARY KEY)`.
    async fn writer_with_table(name: &str) -> (SqliteWriter, std::path::PathBuf) {
        let (dir, path) = fresh_dir(name);
        let writer =
            SqliteWriter::start(path.to_str().unwrap(), Arc::new(WindowCache::new(true))).unwrap();
        writer
            .write(|conn| Ok(conn.execute_batch("CREATE TABLE t (x INTEGER PRIMARY KEY)")?))
            .await
            .unwrap();
        (writer, dir)
    }

    async fn insert(writer: &SqliteWriter, values: &'static [i64]) -> Result<(), StoreError> {
        writer
            .write(move |conn| {
                for x in values {
                    conn.execute("INSERT INTO t (x) VALUES (?1)", [x])?;
                }
                Ok(())
            })
            .await
    }

    async fn stored(writer: &SqliteWriter) -> Vec<i64> {
        writer
            .write(|conn| {
                let mut statement = conn.prepare("SELECT x FROM t ORDER BY x")?;
                let rows = statement.query_map([], |r| r.get(0))?;
                Ok(rows.collect::<Result<Vec<i64>, _>>()?)
            })
            .await
            .unwrap()
    }

    /// The writer never checkpoints; the checkpointer copies the WAL into the database
    /// beside it, and makes the WAL start over, so the WAL stays bounded under writes.
    #[tokio::test]
    async fn the_checkpointer_copies_the_wal_and_keeps_it_bounded() {
        let (writer, path) = writer_with_quick_checkpoints("wal").await;
        // 400 commits of a 4 KiB row each: well over a thousand WAL pages in all.
        for _ in 0..400 {
            writer
                .write(|conn| Ok(conn.execute("INSERT INTO t (x) VALUES (zeroblob(4096))", [])?))
                .await
                .unwrap();
        }
        // The checkpointer copies what is left and restarts the WAL; the next commit
        // then writes from the WAL's start.
        tokio::time::sleep(Duration::from_millis(200)).await;
        writer
            .write(|conn| Ok(conn.execute("INSERT INTO t (x) VALUES (zeroblob(10))", [])?))
            .await
            .unwrap();
        // Asked from a connection of its own (a checkpoint cannot run inside the
        // writer's transaction): the WAL holds the last commit's pages alone.
        let (_, wal_pages, _) = checkpoint(&Connection::open(&path).unwrap(), "PASSIVE").unwrap();
        assert!(
            wal_pages < 16,
            "the WAL holds {wal_pages} pages: it did not start over"
        );
        // What the WAL held was copied into the database file.
        let database = std::fs::metadata(&path).unwrap().len();
        assert!(
            database >= 400 * 4096,
            "the database file holds {database} bytes"
        );
        let rows: i64 = writer
            .write(|conn| Ok(conn.query_row("SELECT count(*) FROM t", [], |r| r.get(0))?))
            .await
            .unwrap();
        assert_eq!(rows, 401);
        drop(writer);
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    /// A writer whose checkpointer copies every 5 ms and asks for a restart past 64 WAL
    /// pages, on a fresh file with one table `t (x BLOB)`.
    async fn writer_with_quick_checkpoints(name: &str) -> (SqliteWriter, std::path::PathBuf) {
        let (_, path) = fresh_dir(name);
        let policy = CheckpointPolicy {
            every: Duration::from_millis(5),
            restart_at_pages: 64,
        };
        let writer = SqliteWriter::start_with(
            path.to_str().unwrap(),
            Arc::new(WindowCache::new(true)),
            policy,
            wal_syncer(path.to_str().unwrap()),
        )
        .unwrap();
        writer
            .write(|conn| Ok(conn.execute_batch("CREATE TABLE t (x BLOB)")?))
            .await
            .unwrap();
        (writer, path)
    }

    /// `rows` rows of 4 KiB from 64 producers, each waiting only for its own last write:
    /// jobs are always waiting when a commit ends, so the writer never rests.
    async fn busy_writes(writer: &SqliteWriter, rows: usize) {
        let producers: Vec<_> = (0..64)
            .map(|_| {
                let writer = writer.clone();
                tokio::spawn(async move {
                    for _ in 0..rows / 64 {
                        writer
                            .write(|conn| {
                                Ok(conn.execute("INSERT INTO t (x) VALUES (zeroblob(4096))", [])?)
                            })
                            .await
                            .unwrap();
                    }
                })
            })
            .collect();
        for producer in producers {
            producer.await.unwrap();
        }
    }

    fn wal_bytes(path: &std::path::Path) -> u64 {
        std::fs::metadata(format!("{}-wal", path.display()))
            .unwrap()
            .len()
    }

    /// Under load the writer begins each transaction before the checkpointer's copy ends,
    /// so SQLite never starts the WAL over by itself: the writer does, when asked, between
    /// two transactions. Without it this WAL grows to every page written.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_wal_starts_over_while_the_writer_never_rests() {
        let (writer, path) = writer_with_quick_checkpoints("wal-busy").await;
        // 9,600 rows: over 37 MiB of WAL pages (19–47 MB of WAL file without the
        // restarts, 2–10 MB with them, in runs on two cores with two more busy).
        busy_writes(&writer, 9600).await;
        let wal = wal_bytes(&path);
        assert!(
            wal < 14 << 20,
            "the WAL file is {wal} bytes: it did not start over"
        );
        drop(writer);
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    /// A reader that holds an old snapshot keeps the WAL from starting over, but does not
    /// hold the writer back (the checkpointer asks for a restart only when everything
    /// was copied); once the reader is gone, the WAL starts over again.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_long_reader_holds_the_wal_back_but_not_the_writer() {
        let (writer, path) = writer_with_quick_checkpoints("wal-reader").await;
        busy_writes(&writer, 640).await;
        let reader = Connection::open(&path).unwrap();
        reader.execute_batch("BEGIN").unwrap();
        let seen: i64 = reader
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(seen, 640);
        // 3,200 rows while the reader holds its snapshot: a writer waiting on the reader
        // at each commit (its busy timeout is 10 s) would not end within the limit.
        tokio::time::timeout(Duration::from_secs(120), busy_writes(&writer, 3200))
            .await
            .expect("the writer waited on the reader");
        let held = wal_bytes(&path);
        assert!(
            held > 12 << 20,
            "the WAL file is {held} bytes: did the reader hold it back?"
        );
        reader.execute_batch("COMMIT").unwrap();
        // Another 25 MiB of pages: once the checkpointer has caught up, the WAL starts
        // over and they are written over the old ones instead of after them.
        busy_writes(&writer, 6400).await;
        let after = wal_bytes(&path);
        assert!(
            after < held + (12 << 20),
            "the WAL file grew from {held} to {after} bytes: it did not start over"
        );
        drop(writer);
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    /// Nothing is answered before its commit is on disk: when the WAL cannot be synced,
    /// the commit's callers are told it failed (a webhook is then not acknowledged, and
    /// Meta retries it), and the writer goes on.
    #[tokio::test]
    async fn a_commit_the_disk_did_not_take_is_not_acknowledged() {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        let (dir, path) = fresh_dir("sync");
        let syncs = Arc::new(AtomicUsize::new(0));
        let disk_fails = Arc::new(AtomicBool::new(false));
        let mut sync = wal_syncer(path.to_str().unwrap());
        let (counted, failing) = (syncs.clone(), disk_fails.clone());
        let writer = SqliteWriter::start_with(
            path.to_str().unwrap(),
            Arc::new(WindowCache::new(true)),
            CheckpointPolicy::default(),
            move || {
                counted.fetch_add(1, Ordering::SeqCst);
                if failing.load(Ordering::SeqCst) {
                    return Err(std::io::Error::other("the disk is gone"));
                }
                sync()
            },
        )
        .unwrap();
        writer
            .write(|conn| Ok(conn.execute_batch("CREATE TABLE t (x INTEGER PRIMARY KEY)")?))
            .await
            .unwrap();
        assert_eq!(
            syncs.load(Ordering::SeqCst),
            1,
            "the commit was answered unsynced"
        );
        disk_fails.store(true, Ordering::SeqCst);
        let error = insert(&writer, &[1]).await.unwrap_err();
        assert!(
            error.to_string().contains("could not be made durable"),
            "{error}"
        );
        disk_fails.store(false, Ordering::SeqCst);
        insert(&writer, &[2]).await.unwrap();
        assert_eq!(syncs.load(Ordering::SeqCst), 3);
        let _ = std::fs::remove_dir_all(dir);
    }

    /// A webhook delivery from `wa_id` (none: a contact the schema refuses).
    fn inbound_delivery(n: u32, wa_id: Option<&str>) -> Arc<Vec<WebhookDelivery>> {
        Arc::new(vec![WebhookDelivery {
            body_sha256: format!("{n:064}"),
            received_at: Instant::from_unix_seconds(1_700_000_000),
            body: format!("body {n}").into_bytes(),
            items: vec![IngestItem::Inbound {
                number: NumberRef {
                    phone_number_id: "106540352242922".into(),
                    waba_id: "102290129340398".into(),
                    display_phone_number: "15550783881".into(),
                },
                contact: ContactKey {
                    wa_id: wa_id.map(str::to_owned),
                    user_id: None,
                },
                profile_name: None,
                message_id: format!("wamid.{n}"),
                timestamp: Instant::from_unix_seconds(1_700_000_000),
                message_type: "text".into(),
                entry_point: EntryPoint::Organic,
                is_reaction: false,
                counts_for_window: true,
                raw: "{}".into(),
                forward: None,
                window_opened: None,
                media: None,
            }],
        }])
    }

    /// sqlx and the group writer open one and the same file, whatever the path's
    /// characters: a `%20` in it was once decoded by sqlx and not by the writer, so the
    /// schema went to one file and the webhooks to another.
    #[tokio::test]
    async fn both_connections_open_the_file_the_url_names() {
        let (dir, _) = fresh_dir("url-path");
        let named = dir.join("a%20b.db");
        let store = crate::connect(&format!("sqlite://{}", named.display()))
            .await
            .unwrap();
        let report = store.ingest(inbound_delivery(1, Some("15551230001"))).await;
        assert_eq!(report.unwrap().messages_new, 1);
        // Read back through sqlx's readers.
        assert_eq!(store.counts().await.unwrap().messages, 1);
        assert!(named.exists());
        assert!(!dir.join("a b.db").exists());
    }

    /// Webhook deliveries waiting together run as one job; when that job fails, each
    /// runs again on its own, so only the bad one fails and nothing of it is kept.
    #[tokio::test]
    async fn deliveries_that_fail_together_are_stored_one_by_one() {
        let (dir, path) = fresh_dir("split");
        let path = path.to_str().unwrap();
        drop(crate::SqliteStore::open(path).await.unwrap()); // the schema
        let writer = SqliteWriter::start(path, Arc::new(WindowCache::new(true))).unwrap();
        // Hold the writer busy so that the three deliveries wait and share one commit.
        let busy = writer.write(|_| {
            std::thread::sleep(Duration::from_millis(200));
            Ok(())
        });
        let later = |n, wa_id| {
            let writer = writer.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                writer.ingest(inbound_delivery(n, wa_id)).await
            }
        };
        let (busy, good, bad, other) = tokio::join!(
            busy,
            later(1, Some("15551230001")),
            later(2, None),
            later(3, Some("15551230003")),
        );
        busy.unwrap();
        assert_eq!(good.unwrap().messages_new, 1);
        assert!(bad.is_err());
        assert_eq!(other.unwrap().messages_new, 1);
        let stored: (i64, i64) = writer
            .write(|conn| {
                Ok(conn.query_row(
                    "SELECT (SELECT count(*) FROM webhook_deliveries), (SELECT count(*) FROM messages)",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?)
            })
            .await
            .unwrap();
        assert_eq!(stored, (2, 2));
        // One commit carried both good ones.
        assert_eq!(writer.group_commit_counts(), (1, 2));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn a_lone_job_that_fails_leaves_nothing_and_the_writer_goes_on() {
        let (writer, dir) = writer_with_table("lone").await;
        // Its first row is written, its second breaks the key: neither stays.
        assert!(insert(&writer, &[1, 1]).await.is_err());
        assert_eq!(stored(&writer).await, Vec::<i64>::new());
        insert(&writer, &[2]).await.unwrap();
        assert_eq!(stored(&writer).await, [2]);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn in_a_shared_commit_a_job_that_fails_is_rolled_back_alone() {
        let (writer, dir) = writer_with_table("shared").await;
        // Hold the writer busy so that the next three jobs wait and share one commit.
        let busy = writer.write(|conn| {
            std::thread::sleep(Duration::from_millis(200));
            Ok(conn.execute("INSERT INTO t (x) VALUES (1)", [])?)
        });
        let (busy, good, bad, other) = tokio::join!(
            busy,
            async {
                tokio::time::sleep(Duration::from_millis(50)).await;
                insert(&writer, &[20]).await
            },
            async {
                tokio::time::sleep(Duration::from_millis(50)).await;
                insert(&writer, &[10, 10]).await
            },
            async {
                tokio::time::sleep(Duration::from_millis(50)).await;
                insert(&writer, &[30]).await
            },
        );
        busy.unwrap();
        good.unwrap();
        assert!(bad.is_err());
        other.unwrap();
        assert_eq!(stored(&writer).await, [1, 20, 30]);
        let _ = std::fs::remove_dir_all(dir);
    }
}
