//! A UTC date and time from `SOURCE_DATE_EPOCH`, without a calendar
//! library (the build scripts use it; std only, so it is tested with every
//! workspace test run).

/// A UTC date and time, enough for `SOURCE_DATE_EPOCH`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timestamp {
    year: i64,
    month: u32,
    day: u32,
    secs_of_day: i64,
}

impl Timestamp {
    /// Seconds since 1970 to a civil date: H. Hinnant's `civil_from_days`,
    /// proleptic Gregorian calendar.
    pub fn from_unix(secs: i64) -> Self {
        let days = secs.div_euclid(86_400);
        let secs_of_day = secs.rem_euclid(86_400);
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        Timestamp {
            year,
            month: u32::try_from(month).unwrap_or(1),
            day: u32::try_from(day).unwrap_or(1),
            secs_of_day,
        }
    }

    /// `YYYY-MM-DD`.
    pub fn date(&self) -> String {
        format!("{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }

    /// `YYYY-MM-DDTHH:MM:SSZ`.
    pub fn rfc3339(&self) -> String {
        format!(
            "{}T{:02}:{:02}:{:02}Z",
            self.date(),
            self.secs_of_day / 3600,
            self.secs_of_day / 60 % 60,
            self.secs_of_day % 60
        )
    }
}

#[cfg(test)]
mod tests {
    use super::Timestamp;

    #[test]
    fn timestamps_are_utc_civil_dates() {
        assert_eq!(Timestamp::from_unix(0).rfc3339(), "1970-01-01T00:00:00Z");
        // 2000-02-29 (a leap day of a century year divisible by 400).
        assert_eq!(
            Timestamp::from_unix(951_782_400 + 3_661).rfc3339(),
            "2000-02-29T01:01:01Z"
        );
        assert_eq!(Timestamp::from_unix(-1).rfc3339(), "1969-12-31T23:59:59Z");
    }
}
