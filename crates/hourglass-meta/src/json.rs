//! Small JSON helpers shared by the webhook and send mappings.

use serde::de::{self, Deserializer, Visitor};
use serde_json::Value;
use std::fmt;

/// Deserializes one of Meta's Unix timestamps.
///
/// Meta's webhook references (for example "messages webhook reference" and "Status
/// messages webhook reference") document `timestamp` and `expiration_timestamp` as
/// strings of digits, but the Graph API sends numbers elsewhere (`entry[].time`), so a
/// JSON integer is accepted too. Anything else is refused with a reason that quotes it.
pub(crate) fn timestamp<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    deserializer.deserialize_any(TimestampVisitor)
}

/// Like [`timestamp`], for a field that may be absent or `null`.
/// Use with `#[serde(default, deserialize_with = "...")]`.
pub(crate) fn optional_timestamp<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<i64>, D::Error> {
    deserializer.deserialize_option(OptionalTimestampVisitor)
}

struct TimestampVisitor;

impl<'de> Visitor<'de> for TimestampVisitor {
    type Value = i64;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a Unix timestamp in seconds, as a string of digits or an integer")
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<i64, E> {
        Ok(value)
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<i64, E> {
        i64::try_from(value).map_err(|_| E::invalid_value(de::Unexpected::Unsigned(value), &self))
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<i64, E> {
        let digits_only = !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit());
        let parsed = digits_only.then(|| value.parse::<i64>().ok()).flatten();
        parsed.ok_or_else(|| E::invalid_value(de::Unexpected::Str(value), &self))
    }
}

struct OptionalTimestampVisitor;

impl<'de> Visitor<'de> for OptionalTimestampVisitor {
    type Value = Option<i64>;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        TimestampVisitor.expecting(formatter)
    }

    fn visit_none<E: de::Error>(self) -> Result<Option<i64>, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Option<i64>, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Option<i64>, D::Error> {
        timestamp(deserializer).map(Some)
    }
}

/// The string at `path` inside `value`, if every step exists and the end is a string.
pub(crate) fn string_at(value: &Value, path: &[&str]) -> Option<String> {
    path.iter()
        .try_fold(value, |current, key| current.get(key))
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// The boolean at `key` inside `value`; `false` when absent or not a boolean.
pub(crate) fn flag(value: &Value, key: &str) -> bool {
    value.get(key).and_then(Value::as_bool).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    struct Stamped {
        #[serde(deserialize_with = "timestamp")]
        at: i64,
        #[serde(default, deserialize_with = "optional_timestamp")]
        until: Option<i64>,
    }

    fn stamped(json: &str) -> Result<Stamped, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }

    #[test]
    fn timestamps_are_read_from_digit_strings_and_integers() {
        assert_eq!(
            stamped(r#"{"at": "1749416383"}"#).unwrap().at,
            1_749_416_383
        );
        assert_eq!(stamped(r#"{"at": 1749416383}"#).unwrap().at, 1_749_416_383);
    }

    #[test]
    fn non_numeric_timestamps_are_refused_with_the_value_quoted() {
        for bad in [
            r#""abc""#, r#""""#, r#""-5""#, r#""1.5""#, "1.5", "true", "null",
        ] {
            let error = stamped(&format!(r#"{{"at": {bad}}}"#)).unwrap_err();
            assert!(error.contains("Unix timestamp"), "{bad}: {error}");
        }
        let error = stamped(r#"{"at": "abc"}"#).unwrap_err();
        assert!(error.contains("\"abc\""), "{error}");
    }

    #[test]
    fn optional_timestamps_may_be_absent_or_null_but_not_garbage() {
        assert_eq!(stamped(r#"{"at": 1}"#).unwrap().until, None);
        assert_eq!(stamped(r#"{"at": 1, "until": null}"#).unwrap().until, None);
        assert_eq!(
            stamped(r#"{"at": 1, "until": "1750116480"}"#)
                .unwrap()
                .until,
            Some(1_750_116_480)
        );
        assert!(stamped(r#"{"at": 1, "until": "soon"}"#).is_err());
    }

    #[test]
    fn string_at_follows_a_path_and_ignores_other_types() {
        let value = serde_json::json!({"profile": {"name": "Ana", "age": 3}});
        assert_eq!(string_at(&value, &["profile", "name"]), Some("Ana".into()));
        assert_eq!(string_at(&value, &["profile", "age"]), None);
        assert_eq!(string_at(&value, &["missing", "name"]), None);
    }
}
