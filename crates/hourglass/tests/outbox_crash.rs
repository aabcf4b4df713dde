//! No message is sent twice when the sending process dies between calling Meta and
//! recording Meta's answer: the outbox attaches `biz_opaque_callback_data` to every send,
//! Meta echoes it on its status webhooks, and a claim cut short is taken up again only
//! after the time a status needs to say the send got through (ARCHITECTURE.md, "Outbox").
//!
//! A fake Graph API in this process plays Meta: it counts every send by its callback
//! data, answers slowly (so that sends are in flight when the server is killed), and
//! posts the `sent` status back, retrying until the server is up again, as Meta does.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use common::*;
use hourglass_meta::build_status_webhook;
use hourglass_meta::send::StatusParams;
use serde_json::{json, Value};

const MESSAGES: usize = 240;
const CLIENTS: usize = 16;
const KILL_AFTER_SENDS: usize = 80;

#[derive(Clone)]
struct FakeMeta {
    /// Sends received, by callback data.
    sends: Arc<Mutex<HashMap<String, usize>>>,
    hourglass_port: u16,
}

async fn fake_send(State(fake): State<FakeMeta>, Json(body): Json<Value>) -> Json<Value> {
    let callback = body["biz_opaque_callback_data"]
        .as_str()
        .unwrap_or("none")
        .to_owned();
    let n = {
        let mut sends = fake.sends.lock().unwrap();
        *sends.entry(callback.clone()).or_default() += 1;
        sends.values().sum::<usize>()
    };
    let wamid = format!("wamid.CRASH{n:06}");
    let to = body["to"].as_str().unwrap_or_default().to_owned();
    // Meta reports the send on its own schedule, and retries until it is answered 200.
    let (status_wamid, port, recipient) = (wamid.clone(), fake.hourglass_port, to.clone());
    tokio::spawn(async move {
        let payload = build_status_webhook(&StatusParams {
            waba_id: WABA_ID,
            phone_number_id: PHONE_NUMBER_ID,
            display_phone_number: DISPLAY_PHONE_NUMBER,
            message_id: &status_wamid,
            recipient_wa_id: &recipient,
            recipient_user_id: None,
            status: "sent",
            timestamp: unix_now(),
            conversation: None,
            biz_opaque_callback_data: Some(&callback),
            pricing: None,
        });
        let webhook = SignedWebhook::new(&payload);
        let client = http_client();
        let deadline = Instant::now() + Duration::from_secs(90);
        while Instant::now() < deadline {
            if let Ok(status) = post_webhook(&client, port, &webhook).await {
                if status == reqwest::StatusCode::OK {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    // Answer slowly: the server is killed while many sends wait for this answer.
    tokio::time::sleep(Duration::from_millis(150)).await;
    Json(json!({
        "messaging_product": "whatsapp",
        "contacts": [{"input": to, "wa_id": to}],
        "messages": [{"id": wamid}],
    }))
}

/// Posts message `i` through Hourglass's send API with its idempotency key until the
/// answer says it was sent; `Err` while the server is down.
async fn send_once(client: &reqwest::Client, port: u16, i: usize) -> Result<Value, String> {
    let response = client
        .post(format!(
            "http://127.0.0.1:{port}/v1/numbers/{PHONE_NUMBER_ID}/contacts/1650555{i:04}/messages"
        ))
        .bearer_auth(API_KEY)
        .header("idempotency-key", format!("crash-test-{i}"))
        .json(&json!({"template": {"name": "order_update", "language": "en_US", "params": []}}))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let body: Value = response.json().await.map_err(|e| e.to_string())?;
    match status {
        201 | 202 => Ok(body),
        other => Err(format!("HTTP {other}: {body}")),
    }
}

async fn run(database_url: &str, dir: &TempDir) {
    let port = free_port();
    let fake = FakeMeta {
        sends: Arc::default(),
        hourglass_port: port,
    };
    let router = Router::new()
        .route("/{version}/{number}/messages", post(fake_send))
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });

    // Short leases, so that the test does not wait a minute for the cut-short claims.
    let config = dir.0.join("hourglass.toml");
    std::fs::write(
        &config,
        "[outbox]\nlease_seconds = 2\nreconcile_seconds = 3\nwait_ms = 100\n",
    )
    .unwrap();
    let config = config.display().to_string();
    let env = [
        ("HOURGLASS_UPSTREAM", upstream.as_str()),
        ("HOURGLASS_CONFIG", config.as_str()),
    ];
    let client = http_client();
    let mut server = Server::spawn_with(
        "outbox-first",
        port,
        database_url,
        Some(API_KEY),
        &dir.0,
        &env,
    );
    server.wait_healthy(&client, Duration::from_secs(30)).await;

    // Clients post every message; the server is killed once enough sends reached Meta.
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let (client, next) = (client.clone(), next.clone());
        clients.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if i >= MESSAGES {
                    return;
                }
                let _ = send_once(&client, port, i).await;
            }
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while fake.sends.lock().unwrap().values().sum::<usize>() < KILL_AFTER_SENDS {
        assert!(
            Instant::now() < deadline,
            "sends never reached the fake Meta"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.kill();
    for c in clients {
        c.await.unwrap();
    }

    // Restarted, the client retries every message with its key until each is sent.
    let mut server = Server::spawn_with(
        "outbox-restarted",
        port,
        database_url,
        Some(API_KEY),
        &dir.0,
        &env,
    );
    server.wait_healthy(&client, Duration::from_secs(30)).await;
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut pending: Vec<usize> = (0..MESSAGES).collect();
    while !pending.is_empty() {
        assert!(
            Instant::now() < deadline,
            "{} messages never finished; stderr:\n{}",
            pending.len(),
            server.stderr()
        );
        let mut still = Vec::new();
        for i in pending {
            match send_once(&client, port, i).await {
                Ok(body)
                    if body["message"]["meta_message_id"].is_string()
                        && body["message"]["state"] != "queued"
                        && body["message"]["state"] != "sending" => {}
                _ => still.push(i),
            }
        }
        pending = still;
        if !pending.is_empty() {
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    let sends = fake.sends.lock().unwrap().clone();
    let twice: Vec<(&String, &usize)> = sends.iter().filter(|(_, n)| **n != 1).collect();
    assert!(twice.is_empty(), "sent more than once: {twice:?}");
    assert_eq!(sends.len(), MESSAGES, "every message sent: {}", sends.len());
    assert!(sends.keys().all(|k| k.starts_with("hourglass-outbox:")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_send_cut_short_by_sigkill_is_not_sent_again_on_sqlite() {
    let dir = TempDir::new("hourglass-outbox-crash");
    let database_url = format!("sqlite://{}", dir.0.join("hourglass.db").display());
    run(&database_url, &dir).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_send_cut_short_by_sigkill_is_not_sent_again_on_postgres() {
    let dir = TempDir::new("hourglass-outbox-crash-pg");
    let admin = std::env::var("HOURGLASS_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let database = TempDatabase::create(&admin).await;
    run(&database.url, &dir).await;
}
