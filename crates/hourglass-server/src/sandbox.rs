//! The sandbox: Meta, played locally. It accepts sends and answers like the Cloud API
//! with fresh `wamid.` ids, posts the `sent`, `delivered` and `read` statuses back through
//! a signed webhook (echoing `biz_opaque_callback_data`, as Meta does), reviews new
//! templates, and serves media (a real Ogg Opus voice note among them). It runs inside
//! `hourglass serve` (`HOURGLASS_UPSTREAM=sandbox`, and `hourglass demo`), or on its own
//! (`hourglass sandbox`), where it speaks HTTP like the Graph API and can inject faults
//! (errors, timeouts, duplicated and reordered statuses) and count what it accepted.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hourglass_meta::send::{build_status_webhook, StatusParams};
use hourglass_meta::{sign, SendRequest};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::config::{SandboxConfig, Secret};
use crate::time::now;
use crate::upstream::UpstreamResponse;

/// Meta, played locally: accepts every send it is given, answers with a fresh `wamid.`,
/// and posts the `sent`, `delivered` and `read` statuses to Hourglass's own webhook,
/// signed with the app secret, so they take the same path as Meta's.
pub struct Sandbox {
    /// Media uploaded to the sandbox (the raw upload bodies), by id.
    uploads: std::sync::Mutex<std::collections::HashMap<String, Vec<u8>>>,
    /// The templates created in the sandbox, per WABA, in creation order.
    templates: std::sync::Mutex<std::collections::HashMap<String, Vec<SandboxTemplate>>>,
    webhook_url: String,
    app_secret: Option<Secret>,
    settings: SandboxConfig,
    client: reqwest::Client,
    sequence: AtomicU64,
    instance: String,
    /// Where media downloads are served: `sandbox://media/` in process, the standalone
    /// sandbox's own URL over HTTP.
    media_url_base: String,
    /// xorshift state for fault draws.
    draws: std::sync::Mutex<u64>,
    stats: std::sync::Mutex<SandboxStats>,
}

/// What the sandbox saw, for tests and soaks (`GET /sandbox/stats` when standalone).
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct SandboxStats {
    /// Send requests received.
    pub requests: u64,
    /// Sends accepted (answered or lost), in all.
    pub accepted: u64,
    /// Accepted sends by their `biz_opaque_callback_data` (or Meta id when none).
    pub accepted_by_key: std::collections::HashMap<String, u32>,
    /// Faults injected, by kind.
    pub faults: std::collections::HashMap<&'static str, u64>,
    /// Status webhooks posted (duplicates included).
    pub statuses_posted: u64,
}

/// What a send gets from the sandbox.
pub enum SandboxAnswer {
    Answer(UpstreamResponse),
    /// Accepted, but the answer is lost (a timeout fault).
    Lost,
}

impl Sandbox {
    pub fn new(webhook_url: String, app_secret: Option<Secret>, settings: SandboxConfig) -> Self {
        let settings_seed = settings.faults.seed;
        let mut seed = [0u8; 6];
        getrandom::fill(&mut seed).expect("the OS has a random source");
        Sandbox {
            webhook_url,
            app_secret,
            settings,
            client: reqwest::Client::new(),
            sequence: AtomicU64::new(0),
            instance: hex::encode_upper(seed),
            templates: Default::default(),
            uploads: Default::default(),
            media_url_base: "sandbox://media/".into(),
            draws: std::sync::Mutex::new(match settings_seed {
                0 => {
                    u64::from_le_bytes({
                        let mut b = [0u8; 8];
                        getrandom::fill(&mut b).expect("the OS has a random source");
                        b
                    }) | 1
                }
                seed => seed,
            }),
            stats: Default::default(),
        }
    }

    /// The sandbox serving media downloads from `base` (`http://host:port/sandbox/media/`).
    pub fn with_media_url_base(mut self, base: String) -> Self {
        self.media_url_base = base;
        self
    }

    pub fn stats(&self) -> SandboxStats {
        self.stats.lock().expect("sandbox lock").clone()
    }

    /// A uniform draw in [0, 1).
    fn draw(&self) -> f64 {
        let mut state = self.draws.lock().expect("sandbox lock");
        let mut x = *state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *state = x;
        (x >> 11) as f64 / (1u64 << 53) as f64
    }

    fn count_fault(&self, kind: &'static str) {
        *self
            .stats
            .lock()
            .expect("sandbox lock")
            .faults
            .entry(kind)
            .or_default() += 1;
    }

    /// Meta's answer about a media id: the sandbox's built-in voice note for ids that start
    /// with `sandbox-voice`, and what was uploaded to it; anything else does not exist.
    pub(crate) fn media_info(&self, media_id: &str) -> UpstreamResponse {
        let Some(bytes) = self.media_bytes(media_id) else {
            return meta_error(
                100,
                "Invalid parameter",
                &format!("Unsupported get request. Object with ID '{media_id}' does not exist"),
            );
        };
        let mime = if media_id.starts_with("sandbox-voice") {
            "audio/ogg; codecs=opus"
        } else {
            "application/octet-stream"
        };
        UpstreamResponse {
            status: 200,
            body: json!({
                "messaging_product": "whatsapp",
                "url": format!("{}{media_id}", self.media_url_base),
                "mime_type": mime,
                "sha256": hex::encode(Sha256::digest(&bytes)),
                "file_size": bytes.len(),
                "id": media_id,
            })
            .to_string()
            .into_bytes(),
        }
    }

    fn media_bytes(&self, media_id: &str) -> Option<Vec<u8>> {
        if media_id.starts_with("sandbox-voice") {
            return Some(SANDBOX_VOICE_NOTE.to_vec());
        }
        self.uploads
            .lock()
            .expect("sandbox lock")
            .get(media_id)
            .cloned()
    }

    pub(crate) fn download(&self, url: &str) -> UpstreamResponse {
        match url
            .strip_prefix(self.media_url_base.as_str())
            .and_then(|id| self.media_bytes(id))
        {
            Some(bytes) => UpstreamResponse {
                status: 200,
                body: bytes,
            },
            None => UpstreamResponse {
                status: 404,
                body: b"not found".to_vec(),
            },
        }
    }

    pub(crate) fn upload(&self, body: &[u8]) -> UpstreamResponse {
        let n = self.sequence.fetch_add(1, Ordering::Relaxed);
        let id = format!("sandbox-upload-{}{n:010}", self.instance);
        self.uploads
            .lock()
            .expect("sandbox lock")
            .insert(id.clone(), body.to_vec());
        UpstreamResponse {
            status: 200,
            body: json!({"id": id}).to_string().into_bytes(),
        }
    }

    fn next_template_id(&self) -> String {
        // Meta's template ids are 15 to 16 digits.
        let n = self.sequence.fetch_add(1, Ordering::Relaxed);
        format!("9{:015}", n)
    }

    /// Takes a creation as Meta does: `PENDING` at once, then a review that approves it,
    /// or rejects it (`INVALID_FORMAT`) when it breaks Meta's rules, with the status
    /// webhook Meta would send.
    pub(crate) fn create_template(
        self: Arc<Self>,
        waba_id: &str,
        body: &Value,
    ) -> UpstreamResponse {
        let name = body.get("name").and_then(Value::as_str).unwrap_or("");
        let language = body.get("language").and_then(Value::as_str).unwrap_or("");
        let category = body
            .get("category")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_ascii_uppercase();
        if name.is_empty() || language.is_empty() || category.is_empty() {
            return meta_error(
                100,
                "Invalid parameter",
                "a template needs `name`, `language` and `category`",
            );
        }
        let findings = hourglass_meta::template::lint_template_json(body);
        let id = {
            let mut templates = self.templates.lock().expect("sandbox lock");
            let list = templates.entry(waba_id.to_owned()).or_default();
            if list
                .iter()
                .any(|t| t.name == name && t.language == language)
            {
                return meta_error(
                    100,
                    "Invalid parameter",
                    &format!("Content in this language already exists: a template `{name}` in `{language}` exists"),
                );
            }
            let id = self.next_template_id();
            let mut definition = body.clone();
            definition["id"] = json!(id);
            definition["status"] = json!("PENDING");
            definition["category"] = json!(category);
            list.push(SandboxTemplate {
                id: id.clone(),
                name: name.to_owned(),
                language: language.to_owned(),
                definition,
            });
            id
        };
        let verdict = if findings.is_empty() {
            ("APPROVED", None)
        } else {
            ("REJECTED", Some("INVALID_FORMAT"))
        };
        let waba_id = waba_id.to_owned();
        let (template_id, name, language) = (id.clone(), name.to_owned(), language.to_owned());
        let category_for_webhook = category.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(self.settings.template_review_ms)).await;
            if !self.set_template_status(&waba_id, &template_id, verdict.0) {
                return; // deleted while in review
            }
            let payload = json!({
                "object": "whatsapp_business_account",
                "entry": [{
                    "id": waba_id,
                    "time": now().unix_seconds(),
                    "changes": [{
                        "field": "message_template_status_update",
                        "value": {
                            "event": verdict.0,
                            "message_template_id": template_id.parse::<u64>().unwrap_or(0),
                            "message_template_name": name,
                            "message_template_language": language,
                            "message_template_category": category_for_webhook,
                            "reason": verdict.1,
                        }
                    }]
                }]
            });
            self.post_webhook(payload.to_string().into_bytes()).await;
        });
        UpstreamResponse {
            status: 200,
            body: json!({"id": id, "status": "PENDING", "category": category})
                .to_string()
                .into_bytes(),
        }
    }

    fn set_template_status(&self, waba_id: &str, template_id: &str, status: &str) -> bool {
        let mut templates = self.templates.lock().expect("sandbox lock");
        let Some(t) = templates
            .get_mut(waba_id)
            .and_then(|list| list.iter_mut().find(|t| t.id == template_id))
        else {
            return false;
        };
        t.definition["status"] = json!(status);
        true
    }

    /// Meta's list answer: `data`, and `paging` with `cursors` and, while there is more,
    /// `next`.
    pub(crate) fn list_templates(
        &self,
        waba_id: &str,
        limit: u32,
        after: Option<&str>,
    ) -> UpstreamResponse {
        let templates = self.templates.lock().expect("sandbox lock");
        let all = templates.get(waba_id).map(Vec::as_slice).unwrap_or(&[]);
        let start = after.and_then(|a| a.parse::<usize>().ok()).unwrap_or(0);
        let limit = (limit.clamp(1, 1000)) as usize;
        let page: Vec<Value> = all
            .iter()
            .skip(start)
            .take(limit)
            .map(|t| t.definition.clone())
            .collect();
        let end = start + page.len();
        let mut paging =
            json!({"cursors": {"before": start.to_string(), "after": end.to_string()}});
        if end < all.len() {
            paging["next"] = json!(format!(
                "https://graph.facebook.com/v23.0/{waba_id}/message_templates?limit={limit}&after={end}"
            ));
        }
        UpstreamResponse {
            status: 200,
            body: json!({"data": page, "paging": paging})
                .to_string()
                .into_bytes(),
        }
    }

    pub(crate) fn delete_template(
        &self,
        waba_id: &str,
        name: &str,
        hsm_id: Option<&str>,
    ) -> UpstreamResponse {
        let mut templates = self.templates.lock().expect("sandbox lock");
        let list = templates.entry(waba_id.to_owned()).or_default();
        let before = list.len();
        list.retain(|t| !(t.name == name && hsm_id.is_none_or(|id| id == t.id)));
        if list.len() == before {
            return meta_error(
                100,
                "Invalid parameter",
                &format!("Message template \"{name}\" can't be deleted: it does not exist"),
            );
        }
        UpstreamResponse {
            status: 200,
            body: br#"{"success":true}"#.to_vec(),
        }
    }

    pub(crate) fn send_message(
        self: Arc<Self>,
        phone_number_id: &str,
        request: &SendRequest,
    ) -> SandboxAnswer {
        self.stats.lock().expect("sandbox lock").requests += 1;
        let faults = &self.settings.faults;
        let draw = self.draw();
        let mut threshold = 0.0;
        for (rate, kind, code, status, title) in [
            (
                faults.server_error_rate,
                "server_error",
                131000,
                500,
                "Something went wrong",
            ),
            (
                faults.throughput_error_rate,
                "throughput",
                130429,
                429,
                "Rate limit hit",
            ),
            (
                faults.pair_limit_error_rate,
                "pair_limit",
                131056,
                400,
                "(Business Account, Consumer Account) pair rate limit hit",
            ),
        ] {
            threshold += rate;
            if draw < threshold {
                self.count_fault(kind);
                let mut answer = meta_error(code, title, "injected by the sandbox");
                answer.status = status;
                return SandboxAnswer::Answer(answer);
            }
        }
        let lost = draw < threshold + faults.timeout_rate;
        if lost {
            self.count_fault("timeout");
        }

        let n = self.sequence.fetch_add(1, Ordering::Relaxed);
        let message_id = format!("wamid.SANDBOX{}{n:010}", self.instance);
        let input = request
            .to
            .clone()
            .or_else(|| request.recipient.clone())
            .unwrap_or_default();
        let wa_id = request.recipient_wa_id();
        let mut contact = json!({"input": input});
        match (&wa_id, &request.recipient) {
            (Some(wa_id), _) => contact["wa_id"] = json!(wa_id),
            (None, Some(user_id)) => contact["user_id"] = json!(user_id),
            (None, None) => {}
        }
        let mut message = json!({"id": message_id});
        if request.is_template() {
            message["message_status"] = json!("accepted");
        }
        let body = json!({
            "messaging_product": "whatsapp",
            "contacts": [contact],
            "messages": [message],
        });
        let recipient = wa_id.unwrap_or_default();
        let phone_number_id = phone_number_id.to_owned();
        // Meta echoes the sender's opaque callback data on every status.
        let callback = request
            .raw
            .get("biz_opaque_callback_data")
            .and_then(Value::as_str)
            .map(str::to_owned);
        {
            let mut stats = self.stats.lock().expect("sandbox lock");
            stats.accepted += 1;
            *stats
                .accepted_by_key
                .entry(callback.clone().unwrap_or_else(|| message_id.clone()))
                .or_default() += 1;
        }
        tokio::spawn(async move {
            self.report_statuses(
                &phone_number_id,
                &message_id,
                &recipient,
                callback.as_deref(),
            )
            .await;
        });
        if lost {
            return SandboxAnswer::Lost;
        }
        SandboxAnswer::Answer(UpstreamResponse {
            status: 200,
            body: body.to_string().into_bytes(),
        })
    }

    async fn report_statuses(
        &self,
        phone_number_id: &str,
        message_id: &str,
        recipient: &str,
        callback: Option<&str>,
    ) {
        let mut steps = vec![
            (0u64, "sent"),
            (self.settings.delivered_after_ms, "delivered"),
        ];
        if self.settings.read_after_ms > 0 {
            steps.push((
                self.settings
                    .read_after_ms
                    .max(self.settings.delivered_after_ms),
                "read",
            ));
        }
        let start = now().unix_seconds();
        let mut payloads = Vec::new();
        let mut waited = 0;
        let reorder = self.settings.faults.reorder_statuses;
        for (at_ms, status) in steps {
            let payload = build_status_webhook(&StatusParams {
                waba_id: "sandbox",
                phone_number_id,
                display_phone_number: phone_number_id,
                message_id,
                recipient_wa_id: recipient,
                recipient_user_id: None,
                status,
                timestamp: start + (at_ms / 1000) as i64,
                conversation: None,
                biz_opaque_callback_data: callback,
                pricing: None,
            })
            .to_string()
            .into_bytes();
            if reorder {
                // Held back, then sent last first.
                payloads.push(payload);
                continue;
            }
            tokio::time::sleep(Duration::from_millis(at_ms.saturating_sub(waited))).await;
            waited = at_ms;
            self.post_status(payload).await;
        }
        if reorder {
            tokio::time::sleep(Duration::from_millis(
                self.settings
                    .read_after_ms
                    .max(self.settings.delivered_after_ms),
            ))
            .await;
            for payload in payloads.into_iter().rev() {
                self.post_status(payload).await;
            }
        }
    }

    async fn post_status(&self, payload: Vec<u8>) {
        let twice = self.draw() < self.settings.faults.duplicate_status_rate;
        if twice {
            self.count_fault("duplicate_status");
            self.post_webhook(payload.clone()).await;
            self.stats.lock().expect("sandbox lock").statuses_posted += 1;
        }
        self.post_webhook(payload).await;
        self.stats.lock().expect("sandbox lock").statuses_posted += 1;
    }

    /// Posts a payload to Hourglass's webhook as Meta would, retrying (for up to a minute
    /// here; Meta keeps at it for days) until it is answered 200.
    pub async fn post_webhook(&self, body: Vec<u8>) {
        let Some(secret) = &self.app_secret else {
            tracing::warn!(
                "the sandbox cannot sign its status webhooks: set HOURGLASS_META_APP_SECRET"
            );
            return;
        };
        let signature = sign(secret.expose().as_bytes(), &body);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        let mut attempt = 0u64;
        loop {
            let result = self
                .client
                .post(&self.webhook_url)
                .header("content-type", "application/json")
                .header("x-hub-signature-256", &signature)
                .body(body.clone())
                .send()
                .await;
            match result {
                Ok(r) if r.status().is_success() => return,
                Ok(r) => tracing::warn!(status = %r.status(), "sandbox webhook was not accepted"),
                Err(e) => tracing::debug!(error = %e, "sandbox could not post its webhook"),
            }
            attempt += 1;
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!("sandbox gave up posting a webhook after a minute");
                return;
            }
            tokio::time::sleep(Duration::from_millis((100 * attempt).min(1000))).await;
        }
    }
}

/// A real Ogg Opus voice note (one second of silence), which the sandbox serves for
/// media ids starting with `sandbox-voice` (see `scripts/make-sandbox-voice-note.py`).
pub const SANDBOX_VOICE_NOTE: &[u8] = include_bytes!("../assets/sandbox-voice-note.ogg");

/// A template as the sandbox keeps it: Meta's JSON of it, with `id` and `status`.
struct SandboxTemplate {
    id: String,
    name: String,
    language: String,
    definition: Value,
}

/// An answer in Meta's error envelope, as the sandbox gives it.
pub(crate) fn meta_error(code: i64, title: &str, details: &str) -> UpstreamResponse {
    let body = hourglass_meta::error_envelope(code, title, details, &crate::error::trace_id());
    UpstreamResponse {
        status: hourglass_meta::http_status_for(code),
        body: body.to_string().into_bytes(),
    }
}

// ---- The standalone sandbox: the Graph API over HTTP ------------------------------------

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

fn respond(answer: UpstreamResponse) -> Response {
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::OK);
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        answer.body,
    )
        .into_response()
}

async fn http_send(
    State(sandbox): State<Arc<Sandbox>>,
    Path((_version, number)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let request = match hourglass_meta::parse_send_request(&body) {
        Ok(request) => request,
        Err(error) => return respond(meta_error(100, "Invalid parameter", &error.to_string())),
    };
    let timeout = Duration::from_millis(sandbox.settings.faults.timeout_ms);
    match sandbox.clone().send_message(&number, &request) {
        SandboxAnswer::Answer(answer) => respond(answer),
        SandboxAnswer::Lost => {
            // Later than the client waits: it sees a timeout, though the send went out.
            tokio::time::sleep(timeout).await;
            respond(meta_error(
                131000,
                "Something went wrong",
                "answered too late",
            ))
        }
    }
}

async fn http_templates(
    State(sandbox): State<Arc<Sandbox>>,
    Path((_version, waba)): Path<(String, String)>,
    Query(query): Query<std::collections::HashMap<String, String>>,
    method: axum::http::Method,
    body: Bytes,
) -> Response {
    match method {
        axum::http::Method::POST => match serde_json::from_slice::<Value>(&body) {
            Ok(definition) => respond(sandbox.clone().create_template(&waba, &definition)),
            Err(e) => respond(meta_error(100, "Invalid parameter", &e.to_string())),
        },
        axum::http::Method::DELETE => respond(sandbox.delete_template(
            &waba,
            query.get("name").map(String::as_str).unwrap_or(""),
            query.get("hsm_id").map(String::as_str),
        )),
        _ => respond(
            sandbox.list_templates(
                &waba,
                query
                    .get("limit")
                    .and_then(|l| l.parse().ok())
                    .unwrap_or(25),
                query.get("after").map(String::as_str),
            ),
        ),
    }
}

async fn http_media_info(
    State(sandbox): State<Arc<Sandbox>>,
    Path((_version, media_id)): Path<(String, String)>,
) -> Response {
    respond(sandbox.media_info(&media_id))
}

async fn http_download(
    State(sandbox): State<Arc<Sandbox>>,
    Path(media_id): Path<String>,
) -> Response {
    let answer = sandbox.download(&format!("{}{media_id}", sandbox.media_url_base));
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::OK);
    (status, answer.body).into_response()
}

async fn http_upload(State(sandbox): State<Arc<Sandbox>>, body: Bytes) -> Response {
    respond(sandbox.upload(&body))
}

async fn http_stats(State(sandbox): State<Arc<Sandbox>>) -> Response {
    axum::Json(sandbox.stats()).into_response()
}

/// The sandbox as an HTTP server speaking the Graph API (`hourglass sandbox`), with
/// `GET /sandbox/stats` to see what it accepted.
pub fn router(sandbox: Arc<Sandbox>) -> axum::Router {
    axum::Router::new()
        .route("/{version}/{number}/messages", post(http_send))
        .route(
            "/{version}/{waba}/message_templates",
            get(http_templates)
                .post(http_templates)
                .delete(http_templates),
        )
        .route("/{version}/{number}/media", post(http_upload))
        .route("/{version}/{media_id}", get(http_media_info))
        .route("/sandbox/media/{media_id}", get(http_download))
        .route("/sandbox/stats", get(http_stats))
        .with_state(sandbox)
}
