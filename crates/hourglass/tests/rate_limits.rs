//! Meta's throughput limit is kept by the outbox, shared by every process on one
//! database: sends reach Meta within 5% of the configured rate over 30 seconds, with one
//! `hourglass serve` process and with two.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use common::*;
use serde_json::{json, Value};

const RATE: f64 = 20.0;
const WINDOW: Duration = Duration::from_secs(30);
/// More than the window can take at the rate, so that the queue never runs dry.
const MESSAGES: usize = 720;

#[derive(Clone, Default)]
struct FakeMeta {
    sent_at: Arc<Mutex<Vec<Instant>>>,
}

async fn fake_send(State(fake): State<FakeMeta>, Json(body): Json<Value>) -> Json<Value> {
    let n = {
        let mut sent = fake.sent_at.lock().unwrap();
        sent.push(Instant::now());
        sent.len()
    };
    let to = body["to"].as_str().unwrap_or_default().to_owned();
    Json(json!({
        "messaging_product": "whatsapp",
        "contacts": [{"input": to, "wa_id": to}],
        "messages": [{"id": format!("wamid.RATE{n:06}")}],
    }))
}

async fn run(database_url: &str, processes: usize, dir: &TempDir) {
    let fake = FakeMeta::default();
    let router = Router::new()
        .route("/{version}/{number}/messages", post(fake_send))
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    let config = dir.0.join("hourglass.toml");
    std::fs::write(
        &config,
        format!("[outbox]\nmessages_per_second = {RATE}\nwait_ms = 0\nbatch = 64\n"),
    )
    .unwrap();
    let config = config.display().to_string();
    let env = [
        ("HOURGLASS_UPSTREAM", upstream.as_str()),
        ("HOURGLASS_CONFIG", config.as_str()),
    ];
    let client = http_client();
    let mut servers = Vec::new();
    for p in 0..processes {
        let mut server = Server::spawn_with(
            &format!("rate-{p}"),
            free_port(),
            database_url,
            Some(API_KEY),
            &dir.0,
            &env,
        );
        server.wait_healthy(&client, Duration::from_secs(30)).await;
        servers.push(server);
    }

    // Every message is queued before any is due, each to its own contact (so that only
    // the number's throughput limits them), through every process in turn. Queueing is
    // 720 durable requests one after another to a debug build; in a clean-clone CI run on
    // a slow hour it took longer than the 5 s lead time this test used to give it.
    let queueing_started = Instant::now();
    let send_at = unix_now() + 15;
    for i in 0..MESSAGES {
        let server = &servers[i % processes];
        let response = client
            .post(server.url(&format!(
                "/v1/numbers/{PHONE_NUMBER_ID}/contacts/1650556{i:04}/messages"
            )))
            .bearer_auth(API_KEY)
            .json(
                &json!({"template": {"name": "order_update", "language": "en_US", "params": []},
                          "send_at": send_at}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202, "{}", response.text().await.unwrap());
    }
    assert!(
        unix_now() < send_at,
        "queueing took {:?}, longer than the lead time",
        queueing_started.elapsed()
    );

    let deadline = Instant::now() + Duration::from_secs(90);
    let first = loop {
        if let Some(first) = fake.sent_at.lock().unwrap().first().copied() {
            break first;
        }
        assert!(Instant::now() < deadline, "nothing was sent");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    tokio::time::sleep_until((first + WINDOW + Duration::from_millis(500)).into()).await;
    let sent = fake.sent_at.lock().unwrap().clone();
    let in_window = sent.iter().filter(|t| **t < first + WINDOW).count();
    let rate = in_window as f64 / WINDOW.as_secs_f64();
    // A full bucket lets one second's worth go at once: that is the burst Meta allows too.
    assert!(
        (rate / RATE - 1.0).abs() <= 0.05,
        "{processes} process(es): {in_window} sends in {WINDOW:?} = {rate:.2}/s, configured {RATE}/s"
    );
    assert!(
        in_window < MESSAGES,
        "the queue ran dry before the window ended"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_process_on_sqlite_keeps_the_configured_rate() {
    let dir = TempDir::new("hourglass-rate-sqlite");
    let url = format!("sqlite://{}", dir.0.join("hourglass.db").display());
    run(&url, 1, &dir).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_processes_on_one_postgres_share_the_configured_rate() {
    let dir = TempDir::new("hourglass-rate-pg");
    let admin = std::env::var("HOURGLASS_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let database = TempDatabase::create(&admin).await;
    run(&database.url, 2, &dir).await;
}
