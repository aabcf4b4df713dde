//! The linter: Meta's published template rules, each with a stable id, checked before a
//! template is submitted so that it is fixed here rather than rejected in Meta's review.
//!
//! Sources, named again above each rule: "Template fundamentals" (names, parameter
//! formats), "Template components" (limits, examples, buttons), and "Template review"
//! ("Common rejection reasons": braces, sequence, special characters, too many parameters
//! for the length, dangling parameters).

use super::limits::*;
use super::placeholder::{scan, PlaceholderKind, Scan, Token};
use super::{
    ButtonKind, HeaderKind, ParameterExamples, ParameterFormat, TemplateCategory,
    TemplateDefinition,
};
use std::fmt;

/// The stable ids of the lint rules. Callers may match on them; they never change meaning.
pub mod rules {
    /// The template has no name.
    pub const NAME_EMPTY: &str = "name-empty";
    /// The name is longer than 512 characters.
    pub const NAME_TOO_LONG: &str = "name-too-long";
    /// The name has a character other than a lowercase letter, a digit or an underscore.
    pub const NAME_INVALID_CHARACTERS: &str = "name-invalid-characters";
    /// The template has no language code.
    pub const LANGUAGE_MISSING: &str = "language-missing";
    /// The template has no category.
    pub const CATEGORY_MISSING: &str = "category-missing";
    /// The category is not one Meta accepts (reported by the JSON reader).
    pub const CATEGORY_UNKNOWN: &str = "category-unknown";
    /// `parameter_format` is neither `named` nor `positional` (reported by the JSON
    /// reader).
    pub const PARAMETER_FORMAT_UNKNOWN: &str = "parameter-format-unknown";
    /// The header's `format` is not one Meta defines (reported by the JSON reader).
    pub const HEADER_UNKNOWN_FORMAT: &str = "header-unknown-format";
    /// A `TEXT` header has no text.
    pub const HEADER_TEXT_MISSING: &str = "header-text-missing";
    /// A text header is longer than 60 characters.
    pub const HEADER_TOO_LONG: &str = "header-too-long";
    /// A text header has more than one parameter.
    pub const HEADER_TOO_MANY_PARAMETERS: &str = "header-too-many-parameters";
    /// A header parameter or media header has no example.
    pub const HEADER_EXAMPLE_MISSING: &str = "header-example-missing";
    /// A header's example does not match its parameter.
    pub const HEADER_EXAMPLE_MISMATCH: &str = "header-example-mismatch";
    /// A location header on a template that is neither utility nor marketing.
    pub const LOCATION_HEADER_CATEGORY: &str = "location-header-category";
    /// The body is empty.
    pub const BODY_EMPTY: &str = "body-empty";
    /// The body is longer than 1,024 characters.
    pub const BODY_TOO_LONG: &str = "body-too-long";
    /// The body starts with a parameter.
    pub const BODY_STARTS_WITH_PARAMETER: &str = "body-starts-with-parameter";
    /// The body ends with a parameter.
    pub const BODY_ENDS_WITH_PARAMETER: &str = "body-ends-with-parameter";
    /// The body has too many parameters for its length.
    pub const TOO_MANY_PARAMETERS_FOR_LENGTH: &str = "too-many-parameters-for-length";
    /// Two parameters with nothing but whitespace between them.
    pub const ADJACENT_PARAMETERS: &str = "adjacent-parameters";
    /// The body has parameters and no examples.
    pub const BODY_EXAMPLE_MISSING: &str = "body-example-missing";
    /// The body's examples do not match its parameters.
    pub const BODY_EXAMPLE_MISMATCH: &str = "body-example-mismatch";
    /// The footer is longer than 60 characters.
    pub const FOOTER_TOO_LONG: &str = "footer-too-long";
    /// The footer has a parameter.
    pub const FOOTER_HAS_PARAMETER: &str = "footer-has-parameter";
    /// Curly brackets that do not make a `{{…}}` parameter.
    pub const MISMATCHED_BRACES: &str = "mismatched-braces";
    /// A `{{…}}` whose content is neither a number nor a lowercase name.
    pub const PARAMETER_INVALID: &str = "parameter-invalid";
    /// Named and positional parameters in the same text.
    pub const PARAMETER_FORMAT_MIXED: &str = "parameter-format-mixed";
    /// Parameters written in the other format than the template's `parameter_format`.
    pub const PARAMETER_FORMAT_MISMATCH: &str = "parameter-format-mismatch";
    /// Positional parameters that do not run 1, 2, 3… without a gap.
    pub const POSITIONAL_PARAMETERS_NOT_SEQUENTIAL: &str = "positional-parameters-not-sequential";
    /// Positional parameters that first appear out of order (`{{2}}` before `{{1}}`).
    pub const POSITIONAL_PARAMETERS_OUT_OF_ORDER: &str = "positional-parameters-out-of-order";
    /// A named parameter used twice in one text.
    pub const NAMED_PARAMETER_REPEATED: &str = "named-parameter-repeated";
    /// More than 10 buttons.
    pub const TOO_MANY_BUTTONS: &str = "too-many-buttons";
    /// More buttons of one type than Meta allows.
    pub const TOO_MANY_BUTTONS_OF_TYPE: &str = "too-many-buttons-of-type";
    /// Quick replies interleaved with other buttons.
    pub const QUICK_REPLIES_NOT_GROUPED: &str = "quick-replies-not-grouped";
    /// A button that needs a label has none.
    pub const BUTTON_LABEL_MISSING: &str = "button-label-missing";
    /// A button label longer than 25 characters.
    pub const BUTTON_LABEL_TOO_LONG: &str = "button-label-too-long";
    /// A URL button without a URL.
    pub const BUTTON_URL_MISSING: &str = "button-url-missing";
    /// A URL longer than 2,000 characters.
    pub const BUTTON_URL_TOO_LONG: &str = "button-url-too-long";
    /// A URL whose parameter is not at its very end.
    pub const BUTTON_URL_PARAMETER_NOT_AT_END: &str = "button-url-parameter-not-at-end";
    /// A URL with more than one parameter.
    pub const BUTTON_URL_TOO_MANY_PARAMETERS: &str = "button-url-too-many-parameters";
    /// A phone number button without a number.
    pub const BUTTON_PHONE_NUMBER_MISSING: &str = "button-phone-number-missing";
    /// A phone number longer than 20 characters.
    pub const BUTTON_PHONE_NUMBER_TOO_LONG: &str = "button-phone-number-too-long";
    /// A URL button with a parameter, or a copy code button, without an example.
    pub const BUTTON_EXAMPLE_MISSING: &str = "button-example-missing";
    /// A copy code example longer than 20 characters.
    pub const COPY_CODE_EXAMPLE_TOO_LONG: &str = "copy-code-example-too-long";
    /// A component Hourglass does not lint (carousel, limited-time offer, …; reported by the
    /// JSON reader).
    pub const COMPONENT_UNSUPPORTED: &str = "component-unsupported";
    /// The same component twice (reported by the JSON reader).
    pub const COMPONENT_REPEATED: &str = "component-repeated";
    /// The JSON is not a template Hourglass can read (reported by the JSON reader).
    pub const INVALID_TEMPLATE_JSON: &str = "invalid-template-json";

    /// Every rule id, for documentation and tests.
    pub const ALL: &[&str] = &[
        NAME_EMPTY,
        NAME_TOO_LONG,
        NAME_INVALID_CHARACTERS,
        LANGUAGE_MISSING,
        CATEGORY_MISSING,
        CATEGORY_UNKNOWN,
        PARAMETER_FORMAT_UNKNOWN,
        HEADER_UNKNOWN_FORMAT,
        HEADER_TEXT_MISSING,
        HEADER_TOO_LONG,
        HEADER_TOO_MANY_PARAMETERS,
        HEADER_EXAMPLE_MISSING,
        HEADER_EXAMPLE_MISMATCH,
        LOCATION_HEADER_CATEGORY,
        BODY_EMPTY,
        BODY_TOO_LONG,
        BODY_STARTS_WITH_PARAMETER,
        BODY_ENDS_WITH_PARAMETER,
        TOO_MANY_PARAMETERS_FOR_LENGTH,
        ADJACENT_PARAMETERS,
        BODY_EXAMPLE_MISSING,
        BODY_EXAMPLE_MISMATCH,
        FOOTER_TOO_LONG,
        FOOTER_HAS_PARAMETER,
        MISMATCHED_BRACES,
        PARAMETER_INVALID,
        PARAMETER_FORMAT_MIXED,
        PARAMETER_FORMAT_MISMATCH,
        POSITIONAL_PARAMETERS_NOT_SEQUENTIAL,
        POSITIONAL_PARAMETERS_OUT_OF_ORDER,
        NAMED_PARAMETER_REPEATED,
        TOO_MANY_BUTTONS,
        TOO_MANY_BUTTONS_OF_TYPE,
        QUICK_REPLIES_NOT_GROUPED,
        BUTTON_LABEL_MISSING,
        BUTTON_LABEL_TOO_LONG,
        BUTTON_URL_MISSING,
        BUTTON_URL_TOO_LONG,
        BUTTON_URL_PARAMETER_NOT_AT_END,
        BUTTON_URL_TOO_MANY_PARAMETERS,
        BUTTON_PHONE_NUMBER_MISSING,
        BUTTON_PHONE_NUMBER_TOO_LONG,
        BUTTON_EXAMPLE_MISSING,
        COPY_CODE_EXAMPLE_TOO_LONG,
        COMPONENT_UNSUPPORTED,
        COMPONENT_REPEATED,
        INVALID_TEMPLATE_JSON,
    ];
}

use rules::*;

/// One broken rule, and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// The rule's stable kebab-case id, one of [`rules::ALL`].
    pub rule: &'static str,
    /// Where: `name`, `language`, `category`, `parameter_format`, `HEADER`, `BODY`,
    /// `FOOTER`, `BUTTONS` or `BUTTONS[i]` (0-based, as a send's `index`), or for the JSON
    /// reader `components[i]`.
    pub component: String,
    /// The 1-based character column in that component's text (a button's URL for URL
    /// rules), when the rule points at one place.
    pub position: Option<usize>,
    /// What is wrong and what to do, with the numbers.
    pub message: String,
}

impl Finding {
    pub fn new(
        rule: &'static str,
        component: impl Into<String>,
        position: Option<usize>,
        message: impl Into<String>,
    ) -> Self {
        Finding {
            rule,
            component: component.into(),
            position,
            message: message.into(),
        }
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.position {
            Some(position) => write!(f, "{} at character {}", self.component, position)?,
            None => write!(f, "{}", self.component)?,
        }
        write!(f, ": {} [{}]", self.message, self.rule)
    }
}

/// Checks a template against Meta's published rules. An empty answer means nothing Meta
/// publishes would reject it; Meta's reviewers also judge content, which no linter can.
pub fn lint(template: &TemplateDefinition) -> Vec<Finding> {
    let mut findings = Vec::new();
    lint_name(&template.name, &mut findings);
    if template.language.trim().is_empty() {
        // "You must assign a template language code upon template creation" ("Template
        // fundamentals", "Languages").
        findings.push(Finding::new(
            LANGUAGE_MISSING,
            "language",
            None,
            "the template has no language code: give the code of the language it is written \
             in, e.g. \"en_US\"",
        ));
    }
    if template.category.is_none() {
        // "Each template must be categorized as authentication, marketing, or utility"
        // ("Template fundamentals", "Categories").
        findings.push(Finding::new(
            CATEGORY_MISSING,
            "category",
            None,
            "the template has no category: choose MARKETING, UTILITY or AUTHENTICATION",
        ));
    }
    lint_header(template, &mut findings);
    lint_body(template, &mut findings);
    lint_footer(template, &mut findings);
    lint_buttons(template, &mut findings);
    findings
}

/// "Template fundamentals", "Names": "Template names are limited to a maximum of 512
/// characters, consisting of lowercase alphanumeric characters and underscores."
fn lint_name(name: &str, findings: &mut Vec<Finding>) {
    if name.is_empty() {
        findings.push(Finding::new(
            NAME_EMPTY,
            "name",
            None,
            "the template has no name: give one of lowercase letters, digits and underscores, \
             e.g. \"order_update\"",
        ));
        return;
    }
    let length = name.chars().count();
    if length > NAME_MAX_CHARS {
        findings.push(Finding::new(
            NAME_TOO_LONG,
            "name",
            Some(NAME_MAX_CHARS + 1),
            format!(
                "the name is {length} characters long; Meta allows at most {NAME_MAX_CHARS}: \
                 shorten it by {}",
                length - NAME_MAX_CHARS
            ),
        ));
    }
    if let Some((index, bad)) = name
        .chars()
        .enumerate()
        .find(|(_, c)| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_'))
    {
        findings.push(Finding::new(
            NAME_INVALID_CHARACTERS,
            "name",
            Some(index + 1),
            format!(
                "{bad:?} is not allowed in a template name: use only lowercase letters, digits \
                 and underscores, e.g. \"{}\"",
                suggested_name(name)
            ),
        ));
    }
}

/// `name` with upper case lowered and every other disallowed character made `_`.
fn suggested_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn lint_header(template: &TemplateDefinition, findings: &mut Vec<Finding>) {
    let Some(header) = &template.header else {
        return;
    };
    match header.kind {
        HeaderKind::Text => {
            let text = header.text.as_deref().unwrap_or_default();
            if text.trim().is_empty() {
                findings.push(Finding::new(
                    HEADER_TEXT_MISSING,
                    "HEADER",
                    None,
                    "the header's format is TEXT but it has no text: give its text (at most 60 \
                     characters) or remove the header",
                ));
                return;
            }
            // "Template components", "Text header": "Maximum 60 characters."
            let length = text.chars().count();
            if length > HEADER_TEXT_MAX_CHARS {
                findings.push(Finding::new(
                    HEADER_TOO_LONG,
                    "HEADER",
                    Some(HEADER_TEXT_MAX_CHARS + 1),
                    format!(
                        "the header is {length} characters long; Meta allows at most \
                         {HEADER_TEXT_MAX_CHARS}: shorten it by {}",
                        length - HEADER_TEXT_MAX_CHARS
                    ),
                ));
            }
            let scan = lint_parameters("HEADER", text, template.parameter_format, findings);
            // "Text headers support 1 parameter."
            if scan.placeholders.len() > HEADER_MAX_PARAMETERS {
                let second = &scan.placeholders[HEADER_MAX_PARAMETERS];
                findings.push(Finding::new(
                    HEADER_TOO_MANY_PARAMETERS,
                    "HEADER",
                    Some(second.start + 1),
                    format!(
                        "the header has {} parameters; a text header supports only \
                         {HEADER_MAX_PARAMETERS}: keep one and move the others to the body",
                        scan.placeholders.len()
                    ),
                ));
            }
            lint_examples(
                "HEADER",
                &scan,
                &header.example,
                HEADER_EXAMPLE_MISSING,
                HEADER_EXAMPLE_MISMATCH,
                "header_text",
                "header_text_named_params",
                findings,
            );
        }
        kind if kind.is_media() => {
            // "Template components", "Media header": the creation syntax carries
            // `example.header_handle`, an asset uploaded with the Resumable Upload API,
            // which "will be reviewed as part of template review" ("Template fundamentals",
            // "Media").
            if header.example.is_empty() {
                findings.push(Finding::new(
                    HEADER_EXAMPLE_MISSING,
                    "HEADER",
                    None,
                    format!(
                        "the {} header has no sample: upload one with the Resumable Upload API \
                         and give its handle in example.header_handle",
                        kind.as_str()
                    ),
                ));
            }
        }
        _ => {
            // "Template components", "Location header": "Location headers can only be used
            // in templates categorized as UTILITY or MARKETING."
            if let Some(category @ TemplateCategory::Authentication) = template.category {
                findings.push(Finding::new(
                    LOCATION_HEADER_CATEGORY,
                    "HEADER",
                    None,
                    format!(
                        "a location header can only be used in UTILITY or MARKETING templates, \
                         and this one is {}: remove the header or change the category",
                        category.as_str()
                    ),
                ));
            }
        }
    }
}

fn lint_body(template: &TemplateDefinition, findings: &mut Vec<Finding>) {
    let body = template.body.as_str();
    if body.trim().is_empty() {
        // "Template components": "The only required component is the body component."
        findings.push(Finding::new(
            BODY_EMPTY,
            "BODY",
            None,
            "the body is empty: every template needs body text",
        ));
        return;
    }
    // "Template components", "Body": "Maximum of 1024 characters."
    let length = body.chars().count();
    if length > BODY_MAX_CHARS {
        findings.push(Finding::new(
            BODY_TOO_LONG,
            "BODY",
            Some(BODY_MAX_CHARS + 1),
            format!(
                "the body is {length} characters long; Meta allows at most {BODY_MAX_CHARS}: \
                 shorten it by {}",
                length - BODY_MAX_CHARS
            ),
        ));
    }
    let scan = lint_parameters("BODY", body, template.parameter_format, findings);
    if template.category == Some(TemplateCategory::Authentication) {
        // Authentication templates are sent with Meta's preset text ("{{1}} is your
        // verification code.", "Authentication templates"): the author writes none of it, so
        // the review rules about how a body is written do not apply to them.
        return;
    }
    lint_dangling(body, &scan, findings);
    lint_adjacent(body, &scan, findings);
    lint_parameter_density(body, &scan, findings);
    lint_examples(
        "BODY",
        &scan,
        &template.body_examples,
        BODY_EXAMPLE_MISSING,
        BODY_EXAMPLE_MISMATCH,
        "body_text",
        "body_text_named_params",
        findings,
    );
}

/// "Template review", "Common rejection reasons": "The message template cannot start or end
/// with a parameter i.e. dangling parameters are not allowed."
///
/// Meta does not say whether punctuation or whitespace around the parameter saves it.
/// Integrators who have been rejected report that it does not ("Hi {{1}}, your gate is
/// {{2}}." is refused), so everything that is not a letter or a digit is ignored at both
/// ends. This flags a few examples in Meta's own pages that end with "{{order_number}}.";
/// one more sentence of text after the parameter satisfies both readings.
fn lint_dangling(body: &str, scan: &Scan, findings: &mut Vec<Finding>) {
    let (Some(first), Some(last)) = (scan.placeholders.first(), scan.placeholders.last()) else {
        return;
    };
    let chars: Vec<char> = body.chars().collect();
    let is_text = |index: usize| chars[index].is_alphanumeric() && !covered(scan, index);
    let first_text = (0..chars.len()).find(|&index| is_text(index));
    let last_text = (0..chars.len()).rev().find(|&index| is_text(index));
    if first_text.is_none_or(|index| first.start < index) {
        findings.push(Finding::new(
            BODY_STARTS_WITH_PARAMETER,
            "BODY",
            Some(first.start + 1),
            format!(
                "the body starts with the parameter {{{{{}}}}}; Meta rejects a body that \
                 starts or ends with a parameter: put some words before it",
                first.content
            ),
        ));
    }
    if last_text.is_none_or(|index| last.end > index + 1) {
        findings.push(Finding::new(
            BODY_ENDS_WITH_PARAMETER,
            "BODY",
            Some(last.start + 1),
            format!(
                "the body ends with the parameter {{{{{}}}}} (punctuation after it does not \
                 count); Meta rejects a body that starts or ends with a parameter: add some \
                 words after it",
                last.content
            ),
        ));
    }
}

/// Whether the character at `index` is inside a `{{…}}`.
fn covered(scan: &Scan, index: usize) -> bool {
    scan.placeholders
        .iter()
        .any(|token| (token.start..token.end).contains(&index))
}

/// Meta's rejection text, as integrators quote it: "Your template has parameters placed
/// next to each other (like {{1}}{{2}}) without text or punctuation between them".
/// Whitespace alone does not separate them.
fn lint_adjacent(body: &str, scan: &Scan, findings: &mut Vec<Finding>) {
    let chars: Vec<char> = body.chars().collect();
    for pair in scan.placeholders.windows(2) {
        let between = &chars[pair[0].end..pair[1].start];
        if between.iter().all(|c| c.is_whitespace()) {
            findings.push(Finding::new(
                ADJACENT_PARAMETERS,
                "BODY",
                Some(pair[1].start + 1),
                format!(
                    "the parameters {{{{{}}}}} and {{{{{}}}}} are next to each other with \
                     nothing but whitespace between them: put words or punctuation between \
                     them, or merge them into one parameter",
                    pair[0].content, pair[1].content
                ),
            ));
        }
    }
}

/// "Template review", "Common rejection reasons": "The template contains too many variable
/// parameters relative to the message length." (Meta's rejection code is
/// `PARAMS_TO_WORD_RATIO_EXCEED_LIMIT`.)
///
/// Meta publishes no figure. The one used here, at least `2n + 1` words that are not
/// parameters for `n` parameters, is the one integrators who were rejected converged on
/// independently (Syniverse: words plus parameters at least `3n + 1`, the same thing;
/// Maqsam: "for every x variable there needs to be 2x+1 non variable words"). A word is a
/// run of non-whitespace with at least one letter or digit once parameters are removed.
fn lint_parameter_density(body: &str, scan: &Scan, findings: &mut Vec<Finding>) {
    let parameters = scan.placeholders.len();
    if parameters == 0 {
        return;
    }
    let needed = 2 * parameters + 1;
    let words = words_outside_parameters(body, scan);
    if words < needed {
        findings.push(Finding::new(
            TOO_MANY_PARAMETERS_FOR_LENGTH,
            "BODY",
            None,
            format!(
                "the body has {parameters} parameter(s) and {words} other word(s); Meta rejects \
                 templates with too many parameters for their length: write at least {needed} \
                 words besides the parameters ({} more) or use fewer parameters",
                needed - words
            ),
        ));
    }
}

fn words_outside_parameters(text: &str, scan: &Scan) -> usize {
    let blanked: String = text
        .chars()
        .enumerate()
        .map(|(index, c)| if covered(scan, index) { ' ' } else { c })
        .collect();
    blanked
        .split_whitespace()
        .filter(|word| word.chars().any(char::is_alphanumeric))
        .count()
}

/// The checks every text with parameters gets: brackets, placeholder syntax, one format,
/// the template's format, and numbering or uniqueness.
///
/// "Template fundamentals", "Parameter formats": named parameters "must be unique, single
/// strings, composed of lowercase characters and underscores"; positional parameters "must
/// be ordered array index numbers, starting from 1". "Template review" adds: "Variable
/// parameters are missing or have mismatched curly braces", "contain special characters such
/// as a #, $, or %", "are not sequential. For example, {{1}}, {{2}}, {{5}}, {{4}}".
///
/// Meta's wording for names mentions no digits, so `{{line_2}}` is reported: a briefing for
/// this linter allowed digits, Meta's page does not, and Meta wins.
fn lint_parameters(
    component: &str,
    text: &str,
    format: ParameterFormat,
    findings: &mut Vec<Finding>,
) -> Scan {
    let scan = scan(text);
    for problem in &scan.brace_problems {
        findings.push(Finding::new(
            MISMATCHED_BRACES,
            component,
            Some(problem.start + 1),
            format!(
                "{}: write parameters as {{{{1}}}} or {{{{first_name}}}}",
                problem.what
            ),
        ));
    }
    for token in &scan.placeholders {
        if token.kind == PlaceholderKind::Invalid {
            findings.push(Finding::new(
                PARAMETER_INVALID,
                component,
                Some(token.start + 1),
                format!(
                    "{{{{{}}}}} is not a parameter Meta accepts: a positional parameter is a \
                     number from 1, like {{{{1}}}}; a named one is lowercase letters and \
                     underscores, like {{{{first_name}}}} (no spaces, capitals, digits or \
                     symbols such as #, $, %)",
                    token.content
                ),
            ));
        }
    }
    let positional: Vec<&Token> = scan
        .placeholders
        .iter()
        .filter(|t| matches!(t.kind, PlaceholderKind::Positional(_)))
        .collect();
    let named: Vec<&Token> = scan
        .placeholders
        .iter()
        .filter(|t| matches!(t.kind, PlaceholderKind::Named(_)))
        .collect();
    match (positional.first(), named.first()) {
        (Some(first_positional), Some(first_named)) => {
            let later = first_positional.start.max(first_named.start);
            findings.push(Finding::new(
                PARAMETER_FORMAT_MIXED,
                component,
                Some(later + 1),
                format!(
                    "{component} mixes positional ({{{{{}}}}}) and named ({{{{{}}}}}) \
                     parameters; a template uses one format: rewrite them all as {}",
                    first_positional.content,
                    first_named.content,
                    match format {
                        ParameterFormat::Positional => "{{1}}, {{2}}, …",
                        ParameterFormat::Named => "{{first_name}}, …",
                    }
                ),
            ));
        }
        (Some(first), None) if format == ParameterFormat::Named => {
            findings.push(Finding::new(
                PARAMETER_FORMAT_MISMATCH,
                component,
                Some(first.start + 1),
                format!(
                    "{component} uses positional parameters like {{{{{}}}}} but the template's \
                     parameter_format is NAMED: write named parameters like {{{{first_name}}}} \
                     or set parameter_format to POSITIONAL",
                    first.content
                ),
            ));
        }
        (None, Some(first)) if format == ParameterFormat::Positional => {
            findings.push(Finding::new(
                PARAMETER_FORMAT_MISMATCH,
                component,
                Some(first.start + 1),
                format!(
                    "{component} uses named parameters like {{{{{}}}}} but the template's \
                     parameter_format is POSITIONAL (Meta's default when it is not given): set \
                     parameter_format to NAMED or write {{{{1}}}}, {{{{2}}}}, …",
                    first.content
                ),
            ));
        }
        (Some(_), None) => lint_sequence(component, &positional, findings),
        (None, Some(_)) => lint_unique_names(component, &named, findings),
        (None, None) => {}
    }
    scan
}

fn lint_sequence(component: &str, tokens: &[&Token], findings: &mut Vec<Finding>) {
    let mut first_appearances: Vec<(u32, &Token)> = Vec::new();
    for token in tokens {
        if let PlaceholderKind::Positional(number) = token.kind {
            if !first_appearances.iter().any(|(seen, _)| *seen == number) {
                first_appearances.push((number, token));
            }
        }
    }
    let mut numbers: Vec<u32> = first_appearances.iter().map(|(n, _)| *n).collect();
    numbers.sort_unstable();
    let missing: Vec<u32> = (1..=numbers.last().copied().unwrap_or(0))
        .filter(|n| !numbers.contains(n))
        .collect();
    if numbers.first() == Some(&0) || !missing.is_empty() {
        let listed: Vec<String> = numbers.iter().map(|n| format!("{{{{{n}}}}}")).collect();
        let culprit = first_appearances
            .iter()
            .find(|(n, _)| *n == 0 || missing.first().is_some_and(|m| n > m))
            .map(|(_, token)| token.start + 1);
        let what = if numbers.first() == Some(&0) {
            "numbering starts at 1, not 0".to_owned()
        } else {
            let gaps: Vec<String> = missing.iter().map(|n| format!("{{{{{n}}}}}")).collect();
            format!("{} missing", gaps.join(", "))
        };
        findings.push(Finding::new(
            POSITIONAL_PARAMETERS_NOT_SEQUENTIAL,
            component,
            culprit,
            format!(
                "{component} uses {}: {what}; number positional parameters 1, 2, 3… without \
                 gaps",
                listed.join(", ")
            ),
        ));
        return;
    }
    if let Some(window) = first_appearances.windows(2).find(|w| w[1].0 < w[0].0) {
        findings.push(Finding::new(
            POSITIONAL_PARAMETERS_OUT_OF_ORDER,
            component,
            Some(window[1].1.start + 1),
            format!(
                "{{{{{}}}}} first appears after {{{{{}}}}}; Meta wants positional parameters \
                 numbered in the order they appear: renumber them 1, 2, 3… from the start of \
                 the text",
                window[1].0, window[0].0
            ),
        ));
    }
}

fn lint_unique_names(component: &str, tokens: &[&Token], findings: &mut Vec<Finding>) {
    for (index, token) in tokens.iter().enumerate() {
        if tokens[..index].iter().any(|t| t.content == token.content) {
            findings.push(Finding::new(
                NAMED_PARAMETER_REPEATED,
                component,
                Some(token.start + 1),
                format!(
                    "{{{{{}}}}} is used more than once; Meta wants named parameters to be \
                     unique: give the second one its own name",
                    token.content
                ),
            ));
        }
    }
}

/// "Template fundamentals", "Parameter formats": "if a string includes one or more
/// parameters … you must include an example value for each parameter". Positional examples
/// come in placeholder order; named ones are `{param_name, example}` pairs in any order.
#[allow(clippy::too_many_arguments)]
fn lint_examples(
    component: &str,
    scan: &Scan,
    examples: &ParameterExamples,
    missing_rule: &'static str,
    mismatch_rule: &'static str,
    positional_key: &str,
    named_key: &str,
    findings: &mut Vec<Finding>,
) {
    let mut positional: Vec<u32> = Vec::new();
    let mut named: Vec<&str> = Vec::new();
    for token in &scan.placeholders {
        match &token.kind {
            PlaceholderKind::Positional(n) if !positional.contains(n) => positional.push(*n),
            PlaceholderKind::Named(name) if !named.contains(&name.as_str()) => named.push(name),
            _ => {}
        }
    }
    if positional.is_empty() == named.is_empty() {
        // Nothing to exemplify, or a mix already reported: examples cannot be checked.
        return;
    }
    if examples.is_empty() {
        let key = if named.is_empty() {
            positional_key
        } else {
            named_key
        };
        findings.push(Finding::new(
            missing_rule,
            component,
            None,
            format!(
                "{component} has {} parameter(s) and no examples: Meta requires an example \
                 value for each; give them in example.{key}",
                positional.len().max(named.len())
            ),
        ));
        return;
    }
    match examples {
        ParameterExamples::Positional(values) if named.is_empty() => {
            if values.len() != positional.len() {
                findings.push(Finding::new(
                    mismatch_rule,
                    component,
                    None,
                    format!(
                        "{component} has {} parameter(s) but {} example value(s) in \
                         example.{positional_key}: give exactly one per parameter, in order",
                        positional.len(),
                        values.len()
                    ),
                ));
            } else if let Some(index) = values.iter().position(|v| v.trim().is_empty()) {
                findings.push(Finding::new(
                    mismatch_rule,
                    component,
                    None,
                    format!(
                        "the example for {{{{{}}}}} in {component} is empty: give a realistic \
                         value",
                        index + 1
                    ),
                ));
            }
        }
        ParameterExamples::Named(pairs) if positional.is_empty() => {
            let given: Vec<&str> = pairs.iter().map(|(name, _)| name.as_str()).collect();
            let missing: Vec<&str> = named
                .iter()
                .copied()
                .filter(|name| !given.contains(name))
                .collect();
            let unexpected: Vec<&str> = given
                .iter()
                .copied()
                .filter(|name| !named.contains(name))
                .collect();
            if !missing.is_empty() || !unexpected.is_empty() {
                let mut parts = Vec::new();
                if !missing.is_empty() {
                    parts.push(format!("no example for {}", missing.join(", ")));
                }
                if !unexpected.is_empty() {
                    parts.push(format!(
                        "examples for {} which {component} does not use",
                        unexpected.join(", ")
                    ));
                }
                findings.push(Finding::new(
                    mismatch_rule,
                    component,
                    None,
                    format!(
                        "{} in example.{named_key}: give one example per named parameter",
                        parts.join(" and ")
                    ),
                ));
            } else if let Some((name, _)) = pairs.iter().find(|(_, value)| value.trim().is_empty())
            {
                findings.push(Finding::new(
                    mismatch_rule,
                    component,
                    None,
                    format!(
                        "the example for {name} in {component} is empty: give a realistic value"
                    ),
                ));
            }
        }
        _ => {
            let (wanted, key) = if named.is_empty() {
                ("positional", positional_key)
            } else {
                ("named", named_key)
            };
            findings.push(Finding::new(
                mismatch_rule,
                component,
                None,
                format!(
                    "{component} has {wanted} parameters but its examples are of the other \
                     format: give them in example.{key}"
                ),
            ));
        }
    }
}

fn lint_footer(template: &TemplateDefinition, findings: &mut Vec<Finding>) {
    let Some(footer) = template.footer.as_deref() else {
        return;
    };
    // "Template components", "Footer": "60 characters maximum."
    let length = footer.chars().count();
    if length > FOOTER_MAX_CHARS {
        findings.push(Finding::new(
            FOOTER_TOO_LONG,
            "FOOTER",
            Some(FOOTER_MAX_CHARS + 1),
            format!(
                "the footer is {length} characters long; Meta allows at most \
                 {FOOTER_MAX_CHARS}: shorten it by {}",
                length - FOOTER_MAX_CHARS
            ),
        ));
    }
    // "Template components": only the header, the body and URL buttons take parameters;
    // the footer is "text-only" and its creation syntax has no `example`.
    if let Some(token) = scan(footer).placeholders.first() {
        findings.push(Finding::new(
            FOOTER_HAS_PARAMETER,
            "FOOTER",
            Some(token.start + 1),
            format!(
                "the footer contains {{{{{}}}}}, but footers cannot have parameters: write the \
                 text out, or move the parameter to the body",
                token.content
            ),
        ));
    }
}

/// "Template components", "Buttons".
fn lint_buttons(template: &TemplateDefinition, findings: &mut Vec<Finding>) {
    let buttons = &template.buttons;
    if buttons.len() > MAX_BUTTONS {
        findings.push(Finding::new(
            TOO_MANY_BUTTONS,
            "BUTTONS",
            None,
            format!(
                "the template has {} buttons; Meta allows at most {MAX_BUTTONS}: remove {}",
                buttons.len(),
                buttons.len() - MAX_BUTTONS
            ),
        ));
    }
    for (kind, label, max) in [
        (
            ButtonKind::QuickReply,
            "quick reply",
            MAX_QUICK_REPLY_BUTTONS,
        ),
        (ButtonKind::Url, "URL", MAX_URL_BUTTONS),
        (
            ButtonKind::PhoneNumber,
            "phone number",
            MAX_PHONE_NUMBER_BUTTONS,
        ),
        (ButtonKind::CopyCode, "copy code", MAX_COPY_CODE_BUTTONS),
    ] {
        let count = buttons.iter().filter(|b| b.kind == kind).count();
        if count > max {
            findings.push(Finding::new(
                TOO_MANY_BUTTONS_OF_TYPE,
                "BUTTONS",
                None,
                format!(
                    "the template has {count} {label} buttons; Meta allows at most {max}: \
                     remove {}",
                    count - max
                ),
            ));
        }
    }
    // "If using quick reply buttons with other buttons, buttons must be organized into two
    // groups: quick reply buttons and non-quick reply buttons."
    let changes: Vec<usize> = (1..buttons.len())
        .filter(|&i| {
            (buttons[i].kind == ButtonKind::QuickReply)
                != (buttons[i - 1].kind == ButtonKind::QuickReply)
        })
        .collect();
    if changes.len() > 1 {
        let index = changes[1];
        findings.push(Finding::new(
            QUICK_REPLIES_NOT_GROUPED,
            format!("BUTTONS[{index}]"),
            None,
            format!(
                "quick replies are mixed in among other buttons ({}); Meta wants all quick \
                 replies together, before or after the other buttons",
                buttons
                    .iter()
                    .map(|b| b.kind.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    for index in 0..buttons.len() {
        lint_button(template, index, findings);
    }
}

fn lint_button(template: &TemplateDefinition, index: usize, findings: &mut Vec<Finding>) {
    let button = &template.buttons[index];
    let component = format!("BUTTONS[{index}]");
    let needs_label = matches!(
        button.kind,
        ButtonKind::QuickReply | ButtonKind::Url | ButtonKind::PhoneNumber
    );
    let label_length = button.text.chars().count();
    if needs_label && button.text.trim().is_empty() {
        findings.push(Finding::new(
            BUTTON_LABEL_MISSING,
            component.clone(),
            None,
            format!(
                "the {} button has no label: give its text (at most {BUTTON_LABEL_MAX_CHARS} \
                 characters)",
                button.kind.as_str()
            ),
        ));
    } else if label_length > BUTTON_LABEL_MAX_CHARS {
        findings.push(Finding::new(
            BUTTON_LABEL_TOO_LONG,
            component.clone(),
            Some(BUTTON_LABEL_MAX_CHARS + 1),
            format!(
                "the label {:?} is {label_length} characters long; Meta allows at most \
                 {BUTTON_LABEL_MAX_CHARS}: shorten it by {}",
                button.text,
                label_length - BUTTON_LABEL_MAX_CHARS
            ),
        ));
    }
    match button.kind {
        ButtonKind::Url => lint_url_button(template, index, &component, findings),
        ButtonKind::PhoneNumber => {
            let number = button.phone_number.as_deref().unwrap_or_default();
            let length = number.chars().count();
            if number.trim().is_empty() {
                findings.push(Finding::new(
                    BUTTON_PHONE_NUMBER_MISSING,
                    component,
                    None,
                    "the phone number button has no phone_number: give the business number it \
                     calls, e.g. \"15550051310\"",
                ));
            } else if length > BUTTON_PHONE_NUMBER_MAX_CHARS {
                findings.push(Finding::new(
                    BUTTON_PHONE_NUMBER_TOO_LONG,
                    component,
                    Some(BUTTON_PHONE_NUMBER_MAX_CHARS + 1),
                    format!(
                        "the phone number is {length} characters long; Meta allows at most \
                         {BUTTON_PHONE_NUMBER_MAX_CHARS}"
                    ),
                ));
            }
        }
        ButtonKind::CopyCode => match button.example.first() {
            None => findings.push(Finding::new(
                BUTTON_EXAMPLE_MISSING,
                component,
                None,
                "the copy code button has no example: give an example code (at most 20 \
                 characters) in its example",
            )),
            Some(code) if code.chars().count() > COPY_CODE_MAX_CHARS => {
                findings.push(Finding::new(
                    COPY_CODE_EXAMPLE_TOO_LONG,
                    component,
                    None,
                    format!(
                        "the example code {code:?} is {} characters long; Meta allows at most \
                         {COPY_CODE_MAX_CHARS}",
                        code.chars().count()
                    ),
                ));
            }
            Some(_) => {}
        },
        _ => {}
    }
}

/// "Template components", "URL buttons": the URL "Supports 1 variable, appended to the end
/// of the URL string. 2000 characters maximum", and "If using a variable, add sample
/// variable property".
fn lint_url_button(
    template: &TemplateDefinition,
    index: usize,
    component: &str,
    findings: &mut Vec<Finding>,
) {
    let button = &template.buttons[index];
    let url = button.url.as_deref().unwrap_or_default();
    if url.trim().is_empty() {
        findings.push(Finding::new(
            BUTTON_URL_MISSING,
            component,
            None,
            "the URL button has no url: give the address it opens, e.g. \
             \"https://www.example.com/shop?promo={{1}}\"",
        ));
        return;
    }
    let length = url.chars().count();
    if length > BUTTON_URL_MAX_CHARS {
        findings.push(Finding::new(
            BUTTON_URL_TOO_LONG,
            component,
            Some(BUTTON_URL_MAX_CHARS + 1),
            format!(
                "the URL is {length} characters long; Meta allows at most \
                 {BUTTON_URL_MAX_CHARS}"
            ),
        ));
    }
    let scan = lint_parameters(component, url, template.parameter_format, findings);
    if scan.placeholders.len() > 1 {
        findings.push(Finding::new(
            BUTTON_URL_TOO_MANY_PARAMETERS,
            component,
            Some(scan.placeholders[1].start + 1),
            format!(
                "the URL has {} parameters; a URL button supports only one, at the end of the \
                 URL",
                scan.placeholders.len()
            ),
        ));
    }
    if let Some(token) = scan.placeholders.first() {
        if token.end != url.trim_end().chars().count() {
            findings.push(Finding::new(
                BUTTON_URL_PARAMETER_NOT_AT_END,
                component,
                Some(token.start + 1),
                format!(
                    "{{{{{}}}}} is in the middle of the URL; Meta appends the parameter to the \
                     end of the URL: move it to the very end",
                    token.content
                ),
            ));
        }
        // An authentication template's one-time password button comes back from Meta as a
        // URL button whose parameter Meta fills itself; it has no example to give.
        let authentication = template.category == Some(TemplateCategory::Authentication);
        let no_example = button
            .example
            .iter()
            .all(|example| example.trim().is_empty());
        if no_example && !authentication {
            findings.push(Finding::new(
                BUTTON_EXAMPLE_MISSING,
                component,
                None,
                format!(
                    "the URL has the parameter {{{{{}}}}} but no example: give an example of \
                     what is appended, e.g. \"summer2023\"",
                    token.content
                ),
            ));
        }
    }
}

#[cfg(test)]
mod tests;
