//! Makes iPassan match one facility booking's desired state.
//!
//! Idempotent by construction (ARCHITECTURE.md principle 3): every asset booking carries our
//! reference and is looked up by it before anything is created, so a retry after a crash
//! between the vendor call and the ack finds the booking instead of creating a second one.

use accesshub_connections::IpassanSettings;
use accesshub_domain::{Classify, ErrorClass, FacilityBooking, FacilityStatus, Resident};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use worker_runtime::Status;

use crate::client::{
    Asset, IpassanClient, IpassanError, NewBooking, NewPerson, PERSON_TYPE_RESIDENT, Person,
};
use crate::desired::{self, Desired, Ours, RuleError};

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
}

impl Classify for ApplyError {
    fn class(&self) -> ErrorClass {
        match self {
            ApplyError::Rule(e) => e.class(),
            ApplyError::Ipassan(e) => e.class(),
        }
    }
    fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            ApplyError::Rule(_) => None,
            ApplyError::Ipassan(e) => e.retry_after(),
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

/// Applies `booking` through `client`. `previous` is what the binding recorded last time.
pub async fn apply(
    client: &IpassanClient,
    settings: &IpassanSettings,
    target: Target<'_>,
    booking: &FacilityBooking,
    previous: Option<&VendorIds>,
) -> Result<Applied, ApplyError> {
    match booking.status {
        FacilityStatus::Booked => book(client, settings, target, booking, previous).await,
        FacilityStatus::Cancelled => cancel(client, settings, target, booking, previous).await,
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

/// Our bookings on every asset they may be on ([`desired::assets_to_search`]): the record
/// alone cannot tell, since an attempt killed between the create and the record leaves a
/// booking on an asset no record names.
async fn all_ours(
    client: &IpassanClient,
    settings: &IpassanSettings,
    asset: Option<&str>,
    previous: Option<&VendorIds>,
    reference: &str,
) -> Result<Vec<Ours>, IpassanError> {
    let recorded = previous.and_then(|p| p.asset_uuid.as_deref());
    let mut out = Vec::new();
    for a in desired::assets_to_search(settings, asset, recorded) {
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

async fn book(
    client: &IpassanClient,
    settings: &IpassanSettings,
    target: Target<'_>,
    b: &FacilityBooking,
    previous: Option<&VendorIds>,
) -> Result<Applied, ApplyError> {
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
    let ours = all_ours(
        client,
        settings,
        Some(&asset.uuid),
        previous,
        target.reference,
    )
    .await?;
    let plan = desired::plan(&desired, &ours, asset.one_booking_per_slot);

    let mut booked = plan.keep.as_ref().map(|k| k.booking.clone());
    if plan.create {
        if asset.one_booking_per_slot {
            let all = client.list_bookings(&asset.uuid, None).await?;
            desired::check_overlap(&asset, &all, target.reference, b.start, b.end)?;
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
                return Err(classify_create_error(e, &asset, &b.resident, &person));
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

/// iPassan's 422 naming a missing profile becomes a rule error naming the profile; anything
/// else keeps the client's classification and the vendor's message.
fn classify_create_error(
    e: IpassanError,
    asset: &Asset,
    resident: &Resident,
    person: &Person,
) -> ApplyError {
    if e.status() == Some(422)
        && let Some(r) = e
            .vendor_message()
            .and_then(|m| desired::missing_profile(m, asset, resident.email.trim(), &person.uuid))
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
    previous: Option<&VendorIds>,
) -> Result<Applied, ApplyError> {
    // A cancelled booking of an unmapped facility has nothing of ours on the mapped asset; the
    // binding still tells where a previous booking went. Nothing to remove is success.
    let asset = settings
        .facilities
        .get(&b.facility_id)
        .map(String::as_str)
        .filter(|a| !a.trim().is_empty());
    let ours = all_ours(client, settings, asset, previous, target.reference).await?;
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
        (!same).then(|| VendorIds {
            asset_uuid: Some(k.asset.clone()),
            booking_uuid: Some(k.booking.uuid.clone()),
            person_uuid: Some(k.booking.person_uuid.clone()),
            start: Some(k.booking.start),
            end: Some(k.booking.end),
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
