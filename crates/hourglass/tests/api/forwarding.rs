//! Forwarded webhooks: one item per request, signed with the subscription's secret over
//! the exact bytes, in order within a thread, retried until the app answers 200, and kept
//! as dead letters (then replayed) when it never does.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use hourglass_meta::send::{build_inbound_webhook, InboundTextParams};
use serde_json::{json, Value};

use crate::helpers::*;
use crate::on_both_databases;

const SECRET: &str = "forwarding-test-secret";

/// A request the app received: its signature header and its bytes.
type Received = (Option<String>, Vec<u8>);

/// The business's app: records what it receives; answers 500 while `failing` is above 0.
#[derive(Clone, Default)]
struct App {
    received: Arc<Mutex<Vec<Received>>>,
    failing: Arc<Mutex<usize>>,
}

async fn receive(State(app): State<App>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let mut failing = app.failing.lock().unwrap();
    if *failing > 0 {
        *failing -= 1;
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    let signature = headers
        .get("x-hub-signature-256")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    app.received
        .lock()
        .unwrap()
        .push((signature, body.to_vec()));
    StatusCode::OK
}

async fn start_receiver() -> (App, String) {
    let app = App::default();
    let router = Router::new()
        .route("/hook", post(receive))
        .with_state(app.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://127.0.0.1:{}/hook",
        listener.local_addr().unwrap().port()
    );
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    (app, url)
}

async fn wait_for(app: &App, count: usize) -> Vec<Received> {
    for _ in 0..200 {
        let received = app.received.lock().unwrap().clone();
        if received.len() >= count {
            return received;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "the app received {} forwards, not {count}",
        app.received.lock().unwrap().len()
    );
}

fn inbound(wa_id: &str, id: &str, body: &str, at: i64) -> Value {
    build_inbound_webhook(&InboundTextParams {
        waba_id: WABA,
        phone_number_id: NUMBER,
        display_phone_number: DISPLAY,
        wa_id,
        user_id: Some("US.13491208655302741918"),
        profile_name: "Forwarded",
        message_id: id,
        timestamp: at,
        body,
        referral_source_type: None,
    })
}

async fn each_item_is_forwarded_alone_signed_and_in_order_after_retries(db: Db) {
    let app = spawn_app(db).await;
    let (receiver, url) = start_receiver().await;
    *receiver.failing.lock().unwrap() = 2;
    let (code, created) = app
        .post_json(
            "/v1/webhooks",
            &json!({"url": url, "secret": SECRET, "events": ["messages", "statuses"]}),
        )
        .await;
    assert_eq!(code, 201, "{created}");
    assert!(
        created.get("secret").is_none(),
        "the secret is not shown again"
    );

    // Two messages of one contact in one payload, then a status.
    let t = now();
    let mut two = inbound("16505551234", "wamid.F1", "first", t - 2);
    let second = inbound("16505551234", "wamid.F2", "second", t - 1)["entry"][0]["changes"][0]
        ["value"]["messages"][0]
        .clone();
    two["entry"][0]["changes"][0]["value"]["messages"]
        .as_array_mut()
        .unwrap()
        .push(second);
    assert_eq!(app.post_webhook(&two).await.status(), 200);
    app.status("16505551234", "wamid.OUT1", "delivered", t)
        .await;

    let received = wait_for(&receiver, 3).await;
    let mut texts = Vec::new();
    for (signature, body) in &received {
        assert_eq!(
            signature.as_deref(),
            Some(hourglass_meta::sign(SECRET.as_bytes(), body).as_str()),
            "signed over the exact bytes"
        );
        let payload: Value = serde_json::from_slice(body).unwrap();
        let value = &payload["entry"][0]["changes"][0]["value"];
        let items = value["messages"].as_array().map_or(0, Vec::len)
            + value["statuses"].as_array().map_or(0, Vec::len);
        assert_eq!(items, 1, "one item per request: {payload}");
        assert_eq!(payload["entry"][0]["id"], WABA);
        if let Some(text) = value["messages"][0]["text"]["body"].as_str() {
            assert_eq!(value["contacts"][0]["user_id"], "US.13491208655302741918");
            texts.push(text.to_owned());
        }
    }
    assert_eq!(texts, ["first", "second"], "in order within the thread");

    // Meta's retry of the same payload is not forwarded again.
    assert_eq!(app.post_webhook(&two).await.status(), 200);
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(receiver.received.lock().unwrap().len(), 3);
    app.cleanup().await;
}
on_both_databases!(each_item_is_forwarded_alone_signed_and_in_order_after_retries);

async fn an_app_that_never_answers_gets_dead_letters_which_can_be_replayed(db: Db) {
    let app = spawn_app_with(db, |c| c.forwarding.retry_for_seconds = 0).await;
    let (receiver, url) = start_receiver().await;
    *receiver.failing.lock().unwrap() = 1;
    let (code, created) = app
        .post_json("/v1/webhooks", &json!({"url": url, "secret": SECRET}))
        .await;
    assert_eq!(code, 201);
    let id = created["id"].as_i64().unwrap();
    app.customer_writes("16505551234", "wamid.D1", now(), false)
        .await;
    let mut letters = Value::Null;
    for _ in 0..100 {
        letters = app.get(&format!("/v1/webhooks/{id}/dead-letters")).await.1;
        if letters["dead_letters"]
            .as_array()
            .is_some_and(|l| !l.is_empty())
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let letter = &letters["dead_letters"][0];
    assert_eq!(letter["kind"], "messages", "{letters}");
    assert!(
        letter["last_error"].as_str().unwrap().contains("HTTP 500"),
        "{letter}"
    );
    assert_eq!(
        letter["payload"]["entry"][0]["changes"][0]["value"]["messages"][0]["id"],
        "wamid.D1"
    );
    assert!(receiver.received.lock().unwrap().is_empty());

    let (code, replayed) = app
        .post_json(&format!("/v1/webhooks/{id}/replay"), &json!({}))
        .await;
    assert_eq!((code, &replayed["replayed"]), (200, &json!(1)));
    let received = wait_for(&receiver, 1).await;
    let payload: Value = serde_json::from_slice(&received[0].1).unwrap();
    assert_eq!(
        payload["entry"][0]["changes"][0]["value"]["messages"][0]["id"],
        "wamid.D1"
    );
    let (_, listed) = app.get("/v1/webhooks").await;
    assert_eq!(listed["webhooks"][0]["dead_letters"], 0, "{listed}");
    app.cleanup().await;
}
on_both_databases!(an_app_that_never_answers_gets_dead_letters_which_can_be_replayed);

fn rfc3339(unix_seconds: i64) -> String {
    hourglass_server::time::format_instant(hourglass_core::Instant::from_unix_seconds(unix_seconds))
}

async fn a_new_app_can_be_replayed_what_arrived_before_it_subscribed(db: Db) {
    let app = spawn_app(db).await;
    // Before any subscription: two messages of one contact, one of another, a status.
    let t = now();
    let before = t - 3600;
    for (wa_id, id, text, at) in [
        ("16505551234", "wamid.R1", "first", t - 3),
        ("16505551234", "wamid.R2", "second", t - 2),
        ("16505559876", "wamid.R3", "other", t - 1),
    ] {
        let status = app
            .post_webhook(&inbound(wa_id, id, text, at))
            .await
            .status();
        assert_eq!(status, 200);
    }
    app.status("16505551234", "wamid.OUT9", "delivered", t)
        .await;

    let (receiver, url) = start_receiver().await;
    let (_, created) = app
        .post_json(
            "/v1/webhooks",
            &json!({"url": url, "secret": SECRET, "events": ["messages"]}),
        )
        .await;
    let id = created["id"].as_i64().unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        receiver.received.lock().unwrap().is_empty(),
        "a subscription does not get the past unless it asks"
    );

    // A span that holds nothing replays nothing.
    let (code, nothing) = app
        .post_json(
            &format!("/v1/webhooks/{id}/replay"),
            &json!({"since": rfc3339(before - 60), "until": rfc3339(before)}),
        )
        .await;
    assert_eq!(code, 200, "{nothing}");
    assert_eq!(
        (
            nothing["replayed"].as_i64(),
            nothing["deliveries_read"].as_i64()
        ),
        (Some(0), Some(0))
    );

    let (code, replayed) = app
        .post_json(
            &format!("/v1/webhooks/{id}/replay"),
            &json!({"since": rfc3339(before)}),
        )
        .await;
    assert_eq!(code, 200, "{replayed}");
    assert_eq!(replayed["deliveries_read"], 4, "{replayed}");
    assert_eq!(
        replayed["replayed"], 3,
        "only the kinds it wants: {replayed}"
    );
    let received = wait_for(&receiver, 3).await;
    let mut first_contact = Vec::new();
    for (signature, body) in &received {
        assert_eq!(
            signature.as_deref(),
            Some(hourglass_meta::sign(SECRET.as_bytes(), body).as_str())
        );
        let payload: Value = serde_json::from_slice(body).unwrap();
        let message = &payload["entry"][0]["changes"][0]["value"]["messages"][0];
        if message["from"] == "16505551234" {
            first_contact.push(message["text"]["body"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(
        first_contact,
        ["first", "second"],
        "in the order they arrived"
    );

    for (request, why) in [
        (json!({"since": "yesterday"}), "invalid_instant"),
        (
            json!({"since": rfc3339(t), "until": rfc3339(t - 10)}),
            "invalid_span",
        ),
        (json!({"until": rfc3339(t)}), "invalid_body"),
        (json!({"since": rfc3339(t), "from": 1}), "invalid_body"),
    ] {
        let (code, answer) = app
            .post_json(&format!("/v1/webhooks/{id}/replay"), &request)
            .await;
        assert_eq!(code, 400, "{request}: {answer}");
        assert_eq!(answer["error"]["code"], why, "{request}: {answer}");
    }
    let (code, _) = app
        .post_json(
            "/v1/webhooks/999/replay",
            &json!({"since": rfc3339(before)}),
        )
        .await;
    assert_eq!(code, 404);
    app.cleanup().await;
}
on_both_databases!(a_new_app_can_be_replayed_what_arrived_before_it_subscribed);

/// An app subscribed to the `windows` kind.
async fn subscribe_to_window_events(app: &TestApp) -> App {
    let (receiver, url) = start_receiver().await;
    let (code, created) = app
        .post_json(
            "/v1/webhooks",
            &json!({"url": url, "secret": SECRET, "events": ["windows"]}),
        )
        .await;
    assert_eq!(code, 201, "{created}");
    receiver
}

/// The events an app received, as (event, contact's wa_id, at).
fn window_events_of(received: &[Received]) -> Vec<(String, String, String)> {
    received
        .iter()
        .map(|(signature, body)| {
            assert_eq!(
                signature.as_deref(),
                Some(hourglass_meta::sign(SECRET.as_bytes(), body).as_str())
            );
            let event: Value = serde_json::from_slice(body).unwrap();
            assert_eq!(event["object"], "hourglass", "{event}");
            assert_eq!(event["phone_number_id"], NUMBER, "{event}");
            (
                event["event"].as_str().unwrap().to_owned(),
                event["contact"]["wa_id"].as_str().unwrap().to_owned(),
                event["at"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

async fn window_events_say_when_a_window_opens_is_closing_and_closes(db: Db) {
    let app = spawn_app_with(db, |c| {
        c.forwarding.window_closing_soon_seconds = 2;
        c.forwarding.window_tick_ms = 100;
    })
    .await;
    let receiver = subscribe_to_window_events(&app).await;

    // A message whose window closes 4 s from now, then a late webhook for an older message
    // (no event).
    let t = now();
    let opened_at = t - 86_400 + 4;
    app.customer_writes("16505551234", "wamid.W1", opened_at, false)
        .await;
    app.customer_writes("16505551234", "wamid.W2", opened_at - 60, false)
        .await;
    let received = wait_for(&receiver, 3).await;
    assert_eq!(
        window_events_of(&received),
        [
            (
                "window.opened".to_owned(),
                "16505551234".to_owned(),
                rfc3339(opened_at)
            ),
            (
                "window.closing_soon".to_owned(),
                "16505551234".to_owned(),
                rfc3339(opened_at + 86_400 - 2)
            ),
            (
                "window.closed".to_owned(),
                "16505551234".to_owned(),
                rfc3339(opened_at + 86_400)
            ),
        ]
    );
    let body: Value = serde_json::from_slice(&received[0].1).unwrap();
    assert_eq!(body["window"]["closes_at"], rfc3339(opened_at + 86_400));

    // The window is closed: the next message opens a new one; one a second later does not.
    let again = now();
    app.customer_writes("16505551234", "wamid.W3", again, false)
        .await;
    app.customer_writes("16505551234", "wamid.W4", again + 1, false)
        .await;
    let received = wait_for(&receiver, 4).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let events = window_events_of(&receiver.received.lock().unwrap());
    assert_eq!(events.len(), 4, "{events:?}");
    assert_eq!(
        window_events_of(&received)[3],
        (
            "window.opened".to_owned(),
            "16505551234".to_owned(),
            rfc3339(again)
        )
    );
    app.cleanup().await;
}
on_both_databases!(window_events_say_when_a_window_opens_is_closing_and_closes);

async fn where_reactions_count_a_reaction_opens_the_window_and_its_clock_runs_from_it(db: Db) {
    let app = spawn_app_with(db, |c| {
        c.reactions_open_window = true;
        c.forwarding.window_closing_soon_seconds = 2;
        c.forwarding.window_tick_ms = 100;
    })
    .await;
    let receiver = subscribe_to_window_events(&app).await;

    // A text two days ago (its window long closed), then a reaction whose window closes
    // 4 s from now: the reaction opens it, and the clock runs from the reaction.
    let t = now();
    let contact = "16505551235";
    app.customer_writes(contact, "wamid.R1", t - 2 * 86_400, false)
        .await;
    let reacted = t - 86_400 + 4;
    app.customer_reacts(contact, "wamid.R2", reacted).await;
    // Another contact's reaction an hour ago opens a window; their text after it does not.
    let other = "16505551236";
    app.customer_writes(other, "wamid.R3", t - 2 * 86_400, false)
        .await;
    app.customer_reacts(other, "wamid.R4", t - 3600).await;
    app.customer_writes(other, "wamid.R5", t - 3000, false)
        .await;

    let received = wait_for(&receiver, 6).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let events = window_events_of(&receiver.received.lock().unwrap());
    assert_eq!(events.len(), 6, "{events:?}");
    let of = |wa_id: &str| -> Vec<(String, String)> {
        events
            .iter()
            .filter(|(_, w, _)| w == wa_id)
            .map(|(event, _, at)| (event.clone(), at.clone()))
            .collect()
    };
    let event = |name: &str, at: i64| (name.to_owned(), rfc3339(at));
    assert_eq!(
        of(contact),
        [
            event("window.opened", t - 2 * 86_400),
            event("window.opened", reacted),
            event("window.closing_soon", reacted + 86_400 - 2),
            event("window.closed", reacted + 86_400),
        ]
    );
    assert_eq!(
        of(other),
        [
            event("window.opened", t - 2 * 86_400),
            event("window.opened", t - 3600)
        ]
    );
    let opened_by_reaction = received
        .iter()
        .map(|(_, body)| serde_json::from_slice::<Value>(body).unwrap())
        .find(|e| e["contact"]["wa_id"] == contact && e["at"] == rfc3339(reacted))
        .expect("the reaction's window.opened");
    assert_eq!(
        opened_by_reaction["window"]["closes_at"],
        rfc3339(reacted + 86_400)
    );
    app.cleanup().await;
}
on_both_databases!(where_reactions_count_a_reaction_opens_the_window_and_its_clock_runs_from_it);

/// The free entry point events an app received about one contact, as (event, at), and the
/// FEP each names.
fn fep_events_of(received: &[Received], wa_id: &str) -> Vec<(String, String)> {
    window_events_of(received)
        .into_iter()
        .filter(|(event, contact, _)| event.starts_with("fep.") && contact == wa_id)
        .map(|(event, _, at)| (event, at))
        .collect()
}

async fn wait_for_fep_events(app: &App, wa_id: &str, count: usize) -> Vec<(String, String)> {
    for _ in 0..200 {
        let events = fep_events_of(&app.received.lock().unwrap(), wa_id);
        if events.len() >= count {
            return events;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "{wa_id}: {:?}",
        fep_events_of(&app.received.lock().unwrap(), wa_id)
    );
}

async fn fep_events_say_when_a_free_entry_point_opens_and_closes(db: Db) {
    let app = spawn_app_with(db, |c| c.forwarding.window_tick_ms = 100).await;
    let receiver = subscribe_to_window_events(&app).await;
    // Let the clock's first pass (in the second after the subscription's) note that
    // nothing is known yet: what it finds later is reported whenever it happened. (A
    // fixed sleep was not enough on a loaded machine: a first pass that came after the
    // messages only noted them.)
    let mut waited = 0;
    while app
        .store
        .forwarding()
        .clock(hourglass_store::FEP_CLOCK)
        .await
        .unwrap()
        .is_none()
    {
        assert!(waited < 200, "the FEP clock made no first pass in 10 s");
        waited += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A contact from an ad, answered within the hour; the answer was delivered 72 hours
    // less 3 seconds ago, so the free entry point closes 3 seconds from now.
    let t = now();
    let delivered_at = t - 3 * 86_400 + 3;
    app.customer_writes("16505550001", "wamid.FA1", delivered_at - 120, true)
        .await;
    app.status("16505550001", "wamid.FR1", "sent", delivered_at - 60)
        .await;
    app.status("16505550001", "wamid.FR1", "delivered", delivered_at)
        .await;
    let events = wait_for_fep_events(&receiver, "16505550001", 2).await;
    assert_eq!(
        events,
        [
            ("fep.opened".to_owned(), rfc3339(delivered_at)),
            ("fep.closed".to_owned(), rfc3339(delivered_at + 3 * 86_400)),
        ]
    );
    let opened = receiver
        .received
        .lock()
        .unwrap()
        .iter()
        .map(|(_, body)| serde_json::from_slice::<Value>(body).unwrap())
        .find(|event| event["event"] == "fep.opened")
        .unwrap();
    assert_eq!(
        opened["free_entry_point"],
        json!({"opened_at": rfc3339(delivered_at), "closes_at": rfc3339(delivered_at + 3 * 86_400)})
    );

    // Another contact from an ad: eligible for a while, then the reply's statuses arrive
    // late, naming a delivery in the past. The event says when it was delivered.
    let t = now();
    app.customer_writes("16505550002", "wamid.FA2", t - 100, true)
        .await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(fep_events_of(&receiver.received.lock().unwrap(), "16505550002").is_empty());
    app.status("16505550002", "wamid.FR2", "delivered", t - 80)
        .await;
    app.status("16505550002", "wamid.FR2", "sent", t - 90).await;
    let events = wait_for_fep_events(&receiver, "16505550002", 1).await;
    assert_eq!(events, [("fep.opened".to_owned(), rfc3339(t - 80))]);

    // Nothing is reported twice.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let received = receiver.received.lock().unwrap().clone();
    assert_eq!(fep_events_of(&received, "16505550001").len(), 2);
    assert_eq!(fep_events_of(&received, "16505550002").len(), 1);
    app.cleanup().await;
}
on_both_databases!(fep_events_say_when_a_free_entry_point_opens_and_closes);
