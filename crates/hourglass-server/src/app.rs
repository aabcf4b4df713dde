//! The application value: built once from a [`Config`], bound to its port (port 0 in
//! tests), and run until a shutdown future resolves.

use std::future::Future;
use std::sync::Arc;

use anyhow::Context;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;
use hourglass_core::RuleSettings;
use hourglass_store::Store;
use tokio::net::TcpListener;

use crate::config::{Config, UpstreamConfig};
use crate::forwarding::ForwardingSwitch;
use crate::ingest::IngestQueue;
use crate::metrics::Metrics;
use crate::outbox::OutboxWorker;
use crate::request_log::LogRequestsLayer;
use crate::time::Calendars;
use crate::upstream::{GraphApi, Sandbox, Upstream};
use crate::{api, cloud_api, media, send_api, subscriptions, templates, webhook};

struct Inner {
    config: Config,
    store: Arc<dyn Store>,
    ingest: IngestQueue,
    upstream: Upstream,
    metrics: Arc<Metrics>,
    calendars: Calendars,
    outbox_worker: OutboxWorker,
    forwarding: ForwardingSwitch,
}

/// Everything a request handler may use, passed explicitly.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

impl AppState {
    pub fn config(&self) -> &Config {
        &self.0.config
    }
    pub fn store(&self) -> &dyn Store {
        self.0.store.as_ref()
    }
    pub fn ingest(&self) -> &IngestQueue {
        &self.0.ingest
    }
    pub fn upstream(&self) -> &Upstream {
        &self.0.upstream
    }
    pub fn metrics(&self) -> &Metrics {
        &self.0.metrics
    }
    pub fn calendars(&self) -> &Calendars {
        &self.0.calendars
    }
    pub fn outbox_worker(&self) -> &OutboxWorker {
        &self.0.outbox_worker
    }
    pub fn forwarding(&self) -> &ForwardingSwitch {
        &self.0.forwarding
    }
    /// Whether webhooks should carry payloads to forward (some subscription exists).
    pub fn forwarding_enabled(&self) -> bool {
        self.0.forwarding.enabled()
    }
    pub fn rule_settings(&self) -> RuleSettings {
        RuleSettings {
            reactions_open_window: self.0.config.reactions_open_window,
        }
    }
}

pub struct Application {
    listener: TcpListener,
    router: Router,
    port: u16,
    state: AppState,
}

impl Application {
    /// Opens the database (applying migrations), binds the listener and assembles the
    /// routes. Nothing is served until [`Application::run_until`].
    pub async fn build(config: Config) -> anyhow::Result<Application> {
        let listen = config.listen_addr()?;
        let store = hourglass_store::connect(&config.database_url)
            .await
            .with_context(|| {
                format!("opening the database {}", redact_url(&config.database_url))
            })?;
        let listener = TcpListener::bind(listen)
            .await
            .with_context(|| format!("binding {listen} (HOURGLASS_LISTEN)"))?;
        let port = listener.local_addr()?.port();
        let upstream = match config.upstream()? {
            UpstreamConfig::GraphApi { base_url } => Upstream::GraphApi(GraphApi::new(
                base_url,
                config.meta.access_token.clone(),
                config.meta.graph_version.clone(),
                std::time::Duration::from_millis(config.meta.request_timeout_ms),
            )),
            UpstreamConfig::Sandbox => {
                if config.meta.app_secret.is_none() {
                    tracing::warn!("sandbox upstream without HOURGLASS_META_APP_SECRET: its status webhooks will be refused");
                }
                Upstream::Sandbox(Arc::new(Sandbox::new(
                    format!("http://127.0.0.1:{port}/webhook"),
                    config.meta.app_secret.clone(),
                    config.sandbox.clone(),
                )))
            }
        };
        let metrics = Arc::new(Metrics::default());
        // The batch bound and the writer count apply where the queue batches (PostgreSQL);
        // SQLite's writer thread gathers deliveries itself.
        let ingest = IngestQueue::start(
            store.clone(),
            config.ingest_batch_max,
            config.ingest_writers,
            metrics.clone(),
        );
        let state = AppState(Arc::new(Inner {
            config,
            store,
            ingest,
            upstream,
            metrics,
            calendars: Calendars::default(),
            outbox_worker: OutboxWorker::default(),
            forwarding: ForwardingSwitch::default(),
        }));
        // Whether subscriptions exist is known before the first webhook is read.
        let subscribed = !state.store().forwarding().subscriptions().await?.is_empty();
        state.forwarding().set(subscribed);
        tokio::spawn(crate::outbox::run(state.clone()));
        tokio::spawn(crate::forwarding::run(state.clone()));
        tokio::spawn(crate::window_events::run(state.clone()));
        tokio::spawn(crate::media::run(state.clone()));
        let router = router(state.clone());
        Ok(Application {
            listener,
            router,
            port,
            state,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` resolves, then finishes the requests in flight.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(shutdown)
            .await
            .context("serving HTTP")
    }
}

/// The database URL without its password, for messages.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

fn router(state: AppState) -> Router {
    let webhook_limit = state.config().max_webhook_bytes;
    Router::new()
        .route(
            "/webhook",
            get(webhook::verify_subscription)
                .post(webhook::receive_webhook)
                .layer(DefaultBodyLimit::max(webhook_limit)),
        )
        .route(
            "/{version}/{phone_number_id}/messages",
            post(cloud_api::send_message),
        )
        .route(
            "/{version}/{phone_number_id}/media",
            post(media::upload_media).layer(DefaultBodyLimit::max(100 * 1024 * 1024)),
        )
        .route("/v1/media/{media_id}", get(media::serve_media))
        .route(
            "/v1/numbers/{phone_number_id}",
            get(api::get_number).put(api::put_number),
        )
        .route(
            "/v1/numbers/{phone_number_id}/contacts/{contact}/window",
            get(api::contact_window),
        )
        .route(
            "/v1/numbers/{phone_number_id}/contacts/{contact}/messages",
            get(api::contact_messages).post(send_api::send_to_contact),
        )
        .route(
            "/v1/numbers/{phone_number_id}/outbox/{id}",
            get(send_api::outbox_message),
        )
        .route(
            "/v1/templates",
            get(templates::list_templates).post(templates::create_template),
        )
        .route(
            "/v1/webhooks",
            get(subscriptions::list).post(subscriptions::create),
        )
        .route(
            "/v1/webhooks/{id}",
            axum::routing::delete(subscriptions::delete),
        )
        .route(
            "/v1/webhooks/{id}/dead-letters",
            get(subscriptions::dead_letters),
        )
        .route("/v1/webhooks/{id}/replay", post(subscriptions::replay))
        .route("/v1/templates/lint", post(templates::lint_templates))
        .route("/v1/templates/sync", post(templates::sync_templates))
        .route(
            "/v1/templates/{name}",
            axum::routing::delete(templates::delete_template),
        )
        .route(
            "/v1/templates/{name}/{language}",
            get(templates::get_template),
        )
        .route(
            "/v1/templates/{name}/{language}/preview",
            post(templates::preview_template),
        )
        .route(
            "/v1/numbers/{phone_number_id}/windows",
            get(api::closing_windows),
        )
        .route("/healthz", get(api::healthz))
        .route("/metrics", get(api::metrics))
        .route("/openapi.json", get(api::openapi))
        .fallback(api::not_found)
        .layer(LogRequestsLayer)
        .with_state(state)
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn passwords_are_hidden_in_database_urls() {
        assert_eq!(redact_url("postgres://u:pw@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact_url("sqlite://x.db"), "sqlite://x.db");
    }
}
