//! The worker's circuit breakers, one per connection (tenant + vendor connection), and the
//! loop that moves them on with the clock: an open breaker whose interval has passed sends its
//! oldest parked message as the probe ([`parking`]); a closed one with parked messages
//! publishes them again, oldest first. The decisions are [`breaker::next`]'s; this file only
//! keeps the states, the gauges and the timing.
//!
//! Breakers live in each replica's memory; parked messages live in Postgres, shared. A
//! replica that starts (or whose breaker is closed) with parked messages of a connection
//! publishes them again; if the vendor is still down there, its own breaker opens after
//! `threshold` failures and parks them again — nothing is dead-lettered meanwhile as long as
//! `threshold` < `max_deliver`.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use accesshub_telemetry::{
    Registry,
    metrics::{GaugeVec, labels},
};
use tokio_util::sync::CancellationToken;

use super::{Shared, now_ms};
use crate::{
    breaker::{self, BreakerPolicy, Signal, State},
    handler::Handler,
    parking,
};

/// Parked messages published again per connection and tick once its breaker is closed.
const DRAIN_CHUNK: i64 = 500;

type Key = (String, String);

pub(super) struct Breakers {
    policy: BreakerPolicy,
    vendor: String,
    states: Mutex<HashMap<Key, State>>,
    open: GaugeVec,
    parked: GaugeVec,
}

impl Breakers {
    pub(super) fn new(registry: &Registry, vendor: &str, policy: BreakerPolicy) -> Self {
        Breakers {
            policy,
            vendor: vendor.to_owned(),
            states: Mutex::new(HashMap::new()),
            open: registry.gauge(
                "accesshub_connection_breaker_open",
                "1 while the connection's circuit breaker is open or half-open in this replica \
                 (its vendor failed transiently too often in a row): its events are parked, not retried",
            ),
            parked: registry.gauge(
                "accesshub_connection_parked",
                "Events of the connection parked in Postgres while its breaker is open, waiting to apply",
            ),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, State>> {
        self.states.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn gauge(&self, tenant: &str, conn: &str, state: State) {
        self.open
            .get_or_create(&labels([
                ("tenant", tenant),
                ("vendor", &self.vendor),
                ("connection", conn),
            ]))
            .set(i64::from(state.is_open()));
    }

    /// Whether a message of `tenant`'s connection `conn` may call the vendor now (`probe`: it
    /// is a half-open breaker's probe).
    pub(super) fn admits(&self, tenant: &str, conn: &str, probe: bool) -> bool {
        if self.policy.threshold == 0 {
            return true;
        }
        let states = self.lock();
        if states.is_empty() {
            return true;
        }
        let state = states
            .get(&(tenant.to_owned(), conn.to_owned()))
            .copied()
            .unwrap_or_default();
        breaker::admits(state, probe)
    }

    /// Moves the breaker on after a vendor call's outcome; the new state.
    pub(super) fn record(&self, tenant: &str, conn: &str, signal: Signal) -> State {
        if self.policy.threshold == 0 {
            return State::default();
        }
        let (before, after) = {
            let mut states = self.lock();
            // Every breaker closed and clean (the usual case): a success changes nothing.
            if signal == Signal::Success && states.is_empty() {
                return State::default();
            }
            let key = (tenant.to_owned(), conn.to_owned());
            let before = states.get(&key).copied().unwrap_or_default();
            let after = breaker::next(&self.policy, before, signal, now_ms());
            if after == State::default() {
                states.remove(&key);
            } else {
                states.insert(key, after);
            }
            (before, after)
        };
        if before.is_open() != after.is_open() {
            if after.is_open() {
                tracing::warn!(tenant, connection = conn, vendor = %self.vendor,
                    "circuit breaker opened: the connection's events are parked until its vendor answers");
            } else {
                tracing::info!(tenant, connection = conn, vendor = %self.vendor,
                    "circuit breaker closed: parked events apply again");
            }
            self.gauge(tenant, conn, after);
        }
        after
    }

    /// A connection whose messages were parked before this replica knew of an outage (an
    /// earlier process): open with its probe due now.
    fn seed_open(&self, tenant: &str, conn: &str, now: i64) {
        let mut states = self.lock();
        let state = State::Open {
            trips: 1,
            probe_at: now,
        };
        states
            .entry((tenant.to_owned(), conn.to_owned()))
            .or_insert(state);
        drop(states);
        self.gauge(tenant, conn, state);
    }

    /// The clock: every breaker moves on; returns the connections that just went half-open.
    fn tick(&self, now: i64) -> Vec<Key> {
        let mut probes = Vec::new();
        let mut changed = Vec::new();
        {
            let mut states = self.lock();
            for (key, state) in states.iter_mut() {
                let next = breaker::next(&self.policy, *state, Signal::Tick, now);
                if matches!(next, State::HalfOpen { .. })
                    && !matches!(state, State::HalfOpen { .. })
                {
                    probes.push(key.clone());
                }
                if next.is_open() != state.is_open() {
                    changed.push((key.clone(), next));
                }
                *state = next;
            }
        }
        for ((tenant, conn), state) in changed {
            self.gauge(&tenant, &conn, state);
        }
        probes
    }

    fn state(&self, tenant: &str, conn: &str) -> State {
        self.lock()
            .get(&(tenant.to_owned(), conn.to_owned()))
            .copied()
            .unwrap_or_default()
    }
}

/// How often breakers are looked at: a quarter of the first open interval, 50 ms to 1 s.
fn tick_every(policy: &BreakerPolicy) -> Duration {
    (policy.open.base / 4).clamp(Duration::from_millis(50), Duration::from_secs(1))
}

/// Runs until `shutdown`: probes, drains and the parked gauge.
pub(super) async fn breaker_loop<H: Handler>(s: Arc<Shared<H>>, shutdown: CancellationToken) {
    let b = &s.breakers;
    if b.policy.threshold == 0 {
        return;
    }
    let vendor = s.handler.vendor().as_str();
    match parking::parked_connections(&s.pool, vendor).await {
        Ok(rows) => {
            let now = now_ms();
            for (tenant, conn, _) in rows {
                b.seed_open(&tenant, &conn, now);
            }
        }
        Err(e) => tracing::warn!(error = %e, "reading parked events at start failed"),
    }
    let mut tick = tokio::time::interval(tick_every(&b.policy));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Connections whose parked gauge is non-zero, so it drops to 0 once they are drained.
    let mut shown: Vec<Key> = Vec::new();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        for (tenant, conn) in b.tick(now_ms()) {
            match parking::republish(&s.pool, &s.bus, vendor, &tenant, &conn, 1, true).await {
                // Nothing parked to probe with (another replica drained it): live traffic
                // is the probe.
                Ok(0) => {
                    b.record(&tenant, &conn, Signal::Success);
                }
                Ok(_) => {
                    tracing::info!(%tenant, connection = %conn, "circuit breaker half-open: probe sent")
                }
                Err(e) => {
                    tracing::warn!(error = %e, %tenant, connection = %conn, "sending the breaker's probe failed")
                }
            }
        }
        let parked = match parking::parked_connections(&s.pool, vendor).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "reading parked events failed");
                continue;
            }
        };
        let mut now_shown = Vec::with_capacity(parked.len());
        for (tenant, conn, count) in parked {
            b.parked
                .get_or_create(&labels([
                    ("tenant", tenant.as_str()),
                    ("vendor", vendor),
                    ("connection", conn.as_str()),
                ]))
                .set(count);
            if !b.state(&tenant, &conn).is_open() {
                match parking::republish(
                    &s.pool,
                    &s.bus,
                    vendor,
                    &tenant,
                    &conn,
                    DRAIN_CHUNK,
                    false,
                )
                .await
                {
                    Ok(n) => {
                        tracing::info!(%tenant, connection = %conn, republished = n, "parked events published again")
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, %tenant, connection = %conn, "publishing parked events again failed")
                    }
                }
            }
            now_shown.push((tenant, conn));
        }
        for (tenant, conn) in shown.iter().filter(|k| !now_shown.contains(k)) {
            b.parked
                .get_or_create(&labels([
                    ("tenant", tenant.as_str()),
                    ("vendor", vendor),
                    ("connection", conn.as_str()),
                ]))
                .set(0);
        }
        shown = now_shown;
    }
}
