//! A real client, unchanged: pywa (installed from PyPI by the test script) sends through
//! Hourglass's Cloud API endpoint with only an httpx transport pointing it at Hourglass,
//! and gets Hourglass's refusals as the exceptions pywa raises for Meta's own errors; and
//! a pywa bot receives Hourglass's forwarded webhooks with its signature check on.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::*;
use crate::on_both_databases;

const PYWA_VERSION: &str = "4.5.0";

/// The Python that has pywa: `HOURGLASS_TEST_PYTHON` (set by `scripts/test`), or a virtual
/// environment made here on first use.
fn python_with_pywa() -> PathBuf {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON
        .get_or_init(|| {
            if let Ok(python) = std::env::var("HOURGLASS_TEST_PYTHON") {
                return python.into();
            }
            let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/pywa-venv");
            let marker = venv.join(format!(".pywa-{PYWA_VERSION}"));
            if !marker.exists() {
                let run = |program: &Path, args: &[&str]| {
                    let status = std::process::Command::new(program)
                        .args(args)
                        .status()
                        .unwrap_or_else(|e| panic!("running {}: {e}", program.display()));
                    assert!(status.success(), "{} {args:?} failed", program.display());
                };
                run(
                    Path::new("python3"),
                    &["-m", "venv", venv.to_str().unwrap()],
                );
                run(
                    &venv.join("bin/pip"),
                    &[
                        "install",
                        "-q",
                        &format!("pywa=={PYWA_VERSION}"),
                        "httpx",
                        "flask",
                    ],
                );
                std::fs::write(&marker, "").unwrap();
            }
            venv.join("bin/python")
        })
        .clone()
}

async fn pywa_sends_through_hourglass_and_gets_metas_errors_as_pywa_exceptions(db: Db) {
    let app = spawn_app_with(db, |c| {
        c.meta.upstream = "sandbox".into();
        c.sandbox.template_review_ms = 100;
        c.sandbox.read_after_ms = 0;
    })
    .await;
    let (open, closed) = ("16505550101", "16505550102");
    app.customer_writes(open, "wamid.OPEN", now() - 60, false)
        .await;
    app.customer_writes(closed, "wamid.CLOSED", now() - 25 * 3600, false)
        .await;
    let (code, _) = app
        .post_json(
            &format!("/v1/templates?waba_id={WABA}"),
            &fixture("template_create_named.json"),
        )
        .await;
    assert_eq!(code, 201);
    for _ in 0..100 {
        let (_, t) = app
            .get(&format!("/v1/templates/keep_helping/en_US?waba_id={WABA}"))
            .await;
        if t["status"] == "APPROVED" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (code, _) = app
        .post_json(&format!("/v1/templates/sync?waba_id={WABA}"), &json!({}))
        .await;
    assert_eq!(code, 200);

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/pywa/send_through_hourglass.py");
    let args = [
        script.display().to_string(),
        app.base.clone(),
        app.api_key.clone(),
        NUMBER.to_owned(),
        open.to_owned(),
        closed.to_owned(),
    ];
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(python_with_pywa())
            .args(&args)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "pywa script failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let steps: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let step = |name: &str| {
        steps
            .iter()
            .find(|s| s["step"] == name)
            .unwrap_or_else(|| panic!("no step {name}: {stdout}"))
            .clone()
    };
    for name in ["text_in_window", "template_to_closed_window"] {
        let s = step(name);
        assert_eq!(s["ok"], true, "{s}");
        assert!(
            s["id"].as_str().unwrap().starts_with("wamid.SANDBOX"),
            "{s}"
        );
    }
    for (name, error, code) in [
        ("text_to_closed_window", "ReEngagementMessage", 131047),
        (
            "template_with_missing_parameter",
            "TemplateParamCountMismatch",
            132000,
        ),
        ("unknown_template", "TemplateNotExists", 132001),
    ] {
        let s = step(name);
        assert_eq!(
            (&s["error"], &s["code"]),
            (&json!(error), &json!(code)),
            "{s}"
        );
    }
    app.cleanup().await;
}
on_both_databases!(pywa_sends_through_hourglass_and_gets_metas_errors_as_pywa_exceptions);

async fn a_pywa_bot_receives_forwarded_webhooks_with_its_signature_check_on(db: Db) {
    let app = spawn_app(db).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let secret = "pywa-forwarding-secret";
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/pywa/receive_from_hourglass.py");
    let mut bot = tokio::process::Command::new(python_with_pywa())
        .arg(&script)
        .arg(port.to_string())
        .arg(secret)
        .stdout(std::process::Stdio::piped())
        .stderr(
            std::fs::File::create(std::env::temp_dir().join(format!("pywa-bot-{port}.stderr")))
                .unwrap(),
        )
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines =
        tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(bot.stdout.take().unwrap()));
    // Flask is listening once it accepts a connection.
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (code, _) = app
        .post_json(
            "/v1/webhooks",
            &json!({"url": format!("http://127.0.0.1:{port}/whatsapp"), "secret": secret}),
        )
        .await;
    assert_eq!(code, 201);

    // pywa 4.5 needs `contacts[].user_id` on a message (DESIGN.md §3.5): Meta's payload has
    // it, and the forwarded one keeps it.
    let mut payload = fixture("inbound_text.json");
    let value = &mut payload["entry"][0]["changes"][0]["value"];
    value["metadata"]["phone_number_id"] = json!(NUMBER);
    value["contacts"][0]["user_id"] = json!("US.13491208655302741918");
    value["messages"][0]["timestamp"] = json!(now().to_string());
    let from = value["messages"][0]["from"].as_str().unwrap().to_owned();
    let text = value["messages"][0]["text"]["body"]
        .as_str()
        .unwrap()
        .to_owned();
    let message_id = value["messages"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(app.post_webhook(&payload).await.status(), 200);
    app.status(&from, "wamid.PYWA.OUT", "delivered", now())
        .await;

    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while seen.len() < 2 {
        let line = tokio::time::timeout_at(deadline, lines.next_line())
            .await
            .unwrap_or_else(|_| {
                let log = std::env::temp_dir().join(format!("pywa-bot-{port}.stderr"));
                panic!(
                    "pywa handled {seen:?} in time, not both; its log:\n{}",
                    std::fs::read_to_string(log).unwrap_or_default(),
                )
            })
            .unwrap()
            .expect("the bot is running");
        // Flask writes its banner to stdout too: only the bot's JSON lines count.
        let Ok(update) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        if update["kind"] != "ready" {
            seen.push(update);
        }
    }
    let message = seen
        .iter()
        .find(|u| u["kind"] == "message")
        .expect("a message");
    assert_eq!(message["id"], message_id.as_str());
    assert_eq!(message["text"], text.as_str());
    assert_eq!(message["from"], from.as_str());
    let status = seen
        .iter()
        .find(|u| u["kind"] == "status")
        .expect("a status");
    assert_eq!(status["id"], "wamid.PYWA.OUT");
    let _ = bot.kill().await;
    app.cleanup().await;
}
on_both_databases!(a_pywa_bot_receives_forwarded_webhooks_with_its_signature_check_on);
