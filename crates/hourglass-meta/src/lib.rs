//! Meta's WhatsApp Cloud API wire formats, and nothing else: the webhook payloads Meta
//! sends (`messages`, `calls`, the template fields and any other), the
//! `X-Hub-Signature-256` that signs them, the Cloud API send request and response bodies,
//! Meta's template JSON (creation, list items, a send's `components`), and Meta's error
//! envelope. Everything here is a pure function of bytes or values: this crate does no
//! I/O, reads no clock, touches no storage and speaks no HTTP. It decides no rule either:
//! template JSON is converted into `hourglass-core`'s template types, where the linter and
//! renderer live, and Meta's error codes are attached to their verdicts here.
//!
//! Each mapping names the Meta documentation page it follows. Where Meta's payload is
//! not understood, the item is kept raw with a reason instead of failing the payload,
//! because Meta retries a refused webhook for days and one odd item must not block the
//! rest.

pub mod send;
pub mod signature;
pub mod template;
pub mod webhook;

mod json;

pub use send::{
    build_inbound_webhook, build_status_webhook, error_envelope, http_status_for,
    parse_send_request, SendRequest, SendRequestError, SendResponse,
};
pub use signature::{sign, verify_signature, SignatureError};
pub use template::{
    components_from_render_params, lint_template_json, parse_template_definition,
    render_error_code, render_params_from_components, render_params_from_plain, template_info,
    ComponentsError, MetaTemplateInfo, TemplateJsonError,
};
pub use webhook::{parse_webhook, Webhook, WebhookError};
