//! Cron schedules read in the connection's timezone, DST-correct.
//!
//! The cron expression is evaluated on the local wall clock (so "03:00" stays 03:00 local across
//! DST changes), and each local match is then placed on the UTC timeline with the same rule as
//! booking times (`accesshub_domain::local_to_utc`): a time skipped by spring-forward moves to the
//! first minute after the gap, a time repeated by fall-back fires once, at the earlier instant.

use std::str::FromStr;

use chrono::{DateTime, TimeZone as _, Utc};
use chrono_tz::Tz;

use crate::error::SyncRunError;

/// Default schedule for a connection without one: nightly at 03:00 local time.
pub const DEFAULT_CRON: &str = "0 3 * * *";

/// A parsed cron expression with its timezone.
#[derive(Debug, Clone)]
pub struct CronSchedule {
    schedule: cron::Schedule,
    tz: Tz,
}

/// Accepts the usual 5-field form (`min hour dom mon dow`) as well as the `cron` crate's
/// 6/7-field form with seconds first.
pub fn normalize_cron(expr: &str) -> String {
    let fields = expr.split_whitespace().count();
    if fields == 5 {
        format!("0 {}", expr.trim())
    } else {
        expr.trim().to_owned()
    }
}

impl CronSchedule {
    /// Parses an expression and an IANA timezone.
    pub fn parse(expr: &str, timezone: &str) -> Result<Self, SyncRunError> {
        let schedule = cron::Schedule::from_str(&normalize_cron(expr))
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
        let start = Utc.from_utc_datetime(&(local_now - chrono::Duration::hours(3)));
        self.schedule
            .after(&start)
            .take(10_000)
            .map(|wall| accesshub_domain::local_to_utc(self.tz, wall.naive_utc()))
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

    #[test]
    fn rejects_bad_input() {
        assert!(CronSchedule::parse("not cron", "UTC").is_err());
        assert!(CronSchedule::parse(DEFAULT_CRON, "Mars/Olympus").is_err());
        assert!(CronSchedule::parse("0 0 3 * * *", "UTC").is_ok());
    }
}
