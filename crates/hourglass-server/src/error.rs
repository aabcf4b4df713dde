//! The HTTP error types. `IntoResponse` only shapes the answer: no logging, no side
//! effects; internals are hidden behind a generic message and logged once by the
//! request-logging middleware.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

/// An error of Hourglass's own API: `{"error": {"code": "snake_case", "message": "…"}}`.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }

    /// A failure of ours: the caller learns only that it was ours and may retry.
    pub fn internal(error: impl std::fmt::Display) -> Self {
        tracing::error!(%error, "internal error");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "Hourglass could not complete this request (storage unavailable): retry shortly",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(json!({"error": {"code": self.code, "message": self.message}})),
        )
            .into_response()
    }
}

impl From<hourglass_store::StoreError> for ApiError {
    fn from(error: hourglass_store::StoreError) -> Self {
        ApiError::internal(error)
    }
}

impl From<crate::auth::AuthError> for ApiError {
    fn from(error: crate::auth::AuthError) -> Self {
        match error {
            crate::auth::AuthError::Store(e) => ApiError::internal(e),
            other => ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", other.to_string()),
        }
    }
}

/// An error on the Cloud API endpoint, in Meta's own envelope and HTTP status, so that
/// clients written for Meta handle it as they would Meta's.
#[derive(Debug)]
pub struct MetaApiError {
    pub code: i64,
    pub title: String,
    pub details: String,
}

impl MetaApiError {
    pub fn new(code: i64, title: &str, details: impl Into<String>) -> Self {
        MetaApiError {
            code,
            title: title.to_owned(),
            details: details.into(),
        }
    }
}

impl MetaApiError {
    /// Meta could not be reached (or did not answer in time): Meta's 131000, saying what
    /// did not happen and that the client may retry.
    pub fn upstream_unreachable(error: impl std::fmt::Display, what: &str) -> Self {
        MetaApiError::new(
            131000,
            "Something went wrong",
            format!("Hourglass could not reach Meta ({error}); {what}: retry it"),
        )
    }
}

/// Meta's answer, passed back with its status, as JSON.
pub fn meta_answer(status: u16, body: Vec<u8>) -> axum::response::Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    (
        status,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

/// A trace id in the style of Meta's `fbtrace_id`, so a refusal can be found in logs.
pub fn trace_id() -> String {
    let mut bytes = [0u8; 12];
    getrandom::fill(&mut bytes).expect("the OS has a random source");
    format!("HG{}", hex::encode(bytes))
}

impl IntoResponse for MetaApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(hourglass_meta::http_status_for(self.code))
            .unwrap_or(StatusCode::BAD_REQUEST);
        let body =
            hourglass_meta::error_envelope(self.code, &self.title, &self.details, &trace_id());
        (status, Json(body)).into_response()
    }
}
