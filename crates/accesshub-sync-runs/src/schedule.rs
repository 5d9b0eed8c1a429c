//! Cron schedules read in the connection's timezone, DST-correct.
//!
//! The cron expression is evaluated on the local wall clock (so "03:00" stays 03:00 local across
//! DST changes), and each local match is then placed on the UTC timeline with the same rule as
//! booking times (`accesshub_domain::local_to_utc`): a time skipped by spring-forward moves to the
//! first minute after the gap, a time repeated by fall-back fires once, at the earlier instant.
//!
//! Expressions are Unix (Vixie/POSIX) cron, as crontab(5) says: the day-of-week field counts
//! 0 or 7 = Sunday, 1 = Monday … 6 = Saturday (names `SUN`–`SAT` too), and a day-of-month and
//! day-of-week both restricted match when either does. Parsed by `croner` (the `cron` crate used
//! before counted Sunday as 1 and refused 0).

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use crate::error::SyncRunError;

/// Default schedule for a connection without one: nightly at 03:00 local time.
pub const DEFAULT_CRON: &str = "0 3 * * *";

/// A parsed cron expression with its timezone.
#[derive(Debug, Clone)]
pub struct CronSchedule {
    schedule: croner::Cron,
    tz: Tz,
}

impl CronSchedule {
    /// Parses an expression (`min hour dom mon dow`, or with seconds first and an optional year
    /// last, as stored by earlier versions) and an IANA timezone.
    pub fn parse(expr: &str, timezone: &str) -> Result<Self, SyncRunError> {
        let schedule = croner::parser::CronParser::builder()
            .seconds(croner::parser::Seconds::Optional)
            .year(croner::parser::Year::Optional)
            .build()
            .parse(expr.trim())
            .map_err(|e| SyncRunError::invalid("cron expression", format!("{expr:?}: {e}")))?;
        let tz = timezone
            .parse::<Tz>()
            .map_err(|_| SyncRunError::invalid("timezone", format!("{timezone:?}")))?;
        Ok(CronSchedule { schedule, tz })
    }

    /// The first firing strictly after `now`.
    pub fn next_after(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        // Walk the wall clock: local time of `now`, expressed as a naive "UTC" instant.
        let local_now = now.with_timezone(&self.tz).naive_local();
        // Start a little earlier so a fall-back hour's matches are not skipped, then take the
        // first whose real instant is after `now`.
        let start = local_now - chrono::Duration::hours(3);
        self.schedule
            .iter_after(start)
            .take(10_000)
            .map(|wall| accesshub_domain::local_to_utc(self.tz, wall))
            .find(|t| *t > now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn nightly_across_spring_forward_and_fall_back() {
        let s = CronSchedule::parse(DEFAULT_CRON, "Europe/Amsterdam").unwrap();
        // Sat 28 Mar 2026, 03:00 CET = 02:00Z; Sun 29 Mar (CEST) 03:00 = 01:00Z.
        assert_eq!(
            s.next_after(utc("2026-03-27T23:00:00Z")),
            Some(utc("2026-03-28T02:00:00Z"))
        );
        assert_eq!(
            s.next_after(utc("2026-03-28T02:00:00Z")),
            Some(utc("2026-03-29T01:00:00Z"))
        );
        // Fall back, Sun 25 Oct 2026: 03:00 local is after the repeated hour → CET, 02:00Z.
        assert_eq!(
            s.next_after(utc("2026-10-24T12:00:00Z")),
            Some(utc("2026-10-25T02:00:00Z"))
        );
    }

    #[test]
    fn skipped_and_repeated_local_times() {
        // 02:30 does not exist on 29 Mar 2026 in Amsterdam: fires at 03:00 CEST = 01:00Z.
        let s = CronSchedule::parse("30 2 * * *", "Europe/Amsterdam").unwrap();
        assert_eq!(
            s.next_after(utc("2026-03-28T12:00:00Z")),
            Some(utc("2026-03-29T01:00:00Z"))
        );
        // 02:30 happens twice on 25 Oct 2026: fires once, at the earlier (CEST) instant 00:30Z.
        let first = s.next_after(utc("2026-10-24T12:00:00Z")).unwrap();
        assert_eq!(first, utc("2026-10-25T00:30:00Z"));
        let second = s.next_after(first).unwrap();
        assert_eq!(second, utc("2026-10-26T01:30:00Z"));
    }

    /// Unix weekdays: 0 and 7 are Sunday, 1 is Monday (6 Dec 2026 is a Sunday).
    #[test]
    fn unix_weekdays_sunday_is_0_and_7_monday_is_1() {
        let sat_noon = utc("2026-12-05T12:00:00Z");
        let sunday = Some(utc("2026-12-06T03:00:00Z"));
        let monday = Some(utc("2026-12-07T03:00:00Z"));
        for (expr, want) in [
            ("0 3 * * 0", sunday),
            ("0 3 * * 7", sunday),
            ("0 3 * * SUN", sunday),
            ("0 3 * * 1", monday),
            ("0 3 * * MON", monday),
            ("0 3 * * 1-5", monday),
            ("0 0 3 * * 1", monday),
        ] {
            let s = CronSchedule::parse(expr, "UTC").unwrap();
            assert_eq!(s.next_after(sat_noon), want, "{expr}");
        }
        // Sunday itself: "* * 0" fires on it and "* * 1" does not.
        let sunday_morning = utc("2026-12-06T00:30:00Z");
        let s = CronSchedule::parse("0 1 * * 0", "UTC").unwrap();
        assert_eq!(
            s.next_after(sunday_morning),
            Some(utc("2026-12-06T01:00:00Z"))
        );
        let s = CronSchedule::parse("0 1 * * 1", "UTC").unwrap();
        assert_eq!(
            s.next_after(sunday_morning),
            Some(utc("2026-12-07T01:00:00Z"))
        );
        // Weekends: Saturday 6 and Sunday 0.
        let s = CronSchedule::parse("0 1 * * 6,0", "UTC").unwrap();
        assert_eq!(
            s.next_after(utc("2026-12-05T02:00:00Z")),
            Some(utc("2026-12-06T01:00:00Z"))
        );
        assert!(CronSchedule::parse("0 3 * * 8", "UTC").is_err());
    }

    #[test]
    fn rejects_bad_input() {
        assert!(CronSchedule::parse("not cron", "UTC").is_err());
        assert!(CronSchedule::parse(DEFAULT_CRON, "Mars/Olympus").is_err());
        assert!(CronSchedule::parse("0 0 3 * * *", "UTC").is_ok());
    }
}
