//! The `X-Hub-Signature-256` header Meta puts on every webhook request.
//!
//! Follows Meta's Graph API page "Webhooks: Getting Started", section "Event
//! Notifications → Validate Payloads": the header is `sha256=` followed by the
//! HMAC-SHA256 of the exact request bytes, keyed with the app secret, in lowercase hex.

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// What Meta puts before the hex digest.
const PREFIX: &str = "sha256=";

/// Length of a SHA-256 digest written in hex.
const HEX_DIGEST_LEN: usize = 64;

/// Why a webhook's signature was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The request carried no `X-Hub-Signature-256` header at all.
    #[error(
        "X-Hub-Signature-256 header is missing: Meta signs every webhook, so this request \
         did not come from Meta (sign test requests with the app secret)"
    )]
    Missing,
    /// The header is not `sha256=` followed by 64 hexadecimal digits.
    #[error(
        "X-Hub-Signature-256 is malformed: expected `sha256=` followed by 64 hexadecimal digits"
    )]
    Malformed,
    /// The header is well formed but is not the HMAC of this body under this secret.
    #[error(
        "X-Hub-Signature-256 does not match the body: check HOURGLASS_META_APP_SECRET is your \
         Meta app's secret, and that the body reaches Hourglass byte for byte"
    )]
    Mismatch,
}

/// Signs `body` the way Meta does: `"sha256=<lowercase hex HMAC-SHA256>"`.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = mac_for(secret);
    mac.update(body);
    format!("{PREFIX}{}", hex::encode(mac.finalize().into_bytes()))
}

/// Checks `header` (the `X-Hub-Signature-256` value, if any) against `body`.
///
/// The digest is compared in constant time. Upper-case hex digits are accepted: the
/// header names bytes, and `AB` and `ab` are the same byte; Meta itself sends lower case.
/// Surrounding whitespace is ignored; the `sha256=` prefix must be exactly that.
pub fn verify_signature(
    secret: &[u8],
    body: &[u8],
    header: Option<&str>,
) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?.trim();
    let digest_hex = header
        .strip_prefix(PREFIX)
        .ok_or(SignatureError::Malformed)?;
    if digest_hex.len() != HEX_DIGEST_LEN {
        return Err(SignatureError::Malformed);
    }
    let digest = hex::decode(digest_hex).map_err(|_| SignatureError::Malformed)?;
    let mut mac = mac_for(secret);
    mac.update(body);
    mac.verify_slice(&digest)
        .map_err(|_| SignatureError::Mismatch)
}

fn mac_for(secret: &[u8]) -> HmacSha256 {
    // HMAC is defined for keys of every length (long keys are hashed, short ones padded),
    // so this constructor cannot fail.
    HmacSha256::new_from_slice(secret).expect("HMAC accepts keys of any length")
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"app-secret";
    const BODY: &[u8] = br#"{"object":"whatsapp_business_account","entry":[]}"#;

    #[test]
    fn a_signature_made_by_sign_verifies() {
        let header = sign(SECRET, BODY);
        assert_eq!(verify_signature(SECRET, BODY, Some(&header)), Ok(()));
    }

    #[test]
    fn sign_matches_a_known_hmac_sha256_vector() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        assert_eq!(
            sign(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn a_signature_made_with_another_secret_is_a_mismatch() {
        let header = sign(b"another-secret", BODY);
        assert_eq!(
            verify_signature(SECRET, BODY, Some(&header)),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn a_body_changed_by_one_byte_is_a_mismatch() {
        let header = sign(SECRET, BODY);
        let mut body = BODY.to_vec();
        body.push(b' ');
        assert_eq!(
            verify_signature(SECRET, &body, Some(&header)),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn a_missing_header_is_reported_as_missing() {
        assert_eq!(
            verify_signature(SECRET, BODY, None),
            Err(SignatureError::Missing)
        );
    }

    #[test]
    fn headers_not_shaped_like_metas_are_malformed() {
        let good = sign(SECRET, BODY);
        let digest = good.strip_prefix("sha256=").unwrap();
        for header in [
            String::new(),
            digest.to_owned(),
            format!("sha1={digest}"),
            format!("SHA256={digest}"),
            format!("sha256={}", &digest[..63]),
            format!("sha256={digest}0"),
            format!("sha256={}g", &digest[..63]),
        ] {
            assert_eq!(
                verify_signature(SECRET, BODY, Some(&header)),
                Err(SignatureError::Malformed),
                "header {header:?}"
            );
        }
    }

    #[test]
    fn upper_case_hex_digits_are_accepted() {
        let good = sign(SECRET, BODY);
        let upper = format!("sha256={}", good["sha256=".len()..].to_uppercase());
        assert_eq!(verify_signature(SECRET, BODY, Some(&upper)), Ok(()));
    }

    #[test]
    fn surrounding_whitespace_is_ignored() {
        let header = format!("  {} ", sign(SECRET, BODY));
        assert_eq!(verify_signature(SECRET, BODY, Some(&header)), Ok(()));
    }

    #[test]
    fn the_mismatch_message_names_the_setting_to_check() {
        let message = SignatureError::Mismatch.to_string();
        assert!(message.contains("HOURGLASS_META_APP_SECRET"), "{message}");
    }
}
