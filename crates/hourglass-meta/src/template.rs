//! Meta's template JSON at the edge: the creation request (`POST /{WABA_ID}/message_templates`)
//! and an item of the list answer (`GET /{WABA_ID}/message_templates`, `data[]`) read into
//! `hourglass_core::template` types; a send's `template.components` read into, and built
//! from, the core's `RenderParams`; and Meta's error code for each `RenderError`.
//!
//! Follows Meta's "Template fundamentals" and "Template components" pages, the "Message
//! Templates API" reference (the list answer's `id`, `status`, `quality_score`,
//! `rejected_reason`), the Cloud API "Messages" reference (the template object, the
//! parameter and button parameter objects) and the "Error codes" page. The rules themselves
//! live in the core; this module only converts, and reports what it could not convert as
//! findings rather than failing, so that one odd component does not hide the rest.

mod params;

pub use params::{
    components_from_render_params, render_params_from_components, render_params_from_plain,
    ComponentsError,
};

use crate::send::{
    INVALID_PARAMETER, PARAM_COUNT_MISMATCH, PARAM_FORMAT_MISMATCH, REQUIRED_PARAMETER_MISSING,
    TEMPLATE_PARAM_TEXT_INVALID, TEMPLATE_TEXT_TOO_LONG,
};
use hourglass_core::template::{
    lint, rules, Button, ButtonKind, ButtonProblem, Finding, Header, HeaderKind, ParameterExamples,
    ParameterFormat, ParameterProblem, RenderError, TemplateCategory, TemplateDefinition,
};
use serde_json::{Map, Value};

/// Why a JSON value is not a template at all.
///
/// Everything short of these (an unknown component, a missing example, an odd category)
/// still gives a definition, with findings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateJsonError {
    /// The value is not a JSON object.
    #[error(
        "a template must be a JSON object with `name`, `language`, `category` and \
         `components`, as in Meta's message_templates API"
    )]
    NotObject,
    /// There is no `name` string.
    #[error(
        "the template has no `name`: give its name, lowercase letters, digits and underscores, \
         e.g. \"order_update\""
    )]
    MissingName,
    /// There is no `BODY` component with a `text` string.
    #[error(
        "the template has no BODY component with `text`: every template needs body text \
         (authentication templates, whose body is Meta's preset text, are not linted by \
         Hourglass)"
    )]
    MissingBody,
}

/// Reads a template from Meta's JSON: a creation request body or one `data[]` item of the
/// list answer. Names and types are read in either case (`BODY` or `body`, `NAMED` or
/// `named`), as Meta accepts lower case on creation and answers in upper case.
///
/// The findings are what could not be read into the definition (rule ids from
/// `hourglass_core::template::rules`); [`lint_template_json`] adds the core's lint.
pub fn parse_template_definition(
    value: &Value,
) -> Result<(TemplateDefinition, Vec<Finding>), TemplateJsonError> {
    let object = value.as_object().ok_or(TemplateJsonError::NotObject)?;
    let name = text(object, "name").ok_or(TemplateJsonError::MissingName)?;
    let mut findings = Vec::new();
    // The creation request's `language` is a code string ("Template fundamentals",
    // "Languages"); a send's is `{"code": …}`, which is accepted too.
    let language = text(object, "language")
        .or_else(|| {
            object
                .get("language")
                .and_then(|l| l.get("code"))
                .and_then(as_text)
        })
        .unwrap_or_default();
    let category = match text(object, "category") {
        None => None,
        Some(raw) => {
            let parsed = TemplateCategory::parse(&raw);
            if parsed.is_none() {
                // "Each template must be categorized as authentication, marketing, or
                // utility" ("Template fundamentals"); the pre-2022 categories still appear on
                // old templates but can no longer be chosen.
                findings.push(Finding::new(
                    rules::CATEGORY_UNKNOWN,
                    "category",
                    None,
                    format!(
                        "{raw:?} is not a category Meta accepts: choose MARKETING, UTILITY or \
                         AUTHENTICATION"
                    ),
                ));
            }
            parsed
        }
    };
    let parameter_format = match text(object, "parameter_format") {
        None => ParameterFormat::default(),
        Some(raw) => ParameterFormat::parse(&raw).unwrap_or_else(|| {
            findings.push(Finding::new(
                rules::PARAMETER_FORMAT_UNKNOWN,
                "parameter_format",
                None,
                format!(
                    "{raw:?} is not a parameter format: use NAMED or POSITIONAL (Meta's \
                     default)"
                ),
            ));
            ParameterFormat::default()
        }),
    };

    let mut header: Option<Header> = None;
    let mut seen_header = false;
    let mut body: Option<(String, ParameterExamples)> = None;
    let mut seen_body = false;
    let mut footer: Option<String> = None;
    let mut seen_footer = false;
    let mut buttons: Vec<Button> = Vec::new();
    let mut seen_buttons = false;
    let components = object
        .get("components")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    for (index, component) in components.iter().enumerate() {
        let place = format!("components[{index}]");
        let Some(component) = component.as_object() else {
            findings.push(Finding::new(
                rules::COMPONENT_UNSUPPORTED,
                place,
                None,
                "a component must be an object with a `type`",
            ));
            continue;
        };
        let kind = text(component, "type")
            .unwrap_or_default()
            .to_ascii_uppercase();
        let seen = match kind.as_str() {
            "HEADER" => &mut seen_header,
            "BODY" => &mut seen_body,
            "FOOTER" => &mut seen_footer,
            "BUTTONS" => &mut seen_buttons,
            _ => {
                // "Template components": header, body, footer and buttons are the primary
                // components; carousels, limited-time offers and the like have their own
                // guides and are not linted here.
                findings.push(Finding::new(
                    rules::COMPONENT_UNSUPPORTED,
                    place,
                    None,
                    format!(
                        "Hourglass does not lint {} components; only HEADER, BODY, FOOTER and \
                         BUTTONS are checked",
                        if kind.is_empty() { "untyped" } else { &kind }
                    ),
                ));
                continue;
            }
        };
        if std::mem::replace(seen, true) {
            // "Templates are limited to one body component" (and one header, one footer; the
            // buttons are "packed into a single buttons array").
            findings.push(Finding::new(
                rules::COMPONENT_REPEATED,
                place,
                None,
                format!("a template has at most one {kind} component: merge them"),
            ));
            continue;
        }
        match kind.as_str() {
            "HEADER" => header = read_header(component, &mut findings),
            "BODY" => {
                body = text(component, "text").map(|text| {
                    let examples = component
                        .get("example")
                        .map(|example| {
                            read_examples(example, "body_text", "body_text_named_params")
                        })
                        .unwrap_or_default();
                    (text, examples)
                })
            }
            "FOOTER" => footer = text(component, "text"),
            _ => buttons = read_buttons(component),
        }
    }
    let (body, body_examples) = body.ok_or(TemplateJsonError::MissingBody)?;
    let definition = TemplateDefinition {
        name,
        language,
        category,
        parameter_format,
        header,
        body,
        body_examples,
        footer,
        buttons,
    };
    Ok((definition, findings))
}

/// "Template components": a header's `format` is `TEXT`, `IMAGE`, `VIDEO`, `GIF`,
/// `DOCUMENT` or `LOCATION`; a text header has `text` and, with a parameter,
/// `example.header_text` or `example.header_text_named_params`; a media header has
/// `example.header_handle`.
fn read_header(component: &Map<String, Value>, findings: &mut Vec<Finding>) -> Option<Header> {
    let text_value = text(component, "text");
    let kind = match text(component, "format") {
        Some(format) => match HeaderKind::parse(&format) {
            Some(kind) => kind,
            None => {
                findings.push(Finding::new(
                    rules::HEADER_UNKNOWN_FORMAT,
                    "HEADER",
                    None,
                    format!(
                        "{format:?} is not a header format: use TEXT, IMAGE, VIDEO, DOCUMENT or \
                         LOCATION"
                    ),
                ));
                return None;
            }
        },
        // A header with text and no format can only be a text header.
        None if text_value.is_some() => HeaderKind::Text,
        None => {
            findings.push(Finding::new(
                rules::HEADER_UNKNOWN_FORMAT,
                "HEADER",
                None,
                "the header has no format: set format to TEXT, IMAGE, VIDEO, DOCUMENT or \
                 LOCATION",
            ));
            return None;
        }
    };
    let example = match component.get("example") {
        None => ParameterExamples::default(),
        Some(example) if kind.is_media() => {
            ParameterExamples::Positional(strings(example.get("header_handle")))
        }
        Some(example) => read_examples(example, "header_text", "header_text_named_params"),
    };
    Some(Header {
        kind,
        text: if kind == HeaderKind::Text {
            text_value
        } else {
            None
        },
        example,
    })
}

/// Reads `example.<positional_key>` or `example.<named_key>`.
///
/// Meta's reference and samples nest `body_text` (`[["Pablo", "860198-230332"]]`) while the
/// components page's syntax block and `header_text` use one level; both are read. Named
/// examples are `[{"param_name": …, "example": …}]`.
fn read_examples(example: &Value, positional_key: &str, named_key: &str) -> ParameterExamples {
    if let Some(pairs) = example.get(named_key).and_then(Value::as_array) {
        return ParameterExamples::Named(
            pairs
                .iter()
                .filter_map(|pair| {
                    let name = pair.get("param_name").and_then(as_text)?;
                    let value = pair.get("example").and_then(as_text).unwrap_or_default();
                    Some((name, value))
                })
                .collect(),
        );
    }
    let values = match example.get(positional_key) {
        Some(Value::Array(rows)) if rows.first().is_some_and(Value::is_array) => {
            strings(rows.first())
        }
        other => strings(other),
    };
    ParameterExamples::Positional(values)
}

/// "Template components", "Buttons": each has a `type`, a label `text`, and per type a
/// `url`, a `phone_number` and an `example` (an array for URL buttons, a bare string for
/// copy code buttons).
fn read_buttons(component: &Map<String, Value>) -> Vec<Button> {
    let Some(buttons) = component.get("buttons").and_then(Value::as_array) else {
        return Vec::new();
    };
    buttons
        .iter()
        .map(|button| {
            let object = button.as_object().cloned().unwrap_or_default();
            let kind = ButtonKind::parse(&text(&object, "type").unwrap_or_default());
            Button {
                kind,
                text: text(&object, "text").unwrap_or_default(),
                url: text(&object, "url"),
                phone_number: text(&object, "phone_number"),
                example: match object.get("example") {
                    Some(Value::String(single)) => vec![single.clone()],
                    other => strings(other),
                },
            }
        })
        .collect()
}

/// Reads a template and lints it: the reader's findings followed by the core's. A value that
/// is not a template at all gives the single finding `invalid-template-json`.
pub fn lint_template_json(value: &Value) -> Vec<Finding> {
    match parse_template_definition(value) {
        Ok((definition, mut findings)) => {
            let category_unknown = findings.iter().any(|f| f.rule == rules::CATEGORY_UNKNOWN);
            // An unknown category is read as no category; saying so twice would not help.
            findings.extend(
                lint(&definition)
                    .into_iter()
                    .filter(|f| !(category_unknown && f.rule == rules::CATEGORY_MISSING)),
            );
            findings
        }
        Err(error) => vec![Finding::new(
            rules::INVALID_TEMPLATE_JSON,
            "template",
            None,
            error.to_string(),
        )],
    }
}

/// What Meta says about a template in its list answer, beside the definition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetaTemplateInfo {
    /// Meta's template id (a numeric string; Meta's webhooks send it as a number).
    pub id: Option<String>,
    /// `APPROVED`, `PENDING`, `REJECTED`, `PAUSED`, `DISABLED`, … as Meta writes it.
    pub status: Option<String>,
    /// The category Meta assigned, which may differ from the one requested.
    pub category: Option<String>,
    /// `quality_score.score`: `GREEN`, `YELLOW`, `RED` or `UNKNOWN`.
    pub quality: Option<String>,
    /// Why Meta rejected it (`INVALID_FORMAT`, `PROMOTIONAL`, …; `NONE` otherwise).
    pub rejected_reason: Option<String>,
}

/// Reads Meta's fields about a template from a list answer item.
///
/// Follows the "Message Templates API" reference (`id`, `status`, `category`,
/// `quality_score`, `rejected_reason`). Missing or oddly typed fields are `None`.
pub fn template_info(value: &Value) -> MetaTemplateInfo {
    let field = |key: &str| value.get(key).and_then(as_text);
    MetaTemplateInfo {
        id: field("id"),
        status: field("status"),
        category: field("category"),
        quality: value.get("quality_score").and_then(|score| {
            score
                .get("score")
                .and_then(as_text)
                .or_else(|| as_text(score))
        }),
        rejected_reason: field("rejected_reason"),
    }
}

/// Meta's error code and title for a send the core refused to render, as Meta would refuse
/// it ("Error codes"; the titles are the synchronous messages' "(#CODE) Title").
///
/// - A wrong number of values or wrong names, including a value for a URL button whose URL
///   has no parameter and two values for one button: 132000, "Number of parameters does not
///   match the expected number of params".
/// - Values of the wrong format, a header of the wrong kind or none for a media header, a
///   button value for a button that does not exist or is of another type: 132012, "Parameter format does not match format in
///   the created template" (Meta: "The variable parameter values included in the request are
///   not using the format specified in the template").
/// - Too long once filled in: 132005, "Translated text too long".
/// - A new line, a tab or five spaces in a value: 132018 (see
///   [`TEMPLATE_PARAM_TEXT_INVALID`]).
/// - An empty value: 100, "Invalid parameter", Meta's code for parameter values it cannot
///   use (it answers a missing `text` with 100 and "Parameter 'text' is mandatory").
/// - No suffix for a URL button with a parameter, or no code for a copy code button: 131008,
///   "Required parameter is missing".
pub fn render_error_code(error: &RenderError) -> (i64, &'static str) {
    match error {
        RenderError::ParameterCount { .. } | RenderError::ParameterNames { .. } => {
            PARAM_COUNT_MISMATCH
        }
        RenderError::ParameterFormat { .. } | RenderError::HeaderFormat { .. } => {
            PARAM_FORMAT_MISMATCH
        }
        RenderError::TooLong { .. } => TEMPLATE_TEXT_TOO_LONG,
        RenderError::ParameterText { problem, .. } => match problem {
            ParameterProblem::Empty => INVALID_PARAMETER,
            ParameterProblem::NewlineOrTab | ParameterProblem::TooManySpaces => {
                TEMPLATE_PARAM_TEXT_INVALID
            }
        },
        RenderError::ButtonParameter { problem, .. } => match problem {
            ButtonProblem::Missing { .. } => REQUIRED_PARAMETER_MISSING,
            ButtonProblem::Empty => INVALID_PARAMETER,
            ButtonProblem::NotDynamic | ButtonProblem::Repeated => PARAM_COUNT_MISMATCH,
            ButtonProblem::NoSuchButton { .. } | ButtonProblem::WrongType { .. } => {
                PARAM_FORMAT_MISMATCH
            }
        },
    }
}

/// The string at `key`, when it is one.
fn text(object: &Map<String, Value>, key: &str) -> Option<String> {
    object.get(key).and_then(as_text)
}

/// A string, or a number written as one (Meta sends ids both ways).
fn as_text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    }
}

/// The strings (and numbers) of an array; anything else gives none.
fn strings(value: Option<&Value>) -> Vec<String> {
    value
        .and_then(Value::as_array)
        .map(|items| items.iter().filter_map(as_text).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_creation_request_in_lower_case_is_read() {
        let (definition, findings) = parse_template_definition(&json!({
            "name": "order_confirmation",
            "language": "en_US",
            "category": "utility",
            "parameter_format": "named",
            "components": [{
                "type": "body",
                "text": "Thank you, {{first_name}}! Your order number is {{order_number}}. Bye.",
                "example": {"body_text_named_params": [
                    {"param_name": "first_name", "example": "Pablo"},
                    {"param_name": "order_number", "example": "860198-230332"}
                ]}
            }]
        }))
        .unwrap();
        assert_eq!(findings, vec![]);
        assert_eq!(definition.category, Some(TemplateCategory::Utility));
        assert_eq!(definition.parameter_format, ParameterFormat::Named);
        assert_eq!(
            definition.body_examples,
            ParameterExamples::Named(vec![
                ("first_name".into(), "Pablo".into()),
                ("order_number".into(), "860198-230332".into()),
            ])
        );
        assert_eq!(lint(&definition), vec![]);
    }

    #[test]
    fn flat_and_nested_positional_examples_are_both_read() {
        for example in [
            json!({"body_text": [["a", "b"]]}),
            json!({"body_text": ["a", "b"]}),
        ] {
            assert_eq!(
                read_examples(&example, "body_text", "body_text_named_params"),
                ParameterExamples::Positional(vec!["a".into(), "b".into()])
            );
        }
    }

    #[test]
    fn a_value_that_is_not_a_template_is_an_error_with_a_reason() {
        assert_eq!(
            parse_template_definition(&json!([1])).unwrap_err(),
            TemplateJsonError::NotObject
        );
        assert_eq!(
            parse_template_definition(&json!({"components": []})).unwrap_err(),
            TemplateJsonError::MissingName
        );
        assert_eq!(
            parse_template_definition(&json!({"name": "x", "components": [{"type": "HEADER"}]}))
                .unwrap_err(),
            TemplateJsonError::MissingBody
        );
        let findings = lint_template_json(&json!("nope"));
        assert_eq!(findings.len(), 1);
        assert_eq!(findings[0].rule, rules::INVALID_TEMPLATE_JSON);
    }

    #[test]
    fn unknown_components_formats_and_categories_become_findings() {
        let findings = lint_template_json(&json!({
            "name": "promo",
            "language": "en_US",
            "category": "TRANSACTIONAL",
            "parameter_format": "numbered",
            "components": [
                {"type": "HEADER", "format": "HOLOGRAM"},
                {"type": "BODY", "text": "Our sale starts today, see you at the shop soon."},
                {"type": "BODY", "text": "Again."},
                {"type": "CAROUSEL", "cards": []},
                "junk"
            ]
        }));
        let rules: Vec<&str> = findings.iter().map(|f| f.rule).collect();
        assert_eq!(
            rules,
            vec![
                rules::CATEGORY_UNKNOWN,
                rules::PARAMETER_FORMAT_UNKNOWN,
                rules::HEADER_UNKNOWN_FORMAT,
                rules::COMPONENT_REPEATED,
                rules::COMPONENT_UNSUPPORTED,
                rules::COMPONENT_UNSUPPORTED,
            ]
        );
        assert_eq!(findings[3].component, "components[2]");
    }

    #[test]
    fn a_copy_code_example_may_be_a_bare_string() {
        let (definition, _) = parse_template_definition(&json!({
            "name": "coupon",
            "components": [
                {"type": "BODY", "text": "Use the code below at checkout today."},
                {"type": "BUTTONS", "buttons": [{"type": "COPY_CODE", "example": "250FF"}]}
            ]
        }))
        .unwrap();
        assert_eq!(definition.buttons[0].kind, ButtonKind::CopyCode);
        assert_eq!(definition.buttons[0].example, vec!["250FF".to_owned()]);
    }

    #[test]
    fn template_info_reads_ids_as_strings_and_the_quality_score() {
        let info = template_info(&json!({
            "id": 920070352646140_i64,
            "status": "REJECTED",
            "category": "MARKETING",
            "quality_score": {"score": "GREEN", "date": 1},
            "rejected_reason": "INVALID_FORMAT"
        }));
        assert_eq!(
            info,
            MetaTemplateInfo {
                id: Some("920070352646140".into()),
                status: Some("REJECTED".into()),
                category: Some("MARKETING".into()),
                quality: Some("GREEN".into()),
                rejected_reason: Some("INVALID_FORMAT".into()),
            }
        );
        assert_eq!(template_info(&json!({})), MetaTemplateInfo::default());
    }
}
