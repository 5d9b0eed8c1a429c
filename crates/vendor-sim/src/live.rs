//! What each vendor holds *live* right now, in one canonical form.
//!
//! A convergence check compares the access that exists at the vendor with the access the
//! bookings want. Counting successful create calls cannot do that (a duplicate may have been
//! created by an answer that was lost, or absorbed by the vendor), so this module lists the
//! live objects themselves: one [`LiveObject`] per thing that opens a door or a barrier.
//!
//! | vendor | kind | `reference` | `scope` | `place` | `holder` | window |
//! | --- | --- | --- | --- | --- | --- | --- |
//! | CloudPass | `vehicle_booking` | `reference` | site id | site id | normalised plate | `valid_from`..`valid_until` |
//! | iPassan | `asset_booking` | `reference` (if sent) | site GUID | asset GUID | person GUID | `start`..`end` |
//! | dormakaba | `reservation` (not checked out) | `ReservationID` | `saflok:SITE` / `ambiance:SITE` | main room | guest name | `CheckIn`..`CheckOut` |
//! | dormakaba | `mobile_key` (not cancelled) | `ReservationID` | as above | room | phone as sent | — |
//! | Tapkey | `grant` (active) | — (grants carry no free text) | owner account | bound lock id | contact identifier (e-mail, lowercase) | `validFrom`..`validBefore` |
//!
//! Other fields that matter are in [`LiveObject::attributes`] (sorted, text values), e.g.
//! CloudPass `time_restriction_id`, dormakaba `variable_rooms`, `common_areas` and
//! `cards_encoded`, Tapkey `time_restriction_ical`, a mobile key's `delivered`.
//!
//! [`SimState::live_objects`] lists them sorted; [`SimState::live_duplicates`] groups the
//! ones that are the same access twice (see [`LiveObject::duplicate_key`]). The control API
//! serves both: `GET /live/{vendor}` and `GET /live/{vendor}/duplicates`.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::dormakaba::{LockSystem, Product};
use crate::state::{SimState, Vendor, lock};

/// What kind of live object it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LiveKind {
    /// A CloudPass vehicle booking.
    VehicleBooking,
    /// An iPassan asset booking.
    AssetBooking,
    /// A dormakaba reservation that is not checked out (its cards open its rooms).
    Reservation,
    /// A dormakaba mobile key that is not cancelled.
    MobileKey,
    /// An active Tapkey grant.
    Grant,
}

/// One live object at a vendor, in the canonical form described in the module docs.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct LiveObject {
    /// The vendor holding it.
    pub vendor: Vendor,
    /// What it is.
    pub kind: LiveKind,
    /// Our reference / booking key as the vendor stores it (`None` where the object has
    /// none: Tapkey grants, iPassan bookings created without one).
    pub reference: Option<String>,
    /// The account or site it lives in.
    pub scope: String,
    /// What it opens: site, asset, room or lock.
    pub place: String,
    /// Who or what it is for: plate, person, guest name, phone or e-mail.
    pub holder: String,
    /// Start of access, where the vendor has one.
    pub valid_from: Option<DateTime<Utc>>,
    /// End of access (exclusive), where the vendor has one.
    pub valid_until: Option<DateTime<Utc>>,
    /// The vendor's id of the object (not part of any comparison of access).
    pub id: String,
    /// Further fields that matter for the access, as text.
    pub attributes: BTreeMap<String, String>,
}

impl LiveObject {
    /// The identity two copies of the same access share: kind, scope, place and reference,
    /// or holder for objects without a reference (Tapkey grants, unreferenced iPassan
    /// bookings). Two live objects with one key are a duplicate, whatever their windows.
    pub fn duplicate_key(&self) -> (LiveKind, String, String, String) {
        let who = match (&self.reference, self.kind) {
            (Some(r), LiveKind::MobileKey) => format!("{r}/{}", self.holder),
            (Some(r), _) => r.clone(),
            (None, _) => self.holder.clone(),
        };
        (self.kind, self.scope.clone(), self.place.clone(), who)
    }
}

fn attrs<const N: usize>(pairs: [(&str, String); N]) -> BTreeMap<String, String> {
    pairs
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
}

impl SimState {
    /// Every live object of `vendor`, sorted (see the [`crate::live`] module docs).
    pub fn live_objects(&self, vendor: Vendor) -> Vec<LiveObject> {
        let mut out = match vendor {
            Vendor::CloudPass => self.live_cloudpass(),
            Vendor::IPassan => self.live_ipassan(),
            Vendor::Dormakaba => self.live_dormakaba(),
            Vendor::Tapkey => self.live_tapkey(),
        };
        out.sort();
        out
    }

    /// Groups of live objects of `vendor` that share a [`LiveObject::duplicate_key`]
    /// (each group has two or more); empty when nothing is duplicated.
    pub fn live_duplicates(&self, vendor: Vendor) -> Vec<Vec<LiveObject>> {
        let mut groups: BTreeMap<_, Vec<LiveObject>> = BTreeMap::new();
        for o in self.live_objects(vendor) {
            groups.entry(o.duplicate_key()).or_default().push(o);
        }
        groups.into_values().filter(|g| g.len() > 1).collect()
    }

    fn live_cloudpass(&self) -> Vec<LiveObject> {
        let s = lock(&self.inner.cloudpass);
        s.vehicle_bookings
            .all()
            .into_iter()
            .map(|b| LiveObject {
                vendor: Vendor::CloudPass,
                kind: LiveKind::VehicleBooking,
                reference: Some(b.reference.clone()),
                scope: b.site_id.clone(),
                place: b.site_id.clone(),
                holder: b.license_plate.clone(),
                valid_from: Some(b.valid_from),
                valid_until: Some(b.valid_until),
                id: b.id.clone(),
                attributes: attrs([
                    ("time_restriction_id", b.time_restriction_id.clone()),
                    ("name", b.name.clone().unwrap_or_default()),
                ]),
            })
            .collect()
    }

    fn live_ipassan(&self) -> Vec<LiveObject> {
        self.ipassan_bookings()
            .into_iter()
            .map(|b| LiveObject {
                vendor: Vendor::IPassan,
                kind: LiveKind::AssetBooking,
                reference: b.reference.clone(),
                scope: b.site_uuid.clone(),
                place: b.asset_uuid.clone(),
                holder: b.person_uuid.clone(),
                valid_from: Some(b.start),
                valid_until: Some(b.end),
                id: b.uuid.clone(),
                attributes: attrs([("title", b.title.clone().unwrap_or_default())]),
            })
            .collect()
    }

    fn live_dormakaba(&self) -> Vec<LiveObject> {
        let st = lock(&self.inner.dormakaba);
        let mut out = Vec::new();
        for (product, sys) in [
            (Product::Saflok, &st.saflok),
            (Product::Ambiance, &st.ambiance),
        ] {
            live_lock_system(product, sys, &mut out);
        }
        out
    }

    fn live_tapkey(&self) -> Vec<LiveObject> {
        let s = lock(&self.inner.tapkey);
        s.grants
            .iter()
            .filter(|g| g.active)
            .map(|g| LiveObject {
                vendor: Vendor::Tapkey,
                kind: LiveKind::Grant,
                reference: None,
                scope: g.owner_account_id.clone(),
                place: g.bound_lock_id.clone(),
                holder: s
                    .contact_by_id(&g.owner_account_id, &g.contact_id)
                    .map(|c| c.identifier.to_ascii_lowercase())
                    .unwrap_or_else(|| format!("contact:{}", g.contact_id)),
                valid_from: Some(g.valid_from),
                valid_until: g.valid_before,
                id: g.id.clone(),
                attributes: attrs([
                    ("contact_id", g.contact_id.clone()),
                    (
                        "time_restriction_ical",
                        g.time_restriction_ical.clone().unwrap_or_default(),
                    ),
                ]),
            })
            .collect()
    }
}

fn live_lock_system(product: Product, sys: &LockSystem, out: &mut Vec<LiveObject>) {
    let product_name = match product {
        Product::Saflok => "saflok",
        Product::Ambiance => "ambiance",
    };
    let scope = format!("{product_name}:{}", sys.site_name);
    for b in sys.bookings.iter().filter(|b| !b.checked_out) {
        let cards: u32 = sys
            .keys
            .iter()
            .filter(|k| k.reservation_id == b.reservation_id)
            .map(|k| k.key_count)
            .sum();
        let areas: Vec<String> = b
            .common_areas
            .iter()
            .map(|a| format!("{}:{}", a.pass_level_no, a.mode))
            .collect();
        out.push(LiveObject {
            vendor: Vendor::Dormakaba,
            kind: LiveKind::Reservation,
            reference: Some(b.reservation_id.clone()),
            scope: scope.clone(),
            place: b.main_room.clone(),
            holder: b.guest_name.clone(),
            valid_from: Some(b.check_in),
            valid_until: Some(b.check_out),
            id: b.transaction_no.clone(),
            attributes: attrs([
                ("variable_rooms", b.variable_rooms.join(",")),
                ("common_areas", areas.join(",")),
                ("cards_encoded", cards.to_string()),
                ("shared_guests", b.shared_guests.join(";")),
            ]),
        });
    }
    for (i, m) in sys.mobile_keys.iter().enumerate() {
        if m.cancelled {
            continue;
        }
        out.push(LiveObject {
            vendor: Vendor::Dormakaba,
            kind: LiveKind::MobileKey,
            reference: Some(m.reservation_id.clone()),
            scope: scope.clone(),
            place: m.room.clone(),
            holder: m.phone.clone(),
            valid_from: None,
            valid_until: None,
            id: format!("mobile-key-{i}"),
            attributes: attrs([
                ("surname", m.surname.clone()),
                ("delivered", m.delivered.to_string()),
            ]),
        });
    }
}
