//! API keys: shown once, stored as SHA-256 hashes, either admin or scoped to business
//! numbers. A key that may not see a number gets the same 404 as a number that does not
//! exist, so keys cannot probe for other tenants' numbers.

use axum::http::HeaderMap;
use hourglass_core::Instant;
use hourglass_store::{NewApiKey, Store, StoreError};
use sha2::{Digest, Sha256};

use crate::config::Secret;

/// Who is calling.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Principal {
    Admin,
    Numbers(Vec<String>),
}

impl Principal {
    pub fn may_use(&self, phone_number_id: &str) -> bool {
        match self {
            Principal::Admin => true,
            Principal::Numbers(numbers) => numbers.iter().any(|n| n == phone_number_id),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(
        "no API key: send `Authorization: Bearer <key>` (create one with `hourglass keys create`)"
    )]
    Missing,
    #[error("this API key is not known: check it, or create one with `hourglass keys create`")]
    Unknown,
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// A new random key: `hg_` and 64 hex digits (256 bits).
pub fn generate_key() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the OS has a random source");
    format!("hg_{}", hex::encode(bytes))
}

/// Creates and stores a key; returns it in clear, the only time it is seen.
pub async fn create_key(
    store: &dyn Store,
    label: &str,
    numbers: Option<Vec<String>>,
    now: Instant,
) -> Result<String, StoreError> {
    let key = generate_key();
    store
        .create_api_key(&NewApiKey {
            key_hash: hash_key(&key),
            label: label.to_owned(),
            numbers,
            created_at: now,
        })
        .await?;
    Ok(key)
}

pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

pub async fn authenticate(
    store: &dyn Store,
    bootstrap: Option<&Secret>,
    headers: &HeaderMap,
) -> Result<Principal, AuthError> {
    let key = bearer(headers).ok_or(AuthError::Missing)?;
    let hash = hash_key(key);
    // Comparing hashes keeps the comparison independent of where the keys differ.
    if bootstrap.is_some_and(|b| hash_key(b.expose()) == hash) {
        return Ok(Principal::Admin);
    }
    match store.find_api_key(&hash).await? {
        None => Err(AuthError::Unknown),
        Some(row) => Ok(match row.numbers {
            None => Principal::Admin,
            Some(numbers) => Principal::Numbers(numbers),
        }),
    }
}

/// Compares two secrets by their hashes, so the time taken does not depend on where they
/// first differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    hash_key(a) == hash_key(b)
}
