//! Bad input gets a clear answer, nothing wrong is stored, and the server keeps serving.

use serde_json::json;

use crate::helpers::*;
use crate::on_both_databases;

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/../../../shared/fixtures/meta/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

async fn unsigned_wrongly_signed_malformed_and_oversized_webhooks_are_refused_and_nothing_is_stored(
    db: Db,
) {
    let app = spawn_app_with(db, |c| c.max_webhook_bytes = 64 * 1024).await;
    let body = fixture("inbound_text.json");

    let response = app.post_webhook_bytes(body.clone(), None).await;
    assert_eq!(response.status(), 401);
    assert!(response
        .text()
        .await
        .unwrap()
        .contains("X-Hub-Signature-256"));

    let wrong = hourglass_meta::sign(b"not the app secret", &body);
    let response = app.post_webhook_bytes(body.clone(), Some(wrong)).await;
    assert_eq!(response.status(), 401);

    let response = app
        .post_webhook_bytes(body.clone(), Some("sha256=zz".into()))
        .await;
    assert_eq!(response.status(), 401);

    // A signature over different bytes than those sent (one byte changed).
    let mut tampered = body.clone();
    let signature = hourglass_meta::sign(app.secret.as_bytes(), &tampered);
    tampered[10] = b' ';
    assert_eq!(
        app.post_webhook_bytes(tampered, Some(signature))
            .await
            .status(),
        401
    );

    let malformed = b"{\"object\": \"whatsapp_business_account\", \"entry\": [".to_vec();
    let signature = hourglass_meta::sign(app.secret.as_bytes(), &malformed);
    let response = app.post_webhook_bytes(malformed, Some(signature)).await;
    assert_eq!(response.status(), 400);
    assert!(
        !response.text().await.unwrap().is_empty(),
        "a 400 says what is wrong"
    );

    let not_an_envelope = br#"{"hello": "world"}"#.to_vec();
    let signature = hourglass_meta::sign(app.secret.as_bytes(), &not_an_envelope);
    assert_eq!(
        app.post_webhook_bytes(not_an_envelope, Some(signature))
            .await
            .status(),
        400
    );

    let oversized = vec![b' '; 65 * 1024];
    let signature = hourglass_meta::sign(app.secret.as_bytes(), &oversized);
    assert_eq!(
        app.post_webhook_bytes(oversized, Some(signature))
            .await
            .status(),
        413
    );

    assert_eq!(
        app.counts().await,
        hourglass_store::StoreCounts::default(),
        "nothing refused was stored"
    );

    // ...and the server still serves a good one.
    let signature = hourglass_meta::sign(app.secret.as_bytes(), &body);
    assert_eq!(
        app.post_webhook_bytes(body, Some(signature)).await.status(),
        200
    );
    assert_eq!(app.counts().await.messages, 1);
    let (status, _) = app.get("/healthz").await;
    assert_eq!(status, 200);
    app.cleanup().await;
}
on_both_databases!(
    unsigned_wrongly_signed_malformed_and_oversized_webhooks_are_refused_and_nothing_is_stored
);

async fn every_fixture_is_accepted_and_the_same_delivery_twice_changes_nothing(db: Db) {
    let app = spawn_app(db).await;
    let mut names: Vec<String> = std::fs::read_dir(format!(
        "{}/../../../shared/fixtures/meta",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
    .map(|e| e.unwrap().file_name().into_string().unwrap())
    .filter(|n| {
        n.starts_with("inbound_")
            || n.starts_with("status_")
            || n.starts_with("value_")
            || n.starts_with("account_")
    })
    .collect();
    names.sort();
    for name in &names {
        let body = fixture(name);
        let signature = hourglass_meta::sign(app.secret.as_bytes(), &body);
        let response = app.post_webhook_bytes(body, Some(signature)).await;
        assert_eq!(
            response.status(),
            200,
            "{name}: {}",
            response.text().await.unwrap()
        );
    }
    let first = app.counts().await;
    assert_eq!(first.deliveries as usize, names.len());
    for name in &names {
        let body = fixture(name);
        let signature = hourglass_meta::sign(app.secret.as_bytes(), &body);
        assert_eq!(
            app.post_webhook_bytes(body, Some(signature)).await.status(),
            200
        );
    }
    assert_eq!(app.counts().await, first, "Meta's retries change nothing");
    app.cleanup().await;
}
on_both_databases!(every_fixture_is_accepted_and_the_same_delivery_twice_changes_nothing);

async fn unknown_types_missing_fields_and_absurd_timestamps_are_kept_raw_and_change_no_window(
    db: Db,
) {
    let app = spawn_app(db).await;
    let now = now();
    let envelope = |messages: serde_json::Value, statuses: serde_json::Value| {
        json!({"object": "whatsapp_business_account", "entry": [{"id": WABA, "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": DISPLAY, "phone_number_id": NUMBER},
            "contacts": [{"profile": {"name": "X"}, "wa_id": "16505554444"}],
            "messages": messages, "statuses": statuses}}]}]})
    };
    // An item missing its id, one from the far future, one from 1970, a status with a
    // non-numeric timestamp, and a field Hourglass has never heard of.
    let payload = envelope(
        json!([
            {"from": "16505554444", "timestamp": now.to_string(), "type": "text", "text": {"body": "no id"}},
            {"from": "16505554444", "id": "wamid.future", "timestamp": (now + 10 * 86_400).to_string(), "type": "text", "text": {"body": "x"}},
            {"from": "16505554444", "id": "wamid.epoch", "timestamp": "12", "type": "text", "text": {"body": "x"}},
        ]),
        json!([{"id": "wamid.s", "status": "delivered", "timestamp": "soon", "recipient_id": "16505554444"}]),
    );
    assert_eq!(app.post_webhook(&payload).await.status(), 200);
    let other_field = json!({"object": "whatsapp_business_account", "entry": [{"id": WABA, "changes": [
        {"field": "brand_new_field", "value": {"anything": [1, 2, 3]}}]}]});
    assert_eq!(app.post_webhook(&other_field).await.status(), 200);
    let counts = app.counts().await;
    assert_eq!(counts.deliveries, 2, "the raw bodies are kept");
    assert_eq!(counts.messages, 0, "no implausible item became a message");
    assert_eq!(counts.statuses, 0);
    let (status, _) = app.window("16505554444", None).await;
    assert_eq!(
        status, 404,
        "no thread was opened by items that were not believed"
    );

    // An unknown message type from the contact is still the contact writing.
    let banana = envelope(
        json!([{"from": "16505554444", "id": "wamid.banana", "timestamp": now.to_string(), "type": "banana", "banana": {}}]),
        json!([]),
    );
    assert_eq!(app.post_webhook(&banana).await.status(), 200);
    let (status, window) = app.window("16505554444", None).await;
    assert_eq!(status, 200);
    assert_eq!(window["customer_service_window"]["open"], true);
    app.cleanup().await;
}
on_both_databases!(
    unknown_types_missing_fields_and_absurd_timestamps_are_kept_raw_and_change_no_window
);

async fn a_malformed_send_gets_metas_invalid_parameter_error(db: Db) {
    let app = spawn_app(db).await;
    let response = app
        .client
        .post(format!("{}/v21.0/{NUMBER}/messages", app.base))
        .bearer_auth(&app.api_key)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], 100);
    let (status, body) = app
        .send(&json!({"messaging_product": "whatsapp", "type": "text", "text": {"body": "x"}}))
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], 100);
    assert!(app.meta.calls().is_empty());
    app.cleanup().await;
}
on_both_databases!(a_malformed_send_gets_metas_invalid_parameter_error);
