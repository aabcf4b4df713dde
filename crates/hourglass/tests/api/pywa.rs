//! A real client, unchanged: pywa (installed from PyPI by the test script) sends through
//! Hourglass's Cloud API endpoint with only an httpx transport pointing it at Hourglass,
//! and gets Hourglass's refusals as the exceptions pywa raises for Meta's own errors.

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
                    &["install", "-q", &format!("pywa=={PYWA_VERSION}"), "httpx"],
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
