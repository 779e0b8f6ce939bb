//! Times and durations on the command line: unix seconds, RFC 3339 in UTC,
//! and durations such as `7d`, `12h` or `1d12h`.
//!
//! Pure: no clock, no I/O. Calendar arithmetic follows the proleptic
//! Gregorian calendar (Howard Hinnant's `days_from_civil` algorithms).

/// Longest accepted duration: ten years, in seconds.
pub const MAX_DURATION_SECS: u64 = 10 * 366 * 86_400;

/// Latest accepted time: 9999-12-31T23:59:59Z, in unix seconds.
pub const MAX_TIME: u64 = 253_402_300_799;

/// Formats unix seconds as RFC 3339 UTC, e.g. `2025-03-01T12:00:00Z`.
pub fn format_utc(secs: u64) -> String {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
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
    let num = |range: std::ops::Range<usize>| -> Result<u64, String> {
        body.get(range)
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(bad)
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if year < 1970
        || !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return Err(bad());
    }
    Ok(days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second)
}

/// Parses a duration: one or more `<number><unit>` with unit `s`, `m`, `h`,
/// `d` or `w` (`30m`, `12h`, `7d`, `1d12h`); at least one second and at
/// most [`MAX_DURATION_SECS`].
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

fn is_leap(year: u64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: u64, month: u64) -> u64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a date in or after 1970.
fn days_from_civil(year: u64, month: u64, day: u64) -> u64 {
    // Years start in March so that the leap day is the last of the year.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day count since 1970-01-01.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
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
    }

    #[test]
    fn parse_and_format_round_trip() {
        for secs in [0, 59, 86_399, 951_782_400, 1_700_000_000, 4_102_444_800] {
            assert_eq!(parse_time(&format_utc(secs)).unwrap(), secs);
        }
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
