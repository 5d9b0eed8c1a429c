//! What workers read on every message: connections cached for a short TTL, dropped at once
//! when the store announces a change on `config.connection.<vendor>.<tenant>`, so a worker
//! picks up new credentials or mappings without a restart.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use accesshub_bus::Bus;
use accesshub_domain::subjects;
use futures::StreamExt as _;

use crate::{
    error::ConnectionError,
    model::{Connection, Vendor},
    store::{ConnectionChanged, ConnectionStore, pick_for_site},
};

/// Default time a cached entry is trusted without a change notification.
pub const DEFAULT_TTL: Duration = Duration::from_secs(10);

type Key = (String, Vendor);
type Entry = (Instant, Arc<Loaded>);

/// One tenant × vendor as loaded: its connections, and which of them are being offboarded.
#[derive(Debug, Default)]
struct Loaded {
    conns: Vec<Connection>,
    offboarding: Vec<String>,
}

/// Per tenant × vendor cache over a [`ConnectionStore`]. Share it as `Arc<ConnectionCache>`.
#[derive(Debug)]
pub struct ConnectionCache {
    store: ConnectionStore,
    ttl: Duration,
    entries: Mutex<HashMap<Key, Entry>>,
    /// Bumped by every invalidation; a load that started before one is not cached.
    epoch: AtomicU64,
}

impl ConnectionCache {
    /// A cache with the given TTL ([`DEFAULT_TTL`] is a good default).
    pub fn new(store: ConnectionStore, ttl: Duration) -> Self {
        ConnectionCache {
            store,
            ttl,
            entries: Mutex::new(HashMap::new()),
            epoch: AtomicU64::new(0),
        }
    }

    /// The underlying store.
    pub fn store(&self) -> &ConnectionStore {
        &self.store
    }

    async fn load(&self, tenant: &str, vendor: Vendor) -> Result<Arc<Loaded>, ConnectionError> {
        let key = (tenant.to_owned(), vendor);
        {
            let map = self.entries.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((at, v)) = map.get(&key)
                && at.elapsed() < self.ttl
            {
                return Ok(v.clone());
            }
        }
        let epoch = self.epoch.load(Ordering::SeqCst);
        let (conns, offboarding) = self.store.list_for_with_offboarding(tenant, vendor).await?;
        let list = Arc::new(Loaded { conns, offboarding });
        let mut map = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if self.epoch.load(Ordering::SeqCst) == epoch {
            map.insert(key, (Instant::now(), list.clone()));
        }
        Ok(list)
    }

    /// The enabled connection of `vendor` serving `site` (see [`ConnectionStore::find_for_site`]).
    pub async fn get_for_site(
        &self,
        tenant: &str,
        vendor: Vendor,
        site: &str,
    ) -> Result<Option<Connection>, ConnectionError> {
        let list = self.load(tenant, vendor).await?;
        Ok(pick_for_site(&list.conns, site).cloned())
    }

    /// Runs `f` over every connection of the tenant to `vendor`, enabled or not, without
    /// copying them: booking-ingest's scope check reads them for every event.
    pub async fn with_all<R>(
        &self,
        tenant: &str,
        vendor: Vendor,
        f: impl FnOnce(&[Connection]) -> R,
    ) -> Result<R, ConnectionError> {
        Ok(f(&self.load(tenant, vendor).await?.conns))
    }

    /// Whether the tenant has any connection to `vendor`, enabled or not.
    pub async fn has_any(&self, tenant: &str, vendor: Vendor) -> Result<bool, ConnectionError> {
        Ok(!self.load(tenant, vendor).await?.conns.is_empty())
    }

    /// One connection by name (enabled or not).
    pub async fn get(
        &self,
        tenant: &str,
        vendor: Vendor,
        name: &str,
    ) -> Result<Option<Connection>, ConnectionError> {
        let list = self.load(tenant, vendor).await?;
        Ok(list.conns.iter().find(|c| c.name == name).cloned())
    }

    /// Whether the connection is being offboarded (it then wants no access at all).
    pub async fn is_offboarding(
        &self,
        tenant: &str,
        vendor: Vendor,
        name: &str,
    ) -> Result<bool, ConnectionError> {
        let list = self.load(tenant, vendor).await?;
        Ok(list.offboarding.iter().any(|n| n == name))
    }

    /// Drops the cached connections of one tenant and vendor.
    pub fn invalidate(&self, tenant: &str, vendor: Vendor) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        let mut map = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(&(tenant.to_owned(), vendor));
    }

    /// Drops everything (e.g. after reconnecting to NATS, when notifications may be lost).
    pub fn invalidate_all(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// Subscribes to change notifications (of one vendor, or all with `None`) and invalidates
    /// on each. The subscription exists when this returns; the task runs until the connection
    /// to NATS is dropped or the handle is aborted.
    pub async fn listen(
        self: &Arc<Self>,
        bus: &Bus,
        vendor: Option<Vendor>,
    ) -> Result<tokio::task::JoinHandle<()>, ConnectionError> {
        let filter = match vendor {
            Some(v) => format!("config.connection.{}.*", subjects::token(v.as_str())),
            None => "config.connection.*.*".to_owned(),
        };
        let mut sub = bus
            .client
            .subscribe(bus.subject(&filter))
            .await
            .map_err(|e| ConnectionError::Bus(e.to_string()))?;
        bus.client
            .flush()
            .await
            .map_err(|e| ConnectionError::Bus(e.to_string()))?;
        let cache = Arc::clone(self);
        let ns = bus.ns.clone();
        Ok(tokio::spawn(async move {
            while let Some(msg) = sub.next().await {
                match serde_json::from_slice::<ConnectionChanged>(&msg.payload) {
                    Ok(ch) => {
                        tracing::debug!(tenant = %ch.tenant, vendor = %ch.vendor, name = %ch.name, "connection changed: cache invalidated");
                        cache.invalidate(&ch.tenant, ch.vendor);
                    }
                    Err(_) => {
                        // Unknown payload: fall back to the subject, or drop everything.
                        let parts: Vec<&str> = ns.strip(&msg.subject).split('.').collect();
                        match (parts.get(2).and_then(|v| v.parse().ok()), parts.get(3)) {
                            (Some(v), Some(t)) => cache.invalidate(&subjects::untoken(t), v),
                            _ => cache.invalidate_all(),
                        }
                    }
                }
            }
        }))
    }
}
