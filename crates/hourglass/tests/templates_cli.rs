//! `hourglass templates lint FILE…` reads Meta's creation JSON and reports every broken
//! rule on its own line, like a compiler, exiting non-zero when there is any.

use std::process::Command;

fn lint(files: &[&std::path::Path]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_hourglass"))
        .args(["templates", "lint"])
        .args(files)
        .env("HOURGLASS_LOG", "warn")
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

fn shared_fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/fixtures/meta")
        .join(name)
}

#[test]
fn metas_own_example_lints_clean_and_exits_zero() {
    let (code, stdout, stderr) = lint(&[&shared_fixture("template_create_named.json")]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
}

#[test]
fn a_template_with_several_faults_prints_each_one_and_exits_one() {
    let dir = std::env::temp_dir().join(format!("hourglass-lint-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("faulty.json");
    let long_label = "A label far longer than twenty-five characters";
    let template = serde_json::json!({
        "name": "Spring Sale!",
        "category": "MARKETING",
        "language": "en_US",
        "components": [
            {"type": "HEADER", "format": "TEXT", "text": "x".repeat(61)},
            {"type": "BODY", "text": "{{1}} and {{3}}",
             "example": {"body_text": [["a", "b"]]}},
            {"type": "FOOTER", "text": "y".repeat(61)},
            {"type": "BUTTONS", "buttons": [
                {"type": "QUICK_REPLY", "text": long_label},
                {"type": "URL", "text": "Shop", "url": "https://example.com/shop"},
                {"type": "QUICK_REPLY", "text": "Stop"}
            ]}
        ]
    });
    std::fs::write(&file, serde_json::to_vec_pretty(&template).unwrap()).unwrap();
    let (code, stdout, stderr) = lint(&[&file]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    for expected in ["name", "HEADER", "BODY", "FOOTER", "BUTTONS"] {
        assert!(
            lines
                .iter()
                .any(|l| l.contains(&format!(": Spring Sale!: {expected}"))),
            "no finding about {expected}: {stdout}"
        );
    }
    assert!(
        lines
            .iter()
            .all(|l| l.starts_with(&file.display().to_string())),
        "each line names the file: {stdout}"
    );
    assert!(lines.len() >= 6, "each fault on its own line: {stdout}");
    assert!(stderr.contains("finding(s)"), "{stderr}");
}

#[test]
fn a_file_that_is_not_json_is_named_with_its_line_and_exits_two() {
    let dir = std::env::temp_dir().join(format!("hourglass-lint-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("broken.json");
    std::fs::write(&file, "{\n  \"name\": \n").unwrap();
    let (code, _, stderr) = lint(&[&file]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("broken.json:"), "{stderr}");
}
