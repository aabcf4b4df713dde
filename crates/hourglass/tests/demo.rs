//! `hourglass demo` starts on a fresh SQLite file with the sandbox, prints a working API
//! key and URLs, and its example contacts are in the states it promises.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

struct Guard(std::process::Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_seeds_contacts_in_every_state_and_the_sandbox_answers_like_meta() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir =
        std::env::temp_dir().join(format!("hourglass-demo-test-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_hourglass"))
        .args(["demo", "--database"])
        .arg(dir.join("demo.db"))
        .env("HOURGLASS_LISTEN", format!("127.0.0.1:{port}"))
        .env("HOURGLASS_LOG", "warn")
        .env_remove("HOURGLASS_API_KEY")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let _guard = Guard(child);

    // The key is printed once the demo data is in.
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(key) = line.strip_prefix("API key (admin): ") {
                let _ = sender.send(key.trim().to_owned());
            }
        }
    });
    let key = receiver
        .recv_timeout(Duration::from_secs(60))
        .expect("the demo prints an API key");

    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let number = "106540352242922";
    let window = |contact: &'static str| {
        let (client, base, key) = (client.clone(), base.clone(), key.clone());
        async move {
            let response = client
                .get(format!(
                    "{base}/v1/numbers/{number}/contacts/{contact}/window"
                ))
                .bearer_auth(&key)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            response.json::<serde_json::Value>().await.unwrap()
        }
    };
    assert_eq!(window("16505550001").await["free_form_allowed"], true);
    let closing = window("16505550002").await;
    let left = closing["customer_service_window"]["seconds_left"]
        .as_i64()
        .unwrap();
    assert!(left > 0 && left <= 3600, "closing within the hour: {left}");
    assert_eq!(window("16505550003").await["free_form_allowed"], false);
    assert_eq!(
        window("16505550004").await["free_entry_point"]["state"],
        "open"
    );

    // The sandbox accepts a send inside the window and reports it delivered through the
    // webhook path, like Meta.
    let response = client
        .post(format!("{base}/v21.0/{number}/messages"))
        .bearer_auth(&key)
        .json(&serde_json::json!({"messaging_product": "whatsapp", "to": "16505550001", "type": "text", "text": {"body": "Yes, in blue"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let answer: serde_json::Value = response.json().await.unwrap();
    let id = answer["messages"][0]["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("wamid."), "{id}");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let messages: serde_json::Value = client
            .get(format!(
                "{base}/v1/numbers/{number}/contacts/16505550001/messages"
            ))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let sent = messages["messages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["id"] == id.as_str())
            .cloned();
        if sent.as_ref().is_some_and(|m| m["status"] == "read") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the sandbox never reported the message read: {messages}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A free-form message to the contact whose window closed is refused before the sandbox.
    let response = client
        .post(format!("{base}/v21.0/{number}/messages"))
        .bearer_auth(&key)
        .json(&serde_json::json!({"messaging_product": "whatsapp", "to": "16505550003", "type": "text", "text": {"body": "hi"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let refusal: serde_json::Value = response.json().await.unwrap();
    assert_eq!(refusal["error"]["code"], 131047);

    // The brief's template is approved by the sandbox's review, then reaches Chen.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let listed: serde_json::Value = client
            .get(format!("{base}/v1/templates"))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if listed["templates"][0]["status"] == "APPROVED" {
            break;
        }
        assert!(Instant::now() < deadline, "never approved: {listed}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let response = client
        .post(format!(
            "{base}/v1/numbers/{number}/contacts/16505550003/messages"
        ))
        .bearer_auth(&key)
        .json(
            &serde_json::json!({"template": {"name": "keep_helping", "language": "en_US",
            "params": {"user": "Chen", "agent": "Sam", "company": "Lucky Shrub"}}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let sent: serde_json::Value = response.json().await.unwrap();
    assert!(sent["message"]["rendered"]["body"]
        .as_str()
        .unwrap()
        .starts_with("Hello, Chen! I am Sam"));
    // Ana's voice note was downloaded from the sandbox, and is served as audio/ogg.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let response = client
            .get(format!("{base}/v1/media/sandbox-voice-1"))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap();
        if response.status() == 200 {
            let content_type = response.headers()["content-type"]
                .to_str()
                .unwrap()
                .to_owned();
            assert!(content_type.starts_with("audio/ogg"), "{content_type}");
            assert!(response.bytes().await.unwrap().starts_with(b"OggS"));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the voice note was never downloaded"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = std::fs::remove_dir_all(&dir);
}
