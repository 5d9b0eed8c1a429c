//! The error policy, in one place: how long to wait before a retry, and when to give up.

use std::time::Duration;

pub use accesshub_retry::Backoff;
use accesshub_retry::RetryPolicy;

use crate::handler::HandlerError;

/// What to do with a failed message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// NAK with this delay.
    Retry(Duration),
    /// Publish to the DLQ, then Term.
    DeadLetter,
}

/// Retry timing: the shared [`Backoff`] (full jitter, capped) and the largest `Retry-After`
/// honoured. Kept as the runtime's own type so its configuration stays in one place.
#[derive(Debug, Clone, Copy)]
pub struct NakPolicy {
    /// Delays of NAKs when the vendor names none.
    pub backoff: Backoff,
    /// Largest `Retry-After` honoured.
    pub retry_after_max: Duration,
}

impl NakPolicy {
    /// The jittered delay after `delivered` attempts (see [`Backoff::delay`]).
    pub fn delay(&self, delivered: u64) -> Duration {
        self.backoff.delay(delivered)
    }

    /// Transient failures retry until the last allowed delivery; permanent ones (and the last
    /// attempt) go to the DLQ. A vendor's `Retry-After` wins over our backoff (capped).
    pub fn decide(&self, err: &HandlerError, delivered: u64, max_deliver: i64) -> Decision {
        // Retries left after `delivered` attempts: `max_deliver - 1` retries in all.
        let policy = RetryPolicy {
            backoff: self.backoff,
            max_retries: Some(u32::try_from(max_deliver.saturating_sub(1)).unwrap_or(0)),
            retry_after_max: self.retry_after_max,
        };
        let retry = u32::try_from(delivered).unwrap_or(u32::MAX);
        match policy.wait_after(err, retry) {
            Some(d) => Decision::Retry(d),
            None => Decision::DeadLetter,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b() -> NakPolicy {
        NakPolicy {
            backoff: Backoff::new(Duration::from_secs(1), Duration::from_secs(60)),
            retry_after_max: Duration::from_secs(120),
        }
    }

    #[test]
    fn delays_grow_and_are_capped() {
        for d in 1..30 {
            let cap = Duration::from_secs(1u64 << (d - 1).min(20)).min(Duration::from_secs(60));
            for _ in 0..20 {
                let x = b().delay(d);
                assert!(x <= cap && x >= cap / 10, "{d}: {x:?}");
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
