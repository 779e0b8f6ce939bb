//! UTC times as ISO 8601 text, for every `*_utc` field and the text
//! output.

use jiff::{civil, SignedDuration};

/// 1970-01-01T00:00:00: unix time 0 as a civil date and time in UTC.
const UNIX_EPOCH: civil::DateTime = civil::date(1970, 1, 1).at(0, 0, 0, 0);

/// The last second of year 9999, where jiff's calendar (and RFC 3339's
/// four-digit year) ends: 9999-12-31T23:59:59Z.
const LAST_CIVIL_SECOND: u64 = 253_402_300_799;

/// The proleptic Gregorian calendar repeats every 400 years (146 097 days).
const GREGORIAN_CYCLE_SECS: u64 = 146_097 * 86_400;

/// Unix seconds as ISO 8601 in UTC, `YYYY-MM-DDTHH:MM:SSZ` (proleptic
/// Gregorian calendar; years past 9999 get more digits).
///
/// Never panics, for any `u64`: times come from signed events.
pub fn utc_iso8601(unix: u64) -> String {
    // Civil time in UTC is unix time counted on jiff's calendar. A time past
    // year 9999 is first moved back by whole 400-year cycles (same month, day
    // and time of day), which are then added back to the year. Cannot
    // overflow: `cycles * GREGORIAN_CYCLE_SECS < unix - LAST + CYCLE <= u64::MAX`.
    let cycles = unix
        .saturating_sub(LAST_CIVIL_SECOND)
        .div_ceil(GREGORIAN_CYCLE_SECS);
    let within = unix - cycles * GREGORIAN_CYCLE_SECS;
    let datetime = i64::try_from(within)
        .ok()
        .and_then(|secs| UNIX_EPOCH.checked_add(SignedDuration::from_secs(secs)).ok());
    let Some(dt) = datetime else {
        // Unreachable: `within` is at most LAST_CIVIL_SECOND, in jiff's range.
        return unix.to_string();
    };
    if cycles == 0 {
        // jiff prints `YYYY-MM-DDTHH:MM:SS` (no fraction for whole seconds).
        return format!("{dt}Z");
    }
    let year = u64::from(dt.year().unsigned_abs()) + cycles * 400;
    format!(
        "{year}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        dt.month(),
        dt.day(),
        dt.hour(),
        dt.minute(),
        dt.second()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso8601_known_dates() {
        assert_eq!(utc_iso8601(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc_iso8601(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(utc_iso8601(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc_iso8601(951_868_799), "2000-02-29T23:59:59Z");
        assert_eq!(utc_iso8601(4_107_542_400), "2100-03-01T00:00:00Z");
        assert_eq!(utc_iso8601(253_402_300_799), "9999-12-31T23:59:59Z");
    }

    #[test]
    fn iso8601_past_year_9999_gets_more_digits() {
        // Values from the hand-written Hinnant calendar this replaced.
        for (unix, text) in [
            (253_402_300_800, "10000-01-01T00:00:00Z"),
            (266_025_081_599, "10399-12-31T23:59:59Z"),
            (1 << 40, "36812-02-20T00:36:16Z"),
            (i64::MAX.unsigned_abs(), "292277026596-12-04T15:30:07Z"),
            (1 << 63, "292277026596-12-04T15:30:08Z"),
            (u64::MAX, "584554051223-11-09T07:00:15Z"),
        ] {
            assert_eq!(utc_iso8601(unix), text, "{unix}");
        }
    }

    /// Walks `days` days from `start` (a date at midnight, `first` days after
    /// 1970-01-01) and compares each day's text with a naive calendar.
    fn walk_days(first: u64, start: (u64, u64, u64), days: u64) {
        let (mut y, mut m, mut d) = start;
        for day in first..first + days {
            let text = format!("{y:04}-{m:02}-{d:02}T00:00:00Z");
            assert_eq!(utc_iso8601(day * 86_400), text, "day {day}");
            let last = format!("{y:04}-{m:02}-{d:02}T23:59:59Z");
            assert_eq!(utc_iso8601(day * 86_400 + 86_399), last, "day {day}");
            let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
            let len = match m {
                2 if leap => 29,
                2 => 28,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            };
            d += 1;
            if d > len {
                d = 1;
                m += 1;
                if m > 12 {
                    m = 1;
                    y += 1;
                }
            }
        }
    }

    #[test]
    fn iso8601_agrees_with_a_day_by_day_count() {
        // 1970..2100 a day at a time.
        walk_days(0, (1970, 1, 1), 47_482);
        // 9990..10410: across the end of jiff's calendar and a whole cycle.
        let first = 2_929_245; // 9990-01-01
        assert_eq!(utc_iso8601(first * 86_400), "9990-01-01T00:00:00Z");
        walk_days(first, (9990, 1, 1), 420 * 366);
    }
}
