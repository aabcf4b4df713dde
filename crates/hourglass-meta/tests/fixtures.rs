//! Every payload in `shared/fixtures/meta/` goes through this crate's parsers, and the
//! webhook builders reproduce the fixtures they imitate.

use hourglass_meta::send::{
    build_inbound_webhook, build_status_webhook, parse_send_request, ConversationParams,
    InboundTextParams, MetaErrorEnvelope, PricingParams, SendResponse, StatusParams, RE_ENGAGEMENT,
};
use hourglass_meta::signature::{sign, verify_signature};
use hourglass_meta::webhook::{
    parse_webhook, Change, ChangeValue, InboundMessage, Item, MessageKind, MessagesValue, Status,
    StatusKind, WebhookError,
};
use serde_json::{json, Value};
use std::collections::BTreeSet;

const FIXTURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/fixtures/meta/"
);

/// Every fixture this suite covers. A new fixture fails
/// `every_fixture_is_covered_and_is_valid_json` until a test reads it.
const COVERED: &[&str] = &[
    "account_update_volume_tier.json",
    "error_131047_sync.json",
    "inbound_document.json",
    "inbound_interactive_button_reply.json",
    "inbound_reaction.json",
    "inbound_template_quick_reply.json",
    "inbound_text.json",
    "inbound_text_referral_ad.json",
    "inbound_unsupported.json",
    "inbound_voice.json",
    "send_document_link.json",
    "send_response.json",
    "send_template_named.json",
    "send_template_positional.json",
    "send_text.json",
    "status_delivered_pmp_free_customer_service.json",
    "status_failed_131047.json",
    "status_failed_131049.json",
    "status_read_v24.json",
    "status_sent_cbp_service.json",
    "status_sent_fep.json",
    "status_sent_pmp_marketing.json",
    // Owned by the templates crate; here they are only checked to be valid JSON.
    "template_create_named.json",
    "templates_list.json",
    "value_errors_130429.json",
];

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{FIXTURES}{name}")).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn fixture_json(name: &str) -> Value {
    serde_json::from_slice(&fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn only_change(name: &str) -> Change {
    let webhook = parse_webhook(&fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(webhook.object, "whatsapp_business_account");
    assert_eq!(webhook.entries.len(), 1, "{name}");
    assert_eq!(webhook.entries[0].changes.len(), 1, "{name}");
    webhook.entries[0].changes[0].clone()
}

fn messages_value(name: &str) -> MessagesValue {
    match only_change(name).value {
        ChangeValue::Messages(value) => value,
        other => panic!("{name}: expected a messages value, got {other:?}"),
    }
}

fn only_message(name: &str) -> InboundMessage {
    let value = messages_value(name);
    assert_eq!(value.messages.len(), 1, "{name}");
    match &value.messages[0] {
        Item::Parsed(message) => message.clone(),
        Item::Unparsed { reason, .. } => panic!("{name}: message unparsed: {reason}"),
    }
}

fn only_status(name: &str) -> Status {
    let value = messages_value(name);
    assert_eq!(value.statuses.len(), 1, "{name}");
    match &value.statuses[0] {
        Item::Parsed(status) => status.clone(),
        Item::Unparsed { reason, .. } => panic!("{name}: status unparsed: {reason}"),
    }
}

#[test]
fn every_fixture_is_covered_and_is_valid_json() {
    let on_disk: BTreeSet<String> = std::fs::read_dir(FIXTURES)
        .expect("the shared fixtures directory exists")
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.ends_with(".json"))
        .collect();
    let covered: BTreeSet<String> = COVERED.iter().map(|name| name.to_string()).collect();
    assert_eq!(on_disk, covered);
    for name in COVERED {
        fixture_json(name);
    }
}

// Webhook payloads: inbound messages.

#[test]
fn an_inbound_text_is_read_with_its_ids_timestamp_and_body() {
    let change = only_change("inbound_text.json");
    assert_eq!(change.field, "messages");
    assert_eq!(
        change.raw,
        fixture_json("inbound_text.json")["entry"][0]["changes"][0]["value"]
    );
    let value = messages_value("inbound_text.json");
    assert_eq!(value.metadata.phone_number_id, "106540352242922");
    assert_eq!(value.metadata.display_phone_number, "15550783881");
    assert_eq!(value.contacts[0].wa_id.as_deref(), Some("16505551234"));
    assert_eq!(
        value.contacts[0].profile_name.as_deref(),
        Some("Sheena Nelson")
    );
    assert_eq!(value.contacts[0].user_id, None);
    let message = only_message("inbound_text.json");
    assert_eq!(
        message.id,
        "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA="
    );
    assert_eq!(message.from.as_deref(), Some("16505551234"));
    assert_eq!(message.timestamp, 1_749_416_383);
    assert_eq!(message.kind, MessageKind::Text);
    assert_eq!(
        message.text.as_deref(),
        Some("Does it come in another color?")
    );
    assert_eq!(message.referral, None);
    assert_eq!(message.media, None);
    assert!(message.errors.is_empty());
}

#[test]
fn the_whatsapp_business_account_id_is_the_entry_id() {
    let webhook = parse_webhook(&fixture("inbound_text.json")).unwrap();
    assert_eq!(webhook.entries[0].id, "102290129340398");
}

#[test]
fn a_text_from_a_click_to_whatsapp_ad_carries_an_ad_referral() {
    let message = only_message("inbound_text_referral_ad.json");
    assert_eq!(message.id, "wamid.ID");
    assert_eq!(message.timestamp, 1_697_045_000);
    let referral = message.referral.expect("a referral");
    assert!(referral.is_ad());
    assert_eq!(referral.source_id.as_deref(), Some("ADID"));
    assert_eq!(referral.source_url.as_deref(), Some("AD_OR_POST_FB_URL"));
    assert_eq!(referral.ctwa_clid.as_deref(), Some("CTWA_CLID"));
    assert_eq!(referral.headline.as_deref(), Some("AD_TITLE"));
    let value = messages_value("inbound_text_referral_ad.json");
    assert_eq!(
        value.contacts[0].user_id.as_deref(),
        Some("US.13491208655302741918")
    );
    assert_eq!(
        value.contacts[0].parent_user_id.as_deref(),
        Some("US.ENT.11815799212886844830")
    );
}

#[test]
fn a_voice_note_is_audio_media_with_the_voice_flag() {
    let message = only_message("inbound_voice.json");
    assert_eq!(message.kind, MessageKind::Audio);
    assert_eq!(message.timestamp, 1_697_043_473);
    let media = message.media.expect("media");
    assert_eq!(media.id, "1234567890987654321");
    assert_eq!(media.mime_type.as_deref(), Some("audio/ogg; codecs=opus"));
    assert_eq!(
        media.sha256.as_deref(),
        Some("m04pFf2ERdaopTyFkGPA0+bX3i+YY2dYgVFwOgDLSDI=")
    );
    assert!(media.voice);
    assert_eq!(message.text, None);
}

#[test]
fn a_forwarded_document_has_its_file_name_and_caption() {
    let message = only_message("inbound_document.json");
    assert_eq!(message.kind, MessageKind::Document);
    assert_eq!(message.id, "wamid.doc1");
    assert_eq!(message.timestamp, 1_697_043_666);
    let media = message.media.expect("media");
    assert_eq!(media.filename.as_deref(), Some("filename.pdf"));
    assert_eq!(media.mime_type.as_deref(), Some("application/pdf"));
    assert!(!media.voice);
    assert_eq!(message.text.as_deref(), Some("caption"));
    let context = message.context.expect("context");
    assert!(context.forwarded);
    assert_eq!(context.id, None);
}

#[test]
fn an_interactive_button_reply_is_read_with_its_title_and_context() {
    let message = only_message("inbound_interactive_button_reply.json");
    assert_eq!(message.kind, MessageKind::Interactive);
    assert_eq!(message.timestamp, 1_698_266_730);
    assert_eq!(message.text.as_deref(), Some("title"));
    let context = message.context.expect("context");
    assert_eq!(context.id.as_deref(), Some("wamid.xyzxyz"));
    assert_eq!(context.from.as_deref(), Some("1122334455667"));
    assert!(!context.forwarded);
}

#[test]
fn a_template_quick_reply_tap_is_a_button_message_with_its_text() {
    let message = only_message("inbound_template_quick_reply.json");
    assert_eq!(message.kind, MessageKind::Button);
    assert_eq!(message.id, "wamid.xsidjw");
    assert_eq!(message.timestamp, 1_698_269_027);
    assert_eq!(message.text.as_deref(), Some("Yes, please!"));
    assert_eq!(
        message.context.unwrap().id.as_deref(),
        Some("wamid.xyzxyz==")
    );
}

#[test]
fn a_reaction_is_read_as_a_reaction() {
    let message = only_message("inbound_reaction.json");
    assert_eq!(message.kind, MessageKind::Reaction);
    assert_eq!(message.id, "wamid.react1");
    assert_eq!(message.timestamp, 1_697_044_456);
    assert_eq!(message.raw["reaction"]["emoji"], "😮");
}

#[test]
fn an_unsupported_message_keeps_its_131051_error() {
    let message = only_message("inbound_unsupported.json");
    assert_eq!(message.kind, MessageKind::Unsupported);
    assert_eq!(message.timestamp, 1_697_044_706);
    assert_eq!(message.errors.len(), 1);
    assert_eq!(message.errors[0].code, 131_051);
    assert_eq!(
        message.errors[0].title.as_deref(),
        Some("Message type unknown")
    );
    assert_eq!(
        message.errors[0].details.as_deref(),
        Some("Message type is currently not supported.")
    );
}

// Webhook payloads: statuses.

#[test]
fn a_sent_status_under_per_message_pricing_is_read_with_its_pricing() {
    let status = only_status("status_sent_pmp_marketing.json");
    assert_eq!(status.status, StatusKind::Sent);
    assert_eq!(status.timestamp, 1_750_030_073);
    assert_eq!(status.recipient_id.as_deref(), Some("16505551234"));
    let pricing = status.pricing.expect("pricing");
    assert_eq!(pricing.billable, Some(true));
    assert_eq!(pricing.pricing_model.as_deref(), Some("PMP"));
    assert_eq!(pricing.kind.as_deref(), Some("regular"));
    assert_eq!(pricing.category.as_deref(), Some("marketing"));
    let conversation = status.conversation.expect("conversation");
    assert_eq!(conversation.expiration_timestamp, Some(1_750_116_480));
    assert_eq!(conversation.origin_type.as_deref(), Some("marketing"));
    assert!(!conversation.is_referral_conversion());
}

#[test]
fn a_sent_status_under_conversation_based_pricing_has_no_pricing_type() {
    let status = only_status("status_sent_cbp_service.json");
    assert_eq!(status.id, "wamid.xyzxyz");
    let pricing = status.pricing.expect("pricing");
    assert_eq!(pricing.pricing_model.as_deref(), Some("CBP"));
    assert_eq!(pricing.kind, None);
    assert_eq!(pricing.category.as_deref(), Some("service"));
    let conversation = status.conversation.expect("conversation");
    assert_eq!(
        conversation.id.as_deref(),
        Some("7270432eae37498234f4444b35ffc5")
    );
    assert_eq!(conversation.expiration_timestamp, Some(1_698_339_900));
}

#[test]
fn a_status_in_a_free_entry_point_carries_its_expiration() {
    let status = only_status("status_sent_fep.json");
    let conversation = status.conversation.expect("conversation");
    assert!(conversation.is_referral_conversion());
    assert_eq!(conversation.expiration_timestamp, Some(1_750_289_273));
    let pricing = status.pricing.expect("pricing");
    assert_eq!(pricing.billable, Some(false));
    assert_eq!(pricing.kind.as_deref(), Some("free_entry_point"));
    assert_eq!(pricing.category.as_deref(), Some("referral_conversion"));
}

#[test]
fn a_delivered_status_in_the_service_window_is_free_customer_service() {
    let status = only_status("status_delivered_pmp_free_customer_service.json");
    assert_eq!(status.status, StatusKind::Delivered);
    assert_eq!(status.timestamp, 1_750_030_080);
    assert_eq!(status.conversation, None);
    let pricing = status.pricing.expect("pricing");
    assert_eq!(pricing.billable, Some(false));
    assert_eq!(pricing.kind.as_deref(), Some("free_customer_service"));
}

#[test]
fn a_read_status_as_v24_sends_it_has_no_pricing() {
    let status = only_status("status_read_v24.json");
    assert_eq!(status.status, StatusKind::Read);
    assert_eq!(status.timestamp, 1_750_030_190);
    assert_eq!(status.pricing, None);
    assert_eq!(status.conversation, None);
}

#[test]
fn a_failed_status_carries_meta_errors_131047_and_131049() {
    let status = only_status("status_failed_131047.json");
    assert_eq!(status.status, StatusKind::Failed);
    assert_eq!(status.errors[0].code, RE_ENGAGEMENT.0);
    assert_eq!(status.errors[0].title.as_deref(), Some(RE_ENGAGEMENT.1));
    assert!(status.errors[0]
        .details
        .as_deref()
        .unwrap()
        .contains("more than 24 hours"));
    let status = only_status("status_failed_131049.json");
    assert_eq!(status.errors[0].code, 131_049);
}

#[test]
fn value_level_errors_are_read_without_messages_or_statuses() {
    let value = messages_value("value_errors_130429.json");
    assert!(value.messages.is_empty());
    assert!(value.statuses.is_empty());
    assert_eq!(value.errors.len(), 1);
    assert_eq!(value.errors[0].code, 130_429);
    assert_eq!(value.errors[0].message.as_deref(), Some("Rate limit hit"));
    assert_eq!(
        value.errors[0].details.as_deref(),
        Some("Cloud API message throughput has been reached.")
    );
}

#[test]
fn an_account_update_is_kept_raw_as_another_field() {
    let change = only_change("account_update_volume_tier.json");
    assert_eq!(change.field, "account_update");
    assert_eq!(change.value, ChangeValue::Other);
    assert_eq!(change.raw["event"], "VOLUME_BASED_PRICING_TIER_UPDATE");
}

// Leniency: one bad item never fails the payload.

fn with_items(messages: Value, statuses: Value) -> Vec<u8> {
    json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": "102290129340398", "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
            "messages": messages,
            "statuses": statuses,
        }}]}]
    })
    .to_string()
    .into_bytes()
}

fn lenient_value(body: &[u8]) -> MessagesValue {
    match &parse_webhook(body).expect("the payload parses").entries[0].changes[0].value {
        ChangeValue::Messages(value) => value.clone(),
        other => panic!("expected a messages value, got {other:?}"),
    }
}

#[test]
fn a_message_without_id_is_unparsed_and_the_rest_is_read() {
    let bad = json!({"from": "1", "timestamp": "1", "type": "text", "text": {"body": "no id"}});
    let good = json!({"from": "1", "id": "wamid.ok", "timestamp": "2", "type": "text", "text": {"body": "ok"}});
    let value = lenient_value(&with_items(json!([bad.clone(), good]), json!([])));
    let Item::Unparsed { raw, reason } = &value.messages[0] else {
        panic!("expected Unparsed");
    };
    assert_eq!(raw, &bad);
    assert!(reason.contains("missing field `id`"), "{reason}");
    assert_eq!(value.messages[1].parsed().unwrap().id, "wamid.ok");
}

#[test]
fn a_status_with_a_non_numeric_timestamp_is_unparsed_with_a_reason() {
    let bad =
        json!({"id": "wamid.s", "status": "delivered", "timestamp": "abc", "recipient_id": "1"});
    let good = json!({"id": "wamid.t", "status": "read", "timestamp": "3", "recipient_id": "1"});
    let value = lenient_value(&with_items(json!([]), json!([bad.clone(), good])));
    let Item::Unparsed { raw, reason } = &value.statuses[0] else {
        panic!("expected Unparsed");
    };
    assert_eq!(raw, &bad);
    assert!(reason.contains("\"abc\""), "{reason}");
    assert!(reason.contains("Unix timestamp"), "{reason}");
    assert_eq!(value.statuses[1].parsed().unwrap().status, StatusKind::Read);
}

#[test]
fn unknown_message_type_is_kept_not_fatal() {
    let banana = json!({"from": "1", "id": "wamid.b", "timestamp": 4, "type": "banana", "banana": {"ripe": true}});
    let value = lenient_value(&with_items(json!([banana.clone()]), json!([])));
    let message = value.messages[0].parsed().expect("parsed");
    assert_eq!(message.kind, MessageKind::Other("banana".into()));
    assert_eq!(message.kind.as_str(), "banana");
    assert_eq!(message.timestamp, 4);
    assert_eq!(message.raw, banana);
}

#[test]
fn an_unknown_status_value_is_kept_not_fatal() {
    let played = json!({"id": "wamid.p", "status": "played", "timestamp": "5"});
    let value = lenient_value(&with_items(json!([]), json!([played])));
    let status = value.statuses[0].parsed().expect("parsed");
    assert_eq!(status.status, StatusKind::Other("played".into()));
}

#[test]
fn an_unknown_field_is_kept_raw_beside_known_ones() {
    let body = json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": "1", "changes": [
            {"field": "smb_app_state_sync", "value": {"state_sync": [{"type": "contact"}]}},
            {"field": "messages", "value": {
                "metadata": {"display_phone_number": "1", "phone_number_id": "2"},
                "messages": [{"from": "3", "id": "wamid.m", "timestamp": "6", "type": "text", "text": {"body": "hi"}}]
            }}
        ]}]
    });
    let webhook = parse_webhook(body.to_string().as_bytes()).unwrap();
    let changes = &webhook.entries[0].changes;
    assert_eq!(changes[0].field, "smb_app_state_sync");
    assert_eq!(changes[0].value, ChangeValue::Other);
    assert_eq!(changes[0].raw, body["entry"][0]["changes"][0]["value"]);
    assert!(matches!(changes[1].value, ChangeValue::Messages(_)));
}

#[test]
fn unknown_fields_inside_items_are_ignored() {
    let message = json!({"from": "1", "id": "wamid.x", "timestamp": "7", "type": "text",
                         "text": {"body": "hi"}, "from_logical_id": "95000398405635", "group_id": "g"});
    let value = lenient_value(&with_items(json!([message]), json!([])));
    assert_eq!(value.messages[0].parsed().unwrap().id, "wamid.x");
}

#[test]
fn a_body_that_is_not_json_is_malformed_with_line_and_column() {
    let WebhookError::Malformed(reason) = parse_webhook(b"{\"object\": ").unwrap_err();
    assert!(reason.contains("line 1 column"), "{reason}");
    assert!(parse_webhook(b"not json").is_err());
}

#[test]
fn json_without_entry_is_malformed() {
    let error = parse_webhook(br#"{"object": "whatsapp_business_account"}"#).unwrap_err();
    let message = error.to_string();
    assert!(message.contains("missing field `entry`"), "{message}");
    assert!(
        message.starts_with("webhook body is not Meta's JSON envelope"),
        "{message}"
    );
}

#[test]
fn json_with_a_non_string_object_or_a_non_array_entry_is_malformed() {
    assert!(parse_webhook(br#"{"object": 1, "entry": []}"#).is_err());
    assert!(parse_webhook(br#"{"object": "o", "entry": {}}"#).is_err());
    assert!(parse_webhook(br#"{"object": "o", "entry": []}"#).is_ok());
}

// Send requests and Meta's answers.

#[test]
fn a_send_text_request_is_free_form_to_a_phone_number() {
    let request = parse_send_request(&fixture("send_text.json")).unwrap();
    assert_eq!(request.kind, "text");
    assert!(!request.is_template());
    assert_eq!(request.messaging_product.as_deref(), Some("whatsapp"));
    assert_eq!(request.recipient_type.as_deref(), Some("individual"));
    assert_eq!(request.to.as_deref(), Some("+16505551234"));
    assert_eq!(request.recipient_wa_id().as_deref(), Some("16505551234"));
    assert_eq!(request.template, None);
    assert_eq!(request.raw, fixture_json("send_text.json"));
}

#[test]
fn a_document_link_request_is_free_form() {
    let request = parse_send_request(&fixture("send_document_link.json")).unwrap();
    assert_eq!(request.kind, "document");
    assert!(!request.is_template());
    assert_eq!(request.raw["document"]["filename"], "order_abc123.pdf");
}

#[test]
fn a_positional_template_request_names_the_template_and_its_components() {
    let request = parse_send_request(&fixture("send_template_positional.json")).unwrap();
    assert!(request.is_template());
    let template = request.template.expect("a template");
    assert_eq!(template.name, "order_confirmation");
    assert_eq!(template.language, "en_US");
    assert_eq!(template.components.as_array().unwrap().len(), 4);
    assert_eq!(template.components[1]["parameters"][0]["text"], "Pablo");
}

#[test]
fn a_named_template_request_keeps_parameter_names() {
    let request = parse_send_request(&fixture("send_template_named.json")).unwrap();
    let template = request.template.expect("a template");
    assert_eq!(template.name, "order_update");
    assert_eq!(template.language, "en_US");
    assert_eq!(
        template.components[0]["parameters"][1]["parameter_name"],
        "number"
    );
}

#[test]
fn the_send_response_round_trips() {
    let original = fixture_json("send_response.json");
    let response: SendResponse = serde_json::from_value(original.clone()).unwrap();
    assert_eq!(
        response.first_message_id(),
        Some("wamid.HBgLMTY0NjcwNDM1OTUVAgARGBI1RjQyNUE3NEYxMzAzMzQ5MkEA")
    );
    assert_eq!(response.contacts[0].input, "+16505551234");
    assert_eq!(response.contacts[0].wa_id.as_deref(), Some("16505551234"));
    assert_eq!(serde_json::to_value(&response).unwrap(), original);
}

#[test]
fn the_131047_error_envelope_round_trips_and_matches_error_envelope() {
    let original = fixture_json("error_131047_sync.json");
    let typed: MetaErrorEnvelope = serde_json::from_value(original.clone()).unwrap();
    assert_eq!(typed.error.code, 131_047);
    assert_eq!(serde_json::to_value(&typed).unwrap(), original);
    let built = hourglass_meta::error_envelope(
        RE_ENGAGEMENT.0,
        RE_ENGAGEMENT.1,
        original["error"]["error_data"]["details"].as_str().unwrap(),
        original["error"]["fbtrace_id"].as_str().unwrap(),
    );
    assert_eq!(built, original);
}

// Builders reproduce the fixtures.

#[test]
fn build_inbound_webhook_reproduces_the_inbound_text_fixture() {
    let built = build_inbound_webhook(&InboundTextParams {
        waba_id: "102290129340398",
        phone_number_id: "106540352242922",
        display_phone_number: "15550783881",
        wa_id: "16505551234",
        user_id: None,
        profile_name: "Sheena Nelson",
        message_id: "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA=",
        timestamp: 1_749_416_383,
        body: "Does it come in another color?",
        referral_source_type: None,
    });
    assert_eq!(built, fixture_json("inbound_text.json"));
}

#[test]
fn build_inbound_webhook_with_a_user_id_and_an_ad_parses_back() {
    let built = build_inbound_webhook(&InboundTextParams {
        waba_id: "1",
        phone_number_id: "2",
        display_phone_number: "3",
        wa_id: "16505551234",
        user_id: Some("US.13491208655302741918"),
        profile_name: "Ana",
        message_id: "wamid.ad",
        timestamp: 1_697_045_000,
        body: "Hi from the ad",
        referral_source_type: Some("ad"),
    });
    let value = lenient_value(built.to_string().as_bytes());
    assert_eq!(
        value.contacts[0].user_id.as_deref(),
        Some("US.13491208655302741918")
    );
    let message = value.messages[0].parsed().unwrap();
    assert_eq!(
        message.from_user_id.as_deref(),
        Some("US.13491208655302741918")
    );
    assert!(message.referral.as_ref().unwrap().is_ad());
    assert_eq!(message.text.as_deref(), Some("Hi from the ad"));
}

#[test]
fn build_status_webhook_reproduces_the_status_fixtures() {
    let base = StatusParams {
        waba_id: "102290129340398",
        phone_number_id: "106540352242922",
        display_phone_number: "15550783881",
        message_id: "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQUFERjg0NDEzNDdFODU3MUMxMAA=",
        recipient_wa_id: "16505551234",
        recipient_user_id: None,
        status: "sent",
        timestamp: 1_750_030_073,
        conversation: Some(ConversationParams {
            id: "72b14d6bd5407799e66f64d1b338e567",
            origin_type: "marketing",
            expiration_timestamp: Some(1_750_116_480),
        }),
        biz_opaque_callback_data: None,
        pricing: Some(PricingParams {
            billable: true,
            pricing_model: "PMP",
            kind: Some("regular"),
            category: "marketing",
        }),
    };
    assert_eq!(
        build_status_webhook(&base),
        fixture_json("status_sent_pmp_marketing.json")
    );

    let delivered = StatusParams {
        status: "delivered",
        timestamp: 1_750_030_080,
        conversation: None,
        biz_opaque_callback_data: None,
        pricing: Some(PricingParams {
            billable: false,
            pricing_model: "PMP",
            kind: Some("free_customer_service"),
            category: "service",
        }),
        ..base.clone()
    };
    assert_eq!(
        build_status_webhook(&delivered),
        fixture_json("status_delivered_pmp_free_customer_service.json")
    );

    let read = StatusParams {
        status: "read",
        timestamp: 1_750_030_190,
        conversation: None,
        biz_opaque_callback_data: None,
        pricing: None,
        ..base.clone()
    };
    assert_eq!(
        build_status_webhook(&read),
        fixture_json("status_read_v24.json")
    );

    let fep = StatusParams {
        message_id: "wamid.HBgLfep",
        conversation: Some(ConversationParams {
            id: "8f842dbba350821654c9dfed31f5635c",
            origin_type: "referral_conversion",
            expiration_timestamp: Some(1_750_289_273),
        }),
        biz_opaque_callback_data: None,
        pricing: Some(PricingParams {
            billable: false,
            pricing_model: "PMP",
            kind: Some("free_entry_point"),
            category: "referral_conversion",
        }),
        ..base
    };
    assert_eq!(
        build_status_webhook(&fep),
        fixture_json("status_sent_fep.json")
    );
}

#[test]
fn build_status_webhook_reproduces_the_conversation_based_fixture() {
    let built = build_status_webhook(&StatusParams {
        waba_id: "1234567890987654321",
        phone_number_id: "1122334455667",
        display_phone_number: "972123456789",
        message_id: "wamid.xyzxyz",
        recipient_wa_id: "972987654321",
        recipient_user_id: None,
        status: "sent",
        timestamp: 1_698_266_945,
        conversation: Some(ConversationParams {
            id: "7270432eae37498234f4444b35ffc5",
            origin_type: "service",
            expiration_timestamp: Some(1_698_339_900),
        }),
        biz_opaque_callback_data: None,
        pricing: Some(PricingParams {
            billable: true,
            pricing_model: "CBP",
            kind: None,
            category: "service",
        }),
    });
    assert_eq!(built, fixture_json("status_sent_cbp_service.json"));
}

// Signatures over fixture bytes.

#[test]
fn a_fixture_signed_over_its_exact_bytes_verifies_and_a_reformatted_one_does_not() {
    let secret = b"test-app-secret";
    let body = fixture("inbound_text.json");
    let header = sign(secret, &body);
    assert_eq!(verify_signature(secret, &body, Some(&header)), Ok(()));
    let compact = serde_json::to_vec(&fixture_json("inbound_text.json")).unwrap();
    assert!(verify_signature(secret, &compact, Some(&header)).is_err());
}
