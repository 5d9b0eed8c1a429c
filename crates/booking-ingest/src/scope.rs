//! Install per administration (the BEX App Store's semantics): a tenant's connections say
//! which sites (administrations, properties, buildings) access control is switched on for, and
//! their mappings say which administrations, facilities and pass types it covers. An event
//! that no connection would act on is **ignored** — answered 2xx `{"status": "ignored",
//! "reason"}`, recorded in `ingest_ignored` and counted in
//! `accesshub_ingest_ignored_total{source,reason}` — rather than stored and dead-lettered by
//! every worker, and never answered 4xx (a sender disables or endlessly retries a webhook that
//! fails). Ignored is not lost: the row keeps the booking's latest normalized event
//! ([`record_ignored`]), and every sync run of a connection that now acts on it (re-enabled,
//! the facility mapped) re-admits it through the durable path (the reconciler's `readmit`,
//! judged by this module's [`Survey`]).
//!
//! Called after normalization ([`admit`]), so every upstream's mapping (webhook or pull) goes
//! through the same rule; it also keys the booking by its source ([`key_by_source`]). Two
//! safety rules keep "ignored" from ever leaving access behind:
//! - a tenant with no connection to any vendor of the event's kind is not judged here (the
//!   booking is stored as before: the connection may come later and its sync applies it);
//! - a booking already stored is never ignored: its later events (a cancellation after the
//!   site was switched off) must reach the workers that may hold access for it.

use accesshub_connections::{Connection, ConnectionCache, Vendor, VendorSettings};
use accesshub_domain::{Event, EventBody, EventKind, Source};
use serde_json::json;

use crate::{
    AppState,
    committer::{Answer, AnswerKind},
    error::Reject,
    upstream::Normalized,
};

/// Why an event was ignored (the metric's `reason` label and the answer's `reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// No enabled connection is activated for the event's site.
    SiteNotActivated,
    /// The connections that would serve the site are disabled.
    ConnectionDisabled,
    /// CloudPass: the administration is not mapped to a CloudPass site (and no other vendor
    /// of the kind serves it).
    UnmappedAdministration,
    /// iPassan: the facility is not mapped to an asset ("Enable access" off).
    UnmappedFacility,
    /// Tapkey: the pass type has no locks.
    UnmappedPassType,
}

impl Reason {
    /// Every reason, for the metric's series.
    pub const ALL: [Reason; 5] = [
        Reason::SiteNotActivated,
        Reason::ConnectionDisabled,
        Reason::UnmappedAdministration,
        Reason::UnmappedFacility,
        Reason::UnmappedPassType,
    ];

    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::SiteNotActivated => "site_not_activated",
            Reason::ConnectionDisabled => "connection_disabled",
            Reason::UnmappedAdministration => "unmapped_administration",
            Reason::UnmappedFacility => "unmapped_facility",
            Reason::UnmappedPassType => "unmapped_pass_type",
        }
    }
}

/// The vendors acting on events of `kind`.
pub fn vendors_for(kind: EventKind) -> &'static [Vendor] {
    match kind {
        EventKind::Reservation => &[Vendor::Cloudpass, Vendor::Dormakaba],
        EventKind::Facility => &[Vendor::Ipassan],
        EventKind::Pass => &[Vendor::Tapkey],
        // Key requests are asked for explicitly: never ignored.
        EventKind::KeyRequest => &[],
    }
}

/// Whether `conn`'s mapping covers the event; `Err` names what is unmapped. Vendors without
/// a site-level mapping (dormakaba maps rooms, identity when absent) always cover it.
pub fn mapped(conn: &Connection, event: &Event) -> Result<(), Reason> {
    match (&conn.settings, &event.body) {
        (VendorSettings::Cloudpass(s), EventBody::Reservation(_))
            if !s.administrations.contains_key(&event.site) =>
        {
            Err(Reason::UnmappedAdministration)
        }
        (VendorSettings::Ipassan(s), EventBody::Facility(f))
            if !s.facilities.contains_key(&f.facility_id) =>
        {
            Err(Reason::UnmappedFacility)
        }
        (VendorSettings::Tapkey(s), EventBody::Pass(p))
            if s.pass_types.get(&p.pass_type).is_none_or(Vec::is_empty) =>
        {
            Err(Reason::UnmappedPassType)
        }
        _ => Ok(()),
    }
}

/// What one vendor's connections say about an event.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Survey {
    /// The tenant has connections to the vendor.
    pub any: bool,
    /// One of them acts on the event.
    pub acts: bool,
    /// An enabled connection serving the site does not map the event.
    pub unmapped: Option<Reason>,
    /// A disabled connection would serve the site.
    pub disabled: bool,
}

impl Survey {
    /// What `conns` (one vendor's, enabled or not) say about `event`.
    pub fn of(event: &Event, conns: &[Connection]) -> Survey {
        let listed = |c: &Connection| c.sites.is_empty() || c.sites.contains(&event.site);
        let mut out = Survey {
            any: !conns.is_empty(),
            ..Survey::default()
        };
        for c in conns {
            if c.serves_site(&event.site) {
                match mapped(c, event) {
                    Ok(()) => out.acts = true,
                    Err(r) => out.unmapped = out.unmapped.or(Some(r)),
                }
            } else if !c.enabled && listed(c) {
                out.disabled = true;
            }
        }
        out
    }
}

/// The pure rule over the surveys of every vendor of the event's kind: `None` when some
/// connection acts on the event, or when the tenant has none at all.
pub fn judge(surveys: &[Survey]) -> Option<Reason> {
    if surveys.iter().all(|s| !s.any) || surveys.iter().any(|s| s.acts) {
        return None;
    }
    Some(
        match (
            surveys.iter().find_map(|s| s.unmapped),
            surveys.iter().any(|s| s.disabled),
        ) {
            (Some(r), _) => r,
            (None, true) => Reason::ConnectionDisabled,
            (None, false) => Reason::SiteNotActivated,
        },
    )
}

/// The ignored answer (2xx): `{"status": "ignored", "reason", "site"}`.
pub fn answer(reason: Reason, site: &str) -> Answer {
    Answer {
        kind: AnswerKind::Ignored,
        body: json!({"status": "ignored", "reason": reason.as_str(), "site": site}),
    }
}

/// What to do with a normalized event.
#[derive(Debug)]
pub enum Admitted {
    /// Store it (under the key [`key_by_source`] chose).
    Store(Box<Normalized>),
    /// Answer this instead: the event was ignored (recorded and counted).
    Ignored(Answer),
}

/// The ingest gate after normalization: keys the booking by its source
/// ([`key_by_source`]), then judges it against the tenant's connections; an event to be
/// ignored is recorded and counted and its answer returned instead of storing it.
pub async fn admit(st: &AppState, source: Source, n: Normalized) -> Result<Admitted, Reject> {
    let (n, stored) = key_by_source(&st.pool, source, n).await?;
    if stored {
        return Ok(Admitted::Store(Box::new(n)));
    }
    let Some(reason) = judge_cached(&st.connections, &n.event).await? else {
        return Ok(Admitted::Store(Box::new(n)));
    };
    record_ignored(&st.pool, source, reason, &n)
        .await
        .map_err(|e| unavailable("ingest_ignored", &e))?;
    let event = &n.event;
    st.metrics.ignored(source.as_str(), reason.as_str());
    tracing::info!(tenant = %event.tenant, site = %event.site, reason = reason.as_str(), "event ignored");
    Ok(Admitted::Ignored(answer(reason, &event.site)))
}

/// Records an ignored event in `ingest_ignored`: one row per booking with the latest reason,
/// a delivery count and the booking's latest normalized event (the same data `bookings`
/// would hold), so that a sync run can re-admit it once access control is switched on (the
/// reconciler's `readmit`). A later delivery replaces the kept event only when
/// [`accesshub_domain::supersedes`] says so (a newer revision, or an ending at an equal one),
/// exactly as it would replace a stored booking. One transaction: insert, or lock the row,
/// compare in Rust, update.
pub async fn record_ignored(
    pool: &sqlx::PgPool,
    source: Source,
    reason: Reason,
    n: &Normalized,
) -> Result<(), sqlx::Error> {
    let event = &n.event;
    let ends_at = crate::committer::window(event).1;
    let key = (
        &event.tenant,
        source.as_str(),
        event.kind().as_str(),
        &event.booking_key,
    );
    let mut tx = pool.begin().await?;
    let inserted = sqlx::query(
        "INSERT INTO ingest_ignored (tenant_id, source, kind, booking_key, site, reason,
                                     event, revision, ends_access, ends_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8, $9, $10)
         ON CONFLICT (tenant_id, source, kind, booking_key) DO NOTHING",
    )
    .bind(key.0)
    .bind(key.1)
    .bind(key.2)
    .bind(key.3)
    .bind(&event.site)
    .bind(reason.as_str())
    .bind(&n.json)
    .bind(event.revision)
    .bind(event.ends_access())
    .bind(ends_at)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if inserted == 0 {
        let (revision, ends_access): (Option<i64>, Option<bool>) = sqlx::query_as(
            "SELECT revision, ends_access FROM ingest_ignored
              WHERE tenant_id = $1 AND source = $2 AND kind = $3 AND booking_key = $4
              FOR UPDATE",
        )
        .bind(key.0)
        .bind(key.1)
        .bind(key.2)
        .bind(key.3)
        .fetch_one(&mut *tx)
        .await?;
        // A row without an event (written before events were kept) takes any.
        let replace = match (revision, ends_access) {
            (Some(r), Some(e)) => {
                accesshub_domain::supersedes((event.revision, event.ends_access()), (r, e))
            }
            _ => true,
        };
        sqlx::query(
            "UPDATE ingest_ignored SET reason = $5, deliveries = deliveries + 1, last_at = now(),
                    site = CASE WHEN $6 THEN $7 ELSE site END,
                    event = CASE WHEN $6 THEN $8::jsonb ELSE event END,
                    revision = CASE WHEN $6 THEN $9 ELSE revision END,
                    ends_access = CASE WHEN $6 THEN $10 ELSE ends_access END,
                    ends_at = CASE WHEN $6 THEN $11 ELSE ends_at END
              WHERE tenant_id = $1 AND source = $2 AND kind = $3 AND booking_key = $4",
        )
        .bind(key.0)
        .bind(key.1)
        .bind(key.2)
        .bind(key.3)
        .bind(reason.as_str())
        .bind(replace)
        .bind(&event.site)
        .bind(&n.json)
        .bind(event.revision)
        .bind(event.ends_access())
        .bind(ends_at)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await
}

/// The key a booking of `source` is stored under when another upstream of the tenant already
/// holds its plain key: `<source>:<key>`.
pub fn qualified_key(source: Source, key: &str) -> String {
    format!("{}:{key}", source.as_str())
}

/// Which stored key a booking of `source` with upstream key `plain` lives under, given the
/// stored rows among `plain` and its [`qualified_key`] (`(key, source)`): its qualified key
/// once that exists; else the plain key unless another source holds it. `true` when the
/// booking is already stored.
pub fn choose_key(source: Source, plain: &str, rows: &[(String, String)]) -> (String, bool) {
    let qualified = qualified_key(source, plain);
    if rows.iter().any(|(k, _)| *k == qualified) {
        return (qualified, true);
    }
    match rows.iter().find(|(k, _)| k == plain) {
        Some((_, s)) if s == source.as_str() => (plain.to_owned(), true),
        Some(_) => (qualified, false),
        None => (plain.to_owned(), false),
    }
}

/// [`key_by_source`]'s probe: the booking under its plain key (`$3`) and under its
/// source-qualified key (`$4`). Two full primary-key equalities, not `booking_key = ANY(..)`:
/// the generic plan of that prepared statement took `bookings_starts_idx` for (tenant, kind)
/// and filtered every booking of the tenant by key, a scan per webhook (ingest fell from
/// 11,372 to 1,742 accepts/s; a 100k-reservation pull slowed as the table grew).
pub const KEY_PROBE_SQL: &str = "SELECT booking_key, source FROM bookings
  WHERE tenant_id = $1 AND kind = $2 AND booking_key = $3
 UNION ALL
 SELECT booking_key, source FROM bookings
  WHERE tenant_id = $1 AND kind = $2 AND booking_key = $4";

/// Bookings are keyed by source: two upstreams of one tenant sending the same booking key
/// ("123" from BEX and from Clock) must not overwrite each other. The first keeps the plain
/// key (every booking stored before this rule keeps its key, its bindings and its vendor
/// references); a booking of another source meeting a plain key that is taken is stored
/// under `<source>:<key>` — in `bookings`, its subject, its bindings and its vendor
/// references alike, so no reader needs to know. One primary-key probe per event; the
/// answer also tells the scope check whether the booking is stored already.
pub async fn key_by_source(
    pool: &sqlx::PgPool,
    source: Source,
    n: Normalized,
) -> Result<(Normalized, bool), Reject> {
    let plain = n.event.booking_key.clone();
    let rows: Vec<(String, String)> = sqlx::query_as(KEY_PROBE_SQL)
        .bind(&n.event.tenant)
        .bind(n.event.kind().as_str())
        .bind(&plain)
        .bind(qualified_key(source, &plain))
        .fetch_all(pool)
        .await
        .map_err(|e| unavailable("bookings", &e))?;
    let (key, stored) = choose_key(source, &plain, &rows);
    if key == plain {
        return Ok((n, stored));
    }
    let mut event = n.event;
    event.booking_key = key;
    let json = serde_json::to_string(&event).map_err(|_| Reject::Unavailable)?;
    Ok((Normalized { event, json }, stored))
}

async fn judge_cached(cache: &ConnectionCache, event: &Event) -> Result<Option<Reason>, Reject> {
    let mut surveys = Vec::with_capacity(2);
    for v in vendors_for(event.kind()) {
        let survey = cache
            .with_all(&event.tenant, *v, |conns| Survey::of(event, conns))
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "connections unreadable; answering 503");
                Reject::Unavailable
            })?;
        surveys.push(survey);
    }
    Ok(judge(&surveys))
}

fn unavailable(table: &str, e: &sqlx::Error) -> Reject {
    tracing::warn!(error = %e, table, "scope check failed; answering 503");
    Reject::Unavailable
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(site: &str) -> Event {
        serde_json::from_value(json!({
            "id": "01977a4e-2c10-7b3a-9f21-5d8c4e6a1b01",
            "tenant": "t", "site": site, "booking_key": "k", "revision": 1,
            "source": "native", "occurred_at": "2025-06-20T09:15:00Z", "schema_version": 1,
            "kind": "facility",
            "payload": {"status": "booked", "facility_id": "gym",
                "resident": {"id": "r", "email": "r@example.com", "first_name": "R", "last_name": "S"},
                "start": "2025-07-01T08:00:00Z", "end": "2025-07-01T10:00:00Z"}
        }))
        .unwrap()
    }

    fn ipassan(sites: &[&str], enabled: bool, facilities: &[&str]) -> Connection {
        serde_json::from_value(json!({
            "tenant": "t", "enabled": enabled, "sites": sites,
            "settings": {"vendor": "ipassan", "base_url": "https://x", "client_id": "c",
                "client_secret": "s", "site_guid": "6f1c9a8e-1111-4222-8333-944455556666",
                "facilities": facilities.iter().map(|f| (f.to_string(), "6f1c9a8e-1111-4222-8333-944455556666")).collect::<std::collections::BTreeMap<_, _>>()}
        }))
        .unwrap()
    }

    fn judge_one(e: &Event, conns: &[Connection]) -> Option<Reason> {
        judge(&[Survey::of(e, conns)])
    }

    #[test]
    fn keys_by_source() {
        let row = |k: &str, s: &str| (k.to_owned(), s.to_owned());
        assert_eq!(choose_key(Source::Bex, "123", &[]), ("123".into(), false));
        assert_eq!(
            choose_key(Source::Bex, "123", &[row("123", "bex")]),
            ("123".into(), true)
        );
        assert_eq!(
            choose_key(Source::Clock, "123", &[row("123", "bex")]),
            ("clock:123".into(), false)
        );
        assert_eq!(
            choose_key(
                Source::Clock,
                "123",
                &[row("123", "bex"), row("clock:123", "clock")]
            ),
            ("clock:123".into(), true)
        );
        // Once qualified, always: even after the plain row was pruned.
        assert_eq!(
            choose_key(Source::Clock, "123", &[row("clock:123", "clock")]),
            ("clock:123".into(), true)
        );
    }

    #[test]
    fn no_connection_at_all_is_not_judged() {
        assert_eq!(judge_one(&event("b1"), &[]), None);
        assert_eq!(judge(&[]), None);
    }

    #[test]
    fn the_rule() {
        let e = event("b1");
        let on = ipassan(&["b1"], true, &["gym"]);
        assert_eq!(judge_one(&e, std::slice::from_ref(&on)), None);
        let other_site = ipassan(&["b2"], true, &["gym"]);
        assert_eq!(judge_one(&e, &[other_site]), Some(Reason::SiteNotActivated));
        let off = ipassan(&["b1"], false, &["gym"]);
        assert_eq!(judge_one(&e, &[off]), Some(Reason::ConnectionDisabled));
        let unmapped = ipassan(&[], true, &["pool"]);
        assert_eq!(
            judge_one(&e, std::slice::from_ref(&unmapped)),
            Some(Reason::UnmappedFacility)
        );
        // One connection acting is enough, of any vendor of the kind.
        assert_eq!(judge_one(&e, &[unmapped.clone(), on.clone()]), None);
        assert_eq!(
            judge(&[Survey::of(&e, &[unmapped]), Survey::of(&e, &[on])]),
            None
        );
        // A vendor without connections does not make the event ignored by itself.
        assert_eq!(
            judge(&[
                Survey::default(),
                Survey::of(&e, &[ipassan(&["b1"], true, &["gym"])])
            ]),
            None
        );
    }
}
