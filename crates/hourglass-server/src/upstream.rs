//! Where accepted sends go: Meta's Graph API (or any server that speaks it, such as a
//! test's fake), or the built-in sandbox that answers like Meta and sends back the
//! statuses Meta would, through Hourglass's own `/webhook`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hourglass_meta::send::{build_status_webhook, StatusParams};
use hourglass_meta::{sign, SendRequest};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::config::{SandboxConfig, Secret};
use crate::time::now;

/// Meta's answer, passed back to the client as it is.
#[derive(Clone, Debug)]
pub struct UpstreamResponse {
    pub status: u16,
    pub body: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("could not reach the upstream Graph API at {url}: {reason}")]
    Unreachable { url: String, reason: String },
}

pub enum Upstream {
    GraphApi(GraphApi),
    Sandbox(Arc<Sandbox>),
}

impl Upstream {
    /// Sends a message request body, exactly as the client sent it.
    pub async fn send_message(
        &self,
        version: &str,
        phone_number_id: &str,
        body: &[u8],
        request: &SendRequest,
    ) -> Result<UpstreamResponse, UpstreamError> {
        match self {
            Upstream::GraphApi(graph) => graph.send_message(version, phone_number_id, body).await,
            Upstream::Sandbox(sandbox) => {
                Ok(sandbox.clone().send_message(phone_number_id, request))
            }
        }
    }
}

/// Template management (Meta: "Create and manage templates"): `POST`, `GET` and `DELETE`
/// on `/{waba_id}/message_templates`.
impl Upstream {
    pub async fn create_template(
        &self,
        waba_id: &str,
        body: &Value,
    ) -> Result<UpstreamResponse, UpstreamError> {
        match self {
            Upstream::GraphApi(graph) => {
                graph
                    .call(
                        reqwest::Method::POST,
                        &format!("{waba_id}/message_templates"),
                        &[],
                        Some(body.to_string().into_bytes()),
                    )
                    .await
            }
            Upstream::Sandbox(sandbox) => Ok(sandbox.clone().create_template(waba_id, body)),
        }
    }

    /// One page of the WABA's templates, after Meta's `after` cursor.
    pub async fn list_templates(
        &self,
        waba_id: &str,
        limit: u32,
        after: Option<&str>,
    ) -> Result<UpstreamResponse, UpstreamError> {
        match self {
            Upstream::GraphApi(graph) => {
                let limit = limit.to_string();
                let mut query = vec![("limit", limit.as_str())];
                if let Some(after) = after {
                    query.push(("after", after));
                }
                graph
                    .call(
                        reqwest::Method::GET,
                        &format!("{waba_id}/message_templates"),
                        &query,
                        None,
                    )
                    .await
            }
            Upstream::Sandbox(sandbox) => Ok(sandbox.list_templates(waba_id, limit, after)),
        }
    }

    /// Deletes a template in every language, or the one language whose Meta id is
    /// `hsm_id`.
    pub async fn delete_template(
        &self,
        waba_id: &str,
        name: &str,
        hsm_id: Option<&str>,
    ) -> Result<UpstreamResponse, UpstreamError> {
        match self {
            Upstream::GraphApi(graph) => {
                let mut query = vec![("name", name)];
                if let Some(id) = hsm_id {
                    query.push(("hsm_id", id));
                }
                graph
                    .call(
                        reqwest::Method::DELETE,
                        &format!("{waba_id}/message_templates"),
                        &query,
                        None,
                    )
                    .await
            }
            Upstream::Sandbox(sandbox) => Ok(sandbox.delete_template(waba_id, name, hsm_id)),
        }
    }
}

/// Media (Meta: "Media"): where a media id can be downloaded, the download itself (with
/// the access token), and uploads.
impl Upstream {
    /// `GET /{media_id}`: Meta's `{url, mime_type, sha256, file_size, id}`.
    pub async fn media_info(&self, media_id: &str) -> Result<UpstreamResponse, UpstreamError> {
        match self {
            Upstream::GraphApi(graph) => {
                graph.call(reqwest::Method::GET, media_id, &[], None).await
            }
            Upstream::Sandbox(sandbox) => Ok(sandbox.media_info(media_id)),
        }
    }

    /// The bytes behind a URL from [`Upstream::media_info`].
    pub async fn download(&self, url: &str) -> Result<UpstreamResponse, UpstreamError> {
        match self {
            Upstream::GraphApi(graph) => graph.get_url(url).await,
            Upstream::Sandbox(sandbox) => Ok(sandbox.download(url)),
        }
    }

    /// `POST /{version}/{phone_number_id}/media`, Meta's multipart upload, passed on as is.
    pub async fn upload_media(
        &self,
        version: &str,
        phone_number_id: &str,
        content_type: &str,
        body: &[u8],
    ) -> Result<UpstreamResponse, UpstreamError> {
        match self {
            Upstream::GraphApi(graph) => {
                graph
                    .upload(version, phone_number_id, content_type, body)
                    .await
            }
            Upstream::Sandbox(sandbox) => Ok(sandbox.upload(body)),
        }
    }
}

impl Upstream {
    /// Forwards a request that is not a message (a read receipt) as it is.
    pub async fn forward(
        &self,
        version: &str,
        phone_number_id: &str,
        body: &[u8],
    ) -> Result<UpstreamResponse, UpstreamError> {
        match self {
            Upstream::GraphApi(graph) => graph.send_message(version, phone_number_id, body).await,
            Upstream::Sandbox(_) => Ok(UpstreamResponse {
                status: 200,
                body: br#"{"success":true}"#.to_vec(),
            }),
        }
    }
}

pub struct GraphApi {
    client: reqwest::Client,
    base_url: String,
    access_token: Option<Secret>,
    /// The version of Hourglass's own calls (`v23.0`).
    version: String,
}

impl GraphApi {
    pub fn new(base_url: String, access_token: Option<Secret>, version: String) -> Self {
        GraphApi {
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("a TLS client builds with default settings"),
            base_url,
            access_token,
            version,
        }
    }

    /// One call of Hourglass's own to the Graph API, at its configured version.
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Result<UpstreamResponse, UpstreamError> {
        self.call_at(&self.version, method, path, query, body).await
    }

    async fn call_at(
        &self,
        version: &str,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Result<UpstreamResponse, UpstreamError> {
        let url = format!("{}/{version}/{path}", self.base_url);
        let mut request = self.client.request(method, &url).query(query);
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body);
        }
        if let Some(token) = &self.access_token {
            request = request.bearer_auth(token.expose());
        }
        let unreachable = |e: reqwest::Error| UpstreamError::Unreachable {
            url: url.clone(),
            reason: e.to_string(),
        };
        let response = request.send().await.map_err(unreachable)?;
        let status = response.status().as_u16();
        let body = response.bytes().await.map_err(unreachable)?.to_vec();
        Ok(UpstreamResponse { status, body })
    }

    /// A URL Meta gave (a media download), with the access token.
    async fn get_url(&self, url: &str) -> Result<UpstreamResponse, UpstreamError> {
        let mut request = self.client.get(url);
        if let Some(token) = &self.access_token {
            request = request.bearer_auth(token.expose());
        }
        let unreachable = |e: reqwest::Error| UpstreamError::Unreachable {
            url: url.to_owned(),
            reason: e.to_string(),
        };
        let response = request.send().await.map_err(unreachable)?;
        let status = response.status().as_u16();
        let body = response.bytes().await.map_err(unreachable)?.to_vec();
        Ok(UpstreamResponse { status, body })
    }

    async fn upload(
        &self,
        version: &str,
        phone_number_id: &str,
        content_type: &str,
        body: &[u8],
    ) -> Result<UpstreamResponse, UpstreamError> {
        let url = format!("{}/{version}/{phone_number_id}/media", self.base_url);
        let mut request = self
            .client
            .post(&url)
            .header("content-type", content_type)
            .body(body.to_vec());
        if let Some(token) = &self.access_token {
            request = request.bearer_auth(token.expose());
        }
        let unreachable = |e: reqwest::Error| UpstreamError::Unreachable {
            url: url.clone(),
            reason: e.to_string(),
        };
        let response = request.send().await.map_err(unreachable)?;
        let status = response.status().as_u16();
        let body = response.bytes().await.map_err(unreachable)?.to_vec();
        Ok(UpstreamResponse { status, body })
    }

    /// A send, at the version the client put in its path.
    async fn send_message(
        &self,
        version: &str,
        phone_number_id: &str,
        body: &[u8],
    ) -> Result<UpstreamResponse, UpstreamError> {
        self.call_at(
            version,
            reqwest::Method::POST,
            &format!("{phone_number_id}/messages"),
            &[],
            Some(body.to_vec()),
        )
        .await
    }
}

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
}

impl Sandbox {
    pub fn new(webhook_url: String, app_secret: Option<Secret>, settings: SandboxConfig) -> Self {
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
        }
    }

    /// Meta's answer about a media id: the sandbox's built-in voice note for ids that start
    /// with `sandbox-voice`, and what was uploaded to it; anything else does not exist.
    fn media_info(&self, media_id: &str) -> UpstreamResponse {
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
                "url": format!("sandbox://media/{media_id}"),
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

    fn download(&self, url: &str) -> UpstreamResponse {
        match url
            .strip_prefix("sandbox://media/")
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

    fn upload(&self, body: &[u8]) -> UpstreamResponse {
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
    fn create_template(self: Arc<Self>, waba_id: &str, body: &Value) -> UpstreamResponse {
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
    fn list_templates(&self, waba_id: &str, limit: u32, after: Option<&str>) -> UpstreamResponse {
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

    fn delete_template(&self, waba_id: &str, name: &str, hsm_id: Option<&str>) -> UpstreamResponse {
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

    fn send_message(
        self: Arc<Self>,
        phone_number_id: &str,
        request: &SendRequest,
    ) -> UpstreamResponse {
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
        tokio::spawn(async move {
            self.report_statuses(
                &phone_number_id,
                &message_id,
                &recipient,
                callback.as_deref(),
            )
            .await;
        });
        UpstreamResponse {
            status: 200,
            body: body.to_string().into_bytes(),
        }
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
        let mut waited = 0;
        for (at_ms, status) in steps {
            tokio::time::sleep(Duration::from_millis(at_ms.saturating_sub(waited))).await;
            waited = at_ms;
            let payload = build_status_webhook(&StatusParams {
                waba_id: "sandbox",
                phone_number_id,
                display_phone_number: phone_number_id,
                message_id,
                recipient_wa_id: recipient,
                recipient_user_id: None,
                status,
                timestamp: now().unix_seconds(),
                conversation: None,
                biz_opaque_callback_data: callback,
                pricing: None,
            });
            self.post_webhook(payload.to_string().into_bytes()).await;
        }
    }

    /// Posts a payload to Hourglass's webhook as Meta would, retrying a few times.
    pub async fn post_webhook(&self, body: Vec<u8>) {
        let Some(secret) = &self.app_secret else {
            tracing::warn!(
                "the sandbox cannot sign its status webhooks: set HOURGLASS_META_APP_SECRET"
            );
            return;
        };
        let signature = sign(secret.expose().as_bytes(), &body);
        for attempt in 0..5u64 {
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
                Err(e) => tracing::warn!(error = %e, "sandbox could not post its webhook"),
            }
            tokio::time::sleep(Duration::from_millis(200 * (attempt + 1))).await;
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
fn meta_error(code: i64, title: &str, details: &str) -> UpstreamResponse {
    let body = hourglass_meta::error_envelope(code, title, details, &crate::error::trace_id());
    UpstreamResponse {
        status: hourglass_meta::http_status_for(code),
        body: body.to_string().into_bytes(),
    }
}
