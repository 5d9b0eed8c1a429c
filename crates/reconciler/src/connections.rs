//! Where the reconciler gets connections from. A trait, so the service can read them from the
//! connection store (accesshub-connections) while tests and the benchmark hand them in.

use std::sync::{Arc, RwLock};

use accesshub_connections::{Connection, OffboardIntent};
use futures::future::BoxFuture;

use crate::{error::ReconcileError, model::ConnectionRef};

/// Looks connections up by tenant × vendor × name.
pub trait ConnectionSource: Send + Sync {
    /// One connection, if it exists.
    fn get<'a>(
        &'a self,
        c: &'a ConnectionRef,
    ) -> BoxFuture<'a, Result<Option<Connection>, ReconcileError>>;
    /// Every connection (for default schedules).
    fn list(&self) -> BoxFuture<'_, Result<Vec<Connection>, ReconcileError>>;
    /// One tenant's connections to one vendor (a run's peers: where its bookings may have
    /// moved). The default filters [`ConnectionSource::list`].
    fn list_for<'a>(
        &'a self,
        tenant: &'a str,
        vendor: accesshub_connections::Vendor,
    ) -> BoxFuture<'a, Result<Vec<Connection>, ReconcileError>> {
        Box::pin(async move {
            Ok(self
                .list()
                .await?
                .into_iter()
                .filter(|c| c.tenant == tenant && c.vendor() == vendor)
                .collect())
        })
    }

    /// Whether the connection is being offboarded, and what then happens to it. Static sets
    /// never are (they cannot be changed at run time).
    fn offboarding<'a>(
        &'a self,
        c: &'a ConnectionRef,
    ) -> BoxFuture<'a, Result<Option<OffboardIntent>, ReconcileError>> {
        let _ = c;
        Box::pin(async { Ok(None) })
    }
}

/// A fixed, in-memory set (tests, benchmark, or a YAML file).
#[derive(Debug, Clone, Default)]
pub struct StaticConnections(Arc<RwLock<Vec<Connection>>>);

impl StaticConnections {
    /// From a list.
    pub fn new(conns: Vec<Connection>) -> Self {
        StaticConnections(Arc::new(RwLock::new(conns)))
    }

    /// Adds or replaces a connection (same tenant, vendor and name).
    pub fn upsert(&self, c: Connection) {
        let mut v = self.0.write().unwrap_or_else(|e| e.into_inner());
        v.retain(|x| !(x.tenant == c.tenant && x.vendor() == c.vendor() && x.name == c.name));
        v.push(c);
    }

    /// Reads connections from a YAML file holding a list of them (stopgap until the service
    /// reads the connection store).
    pub fn from_yaml_file(path: &str) -> Result<Self, ReconcileError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ReconcileError::invalid("connections file", format!("{path}: {e}")))?;
        let conns: Vec<Connection> = yaml_serde::from_str(&text)
            .map_err(|e| ReconcileError::invalid("connections file", format!("{path}: {e}")))?;
        Ok(StaticConnections::new(conns))
    }
}

/// The reference of a connection.
pub fn conn_ref(c: &Connection) -> ConnectionRef {
    ConnectionRef::from(c)
}

impl ConnectionSource for StaticConnections {
    fn get<'a>(
        &'a self,
        c: &'a ConnectionRef,
    ) -> BoxFuture<'a, Result<Option<Connection>, ReconcileError>> {
        let v = self.0.read().unwrap_or_else(|e| e.into_inner());
        let found = v.iter().find(|x| conn_ref(x) == *c).cloned();
        Box::pin(async move { Ok(found) })
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<Connection>, ReconcileError>> {
        let v = self.0.read().unwrap_or_else(|e| e.into_inner()).clone();
        Box::pin(async move { Ok(v) })
    }
}

fn vendor_of(c: &ConnectionRef) -> Result<accesshub_connections::Vendor, ReconcileError> {
    c.vendor
        .parse()
        .map_err(|e: String| ReconcileError::invalid("vendor", e))
}

/// Reads connections from the connection store (Postgres, secrets unsealed).
impl ConnectionSource for accesshub_connections::ConnectionStore {
    fn get<'a>(
        &'a self,
        c: &'a ConnectionRef,
    ) -> BoxFuture<'a, Result<Option<Connection>, ReconcileError>> {
        Box::pin(async move {
            let vendor = vendor_of(c)?;
            accesshub_connections::ConnectionStore::get(self, &c.tenant, vendor, &c.name)
                .await
                .map_err(|e| ReconcileError::Connections(e.to_string()))
        })
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<Connection>, ReconcileError>> {
        Box::pin(async move {
            accesshub_connections::ConnectionStore::list(self, None, None)
                .await
                .map_err(|e| ReconcileError::Connections(e.to_string()))
        })
    }

    fn list_for<'a>(
        &'a self,
        tenant: &'a str,
        vendor: accesshub_connections::Vendor,
    ) -> BoxFuture<'a, Result<Vec<Connection>, ReconcileError>> {
        Box::pin(async move {
            accesshub_connections::ConnectionStore::list(self, Some(tenant), Some(vendor))
                .await
                .map_err(|e| ReconcileError::Connections(e.to_string()))
        })
    }

    fn offboarding<'a>(
        &'a self,
        c: &'a ConnectionRef,
    ) -> BoxFuture<'a, Result<Option<OffboardIntent>, ReconcileError>> {
        Box::pin(async move {
            let vendor = vendor_of(c)?;
            accesshub_connections::offboard::intent(self.pool(), &c.tenant, vendor, &c.name)
                .await
                .map_err(|e| ReconcileError::Connections(e.to_string()))
        })
    }
}
