//! The template registry end to end: created with the sandbox playing Meta (PENDING, then
//! an APPROVED webhook), synced page by page, kept current by Meta's template webhooks,
//! and every template send checked against it before anything leaves.

use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::*;
use crate::on_both_databases;

const CONTACT: &str = "16505551234";

fn with_sandbox(config: &mut hourglass_server::Config) {
    config.meta.upstream = "sandbox".into();
    config.sandbox.template_review_ms = 150;
    config.sandbox.delivered_after_ms = 50;
    config.sandbox.read_after_ms = 0;
    config.meta.template_page_size = 2;
}

/// Meta's template webhook for the WABA, as Meta sends it.
fn template_webhook(field: &str, time: i64, value: Value) -> Value {
    json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": WABA, "time": time, "changes": [{"field": field, "value": value}]}]
    })
}

async fn wait_for_status(app: &TestApp, name: &str, status: &str) -> Value {
    for _ in 0..100 {
        let (code, template) = app
            .get(&format!("/v1/templates/{name}/en_US?waba_id={WABA}"))
            .await;
        if code == 200 && template["status"] == status {
            return template;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("template {name} never reached {status}");
}

fn keep_helping_send(to: &str) -> Value {
    json!({
        "messaging_product": "whatsapp", "to": to, "type": "template",
        "template": {"name": "keep_helping", "language": {"code": "en_US"}, "components": [
            {"type": "body", "parameters": [
                {"type": "text", "parameter_name": "user", "text": "Ana"},
                {"type": "text", "parameter_name": "agent", "text": "Sam"},
                {"type": "text", "parameter_name": "company", "text": "Lucky Shrub"}
            ]}
        ]}
    })
}

/// The product brief's template, from creation to the customer's tap that reopens the
/// window, with the sandbox playing Meta.
async fn the_brief_template_is_created_approved_sent_to_a_closed_window_and_its_quick_reply_reopens_it(
    db: Db,
) {
    let app = spawn_app_with(db, with_sandbox).await;
    let t0 = now();
    // The contact last wrote 25 hours ago: the window is closed.
    app.customer_writes(CONTACT, "wamid.OLD", t0 - 25 * 3600, false)
        .await;

    // Lints clean, and Meta's review starts as PENDING.
    let (code, lint) = app
        .post_json("/v1/templates/lint", &fixture("template_create_named.json"))
        .await;
    assert_eq!((code, &lint["findings"]), (200, &json!([])), "{lint}");
    let (code, created) = app
        .post_json(
            &format!("/v1/templates?waba_id={WABA}"),
            &fixture("template_create_named.json"),
        )
        .await;
    assert_eq!(code, 201, "{created}");
    assert_eq!(created["status"], "PENDING");
    assert_eq!(created["category"], "MARKETING");
    assert_eq!(created["parameter_format"], "named");

    // The sandbox approves it through the status webhook.
    let approved = wait_for_status(&app, "keep_helping", "APPROVED").await;
    let history: Vec<(&str, &str)> = approved["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["kind"] == "status")
        .map(|h| (h["value"].as_str().unwrap(), h["source"].as_str().unwrap()))
        .collect();
    assert_eq!(history, [("PENDING", "create"), ("APPROVED", "webhook")]);

    // It renders exactly.
    let (code, preview) = app
        .post_json(
            &format!("/v1/templates/keep_helping/en_US/preview?waba_id={WABA}"),
            &json!({"params": {"user": "Ana", "agent": "Sam", "company": "Lucky Shrub"}}),
        )
        .await;
    assert_eq!(code, 200, "{preview}");
    assert_eq!(
        preview["rendered"]["body"],
        "Hello, Ana! I am Sam from Lucky Shrub. I would like to keep helping you. Can I assist you with something else?"
    );
    let labels: Vec<&str> = preview["rendered"]["buttons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["text"].as_str().unwrap())
        .collect();
    assert_eq!(labels, ["Yes, please!", "No, thanks!"]);

    // Free-form is refused, and the refusal names the template that would reopen it.
    let (code, refused) = app.send(&text(CONTACT, "still there?")).await;
    assert_eq!(code, 400);
    assert_eq!(refused["error"]["code"], 131047);
    let details = refused["error"]["error_data"]["details"].as_str().unwrap();
    assert!(details.contains("keep_helping (en_US)"), "{details}");

    // The template goes out to the closed window, and is recorded as marketing.
    let (code, sent) = app.send(&keep_helping_send(CONTACT)).await;
    assert_eq!(code, 200, "{sent}");
    let wamid = sent["messages"][0]["id"].as_str().unwrap().to_owned();
    assert!(wamid.starts_with("wamid.SANDBOX"), "{wamid}");
    let (_, messages) = app
        .get(&format!("/v1/numbers/{NUMBER}/contacts/{CONTACT}/messages"))
        .await;
    let ours = messages["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == wamid.as_str())
        .unwrap()
        .clone();
    assert_eq!(ours["category"], "marketing", "{ours}");
    assert_eq!(ours["template"], "keep_helping");

    // The contact taps "Yes, please!": a customer message, so the window reopens.
    let tap_at = now();
    let mut tap = fixture("inbound_template_quick_reply.json");
    let value = &mut tap["entry"][0]["changes"][0]["value"];
    value["metadata"] = json!({"display_phone_number": DISPLAY, "phone_number_id": NUMBER});
    value["contacts"][0]["wa_id"] = json!(CONTACT);
    value["messages"][0]["from"] = json!(CONTACT);
    value["messages"][0]["context"]["id"] = json!(wamid);
    value["messages"][0]["timestamp"] = json!(tap_at.to_string());
    tap["entry"][0]["id"] = json!(WABA);
    assert_eq!(app.post_webhook(&tap).await.status(), 200);
    let (_, window) = app.window(CONTACT, Some(tap_at)).await;
    assert_eq!(window["customer_service_window"]["open"], true, "{window}");
    let (code, _) = app.send(&text(CONTACT, "Great, how can I help?")).await;
    assert_eq!(code, 200);

    app.cleanup().await;
}
on_both_databases!(
    the_brief_template_is_created_approved_sent_to_a_closed_window_and_its_quick_reply_reopens_it
);

/// A pause webhook takes effect at once: the next send is refused with 132015 and never
/// reaches Meta; Hourglass's own send says the same in its own shape.
async fn a_paused_template_is_refused_with_132015_and_nothing_is_forwarded(db: Db) {
    let app = spawn_app_with(db, with_sandbox).await;
    app.customer_writes(CONTACT, "wamid.IN1", now() - 60, false)
        .await;
    let (code, _) = app
        .post_json(
            &format!("/v1/templates?waba_id={WABA}"),
            &fixture("template_create_named.json"),
        )
        .await;
    assert_eq!(code, 201);
    wait_for_status(&app, "keep_helping", "APPROVED").await;

    // Hourglass's simple send: plain parameters, the record back with its charge.
    let (code, sent) = app
        .post_json(
            &format!("/v1/numbers/{NUMBER}/contacts/{CONTACT}/messages"),
            &json!({"template": {"name": "keep_helping", "language": "en_US",
                    "params": {"user": "Ana", "agent": "Sam", "company": "Lucky Shrub"}}}),
        )
        .await;
    assert_eq!(code, 201, "{sent}");
    let message = &sent["message"];
    assert!(message["meta_message_id"]
        .as_str()
        .unwrap()
        .starts_with("wamid.SANDBOX"));
    assert_eq!(message["category"], "marketing");
    assert_eq!(message["charge"]["billable"], true, "{message}");
    assert_eq!(
        message["rendered"]["body"],
        "Hello, Ana! I am Sam from Lucky Shrub. I would like to keep helping you. Can I assist you with something else?"
    );

    let template_id = app
        .get(&format!("/v1/templates/keep_helping/en_US?waba_id={WABA}"))
        .await
        .1["meta_template_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let paused = template_webhook(
        "message_template_status_update",
        now() + 5,
        json!({"event": "PAUSED", "message_template_id": template_id.parse::<u64>().unwrap(),
               "message_template_name": "keep_helping", "message_template_language": "en-US",
               "reason": "NONE", "other_info": {"title": "FIRST_PAUSE",
               "description": "Your WhatsApp message template has been paused for 3 hours."}}),
    );
    assert_eq!(app.post_webhook(&paused).await.status(), 200);
    // Meta retries: the same webhook again changes nothing.
    assert_eq!(app.post_webhook(&paused).await.status(), 200);

    let before = app.counts().await;
    let (code, refused) = app.send(&keep_helping_send(CONTACT)).await;
    assert_eq!(code, 400, "{refused}");
    assert_eq!(refused["error"]["code"], 132015);
    assert_eq!(refused["error"]["message"], "(#132015) Template is Paused");
    let (code, simple) = app
        .post_json(
            &format!("/v1/numbers/{NUMBER}/contacts/{CONTACT}/messages"),
            &json!({"template": {"name": "keep_helping", "language": "en_US",
                    "params": {"user": "Ana", "agent": "Sam", "company": "Lucky Shrub"}}}),
        )
        .await;
    assert_eq!(code, 400, "{simple}");
    assert_eq!(simple["error"]["code"], "template_paused");
    assert_eq!(simple["error"]["meta_code"], 132015);
    let after = app.counts().await;
    assert_eq!(after.messages, before.messages, "nothing was sent");
    assert_eq!(after.refusals, before.refusals + 2);

    // A sync taken before the pause (Meta's list still says APPROVED) does not undo it.
    let (code, synced) = app
        .post_json(&format!("/v1/templates/sync?waba_id={WABA}"), &json!({}))
        .await;
    assert_eq!(code, 200, "{synced}");
    let (_, template) = app
        .get(&format!("/v1/templates/keep_helping/en_US?waba_id={WABA}"))
        .await;
    assert_eq!(template["status"], "PAUSED");
    let paused_entries = template["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["value"] == "PAUSED")
        .count();
    assert_eq!(paused_entries, 1, "{template}");

    app.cleanup().await;
}
on_both_databases!(a_paused_template_is_refused_with_132015_and_nothing_is_forwarded);

/// A sync reads every page Meta offers; what it lists is then the whole truth, so an
/// unknown template is refused with 132001 (HTTP 404).
async fn a_sync_reads_every_page_and_then_unknown_templates_get_132001(db: Db) {
    let app = spawn_app_with(db, with_sandbox).await;
    app.customer_writes(CONTACT, "wamid.IN1", now() - 60, false)
        .await;
    for name in ["first_one", "second_one", "third_one"] {
        let mut template = fixture("template_create_named.json");
        template["name"] = json!(name);
        let (code, created) = app
            .post_json(&format!("/v1/templates?waba_id={WABA}"), &template)
            .await;
        assert_eq!(code, 201, "{created}");
    }
    let (code, synced) = app
        .post_json(&format!("/v1/templates/sync?waba_id={WABA}"), &json!({}))
        .await;
    assert_eq!(code, 200, "{synced}");
    assert_eq!(synced["templates"], 3);
    assert_eq!(synced["pages"], 2, "page size 2, three templates");
    let (_, listed) = app.get(&format!("/v1/templates?waba_id={WABA}")).await;
    assert_eq!(listed["templates"].as_array().unwrap().len(), 3);
    assert!(listed["synced_at"].is_string());

    let (code, refused) = app.send(&template(CONTACT, "no_such_template")).await;
    assert_eq!(code, 404, "{refused}");
    assert_eq!(refused["error"]["code"], 132001);

    // A template that breaks Meta's rules never reaches Meta.
    let mut broken = fixture("template_create_named.json");
    broken["name"] = json!("Bad Name");
    broken["components"][0]["text"] = json!("{{user}} only a parameter at the start");
    let (code, error) = app
        .post_json(&format!("/v1/templates?waba_id={WABA}"), &broken)
        .await;
    assert_eq!(code, 422, "{error}");
    let rules: Vec<&str> = error["error"]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["rule"].as_str().unwrap())
        .collect();
    assert!(rules.len() >= 2, "{rules:?}");

    // Deleting removes it from Meta and from the registry.
    let response = app
        .client
        .delete(format!(
            "{}/v1/templates/third_one?waba_id={WABA}",
            app.base
        ))
        .bearer_auth(&app.api_key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let (code, _) = app
        .get(&format!("/v1/templates/third_one/en_US?waba_id={WABA}"))
        .await;
    assert_eq!(code, 404);

    app.cleanup().await;
}
on_both_databases!(a_sync_reads_every_page_and_then_unknown_templates_get_132001);

fn promo_with_document_header() -> Value {
    json!({
        "name": "1_order_confirmation", "language": "en_US", "status": "APPROVED",
        "category": "UTILITY", "id": "555000111", "parameter_format": "POSITIONAL",
        "components": [
            {"type": "HEADER", "format": "DOCUMENT",
             "example": {"header_handle": ["https://example.com/r.pdf"]}},
            {"type": "BODY", "text": "Hi {{1}}, your order {{2}} is confirmed. Thank you!",
             "example": {"body_text": [["Pablo", "860198-230332"]]}}
        ]
    })
}

/// Parameters are checked against the synced registry as Meta would check them, and a
/// mismatch never reaches Meta.
async fn parameter_mismatches_get_meta_codes_and_never_reach_meta(db: Db) {
    let app = spawn_app(db).await;
    app.customer_writes(CONTACT, "wamid.IN1", now() - 60, false)
        .await;
    let listed = fixture("templates_list.json")["data"][0].clone();
    app.meta
        .set_templates(vec![listed, promo_with_document_header()]);
    let (code, synced) = app
        .post_json(&format!("/v1/templates/sync?waba_id={WABA}"), &json!({}))
        .await;
    assert_eq!(code, 200, "{synced}");
    assert_eq!(synced["pages"], 2);

    let promo = |params: Value| {
        json!({"messaging_product": "whatsapp", "to": CONTACT, "type": "template",
               "template": {"name": "2023_april_promo", "language": {"code": "en_US"},
                            "components": [{"type": "body", "parameters": params}]}})
    };
    // One parameter where the template has two: 132000.
    let (code, refused) = app
        .send(&promo(json!([{"type": "text", "text": "Mark"}])))
        .await;
    assert_eq!(
        (code, &refused["error"]["code"]),
        (400, &json!(132000)),
        "{refused}"
    );
    // An image where the template's header is a document: 132012.
    let confirmation = json!({"messaging_product": "whatsapp", "to": CONTACT, "type": "template",
    "template": {"name": "1_order_confirmation", "language": {"code": "en_US"}, "components": [
        {"type": "header", "parameters": [{"type": "image", "image": {"link": "https://example.com/a.png"}}]},
        {"type": "body", "parameters": [{"type": "text", "text": "Pablo"}, {"type": "text", "text": "860198"}]}
    ]}});
    let (code, refused) = app.send(&confirmation).await;
    assert_eq!(
        (code, &refused["error"]["code"]),
        (400, &json!(132012)),
        "{refused}"
    );
    assert!(
        app.meta.calls().is_empty(),
        "nothing was forwarded: {:?}",
        app.meta.calls()
    );

    // A contact whose window closed is pointed at approved templates, quick-reply ones
    // first (a tap reopens the window), though `1_order_confirmation` sorts first by name.
    app.customer_writes("16505550000", "wamid.OLD", now() - 30 * 3600, false)
        .await;
    let (code, refused) = app.send(&text("16505550000", "hello?")).await;
    assert_eq!(code, 400);
    let details = refused["error"]["error_data"]["details"].as_str().unwrap();
    assert!(
        details.ends_with(
            "Approved templates that could reopen it: 2023_april_promo (en_US), 1_order_confirmation (en_US)."
        ),
        "{details}"
    );

    // Filled in correctly, it goes through, charged as the registry's category.
    let (code, sent) = app
        .send(&promo(
            json!([{"type": "text", "text": "Mark"}, {"type": "text", "text": "FALL25"}]),
        ))
        .await;
    assert_eq!(code, 200, "{sent}");
    assert_eq!(app.meta.calls().len(), 1);

    // Meta's category and quality webhooks update the registry and its history.
    let recategorised = template_webhook(
        "template_category_update",
        now() + 1,
        json!({"message_template_id": 920070352646140u64, "message_template_name": "2023_april_promo",
               "message_template_language": "en_US", "previous_category": "MARKETING", "new_category": "UTILITY"}),
    );
    assert_eq!(app.post_webhook(&recategorised).await.status(), 200);
    let quality = template_webhook(
        "message_template_quality_update",
        now() + 2,
        json!({"previous_quality_score": "GREEN", "new_quality_score": "YELLOW",
               "message_template_id": 920070352646140u64, "message_template_name": "2023_april_promo",
               "message_template_language": "en-US"}),
    );
    assert_eq!(app.post_webhook(&quality).await.status(), 200);
    let (_, template) = app
        .get(&format!(
            "/v1/templates/2023_april_promo/en_US?waba_id={WABA}"
        ))
        .await;
    assert_eq!(template["category"], "UTILITY", "{template}");
    assert_eq!(template["quality"], "YELLOW");
    let kinds: Vec<(&str, &str)> = template["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| (h["kind"].as_str().unwrap(), h["value"].as_str().unwrap()))
        .collect();
    assert!(kinds.contains(&("category", "UTILITY")), "{kinds:?}");
    assert!(kinds.contains(&("quality", "YELLOW")), "{kinds:?}");

    app.cleanup().await;
}
on_both_databases!(parameter_mismatches_get_meta_codes_and_never_reach_meta);

/// Which WABA a number belongs to decides whose templates a key may manage: a key scoped
/// to a number can neither claim another WABA for it nor see another WABA's registry.
async fn a_scoped_key_cannot_reach_another_wabas_templates(db: Db) {
    let app = spawn_app_with(db, with_sandbox).await;
    app.customer_writes(CONTACT, "wamid.IN1", now() - 60, false)
        .await;
    let scoped = hourglass_server::auth::create_key(
        app.store.as_ref(),
        "scoped",
        Some(vec![NUMBER.to_owned()]),
        hourglass_server::time::now(),
    )
    .await
    .unwrap();
    let response = app
        .client
        .put(format!("{}/v1/numbers/{NUMBER}", app.base))
        .bearer_auth(&scoped)
        .json(&json!({"waba_id": "999999999"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    let (code, _) = app
        .get_with_key("/v1/templates?waba_id=999999999", Some(&scoped))
        .await;
    assert_eq!(code, 404);
    let (code, own) = app.get_with_key("/v1/templates", Some(&scoped)).await;
    assert_eq!(code, 200, "{own}");
    assert_eq!(own["waba_id"], WABA);
    app.cleanup().await;
}
on_both_databases!(a_scoped_key_cannot_reach_another_wabas_templates);
