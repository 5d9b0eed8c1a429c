//! Connections in Postgres, secrets sealed with the [`SecretBox`].
//!
//! Each row keeps the settings twice: `settings` (JSONB, every secret replaced by `***`) for
//! listing and diffs, and `settings_enc` (the full settings JSON, sealed) which is the only
//! place a secret lives. After every change the store publishes
//! `config.connection.<vendor>.<tenant>` (namespaced) so caches drop their copy at once.

use accesshub_bus::Bus;
use accesshub_store::{SecretBox, connection_aad};
use serde::{Deserialize, Serialize};
use sqlx::{PgPool, Row, postgres::PgRow};

use crate::{
    diff::{Change, diff},
    error::ConnectionError,
    model::*,
    offboard::OffboardIntent,
    validate::validate_with,
};
use accesshub_domain::egress::EgressPolicy;

/// Result of applying a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ApplyStatus {
    /// It did not exist.
    Created,
    /// It existed and something changed; the version was bumped.
    Updated,
    /// Same content as stored; nothing written.
    Unchanged,
}

/// What [`ConnectionStore::apply`] did (or, for a plan, would do).
#[derive(Debug, Clone)]
pub struct ApplyOutcome {
    /// The connection as stored afterwards (full, with secrets: redact before returning it).
    pub connection: Connection,
    /// Created, updated or unchanged.
    pub status: ApplyStatus,
    /// Field changes, secrets redacted.
    pub changes: Vec<Change>,
}

/// Payload of `config.connection.<vendor>.<tenant>` notifications.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConnectionChanged {
    /// Tenant.
    pub tenant: String,
    /// Vendor.
    pub vendor: Vendor,
    /// Connection name.
    pub name: String,
    /// Version after the change (0 when deleted).
    pub version: i64,
    /// Whether the connection was deleted.
    pub deleted: bool,
}

/// Reads and writes connections. Cheap to clone.
#[derive(Clone, Debug)]
pub struct ConnectionStore {
    pool: PgPool,
    secrets: SecretBox,
    bus: Option<Bus>,
    egress: EgressPolicy,
}

impl ConnectionStore {
    /// A store without change notifications (tests, one-shot tools).
    pub fn new(pool: PgPool, secrets: SecretBox) -> Self {
        ConnectionStore {
            pool,
            secrets,
            bus: None,
            egress: EgressPolicy::strict(),
        }
    }

    /// Where connections may point (the deployment's `ACCESSHUB_EGRESS_ALLOW`); strict
    /// (https to public addresses only) unless set.
    pub fn with_egress(mut self, egress: EgressPolicy) -> Self {
        self.egress = egress;
        self
    }

    /// The egress policy endpoints are checked against.
    pub fn egress(&self) -> &EgressPolicy {
        &self.egress
    }

    /// Publishes a change notification on `bus` after every write.
    pub fn with_bus(mut self, bus: Bus) -> Self {
        self.bus = Some(bus);
        self
    }

    /// The pool (for callers that share it).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    fn decode(&self, row: &PgRow) -> Result<Connection, ConnectionError> {
        let tenant: String = row.try_get("tenant_id")?;
        let name: String = row.try_get("name")?;
        let vendor: String = row.try_get("vendor")?;
        let sealed: String = row.try_get("settings_enc")?;
        let what = format!("connection {tenant}/{vendor}/{name}");
        // The settings with their secrets, in clear: wiped once parsed.
        let plain = zeroize::Zeroizing::new(
            self.secrets
                .open_reported(&sealed, &connection_aad(&tenant, &vendor, &name), &what)
                .map_err(|e| ConnectionError::secret(e, &what))?,
        );
        let settings: VendorSettings =
            serde_json::from_str(&plain).map_err(|e| ConnectionError::Corrupt {
                what: format!("connection {tenant}/{vendor}/{name}"),
                // serde's messages can quote input; keep only the position.
                message: format!(
                    "settings do not parse (line {}, column {})",
                    e.line(),
                    e.column()
                ),
            })?;
        Ok(Connection {
            tenant,
            name,
            enabled: row.try_get("enabled")?,
            sites: row.try_get("sites")?,
            settings,
            version: row.try_get("version")?,
        })
    }

    /// One connection (`name` is usually `"default"`), secrets included.
    pub async fn get(
        &self,
        tenant: &str,
        vendor: Vendor,
        name: &str,
    ) -> Result<Option<Connection>, ConnectionError> {
        let row = sqlx::query(
            "SELECT tenant_id, vendor, name, enabled, sites, settings_enc, version
             FROM connections WHERE tenant_id = $1 AND vendor = $2 AND name = $3",
        )
        .bind(tenant)
        .bind(vendor.as_str())
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| self.decode(&r)).transpose()
    }

    /// Every connection of one tenant to one vendor, the ones limited to specific sites first
    /// (so they win over a catch-all), then by name.
    pub async fn list_for(
        &self,
        tenant: &str,
        vendor: Vendor,
    ) -> Result<Vec<Connection>, ConnectionError> {
        Ok(self.list_for_with_offboarding(tenant, vendor).await?.0)
    }

    /// Like [`ConnectionStore::list_for`], with the names of those being offboarded (they want
    /// no access: see [`crate::offboard`]).
    pub async fn list_for_with_offboarding(
        &self,
        tenant: &str,
        vendor: Vendor,
    ) -> Result<(Vec<Connection>, Vec<String>), ConnectionError> {
        let rows = sqlx::query(
            "SELECT tenant_id, vendor, name, enabled, sites, settings_enc, version, offboarding
             FROM connections WHERE tenant_id = $1 AND vendor = $2
             ORDER BY cardinality(sites) = 0, name",
        )
        .bind(tenant)
        .bind(vendor.as_str())
        .fetch_all(&self.pool)
        .await?;
        let mut offboarding = Vec::new();
        let mut conns = Vec::with_capacity(rows.len());
        for r in &rows {
            let c = self.decode(r)?;
            if r.try_get::<Option<String>, _>("offboarding")?.is_some() {
                offboarding.push(c.name.clone());
            }
            conns.push(c);
        }
        Ok((conns, offboarding))
    }

    /// The enabled connection of `vendor` serving `site`: one listing the site explicitly
    /// wins over one serving every site; ties go by name.
    pub async fn find_for_site(
        &self,
        tenant: &str,
        vendor: Vendor,
        site: &str,
    ) -> Result<Option<Connection>, ConnectionError> {
        Ok(pick_for_site(&self.list_for(tenant, vendor).await?, site).cloned())
    }

    /// Every connection (optionally of one tenant and/or vendor), secrets included. Use
    /// [`ConnectionStore::list_redacted`] for anything shown to people.
    pub async fn list(
        &self,
        tenant: Option<&str>,
        vendor: Option<Vendor>,
    ) -> Result<Vec<Connection>, ConnectionError> {
        let rows = sqlx::query(
            "SELECT tenant_id, vendor, name, enabled, sites, settings_enc, version
             FROM connections
             WHERE ($1::text IS NULL OR tenant_id = $1) AND ($2::text IS NULL OR vendor = $2)
             ORDER BY tenant_id, vendor, name",
        )
        .bind(tenant)
        .bind(vendor.map(Vendor::as_str))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| self.decode(r)).collect()
    }

    /// Like [`ConnectionStore::list`] but with every secret redacted.
    pub async fn list_redacted(
        &self,
        tenant: Option<&str>,
        vendor: Option<Vendor>,
    ) -> Result<Vec<Connection>, ConnectionError> {
        Ok(self
            .list(tenant, vendor)
            .await?
            .iter()
            .map(Connection::redacted)
            .collect())
    }

    /// Stores `conn` (created or replaced) and returns it as stored. The version is bumped
    /// only when something changed; an identical connection is left alone.
    pub async fn upsert(&self, conn: &Connection) -> Result<Connection, ConnectionError> {
        Ok(self.apply(conn, false).await?.connection)
    }

    /// Idempotent apply: validates (after keeping stored secrets given as `***`), compares with
    /// the stored connection and writes only when something changed. With `dry_run` nothing is
    /// written and the outcome says what would happen. A non-zero `conn.version` must match the
    /// stored version (optimistic concurrency).
    pub async fn apply(
        &self,
        conn: &Connection,
        dry_run: bool,
    ) -> Result<ApplyOutcome, ConnectionError> {
        let vendor = conn.vendor();
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(
            "SELECT tenant_id, vendor, name, enabled, sites, settings_enc, version, offboarding
             FROM connections WHERE tenant_id = $1 AND vendor = $2 AND name = $3 FOR UPDATE",
        )
        .bind(&conn.tenant)
        .bind(vendor.as_str())
        .bind(&conn.name)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(r) = &row
            && let Some(intent) =
                OffboardIntent::parse(r.try_get::<Option<String>, _>("offboarding")?.as_deref())
        {
            // Changing it now could bring access back that the offboard run is removing.
            return Err(ConnectionError::Offboarding {
                connection: format!("{}/{vendor}/{}", conn.tenant, conn.name),
                intent,
            });
        }
        let current = row.map(|r| self.decode(&r)).transpose()?;

        let mut desired = conn.clone();
        let mut problems = match &current {
            Some(cur) => desired.keep_secrets_from(cur),
            None => Vec::new(),
        };
        // A placeholder refused above is already explained; do not add "no secret stored".
        let more: Vec<_> = validate_with(&desired, &self.egress)
            .into_iter()
            .filter(|p| !problems.iter().any(|q| q.field == p.field))
            .collect();
        problems.extend(more);
        if !problems.is_empty() {
            return Err(ConnectionError::Invalid(problems));
        }
        if let Some(cur) = &current
            && conn.version != 0
            && conn.version != cur.version
        {
            return Err(ConnectionError::Conflict {
                stored: cur.version,
                given: conn.version,
            });
        }
        if current.is_none() {
            let exists: Option<i32> = sqlx::query_scalar("SELECT 1 FROM tenants WHERE id = $1")
                .bind(&conn.tenant)
                .fetch_optional(&mut *tx)
                .await?;
            if exists.is_none() {
                return Err(ConnectionError::UnknownTenant(conn.tenant.clone()));
            }
        }
        let changes = diff(current.as_ref(), &desired);
        let status = match &current {
            None => ApplyStatus::Created,
            Some(cur) if cur.same_content(&desired) => ApplyStatus::Unchanged,
            Some(_) => ApplyStatus::Updated,
        };
        desired.version = match (&current, status) {
            (Some(cur), ApplyStatus::Unchanged) => cur.version,
            (Some(cur), _) => cur.version + 1,
            (None, _) => 1,
        };
        if dry_run || status == ApplyStatus::Unchanged {
            return Ok(ApplyOutcome {
                connection: current
                    .filter(|_| status == ApplyStatus::Unchanged)
                    .unwrap_or(desired),
                status,
                changes,
            });
        }

        let redacted = serde_json::to_value(desired.settings.redacted()).map_err(|e| {
            ConnectionError::Corrupt {
                what: "settings".into(),
                message: e.to_string(),
            }
        })?;
        let full =
            zeroize::Zeroizing::new(serde_json::to_string(&desired.settings).map_err(|e| {
                ConnectionError::Corrupt {
                    what: "settings".into(),
                    message: e.to_string(),
                }
            })?);
        let sealed = self.secrets.seal(
            &full,
            &connection_aad(&desired.tenant, vendor.as_str(), &desired.name),
        )?;
        sqlx::query(
            "INSERT INTO connections (tenant_id, vendor, name, enabled, sites, settings, settings_enc, version)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (tenant_id, vendor, name) DO UPDATE SET
               enabled = EXCLUDED.enabled, sites = EXCLUDED.sites, settings = EXCLUDED.settings,
               settings_enc = EXCLUDED.settings_enc, version = EXCLUDED.version, updated_at = now()",
        )
        .bind(&desired.tenant)
        .bind(vendor.as_str())
        .bind(&desired.name)
        .bind(desired.enabled)
        .bind(&desired.sites)
        .bind(&redacted)
        .bind(&sealed)
        .bind(desired.version)
        .execute(&mut *tx)
        .await
        .map_err(|e| ConnectionError::from_db_for_tenant(e, &desired.tenant))?;
        tx.commit().await?;
        tracing::info!(
            tenant = %desired.tenant, vendor = %vendor, name = %desired.name,
            version = desired.version, status = ?status, changed_fields = changes.len(),
            "connection stored"
        );
        self.notify(
            &desired.tenant,
            vendor,
            &desired.name,
            desired.version,
            false,
        )
        .await;
        Ok(ApplyOutcome {
            connection: desired,
            status,
            changes,
        })
    }

    /// Deletes a connection; `false` when there was none.
    pub async fn delete(
        &self,
        tenant: &str,
        vendor: Vendor,
        name: &str,
    ) -> Result<bool, ConnectionError> {
        let n = sqlx::query(
            "DELETE FROM connections WHERE tenant_id = $1 AND vendor = $2 AND name = $3",
        )
        .bind(tenant)
        .bind(vendor.as_str())
        .bind(name)
        .execute(&self.pool)
        .await?
        .rows_affected();
        if n > 0 {
            tracing::info!(%tenant, %vendor, %name, "connection deleted");
            self.notify(tenant, vendor, name, 0, true).await;
        }
        Ok(n > 0)
    }

    /// Re-encrypts every connection and webhook secret that is not sealed with the active key
    /// in the bound format (see [`crate::reseal`]); returns how many rows were rewritten.
    /// Rows that cannot be decrypted are an error here; `accessctl secrets reseal` lists them.
    pub async fn reseal_all(&self) -> Result<u64, ConnectionError> {
        let report = crate::reseal::reseal(
            &self.pool,
            &self.secrets,
            &crate::reseal::ResealOptions::default(),
            |_| {},
        )
        .await?;
        match report.failed.first() {
            Some(f) => Err(ConnectionError::Secret {
                what: f.row.clone(),
                error: f.error.clone(),
            }),
            None => Ok(report.resealed),
        }
    }

    async fn notify(&self, tenant: &str, vendor: Vendor, name: &str, version: i64, deleted: bool) {
        crate::offboard::notify(self.bus.as_ref(), tenant, vendor, name, version, deleted).await;
    }
}

/// The connection serving `site` among one tenant's connections to one vendor (ordered as
/// [`ConnectionStore::list_for`] returns them): explicit site lists win over catch-alls.
pub fn pick_for_site<'a>(conns: &'a [Connection], site: &str) -> Option<&'a Connection> {
    conns
        .iter()
        .filter(|c| c.serves_site(site))
        .min_by_key(|c| (c.sites.is_empty(), c.name.clone()))
}
