//! The real `hourglass serve` binary as separate processes: what an operator sees when a
//! process dies mid-stream, and when several processes share one PostgreSQL database
//! (DESIGN.md §3.1, §3.2 and §4: "several `hourglass serve` processes against one
//! PostgreSQL must behave as one gateway").
//!
//! These tests talk to the processes only as Meta and the business's apps do (signed
//! `POST /webhook`, `/v1`), then open the database directly to count what was stored.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hourglass_meta::send::{InboundTextParams, StatusParams};
use hourglass_meta::{build_inbound_webhook, build_status_webhook};
use sqlx::Connection;

mod common;

use common::*;

// ---- A process killed mid-stream -------------------------------------------------------

const CRASH_WEBHOOKS: usize = 3_000;
const CRASH_CONTACTS: usize = 300;
const CRASH_CLIENTS: usize = 32;
const KILL_AFTER_ACKS: usize = 1_000;
const TIME_LIMIT: Duration = Duration::from_secs(120);

fn crash_contact(i: usize) -> String {
    format!("1555000{:04}", i % CRASH_CONTACTS)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_webhooks_survive_sigkill_exactly_once() {
    let dir = TempDir::new("hourglass-proc-crash");
    let db_path = dir.0.join("hourglass.db");
    let database_url = format!("sqlite://{}", db_path.display());
    let port = free_port();
    let client = http_client();
    let started = Instant::now();

    let now = unix_now();
    let mut message_ids = Vec::with_capacity(CRASH_WEBHOOKS);
    let mut webhooks = Vec::with_capacity(CRASH_WEBHOOKS);
    // Expected state per contact: its message ids and its latest customer message.
    let mut latest_by_contact: HashMap<String, i64> = HashMap::new();
    let mut ids_by_contact: HashMap<String, Vec<String>> = HashMap::new();
    for i in 0..CRASH_WEBHOOKS {
        let message_id = format!("wamid.crash.{i}");
        let wa_id = crash_contact(i);
        let timestamp = now - (i % 3_600) as i64;
        let body = format!("crash test message {i}");
        let profile_name = format!("Contact {}", i % CRASH_CONTACTS);
        webhooks.push(SignedWebhook::new(&build_inbound_webhook(
            &InboundTextParams {
                waba_id: WABA_ID,
                phone_number_id: PHONE_NUMBER_ID,
                display_phone_number: DISPLAY_PHONE_NUMBER,
                wa_id: &wa_id,
                user_id: None,
                profile_name: &profile_name,
                message_id: &message_id,
                timestamp,
                body: &body,
                referral_source_type: None,
            },
        )));
        let latest = latest_by_contact.entry(wa_id.clone()).or_insert(timestamp);
        *latest = (*latest).max(timestamp);
        ids_by_contact
            .entry(wa_id)
            .or_default()
            .push(message_id.clone());
        message_ids.push(message_id);
    }
    let webhooks = Arc::new(webhooks);

    let mut server = Server::spawn("crash-first", port, &database_url, None, &dir.0);
    server.wait_healthy(&client, Duration::from_secs(30)).await;

    // The client side, as Meta behaves: every webhook is retried until it is answered 200.
    let next = Arc::new(AtomicUsize::new(0));
    let acks = Arc::new(AtomicUsize::new(0));
    let unanswered_attempts = Arc::new(AtomicUsize::new(0));
    let killed = Arc::new(AtomicBool::new(false));
    let acked_before_kill = Arc::new(Mutex::new(Vec::new()));
    let deadline = started + TIME_LIMIT;
    let mut clients = Vec::new();
    for _ in 0..CRASH_CLIENTS {
        let (client, webhooks, next, acks, unanswered, killed, acked_before_kill) = (
            client.clone(),
            webhooks.clone(),
            next.clone(),
            acks.clone(),
            unanswered_attempts.clone(),
            killed.clone(),
            acked_before_kill.clone(),
        );
        clients.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= webhooks.len() {
                    return;
                }
                loop {
                    match post_webhook(&client, port, &webhooks[i]).await {
                        Ok(status) if status == reqwest::StatusCode::OK => break,
                        _ => {
                            unanswered.fetch_add(1, Ordering::Relaxed);
                            assert!(
                                Instant::now() < deadline,
                                "webhook {i} still not acknowledged after {TIME_LIMIT:?}"
                            );
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                }
                // Read after the answer arrived: `false` means the first process answered
                // it, before the kill was even started.
                if !killed.load(Ordering::SeqCst) {
                    acked_before_kill.lock().expect("ack record lock").push(i);
                }
                acks.fetch_add(1, Ordering::SeqCst);
            }
        }));
    }

    while acks.load(Ordering::SeqCst) < KILL_AFTER_ACKS {
        assert!(
            Instant::now() < deadline,
            "only {} of {CRASH_WEBHOOKS} webhooks acknowledged after {TIME_LIMIT:?}; stderr:\n{}",
            acks.load(Ordering::SeqCst),
            server.stderr()
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    killed.store(true, Ordering::SeqCst);
    server.kill();
    let acks_at_kill = acks.load(Ordering::SeqCst);
    let first_stderr = server.stderr();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut server = Server::spawn("crash-restarted", port, &database_url, None, &dir.0);
    server.wait_healthy(&client, Duration::from_secs(30)).await;

    for task in clients {
        let remaining = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(remaining, task).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => std::panic::resume_unwind(e.into_panic()),
            Err(_) => panic!(
                "only {} of {CRASH_WEBHOOKS} webhooks acknowledged after {TIME_LIMIT:?}",
                acks.load(Ordering::SeqCst)
            ),
        }
    }
    let acked_before_kill = std::mem::take(&mut *acked_before_kill.lock().expect("lock"));
    assert_eq!(acks.load(Ordering::SeqCst), CRASH_WEBHOOKS);
    assert!(
        acks_at_kill < CRASH_WEBHOOKS && !acked_before_kill.is_empty(),
        "the kill must land mid-stream: {acks_at_kill} acknowledged when it was sent"
    );
    server.kill();
    let second_stderr = server.stderr();

    let store = hourglass_store::connect(&database_url)
        .await
        .expect("opening the database after the crash");
    let counts = store.counts().await.expect("counting rows");
    assert_eq!(
        counts.messages, CRASH_WEBHOOKS as i64,
        "one message per acknowledged webhook, no more, no less"
    );
    assert_eq!(counts.deliveries, CRASH_WEBHOOKS as i64, "raw deliveries");
    assert_eq!(
        counts.threads, CRASH_CONTACTS as i64,
        "one thread per contact"
    );
    assert_eq!(counts.statuses, 0);
    drop(store);

    let mut db = sqlx::SqliteConnection::connect(&format!("{database_url}?mode=ro"))
        .await
        .expect("opening the database read-only");
    let (distinct,): (i64,) = sqlx::query_as("SELECT COUNT(DISTINCT wamid) FROM messages")
        .fetch_one(&mut db)
        .await
        .expect("counting message ids");
    assert_eq!(distinct, CRASH_WEBHOOKS as i64);
    let stored: HashSet<String> = sqlx::query_as::<_, (String,)>("SELECT wamid FROM messages")
        .fetch_all(&mut db)
        .await
        .expect("reading message ids")
        .into_iter()
        .map(|(id,)| id)
        .collect();
    let _ = db.close().await;
    let lost: Vec<&String> = acked_before_kill
        .iter()
        .map(|&i| &message_ids[i])
        .filter(|id| !stored.contains(*id))
        .collect();
    assert!(
        lost.is_empty(),
        "{} webhooks acknowledged before the SIGKILL are missing, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    let expected_ids: HashSet<&String> = message_ids.iter().collect();
    assert!(
        stored.iter().all(|id| expected_ids.contains(id)),
        "no message that was not posted"
    );

    // The window state, as the API reports it after yet another restart.
    let mut server = Server::spawn(
        "crash-with-api-key",
        port,
        &database_url,
        Some(API_KEY),
        &dir.0,
    );
    server.wait_healthy(&client, Duration::from_secs(30)).await;
    for contact in [0, 1, 137, 299] {
        let wa_id = crash_contact(contact);
        let window = get_v1(
            &client,
            &server,
            &format!("/v1/numbers/{PHONE_NUMBER_ID}/contacts/{wa_id}/window"),
        )
        .await;
        let csw = &window["customer_service_window"];
        assert_eq!(
            csw["opened_at"].as_str(),
            Some(rfc3339(latest_by_contact[&wa_id]).as_str()),
            "window of {wa_id}: {window}"
        );
        assert_eq!(csw["open"], true, "window of {wa_id}: {window}");

        let messages = get_v1(
            &client,
            &server,
            &format!("/v1/numbers/{PHONE_NUMBER_ID}/contacts/{wa_id}/messages"),
        )
        .await;
        let mut listed: Vec<&str> = messages["messages"]
            .as_array()
            .unwrap_or_else(|| panic!("messages of {wa_id}: {messages}"))
            .iter()
            .map(|m| m["id"].as_str().unwrap_or_default())
            .collect();
        listed.sort_unstable();
        let mut expected: Vec<&str> = ids_by_contact[&wa_id].iter().map(String::as_str).collect();
        expected.sort_unstable();
        assert_eq!(listed, expected, "messages of {wa_id}");
    }
    server.kill();

    eprintln!(
        "sigkill test: {} acknowledged before the kill ({acks_at_kill} counted), {} unanswered attempts retried, {:?} in all",
        acked_before_kill.len(),
        unanswered_attempts.load(Ordering::Relaxed),
        started.elapsed()
    );
    for (name, text) in [
        ("first", first_stderr),
        ("restarted", second_stderr),
        ("with api key", server.stderr()),
    ] {
        if !text.trim().is_empty() {
            eprintln!("stderr of the {name} server:\n{text}");
        }
    }
}

// ---- Two processes, one PostgreSQL database --------------------------------------------

const PG_INBOUND: usize = 800;
const PG_CONTACTS: usize = 100;
const PG_OUTBOUND: usize = 100;
const PG_CLIENTS_PER_PROCESS: usize = 16;
const PG_ATTEMPTS: usize = 5;

fn pg_contact(k: usize) -> String {
    format!("1555100{:04}", k % PG_CONTACTS)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_on_one_postgres_database_lose_and_duplicate_nothing() {
    let admin_url = std::env::var("HOURGLASS_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let started = Instant::now();
    let dir = TempDir::new("hourglass-proc-pg");
    // Declared before the servers, so it is dropped after them.
    let database = TempDatabase::create(&admin_url).await;
    let client = http_client();

    let now = unix_now();
    let mut webhooks = Vec::with_capacity(PG_INBOUND + 2 * PG_OUTBOUND);
    let mut latest_by_contact: HashMap<String, i64> = HashMap::new();
    for i in 0..PG_INBOUND {
        let wa_id = pg_contact(i);
        let timestamp = now - (i % 3_600) as i64;
        let message_id = format!("wamid.pg.in.{i}");
        let body = format!("postgres test message {i}");
        webhooks.push(SignedWebhook::new(&build_inbound_webhook(
            &InboundTextParams {
                waba_id: WABA_ID,
                phone_number_id: PHONE_NUMBER_ID,
                display_phone_number: DISPLAY_PHONE_NUMBER,
                wa_id: &wa_id,
                user_id: None,
                profile_name: "Someone",
                message_id: &message_id,
                timestamp,
                body: &body,
                referral_source_type: None,
            },
        )));
        let latest = latest_by_contact.entry(wa_id).or_insert(timestamp);
        *latest = (*latest).max(timestamp);
    }
    for k in 0..PG_OUTBOUND {
        let message_id = format!("wamid.out.{k}");
        let wa_id = pg_contact(k);
        for (status, age) in [("sent", 120), ("delivered", 60)] {
            webhooks.push(SignedWebhook::new(&build_status_webhook(&StatusParams {
                waba_id: WABA_ID,
                phone_number_id: PHONE_NUMBER_ID,
                display_phone_number: DISPLAY_PHONE_NUMBER,
                message_id: &message_id,
                recipient_wa_id: &wa_id,
                recipient_user_id: None,
                status,
                timestamp: now - age,
                conversation: None,
                biz_opaque_callback_data: None,
                pricing: None,
            })));
        }
    }
    let total = webhooks.len();
    // Interleave inbound messages and statuses (and a `delivered` before its `sent`) with a
    // fixed shuffle, so that both processes create threads and outbound rows at once.
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in (1..total).rev() {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        webhooks.swap(i, (state >> 33) as usize % (i + 1));
    }
    let webhooks = Arc::new(webhooks);

    // Both start at once against the fresh database: they also race on the migrations.
    let mut a = Server::spawn(
        "postgres-a",
        free_port(),
        &database.url,
        Some(API_KEY),
        &dir.0,
    );
    let mut b = Server::spawn(
        "postgres-b",
        free_port(),
        &database.url,
        Some(API_KEY),
        &dir.0,
    );
    a.wait_healthy(&client, Duration::from_secs(30)).await;
    b.wait_healthy(&client, Duration::from_secs(30)).await;

    let answered = Arc::new(AtomicUsize::new(0));
    let retries = Arc::new(AtomicUsize::new(0));
    // Every answer that was not 200, by kind ("HTTP 503", "no answer: …"), for the report.
    let refusals = Arc::new(Mutex::new(HashMap::<String, usize>::new()));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut tasks = Vec::new();
    for port in [a.port, b.port] {
        let next = Arc::new(AtomicUsize::new(0));
        for _ in 0..PG_CLIENTS_PER_PROCESS {
            let (client, webhooks, next, answered, retries, refusals, failures) = (
                client.clone(),
                webhooks.clone(),
                next.clone(),
                answered.clone(),
                retries.clone(),
                refusals.clone(),
                failures.clone(),
            );
            tasks.push(tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= webhooks.len() {
                        return;
                    }
                    let mut last = String::new();
                    for attempt in 0..PG_ATTEMPTS {
                        if attempt > 0 {
                            retries.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        last = match post_webhook(&client, port, &webhooks[i]).await {
                            Ok(status) if status == reqwest::StatusCode::OK => {
                                last.clear();
                                break;
                            }
                            Ok(status) => format!("HTTP {status}"),
                            Err(e) if e.is_timeout() => "no answer: timed out".to_owned(),
                            Err(e) => format!("no answer: {e}"),
                        };
                        *refusals
                            .lock()
                            .expect("refusal tally lock")
                            .entry(last.clone())
                            .or_default() += 1;
                    }
                    if last.is_empty() {
                        answered.fetch_add(1, Ordering::SeqCst);
                    } else {
                        failures.lock().expect("failure list lock").push(format!(
                            "webhook {i} on port {port}: {last} after {PG_ATTEMPTS} attempts"
                        ));
                    }
                }
            }));
        }
    }
    for task in tasks {
        let remaining = (started + TIME_LIMIT).saturating_duration_since(Instant::now());
        match tokio::time::timeout(remaining, task).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => std::panic::resume_unwind(e.into_panic()),
            Err(_) => {
                let refusals = refusals.lock().expect("refusal tally lock").clone();
                panic!(
                    "posting {total} webhooks to each of two processes took over {TIME_LIMIT:?}: \
                     {} of {} answered 200, {} retries, not-200 answers: {refusals:?}; \
                     stderr of A:\n{}\nstderr of B:\n{}",
                    answered.load(Ordering::SeqCst),
                    2 * total,
                    retries.load(Ordering::Relaxed),
                    a.stderr(),
                    b.stderr()
                )
            }
        }
    }
    let failures = std::mem::take(&mut *failures.lock().expect("lock"));
    let retries = retries.load(Ordering::Relaxed);
    let refusals = std::mem::take(&mut *refusals.lock().expect("lock"));
    a.kill();
    b.kill();
    let (a_stderr, b_stderr) = (a.stderr(), b.stderr());
    assert!(
        failures.is_empty(),
        "{} webhooks never answered 200, e.g. {:?}; stderr of A:\n{a_stderr}\nstderr of B:\n{b_stderr}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );

    let store = hourglass_store::connect(&database.url)
        .await
        .expect("opening the shared database");
    let counts = store.counts().await.expect("counting rows");
    drop(store);
    assert_eq!(
        counts.messages,
        (PG_INBOUND + PG_OUTBOUND) as i64,
        "800 inbound messages and one row per outbound id"
    );
    assert_eq!(counts.statuses, (2 * PG_OUTBOUND) as i64, "statuses");
    assert_eq!(counts.threads, PG_CONTACTS as i64, "one thread per contact");
    assert_eq!(counts.deliveries, total as i64, "one raw delivery per body");

    let mut db = sqlx::PgConnection::connect(&database.url)
        .await
        .expect("connecting to the shared database");
    let (duplicated_threads,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM (SELECT phone_number_id, wa_id FROM threads
                               GROUP BY phone_number_id, wa_id HAVING COUNT(*) > 1) AS d",
    )
    .fetch_one(&mut db)
    .await
    .expect("looking for duplicate threads");
    assert_eq!(duplicated_threads, 0, "contacts with more than one thread");
    // The per-thread summary must not lose an update to the other process either.
    let summaries: Vec<(Option<String>, Option<i64>)> =
        sqlx::query_as("SELECT wa_id, last_customer_at FROM threads")
            .fetch_all(&mut db)
            .await
            .expect("reading thread summaries");
    for (wa_id, last_customer_at) in &summaries {
        let wa_id = wa_id.as_deref().expect("every thread here has a wa_id");
        assert_eq!(
            *last_customer_at,
            Some(latest_by_contact[wa_id]),
            "latest customer message of {wa_id}"
        );
    }
    let (delivered_outbound,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM messages WHERE direction = 'outbound' AND delivered_at IS NOT NULL",
    )
    .fetch_one(&mut db)
    .await
    .expect("counting delivered outbound messages");
    assert_eq!(delivered_outbound, PG_OUTBOUND as i64, "delivered outbound");
    let (misfiled,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM messages m JOIN threads t ON t.id = m.thread_id
         WHERE m.wamid LIKE 'wamid.out.%'
           AND t.wa_id <> '1555100' || LPAD(SUBSTRING(m.wamid FROM 11), 4, '0')",
    )
    .fetch_one(&mut db)
    .await
    .expect("checking outbound threads");
    assert_eq!(misfiled, 0, "outbound messages in another contact's thread");
    let _ = db.close().await;

    eprintln!(
        "postgres test: {total} webhooks to each of two processes, {retries} retries \
         (not-200 answers: {refusals:?}), {:?} in all",
        started.elapsed()
    );
    for (name, text) in [("A", a_stderr), ("B", b_stderr)] {
        if !text.trim().is_empty() {
            eprintln!("stderr of process {name}:\n{text}");
        }
    }
}

// ---- Window answers cached per process, kept true across processes -------------------

fn customer_message(wa_id: &str, message_id: &str, timestamp: i64) -> SignedWebhook {
    SignedWebhook::new(&build_inbound_webhook(&InboundTextParams {
        waba_id: WABA_ID,
        phone_number_id: PHONE_NUMBER_ID,
        display_phone_number: DISPLAY_PHONE_NUMBER,
        wa_id,
        user_id: None,
        profile_name: "Cached",
        message_id,
        timestamp,
        body: "hello",
        referral_source_type: None,
    }))
}

async fn window_open(client: &reqwest::Client, port: u16, wa_id: &str) -> bool {
    let answer: serde_json::Value = client
        .get(format!(
            "http://127.0.0.1:{port}/v1/numbers/{PHONE_NUMBER_ID}/contacts/{wa_id}/window"
        ))
        .bearer_auth(API_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    answer["customer_service_window"]["open"]
        .as_bool()
        .unwrap_or_else(|| panic!("not a window answer: {answer}"))
}

/// Two `hourglass serve` processes, `a` and `b`, on one fresh PostgreSQL database (with
/// the directory of their logs). Bind them in this order: the servers stop first.
async fn two_processes(tag: &str) -> (TempDir, TempDatabase, reqwest::Client, Server, Server) {
    let admin_url = std::env::var("HOURGLASS_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let dir = TempDir::new(&format!("hourglass-proc-{tag}"));
    let database = TempDatabase::create(&admin_url).await;
    let client = http_client();
    let mut a = Server::spawn(
        &format!("{tag}-a"),
        free_port(),
        &database.url,
        Some(API_KEY),
        &dir.0,
    );
    a.wait_healthy(&client, Duration::from_secs(30)).await;
    let mut b = Server::spawn(
        &format!("{tag}-b"),
        free_port(),
        &database.url,
        Some(API_KEY),
        &dir.0,
    );
    b.wait_healthy(&client, Duration::from_secs(30)).await;
    (dir, database, client, a, b)
}

/// Each process keeps window answers in memory; a message stored through one process
/// must reach the other's answers (PostgreSQL's NOTIFY, sent at commit), not be hidden
/// behind what it remembered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_answer_from_one_process_sees_a_message_stored_by_another() {
    let (_dir, _database, client, a, b) = two_processes("cache").await;

    let wa_id = "15551230001";
    let now = unix_now();
    let old = customer_message(wa_id, "wamid.cache.1", now - 25 * 3600);
    assert_eq!(post_webhook(&client, a.port, &old).await.unwrap(), 200);
    // Asked twice, B answers from what it remembered the second time.
    assert!(!window_open(&client, b.port, wa_id).await);
    assert!(!window_open(&client, b.port, wa_id).await);

    let fresh = customer_message(wa_id, "wamid.cache.2", now);
    assert_eq!(post_webhook(&client, a.port, &fresh).await.unwrap(), 200);
    assert!(
        window_open(&client, a.port, wa_id).await,
        "the process that stored it answers from it at once"
    );
    let started = Instant::now();
    while !window_open(&client, b.port, wa_id).await {
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "process B still answers from a stale cache; stderr:\n{}",
            b.stderr()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    eprintln!(
        "process B saw process A's commit after {:?}",
        started.elapsed()
    );
    drop((a, b));
}

/// A message naming a contact by `user_id` alone, or by `wa_id` alone, or by both.
fn keyed_message(
    message_id: &str,
    wa_id: Option<&str>,
    user_id: Option<&str>,
    timestamp: i64,
) -> SignedWebhook {
    let mut contact = serde_json::json!({"profile": {"name": "Merged"}});
    let mut item = serde_json::json!({
        "id": message_id, "timestamp": timestamp.to_string(), "type": "text", "text": {"body": "hi"}
    });
    if let Some(w) = wa_id {
        contact["wa_id"] = w.into();
        item["from"] = w.into();
    }
    if let Some(u) = user_id {
        contact["user_id"] = u.into();
        item["from_user_id"] = u.into();
    }
    SignedWebhook::new(&serde_json::json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": WABA_ID, "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": DISPLAY_PHONE_NUMBER, "phone_number_id": PHONE_NUMBER_ID},
            "contacts": [contact], "messages": [item]}}]}]
    }))
}

/// Each process remembers which thread a contact's messages go to. When another
/// process merges that thread into another one (a message named both of the contact's
/// keys), the next message through the first process must land in the merged thread,
/// not in the one that is gone, and nothing may be lost on the way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thread_merged_by_another_process_is_not_written_from_memory() {
    let (_dir, database, client, a, b) = two_processes("merge").await;

    let (wa_id, user_id) = ("15551239999", "US.merge.1");
    let now = unix_now();
    let steps = [
        // A learns the thread of the user_id (and uses what it learned once).
        (
            &a,
            keyed_message("wamid.merge.1", None, Some(user_id), now - 300),
        ),
        (
            &a,
            keyed_message("wamid.merge.2", None, Some(user_id), now - 250),
        ),
        // B sees the phone number alone (a second thread), then both keys: B merges
        // the user_id's thread into the phone number's.
        (
            &b,
            keyed_message("wamid.merge.3", Some(wa_id), None, now - 200),
        ),
        (
            &b,
            keyed_message("wamid.merge.4", Some(wa_id), Some(user_id), now - 100),
        ),
        // A still remembers the thread that is gone.
        (
            &a,
            keyed_message("wamid.merge.5", None, Some(user_id), now - 50),
        ),
    ];
    for (server, webhook) in &steps {
        let status = post_webhook(&client, server.port, webhook).await.unwrap();
        assert_eq!(status, 200, "stderr:\n{}", server.stderr());
    }

    let mut conn = sqlx::PgConnection::connect(&database.url).await.unwrap();
    type Thread = (i64, Option<String>, Option<String>, Option<i64>);
    let threads: Vec<Thread> =
        sqlx::query_as("SELECT id, wa_id, user_id, last_customer_at FROM threads")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    assert_eq!(threads.len(), 1, "one contact, one thread: {threads:?}");
    let (thread, stored_wa_id, stored_user_id, last_customer_at) = threads[0].clone();
    assert_eq!(stored_wa_id.as_deref(), Some(wa_id));
    assert_eq!(stored_user_id.as_deref(), Some(user_id));
    assert_eq!(
        last_customer_at,
        Some(now - 50),
        "the last message moved its thread's window"
    );
    let in_thread: i64 = sqlx::query_scalar("SELECT count(*) FROM messages WHERE thread_id = $1")
        .bind(thread)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(in_thread, 5, "every message is in the merged thread");
    drop((a, b));
}
