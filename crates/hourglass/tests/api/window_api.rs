//! The `/v1` window answers: shape, `at`, lookups by wa_id or user_id, keys and scopes,
//! and the fleet view of windows about to close.

use serde_json::{json, Value};

use crate::helpers::*;
use crate::on_both_databases;

async fn the_window_answer_follows_the_design_contract_to_the_second(db: Db) {
    let app = spawn_app(db).await;
    let wrote = 1_795_000_000; // 2026-11-18T11:06:40Z
    app.customer_writes("16505551234", "wamid.w.1", wrote, false)
        .await;

    let (status, window) = app.window("16505551234", Some(wrote + 86_399)).await;
    assert_eq!(status, 200, "{window}");
    assert_eq!(window["phone_number_id"], NUMBER);
    assert_eq!(window["contact"]["wa_id"], "16505551234");
    assert_eq!(window["contact"]["user_id"], serde_json::Value::Null);
    assert_eq!(window["at"], "2026-11-19T11:06:39Z");
    assert_eq!(window["customer_service_window"]["open"], true);
    assert_eq!(
        window["customer_service_window"]["opened_at"],
        "2026-11-18T11:06:40Z"
    );
    assert_eq!(
        window["customer_service_window"]["closes_at"],
        "2026-11-19T11:06:40Z"
    );
    assert_eq!(window["customer_service_window"]["seconds_left"], 1);
    assert_eq!(window["free_entry_point"]["state"], "none");
    assert_eq!(
        window["free_entry_point"]["opened_at"],
        serde_json::Value::Null
    );
    assert_eq!(window["free_form_allowed"], true);
    assert_eq!(window["pricing_era"], "PMP_2026");
    assert_eq!(window["charges"]["service"]["type"], "free_tier");
    assert_eq!(window["charges"]["utility"]["billable"], true);

    let (_, closed) = app.window("16505551234", Some(wrote + 86_400)).await;
    assert_eq!(closed["customer_service_window"]["open"], false);
    assert_eq!(
        closed["customer_service_window"]["seconds_left"],
        serde_json::Value::Null
    );
    assert_eq!(closed["free_form_allowed"], false);

    // RFC 3339 works as well as Unix seconds; a past instant ignores later events.
    let (_, before) = app
        .get(&format!(
            "/v1/numbers/{NUMBER}/contacts/16505551234/window?at=2026-11-18T11:06:39Z"
        ))
        .await;
    assert_eq!(before["customer_service_window"]["open"], false);
    assert_eq!(
        before["customer_service_window"]["opened_at"],
        serde_json::Value::Null
    );
    let (status, error) = app
        .get(&format!(
            "/v1/numbers/{NUMBER}/contacts/16505551234/window?at=yesterday"
        ))
        .await;
    assert_eq!(status, 400);
    assert_eq!(error["error"]["code"], "invalid_at");

    // A later message moves the window; a question about the time between still sees
    // the first one.
    app.customer_writes("16505551234", "wamid.w.2", wrote + 3 * 86_400, false)
        .await;
    let (_, between) = app.window("16505551234", Some(wrote + 2 * 86_400)).await;
    assert_eq!(
        between["customer_service_window"]["opened_at"],
        "2026-11-18T11:06:40Z"
    );
    assert_eq!(between["customer_service_window"]["open"], false);
    app.cleanup().await;
}
on_both_databases!(the_window_answer_follows_the_design_contract_to_the_second);

async fn contacts_are_found_by_wa_id_or_business_scoped_user_id(db: Db) {
    let app = spawn_app(db).await;
    let now = now();
    let payload =
        hourglass_meta::send::build_inbound_webhook(&hourglass_meta::send::InboundTextParams {
            waba_id: WABA,
            phone_number_id: NUMBER,
            display_phone_number: DISPLAY,
            wa_id: "972987654321",
            user_id: Some("US.13491208655302741918"),
            profile_name: "Test Name",
            message_id: "wamid.u.1",
            timestamp: now - 60,
            body: "hi",
            referral_source_type: None,
        });
    assert_eq!(app.post_webhook(&payload).await.status(), 200);
    let (status, by_wa_id) = app.window("972987654321", None).await;
    assert_eq!(status, 200);
    let (status, by_user_id) = app.window("US.13491208655302741918", None).await;
    assert_eq!(status, 200);
    assert_eq!(by_wa_id["contact"], by_user_id["contact"]);
    assert_eq!(by_user_id["contact"]["user_id"], "US.13491208655302741918");

    // A contact with a username only: no wa_id at all.
    let username_only = json!({"object": "whatsapp_business_account", "entry": [{"id": WABA, "changes": [{"field": "messages", "value": {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": DISPLAY, "phone_number_id": NUMBER},
        "contacts": [{"profile": {"name": "U"}, "user_id": "US.777"}],
        "messages": [{"from_user_id": "US.777", "id": "wamid.u.2", "timestamp": (now - 30).to_string(), "type": "text", "text": {"body": "hey"}}]}}]}]});
    assert_eq!(app.post_webhook(&username_only).await.status(), 200);
    let (status, window) = app.window("US.777", None).await;
    assert_eq!(status, 200, "{window}");
    assert_eq!(window["contact"]["wa_id"], serde_json::Value::Null);
    assert_eq!(window["free_form_allowed"], true);

    let (status, error) = app.window("19999999999", None).await;
    assert_eq!(status, 404);
    assert_eq!(error["error"]["code"], "unknown_contact");
    app.cleanup().await;
}
on_both_databases!(contacts_are_found_by_wa_id_or_business_scoped_user_id);

async fn keys_are_required_and_scoped_to_their_numbers(db: Db) {
    let app = spawn_app(db).await;
    app.customer_writes("16505551234", "wamid.k.1", now() - 60, false)
        .await;
    let path = format!("/v1/numbers/{NUMBER}/contacts/16505551234/window");
    let (status, error) = app.get_with_key(&path, None).await;
    assert_eq!(status, 401);
    assert_eq!(error["error"]["code"], "unauthorized");
    assert_eq!(app.get_with_key(&path, Some("wrong")).await.0, 401);

    let scoped = hourglass_server::auth::create_key(
        app.store.as_ref(),
        "shop",
        Some(vec![NUMBER.into()]),
        hourglass_server::time::now(),
    )
    .await
    .unwrap();
    assert_eq!(app.get_with_key(&path, Some(&scoped)).await.0, 200);
    let other = hourglass_server::auth::create_key(
        app.store.as_ref(),
        "other",
        Some(vec!["999".into()]),
        hourglass_server::time::now(),
    )
    .await
    .unwrap();
    let (status, error) = app.get_with_key(&path, Some(&other)).await;
    assert_eq!(status, 404, "a key for number B asking about number A");
    assert_eq!(error["error"]["code"], "unknown_number");

    // The Cloud API endpoint answers a bad key in Meta's shape.
    let response = app
        .client
        .post(format!("{}/v21.0/{NUMBER}/messages", app.base))
        .bearer_auth("wrong")
        .json(&text("16505551234", "hi"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], 190);
    assert!(app.meta.calls().is_empty());
    app.cleanup().await;
}
on_both_databases!(keys_are_required_and_scoped_to_their_numbers);

async fn the_fleet_view_lists_windows_closing_soon_soonest_first_in_pages(db: Db) {
    let app = spawn_app(db).await;
    let at = 1_795_000_000;
    // Windows closing in 10, 20, 30, 40 minutes, one closing in 5 hours, one closed.
    for (i, closes_in) in [600, 1200, 1800, 2400, 5 * 3600, -60].iter().enumerate() {
        let wa_id = format!("1650555100{i}");
        app.customer_writes(
            &wa_id,
            &format!("wamid.f.{i}"),
            at - 86_400 + closes_in,
            false,
        )
        .await;
    }
    let (status, page) = app
        .get(&format!(
            "/v1/numbers/{NUMBER}/windows?closing_within=3600&at={at}&limit=3"
        ))
        .await;
    assert_eq!(status, 200, "{page}");
    let windows = page["windows"].as_array().unwrap();
    let seconds: Vec<i64> = windows
        .iter()
        .map(|w| {
            w["customer_service_window"]["seconds_left"]
                .as_i64()
                .unwrap()
        })
        .collect();
    assert_eq!(seconds, vec![600, 1200, 1800]);
    let next = page["next"].as_str().expect("a next cursor").to_owned();
    let (_, page) = app
        .get(&format!(
            "/v1/numbers/{NUMBER}/windows?closing_within=3600&at={at}&limit=3&cursor={next}"
        ))
        .await;
    let windows = page["windows"].as_array().unwrap();
    assert_eq!(windows.len(), 1);
    assert_eq!(windows[0]["customer_service_window"]["seconds_left"], 2400);
    assert_eq!(page["next"], serde_json::Value::Null);

    let (status, error) = app
        .get(&format!("/v1/numbers/{NUMBER}/windows?closing_within=nope"))
        .await;
    assert_eq!(status, 400);
    assert_eq!(error["error"]["code"], "invalid_closing_within");
    app.cleanup().await;
}
on_both_databases!(the_fleet_view_lists_windows_closing_soon_soonest_first_in_pages);

/// The fleet view's list, as (wa_id, seconds left), at `at` for windows closing within an
/// hour, two to a page.
async fn closing_within_the_hour(app: &TestApp, at: i64) -> Vec<(String, i64)> {
    let mut listed = Vec::new();
    let mut cursor = String::new();
    loop {
        let (status, page) = app
            .get(&format!(
                "/v1/numbers/{NUMBER}/windows?closing_within=3600&at={at}&limit=2{cursor}"
            ))
            .await;
        assert_eq!(status, 200, "{page}");
        for window in page["windows"].as_array().unwrap() {
            listed.push((
                window["contact"]["wa_id"].as_str().unwrap().to_owned(),
                window["customer_service_window"]["seconds_left"]
                    .as_i64()
                    .unwrap(),
            ));
        }
        match page["next"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => return listed,
        }
    }
}

async fn where_reactions_count_the_fleet_view_follows_them(db: Db) {
    let at = 1_795_000_000;
    let day_ago = at - 86_400;
    // (contact, its text, its reaction), as seconds after `day_ago`: a window that a reaction
    // keeps open 20 minutes longer, one without reactions, one that had closed and a
    // reaction opened again, and one a recent reaction keeps open all day.
    let contacts: [(&str, i64, Option<i64>); 4] = [
        ("16505552001", 600, Some(1800)),
        ("16505552002", 1200, None),
        ("16505552003", -3600, Some(2400)),
        ("16505552004", 300, Some(86_400 - 3600)),
    ];
    for reactions_open_window in [true, false] {
        let app = spawn_app_with(db, |c| c.reactions_open_window = reactions_open_window).await;
        for (i, (wa_id, wrote, reacted)) in contacts.iter().enumerate() {
            app.customer_writes(wa_id, &format!("wamid.r.text.{i}"), day_ago + wrote, false)
                .await;
            if let Some(reacted) = reacted {
                app.customer_reacts(wa_id, &format!("wamid.r.react.{i}"), day_ago + reacted)
                    .await;
            }
        }
        let listed = closing_within_the_hour(&app, at).await;
        let expected: &[(&str, i64)] = if reactions_open_window {
            &[
                ("16505552002", 1200),
                ("16505552001", 1800),
                ("16505552003", 2400),
            ]
        } else {
            &[
                ("16505552004", 300),
                ("16505552001", 600),
                ("16505552002", 1200),
            ]
        };
        let expected: Vec<(String, i64)> =
            expected.iter().map(|(w, s)| (w.to_string(), *s)).collect();
        assert_eq!(
            listed, expected,
            "reactions_open_window = {reactions_open_window}"
        );
        app.cleanup().await;
    }
}
on_both_databases!(where_reactions_count_the_fleet_view_follows_them);

async fn era_boundaries_follow_the_numbers_time_zone(db: Db) {
    let app = spawn_app(db).await;
    // The contact writes on 30 September 2026, 23:00 UTC; at 02:00 UTC on 1 October it is
    // still September in São Paulo (UTC-3), so PMP 2025 applies there, not PMP 2026.
    app.customer_writes("16505551234", "wamid.tz.1", 1_790_809_200, false)
        .await;
    let at = 1_790_812_800 + 2 * 3600;
    let (_, utc) = app.window("16505551234", Some(at)).await;
    assert_eq!(utc["pricing_era"], "PMP_2026");
    assert_eq!(utc["charges"]["utility"]["billable"], true);
    let response = app
        .client
        .put(format!("{}/v1/numbers/{NUMBER}", app.base))
        .bearer_auth(&app.api_key)
        .json(&json!({"time_zone": "America/Sao_Paulo"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let (_, local) = app.window("16505551234", Some(at)).await;
    assert_eq!(local["pricing_era"], "PMP_2025");
    assert_eq!(local["charges"]["utility"]["billable"], false);
    assert_eq!(local["charges"]["utility"]["type"], "free_customer_service");

    let response = app
        .client
        .put(format!("{}/v1/numbers/{NUMBER}", app.base))
        .bearer_auth(&app.api_key)
        .json(&json!({"time_zone": "Mars/Olympus"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    app.cleanup().await;
}
on_both_databases!(era_boundaries_follow_the_numbers_time_zone);

async fn meta_verifies_the_webhook_subscription_with_the_configured_token(db: Db) {
    let app = spawn_app(db).await;
    let ok = app
        .client
        .get(format!(
            "{}/webhook?hub.mode=subscribe&hub.verify_token=verify-me&hub.challenge=1158201444",
            app.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.text().await.unwrap(), "1158201444");
    let wrong = app
        .client
        .get(format!(
            "{}/webhook?hub.mode=subscribe&hub.verify_token=nope&hub.challenge=1",
            app.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 403);
    let (status, metrics) = app.get_with_key("/metrics", None).await;
    assert_eq!(status, 200);
    assert!(metrics
        .as_str()
        .unwrap()
        .contains("hourglass_webhooks_total"));
    app.cleanup().await;
}
on_both_databases!(meta_verifies_the_webhook_subscription_with_the_configured_token);

/// A `messages` change with one customer text that names its contact by `wa_id`, by
/// `user_id`, or by both.
fn keyed_change(id: &str, wa_id: Option<&str>, user_id: Option<&str>, at: i64) -> Value {
    let mut contact = json!({"profile": {"name": "Split"}});
    let mut item =
        json!({"id": id, "timestamp": at.to_string(), "type": "text", "text": {"body": "hi"}});
    if let Some(w) = wa_id {
        contact["wa_id"] = json!(w);
        item["from"] = json!(w);
    }
    if let Some(u) = user_id {
        contact["user_id"] = json!(u);
        item["from_user_id"] = json!(u);
    }
    json!({"field": "messages", "value": {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": DISPLAY, "phone_number_id": NUMBER},
        "contacts": [contact], "messages": [item]}})
}

/// One webhook carrying `changes`.
fn webhook_of(changes: Vec<Value>) -> Value {
    json!({"object": "whatsapp_business_account", "entry": [{"id": WABA, "changes": changes}]})
}

/// The messages `/v1/…/contacts/{contact}/messages` lists.
async fn listed_messages(app: &TestApp, contact: &str) -> Vec<Value> {
    let (_, body) = app
        .get(&format!("/v1/numbers/{NUMBER}/contacts/{contact}/messages"))
        .await;
    body["messages"]
        .as_array()
        .cloned()
        .unwrap_or_else(|| panic!("no `messages` list: {body}"))
}

async fn a_contact_seen_by_phone_number_and_by_user_id_separately_becomes_one_thread(db: Db) {
    let app = spawn_app(db).await;
    let now = now();
    let message = |id: &str, wa_id: Option<&str>, user_id: Option<&str>, at: i64| {
        webhook_of(vec![keyed_change(id, wa_id, user_id, at)])
    };
    assert_eq!(
        app.post_webhook(&message("wamid.m.1", Some("15550009999"), None, now - 300))
            .await
            .status(),
        200
    );
    assert_eq!(
        app.post_webhook(&message("wamid.m.2", None, Some("US.999"), now - 200))
            .await
            .status(),
        200
    );
    assert_eq!(
        app.counts().await.threads,
        2,
        "two keys, not yet known to be one contact"
    );
    assert_eq!(
        app.post_webhook(&message(
            "wamid.m.3",
            Some("15550009999"),
            Some("US.999"),
            now - 100
        ))
        .await
        .status(),
        200
    );
    assert_eq!(
        app.counts().await.threads,
        1,
        "the message with both keys joins them"
    );
    let (_, by_phone) = app.window("15550009999", None).await;
    let (_, by_user) = app.window("US.999", None).await;
    assert_eq!(by_phone["contact"], by_user["contact"]);
    assert_eq!(by_user["contact"]["wa_id"], "15550009999");
    let messages = listed_messages(&app, "US.999").await;
    assert_eq!(messages.len(), 3, "{messages:?}");
    app.cleanup().await;
}
on_both_databases!(a_contact_seen_by_phone_number_and_by_user_id_separately_becomes_one_thread);

/// The same joining, but the thread known only by the user id is made and merged away
/// within one webhook (so within one commit): the contact's next message, by user id
/// alone, still goes to the one thread that is left.
async fn a_thread_made_and_merged_within_one_webhook_is_not_remembered(db: Db) {
    let app = spawn_app(db).await;
    let now = now();
    let post = |changes: Vec<Value>| {
        let app = &app;
        async move {
            let response = app.post_webhook(&webhook_of(changes)).await;
            let status = response.status();
            assert_eq!(status, 200, "{}", response.text().await.unwrap());
        }
    };
    post(vec![keyed_change(
        "wamid.j.1",
        Some("15550008888"),
        None,
        now - 300,
    )])
    .await;
    post(vec![
        keyed_change("wamid.j.2", None, Some("US.888"), now - 200),
        keyed_change("wamid.j.3", Some("15550008888"), Some("US.888"), now - 150),
    ])
    .await;
    assert_eq!(
        app.counts().await.threads,
        1,
        "the second message joined them"
    );
    post(vec![keyed_change(
        "wamid.j.4",
        None,
        Some("US.888"),
        now - 100,
    )])
    .await;
    assert_eq!(app.counts().await.threads, 1);
    let messages = listed_messages(&app, "15550008888").await;
    assert_eq!(messages.len(), 4, "{messages:?}");
    app.cleanup().await;
}
on_both_databases!(a_thread_made_and_merged_within_one_webhook_is_not_remembered);
