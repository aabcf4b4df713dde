//! Where accepted sends go: Meta's Graph API (or any server that speaks it, such as a
//! test's fake, or a standalone `hourglass sandbox`), or the built-in sandbox (`sandbox`)
//! that answers like Meta and sends back the statuses Meta would, through Hourglass's own
//! `/webhook`.

use std::sync::Arc;
use std::time::Duration;

use hourglass_meta::SendRequest;
use serde_json::Value;

use crate::config::Secret;
pub use crate::sandbox::{Sandbox, SANDBOX_VOICE_NOTE};

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
                match sandbox.clone().send_message(phone_number_id, request) {
                    crate::sandbox::SandboxAnswer::Answer(answer) => Ok(answer),
                    crate::sandbox::SandboxAnswer::Lost => Err(UpstreamError::Unreachable {
                        url: "sandbox".into(),
                        reason:
                            "timed out (a sandbox fault: the send was accepted, its answer lost)"
                                .into(),
                    }),
                }
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
    pub fn new(
        base_url: String,
        access_token: Option<Secret>,
        version: String,
        timeout: Duration,
    ) -> Self {
        GraphApi {
            client: reqwest::Client::builder()
                .timeout(timeout)
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
        self.execute(request, &url).await
    }

    /// A URL Meta gave (a media download), with the access token.
    async fn get_url(&self, url: &str) -> Result<UpstreamResponse, UpstreamError> {
        self.execute(self.client.get(url), url).await
    }

    async fn upload(
        &self,
        version: &str,
        phone_number_id: &str,
        content_type: &str,
        body: &[u8],
    ) -> Result<UpstreamResponse, UpstreamError> {
        let url = format!("{}/{version}/{phone_number_id}/media", self.base_url);
        let request = self
            .client
            .post(&url)
            .header("content-type", content_type)
            .body(body.to_vec());
        self.execute(request, &url).await
    }

    /// Sends a request with the access token and reads Meta's whole answer.
    async fn execute(
        &self,
        mut request: reqwest::RequestBuilder,
        url: &str,
    ) -> Result<UpstreamResponse, UpstreamError> {
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
