//! `hourglass webhooks add / list / replay`: subscriptions managed from the command line
//! on the same database as `hourglass serve`, and a replay of the webhooks stored before
//! the subscription existed.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use hourglass_meta::build_inbound_webhook;
use hourglass_meta::send::InboundTextParams;
use serde_json::Value;

/// Runs `hourglass webhooks ARGS…`: its exit status, stdout and stderr.
fn webhooks(database_url: &str, args: &[&str]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_hourglass"))
        .arg("webhooks")
        .args(args)
        .env("HOURGLASS_DATABASE_URL", database_url)
        .env("HOURGLASS_LOG", "warn")
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

fn json(text: &str) -> Value {
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_are_added_listed_and_replayed_from_the_command_line() {
    let dir = TempDir::new("hourglass-webhooks-cli");
    let database_url = format!("sqlite://{}", dir.0.join("cli.db").display());
    let client = http_client();
    let mut server = Server::spawn(
        "webhooks-cli",
        free_port(),
        &database_url,
        Some(API_KEY),
        &dir.0,
    );
    server.wait_healthy(&client, Duration::from_secs(30)).await;

    // A customer message stored before any subscription exists.
    let webhook = SignedWebhook::new(&build_inbound_webhook(&InboundTextParams {
        waba_id: WABA_ID,
        phone_number_id: PHONE_NUMBER_ID,
        display_phone_number: DISPLAY_PHONE_NUMBER,
        wa_id: "15551239999",
        user_id: None,
        profile_name: "Before",
        message_id: "wamid.cli.1",
        timestamp: unix_now() - 5,
        body: "stored before the app subscribed",
        referral_source_type: None,
    }));
    assert_eq!(
        post_webhook(&client, server.port, &webhook).await.unwrap(),
        200
    );

    let (ok, out, err) = webhooks(
        &database_url,
        &[
            "add",
            "--url",
            "http://127.0.0.1:9/hook",
            "--secret",
            "cli-secret-1",
            "--event",
            "messages",
            "--event",
            "windows",
        ],
    );
    assert!(ok, "{err}");
    let created = json(&out);
    let id = created["id"].as_i64().unwrap();
    assert_eq!(
        created["events"],
        serde_json::json!(["messages", "windows"])
    );
    assert!(
        created.get("secret").is_none(),
        "the secret is not printed back"
    );

    let (ok, out, err) = webhooks(&database_url, &["list"]);
    assert!(ok, "{err}");
    assert_eq!(json(&out)["id"], id);

    let (ok, out, err) = webhooks(&database_url, &["replay", &id.to_string()]);
    assert!(ok, "{err}");
    assert_eq!(json(&out)["replayed"], 0, "no dead letters yet");

    let (ok, out, err) = webhooks(
        &database_url,
        &[
            "replay",
            &id.to_string(),
            "--since",
            &(unix_now() - 3600).to_string(),
        ],
    );
    assert!(ok, "{err}");
    let replayed = json(&out);
    assert_eq!(
        (
            replayed["deliveries_read"].as_i64(),
            replayed["replayed"].as_i64()
        ),
        (Some(1), Some(1)),
        "{replayed}"
    );

    // Mistakes are named.
    let (ok, _, err) = webhooks(&database_url, &["replay", "999"]);
    assert!(!ok && err.contains("no webhook subscription 999"), "{err}");
    let (ok, _, err) = webhooks(
        &database_url,
        &["replay", &id.to_string(), "--since", "soon"],
    );
    assert!(!ok && err.contains("--since"), "{err}");
    let (ok, _, err) = webhooks(
        &database_url,
        &["replay", &id.to_string(), "--until", "1800000000"],
    );
    assert!(
        !ok && err.contains("--since"),
        "clap says --until needs --since: {err}"
    );
}
