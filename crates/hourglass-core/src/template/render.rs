//! The renderer: a template filled in with the values a send supplies, or the reason Meta
//! would refuse the send.
//!
//! Follows Meta's Cloud API "Messages" reference (the template object: components, the
//! parameter object and its `text` limits, the button parameter object), "Template
//! fundamentals" ("Parameter formats": positional values in order, named ones in any order)
//! and the "Error codes" page, whose codes `hourglass-meta` attaches to each [`RenderError`].

use super::limits::{BODY_MAX_CHARS, BODY_ONLY_MAX_CHARS, HEADER_TEXT_MAX_CHARS};
use super::placeholder::{scan, PlaceholderKind};
use super::{ButtonKind, HeaderKind, ParameterFormat, Placeholder, TemplateDefinition};
use std::fmt;

/// Where a media header's asset comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MediaSource {
    /// A public URL Meta downloads.
    Link(String),
    /// The id of media uploaded to Meta.
    Id(String),
}

/// A media header's asset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MediaHeader {
    /// `Image`, `Video`, `Gif` or `Document`.
    pub kind: HeaderKind,
    pub source: MediaSource,
    /// A document's file name, as the recipient sees it.
    pub filename: Option<String>,
}

/// A location header's place ("Template components", "Location header", send syntax).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocationHeader {
    /// Decimal degrees, as Meta takes them (strings).
    pub latitude: String,
    pub longitude: String,
    pub name: Option<String>,
    pub address: Option<String>,
}

/// The header value a send supplies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HeaderParam {
    /// The value of a text header's one parameter.
    Text(String),
    Media(MediaHeader),
    Location(LocationHeader),
}

impl HeaderParam {
    /// The kind of header this value fits.
    pub fn kind(&self) -> HeaderKind {
        match self {
            HeaderParam::Text(_) => HeaderKind::Text,
            HeaderParam::Media(media) => media.kind,
            HeaderParam::Location(_) => HeaderKind::Location,
        }
    }
}

/// The body values a send supplies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BodyParams {
    /// Values for `{{1}}`, `{{2}}`, … in that order.
    Positional(Vec<String>),
    /// `(parameter_name, value)` pairs, in any order.
    Named(Vec<(String, String)>),
}

impl Default for BodyParams {
    fn default() -> Self {
        BodyParams::Positional(Vec::new())
    }
}

impl BodyParams {
    /// How many values were supplied.
    pub fn len(&self) -> usize {
        match self {
            BodyParams::Positional(values) => values.len(),
            BodyParams::Named(pairs) => pairs.len(),
        }
    }

    /// Whether no value was supplied.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The format the values are written in.
    pub fn format(&self) -> ParameterFormat {
        match self {
            BodyParams::Positional(_) => ParameterFormat::Positional,
            BodyParams::Named(_) => ParameterFormat::Named,
        }
    }
}

/// A value for one button: a quick reply's payload, a URL button's suffix, or the code a
/// copy code button copies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ButtonParam {
    /// The button's position in the template, from 0 (Meta's `index`).
    pub index: usize,
    /// The button's type as the send names it (Meta's `sub_type`).
    pub sub_type: ButtonKind,
    pub value: String,
}

/// Everything a send supplies to fill a template.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RenderParams {
    pub header: Option<HeaderParam>,
    pub body: BodyParams,
    pub buttons: Vec<ButtonParam>,
}

/// A rendered header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RenderedHeader {
    /// The header text with its parameter filled in.
    Text(String),
    Media(MediaHeader),
    Location(LocationHeader),
}

/// A rendered button.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RenderedButton {
    pub kind: ButtonKind,
    /// The label.
    pub text: String,
    /// A URL button's address, with its suffix appended.
    pub url: Option<String>,
    /// A phone number button's number.
    pub phone_number: Option<String>,
    /// A quick reply's payload (what comes back when it is tapped), or the code a copy code
    /// button copies; `None` when the send gave none.
    pub payload: Option<String>,
}

/// The message a template send produces, as the recipient sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rendered {
    pub header: Option<RenderedHeader>,
    pub body: String,
    pub footer: Option<String>,
    pub buttons: Vec<RenderedButton>,
}

/// What is wrong with a parameter's text.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum ParameterProblem {
    /// The value is empty.
    Empty,
    /// The value has a new line or a tab.
    NewlineOrTab,
    /// The value has more than four spaces in a row.
    TooManySpaces,
}

/// What is wrong with a button value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ButtonProblem {
    /// The index is past the template's last button.
    NoSuchButton { buttons: usize },
    /// The send names another type than the template's button at that index.
    WrongType {
        expected: ButtonKind,
        got: ButtonKind,
    },
    /// A value for a URL button whose URL has no parameter.
    NotDynamic,
    /// A URL button with a parameter, or a copy code button, got no value.
    Missing { kind: ButtonKind },
    /// Two values for the same button.
    Repeated,
    /// The value is empty.
    Empty,
}

/// Why a send cannot fill the template, as Meta would refuse it.
///
/// `hourglass_meta::template::render_error_code` gives Meta's error code for each.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RenderError {
    /// The wrong number of values (Meta's 132000).
    ParameterCount {
        component: String,
        expected: usize,
        got: usize,
    },
    /// Named values that do not match the template's names (Meta's 132000).
    ParameterNames {
        component: String,
        /// Names the template uses and the send did not give.
        missing: Vec<String>,
        /// Names the send gave and the template does not use.
        unexpected: Vec<String>,
    },
    /// Positional values for a named template, or the other way round (Meta's 132012).
    ParameterFormat {
        component: String,
        expected: ParameterFormat,
        got: ParameterFormat,
    },
    /// A header value of the wrong kind, or none for a media header, or one for a template
    /// without a header (Meta's 132012).
    HeaderFormat {
        /// The template's header kind; `None` when it has no header.
        expected: Option<HeaderKind>,
        /// The kind of value the send gave; `None` when it gave none.
        got: Option<HeaderKind>,
    },
    /// A component too long once filled in (Meta's 132005).
    TooLong {
        component: String,
        length: usize,
        limit: usize,
    },
    /// A value Meta refuses as text.
    ParameterText {
        component: String,
        /// `{{1}}` or the parameter's name.
        parameter: String,
        problem: ParameterProblem,
    },
    /// A button value that does not fit the template's buttons.
    ButtonParameter {
        index: usize,
        problem: ButtonProblem,
    },
}

impl fmt::Display for RenderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RenderError::ParameterCount {
                component,
                expected,
                got,
            } => write!(
                f,
                "{component} of this template has {expected} parameter(s) but the send gave \
                 {got}: give exactly {expected}"
            ),
            RenderError::ParameterNames {
                component,
                missing,
                unexpected,
            } => {
                write!(
                    f,
                    "{component} parameters do not match the template's names:"
                )?;
                if !missing.is_empty() {
                    write!(f, " missing {}", missing.join(", "))?;
                }
                if !missing.is_empty() && !unexpected.is_empty() {
                    write!(f, ";")?;
                }
                if !unexpected.is_empty() {
                    write!(f, " not in the template {}", unexpected.join(", "))?;
                }
                write!(f, ": give one value per name the template uses")
            }
            RenderError::ParameterFormat {
                component,
                expected,
                got,
            } => write!(
                f,
                "{component} of this template takes {} parameters but the send gave {} ones: {}",
                expected.as_str().to_ascii_lowercase(),
                got.as_str().to_ascii_lowercase(),
                match expected {
                    ParameterFormat::Named => "give each value with its parameter_name",
                    ParameterFormat::Positional =>
                        "give the values in order, without parameter_name",
                }
            ),
            RenderError::HeaderFormat { expected, got } => match (expected, got) {
                (Some(expected), None) => write!(
                    f,
                    "the template has a {} header but the send gave no header value: add a \
                     header component with {}",
                    expected.as_str(),
                    header_value_hint(*expected)
                ),
                (None, Some(got)) => write!(
                    f,
                    "the template has no header but the send gave a {} header value: remove it",
                    got.as_str()
                ),
                (Some(expected), Some(got)) => write!(
                    f,
                    "the template has a {} header but the send gave a {} value: give {}",
                    expected.as_str(),
                    got.as_str(),
                    header_value_hint(*expected)
                ),
                (None, None) => write!(f, "the header does not match the template"),
            },
            RenderError::TooLong {
                component,
                length,
                limit,
            } => write!(
                f,
                "{component} is {length} characters once its parameters are filled in; Meta \
                 allows {limit}: shorten the values by {}",
                length.saturating_sub(*limit)
            ),
            RenderError::ParameterText {
                component,
                parameter,
                problem,
            } => match problem {
                ParameterProblem::Empty => write!(
                    f,
                    "the value for {parameter} in {component} is empty: Meta needs some text"
                ),
                ParameterProblem::NewlineOrTab => write!(
                    f,
                    "the value for {parameter} in {component} contains a new line or a tab, \
                     which Meta refuses in parameters: replace them with spaces or punctuation"
                ),
                ParameterProblem::TooManySpaces => write!(
                    f,
                    "the value for {parameter} in {component} has more than 4 spaces in a row, \
                     which Meta refuses in parameters: collapse them"
                ),
            },
            RenderError::ButtonParameter { index, problem } => match problem {
                ButtonProblem::NoSuchButton { buttons } => write!(
                    f,
                    "button {index} does not exist: the template has {buttons} button(s), \
                     indexed from 0"
                ),
                ButtonProblem::WrongType { expected, got } => write!(
                    f,
                    "button {index} is a {} button but the send calls it {}: use sub_type {}",
                    expected.as_str(),
                    got.sub_type(),
                    expected.sub_type()
                ),
                ButtonProblem::NotDynamic => write!(
                    f,
                    "button {index}'s URL has no parameter, so it takes no value: remove it"
                ),
                ButtonProblem::Missing { kind } => write!(
                    f,
                    "button {index} is a {} button that needs a value at send time: {}",
                    kind.as_str(),
                    match kind {
                        ButtonKind::CopyCode => "give the code it copies",
                        _ => "give the text appended to its URL",
                    }
                ),
                ButtonProblem::Repeated => {
                    write!(f, "button {index} got two values: give one")
                }
                ButtonProblem::Empty => {
                    write!(
                        f,
                        "the value for button {index} is empty: Meta needs some text"
                    )
                }
            },
        }
    }
}

fn header_value_hint(kind: HeaderKind) -> String {
    match kind {
        HeaderKind::Text => "the text of its parameter".to_owned(),
        HeaderKind::Location => "a location (latitude, longitude, name, address)".to_owned(),
        media => format!(
            "a {} (a link or a media id)",
            media.as_str().to_ascii_lowercase()
        ),
    }
}

impl std::error::Error for RenderError {}

/// Fills `template` with `params`, or says why Meta would refuse the send.
///
/// Checks the header, then the body, then the buttons, and answers the first problem.
pub fn render(
    template: &TemplateDefinition,
    params: &RenderParams,
) -> Result<Rendered, RenderError> {
    let header = render_header(template, params.header.as_ref())?;
    let body = render_body(template, &params.body)?;
    let buttons = render_buttons(template, &params.buttons)?;
    Ok(Rendered {
        header,
        body,
        footer: template.footer.clone(),
        buttons,
    })
}

fn render_header(
    template: &TemplateDefinition,
    param: Option<&HeaderParam>,
) -> Result<Option<RenderedHeader>, RenderError> {
    let Some(header) = &template.header else {
        return match param {
            None => Ok(None),
            Some(param) => Err(RenderError::HeaderFormat {
                expected: None,
                got: Some(param.kind()),
            }),
        };
    };
    let mismatch = || RenderError::HeaderFormat {
        expected: Some(header.kind),
        got: param.map(HeaderParam::kind),
    };
    match (header.kind, param) {
        (HeaderKind::Text, None | Some(HeaderParam::Text(_))) => {
            let text = header.text.as_deref().unwrap_or_default();
            let parameters = template.header_parameters();
            let value = match param {
                Some(HeaderParam::Text(value)) => Some(value.as_str()),
                _ => None,
            };
            let got = usize::from(value.is_some());
            if parameters.len() != got {
                return Err(RenderError::ParameterCount {
                    component: "HEADER".into(),
                    expected: parameters.len(),
                    got,
                });
            }
            let filled = match (value, parameters.first()) {
                (Some(value), Some(parameter)) => {
                    check_text("HEADER", &parameter.label(), value)?;
                    fill(text, |_| Some(value))
                }
                _ => text.to_owned(),
            };
            // Messages reference, parameter object: "For the header component type: 60
            // characters"; Meta counts the header once filled in ("Length of the parameters
            // and the template text is N, which exceeds the allowed length of M").
            check_length("HEADER", &filled, HEADER_TEXT_MAX_CHARS)?;
            Ok(Some(RenderedHeader::Text(filled)))
        }
        (HeaderKind::Location, Some(HeaderParam::Location(location))) => {
            Ok(Some(RenderedHeader::Location(location.clone())))
        }
        (kind, Some(HeaderParam::Media(media))) if kind.is_media() && media.kind == kind => {
            Ok(Some(RenderedHeader::Media(media.clone())))
        }
        _ => Err(mismatch()),
    }
}

fn render_body(template: &TemplateDefinition, params: &BodyParams) -> Result<String, RenderError> {
    let parameters = template.body_parameters();
    let filled = if parameters.is_empty() {
        if !params.is_empty() {
            return Err(RenderError::ParameterCount {
                component: "BODY".into(),
                expected: 0,
                got: params.len(),
            });
        }
        template.body.clone()
    } else {
        match (effective_format(template, &parameters), params) {
            (ParameterFormat::Named, params) if params.is_empty() => {
                return Err(RenderError::ParameterNames {
                    component: "BODY".into(),
                    missing: parameters.iter().map(Placeholder::label).collect(),
                    unexpected: Vec::new(),
                })
            }
            (ParameterFormat::Positional, BodyParams::Positional(values)) => {
                fill_positional(template, &parameters, values)?
            }
            (ParameterFormat::Named, BodyParams::Named(pairs)) => {
                fill_named(template, &parameters, pairs)?
            }
            (expected, params) => {
                if params.is_empty() {
                    return Err(RenderError::ParameterCount {
                        component: "BODY".into(),
                        expected: parameters.len(),
                        got: 0,
                    });
                }
                return Err(RenderError::ParameterFormat {
                    component: "BODY".into(),
                    expected,
                    got: params.format(),
                });
            }
        }
    };
    // Messages reference, parameter object: the body allows "1024 characters if other
    // component types are included, 32768 characters if body is the only component type
    // included". DESIGN.md §2.4 says 1,024 in every case; Meta wins.
    let body_only =
        template.header.is_none() && template.footer.is_none() && template.buttons.is_empty();
    let limit = if body_only {
        BODY_ONLY_MAX_CHARS
    } else {
        BODY_MAX_CHARS
    };
    check_length("BODY", &filled, limit)?;
    Ok(filled)
}

/// The format the body's parameters are written in. A template is created with
/// `parameter_format` matching its placeholders (Meta rejects it otherwise), so the text
/// decides; `parameter_format` only settles a mix, which `lint` reports.
fn effective_format(template: &TemplateDefinition, parameters: &[Placeholder]) -> ParameterFormat {
    let named = parameters
        .iter()
        .filter(|p| matches!(p, Placeholder::Named(_)))
        .count();
    if named == parameters.len() {
        ParameterFormat::Named
    } else if named == 0 {
        ParameterFormat::Positional
    } else {
        template.parameter_format
    }
}

/// "Positional parameters … real values in template send payloads must appear in the order
/// in which their corresponding placeholders appear" ("Template fundamentals"): the value
/// for the k-th smallest number fills every placeholder with that number.
fn fill_positional(
    template: &TemplateDefinition,
    parameters: &[Placeholder],
    values: &[String],
) -> Result<String, RenderError> {
    let mut numbers: Vec<u32> = parameters
        .iter()
        .filter_map(|p| match p {
            Placeholder::Positional(number) => Some(*number),
            Placeholder::Named(_) => None,
        })
        .collect();
    numbers.sort_unstable();
    if values.len() != numbers.len() {
        return Err(RenderError::ParameterCount {
            component: "BODY".into(),
            expected: numbers.len(),
            got: values.len(),
        });
    }
    for (number, value) in numbers.iter().zip(values) {
        check_text("BODY", &format!("{{{{{number}}}}}"), value)?;
    }
    Ok(fill(&template.body, |kind| match kind {
        PlaceholderKind::Positional(number) => numbers
            .iter()
            .position(|n| n == number)
            .map(|index| values[index].as_str()),
        _ => None,
    }))
}

/// "Named parameters … Example values in template creation payloads and real values in
/// template send payloads can appear in any order" ("Template fundamentals").
fn fill_named(
    template: &TemplateDefinition,
    parameters: &[Placeholder],
    pairs: &[(String, String)],
) -> Result<String, RenderError> {
    let names: Vec<String> = parameters.iter().map(Placeholder::label).collect();
    let missing: Vec<String> = names
        .iter()
        .filter(|name| !pairs.iter().any(|(given, _)| given == *name))
        .cloned()
        .collect();
    let mut unexpected: Vec<String> = Vec::new();
    for (given, _) in pairs {
        if !names.contains(given) && !unexpected.contains(given) {
            unexpected.push(given.clone());
        }
    }
    if !missing.is_empty() || !unexpected.is_empty() {
        return Err(RenderError::ParameterNames {
            component: "BODY".into(),
            missing,
            unexpected,
        });
    }
    if pairs.len() != names.len() {
        // Every name is there and none is foreign, so some name was given twice.
        return Err(RenderError::ParameterCount {
            component: "BODY".into(),
            expected: names.len(),
            got: pairs.len(),
        });
    }
    for (name, value) in pairs {
        check_text("BODY", name, value)?;
    }
    Ok(fill(&template.body, |kind| match kind {
        PlaceholderKind::Named(name) => pairs
            .iter()
            .find(|(given, _)| given == name)
            .map(|(_, value)| value.as_str()),
        _ => None,
    }))
}

fn render_buttons(
    template: &TemplateDefinition,
    params: &[ButtonParam],
) -> Result<Vec<RenderedButton>, RenderError> {
    let buttons = &template.buttons;
    let mut values: Vec<Option<&str>> = vec![None; buttons.len()];
    for param in params {
        let index = param.index;
        let error = |problem| RenderError::ButtonParameter { index, problem };
        let Some(button) = buttons.get(index) else {
            return Err(error(ButtonProblem::NoSuchButton {
                buttons: buttons.len(),
            }));
        };
        if param.sub_type != button.kind {
            return Err(error(ButtonProblem::WrongType {
                expected: button.kind.clone(),
                got: param.sub_type.clone(),
            }));
        }
        if values[index].is_some() {
            return Err(error(ButtonProblem::Repeated));
        }
        if button.kind == ButtonKind::Url && button.url_parameters().is_empty() {
            return Err(error(ButtonProblem::NotDynamic));
        }
        if param.value.is_empty() {
            return Err(error(ButtonProblem::Empty));
        }
        values[index] = Some(param.value.as_str());
    }
    let mut rendered = Vec::with_capacity(buttons.len());
    for (index, (button, value)) in buttons.iter().zip(values).enumerate() {
        let dynamic_url = button.kind == ButtonKind::Url && !button.url_parameters().is_empty();
        let needs_value = dynamic_url || button.kind == ButtonKind::CopyCode;
        if needs_value && value.is_none() {
            return Err(RenderError::ButtonParameter {
                index,
                problem: ButtonProblem::Missing {
                    kind: button.kind.clone(),
                },
            });
        }
        // "URL buttons … Supports 1 variable, appended to the end of the URL string"
        // ("Template components"); the send's `text` is that suffix (Messages reference,
        // button parameter object).
        let url = match (&button.url, dynamic_url, value) {
            (Some(url), true, Some(suffix)) => Some(fill(url, |_| Some(suffix))),
            (url, _, _) => url.clone(),
        };
        let payload = if dynamic_url {
            None
        } else {
            value.map(str::to_owned)
        };
        rendered.push(RenderedButton {
            kind: button.kind.clone(),
            text: button.text.clone(),
            url,
            phone_number: button.phone_number.clone(),
            payload,
        });
    }
    Ok(rendered)
}

/// `text` with each well-formed placeholder replaced by `value_of` its kind, when that
/// gives one; everything else is kept as written.
fn fill<'a>(text: &str, value_of: impl Fn(&PlaceholderKind) -> Option<&'a str>) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut filled = String::with_capacity(text.len());
    let mut next = 0;
    for token in scan(text).placeholders {
        if let Some(value) = value_of(&token.kind) {
            filled.extend(&chars[next..token.start]);
            filled.push_str(value);
            next = token.end;
        }
    }
    filled.extend(&chars[next..]);
    filled
}

/// Meta refuses parameter text that is empty, or that has a new line, a tab or more than
/// four spaces in a row. Meta's answer to the latter is "Param text cannot have
/// new-line/tab characters or more than 4 consecutive spaces" (quoted by integrators who
/// hit it; Meta's error page does not list that text).
fn check_text(component: &str, parameter: &str, value: &str) -> Result<(), RenderError> {
    let problem = if value.is_empty() {
        Some(ParameterProblem::Empty)
    } else if value.contains(['\n', '\r', '\t']) {
        Some(ParameterProblem::NewlineOrTab)
    } else if value.contains("     ") {
        Some(ParameterProblem::TooManySpaces)
    } else {
        None
    };
    match problem {
        None => Ok(()),
        Some(problem) => Err(RenderError::ParameterText {
            component: component.into(),
            parameter: parameter.into(),
            problem,
        }),
    }
}

fn check_length(component: &str, text: &str, limit: usize) -> Result<(), RenderError> {
    let length = text.chars().count();
    if length > limit {
        Err(RenderError::TooLong {
            component: component.into(),
            length,
            limit,
        })
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests;
