//! One test (at least) per rule, each starting from a template that lints clean and
//! breaking exactly one thing.

use super::*;
use crate::template::{Button, Header, TemplateCategory};

/// DESIGN.md §2.4's example: lints clean.
fn keep_helping() -> TemplateDefinition {
    TemplateDefinition {
        name: "keep_helping".into(),
        language: "en_US".into(),
        category: Some(TemplateCategory::Marketing),
        parameter_format: ParameterFormat::Named,
        header: None,
        body: "Hello, {{user}}! I am {{agent}} from {{company}}. I would like to keep helping \
               you. Can I assist you with something else?"
            .into(),
        body_examples: ParameterExamples::Named(vec![
            ("user".into(), "Ana".into()),
            ("agent".into(), "Sam".into()),
            ("company".into(), "Lucky Shrub".into()),
        ]),
        footer: None,
        buttons: vec![
            Button::new(ButtonKind::QuickReply, "Yes, please!"),
            Button::new(ButtonKind::QuickReply, "No, thanks!"),
        ],
    }
}

/// A positional template with every component: lints clean.
fn seasonal_promotion() -> TemplateDefinition {
    TemplateDefinition {
        name: "seasonal_promotion".into(),
        language: "en_US".into(),
        category: Some(TemplateCategory::Marketing),
        parameter_format: ParameterFormat::Positional,
        header: Some(Header {
            kind: HeaderKind::Text,
            text: Some("Our {{1}} is on!".into()),
            example: ParameterExamples::Positional(vec!["Summer Sale".into()]),
        }),
        body: "Shop now through {{1}} and use code {{2}} to get {{3}} off of all merchandise."
            .into(),
        body_examples: ParameterExamples::Positional(vec![
            "the end of August".into(),
            "25OFF".into(),
            "25%".into(),
        ]),
        footer: Some("Use the buttons below to manage your marketing subscriptions".into()),
        buttons: vec![
            Button {
                url: Some("https://www.luckyshrub.com/shop?promo={{1}}".into()),
                example: vec!["summer2023".into()],
                ..Button::new(ButtonKind::Url, "Shop Now")
            },
            Button {
                phone_number: Some("15550051310".into()),
                ..Button::new(ButtonKind::PhoneNumber, "Call")
            },
            Button::new(ButtonKind::QuickReply, "Unsubscribe from Promos"),
        ],
    }
}

fn rules_of(template: &TemplateDefinition) -> Vec<&'static str> {
    lint(template).into_iter().map(|f| f.rule).collect()
}

fn only(template: &TemplateDefinition, rule: &str) -> Finding {
    let findings = lint(template);
    assert_eq!(
        findings.iter().map(|f| f.rule).collect::<Vec<_>>(),
        vec![rule],
        "{findings:#?}"
    );
    findings.into_iter().next().unwrap()
}

fn with_body(body: &str, examples: &[&str]) -> TemplateDefinition {
    TemplateDefinition {
        parameter_format: ParameterFormat::Positional,
        body: body.into(),
        body_examples: ParameterExamples::Positional(
            examples.iter().map(|s| s.to_string()).collect(),
        ),
        ..keep_helping()
    }
}

#[test]
fn the_design_example_and_a_full_positional_template_lint_clean() {
    assert_eq!(lint(&keep_helping()), vec![]);
    assert_eq!(lint(&seasonal_promotion()), vec![]);
}

#[test]
fn every_rule_id_is_kebab_case_and_listed_once() {
    for (index, rule) in rules::ALL.iter().enumerate() {
        assert!(
            rule.bytes().all(|b| b.is_ascii_lowercase() || b == b'-'),
            "{rule}"
        );
        assert!(!rules::ALL[..index].contains(rule), "{rule} twice");
    }
}

// Name.

#[test]
fn a_template_without_a_name_is_reported() {
    let template = TemplateDefinition {
        name: String::new(),
        ..keep_helping()
    };
    only(&template, rules::NAME_EMPTY);
}

#[test]
fn a_name_over_512_characters_is_reported_with_its_length() {
    let template = TemplateDefinition {
        name: "a".repeat(513),
        ..keep_helping()
    };
    let finding = only(&template, rules::NAME_TOO_LONG);
    assert_eq!(finding.position, Some(513));
    assert!(
        finding.message.contains("513 characters"),
        "{}",
        finding.message
    );
    let template = TemplateDefinition {
        name: "a".repeat(512),
        ..keep_helping()
    };
    assert_eq!(lint(&template), vec![]);
}

#[test]
fn a_name_with_capitals_spaces_or_hyphens_is_reported_at_the_first_bad_character() {
    let template = TemplateDefinition {
        name: "order_Update 2".into(),
        ..keep_helping()
    };
    let finding = only(&template, rules::NAME_INVALID_CHARACTERS);
    assert_eq!(finding.component, "name");
    assert_eq!(finding.position, Some(7));
    assert!(
        finding.message.contains("\"order_update_2\""),
        "{}",
        finding.message
    );
}

// Language and category.

#[test]
fn a_template_without_a_language_is_reported() {
    let template = TemplateDefinition {
        language: " ".into(),
        ..keep_helping()
    };
    only(&template, rules::LANGUAGE_MISSING);
}

#[test]
fn a_template_without_a_category_is_reported() {
    let template = TemplateDefinition {
        category: None,
        ..keep_helping()
    };
    assert_eq!(
        only(&template, rules::CATEGORY_MISSING).component,
        "category"
    );
}

// Header.

#[test]
fn a_text_header_without_text_is_reported() {
    let mut template = seasonal_promotion();
    template.header.as_mut().unwrap().text = None;
    only(&template, rules::HEADER_TEXT_MISSING);
}

#[test]
fn a_header_over_60_characters_is_reported_with_its_length() {
    let mut template = seasonal_promotion();
    template.header.as_mut().unwrap().text = Some(format!("Our {{{{1}}}} is on{}", "!".repeat(50)));
    let finding = only(&template, rules::HEADER_TOO_LONG);
    assert_eq!(finding.position, Some(61));
    assert!(
        finding.message.contains("65 characters"),
        "{}",
        finding.message
    );
}

#[test]
fn a_header_counts_characters_not_bytes() {
    let mut template = seasonal_promotion();
    // 60 characters, 120 bytes.
    template.header.as_mut().unwrap().text = Some(format!("{} {{{{1}}}}.", "é".repeat(53)));
    assert_eq!(lint(&template), vec![]);
}

#[test]
fn a_text_header_with_two_parameters_is_reported_at_the_second() {
    let mut template = seasonal_promotion();
    let header = template.header.as_mut().unwrap();
    header.text = Some("Our {{1}} and {{2}}".into());
    header.example = ParameterExamples::Positional(vec!["a".into(), "b".into()]);
    let finding = only(&template, rules::HEADER_TOO_MANY_PARAMETERS);
    assert_eq!(finding.position, Some(15));
}

#[test]
fn a_header_parameter_without_an_example_is_reported() {
    let mut template = seasonal_promotion();
    template.header.as_mut().unwrap().example = ParameterExamples::default();
    let finding = only(&template, rules::HEADER_EXAMPLE_MISSING);
    assert!(
        finding.message.contains("header_text"),
        "{}",
        finding.message
    );
}

#[test]
fn a_media_header_without_a_sample_handle_is_reported() {
    let mut template = seasonal_promotion();
    template.header = Some(Header {
        kind: HeaderKind::Image,
        text: None,
        example: ParameterExamples::default(),
    });
    let finding = only(&template, rules::HEADER_EXAMPLE_MISSING);
    assert!(
        finding.message.contains("header_handle"),
        "{}",
        finding.message
    );
    template.header.as_mut().unwrap().example = ParameterExamples::Positional(vec!["4::aW".into()]);
    assert_eq!(lint(&template), vec![]);
}

#[test]
fn a_named_header_example_for_another_name_is_reported() {
    let template = TemplateDefinition {
        header: Some(Header {
            kind: HeaderKind::Text,
            text: Some("Our new sale starts {{sale_start_date}}!".into()),
            example: ParameterExamples::Named(vec![("sale_date".into(), "December 1st".into())]),
        }),
        ..keep_helping()
    };
    let finding = only(&template, rules::HEADER_EXAMPLE_MISMATCH);
    assert!(
        finding.message.contains("no example for sale_start_date"),
        "{}",
        finding.message
    );
}

#[test]
fn a_location_header_on_an_authentication_template_is_reported() {
    let location = Some(Header {
        kind: HeaderKind::Location,
        text: None,
        example: ParameterExamples::default(),
    });
    let template = TemplateDefinition {
        category: Some(TemplateCategory::Authentication),
        header: location.clone(),
        ..keep_helping()
    };
    only(&template, rules::LOCATION_HEADER_CATEGORY);
    let template = TemplateDefinition {
        category: Some(TemplateCategory::Utility),
        header: location,
        ..keep_helping()
    };
    assert_eq!(lint(&template), vec![]);
}

// Body.

#[test]
fn an_empty_body_is_reported() {
    only(&with_body("  ", &[]), rules::BODY_EMPTY);
}

#[test]
fn body_over_1024_characters_is_reported_with_its_length() {
    let body = format!("Hello {{{{1}}}}, {}", "words and more ".repeat(70));
    let template = with_body(&body, &["Ana"]);
    let finding = only(&template, rules::BODY_TOO_LONG);
    assert_eq!(finding.position, Some(1025));
    let length = body.chars().count();
    assert!(length > 1024);
    assert!(
        finding.message.contains(&format!("{length} characters")),
        "{}",
        finding.message
    );
    assert!(
        finding.message.contains(&format!("by {}", length - 1024)),
        "{}",
        finding.message
    );
}

#[test]
fn a_body_of_exactly_1024_characters_with_multibyte_letters_is_fine() {
    let prefix = "Olá {{1}}, bom dia ";
    let body = format!("{prefix}{}", "ã".repeat(1024 - prefix.chars().count()));
    assert_eq!(body.chars().count(), 1024);
    assert!(body.len() > 1024);
    assert_eq!(lint(&with_body(&body, &["Ana"])), vec![]);
}

#[test]
fn a_body_that_starts_with_a_parameter_is_reported_even_after_punctuation() {
    let finding = only(
        &with_body(
            "¡{{1}}, your order is ready for pickup at the front desk.",
            &["Ana"],
        ),
        rules::BODY_STARTS_WITH_PARAMETER,
    );
    assert_eq!(finding.position, Some(2));
}

#[test]
fn a_body_that_ends_with_a_parameter_and_a_full_stop_is_reported() {
    let finding = only(
        &with_body(
            "Thank you for your order! Your order number is {{1}}.",
            &["860198"],
        ),
        rules::BODY_ENDS_WITH_PARAMETER,
    );
    assert_eq!(finding.position, Some(48));
}

#[test]
fn a_body_made_only_of_a_parameter_is_reported_at_both_ends() {
    let rules = rules_of(&with_body("{{1}}", &["x"]));
    assert!(rules.contains(&rules::BODY_STARTS_WITH_PARAMETER));
    assert!(rules.contains(&rules::BODY_ENDS_WITH_PARAMETER));
}

#[test]
fn parameters_with_only_a_space_between_them_are_adjacent() {
    let finding = only(
        &with_body(
            "Dear {{1}} {{2}}, your flight departs from gate 7 today. Have a good trip.",
            &["Ana", "Lima"],
        ),
        rules::ADJACENT_PARAMETERS,
    );
    assert_eq!(finding.position, Some(12));
    let separated = with_body(
        "Dear {{1}}, {{2}}: your flight departs from gate 7 today. Have a good trip.",
        &["Ana", "Lima"],
    );
    assert_eq!(lint(&separated), vec![]);
}

#[test]
fn too_many_parameters_for_the_length_wants_two_words_per_parameter_plus_one() {
    // 2 parameters need 5 other words; this has 4.
    let finding = only(
        &with_body("Hi {{1}}, gate {{2}} now. Thanks.", &["Ana", "7"]),
        rules::TOO_MANY_PARAMETERS_FOR_LENGTH,
    );
    assert!(
        finding
            .message
            .contains("2 parameter(s) and 4 other word(s)"),
        "{}",
        finding.message
    );
    assert!(
        finding.message.contains("at least 5"),
        "{}",
        finding.message
    );
    assert_eq!(
        lint(&with_body(
            "Hi {{1}}, gate {{2}} now. Thanks, see you.",
            &["Ana", "7"]
        )),
        vec![]
    );
}

#[test]
fn a_body_with_parameters_and_no_examples_is_reported() {
    let finding = only(
        &with_body("Hi {{1}}, your order is ready for pickup today.", &[]),
        rules::BODY_EXAMPLE_MISSING,
    );
    assert!(finding.message.contains("body_text"), "{}", finding.message);
    let named = TemplateDefinition {
        body_examples: ParameterExamples::default(),
        ..keep_helping()
    };
    let finding = only(&named, rules::BODY_EXAMPLE_MISSING);
    assert!(
        finding.message.contains("body_text_named_params"),
        "{}",
        finding.message
    );
}

#[test]
fn body_examples_must_match_the_parameters_in_count_names_and_format() {
    let finding = only(
        &with_body(
            "Hi {{1}}, your order {{2}} is ready for pickup today.",
            &["Ana"],
        ),
        rules::BODY_EXAMPLE_MISMATCH,
    );
    assert!(
        finding.message.contains("2 parameter(s) but 1 example"),
        "{}",
        finding.message
    );

    let mut named = keep_helping();
    named.body_examples = ParameterExamples::Named(vec![
        ("user".into(), "Ana".into()),
        ("agent".into(), "Sam".into()),
        ("shop".into(), "Lucky Shrub".into()),
    ]);
    let finding = only(&named, rules::BODY_EXAMPLE_MISMATCH);
    assert!(
        finding.message.contains("no example for company"),
        "{}",
        finding.message
    );
    assert!(
        finding.message.contains("examples for shop"),
        "{}",
        finding.message
    );

    named.body_examples = ParameterExamples::Positional(vec!["Ana".into(); 3]);
    let finding = only(&named, rules::BODY_EXAMPLE_MISMATCH);
    assert!(
        finding.message.contains("body_text_named_params"),
        "{}",
        finding.message
    );

    let finding = only(
        &with_body("Hi {{1}}, your order is ready for pickup today.", &[" "]),
        rules::BODY_EXAMPLE_MISMATCH,
    );
    assert!(finding.message.contains("is empty"), "{}", finding.message);
}

// Parameters.

#[test]
fn single_or_unclosed_curly_brackets_are_reported() {
    let finding = only(
        &with_body("Hi {1}, your order is ready for pickup today.", &[]),
        rules::MISMATCHED_BRACES,
    );
    assert_eq!(finding.position, Some(4));
    let rules = rules_of(&with_body(
        "Hi {{1}, your order is ready for pickup today.",
        &[],
    ));
    assert_eq!(rules, vec![rules::MISMATCHED_BRACES]);
}

#[test]
fn parameters_with_special_characters_spaces_or_capitals_are_invalid() {
    for bad in [
        "{{#1}}",
        "{{ 1 }}",
        "{{First}}",
        "{{price$}}",
        "{{line_2}}",
        "{{}}",
    ] {
        let body = format!("Hi there {bad}, your order is ready for pickup today.");
        let findings = lint(&with_body(&body, &[]));
        assert_eq!(
            findings.iter().map(|f| f.rule).collect::<Vec<_>>(),
            vec![rules::PARAMETER_INVALID],
            "{bad}: {findings:#?}"
        );
        assert_eq!(findings[0].position, Some(10), "{bad}");
    }
}

#[test]
fn mixing_named_and_positional_parameters_is_reported_once() {
    let template = TemplateDefinition {
        body: "Hello, {{user}}! Your order {{1}} is ready for pickup at the desk.".into(),
        ..keep_helping()
    };
    let finding = only(&template, rules::PARAMETER_FORMAT_MIXED);
    assert_eq!(finding.position, Some(29));
}

#[test]
fn the_parameter_format_must_match_the_placeholders_used() {
    let named_text = TemplateDefinition {
        parameter_format: ParameterFormat::Positional,
        ..keep_helping()
    };
    let finding = only(&named_text, rules::PARAMETER_FORMAT_MISMATCH);
    assert!(
        finding.message.contains("set parameter_format to NAMED"),
        "{}",
        finding.message
    );

    let positional_text = TemplateDefinition {
        parameter_format: ParameterFormat::Named,
        ..seasonal_promotion()
    };
    let rules = rules_of(&positional_text);
    // The header, the body and the URL button each use positional parameters.
    assert_eq!(rules, vec![rules::PARAMETER_FORMAT_MISMATCH; 3]);
}

#[test]
fn positional_parameters_with_a_gap_are_reported_naming_the_missing_one() {
    let finding = only(
        &with_body(
            "Hi {{1}}, your order {{3}} is ready for pickup today.",
            &["a", "b"],
        ),
        rules::POSITIONAL_PARAMETERS_NOT_SEQUENTIAL,
    );
    assert!(
        finding.message.contains("{{2}} missing"),
        "{}",
        finding.message
    );
    assert_eq!(finding.position, Some(22));
}

#[test]
fn positional_parameters_starting_at_0_or_2_are_reported() {
    only(
        &with_body("Hi {{0}}, your order is ready for pickup today.", &["a"]),
        rules::POSITIONAL_PARAMETERS_NOT_SEQUENTIAL,
    );
    let finding = only(
        &with_body("Hi {{2}}, your order is ready for pickup today.", &["a"]),
        rules::POSITIONAL_PARAMETERS_NOT_SEQUENTIAL,
    );
    assert!(
        finding.message.contains("{{1}} missing"),
        "{}",
        finding.message
    );
}

#[test]
fn metas_own_not_sequential_example_is_reported() {
    // "Template review": "For example, {{1}}, {{2}}, {{5}}, {{4}}."
    let body = "Hi {{1}}, order {{2}} ships on {{5}} from {{4}} by road and arrives soon.";
    let finding = only(
        &with_body(body, &["a", "b", "c", "d"]),
        rules::POSITIONAL_PARAMETERS_NOT_SEQUENTIAL,
    );
    assert!(
        finding.message.contains("{{3}} missing"),
        "{}",
        finding.message
    );
}

#[test]
fn positional_parameters_first_used_out_of_order_are_reported() {
    let finding = only(
        &with_body(
            "Hi {{2}}, your order {{1}} is ready for pickup today.",
            &["a", "b"],
        ),
        rules::POSITIONAL_PARAMETERS_OUT_OF_ORDER,
    );
    assert_eq!(finding.position, Some(22));
    // Reusing a number later is not reordering.
    assert_eq!(
        lint(&with_body(
            "Hi {{1}}, your order {{2}} is ready, {{1}}, come and pick it up today.",
            &["a", "b"]
        )),
        vec![]
    );
}

#[test]
fn a_named_parameter_used_twice_is_reported_at_the_second_use() {
    let template = TemplateDefinition {
        body: "Hello, {{user}}! I am {{agent}} from {{company}}. Nice to meet you, {{user}}, \
               see you soon."
            .into(),
        ..keep_helping()
    };
    let finding = only(&template, rules::NAMED_PARAMETER_REPEATED);
    assert_eq!(finding.position, Some(69));
}

// Footer.

#[test]
fn a_footer_over_60_characters_is_reported() {
    let template = TemplateDefinition {
        footer: Some("f".repeat(61)),
        ..keep_helping()
    };
    let finding = only(&template, rules::FOOTER_TOO_LONG);
    assert!(
        finding.message.contains("61 characters"),
        "{}",
        finding.message
    );
}

#[test]
fn a_footer_with_a_parameter_is_reported() {
    let template = TemplateDefinition {
        footer: Some("Sent by {{company}}".into()),
        ..keep_helping()
    };
    assert_eq!(
        only(&template, rules::FOOTER_HAS_PARAMETER).position,
        Some(9)
    );
}

// Buttons.

#[test]
fn eleven_buttons_are_too_many() {
    let mut template = keep_helping();
    template.buttons = (0..11)
        .map(|i| Button::new(ButtonKind::QuickReply, format!("Option {i}")))
        .collect();
    let rules = rules_of(&template);
    assert_eq!(
        rules,
        vec![rules::TOO_MANY_BUTTONS, rules::TOO_MANY_BUTTONS_OF_TYPE]
    );
}

#[test]
fn metas_per_type_button_limits_are_enforced() {
    let url = || Button {
        url: Some("https://example.com/a".into()),
        ..Button::new(ButtonKind::Url, "Open")
    };
    let phone = || Button {
        phone_number: Some("15550051310".into()),
        ..Button::new(ButtonKind::PhoneNumber, "Call")
    };
    let copy = || Button {
        example: vec!["250FF".into()],
        ..Button::new(ButtonKind::CopyCode, "")
    };
    for (buttons, kind) in [
        (vec![url(), url(), url()], "3 URL buttons"),
        (vec![phone(), phone()], "2 phone number buttons"),
        (vec![copy(), copy()], "2 copy code buttons"),
    ] {
        let mut template = keep_helping();
        template.buttons = buttons;
        let finding = only(&template, rules::TOO_MANY_BUTTONS_OF_TYPE);
        assert!(finding.message.contains(kind), "{}", finding.message);
    }
    let mut template = keep_helping();
    template.buttons = vec![url(), url(), phone(), copy()];
    assert_eq!(lint(&template), vec![]);
}

#[test]
fn quick_replies_split_by_another_button_are_not_grouped() {
    let url = Button {
        url: Some("https://example.com/a".into()),
        ..Button::new(ButtonKind::Url, "Open")
    };
    let quick = |label: &str| Button::new(ButtonKind::QuickReply, label);
    let mut template = keep_helping();
    template.buttons = vec![quick("Yes"), url.clone(), quick("No")];
    let finding = only(&template, rules::QUICK_REPLIES_NOT_GROUPED);
    assert_eq!(finding.component, "BUTTONS[2]");
    template.buttons = vec![url.clone(), quick("Yes"), url.clone()];
    only(&template, rules::QUICK_REPLIES_NOT_GROUPED);
    // Meta's valid groupings.
    template.buttons = vec![quick("Yes"), quick("No"), url.clone()];
    assert_eq!(lint(&template), vec![]);
    template.buttons = vec![url, quick("Yes"), quick("No")];
    assert_eq!(lint(&template), vec![]);
}

#[test]
fn a_quick_reply_without_a_label_is_reported() {
    let mut template = keep_helping();
    template.buttons[1].text = String::new();
    assert_eq!(
        only(&template, rules::BUTTON_LABEL_MISSING).component,
        "BUTTONS[1]"
    );
}

#[test]
fn a_button_label_over_25_characters_is_reported() {
    let mut template = keep_helping();
    template.buttons[0].text = "Yes, please, tell me more about it".into();
    let finding = only(&template, rules::BUTTON_LABEL_TOO_LONG);
    assert_eq!(finding.component, "BUTTONS[0]");
    assert!(
        finding.message.contains("34 characters"),
        "{}",
        finding.message
    );
}

#[test]
fn a_url_button_without_a_url_is_reported() {
    let mut template = seasonal_promotion();
    template.buttons[0].url = None;
    only(&template, rules::BUTTON_URL_MISSING);
}

#[test]
fn a_url_over_2000_characters_is_reported() {
    let mut template = seasonal_promotion();
    template.buttons[0].url = Some(format!("https://example.com/{}{{{{1}}}}", "a".repeat(2000)));
    only(&template, rules::BUTTON_URL_TOO_LONG);
}

#[test]
fn a_url_parameter_must_be_at_the_end_of_the_url() {
    let mut template = seasonal_promotion();
    template.buttons[0].url = Some("https://example.com/{{1}}/details".into());
    let finding = only(&template, rules::BUTTON_URL_PARAMETER_NOT_AT_END);
    assert_eq!(finding.position, Some(21));
}

#[test]
fn a_url_with_two_parameters_is_reported() {
    let mut template = seasonal_promotion();
    template.buttons[0].url = Some("https://example.com/{{1}}?q={{2}}".into());
    let rules = rules_of(&template);
    assert!(
        rules.contains(&rules::BUTTON_URL_TOO_MANY_PARAMETERS),
        "{rules:?}"
    );
}

#[test]
fn a_url_parameter_without_an_example_is_reported() {
    let mut template = seasonal_promotion();
    template.buttons[0].example.clear();
    assert_eq!(
        only(&template, rules::BUTTON_EXAMPLE_MISSING).component,
        "BUTTONS[0]"
    );
}

#[test]
fn a_copy_code_button_needs_an_example_of_at_most_20_characters() {
    let mut template = keep_helping();
    template.buttons = vec![Button::new(ButtonKind::CopyCode, "")];
    only(&template, rules::BUTTON_EXAMPLE_MISSING);
    template.buttons[0].example = vec!["A".repeat(21)];
    only(&template, rules::COPY_CODE_EXAMPLE_TOO_LONG);
}

#[test]
fn a_phone_number_button_needs_a_number_of_at_most_20_characters() {
    let mut template = seasonal_promotion();
    template.buttons[1].phone_number = None;
    only(&template, rules::BUTTON_PHONE_NUMBER_MISSING);
    template.buttons[1].phone_number = Some("1".repeat(21));
    only(&template, rules::BUTTON_PHONE_NUMBER_TOO_LONG);
}

#[test]
fn a_finding_reads_as_a_sentence_with_its_place_and_rule() {
    let finding = Finding::new(rules::BODY_TOO_LONG, "BODY", Some(1025), "too long");
    assert_eq!(
        finding.to_string(),
        "BODY at character 1025: too long [body-too-long]"
    );
}

#[test]
fn metas_preset_authentication_text_is_not_held_to_the_body_writing_rules() {
    let template = TemplateDefinition {
        category: Some(TemplateCategory::Authentication),
        parameter_format: ParameterFormat::Positional,
        body: "*{{1}}* is your verification code.".into(),
        body_examples: ParameterExamples::default(),
        buttons: vec![Button {
            url: Some("https://www.whatsapp.com/otp/code/?otp_type=COPY_CODE&code=otp{{1}}".into()),
            ..Button::new(ButtonKind::Url, "Copy code")
        }],
        ..keep_helping()
    };
    assert_eq!(lint(&template), vec![]);
    // The same text in a utility template is a dangling parameter with no example.
    let utility = TemplateDefinition {
        category: Some(TemplateCategory::Utility),
        ..template
    };
    assert_eq!(
        rules_of(&utility),
        vec![
            rules::BODY_STARTS_WITH_PARAMETER,
            rules::BODY_EXAMPLE_MISSING,
            rules::BUTTON_EXAMPLE_MISSING
        ]
    );
}
