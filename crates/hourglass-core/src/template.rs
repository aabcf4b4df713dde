//! WhatsApp message templates as pure rules: what a template is made of, a linter for
//! Meta's published limits (so a template is fixed before Meta's review rejects it), and a
//! renderer that fills a template with the values a send supplies (so a send Meta would
//! refuse is refused first, with Meta's reason).
//!
//! The shapes follow Meta's "Template fundamentals" and "Template components" pages
//! (developers.facebook.com/documentation/business-messaging/whatsapp/templates/overview
//! and …/templates/components); the review rules follow "Template review" ("Common
//! rejection reasons"); the send-time checks follow the Cloud API "Messages" reference
//! (the template parameter object) and the "Error codes" page. Like the rest of the core,
//! nothing here reads JSON, a clock or a network: `hourglass-meta` converts Meta's JSON into
//! these types by hand.
//!
//! Where Meta's pages and DESIGN.md §2.4 differ, this module follows Meta and says so
//! where the rule is written.

mod lint;
mod placeholder;
mod render;

pub use lint::{lint, rules, Finding};
pub use render::{
    render, BodyParams, ButtonParam, ButtonProblem, HeaderParam, LocationHeader, MediaHeader,
    MediaSource, ParameterProblem, RenderError, RenderParams, Rendered, RenderedButton,
    RenderedHeader,
};

use crate::history::MessageCategory;
use placeholder::{scan, PlaceholderKind};

/// Meta's published limits, in characters (Unicode scalar values, not bytes) or counts.
///
/// Each names the Meta page that states it. DESIGN.md §2.4 repeats the first few.
pub mod limits {
    /// "Template names are limited to a maximum of 512 characters" ("Template
    /// fundamentals", "Names").
    pub const NAME_MAX_CHARS: usize = 512;
    /// A text header: "Maximum 60 characters" ("Template components", "Text header").
    /// The Messages reference applies the same 60 to the header once its parameter is
    /// filled in.
    pub const HEADER_TEXT_MAX_CHARS: usize = 60;
    /// A text header "Supports 1 parameter" ("Template components", "Text header").
    pub const HEADER_MAX_PARAMETERS: usize = 1;
    /// The body: "Maximum of 1024 characters" ("Template components", "Body").
    pub const BODY_MAX_CHARS: usize = 1024;
    /// The body of a template that has no other component, once filled in: the Messages
    /// reference (parameter object, `text`) allows "32768 characters if body is the only
    /// component type included". DESIGN.md §2.4 says 1,024 throughout; Meta wins.
    pub const BODY_ONLY_MAX_CHARS: usize = 32_768;
    /// The footer: "60 characters maximum" ("Template components", "Footer").
    pub const FOOTER_MAX_CHARS: usize = 60;
    /// A button label: "25 characters maximum" ("Template components", every button).
    pub const BUTTON_LABEL_MAX_CHARS: usize = 25;
    /// A URL button's address: "2000 characters maximum" ("Template components", "URL
    /// buttons").
    pub const BUTTON_URL_MAX_CHARS: usize = 2_000;
    /// A phone number button's number: "20 characters maximum" ("Template components",
    /// "Phone number buttons").
    pub const BUTTON_PHONE_NUMBER_MAX_CHARS: usize = 20;
    /// The code a copy code button copies: "Maximum 20 characters" ("Template
    /// components", "Copy code buttons").
    pub const COPY_CODE_MAX_CHARS: usize = 20;
    /// "Templates can have a combination of up to 10 button components in total"
    /// ("Template components", "Buttons").
    pub const MAX_BUTTONS: usize = 10;
    /// "Templates are limited to 10 quick reply buttons."
    pub const MAX_QUICK_REPLY_BUTTONS: usize = 10;
    /// "Templates are limited to two URL buttons."
    pub const MAX_URL_BUTTONS: usize = 2;
    /// "Templates are limited to one phone number button."
    pub const MAX_PHONE_NUMBER_BUTTONS: usize = 1;
    /// "Templates are limited to one copy code button."
    pub const MAX_COPY_CODE_BUTTONS: usize = 1;
}

/// How a template's parameters are written: `{{1}}` or `{{first_name}}`.
///
/// Meta ("Template fundamentals", "Parameter formats"): "If you do not specify a format,
/// the template uses `positional` format by default", hence the `Default`.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash)]
pub enum ParameterFormat {
    /// `{{1}}`, `{{2}}`, …: "ordered array index numbers, starting from 1".
    #[default]
    Positional,
    /// `{{first_name}}`: "unique, single strings, composed of lowercase characters and
    /// underscores".
    Named,
}

impl ParameterFormat {
    /// Meta's name, as list answers return it (`POSITIONAL`, `NAMED`).
    pub fn as_str(self) -> &'static str {
        match self {
            ParameterFormat::Positional => "POSITIONAL",
            ParameterFormat::Named => "NAMED",
        }
    }

    /// Reads Meta's name in either case: creation requests use `named`, reads return
    /// `NAMED`.
    pub fn parse(name: &str) -> Option<Self> {
        match name.to_ascii_uppercase().as_str() {
            "POSITIONAL" => Some(ParameterFormat::Positional),
            "NAMED" => Some(ParameterFormat::Named),
            _ => None,
        }
    }
}

/// A template's category, which decides what it may say and how it is priced.
///
/// Meta ("Template fundamentals", "Categories"): "Each template must be categorized as
/// authentication, marketing, or utility."
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum TemplateCategory {
    Marketing,
    Utility,
    Authentication,
}

impl TemplateCategory {
    /// Meta's name, as list answers return it (`MARKETING`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            TemplateCategory::Marketing => "MARKETING",
            TemplateCategory::Utility => "UTILITY",
            TemplateCategory::Authentication => "AUTHENTICATION",
        }
    }

    /// Reads Meta's name in either case. The categories Meta retired in 2022
    /// (`TRANSACTIONAL`, `ACCOUNT_UPDATE`, …) give `None`: they cannot be chosen any more.
    pub fn parse(name: &str) -> Option<Self> {
        match name.to_ascii_uppercase().as_str() {
            "MARKETING" => Some(TemplateCategory::Marketing),
            "UTILITY" => Some(TemplateCategory::Utility),
            "AUTHENTICATION" => Some(TemplateCategory::Authentication),
            _ => None,
        }
    }

    /// The category a message sent from this template is priced under.
    pub fn message_category(self) -> MessageCategory {
        match self {
            TemplateCategory::Marketing => MessageCategory::Marketing,
            TemplateCategory::Utility => MessageCategory::Utility,
            TemplateCategory::Authentication => MessageCategory::Authentication,
        }
    }
}

/// What a template's header shows.
///
/// Meta ("Template components"): a text header, a media header (`IMAGE`, `VIDEO`, `GIF`,
/// `DOCUMENT`) or a location header. GIF headers exist only for the Marketing Messages
/// API, but a template read back from Meta may have one, so it is kept rather than lost.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum HeaderKind {
    Text,
    Image,
    Video,
    Gif,
    Document,
    Location,
}

impl HeaderKind {
    /// Meta's `format` (`TEXT`, `IMAGE`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            HeaderKind::Text => "TEXT",
            HeaderKind::Image => "IMAGE",
            HeaderKind::Video => "VIDEO",
            HeaderKind::Gif => "GIF",
            HeaderKind::Document => "DOCUMENT",
            HeaderKind::Location => "LOCATION",
        }
    }

    /// Reads Meta's `format` (creation) or a send parameter's `type`, in either case.
    pub fn parse(name: &str) -> Option<Self> {
        match name.to_ascii_uppercase().as_str() {
            "TEXT" => Some(HeaderKind::Text),
            "IMAGE" => Some(HeaderKind::Image),
            "VIDEO" => Some(HeaderKind::Video),
            "GIF" => Some(HeaderKind::Gif),
            "DOCUMENT" => Some(HeaderKind::Document),
            "LOCATION" => Some(HeaderKind::Location),
            _ => None,
        }
    }

    /// Whether the header is a media asset supplied at send time.
    pub fn is_media(self) -> bool {
        matches!(
            self,
            HeaderKind::Image | HeaderKind::Video | HeaderKind::Gif | HeaderKind::Document
        )
    }
}

/// Example values submitted with a template, which Meta's reviewers read.
///
/// Meta ("Template components"): positional examples are a list in placeholder order
/// (`body_text`, `header_text`); named examples are `{param_name, example}` pairs
/// (`body_text_named_params`, `header_text_named_params`) in any order. A media header's
/// asset handles (`header_handle`) are kept as a positional list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParameterExamples {
    Positional(Vec<String>),
    /// `(parameter name, example value)` pairs.
    Named(Vec<(String, String)>),
}

impl Default for ParameterExamples {
    fn default() -> Self {
        ParameterExamples::Positional(Vec::new())
    }
}

impl ParameterExamples {
    /// Whether no example was given.
    pub fn is_empty(&self) -> bool {
        match self {
            ParameterExamples::Positional(values) => values.is_empty(),
            ParameterExamples::Named(pairs) => pairs.is_empty(),
        }
    }
}

/// A template's header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// Text, media or location.
    pub kind: HeaderKind,
    /// The text of a `TEXT` header; `None` for the others.
    pub text: Option<String>,
    /// The example for a text header's parameter, or a media header's asset handle.
    pub example: ParameterExamples,
}

/// What a template button does.
///
/// Meta ("Template components", "Buttons") lists copy code, multi-product, one-time
/// password, voice call, phone number, quick reply, single-product and URL buttons, and
/// reads return a few more (`FLOW`, `CATALOG`, …); those Hourglass does not lint are kept as
/// `Other` with Meta's name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ButtonKind {
    QuickReply,
    Url,
    PhoneNumber,
    CopyCode,
    /// One-time password buttons of authentication templates; Meta stores them as `URL`.
    Otp,
    Flow,
    VoiceCall,
    /// Any other type, by Meta's upper-case name (`CATALOG`, `MPM`, `SPM`, …).
    Other(String),
}

impl ButtonKind {
    /// Meta's name: `QUICK_REPLY`, `URL`, `PHONE_NUMBER`, `COPY_CODE`, `OTP`, `FLOW`,
    /// `VOICE_CALL`, or the `Other` name.
    pub fn as_str(&self) -> &str {
        match self {
            ButtonKind::QuickReply => "QUICK_REPLY",
            ButtonKind::Url => "URL",
            ButtonKind::PhoneNumber => "PHONE_NUMBER",
            ButtonKind::CopyCode => "COPY_CODE",
            ButtonKind::Otp => "OTP",
            ButtonKind::Flow => "FLOW",
            ButtonKind::VoiceCall => "VOICE_CALL",
            ButtonKind::Other(name) => name,
        }
    }

    /// Reads a creation `type` (`QUICK_REPLY`) or a send `sub_type` (`quick_reply`), in
    /// either case. Never fails: an unknown name becomes `Other`.
    pub fn parse(name: &str) -> Self {
        match name.to_ascii_uppercase().as_str() {
            "QUICK_REPLY" => ButtonKind::QuickReply,
            "URL" => ButtonKind::Url,
            "PHONE_NUMBER" => ButtonKind::PhoneNumber,
            "COPY_CODE" => ButtonKind::CopyCode,
            "OTP" => ButtonKind::Otp,
            "FLOW" => ButtonKind::Flow,
            "VOICE_CALL" => ButtonKind::VoiceCall,
            other => ButtonKind::Other(other.to_owned()),
        }
    }

    /// Meta's send `sub_type`: the lower-case name.
    pub fn sub_type(&self) -> String {
        self.as_str().to_ascii_lowercase()
    }
}

/// One button of a template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Button {
    pub kind: ButtonKind,
    /// The label the user sees; empty for buttons that have none (copy code).
    pub text: String,
    /// A URL button's address, which may end with one parameter.
    pub url: Option<String>,
    /// A phone number button's number.
    pub phone_number: Option<String>,
    /// A URL button's example suffix, or a copy code button's example code.
    pub example: Vec<String>,
}

impl Button {
    /// A button of `kind` with label `text` and nothing else.
    pub fn new(kind: ButtonKind, text: impl Into<String>) -> Self {
        Button {
            kind,
            text: text.into(),
            url: None,
            phone_number: None,
            example: Vec::new(),
        }
    }

    /// The parameters in a URL button's address, in order of appearance.
    pub fn url_parameters(&self) -> Vec<Placeholder> {
        self.url
            .as_deref()
            .map(distinct_parameters)
            .unwrap_or_default()
    }
}

/// One parameter of a template, as written in its text.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Placeholder {
    /// `{{n}}`.
    Positional(u32),
    /// `{{name}}`.
    Named(String),
}

impl Placeholder {
    /// How a developer refers to it: `{{1}}`, or the bare name.
    pub fn label(&self) -> String {
        match self {
            Placeholder::Positional(number) => format!("{{{{{number}}}}}"),
            Placeholder::Named(name) => name.clone(),
        }
    }
}

/// A template as Meta defines it: what the creation request carries and what a list answer
/// returns, converted into plain values.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TemplateDefinition {
    /// With `language`, identifies the template.
    pub name: String,
    /// Meta's language code, e.g. `en_US`.
    pub language: String,
    /// `None` when missing or not one Meta accepts.
    pub category: Option<TemplateCategory>,
    pub parameter_format: ParameterFormat,
    pub header: Option<Header>,
    /// The body text, with its placeholders.
    pub body: String,
    /// Example values for the body's parameters.
    pub body_examples: ParameterExamples,
    pub footer: Option<String>,
    /// Buttons in the order Meta shows them; a send refers to them by this index.
    pub buttons: Vec<Button>,
}

impl TemplateDefinition {
    /// The body's parameters in order of first appearance, each once. Malformed
    /// placeholders (which `lint` reports) are left out.
    pub fn body_parameters(&self) -> Vec<Placeholder> {
        distinct_parameters(&self.body)
    }

    /// The text header's parameters, as `body_parameters`; empty for other headers.
    pub fn header_parameters(&self) -> Vec<Placeholder> {
        self.header_text()
            .map(distinct_parameters)
            .unwrap_or_default()
    }

    /// Whether any button is a quick reply (whose tap is a customer message).
    pub fn has_quick_replies(&self) -> bool {
        self.buttons
            .iter()
            .any(|button| button.kind == ButtonKind::QuickReply)
    }

    /// The text of a text header.
    fn header_text(&self) -> Option<&str> {
        self.header
            .as_ref()
            .filter(|header| header.kind == HeaderKind::Text)
            .and_then(|header| header.text.as_deref())
    }
}

/// The well-formed placeholders of `text`, in order of first appearance, each once.
fn distinct_parameters(text: &str) -> Vec<Placeholder> {
    let mut seen = Vec::new();
    for token in scan(text).placeholders {
        let placeholder = match token.kind {
            PlaceholderKind::Positional(number) => Placeholder::Positional(number),
            PlaceholderKind::Named(name) => Placeholder::Named(name),
            PlaceholderKind::Invalid => continue,
        };
        if !seen.contains(&placeholder) {
            seen.push(placeholder);
        }
    }
    seen
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_parameters_are_listed_once_in_order_of_first_appearance() {
        let template = TemplateDefinition {
            body: "Hi {{2}} and {{1}}, again {{2}}; {{bad name}}".into(),
            ..Default::default()
        };
        assert_eq!(
            template.body_parameters(),
            vec![Placeholder::Positional(2), Placeholder::Positional(1)]
        );
    }

    #[test]
    fn header_parameters_come_only_from_a_text_header() {
        let mut template = TemplateDefinition {
            header: Some(Header {
                kind: HeaderKind::Text,
                text: Some("Our {{sale}} is on".into()),
                example: ParameterExamples::default(),
            }),
            ..Default::default()
        };
        assert_eq!(
            template.header_parameters(),
            vec![Placeholder::Named("sale".into())]
        );
        template.header.as_mut().unwrap().kind = HeaderKind::Image;
        assert!(template.header_parameters().is_empty());
    }

    #[test]
    fn names_of_meta_are_read_in_either_case() {
        assert_eq!(
            ParameterFormat::parse("named"),
            Some(ParameterFormat::Named)
        );
        assert_eq!(
            ParameterFormat::parse("POSITIONAL"),
            Some(ParameterFormat::Positional)
        );
        assert_eq!(
            TemplateCategory::parse("marketing"),
            Some(TemplateCategory::Marketing)
        );
        assert_eq!(TemplateCategory::parse("TRANSACTIONAL"), None);
        assert_eq!(HeaderKind::parse("document"), Some(HeaderKind::Document));
        assert_eq!(ButtonKind::parse("quick_reply"), ButtonKind::QuickReply);
        assert_eq!(
            ButtonKind::parse("catalog"),
            ButtonKind::Other("CATALOG".into())
        );
        assert_eq!(ButtonKind::CopyCode.sub_type(), "copy_code");
    }

    #[test]
    fn a_template_category_is_priced_under_the_message_category_of_the_same_name() {
        assert_eq!(
            TemplateCategory::Utility.message_category(),
            MessageCategory::Utility
        );
        assert_eq!(
            TemplateCategory::Authentication.message_category().as_str(),
            "authentication"
        );
    }

    #[test]
    fn quick_replies_are_noticed() {
        let mut template = TemplateDefinition::default();
        assert!(!template.has_quick_replies());
        template
            .buttons
            .push(Button::new(ButtonKind::QuickReply, "Yes"));
        assert!(template.has_quick_replies());
    }
}
