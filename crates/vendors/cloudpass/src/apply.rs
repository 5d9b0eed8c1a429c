//! Makes CloudPass hold exactly the desired vehicle bookings of one reservation. Idempotent
//! by construction: every booking is found by its reference before it is created, a 409 on
//! create means "exists", and bookings no longer wanted are deleted, including those of an
//! attempt that crashed before its record was saved (the plates it was about to create are
//! recorded as `pending` before the first call, so a later attempt looks them up).
//!
//! The decisions (which plates to look up, what to record before calling, which copy of a
//! duplicated reference to keep) are pure functions here; [`apply`] and [`remove_stray`] do
//! the calls.

use std::collections::{BTreeMap, BTreeSet};

use accesshub_connections::Connection;
use vendor_http::{StatusCode, VendorError};
use worker_runtime::{HandlerError, Status};

use crate::{
    CloudpassClient, CloudpassIds,
    client::{BookingFields, VehicleBooking},
    desired::plate_reference,
};

/// What one reservation should come to at CloudPass.
#[derive(Debug)]
pub struct Target<'a> {
    /// The CloudPass site of the reservation's administration.
    pub site: String,
    /// The connection serving the reservation (its name is recorded with the ids).
    pub connection: &'a str,
    /// One booking per plate (empty when no access is wanted).
    pub wanted: Vec<BookingFields>,
    /// Every normalized plate of the reservation, wanted or not.
    pub plates: BTreeSet<String>,
    /// The reservation's plates, normalized, in its order: a refused plate is named by its
    /// position here rather than by itself.
    pub listed: Vec<String>,
    /// Whether the reservation's status wants access at all.
    pub wants: bool,
    /// The booking's reference (`ah:<tenant>:reservation:<key>`).
    pub reference_base: &'a str,
    /// Whether existing bookings are brought to the configured time restriction too (the
    /// operator's re-apply); otherwise it applies to new bookings only.
    pub reapply_time_restriction: bool,
}

/// Where the recorded bookings live: the current connection's client, or the one of the
/// connection they were created through when the reservation moved to another connection.
#[derive(Debug, Clone, Copy)]
pub struct Clients<'a> {
    /// The connection serving the reservation now.
    pub current: &'a CloudpassClient,
    /// The client of the connection the record names: `current` when it is the same one (or
    /// the record names none); `None` when that connection was deleted, so its objects cannot
    /// be reached from here any more.
    pub recorded: Option<&'a CloudpassClient>,
}

/// Short status of the binding after [`apply`].
pub fn status(wants: bool, ids: &CloudpassIds) -> Status {
    if !wants {
        Status::Cancelled
    } else if ids.bookings.is_empty() {
        Status::NoPlates
    } else {
        Status::Active
    }
}

/// Whether `prev` was recorded at another place (site or connection) than `target`'s. A
/// record without a connection (older builds) counts as the current connection's.
pub fn moved(prev: &CloudpassIds, site: &str, connection: &str) -> bool {
    prev.site_id.as_deref().is_some_and(|s| s != site)
        || prev.connection.as_deref().is_some_and(|c| c != connection)
}

/// What to record before the first vendor call, if anything: every plate a create may reach
/// CloudPass for without its id being recorded afterwards (a crash between the call and the
/// record) is `pending`, so the next attempt finds it by reference — to keep it, or to delete
/// it when the next revision no longer has the plate. `None` when the record already covers
/// every such plate (no write).
pub fn intent(
    prev: &CloudpassIds,
    site: &str,
    connection: &str,
    wanted: &[BookingFields],
) -> Option<CloudpassIds> {
    let mut next = if moved(prev, site, connection) {
        // The old place's bookings are deleted before this record is written.
        CloudpassIds::default()
    } else {
        prev.clone()
    };
    next.site_id = Some(site.to_owned());
    next.connection = Some(connection.to_owned());
    for f in wanted {
        if !next.bookings.contains_key(&f.license_plate) {
            next.pending.insert(f.license_plate.clone());
        }
    }
    let needed = moved(prev, site, connection) || !next.pending.is_subset(&prev.pending);
    (needed && !next.pending.is_empty()).then_some(next)
}

/// The copy of a reference to keep when CloudPass holds several: the first listed that is
/// already exactly what is `wanted` (fields and the operator's re-apply choice, as
/// [`for_existing`] compares them), else the one the binding records, else the first listed
/// (oldest). Every other copy is a duplicate.
///
/// Exact first, because the reconciler keeps the first exact copy and sends a removal for
/// each other one: a worker preferring the recorded copy would delete the exact one on that
/// removal and keep a copy with the wrong window, which no apply then corrects.
pub fn keeper<'a>(
    copies: &'a [VehicleBooking],
    wanted: Option<(&BookingFields, bool)>,
    recorded: Option<&str>,
) -> Option<&'a str> {
    wanted
        .and_then(|(f, reapply)| {
            copies
                .iter()
                .find(|b| for_existing(f, b, reapply).matches(b))
        })
        .or_else(|| recorded.and_then(|id| copies.iter().find(|b| b.id == id)))
        .or_else(|| copies.first())
        .map(|b| b.id.as_str())
}

/// The plates CloudPass refused (422), each named by its position in the reservation's plate
/// list and a masked form: plates are personal data, kept out of logs and the DLQ reason.
#[derive(Debug, Default)]
struct Refused(Vec<(usize, String)>);

/// `AB12CD` → `AB****`.
pub fn mask_plate(plate: &str) -> String {
    plate
        .chars()
        .enumerate()
        .map(|(i, c)| if i < 2 { c } else { '*' })
        .collect()
}

impl Refused {
    fn error(&self, total: usize) -> HandlerError {
        let named: Vec<String> = self
            .0
            .iter()
            .map(|(pos, reason)| format!("plate #{pos} of {total} ({reason})"))
            .collect();
        HandlerError::permanent(format!(
            "CloudPass refused {} of the reservation's plates (422), the others have access: {}",
            self.0.len(),
            named.join("; ")
        ))
    }
}

/// The vendor's 422 message with the plate masked.
fn refusal(e: &VendorError, plate: &str) -> String {
    let masked = mask_plate(plate);
    vendor_http::scrub(
        &e.body()
            .unwrap_or("validation failed")
            .replace(plate, &masked),
    )
}

/// Creates, updates and deletes bookings until CloudPass holds `target`; `prev` is what the
/// binding recorded. `record` durably writes the ids given (without marking the event applied)
/// before the first create. When CloudPass refuses some plates (422) the others are applied
/// and recorded, and the result is a permanent error naming the refused ones.
pub async fn apply<R, Fut>(
    clients: Clients<'_>,
    target: Target<'_>,
    prev: &CloudpassIds,
    record: R,
) -> Result<CloudpassIds, HandlerError>
where
    R: Fn(CloudpassIds) -> Fut,
    Fut: std::future::Future<Output = Result<(), HandlerError>>,
{
    let Target {
        site,
        connection,
        wanted,
        plates,
        listed,
        wants,
        reference_base,
        reapply_time_restriction,
    } = target;
    let client = clients.current;
    let reference = |plate: &str| plate_reference(reference_base, plate);

    // 1. Moved to another site or connection: the old place's bookings go first (through the
    //    client that can reach them), so the intent below only has to describe the new place.
    let prev = if moved(prev, &site, connection) {
        delete_recorded(clients, prev, reference_base).await?;
        &CloudpassIds::default()
    } else {
        prev
    };
    if let Some(intent) = intent(prev, &site, connection, &wanted) {
        record(intent).await?;
    }

    // 2. Every wanted plate: find (all copies), keep one, update or create.
    let mut kept = BTreeMap::new();
    let mut refused = Refused::default();
    for fields in wanted {
        let plate = fields.license_plate.clone();
        let pos = listed.iter().position(|p| *p == plate).map_or(0, |i| i + 1);
        let ctx_err = |e: VendorError| HandlerError::from(e).context(format!("plate #{pos}"));
        let recorded = prev.bookings.get(&plate);
        match upsert(client, &site, &fields, recorded, reapply_time_restriction).await {
            Ok(Some(id)) => {
                kept.insert(plate, id);
            }
            Ok(None) => {
                return Err(HandlerError::transient(format!(
                    "CloudPass answered 409 for plate #{pos} but does not list it yet"
                )));
            }
            Err(e) if e.is_status(StatusCode::UNPROCESSABLE_ENTITY) => {
                let reason = refusal(&e, &plate);
                tracing::warn!(plate = pos, "CloudPass refused a plate (422)");
                // A refused update leaves the booking as it was: still ours, still recorded.
                if let Some(id) = prev.bookings.get(&plate) {
                    kept.insert(plate.clone(), id.clone());
                }
                // Named by position and masked form (`AB****`): enough for the operator to
                // find it in the reservation, without the plate in the DLQ.
                refused
                    .0
                    .push((pos, format!("{}: {reason}", mask_plate(&plate))));
            }
            Err(e) => return Err(ctx_err(e)),
        }
    }

    // 3. Bookings no longer wanted: those recorded, those an unrecorded attempt may have
    //    created (`pending`), and — when nothing is wanted — any carrying the reference of a
    //    plate in the event (records of builds before `pending`).
    for (plate, id) in &prev.bookings {
        if !kept.contains_key(plate) {
            client.delete(&site, id).await?;
        }
    }
    let mut lookup: BTreeSet<&String> = prev
        .pending
        .iter()
        .filter(|p| !kept.contains_key(*p) && !prev.bookings.contains_key(*p))
        .collect();
    if !wants {
        lookup.extend(plates.iter().filter(|p| !prev.bookings.contains_key(*p)));
    }
    for plate in lookup {
        for b in client.find_all(&site, &reference(plate)).await? {
            client.delete(&site, &b.id).await?;
        }
    }
    let ids = CloudpassIds {
        site_id: Some(site),
        connection: Some(connection.to_owned()),
        bookings: kept,
        pending: BTreeSet::new(),
    };
    if refused.0.is_empty() {
        return Ok(ids);
    }
    record(ids).await?;
    Err(refused.error(listed.len()))
}

/// The fields an existing booking `b` should get: `fields`, keeping the time restriction it
/// has unless the operator re-applies the configured one (the default time restriction is for
/// new bookings; one changed by hand in CloudPass stays).
pub fn for_existing(fields: &BookingFields, b: &VehicleBooking, reapply: bool) -> BookingFields {
    let mut out = fields.clone();
    if !reapply {
        out.time_restriction_id = b.time_restriction_id.clone();
    }
    out
}

/// Finds the plate's booking (every copy), keeps one — the recorded id, else the oldest —
/// deletes the other copies, and makes it match `fields` ([`for_existing`]); creates it when
/// there is none. `None`: CloudPass answered 409 but does not list the booking yet.
async fn upsert(
    client: &CloudpassClient,
    site: &str,
    fields: &BookingFields,
    recorded: Option<&String>,
    reapply: bool,
) -> Result<Option<String>, VendorError> {
    let mut copies = client.find_all(site, &fields.reference).await?;
    if copies.is_empty() {
        match client.create(site, fields).await? {
            Some(b) => return Ok(Some(b.id)),
            // 409: created concurrently or by an attempt we did not see finish.
            None => copies = client.find_all(site, &fields.reference).await?,
        }
    }
    let Some(keep) = keeper(
        &copies,
        Some((fields, reapply)),
        recorded.map(String::as_str),
    )
    .map(str::to_owned) else {
        return Ok(None);
    };
    for dup in copies.iter().filter(|b| b.id != keep) {
        client.delete(site, &dup.id).await?;
    }
    match copies.iter().find(|b| b.id == keep) {
        Some(b) => {
            let fields = for_existing(fields, b, reapply);
            if fields.matches(b) {
                Ok(Some(keep))
            } else {
                Ok(Some(client.update(site, &keep, &fields).await?.id))
            }
        }
        None => Ok(Some(client.update(site, &keep, fields).await?.id)),
    }
}

/// Deletes everything `prev` records at its place — ids, and pending plates by reference —
/// through the client of the connection it was recorded under.
async fn delete_recorded(
    clients: Clients<'_>,
    prev: &CloudpassIds,
    reference_base: &str,
) -> Result<(), HandlerError> {
    let Some(site) = prev.site_id.as_deref() else {
        return Ok(());
    };
    let Some(client) = clients.recorded else {
        tracing::warn!(
            "the connection the reservation's bookings were created through is gone; they cannot be deleted from here"
        );
        return Ok(());
    };
    for id in prev.bookings.values() {
        client.delete(site, id).await?;
    }
    for plate in prev
        .pending
        .iter()
        .filter(|p| !prev.bookings.contains_key(*p))
    {
        for b in client
            .find_all(site, &plate_reference(reference_base, plate))
            .await?
        {
            client.delete(site, &b.id).await?;
        }
    }
    Ok(())
}

/// Whether two connections reach the same CloudPass account: the same API user on the same
/// API. Only then is an object listed under one also the other's.
pub fn same_account(a: &Connection, b: &Connection) -> bool {
    if a.tenant == b.tenant && a.name == b.name {
        return true;
    }
    match (a.settings.cloudpass(), b.settings.cloudpass()) {
        (Ok(x), Ok(y)) => {
            x.base_url.trim_end_matches('/') == y.base_url.trim_end_matches('/')
                && x.client_id == y.client_id
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn fields(plate: &str) -> BookingFields {
        BookingFields {
            reference: format!("ah:t:reservation:k:{plate}"),
            license_plate: plate.into(),
            valid_from: Utc::now(),
            valid_until: Utc::now(),
            time_restriction_id: "tr".into(),
            name: "n".into(),
        }
    }

    fn ids(site: &str, conn: &str, bookings: &[(&str, &str)], pending: &[&str]) -> CloudpassIds {
        CloudpassIds {
            site_id: Some(site.into()),
            connection: Some(conn.into()),
            bookings: bookings
                .iter()
                .map(|(p, i)| ((*p).to_owned(), (*i).to_owned()))
                .collect(),
            pending: pending.iter().map(|p| (*p).to_owned()).collect(),
        }
    }

    #[test]
    fn intent_names_every_plate_a_create_may_reach_and_nothing_when_all_are_recorded() {
        let none = CloudpassIds::default();
        let i = intent(&none, "s", "c", &[fields("A"), fields("B")]).unwrap();
        assert_eq!(i, ids("s", "c", &[], &["A", "B"]));
        let recorded = ids("s", "c", &[("A", "1"), ("B", "2")], &[]);
        assert_eq!(intent(&recorded, "s", "c", &[fields("A")]), None);
        let partly = ids("s", "c", &[("A", "1")], &[]);
        assert_eq!(
            intent(&partly, "s", "c", &[fields("A"), fields("C")]),
            Some(ids("s", "c", &[("A", "1")], &["C"]))
        );
        // Already pending: no second write.
        let pending = ids("s", "c", &[], &["A"]);
        assert_eq!(intent(&pending, "s", "c", &[fields("A")]), None);
        // Moved: a fresh record for the new place.
        assert_eq!(
            intent(&recorded, "s2", "c", &[fields("A")]),
            Some(ids("s2", "c", &[], &["A"]))
        );
        assert!(moved(&recorded, "s", "other"));
    }

    #[test]
    fn the_recorded_copy_is_kept_else_the_oldest() {
        let b = |id: &str| VehicleBooking {
            id: id.into(),
            reference: "r".into(),
            license_plate: "A".into(),
            valid_from: Utc::now(),
            valid_until: Utc::now(),
            time_restriction_id: "tr".into(),
        };
        let copies = [b("1"), b("2")];
        assert_eq!(keeper(&copies, None, Some("2")), Some("2"));
        assert_eq!(keeper(&copies, None, Some("gone")), Some("1"));
        assert_eq!(keeper(&copies, None, None), Some("1"));
        assert_eq!(keeper(&[], None, None), None);
        assert_eq!(mask_plate("AB12CD"), "AB****");
    }

    /// Issue 20 leftover: the reconciler keeps the exact copy of a duplicated reference and
    /// asks for the others to go; the worker must keep that same copy, not the recorded one
    /// with the wrong window (else the removal deletes the right booking and keeps the wrong).
    #[test]
    fn an_exact_copy_is_kept_over_the_recorded_one() {
        let want = fields("A");
        let exact = VehicleBooking {
            id: "exact".into(),
            reference: want.reference.clone(),
            license_plate: "A".into(),
            valid_from: want.valid_from,
            valid_until: want.valid_until,
            time_restriction_id: "other-tr".into(),
        };
        let wrong = VehicleBooking {
            id: "recorded".into(),
            valid_until: want.valid_until + chrono::Duration::days(3),
            ..exact.clone()
        };
        let copies = [wrong.clone(), exact.clone()];
        // The time restriction is only compared when the operator re-applies it.
        assert_eq!(
            keeper(&copies, Some((&want, false)), Some("recorded")),
            Some("exact")
        );
        assert_eq!(
            keeper(&copies, Some((&want, true)), Some("recorded")),
            Some("recorded"),
            "no exact copy: the recorded one"
        );
        let two_exact = [
            wrong,
            exact.clone(),
            VehicleBooking {
                id: "later".into(),
                ..exact
            },
        ];
        assert_eq!(
            keeper(&two_exact, Some((&want, false)), None),
            Some("exact"),
            "the first exact one listed, as the reconciler keeps"
        );
    }
}
