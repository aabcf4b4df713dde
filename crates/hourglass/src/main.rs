//! The `hourglass` binary: a thin shell over `hourglass-server`. It reads the command
//! line and the configuration, sets up logging, and runs what was asked.

mod demo;

/// mimalloc rather than glibc's allocator: a gateway allocates small, short-lived buffers
/// for every request, and under load glibc's `malloc` (with its consolidation) took about
/// a tenth of the CPU (BENCHMARKS.md, the outbox).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use hourglass_server::config::ConfigError;
use hourglass_server::{auth, subscriptions, time, Application, Config};

#[derive(Parser)]
#[command(
    name = "hourglass",
    version,
    about = "A WhatsApp Business gateway that keeps Meta's clock"
)]
struct Cli {
    /// TOML configuration file; HOURGLASS_* environment variables override it.
    #[arg(long, global = true, env = "HOURGLASS_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Serve,
    /// Run the gateway against the built-in sandbox on a fresh SQLite file, with example data.
    Demo {
        /// Where to keep the demo database (recreated at every start).
        #[arg(long, default_value = "hourglass-demo.db")]
        database: PathBuf,
    },
    /// Manage API keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Run the sandbox on its own: the Graph API played locally over HTTP, posting its
    /// status webhooks to WEBHOOK_URL, with the faults of the config's [sandbox.faults].
    /// Point `hourglass serve` at it with HOURGLASS_UPSTREAM=http://LISTEN.
    Sandbox {
        #[arg(long, default_value = "127.0.0.1:9090")]
        listen: String,
        /// Hourglass's webhook, e.g. http://127.0.0.1:8080/webhook.
        #[arg(long)]
        webhook_url: String,
    },
    /// Manage forwarded webhooks: where Hourglass passes on what Meta sends.
    Webhooks {
        #[command(subcommand)]
        command: WebhooksCommand,
    },
    /// Work with message templates.
    Templates {
        #[command(subcommand)]
        command: TemplatesCommand,
    },
}

#[derive(Subcommand)]
enum WebhooksCommand {
    /// Forward Meta's webhooks to URL, one item per request, signed with SECRET.
    Add {
        #[arg(long)]
        url: String,
        /// Signs every request (X-Hub-Signature-256), as Meta's app secret does.
        #[arg(long)]
        secret: String,
        /// Which items: messages, statuses, calls (Meta's), windows (Hourglass's window
        /// events), or * (repeat; Meta's three when left out).
        #[arg(long = "event")]
        events: Vec<String>,
        /// Only this business number's items (repeat for several; all numbers when left out).
        #[arg(long = "number")]
        numbers: Vec<String>,
    },
    /// List subscriptions, with items pending and dead letters.
    List,
    /// Forward again: every dead letter of subscription ID, or, with --since, every item
    /// of the webhooks Hourglass received from then (until --until, or now).
    Replay {
        id: i64,
        /// RFC 3339 or Unix seconds.
        #[arg(long)]
        since: Option<String>,
        /// RFC 3339 or Unix seconds; needs --since.
        #[arg(long, requires = "since")]
        until: Option<String>,
    },
}

#[derive(Subcommand)]
enum TemplatesCommand {
    /// Check templates (Meta's creation JSON: one object or an array per file) against
    /// Meta's published rules. Prints one line per finding and exits 1 if there is any.
    Lint {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create a key and print it (it is shown only once).
    Create {
        /// A name to recognise the key by.
        #[arg(long, default_value = "api")]
        label: String,
        /// Restrict the key to this business number (repeat for several). Without it, the key is an admin key.
        #[arg(long = "number")]
        numbers: Vec<String>,
    },
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("HOURGLASS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .init();
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutting down");
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn main() -> anyhow::Result<()> {
    init_logging();
    let cli = Cli::parse();
    // The runtime is sized by the configuration, so it is read before the runtime starts;
    // a command that needs it reports its error once it runs.
    let config = Config::load(cli.config.as_deref(), env);
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let workers = match &config {
        Ok(config) => config.worker_threads(cores),
        Err(_) => Config::default().worker_threads(cores),
    };
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(run(cli, config))
}

async fn run(cli: Cli, config: Result<Config, ConfigError>) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve => {
            let config = config?;
            let app = Application::build(config).await?;
            tracing::info!(port = app.port(), "hourglass is serving");
            app.run_until(shutdown_signal()).await
        }
        Command::Demo { database } => demo::run(config?, &database, shutdown_signal()).await,
        Command::Sandbox {
            listen,
            webhook_url,
        } => {
            let config = config?;
            let listener = tokio::net::TcpListener::bind(&listen)
                .await
                .with_context(|| format!("binding {listen}"))?;
            let address = listener.local_addr()?;
            let sandbox = hourglass_server::sandbox::Sandbox::new(
                webhook_url,
                config.meta.app_secret.clone(),
                config.sandbox.clone(),
            )
            .with_media_url_base(format!("http://{address}/sandbox/media/"));
            tracing::info!(%address, "the sandbox is serving the Graph API");
            axum::serve(
                listener,
                hourglass_server::sandbox::router(std::sync::Arc::new(sandbox)),
            )
            .with_graceful_shutdown(shutdown_signal())
            .await
            .context("serving the sandbox")
        }
        Command::Webhooks { command } => {
            let config = config?;
            let store = hourglass_store::connect(&config.database_url)
                .await
                .context("opening the database")?;
            match command {
                WebhooksCommand::Add {
                    url,
                    secret,
                    events,
                    numbers,
                } => {
                    let request = subscriptions::SubscriptionRequest {
                        url,
                        secret,
                        events: (!events.is_empty()).then_some(events),
                        phone_number_ids: (!numbers.is_empty()).then_some(numbers),
                    };
                    let new =
                        subscriptions::new_subscription(request).map_err(anyhow::Error::msg)?;
                    let created = store.forwarding().create_subscription(&new).await?;
                    println!("{}", subscriptions::subscription_json(&created));
                }
                WebhooksCommand::List => {
                    for s in store.forwarding().subscriptions().await? {
                        println!("{}", subscriptions::subscription_json(&s));
                    }
                }
                WebhooksCommand::Replay { id, since, until } => {
                    let forwarding = store.forwarding();
                    if !forwarding.subscriptions().await?.iter().any(|s| s.id == id) {
                        anyhow::bail!(
                            "there is no webhook subscription {id}: see `hourglass webhooks list`"
                        );
                    }
                    let at = time::now();
                    let instant = |name: &str, text: &str| {
                        time::parse_instant(text).map_err(|e| anyhow::anyhow!("--{name}: {e}"))
                    };
                    match since {
                        None => {
                            let replayed = forwarding.replay_dead_letters(id, at).await?;
                            println!("{}", serde_json::json!({"replayed": replayed}));
                        }
                        Some(since) => {
                            let since = instant("since", &since)?;
                            let until = match until {
                                Some(until) => instant("until", &until)?,
                                None => at.plus_seconds(1),
                            };
                            anyhow::ensure!(until > since, "--until must be after --since");
                            let (read, replayed) =
                                subscriptions::replay_raw(forwarding, id, since, until, at).await?;
                            println!(
                                "{}",
                                serde_json::json!({"replayed": replayed, "deliveries_read": read})
                            );
                        }
                    }
                }
            }
            Ok(())
        }
        Command::Templates {
            command: TemplatesCommand::Lint { files },
        } => match hourglass_server::templates::lint_files(&files) {
            Ok(findings) if findings.is_empty() => {
                eprintln!("{} file(s): no findings", files.len());
                Ok(())
            }
            Ok(findings) => {
                for line in &findings {
                    println!("{line}");
                }
                eprintln!("{} finding(s)", findings.len());
                std::process::exit(1)
            }
            Err(message) => {
                eprintln!("{message}");
                std::process::exit(2)
            }
        },
        Command::Keys {
            command: KeysCommand::Create { label, numbers },
        } => {
            let config = config?;
            let store = hourglass_store::connect(&config.database_url)
                .await
                .context("opening the database to store the key")?;
            let scope = (!numbers.is_empty()).then_some(numbers);
            let key = auth::create_key(store.as_ref(), &label, scope.clone(), time::now()).await?;
            println!("{key}");
            eprintln!(
                "Created {} key `{label}`. It is shown only this once: store it now.",
                match &scope {
                    None => "an admin".to_owned(),
                    Some(n) => format!("a key for {}", n.join(", ")),
                }
            );
            Ok(())
        }
    }
}
