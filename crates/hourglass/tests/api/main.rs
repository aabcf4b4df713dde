//! End-to-end tests over real HTTP against the real server, each run on SQLite and on
//! PostgreSQL, with a local fake of Meta's Graph API.

mod helpers;

mod bad_input;
mod forwarding;
mod media;
mod outbox;
mod pywa;
mod send_flow;
mod templates;
mod window_api;
