//! Where connections come from. Coded against a small trait so the runtime does not depend on
//! how connections are stored: in production the Postgres `ConnectionStore` behind a
//! [`ConnectionCache`] (what the admin API and `accessctl apply` write); for local or static
//! setups a file or a fixed list ([`StaticConnections`]).

use std::{future::Future, pin::Pin, sync::Arc};

use accesshub_connections::{Connection, ConnectionCache, ConnectionError, Vendor};
use accesshub_domain::{Classify, ErrorClass};

/// A boxed future, so the trait stays object-safe (`Arc<dyn ConnectionSource>`).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Looking up a connection failed.
#[derive(Debug, thiserror::Error)]
#[error("connections: {message}")]
pub struct SourceError {
    /// What failed.
    pub message: String,
    /// Database down → transient; bad file → permanent.
    pub class: ErrorClass,
}

impl Classify for SourceError {
    fn class(&self) -> ErrorClass {
        self.class
    }
}

/// Finds the tenant's enabled connection to `vendor` serving `site`.
pub trait ConnectionSource: Send + Sync + 'static {
    /// `None` when the tenant has no such connection: the event is then dead-lettered (an
    /// operator must configure the mapping), unless the tenant does not use this vendor at
    /// all ([`ConnectionSource::uses_vendor`]).
    fn for_site<'a>(
        &'a self,
        tenant: &'a str,
        vendor: Vendor,
        site: &'a str,
    ) -> BoxFuture<'a, Result<Option<Connection>, SourceError>>;

    /// Whether the tenant has any connection (enabled or not) to `vendor`. Every worker sees
    /// every booking of its kinds: a tenant that does not use this vendor at all is skipped,
    /// not dead-lettered; one that has a connection but none serving the site (or only a
    /// disabled one) is dead-lettered so the event can be replayed once it is configured.
    /// The default says yes, which keeps dead-lettering.
    fn uses_vendor<'a>(
        &'a self,
        tenant: &'a str,
        vendor: Vendor,
    ) -> BoxFuture<'a, Result<bool, SourceError>> {
        let _ = (tenant, vendor);
        Box::pin(async { Ok(true) })
    }

    /// The tenant's connection to `vendor` called `name` (reconciler removal commands name
    /// the connection, not a site). The default finds none, so such commands dead-letter
    /// until the source implements it.
    fn by_name<'a>(
        &'a self,
        tenant: &'a str,
        vendor: Vendor,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<Connection>, SourceError>> {
        let _ = (tenant, vendor, name);
        Box::pin(async { Ok(None) })
    }

    /// Whether the connection is being offboarded: it then wants no access at all (its
    /// events are applied as endings, removals spare nothing). The default (and a static
    /// list, which cannot change at run time) says no.
    fn offboarding<'a>(
        &'a self,
        tenant: &'a str,
        vendor: Vendor,
        name: &'a str,
    ) -> BoxFuture<'a, Result<bool, SourceError>> {
        let _ = (tenant, vendor, name);
        Box::pin(async { Ok(false) })
    }
}

/// A fixed list of connections: tests, and `ACCESSHUB_CONNECTIONS_FILE` for local or static
/// setups without the admin API (changes need a restart).
#[derive(Debug, Clone, Default)]
pub struct StaticConnections {
    list: Arc<Vec<Connection>>,
}

impl StaticConnections {
    /// From a list.
    pub fn new(list: Vec<Connection>) -> Self {
        StaticConnections {
            list: Arc::new(list),
        }
    }

    /// From a YAML or JSON file holding a list of connections (the `accessctl apply` shape).
    pub fn from_file(path: &str) -> Result<Self, SourceError> {
        let text = std::fs::read_to_string(path).map_err(|e| SourceError {
            message: format!("{path}: {e}"),
            class: ErrorClass::Permanent,
        })?;
        let list: Vec<Connection> = yaml_serde::from_str(&text).map_err(|e| SourceError {
            message: format!("{path}: {e}"),
            class: ErrorClass::Permanent,
        })?;
        Ok(Self::new(list))
    }
}

impl ConnectionSource for StaticConnections {
    fn uses_vendor<'a>(
        &'a self,
        tenant: &'a str,
        vendor: Vendor,
    ) -> BoxFuture<'a, Result<bool, SourceError>> {
        let any = self
            .list
            .iter()
            .any(|c| c.tenant == tenant && c.vendor() == vendor);
        Box::pin(async move { Ok(any) })
    }

    fn for_site<'a>(
        &'a self,
        tenant: &'a str,
        vendor: Vendor,
        site: &'a str,
    ) -> BoxFuture<'a, Result<Option<Connection>, SourceError>> {
        let found = self
            .list
            .iter()
            .find(|c| c.tenant == tenant && c.vendor() == vendor && c.serves_site(site))
            .cloned();
        Box::pin(async move { Ok(found) })
    }

    fn by_name<'a>(
        &'a self,
        tenant: &'a str,
        vendor: Vendor,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<Connection>, SourceError>> {
        let found = self
            .list
            .iter()
            .find(|c| c.tenant == tenant && c.vendor() == vendor && c.name == name)
            .cloned();
        Box::pin(async move { Ok(found) })
    }
}

impl From<ConnectionError> for SourceError {
    fn from(e: ConnectionError) -> Self {
        SourceError {
            class: e.class(),
            message: e.to_string(),
        }
    }
}

/// The Postgres store, read through the cache: what operators save through the admin API or
/// `accessctl apply` reaches the worker within the cache TTL, or at once when the store's
/// change notification arrives (when [`ConnectionCache::listen`] runs, as in `serve_main`).
impl ConnectionSource for ConnectionCache {
    fn uses_vendor<'a>(
        &'a self,
        tenant: &'a str,
        vendor: Vendor,
    ) -> BoxFuture<'a, Result<bool, SourceError>> {
        Box::pin(async move { Ok(self.has_any(tenant, vendor).await?) })
    }

    fn for_site<'a>(
        &'a self,
        tenant: &'a str,
        vendor: Vendor,
        site: &'a str,
    ) -> BoxFuture<'a, Result<Option<Connection>, SourceError>> {
        Box::pin(async move { Ok(self.get_for_site(tenant, vendor, site).await?) })
    }

    fn by_name<'a>(
        &'a self,
        tenant: &'a str,
        vendor: Vendor,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<Connection>, SourceError>> {
        Box::pin(async move { Ok(self.get(tenant, vendor, name).await?) })
    }

    fn offboarding<'a>(
        &'a self,
        tenant: &'a str,
        vendor: Vendor,
        name: &'a str,
    ) -> BoxFuture<'a, Result<bool, SourceError>> {
        Box::pin(async move { Ok(self.is_offboarding(tenant, vendor, name).await?) })
    }
}
