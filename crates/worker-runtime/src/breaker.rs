//! The per-connection circuit breaker's decision, in one pure function ([`next`]) like
//! [`policy`](crate::policy): given a connection's breaker state and what just happened (a
//! vendor call's outcome, or the clock), what the state becomes; and [`admits`]: whether a
//! message of that connection may call the vendor now or must be parked.
//!
//! Why: a vendor outage longer than the retry budget (`max_deliver` × backoff) used to
//! dead-letter every event of the vendor, cancellations included. While a connection's breaker
//! is open its events are parked durably (Postgres) and acknowledged — no delivery burned —
//! and a probe after a backoff interval decides when they apply again. Breakers are per
//! connection (tenant + vendor connection), so one tenant's outage costs others nothing.
//!
//! The shape is the classic closed → open → half-open breaker (Nygard, *Release It!*;
//! resilience4j, failsafe): `threshold` transient vendor failures in a row open it; a
//! success anywhere closes it; permanent failures prove the vendor answers and do not count.

use std::time::Duration;

use accesshub_retry::Backoff;

/// When a breaker opens and how long it stays open before a probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerPolicy {
    /// Transient vendor failures in a row (no success between) that open the breaker;
    /// 0 disables the breaker (every message is admitted, the retry policy alone decides).
    pub threshold: u32,
    /// Open interval before the n-th probe: [`Backoff::cap`] of the trips so far (no jitter:
    /// one probe per connection and replica, nothing to spread out).
    pub open: Backoff,
    /// A probe that has not reported by then is taken as failed (its message may have been
    /// skipped, or the replica that took it may have died), so the breaker never stays
    /// half-open for good.
    pub probe_timeout: Duration,
}

/// A connection's breaker. Times are Unix milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Messages call the vendor; `failures` transient failures in a row so far.
    Closed {
        /// Consecutive transient vendor failures.
        failures: u32,
    },
    /// Messages are parked; a probe is due at `probe_at`.
    Open {
        /// Times opened since the breaker was last closed (the open interval's backoff step).
        trips: u32,
        /// When the next probe may go.
        probe_at: i64,
    },
    /// One parked message (the probe) calls the vendor; everything else is still parked.
    HalfOpen {
        /// As in [`State::Open`].
        trips: u32,
        /// When the probe was sent.
        since: i64,
    },
}

impl Default for State {
    fn default() -> Self {
        State::Closed { failures: 0 }
    }
}

impl State {
    /// Whether messages of the connection are being parked (open or half-open).
    pub fn is_open(&self) -> bool {
        !matches!(self, State::Closed { .. })
    }
}

/// What happened to a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// A vendor call succeeded: the vendor answers.
    Success,
    /// A vendor call failed transiently (timeout, connection error, 5xx, 429, busy).
    Transient,
    /// A vendor call failed permanently (4xx, validation): the vendor answers, so this
    /// neither opens nor keeps a breaker open; the message goes to the DLQ as before.
    Permanent,
    /// The clock: an open breaker whose interval has passed goes half-open (send a probe);
    /// a half-open one whose probe timed out opens again.
    Tick,
}

/// The next state of a breaker after `signal` at `now` (Unix ms).
pub fn next(policy: &BreakerPolicy, state: State, signal: Signal, now: i64) -> State {
    if policy.threshold == 0 {
        return State::default();
    }
    let reopen = |trips: u32| State::Open {
        trips,
        probe_at: now.saturating_add(
            i64::try_from(policy.open.cap(u64::from(trips)).as_millis()).unwrap_or(i64::MAX),
        ),
    };
    match (state, signal) {
        (_, Signal::Success) => State::Closed { failures: 0 },
        (State::Closed { failures }, Signal::Transient) => {
            let failures = failures.saturating_add(1);
            if failures >= policy.threshold {
                reopen(1)
            } else {
                State::Closed { failures }
            }
        }
        (State::Closed { .. }, Signal::Permanent) => State::Closed { failures: 0 },
        (State::Closed { .. }, Signal::Tick) => state,
        // Failures of calls admitted before the breaker opened change nothing.
        (State::Open { .. }, Signal::Transient | Signal::Permanent) => state,
        (State::Open { trips, probe_at }, Signal::Tick) => {
            if now >= probe_at {
                State::HalfOpen { trips, since: now }
            } else {
                state
            }
        }
        (State::HalfOpen { trips, .. }, Signal::Transient) => reopen(trips.saturating_add(1)),
        // The vendor answered the probe (with a refusal of that one message): it is up.
        (State::HalfOpen { .. }, Signal::Permanent) => State::Closed { failures: 0 },
        (State::HalfOpen { trips, since }, Signal::Tick) => {
            let timeout = i64::try_from(policy.probe_timeout.as_millis()).unwrap_or(i64::MAX);
            if now.saturating_sub(since) >= timeout {
                reopen(trips.saturating_add(1))
            } else {
                state
            }
        }
    }
}

/// Whether a message may call the vendor in `state`: always when closed; when half-open only
/// the probe; never when open (the message is parked).
pub fn admits(state: State, probe: bool) -> bool {
    match state {
        State::Closed { .. } => true,
        State::HalfOpen { .. } => probe,
        State::Open { .. } => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p() -> BreakerPolicy {
        BreakerPolicy {
            threshold: 3,
            open: Backoff::new(Duration::from_secs(1), Duration::from_secs(8)),
            probe_timeout: Duration::from_secs(5),
        }
    }

    fn run(signals: &[(Signal, i64)]) -> State {
        signals
            .iter()
            .fold(State::default(), |s, (sig, now)| next(&p(), s, *sig, *now))
    }

    #[test]
    fn opens_after_threshold_transient_failures_in_a_row() {
        use Signal::*;
        assert_eq!(
            run(&[(Transient, 0), (Transient, 0)]),
            State::Closed { failures: 2 }
        );
        assert_eq!(
            run(&[(Transient, 0), (Transient, 0), (Transient, 10)]),
            State::Open {
                trips: 1,
                probe_at: 1010
            }
        );
        // A success or a permanent refusal between resets the count.
        assert_eq!(
            run(&[(Transient, 0), (Transient, 0), (Success, 0), (Transient, 0)]),
            State::Closed { failures: 1 }
        );
        assert_eq!(
            run(&[
                (Transient, 0),
                (Transient, 0),
                (Permanent, 0),
                (Transient, 0)
            ]),
            State::Closed { failures: 1 }
        );
    }

    #[test]
    fn open_goes_half_open_when_the_interval_passed_and_only_the_probe_is_admitted() {
        use Signal::*;
        let open = run(&[(Transient, 0), (Transient, 0), (Transient, 0)]);
        assert!(!admits(open, false) && !admits(open, true));
        // Late failures of calls admitted earlier change nothing; the interval is kept.
        assert_eq!(next(&p(), open, Transient, 500), open);
        assert_eq!(next(&p(), open, Permanent, 500), open);
        assert_eq!(next(&p(), open, Tick, 999), open);
        let half = next(&p(), open, Tick, 1000);
        assert_eq!(
            half,
            State::HalfOpen {
                trips: 1,
                since: 1000
            }
        );
        assert!(admits(half, true) && !admits(half, false));
        assert!(admits(State::default(), false));
    }

    #[test]
    fn a_failed_probe_reopens_with_a_longer_interval_capped() {
        use Signal::*;
        let mut s = run(&[(Transient, 0), (Transient, 0), (Transient, 0)]);
        let mut now = 0;
        let mut intervals = vec![];
        for _ in 0..6 {
            let State::Open { probe_at, .. } = s else {
                panic!("{s:?}")
            };
            intervals.push(probe_at - now);
            now = probe_at;
            s = next(&p(), s, Tick, now);
            s = next(&p(), s, Transient, now);
        }
        assert_eq!(intervals, vec![1000, 2000, 4000, 8000, 8000, 8000]);
    }

    #[test]
    fn the_probe_closes_on_an_answer_and_times_out_into_open() {
        use Signal::*;
        let half = State::HalfOpen { trips: 2, since: 0 };
        assert_eq!(next(&p(), half, Success, 1), State::Closed { failures: 0 });
        assert_eq!(
            next(&p(), half, Permanent, 1),
            State::Closed { failures: 0 }
        );
        assert_eq!(next(&p(), half, Tick, 4999), half);
        assert_eq!(
            next(&p(), half, Tick, 5000),
            State::Open {
                trips: 3,
                probe_at: 9000
            }
        );
        // Any success closes, even one of a call admitted before the breaker opened.
        let open = State::Open {
            trips: 4,
            probe_at: 99,
        };
        assert_eq!(next(&p(), open, Success, 1), State::Closed { failures: 0 });
    }

    #[test]
    fn a_zero_threshold_disables_the_breaker() {
        let off = BreakerPolicy {
            threshold: 0,
            ..p()
        };
        let mut s = State::default();
        for _ in 0..100 {
            s = next(&off, s, Signal::Transient, 0);
        }
        assert_eq!(s, State::Closed { failures: 0 });
        assert!(admits(s, false));
    }
}
