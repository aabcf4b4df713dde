//! `hourglass keys create` prints a key once; the key works against `hourglass serve` on
//! the same database, within its scope only.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

struct Guard(std::process::Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn create_key(database_url: &str, args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_hourglass"))
        .args(["keys", "create"])
        .args(args)
        .env("HOURGLASS_DATABASE_URL", database_url)
        .env("HOURGLASS_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    let key = stdout.trim().to_owned();
    assert!(
        key.starts_with("hg_") && key.len() == 67,
        "one key on stdout, nothing else: {stdout:?}"
    );
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("shown only this once"),
        "the user is told to keep it"
    );
    key
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_created_key_works_for_its_number_only_and_a_wrong_key_gets_401() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir =
        std::env::temp_dir().join(format!("hourglass-cli-test-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let database_url = format!("sqlite://{}", dir.join("cli.db").display());
    let scoped = create_key(&database_url, &["--label", "shop", "--number", "111"]);
    let admin = create_key(&database_url, &["--label", "ops"]);
    assert_ne!(scoped, admin);

    let _server = Guard(
        Command::new(env!("CARGO_BIN_EXE_hourglass"))
            .arg("serve")
            .env("HOURGLASS_LISTEN", format!("127.0.0.1:{port}"))
            .env("HOURGLASS_DATABASE_URL", &database_url)
            .env("HOURGLASS_LOG", "warn")
            .env_remove("HOURGLASS_API_KEY")
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while client.get(format!("{base}/healthz")).send().await.is_err() {
        assert!(Instant::now() < deadline, "the server did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let put = |key: &str, number: &str| {
        client
            .put(format!("{base}/v1/numbers/{number}"))
            .bearer_auth(key)
            .json(&serde_json::json!({"time_zone": "UTC"}))
            .send()
    };
    assert_eq!(put(&scoped, "111").await.unwrap().status(), 200);
    assert_eq!(
        put(&scoped, "222").await.unwrap().status(),
        404,
        "outside the key's scope"
    );
    assert_eq!(put(&admin, "222").await.unwrap().status(), 200);
    assert_eq!(put("hg_not_a_key", "111").await.unwrap().status(), 401);
    let _ = std::fs::remove_dir_all(&dir);
}
