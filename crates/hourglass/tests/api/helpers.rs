//! `spawn_app()`: the real server on port 0 against a fresh database (a SQLite file or a
//! fresh PostgreSQL database) and a local fake of Meta's Graph API.

use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use hourglass_meta::send::{
    build_inbound_webhook, build_status_webhook, InboundTextParams, StatusParams,
};
use hourglass_server::config::Secret;
use hourglass_server::{Application, Config};
use hourglass_store::{Store, StoreCounts};
use serde_json::{json, Value};
use sqlx::Connection;

pub const NUMBER: &str = "106540352242922";
pub const DISPLAY: &str = "15550783881";
pub const WABA: &str = "102290129340398";
pub const ACCESS_TOKEN: &str = "meta-access-token-for-tests";

#[derive(Clone, Copy, Debug)]
pub enum Db {
    Sqlite,
    Postgres,
}

/// A request the fake Graph API received.
#[derive(Clone, Debug)]
pub struct MetaCall {
    pub path: String,
    pub authorization: Option<String>,
    pub body: Value,
}

/// Meta's Graph API, faked: records every call and answers like Meta.
#[derive(Clone, Default)]
pub struct FakeMeta {
    calls: Arc<Mutex<Vec<MetaCall>>>,
    /// What `GET /{waba}/message_templates` lists, one item per template.
    templates: Arc<Mutex<Vec<Value>>>,
    /// Failures to answer the next sends with, in order: HTTP status and Meta's code.
    failures: Arc<Mutex<std::collections::VecDeque<(u16, i64)>>>,
}

impl FakeMeta {
    pub fn calls(&self) -> Vec<MetaCall> {
        self.calls.lock().unwrap().clone()
    }

    /// Makes the next sends fail, one failure each, as Meta would answer them.
    pub fn fail_next(&self, failures: &[(u16, i64)]) {
        self.failures
            .lock()
            .unwrap()
            .extend(failures.iter().copied());
    }

    /// Sets the templates Meta lists for every WABA.
    pub fn set_templates(&self, templates: Vec<Value>) {
        *self.templates.lock().unwrap() = templates;
    }
}

/// Meta's template list, one template per page (so that every sync reads several pages).
async fn fake_list_templates(
    State(fake): State<FakeMeta>,
    Path((version, waba)): Path<(String, String)>,
    axum::extract::Query(query): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> Json<Value> {
    let templates = fake.templates.lock().unwrap().clone();
    let start: usize = query.get("after").and_then(|a| a.parse().ok()).unwrap_or(0);
    let data: Vec<Value> = templates.iter().skip(start).take(1).cloned().collect();
    let end = start + data.len();
    let mut paging = json!({"cursors": {"before": start.to_string(), "after": end.to_string()}});
    if end < templates.len() {
        paging["next"] = json!(format!(
            "https://graph.facebook.com/{version}/{waba}/message_templates?after={end}"
        ));
    }
    Json(json!({"data": data, "paging": paging}))
}

async fn fake_send(
    State(fake): State<FakeMeta>,
    Path((version, number)): Path<(String, String)>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let mut calls = fake.calls.lock().unwrap();
    calls.push(MetaCall {
        path: format!("/{version}/{number}/messages"),
        authorization: headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        body: body.clone(),
    });
    if let Some((status, code)) = fake.failures.lock().unwrap().pop_front() {
        let envelope = hourglass_meta::error_envelope(
            code,
            "Injected failure",
            "injected by the test",
            "AfakeTrace",
        );
        return (StatusCode::from_u16(status).unwrap(), Json(envelope));
    }
    let to = body["to"].as_str().unwrap_or_default().to_owned();
    (
        StatusCode::OK,
        Json(json!({
            "messaging_product": "whatsapp",
            "contacts": [{"input": to, "wa_id": to.trim_start_matches('+')}],
            "messages": [{"id": format!("wamid.FAKE{}", calls.len())}],
        })),
    )
}

/// The bytes Meta holds for a media id: the sandbox's voice note for `voice-*` ids.
pub fn fake_media_bytes(media_id: &str) -> Option<Vec<u8>> {
    media_id
        .starts_with("voice-")
        .then(|| hourglass_server::upstream::SANDBOX_VOICE_NOTE.to_vec())
}

/// Meta's "Retrieve media URL": the URL lives on the fake, and needs the access token.
async fn fake_media_info(
    axum::extract::State(_fake): axum::extract::State<FakeMeta>,
    Path((_version, media_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> (StatusCode, Json<Value>) {
    let host = headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    match fake_media_bytes(&media_id) {
        Some(bytes) => (
            StatusCode::OK,
            Json(json!({
                "messaging_product": "whatsapp",
                "url": format!("http://{host}/download/{media_id}"),
                "mime_type": "audio/ogg; codecs=opus",
                "sha256": hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes)),
                "file_size": bytes.len(),
                "id": media_id,
            })),
        ),
        None => (
            StatusCode::BAD_REQUEST,
            Json(hourglass_meta::error_envelope(
                100,
                "Invalid parameter",
                "Unsupported get request",
                "AfakeTrace",
            )),
        ),
    }
}

async fn fake_download(Path(media_id): Path<String>, headers: HeaderMap) -> (StatusCode, Vec<u8>) {
    let authorised = headers.get("authorization").and_then(|v| v.to_str().ok())
        == Some(&format!("Bearer {ACCESS_TOKEN}"));
    match (authorised, fake_media_bytes(&media_id)) {
        (true, Some(bytes)) => (StatusCode::OK, bytes),
        (false, _) => (StatusCode::UNAUTHORIZED, b"no token".to_vec()),
        (true, None) => (StatusCode::NOT_FOUND, Vec::new()),
    }
}

async fn fake_upload(headers: HeaderMap, body: axum::body::Bytes) -> (StatusCode, Json<Value>) {
    let multipart = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("multipart/form-data"));
    if !multipart || body.is_empty() {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": {"code": 100}})),
        );
    }
    (
        StatusCode::OK,
        Json(json!({"id": format!("uploaded-{}", body.len())})),
    )
}

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub api_key: String,
    pub secret: String,
    pub meta: FakeMeta,
    pub store: Arc<dyn Store>,
    postgres_database: Option<String>,
}

fn postgres_admin_url() -> String {
    std::env::var("HOURGLASS_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).unwrap();
    hex::encode(buf)
}

pub async fn spawn_app(db: Db) -> TestApp {
    spawn_app_with(db, |_| {}).await
}

pub async fn spawn_app_with(db: Db, adjust: impl FnOnce(&mut Config)) -> TestApp {
    let meta = FakeMeta::default();
    let fake = Router::new()
        .route("/{version}/{number}/messages", post(fake_send))
        .route(
            "/{version}/{waba}/message_templates",
            axum::routing::get(fake_list_templates),
        )
        .route("/{version}/{media_id}", axum::routing::get(fake_media_info))
        .route("/download/{media_id}", axum::routing::get(fake_download))
        .route("/{version}/{number}/media", post(fake_upload))
        .with_state(meta.clone());
    let fake_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let fake_port = fake_listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(fake_listener, fake).await.unwrap() });

    let (database_url, postgres_database) = match db {
        Db::Sqlite => {
            let dir = std::env::temp_dir().join(format!("hourglass-test-{}", random_hex(8)));
            std::fs::create_dir_all(&dir).unwrap();
            (
                format!("sqlite://{}", dir.join("hourglass.db").display()),
                None,
            )
        }
        Db::Postgres => {
            let name = format!("hourglass_test_{}", random_hex(8));
            let admin = postgres_admin_url();
            let mut conn = sqlx::PgConnection::connect(&admin).await.expect(
                "PostgreSQL must be running for the PostgreSQL tests (the test script starts it)",
            );
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&mut conn)
                .await
                .unwrap();
            let base = admin.rsplit_once('/').unwrap().0;
            (format!("{base}/{name}"), Some(name))
        }
    };
    let secret = random_hex(16);
    let api_key = format!("test-admin-{}", random_hex(8));
    let mut config = Config {
        listen: "127.0.0.1:0".into(),
        database_url,
        api_key: Some(Secret::new(api_key.clone())),
        ..Config::default()
    };
    config.meta.app_secret = Some(Secret::new(secret.clone()));
    config.meta.verify_token = Some(Secret::new("verify-me"));
    config.meta.access_token = Some(Secret::new(ACCESS_TOKEN));
    config.meta.upstream = format!("http://127.0.0.1:{fake_port}");
    config.media_dir = std::env::temp_dir()
        .join(format!("hourglass-media-{}", random_hex(8)))
        .display()
        .to_string();
    adjust(&mut config);
    let app = Application::build(config)
        .await
        .expect("the application builds");
    let base = format!("http://127.0.0.1:{}", app.port());
    let store = hourglass_store::connect(&app.state().config().database_url)
        .await
        .unwrap();
    tokio::spawn(app.run_until(std::future::pending()));
    TestApp {
        base,
        client: reqwest::Client::new(),
        api_key,
        secret,
        meta,
        store,
        postgres_database,
    }
}

impl TestApp {
    pub async fn post_webhook_bytes(
        &self,
        body: Vec<u8>,
        signature: Option<String>,
    ) -> reqwest::Response {
        let mut request = self
            .client
            .post(format!("{}/webhook", self.base))
            .header("content-type", "application/json")
            .body(body);
        if let Some(signature) = signature {
            request = request.header("x-hub-signature-256", signature);
        }
        request.send().await.unwrap()
    }

    /// Posts a payload signed with the app secret, as Meta does.
    pub async fn post_webhook(&self, payload: &Value) -> reqwest::Response {
        let body = serde_json::to_vec(payload).unwrap();
        let signature = hourglass_meta::sign(self.secret.as_bytes(), &body);
        self.post_webhook_bytes(body, Some(signature)).await
    }

    /// A customer's text, `ago` seconds before `now`.
    pub async fn customer_writes(
        &self,
        wa_id: &str,
        message_id: &str,
        timestamp: i64,
        from_ad: bool,
    ) {
        let payload = customer_text(wa_id, message_id, timestamp, from_ad);
        let response = self.post_webhook(&payload).await;
        assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    }

    /// A customer's reaction (Meta's `type: reaction`) to one of our messages.
    pub async fn customer_reacts(&self, wa_id: &str, message_id: &str, timestamp: i64) {
        let mut payload = customer_text(wa_id, message_id, timestamp, false);
        let message = &mut payload["entry"][0]["changes"][0]["value"]["messages"][0];
        let object = message.as_object_mut().expect("a message object");
        object.remove("text");
        object.insert("type".into(), json!("reaction"));
        object.insert(
            "reaction".into(),
            json!({"message_id": "wamid.ours", "emoji": "\u{1f44d}"}),
        );
        let response = self.post_webhook(&payload).await;
        assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    }

    pub async fn status(&self, wa_id: &str, message_id: &str, status: &str, timestamp: i64) {
        let payload = build_status_webhook(&StatusParams {
            waba_id: WABA,
            phone_number_id: NUMBER,
            display_phone_number: DISPLAY,
            message_id,
            recipient_wa_id: wa_id,
            recipient_user_id: None,
            status,
            timestamp,
            conversation: None,
            biz_opaque_callback_data: None,
            pricing: None,
        });
        let response = self.post_webhook(&payload).await;
        assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.get_with_key(path, Some(&self.api_key)).await
    }

    pub async fn get_with_key(&self, path: &str, key: Option<&str>) -> (u16, Value) {
        let mut request = self.client.get(format!("{}{path}", self.base));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn window(&self, contact: &str, at: Option<i64>) -> (u16, Value) {
        let at = at.map(|a| format!("?at={a}")).unwrap_or_default();
        self.get(&format!(
            "/v1/numbers/{NUMBER}/contacts/{contact}/window{at}"
        ))
        .await
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> (u16, Value) {
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.api_key)
            .json(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// A Cloud API send, as a client written for Meta would make it.
    pub async fn send(&self, body: &Value) -> (u16, Value) {
        let response = self
            .client
            .post(format!("{}/v21.0/{NUMBER}/messages", self.base))
            .bearer_auth(&self.api_key)
            .header("host", "graph.facebook.com")
            .json(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }

    pub async fn counts(&self) -> StoreCounts {
        self.store.counts().await.unwrap()
    }

    /// Drops the fresh PostgreSQL database (SQLite files live in the temp directory).
    pub async fn cleanup(self) {
        if let Some(name) = self.postgres_database {
            drop(self.store);
            let mut conn = sqlx::PgConnection::connect(&postgres_admin_url())
                .await
                .unwrap();
            // The server under test still runs (its task lives as long as the test
            // binary), and its pool and change listener reconnect: a drop that finds a
            // connection back is tried again, so that no database is left behind.
            let mut dropped = Err(String::new());
            for _ in 0..20 {
                dropped = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut conn)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string());
                if dropped.is_ok() {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            if let Err(error) = dropped {
                eprintln!("could not drop the test database {name}: {error}");
            }
        }
    }
}

/// A fixture from `shared/fixtures/meta/`.
/// Meta's webhook for a customer's text to [`NUMBER`].
fn customer_text(wa_id: &str, message_id: &str, timestamp: i64, from_ad: bool) -> Value {
    build_inbound_webhook(&InboundTextParams {
        waba_id: WABA,
        phone_number_id: NUMBER,
        display_phone_number: DISPLAY,
        wa_id,
        user_id: None,
        profile_name: "Test Customer",
        message_id,
        timestamp,
        body: "hello",
        referral_source_type: from_ad.then_some("ad"),
    })
}

pub fn fixture(name: &str) -> Value {
    let path = format!(
        "{}/../../../shared/fixtures/meta/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

pub fn now() -> i64 {
    hourglass_server::time::now().unix_seconds()
}

pub fn text(to: &str, body: &str) -> Value {
    json!({"messaging_product": "whatsapp", "recipient_type": "individual", "to": to, "type": "text", "text": {"body": body}})
}

pub fn template(to: &str, name: &str) -> Value {
    json!({"messaging_product": "whatsapp", "to": to, "type": "template",
           "template": {"name": name, "language": {"code": "en_US"}}})
}

/// Runs a test body against SQLite and against PostgreSQL, as two tests.
#[macro_export]
macro_rules! on_both_databases {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::helpers::Db::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name($crate::helpers::Db::Postgres).await
            }
        }
    };
}
