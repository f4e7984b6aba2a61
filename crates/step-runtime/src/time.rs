//! Points in time as the pipeline writes them: UTC, millisecond precision, computed from the
//! clock's numbers (never by cutting up formatted text).

use std::time::{SystemTime, UNIX_EPOCH};

/// A UTC calendar date and time of day, to the millisecond.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct UtcDateTime {
    pub year: u16,
    /// 1 to 12.
    pub month: u8,
    /// 1 to 31.
    pub day: u8,
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
    pub millis: u16,
}

impl UtcDateTime {
    /// The UTC date and time of `t` (a time before 1970 counts as 1970-01-01T00:00:00Z).
    pub fn of(t: SystemTime) -> UtcDateTime {
        let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
        let secs = since.as_secs();
        let (year, month, day) = civil_from_days(secs / 86_400);
        let of_day = secs % 86_400;
        UtcDateTime {
            year,
            month,
            day,
            hour: (of_day / 3_600) as u8,
            minute: (of_day % 3_600 / 60) as u8,
            second: (of_day % 60) as u8,
            millis: since.subsec_millis() as u16,
        }
    }

    /// ISO 8601 / RFC 3339: `2026-11-21T12:00:00.123Z` (ledger rows, `--json`).
    pub fn iso8601(&self) -> String {
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            self.year, self.month, self.day, self.hour, self.minute, self.second, self.millis
        )
    }

    /// `20261121T120000.123Z`: sorts as time and needs no escaping in a file name or URL
    /// (kept generations, state DB snapshots).
    pub fn compact(&self) -> String {
        format!(
            "{:04}{:02}{:02}T{:02}{:02}{:02}.{:03}Z",
            self.year, self.month, self.day, self.hour, self.minute, self.second, self.millis
        )
    }

    /// `2026-11-21 12:00:00.123`: a SQL `TIMESTAMP` literal's text (UTC, no zone).
    pub fn sql_timestamp(&self) -> String {
        format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:03}",
            self.year, self.month, self.day, self.hour, self.minute, self.second, self.millis
        )
    }
}

/// ISO-8601 UTC text with milliseconds, e.g. `2026-11-21T12:00:00.123Z`.
pub fn iso8601(t: SystemTime) -> String {
    UtcDateTime::of(t).iso8601()
}

/// Year, month and day of the `days`-th day after 1970-01-01 (Howard Hinnant's
/// `civil_from_days`, for the proleptic Gregorian calendar).
fn civil_from_days(days: u64) -> (u16, u8, u8) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year as u16, month, day)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn agrees_with_rfc3339_text_across_leap_years_and_month_ends() {
        // Every 7 hours and 13 milliseconds from 1970 to 2110: leap days, centuries, year ends.
        let step = Duration::from_millis(7 * 3_600_000 + 13);
        let mut t = UNIX_EPOCH;
        while t < UNIX_EPOCH + Duration::from_secs(140 * 365 * 86_400) {
            let text = humantime::format_rfc3339_millis(t).to_string();
            let utc = UtcDateTime::of(t);
            assert_eq!(utc.iso8601(), text);
            assert_eq!(utc.compact(), text.replace(['-', ':'], ""));
            assert_eq!(utc.sql_timestamp(), text.replace('T', " ").replace('Z', ""));
            t += step;
        }
    }

    #[test]
    fn month_boundaries_in_utc() {
        let utc = |secs: u64| UtcDateTime::of(UNIX_EPOCH + Duration::from_secs(secs));
        assert_eq!((utc(0).year, utc(0).month, utc(0).day), (1970, 1, 1));
        // 2026-11-30T23:59:59Z and one second later.
        let t = utc(1_796_083_199);
        assert_eq!((t.year, t.month, t.day, t.hour), (2026, 11, 30, 23));
        let t = utc(1_796_083_200);
        assert_eq!((t.year, t.month, t.day, t.hour), (2026, 12, 1, 0));
        // 2024-02-29 exists.
        assert_eq!(utc(1_709_164_800).iso8601(), "2024-02-29T00:00:00.000Z");
        assert_eq!(
            UtcDateTime::of(UNIX_EPOCH - Duration::from_secs(1)),
            utc(0),
            "before 1970 counts as the epoch"
        );
    }
}
