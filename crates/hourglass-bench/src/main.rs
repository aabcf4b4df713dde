//! `hourglass-bench`: Hourglass's speed and memory, each figure beside a ceiling measured
//! in the same run on the same machine, since shared machines are noisy.
//!
//! - `ingest`: distinct signed inbound webhooks over loopback, against (a) a handler of
//!   the same HTTP stack that only verifies the signature and parses the JSON (the
//!   ceiling) and (b) `hourglass serve`, which also stores every item durably before it
//!   answers 200.
//! - `window`: window API queries over many threads, against the same stack answering a
//!   trivial GET.
//! - `memory`: resident memory of `hourglass serve` before and after ingesting many
//!   threads.
//!
//! It runs the release binaries: build with `cargo build --release -p hourglass -p hourglass-bench`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant as Stopwatch};

use anyhow::{bail, Context};
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::Router;
use clap::{Parser, Subcommand, ValueEnum};
use hourglass_meta::send::{build_inbound_webhook, InboundTextParams};
use serde_json::Value;
use sqlx::Connection;

mod floor;

const SECRET: &str = "bench-app-secret";
const API_KEY: &str = "bench-api-key";
const NUMBER: &str = "106540352242922";

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq, Debug)]
enum Db {
    Sqlite,
    Postgres,
}

impl Db {
    /// What to print after a server's CPU per webhook: PostgreSQL's own, which runs in
    /// processes of its own (SQLite runs inside the server).
    fn cpu_beside(self, database_us: f64) -> String {
        match self {
            Db::Postgres => format!(" + PostgreSQL {database_us:.0} us"),
            Db::Sqlite => String::new(),
        }
    }
}

#[derive(Subcommand)]
enum Cmd {
    /// Ingest throughput and latency, against the verify-and-parse ceiling.
    Ingest {
        #[arg(long, value_enum, default_value = "sqlite")]
        db: Db,
        #[arg(long, default_value_t = 60_000)]
        requests: usize,
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// Repeat ceiling and Hourglass alternately this many times; the median is reported.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Also measure the durable floor each round: the ceiling plus each raw body
        /// appended durably to one table, with group commit (see `floor.rs`).
        #[arg(long)]
        floor: bool,
    },
    /// Window API queries per second over many threads, against a trivial GET.
    Window {
        #[arg(long, value_enum, default_value = "sqlite")]
        db: Db,
        #[arg(long, default_value_t = 100_000)]
        threads: usize,
        #[arg(long, default_value_t = 100_000)]
        requests: usize,
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
    },
    /// Resident memory of `hourglass serve` after ingesting many threads.
    Memory {
        #[arg(long, default_value_t = 1_000_000)]
        threads: usize,
        /// Messages (each a new thread) per webhook body.
        #[arg(long, default_value_t = 100)]
        per_webhook: usize,
    },
    /// The store alone: batches of deliveries straight into `Store::ingest`, no HTTP.
    Store {
        #[arg(long, value_enum, default_value = "sqlite")]
        db: Db,
        #[arg(long, default_value_t = 30_000)]
        requests: usize,
        #[arg(long, default_value_t = 32)]
        batch: usize,
    },
    /// The outbox: messages through Hourglass's send API to the in-process sandbox, with
    /// the limits raised (throughput), then at Meta's default 80/s (queue-to-send latency).
    Outbox {
        #[arg(long, default_value_t = 20_000)]
        messages: usize,
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        /// Seconds of the paced run at 80 messages/s.
        #[arg(long, default_value_t = 30)]
        paced_seconds: u64,
    },
    /// Internal: the ceiling server (verify + parse, or a trivial GET); with `--store`,
    /// the durable floor (verify + parse + the raw body appended durably).
    CeilingServer {
        #[arg(long)]
        port: u16,
        /// `sqlite://FILE` or `postgres://...`: also store each raw body before answering.
        #[arg(long)]
        store: Option<String>,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Cmd::CeilingServer { port, store } = cli.command {
        // The ceiling gets the same runtime shape as `hourglass serve`: its default
        // number of workers (one fewer than the cores). Measured with a worker per core
        // it was no faster (BENCHMARKS.md, sessions 8 and 10), so this is also the
        // stricter ceiling.
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let workers = hourglass_server::Config::default().worker_threads(cores);
        return tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .enable_all()
            .build()?
            .block_on(ceiling_server(port, store));
    }
    // The load generator: one worker thread, so it takes no more than its share of the two
    // cores (wrk -t1 in CEILINGS.md).
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        match cli.command {
            Cmd::Ingest {
                db,
                requests,
                concurrency,
                rounds,
                floor,
            } => bench_ingest(db, requests, concurrency, rounds, floor).await,
            Cmd::Window {
                db,
                threads,
                requests,
                concurrency,
            } => bench_window(db, threads, requests, concurrency).await,
            Cmd::Memory {
                threads,
                per_webhook,
            } => bench_memory(threads, per_webhook).await,
            Cmd::Store {
                db,
                requests,
                batch,
            } => bench_store(db, requests, batch).await,
            Cmd::Outbox {
                messages,
                concurrency,
                paced_seconds,
            } => bench_outbox(messages, concurrency, paced_seconds).await,
            Cmd::CeilingServer { .. } => unreachable!(),
        }
    })
}

// ---- Servers ------------------------------------------------------------------------------

async fn ceiling_webhook(headers: HeaderMap, body: Bytes) -> StatusCode {
    let signature = headers
        .get("x-hub-signature-256")
        .and_then(|v| v.to_str().ok());
    if hourglass_meta::verify_signature(SECRET.as_bytes(), &body, signature).is_err() {
        return StatusCode::UNAUTHORIZED;
    }
    match hourglass_meta::parse_webhook(&body) {
        Ok(_) => StatusCode::OK,
        Err(_) => StatusCode::BAD_REQUEST,
    }
}

async fn ceiling_server(port: u16, store: Option<String>) -> anyhow::Result<()> {
    let app = match store {
        None => Router::new().route("/webhook", post(ceiling_webhook)),
        Some(url) => {
            let floor = floor::Floor::start(&url).await?;
            Router::new().route(
                "/webhook",
                post(move |headers: HeaderMap, body: Bytes| {
                    let floor = floor.clone();
                    async move {
                        match ceiling_webhook(headers, body.clone()).await {
                            StatusCode::OK => floor.store(body).await,
                            refused => refused,
                        }
                    }
                }),
            )
        }
    }
    .route("/healthz", get(|| async { "ok" }));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    axum::serve(listener, app).await?;
    Ok(())
}

struct Server {
    child: Child,
    port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn sibling_binary(name: &str) -> anyhow::Result<PathBuf> {
    let me = std::env::current_exe()?;
    let path = me.with_file_name(name);
    if !path.exists() {
        bail!(
            "{} not found: build it with `cargo build --release -p hourglass -p hourglass-bench`",
            path.display()
        );
    }
    Ok(path)
}

async fn wait_healthy(port: u16) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    for _ in 0..200 {
        if let Ok(r) = client
            .get(format!("http://127.0.0.1:{port}/healthz"))
            .send()
            .await
        {
            if r.status().is_success() {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("server on port {port} did not become healthy")
}

async fn start_ceiling() -> anyhow::Result<Server> {
    start_ceiling_with(&[]).await
}

async fn start_ceiling_with(args: &[&str]) -> anyhow::Result<Server> {
    let port = free_port()?;
    let child = Command::new(std::env::current_exe()?)
        .args(["ceiling-server", "--port", &port.to_string()])
        .args(args)
        .stdout(Stdio::null())
        .spawn()?;
    let server = Server { child, port };
    wait_healthy(port).await?;
    Ok(server)
}

struct Database {
    url: String,
    /// PostgreSQL: the admin URL and the database to drop.
    cleanup: Option<(String, String)>,
    /// SQLite: the directory to remove.
    dir: Option<PathBuf>,
}

async fn fresh_database(db: Db, tag: &str) -> anyhow::Result<Database> {
    match db {
        Db::Sqlite => {
            let dir =
                std::env::temp_dir().join(format!("hourglass-bench-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir)?;
            Ok(Database {
                url: format!("sqlite://{}", dir.join("bench.db").display()),
                cleanup: None,
                dir: Some(dir),
            })
        }
        Db::Postgres => {
            let admin = std::env::var("HOURGLASS_TEST_POSTGRES_URL")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
            let name = format!("hourglass_bench_{tag}_{}", std::process::id());
            let mut conn = sqlx::PgConnection::connect(&admin).await?;
            sqlx::query(&format!("DROP DATABASE IF EXISTS {name}"))
                .execute(&mut conn)
                .await?;
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&mut conn)
                .await?;
            let base = admin
                .rsplit_once('/')
                .map(|(b, _)| b.to_owned())
                .unwrap_or(admin.clone());
            Ok(Database {
                url: format!("{base}/{name}"),
                cleanup: Some((admin, name)),
                dir: None,
            })
        }
    }
}

impl Database {
    async fn drop_it(self) {
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
        if let Some((admin, name)) = self.cleanup {
            if let Ok(mut conn) = sqlx::PgConnection::connect(&admin).await {
                let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut conn)
                    .await;
            }
        }
    }
}

async fn start_hourglass(database_url: &str) -> anyhow::Result<Server> {
    start_hourglass_with(database_url, &[]).await
}

async fn start_hourglass_with(
    database_url: &str,
    env: &[(&str, String)],
) -> anyhow::Result<Server> {
    let port = free_port()?;
    let child = Command::new(sibling_binary("hourglass")?)
        .arg("serve")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .env("HOURGLASS_LISTEN", format!("127.0.0.1:{port}"))
        .env("HOURGLASS_DATABASE_URL", database_url)
        .env("HOURGLASS_META_APP_SECRET", SECRET)
        .env("HOURGLASS_API_KEY", API_KEY)
        .env("HOURGLASS_UPSTREAM", "sandbox")
        .env("HOURGLASS_LOG", "warn")
        .envs(
            std::env::var("BENCH_SERVER_WORKERS")
                .ok()
                .map(|n| ("TOKIO_WORKER_THREADS", n)),
        )
        .stdout(Stdio::null())
        .spawn()
        .context("starting hourglass serve")?;
    let server = Server { child, port };
    wait_healthy(port).await?;
    Ok(server)
}

// ---- Load generation ---------------------------------------------------------------------

struct SignedBody {
    body: Bytes,
    signature: String,
}

fn inbound_webhooks(
    count: usize,
    contacts: usize,
    first: usize,
    base_time: i64,
) -> Vec<SignedBody> {
    (first..first + count)
        .map(|i| {
            let wa_id = format!("1555{:07}", i % contacts);
            let user_id = format!("US.{:020}", i % contacts);
            let payload = build_inbound_webhook(&InboundTextParams {
                waba_id: "102290129340398",
                phone_number_id: NUMBER,
                display_phone_number: "15550783881",
                wa_id: &wa_id,
                user_id: Some(&user_id),
                profile_name: "Bench Customer",
                message_id: &format!(
                    "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA{i:010}="
                ),
                timestamp: base_time - (i % 3600) as i64,
                body: "Does it come in another color? I would like to know before I order.",
                referral_source_type: None,
            });
            let body = serde_json::to_vec(&payload).expect("serializes");
            let signature = hourglass_meta::sign(SECRET.as_bytes(), &body);
            SignedBody {
                body: Bytes::from(body),
                signature,
            }
        })
        .collect()
}

struct LoadResult {
    seconds: f64,
    ok: usize,
    retried: usize,
    latencies_us: Vec<u64>,
}

impl LoadResult {
    fn per_second(&self) -> f64 {
        self.ok as f64 / self.seconds
    }
    fn percentile_ms(&self, p: f64) -> f64 {
        let mut sorted = self.latencies_us.clone();
        sorted.sort_unstable();
        if sorted.is_empty() {
            return 0.0;
        }
        let index = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
        sorted[index] as f64 / 1000.0
    }
}

/// Posts every body once (retrying any that is not answered 200, as Meta does) with
/// `concurrency` requests in flight.
async fn post_all(port: u16, bodies: Arc<Vec<SignedBody>>, concurrency: usize) -> LoadResult {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()
        .unwrap();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let url = format!("http://127.0.0.1:{port}/webhook");
    let started = Stopwatch::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, next, bodies, url) =
            (client.clone(), next.clone(), bodies.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut retried = 0;
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(item) = bodies.get(i) else { break };
                loop {
                    let t = Stopwatch::now();
                    let result = client
                        .post(&url)
                        .header("content-type", "application/json")
                        .header("x-hub-signature-256", &item.signature)
                        .body(item.body.clone())
                        .send()
                        .await;
                    match result {
                        Ok(r) if r.status() == StatusCode::OK => {
                            latencies.push(t.elapsed().as_micros() as u64);
                            break;
                        }
                        _ => retried += 1,
                    }
                }
            }
            (latencies, retried)
        }));
    }
    let mut result = LoadResult {
        seconds: 0.0,
        ok: 0,
        retried: 0,
        latencies_us: Vec::new(),
    };
    for task in tasks {
        let (latencies, retried) = task.await.unwrap();
        result.ok += latencies.len();
        result.retried += retried;
        result.latencies_us.extend(latencies);
    }
    result.seconds = started.elapsed().as_secs_f64();
    result
}

async fn get_all(
    port: u16,
    paths: Arc<Vec<String>>,
    concurrency: usize,
    key: Option<&str>,
) -> LoadResult {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()
        .unwrap();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Stopwatch::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, next, paths) = (client.clone(), next.clone(), paths.clone());
        let key = key.map(str::to_owned);
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut failed = 0;
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(path) = paths.get(i) else { break };
                let t = Stopwatch::now();
                let mut request = client.get(format!("http://127.0.0.1:{port}{path}"));
                if let Some(key) = &key {
                    request = request.bearer_auth(key);
                }
                match request.send().await {
                    Ok(r) if r.status() == StatusCode::OK => {
                        let _ = r.bytes().await;
                        latencies.push(t.elapsed().as_micros() as u64);
                    }
                    _ => failed += 1,
                }
            }
            (latencies, failed)
        }));
    }
    let mut result = LoadResult {
        seconds: 0.0,
        ok: 0,
        retried: 0,
        latencies_us: Vec::new(),
    };
    for task in tasks {
        let (latencies, failed) = task.await.unwrap();
        result.ok += latencies.len();
        result.retried += failed;
        result.latencies_us.extend(latencies);
    }
    result.seconds = started.elapsed().as_secs_f64();
    result
}

fn now_seconds() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.partial_cmp(b).unwrap());
    values[values.len() / 2]
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_default();
    format!(
        "{} cores, {cpu}",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    )
}

// ---- Benchmarks --------------------------------------------------------------------------

async fn bench_ingest(
    db: Db,
    requests: usize,
    concurrency: usize,
    rounds: usize,
    floor: bool,
) -> anyhow::Result<()> {
    println!("ingest bench: {requests} distinct signed webhooks per round, {concurrency} in flight, {db:?}, {rounds} rounds; {}", machine());
    let (mut ceiling_rates, mut rates, mut p50s, mut p99s, mut ceiling_p99s) =
        (vec![], vec![], vec![], vec![], vec![]);
    let (mut floor_ratios, mut hourglass_to_floor) = (vec![], vec![]);
    for round in 0..rounds {
        let bodies = Arc::new(inbound_webhooks(
            requests,
            10_000,
            round * requests,
            now_seconds(),
        ));
        let ceiling = start_ceiling().await?;
        let ceiling_cpu = CpuUse::start(ceiling.child.id());
        let ceiling_load_cpu = CpuUse::start(std::process::id());
        let c = post_all(ceiling.port, bodies.clone(), concurrency).await;
        let ceiling_cpu = ceiling_cpu.per_item_us(c.ok);
        let ceiling_load_cpu = ceiling_load_cpu.per_item_us(c.ok);
        drop(ceiling);

        let mut floor_rate = None;
        if floor {
            let database = fresh_database(db, "floor").await?;
            let server = start_ceiling_with(&["--store", &database.url]).await?;
            let cpu = CpuUse::start(server.child.id());
            let floor_result = post_all(server.port, bodies.clone(), concurrency).await;
            let cpu = cpu.per_item_us(floor_result.ok);
            drop(server);
            let stored = floor::stored(&database.url).await;
            database.drop_it().await;
            let stored = stored?;
            if stored != floor_result.ok as i64 {
                bail!(
                    "the durable floor stored {stored} bodies for {} acknowledged webhooks",
                    floor_result.ok
                );
            }
            floor_rate = Some(floor_result.per_second());
            let database_cpu = db.cpu_beside(cpu.1);
            println!(
                "round {round}: durable floor {:>8.0}/s p50 {:.2} ms p99 {:.2} ms (retried {}) | ratio {:.2} | CPU per webhook {:.0} us{database_cpu}",
                floor_result.per_second(), floor_result.percentile_ms(0.5), floor_result.percentile_ms(0.99), floor_result.retried,
                floor_result.per_second() / c.per_second(), cpu.0
            );
            floor_ratios.push(floor_result.per_second() / c.per_second());
        }

        let database = fresh_database(db, "ingest").await?;
        let server = start_hourglass(&database.url).await?;
        let server_cpu = CpuUse::start(server.child.id());
        let load_cpu = CpuUse::start(std::process::id());
        let h = post_all(server.port, bodies.clone(), concurrency).await;
        let server_cpu = server_cpu.per_item_us(h.ok);
        let load_cpu = load_cpu.per_item_us(h.ok);
        let batches = group_commit_stats(server.port).await;
        drop(server);
        let store = hourglass_store::connect(&database.url).await?;
        let counts = store.counts().await?;
        drop(store);
        database.drop_it().await;
        if counts.messages as usize != requests || counts.deliveries as usize != requests {
            bail!(
                "stored {} messages and {} deliveries for {requests} acknowledged webhooks",
                counts.messages,
                counts.deliveries
            );
        }
        let of_floor = match floor_rate {
            Some(rate) => {
                hourglass_to_floor.push(h.per_second() / rate);
                format!(" | of the floor {:.2}", h.per_second() / rate)
            }
            None => String::new(),
        };
        println!(
            "round {round}: ceiling {:>8.0}/s p50 {:.2} ms p99 {:.2} ms | hourglass {:>8.0}/s p50 {:.2} ms p99 {:.2} ms (retried {}, {batches}) | ratio {:.2}{of_floor}",
            c.per_second(), c.percentile_ms(0.5), c.percentile_ms(0.99),
            h.per_second(), h.percentile_ms(0.5), h.percentile_ms(0.99), h.retried,
            h.per_second() / c.per_second()
        );
        let database_cpu = db.cpu_beside(server_cpu.1);
        println!(
            "         CPU per webhook: ceiling server {:.0} us | hourglass {:.0} us{database_cpu} | load generator {:.0} us (ceiling run) {:.0} us (hourglass run)",
            ceiling_cpu.0, server_cpu.0, ceiling_load_cpu.0, load_cpu.0
        );
        ceiling_rates.push(c.per_second());
        ceiling_p99s.push(c.percentile_ms(0.99));
        rates.push(h.per_second());
        p50s.push(h.percentile_ms(0.5));
        p99s.push(h.percentile_ms(0.99));
    }
    let ratios: Vec<f64> = rates
        .iter()
        .zip(&ceiling_rates)
        .map(|(h, c)| h / c)
        .collect();
    println!(
        "median: ceiling {:.0}/s (p99 {:.2} ms); hourglass {:.0} durable events/s, p50 {:.2} ms, p99 {:.2} ms; ratio to ceiling {:.2}",
        median(ceiling_rates), median(ceiling_p99s), median(rates), median(p50s), median(p99s), median(ratios)
    );
    if floor {
        println!(
            "median: durable floor ratio to ceiling {:.2}; hourglass's events/s as a share of the floor's {:.2}",
            median(floor_ratios),
            median(hourglass_to_floor)
        );
    }
    Ok(())
}

/// How many deliveries the server's transactions carried on average (from `/metrics`).
async fn group_commit_stats(port: u16) -> String {
    let Ok(response) = reqwest::get(format!("http://127.0.0.1:{port}/metrics")).await else {
        return "no metrics".into();
    };
    let text = response.text().await.unwrap_or_default();
    let value = |name: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    let batches = value("hourglass_ingest_batches_total");
    let deliveries = value("hourglass_ingest_batch_deliveries_total");
    format!(
        "{batches} commits, {:.1} deliveries each",
        deliveries / batches.max(1.0)
    )
}

async fn bench_store(db: Db, requests: usize, batch: usize) -> anyhow::Result<()> {
    let database = fresh_database(db, "store").await?;
    let seconds = seed_deliveries(&database.url, requests, 10_000, now_seconds(), batch)
        .await?
        .as_secs_f64();
    println!("store alone ({db:?}): {requests} deliveries in batches of {batch}: {:.0}/s, {:.2} ms per batch", requests as f64 / seconds, seconds * 1000.0 / (requests as f64 / batch as f64));
    database.drop_it().await;
    Ok(())
}

async fn seed_threads(database_url: &str, threads: usize, base_time: i64) -> anyhow::Result<()> {
    seed_deliveries(database_url, threads, threads, base_time, 1000)
        .await
        .map(|_| ())
}

/// Stores signed inbound webhooks through the store's own ingest path, `batch` deliveries
/// per transaction, converted as the server converts them.
async fn seed_deliveries(
    database_url: &str,
    count: usize,
    contacts: usize,
    base_time: i64,
    batch: usize,
) -> anyhow::Result<Duration> {
    let store = hourglass_store::connect(database_url).await?;
    let database_cpu = database_url
        .starts_with("postgres")
        .then(|| CpuUse::start(std::process::id()));
    let mut in_store = Duration::ZERO;
    let bodies = inbound_webhooks(count, contacts, 0, base_time);
    for chunk in bodies.chunks(batch) {
        let deliveries: Vec<hourglass_store::WebhookDelivery> = chunk
            .iter()
            .map(|b| {
                let webhook = hourglass_meta::parse_webhook(&b.body).expect("parses");
                hourglass_server::ingest::delivery_from_webhook(
                    &b.body,
                    &webhook,
                    hourglass_core::Instant::from_unix_seconds(base_time),
                    false,
                    hourglass_core::RuleSettings::default(),
                )
            })
            .collect();
        let t = Stopwatch::now();
        store.ingest(Arc::new(deliveries)).await?;
        in_store += t.elapsed();
    }
    // Read while the store (its writer thread, its PostgreSQL connections) is still open:
    // the CPU of a process that has exited can no longer be read.
    if let Some(cpu) = database_cpu {
        println!(
            "  PostgreSQL's processes: {:.1} us of CPU per delivery",
            cpu.per_item_us(count).1
        );
    }
    if let Some(ticks) = thread_ticks("sqlite-writer") {
        println!(
            "  SQLite writer thread: {:.1} us of CPU per delivery",
            ticks_us(ticks) / count as f64
        );
    }
    Ok(in_store)
}

async fn bench_window(
    db: Db,
    threads: usize,
    requests: usize,
    concurrency: usize,
) -> anyhow::Result<()> {
    println!(
        "window bench: {threads} threads, {requests} queries, {concurrency} in flight, {db:?}; {}",
        machine()
    );
    let base_time = now_seconds();
    let database = fresh_database(db, "window").await?;
    let seeding = Stopwatch::now();
    seed_threads(&database.url, threads, base_time).await?;
    println!(
        "seeded {threads} threads in {:.1} s",
        seeding.elapsed().as_secs_f64()
    );

    // Queries for random contacts (a fixed LCG, so runs are comparable), about now.
    let mut x: u64 = 0x2545F4914F6CDD1D;
    let paths: Vec<String> = (0..requests)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            format!(
                "/v1/numbers/{NUMBER}/contacts/1555{:07}/window",
                (x >> 33) as usize % threads
            )
        })
        .collect();
    let paths = Arc::new(paths);

    let ceiling = start_ceiling().await?;
    let trivial: Arc<Vec<String>> =
        Arc::new((0..requests).map(|_| "/healthz".to_owned()).collect());
    let c = get_all(ceiling.port, trivial, concurrency, None).await;
    drop(ceiling);

    let server = start_hourglass(&database.url).await?;
    // First touch of every thread (the server reads each from the database once), then
    // the measured queries over the same threads.
    let every_thread: Arc<Vec<String>> = Arc::new(
        (0..threads)
            .map(|i| format!("/v1/numbers/{NUMBER}/contacts/1555{i:07}/window"))
            .collect(),
    );
    let cold = get_all(server.port, every_thread, concurrency, Some(API_KEY)).await;
    let h = get_all(server.port, paths, concurrency, Some(API_KEY)).await;
    drop(server);
    database.drop_it().await;
    if h.retried > 0 {
        bail!("{} window queries failed", h.retried);
    }
    println!(
        "first touch of each thread: {:.0} queries/s p99 {:.2} ms",
        cold.per_second(),
        cold.percentile_ms(0.99)
    );
    println!(
        "ceiling (trivial GET, same stack): {:.0}/s p99 {:.2} ms | window API: {:.0} queries/s p50 {:.2} ms p99 {:.2} ms | ratio {:.2}",
        c.per_second(), c.percentile_ms(0.99), h.per_second(), h.percentile_ms(0.5), h.percentile_ms(0.99), h.per_second() / c.per_second()
    );
    Ok(())
}

/// CPU time used over a span (from `/proc`, in clock ticks of 10 ms): by one process, and
/// by PostgreSQL's processes (every process named `postgres`). CPU time is far steadier
/// than throughput on a shared machine, so it shows where a change saves work.
struct CpuUse {
    pid: u32,
    process: u64,
    postgres: u64,
}

impl CpuUse {
    fn start(pid: u32) -> Self {
        CpuUse {
            pid,
            process: process_ticks(pid),
            postgres: postgres_ticks(),
        }
    }

    /// Microseconds of CPU per item: (the process, PostgreSQL).
    fn per_item_us(&self, items: usize) -> (f64, f64) {
        let per = |ticks: u64| ticks_us(ticks) / items.max(1) as f64;
        (
            per(process_ticks(self.pid).saturating_sub(self.process)),
            per(postgres_ticks().saturating_sub(self.postgres)),
        )
    }
}

/// Clock ticks (Linux's USER_HZ, 100 a second) in microseconds.
fn ticks_us(ticks: u64) -> f64 {
    ticks as f64 * 10_000.0
}

/// utime + stime of a process, in clock ticks.
fn process_ticks(pid: u32) -> u64 {
    process_ticks_at(&format!("/proc/{pid}/stat"))
}

fn process_ticks_at(path: &str) -> u64 {
    let Ok(stat) = std::fs::read_to_string(path) else {
        return 0;
    };
    // The command name may hold spaces: fields are counted after its closing parenthesis.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // Fields 14 and 15 of stat(5); `rest` starts at field 3.
    field(11) + field(12)
}

/// CPU ticks of this process's thread named `name` (the first one found).
fn thread_ticks(name: &str) -> Option<u64> {
    std::fs::read_dir("/proc/self/task")
        .ok()?
        .flatten()
        .find_map(|task| {
            let comm = std::fs::read_to_string(task.path().join("comm")).ok()?;
            (comm.trim() == name)
                .then(|| process_ticks_at(&task.path().join("stat").to_string_lossy()))
        })
}

fn postgres_ticks() -> u64 {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim() == "postgres")
        })
        .map(process_ticks)
        .sum()
}

fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .context("no VmRSS")?;
    Ok(line
        .split_whitespace()
        .nth(1)
        .context("VmRSS value")?
        .parse()?)
}

async fn bench_memory(threads: usize, per_webhook: usize) -> anyhow::Result<()> {
    println!(
        "memory bench: {threads} threads ingested through /webhook, {per_webhook} per body; {}",
        machine()
    );
    let database = fresh_database(Db::Sqlite, "memory").await?;
    let server = start_hourglass(&database.url).await?;
    let pid = server.child.id();
    let before = rss_kib(pid)?;
    let base_time = now_seconds();
    let started = Stopwatch::now();
    let mut sent = 0;
    let mut peak = before;
    while sent < threads {
        // One body carries `per_webhook` messages from as many new contacts.
        let count = per_webhook.min(threads - sent);
        let bodies: Vec<SignedBody> = (0..64)
            .filter_map(|k| {
                let first = sent + k * count;
                (first < threads)
                    .then(|| multi_message_webhook(first, count.min(threads - first), base_time))
            })
            .collect();
        sent += bodies.len() * count;
        let result = post_all(server.port, Arc::new(bodies), 16).await;
        if result.retried > 0 {
            bail!("{} webhooks were refused", result.retried);
        }
        peak = peak.max(rss_kib(pid)?);
    }
    let after = rss_kib(pid)?;
    let store = hourglass_store::connect(&database.url).await?;
    let counts = store.counts().await?;
    println!(
        "ingested {} threads ({} messages) in {:.1} s; RSS before {} MiB, after {} MiB, peak {} MiB",
        counts.threads, counts.messages, started.elapsed().as_secs_f64(), before / 1024, after / 1024, peak / 1024
    );
    drop((store, server));
    database.drop_it().await;
    Ok(())
}

fn multi_message_webhook(first: usize, count: usize, base_time: i64) -> SignedBody {
    let mut payload: Value = build_inbound_webhook(&InboundTextParams {
        waba_id: "102290129340398",
        phone_number_id: NUMBER,
        display_phone_number: "15550783881",
        wa_id: "0",
        user_id: None,
        profile_name: "x",
        message_id: "x",
        timestamp: base_time,
        body: "x",
        referral_source_type: None,
    });
    let value = &mut payload["entry"][0]["changes"][0]["value"];
    value["contacts"] = Value::Array(
        (first..first + count)
            .map(|i| serde_json::json!({"profile": {"name": "M"}, "wa_id": format!("1666{i:08}")}))
            .collect(),
    );
    value["messages"] = Value::Array(
        (first..first + count)
            .map(|i| serde_json::json!({"from": format!("1666{i:08}"), "id": format!("wamid.mem.{i}"), "timestamp": base_time.to_string(), "type": "text", "text": {"body": "hello"}}))
            .collect(),
    );
    let body = serde_json::to_vec(&payload).unwrap();
    let signature = hourglass_meta::sign(SECRET.as_bytes(), &body);
    SignedBody {
        body: Bytes::from(body),
        signature,
    }
}

// ---- Outbox ---------------------------------------------------------------------------------

/// Posts one simple send; returns how long the answer took and its HTTP status.
async fn send_one(client: &reqwest::Client, port: u16, i: usize) -> (Duration, u16) {
    send_one_at(client, port, i, None).await
}

/// [`send_one`], scheduled for `send_at` (Unix seconds) when given.
async fn send_one_at(
    client: &reqwest::Client,
    port: u16,
    i: usize,
    send_at: Option<i64>,
) -> (Duration, u16) {
    let started = Stopwatch::now();
    let mut request = serde_json::json!({"template": {"name": "order_update", "language": "en_US", "params": []}});
    if let Some(send_at) = send_at {
        request["send_at"] = serde_json::json!(send_at.to_string());
    }
    let status = client
        .post(format!(
            "http://127.0.0.1:{port}/v1/numbers/{NUMBER}/contacts/1650{i:07}/messages"
        ))
        .bearer_auth(API_KEY)
        .header("idempotency-key", format!("bench-{i}"))
        .json(&request)
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0);
    (started.elapsed(), status)
}

/// Sends messages `first..first + messages` (each to its own contact) from `concurrency`
/// clients, scheduled for `send_at` when given.
async fn queue_messages(
    client: &reqwest::Client,
    port: u16,
    messages: usize,
    concurrency: usize,
    first: usize,
    send_at: Option<i64>,
) -> anyhow::Result<()> {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, next) = (client.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= messages {
                    return;
                }
                send_one_at(&client, port, first + i, send_at).await;
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    Ok(())
}

async fn sent_count(database_url: &str) -> anyhow::Result<i64> {
    let mut conn = sqlx::SqliteConnection::connect(&format!("{database_url}?mode=ro")).await?;
    Ok(
        sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE state = 'sent'")
            .fetch_one(&mut conn)
            .await?,
    )
}

async fn bench_outbox(
    messages: usize,
    concurrency: usize,
    paced_seconds: u64,
) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    println!("machine: {}", machine());
    println!("command: hourglass-bench outbox --messages {messages} --concurrency {concurrency} --paced-seconds {paced_seconds}");

    // The ceiling: the same HTTP stack answering a trivial request, same load.
    let ceiling = start_ceiling().await?;
    let trivial = Arc::new(vec!["/healthz".to_owned(); messages]);
    let ceiling_result = get_all(ceiling.port, trivial, concurrency, None).await;
    drop(ceiling);

    // Throughput: limits raised, every message queued (202 at once) and sent by the outbox
    // to the in-process sandbox, whose statuses come back through the webhook path.
    let database = fresh_database(Db::Sqlite, "outbox").await?;
    let config = std::env::temp_dir().join(format!(
        "hourglass-bench-outbox-{}.toml",
        std::process::id()
    ));
    std::fs::write(
        &config,
        "[outbox]\nmessages_per_second = 100000\npair_burst = 1000\nwait_ms = 0\nbatch = 256\n\
         [sandbox]\ndelivered_after_ms = 50\nread_after_ms = 0\n",
    )?;
    let server = start_hourglass_with(
        &database.url,
        &[("HOURGLASS_CONFIG", config.display().to_string())],
    )
    .await?;
    let started = Stopwatch::now();
    queue_messages(&client, server.port, messages, concurrency, 0, None).await?;
    let queued = started.elapsed();
    loop {
        if sent_count(&database.url).await? >= messages as i64 {
            break;
        }
        if started.elapsed() > Duration::from_secs(600) {
            bail!("the outbox did not send {messages} messages in 10 minutes");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let all_sent = started.elapsed();
    drop(server);
    database.drop_it().await;
    let throughput = messages as f64 / all_sent.as_secs_f64();
    println!(
        "outbox throughput (SQLite, limits raised): {messages} messages queued in {:.2}s, all sent in {:.2}s = {throughput:.0} msg/s; \
         ceiling (trivial GET, same stack and load) {:.0} req/s; ratio {:.2}",
        queued.as_secs_f64(),
        all_sent.as_secs_f64(),
        ceiling_result.per_second(),
        throughput / ceiling_result.per_second()
    );

    // The outbox alone: every message queued first, all due at the same second, then
    // timed from that second until the last is sent (the queueing requests no longer
    // share the two cores with the sending).
    let database = fresh_database(Db::Sqlite, "outbox-drain").await?;
    let server = start_hourglass_with(
        &database.url,
        &[("HOURGLASS_CONFIG", config.display().to_string())],
    )
    .await?;
    let unix_now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock after 1970")
    };
    // Queueing took `queued` with the sending running beside it; alone it is faster.
    let due = unix_now().as_secs() as i64 + queued.as_secs() as i64 + 5;
    queue_messages(
        &client,
        server.port,
        messages,
        concurrency,
        2_000_000,
        Some(due),
    )
    .await?;
    let until_due = Duration::from_secs(due as u64).saturating_sub(unix_now());
    if until_due.is_zero() {
        bail!("queueing {messages} messages took past their due second; use fewer");
    }
    tokio::time::sleep(until_due).await;
    let drain = Stopwatch::now();
    loop {
        if sent_count(&database.url).await? >= messages as i64 {
            break;
        }
        if drain.elapsed() > Duration::from_secs(600) {
            bail!("the outbox did not drain {messages} messages in 10 minutes");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let drained = drain.elapsed();
    drop(server);
    database.drop_it().await;
    let drain_rate = messages as f64 / drained.as_secs_f64();
    println!(
        "outbox drain (SQLite, limits raised): {messages} messages queued beforehand, all due at once, sent in {:.2}s = {drain_rate:.0} msg/s; ratio to the same ceiling {:.2}",
        drained.as_secs_f64(),
        drain_rate / ceiling_result.per_second()
    );

    // Latency at Meta's default 80/s: each request waits (wait_ms) until its message is
    // sent, so its answer time is queue-to-send.
    let database = fresh_database(Db::Sqlite, "outbox-paced").await?;
    std::fs::write(
        &config,
        "[outbox]\nwait_ms = 10000\n[sandbox]\ndelivered_after_ms = 50\nread_after_ms = 0\n",
    )?;
    let server = start_hourglass_with(
        &database.url,
        &[("HOURGLASS_CONFIG", config.display().to_string())],
    )
    .await?;
    let total = (80 * paced_seconds) as usize;
    let mut ticker = tokio::time::interval(Duration::from_micros(12_500));
    let mut tasks = Vec::with_capacity(total);
    for i in 0..total {
        ticker.tick().await;
        let (client, port) = (client.clone(), server.port);
        tasks.push(tokio::spawn(async move {
            send_one(&client, port, 1_000_000 + i).await
        }));
    }
    let mut latencies = Vec::with_capacity(total);
    let mut not_sent = 0;
    for t in tasks {
        let (latency, status) = t.await?;
        if status == 201 {
            latencies.push(latency.as_secs_f64() * 1000.0);
        } else {
            not_sent += 1;
        }
    }
    latencies.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let at = |p: f64| latencies[((latencies.len() as f64 - 1.0) * p).round() as usize];
    println!(
        "queue-to-send at 80 msg/s for {paced_seconds}s: {} sent, {not_sent} not sent in time; p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        latencies.len(),
        at(0.5),
        at(0.99),
        at(1.0)
    );
    drop(server);
    database.drop_it().await;
    let _ = std::fs::remove_file(&config);
    Ok(())
}
