//! The spine end to end: signed webhook in → window open → free-form forwarded → statuses
//! in → a window 25 hours old refuses free-form with Meta's 131047, Meta never called →
//! templates still forwarded.

use crate::helpers::*;
use crate::on_both_databases;

async fn free_form_is_forwarded_inside_the_window_and_refused_outside_it(db: Db) {
    let app = spawn_app(db).await;
    let now = now();

    // A signed inbound webhook opens the window.
    app.customer_writes("16505551234", "wamid.in.1", now - 3600, false)
        .await;
    let (status, window) = app.window("16505551234", None).await;
    assert_eq!(status, 200, "{window}");
    assert_eq!(window["customer_service_window"]["open"], true);
    assert_eq!(window["free_form_allowed"], true);

    // A free-form reply is forwarded to Meta with Meta's token, and Meta's answer comes back.
    let (status, answer) = app.send(&text("+16505551234", "Yes, in blue too")).await;
    assert_eq!(status, 200, "{answer}");
    let message_id = answer["messages"][0]["id"].as_str().unwrap().to_owned();
    let calls = app.meta.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].path, format!("/v21.0/{NUMBER}/messages"));
    assert_eq!(
        calls[0].authorization.as_deref(),
        Some(format!("Bearer {ACCESS_TOKEN}").as_str())
    );
    assert_eq!(calls[0].body["text"]["body"], "Yes, in blue too");

    // Its statuses attach to it.
    app.status("16505551234", &message_id, "sent", now).await;
    app.status("16505551234", &message_id, "delivered", now + 1)
        .await;
    app.status("16505551234", &message_id, "read", now + 2)
        .await;
    let (status, messages) = app
        .get(&format!(
            "/v1/numbers/{NUMBER}/contacts/16505551234/messages"
        ))
        .await;
    assert_eq!(status, 200, "{messages}");
    let messages = messages["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[0]["direction"], "inbound");
    assert_eq!(messages[1]["direction"], "outbound");
    assert_eq!(messages[1]["id"], message_id.as_str());
    assert_eq!(messages[1]["status"], "read");
    assert_eq!(messages[1]["sent_via_hourglass"], true);
    // Under PMP 2026 a free-form reply is one of the month's free service messages.
    assert_eq!(messages[1]["charge"]["billable"], false);
    assert_eq!(messages[1]["charge"]["type"], "free_tier");

    // Another contact last wrote 25 hours ago: free-form is refused before Meta sees it.
    app.customer_writes("16505559999", "wamid.in.2", now - 25 * 3600, false)
        .await;
    let (status, refusal) = app.send(&text("16505559999", "Are you still there?")).await;
    assert_eq!(status, 400, "{refusal}");
    assert_eq!(refusal["error"]["code"], 131047);
    assert_eq!(refusal["error"]["type"], "OAuthException");
    assert_eq!(
        refusal["error"]["message"],
        "(#131047) Re-engagement message"
    );
    assert_eq!(
        refusal["error"]["error_data"]["messaging_product"],
        "whatsapp"
    );
    let details = refusal["error"]["error_data"]["details"].as_str().unwrap();
    assert!(details.contains("template"), "{details}");
    assert!(
        details.contains("1 hours ago")
            || details.contains("60 minutes ago")
            || details.contains("minutes ago"),
        "{details}"
    );
    assert!(refusal["error"]["fbtrace_id"].is_string());
    assert_eq!(
        app.meta.calls().len(),
        1,
        "a refused message never reaches Meta"
    );
    assert_eq!(
        app.counts().await.refusals,
        1,
        "a refused message is recorded"
    );

    // A template is still forwarded.
    let (status, answer) = app.send(&template("16505559999", "we_miss_you")).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(app.meta.calls().len(), 2);
    assert_eq!(app.meta.calls()[1].body["template"]["name"], "we_miss_you");

    // A contact who never wrote can only be sent a template.
    let (status, refusal) = app.send(&text("16505550000", "hi")).await;
    assert_eq!(status, 400);
    assert!(refusal["error"]["error_data"]["details"]
        .as_str()
        .unwrap()
        .contains("never written"));
    app.cleanup().await;
}
on_both_databases!(free_form_is_forwarded_inside_the_window_and_refused_outside_it);

async fn business_messages_sent_outside_hourglass_still_count(db: Db) {
    let app = spawn_app(db).await;
    let now = now();
    // The contact came through an ad; the business replied from another tool, and only the
    // status webhooks tell Hourglass about it.
    app.customer_writes("16505552222", "wamid.ad.1", now - 5 * 3600, true)
        .await;
    let (_, window) = app.window("16505552222", None).await;
    assert_eq!(window["free_entry_point"]["state"], "eligible");
    app.status("16505552222", "wamid.elsewhere.1", "sent", now - 4 * 3600)
        .await;
    let (_, window) = app.window("16505552222", None).await;
    assert_eq!(window["free_entry_point"]["state"], "pending");
    app.status(
        "16505552222",
        "wamid.elsewhere.1",
        "delivered",
        now - 4 * 3600 + 5,
    )
    .await;
    let (_, window) = app.window("16505552222", None).await;
    assert_eq!(window["free_entry_point"]["state"], "open", "{window}");
    assert_eq!(window["charges"]["marketing"]["type"], "free_entry_point");
    let (_, messages) = app
        .get(&format!(
            "/v1/numbers/{NUMBER}/contacts/16505552222/messages"
        ))
        .await;
    assert_eq!(messages["messages"][1]["id"], "wamid.elsewhere.1");
    assert_eq!(messages["messages"][1]["sent_via_hourglass"], false);
    app.cleanup().await;
}
on_both_databases!(business_messages_sent_outside_hourglass_still_count);

async fn statuses_arriving_before_the_send_is_recorded_still_attach(db: Db) {
    let app = spawn_app(db).await;
    let now = now();
    app.customer_writes("16505553333", "wamid.in.3", now - 60, false)
        .await;
    // Meta's status races our record of the send: it must not be lost either way.
    app.status("16505553333", "wamid.FAKE1", "delivered", now + 1)
        .await;
    let (status, _) = app.send(&text("16505553333", "hi")).await;
    assert_eq!(status, 200);
    let (_, messages) = app
        .get(&format!(
            "/v1/numbers/{NUMBER}/contacts/16505553333/messages"
        ))
        .await;
    let out = &messages["messages"][1];
    assert_eq!(out["id"], "wamid.FAKE1");
    assert_eq!(out["status"], "delivered");
    assert_eq!(out["sent_via_hourglass"], true);
    assert_eq!(out["category"], "service");
    app.cleanup().await;
}
on_both_databases!(statuses_arriving_before_the_send_is_recorded_still_attach);

async fn marking_a_message_read_is_forwarded_whatever_the_window(db: Db) {
    let app = spawn_app(db).await;
    // The contact last wrote 30 hours ago: a message would be refused, a read receipt is not.
    app.customer_writes("16505557777", "wamid.old", now() - 30 * 3600, false)
        .await;
    let (status, _) = app
        .send(&serde_json::json!({"messaging_product": "whatsapp", "status": "read", "message_id": "wamid.old",
                                  "typing_indicator": {"type": "text"}}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(app.meta.calls().len(), 1);
    assert_eq!(app.meta.calls()[0].body["status"], "read");
    assert_eq!(app.counts().await.refusals, 0);
    app.cleanup().await;
}
on_both_databases!(marking_a_message_read_is_forwarded_whatever_the_window);

async fn a_contact_known_only_by_user_id_can_be_answered_by_recipient(db: Db) {
    let app = spawn_app(db).await;
    let now = now();
    let username_only = serde_json::json!({"object": "whatsapp_business_account", "entry": [{"id": WABA, "changes": [{"field": "messages", "value": {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": DISPLAY, "phone_number_id": NUMBER},
        "contacts": [{"profile": {"name": "U"}, "user_id": "US.888"}],
        "messages": [{"from_user_id": "US.888", "id": "wamid.u.888", "timestamp": (now - 30).to_string(), "type": "text", "text": {"body": "hey"}}]}}]}]});
    assert_eq!(app.post_webhook(&username_only).await.status(), 200);
    let (status, answer) = app
        .send(&serde_json::json!({"messaging_product": "whatsapp", "recipient": "US.888", "type": "text", "text": {"body": "hello"}}))
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(app.meta.calls().len(), 1);
    app.cleanup().await;
}
on_both_databases!(a_contact_known_only_by_user_id_can_be_answered_by_recipient);

async fn where_reactions_count_a_reaction_stamped_ahead_of_our_clock_opens_the_window(db: Db) {
    let app = spawn_app_with(db, |c| c.reactions_open_window = true).await;
    // The contact last wrote 30 hours ago, then reacted; Meta's clock stamped the reaction
    // a few seconds ahead of ours. A reply sent at once is judged at the reaction.
    app.customer_writes("16505558888", "wamid.old.8", now() - 30 * 3600, false)
        .await;
    app.customer_reacts("16505558888", "wamid.react.8", now() + 5)
        .await;
    let (status, answer) = app.send(&text("+16505558888", "Glad you like it")).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(app.meta.calls().len(), 1);
    assert_eq!(app.counts().await.refusals, 0);
    app.cleanup().await;
}
on_both_databases!(where_reactions_count_a_reaction_stamped_ahead_of_our_clock_opens_the_window);

async fn a_free_entry_point_that_ended_weeks_ago_still_reads_closed(db: Db) {
    let app = spawn_app(db).await;
    let ad = now() - 20 * 86_400;
    app.customer_writes("16505556666", "wamid.ad.old", ad, true)
        .await;
    app.status("16505556666", "wamid.reply.old", "sent", ad + 600)
        .await;
    app.status("16505556666", "wamid.reply.old", "delivered", ad + 605)
        .await;
    let (_, window) = app.window("16505556666", None).await;
    assert_eq!(window["free_entry_point"]["state"], "closed", "{window}");
    let opened = hourglass_server::time::format_instant(
        hourglass_core::Instant::from_unix_seconds(ad + 605),
    );
    assert_eq!(window["free_entry_point"]["opened_at"], opened.as_str());
    // ...and while it was open, it read open.
    let (_, then) = app.window("16505556666", Some(ad + 86_400)).await;
    assert_eq!(then["free_entry_point"]["state"], "open");
    app.cleanup().await;
}
on_both_databases!(a_free_entry_point_that_ended_weeks_ago_still_reads_closed);
