//! A per-connection cache of vendor clients, so OAuth tokens and HTTP pools survive across
//! events; a changed connection (new `version`) gets a fresh client.

use std::{collections::HashMap, sync::Arc};

use accesshub_connections::Connection;
use tokio::sync::Mutex;

/// (tenant, vendor, connection name).
type ConnKey = (String, String, String);

/// Clients keyed by (tenant, vendor, connection name), rebuilt when the version changes.
#[derive(Debug)]
pub struct ClientCache<T> {
    map: Mutex<HashMap<ConnKey, (i64, Arc<T>)>>,
}

impl<T> Default for ClientCache<T> {
    fn default() -> Self {
        ClientCache {
            map: Mutex::new(HashMap::new()),
        }
    }
}

impl<T> ClientCache<T> {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// The cached client for `conn`, or one built by `build` (built again when the
    /// connection's version changed).
    pub async fn get_or_try_init<E>(
        &self,
        conn: &Connection,
        build: impl FnOnce() -> Result<T, E>,
    ) -> Result<Arc<T>, E> {
        let key = (
            conn.tenant.clone(),
            conn.vendor().as_str().to_owned(),
            conn.name.clone(),
        );
        let mut map = self.map.lock().await;
        if let Some((version, c)) = map.get(&key)
            && *version == conn.version
        {
            return Ok(c.clone());
        }
        let c = Arc::new(build()?);
        map.insert(key, (conn.version, c.clone()));
        Ok(c)
    }
}
