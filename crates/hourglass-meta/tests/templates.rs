//! Templates end to end through Meta's JSON: Meta's own examples (the shared fixtures) lint
//! clean and render exactly, a template with several faults reports each one, and every
//! way a send can fail to fit its template maps to Meta's error code.

use hourglass_core::template::{
    lint, render, rules, BodyParams, ButtonKind, ButtonParam, HeaderKind, HeaderParam, MediaHeader,
    MediaSource, RenderError, RenderParams, Rendered, RenderedButton, RenderedHeader,
    TemplateCategory, TemplateDefinition,
};
use hourglass_meta::send::{error_envelope, http_status_for};
use hourglass_meta::template::{
    components_from_render_params, lint_template_json, parse_template_definition,
    render_error_code, render_params_from_components, render_params_from_plain, template_info,
    MetaTemplateInfo,
};
use serde_json::{json, Value};

const FIXTURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/fixtures/meta/"
);
const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/templates/");

fn read_json(path: String) -> Value {
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn fixture(name: &str) -> Value {
    read_json(format!("{FIXTURES}{name}"))
}

fn definition(value: &Value) -> TemplateDefinition {
    let (definition, findings) = parse_template_definition(value).unwrap();
    assert_eq!(findings, vec![], "reading {value}");
    definition
}

fn april_promo() -> Value {
    fixture("templates_list.json")["data"][0].clone()
}

/// The DESIGN.md §2.4 example, as `template_create_named.json` writes it.
fn keep_helping() -> TemplateDefinition {
    definition(&fixture("template_create_named.json"))
}

fn quick_reply(text: &str) -> RenderedButton {
    RenderedButton {
        kind: ButtonKind::QuickReply,
        text: text.into(),
        url: None,
        phone_number: None,
        payload: None,
    }
}

#[test]
fn metas_creation_example_lints_clean() {
    assert_eq!(
        lint_template_json(&fixture("template_create_named.json")),
        vec![]
    );
}

#[test]
fn every_template_in_metas_list_answer_lints_clean() {
    let list = fixture("templates_list.json");
    let items = list["data"].as_array().unwrap();
    assert!(!items.is_empty());
    for item in items {
        assert_eq!(lint_template_json(item), vec![], "{}", item["name"]);
    }
}

#[test]
fn the_design_example_reads_as_a_named_marketing_template_with_two_quick_replies() {
    let template = keep_helping();
    assert_eq!(template.name, "keep_helping");
    assert_eq!(template.language, "en_US");
    assert_eq!(template.category, Some(TemplateCategory::Marketing));
    assert_eq!(
        template.body_parameters(),
        ["user", "agent", "company"]
            .map(|name| hourglass_core::template::Placeholder::Named(name.into()))
    );
    assert!(template.has_quick_replies());
    assert_eq!(lint(&template), vec![]);
}

#[test]
fn the_design_example_renders_exactly() {
    let params = render_params_from_plain(
        Some(&keep_helping()),
        &json!({"user": "Ana", "agent": "Sam", "company": "Lucky Shrub"}),
        None,
        None,
    )
    .unwrap();
    assert_eq!(
        render(&keep_helping(), &params).unwrap(),
        Rendered {
            header: None,
            body: "Hello, Ana! I am Sam from Lucky Shrub. I would like to keep helping you. Can \
                   I assist you with something else?"
                .into(),
            footer: None,
            buttons: vec![quick_reply("Yes, please!"), quick_reply("No, thanks!")],
        }
    );
}

#[test]
fn the_positional_april_promo_renders_exactly() {
    let template = definition(&april_promo());
    let params = render_params_from_plain(
        Some(&template),
        &json!(["Mark", "FALL25"]),
        None,
        Some(&json!({"0": "STOP_PROMOS"})),
    )
    .unwrap();
    let rendered = render(&template, &params).unwrap();
    assert_eq!(
        rendered,
        Rendered {
            header: Some(RenderedHeader::Text("Fall Sale".into())),
            body: "Hi Mark, our Fall Sale is on! Use promo code FALL25 Get an extra 25% off \
                   every order above $350!"
                .into(),
            footer: Some("Not interested in any of our sales? Tap Stop Promotions".into()),
            buttons: vec![RenderedButton {
                payload: Some("STOP_PROMOS".into()),
                ..quick_reply("Stop promotions")
            }],
        }
    );
}

#[test]
fn metas_list_item_gives_its_id_status_and_category() {
    assert_eq!(
        template_info(&april_promo()),
        MetaTemplateInfo {
            id: Some("920070352646140".into()),
            status: Some("APPROVED".into()),
            category: Some("MARKETING".into()),
            quality: None,
            rejected_reason: None,
        }
    );
}

#[test]
fn metas_named_send_is_read_and_written_back_unchanged() {
    let components = &fixture("send_template_named.json")["template"]["components"];
    let params = render_params_from_components(components).unwrap();
    assert_eq!(
        params.body,
        BodyParams::Named(vec![
            ("name".into(), "John".into()),
            ("number".into(), "100".into())
        ])
    );
    assert_eq!(&components_from_render_params(None, &params), components);
}

#[test]
fn metas_positional_send_is_read_and_written_back_unchanged() {
    let components = &fixture("send_template_positional.json")["template"]["components"];
    let params = render_params_from_components(components).unwrap();
    assert_eq!(
        params,
        RenderParams {
            header: Some(HeaderParam::Media(MediaHeader {
                kind: HeaderKind::Document,
                source: MediaSource::Link("https://example.com/r.pdf".into()),
                filename: Some("receipt.pdf".into()),
            })),
            body: BodyParams::Positional(vec!["Pablo".into(), "860198-230332".into()]),
            buttons: vec![
                ButtonParam {
                    index: 0,
                    sub_type: ButtonKind::QuickReply,
                    value: "unsubscribe".into()
                },
                ButtonParam {
                    index: 1,
                    sub_type: ButtonKind::Url,
                    value: "summer2023".into()
                },
            ],
        }
    );
    assert_eq!(&components_from_render_params(None, &params), components);
}

/// Meta's `order_confirmation` ("Template components", example requests), with a quick
/// reply and a URL button to match `send_template_positional.json`.
fn order_confirmation() -> TemplateDefinition {
    definition(&json!({
        "name": "order_confirmation",
        "language": "en_US",
        "category": "UTILITY",
        "components": [
            {"type": "HEADER", "format": "DOCUMENT", "example": {"header_handle": ["4::YX..."]}},
            {
                "type": "BODY",
                "text": "Thank you for your order, {{1}}! Your order number is {{2}}. Tap the PDF linked above to view your receipt. If you have any questions, please use the buttons below to contact support. Thank you for being a customer!",
                "example": {"body_text": [["Pablo", "860198-230332"]]}
            },
            {"type": "BUTTONS", "buttons": [
                {"type": "QUICK_REPLY", "text": "Unsubscribe"},
                {"type": "URL", "text": "Shop Now", "url": "https://www.luckyshrub.com/shop?promo={{1}}", "example": ["summer2023"]}
            ]}
        ]
    }))
}

#[test]
fn metas_positional_send_renders_against_its_template() {
    let template = order_confirmation();
    assert_eq!(lint(&template), vec![]);
    let components = &fixture("send_template_positional.json")["template"]["components"];
    let rendered = render(
        &template,
        &render_params_from_components(components).unwrap(),
    )
    .unwrap();
    assert!(rendered
        .body
        .starts_with("Thank you for your order, Pablo! Your order number is 860198-230332."));
    assert_eq!(
        rendered.buttons[1].url.as_deref(),
        Some("https://www.luckyshrub.com/shop?promo=summer2023")
    );
    assert_eq!(rendered.buttons[0].payload.as_deref(), Some("unsubscribe"));
}

#[test]
fn a_template_with_several_faults_reports_each_one_where_it_is() {
    let findings = lint_template_json(&read_json(format!("{DATA}several_faults.json")));
    let found: Vec<(&str, &str, Option<usize>)> = findings
        .iter()
        .map(|f| (f.rule, f.component.as_str(), f.position))
        .collect();
    assert_eq!(
        found,
        vec![
            (rules::CATEGORY_UNKNOWN, "category", None),
            (rules::NAME_INVALID_CHARACTERS, "name", Some(1)),
            (rules::HEADER_TOO_LONG, "HEADER", Some(61)),
            (rules::HEADER_TOO_MANY_PARAMETERS, "HEADER", Some(11)),
            (rules::HEADER_EXAMPLE_MISMATCH, "HEADER", None),
            (rules::POSITIONAL_PARAMETERS_NOT_SEQUENTIAL, "BODY", Some(7)),
            (rules::BODY_STARTS_WITH_PARAMETER, "BODY", Some(1)),
            (rules::ADJACENT_PARAMETERS, "BODY", Some(7)),
            (rules::TOO_MANY_PARAMETERS_FOR_LENGTH, "BODY", None),
            (rules::BODY_EXAMPLE_MISSING, "BODY", None),
            (rules::FOOTER_HAS_PARAMETER, "FOOTER", Some(7)),
            (rules::TOO_MANY_BUTTONS_OF_TYPE, "BUTTONS", None),
            (rules::QUICK_REPLIES_NOT_GROUPED, "BUTTONS[2]", None),
            (
                rules::BUTTON_URL_PARAMETER_NOT_AT_END,
                "BUTTONS[1]",
                Some(26)
            ),
            (rules::BUTTON_EXAMPLE_MISSING, "BUTTONS[1]", None),
        ],
        "{findings:#?}"
    );
    for finding in &findings {
        assert!(rules::ALL.contains(&finding.rule), "{}", finding.rule);
        assert!(!finding.message.is_empty());
    }
}

/// The Meta code and HTTP status of a send of `params` with `template`.
fn refusal(template: &TemplateDefinition, params: &RenderParams) -> (i64, &'static str, u16) {
    let error = render(template, params).expect_err("the send should be refused");
    let (code, title) = render_error_code(&error);
    (code, title, http_status_for(code))
}

fn plain(template: &TemplateDefinition, params: Value) -> RenderParams {
    render_params_from_plain(Some(template), &params, None, None).unwrap()
}

#[test]
fn a_wrong_number_of_values_is_132000() {
    let template = definition(&april_promo());
    assert_eq!(
        refusal(&template, &plain(&template, json!(["Mark"]))),
        (
            132000,
            "Number of parameters does not match the expected number of params",
            400
        )
    );
}

#[test]
fn wrong_names_are_132000() {
    let template = keep_helping();
    let params = plain(
        &template,
        json!({"user": "Ana", "agent": "Sam", "shop": "Lucky Shrub"}),
    );
    let error = render(&template, &params).unwrap_err();
    assert!(matches!(error, RenderError::ParameterNames { .. }));
    assert_eq!(render_error_code(&error).0, 132000);
}

#[test]
fn positional_values_for_a_named_template_are_132012() {
    let template = keep_helping();
    let components = json!([{"type": "body", "parameters": [
        {"type": "text", "text": "Ana"}, {"type": "text", "text": "Sam"}, {"type": "text", "text": "Lucky Shrub"}
    ]}]);
    let params = render_params_from_components(&components).unwrap();
    assert_eq!(
        refusal(&template, &params),
        (
            132012,
            "Parameter format does not match format in the created template",
            400
        )
    );
}

#[test]
fn a_media_header_sent_without_media_is_132012() {
    let template = order_confirmation();
    let components = json!([
        {"type": "body", "parameters": [{"type": "text", "text": "Pablo"}, {"type": "text", "text": "1"}]},
        {"type": "button", "sub_type": "url", "index": "1", "parameters": [{"type": "text", "text": "x"}]}
    ]);
    let params = render_params_from_components(&components).unwrap();
    let error = render(&template, &params).unwrap_err();
    assert_eq!(
        error,
        RenderError::HeaderFormat {
            expected: Some(HeaderKind::Document),
            got: None
        }
    );
    assert_eq!(render_error_code(&error).0, 132012);
}

#[test]
fn a_body_too_long_once_filled_is_132005() {
    let template = definition(&april_promo());
    let long = "M".repeat(1000);
    assert_eq!(
        refusal(&template, &plain(&template, json!([long, "FALL25"]))),
        (132005, "Translated text too long", 400)
    );
}

#[test]
fn a_new_line_in_a_value_is_132018_and_an_empty_value_is_100() {
    let template = definition(&april_promo());
    assert_eq!(
        refusal(
            &template,
            &plain(&template, json!(["Mark\nSmith", "FALL25"]))
        )
        .0,
        132018
    );
    assert_eq!(
        refusal(&template, &plain(&template, json!(["", "FALL25"]))),
        (100, "Invalid parameter", 400)
    );
}

#[test]
fn a_url_button_without_its_suffix_is_131008() {
    let template = order_confirmation();
    let components = json!([
        {"type": "header", "parameters": [{"type": "document", "document": {"id": "77"}}]},
        {"type": "body", "parameters": [{"type": "text", "text": "Pablo"}, {"type": "text", "text": "1"}]}
    ]);
    let params = render_params_from_components(&components).unwrap();
    assert_eq!(
        refusal(&template, &params),
        (131008, "Required parameter is missing", 400)
    );
}

#[test]
fn a_refusal_becomes_metas_error_envelope_with_an_actionable_detail() {
    let template = definition(&april_promo());
    let error = render(&template, &plain(&template, json!(["Mark"]))).unwrap_err();
    let (code, title) = render_error_code(&error);
    let envelope = error_envelope(code, title, &error.to_string(), "trace");
    assert_eq!(
        envelope["error"]["message"],
        "(#132000) Number of parameters does not match the expected number of params"
    );
    assert_eq!(
        envelope["error"]["error_data"]["details"],
        "BODY of this template has 2 parameter(s) but the send gave 1: give exactly 2"
    );
}
