//! Request limits of the public webhook port: a global request rate and in-flight cap that
//! every request spends *before* anything else (so unauthenticated traffic can only use up
//! the global budget), and a per-tenant rate and in-flight cap spent only once a request's
//! signature has verified (so a spoofer who knows a tenant id cannot exhaust that tenant's
//! budget). Over a limit: 429 with `Retry-After`.
//!
//! Rates are GCRA token buckets from `governor`; in-flight caps are counters released on drop.

use std::{
    collections::HashMap,
    num::NonZeroU32,
    sync::{Arc, Mutex},
    time::Duration,
};

use accesshub_config::{ConfigError, env_duration, env_or};
use governor::{
    DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter,
    clock::{Clock as _, DefaultClock},
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::Reject;

/// Settings of [`Limits`] (environment variables in [`LimitsConfig::from_env`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitsConfig {
    /// Webhook requests per second over all tenants (`ACCESSHUB_INGEST_RATE`).
    pub rate: NonZeroU32,
    /// Requests allowed at once above `rate` (`ACCESSHUB_INGEST_BURST`).
    pub burst: NonZeroU32,
    /// Webhook requests in flight at once (`ACCESSHUB_INGEST_MAX_IN_FLIGHT`).
    pub max_in_flight: NonZeroU32,
    /// Authenticated requests per second of one tenant (`ACCESSHUB_INGEST_TENANT_RATE`).
    pub tenant_rate: NonZeroU32,
    /// Burst of one tenant (`ACCESSHUB_INGEST_TENANT_BURST`).
    pub tenant_burst: NonZeroU32,
    /// Authenticated requests of one tenant in flight at once
    /// (`ACCESSHUB_INGEST_TENANT_MAX_IN_FLIGHT`).
    pub tenant_max_in_flight: NonZeroU32,
    /// How long a body may take to arrive (`ACCESSHUB_INGEST_BODY_TIMEOUT`): a slow sender
    /// holds a global in-flight slot, so it must not hold it forever.
    pub body_timeout: Duration,
}

/// `n` as a `NonZeroU32`, for constants.
const fn nz(n: u32) -> NonZeroU32 {
    match NonZeroU32::new(n) {
        Some(v) => v,
        None => NonZeroU32::MIN,
    }
}

impl Default for LimitsConfig {
    /// Production defaults: well above what 2 cores commit (about 2,000–5,000 webhooks/s in
    /// ingest-bench), so they only bite on a flood.
    fn default() -> Self {
        LimitsConfig {
            rate: nz(10_000),
            burst: nz(10_000),
            max_in_flight: nz(4_096),
            tenant_rate: nz(500),
            tenant_burst: nz(1_000),
            tenant_max_in_flight: nz(256),
            body_timeout: Duration::from_secs(10),
        }
    }
}

impl LimitsConfig {
    /// No practical limit (benchmarks and tests that drive one tenant at full speed).
    pub fn unlimited() -> Self {
        LimitsConfig {
            rate: NonZeroU32::MAX,
            burst: NonZeroU32::MAX,
            max_in_flight: nz(1 << 20),
            tenant_rate: NonZeroU32::MAX,
            tenant_burst: NonZeroU32::MAX,
            tenant_max_in_flight: nz(1 << 20),
            body_timeout: Duration::from_secs(30),
        }
    }

    /// Reads the `ACCESSHUB_INGEST_*` limit variables; zero or garbage fails start-up.
    pub fn from_env() -> Result<Self, ConfigError> {
        let d = LimitsConfig::default();
        let cfg = LimitsConfig {
            rate: env_or("ACCESSHUB_INGEST_RATE", d.rate)?,
            burst: env_or("ACCESSHUB_INGEST_BURST", d.burst)?,
            max_in_flight: env_or("ACCESSHUB_INGEST_MAX_IN_FLIGHT", d.max_in_flight)?,
            tenant_rate: env_or("ACCESSHUB_INGEST_TENANT_RATE", d.tenant_rate)?,
            tenant_burst: env_or("ACCESSHUB_INGEST_TENANT_BURST", d.tenant_burst)?,
            tenant_max_in_flight: env_or(
                "ACCESSHUB_INGEST_TENANT_MAX_IN_FLIGHT",
                d.tenant_max_in_flight,
            )?,
            body_timeout: env_duration("ACCESSHUB_INGEST_BODY_TIMEOUT", d.body_timeout)?,
        };
        if cfg.body_timeout.is_zero() {
            return Err(ConfigError::Invalid {
                name: "ACCESSHUB_INGEST_BODY_TIMEOUT",
                value: "0s".to_owned(),
                problem: "must be longer than zero".to_owned(),
            });
        }
        Ok(cfg)
    }
}

/// The limiters of one process (each replica limits on its own).
pub struct Limits {
    global: DefaultDirectRateLimiter,
    in_flight: Arc<Semaphore>,
    tenants: DefaultKeyedRateLimiter<String>,
    tenant_in_flight: Arc<Mutex<HashMap<String, u32>>>,
    tenant_max_in_flight: u32,
    clock: DefaultClock,
    /// See [`LimitsConfig::body_timeout`].
    pub body_timeout: Duration,
}

impl std::fmt::Debug for Limits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limits")
            .field("in_flight_available", &self.in_flight.available_permits())
            .field("tenant_max_in_flight", &self.tenant_max_in_flight)
            .field("body_timeout", &self.body_timeout)
            .finish_non_exhaustive()
    }
}

/// A global in-flight slot, released on drop.
#[derive(Debug)]
pub struct GlobalSlot {
    _permit: OwnedSemaphorePermit,
}

/// A tenant's in-flight slot, released on drop. The map only holds tenants with requests in
/// flight, and only authenticated ones, so it stays as small as the set of busy tenants.
#[derive(Debug)]
pub struct TenantSlot {
    map: Arc<Mutex<HashMap<String, u32>>>,
    tenant: String,
}

impl Drop for TenantSlot {
    fn drop(&mut self) {
        if let Ok(mut map) = self.map.lock()
            && let Some(n) = map.get_mut(&self.tenant)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&self.tenant);
            }
        }
    }
}

impl Limits {
    /// Limiters for `cfg`.
    pub fn new(cfg: &LimitsConfig) -> Self {
        let permits = usize::try_from(cfg.max_in_flight.get())
            .unwrap_or(usize::MAX)
            .min(Semaphore::MAX_PERMITS);
        Limits {
            global: RateLimiter::direct(Quota::per_second(cfg.rate).allow_burst(cfg.burst)),
            in_flight: Arc::new(Semaphore::new(permits)),
            tenants: RateLimiter::keyed(
                Quota::per_second(cfg.tenant_rate).allow_burst(cfg.tenant_burst),
            ),
            tenant_in_flight: Arc::default(),
            tenant_max_in_flight: cfg.tenant_max_in_flight.get(),
            clock: DefaultClock::default(),
            body_timeout: cfg.body_timeout,
        }
    }

    /// The global budget: one request of the rate and one in-flight slot (held until the
    /// answer).
    pub fn admit(&self) -> Result<GlobalSlot, Reject> {
        let slot = self
            .in_flight
            .clone()
            .try_acquire_owned()
            .map_err(|_| busy("global"))?;
        self.global
            .check()
            .map_err(|n| self.too_fast("global", n.wait_time_from(self.clock.now())))?;
        Ok(GlobalSlot { _permit: slot })
    }

    /// The budget of an authenticated `tenant`: one request of its rate and one in-flight slot.
    pub fn admit_tenant(&self, tenant: &str) -> Result<TenantSlot, Reject> {
        {
            let mut map = self
                .tenant_in_flight
                .lock()
                .map_err(|_| Reject::Unavailable)?;
            let n = map.entry(tenant.to_owned()).or_insert(0);
            if *n >= self.tenant_max_in_flight {
                return Err(busy("tenant"));
            }
            *n += 1;
        }
        // From here on the slot releases itself, also when the rate refuses.
        let slot = TenantSlot {
            map: self.tenant_in_flight.clone(),
            tenant: tenant.to_owned(),
        };
        let key = tenant.to_owned();
        self.tenants
            .check_key(&key)
            .map_err(|n| self.too_fast("tenant", n.wait_time_from(self.clock.now())))?;
        Ok(slot)
    }

    /// Forgets tenants whose bucket is full again (called now and then, so the keyed state
    /// does not keep every tenant ever seen).
    pub fn shrink(&self) {
        self.tenants.retain_recent();
        self.tenants.shrink_to_fit();
    }

    fn too_fast(&self, scope: &'static str, wait: Duration) -> Reject {
        Reject::TooManyRequests {
            scope,
            retry_after_secs: retry_after(wait),
        }
    }
}

/// Over an in-flight cap: a request usually finishes within a second.
fn busy(scope: &'static str) -> Reject {
    Reject::TooManyRequests {
        scope,
        retry_after_secs: 1,
    }
}

/// Whole seconds for `Retry-After`, rounded up, at least 1.
pub fn retry_after(wait: Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> LimitsConfig {
        LimitsConfig {
            rate: nz(1_000),
            burst: nz(1_000),
            max_in_flight: nz(2),
            tenant_rate: nz(1),
            tenant_burst: nz(2),
            tenant_max_in_flight: nz(1),
            body_timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn in_flight_slots_are_released_on_drop() {
        let l = Limits::new(&cfg());
        let a = l.admit().unwrap();
        let _b = l.admit().unwrap();
        assert!(matches!(
            l.admit(),
            Err(Reject::TooManyRequests {
                scope: "global",
                retry_after_secs: 1
            })
        ));
        drop(a);
        assert!(l.admit().is_ok());

        let t = l.admit_tenant("acme").unwrap();
        assert!(matches!(
            l.admit_tenant("acme"),
            Err(Reject::TooManyRequests {
                scope: "tenant",
                ..
            })
        ));
        // Another tenant is not affected.
        let _o = l.admit_tenant("other").unwrap();
        drop(t);
        // Released; the rate (burst 2) still allows the second one.
        let _t = l.admit_tenant("acme").unwrap();
        assert!(l.tenant_in_flight.lock().unwrap().len() == 2);
    }

    #[test]
    fn tenant_rate_answers_with_a_retry_after() {
        let l = Limits::new(&cfg());
        drop(l.admit_tenant("acme").unwrap());
        drop(l.admit_tenant("acme").unwrap());
        match l.admit_tenant("acme") {
            Err(Reject::TooManyRequests {
                scope: "tenant",
                retry_after_secs,
            }) => assert_eq!(retry_after_secs, 1),
            other => panic!("{other:?}"),
        }
        // The refused request released its in-flight slot.
        assert!(l.tenant_in_flight.lock().unwrap().is_empty());
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(retry_after(Duration::ZERO), 1);
        assert_eq!(retry_after(Duration::from_millis(1)), 1);
        assert_eq!(retry_after(Duration::from_millis(1_001)), 2);
        assert_eq!(retry_after(Duration::from_secs(3)), 3);
    }
}
