//! The error policy, in one place: how long to wait before a retry, and when to give up.

use std::time::Duration;

use accesshub_domain::ErrorClass;
use rand::Rng as _;

use crate::handler::HandlerError;

/// What to do with a failed message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// NAK with this delay.
    Retry(Duration),
    /// Publish to the DLQ, then Term.
    DeadLetter,
}

/// Retry timing.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// Delay cap of the first retry.
    pub base: Duration,
    /// Largest computed delay.
    pub max: Duration,
    /// Largest `Retry-After` honoured.
    pub retry_after_max: Duration,
}

impl Backoff {
    /// Exponential backoff with full jitter (AWS architecture blog): uniform in
    /// `[cap/10, cap]` with `cap = min(max, base * 2^(delivered-1))`. The small floor keeps a
    /// failing message from spinning when the draw is near zero.
    pub fn delay(&self, delivered: u64) -> Duration {
        let exp = u32::try_from(delivered.saturating_sub(1))
            .unwrap_or(u32::MAX)
            .min(20);
        let cap = self.base.saturating_mul(1u32 << exp).min(self.max);
        let cap_ms = u64::try_from(cap.as_millis()).unwrap_or(u64::MAX).max(1);
        let ms = rand::rng().random_range(cap_ms / 10..=cap_ms);
        Duration::from_millis(ms)
    }

    /// Transient failures retry until the last allowed delivery; permanent ones (and the last
    /// attempt) go to the DLQ. A vendor's `Retry-After` wins over our backoff (capped).
    pub fn decide(&self, err: &HandlerError, delivered: u64, max_deliver: i64) -> Decision {
        let last = i64::try_from(delivered).unwrap_or(i64::MAX) >= max_deliver;
        match err.class {
            ErrorClass::Permanent => Decision::DeadLetter,
            ErrorClass::Transient if last => Decision::DeadLetter,
            ErrorClass::Transient => Decision::Retry(match err.retry_after {
                Some(d) => d.min(self.retry_after_max),
                None => self.delay(delivered),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b() -> Backoff {
        Backoff {
            base: Duration::from_secs(1),
            max: Duration::from_secs(60),
            retry_after_max: Duration::from_secs(120),
        }
    }

    #[test]
    fn delays_grow_and_are_capped() {
        for d in 1..30 {
            let cap = Duration::from_secs(1u64 << (d - 1).min(20)).min(Duration::from_secs(60));
            for _ in 0..20 {
                let x = b().delay(d);
                assert!(
                    x <= cap && x >= cap / 10 - Duration::from_millis(1),
                    "{d}: {x:?}"
                );
            }
        }
    }

    #[test]
    fn decisions() {
        let t = HandlerError::transient("x");
        assert!(matches!(b().decide(&t, 1, 10), Decision::Retry(_)));
        assert_eq!(b().decide(&t, 10, 10), Decision::DeadLetter);
        let p = HandlerError::permanent("x");
        assert_eq!(b().decide(&p, 1, 10), Decision::DeadLetter);
        let mut r = HandlerError::transient("429");
        r.retry_after = Some(Duration::from_secs(7));
        assert_eq!(
            b().decide(&r, 3, 10),
            Decision::Retry(Duration::from_secs(7))
        );
        r.retry_after = Some(Duration::from_secs(7000));
        assert_eq!(
            b().decide(&r, 3, 10),
            Decision::Retry(Duration::from_secs(120))
        );
    }
}
