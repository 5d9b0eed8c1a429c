//! Tenants and their upstream sources. A source (BEX, Clock PMS+, Nexudus, connecX, …) signs
//! its webhooks with a secret; the secret is sealed with the [`SecretBox`]. Rotation keeps the
//! old secret valid as `previous` until `previous_expires`, so senders can switch over.

use std::{sync::Arc, time::Duration};

use accesshub_store::{SecretBox, source_aad};
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use rand::RngCore as _;
use serde::{Deserialize, Serialize};
use sqlx::{PgPool, Row};

use crate::{error::ConnectionError, model::Secret};

/// How long the previous webhook secret stays valid after a rotation, unless told otherwise.
pub const DEFAULT_PREVIOUS_TTL: Duration = Duration::from_secs(24 * 3600);
/// The longest a previous webhook secret stays valid after a change (30 days): a longer
/// overlap defeats the rotation (and an unbounded one overflowed the expiry time).
pub const MAX_PREVIOUS_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// An organization of an upstream system.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Tenant {
    /// Id used in events, subjects and URLs.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
}

/// One upstream source of a tenant, without its secrets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TenantSource {
    /// Tenant id.
    pub tenant: String,
    /// Source name (`bex`, `clock`, `nexudus`, `connecx`, …).
    pub source: String,
    /// Always `***`: secrets are never returned.
    pub secret: String,
    /// Whether a previous secret is still accepted.
    pub previous_valid: bool,
    /// Until when the previous secret is accepted.
    pub previous_expires: Option<DateTime<Utc>>,
    /// Per-site defaults the ingest mapping uses (free-form).
    pub site_defaults: serde_json::Value,
    /// The upstream organization this source of the tenant belongs to (BEX organization id,
    /// Nexudus account, Clock subscription), if set: a tenant is tied to one organization, and
    /// the Sync pull lists its administrations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization_id: Option<String>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
}

/// One booking booking-ingest ignored, with its latest reason.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct IgnoredBooking {
    /// Upstream source.
    pub source: String,
    /// Booking kind.
    pub kind: String,
    /// Booking key.
    pub booking_key: String,
    /// Site of the latest delivery.
    pub site: String,
    /// `site_not_activated`, `connection_disabled`, `unmapped_administration`,
    /// `unmapped_facility` or `unmapped_pass_type`.
    pub reason: String,
    /// Deliveries ignored.
    pub deliveries: i64,
    /// First ignored.
    pub first_at: DateTime<Utc>,
    /// Last ignored.
    pub last_at: DateTime<Utc>,
}

/// The secrets a webhook signature may be made with right now.
#[derive(Debug, Clone)]
pub struct WebhookSecrets {
    /// The current secret.
    pub current: Secret,
    /// The previous secret while it has not expired.
    pub previous: Option<Secret>,
}

/// Told `(tenant, Some(source))` after a source's webhook secret changed, `(tenant, None)`
/// after a tenant (with all its sources) was deleted: booking-ingest's secret cache in the
/// same process drops its copy at once instead of serving it until its ttl (review L3).
pub type SourceListener = Arc<dyn Fn(&str, Option<&str>) + Send + Sync>;

/// Reads and writes tenants and their sources. Cheap to clone.
#[derive(Clone)]
pub struct TenantStore {
    pool: PgPool,
    secrets: SecretBox,
    listeners: Vec<SourceListener>,
}

impl std::fmt::Debug for TenantStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantStore")
            .field("secrets", &self.secrets)
            .field("listeners", &self.listeners.len())
            .finish_non_exhaustive()
    }
}

fn tenant_from(row: &sqlx::postgres::PgRow) -> Result<Tenant, sqlx::Error> {
    Ok(Tenant {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn source_from(row: &sqlx::postgres::PgRow) -> Result<TenantSource, sqlx::Error> {
    let expires: Option<DateTime<Utc>> = row.try_get("previous_expires")?;
    let has_prev: bool = row.try_get("has_previous")?;
    Ok(TenantSource {
        tenant: row.try_get("tenant_id")?,
        source: row.try_get("source")?,
        secret: crate::model::REDACTED.into(),
        previous_valid: has_prev && expires.is_some_and(|e| e > Utc::now()),
        previous_expires: expires,
        site_defaults: row.try_get("site_defaults")?,
        organization_id: row.try_get("organization_id")?,
        updated_at: row.try_get("updated_at")?,
    })
}

const SOURCE_COLS: &str = "tenant_id, source, previous_enc IS NOT NULL AS has_previous, previous_expires, site_defaults, organization_id, updated_at";

/// Shortest webhook secret the admin API accepts, in bytes: an HMAC key guessable offline from
/// one captured delivery must carry at least 256 bits, and only length can be checked (the
/// generated ones, `whsec_` + 43 characters, carry 256 random bits).
pub const MIN_SECRET_LEN: usize = 32;

/// A new random webhook secret (32 bytes, URL-safe base64).
pub fn generate_secret() -> Secret {
    let mut raw = [0u8; 32];
    rand::rng().fill_bytes(&mut raw);
    Secret::new(format!("whsec_{}", URL_SAFE_NO_PAD.encode(raw)))
}

impl TenantStore {
    /// A store over `pool`, sealing secrets with `secrets`.
    pub fn new(pool: PgPool, secrets: SecretBox) -> Self {
        TenantStore {
            pool,
            secrets,
            listeners: Vec::new(),
        }
    }

    /// Calls `listener` after every change of a source's registration (webhook secret, site
    /// defaults, auth mode, organization) and tenant deletion made through this store.
    pub fn on_source_change(mut self, listener: SourceListener) -> Self {
        self.listeners.push(listener);
        self
    }

    fn changed(&self, tenant: &str, source: Option<&str>) {
        for l in &self.listeners {
            l(tenant, source);
        }
    }

    /// Creates a tenant; [`ConnectionError::AlreadyExists`] if the id is taken.
    pub async fn create(&self, id: &str, name: &str) -> Result<Tenant, ConnectionError> {
        let row = sqlx::query(
            "INSERT INTO tenants (id, name) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING
             RETURNING id, name, created_at, updated_at",
        )
        .bind(id)
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(r) => Ok(tenant_from(&r)?),
            None => Err(ConnectionError::AlreadyExists(format!("tenant {id:?}"))),
        }
    }

    /// Creates a tenant or renames an existing one (idempotent).
    pub async fn upsert(&self, id: &str, name: &str) -> Result<Tenant, ConnectionError> {
        let row = sqlx::query(
            "INSERT INTO tenants (id, name) VALUES ($1, $2)
             ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name,
               updated_at = CASE WHEN tenants.name = EXCLUDED.name THEN tenants.updated_at ELSE now() END
             RETURNING id, name, created_at, updated_at",
        )
        .bind(id)
        .bind(name)
        .fetch_one(&self.pool)
        .await?;
        Ok(tenant_from(&row)?)
    }

    /// One tenant.
    pub async fn get(&self, id: &str) -> Result<Option<Tenant>, ConnectionError> {
        let row = sqlx::query("SELECT id, name, created_at, updated_at FROM tenants WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(tenant_from).transpose()?)
    }

    /// Every tenant, by id.
    pub async fn list(&self) -> Result<Vec<Tenant>, ConnectionError> {
        let rows = sqlx::query("SELECT id, name, created_at, updated_at FROM tenants ORDER BY id")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(tenant_from).collect::<Result<_, _>>()?)
    }

    /// Deletes a tenant with its sources, connections and everything stored about its
    /// bookings (see [`crate::offboard::purge_tenant`]); `false` if there was none. Vendor
    /// access is the caller's decision ([`crate::offboard`]).
    pub async fn delete(&self, id: &str) -> Result<bool, ConnectionError> {
        let deleted = crate::offboard::purge_tenant(&self.pool, id)
            .await?
            .is_some();
        if deleted {
            self.changed(id, None);
        }
        Ok(deleted)
    }

    /// The bookings booking-ingest ignored for `tenant` (access control off there: site not
    /// activated, connection disabled, unmapped), the latest `limit` first. The admin API
    /// and the console's Sync screen show them.
    pub async fn ignored(
        &self,
        tenant: &str,
        limit: i64,
    ) -> Result<Vec<IgnoredBooking>, ConnectionError> {
        Ok(sqlx::query_as::<_, IgnoredBooking>(
            "SELECT source, kind, booking_key, site, reason, deliveries, first_at, last_at
               FROM ingest_ignored WHERE tenant_id = $1 ORDER BY last_at DESC LIMIT $2",
        )
        .bind(tenant)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// The pool (for the offboarding queries).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The tenant's sources (secrets redacted).
    pub async fn sources(&self, tenant: &str) -> Result<Vec<TenantSource>, ConnectionError> {
        let sql = format!(
            "SELECT {SOURCE_COLS} FROM tenant_sources WHERE tenant_id = $1 ORDER BY source"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(tenant)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(source_from).collect::<Result<_, _>>()?)
    }

    /// Sets the webhook secret of a source (creating the source if needed). An existing
    /// secret stays valid as `previous` for `previous_ttl`. With `secret: None` a random one is
    /// generated. Returns the source and the new secret (show it once, then forget it).
    pub async fn set_source_secret(
        &self,
        tenant: &str,
        source: &str,
        secret: Option<Secret>,
        previous_ttl: Duration,
    ) -> Result<(TenantSource, Secret), ConnectionError> {
        let secret = match secret {
            Some(s) if !s.expose().trim().is_empty() && !s.is_redacted() => s,
            Some(_) => {
                return Err(ConnectionError::Invalid(vec![
                    accesshub_domain::FieldError::new("secret", "must not be empty"),
                ]));
            }
            None => generate_secret(),
        };
        if source.trim().is_empty() {
            return Err(ConnectionError::Invalid(vec![
                accesshub_domain::FieldError::new("source", "must not be empty"),
            ]));
        }
        let sealed = self
            .secrets
            .seal(secret.expose(), &source_aad(tenant, source))?;
        if previous_ttl > MAX_PREVIOUS_TTL {
            return Err(ConnectionError::Invalid(vec![
                accesshub_domain::FieldError::new(
                    "previous_ttl_seconds",
                    format!("must be at most {} (30 days)", MAX_PREVIOUS_TTL.as_secs()),
                ),
            ]));
        }
        let ttl = chrono::Duration::from_std(previous_ttl).unwrap_or(chrono::Duration::hours(24));
        let expires = Utc::now() + ttl;
        let sql = format!(
            "INSERT INTO tenant_sources (tenant_id, source, secret_enc) VALUES ($1, $2, $3)
             ON CONFLICT (tenant_id, source) DO UPDATE SET
               previous_enc = tenant_sources.secret_enc, previous_expires = $4,
               secret_enc = EXCLUDED.secret_enc, updated_at = now()
             RETURNING {SOURCE_COLS}"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(tenant)
            .bind(source)
            .bind(&sealed)
            .bind(expires)
            .fetch_one(&self.pool)
            .await
            .map_err(|e| ConnectionError::from_db_for_tenant(e, tenant))?;
        tracing::info!(%tenant, %source, "webhook secret set");
        self.changed(tenant, Some(source));
        Ok((source_from(&row)?, secret))
    }

    /// Replaces the `site_defaults` document of an existing source (the ingest mapping's
    /// check-in/out times and timezones). `None` if the tenant has no such source: a source
    /// exists once its webhook secret is set.
    pub async fn set_site_defaults(
        &self,
        tenant: &str,
        source: &str,
        site_defaults: &serde_json::Value,
    ) -> Result<Option<TenantSource>, ConnectionError> {
        self.update_source(tenant, source, "site_defaults", site_defaults)
            .await
    }

    /// Sets one column of an existing source (`column` is a constant of this module, never
    /// input); `None` if the tenant has no such source.
    async fn update_source<'q, V>(
        &self,
        tenant: &'q str,
        source: &'q str,
        column: &'static str,
        value: V,
    ) -> Result<Option<TenantSource>, ConnectionError>
    where
        V: 'q + sqlx::Encode<'q, sqlx::Postgres> + sqlx::Type<sqlx::Postgres> + Send,
    {
        let sql = format!(
            "UPDATE tenant_sources SET {column} = $3, updated_at = now()
              WHERE tenant_id = $1 AND source = $2
             RETURNING {SOURCE_COLS}"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(tenant)
            .bind(source)
            .bind(value)
            .fetch_optional(&self.pool)
            .await?;
        if row.is_some() {
            // Ingest's registration cache holds these columns too (site defaults, auth mode,
            // organization): the change takes effect at once in this process.
            self.changed(tenant, Some(source));
        }
        Ok(row.as_ref().map(source_from).transpose()?)
    }

    /// Ties an existing source of the tenant to its upstream organization (`None` unties it).
    /// `None` if the tenant has no such source.
    pub async fn set_organization(
        &self,
        tenant: &str,
        source: &str,
        organization_id: Option<&str>,
    ) -> Result<Option<TenantSource>, ConnectionError> {
        if organization_id.is_some_and(|o| o.trim().is_empty() || o.len() > 200) {
            return Err(ConnectionError::Invalid(vec![
                accesshub_domain::FieldError::new(
                    "organization_id",
                    "must be 1 to 200 characters (or null to untie)",
                ),
            ]));
        }
        self.update_source(tenant, source, "organization_id", organization_id)
            .await
    }

    /// The secrets a signature of `source` may be made with now (booking-ingest).
    pub async fn webhook_secrets(
        &self,
        tenant: &str,
        source: &str,
    ) -> Result<Option<WebhookSecrets>, ConnectionError> {
        let row = sqlx::query(
            "SELECT secret_enc, previous_enc, previous_expires FROM tenant_sources
             WHERE tenant_id = $1 AND source = $2",
        )
        .bind(tenant)
        .bind(source)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let aad = source_aad(tenant, source);
        let what = || format!("webhook secret {tenant}/{source}");
        let current = Secret::new(
            self.secrets
                .open_reported(&row.try_get::<String, _>("secret_enc")?, &aad, &what())
                .map_err(|e| ConnectionError::secret(e, &what()))?,
        );
        let prev_enc: Option<String> = row.try_get("previous_enc")?;
        let expires: Option<DateTime<Utc>> = row.try_get("previous_expires")?;
        let previous = match (prev_enc, expires) {
            (Some(p), Some(e)) if e > Utc::now() => Some(Secret::new(
                self.secrets
                    .open_reported(&p, &aad, &format!("previous {}", what()))
                    .map_err(|e| ConnectionError::secret(e, &what()))?,
            )),
            _ => None,
        };
        Ok(Some(WebhookSecrets { current, previous }))
    }
}
