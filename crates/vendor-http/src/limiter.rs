//! A token bucket: the per-connection rate limit of vendor calls (principle 5), so one
//! tenant's burst cannot get the shared API user throttled by the vendor.

use std::time::{Duration, Instant};

use tokio::sync::Mutex;

/// Token bucket: `rate` tokens per second, bursts up to `burst`. Waiters queue fairly on the
/// mutex, so the bucket also orders them.
#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    state: Mutex<(f64, Instant)>,
}

impl RateLimiter {
    /// `rate` calls per second (0 or less = unlimited), bursts up to `burst`.
    pub fn new(rate: f64, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        RateLimiter {
            rate,
            burst,
            state: Mutex::new((burst, Instant::now())),
        }
    }

    /// Waits until a call may be made.
    pub async fn acquire(&self) {
        if self.rate <= 0.0 {
            return;
        }
        let mut st = self.state.lock().await;
        loop {
            let now = Instant::now();
            let (tokens, last) = *st;
            let tokens =
                (tokens + now.duration_since(last).as_secs_f64() * self.rate).min(self.burst);
            if tokens >= 1.0 {
                *st = (tokens - 1.0, now);
                return;
            }
            *st = (tokens, now);
            let wait = (1.0 - tokens) / self.rate;
            tokio::time::sleep(Duration::from_secs_f64(wait)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn limits_rate_after_burst() {
        let l = RateLimiter::new(50.0, 5);
        let start = Instant::now();
        for _ in 0..15 {
            l.acquire().await;
        }
        // 5 free, 10 more at 50/s = 200 ms.
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(180), "{took:?}");
        assert!(took < Duration::from_millis(600), "{took:?}");
    }
}
