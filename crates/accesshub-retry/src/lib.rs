//! The one retry policy of accesshub (ARCHITECTURE.md principle 4): exponential backoff with
//! full jitter and a cap, a peer's `Retry-After` honoured up to a cap, and a clear point at
//! which to give up. Every retry loop — the worker's NAK delays, start-up waits, the outbox
//! relay, lock waits, vendor list calls — takes its delays from here, so no loop retries in
//! lock-step with its neighbours and none waits without bound.
//!
//! - [`Backoff`]: the delay before the n-th retry.
//! - [`RetryPolicy`]: a [`Backoff`] plus when to give up and how much `Retry-After` to honour.
//! - [`Attempts`]: a policy's running count, for loops that retry in their own shape.
//! - [`retry_transient`] / [`retry_transient_notify`]: retry an operation while its
//!   [`Classify`] error is transient; [`retry_notify`]: retry whatever fails (start-up).
//! - [`sleep_unless_cancelled`]: the wait of loops that retry until shutdown.

use std::time::Duration;

use accesshub_domain::{Classify, ErrorClass};
use rand::Rng as _;
use tokio_util::sync::CancellationToken;

/// Exponential backoff with full jitter (AWS architecture blog, "Exponential Backoff and
/// Jitter"): retry `n` waits a uniform draw from `[cap/10, cap]`, with
/// `cap = min(max, base * 2^(n-1))`. Jitter spreads out replicas that failed together; the
/// small floor keeps a loop from spinning when the draw is near zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Cap of the first retry's delay.
    pub base: Duration,
    /// Largest delay ever drawn.
    pub max: Duration,
}

impl Backoff {
    /// Backoff from `base`, doubling, capped at `max`.
    pub const fn new(base: Duration, max: Duration) -> Self {
        Backoff { base, max }
    }

    /// The largest delay retry `retry` (1-based; 0 counts as 1) can draw.
    pub fn cap(&self, retry: u64) -> Duration {
        let exp = u32::try_from(retry.saturating_sub(1))
            .unwrap_or(u32::MAX)
            .min(20);
        self.base.saturating_mul(1u32 << exp).min(self.max)
    }

    /// The jittered delay before retry `retry` (1-based), in `[cap/10, cap]`.
    pub fn delay(&self, retry: u64) -> Duration {
        let cap_us = u64::try_from(self.cap(retry).as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        Duration::from_micros(rand::rng().random_range(cap_us / 10..=cap_us))
    }
}

/// When to retry, how long to wait, and when to give up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Delays when the peer names none.
    pub backoff: Backoff,
    /// Retries after the first try; `None` retries until the caller stops (shutdown).
    pub max_retries: Option<u32>,
    /// Largest `Retry-After` honoured: a peer asking for an hour must not park us for one.
    pub retry_after_max: Duration,
}

impl RetryPolicy {
    /// Retries until the caller stops; `Retry-After` is honoured up to `backoff.max`.
    pub const fn forever(backoff: Backoff) -> Self {
        RetryPolicy {
            backoff,
            max_retries: None,
            retry_after_max: backoff.max,
        }
    }

    /// Gives up after `max_retries` retries; `Retry-After` is honoured up to `backoff.max`.
    pub const fn limited(backoff: Backoff, max_retries: u32) -> Self {
        RetryPolicy {
            backoff,
            max_retries: Some(max_retries),
            retry_after_max: backoff.max,
        }
    }

    /// The same policy honouring `Retry-After` up to `max`.
    pub const fn with_retry_after_max(mut self, max: Duration) -> Self {
        self.retry_after_max = max;
        self
    }

    /// The wait before retry `retry` (1-based) whatever the failure, or `None` once the
    /// retries are spent.
    pub fn wait(&self, retry: u32) -> Option<Duration> {
        if self.max_retries.is_some_and(|max| retry > max) {
            return None;
        }
        Some(self.backoff.delay(u64::from(retry)))
    }

    /// The wait before retry `retry` (1-based) after `err`: `None` for a permanent error or
    /// once the retries are spent; otherwise the peer's `Retry-After` (capped) or the backoff.
    pub fn wait_after<E: Classify + ?Sized>(&self, err: &E, retry: u32) -> Option<Duration> {
        if err.class() == ErrorClass::Permanent {
            return None;
        }
        let backoff = self.wait(retry)?;
        Some(match err.retry_after() {
            Some(asked) => asked.min(self.retry_after_max),
            None => backoff,
        })
    }

    /// A fresh count of retries under this policy.
    pub fn attempts(&self) -> Attempts {
        Attempts {
            policy: *self,
            retries: 0,
        }
    }
}

/// A [`RetryPolicy`]'s running count, for loops that do more between tries than one call
/// (e.g. set up a consumer, then pull from it): ask for the next wait after each failure,
/// [`reset`](Self::reset) after a success.
#[derive(Debug, Clone)]
pub struct Attempts {
    policy: RetryPolicy,
    retries: u32,
}

impl Attempts {
    /// Counts a failure and returns the wait before the next try, or `None` to give up.
    pub fn next_wait(&mut self) -> Option<Duration> {
        self.retries = self.retries.saturating_add(1);
        self.policy.wait(self.retries)
    }

    /// Counts the failure `err` and returns the wait before the next try, or `None` to give
    /// up (permanent error, or retries spent).
    pub fn next_wait_after<E: Classify + ?Sized>(&mut self, err: &E) -> Option<Duration> {
        self.retries = self.retries.saturating_add(1);
        self.policy.wait_after(err, self.retries)
    }

    /// Retries counted since the last success.
    pub fn retries(&self) -> u32 {
        self.retries
    }

    /// Starts over after a success, so the next failure waits the shortest delay again.
    pub fn reset(&mut self) {
        self.retries = 0;
    }
}

/// Runs `op`, retrying while its error is transient, up to the policy's retries; a permanent
/// error returns at once. Waits honour the error's `Retry-After` (capped).
pub async fn retry_transient<T, E, F>(policy: &RetryPolicy, op: F) -> Result<T, E>
where
    E: Classify,
    F: AsyncFnMut() -> Result<T, E>,
{
    retry_transient_notify(policy, op, |_, _| {}).await
}

/// [`retry_transient`], calling `notify(error, wait)` before each wait (to log the retry).
pub async fn retry_transient_notify<T, E, F, N>(
    policy: &RetryPolicy,
    op: F,
    notify: N,
) -> Result<T, E>
where
    E: Classify,
    F: AsyncFnMut() -> Result<T, E>,
    N: FnMut(&E, Duration),
{
    run(op, |e, retry| policy.wait_after(e, retry), notify).await
}

/// Runs `op`, retrying every failure up to the policy's retries. For waits whose errors do
/// not say whether a retry can help — at start-up, Postgres or NATS may still be coming up.
pub async fn retry_notify<T, E, F, N>(policy: &RetryPolicy, op: F, notify: N) -> Result<T, E>
where
    F: AsyncFnMut() -> Result<T, E>,
    N: FnMut(&E, Duration),
{
    run(op, |_, retry| policy.wait(retry), notify).await
}

async fn run<T, E, F, W, N>(mut op: F, wait: W, mut notify: N) -> Result<T, E>
where
    F: AsyncFnMut() -> Result<T, E>,
    W: Fn(&E, u32) -> Option<Duration>,
    N: FnMut(&E, Duration),
{
    let mut retry = 0u32;
    loop {
        let err = match op().await {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        retry = retry.saturating_add(1);
        let Some(d) = wait(&err, retry) else {
            return Err(err);
        };
        notify(&err, d);
        tokio::time::sleep(d).await;
    }
}

/// Sleeps `wait` unless `cancel` fires first; `false` when cancelled (the loop should stop).
pub async fn sleep_unless_cancelled(wait: Duration, cancel: &CancellationToken) -> bool {
    tokio::select! {
        _ = cancel.cancelled() => false,
        _ = tokio::time::sleep(wait) => true,
    }
}

#[cfg(test)]
mod tests;
