use super::*;
use crate::template::{Button, Header, ParameterExamples, TemplateCategory};

fn keep_helping() -> TemplateDefinition {
    TemplateDefinition {
        name: "keep_helping".into(),
        language: "en_US".into(),
        category: Some(TemplateCategory::Marketing),
        parameter_format: ParameterFormat::Named,
        body: "Hello, {{user}}! I am {{agent}} from {{company}}. I would like to keep helping \
               you. Can I assist you with something else?"
            .into(),
        buttons: vec![
            Button::new(ButtonKind::QuickReply, "Yes, please!"),
            Button::new(ButtonKind::QuickReply, "No, thanks!"),
        ],
        ..Default::default()
    }
}

fn order_confirmation() -> TemplateDefinition {
    TemplateDefinition {
        name: "order_confirmation".into(),
        language: "en_US".into(),
        category: Some(TemplateCategory::Utility),
        header: Some(Header {
            kind: HeaderKind::Document,
            text: None,
            example: ParameterExamples::Positional(vec!["4::YX".into()]),
        }),
        body: "Thank you for your order, {{1}}! Your order number is {{2}}. Tap the PDF \
               linked above to view your receipt."
            .into(),
        buttons: vec![
            Button::new(ButtonKind::QuickReply, "Unsubscribe"),
            Button {
                url: Some("https://www.luckyshrub.com/shop?promo={{1}}".into()),
                ..Button::new(ButtonKind::Url, "Shop Now")
            },
        ],
        ..Default::default()
    }
}

fn named(pairs: &[(&str, &str)]) -> BodyParams {
    BodyParams::Named(
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect(),
    )
}

fn positional(values: &[&str]) -> BodyParams {
    BodyParams::Positional(values.iter().map(|v| v.to_string()).collect())
}

fn document() -> HeaderParam {
    HeaderParam::Media(MediaHeader {
        kind: HeaderKind::Document,
        source: MediaSource::Link("https://example.com/r.pdf".into()),
        filename: Some("receipt.pdf".into()),
    })
}

fn button(index: usize, sub_type: ButtonKind, value: &str) -> ButtonParam {
    ButtonParam {
        index,
        sub_type,
        value: value.into(),
    }
}

fn order_params() -> RenderParams {
    RenderParams {
        header: Some(document()),
        body: positional(&["Pablo", "860198-230332"]),
        buttons: vec![
            button(0, ButtonKind::QuickReply, "unsubscribe"),
            button(1, ButtonKind::Url, "summer2023"),
        ],
    }
}

#[test]
fn named_values_fill_their_placeholders_in_any_order() {
    let params = RenderParams {
        body: named(&[
            ("company", "Lucky Shrub"),
            ("user", "Ana"),
            ("agent", "Sam"),
        ]),
        ..Default::default()
    };
    let rendered = render(&keep_helping(), &params).unwrap();
    assert_eq!(
        rendered.body,
        "Hello, Ana! I am Sam from Lucky Shrub. I would like to keep helping you. Can I \
         assist you with something else?"
    );
    assert_eq!(rendered.header, None);
    assert_eq!(
        rendered
            .buttons
            .iter()
            .map(|b| (b.text.as_str(), b.payload.as_deref()))
            .collect::<Vec<_>>(),
        vec![("Yes, please!", None), ("No, thanks!", None)]
    );
}

#[test]
fn a_media_header_url_suffix_and_quick_reply_payload_are_rendered() {
    let rendered = render(&order_confirmation(), &order_params()).unwrap();
    assert_eq!(
        rendered.body,
        "Thank you for your order, Pablo! Your order number is 860198-230332. Tap the PDF \
         linked above to view your receipt."
    );
    assert_eq!(
        rendered.header,
        Some(RenderedHeader::Media(MediaHeader {
            kind: HeaderKind::Document,
            source: MediaSource::Link("https://example.com/r.pdf".into()),
            filename: Some("receipt.pdf".into()),
        }))
    );
    assert_eq!(rendered.buttons[0].payload.as_deref(), Some("unsubscribe"));
    assert_eq!(
        rendered.buttons[1].url.as_deref(),
        Some("https://www.luckyshrub.com/shop?promo=summer2023")
    );
    assert_eq!(rendered.buttons[1].payload, None);
}

#[test]
fn a_repeated_positional_placeholder_takes_the_same_value() {
    let template = TemplateDefinition {
        body: "Hi {{1}}, order {{2}} is ready, {{1}}.".into(),
        ..Default::default()
    };
    let rendered = render(
        &template,
        &RenderParams {
            body: positional(&["Ana", "7"]),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(rendered.body, "Hi Ana, order 7 is ready, Ana.");
}

#[test]
fn a_text_header_parameter_is_filled_and_the_header_counted_once_filled() {
    let template = TemplateDefinition {
        header: Some(Header {
            kind: HeaderKind::Text,
            text: Some("Our {{1}} is on!".into()),
            example: ParameterExamples::default(),
        }),
        body: "Shop now.".into(),
        ..Default::default()
    };
    let mut params = RenderParams {
        header: Some(HeaderParam::Text("Summer Sale".into())),
        ..Default::default()
    };
    assert_eq!(
        render(&template, &params).unwrap().header,
        Some(RenderedHeader::Text("Our Summer Sale is on!".into()))
    );
    params.header = Some(HeaderParam::Text("x".repeat(50)));
    assert_eq!(
        render(&template, &params).unwrap_err(),
        RenderError::TooLong {
            component: "HEADER".into(),
            length: 61,
            limit: 60
        }
    );
    params.header = None;
    assert_eq!(
        render(&template, &params).unwrap_err(),
        RenderError::ParameterCount {
            component: "HEADER".into(),
            expected: 1,
            got: 0
        }
    );
}

#[test]
fn too_few_or_too_many_positional_values_are_a_count_mismatch() {
    let mut params = order_params();
    params.body = positional(&["Pablo"]);
    let error = render(&order_confirmation(), &params).unwrap_err();
    assert_eq!(
        error,
        RenderError::ParameterCount {
            component: "BODY".into(),
            expected: 2,
            got: 1
        }
    );
    assert_eq!(
        error.to_string(),
        "BODY of this template has 2 parameter(s) but the send gave 1: give exactly 2"
    );
    params.body = positional(&["a", "b", "c"]);
    assert!(matches!(
        render(&order_confirmation(), &params),
        Err(RenderError::ParameterCount { got: 3, .. })
    ));
}

#[test]
fn values_for_a_template_without_parameters_are_a_count_mismatch() {
    let template = TemplateDefinition {
        body: "Your order has shipped.".into(),
        ..Default::default()
    };
    let params = RenderParams {
        body: positional(&["x"]),
        ..Default::default()
    };
    assert!(matches!(
        render(&template, &params),
        Err(RenderError::ParameterCount {
            expected: 0,
            got: 1,
            ..
        })
    ));
}

#[test]
fn wrong_or_missing_names_are_listed() {
    let params = RenderParams {
        body: named(&[("user", "Ana"), ("agent", "Sam"), ("shop", "Lucky Shrub")]),
        ..Default::default()
    };
    let error = render(&keep_helping(), &params).unwrap_err();
    assert_eq!(
        error,
        RenderError::ParameterNames {
            component: "BODY".into(),
            missing: vec!["company".into()],
            unexpected: vec!["shop".into()],
        }
    );
    assert!(error
        .to_string()
        .contains("missing company; not in the template shop"));
    let none = render(&keep_helping(), &RenderParams::default()).unwrap_err();
    assert!(matches!(none, RenderError::ParameterNames { missing, .. } if missing.len() == 3));
}

#[test]
fn a_name_given_twice_is_a_count_mismatch() {
    let params = RenderParams {
        body: named(&[
            ("user", "Ana"),
            ("agent", "Sam"),
            ("company", "Lucky Shrub"),
            ("user", "Bea"),
        ]),
        ..Default::default()
    };
    assert!(matches!(
        render(&keep_helping(), &params),
        Err(RenderError::ParameterCount {
            expected: 3,
            got: 4,
            ..
        })
    ));
}

#[test]
fn positional_values_for_a_named_template_are_a_format_mismatch() {
    let params = RenderParams {
        body: positional(&["Ana", "Sam", "Lucky Shrub"]),
        ..Default::default()
    };
    assert_eq!(
        render(&keep_helping(), &params).unwrap_err(),
        RenderError::ParameterFormat {
            component: "BODY".into(),
            expected: ParameterFormat::Named,
            got: ParameterFormat::Positional,
        }
    );
}

#[test]
fn a_media_header_without_a_value_or_with_the_wrong_kind_is_a_header_format_error() {
    let mut params = order_params();
    params.header = None;
    let error = render(&order_confirmation(), &params).unwrap_err();
    assert_eq!(
        error,
        RenderError::HeaderFormat {
            expected: Some(HeaderKind::Document),
            got: None
        }
    );
    assert!(error
        .to_string()
        .contains("DOCUMENT header but the send gave no header value"));
    params.header = Some(HeaderParam::Media(MediaHeader {
        kind: HeaderKind::Image,
        source: MediaSource::Id("123".into()),
        filename: None,
    }));
    assert!(matches!(
        render(&order_confirmation(), &params),
        Err(RenderError::HeaderFormat {
            got: Some(HeaderKind::Image),
            ..
        })
    ));
    params.header = Some(HeaderParam::Text("receipt".into()));
    assert!(matches!(
        render(&order_confirmation(), &params),
        Err(RenderError::HeaderFormat {
            got: Some(HeaderKind::Text),
            ..
        })
    ));
}

#[test]
fn a_header_value_for_a_template_without_a_header_is_a_header_format_error() {
    let params = RenderParams {
        header: Some(document()),
        body: named(&[
            ("user", "Ana"),
            ("agent", "Sam"),
            ("company", "Lucky Shrub"),
        ]),
        ..Default::default()
    };
    assert_eq!(
        render(&keep_helping(), &params).unwrap_err(),
        RenderError::HeaderFormat {
            expected: None,
            got: Some(HeaderKind::Document)
        }
    );
}

#[test]
fn a_location_header_takes_a_location() {
    let template = TemplateDefinition {
        header: Some(Header {
            kind: HeaderKind::Location,
            text: None,
            example: ParameterExamples::default(),
        }),
        body: "Your order is on its way.".into(),
        ..Default::default()
    };
    let location = LocationHeader {
        latitude: "37.44".into(),
        longitude: "-122.16".into(),
        name: Some("Philz Coffee".into()),
        address: None,
    };
    let params = RenderParams {
        header: Some(HeaderParam::Location(location.clone())),
        ..Default::default()
    };
    assert_eq!(
        render(&template, &params).unwrap().header,
        Some(RenderedHeader::Location(location))
    );
}

#[test]
fn a_body_over_1024_characters_once_filled_is_too_long_when_other_components_exist() {
    let mut params = order_params();
    params.body = positional(&[&"P".repeat(1000), "1"]);
    let error = render(&order_confirmation(), &params).unwrap_err();
    assert!(
        matches!(error, RenderError::TooLong { ref component, limit: 1024, .. } if component == "BODY"),
        "{error:?}"
    );
    assert!(error.to_string().contains("Meta allows 1024"));
}

#[test]
fn a_body_only_template_may_grow_to_32768_characters_once_filled() {
    let template = TemplateDefinition {
        body: "Your report: {{1}}. Thank you.".into(),
        ..Default::default()
    };
    let mut params = RenderParams {
        body: positional(&[&"a".repeat(2000)]),
        ..Default::default()
    };
    assert!(render(&template, &params).is_ok());
    params.body = positional(&[&"a".repeat(32_768)]);
    assert!(matches!(
        render(&template, &params),
        Err(RenderError::TooLong { limit: 32_768, .. })
    ));
}

#[test]
fn empty_values_new_lines_tabs_and_five_spaces_are_refused() {
    for (value, problem) in [
        ("", ParameterProblem::Empty),
        ("two\nlines", ParameterProblem::NewlineOrTab),
        ("a\ttab", ParameterProblem::NewlineOrTab),
        ("five     spaces", ParameterProblem::TooManySpaces),
    ] {
        let mut params = order_params();
        params.body = positional(&["Pablo", value]);
        assert_eq!(
            render(&order_confirmation(), &params).unwrap_err(),
            RenderError::ParameterText {
                component: "BODY".into(),
                parameter: "{{2}}".into(),
                problem
            },
            "{value:?}"
        );
    }
    let mut params = order_params();
    params.body = positional(&["Pablo", "four    spaces"]);
    assert!(render(&order_confirmation(), &params).is_ok());
}

#[test]
fn a_dynamic_url_button_without_a_suffix_is_missing_a_value() {
    let mut params = order_params();
    params.buttons.pop();
    assert_eq!(
        render(&order_confirmation(), &params).unwrap_err(),
        RenderError::ButtonParameter {
            index: 1,
            problem: ButtonProblem::Missing {
                kind: ButtonKind::Url
            }
        }
    );
}

#[test]
fn button_values_must_name_an_existing_button_of_the_same_type_once() {
    let cases = [
        (
            button(5, ButtonKind::QuickReply, "x"),
            ButtonProblem::NoSuchButton { buttons: 2 },
        ),
        (
            button(0, ButtonKind::Url, "x"),
            ButtonProblem::WrongType {
                expected: ButtonKind::QuickReply,
                got: ButtonKind::Url,
            },
        ),
        (
            button(0, ButtonKind::QuickReply, "again"),
            ButtonProblem::Repeated,
        ),
    ];
    for (extra, problem) in cases {
        let mut params = order_params();
        let index = extra.index;
        params.buttons.push(extra);
        assert_eq!(
            render(&order_confirmation(), &params).unwrap_err(),
            RenderError::ButtonParameter { index, problem }
        );
    }
}

#[test]
fn a_value_for_a_url_without_a_parameter_is_refused() {
    let mut template = order_confirmation();
    template.buttons[1].url = Some("https://www.luckyshrub.com/support".into());
    let error = render(&template, &order_params()).unwrap_err();
    assert_eq!(
        error,
        RenderError::ButtonParameter {
            index: 1,
            problem: ButtonProblem::NotDynamic
        }
    );
    assert!(error.to_string().contains("takes no value"));
}

#[test]
fn a_copy_code_button_copies_the_code_the_send_gives() {
    let template = TemplateDefinition {
        body: "Use the code below at checkout.".into(),
        buttons: vec![Button::new(ButtonKind::CopyCode, "")],
        ..Default::default()
    };
    let params = RenderParams {
        buttons: vec![button(0, ButtonKind::CopyCode, "250FF")],
        ..Default::default()
    };
    assert_eq!(
        render(&template, &params).unwrap().buttons[0]
            .payload
            .as_deref(),
        Some("250FF")
    );
    assert!(matches!(
        render(&template, &RenderParams::default()),
        Err(RenderError::ButtonParameter {
            problem: ButtonProblem::Missing { .. },
            ..
        })
    ));
}
