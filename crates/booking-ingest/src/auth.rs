//! Webhook authentication: HMAC-SHA256 over `timestamp + "." + body`, per tenant and source,
//! with two valid secrets during a rotation. Secrets are stored sealed with
//! [`accesshub_store::SecretBox`] and cached decrypted for a short time.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use accesshub_store::SecretBox;
use axum::http::HeaderMap;
use chrono::{DateTime, NaiveTime, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use sqlx::PgPool;
use subtle::ConstantTimeEq;

/// Header carrying the unix timestamp (seconds) the signature covers.
pub const TIMESTAMP_HEADER: &str = "x-accesshub-timestamp";
/// Header carrying `sha256=<hex>`.
pub const SIGNATURE_HEADER: &str = "x-accesshub-signature";
/// How far a timestamp may be from our clock (replay window).
pub const TOLERANCE_SECS: i64 = 300;

type HmacSha256 = Hmac<Sha256>;

fn mac(secret: &[u8], ts: i64, body: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length; new_from_slice cannot fail for it.
    let mut m = match HmacSha256::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => return Vec::new(),
    };
    m.update(ts.to_string().as_bytes());
    m.update(b".");
    m.update(body);
    m.finalize().into_bytes().to_vec()
}

/// The `X-Accesshub-Signature` value an upstream sends: `sha256=<hex of HMAC-SHA256(secret,
/// "<ts>.<body>")>`. For clients, tests and the dev tools.
pub fn sign(secret: &str, ts: i64, body: &[u8]) -> String {
    format!("sha256={}", hex::encode(mac(secret.as_bytes(), ts, body)))
}

/// Checks the signature headers against every valid secret, in constant time per secret and
/// without stopping at the first match (which secret matched is not observable).
pub fn verify(secrets: &[Vec<u8>], headers: &HeaderMap, body: &[u8], now: i64) -> bool {
    let Some(ts) = headers
        .get(TIMESTAMP_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<i64>().ok())
    else {
        return false;
    };
    if (now - ts).abs() > TOLERANCE_SECS {
        return false;
    }
    let Some(given) = headers
        .get(SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().strip_prefix("sha256="))
        .and_then(|h| hex::decode(h).ok())
    else {
        return false;
    };
    let mut ok = subtle::Choice::from(0u8);
    for s in secrets {
        let expected = mac(s, ts, body);
        ok |= expected.ct_eq(&given);
    }
    bool::from(ok)
}

/// What a site needs but a PMS does not send. Looked up in `tenant_sources.site_defaults`
/// (`{"<site id>": {"check_in_time": "15:00", "check_out_time": "11:00", "timezone":
/// "Europe/Amsterdam"}, "*": {...}}`): the site's entry, then `"*"`, then the fallbacks
/// 15:00 / 11:00 / `UTC`, field by field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteDefaults {
    /// Check-in time of the site.
    pub check_in_time: NaiveTime,
    /// Check-out time of the site.
    pub check_out_time: NaiveTime,
    /// IANA timezone of the site.
    pub timezone: String,
}

impl SiteDefaults {
    /// Fallback check-in time when nothing is configured.
    pub const CHECK_IN: (u32, u32) = (15, 0);
    /// Fallback check-out time when nothing is configured.
    pub const CHECK_OUT: (u32, u32) = (11, 0);
    /// Fallback timezone when nothing is configured.
    pub const TIMEZONE: &'static str = "UTC";

    /// Resolves the defaults of `site` from a `site_defaults` document.
    pub fn for_site(doc: &serde_json::Value, site: &str) -> SiteDefaults {
        let pick = |field: &str| -> Option<&str> {
            doc.get(site)
                .and_then(|s| s.get(field))
                .and_then(|v| v.as_str())
                .or_else(|| {
                    doc.get("*")
                        .and_then(|s| s.get(field))
                        .and_then(|v| v.as_str())
                })
        };
        let time = |field: &str, (h, m): (u32, u32)| {
            pick(field)
                .and_then(|t| t.parse::<NaiveTime>().ok())
                .or_else(|| NaiveTime::from_hms_opt(h, m, 0))
                .unwrap_or_default()
        };
        SiteDefaults {
            check_in_time: time("check_in_time", Self::CHECK_IN),
            check_out_time: time("check_out_time", Self::CHECK_OUT),
            timezone: pick("timezone")
                .filter(|tz| tz.parse::<chrono_tz::Tz>().is_ok())
                .unwrap_or(Self::TIMEZONE)
                .to_owned(),
        }
    }
}

/// One tenant's registration for one source, decrypted.
#[derive(Clone)]
pub struct SourceEntry {
    current: Vec<u8>,
    previous: Option<(Vec<u8>, Option<DateTime<Utc>>)>,
    /// The `site_defaults` document.
    pub site_defaults: serde_json::Value,
}

impl std::fmt::Debug for SourceEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceEntry").finish_non_exhaustive()
    }
}

impl SourceEntry {
    /// The secrets valid at `now`: the current one, and the previous one until it expires.
    pub fn secrets(&self, now: DateTime<Utc>) -> Vec<Vec<u8>> {
        let mut out = vec![self.current.clone()];
        if let Some((prev, expires)) = &self.previous
            && expires.is_none_or(|e| e > now)
        {
            out.push(prev.clone());
        }
        out
    }
}

/// `secret_enc, previous_enc, previous_expires, site_defaults`.
type SourceRow = (
    String,
    Option<String>,
    Option<DateTime<Utc>>,
    serde_json::Value,
);

/// Per (tenant, source): when it was loaded, the registration (None: unknown), and whether a
/// refresh is under way.
type CacheMap = HashMap<(String, String), (Instant, Option<Arc<SourceEntry>>, bool)>;

/// Decrypted registrations cached for `ttl` (unknown tenants for at most one second), so a
/// webhook costs no database round trip for its secret. A known registration past its `ttl`
/// is served once more while one background load refreshes it: without that, every request
/// in flight when it expired (hundreds under load) queued for its own load at once.
#[derive(Clone)]
pub struct SourceCache {
    pool: PgPool,
    secrets: SecretBox,
    ttl: Duration,
    map: Arc<RwLock<CacheMap>>,
}

impl std::fmt::Debug for SourceCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceCache")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

/// What the cache holds for a key.
enum Cached {
    Fresh(Option<Arc<SourceEntry>>),
    /// A known registration past its ttl; `refresh` when this caller should start the reload.
    Stale {
        entry: Arc<SourceEntry>,
        refresh: bool,
    },
    Missing,
}

impl SourceCache {
    /// A cache over the `tenant_sources` table.
    pub fn new(pool: PgPool, secrets: SecretBox, ttl: Duration) -> Self {
        SourceCache {
            pool,
            secrets,
            ttl,
            map: Arc::default(),
        }
    }

    fn lookup(&self, key: &(String, String)) -> Cached {
        let state = match self.map.read() {
            Ok(map) => match map.get(key) {
                Some((at, entry, refreshing)) => {
                    let ttl = if entry.is_some() {
                        self.ttl
                    } else {
                        Duration::from_secs(1).min(self.ttl)
                    };
                    match entry {
                        _ if at.elapsed() < ttl => return Cached::Fresh(entry.clone()),
                        Some(e) if *refreshing => {
                            return Cached::Stale {
                                entry: e.clone(),
                                refresh: false,
                            };
                        }
                        Some(e) => Some(e.clone()),
                        None => None,
                    }
                }
                None => None,
            },
            Err(_) => None,
        };
        let Some(entry) = state else {
            return Cached::Missing;
        };
        // Claim the refresh under the write lock: exactly one caller starts it.
        match self.map.write() {
            Ok(mut map) => match map.get_mut(key) {
                Some((_, _, refreshing)) if !*refreshing => {
                    *refreshing = true;
                    Cached::Stale {
                        entry,
                        refresh: true,
                    }
                }
                _ => Cached::Stale {
                    entry,
                    refresh: false,
                },
            },
            Err(_) => Cached::Missing,
        }
    }

    fn store(&self, key: (String, String), entry: Option<Arc<SourceEntry>>) {
        if let Ok(mut map) = self.map.write() {
            if map.len() > 100_000 {
                map.clear();
            }
            map.insert(key, (Instant::now(), entry, false));
        }
    }

    /// The registration of `tenant` for `source`, `None` when there is none (or it cannot be
    /// decrypted: treated as unknown, and logged).
    pub async fn get(
        &self,
        tenant: &str,
        source: &str,
    ) -> Result<Option<Arc<SourceEntry>>, sqlx::Error> {
        let key = (tenant.to_owned(), source.to_owned());
        match self.lookup(&key) {
            Cached::Fresh(entry) => Ok(entry),
            Cached::Stale { entry, refresh } => {
                if refresh {
                    let this = self.clone();
                    tokio::spawn(async move {
                        match this.load(&key.0, &key.1).await {
                            Ok(e) => this.store(key, e.map(Arc::new)),
                            Err(e) => {
                                tracing::warn!(error = %e, "refreshing a source registration failed");
                                // Let the next request past the ttl try again.
                                if let Ok(mut map) = this.map.write()
                                    && let Some((_, _, refreshing)) = map.get_mut(&key)
                                {
                                    *refreshing = false;
                                }
                            }
                        }
                    });
                }
                Ok(Some(entry))
            }
            Cached::Missing => {
                let entry = self.load(tenant, source).await?.map(Arc::new);
                self.store(key, entry.clone());
                Ok(entry)
            }
        }
    }

    /// Forgets cached registrations (after a registration change in this process).
    pub fn invalidate(&self) {
        if let Ok(mut map) = self.map.write() {
            map.clear();
        }
    }

    async fn load(&self, tenant: &str, source: &str) -> Result<Option<SourceEntry>, sqlx::Error> {
        let row: Option<SourceRow> = sqlx::query_as(
            "SELECT secret_enc, previous_enc, previous_expires, site_defaults \
                 FROM tenant_sources WHERE tenant_id = $1 AND source = $2",
        )
        .bind(tenant)
        .bind(source)
        .fetch_optional(&self.pool)
        .await?;
        let Some((cur, prev, prev_exp, defaults)) = row else {
            return Ok(None);
        };
        let current = match self.secrets.open(&cur) {
            Ok(s) => s.into_bytes(),
            Err(e) => {
                tracing::error!(tenant, source, error = %e, "webhook secret cannot be decrypted");
                return Ok(None);
            }
        };
        let previous = prev.and_then(|p| match self.secrets.open(&p) {
            Ok(s) => Some((s.into_bytes(), prev_exp)),
            Err(e) => {
                tracing::warn!(tenant, source, error = %e, "previous webhook secret unusable");
                None
            }
        });
        Ok(Some(SourceEntry {
            current,
            previous,
            site_defaults: defaults,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_and_verify() {
        let body = br#"{"a":1}"#;
        let now = 1_750_000_000;
        let mut h = HeaderMap::new();
        h.insert(TIMESTAMP_HEADER, now.to_string().parse().unwrap());
        h.insert(SIGNATURE_HEADER, sign("s3cret", now, body).parse().unwrap());
        assert!(verify(&[b"s3cret".to_vec()], &h, body, now));
        assert!(verify(
            &[b"x".to_vec(), b"s3cret".to_vec()],
            &h,
            body,
            now + 299
        ));
        assert!(!verify(&[b"s3cret".to_vec()], &h, body, now + 301));
        assert!(!verify(&[b"other".to_vec()], &h, body, now));
        assert!(!verify(&[b"s3cret".to_vec()], &h, b"{}", now));
    }

    #[test]
    fn site_defaults_fallbacks() {
        let doc = serde_json::json!({"12": {"check_in_time": "16:00"}, "*": {"timezone": "Europe/Amsterdam"}});
        let d = SiteDefaults::for_site(&doc, "12");
        assert_eq!(d.check_in_time, NaiveTime::from_hms_opt(16, 0, 0).unwrap());
        assert_eq!(d.check_out_time, NaiveTime::from_hms_opt(11, 0, 0).unwrap());
        assert_eq!(d.timezone, "Europe/Amsterdam");
        let d = SiteDefaults::for_site(&serde_json::json!({}), "x");
        assert_eq!(d.timezone, "UTC");
    }
}
