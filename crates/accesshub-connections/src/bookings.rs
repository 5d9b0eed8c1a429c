//! Bookings as an operator looks them up: search by guest, plate, room or booking key, and per
//! booking the desired state (the stored event payload) with what each vendor's worker applied
//! (`bindings`: revision, vendor ids, status, last error). Read-only over the tables
//! booking-ingest and the workers own. One implementation for the admin API
//! (`/admin/v1/bookings`) and the console's Bookings screen, so both show the same thing under
//! the same tenant scope.

use accesshub_domain::pii;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{PgPool, Row as _};

/// One booking with what each vendor applied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BookingView {
    /// Tenant.
    pub tenant: String,
    /// reservation, facility, pass, keyreq.
    pub kind: String,
    /// Booking key.
    pub key: String,
    /// Upstream site (administration).
    pub site: String,
    /// Desired revision.
    pub revision: i64,
    /// Upstream source.
    pub source: String,
    /// Desired state: the event payload as received (personal data masked unless asked for).
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
    /// Access window.
    pub starts_at: Option<DateTime<Utc>>,
    /// Access window.
    pub ends_at: Option<DateTime<Utc>>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// Per vendor, what its worker applied.
    pub applied: Vec<Applied>,
}

/// What one vendor's worker applied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Applied {
    /// Vendor.
    pub vendor: String,
    /// Revision applied.
    pub revision: i64,
    /// Vendor object ids.
    #[schema(value_type = Object)]
    pub vendor_ids: serde_json::Value,
    /// Status (`applied`, `removed`, `dead_lettered`, …).
    pub status: String,
    /// Last error, if the last attempt failed.
    pub last_error: Option<String>,
    /// When the last error happened.
    pub last_error_at: Option<DateTime<Utc>>,
    /// Trace id of the worker's attempt that last wrote the binding: the one that applied
    /// what it records, or that failed with `last_error` (to paste into the trace UI).
    pub trace_id: Option<String>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

impl BookingView {
    /// Masks names, e-mails, phones and plates in the payload and e-mails in the vendors'
    /// last errors (`accesshub_domain::pii`), for every reader who did not ask for them.
    pub fn mask_pii(&mut self) {
        pii::mask_json(&mut self.payload);
        for a in &mut self.applied {
            if let Some(e) = &a.last_error {
                a.last_error = Some(pii::mask_emails_in(e));
            }
        }
    }
}

/// Which bookings to find.
#[derive(Debug, Clone, Default)]
pub struct BookingQuery<'a> {
    /// Tenants the caller may see (`None`: all).
    pub scope: Option<Vec<String>>,
    /// Only this tenant.
    pub tenant: Option<&'a str>,
    /// Part of the guest's name, a plate, a room or the booking key (case-insensitive);
    /// empty matches every booking.
    pub text: &'a str,
    /// Exactly this booking key (with `tenant`: one booking per kind).
    pub key: Option<&'a str>,
    /// Only this kind.
    pub kind: Option<&'a str>,
    /// At most this many, newest first.
    pub limit: i64,
}

/// Bookings matching `q`, newest first, each with its bindings.
pub async fn search(pool: &PgPool, q: &BookingQuery<'_>) -> Result<Vec<BookingView>, sqlx::Error> {
    let pattern = format!(
        "%{}%",
        q.text
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_")
    );
    let rows = sqlx::query(
        "SELECT tenant_id, kind, booking_key, site, revision, source, payload,
                starts_at, ends_at, updated_at
           FROM bookings
          WHERE ($1::text[] IS NULL OR tenant_id = ANY ($1))
            AND ($2::text IS NULL OR tenant_id = $2)
            AND (booking_key ILIKE $3 OR payload::text ILIKE $3)
            AND ($4::text IS NULL OR booking_key = $4)
            AND ($5::text IS NULL OR kind = $5)
          ORDER BY updated_at DESC
          LIMIT $6",
    )
    .bind(&q.scope)
    .bind(q.tenant)
    .bind(&pattern)
    .bind(q.key)
    .bind(q.kind)
    .bind(q.limit)
    .fetch_all(pool)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let mut b = BookingView {
            tenant: r.try_get("tenant_id")?,
            kind: r.try_get("kind")?,
            key: r.try_get("booking_key")?,
            site: r.try_get("site")?,
            revision: r.try_get("revision")?,
            source: r.try_get("source")?,
            payload: r.try_get("payload")?,
            starts_at: r.try_get("starts_at")?,
            ends_at: r.try_get("ends_at")?,
            updated_at: r.try_get("updated_at")?,
            applied: vec![],
        };
        let bindings = sqlx::query(
            "SELECT vendor, applied_revision, vendor_ids, status, last_error, last_error_at, trace_id,
                    updated_at
               FROM bindings WHERE tenant_id = $1 AND kind = $2 AND booking_key = $3
              ORDER BY vendor",
        )
        .bind(&b.tenant)
        .bind(&b.kind)
        .bind(&b.key)
        .fetch_all(pool)
        .await?;
        for x in bindings {
            b.applied.push(Applied {
                vendor: x.try_get("vendor")?,
                revision: x.try_get("applied_revision")?,
                vendor_ids: x.try_get("vendor_ids")?,
                status: x.try_get("status")?,
                last_error: x.try_get("last_error")?,
                last_error_at: x.try_get("last_error_at")?,
                trace_id: x.try_get("trace_id")?,
                updated_at: x.try_get("updated_at")?,
            });
        }
        out.push(b);
    }
    Ok(out)
}
