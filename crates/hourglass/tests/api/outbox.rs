//! The durable outbox behind Hourglass's own send API: idempotent by key, retried by
//! Meta's error codes, scheduled, and checked against the window at the moment it is
//! sent.

use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::*;
use crate::on_both_databases;
use hourglass_meta::send::{build_status_webhook, StatusParams};

const CONTACT: &str = "16505551234";

async fn send_with_key(app: &TestApp, key: Option<&str>, body: &Value) -> (u16, Value) {
    let mut request = app
        .client
        .post(format!(
            "{}/v1/numbers/{NUMBER}/contacts/{CONTACT}/messages",
            app.base
        ))
        .bearer_auth(&app.api_key)
        .json(body);
    if let Some(key) = key {
        request = request.header("idempotency-key", key);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

async fn wait_until_final(app: &TestApp, outbox_id: i64) -> Value {
    for _ in 0..200 {
        let (code, row) = app
            .get(&format!("/v1/numbers/{NUMBER}/outbox/{outbox_id}"))
            .await;
        assert_eq!(code, 200, "{row}");
        if ["sent", "failed", "refused"].contains(&row["state"].as_str().unwrap()) {
            return row;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("outbox message {outbox_id} never finished");
}

async fn a_retried_request_with_the_same_idempotency_key_sends_one_message(db: Db) {
    let app = spawn_app(db).await;
    app.customer_writes(CONTACT, "wamid.IN1", now() - 60, false)
        .await;
    let body = json!({"text": "Your order shipped"});
    let (code, first) = send_with_key(&app, Some("order-42-shipped"), &body).await;
    assert_eq!(code, 201, "{first}");
    let (code, again) = send_with_key(&app, Some("order-42-shipped"), &body).await;
    assert_eq!(code, 201, "{again}");
    assert_eq!(first["message"]["outbox_id"], again["message"]["outbox_id"]);
    assert_eq!(
        first["message"]["meta_message_id"],
        again["message"]["meta_message_id"]
    );
    assert_eq!(app.meta.calls().len(), 1, "one message reached Meta");

    let (code, error) =
        send_with_key(&app, Some("order-42-shipped"), &json!({"text": "other"})).await;
    assert_eq!(code, 422, "{error}");
    assert_eq!(error["error"]["code"], "idempotency_key_reused");
    // The same key and body for another contact is another request too.
    let response = app
        .client
        .post(format!(
            "{}/v1/numbers/{NUMBER}/contacts/16505559999/messages",
            app.base
        ))
        .bearer_auth(&app.api_key)
        .header("idempotency-key", "order-42-shipped")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 422);
    // Without a key, every request is a message of its own.
    send_with_key(&app, None, &body).await;
    send_with_key(&app, None, &body).await;
    assert_eq!(app.meta.calls().len(), 3);
    app.cleanup().await;
}
on_both_databases!(a_retried_request_with_the_same_idempotency_key_sends_one_message);

async fn transient_meta_errors_are_retried_and_permanent_ones_fail_at_once(db: Db) {
    let app = spawn_app_with(db, |c| c.outbox.retry_base_seconds = 0).await;
    app.customer_writes(CONTACT, "wamid.IN1", now() - 60, false)
        .await;
    app.meta
        .fail_next(&[(500, 131000), (429, 130429), (503, 131016)]);
    let (code, sent) = send_with_key(&app, None, &json!({"text": "hello"})).await;
    assert_eq!(code, 201, "{sent}");
    assert_eq!(app.meta.calls().len(), 4, "three failures, then the send");
    let id = sent["message"]["outbox_id"].as_i64().unwrap();
    let (_, row) = app.get(&format!("/v1/numbers/{NUMBER}/outbox/{id}")).await;
    assert_eq!(row["attempts"], 4);
    assert_eq!(row["state"], "sent");

    app.meta.fail_next(&[(400, 131026)]);
    let (code, failed) = send_with_key(&app, None, &json!({"text": "hello again"})).await;
    assert_eq!(code, 400, "{failed}");
    assert_eq!(failed["error"]["meta_code"], 131026);
    assert_eq!(
        app.meta.calls().len(),
        5,
        "a permanent error is not retried"
    );
    app.cleanup().await;
}
on_both_databases!(transient_meta_errors_are_retried_and_permanent_ones_fail_at_once);

async fn a_scheduled_message_waits_for_its_instant(db: Db) {
    let app = spawn_app_with(db, |c| c.outbox.wait_ms = 300).await;
    app.customer_writes(CONTACT, "wamid.IN1", now() - 60, false)
        .await;
    let send_at = now() + 2;
    let (code, queued) =
        send_with_key(&app, None, &json!({"text": "later", "send_at": send_at})).await;
    assert_eq!(code, 202, "{queued}");
    assert_eq!(queued["message"]["state"], "queued");
    assert!(app.meta.calls().is_empty());
    let row = wait_until_final(&app, queued["message"]["outbox_id"].as_i64().unwrap()).await;
    assert_eq!(row["state"], "sent", "{row}");
    assert_eq!(app.meta.calls().len(), 1);
    let finished = hourglass_server::time::parse_instant(row["finished_at"].as_str().unwrap())
        .unwrap()
        .unix_seconds();
    assert!(finished >= send_at, "sent at {finished}, due {send_at}");
    app.cleanup().await;
}
on_both_databases!(a_scheduled_message_waits_for_its_instant);

async fn a_queued_free_form_message_whose_window_closed_before_its_turn_is_refused_not_sent(
    db: Db,
) {
    let app = spawn_app_with(db, |c| c.outbox.wait_ms = 300).await;
    // The window closes two seconds from now; the message is due in three.
    let t = now();
    app.customer_writes(CONTACT, "wamid.IN1", t - 24 * 3600 + 2, false)
        .await;
    let (code, queued) =
        send_with_key(&app, None, &json!({"text": "too late", "send_at": t + 3})).await;
    assert_eq!(code, 202, "{queued}");
    let row = wait_until_final(&app, queued["message"]["outbox_id"].as_i64().unwrap()).await;
    assert_eq!(row["state"], "refused", "{row}");
    assert_eq!(row["last_error"]["meta_code"], 131047);
    assert!(app.meta.calls().is_empty(), "never reached Meta");
    assert_eq!(app.counts().await.refusals, 1);
    app.cleanup().await;
}
on_both_databases!(
    a_queued_free_form_message_whose_window_closed_before_its_turn_is_refused_not_sent
);

/// A process that sent a message and died before recording Meta's answer leaves the row
/// unfinished; the status webhooks Meta sends for it carry the row's callback data, and
/// they finish it, so it is never sent a second time. Both statuses arrive in one webhook,
/// as Meta batches them, and the row takes the first one's instant.
async fn a_status_carrying_the_outbox_callback_finishes_the_row_without_a_send(db: Db) {
    let app = spawn_app_with(db, |c| c.outbox.wait_ms = 300).await;
    let t = now();
    app.customer_writes(CONTACT, "wamid.IN1", t - 60, false)
        .await;
    // Due in an hour, so the outbox does not send it during the test.
    let (code, queued) =
        send_with_key(&app, None, &json!({"text": "shipped", "send_at": t + 3600})).await;
    assert_eq!(code, 202, "{queued}");
    let outbox_id = queued["message"]["outbox_id"].as_i64().unwrap();
    let callback = format!("hourglass-outbox:{outbox_id}");
    let status = |status: &str, at: i64| {
        build_status_webhook(&StatusParams {
            waba_id: WABA,
            phone_number_id: NUMBER,
            display_phone_number: DISPLAY,
            message_id: "wamid.OUT-answer-lost",
            recipient_wa_id: CONTACT,
            recipient_user_id: None,
            status,
            timestamp: at,
            conversation: None,
            biz_opaque_callback_data: Some(&callback),
            pricing: None,
        })
    };
    let mut payload = status("sent", t - 5);
    let delivered = status("delivered", t - 3);
    payload["entry"][0]["changes"][0]["value"]["statuses"]
        .as_array_mut()
        .unwrap()
        .push(delivered["entry"][0]["changes"][0]["value"]["statuses"][0].clone());
    let response = app.post_webhook(&payload).await;
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());

    let (code, row) = app
        .get(&format!("/v1/numbers/{NUMBER}/outbox/{outbox_id}"))
        .await;
    assert_eq!(code, 200, "{row}");
    assert_eq!(row["state"], "sent", "{row}");
    assert_eq!(row["meta_message_id"], "wamid.OUT-answer-lost", "{row}");
    let finished = hourglass_server::time::parse_instant(row["finished_at"].as_str().unwrap())
        .unwrap()
        .unix_seconds();
    assert_eq!(finished, t - 5, "finished by the first status: {row}");
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(app.meta.calls().is_empty(), "never sent again");
    app.cleanup().await;
}
on_both_databases!(a_status_carrying_the_outbox_callback_finishes_the_row_without_a_send);
