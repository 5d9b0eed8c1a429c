//! iPassan simulator. Auth, bases, sites and persons follow public integrator code; the asset
//! (facility) booking wire format is ours (see `shared/VENDORS.md`).
//!
//! Rules enforced: `scope=all` tokens; a site outside the client's bases (or unknown) → 403
//! "Access Denied"; persons are created form-encoded and listed with `limit`/`offset` cursor
//! pages; asset bookings must start and end on the asset's slot boundaries, last at most the
//! maximum booking time, not overlap another booking when the asset allows one booking per
//! slot, and the person must hold the asset's door/zone and floor access profiles — every
//! violation answers 422 with a message (the profile one names the missing profile).

mod api;

use std::collections::HashMap;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::SimError;
use crate::cloudpass::paged::Grouped;
use crate::state::{SimState, lock};

pub(crate) use api::router;

/// An API client (client-credentials grant, `scope=all`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IpassanClient {
    /// Client id.
    pub client_id: String,
    /// Client secret.
    pub client_secret: String,
    /// Bases (and so their sites) the client may access.
    #[serde(default)]
    pub base_uuids: Vec<String>,
}

/// A base (tenant installation).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Base {
    /// GUID.
    pub uuid: String,
    /// Technical name.
    pub name: String,
    /// Display name.
    pub displayname: String,
}

/// A site of a base (a building).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Site {
    /// GUID.
    pub uuid: String,
    /// The base it belongs to.
    pub base_uuid: String,
    /// Name.
    pub name: String,
}

/// Kind of access profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProfileKind {
    /// Door / zone profile.
    Door,
    /// Floor (elevator) profile.
    Floor,
}

/// An access profile defined at a site.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccessProfile {
    /// GUID.
    pub uuid: String,
    /// The site.
    pub site_uuid: String,
    /// Name (appears in 422 messages).
    pub name: String,
    /// Door/zone or floor.
    pub kind: ProfileKind,
}

/// A person (resident, employee or visitor) with their access profiles.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Person {
    /// GUID.
    pub uuid: String,
    /// The site.
    pub site_uuid: String,
    /// Last name.
    pub lastname: String,
    /// First name.
    #[serde(default)]
    pub firstname: String,
    /// Phone.
    #[serde(default)]
    pub phone: String,
    /// E-mail.
    #[serde(default)]
    pub mail: String,
    /// Badge / person number.
    #[serde(default)]
    pub number: String,
    /// 1 resident, 2 employee, 3 visitor.
    #[serde(rename = "type", default = "resident")]
    pub person_type: u8,
    /// Door/zone profiles held permanently.
    #[serde(default)]
    pub door_permanent: Vec<String>,
    /// Door/zone profiles held temporarily.
    #[serde(default)]
    pub door_temporary: Vec<String>,
    /// Floor profiles held permanently.
    #[serde(default)]
    pub floor_permanent: Vec<String>,
    /// Floor profiles held temporarily.
    #[serde(default)]
    pub floor_temporary: Vec<String>,
}

fn resident() -> u8 {
    1
}

/// A bookable asset (connecX "facility").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Asset {
    /// GUID.
    pub uuid: String,
    /// The site.
    pub site_uuid: String,
    /// Name.
    pub name: String,
    /// `week` or `planning`.
    #[serde(default = "week")]
    pub display: String,
    /// Door/zone profile a booker must hold, if any.
    #[serde(default)]
    pub door_profile_uuid: Option<String>,
    /// Floor profile a booker must hold, if any.
    #[serde(default)]
    pub floor_profile_uuid: Option<String>,
    /// Slot length; bookings start and end on multiples of it (minutes since midnight UTC).
    #[serde(default = "fifteen")]
    pub time_slot_minutes: u32,
    /// Longest allowed booking.
    pub max_booking_minutes: u32,
    /// When true, bookings of this asset may not overlap.
    #[serde(default)]
    pub one_booking_per_slot: bool,
}

fn week() -> String {
    "week".to_owned()
}

fn fifteen() -> u32 {
    15
}

/// A booking of an asset by a person.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AssetBooking {
    /// GUID.
    pub uuid: String,
    /// The asset.
    pub asset_uuid: String,
    /// The site.
    pub site_uuid: String,
    /// The booker.
    pub person_uuid: String,
    /// Start (slot boundary).
    pub start: DateTime<Utc>,
    /// End (slot boundary).
    pub end: DateTime<Utc>,
    /// Our reference (not enforced unique: look it up before creating).
    pub reference: Option<String>,
    /// Title.
    pub title: Option<String>,
    /// Creation time (simulated clock).
    pub created_at: DateTime<Utc>,
}

/// Asset bookings indexed like a real API pages them: per asset in creation order
/// (O(log N + limit) per cursor page), by id and by reference. Before this every page built
/// the JSON of every booking of the asset: O(N²) to list N.
#[derive(Debug, Default)]
pub struct AssetBookings {
    items: Grouped<AssetBooking>,
    /// asset → reference → sequence numbers (references are not unique at iPassan).
    by_ref: HashMap<String, HashMap<String, Vec<u64>>>,
}

impl AssetBookings {
    /// Bookings of all assets.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.items.len() == 0
    }

    /// Appends a booking (the API validates before).
    pub fn insert(&mut self, b: AssetBooking) {
        let (asset, id, reference) = (b.asset_uuid.clone(), b.uuid.clone(), b.reference.clone());
        let seq = self.items.insert(&asset, &id, b);
        if let Some(r) = reference {
            let refs = self.by_ref.entry(asset).or_default();
            refs.entry(r).or_default().push(seq);
        }
    }

    /// The booking with this id of this asset.
    pub fn get(&self, asset: &str, id: &str) -> Option<&AssetBooking> {
        self.items.get(asset, id)
    }

    /// Removes the booking with this id of this asset.
    pub fn remove(&mut self, asset: &str, id: &str) -> Option<AssetBooking> {
        let (seq, b) = self.items.remove(asset, id)?;
        if let Some(r) = &b.reference
            && let Some(refs) = self.by_ref.get_mut(asset)
            && let Some(v) = refs.get_mut(r)
        {
            v.retain(|s| *s != seq);
            if v.is_empty() {
                refs.remove(r);
            }
        }
        Some(b)
    }

    /// Every booking of an asset, in creation order.
    pub fn of_asset(&self, asset: &str) -> impl Iterator<Item = &AssetBooking> {
        self.items.of_group(asset)
    }

    /// Bookings of an asset with this reference, in creation order.
    pub fn with_reference(&self, asset: &str, reference: &str) -> Vec<&AssetBooking> {
        self.by_ref
            .get(asset)
            .and_then(|m| m.get(reference))
            .into_iter()
            .flatten()
            .filter_map(|s| self.items.get_seq(asset, *s))
            .collect()
    }

    /// Bookings of an asset.
    pub fn count(&self, asset: &str) -> usize {
        self.items.count(asset)
    }

    /// Bookings `offset..offset + limit` of an asset, in creation order: O(log N + limit).
    pub fn page(
        &self,
        asset: &str,
        offset: usize,
        limit: usize,
    ) -> impl Iterator<Item = &AssetBooking> {
        self.items.page(asset, offset, limit)
    }
}

impl Serialize for AssetBookings {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        ser.collect_seq(self.items.all())
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Token {
    pub(crate) client_id: String,
    pub(crate) expires_at: DateTime<Utc>,
}

/// Everything the iPassan simulator holds.
#[derive(Debug, Default, Serialize)]
pub struct IpassanState {
    /// API clients.
    pub clients: Vec<IpassanClient>,
    /// Bases.
    pub bases: Vec<Base>,
    /// Sites.
    pub sites: Vec<Site>,
    /// Access profiles.
    pub access_profiles: Vec<AccessProfile>,
    /// Persons.
    pub persons: Vec<Person>,
    /// Assets.
    pub assets: Vec<Asset>,
    /// Asset bookings (serialized as one list in creation order).
    pub asset_bookings: AssetBookings,
    #[serde(skip)]
    pub(crate) tokens: HashMap<String, Token>,
}

/// Fixture document for [`SimState::seed_ipassan`] / `POST /seed/ipassan` (upsert by id;
/// parents must exist or come earlier in the same document).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct IpassanFixture {
    /// Clients.
    #[serde(default)]
    pub clients: Vec<IpassanClient>,
    /// Bases.
    #[serde(default)]
    pub bases: Vec<Base>,
    /// Sites.
    #[serde(default)]
    pub sites: Vec<Site>,
    /// Access profiles.
    #[serde(default)]
    pub access_profiles: Vec<AccessProfile>,
    /// Persons.
    #[serde(default)]
    pub persons: Vec<Person>,
    /// Assets.
    #[serde(default)]
    pub assets: Vec<Asset>,
}

/// Demo client id.
pub const DEMO_CLIENT_ID: &str = "demo-ipassan-client";
/// Demo client secret.
pub const DEMO_CLIENT_SECRET: &str = "demo-ipassan-secret";
/// Demo base.
pub const DEMO_BASE: &str = "6b1f3c9e-0000-4000-8000-00000000ba5e";
/// Demo site "Residence De Pijp".
pub const DEMO_SITE: &str = "6b1f3c9e-0000-4000-8000-0000000051e1";
/// Demo door/zone profile "Rooftop zone".
pub const DEMO_PROFILE_DOOR: &str = "6b1f3c9e-0000-4000-8000-00000000d001";
/// Demo floor profile "Floor 7".
pub const DEMO_PROFILE_FLOOR: &str = "6b1f3c9e-0000-4000-8000-00000000f007";
/// Demo asset "Rooftop BBQ" (30-min slots, max 120 min, one booking per slot, needs both profiles).
pub const DEMO_ASSET_BBQ: &str = "6b1f3c9e-0000-4000-8000-0000000a55e1";
/// Demo person Jan de Vries (jan@example.com), holds both profiles.
pub const DEMO_PERSON_JAN: &str = "6b1f3c9e-0000-4000-8000-00000000a001";
/// Demo person Eva Visser (eva@example.com), holds only the door profile.
pub const DEMO_PERSON_EVA: &str = "6b1f3c9e-0000-4000-8000-00000000a002";

impl SimState {
    /// Adds or replaces iPassan clients, bases, sites, profiles, persons and assets.
    pub fn seed_ipassan(&self, f: IpassanFixture) -> Result<(), SimError> {
        let mut s = lock(&self.inner.ipassan);
        let bad = |m: String| Err(SimError::InvalidFixture(m));
        for c in f.clients {
            s.clients.retain(|x| x.client_id != c.client_id);
            s.clients.push(c);
        }
        for b in f.bases {
            s.bases.retain(|x| x.uuid != b.uuid);
            s.bases.push(b);
        }
        for site in f.sites {
            if !s.bases.iter().any(|b| b.uuid == site.base_uuid) {
                return bad(format!(
                    "site {} names unknown base {}",
                    site.uuid, site.base_uuid
                ));
            }
            s.sites.retain(|x| x.uuid != site.uuid);
            s.sites.push(site);
        }
        for p in f.access_profiles {
            if !s.sites.iter().any(|x| x.uuid == p.site_uuid) {
                return bad(format!(
                    "profile {} names unknown site {}",
                    p.uuid, p.site_uuid
                ));
            }
            s.access_profiles.retain(|x| x.uuid != p.uuid);
            s.access_profiles.push(p);
        }
        for p in f.persons {
            if !s.sites.iter().any(|x| x.uuid == p.site_uuid) {
                return bad(format!(
                    "person {} names unknown site {}",
                    p.uuid, p.site_uuid
                ));
            }
            s.persons.retain(|x| x.uuid != p.uuid);
            s.persons.push(p);
        }
        for a in f.assets {
            if !s.sites.iter().any(|x| x.uuid == a.site_uuid) {
                return bad(format!(
                    "asset {} names unknown site {}",
                    a.uuid, a.site_uuid
                ));
            }
            if a.time_slot_minutes == 0 || a.max_booking_minutes == 0 {
                return bad(format!(
                    "asset {}: slot and max booking time must be positive",
                    a.uuid
                ));
            }
            s.assets.retain(|x| x.uuid != a.uuid);
            s.assets.push(a);
        }
        Ok(())
    }

    /// All asset bookings (every site), in creation order.
    pub fn ipassan_bookings(&self) -> Vec<AssetBooking> {
        lock(&self.inner.ipassan)
            .asset_bookings
            .items
            .all()
            .into_iter()
            .cloned()
            .collect()
    }

    /// All persons (every site).
    pub fn ipassan_persons(&self) -> Vec<Person> {
        lock(&self.inner.ipassan).persons.clone()
    }

    pub(crate) fn seed_ipassan_demo(&self) {
        let person = |uuid: &str, first: &str, last: &str, mail: &str, floor: bool| Person {
            uuid: uuid.to_owned(),
            site_uuid: DEMO_SITE.to_owned(),
            lastname: last.to_owned(),
            firstname: first.to_owned(),
            phone: "+31600000000".to_owned(),
            mail: mail.to_owned(),
            number: String::new(),
            person_type: 1,
            door_permanent: vec![DEMO_PROFILE_DOOR.to_owned()],
            door_temporary: vec![],
            floor_permanent: if floor {
                vec![DEMO_PROFILE_FLOOR.to_owned()]
            } else {
                vec![]
            },
            floor_temporary: vec![],
        };
        let _ = self.seed_ipassan(IpassanFixture {
            clients: vec![IpassanClient {
                client_id: DEMO_CLIENT_ID.into(),
                client_secret: DEMO_CLIENT_SECRET.into(),
                base_uuids: vec![DEMO_BASE.into()],
            }],
            bases: vec![Base {
                uuid: DEMO_BASE.into(),
                name: "demo-base".into(),
                displayname: "Demo Housing".into(),
            }],
            sites: vec![Site {
                uuid: DEMO_SITE.into(),
                base_uuid: DEMO_BASE.into(),
                name: "Residence De Pijp".into(),
            }],
            access_profiles: vec![
                AccessProfile {
                    uuid: DEMO_PROFILE_DOOR.into(),
                    site_uuid: DEMO_SITE.into(),
                    name: "Rooftop zone".into(),
                    kind: ProfileKind::Door,
                },
                AccessProfile {
                    uuid: DEMO_PROFILE_FLOOR.into(),
                    site_uuid: DEMO_SITE.into(),
                    name: "Floor 7".into(),
                    kind: ProfileKind::Floor,
                },
            ],
            persons: vec![
                person(DEMO_PERSON_JAN, "Jan", "de Vries", "jan@example.com", true),
                person(DEMO_PERSON_EVA, "Eva", "Visser", "eva@example.com", false),
            ],
            assets: vec![Asset {
                uuid: DEMO_ASSET_BBQ.into(),
                site_uuid: DEMO_SITE.into(),
                name: "Rooftop BBQ".into(),
                display: "week".into(),
                door_profile_uuid: Some(DEMO_PROFILE_DOOR.into()),
                floor_profile_uuid: Some(DEMO_PROFILE_FLOOR.into()),
                time_slot_minutes: 30,
                max_booking_minutes: 120,
                one_booking_per_slot: true,
            }],
        });
    }
}

/// iPassan error: auth errors as `{error, error_description}`, others as `{Error:{message}}`.
pub(crate) fn error(status: StatusCode, message: &str) -> Response {
    let body = match status.as_u16() {
        401 => serde_json::json!({"error": "invalid_token", "error_description": message}),
        403 => serde_json::json!({"error": "access_denied", "error_description": message}),
        _ => serde_json::json!({"Error": {"code": status.as_u16(), "message": message}}),
    };
    (status, axum::Json(body)).into_response()
}
