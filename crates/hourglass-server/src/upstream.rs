//! Where accepted sends go: Meta's Graph API (or any server that speaks it, such as a
//! test's fake), or the built-in sandbox that answers like Meta and sends back the
//! statuses Meta would, through Hourglass's own `/webhook`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hourglass_meta::send::{build_status_webhook, StatusParams};
use hourglass_meta::{sign, SendRequest};
use serde_json::json;

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
}

impl GraphApi {
    pub fn new(base_url: String, access_token: Option<Secret>) -> Self {
        GraphApi {
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("a TLS client builds with default settings"),
            base_url,
            access_token,
        }
    }

    async fn send_message(
        &self,
        version: &str,
        phone_number_id: &str,
        body: &[u8],
    ) -> Result<UpstreamResponse, UpstreamError> {
        let url = format!("{}/{version}/{phone_number_id}/messages", self.base_url);
        let mut request = self
            .client
            .post(&url)
            .header("content-type", "application/json")
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
}

/// Meta, played locally: accepts every send it is given, answers with a fresh `wamid.`,
/// and posts the `sent`, `delivered` and `read` statuses to Hourglass's own webhook,
/// signed with the app secret, so they take the same path as Meta's.
pub struct Sandbox {
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
        tokio::spawn(async move {
            self.report_statuses(&phone_number_id, &message_id, &recipient)
                .await;
        });
        UpstreamResponse {
            status: 200,
            body: body.to_string().into_bytes(),
        }
    }

    async fn report_statuses(&self, phone_number_id: &str, message_id: &str, recipient: &str) {
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
