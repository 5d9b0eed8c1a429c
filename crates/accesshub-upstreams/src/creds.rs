//! Upstream API credentials per tenant and source (`upstream_credentials`), sealed with the
//! same [`SecretBox`] as vendor secrets and bound to their row (associated data
//! `upstream_credentials`, tenant, source). Never logged, never returned.

use accesshub_store::{SecretBox, upstream_aad};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{PgPool, Row as _};

use crate::UpstreamError;

/// How accesshub reads one tenant's booking system.
#[derive(Clone, Deserialize, Serialize)]
pub struct UpstreamCredentials {
    /// API base URL (BEX: `https://api.bookingexperts.nl`).
    pub base_url: String,
    /// The secret: BEX API key; Nexudus `user:password`; Clock `user:api key`.
    pub secret: String,
    /// Per-source options (BEX: `lookback_days`, `page_size`).
    #[serde(default)]
    pub options: serde_json::Value,
}

/// The decrypted secret is wiped when the credentials are dropped (issue 23).
impl Drop for UpstreamCredentials {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.secret);
    }
}

impl std::fmt::Debug for UpstreamCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamCredentials")
            .field("base_url", &self.base_url)
            .field("secret", &"***")
            .field("options", &self.options)
            .finish()
    }
}

impl UpstreamCredentials {
    /// `rate_per_sec` and `burst` from the options (simulators, benchmarks), else
    /// `default_rate` (the upstream's documented or our limit) and a burst of 20.
    pub fn rate_options(&self, default_rate: f64) -> (f64, u32) {
        let rate = self
            .options
            .get("rate_per_sec")
            .and_then(serde_json::Value::as_f64)
            .unwrap_or(default_rate);
        let burst = self
            .options
            .get("burst")
            .and_then(serde_json::Value::as_u64)
            .and_then(|b| u32::try_from(b).ok())
            .unwrap_or(20);
        (rate, burst)
    }
}

/// Whether `url` can be an upstream API base URL (http or https with a host).
pub fn valid_base_url(url: &str) -> bool {
    vendor_http::Url::parse(url)
        .is_ok_and(|u| matches!(u.scheme(), "https" | "http") && u.host_str().is_some())
}

/// One stored row as the admin API shows it (no secret).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UpstreamInfo {
    /// Tenant.
    pub tenant: String,
    /// Source (`bex`, `nexudus`, `clock`).
    pub source: String,
    /// Base URL.
    pub base_url: String,
    /// Always `***`.
    pub secret: String,
    /// Options.
    pub options: serde_json::Value,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
}

/// Reads and writes `upstream_credentials`. Cheap to clone.
#[derive(Clone)]
pub struct UpstreamStore {
    pool: PgPool,
    secrets: SecretBox,
}

impl std::fmt::Debug for UpstreamStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamStore").finish_non_exhaustive()
    }
}

impl UpstreamStore {
    /// A store over `pool`, sealing with `secrets`.
    pub fn new(pool: PgPool, secrets: SecretBox) -> Self {
        UpstreamStore { pool, secrets }
    }

    /// Sets (creates or replaces) a tenant's credentials for `source`. The tenant must exist.
    pub async fn set(
        &self,
        tenant: &str,
        source: &str,
        creds: &UpstreamCredentials,
    ) -> Result<UpstreamInfo, UpstreamError> {
        let sealed = self
            .secrets
            .seal(&creds.secret, &upstream_aad(tenant, source))?;
        let options = if creds.options.is_null() {
            serde_json::json!({})
        } else {
            creds.options.clone()
        };
        let row = sqlx::query(
            "INSERT INTO upstream_credentials (tenant_id, source, base_url, credentials_enc, options)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (tenant_id, source) DO UPDATE SET base_url = EXCLUDED.base_url,
               credentials_enc = EXCLUDED.credentials_enc, options = EXCLUDED.options,
               updated_at = now()
             RETURNING updated_at",
        )
        .bind(tenant)
        .bind(source)
        .bind(&creds.base_url)
        .bind(&sealed)
        .bind(&options)
        .fetch_one(&self.pool)
        .await?;
        tracing::info!(%tenant, %source, "upstream credentials set");
        Ok(UpstreamInfo {
            tenant: tenant.to_owned(),
            source: source.to_owned(),
            base_url: creds.base_url.clone(),
            secret: "***".into(),
            options,
            updated_at: row.try_get("updated_at")?,
        })
    }

    /// The credentials of `tenant` for `source`, opened; `None` when none are set.
    pub async fn get(
        &self,
        tenant: &str,
        source: &str,
    ) -> Result<Option<UpstreamCredentials>, UpstreamError> {
        let row = sqlx::query(
            "SELECT base_url, credentials_enc, options FROM upstream_credentials
              WHERE tenant_id = $1 AND source = $2",
        )
        .bind(tenant)
        .bind(source)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let sealed: String = row.try_get("credentials_enc")?;
        Ok(Some(UpstreamCredentials {
            base_url: row.try_get("base_url")?,
            secret: self.secrets.open_reported(
                &sealed,
                &upstream_aad(tenant, source),
                &format!("upstream API credentials {tenant}/{source}"),
            )?,
            options: row.try_get("options")?,
        }))
    }

    /// The tenant's upstream credentials without secrets.
    pub async fn list(&self, tenant: &str) -> Result<Vec<UpstreamInfo>, UpstreamError> {
        let rows = sqlx::query(
            "SELECT source, base_url, options, updated_at FROM upstream_credentials
              WHERE tenant_id = $1 ORDER BY source",
        )
        .bind(tenant)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(UpstreamInfo {
                    tenant: tenant.to_owned(),
                    source: r.try_get("source")?,
                    base_url: r.try_get("base_url")?,
                    secret: "***".into(),
                    options: r.try_get("options")?,
                    updated_at: r.try_get("updated_at")?,
                })
            })
            .collect()
    }

    /// Deletes them; whether there were any.
    pub async fn delete(&self, tenant: &str, source: &str) -> Result<bool, UpstreamError> {
        let n =
            sqlx::query("DELETE FROM upstream_credentials WHERE tenant_id = $1 AND source = $2")
                .bind(tenant)
                .bind(source)
                .execute(&self.pool)
                .await?
                .rows_affected();
        Ok(n > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::UpstreamCredentials;

    /// Issue 23: the decrypted upstream secret never shows in `Debug` (log lines, errors).
    #[test]
    fn debug_never_shows_the_secret() {
        let c = UpstreamCredentials {
            base_url: "https://api.bookingexperts.nl".into(),
            secret: "bex-api-key-0b5e-never-printed".into(),
            options: serde_json::json!({"page_size": 50}),
        };
        for printed in [format!("{c:?}"), format!("{c:#?}")] {
            assert!(!printed.contains("bex-api-key"), "{printed}");
            assert!(
                printed.contains("***") && printed.contains("bookingexperts"),
                "{printed}"
            );
        }
    }
}
