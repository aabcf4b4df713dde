//! Media in and out: a voice note's webhook leads to its download from Meta (with the
//! access token), checked against Meta's SHA-256, and served to authorised callers with
//! its content type; uploads pass through to Meta in Meta's shape.

use std::time::Duration;

use base64::Engine as _;
use serde_json::json;

use crate::helpers::*;
use crate::on_both_databases;

fn voice_note_webhook(media_id: &str, sha256: &str) -> serde_json::Value {
    let mut payload = fixture("inbound_voice.json");
    let value = &mut payload["entry"][0]["changes"][0]["value"];
    value["metadata"]["phone_number_id"] = json!(NUMBER);
    value["messages"][0]["timestamp"] = json!(now().to_string());
    value["messages"][0]["id"] = json!(format!("wamid.{media_id}"));
    value["messages"][0]["audio"]["id"] = json!(media_id);
    value["messages"][0]["audio"]["sha256"] = json!(sha256);
    payload
}

async fn a_voice_note_is_downloaded_checked_and_served_as_audio_ogg(db: Db) {
    let app = spawn_app(db).await;
    let bytes = fake_media_bytes("voice-1").unwrap();
    let sha256 = base64::engine::general_purpose::STANDARD
        .encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes));
    assert_eq!(
        app.post_webhook(&voice_note_webhook("voice-1", &sha256))
            .await
            .status(),
        200
    );
    let mut served = None;
    for _ in 0..100 {
        let response = app
            .client
            .get(format!("{}/v1/media/voice-1", app.base))
            .bearer_auth(&app.api_key)
            .send()
            .await
            .unwrap();
        if response.status() == 200 {
            served = Some(response);
            break;
        }
        assert_eq!(response.status(), 409, "pending until downloaded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let served = served.expect("the voice note was downloaded");
    let content_type = served.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(content_type.starts_with("audio/ogg"), "{content_type}");
    let body = served.bytes().await.unwrap();
    assert_eq!(body.as_ref(), bytes.as_slice());
    assert_eq!(
        base64::engine::general_purpose::STANDARD
            .encode(<sha2::Sha256 as sha2::Digest>::digest(&body)),
        sha256
    );
    assert!(body.starts_with(b"OggS"), "an Ogg file");

    // Without a key: 401; a key for another number: 404, as for any other number's data.
    let response = app
        .client
        .get(format!("{}/v1/media/voice-1", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let other = hourglass_server::auth::create_key(
        app.store.as_ref(),
        "other",
        Some(vec!["999".into()]),
        hourglass_server::time::now(),
    )
    .await
    .unwrap();
    let (code, _) = app.get_with_key("/v1/media/voice-1", Some(&other)).await;
    assert_eq!(code, 404);
    app.cleanup().await;
}
on_both_databases!(a_voice_note_is_downloaded_checked_and_served_as_audio_ogg);

async fn bytes_that_do_not_match_metas_checksum_are_not_served(db: Db) {
    let app = spawn_app(db).await;
    let wrong = base64::engine::general_purpose::STANDARD.encode([0u8; 32]);
    assert_eq!(
        app.post_webhook(&voice_note_webhook("voice-2", &wrong))
            .await
            .status(),
        200
    );
    tokio::time::sleep(Duration::from_millis(800)).await;
    let (code, error) = app.get("/v1/media/voice-2").await;
    assert_eq!(code, 409, "{error}");
    assert_eq!(error["error"]["code"], "media_pending");
    // An id Meta does not know is given up at once.
    app.post_webhook(&voice_note_webhook("gone-3", &wrong))
        .await;
    let mut last = json!(null);
    for _ in 0..100 {
        let (code, error) = app.get("/v1/media/gone-3").await;
        if code == 410 {
            last = error;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(last["error"]["code"], "media_unavailable", "{last}");
    app.cleanup().await;
}
on_both_databases!(bytes_that_do_not_match_metas_checksum_are_not_served);

async fn an_upload_passes_through_in_metas_multipart_shape(db: Db) {
    let app = spawn_app(db).await;
    let boundary = "hourglass-test-boundary";
    let body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"messaging_product\"\r\n\r\nwhatsapp\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"type\"\r\n\r\naudio/ogg\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"v.ogg\"\r\nContent-Type: audio/ogg\r\n\r\nOggS...\r\n\
         --{boundary}--\r\n"
    );
    let response = app
        .client
        .post(format!("{}/v21.0/{NUMBER}/media", app.base))
        .bearer_auth(&app.api_key)
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let answer: serde_json::Value = response.json().await.unwrap();
    assert_eq!(answer["id"], format!("uploaded-{}", body.len()));
    app.cleanup().await;
}
on_both_databases!(an_upload_passes_through_in_metas_multipart_shape);
