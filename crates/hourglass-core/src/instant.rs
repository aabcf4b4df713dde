//! Instants as Meta counts them: whole seconds since the Unix epoch, UTC.

use std::fmt;

/// One hour, in seconds.
pub const HOUR: i64 = 3_600;
/// One day, in seconds.
pub const DAY: i64 = 24 * HOUR;

/// An instant in UTC with Meta's precision (whole seconds).
///
/// The core never asks what time it is: every instant it reasons about is handed in.
#[derive(Copy, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant(i64);

impl Instant {
    /// The instant `seconds` after 1970-01-01T00:00:00Z.
    pub const fn from_unix_seconds(seconds: i64) -> Self {
        Instant(seconds)
    }

    pub const fn unix_seconds(self) -> i64 {
        self.0
    }

    /// This instant moved by `seconds` (negative moves it back). Saturates instead of
    /// overflowing, so absurd inputs give absurd-but-defined answers rather than panics.
    pub const fn plus_seconds(self, seconds: i64) -> Self {
        Instant(self.0.saturating_add(seconds))
    }

    /// Whole seconds from `self` until `later` (negative if `later` is earlier).
    pub const fn seconds_until(self, later: Instant) -> i64 {
        later.0.saturating_sub(self.0)
    }
}

impl fmt::Debug for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "@{}", self.0)
    }
}
