#![allow(clippy::unwrap_used)] // tests may unwrap

use std::{cell::Cell, time::Duration};

use accesshub_domain::{Classify, ErrorClass};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::*;

const MS: Duration = Duration::from_millis(1);

#[derive(Debug, Clone, Copy, PartialEq)]
struct Fail {
    class: ErrorClass,
    retry_after: Option<Duration>,
}

impl Fail {
    const TRANSIENT: Fail = Fail {
        class: ErrorClass::Transient,
        retry_after: None,
    };
    const PERMANENT: Fail = Fail {
        class: ErrorClass::Permanent,
        retry_after: None,
    };
    fn asking(d: Duration) -> Fail {
        Fail {
            class: ErrorClass::Transient,
            retry_after: Some(d),
        }
    }
}

impl Classify for Fail {
    fn class(&self) -> ErrorClass {
        self.class
    }
    fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }
}

fn policy(max_retries: u32) -> RetryPolicy {
    RetryPolicy::limited(Backoff::new(250 * MS, 4000 * MS), max_retries)
        .with_retry_after_max(Duration::from_secs(30))
}

/// Retries `op`'s failure `err` until it succeeds on call `ok_on` (never if 0), returning the
/// result, the calls made and the waits notified.
async fn drive(p: &RetryPolicy, err: Fail, ok_on: u32) -> (Result<u32, Fail>, u32, Vec<Duration>) {
    let calls = Cell::new(0u32);
    let mut waits = Vec::new();
    let r = retry_transient_notify(
        p,
        || {
            calls.set(calls.get() + 1);
            let n = calls.get();
            async move { if n == ok_on { Ok(n) } else { Err(err) } }
        },
        |_, d| waits.push(d),
    )
    .await;
    (r, calls.get(), waits)
}

#[test]
fn delays_grow_double_are_capped_and_stay_within_bounds() {
    let b = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
    for retry in 1..40u64 {
        let cap = Duration::from_secs(1u64 << (retry - 1).min(20)).min(Duration::from_secs(60));
        assert_eq!(b.cap(retry), cap, "retry {retry}");
        for _ in 0..50 {
            let d = b.delay(retry);
            assert!(
                d <= cap && d >= cap / 10,
                "retry {retry}: {d:?} outside [{cap:?}/10, {cap:?}]"
            );
        }
    }
    assert_eq!(
        b.cap(0),
        Duration::from_secs(1),
        "0 counts as the first retry"
    );
}

#[test]
fn delays_are_jittered() {
    let b = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
    let draws: std::collections::HashSet<Duration> = (0..100).map(|_| b.delay(3)).collect();
    // 100 draws from 3.6 million microseconds: a constant delay would give one value.
    assert!(draws.len() > 50, "{} distinct delays", draws.len());
}

#[test]
fn a_tiny_base_never_draws_zero() {
    let b = Backoff::new(Duration::ZERO, Duration::ZERO);
    assert!(b.delay(1) <= Duration::from_micros(1));
    let b = Backoff::new(Duration::from_millis(5), Duration::from_millis(500));
    assert!((0..100).all(|_| b.delay(1) >= Duration::from_micros(500)));
}

#[tokio::test(start_paused = true)]
async fn gives_up_after_the_retries_on_transient_errors() {
    let start = Instant::now();
    let (r, calls, waits) = drive(&policy(4), Fail::TRANSIENT, 0).await;
    assert_eq!(r, Err(Fail::TRANSIENT));
    assert_eq!(calls, 5, "one try and four retries");
    assert_eq!(waits.len(), 4);
    for (i, w) in waits.iter().enumerate() {
        let cap = policy(4).backoff.cap(i as u64 + 1);
        assert!(*w <= cap && *w >= cap / 10, "wait {i}: {w:?} (cap {cap:?})");
    }
    // The paused clock advanced by the waits (each rounded up to tokio's 1 ms timer tick):
    // they were really slept.
    let slept: Duration = waits.iter().sum();
    let elapsed = start.elapsed();
    assert!(
        elapsed >= slept && elapsed <= slept + 4 * MS,
        "{elapsed:?} vs {slept:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn succeeds_after_transient_failures() {
    let (r, calls, waits) = drive(&policy(4), Fail::TRANSIENT, 3).await;
    assert_eq!((r, calls, waits.len()), (Ok(3), 3, 2));
}

#[tokio::test(start_paused = true)]
async fn returns_at_once_on_permanent_errors() {
    let start = Instant::now();
    let (r, calls, waits) = drive(&policy(4), Fail::PERMANENT, 0).await;
    assert_eq!((r, calls), (Err(Fail::PERMANENT), 1));
    assert!(waits.is_empty());
    assert_eq!(start.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn honours_retry_after_and_caps_it() {
    let start = Instant::now();
    let (r, _, waits) = drive(&policy(4), Fail::asking(Duration::from_secs(7)), 2).await;
    assert_eq!(r, Ok(2));
    assert_eq!(waits, [Duration::from_secs(7)]);
    assert_eq!(start.elapsed(), Duration::from_secs(7));
    // An hour asked: 30 s waited (the policy's cap), not the backoff's 4 s cap either.
    let start = Instant::now();
    let (r, _, waits) = drive(&policy(4), Fail::asking(Duration::from_secs(3600)), 2).await;
    assert_eq!(r, Ok(2));
    assert_eq!(waits, [Duration::from_secs(30)]);
    assert_eq!(start.elapsed(), Duration::from_secs(30));
}

#[tokio::test(start_paused = true)]
async fn retry_notify_retries_every_error_then_gives_up() {
    let calls = Cell::new(0u32);
    let r: Result<(), Fail> = retry_notify(
        &policy(2),
        || {
            calls.set(calls.get() + 1);
            async { Err(Fail::PERMANENT) }
        },
        |_, _| {},
    )
    .await;
    assert_eq!((r, calls.get()), (Err(Fail::PERMANENT), 3));
}

#[test]
fn attempts_count_reset_and_never_give_up_when_unlimited() {
    let mut a = RetryPolicy::forever(Backoff::new(MS, 10 * MS)).attempts();
    for _ in 0..10_000 {
        assert!(a.next_wait().is_some_and(|d| d <= 10 * MS));
    }
    assert_eq!(a.retries(), 10_000);
    a.reset();
    assert_eq!(a.retries(), 0);
    assert!(
        a.next_wait().is_some_and(|d| d <= MS),
        "back to the first delay"
    );

    let mut a = policy(2).attempts();
    assert!(a.next_wait_after(&Fail::TRANSIENT).is_some());
    assert!(a.next_wait_after(&Fail::TRANSIENT).is_some());
    assert_eq!(a.next_wait_after(&Fail::TRANSIENT), None, "spent");
    let mut a = policy(2).attempts();
    assert_eq!(a.next_wait_after(&Fail::PERMANENT), None);
}

#[tokio::test(start_paused = true)]
async fn sleep_stops_on_cancellation() {
    let cancel = CancellationToken::new();
    assert!(sleep_unless_cancelled(Duration::from_secs(5), &cancel).await);
    let start = Instant::now();
    let c = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(1)).await;
        c.cancel();
    });
    assert!(!sleep_unless_cancelled(Duration::from_secs(3600), &cancel).await);
    assert_eq!(start.elapsed(), Duration::from_secs(1));
}
