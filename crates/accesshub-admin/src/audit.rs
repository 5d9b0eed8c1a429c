//! The audit log (`audit_log`): one row per change made through the admin API — who (token id
//! and name), when, what, on which tenant and object, and the state before and after with
//! every secret masked. Logs rotate and are not queryable per tenant; the table is.
//!
//! **No change without its record.** Every database change writes its record *first*
//! ([`begin`]), in a transaction kept open while the change is made through the stores (which
//! own their transactions), and commits it once the change committed ([`Pending::commit`]). So:
//! - the record cannot be written (table gone, `INSERT` revoked, database down): the request
//!   is refused with 503 and nothing is changed;
//! - the change fails (409, 404, 422, database error): the record is rolled back, so the log
//!   holds no change that did not happen.
//!
//! One transaction for change and record would need every store to take the caller's
//! transaction; writing ahead keeps the stores' APIs. What is left unprotected is a failed
//! `COMMIT` of the record after the change committed (the connection lost between the two):
//! logged at error level with the whole record. A pending record holds a pool connection
//! during its change (see `accesshub_store::audit`).
//!
//! Actions outside the database are not covered: a DLQ replay or purge (NATS) is recorded
//! after it happened ([`record`]), per tenant of the entries actually replayed or deleted,
//! which only the outcome tells; a failed write is logged at error level with the whole
//! record. Showing the DLQ's personal data is recorded before it is shown ([`try_record`]).

use accesshub_store::audit::{AuditEntry, PendingAudit};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::{PgPool, Row};
use uuid::Uuid;

use crate::auth::{Principal, Tenants};

/// Field names whose values are secrets wherever they appear in a before/after document.
const SECRET_KEYS: &[&str] = &[
    "secret",
    "password",
    "client_secret",
    "token",
    "token_hash",
    "api_key",
    "private_key",
    "generated_secret",
    "previous_secret",
];

/// Replaces the value of every secret-looking key (see [`SECRET_KEYS`], and any key ending in
/// `_secret`, `_password` or `_token`) with `"***"`, at any depth. Belt and braces: the
/// documents recorded are already the redacted API views.
pub fn mask(mut v: Value) -> Value {
    fn walk(v: &mut Value) {
        match v {
            Value::Object(map) => {
                for (k, val) in map.iter_mut() {
                    let key = k.to_ascii_lowercase();
                    let secret = SECRET_KEYS.contains(&key.as_str())
                        || key.ends_with("_secret")
                        || key.ends_with("_password")
                        || key.ends_with("_token");
                    if secret && !val.is_null() {
                        *val = Value::String("***".into());
                    } else {
                        walk(val);
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(walk),
            _ => {}
        }
    }
    walk(&mut v);
    v
}

/// Who made a change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    /// Token id (`None`: not made through a token, e.g. accessctl's direct DLQ access).
    pub token_id: Option<Uuid>,
    /// Token name, or `accessctl:<user>`.
    pub name: String,
}

impl From<&Principal> for Actor {
    fn from(p: &Principal) -> Self {
        Actor {
            token_id: Some(p.id),
            name: p.name.clone(),
        }
    }
}

/// One change to record.
#[derive(Debug, Clone)]
pub struct Change<'a> {
    /// Dotted verb, e.g. `connection.apply`.
    pub action: &'a str,
    /// The tenant it belongs to, if one.
    pub tenant: Option<&'a str>,
    /// The object changed, e.g. `acme/tapkey/default`.
    pub target: String,
    /// State before (masked on write).
    pub before: Option<Value>,
    /// State after (masked on write).
    pub after: Option<Value>,
}

/// A stored audit record.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditRecord {
    /// Sequence number.
    pub id: i64,
    /// When.
    pub at: DateTime<Utc>,
    /// Token id of the actor.
    pub token_id: Option<Uuid>,
    /// Token name of the actor.
    pub actor: String,
    /// What.
    pub action: String,
    /// Tenant.
    pub tenant: Option<String>,
    /// Object.
    pub target: String,
    /// Before (secrets `***`).
    pub before: Option<Value>,
    /// After (secrets `***`).
    pub after: Option<Value>,
}

/// A record written ahead of its change (see the module docs): [`Pending::commit`] it once the
/// change committed; dropping it (the change failed or changed nothing) rolls it back.
#[derive(Debug)]
#[must_use = "a pending audit record is rolled back when dropped"]
pub struct Pending(PendingAudit);

impl Pending {
    /// Commits the record with the state the change left (masked here).
    pub async fn commit(self, after: Option<Value>) {
        self.0.commit(None, after.map(mask)).await;
    }

    /// [`Pending::commit`] for an object named only by the change (a minted token's id).
    pub async fn commit_as(self, target: String, after: Option<Value>) {
        self.0.commit(Some(target), after.map(mask)).await;
    }
}

/// Writes the record of a change about to be made. An error means nothing was written (it is
/// logged with the record): refuse the change.
pub async fn begin(
    pool: &PgPool,
    actor: &Actor,
    change: Change<'_>,
) -> Result<Pending, sqlx::Error> {
    PendingAudit::write(
        pool,
        AuditEntry {
            token_id: actor.token_id,
            actor: &actor.name,
            action: change.action,
            tenant: change.tenant,
            target: &change.target,
            before: change.before.map(mask),
            after: change.after.map(mask),
        },
    )
    .await
    .map(Pending)
}

/// Writes and commits a record at once, for an action outside the database that must not
/// happen unrecorded (showing the DLQ's personal data): an error means nothing was written,
/// refuse the action.
pub async fn try_record(
    pool: &PgPool,
    actor: &Actor,
    change: Change<'_>,
) -> Result<(), sqlx::Error> {
    let after = change.after.clone();
    begin(pool, actor, change).await?.commit(after).await;
    Ok(())
}

/// Records an action outside the database after it happened (a DLQ replay or purge: see the
/// module docs). A failure is logged with the record and otherwise ignored.
pub async fn record(pool: &PgPool, actor: &Actor, change: Change<'_>) {
    // Logged inside, in full; the action already happened.
    let _ = try_record(pool, actor, change).await;
}

/// Which records to read.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// Only this tenant.
    pub tenant: Option<String>,
    /// At or after.
    pub since: Option<DateTime<Utc>>,
    /// At most this many (newest first).
    pub limit: i64,
}

/// Records newest first, limited to `scope`: a token scoped to some tenants sees only their
/// records (not those of no tenant, such as a token minted for every tenant).
pub async fn list(
    pool: &PgPool,
    scope: &Tenants,
    q: &AuditQuery,
) -> Result<Vec<AuditRecord>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT id, at, token_id, actor, action, tenant_id, target, before, after
           FROM audit_log
          WHERE ($1::text IS NULL OR tenant_id = $1)
            AND ($2::text[] IS NULL OR tenant_id = ANY ($2))
            AND ($3::timestamptz IS NULL OR at >= $3)
          ORDER BY at DESC, id DESC
          LIMIT $4",
    )
    .bind(q.tenant.as_deref())
    .bind(scope.as_filter())
    .bind(q.since)
    .bind(q.limit)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(AuditRecord {
                id: r.try_get("id")?,
                at: r.try_get("at")?,
                token_id: r.try_get("token_id")?,
                actor: r.try_get("actor")?,
                action: r.try_get("action")?,
                tenant: r.try_get("tenant_id")?,
                target: r.try_get("target")?,
                before: r.try_get("before")?,
                after: r.try_get("after")?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn masks_secrets_at_any_depth() {
        let v = mask(json!({
            "name": "x",
            "settings": {"client_secret": "s3", "password": "pw", "host": "h",
                         "nested": [{"api_key": "k"}]},
            "webhook_token": "t",
            "secret": null
        }));
        assert_eq!(v["settings"]["client_secret"], "***");
        assert_eq!(v["settings"]["password"], "***");
        assert_eq!(v["settings"]["host"], "h");
        assert_eq!(v["settings"]["nested"][0]["api_key"], "***");
        assert_eq!(v["webhook_token"], "***");
        assert_eq!(v["secret"], Value::Null);
        assert_eq!(v["name"], "x");
    }
}
