//! The values of a template send: Meta's `template.components` read into the core's
//! `RenderParams`, Hourglass's simpler `/v1` shape read the same way, and `RenderParams`
//! written back as Meta's `components` so that Hourglass can send on a client's behalf.
//!
//! Follows the Cloud API "Messages" reference (template object: `components` with `type`
//! `header`, `body` or `button`; the parameter object with `type` `text`, `currency`,
//! `date_time`, `image`, `document`, `video`, `location`; the button parameter object with
//! `payload`, `text` or `coupon_code`), "Template fundamentals" (`parameter_name` for named
//! parameters) and "Template components" (the location header's send syntax).

use crate::send::INVALID_PARAMETER;
use hourglass_core::template::{
    BodyParams, ButtonKind, ButtonParam, HeaderKind, HeaderParam, LocationHeader, MediaHeader,
    MediaSource, Placeholder, RenderParams, TemplateDefinition,
};
use serde_json::{json, Map, Value};

/// Why a send's `template.components` cannot be read.
///
/// Meta answers a malformed component with 100, "Invalid parameter"; see
/// [`ComponentsError::meta_code`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ComponentsError {
    /// `components` is not an array.
    #[error("`template.components` must be an array of header, body and button components")]
    NotArray,
    /// One component is malformed.
    #[error("`template.components[{index}]`: {problem}")]
    Invalid {
        /// The component's position in `components`.
        index: usize,
        /// What is wrong and what to do.
        problem: String,
    },
}

impl ComponentsError {
    /// Meta's code and title for this refusal: 100, "Invalid parameter" ("Error codes").
    pub fn meta_code(&self) -> (i64, &'static str) {
        INVALID_PARAMETER
    }
}

/// Reads a send's `template.components` (Meta's shape, as in the `send_template_named.json`
/// and `send_template_positional.json` fixtures).
///
/// `currency` and `date_time` parameters become their `fallback_value`: the Messages
/// reference says "For Cloud API, we always use the fallback value, and we do not attempt to
/// localize using other optional fields." Button components without parameters are skipped.
pub fn render_params_from_components(components: &Value) -> Result<RenderParams, ComponentsError> {
    let components = match components {
        Value::Null => return Ok(RenderParams::default()),
        Value::Array(components) => components,
        _ => return Err(ComponentsError::NotArray),
    };
    let mut params = RenderParams::default();
    let mut seen_header = false;
    let mut seen_body = false;
    for (index, component) in components.iter().enumerate() {
        let invalid = |problem: String| ComponentsError::Invalid { index, problem };
        let object = component
            .as_object()
            .ok_or_else(|| invalid("a component must be an object with a `type`".into()))?;
        let kind = string(object, "type")
            .unwrap_or_default()
            .to_ascii_lowercase();
        let parameters = match object.get("parameters") {
            None | Some(Value::Null) => &[][..],
            Some(Value::Array(parameters)) => parameters.as_slice(),
            Some(_) => return Err(invalid("`parameters` must be an array".into())),
        };
        match kind.as_str() {
            "header" => {
                if std::mem::replace(&mut seen_header, true) {
                    return Err(invalid(
                        "there is a second header component: send one".into(),
                    ));
                }
                match parameters {
                    [] => {}
                    [parameter] => params.header = Some(header_param(parameter).map_err(invalid)?),
                    _ => {
                        return Err(invalid(
                            "a header takes one parameter (a text, a media object or a \
                             location)"
                                .into(),
                        ))
                    }
                }
            }
            "body" => {
                if std::mem::replace(&mut seen_body, true) {
                    return Err(invalid("there is a second body component: send one".into()));
                }
                params.body = body_params(parameters).map_err(invalid)?;
            }
            "button" => {
                let sub_type = string(object, "sub_type").ok_or_else(|| {
                    invalid("a button component needs its `sub_type`, e.g. \"quick_reply\"".into())
                })?;
                let button_index = match object.get("index") {
                    Some(Value::String(text)) => text.parse::<usize>().ok(),
                    Some(Value::Number(number)) => {
                        number.as_u64().and_then(|n| usize::try_from(n).ok())
                    }
                    _ => None,
                }
                .ok_or_else(|| {
                    invalid(
                        "a button component needs its `index`, the button's position from 0, \
                         e.g. \"0\""
                            .into(),
                    )
                })?;
                if let Some(parameter) = parameters.first() {
                    params.buttons.push(ButtonParam {
                        index: button_index,
                        sub_type: ButtonKind::parse(&sub_type),
                        value: button_value(parameter).map_err(invalid)?,
                    });
                }
            }
            "" => return Err(invalid("the component has no `type`".into())),
            other => {
                return Err(invalid(format!(
                    "{other:?} components take no parameters here: use header, body or button"
                )))
            }
        }
    }
    Ok(params)
}

/// A header parameter: `text`, a media object (`image`, `video`, `document`, `gif`) with
/// `link` or `id`, or a `location`.
fn header_param(parameter: &Value) -> Result<HeaderParam, String> {
    let object = parameter
        .as_object()
        .ok_or("a header parameter must be an object with a `type`")?;
    let kind = string(object, "type")
        .unwrap_or_default()
        .to_ascii_lowercase();
    match kind.as_str() {
        "text" | "currency" | "date_time" => text_value(object, &kind).map(HeaderParam::Text),
        "location" => {
            let location = object
                .get("location")
                .and_then(Value::as_object)
                .ok_or("a location parameter needs a `location` object")?;
            location_header(location).map(HeaderParam::Location)
        }
        other => match HeaderKind::parse(other).filter(|kind| kind.is_media()) {
            Some(kind) => {
                let media = object
                    .get(other)
                    .and_then(Value::as_object)
                    .ok_or_else(|| {
                        format!("a {other} parameter needs an `{other}` object with `link` or `id`")
                    })?;
                media_header(kind, media).map(HeaderParam::Media)
            }
            None => Err(format!(
                "{other:?} is not a header parameter type: use text, image, video, document or \
                 location"
            )),
        },
    }
}

fn media_header(kind: HeaderKind, media: &Map<String, Value>) -> Result<MediaHeader, String> {
    let source = match (string(media, "link"), string(media, "id")) {
        (Some(link), _) => MediaSource::Link(link),
        (None, Some(id)) => MediaSource::Id(id),
        (None, None) => {
            return Err(format!(
                "the {} needs a `link` (a public URL) or an `id` (uploaded media)",
                kind.as_str().to_ascii_lowercase()
            ))
        }
    };
    Ok(MediaHeader {
        kind,
        source,
        filename: string(media, "filename"),
    })
}

/// "Template components", "Location header", send parameters: `latitude`, `longitude`,
/// `name`, `address`.
fn location_header(location: &Map<String, Value>) -> Result<LocationHeader, String> {
    let coordinate = |key: &str| {
        string(location, key).ok_or(format!(
            "a location needs its `{key}` in decimal degrees, e.g. \"37.44\""
        ))
    };
    Ok(LocationHeader {
        latitude: coordinate("latitude")?,
        longitude: coordinate("longitude")?,
        name: string(location, "name"),
        address: string(location, "address"),
    })
}

/// Body parameters: all with `parameter_name` (a named template) or none (a positional one).
fn body_params(parameters: &[Value]) -> Result<BodyParams, String> {
    let mut values = Vec::with_capacity(parameters.len());
    for (position, parameter) in parameters.iter().enumerate() {
        let object = parameter.as_object().ok_or(format!(
            "parameters[{position}] must be an object with a `type`"
        ))?;
        let kind = string(object, "type")
            .unwrap_or_default()
            .to_ascii_lowercase();
        match kind.as_str() {
            "text" | "currency" | "date_time" => {}
            other => {
                return Err(format!(
                    "parameters[{position}] is of type {other:?}; body parameters are text, \
                     currency or date_time"
                ))
            }
        }
        let name = string(object, "parameter_name").filter(|name| !name.is_empty());
        values.push((name, text_value(object, &kind)?));
    }
    let named = values.iter().filter(|(name, _)| name.is_some()).count();
    if named == 0 {
        Ok(BodyParams::Positional(
            values.into_iter().map(|(_, value)| value).collect(),
        ))
    } else if named == values.len() {
        Ok(BodyParams::Named(
            values
                .into_iter()
                .filter_map(|(name, value)| Some((name?, value)))
                .collect(),
        ))
    } else {
        // Meta's answer to a named template's parameter without a name: "Parameter name is
        // missing or empty" (code 100).
        Err(
            "parameter name is missing or empty: give every parameter its `parameter_name` \
             (named template) or none of them (positional template)"
                .into(),
        )
    }
}

/// The text of a `text` parameter, or the `fallback_value` of a `currency` or `date_time`.
fn text_value(object: &Map<String, Value>, kind: &str) -> Result<String, String> {
    let value = match kind {
        "text" => string(object, "text"),
        _ => object
            .get(kind)
            .and_then(Value::as_object)
            .and_then(|inner| string(inner, "fallback_value")),
    };
    value.ok_or_else(|| match kind {
        "text" => "parameter 'text' is mandatory for a parameter of type 'text'".to_owned(),
        _ => format!("a {kind} parameter needs `{kind}.fallback_value`, which Cloud API shows"),
    })
}

/// A button parameter: `payload` (quick reply), `text` (URL suffix) or `coupon_code` (copy
/// code).
fn button_value(parameter: &Value) -> Result<String, String> {
    let object = parameter
        .as_object()
        .ok_or("a button parameter must be an object with a `type`")?;
    let kind = string(object, "type")
        .unwrap_or_default()
        .to_ascii_lowercase();
    let key = match kind.as_str() {
        "payload" => "payload",
        "text" => "text",
        "coupon_code" => "coupon_code",
        other => {
            return Err(format!(
                "{other:?} is not a button parameter type Hourglass reads: use payload, text or \
                 coupon_code"
            ))
        }
    };
    string(object, key).ok_or(format!("a {kind} button parameter needs its `{key}`"))
}

/// Reads Hourglass's simple send shape (the `/v1` API):
///
/// - `params`: an object of name → value for a named template, an array of values for a
///   positional one (an object with keys `"1"`, `"2"`, … works too), or `null`;
/// - `header`: a string (the text parameter, or a link or media id for a media header), or
///   `{"type": "image", "link": …}` / `{"type": "document", "id": …, "filename": …}` /
///   `{"type": "location", "latitude": …, "longitude": …}`;
/// - `buttons`: an object of button index (`"0"`, `"1"`, …) → value: the quick reply's
///   payload, the URL button's suffix or the copy code. Without the template definition
///   each value must say its type: `{"sub_type": "url", "value": "…"}`.
///
/// With the definition, the shapes are checked against it and string values are read as
/// the template expects; without it they are taken as given. Values may be strings or
/// numbers. The error says which field is wrong and how to fix it.
pub fn render_params_from_plain(
    definition: Option<&TemplateDefinition>,
    params: &Value,
    header: Option<&Value>,
    buttons: Option<&Value>,
) -> Result<RenderParams, String> {
    Ok(RenderParams {
        header: plain_header(definition, header)?,
        body: plain_body(definition, params)?,
        buttons: plain_buttons(definition, buttons)?,
    })
}

fn plain_body(
    definition: Option<&TemplateDefinition>,
    params: &Value,
) -> Result<BodyParams, String> {
    let parameters = definition.map(TemplateDefinition::body_parameters);
    let named_template = parameters
        .as_ref()
        .is_some_and(|ps| ps.iter().any(|p| matches!(p, Placeholder::Named(_))));
    match params {
        Value::Null => Ok(BodyParams::default()),
        Value::Array(values) => {
            if named_template {
                return Err(format!(
                    "`params`: template {:?} uses named parameters ({}): give an object of \
                     name → value",
                    definition.map(|d| d.name.as_str()).unwrap_or_default(),
                    labels(parameters.as_deref().unwrap_or_default())
                ));
            }
            let values = values
                .iter()
                .enumerate()
                .map(|(i, v)| scalar(v).ok_or(format!("`params[{i}]` must be a string")))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(BodyParams::Positional(values))
        }
        Value::Object(object) => {
            let numbered = !object.is_empty()
                && object
                    .keys()
                    .all(|key| !key.is_empty() && key.bytes().all(|b| b.is_ascii_digit()));
            if numbered && !named_template {
                let mut values = vec![None; object.len()];
                for (key, value) in object {
                    let slot = key
                        .parse::<usize>()
                        .ok()
                        .filter(|n| (1..=object.len()).contains(n))
                        .ok_or(format!(
                            "`params`: keys must run \"1\" to \"{}\" without gaps; {key:?} does not",
                            object.len()
                        ))?;
                    values[slot - 1] =
                        Some(scalar(value).ok_or(format!("`params.{key}` must be a string"))?);
                }
                return Ok(BodyParams::Positional(
                    values.into_iter().flatten().collect(),
                ));
            }
            if parameters.as_ref().is_some_and(|ps| !ps.is_empty()) && !named_template {
                return Err(format!(
                    "`params`: template {:?} uses positional parameters ({}): give an array of \
                     values in order",
                    definition.map(|d| d.name.as_str()).unwrap_or_default(),
                    labels(parameters.as_deref().unwrap_or_default())
                ));
            }
            object
                .iter()
                .map(|(name, value)| {
                    scalar(value)
                        .map(|value| (name.clone(), value))
                        .ok_or(format!("`params.{name}` must be a string"))
                })
                .collect::<Result<Vec<_>, _>>()
                .map(BodyParams::Named)
        }
        _ => Err("`params` must be an object of name → value, an array of values, or null".into()),
    }
}

fn plain_header(
    definition: Option<&TemplateDefinition>,
    header: Option<&Value>,
) -> Result<Option<HeaderParam>, String> {
    let expected = definition.and_then(|d| d.header.as_ref()).map(|h| h.kind);
    let header = match header {
        None | Some(Value::Null) => return Ok(None),
        Some(header) => header,
    };
    if let Some(text) = scalar(header) {
        return Ok(Some(match expected {
            // A media header's value is where the media is.
            Some(kind) if kind.is_media() => HeaderParam::Media(MediaHeader {
                kind,
                source: if text.starts_with("https://") || text.starts_with("http://") {
                    MediaSource::Link(text)
                } else {
                    MediaSource::Id(text)
                },
                filename: None,
            }),
            _ => HeaderParam::Text(text),
        }));
    }
    let object = header.as_object().ok_or(
        "`header` must be a string or an object like {\"type\": \"image\", \"link\": \"https://…\"}",
    )?;
    let kind = match string(object, "type") {
        Some(name) => HeaderKind::parse(&name).ok_or(format!(
            "`header.type` {name:?} is not a header type: use text, image, video, document or \
             location"
        ))?,
        None => {
            expected.ok_or("`header.type` is required: text, image, video, document or location")?
        }
    };
    let at = |key: &str| object.get(key).and_then(Value::as_object);
    let param = match kind {
        HeaderKind::Text => HeaderParam::Text(
            string(object, "text").ok_or("`header.text` is required for a text header")?,
        ),
        HeaderKind::Location => {
            let location = at("location").unwrap_or(object);
            HeaderParam::Location(
                location_header(location).map_err(|problem| format!("`header`: {problem}"))?,
            )
        }
        media => {
            // Meta's own shape ({"type": "image", "image": {"link": …}}) is accepted too.
            let inner = at(&media.as_str().to_ascii_lowercase()).unwrap_or(object);
            HeaderParam::Media(
                media_header(media, inner).map_err(|problem| format!("`header`: {problem}"))?,
            )
        }
    };
    Ok(Some(param))
}

fn plain_buttons(
    definition: Option<&TemplateDefinition>,
    buttons: Option<&Value>,
) -> Result<Vec<ButtonParam>, String> {
    let object = match buttons {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Object(object)) => object,
        Some(_) => {
            return Err(
                "`buttons` must be an object of button index → value, e.g. {\"0\": \"yes\"}".into(),
            )
        }
    };
    let mut params = Vec::with_capacity(object.len());
    for (key, value) in object {
        let index: usize = key.parse().map_err(|_| {
            format!("`buttons` keys are button positions from 0, like \"0\"; {key:?} is not")
        })?;
        let template_kind = definition
            .and_then(|d| d.buttons.get(index))
            .map(|b| b.kind.clone());
        let (sub_type, value) = match value {
            Value::Object(explicit) => {
                let sub_type = string(explicit, "sub_type")
                    .or_else(|| string(explicit, "type"))
                    .map(|name| ButtonKind::parse(&name))
                    .or(template_kind)
                    .ok_or(format!(
                        "`buttons.{key}.sub_type` is required, e.g. \"url\""
                    ))?;
                let value = ["value", "payload", "text", "coupon_code"]
                    .iter()
                    .find_map(|field| explicit.get(*field).and_then(scalar))
                    .ok_or(format!("`buttons.{key}.value` is required"))?;
                (sub_type, value)
            }
            other => {
                let value = scalar(other).ok_or(format!("`buttons.{key}` must be a string"))?;
                let sub_type = match (definition, template_kind) {
                    (_, Some(kind)) => kind,
                    (Some(definition), None) => {
                        return Err(format!(
                            "`buttons.{key}`: template {:?} has {} button(s), indexed from 0",
                            definition.name,
                            definition.buttons.len()
                        ))
                    }
                    (None, None) => {
                        return Err(format!(
                            "`buttons.{key}`: say what the value is for, e.g. {{\"sub_type\": \
                             \"url\", \"value\": \"…\"}} or {{\"sub_type\": \"quick_reply\", \
                             \"value\": \"…\"}}"
                        ))
                    }
                };
                (sub_type, value)
            }
        };
        params.push(ButtonParam {
            index,
            sub_type,
            value,
        });
    }
    params.sort_by_key(|param| param.index);
    Ok(params)
}

/// Builds Meta's `template.components` for a send from `params` (the inverse of
/// [`render_params_from_components`]).
///
/// The definition, when known, supplies what `params` does not carry: the `parameter_name`
/// of a named template's header or URL parameter ("Template fundamentals": named templates
/// send `parameter_name` with each value). Components without values are left out, as Meta
/// expects.
pub fn components_from_render_params(
    definition: Option<&TemplateDefinition>,
    params: &RenderParams,
) -> Value {
    let mut components = Vec::new();
    if let Some(header) = &params.header {
        let parameter = match header {
            HeaderParam::Text(text) => {
                let name = definition.and_then(|d| named(&d.header_parameters()));
                text_parameter(text, name)
            }
            HeaderParam::Media(media) => {
                let key = media.kind.as_str().to_ascii_lowercase();
                let mut object = match &media.source {
                    MediaSource::Link(link) => json!({"link": link}),
                    MediaSource::Id(id) => json!({"id": id}),
                };
                if let Some(filename) = &media.filename {
                    object["filename"] = json!(filename);
                }
                let mut parameter = Map::new();
                parameter.insert("type".into(), json!(key));
                parameter.insert(key, object);
                Value::Object(parameter)
            }
            HeaderParam::Location(location) => {
                let mut object = json!({
                    "latitude": location.latitude,
                    "longitude": location.longitude,
                });
                if let Some(name) = &location.name {
                    object["name"] = json!(name);
                }
                if let Some(address) = &location.address {
                    object["address"] = json!(address);
                }
                json!({"type": "location", "location": object})
            }
        };
        components.push(json!({"type": "header", "parameters": [parameter]}));
    }
    let body: Vec<Value> = match &params.body {
        BodyParams::Positional(values) => values.iter().map(|v| text_parameter(v, None)).collect(),
        BodyParams::Named(pairs) => pairs
            .iter()
            .map(|(name, value)| text_parameter(value, Some(name.clone())))
            .collect(),
    };
    if !body.is_empty() {
        components.push(json!({"type": "body", "parameters": body}));
    }
    let mut buttons: Vec<&ButtonParam> = params.buttons.iter().collect();
    buttons.sort_by_key(|button| button.index);
    for button in buttons {
        let parameter = match button.sub_type {
            ButtonKind::QuickReply => json!({"type": "payload", "payload": button.value}),
            ButtonKind::CopyCode => json!({"type": "coupon_code", "coupon_code": button.value}),
            _ => {
                let name = definition
                    .and_then(|d| d.buttons.get(button.index))
                    .and_then(|b| named(&b.url_parameters()));
                text_parameter(&button.value, name)
            }
        };
        components.push(json!({
            "type": "button",
            "sub_type": button.sub_type.sub_type(),
            "index": button.index.to_string(),
            "parameters": [parameter],
        }));
    }
    Value::Array(components)
}

/// `{"type": "text", "text": …}`, with `parameter_name` for a named parameter.
fn text_parameter(text: &str, name: Option<String>) -> Value {
    let mut parameter = json!({"type": "text", "text": text});
    if let Some(name) = name {
        parameter["parameter_name"] = json!(name);
    }
    parameter
}

/// The name of the first parameter, when it is named.
fn named(parameters: &[Placeholder]) -> Option<String> {
    match parameters.first() {
        Some(Placeholder::Named(name)) => Some(name.clone()),
        _ => None,
    }
}

fn labels(parameters: &[Placeholder]) -> String {
    parameters
        .iter()
        .map(|p| match p {
            Placeholder::Named(name) => format!("{{{{{name}}}}}"),
            positional => positional.label(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn string(object: &Map<String, Value>, key: &str) -> Option<String> {
    object.get(key).and_then(scalar)
}

/// A string, or a number or boolean written as text.
fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        Value::Bool(flag) => Some(flag.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
