//! Media customers send (DESIGN.md §2.7): downloaded from Meta as soon as their message is
//! stored (Meta's URL expires in minutes, the id in days), checked against Meta's
//! SHA-256, kept on disk under `media_dir` by content, and served to authorised callers at
//! `GET /v1/media/{id}`. Uploads for outbound media pass through to Meta in Meta's shape.

use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use hourglass_store::{MediaOutcome, MediaRow};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::app::AppState;
use crate::auth::authenticate;
use crate::error::{meta_answer, ApiError, MetaApiError};
use crate::time::now;

const LEASE_SECONDS: i64 = 120;
/// Attempts before a medium is given up; with the backoff below (doubling, at most an
/// hour), about eight hours.
const MAX_ATTEMPTS: i64 = 20;

/// Whether `bytes` match Meta's checksum, which webhooks give in base64 and the media
/// endpoint in hex.
pub fn matches_checksum(bytes: &[u8], expected: &str) -> bool {
    let digest = Sha256::digest(bytes);
    let expected = expected.trim();
    expected.eq_ignore_ascii_case(&hex::encode(digest))
        || expected == base64::engine::general_purpose::STANDARD.encode(digest)
}

fn retry(row: &MediaRow, error: String) -> MediaOutcome {
    if row.attempts >= MAX_ATTEMPTS {
        return MediaOutcome::Failed {
            error: format!("gave up after {} attempts: {error}", row.attempts),
        };
    }
    let delay = 2i64
        .saturating_pow(row.attempts.clamp(1, 20) as u32 - 1)
        .min(3600);
    MediaOutcome::Retry {
        next_attempt_at: now().plus_seconds(delay),
        error,
    }
}

/// Where a file with this digest lives, relative to the media directory.
fn relative_path(digest_hex: &str) -> PathBuf {
    Path::new(&digest_hex[..2]).join(digest_hex)
}

async fn fetch(state: &AppState, row: &MediaRow) -> MediaOutcome {
    let upstream = state.upstream();
    let info = match upstream.media_info(&row.media_id).await {
        Ok(info) => info,
        Err(error) => return retry(row, error.to_string()),
    };
    let described: Value = serde_json::from_slice(&info.body).unwrap_or(Value::Null);
    if !(200..300).contains(&info.status) {
        let code = described["error"]["code"].as_i64();
        let message = described["error"]["message"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        // An id Meta no longer knows will not come back.
        if code == Some(100) || info.status == 404 {
            return MediaOutcome::Failed {
                error: format!("Meta no longer has media {}: {message}", row.media_id),
            };
        }
        return retry(
            row,
            format!("Meta answered HTTP {}: {message}", info.status),
        );
    }
    let Some(url) = described["url"].as_str() else {
        return retry(row, "Meta's answer about the media has no `url`".into());
    };
    let download = match upstream.download(url).await {
        Ok(download) if (200..300).contains(&download.status) => download,
        Ok(download) => {
            return retry(
                row,
                format!("the download answered HTTP {}", download.status),
            )
        }
        Err(error) => return retry(row, error.to_string()),
    };
    let expected = row
        .sha256
        .clone()
        .or_else(|| described["sha256"].as_str().map(str::to_owned));
    if let Some(expected) = &expected {
        if !matches_checksum(&download.body, expected) {
            return retry(
                row,
                format!(
                    "the bytes do not match Meta's SHA-256 ({expected}): downloaded again later"
                ),
            );
        }
    }
    let digest = hex::encode(Sha256::digest(&download.body));
    let relative = relative_path(&digest);
    let target = Path::new(&state.config().media_dir).join(&relative);
    if let Err(error) = write_atomically(&target, &download.body).await {
        return retry(
            row,
            format!("could not write {}: {error}", target.display()),
        );
    }
    MediaOutcome::Stored {
        path: relative.to_string_lossy().into_owned(),
        size: download.body.len() as i64,
        mime_type: row
            .mime_type
            .clone()
            .or_else(|| described["mime_type"].as_str().map(str::to_owned)),
    }
}

/// Writes a file whole or not at all: into a temporary name, synced, then renamed.
async fn write_atomically(target: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = target.parent() {
        tokio::fs::create_dir_all(dir).await?;
    }
    let temporary = target.with_extension("partial");
    let mut file = tokio::fs::File::create(&temporary).await?;
    tokio::io::AsyncWriteExt::write_all(&mut file, bytes).await?;
    file.sync_all().await?;
    drop(file);
    tokio::fs::rename(&temporary, target).await
}

/// Runs the media worker until the runtime stops.
pub async fn run(state: AppState) {
    loop {
        match state
            .store()
            .media()
            .claim_media(now(), LEASE_SECONDS, 8)
            .await
        {
            Ok(rows) if !rows.is_empty() => {
                let mut fetches = tokio::task::JoinSet::new();
                for row in rows {
                    let state = state.clone();
                    fetches.spawn(async move {
                        let outcome = fetch(&state, &row).await;
                        if let MediaOutcome::Failed { error } | MediaOutcome::Retry { error, .. } =
                            &outcome
                        {
                            tracing::warn!(media_id = %row.media_id, %error, "media not downloaded");
                        }
                        if let Err(error) = state
                            .store()
                            .media()
                            .finish_media(&row.media_id, row.attempts, &outcome)
                            .await
                        {
                            tracing::error!(%error, "media: could not record a download");
                        }
                    });
                }
                while fetches.join_next().await.is_some() {}
                continue;
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "media: could not claim downloads"),
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// `GET /v1/media/{media_id}`: the bytes, with their content type.
pub async fn serve_media(
    State(state): State<AppState>,
    UrlPath(media_id): UrlPath<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let principal = authenticate(state.store(), state.config().api_key.as_ref(), &headers).await?;
    let unknown = || {
        ApiError::not_found(
            "unknown_media",
            format!("media {media_id} is not known to Hourglass, or this API key may not use it"),
        )
    };
    let row = state
        .store()
        .media()
        .media(&media_id)
        .await?
        .filter(|r| principal.may_use(&r.phone_number_id))
        .ok_or_else(unknown)?;
    match (row.state.as_str(), &row.path) {
        ("stored", Some(path)) => {
            let file = Path::new(&state.config().media_dir).join(path);
            let bytes = tokio::fs::read(&file).await.map_err(|e| {
                ApiError::internal(format!("media file {} unreadable: {e}", file.display()))
            })?;
            let content_type = row
                .mime_type
                .unwrap_or_else(|| "application/octet-stream".into());
            Ok((
                [
                    (header::CONTENT_TYPE, content_type),
                    (header::CACHE_CONTROL, "private, max-age=86400".into()),
                ],
                bytes,
            )
                .into_response())
        }
        ("failed", _) => Err(ApiError::new(
            StatusCode::GONE,
            "media_unavailable",
            format!(
                "media {media_id} could not be downloaded from Meta: {}",
                row.error.unwrap_or_default()
            ),
        )),
        _ => Err(ApiError::new(
            StatusCode::CONFLICT,
            "media_pending",
            format!(
                "media {media_id} is still being downloaded from Meta (attempt {}): retry in a few seconds",
                row.attempts
            ),
        )),
    }
}

/// `POST /{version}/{phone_number_id}/media`: Meta's multipart upload, passed on as is.
pub async fn upload_media(
    State(state): State<AppState>,
    UrlPath((version, phone_number_id)): UrlPath<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, MetaApiError> {
    let principal = authenticate(state.store(), state.config().api_key.as_ref(), &headers)
        .await
        .map_err(|e| MetaApiError::new(190, "Invalid OAuth access token", e.to_string()))?;
    if !principal.may_use(&phone_number_id) {
        return Err(MetaApiError::new(
            100,
            "Invalid parameter",
            format!("Unsupported post request. Object with ID '{phone_number_id}' does not exist, or this API key may not use it"),
        ));
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .filter(|c| c.starts_with("multipart/form-data"))
        .ok_or_else(|| {
            MetaApiError::new(
                100,
                "Invalid parameter",
                "upload media as multipart/form-data with `file`, `type` and `messaging_product=whatsapp`",
            )
        })?;
    let answer = state
        .upstream()
        .upload_media(&version, &phone_number_id, content_type, &body)
        .await
        .map_err(|error| MetaApiError::upstream_unreachable(error, "nothing was uploaded"))?;
    Ok(meta_answer(answer.status, answer.body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_are_accepted_in_base64_and_in_hex() {
        let bytes = b"voice";
        let digest = Sha256::digest(bytes);
        assert!(matches_checksum(bytes, &hex::encode(digest)));
        assert!(matches_checksum(
            bytes,
            &base64::engine::general_purpose::STANDARD.encode(digest)
        ));
        assert!(!matches_checksum(b"other", &hex::encode(digest)));
    }
}
