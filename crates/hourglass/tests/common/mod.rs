//! Helpers shared by the tests that run the real `hourglass serve` binary as child
//! processes: a server that dies with the test, signed webhooks, scratch directories and
//! PostgreSQL databases.
#![allow(dead_code)] // each test binary uses its own subset

use std::collections::hash_map::RandomState;
use std::fs::File;
use std::hash::{BuildHasher, Hasher};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hourglass_meta::sign;
use serde_json::Value;
use sqlx::Connection;

pub const APP_SECRET: &str = "processes-test-app-secret";
pub const API_KEY: &str = "processes-test-api-key";
pub const WABA_ID: &str = "102290129340398";
pub const PHONE_NUMBER_ID: &str = "106540352242922";
pub const DISPLAY_PHONE_NUMBER: &str = "15550783881";
/// Sends are not exercised here; a port nothing listens on keeps them from leaving.
pub const UPSTREAM: &str = "http://127.0.0.1:9";

// ---- Helpers ---------------------------------------------------------------------------

/// A port that was free a moment ago: bind port 0, read it, let it go.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binding 127.0.0.1:0");
    listener.local_addr().expect("local address").port()
}

/// A random hex string, for database and directory names that must not collide between
/// runs (std's `RandomState` is randomly keyed per process and per instance).
pub fn random_hex() -> String {
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

pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

/// RFC 3339 in UTC with whole seconds, computed here rather than with the server's own
/// formatter so that the test checks the contract, not the implementation (Howard
/// Hinnant's `civil_from_days`).
pub fn rfc3339(unix_seconds: i64) -> String {
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
pub struct Server {
    pub name: String,
    pub port: u16,
    pub child: Option<Child>,
    pub stderr_path: PathBuf,
}

impl Server {
    /// Starts `hourglass serve` on `port` against `database_url`, logging at warn to
    /// `<log_dir>/<name>.stderr`. The bootstrap API key is set only when `api_key` is.
    pub fn spawn(
        name: &str,
        port: u16,
        database_url: &str,
        api_key: Option<&str>,
        log_dir: &Path,
    ) -> Server {
        Server::spawn_with(name, port, database_url, api_key, log_dir, &[])
    }

    /// [`Server::spawn`] with more environment (later entries override the defaults,
    /// e.g. `HOURGLASS_UPSTREAM`, or `HOURGLASS_CONFIG` for a TOML file).
    pub fn spawn_with(
        name: &str,
        port: u16,
        database_url: &str,
        api_key: Option<&str>,
        log_dir: &Path,
        env: &[(&str, &str)],
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
        for (key, value) in env {
            command.env(key, value);
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

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Waits until `/healthz` answers 200, or panics with the server's stderr if it exits
    /// or `within` passes first.
    pub async fn wait_healthy(&mut self, client: &reqwest::Client, within: Duration) {
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
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn stderr(&self) -> String {
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
pub struct SignedWebhook {
    pub body: Vec<u8>,
    pub signature: String,
}

impl SignedWebhook {
    pub fn new(payload: &Value) -> SignedWebhook {
        let body = serde_json::to_vec(payload).expect("serializing a webhook");
        let signature = sign(APP_SECRET.as_bytes(), &body);
        SignedWebhook { body, signature }
    }
}

/// One signed `POST /webhook`. `Err` when no HTTP answer came back (refused, reset,
/// timed out): for Meta that is "not answered" just like a non-200.
pub async fn post_webhook(
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
pub async fn get_v1(client: &reqwest::Client, server: &Server, path: &str) -> Value {
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

pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("building the HTTP client")
}

/// A scratch directory under the system temp directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(prefix: &str) -> TempDir {
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
pub struct TempDatabase {
    pub admin_url: String,
    pub name: String,
    pub url: String,
}

impl TempDatabase {
    pub async fn create(admin_url: &str) -> TempDatabase {
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

pub async fn drop_database(admin_url: &str, name: &str) -> Result<(), sqlx::Error> {
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
