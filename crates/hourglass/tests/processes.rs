//! The real `hourglass serve` binary as separate processes: what an operator sees when a
//! process dies mid-stream, and when several processes share one PostgreSQL database
//! (DESIGN.md §3.1, §3.2 and §4: "several `hourglass serve` processes against one
//! PostgreSQL must behave as one gateway").
//!
//! These tests talk to the processes only as Meta and the business's apps do (signed
//! `POST /webhook`, `/v1`), then open the database directly to count what was stored.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::hash::{BuildHasher, Hasher};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hourglass_meta::send::{InboundTextParams, StatusParams};
use hourglass_meta::{build_inbound_webhook, build_status_webhook, sign};
use serde_json::Value;
use sqlx::Connection;

const APP_SECRET: &str = "processes-test-app-secret";
const API_KEY: &str = "processes-test-api-key";
const WABA_ID: &str = "102290129340398";
const PHONE_NUMBER_ID: &str = "106540352242922";
const DISPLAY_PHONE_NUMBER: &str = "15550783881";
/// Sends are not exercised here; a port nothing listens on keeps them from leaving.
const UPSTREAM: &str = "http://127.0.0.1:9";

// ---- Helpers ---------------------------------------------------------------------------

/// A port that was free a moment ago: bind port 0, read it, let it go.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binding 127.0.0.1:0");
    listener.local_addr().expect("local address").port()
}

/// A random hex string, for database and directory names that must not collide between
/// runs (std's `RandomState` is randomly keyed per process and per instance).
fn random_hex() -> String {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock after 1970")
            .as_nanos(),
    );
    hasher.write_u32(std::process::id());
    format!("{:016x}", hasher.finish())
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

/// RFC 3339 in UTC with whole seconds, computed here rather than with the server's own
/// formatter so that the test checks the contract, not the implementation (Howard
/// Hinnant's `civil_from_days`).
fn rfc3339(unix_seconds: i64) -> String {
    let days = unix_seconds.div_euclid(86_400);
    let second_of_day = unix_seconds.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        second_of_day / 3_600,
        second_of_day / 60 % 60,
        second_of_day % 60
    )
}

/// One `hourglass serve` child process. Dropping it kills it, so no test leaves a server
/// behind, even when it panics.
struct Server {
    name: String,
    port: u16,
    child: Option<Child>,
    stderr_path: PathBuf,
}

impl Server {
    /// Starts `hourglass serve` on `port` against `database_url`, logging at warn to
    /// `<log_dir>/<name>.stderr`. The bootstrap API key is set only when `api_key` is.
    fn spawn(
        name: &str,
        port: u16,
        database_url: &str,
        api_key: Option<&str>,
        log_dir: &Path,
    ) -> Server {
        let stderr_path = log_dir.join(format!("{name}.stderr"));
        let stderr = File::create(&stderr_path).expect("creating the server's stderr file");
        let mut command = Command::new(env!("CARGO_BIN_EXE_hourglass"));
        // Whatever HOURGLASS_* the test runner's environment holds must not leak in.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("HOURGLASS_") {
                command.env_remove(key);
            }
        }
        command
            .arg("serve")
            .env("HOURGLASS_LISTEN", format!("127.0.0.1:{port}"))
            .env("HOURGLASS_DATABASE_URL", database_url)
            .env("HOURGLASS_META_APP_SECRET", APP_SECRET)
            .env("HOURGLASS_UPSTREAM", UPSTREAM)
            .env("HOURGLASS_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        if let Some(key) = api_key {
            command.env("HOURGLASS_API_KEY", key);
        }
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name} (hourglass serve): {e}"));
        Server {
            name: name.to_owned(),
            port,
            child: Some(child),
            stderr_path,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Waits until `/healthz` answers 200, or panics with the server's stderr if it exits
    /// or `within` passes first.
    async fn wait_healthy(&mut self, client: &reqwest::Client, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!(
                        "{} exited with {status} before it was healthy; stderr:\n{}",
                        self.name,
                        self.stderr()
                    );
                }
            }
            let answer = client.get(self.url("/healthz")).send().await;
            if matches!(&answer, Ok(response) if response.status() == reqwest::StatusCode::OK) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} was not healthy within {within:?} (last answer: {answer:?}); stderr:\n{}",
                self.name,
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// SIGKILL (what `Child::kill` sends on Unix), then reap the process.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A webhook as Meta would send it: the exact bytes and their signature.
#[derive(Clone)]
struct SignedWebhook {
    body: Vec<u8>,
    signature: String,
}

impl SignedWebhook {
    fn new(payload: &Value) -> SignedWebhook {
        let body = serde_json::to_vec(payload).expect("serializing a webhook");
        let signature = sign(APP_SECRET.as_bytes(), &body);
        SignedWebhook { body, signature }
    }
}

/// One signed `POST /webhook`. `Err` when no HTTP answer came back (refused, reset,
/// timed out): for Meta that is "not answered" just like a non-200.
async fn post_webhook(
    client: &reqwest::Client,
    port: u16,
    webhook: &SignedWebhook,
) -> Result<reqwest::StatusCode, reqwest::Error> {
    let response = client
        .post(format!("http://127.0.0.1:{port}/webhook"))
        .header("content-type", "application/json")
        .header("x-hub-signature-256", &webhook.signature)
        .body(webhook.body.clone())
        .send()
        .await?;
    let status = response.status();
    // Read the body so the connection can go back to the pool.
    let _ = response.bytes().await;
    Ok(status)
}

/// `GET` a `/v1` resource with the bootstrap key; panics unless it answers 200 with JSON.
async fn get_v1(client: &reqwest::Client, server: &Server, path: &str) -> Value {
    let response = client
        .get(server.url(path))
        .bearer_auth(API_KEY)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    assert_eq!(
        status,
        reqwest::StatusCode::OK,
        "GET {path} answered {text}"
    );
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("GET {path}: {e}: {text}"))
}

fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("building the HTTP client")
}

/// A scratch directory under the system temp directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(prefix: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!("{prefix}-{}", random_hex()));
        std::fs::create_dir_all(&path).expect("creating a temp directory");
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        // Kept after a failure, for the post-mortem (server logs, the database).
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// A fresh PostgreSQL database, dropped on drop (even when the test panics).
struct TempDatabase {
    admin_url: String,
    name: String,
    url: String,
}

impl TempDatabase {
    async fn create(admin_url: &str) -> TempDatabase {
        let name = format!("hourglass_proc_{}", random_hex());
        let mut admin = sqlx::PgConnection::connect(admin_url)
            .await
            .unwrap_or_else(|e| {
                panic!("connecting to PostgreSQL at {admin_url} (set HOURGLASS_TEST_POSTGRES_URL): {e}")
            });
        sqlx::query(&format!("CREATE DATABASE \"{name}\""))
            .execute(&mut admin)
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
        let _ = admin.close().await;
        let (without_query, query) = match admin_url.split_once('?') {
            Some((base, query)) => (base, format!("?{query}")),
            None => (admin_url, String::new()),
        };
        let server = match without_query.rsplit_once('/') {
            Some((server, _)) if server.contains("://") && !server.ends_with('/') => server,
            _ => without_query,
        };
        let url = format!("{server}/{name}{query}");
        TempDatabase {
            admin_url: admin_url.to_owned(),
            name,
            url,
        }
    }
}

async fn drop_database(admin_url: &str, name: &str) -> Result<(), sqlx::Error> {
    let mut admin = sqlx::PgConnection::connect(admin_url).await?;
    let mut result = Ok(());
    // A server's pool may reconnect between the terminate and the drop: try a few times.
    for _ in 0..5 {
        sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()")
            .bind(name)
            .execute(&mut admin)
            .await?;
        result = sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\""))
            .execute(&mut admin)
            .await
            .map(|_| ());
        if result.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = admin.close().await;
    result
}

impl Drop for TempDatabase {
    fn drop(&mut self) {
        // Drop cannot await, and may run inside the test's runtime: use a thread with a
        // runtime of its own.
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        let dropped = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime to drop the test database")
                .block_on(drop_database(&admin_url, &name))
        })
        .join();
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("could not drop test database {}: {e}", self.name),
            Err(_) => eprintln!("dropping test database {} panicked", self.name),
        }
    }
}

// ---- A process killed mid-stream -------------------------------------------------------

const CRASH_WEBHOOKS: usize = 3_000;
const CRASH_CONTACTS: usize = 300;
const CRASH_CLIENTS: usize = 32;
const KILL_AFTER_ACKS: usize = 1_000;
const TIME_LIMIT: Duration = Duration::from_secs(120);

fn crash_contact(i: usize) -> String {
    format!("1555000{:04}", i % CRASH_CONTACTS)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_webhooks_survive_sigkill_exactly_once() {
    let dir = TempDir::new("hourglass-proc-crash");
    let db_path = dir.0.join("hourglass.db");
    let database_url = format!("sqlite://{}", db_path.display());
    let port = free_port();
    let client = http_client();
    let started = Instant::now();

    let now = unix_now();
    let mut message_ids = Vec::with_capacity(CRASH_WEBHOOKS);
    let mut webhooks = Vec::with_capacity(CRASH_WEBHOOKS);
    // Expected state per contact: its message ids and its latest customer message.
    let mut latest_by_contact: HashMap<String, i64> = HashMap::new();
    let mut ids_by_contact: HashMap<String, Vec<String>> = HashMap::new();
    for i in 0..CRASH_WEBHOOKS {
        let message_id = format!("wamid.crash.{i}");
        let wa_id = crash_contact(i);
        let timestamp = now - (i % 3_600) as i64;
        let body = format!("crash test message {i}");
        let profile_name = format!("Contact {}", i % CRASH_CONTACTS);
        webhooks.push(SignedWebhook::new(&build_inbound_webhook(
            &InboundTextParams {
                waba_id: WABA_ID,
                phone_number_id: PHONE_NUMBER_ID,
                display_phone_number: DISPLAY_PHONE_NUMBER,
                wa_id: &wa_id,
                user_id: None,
                profile_name: &profile_name,
                message_id: &message_id,
                timestamp,
                body: &body,
                referral_source_type: None,
            },
        )));
        let latest = latest_by_contact.entry(wa_id.clone()).or_insert(timestamp);
        *latest = (*latest).max(timestamp);
        ids_by_contact
            .entry(wa_id)
            .or_default()
            .push(message_id.clone());
        message_ids.push(message_id);
    }
    let webhooks = Arc::new(webhooks);

    let mut server = Server::spawn("crash-first", port, &database_url, None, &dir.0);
    server.wait_healthy(&client, Duration::from_secs(30)).await;

    // The client side, as Meta behaves: every webhook is retried until it is answered 200.
    let next = Arc::new(AtomicUsize::new(0));
    let acks = Arc::new(AtomicUsize::new(0));
    let unanswered_attempts = Arc::new(AtomicUsize::new(0));
    let killed = Arc::new(AtomicBool::new(false));
    let acked_before_kill = Arc::new(Mutex::new(Vec::new()));
    let deadline = started + TIME_LIMIT;
    let mut clients = Vec::new();
    for _ in 0..CRASH_CLIENTS {
        let (client, webhooks, next, acks, unanswered, killed, acked_before_kill) = (
            client.clone(),
            webhooks.clone(),
            next.clone(),
            acks.clone(),
            unanswered_attempts.clone(),
            killed.clone(),
            acked_before_kill.clone(),
        );
        clients.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= webhooks.len() {
                    return;
                }
                loop {
                    match post_webhook(&client, port, &webhooks[i]).await {
                        Ok(status) if status == reqwest::StatusCode::OK => break,
                        _ => {
                            unanswered.fetch_add(1, Ordering::Relaxed);
                            assert!(
                                Instant::now() < deadline,
                                "webhook {i} still not acknowledged after {TIME_LIMIT:?}"
                            );
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                }
                // Read after the answer arrived: `false` means the first process answered
                // it, before the kill was even started.
                if !killed.load(Ordering::SeqCst) {
                    acked_before_kill.lock().expect("ack record lock").push(i);
                }
                acks.fetch_add(1, Ordering::SeqCst);
            }
        }));
    }

    while acks.load(Ordering::SeqCst) < KILL_AFTER_ACKS {
        assert!(
            Instant::now() < deadline,
            "only {} of {CRASH_WEBHOOKS} webhooks acknowledged after {TIME_LIMIT:?}; stderr:\n{}",
            acks.load(Ordering::SeqCst),
            server.stderr()
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    killed.store(true, Ordering::SeqCst);
    server.kill();
    let acks_at_kill = acks.load(Ordering::SeqCst);
    let first_stderr = server.stderr();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut server = Server::spawn("crash-restarted", port, &database_url, None, &dir.0);
    server.wait_healthy(&client, Duration::from_secs(30)).await;

    for task in clients {
        let remaining = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(remaining, task).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => std::panic::resume_unwind(e.into_panic()),
            Err(_) => panic!(
                "only {} of {CRASH_WEBHOOKS} webhooks acknowledged after {TIME_LIMIT:?}",
                acks.load(Ordering::SeqCst)
            ),
        }
    }
    let acked_before_kill = std::mem::take(&mut *acked_before_kill.lock().expect("lock"));
    assert_eq!(acks.load(Ordering::SeqCst), CRASH_WEBHOOKS);
    assert!(
        acks_at_kill < CRASH_WEBHOOKS && !acked_before_kill.is_empty(),
        "the kill must land mid-stream: {acks_at_kill} acknowledged when it was sent"
    );
    server.kill();
    let second_stderr = server.stderr();

    let store = hourglass_store::connect(&database_url)
        .await
        .expect("opening the database after the crash");
    let counts = store.counts().await.expect("counting rows");
    assert_eq!(
        counts.messages, CRASH_WEBHOOKS as i64,
        "one message per acknowledged webhook, no more, no less"
    );
    assert_eq!(counts.deliveries, CRASH_WEBHOOKS as i64, "raw deliveries");
    assert_eq!(
        counts.threads, CRASH_CONTACTS as i64,
        "one thread per contact"
    );
    assert_eq!(counts.statuses, 0);
    drop(store);

    let mut db = sqlx::SqliteConnection::connect(&format!("{database_url}?mode=ro"))
        .await
        .expect("opening the database read-only");
    let (distinct,): (i64,) = sqlx::query_as("SELECT COUNT(DISTINCT wamid) FROM messages")
        .fetch_one(&mut db)
        .await
        .expect("counting message ids");
    assert_eq!(distinct, CRASH_WEBHOOKS as i64);
    let stored: HashSet<String> = sqlx::query_as::<_, (String,)>("SELECT wamid FROM messages")
        .fetch_all(&mut db)
        .await
        .expect("reading message ids")
        .into_iter()
        .map(|(id,)| id)
        .collect();
    let _ = db.close().await;
    let lost: Vec<&String> = acked_before_kill
        .iter()
        .map(|&i| &message_ids[i])
        .filter(|id| !stored.contains(*id))
        .collect();
    assert!(
        lost.is_empty(),
        "{} webhooks acknowledged before the SIGKILL are missing, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    let expected_ids: HashSet<&String> = message_ids.iter().collect();
    assert!(
        stored.iter().all(|id| expected_ids.contains(id)),
        "no message that was not posted"
    );

    // The window state, as the API reports it after yet another restart.
    let mut server = Server::spawn(
        "crash-with-api-key",
        port,
        &database_url,
        Some(API_KEY),
        &dir.0,
    );
    server.wait_healthy(&client, Duration::from_secs(30)).await;
    for contact in [0, 1, 137, 299] {
        let wa_id = crash_contact(contact);
        let window = get_v1(
            &client,
            &server,
            &format!("/v1/numbers/{PHONE_NUMBER_ID}/contacts/{wa_id}/window"),
        )
        .await;
        let csw = &window["customer_service_window"];
        assert_eq!(
            csw["opened_at"].as_str(),
            Some(rfc3339(latest_by_contact[&wa_id]).as_str()),
            "window of {wa_id}: {window}"
        );
        assert_eq!(csw["open"], true, "window of {wa_id}: {window}");

        let messages = get_v1(
            &client,
            &server,
            &format!("/v1/numbers/{PHONE_NUMBER_ID}/contacts/{wa_id}/messages"),
        )
        .await;
        let mut listed: Vec<&str> = messages["messages"]
            .as_array()
            .unwrap_or_else(|| panic!("messages of {wa_id}: {messages}"))
            .iter()
            .map(|m| m["id"].as_str().unwrap_or_default())
            .collect();
        listed.sort_unstable();
        let mut expected: Vec<&str> = ids_by_contact[&wa_id].iter().map(String::as_str).collect();
        expected.sort_unstable();
        assert_eq!(listed, expected, "messages of {wa_id}");
    }
    server.kill();

    eprintln!(
        "sigkill test: {} acknowledged before the kill ({acks_at_kill} counted), {} unanswered attempts retried, {:?} in all",
        acked_before_kill.len(),
        unanswered_attempts.load(Ordering::Relaxed),
        started.elapsed()
    );
    for (name, text) in [
        ("first", first_stderr),
        ("restarted", second_stderr),
        ("with api key", server.stderr()),
    ] {
        if !text.trim().is_empty() {
            eprintln!("stderr of the {name} server:\n{text}");
        }
    }
}

// ---- Two processes, one PostgreSQL database --------------------------------------------

const PG_INBOUND: usize = 800;
const PG_CONTACTS: usize = 100;
const PG_OUTBOUND: usize = 100;
const PG_CLIENTS_PER_PROCESS: usize = 16;
const PG_ATTEMPTS: usize = 5;

fn pg_contact(k: usize) -> String {
    format!("1555100{:04}", k % PG_CONTACTS)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_on_one_postgres_database_lose_and_duplicate_nothing() {
    let admin_url = std::env::var("HOURGLASS_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let started = Instant::now();
    let dir = TempDir::new("hourglass-proc-pg");
    // Declared before the servers, so it is dropped after them.
    let database = TempDatabase::create(&admin_url).await;
    let client = http_client();

    let now = unix_now();
    let mut webhooks = Vec::with_capacity(PG_INBOUND + 2 * PG_OUTBOUND);
    let mut latest_by_contact: HashMap<String, i64> = HashMap::new();
    for i in 0..PG_INBOUND {
        let wa_id = pg_contact(i);
        let timestamp = now - (i % 3_600) as i64;
        let message_id = format!("wamid.pg.in.{i}");
        let body = format!("postgres test message {i}");
        webhooks.push(SignedWebhook::new(&build_inbound_webhook(
            &InboundTextParams {
                waba_id: WABA_ID,
                phone_number_id: PHONE_NUMBER_ID,
                display_phone_number: DISPLAY_PHONE_NUMBER,
                wa_id: &wa_id,
                user_id: None,
                profile_name: "Someone",
                message_id: &message_id,
                timestamp,
                body: &body,
                referral_source_type: None,
            },
        )));
        let latest = latest_by_contact.entry(wa_id).or_insert(timestamp);
        *latest = (*latest).max(timestamp);
    }
    for k in 0..PG_OUTBOUND {
        let message_id = format!("wamid.out.{k}");
        let wa_id = pg_contact(k);
        for (status, age) in [("sent", 120), ("delivered", 60)] {
            webhooks.push(SignedWebhook::new(&build_status_webhook(&StatusParams {
                waba_id: WABA_ID,
                phone_number_id: PHONE_NUMBER_ID,
                display_phone_number: DISPLAY_PHONE_NUMBER,
                message_id: &message_id,
                recipient_wa_id: &wa_id,
                recipient_user_id: None,
                status,
                timestamp: now - age,
                conversation: None,
                pricing: None,
            })));
        }
    }
    let total = webhooks.len();
    // Interleave inbound messages and statuses (and a `delivered` before its `sent`) with a
    // fixed shuffle, so that both processes create threads and outbound rows at once.
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in (1..total).rev() {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        webhooks.swap(i, (state >> 33) as usize % (i + 1));
    }
    let webhooks = Arc::new(webhooks);

    // Both start at once against the fresh database: they also race on the migrations.
    let mut a = Server::spawn(
        "postgres-a",
        free_port(),
        &database.url,
        Some(API_KEY),
        &dir.0,
    );
    let mut b = Server::spawn(
        "postgres-b",
        free_port(),
        &database.url,
        Some(API_KEY),
        &dir.0,
    );
    a.wait_healthy(&client, Duration::from_secs(30)).await;
    b.wait_healthy(&client, Duration::from_secs(30)).await;

    let answered = Arc::new(AtomicUsize::new(0));
    let retries = Arc::new(AtomicUsize::new(0));
    // Every answer that was not 200, by kind ("HTTP 503", "no answer: …"), for the report.
    let refusals = Arc::new(Mutex::new(HashMap::<String, usize>::new()));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut tasks = Vec::new();
    for port in [a.port, b.port] {
        let next = Arc::new(AtomicUsize::new(0));
        for _ in 0..PG_CLIENTS_PER_PROCESS {
            let (client, webhooks, next, answered, retries, refusals, failures) = (
                client.clone(),
                webhooks.clone(),
                next.clone(),
                answered.clone(),
                retries.clone(),
                refusals.clone(),
                failures.clone(),
            );
            tasks.push(tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= webhooks.len() {
                        return;
                    }
                    let mut last = String::new();
                    for attempt in 0..PG_ATTEMPTS {
                        if attempt > 0 {
                            retries.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        last = match post_webhook(&client, port, &webhooks[i]).await {
                            Ok(status) if status == reqwest::StatusCode::OK => {
                                last.clear();
                                break;
                            }
                            Ok(status) => format!("HTTP {status}"),
                            Err(e) if e.is_timeout() => "no answer: timed out".to_owned(),
                            Err(e) => format!("no answer: {e}"),
                        };
                        *refusals
                            .lock()
                            .expect("refusal tally lock")
                            .entry(last.clone())
                            .or_default() += 1;
                    }
                    if last.is_empty() {
                        answered.fetch_add(1, Ordering::SeqCst);
                    } else {
                        failures.lock().expect("failure list lock").push(format!(
                            "webhook {i} on port {port}: {last} after {PG_ATTEMPTS} attempts"
                        ));
                    }
                }
            }));
        }
    }
    for task in tasks {
        let remaining = (started + TIME_LIMIT).saturating_duration_since(Instant::now());
        match tokio::time::timeout(remaining, task).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => std::panic::resume_unwind(e.into_panic()),
            Err(_) => {
                let refusals = refusals.lock().expect("refusal tally lock").clone();
                panic!(
                    "posting {total} webhooks to each of two processes took over {TIME_LIMIT:?}: \
                     {} of {} answered 200, {} retries, not-200 answers: {refusals:?}; \
                     stderr of A:\n{}\nstderr of B:\n{}",
                    answered.load(Ordering::SeqCst),
                    2 * total,
                    retries.load(Ordering::Relaxed),
                    a.stderr(),
                    b.stderr()
                )
            }
        }
    }
    let failures = std::mem::take(&mut *failures.lock().expect("lock"));
    let retries = retries.load(Ordering::Relaxed);
    let refusals = std::mem::take(&mut *refusals.lock().expect("lock"));
    a.kill();
    b.kill();
    let (a_stderr, b_stderr) = (a.stderr(), b.stderr());
    assert!(
        failures.is_empty(),
        "{} webhooks never answered 200, e.g. {:?}; stderr of A:\n{a_stderr}\nstderr of B:\n{b_stderr}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );

    let store = hourglass_store::connect(&database.url)
        .await
        .expect("opening the shared database");
    let counts = store.counts().await.expect("counting rows");
    drop(store);
    assert_eq!(
        counts.messages,
        (PG_INBOUND + PG_OUTBOUND) as i64,
        "800 inbound messages and one row per outbound id"
    );
    assert_eq!(counts.statuses, (2 * PG_OUTBOUND) as i64, "statuses");
    assert_eq!(counts.threads, PG_CONTACTS as i64, "one thread per contact");
    assert_eq!(counts.deliveries, total as i64, "one raw delivery per body");

    let mut db = sqlx::PgConnection::connect(&database.url)
        .await
        .expect("connecting to the shared database");
    let (duplicated_threads,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM (SELECT phone_number_id, wa_id FROM threads
                               GROUP BY phone_number_id, wa_id HAVING COUNT(*) > 1) AS d",
    )
    .fetch_one(&mut db)
    .await
    .expect("looking for duplicate threads");
    assert_eq!(duplicated_threads, 0, "contacts with more than one thread");
    // The per-thread summary must not lose an update to the other process either.
    let summaries: Vec<(Option<String>, Option<i64>)> =
        sqlx::query_as("SELECT wa_id, last_customer_at FROM threads")
            .fetch_all(&mut db)
            .await
            .expect("reading thread summaries");
    for (wa_id, last_customer_at) in &summaries {
        let wa_id = wa_id.as_deref().expect("every thread here has a wa_id");
        assert_eq!(
            *last_customer_at,
            Some(latest_by_contact[wa_id]),
            "latest customer message of {wa_id}"
        );
    }
    let (delivered_outbound,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM messages WHERE direction = 'outbound' AND delivered_at IS NOT NULL",
    )
    .fetch_one(&mut db)
    .await
    .expect("counting delivered outbound messages");
    assert_eq!(delivered_outbound, PG_OUTBOUND as i64, "delivered outbound");
    let (misfiled,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM messages m JOIN threads t ON t.id = m.thread_id
         WHERE m.wamid LIKE 'wamid.out.%'
           AND t.wa_id <> '1555100' || LPAD(SUBSTRING(m.wamid FROM 11), 4, '0')",
    )
    .fetch_one(&mut db)
    .await
    .expect("checking outbound threads");
    assert_eq!(misfiled, 0, "outbound messages in another contact's thread");
    let _ = db.close().await;

    eprintln!(
        "postgres test: {total} webhooks to each of two processes, {retries} retries \
         (not-200 answers: {refusals:?}), {:?} in all",
        started.elapsed()
    );
    for (name, text) in [("A", a_stderr), ("B", b_stderr)] {
        if !text.trim().is_empty() {
            eprintln!("stderr of process {name}:\n{text}");
        }
    }
}
