//! The template registry over HTTP (`/v1/templates…`), its life cycle with Meta (create,
//! sync, delete), and the checks every template send goes through before it leaves:
//! known, approved, and filled in the way the template expects (DESIGN.md §2.4).

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use hourglass_core::template::{
    render, Finding, RenderParams, Rendered, RenderedHeader, TemplateCategory, TemplateDefinition,
};
use hourglass_core::{Instant, MessageCategory};
use hourglass_meta::send::{TEMPLATE_DISABLED, TEMPLATE_DOES_NOT_EXIST, TEMPLATE_PAUSED};
use hourglass_meta::template::{
    lint_template_json, parse_template_definition, render_error_code,
    render_params_from_components, template_info,
};
use hourglass_store::{TemplateChange, TemplateChangeSource, TemplateRecord};
use serde_json::{json, Value};

use crate::app::AppState;
use crate::auth::{authenticate, Principal};
use crate::error::{ApiError, MetaApiError};
use crate::time::{format_instant, now};

// ---- Which WABA a request is about ------------------------------------------------------

/// The WABA a `/v1/templates` request is about: `?waba_id=`, or the WABA of
/// `?phone_number_id=`, or the only WABA this key can see.
async fn waba_for_request(
    state: &AppState,
    headers: &HeaderMap,
    query: &HashMap<String, String>,
) -> Result<String, ApiError> {
    let principal = authenticate(state.store(), state.config().api_key.as_ref(), headers).await?;
    let visible = visible_wabas(state, &principal).await?;
    let unknown = |waba: &str| {
        ApiError::not_found(
            "unknown_waba",
            format!("WhatsApp Business Account {waba} is not known to Hourglass, or this API key may not use it"),
        )
    };
    if let Some(waba) = query.get("waba_id") {
        return match &visible {
            None => Ok(waba.clone()),
            Some(wabas) if wabas.contains(waba) => Ok(waba.clone()),
            Some(_) => Err(unknown(waba)),
        };
    }
    if let Some(number) = query.get("phone_number_id") {
        if !principal.may_use(number) {
            return Err(unknown_number(number));
        }
        return state
            .store()
            .business_number(number)
            .await?
            .and_then(|n| n.waba_id)
            .ok_or_else(|| {
                ApiError::not_found(
                    "unknown_waba",
                    format!("business number {number} has no known WhatsApp Business Account yet: pass ?waba_id=, or set it with PUT /v1/numbers/{number}"),
                )
            });
    }
    let wabas = match visible {
        Some(wabas) => wabas,
        None => state.store().template_registry().waba_ids().await?,
    };
    match wabas.as_slice() {
        [only] => Ok(only.clone()),
        [] => Err(ApiError::not_found(
            "unknown_waba",
            "Hourglass knows no WhatsApp Business Account yet: pass ?waba_id=",
        )),
        many => Err(ApiError::bad_request(
            "waba_required",
            format!(
                "several WhatsApp Business Accounts are known ({}): name one with ?waba_id=",
                many.join(", ")
            ),
        )),
    }
}

/// The WABAs a key may manage: `None` for an admin key (any); else those of its numbers.
async fn visible_wabas(
    state: &AppState,
    principal: &Principal,
) -> Result<Option<Vec<String>>, ApiError> {
    match principal {
        Principal::Admin => Ok(None),
        Principal::Numbers(numbers) => {
            let mut wabas = Vec::new();
            for number in numbers {
                if let Some(waba) = state
                    .store()
                    .business_number(number)
                    .await?
                    .and_then(|n| n.waba_id)
                {
                    if !wabas.contains(&waba) {
                        wabas.push(waba);
                    }
                }
            }
            Ok(Some(wabas))
        }
    }
}

fn unknown_number(phone_number_id: &str) -> ApiError {
    ApiError::not_found(
        "unknown_number",
        format!("business number {phone_number_id} is not known to Hourglass, or this API key may not use it"),
    )
}

// ---- JSON shapes ----------------------------------------------------------------------------

fn finding_json(template: Option<&str>, finding: &Finding) -> Value {
    json!({
        "template": template,
        "rule": finding.rule,
        "component": finding.component,
        "position": finding.position,
        "message": finding.message,
    })
}

fn instant_json(at: Option<Instant>) -> Value {
    at.map(|a| json!(format_instant(a))).unwrap_or(Value::Null)
}

fn definition_of(record: &TemplateRecord) -> Option<TemplateDefinition> {
    let text = record.definition.as_deref()?;
    let value: Value = serde_json::from_str(text).ok()?;
    parse_template_definition(&value).ok().map(|(d, _)| d)
}

pub fn template_json(record: &TemplateRecord) -> Value {
    let definition: Option<Value> = record
        .definition
        .as_deref()
        .and_then(|t| serde_json::from_str(t).ok());
    let parsed = definition_of(record);
    json!({
        "waba_id": record.waba_id,
        "name": record.name,
        "language": record.language,
        "meta_template_id": record.meta_template_id,
        "category": record.category,
        "status": record.status,
        "status_reason": record.status_reason,
        "quality": record.quality,
        "parameter_format": parsed.as_ref().map(|d| d.parameter_format.as_str().to_ascii_lowercase()),
        "has_quick_replies": parsed.as_ref().map(|d| d.has_quick_replies()),
        "components": definition.as_ref().and_then(|d| d.get("components")).cloned(),
        "status_at": instant_json(record.status_at),
        "category_at": instant_json(record.category_at),
        "quality_at": instant_json(record.quality_at),
        "updated_at": format_instant(record.updated_at),
    })
}

fn change_json(change: &TemplateChange) -> Value {
    json!({
        "kind": change.kind.as_str(),
        "value": change.value,
        "previous": change.previous,
        "reason": change.reason,
        "at": format_instant(change.at),
        "source": change.source.as_str(),
    })
}

pub fn rendered_json(rendered: &Rendered) -> Value {
    let header = rendered.header.as_ref().map(|h| match h {
        RenderedHeader::Text(text) => json!({"type": "text", "text": text}),
        RenderedHeader::Media(media) => json!({
            "type": media.kind.as_str().to_ascii_lowercase(),
            "source": match &media.source {
                hourglass_core::template::MediaSource::Link(link) => json!({"link": link}),
                hourglass_core::template::MediaSource::Id(id) => json!({"id": id}),
            },
            "filename": media.filename,
        }),
        RenderedHeader::Location(place) => json!({
            "type": "location",
            "latitude": place.latitude,
            "longitude": place.longitude,
            "name": place.name,
            "address": place.address,
        }),
    });
    let buttons: Vec<Value> = rendered
        .buttons
        .iter()
        .map(|b| {
            json!({
                "type": b.kind.as_str(),
                "text": b.text,
                "url": b.url,
                "phone_number": b.phone_number,
                "payload": b.payload,
            })
        })
        .collect();
    json!({
        "header": header,
        "body": rendered.body,
        "footer": rendered.footer,
        "buttons": buttons,
    })
}

/// A record of a template as Meta described it (a list item, or a creation and Meta's
/// answer to it), observed at `at`.
fn record_from_meta(waba_id: &str, definition: &Value, at: Instant) -> Option<TemplateRecord> {
    let name = definition.get("name")?.as_str()?.to_owned();
    let language = definition.get("language")?.as_str()?.to_owned();
    let info = template_info(definition);
    let category = info.category.map(|c| c.to_ascii_uppercase());
    let status = info.status.map(|s| s.to_ascii_uppercase());
    let quality = info.quality;
    Some(TemplateRecord {
        waba_id: waba_id.to_owned(),
        name,
        language,
        meta_template_id: info.id,
        status_at: status.as_ref().map(|_| at),
        category_at: category.as_ref().map(|_| at),
        quality_at: quality.as_ref().map(|_| at),
        category,
        status,
        status_reason: info.rejected_reason.filter(|r| r != "NONE"),
        quality,
        definition: Some(definition.to_string()),
        updated_at: at,
    })
}

/// Meta's answer when it refused a management call, passed on with its status.
fn meta_refused(status: u16, body: &[u8], what: &str) -> ApiError {
    let meta: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let message = meta["error"]["error_user_msg"]
        .as_str()
        .or(meta["error"]["message"].as_str())
        .unwrap_or("no readable error")
        .to_owned();
    let status = StatusCode::from_u16(status)
        .ok()
        .filter(|s| s.is_client_error() || s.is_server_error())
        .unwrap_or(StatusCode::BAD_GATEWAY);
    ApiError::new(
        status,
        "meta_refused",
        format!("Meta refused to {what}: {message}"),
    )
}

/// Meta's answer to a management call, or the error to give when Meta could not be
/// reached or refused.
fn accepted(
    answer: Result<crate::upstream::UpstreamResponse, crate::upstream::UpstreamError>,
    what: &str,
) -> Result<crate::upstream::UpstreamResponse, ApiError> {
    let answer = answer.map_err(upstream_unreachable)?;
    if !(200..300).contains(&answer.status) {
        return Err(meta_refused(answer.status, &answer.body, what));
    }
    Ok(answer)
}

fn upstream_unreachable(error: crate::upstream::UpstreamError) -> ApiError {
    ApiError::new(
        StatusCode::BAD_GATEWAY,
        "upstream_unreachable",
        format!("{error}: nothing was changed, retry shortly"),
    )
}

fn json_body(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request("invalid_body", format!("the body is not JSON: {e}")))
}

// ---- Handlers -------------------------------------------------------------------------------

/// `POST /v1/templates/lint`: one template in Meta's creation JSON, or an array of them.
/// Always 200 with the findings (none means nothing Meta publishes would reject it).
pub async fn lint_templates(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    authenticate(state.store(), state.config().api_key.as_ref(), &headers).await?;
    let body = json_body(&body)?;
    let templates = match &body {
        Value::Array(items) => items.iter().collect(),
        single => vec![single],
    };
    let mut findings = Vec::new();
    for template in templates {
        let name = template.get("name").and_then(Value::as_str);
        findings.extend(
            lint_template_json(template)
                .iter()
                .map(|f| finding_json(name, f)),
        );
    }
    Ok(Json(
        json!({"ok": findings.is_empty(), "findings": findings}),
    ))
}

/// `GET /v1/templates?waba_id=&status=`: the WABA's registry.
pub async fn list_templates(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let waba_id = waba_for_request(&state, &headers, &query).await?;
    let status = query.get("status").map(|s| s.to_ascii_uppercase());
    let templates: Vec<Value> = state
        .store()
        .template_registry()
        .templates(&waba_id)
        .await?
        .iter()
        .filter(|t| status.is_none() || t.status == status)
        .map(template_json)
        .collect();
    let synced_at = state
        .store()
        .template_registry()
        .synced_at(&waba_id)
        .await?;
    Ok(Json(json!({
        "waba_id": waba_id,
        "synced_at": instant_json(synced_at),
        "templates": templates,
    })))
}

/// `GET /v1/templates/{name}/{language}?waba_id=`: one template and its history.
pub async fn get_template(
    State(state): State<AppState>,
    Path((name, language)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let waba_id = waba_for_request(&state, &headers, &query).await?;
    let record = known_template(&state, &waba_id, &name, &language).await?;
    let history: Vec<Value> = state
        .store()
        .template_registry()
        .template_history(&waba_id, &name, &language)
        .await?
        .iter()
        .map(change_json)
        .collect();
    let mut answer = template_json(&record);
    answer["history"] = json!(history);
    Ok(Json(answer))
}

async fn known_template(
    state: &AppState,
    waba_id: &str,
    name: &str,
    language: &str,
) -> Result<TemplateRecord, ApiError> {
    state
        .store().template_registry().template(waba_id, name, language)
        .await?
        .ok_or_else(|| {
            ApiError::not_found(
                "unknown_template",
                format!("template `{name}` in `{language}` is not in the registry of WABA {waba_id}: create it, or sync with POST /v1/templates/sync"),
            )
        })
}

/// `POST /v1/templates?waba_id=`: lints Meta's creation JSON, then creates the template
/// with Meta (`PENDING` until Meta's review, whose verdict arrives as a webhook).
pub async fn create_template(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let waba_id = waba_for_request(&state, &headers, &query).await?;
    let definition = json_body(&body)?;
    // A component Hourglass does not model (carousel, limited-time offer) is Meta's to
    // judge; only Meta's published rules block a creation.
    let findings: Vec<Finding> = lint_template_json(&definition)
        .into_iter()
        .filter(|f| f.rule != "component-unsupported")
        .collect();
    if !findings.is_empty() {
        let name = definition.get("name").and_then(Value::as_str);
        let listed: Vec<Value> = findings.iter().map(|f| finding_json(name, f)).collect();
        return Ok((
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"error": {
                "code": "template_rules_broken",
                "message": format!("the template breaks {} of Meta's rules; nothing was sent to Meta: fix each finding and try again", findings.len()),
                "findings": listed,
            }})),
        )
            .into_response());
    }
    let stored = create_with_meta(&state, &waba_id, &definition).await?;
    Ok((StatusCode::CREATED, Json(template_json(&stored))).into_response())
}

/// Creates a template with Meta (already linted) and records Meta's answer in the
/// registry, with the creation in its history.
pub async fn create_with_meta(
    state: &AppState,
    waba_id: &str,
    definition: &Value,
) -> Result<TemplateRecord, ApiError> {
    // Meta's verdict (a webhook) follows its answer: the creation is dated before it.
    let observed = now();
    let answer = accepted(
        state.upstream().create_template(waba_id, definition).await,
        "create the template",
    )?;
    let created: Value = serde_json::from_slice(&answer.body).unwrap_or(Value::Null);
    let mut described = definition.clone();
    for key in ["id", "status", "category"] {
        if let Some(v) = created.get(key) {
            described[key] = v.clone();
        }
    }
    if described.get("status").is_none() {
        described["status"] = json!("PENDING");
    }
    let record = record_from_meta(waba_id, &described, observed).ok_or_else(|| {
        ApiError::bad_request("invalid_template", "a template needs `name` and `language`")
    })?;
    Ok(state
        .store()
        .template_registry()
        .save_template(&record, TemplateChangeSource::Create)
        .await?)
}

/// Reads every page of the WABA's template list from Meta and replaces the registry with
/// it. Returns the report and the number of pages read.
pub async fn sync_registry(
    state: &AppState,
    waba_id: &str,
) -> Result<(hourglass_store::TemplateSyncReport, u32, usize), ApiError> {
    let at = now();
    let page_size = state.config().meta.template_page_size;
    let mut listed = Vec::new();
    let mut after: Option<String> = None;
    let mut pages = 0u32;
    loop {
        let answer = accepted(
            state
                .upstream()
                .list_templates(waba_id, page_size, after.as_deref())
                .await,
            "list the templates",
        )?;
        pages += 1;
        let page: Value = serde_json::from_slice(&answer.body).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_GATEWAY,
                "upstream_invalid",
                format!("Meta's template list is not JSON ({e}): the registry was not changed"),
            )
        })?;
        // A sync replaces the registry, so a page that cannot be trusted stops it: a
        // partial list would read as deletions.
        let invalid = |what: &str| {
            ApiError::new(
                StatusCode::BAD_GATEWAY,
                "upstream_invalid",
                format!(
                    "Meta's template list {what}: the registry was not changed, retry the sync"
                ),
            )
        };
        let data = page["data"]
            .as_array()
            .ok_or_else(|| invalid("has a page without `data`"))?;
        for item in data {
            if let Some(record) = record_from_meta(waba_id, item, at) {
                listed.push(record);
            }
        }
        // Meta: the last page is the one without `paging.next`.
        if page["paging"].get("next").is_none_or(Value::is_null) {
            break;
        }
        match page["paging"]["cursors"]["after"].as_str() {
            Some(cursor) if Some(cursor) != after.as_deref() => after = Some(cursor.to_owned()),
            Some(_) => return Err(invalid("repeats its `after` cursor")),
            None => return Err(invalid("has `next` but no `after` cursor")),
        }
        if pages >= 1000 {
            return Err(ApiError::new(
                StatusCode::BAD_GATEWAY,
                "upstream_invalid",
                "Meta's template list did not end after 1000 pages: the registry was not changed",
            ));
        }
    }
    let count = listed.len();
    let report = state
        .store()
        .template_registry()
        .replace_templates(waba_id, &listed, at)
        .await?;
    Ok((report, pages, count))
}

/// `POST /v1/templates/sync?waba_id=`
pub async fn sync_templates(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let waba_id = waba_for_request(&state, &headers, &query).await?;
    let (report, pages, count) = sync_registry(&state, &waba_id).await?;
    Ok(Json(json!({
        "waba_id": waba_id,
        "pages": pages,
        "templates": count,
        "added": report.added,
        "changed": report.changed,
        "removed": report.removed,
        "unchanged": report.unchanged,
    })))
}

/// `DELETE /v1/templates/{name}?waba_id=&language=`: every language, or one.
pub async fn delete_template(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let waba_id = waba_for_request(&state, &headers, &query).await?;
    let language = query.get("language").map(String::as_str);
    // Meta deletes one language by its template id (`hsm_id`).
    let hsm_id = match language {
        None => None,
        Some(language) => Some(
            known_template(&state, &waba_id, &name, language)
                .await?
                .meta_template_id
                .ok_or_else(|| {
                    ApiError::bad_request(
                        "template_id_unknown",
                        format!("Meta's id of `{name}` in `{language}` is not known: sync first (POST /v1/templates/sync), or delete every language"),
                    )
                })?,
        ),
    };
    accepted(
        state
            .upstream()
            .delete_template(&waba_id, &name, hsm_id.as_deref())
            .await,
        "delete the template",
    )?;
    let gone = state
        .store()
        .template_registry()
        .delete_templates(&waba_id, &name, language, now())
        .await?;
    let gone: Vec<Value> = gone
        .iter()
        .map(|t| json!({"name": t.name, "language": t.language}))
        .collect();
    Ok(Json(json!({"deleted": gone})))
}

/// `POST /v1/templates/{name}/{language}/preview?waba_id=` with Meta's `components`, or
/// the plain form (`params`, `header`, `buttons`): the message as the customer would see
/// it, or the error Meta would give.
pub async fn preview_template(
    State(state): State<AppState>,
    Path((name, language)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let waba_id = waba_for_request(&state, &headers, &query).await?;
    let record = known_template(&state, &waba_id, &name, &language).await?;
    let definition = definition_of(&record).ok_or_else(|| {
        ApiError::new(
            StatusCode::CONFLICT,
            "template_content_unknown",
            format!("Hourglass knows `{name}` only from Meta's webhooks, not its content: sync (POST /v1/templates/sync) to preview it"),
        )
    })?;
    let request = if body.is_empty() {
        json!({})
    } else {
        json_body(&body)?
    };
    let params = params_of_request(Some(&definition), &request)
        .map_err(|e| ApiError::bad_request("invalid_parameters", e))?;
    match render(&definition, &params) {
        Ok(rendered) => Ok(Json(json!({
            "template": template_json(&record),
            "rendered": rendered_json(&rendered),
        }))
        .into_response()),
        Err(error) => {
            let (code, title) = render_error_code(&error);
            Ok((
                StatusCode::UNPROCESSABLE_ENTITY,
                Json(json!({"error": {
                    "code": "template_parameters_rejected",
                    "message": error.to_string(),
                    "meta_code": code,
                    "meta_title": title,
                }})),
            )
                .into_response())
        }
    }
}

/// The values of a preview or simple send: Meta's `components`, or the plain form.
pub fn params_of_request(
    definition: Option<&TemplateDefinition>,
    request: &Value,
) -> Result<RenderParams, String> {
    if let Some(components) = request.get("components") {
        return render_params_from_components(components).map_err(|e| e.to_string());
    }
    hourglass_meta::template::render_params_from_plain(
        definition,
        request.get("params").unwrap_or(&Value::Null),
        request.get("header"),
        request.get("buttons"),
    )
}

// ---- Checks on sends ------------------------------------------------------------------------

/// What the registry says about a template send that may go ahead.
pub struct CheckedTemplate {
    /// The category Meta will charge it as, when the registry knows it.
    pub category: Option<MessageCategory>,
    /// The message as the customer will see it, when the registry knows the content.
    pub rendered: Option<Rendered>,
}

/// Statuses in which Meta delivers a template. `FLAGGED` is a warning (quality is low and
/// a pause may follow), `REINSTATED` an approval restored, `LOCKED` only forbids edits
/// (Meta: "Template status" in "Template management").
fn is_sendable(status: &str) -> bool {
    matches!(status, "APPROVED" | "FLAGGED" | "REINSTATED" | "LOCKED")
}

/// Checks a template send against the number's WABA registry, as Meta would: a template
/// the registry knows must be sendable and filled in the way it expects; one it does not
/// know is refused only once the registry has been synced (before that, Hourglass cannot
/// tell "unknown" from "not synced", and lets Meta decide).
pub async fn check_template_send(
    state: &AppState,
    phone_number_id: &str,
    name: &str,
    language: &str,
    params: Result<RenderParams, String>,
) -> Result<CheckedTemplate, MetaApiError> {
    let unchecked = CheckedTemplate {
        category: None,
        rendered: None,
    };
    let store = state.store();
    let Some(waba_id) = store
        .business_number(phone_number_id)
        .await
        .map_err(storage_unavailable)?
        .and_then(|n| n.waba_id)
    else {
        return Ok(unchecked);
    };
    let record = store
        .template_registry()
        .template(&waba_id, name, language)
        .await
        .map_err(storage_unavailable)?;
    let Some(record) = record else {
        let synced_at = store
            .template_registry()
            .synced_at(&waba_id)
            .await
            .map_err(storage_unavailable)?;
        // A template created elsewhere since the last sync is new, not unknown: a sync
        // older than a minute is refreshed once before the template is refused.
        let synced_at = match synced_at {
            Some(at) if at.seconds_until(now()) > REGISTRY_FRESH_SECONDS => {
                match sync_registry(state, &waba_id).await {
                    Ok(_) => {
                        if let Some(record) = store
                            .template_registry()
                            .template(&waba_id, name, language)
                            .await
                            .map_err(storage_unavailable)?
                        {
                            return Box::pin(check_known_template(record, name, language, params))
                                .await;
                        }
                        Some(now())
                    }
                    // Meta cannot be asked: let Meta decide when the send reaches it.
                    Err(error) => {
                        tracing::warn!(message = %error.message, "could not refresh the template registry");
                        return Ok(unchecked);
                    }
                }
            }
            other => other,
        };
        return match synced_at {
            None => Ok(unchecked),
            Some(synced_at) => Err(MetaApiError::new(
                TEMPLATE_DOES_NOT_EXIST.0,
                TEMPLATE_DOES_NOT_EXIST.1,
                format!(
                    "template name ({name}) does not exist in {language}: WABA {waba_id} has no such template \
                     (registry synced at {}). Check the name and language, or create it (POST /v1/templates)",
                    format_instant(synced_at)
                ),
            )),
        };
    };
    check_known_template(record, name, language, params).await
}

/// How long a sync is trusted to know every template of its WABA.
const REGISTRY_FRESH_SECONDS: i64 = 60;

/// The checks of a send of a template the registry knows.
async fn check_known_template(
    record: TemplateRecord,
    name: &str,
    language: &str,
    params: Result<RenderParams, String>,
) -> Result<CheckedTemplate, MetaApiError> {
    match record.status.as_deref() {
        Some("PAUSED") => {
            return Err(MetaApiError::new(
                TEMPLATE_PAUSED.0,
                TEMPLATE_PAUSED.1,
                format!(
                    "template `{name}` ({language}) is paused by Meta for low quality{}: send another template, or wait until Meta unpauses it",
                    since(record.status_at)
                ),
            ))
        }
        Some("DISABLED") => {
            return Err(MetaApiError::new(
                TEMPLATE_DISABLED.0,
                TEMPLATE_DISABLED.1,
                format!(
                    "template `{name}` ({language}) is disabled by Meta{}: it can no longer be sent; create a new one",
                    since(record.status_at)
                ),
            ))
        }
        Some(status) if !is_sendable(status) => {
            return Err(MetaApiError::new(
                TEMPLATE_DOES_NOT_EXIST.0,
                TEMPLATE_DOES_NOT_EXIST.1,
                format!(
                    "template `{name}` ({language}) is {status}{}, not approved: only approved templates can be sent",
                    record
                        .status_reason
                        .as_deref()
                        .map(|r| format!(" ({r})"))
                        .unwrap_or_default()
                ),
            ))
        }
        _ => {}
    }
    let category = record
        .category
        .as_deref()
        .and_then(TemplateCategory::parse)
        .map(TemplateCategory::message_category);
    let unchecked = CheckedTemplate {
        category,
        rendered: None,
    };
    // Parameters are checked only where Hourglass models the whole template and the whole
    // send: a Flow button, a carousel or a limited-time offer is Meta's to judge.
    let Some(definition) = definition_of(&record) else {
        return Ok(unchecked);
    };
    if has_unmodelled_components(&record) {
        return Ok(unchecked);
    }
    let Ok(params) = params else {
        return Ok(unchecked);
    };
    let rendered = render(&definition, &params).map_err(|error| {
        let (code, title) = render_error_code(&error);
        MetaApiError::new(
            code,
            title,
            format!("template `{name}` ({language}): {error}"),
        )
    })?;
    Ok(CheckedTemplate {
        category,
        rendered: Some(rendered),
    })
}

fn has_unmodelled_components(record: &TemplateRecord) -> bool {
    let Some(value) = record
        .definition
        .as_deref()
        .and_then(|t| serde_json::from_str::<Value>(t).ok())
    else {
        return false;
    };
    parse_template_definition(&value)
        .is_ok_and(|(_, findings)| findings.iter().any(|f| f.rule == "component-unsupported"))
}

fn since(at: Option<Instant>) -> String {
    at.map(|a| format!(" since {}", format_instant(a)))
        .unwrap_or_default()
}

fn storage_unavailable(error: hourglass_store::StoreError) -> MetaApiError {
    tracing::error!(%error, "storage unavailable while checking a template send");
    MetaApiError::new(
        131000,
        "Something went wrong",
        "Hourglass could not check the template (storage unavailable); nothing was sent: retry shortly",
    )
}

/// Up to three approved templates that could reopen a conversation with a contact of
/// this number, quick-reply ones first (a tap on a quick reply is a customer message, so
/// it reopens the window), then by name.
pub async fn reopening_templates(state: &AppState, phone_number_id: &str) -> Vec<String> {
    let Ok(Some(waba_id)) = state
        .store()
        .business_number(phone_number_id)
        .await
        .map(|n| n.and_then(|n| n.waba_id))
    else {
        return Vec::new();
    };
    let Ok(templates) = state.store().template_registry().templates(&waba_id).await else {
        return Vec::new();
    };
    let mut approved: Vec<(bool, String)> = templates
        .iter()
        .filter(|t| t.status.as_deref().is_some_and(is_sendable))
        .map(|t| {
            let quick = definition_of(t).is_some_and(|d| d.has_quick_replies());
            (!quick, format!("{} ({})", t.name, t.language))
        })
        .collect();
    approved.sort();
    approved.into_iter().take(3).map(|(_, n)| n).collect()
}

/// For the CLI: lints template files in Meta's creation JSON. Each line is
/// `FILE: TEMPLATE: COMPONENT[ at character N]: message [rule]`, like a compiler.
pub fn lint_files(files: &[std::path::PathBuf]) -> Result<Vec<String>, String> {
    let mut lines = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(file)
            .map_err(|e| format!("{}: cannot read: {e}", file.display()))?;
        let value: Value = serde_json::from_str(&text).map_err(|e| {
            format!(
                "{}:{}:{}: not JSON: {e}",
                file.display(),
                e.line(),
                e.column()
            )
        })?;
        let templates = match &value {
            Value::Array(items) => items.iter().collect(),
            single => vec![single],
        };
        for template in templates {
            let name = template
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("(unnamed)");
            for finding in lint_template_json(template) {
                lines.push(format!("{}: {name}: {finding}", file.display()));
            }
        }
    }
    Ok(lines)
}
