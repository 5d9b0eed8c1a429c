//! Offboarding: a connection (or a whole tenant) never goes away while access it created is
//! still live at the vendor, unless the operator says so. Deleting or disabling first decides
//! what happens to that access ([`AccessChoice`]): refuse while any booking holds access,
//! remove it first (the connection is marked `offboarding` and a sync run of scope `offboard`
//! removes everything of ours; the connection is deleted or disabled when nothing is left),
//! or keep it and go at once.
//!
//! The rules are pure ([`owns_site`], [`AccessChoice::parse`]); the queries and writes are
//! free functions over the pool, so the admin API and the reconciler share them.

use accesshub_bus::Bus;
use accesshub_domain::subjects;
use serde::{Deserialize, Serialize};
use sqlx::{PgPool, Row as _};

use crate::{
    error::ConnectionError,
    model::{Connection, Vendor},
    store::ConnectionChanged,
};

/// Binding statuses in which the vendor holds nothing for the booking (access ended, or none
/// was needed). `worker_runtime::Status::holds_nothing` is defined by this list, so "does this
/// binding hold access" has one answer for the worker's tie rule and for offboarding. Any other
/// status (including ones a newer build writes) counts as holding access.
pub const HOLDS_NOTHING: &[&str] = &[
    "no_plates",
    "no_lock_booking",
    "cancelled",
    "checked_out",
    "expired",
    "used",
    "removed",
    "ignored",
];

/// What to do with the vendor access a connection (or tenant) created when it is deleted or
/// disabled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccessChoice {
    /// The default: refuse while any booking holds access (the operator must choose).
    Refuse,
    /// Remove everything of ours at the vendor first, then delete or disable.
    Remove,
    /// Delete or disable now and leave the vendor objects (a deliberate, logged choice).
    Keep,
}

impl AccessChoice {
    /// From the `access` query parameter: absent → [`AccessChoice::Refuse`].
    pub fn parse(s: Option<&str>) -> Result<AccessChoice, String> {
        match s {
            None => Ok(AccessChoice::Refuse),
            Some("remove") => Ok(AccessChoice::Remove),
            Some("keep") => Ok(AccessChoice::Keep),
            Some(other) => Err(format!("{other:?} (remove|keep)")),
        }
    }
}

/// What becomes of an offboarding connection once nothing of ours is left at the vendor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OffboardIntent {
    /// The row is deleted.
    Delete,
    /// The connection is disabled (kept, with its credentials).
    Disable,
}

impl OffboardIntent {
    /// Column value (`connections.offboarding`).
    pub fn as_str(self) -> &'static str {
        match self {
            OffboardIntent::Delete => "delete",
            OffboardIntent::Disable => "disable",
        }
    }

    /// From the column value; `None` for NULL or a value this build does not know.
    pub fn parse(s: Option<&str>) -> Option<OffboardIntent> {
        match s? {
            "delete" => Some(OffboardIntent::Delete),
            "disable" => Some(OffboardIntent::Disable),
            _ => None,
        }
    }
}

/// Whether `site` is one whose access `conn` created, among the tenant's connections to the
/// same vendor (`siblings`, `conn` may be among them): a site it lists, or any site no other
/// connection lists when it serves every site. Enabled or not: a disabled connection may
/// still have created access before it was switched off.
pub fn owns_site(siblings: &[Connection], conn: &Connection, site: &str) -> bool {
    if conn.sites.iter().any(|s| s == site) {
        return true;
    }
    conn.sites.is_empty()
        && !siblings
            .iter()
            .any(|c| c.name != conn.name && c.sites.iter().any(|s| s == site))
}

/// How many bookings hold access at `conn`'s vendor for sites `conn` owns (see
/// [`owns_site`]; `siblings` are the tenant's connections to that vendor). A binding whose
/// booking row is gone counts for every connection: better one refusal too many than access
/// orphaned.
pub async fn live_access(
    pool: &PgPool,
    siblings: &[Connection],
    conn: &Connection,
) -> Result<i64, ConnectionError> {
    let rows = sqlx::query(
        "SELECT k.site, count(*) AS n
           FROM bindings b
           LEFT JOIN bookings k ON k.tenant_id = b.tenant_id AND k.kind = b.kind
                               AND k.booking_key = b.booking_key
          WHERE b.tenant_id = $1 AND b.vendor = $2 AND b.status <> ALL($3)
          GROUP BY k.site",
    )
    .bind(&conn.tenant)
    .bind(conn.vendor().as_str())
    .bind(HOLDS_NOTHING)
    .fetch_all(pool)
    .await?;
    let mut n = 0;
    for r in rows {
        let site: Option<String> = r.try_get("site")?;
        let count: i64 = r.try_get("n")?;
        if site.is_none_or(|s| owns_site(siblings, conn, &s)) {
            n += count;
        }
    }
    Ok(n)
}

/// How many bookings of `tenant` hold access at any vendor.
pub async fn live_access_of_tenant(pool: &PgPool, tenant: &str) -> Result<i64, ConnectionError> {
    Ok(sqlx::query_scalar(
        "SELECT count(*) FROM bindings WHERE tenant_id = $1 AND status <> ALL($2)",
    )
    .bind(tenant)
    .bind(HOLDS_NOTHING)
    .fetch_one(pool)
    .await?)
}

/// The connection's offboarding intent (`None`: active, or no such connection).
pub async fn intent(
    pool: &PgPool,
    tenant: &str,
    vendor: Vendor,
    name: &str,
) -> Result<Option<OffboardIntent>, ConnectionError> {
    let v: Option<Option<String>> = sqlx::query_scalar(
        "SELECT offboarding FROM connections WHERE tenant_id = $1 AND vendor = $2 AND name = $3",
    )
    .bind(tenant)
    .bind(vendor.as_str())
    .bind(name)
    .fetch_optional(pool)
    .await?;
    Ok(OffboardIntent::parse(v.flatten().as_deref()))
}

/// Marks the connection as offboarding: from now on it wants no access (workers apply its
/// events as endings, removals do not spare what a booking wanted). A later `delete` wins
/// over an earlier `disable`. `false` if there is no such connection.
pub async fn begin(
    pool: &PgPool,
    bus: Option<&Bus>,
    tenant: &str,
    vendor: Vendor,
    name: &str,
    intent: OffboardIntent,
) -> Result<bool, ConnectionError> {
    let n = sqlx::query(
        "UPDATE connections
            SET offboarding = CASE WHEN offboarding = 'delete' THEN 'delete' ELSE $4 END,
                updated_at = now()
          WHERE tenant_id = $1 AND vendor = $2 AND name = $3",
    )
    .bind(tenant)
    .bind(vendor.as_str())
    .bind(name)
    .bind(intent.as_str())
    .execute(pool)
    .await?
    .rows_affected();
    if n > 0 {
        tracing::info!(%tenant, %vendor, %name, intent = intent.as_str(), "connection offboarding");
        notify(bus, tenant, vendor, name, 0, false).await;
    }
    Ok(n > 0)
}

/// Records that the vendor holds nothing any more for the bookings whose access `conn`
/// created (an offboard run's listing found nothing of ours): their bindings say `removed`,
/// so a later ending is not dead-lettered for access that is gone, and the next offboarding
/// does not count them. Returns how many bindings changed.
pub async fn settle_bindings(
    pool: &PgPool,
    siblings: &[Connection],
    conn: &Connection,
) -> Result<u64, ConnectionError> {
    let rows = sqlx::query(
        "SELECT b.kind, b.booking_key, k.site
           FROM bindings b
           LEFT JOIN bookings k ON k.tenant_id = b.tenant_id AND k.kind = b.kind
                               AND k.booking_key = b.booking_key
          WHERE b.tenant_id = $1 AND b.vendor = $2 AND b.status <> ALL($3)",
    )
    .bind(&conn.tenant)
    .bind(conn.vendor().as_str())
    .bind(HOLDS_NOTHING)
    .fetch_all(pool)
    .await?;
    let alone = siblings.iter().all(|c| c.name == conn.name);
    let mut kinds = Vec::new();
    let mut keys = Vec::new();
    for r in rows {
        let site: Option<String> = r.try_get("site")?;
        let owned = match &site {
            Some(s) => owns_site(siblings, conn, s),
            None => alone,
        };
        if owned {
            kinds.push(r.try_get::<String, _>("kind")?);
            keys.push(r.try_get::<String, _>("booking_key")?);
        }
    }
    let n = sqlx::query(
        "UPDATE bindings b SET status = 'removed', updated_at = now(),
                last_error = 'offboarded: nothing of ours left at the vendor'
           FROM unnest($3::text[], $4::text[]) AS x(kind, booking_key)
          WHERE b.tenant_id = $1 AND b.vendor = $2
            AND b.kind = x.kind AND b.booking_key = x.booking_key",
    )
    .bind(&conn.tenant)
    .bind(conn.vendor().as_str())
    .bind(&kinds)
    .bind(&keys)
    .execute(pool)
    .await?
    .rows_affected();
    Ok(n)
}

/// What [`finish`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finished {
    /// The connection was not offboarding (or is gone): nothing done.
    NotOffboarding,
    /// Deleted (with its sync schedule).
    Deleted,
    /// Disabled.
    Disabled,
}

/// Ends a connection's offboarding once nothing of ours is left at the vendor: deletes it
/// (and its schedule) or disables it, as its intent says.
pub async fn finish(
    pool: &PgPool,
    bus: Option<&Bus>,
    tenant: &str,
    vendor: Vendor,
    name: &str,
) -> Result<Finished, ConnectionError> {
    let mut tx = pool.begin().await?;
    let v: Option<Option<String>> = sqlx::query_scalar(
        "SELECT offboarding FROM connections
          WHERE tenant_id = $1 AND vendor = $2 AND name = $3 FOR UPDATE",
    )
    .bind(tenant)
    .bind(vendor.as_str())
    .bind(name)
    .fetch_optional(&mut *tx)
    .await?;
    // Each statement binds tenant, vendor and name.
    let (done, statements): (Finished, &[&'static str]) =
        match OffboardIntent::parse(v.flatten().as_deref()) {
            None => return Ok(Finished::NotOffboarding),
            Some(OffboardIntent::Delete) => (
                Finished::Deleted,
                &[
                    "DELETE FROM connections WHERE tenant_id = $1 AND vendor = $2 AND name = $3",
                    "DELETE FROM sync_schedules
                      WHERE tenant_id = $1 AND vendor = $2 AND connection_name = $3",
                ],
            ),
            Some(OffboardIntent::Disable) => (
                Finished::Disabled,
                &["UPDATE connections SET enabled = false, offboarding = NULL,
                          version = version + 1, updated_at = now()
                    WHERE tenant_id = $1 AND vendor = $2 AND name = $3"],
            ),
        };
    for sql in statements {
        sqlx::query(sqlx::AssertSqlSafe(*sql))
            .bind(tenant)
            .bind(vendor.as_str())
            .bind(name)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    tracing::info!(%tenant, %vendor, %name, outcome = ?done, "connection offboarded");
    notify(bus, tenant, vendor, name, 0, done == Finished::Deleted).await;
    Ok(done)
}

/// Marks a tenant for deletion once its last connection is offboarded. `false` if unknown.
pub async fn begin_tenant(pool: &PgPool, tenant: &str) -> Result<bool, ConnectionError> {
    let n = sqlx::query("UPDATE tenants SET offboarding = true, updated_at = now() WHERE id = $1")
        .bind(tenant)
        .execute(pool)
        .await?
        .rows_affected();
    Ok(n > 0)
}

/// Deletes a tenant marked by [`begin_tenant`] once it has no connection left (the last
/// offboard run calls this). `true` when it was deleted.
pub async fn finish_tenant(pool: &PgPool, tenant: &str) -> Result<bool, ConnectionError> {
    let ready: Option<bool> = sqlx::query_scalar(
        "SELECT offboarding AND NOT EXISTS (SELECT 1 FROM connections WHERE tenant_id = $1)
           FROM tenants WHERE id = $1",
    )
    .bind(tenant)
    .fetch_optional(pool)
    .await?;
    if ready != Some(true) {
        return Ok(false);
    }
    Ok(purge_tenant(pool, tenant).await?.is_some())
}

/// Rows deleted with a tenant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Purged {
    /// Desired booking states (guest names, e-mails, plates).
    pub bookings: u64,
    /// Worker records (vendor ids).
    pub bindings: u64,
}

/// Deletes a tenant and everything stored about its bookings: desired states, worker records
/// and attempt markers, ingest receipts, key requests, schedules; sources and connections go
/// with the tenant row. Personal data must not outlive the tenant. `None` if unknown.
pub async fn purge_tenant(pool: &PgPool, tenant: &str) -> Result<Option<Purged>, ConnectionError> {
    let mut tx = pool.begin().await?;
    let exists: Option<i32> = sqlx::query_scalar("SELECT 1 FROM tenants WHERE id = $1 FOR UPDATE")
        .bind(tenant)
        .fetch_optional(&mut *tx)
        .await?;
    if exists.is_none() {
        return Ok(None);
    }
    let mut purged = Purged::default();
    for (table, column) in [
        ("bookings", "tenant_id"),
        ("bindings", "tenant_id"),
        ("vendor_attempts", "tenant_id"),
        ("ingest_receipts", "tenant_id"),
        ("ingest_ignored", "tenant_id"),
        ("key_requests", "tenant"),
        ("keyreq_callbacks", "tenant_id"),
        ("sync_schedules", "tenant_id"),
        ("tenants", "id"),
    ] {
        // Table and column names are the constants above, never input.
        let sql = format!("DELETE FROM {table} WHERE {column} = $1");
        let n = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(tenant)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        match table {
            "bookings" => purged.bookings = n,
            "bindings" => purged.bindings = n,
            _ => {}
        }
    }
    tx.commit().await?;
    tracing::info!(%tenant, bookings = purged.bookings, bindings = purged.bindings, "tenant purged");
    Ok(Some(purged))
}

/// Announces a change on `config.connection.<vendor>.<tenant>` so worker caches drop their
/// copy at once (a lost notification only delays: caches expire within their TTL).
pub(crate) async fn notify(
    bus: Option<&Bus>,
    tenant: &str,
    vendor: Vendor,
    name: &str,
    version: i64,
    deleted: bool,
) {
    let Some(bus) = bus else { return };
    let subject = bus.subject(&subjects::connection_changed(vendor.as_str(), tenant));
    let body = ConnectionChanged {
        tenant: tenant.to_owned(),
        vendor,
        name: name.to_owned(),
        version,
        deleted,
    };
    let payload = match serde_json::to_vec(&body) {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(error = %e, "encode connection change");
            return;
        }
    };
    if let Err(e) = bus.client.publish(subject, payload.into()).await {
        tracing::warn!(error = %e, %tenant, %vendor, "publish connection change failed");
    } else if let Err(e) = bus.client.flush().await {
        tracing::warn!(error = %e, "flush connection change failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Secret, TapkeySettings, VendorSettings};

    fn conn(name: &str, sites: &[&str]) -> Connection {
        Connection {
            tenant: "t".into(),
            name: name.into(),
            enabled: true,
            sites: sites.iter().map(|s| (*s).to_owned()).collect(),
            settings: VendorSettings::Tapkey(TapkeySettings {
                authority_url: "https://sso.example".into(),
                base_url: "https://api.example".into(),
                client_id: "c".into(),
                client_secret: Secret::new("s"),
                owner_account_id: "o".into(),
                pass_types: Default::default(),
            }),
            version: 1,
        }
    }

    #[test]
    fn a_connection_owns_its_sites_and_a_catch_all_owns_the_rest() {
        let north = conn("north", &["n1", "n2"]);
        let rest = conn("default", &[]);
        let all = [north.clone(), rest.clone()];
        assert!(owns_site(&all, &north, "n1"));
        assert!(!owns_site(&all, &north, "s1"));
        assert!(owns_site(&all, &rest, "s1"));
        assert!(!owns_site(&all, &rest, "n2"), "n2 is north's");
        assert!(owns_site(std::slice::from_ref(&rest), &rest, "n2"));
    }

    #[test]
    fn the_access_choice_defaults_to_refusing() {
        assert_eq!(AccessChoice::parse(None), Ok(AccessChoice::Refuse));
        assert_eq!(
            AccessChoice::parse(Some("remove")),
            Ok(AccessChoice::Remove)
        );
        assert_eq!(AccessChoice::parse(Some("keep")), Ok(AccessChoice::Keep));
        assert!(AccessChoice::parse(Some("force")).is_err());
    }
}
