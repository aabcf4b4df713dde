use super::*;
use hourglass_core::template::{Button, Header, ParameterExamples, ParameterFormat};

fn named_template() -> TemplateDefinition {
    TemplateDefinition {
        name: "sale".into(),
        parameter_format: ParameterFormat::Named,
        header: Some(Header {
            kind: HeaderKind::Text,
            text: Some("Our {{sale_name}} is on!".into()),
            example: ParameterExamples::default(),
        }),
        body: "Hi {{first_name}}, use code {{code}} today at the shop.".into(),
        buttons: vec![
            Button::new(ButtonKind::QuickReply, "Stop"),
            Button {
                url: Some("https://example.com/order?name={{customer_name}}".into()),
                ..Button::new(ButtonKind::Url, "Open")
            },
        ],
        ..Default::default()
    }
}

fn positional_template() -> TemplateDefinition {
    TemplateDefinition {
        name: "order_confirmation".into(),
        header: Some(Header {
            kind: HeaderKind::Image,
            text: None,
            example: ParameterExamples::default(),
        }),
        body: "Hi {{1}}, your order {{2}} is on its way to you now.".into(),
        buttons: vec![Button {
            url: Some("https://example.com/track/{{1}}".into()),
            ..Button::new(ButtonKind::Url, "Track")
        }],
        ..Default::default()
    }
}

#[test]
fn currency_and_date_time_parameters_give_their_fallback_value() {
    let params = render_params_from_components(&json!([{
        "type": "body",
        "parameters": [
            {"type": "currency", "currency": {"fallback_value": "$100.99", "code": "USD", "amount_1000": 100990}},
            {"type": "date_time", "date_time": {"fallback_value": "February 25, 1977"}}
        ]
    }]))
    .unwrap();
    assert_eq!(
        params.body,
        BodyParams::Positional(vec!["$100.99".into(), "February 25, 1977".into()])
    );
}

#[test]
fn a_location_and_a_media_id_header_are_read() {
    let params = render_params_from_components(&json!([{
        "type": "header",
        "parameters": [{"type": "location", "location": {"latitude": "37.44", "longitude": -122.16, "name": "Philz"}}]
    }]))
    .unwrap();
    assert_eq!(
        params.header,
        Some(HeaderParam::Location(LocationHeader {
            latitude: "37.44".into(),
            longitude: "-122.16".into(),
            name: Some("Philz".into()),
            address: None,
        }))
    );
    let params = render_params_from_components(&json!([{
        "type": "HEADER",
        "parameters": [{"type": "image", "image": {"id": "1234"}}]
    }]))
    .unwrap();
    assert_eq!(
        params.header,
        Some(HeaderParam::Media(MediaHeader {
            kind: HeaderKind::Image,
            source: MediaSource::Id("1234".into()),
            filename: None,
        }))
    );
}

#[test]
fn body_parameters_with_and_without_names_are_refused_with_metas_reason() {
    let error = render_params_from_components(&json!([{
        "type": "body",
        "parameters": [
            {"type": "text", "text": "John", "parameter_name": "name"},
            {"type": "text", "text": "100"}
        ]
    }]))
    .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("parameter name is missing or empty"),
        "{error}"
    );
    assert_eq!(error.meta_code().0, 100);
}

#[test]
fn malformed_components_name_the_component_and_the_fix() {
    for (components, expected) in [
        (json!({"type": "body"}), "must be an array"),
        (
            json!([{"type": "body", "parameters": [{"type": "text"}]}]),
            "'text' is mandatory",
        ),
        (
            json!([{"type": "button", "sub_type": "url", "parameters": []}]),
            "`index`",
        ),
        (json!([{"type": "button", "index": "0"}]), "`sub_type`"),
        (
            json!([{"type": "header", "parameters": [{"type": "sticker"}]}]),
            "not a header parameter type",
        ),
        (
            json!([{"type": "body", "parameters": [{"type": "image"}]}]),
            "text, currency or date_time",
        ),
        (
            json!([{"type": "footer", "parameters": []}]),
            "use header, body or button",
        ),
    ] {
        let error = render_params_from_components(&components).unwrap_err();
        assert!(
            error.to_string().contains(expected),
            "{components}: {error}"
        );
    }
}

#[test]
fn button_indexes_may_be_strings_or_numbers_and_copy_codes_are_read() {
    let params = render_params_from_components(&json!([
        {"type": "button", "sub_type": "copy_code", "index": 0, "parameters": [{"type": "coupon_code", "coupon_code": "250FF"}]},
        {"type": "button", "sub_type": "quick_reply", "index": "1", "parameters": []}
    ]))
    .unwrap();
    assert_eq!(
        params.buttons,
        vec![ButtonParam {
            index: 0,
            sub_type: ButtonKind::CopyCode,
            value: "250FF".into()
        }]
    );
}

#[test]
fn plain_named_params_header_text_and_buttons_are_read_against_the_definition() {
    let template = named_template();
    let params = render_params_from_plain(
        Some(&template),
        &json!({"first_name": "Ana", "code": 25}),
        Some(&json!("Summer Sale")),
        Some(&json!({"0": "stop", "1": "Gon%C3%A7alves"})),
    )
    .unwrap();
    assert_eq!(params.header, Some(HeaderParam::Text("Summer Sale".into())));
    // Named values may come in any order ("Template fundamentals"), so compare them sorted.
    let BodyParams::Named(mut pairs) = params.body else {
        panic!("named params expected: {:?}", params.body);
    };
    pairs.sort();
    assert_eq!(
        pairs,
        vec![
            ("code".to_owned(), "25".to_owned()),
            ("first_name".to_owned(), "Ana".to_owned())
        ]
    );
    assert_eq!(
        params.buttons,
        vec![
            ButtonParam {
                index: 0,
                sub_type: ButtonKind::QuickReply,
                value: "stop".into()
            },
            ButtonParam {
                index: 1,
                sub_type: ButtonKind::Url,
                value: "Gon%C3%A7alves".into()
            },
        ]
    );
}

#[test]
fn plain_positional_params_may_be_an_array_or_numbered_keys() {
    let template = positional_template();
    let from_array =
        render_params_from_plain(Some(&template), &json!(["Ana", "A-1"]), None, None).unwrap();
    let from_keys = render_params_from_plain(
        Some(&template),
        &json!({"2": "A-1", "1": "Ana"}),
        None,
        None,
    )
    .unwrap();
    assert_eq!(from_array.body, from_keys.body);
    assert_eq!(
        from_array.body,
        BodyParams::Positional(vec!["Ana".into(), "A-1".into()])
    );
    let error =
        render_params_from_plain(Some(&template), &json!({"1": "Ana", "3": "x"}), None, None)
            .unwrap_err();
    assert!(error.contains("without gaps"), "{error}");
}

#[test]
fn plain_params_in_the_wrong_shape_for_the_template_are_refused() {
    let error =
        render_params_from_plain(Some(&named_template()), &json!(["Ana", "25"]), None, None)
            .unwrap_err();
    assert!(
        error.contains("uses named parameters ({{first_name}}, {{code}})"),
        "{error}"
    );
    let error = render_params_from_plain(
        Some(&positional_template()),
        &json!({"name": "Ana"}),
        None,
        None,
    )
    .unwrap_err();
    assert!(
        error.contains("give an array of values in order"),
        "{error}"
    );
    let error = render_params_from_plain(None, &json!(true), None, None).unwrap_err();
    assert!(error.contains("`params` must be"), "{error}");
}

#[test]
fn a_plain_string_header_for_a_media_template_is_a_link_or_an_id() {
    let template = positional_template();
    let link = render_params_from_plain(
        Some(&template),
        &Value::Null,
        Some(&json!("https://example.com/a.png")),
        None,
    )
    .unwrap();
    assert_eq!(
        link.header,
        Some(HeaderParam::Media(MediaHeader {
            kind: HeaderKind::Image,
            source: MediaSource::Link("https://example.com/a.png".into()),
            filename: None,
        }))
    );
    let id = render_params_from_plain(Some(&template), &Value::Null, Some(&json!("4490")), None)
        .unwrap();
    assert!(matches!(
        id.header,
        Some(HeaderParam::Media(MediaHeader {
            source: MediaSource::Id(_),
            ..
        }))
    ));
}

#[test]
fn a_plain_header_object_may_use_metas_nested_shape_or_a_flat_one() {
    for header in [
        json!({"type": "document", "link": "https://example.com/r.pdf", "filename": "r.pdf"}),
        json!({"type": "document", "document": {"link": "https://example.com/r.pdf", "filename": "r.pdf"}}),
    ] {
        let params = render_params_from_plain(None, &Value::Null, Some(&header), None).unwrap();
        assert_eq!(
            params.header,
            Some(HeaderParam::Media(MediaHeader {
                kind: HeaderKind::Document,
                source: MediaSource::Link("https://example.com/r.pdf".into()),
                filename: Some("r.pdf".into()),
            })),
            "{header}"
        );
    }
}

#[test]
fn plain_button_values_without_a_definition_must_say_their_type() {
    let error =
        render_params_from_plain(None, &Value::Null, None, Some(&json!({"0": "x"}))).unwrap_err();
    assert!(error.contains("sub_type"), "{error}");
    let params = render_params_from_plain(
        None,
        &Value::Null,
        None,
        Some(&json!({"1": {"sub_type": "url", "value": "abc"}})),
    )
    .unwrap();
    assert_eq!(params.buttons[0].sub_type, ButtonKind::Url);
    let error = render_params_from_plain(
        Some(&positional_template()),
        &Value::Null,
        None,
        Some(&json!({"4": "x"})),
    )
    .unwrap_err();
    assert!(error.contains("has 1 button(s)"), "{error}");
}

#[test]
fn components_carry_parameter_names_from_the_definition() {
    let template = named_template();
    let params = RenderParams {
        header: Some(HeaderParam::Text("Summer Sale".into())),
        body: BodyParams::Named(vec![
            ("first_name".into(), "Ana".into()),
            ("code".into(), "25OFF".into()),
        ]),
        buttons: vec![
            ButtonParam {
                index: 1,
                sub_type: ButtonKind::Url,
                value: "Ana".into(),
            },
            ButtonParam {
                index: 0,
                sub_type: ButtonKind::QuickReply,
                value: "stop".into(),
            },
        ],
    };
    assert_eq!(
        components_from_render_params(Some(&template), &params),
        json!([
            {"type": "header", "parameters": [{"type": "text", "text": "Summer Sale", "parameter_name": "sale_name"}]},
            {"type": "body", "parameters": [
                {"type": "text", "text": "Ana", "parameter_name": "first_name"},
                {"type": "text", "text": "25OFF", "parameter_name": "code"}
            ]},
            {"type": "button", "sub_type": "quick_reply", "index": "0", "parameters": [{"type": "payload", "payload": "stop"}]},
            {"type": "button", "sub_type": "url", "index": "1", "parameters": [{"type": "text", "text": "Ana", "parameter_name": "customer_name"}]}
        ])
    );
}

#[test]
fn components_for_media_location_and_copy_code_follow_metas_syntax() {
    let params = RenderParams {
        header: Some(HeaderParam::Media(MediaHeader {
            kind: HeaderKind::Video,
            source: MediaSource::Id("99".into()),
            filename: None,
        })),
        body: BodyParams::default(),
        buttons: vec![ButtonParam {
            index: 0,
            sub_type: ButtonKind::CopyCode,
            value: "250FF".into(),
        }],
    };
    assert_eq!(
        components_from_render_params(None, &params),
        json!([
            {"type": "header", "parameters": [{"type": "video", "video": {"id": "99"}}]},
            {"type": "button", "sub_type": "copy_code", "index": "0", "parameters": [{"type": "coupon_code", "coupon_code": "250FF"}]}
        ])
    );
    let location = RenderParams {
        header: Some(HeaderParam::Location(LocationHeader {
            latitude: "1.5".into(),
            longitude: "2.5".into(),
            name: None,
            address: Some("Main St".into()),
        })),
        ..Default::default()
    };
    assert_eq!(
        components_from_render_params(None, &location),
        json!([{"type": "header", "parameters": [{"type": "location", "location": {"latitude": "1.5", "longitude": "2.5", "address": "Main St"}}]}])
    );
}
