//! The `bindings` table: per (tenant, vendor, kind, booking) the revision applied and the
//! vendor's object ids. Read under an advisory lock on the booking (see [`crate::store`]), so
//! two replicas never apply events of the same booking at once (principle 5); the lock also
//! covers bookings that have no row yet, which `SELECT … FOR UPDATE` would not.

use sqlx::PgPool;

use crate::handler::Binding;

/// Identifies one booking at one vendor.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BindingKey {
    /// Tenant.
    pub tenant: String,
    /// Vendor.
    pub vendor: String,
    /// Event kind.
    pub kind: String,
    /// Booking key.
    pub booking_key: String,
}

impl BindingKey {
    /// The advisory-lock key (hashed server-side with `hashtextextended`).
    pub(crate) fn lock_key(&self) -> String {
        format!(
            "binding\x1f{}\x1f{}\x1f{}\x1f{}",
            self.tenant, self.vendor, self.kind, self.booking_key
        )
    }
}

const SELECT: &str = "SELECT tenant_id, vendor, kind, booking_key, applied_revision, applied_event_id, \
     vendor_ids, ids_version, status, last_error, updated_at, trace_id FROM bindings \
     WHERE tenant_id = $1 AND vendor = $2 AND kind = $3 AND booking_key = $4";

/// Records a failure, with the trace id of the failed attempt (the console shows it next to
/// the error). A dead letter creates the row if needed (status `dead_lettered`, so
/// `accessctl status` shows it); a retry only annotates an existing row.
pub(crate) async fn record_error(
    pool: &PgPool,
    key: &BindingKey,
    error: &str,
    trace_id: Option<&str>,
    dead_lettered: bool,
) -> Result<(), sqlx::Error> {
    if dead_lettered {
        sqlx::query(
            "INSERT INTO bindings (tenant_id, vendor, kind, booking_key, applied_revision, \
               status, last_error, last_error_at, updated_at, trace_id) \
             VALUES ($1, $2, $3, $4, 0, 'dead_lettered', $5, now(), now(), $6) \
             ON CONFLICT (tenant_id, vendor, kind, booking_key) DO UPDATE SET \
               status = 'dead_lettered', last_error = EXCLUDED.last_error, \
               last_error_at = now(), updated_at = now(), trace_id = EXCLUDED.trace_id",
        )
    } else {
        sqlx::query(
            "UPDATE bindings SET last_error = $5, last_error_at = now(), trace_id = $6 \
             WHERE tenant_id = $1 AND vendor = $2 AND kind = $3 AND booking_key = $4",
        )
    }
    .bind(&key.tenant)
    .bind(&key.vendor)
    .bind(&key.kind)
    .bind(&key.booking_key)
    .bind(error)
    .bind(trace_id)
    .execute(pool)
    .await?;
    Ok(())
}

/// Reads one binding (tests, status tools).
pub async fn get_binding(pool: &PgPool, key: &BindingKey) -> Result<Option<Binding>, sqlx::Error> {
    sqlx::query_as::<_, Binding>(SELECT)
        .bind(&key.tenant)
        .bind(&key.vendor)
        .bind(&key.kind)
        .bind(&key.booking_key)
        .fetch_optional(pool)
        .await
}
