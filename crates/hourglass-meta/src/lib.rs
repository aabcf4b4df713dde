//! Meta's WhatsApp Cloud API wire formats, and nothing else: the webhook payloads Meta
//! sends (`messages`, `calls` and any other field), the `X-Hub-Signature-256` that signs
//! them, the Cloud API send request and response bodies, and Meta's error envelope.
//! Everything here is a pure function of bytes or values: this crate does no I/O, reads
//! no clock, touches no storage and speaks no HTTP. It does not know Hourglass's rules
//! either; callers convert these wire types into their own types by hand.
//!
//! Each mapping names the Meta documentation page it follows. Where Meta's payload is
//! not understood, the item is kept raw with a reason instead of failing the payload,
//! because Meta retries a refused webhook for days and one odd item must not block the
//! rest.

pub mod send;
pub mod signature;
pub mod webhook;

mod json;

pub use send::{
    build_inbound_webhook, build_status_webhook, error_envelope, http_status_for,
    parse_send_request, SendRequest, SendRequestError, SendResponse,
};
pub use signature::{sign, verify_signature, SignatureError};
pub use webhook::{parse_webhook, Webhook, WebhookError};
