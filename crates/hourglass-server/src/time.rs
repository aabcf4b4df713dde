//! Instants on the wire and time zones: the one place that knows about calendars, so the
//! rule core only compares seconds.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use hourglass_core::{meta_pricing_eras, CivilDate, Instant, ResolvedEras};
use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::Timestamp;

/// Reads an instant as the API accepts it: Unix seconds, or RFC 3339.
pub fn parse_instant(text: &str) -> Result<Instant, String> {
    let text = text.trim();
    if let Ok(seconds) = text.parse::<i64>() {
        return Ok(Instant::from_unix_seconds(seconds));
    }
    text.parse::<Timestamp>()
        .map(|t| Instant::from_unix_seconds(t.as_second()))
        .map_err(|e| {
            format!("`{text}` is not an instant: use RFC 3339 (2026-11-21T10:00:00Z) or Unix seconds ({e})")
        })
}

/// RFC 3339 in UTC, whole seconds: `2026-11-21T10:00:00Z`.
pub fn format_instant(instant: Instant) -> String {
    match Timestamp::from_second(instant.unix_seconds()) {
        Ok(t) => t.to_string(),
        Err(_) => instant.unix_seconds().to_string(),
    }
}

/// The instant now, as whole seconds. The edges read the clock; the core never does.
pub fn now() -> Instant {
    Instant::from_unix_seconds(Timestamp::now().as_second())
}

/// What a business number's time zone decides: when pricing eras begin and when its
/// calendar months (for the monthly free allowance) start.
pub struct NumberCalendar {
    zone: TimeZone,
    pub eras: ResolvedEras,
}

impl NumberCalendar {
    pub fn new(zone_name: &str) -> Result<Self, String> {
        let zone = TimeZone::get(zone_name).map_err(|e| {
            format!("`{zone_name}` is not a time zone: use an IANA name such as UTC or America/Sao_Paulo ({e})")
        })?;
        let eras = ResolvedEras::resolve(meta_pricing_eras(), |date| midnight_in(&zone, date));
        Ok(NumberCalendar { zone, eras })
    }

    /// 00:00 of the first day of the calendar month containing `at`, in this zone.
    pub fn month_start(&self, at: Instant) -> Instant {
        let Ok(timestamp) = Timestamp::from_second(at.unix_seconds()) else {
            return at;
        };
        let local = timestamp.to_zoned(self.zone.clone());
        let first = local.date().first_of_month();
        first
            .to_zoned(self.zone.clone())
            .map(|z| Instant::from_unix_seconds(z.timestamp().as_second()))
            .unwrap_or(at)
    }
}

fn midnight_in(zone: &TimeZone, date: CivilDate) -> Instant {
    Date::new(date.year, date.month, date.day)
        .and_then(|d| d.to_zoned(zone.clone()))
        .map(|z| Instant::from_unix_seconds(z.timestamp().as_second()))
        .unwrap_or_else(|_| hourglass_core::pricing::utc_midnight(date))
}

/// How long a business number's time zone is remembered before it is read again (another
/// process may have changed it).
const ZONE_TTL: std::time::Duration = std::time::Duration::from_secs(30);

/// Calendars by time zone name, built once each, and which zone each number is in.
#[derive(Default)]
pub struct Calendars {
    by_zone: RwLock<HashMap<String, Arc<NumberCalendar>>>,
    by_number: RwLock<HashMap<String, (std::time::Instant, Arc<NumberCalendar>)>>,
}

impl Calendars {
    /// The calendar remembered for a number, if it is fresh.
    pub fn of_number(&self, phone_number_id: &str) -> Option<Arc<NumberCalendar>> {
        let numbers = self.by_number.read().expect("calendar cache poisoned");
        numbers
            .get(phone_number_id)
            .filter(|(at, _)| at.elapsed() < ZONE_TTL)
            .map(|(_, calendar)| calendar.clone())
    }

    pub fn remember_number(&self, phone_number_id: &str, calendar: Arc<NumberCalendar>) {
        self.by_number
            .write()
            .expect("calendar cache poisoned")
            .insert(
                phone_number_id.to_owned(),
                (std::time::Instant::now(), calendar),
            );
    }

    pub fn forget_number(&self, phone_number_id: &str) {
        self.by_number
            .write()
            .expect("calendar cache poisoned")
            .remove(phone_number_id);
    }

    pub fn get(&self, zone_name: &str) -> Result<Arc<NumberCalendar>, String> {
        if let Some(found) = self
            .by_zone
            .read()
            .expect("calendar cache poisoned")
            .get(zone_name)
        {
            return Ok(found.clone());
        }
        let calendar = Arc::new(NumberCalendar::new(zone_name)?);
        self.by_zone
            .write()
            .expect("calendar cache poisoned")
            .insert(zone_name.to_owned(), calendar.clone());
        Ok(calendar)
    }
}

/// Milliseconds since the Unix epoch, for rate limits (the only place Hourglass needs
/// finer than Meta's whole seconds).
pub fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A number of seconds as a person would say it: `7 days`, `3 hours`, `90 seconds`.
pub fn describe_duration(seconds: i64) -> String {
    match seconds {
        s if s >= 2 * 86_400 && s % 86_400 == 0 => format!("{} days", s / 86_400),
        s if s >= 2 * 3600 && s % 3600 == 0 => format!("{} hours", s / 3600),
        s if s >= 120 && s % 60 == 0 => format!("{} minutes", s / 60),
        s => format!("{s} seconds"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_parse_from_rfc3339_and_unix_seconds() {
        assert_eq!(
            parse_instant("1790812800").unwrap().unix_seconds(),
            1_790_812_800
        );
        assert_eq!(
            parse_instant("2026-10-01T00:00:00Z")
                .unwrap()
                .unix_seconds(),
            1_790_812_800
        );
        assert_eq!(
            parse_instant("2026-10-01T02:00:00+02:00")
                .unwrap()
                .unix_seconds(),
            1_790_812_800
        );
        assert!(parse_instant("yesterday").unwrap_err().contains("RFC 3339"));
        assert_eq!(
            format_instant(Instant::from_unix_seconds(1_790_812_800)),
            "2026-10-01T00:00:00Z"
        );
    }

    #[test]
    fn month_start_follows_the_time_zone() {
        let sao_paulo = NumberCalendar::new("America/Sao_Paulo").unwrap();
        // 2026-11-01T01:00:00Z is still 31 October, 22:00, in São Paulo (UTC-3).
        let at = parse_instant("2026-11-01T01:00:00Z").unwrap();
        assert_eq!(
            format_instant(sao_paulo.month_start(at)),
            "2026-10-01T03:00:00Z"
        );
        assert_eq!(
            sao_paulo
                .eras
                .era_at(parse_instant("2026-10-01T02:59:59Z").unwrap())
                .name,
            "PMP_2025"
        );
        assert_eq!(
            sao_paulo
                .eras
                .era_at(parse_instant("2026-10-01T03:00:00Z").unwrap())
                .name,
            "PMP_2026"
        );
    }
}
