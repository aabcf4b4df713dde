//! Hourglass's HTTP server and its workers.
//!
//! It owns the edges: Meta's webhooks in (`/webhook`), the drop-in Cloud API endpoint
//! (`/{version}/{phone_number_id}/messages`), Hourglass's own `/v1` API, the sandbox
//! that plays Meta, configuration, API keys and the clock. It decides no rule itself:
//! every window and charge comes from `hourglass-core`, every row from `hourglass-store`,
//! and every Meta payload is read and written by `hourglass-meta`.

pub mod api;
pub mod app;
pub mod auth;
pub mod cloud_api;
pub mod config;
pub mod error;
pub mod fep_events;
pub mod forwarding;
pub mod ingest;
pub mod media;
pub mod metrics;
pub mod outbox;
pub mod request_log;
pub mod sandbox;
pub mod send_api;
pub mod subscriptions;
pub mod templates;
pub mod time;
pub mod upstream;
pub mod webhook;
pub mod window_events;
pub mod windows;

pub use app::{AppState, Application};
pub use config::Config;
