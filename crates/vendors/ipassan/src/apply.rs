//! Makes iPassan match one facility booking's desired state.
//!
//! Idempotent by construction (ARCHITECTURE.md principle 3): every asset booking carries our
//! reference and is looked up by it before anything is created, so a retry after a crash
//! between the vendor call and the ack finds the booking instead of creating a second one.
//!
//! Where it looks costs a list call per asset, so it looks only where a booking of ours can
//! be (issue 25): before a create the asset is recorded durably (`VendorIds::creating`), so
//! the record always names every asset an attempt may have left a booking on; a booking's
//! first attempt (the runtime's attempt marker) looks nowhere. Only a record of an older build
//! makes it search every mapped asset ([`desired::Trace`]).

use accesshub_connections::IpassanSettings;
use accesshub_domain::{Classify, ErrorClass, FacilityBooking, FacilityStatus, Resident};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use worker_runtime::{HandlerError, Status};

use crate::client::{
    Asset, IpassanClient, IpassanError, NewBooking, NewPerson, PERSON_TYPE_RESIDENT, Person,
};
use crate::desired::{self, Desired, Ours, RuleError, Trace};

/// What we hold at iPassan for one booking; stored in the binding so the next event knows
/// where the previous booking lives (the facility, and so the asset, may change).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct VendorIds {
    /// Asset GUID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asset_uuid: Option<String>,
    /// Asset booking GUID (absent once cancelled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub booking_uuid: Option<String>,
    /// Person GUID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub person_uuid: Option<String>,
    /// Booked start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<DateTime<Utc>>,
    /// Booked end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<DateTime<Utc>>,
    /// Asset of a create that may be under way: recorded durably right before the create and
    /// cleared by the record after it, so an attempt killed in between leaves a trace naming
    /// the asset (the facility may change before the next event).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creating: Option<String>,
    /// Every booking of ours is on `asset_uuid` or `creating`: written by builds that record a
    /// create's asset before sending it. Records of older builds lack it, and their next event
    /// searches every mapped asset once. Older builds ignore both fields (no `IDS_VERSION`
    /// bump: a rollback still reads the ids).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tracked: bool,
}

impl VendorIds {
    /// Where bookings of ours can be, given the binding's record (`previous`) and whether this
    /// is the booking's first attempt ([`worker_runtime::ApplyContext::first_attempt`]).
    pub fn trace(previous: Option<&VendorIds>, first_attempt: bool) -> Trace<'_> {
        match previous {
            None if first_attempt => Trace::Nowhere,
            Some(p) if p.tracked => Trace::Recorded {
                asset: p.asset_uuid.as_deref(),
                creating: p.creating.as_deref(),
            },
            p => Trace::Anywhere {
                asset: p.and_then(|p| p.asset_uuid.as_deref()),
            },
        }
    }

    /// Whether the record names `asset` (recorded, or a create under way on it).
    fn names(&self, asset: &str) -> bool {
        [&self.asset_uuid, &self.creating]
            .into_iter()
            .flatten()
            .any(|a| a.eq_ignore_ascii_case(asset))
    }

    /// The record to write durably before creating on `asset`, when the binding's record
    /// (`previous`) does not already name it: the record plus the asset of the create. It
    /// stays tracked only if it names every booking of ours found (`ours`): a copy elsewhere
    /// (left by an older build, or by an earlier create this record no longer names) makes the
    /// next attempt search every mapped asset.
    pub fn before_create(
        previous: Option<&VendorIds>,
        ours: &[Ours],
        asset: &str,
    ) -> Option<VendorIds> {
        let mut ids = previous.cloned().unwrap_or_default();
        let complete = |ids: &VendorIds| ours.iter().all(|o| ids.names(&o.asset));
        if ids.tracked && ids.names(asset) && complete(&ids) {
            return None;
        }
        ids.creating = Some(asset.to_owned());
        ids.tracked = complete(&ids);
        Some(ids)
    }
}

/// Result of applying an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// `Booked` or `Cancelled`.
    pub status: Status,
    /// What we now hold.
    pub ids: VendorIds,
    /// Whether a new asset booking was created (false: an existing one matched).
    pub created: bool,
    /// How many of our bookings were deleted.
    pub deleted: usize,
}

/// Applying failed.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// A rule or mapping problem (permanent).
    #[error(transparent)]
    Rule(#[from] RuleError),
    /// An iPassan call failed (classified by the client).
    #[error(transparent)]
    Ipassan(#[from] IpassanError),
    /// The record of a create about to start could not be written (nothing was created).
    #[error("recording the create about to start: {}", .0.message)]
    Record(HandlerError),
    /// A create was refused for a slot that a booking of ours holds although the listing
    /// right before it found none on the asset: an earlier attempt's call (a killed worker's
    /// request still on its way, a response lost in a timeout) landed in between. Transient:
    /// the next attempt lists it and keeps or replaces it.
    #[error(
        "asset {asset} refused the create for a slot held by booking {booking} of ours, made by an earlier attempt after this one listed the asset; looked at again"
    )]
    OursAppeared {
        /// Asset GUID.
        asset: String,
        /// The booking of ours found there.
        booking: String,
    },
}

impl Classify for ApplyError {
    fn class(&self) -> ErrorClass {
        match self {
            ApplyError::Rule(e) => e.class(),
            ApplyError::Ipassan(e) => e.class(),
            ApplyError::Record(e) => e.class(),
            ApplyError::OursAppeared { .. } => ErrorClass::Transient,
        }
    }
    fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            ApplyError::Rule(_) => None,
            ApplyError::Ipassan(e) => e.retry_after(),
            ApplyError::Record(e) => e.retry_after,
            ApplyError::OursAppeared { .. } => None,
        }
    }
}

/// Identifies the booking being applied (for the mapping error and our reference).
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// Tenant.
    pub tenant: &'a str,
    /// Connection name.
    pub connection: &'a str,
    /// Our reference `ah:<tenant>:facility:<key>`.
    pub reference: &'a str,
}

/// What the binding recorded and whether this is the booking's first attempt: where bookings
/// of ours can be ([`VendorIds::trace`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct Known<'a> {
    /// What the binding recorded last time (progress included).
    pub previous: Option<&'a VendorIds>,
    /// No attempt of any event of the booking can have reached iPassan before this one
    /// ([`worker_runtime::ApplyContext::first_attempt`]).
    pub first_attempt: bool,
}

/// Applies `booking` through `client`. `record` writes a record durably without marking the
/// event applied ([`worker_runtime::ApplyContext::record_progress`]); it is called before a
/// create whose asset the binding's record does not name yet.
pub async fn apply<R, F>(
    client: &IpassanClient,
    settings: &IpassanSettings,
    target: Target<'_>,
    booking: &FacilityBooking,
    known: Known<'_>,
    record: R,
) -> Result<Applied, ApplyError>
where
    R: Fn(VendorIds) -> F,
    F: std::future::Future<Output = Result<(), HandlerError>>,
{
    match booking.status {
        FacilityStatus::Booked => book(client, settings, target, booking, known, record).await,
        FacilityStatus::Cancelled => cancel(client, settings, target, booking, known).await,
    }
}

/// Our bookings (by reference) on `asset`; an asset that no longer exists holds none.
async fn ours_on(
    client: &IpassanClient,
    asset: &str,
    reference: &str,
) -> Result<Vec<Ours>, IpassanError> {
    match client.list_bookings(asset, Some(reference)).await {
        Ok(list) => Ok(list
            .into_iter()
            .map(|b| Ours {
                asset: asset.to_owned(),
                booking: b,
            })
            .collect()),
        Err(e) if e.status() == Some(404) => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// Our bookings on every asset they may be on ([`desired::assets_to_search`]): the desired
/// one and those the record names, or every mapped asset when the record cannot tell.
async fn all_ours(
    client: &IpassanClient,
    settings: &IpassanSettings,
    asset: Option<&str>,
    known: Known<'_>,
    reference: &str,
) -> Result<Vec<Ours>, IpassanError> {
    let trace = VendorIds::trace(known.previous, known.first_attempt);
    let mut out = Vec::new();
    for a in desired::assets_to_search(settings, asset, trace) {
        out.extend(ours_on(client, a, reference).await?);
    }
    Ok(out)
}

/// Deletes one of our bookings; already gone counts as deleted.
async fn delete(client: &IpassanClient, o: &Ours) -> Result<(), IpassanError> {
    let existed = client.delete_booking(&o.asset, &o.booking.uuid).await?;
    tracing::info!(
        asset = %o.asset,
        booking = %o.booking.uuid,
        existed,
        "ipassan asset booking deleted"
    );
    Ok(())
}

/// Finds the resident's person at the site by e-mail, or creates them as a resident.
async fn person_for(client: &IpassanClient, r: &Resident) -> Result<Person, ApplyError> {
    let mail = r.email.trim();
    if mail.is_empty() || !mail.contains('@') {
        return Err(RuleError::BadResident {
            resident: r.id.clone(),
            reason: format!(
                "e-mail {:?} is not an address; iPassan persons are matched by e-mail",
                accesshub_domain::pii::mask_text(&r.email)
            ),
        }
        .into());
    }
    if let Some(p) = client.find_person_by_mail(mail).await? {
        return Ok(p);
    }
    // iPassan requires a last name; a resident without one is still bookable under their
    // e-mail rather than dead-lettered.
    let lastname = if r.last_name.trim().is_empty() {
        mail.to_owned()
    } else {
        r.last_name.trim().to_owned()
    };
    let p = client
        .create_person(&NewPerson {
            lastname,
            firstname: r.first_name.trim().to_owned(),
            mail: mail.to_owned(),
            number: r.id.clone(),
            person_type: PERSON_TYPE_RESIDENT,
        })
        .await?;
    tracing::info!(person = %p.uuid, "ipassan person created for resident");
    Ok(p)
}

/// The mapped asset with its rules, or a permanent error naming the mapping.
async fn asset_of(
    client: &IpassanClient,
    facility: &str,
    asset: &str,
) -> Result<Asset, ApplyError> {
    client.find_asset(asset).await?.ok_or_else(|| {
        RuleError::AssetNotFound {
            facility: facility.to_owned(),
            asset: asset.to_owned(),
            site: client.site().to_owned(),
        }
        .into()
    })
}

fn title(r: &Resident) -> String {
    let name = format!("{} {}", r.first_name.trim(), r.last_name.trim());
    let name = name.trim();
    if name.is_empty() {
        r.email.trim().to_owned()
    } else {
        name.to_owned()
    }
}

async fn book<R, F>(
    client: &IpassanClient,
    settings: &IpassanSettings,
    target: Target<'_>,
    b: &FacilityBooking,
    known: Known<'_>,
    record: R,
) -> Result<Applied, ApplyError>
where
    R: Fn(VendorIds) -> F,
    F: std::future::Future<Output = Result<(), HandlerError>>,
{
    let asset_id = desired::asset_for(settings, target.tenant, target.connection, &b.facility_id)?;
    let asset = asset_of(client, &b.facility_id, asset_id).await?;
    // Rules first: a window iPassan would refuse must not cost the current booking.
    desired::check_window(&asset, b.start, b.end)?;
    let person = person_for(client, &b.resident).await?;
    let desired = Desired {
        asset: asset.uuid.clone(),
        person: person.uuid.clone(),
        start: b.start,
        end: b.end,
    };
    let ours = all_ours(client, settings, Some(&asset.uuid), known, target.reference).await?;
    let plan = desired::plan(&desired, &ours, asset.one_booking_per_slot);

    let mut booked = plan.keep.as_ref().map(|k| k.booking.clone());
    if plan.create {
        // Only a break-before-make needs the overlap checked first (a window iPassan would
        // refuse must not cost the current booking). A plain create is checked by iPassan
        // itself, whose refusal names the other booking: listing every booking of the asset
        // first cost a call per page of them on every create.
        if asset.one_booking_per_slot && !plan.delete_first.is_empty() {
            let all = client.list_bookings(&asset.uuid, None).await?;
            desired::check_overlap(&asset, &all, target.reference, b.start, b.end)?;
        }
        if let Some(ids) = VendorIds::before_create(known.previous, &ours, &asset.uuid) {
            record(ids).await.map_err(ApplyError::Record)?;
        }
        for o in &plan.delete_first {
            delete(client, o).await?;
        }
        let new = NewBooking {
            person_uuid: person.uuid.clone(),
            start: b.start,
            end: b.end,
            reference: target.reference.to_owned(),
            title: title(&b.resident),
        };
        match client.create_booking(&asset.uuid, &new).await {
            Ok(created) => {
                tracing::info!(
                    asset = %asset.uuid,
                    booking = %created.uuid,
                    start = %desired::ts(&b.start),
                    end = %desired::ts(&b.end),
                    "ipassan asset booking created"
                );
                booked = Some(created);
            }
            Err(e) => {
                restore(client, &plan.delete_first).await;
                let err = classify_create_error(e, &asset, b, &person);
                // The booking holding the slot may be ours (see `ApplyError::OursAppeared`).
                if let ApplyError::Rule(RuleError::Overlap { other, .. }) = &err
                    && ours_on(client, &asset.uuid, target.reference)
                        .await?
                        .iter()
                        .any(|o| o.booking.uuid.eq_ignore_ascii_case(other))
                {
                    return Err(ApplyError::OursAppeared {
                        asset: asset.uuid.clone(),
                        booking: other.clone(),
                    });
                }
                return Err(err);
            }
        }
    }
    for o in &plan.delete_after {
        delete(client, o).await?;
    }
    let deleted = plan.delete_first.len() + plan.delete_after.len();
    Ok(Applied {
        status: Status::Booked,
        ids: VendorIds {
            asset_uuid: Some(asset.uuid.clone()),
            booking_uuid: booked.map(|x| x.uuid),
            person_uuid: Some(person.uuid),
            start: Some(b.start),
            end: Some(b.end),
            // Every other booking of ours was deleted: this one is all there is.
            creating: None,
            tracked: true,
        },
        created: plan.create,
        deleted,
    })
}

/// Best effort after a failed break-before-make: puts back the bookings deleted to make room,
/// so a refused move leaves the resident with the access they had instead of none. The
/// reference is kept, so the next attempt finds and replaces them as usual.
async fn restore(client: &IpassanClient, deleted: &[Ours]) {
    for o in deleted {
        let back = NewBooking {
            person_uuid: o.booking.person_uuid.clone(),
            start: o.booking.start,
            end: o.booking.end,
            reference: o.booking.reference.clone().unwrap_or_default(),
            title: o.booking.title.clone().unwrap_or_default(),
        };
        match client.create_booking(&o.asset, &back).await {
            Ok(r) => tracing::warn!(
                asset = %o.asset,
                booking = %r.uuid,
                "move failed: previous asset booking restored"
            ),
            Err(e) => tracing::warn!(
                asset = %o.asset,
                error = %e,
                "move failed and the previous asset booking could not be restored"
            ),
        }
    }
}

/// iPassan's 422 naming a missing profile or an overlapping booking becomes the rule error
/// naming it; anything else keeps the client's classification and the vendor's message.
fn classify_create_error(
    e: IpassanError,
    asset: &Asset,
    b: &FacilityBooking,
    person: &Person,
) -> ApplyError {
    if e.status() == Some(422)
        && let Some(m) = e.vendor_message()
        && let Some(r) = desired::missing_profile(m, asset, b.resident.email.trim(), &person.uuid)
            .or_else(|| desired::refused_overlap(m, asset, b.start, b.end))
    {
        return r.into();
    }
    e.into()
}

async fn cancel(
    client: &IpassanClient,
    settings: &IpassanSettings,
    target: Target<'_>,
    b: &FacilityBooking,
    known: Known<'_>,
) -> Result<Applied, ApplyError> {
    let previous = known.previous;
    // A cancelled booking of an unmapped facility has nothing of ours on the mapped asset; the
    // binding still tells where a previous booking went. Nothing to remove is success.
    let asset = settings
        .facilities
        .get(&b.facility_id)
        .map(String::as_str)
        .filter(|a| !a.trim().is_empty());
    let ours = all_ours(client, settings, asset, known, target.reference).await?;
    for o in &ours {
        delete(client, o).await?;
    }
    Ok(Applied {
        status: Status::Cancelled,
        ids: VendorIds {
            asset_uuid: asset
                .map(str::to_owned)
                .or_else(|| previous.and_then(|p| p.asset_uuid.clone())),
            person_uuid: previous.and_then(|p| p.person_uuid.clone()),
            // Every booking of ours was found and deleted: none is left anywhere.
            tracked: true,
            ..VendorIds::default()
        },
        created: false,
        deleted: ours.len(),
    })
}

/// A stray's vendor id: `<asset GUID>/<booking GUID>` (an asset booking is addressed by both).
pub fn stray_id(asset: &str, booking: &str) -> String {
    format!("{asset}/{booking}")
}

/// What [`remove_stray`] did with the copy the command names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StrayOutcome {
    /// Deleted.
    Deleted,
    /// Already gone (success: nothing to remove).
    Gone,
    /// Not removed: the booking no longer carries the reference, or it is the copy the
    /// booking's current desired state keeps ([`desired::keeper`]). Deleting it would remove
    /// desired access.
    Kept,
}

/// What [`remove_stray`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removal {
    /// What became of the named copy.
    pub outcome: StrayOutcome,
    /// The booking's one remaining copy when its desired state wants one here (the binding
    /// must record it).
    pub kept: Option<Ours>,
    /// How many copies were deleted (the named one and duplicates of it).
    pub deleted: usize,
}

impl Removal {
    /// The record the binding should hold after the removal, when it differs from `current`:
    /// the kept copy, so the engine, the worker and the next event all name the same one.
    pub fn record(&self, current: Option<&VendorIds>) -> Option<VendorIds> {
        let k = self.kept.as_ref()?;
        let same = current.is_some_and(|c| {
            c.booking_uuid.as_deref() == Some(k.booking.uuid.as_str())
                && c.asset_uuid
                    .as_deref()
                    .is_some_and(|a| a.eq_ignore_ascii_case(&k.asset))
        });
        // Only the wanted asset's copies were reduced: a create recorded as under way is
        // carried over, and the record stays tracked only if its asset is unchanged (a
        // copy may remain on the asset it named before).
        (!same).then(|| VendorIds {
            asset_uuid: Some(k.asset.clone()),
            booking_uuid: Some(k.booking.uuid.clone()),
            person_uuid: Some(k.booking.person_uuid.clone()),
            start: Some(k.booking.start),
            end: Some(k.booking.end),
            creating: current.and_then(|c| c.creating.clone()),
            tracked: current.is_some_and(|c| {
                c.tracked
                    && c.asset_uuid
                        .as_deref()
                        .is_some_and(|a| a.eq_ignore_ascii_case(&k.asset))
            }),
        })
    }
}

/// Removes a booking the reconciler found carrying our reference although no booking wants
/// it, or wants it once and iPassan holds it more often. Re-checked here because the
/// reconciler's view may be stale by the time the command arrives: `wanted` is what the
/// booking's current desired state asks of this connection ([`desired::wanted`]), `current`
/// what the binding records.
///
/// When a copy is wanted, the booking's copies on the wanted asset are reduced to exactly one
/// ([`desired::keeper`]: exact window, else the recorded copy, else the oldest) whichever copy
/// the command names, as CloudPass does; the caller records the kept one. Otherwise the named
/// copy is deleted if it still carries `reference`.
pub async fn remove_stray(
    client: &IpassanClient,
    vendor_id: &str,
    reference: &str,
    wanted: Option<&desired::Wanted>,
    current: Option<&VendorIds>,
) -> Result<Removal, ApplyError> {
    let Some((asset, booking)) = vendor_id.split_once('/') else {
        return Err(RuleError::BadStrayId {
            vendor_id: vendor_id.to_owned(),
        }
        .into());
    };
    let recorded =
        current.and_then(|c| Some((c.asset_uuid.as_deref()?, c.booking_uuid.as_deref()?)));
    let (copies, kept) = match wanted {
        Some(w) => {
            let copies = ours_on(client, &w.asset, reference).await?;
            let kept = desired::keeper(&copies, w, recorded).cloned();
            (copies, kept)
        }
        None => (Vec::new(), None),
    };
    let is_kept = |a: &str, b: &str| {
        kept.as_ref()
            .is_some_and(|k| k.asset.eq_ignore_ascii_case(a) && k.booking.uuid == b)
    };
    let mut doomed: Vec<Ours> = copies
        .iter()
        .filter(|o| !is_kept(&o.asset, &o.booking.uuid))
        .cloned()
        .collect();
    let listed = copies
        .iter()
        .any(|o| o.asset.eq_ignore_ascii_case(asset) && o.booking.uuid == booking);
    let mut outcome = if is_kept(asset, booking) {
        tracing::info!(asset, booking, "named copy is the one kept");
        StrayOutcome::Kept
    } else if listed {
        StrayOutcome::Deleted
    } else {
        match client.get_booking(asset, booking).await? {
            None => StrayOutcome::Gone,
            Some(found) if found.reference.as_deref() != Some(reference) => {
                tracing::warn!(
                    asset,
                    booking,
                    "stray no longer carries our reference: kept"
                );
                StrayOutcome::Kept
            }
            Some(found) => {
                doomed.push(Ours {
                    asset: asset.to_owned(),
                    booking: found,
                });
                StrayOutcome::Deleted
            }
        }
    };
    let mut deleted = 0;
    for o in &doomed {
        let existed = client.delete_booking(&o.asset, &o.booking.uuid).await?;
        tracing::info!(asset = %o.asset, booking = %o.booking.uuid, existed, "ipassan duplicate or stray deleted");
        deleted += usize::from(existed);
        if !existed && o.asset.eq_ignore_ascii_case(asset) && o.booking.uuid == booking {
            outcome = StrayOutcome::Gone;
        }
    }
    Ok(Removal {
        outcome,
        kept,
        deleted,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::AssetBooking;

    fn ours_on_asset(asset: &str) -> Ours {
        Ours {
            asset: asset.to_owned(),
            booking: AssetBooking {
                uuid: format!("b-{asset}"),
                person_uuid: "p".into(),
                start: DateTime::<Utc>::MIN_UTC,
                end: DateTime::<Utc>::MAX_UTC,
                reference: Some("r".into()),
                title: None,
            },
        }
    }

    fn recorded(asset: Option<&str>, creating: Option<&str>, tracked: bool) -> VendorIds {
        VendorIds {
            asset_uuid: asset.map(str::to_owned),
            creating: creating.map(str::to_owned),
            tracked,
            ..VendorIds::default()
        }
    }

    #[test]
    fn where_ours_can_be() {
        assert_eq!(VendorIds::trace(None, true), Trace::Nowhere);
        assert_eq!(
            VendorIds::trace(None, false),
            Trace::Anywhere { asset: None },
            "no record after an earlier delivery: anywhere"
        );
        let old = recorded(Some("a"), None, false);
        assert_eq!(
            VendorIds::trace(Some(&old), false),
            Trace::Anywhere { asset: Some("a") },
            "an older build's record"
        );
        let new = recorded(Some("a"), Some("b"), true);
        assert_eq!(
            VendorIds::trace(Some(&new), false),
            Trace::Recorded {
                asset: Some("a"),
                creating: Some("b")
            }
        );
    }

    #[test]
    fn a_create_is_recorded_unless_the_record_already_names_its_asset() {
        // First create: recorded, tracked.
        let r = VendorIds::before_create(None, &[], "a").unwrap();
        assert_eq!((r.creating.as_deref(), r.tracked), (Some("a"), true));
        // Same asset as recorded: nothing to write.
        let same = recorded(Some("a"), None, true);
        assert_eq!(
            VendorIds::before_create(Some(&same), &[ours_on_asset("a")], "a"),
            None
        );
        // A move: the recorded asset stays, the new one is added.
        let r = VendorIds::before_create(Some(&same), &[ours_on_asset("a")], "b").unwrap();
        assert_eq!(
            (r.asset_uuid.as_deref(), r.creating.as_deref(), r.tracked),
            (Some("a"), Some("b"), true)
        );
        // A copy on an asset the record would not name (an older build's, or an earlier
        // create's): written untracked, so the next attempt searches every mapped asset.
        let r = VendorIds::before_create(
            Some(&recorded(Some("a"), Some("c"), true)),
            &[ours_on_asset("a"), ours_on_asset("c")],
            "b",
        )
        .unwrap();
        assert_eq!((r.creating.as_deref(), r.tracked), (Some("b"), false));
        // An older build's record: written tracked once the wide search found only named copies.
        let r = VendorIds::before_create(
            Some(&recorded(Some("a"), None, false)),
            &[ours_on_asset("a")],
            "a",
        )
        .unwrap();
        assert_eq!((r.creating.as_deref(), r.tracked), (Some("a"), true));
    }
}
