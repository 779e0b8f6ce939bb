//! Times and durations on the command line: unix seconds, RFC 3339 in UTC,
//! and durations such as `7d`, `12h` or `1d12h`.
//!
//! Pure: no clock, no I/O. The calendar (proleptic Gregorian, UTC only) is
//! jiff's; this module only decides which texts are accepted.

use jiff::civil;

/// Longest accepted duration: ten years, in seconds.
pub const MAX_DURATION_SECS: u64 = 10 * 366 * 86_400;

/// Latest accepted time: 9999-12-31T23:59:59Z, in unix seconds.
pub const MAX_TIME: u64 = 253_402_300_799;

/// 1970-01-01T00:00:00: unix time 0 as a civil date and time in UTC.
const UNIX_EPOCH: civil::DateTime = civil::date(1970, 1, 1).at(0, 0, 0, 0);

/// Formats unix seconds as RFC 3339 UTC, e.g. `2025-03-01T12:00:00Z`
/// (the agent's reports use the same text; years past 9999, which only a
/// signed event can carry, get more digits).
pub fn format_utc(secs: u64) -> String {
    qube_agent::report::utc_iso8601(secs)
}

/// Parses a point in time: unix seconds (decimal digits), or RFC 3339 in
/// UTC, `YYYY-MM-DDTHH:MM:SSZ` (`Z` or `+00:00`; no fractions, no other
/// offsets, so a time is never read in an unintended zone).
///
/// # Errors
/// A sentence saying what is accepted.
pub fn parse_time(text: &str) -> Result<u64, String> {
    let bad = || {
        format!(
            "{text:?} is not a time: give unix seconds or RFC 3339 UTC such as 2025-03-01T12:00:00Z"
        )
    };
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        let secs: u64 = text.parse().map_err(|_| bad())?;
        return if secs > MAX_TIME {
            Err(bad())
        } else {
            Ok(secs)
        };
    }
    let body = text
        .strip_suffix('Z')
        .or_else(|| text.strip_suffix('z'))
        .or_else(|| text.strip_suffix("+00:00"))
        .ok_or_else(bad)?;
    let bytes = body.as_bytes();
    let shape_ok = bytes.len() == 19
        && bytes.iter().enumerate().all(|(i, &b)| match i {
            4 | 7 => b == b'-',
            10 => b == b'T' || b == b't',
            13 | 16 => b == b':',
            _ => b.is_ascii_digit(),
        });
    if !shape_ok {
        return Err(bad());
    }
    // The shape above is the strictness; jiff checks the calendar (month
    // lengths, leap years, hours and minutes). jiff reads a leap second
    // `:60` as `:59`, so that is refused here.
    if body.get(17..19) == Some("60") {
        return Err(bad());
    }
    let datetime: civil::DateTime = body.parse().map_err(|_| bad())?;
    // Civil time in UTC counts unix seconds; before 1970 is refused.
    u64::try_from(datetime.duration_since(UNIX_EPOCH).as_secs()).map_err(|_| bad())
}

/// Parses a duration: one or more `<number><unit>` with unit `s`, `m`, `h`,
/// `d` or `w` (`30m`, `12h`, `7d`, `1d12h`); at least one second and at
/// most [`MAX_DURATION_SECS`].
///
/// Hand-written on purpose: jiff's span parsers would also accept fractions
/// (`1.5h`), signs, spaces, words (`1 day`, `ago`), calendar units (`1mo`,
/// `1y`) and ISO 8601 (`P7D`), and this is only integer arithmetic.
///
/// # Errors
/// A sentence saying what is accepted.
pub fn parse_duration(text: &str) -> Result<u64, String> {
    let bad = || {
        format!(
            "{text:?} is not a duration: use a number and a unit s, m, h, d or w, e.g. 7d, 12h, 30m or 1d12h"
        )
    };
    let mut total: u64 = 0;
    let mut number: Option<u64> = None;
    for c in text.chars() {
        if let Some(digit) = c.to_digit(10) {
            let n = number
                .unwrap_or(0)
                .checked_mul(10)
                .and_then(|n| n.checked_add(u64::from(digit)))
                .ok_or_else(bad)?;
            number = Some(n);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 7 * 86_400,
            _ => return Err(bad()),
        };
        let n = number.take().ok_or_else(bad)?;
        total = n
            .checked_mul(unit)
            .and_then(|secs| total.checked_add(secs))
            .ok_or_else(bad)?;
    }
    if number.is_some() || total == 0 || total > MAX_DURATION_SECS {
        return Err(bad());
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(format_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(format_utc(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(format_utc(MAX_TIME), "9999-12-31T23:59:59Z");
        assert_eq!(format_utc(MAX_TIME + 1), "10000-01-01T00:00:00Z");
    }

    #[test]
    fn formats_like_jiff_timestamps() {
        // jiff's own RFC 3339 printer, a separate path from civil times; its
        // Timestamp ends at 9999-12-30T22:00:00Z (room for any offset).
        let last = u64::try_from(jiff::Timestamp::MAX.as_second()).unwrap();
        let mut secs = 0;
        while secs <= last {
            let ts = jiff::Timestamp::from_second(i64::try_from(secs).unwrap()).unwrap();
            assert_eq!(format_utc(secs), ts.to_string(), "{secs}");
            assert_eq!(parse_time(&ts.to_string()).unwrap(), secs, "{secs}");
            secs += 98_765_431;
        }
    }

    #[test]
    fn parse_and_format_round_trip() {
        for secs in [0, 59, 86_399, 951_782_400, 1_700_000_000, 4_102_444_800] {
            assert_eq!(parse_time(&format_utc(secs)).unwrap(), secs);
        }
        assert_eq!(parse_time("9999-12-31T23:59:59Z").unwrap(), MAX_TIME);
        assert_eq!(parse_time(&MAX_TIME.to_string()).unwrap(), MAX_TIME);
        assert_eq!(parse_time("2000-02-29T00:00:00Z").unwrap(), 951_782_400);
        assert_eq!(parse_time("1970-01-01T00:00:00Z").unwrap(), 0);
        let mut secs = 0;
        while secs < MAX_TIME {
            assert_eq!(parse_time(&format_utc(secs)).unwrap(), secs, "{secs}");
            secs += 987_654_321;
        }
    }

    #[test]
    fn parses_unix_seconds_and_offsets() {
        assert_eq!(parse_time("1700000000").unwrap(), 1_700_000_000);
        assert_eq!(
            parse_time("2023-11-14T22:13:20+00:00").unwrap(),
            1_700_000_000
        );
        assert_eq!(parse_time("2023-11-14t22:13:20z").unwrap(), 1_700_000_000);
    }

    #[test]
    fn refuses_ambiguous_or_invalid_times() {
        for bad in [
            "",
            "2023-11-14T22:13:20",
            "2023-11-14T22:13:20+01:00",
            "2023-11-14 22:13:20Z",
            "2023-11-14T22:13:20.5Z",
            "2023-02-29T00:00:00Z",
            "2023-13-01T00:00:00Z",
            "1969-12-31T23:59:59Z",
            "2023-11-14T24:00:00Z",
            "-5",
            "99999999999999999999",
            "253402300800",
            "2016-12-31T23:59:60Z",
            "2023-11-14T22:13:61Z",
            "2023-11-14T22:60:00Z",
            "2023-04-31T00:00:00Z",
            "2100-02-29T00:00:00Z",
            "0000-01-01T00:00:00Z",
            "2023-11-14T22:13Z",
            "2023-11-14T22:13:20-00:00",
            "2023-11-14T22:13:20+0000",
            "2023-11-14T22:13:20.000Z",
            "+002023-11-14T22:13:20Z",
            "20231114T221320Z",
            "2023-11-14",
            " 2023-11-14T22:13:20Z",
            "2023-11-14T22:13:20Z[UTC]",
            "2023-11-14T22:13:20+00:00[UTC]",
        ] {
            assert!(parse_time(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30m").unwrap(), 1800);
        assert_eq!(parse_duration("12h").unwrap(), 43_200);
        assert_eq!(parse_duration("7d").unwrap(), 604_800);
        assert_eq!(parse_duration("1d12h").unwrap(), 129_600);
        assert_eq!(parse_duration("2w").unwrap(), 1_209_600);
        assert_eq!(parse_duration("90s").unwrap(), 90);
        for bad in [
            "",
            "7",
            "d",
            "0d",
            "7x",
            "1.5h",
            "-1d",
            "99999999999999999999d",
            "11000d",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
