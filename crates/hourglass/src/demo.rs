//! `hourglass demo`: the gateway on a fresh SQLite file with the sandbox in place of Meta,
//! seeded through its own signed webhook path with one business number and contacts in
//! every interesting state.

use std::future::Future;
use std::path::Path;

use anyhow::Context;
use base64::Engine as _;
use hourglass_meta::send::{
    build_inbound_webhook, build_status_webhook, InboundTextParams, StatusParams,
};
use hourglass_server::config::Secret;
use hourglass_server::upstream::Upstream;
use hourglass_server::{auth, templates, time, Application, Config};

pub const DEMO_NUMBER: &str = "106540352242922";
const DEMO_DISPLAY: &str = "15550783881";
const DEMO_WABA: &str = "102290129340398";

struct Contact {
    wa_id: &'static str,
    name: &'static str,
    /// Seconds before now of their message.
    wrote_ago: i64,
    text: &'static str,
    from_ad: bool,
}

const CONTACTS: [Contact; 4] = [
    Contact {
        wa_id: "16505550001",
        name: "Ana (window open)",
        wrote_ago: 2 * 3600,
        text: "Does it come in another color?",
        from_ad: false,
    },
    Contact {
        wa_id: "16505550002",
        name: "Bruno (closing within the hour)",
        wrote_ago: 23 * 3600 + 20 * 60,
        text: "I'll think about it",
        from_ad: false,
    },
    Contact {
        wa_id: "16505550003",
        name: "Chen (window closed)",
        wrote_ago: 30 * 3600,
        text: "Thanks, bye!",
        from_ad: false,
    },
    Contact {
        wa_id: "16505550004",
        name: "Dara (came through an ad, FEP open)",
        wrote_ago: 5 * 3600,
        text: "Hi, I saw your ad",
        from_ad: true,
    },
];

pub async fn run(
    mut config: Config,
    database: &Path,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    for suffix in ["", "-wal", "-shm"] {
        let file = format!("{}{suffix}", database.display());
        match std::fs::remove_file(&file) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(e).with_context(|| format!("removing the old demo database {file}"))
            }
        }
    }
    config.database_url = format!("sqlite://{}", database.display());
    config.meta.upstream = "sandbox".into();
    config.meta.app_secret = Some(Secret::new(auth::generate_key()));
    config.media_dir = format!("{}.media", database.display());
    let app = Application::build(config).await?;
    let port = app.port();
    let key = auth::create_key(app.state().store(), "demo", None, time::now()).await?;
    let Upstream::Sandbox(sandbox) = app.state().upstream() else {
        anyhow::bail!("the demo runs against the sandbox");
    };
    let sandbox = sandbox.clone();
    let state = app.state().clone();
    let server = tokio::spawn(app.run_until(shutdown));

    let now = time::now().unix_seconds();
    for (i, contact) in CONTACTS.iter().enumerate() {
        let message_id = format!("wamid.DEMO.in.{i}");
        let payload = build_inbound_webhook(&InboundTextParams {
            waba_id: DEMO_WABA,
            phone_number_id: DEMO_NUMBER,
            display_phone_number: DEMO_DISPLAY,
            wa_id: contact.wa_id,
            user_id: None,
            profile_name: contact.name,
            message_id: &message_id,
            timestamp: now - contact.wrote_ago,
            body: contact.text,
            referral_source_type: contact.from_ad.then_some("ad"),
        });
        sandbox.post_webhook(payload.to_string().into_bytes()).await;
        if contact.from_ad {
            // The business answered an hour after the ad message: that reply's delivery
            // opened the free entry point.
            let reply = format!("wamid.DEMO.out.{i}");
            for (status, at) in [
                ("sent", now - contact.wrote_ago + 3600),
                ("delivered", now - contact.wrote_ago + 3605),
            ] {
                let payload = build_status_webhook(&StatusParams {
                    waba_id: DEMO_WABA,
                    phone_number_id: DEMO_NUMBER,
                    display_phone_number: DEMO_DISPLAY,
                    message_id: &reply,
                    recipient_wa_id: contact.wa_id,
                    recipient_user_id: None,
                    status,
                    timestamp: at,
                    conversation: None,
                    biz_opaque_callback_data: None,
                    pricing: None,
                });
                sandbox.post_webhook(payload.to_string().into_bytes()).await;
            }
        }
    }

    // Ana also sent a voice note: the sandbox serves a real Ogg Opus file for it, which
    // Hourglass downloads and serves at /v1/media/sandbox-voice-1.
    let voice_sha256 = base64::engine::general_purpose::STANDARD.encode(
        <sha2::Sha256 as sha2::Digest>::digest(hourglass_server::upstream::SANDBOX_VOICE_NOTE),
    );
    let voice = serde_json::json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": DEMO_WABA, "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": DEMO_DISPLAY, "phone_number_id": DEMO_NUMBER},
            "contacts": [{"profile": {"name": CONTACTS[0].name}, "wa_id": CONTACTS[0].wa_id}],
            "messages": [{"from": CONTACTS[0].wa_id, "id": "wamid.DEMO.voice", "timestamp": (now - 3600).to_string(),
                          "type": "audio", "audio": {"mime_type": "audio/ogg; codecs=opus",
                          "sha256": voice_sha256, "id": "sandbox-voice-1", "voice": true}}]
        }}]}]
    });
    sandbox.post_webhook(voice.to_string().into_bytes()).await;

    // The product brief's template, created with the sandbox, which approves it a moment
    // later through the status webhook, as Meta's review would.
    let keep_helping = serde_json::json!({
        "name": "keep_helping", "category": "MARKETING", "language": "en_US",
        "parameter_format": "named",
        "components": [
            {"type": "BODY",
             "text": "Hello, {{user}}! I am {{agent}} from {{company}}. I would like to keep helping you. Can I assist you with something else?",
             "example": {"body_text_named_params": [
                {"param_name": "user", "example": "Ana"},
                {"param_name": "agent", "example": "Sam"},
                {"param_name": "company", "example": "Lucky Shrub"}]}},
            {"type": "BUTTONS", "buttons": [
                {"type": "QUICK_REPLY", "text": "Yes, please!"},
                {"type": "QUICK_REPLY", "text": "No, thanks!"}]}
        ]
    });
    templates::create_with_meta(&state, DEMO_WABA, &keep_helping)
        .await
        .map_err(|e| anyhow::anyhow!("creating the demo template: {}", e.message))?;

    let base = format!("http://127.0.0.1:{port}");
    println!(
        "\nHourglass demo is running at {base} (sandbox in place of Meta, database {db}).\n\
         API key (admin): {key}\n\n\
         Try:\n  \
         curl -H 'Authorization: Bearer {key}' {base}/v1/numbers/{n}/contacts/16505550001/window\n  \
         curl -H 'Authorization: Bearer {key}' '{base}/v1/numbers/{n}/windows?closing_within=3600'\n  \
         curl -H 'Authorization: Bearer {key}' {base}/v1/numbers/{n}/contacts/16505550004/window\n  \
         # a free-form reply to Chen, whose window closed, is refused with Meta's 131047:\n  \
         curl -H 'Authorization: Bearer {key}' -H 'Content-Type: application/json' \\\n    \
         -d '{{\"messaging_product\":\"whatsapp\",\"to\":\"16505550003\",\"type\":\"text\",\"text\":{{\"body\":\"Hello again\"}}}}' \\\n    \
         {base}/v21.0/{n}/messages\n  \
         # the approved template that can reopen it (the template picker's choice):\n  \
         curl -H 'Authorization: Bearer {key}' {base}/v1/templates\n  \
         curl -H 'Authorization: Bearer {key}' -H 'Content-Type: application/json' \\\n    \
         -d '{{\"template\":{{\"name\":\"keep_helping\",\"language\":\"en_US\",\"params\":{{\"user\":\"Chen\",\"agent\":\"Sam\",\"company\":\"Lucky Shrub\"}}}}}}' \\\n    \
         {base}/v1/numbers/{n}/contacts/16505550003/messages\n  \
         curl -H 'Authorization: Bearer {key}' {base}/v1/numbers/{n}/contacts/16505550001/messages\n  \
         # Ana's voice note, downloaded from the sandbox and served as audio/ogg:\n  \
         curl -H 'Authorization: Bearer {key}' -o voice.ogg {base}/v1/media/sandbox-voice-1\n  \
         curl {base}/metrics\n\n\
         Contacts: {contacts}\nPress Ctrl-C to stop.",
        db = database.display(),
        n = DEMO_NUMBER,
        contacts = CONTACTS.iter().map(|c| format!("{} {}", c.wa_id, c.name)).collect::<Vec<_>>().join("; "),
    );
    server.await.context("the server task")?
}
