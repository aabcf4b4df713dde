//! One typed configuration: an optional TOML file overlaid by `HOURGLASS_…` variables
//! (DESIGN.md §3.1), checked at start-up with errors that name the setting.

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;

use serde::Deserialize;

/// A secret: never printed, not even in `Debug`.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(…)")
    }
}

/// Where business messages go: Meta's Graph API (or a fake of it), or the built-in sandbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UpstreamConfig {
    GraphApi { base_url: String },
    Sandbox,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address to serve on (`HOURGLASS_LISTEN`).
    pub listen: String,
    /// `sqlite://PATH` or `postgres://…` (`HOURGLASS_DATABASE_URL`).
    pub database_url: String,
    pub meta: MetaConfig,
    /// A bootstrap admin key for the HTTP API (`HOURGLASS_API_KEY`).
    pub api_key: Option<Secret>,
    /// Largest webhook body accepted; Meta sends up to 3 MB.
    pub max_webhook_bytes: usize,
    /// Whether a contact's reaction opens the customer service window. Meta does not say
    /// that it does, so it is off by default.
    pub reactions_open_window: bool,
    /// How many webhook deliveries one PostgreSQL transaction may carry (group commit).
    /// SQLite's writer thread has its own bound (512 jobs a commit).
    pub ingest_batch_max: usize,
    /// How many transactions may store webhooks at once. SQLite always uses one (its
    /// writer thread). On
    /// PostgreSQL a batch is one statement, whose cost is largely per statement: measured
    /// on 2 cores (BENCHMARKS.md, session 5), one writer carried ~30 deliveries a commit
    /// and stored more per second, with less CPU per webhook, than 2 (~15) or 4 (~8).
    /// More may pay where PostgreSQL has cores of its own.
    pub ingest_writers: usize,
    /// Threads that run HTTP requests and background tasks (`HOURGLASS_WORKER_THREADS`).
    /// Unset: one fewer than the cores, at least one (see [`Config::worker_threads`]).
    pub worker_threads: Option<usize>,
    pub sandbox: SandboxConfig,
    pub outbox: OutboxConfig,
    pub forwarding: ForwardingConfig,
    /// Where downloaded media (voice notes, images, documents) are kept
    /// (`HOURGLASS_MEDIA_DIR`).
    pub media_dir: String,
}

/// Forwarded webhooks (`/v1/webhooks`).
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ForwardingConfig {
    /// How long an item that cannot be delivered is retried before it becomes a dead
    /// letter: 7 days, as Meta retries its own webhooks.
    pub retry_for_seconds: i64,
    /// How long before a customer service window closes its `window.closing_soon` event
    /// is sent: an hour by default.
    pub window_closing_soon_seconds: i64,
    /// How often the clock-driven events (windows closing soon and closed, free entry points
    /// opened and closed) are looked for.
    pub window_tick_ms: u64,
}

impl Default for ForwardingConfig {
    fn default() -> Self {
        ForwardingConfig {
            retry_for_seconds: 7 * 86_400,
            window_closing_soon_seconds: 3_600,
            window_tick_ms: 5_000,
        }
    }
}

/// The durable outbox behind `POST /v1/numbers/{id}/contacts/{contact}/messages`.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutboxConfig {
    /// How long a worker's claim on a message lasts; a worker that dies lets go after it.
    pub lease_seconds: i64,
    /// After a claim expired, how long to wait for a status webhook saying Meta accepted
    /// the attempt that was cut short, before sending again.
    pub reconcile_seconds: i64,
    /// The first retry's delay; each further retry doubles it, up to
    /// `retry_max_delay_seconds`. (Meta's pair rate limit, 131056, waits 4^n seconds.)
    pub retry_base_seconds: i64,
    pub retry_max_delay_seconds: i64,
    /// Attempts before a message that keeps failing transiently is given up as failed.
    pub max_attempts: i64,
    /// How long a send request waits for its message to be sent before answering 202
    /// (queued) instead of 201 (sent).
    pub wait_ms: u64,
    /// Messages claimed at once by a worker.
    pub batch: u32,
    /// Meta's throughput per business number: 80 messages per second by default, up to
    /// 1,000 for numbers Meta has upgraded. Kept before Meta enforces it (130429). Higher
    /// values are accepted for benchmarks against the sandbox.
    pub messages_per_second: f64,
    /// Meta's pair limit: one message every `pair_interval_seconds` to the same contact,
    /// with bursts of up to `pair_burst` that borrow from later (131056).
    pub pair_interval_seconds: f64,
    pub pair_burst: f64,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetaConfig {
    /// Key for `X-Hub-Signature-256` (`HOURGLASS_META_APP_SECRET`); webhooks are refused
    /// until it is set.
    pub app_secret: Option<Secret>,
    /// Answer to Meta's subscription challenge (`HOURGLASS_META_VERIFY_TOKEN`).
    pub verify_token: Option<Secret>,
    /// Bearer token for Meta (`HOURGLASS_META_ACCESS_TOKEN`).
    pub access_token: Option<Secret>,
    /// Graph API base URL, or `sandbox` (`HOURGLASS_UPSTREAM`).
    pub upstream: String,
    /// The Graph API version Hourglass uses for its own calls to Meta (template
    /// management); sends keep the version the client put in its path.
    pub graph_version: String,
    /// Templates asked for per page when syncing a WABA's registry.
    pub template_page_size: u32,
    /// How long a call to Meta may take before it counts as failed (an ambiguous
    /// outcome for a send: the outbox then waits for Meta's status before trying again).
    pub request_timeout_ms: u64,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SandboxConfig {
    /// Milliseconds from a sandbox send to its `delivered` status.
    pub delivered_after_ms: u64,
    /// Milliseconds from a sandbox send to its `read` status (0: never read).
    pub read_after_ms: u64,
    /// Milliseconds the sandbox's "review" of a new template takes before it approves (or
    /// rejects) it and sends the status webhook.
    pub template_review_ms: u64,
    /// Faults the sandbox injects, to show what Hourglass does when Meta misbehaves.
    pub faults: SandboxFaults,
}

/// Each rate is the share of sends (0 to 1) that meet that fault; they add up.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SandboxFaults {
    /// HTTP 500, Meta's 131000 "Something went wrong": not accepted.
    pub server_error_rate: f64,
    /// HTTP 429, Meta's 130429 (throughput exceeded): not accepted.
    pub throughput_error_rate: f64,
    /// HTTP 400, Meta's 131056 (pair rate limit): not accepted.
    pub pair_limit_error_rate: f64,
    /// Accepted, but the answer is lost: in process the send fails as unreachable; over
    /// HTTP the answer comes after `timeout_ms`, later than the client waits.
    pub timeout_rate: f64,
    pub timeout_ms: u64,
    /// Status webhooks sent twice.
    pub duplicate_status_rate: f64,
    /// Status webhooks sent last first (`read` before `delivered` before `sent`).
    pub reorder_statuses: bool,
    /// Seeds the draws, for a repeatable run; 0 draws a seed.
    pub seed: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:8080".into(),
            database_url: "sqlite://hourglass.db".into(),
            meta: MetaConfig::default(),
            api_key: None,
            max_webhook_bytes: 4 * 1024 * 1024,
            reactions_open_window: false,
            ingest_batch_max: 512,
            ingest_writers: 1,
            worker_threads: None,
            sandbox: SandboxConfig::default(),
            outbox: OutboxConfig::default(),
            forwarding: ForwardingConfig::default(),
            media_dir: "hourglass-media".into(),
        }
    }
}

impl Default for OutboxConfig {
    fn default() -> Self {
        OutboxConfig {
            lease_seconds: 60,
            reconcile_seconds: 30,
            retry_base_seconds: 2,
            retry_max_delay_seconds: 900,
            max_attempts: 12,
            wait_ms: 10_000,
            batch: 32,
            messages_per_second: 80.0,
            pair_interval_seconds: 6.0,
            pair_burst: 45.0,
        }
    }
}

impl Default for MetaConfig {
    fn default() -> Self {
        MetaConfig {
            app_secret: None,
            verify_token: None,
            access_token: None,
            upstream: "https://graph.facebook.com".into(),
            graph_version: "v23.0".into(),
            template_page_size: 100,
            request_timeout_ms: 30_000,
        }
    }
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            delivered_after_ms: 800,
            read_after_ms: 2_500,
            template_review_ms: 2_000,
            faults: SandboxFaults::default(),
        }
    }
}

/// A configuration that cannot be used, naming the setting and what to do.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("could not read the config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("the config file {path} is not valid: {message}")]
    Parse { path: String, message: String },
    #[error("{setting} is `{value}`, which is not an address like 127.0.0.1:8080")]
    Listen {
        setting: &'static str,
        value: String,
    },
    #[error("{setting} must start with sqlite:// or postgres://, not `{value}`")]
    DatabaseUrl {
        setting: &'static str,
        value: String,
    },
    #[error("{setting} must be `sandbox` or an http(s) URL such as https://graph.facebook.com, not `{value}`")]
    Upstream {
        setting: &'static str,
        value: String,
    },
    #[error("{setting} must be a number: {value}")]
    Number {
        setting: &'static str,
        value: String,
    },
    #[error("{setting} must be {range}, not {value}")]
    Range {
        setting: &'static str,
        range: &'static str,
        value: String,
    },
}

impl Config {
    /// Reads the TOML file at `path` (if any), then applies the environment, then checks.
    pub fn load(
        path: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let mut config = match path {
            None => Config::default(),
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.display().to_string(),
                    source,
                })?;
                toml::from_str(&text).map_err(|e| ConfigError::Parse {
                    path: path.display().to_string(),
                    message: e.to_string(),
                })?
            }
        };
        if let Some(v) = env("HOURGLASS_LISTEN") {
            config.listen = v;
        }
        if let Some(v) = env("HOURGLASS_DATABASE_URL") {
            config.database_url = v;
        }
        if let Some(v) = env("HOURGLASS_META_APP_SECRET") {
            config.meta.app_secret = Some(Secret(v));
        }
        if let Some(v) = env("HOURGLASS_META_VERIFY_TOKEN") {
            config.meta.verify_token = Some(Secret(v));
        }
        if let Some(v) = env("HOURGLASS_META_ACCESS_TOKEN") {
            config.meta.access_token = Some(Secret(v));
        }
        if let Some(v) = env("HOURGLASS_UPSTREAM") {
            config.meta.upstream = v;
        }
        if let Some(v) = env("HOURGLASS_API_KEY") {
            config.api_key = Some(Secret(v));
        }
        if let Some(v) = env("HOURGLASS_MAX_WEBHOOK_BYTES") {
            config.max_webhook_bytes = v.parse().map_err(|_| ConfigError::Number {
                setting: "HOURGLASS_MAX_WEBHOOK_BYTES",
                value: v,
            })?;
        }
        if let Some(v) = env("HOURGLASS_MEDIA_DIR") {
            config.media_dir = v;
        }
        if let Some(v) = env("HOURGLASS_INGEST_WRITERS") {
            config.ingest_writers = v.parse().map_err(|_| ConfigError::Number {
                setting: "HOURGLASS_INGEST_WRITERS",
                value: v,
            })?;
        }
        if let Some(v) = env("HOURGLASS_WORKER_THREADS") {
            config.worker_threads = Some(v.parse().map_err(|_| ConfigError::Number {
                setting: "HOURGLASS_WORKER_THREADS",
                value: v,
            })?);
        }
        config.check()?;
        Ok(config)
    }

    /// How many async worker threads to run on a machine with `cores` cores: as
    /// configured, or else one fewer than the cores, and at least one.
    ///
    /// Ingest ends in threads of its own beside the workers: SQLite's writer, syncer and
    /// checkpointer, or the PostgreSQL server when it runs on the same machine. A worker
    /// on every core makes them queue behind HTTP work for a core, and makes the workers
    /// hand tasks to each other across cores. On 2 cores, one worker took 7–15 % less
    /// CPU per stored webhook than two, and answered window queries faster
    /// (BENCHMARKS.md, session 10).
    pub fn worker_threads(&self, cores: usize) -> usize {
        self.worker_threads
            .unwrap_or_else(|| cores.saturating_sub(1))
            .max(1)
    }

    fn check(&self) -> Result<(), ConfigError> {
        self.listen_addr()?;
        // Meta's tiers stop at 1,000; more only makes sense against the sandbox (benchmarks).
        if !(1.0..=100_000.0).contains(&self.outbox.messages_per_second) {
            return Err(ConfigError::Number {
                setting: "outbox.messages_per_second (1 to 1000 for Meta's tiers; up to 100000 against the sandbox)",
                value: self.outbox.messages_per_second.to_string(),
            });
        }
        if self.outbox.pair_interval_seconds <= 0.0 || self.outbox.pair_burst < 1.0 {
            return Err(ConfigError::Number {
                setting: "outbox.pair_interval_seconds (> 0) and outbox.pair_burst (>= 1)",
                value: format!(
                    "{} and {}",
                    self.outbox.pair_interval_seconds, self.outbox.pair_burst
                ),
            });
        }
        if let Some(n) = self.worker_threads.filter(|n| !(1..=1024).contains(n)) {
            return Err(ConfigError::Range {
                setting: "HOURGLASS_WORKER_THREADS (worker_threads)",
                range: "from 1 to 1024, or unset for one fewer than the cores",
                value: n.to_string(),
            });
        }
        let closing_soon = self.forwarding.window_closing_soon_seconds;
        if !(1..hourglass_core::CSW_SECONDS).contains(&closing_soon)
            || self.forwarding.window_tick_ms == 0
        {
            return Err(ConfigError::Number {
                setting: "forwarding.window_closing_soon_seconds (1 to 86399) and forwarding.window_tick_ms (> 0)",
                value: format!("{closing_soon} and {}", self.forwarding.window_tick_ms),
            });
        }
        if !(self.database_url.starts_with("sqlite://")
            || self.database_url.starts_with("postgres://")
            || self.database_url.starts_with("postgresql://"))
        {
            return Err(ConfigError::DatabaseUrl {
                setting: "HOURGLASS_DATABASE_URL (database_url)",
                value: self.database_url.clone(),
            });
        }
        self.upstream()?;
        Ok(())
    }

    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.listen.parse().map_err(|_| ConfigError::Listen {
            setting: "HOURGLASS_LISTEN (listen)",
            value: self.listen.clone(),
        })
    }

    pub fn upstream(&self) -> Result<UpstreamConfig, ConfigError> {
        let value = self.meta.upstream.trim();
        if value == "sandbox" {
            Ok(UpstreamConfig::Sandbox)
        } else if value.starts_with("http://") || value.starts_with("https://") {
            Ok(UpstreamConfig::GraphApi {
                base_url: value.trim_end_matches('/').to_owned(),
            })
        } else {
            Err(ConfigError::Upstream {
                setting: "HOURGLASS_UPSTREAM (meta.upstream)",
                value: value.to_owned(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_overrides_the_file_and_defaults() {
        let env = |name: &str| match name {
            "HOURGLASS_LISTEN" => Some("127.0.0.1:9999".to_owned()),
            "HOURGLASS_UPSTREAM" => Some("sandbox".to_owned()),
            "HOURGLASS_META_APP_SECRET" => Some("s3cret".to_owned()),
            _ => None,
        };
        let config = Config::load(None, env).unwrap();
        assert_eq!(config.listen, "127.0.0.1:9999");
        assert_eq!(config.upstream().unwrap(), UpstreamConfig::Sandbox);
        assert_eq!(config.database_url, "sqlite://hourglass.db");
        assert!(
            !format!("{config:?}").contains("s3cret"),
            "secrets are never printed"
        );
    }

    #[test]
    fn a_bad_setting_is_named_in_the_error() {
        let env = |name: &str| (name == "HOURGLASS_DATABASE_URL").then(|| "mysql://x".to_owned());
        let error = Config::load(None, env).unwrap_err().to_string();
        assert!(error.contains("HOURGLASS_DATABASE_URL"), "{error}");
    }

    #[test]
    fn worker_threads_leave_a_core_to_the_store_unless_set() {
        let default = Config::load(None, |_| None).unwrap();
        assert_eq!(default.worker_threads(1), 1);
        assert_eq!(default.worker_threads(2), 1);
        assert_eq!(default.worker_threads(8), 7);
        let env = |name: &str| (name == "HOURGLASS_WORKER_THREADS").then(|| "3".to_owned());
        assert_eq!(Config::load(None, env).unwrap().worker_threads(2), 3);
        for (bad, says) in [
            (
                "0",
                "must be from 1 to 1024, or unset for one fewer than the cores, not 0",
            ),
            ("many", "must be a number: many"),
            ("5000", "not 5000"),
        ] {
            let env = |name: &str| (name == "HOURGLASS_WORKER_THREADS").then(|| bad.to_owned());
            let error = Config::load(None, env).unwrap_err().to_string();
            assert!(error.contains("HOURGLASS_WORKER_THREADS"), "{bad}: {error}");
            assert!(error.contains(says), "{bad}: {error}");
        }
    }

    #[test]
    fn the_example_config_file_is_valid() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../hourglass.example.toml");
        let config = Config::load(Some(Path::new(path)), |_| None).unwrap();
        assert_eq!(config.max_webhook_bytes, 4 * 1024 * 1024);
    }
}
