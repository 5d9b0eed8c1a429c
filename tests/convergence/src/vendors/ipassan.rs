//! iPassan: connecX-style facility bookings. A booked facility booking should leave one asset
//! booking on the asset its facility maps to, for the resident's person, over exactly its
//! window (on the asset's 30-minute slots, at most 120 minutes), carrying our reference;
//! nothing else. Two facilities: the demo "Rooftop BBQ" (one booking per slot) and a room
//! without that rule, where iPassan accepts a second booking of one window — so a create whose
//! answer was lost and a retry that missed it would leave a live duplicate. Bookings move
//! between them. Each booking keeps to its own day, so the "one booking per slot" rule never
//! refuses a valid history.

use std::{collections::BTreeMap, sync::Arc};

use accesshub_connections::{Connection, IpassanSettings, Secret, VendorSettings};
use accesshub_domain::{Event, EventBody, FacilityBooking, FacilityStatus, Resident};
use accesshub_inventory::Inventory;
use chrono::{DateTime, Duration, SecondsFormat, TimeZone as _, Utc};
use ipassan_adapter::{IpassanHandler, inventory::IpassanInventory};
use rand::{Rng as _, rngs::StdRng};
use vendor_sim::{SimHandle, Vendor, ipassan as ip};

use crate::model::{Desired, Model, Object};

/// The iPassan model.
#[derive(Debug, Default, Clone, Copy)]
pub struct Ipassan;

const FACILITY: &str = "bbq";
/// A facility on an asset that allows parallel bookings.
const ROOM: &str = "room";
/// Its asset.
const ROOM_ASSET: &str = "6b1f3c9e-0000-4000-8000-0000000a55e2";

fn asset_of(facility: &str) -> &'static str {
    if facility == ROOM {
        ROOM_ASSET
    } else {
        ip::DEMO_ASSET_BBQ
    }
}

fn facility(rng: &mut StdRng) -> String {
    if rng.random_bool(0.5) { ROOM } else { FACILITY }.to_owned()
}

fn window(rng: &mut StdRng, booking: usize) -> (DateTime<Utc>, DateTime<Utc>) {
    let day = Utc
        .with_ymd_and_hms(2030, 6, 1, 0, 0, 0)
        .single()
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
        + Duration::days(booking as i64);
    let start = day + Duration::minutes(30 * rng.random_range(16..36));
    (
        start,
        start + Duration::minutes(30 * rng.random_range(1..=4)),
    )
}

fn ts(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

impl Model for Ipassan {
    type Handler = IpassanHandler;

    const NAME: &'static str = "ipassan";
    const WORKER: &'static str = ipassan_adapter::WORKER;
    const SIM: Vendor = Vendor::IPassan;
    fn handler(&self) -> IpassanHandler {
        IpassanHandler::default()
    }

    fn seed(&self, sim: &SimHandle) -> Result<(), String> {
        let room = ip::Asset {
            uuid: ROOM_ASSET.into(),
            site_uuid: ip::DEMO_SITE.into(),
            name: "Meeting room".into(),
            display: "week".into(),
            door_profile_uuid: Some(ip::DEMO_PROFILE_DOOR.into()),
            floor_profile_uuid: None,
            time_slot_minutes: 30,
            max_booking_minutes: 120,
            one_booking_per_slot: false,
        };
        sim.state()
            .seed_ipassan(ip::IpassanFixture {
                assets: vec![room],
                ..ip::IpassanFixture::default()
            })
            .map_err(|e| e.to_string())
    }

    fn connections(&self, tenant: &str, sim: &SimHandle) -> Vec<Connection> {
        vec![Connection {
            tenant: tenant.into(),
            name: "default".into(),
            enabled: true,
            sites: vec![],
            settings: VendorSettings::Ipassan(IpassanSettings {
                base_url: sim.ipassan_url(),
                client_id: ip::DEMO_CLIENT_ID.into(),
                client_secret: Secret::new(ip::DEMO_CLIENT_SECRET),
                site_guid: ip::DEMO_SITE.into(),
                facilities: BTreeMap::from([
                    (FACILITY.to_owned(), ip::DEMO_ASSET_BBQ.to_owned()),
                    (ROOM.to_owned(), ROOM_ASSET.to_owned()),
                ]),
            }),
            version: 1,
        }]
    }

    fn inventory(&self) -> Arc<dyn Inventory> {
        Arc::new(IpassanInventory::new(1_000.0))
    }

    fn first(&self, rng: &mut StdRng, _tag: &str, booking: usize) -> (String, EventBody) {
        let (start, end) = window(rng, booking);
        let f = FacilityBooking {
            status: FacilityStatus::Booked,
            facility_id: facility(rng),
            // The demo resident holds the asset's door and floor profiles.
            resident: Resident {
                id: "res-jan".into(),
                email: "jan@example.com".into(),
                first_name: "Jan".into(),
                last_name: "de Vries".into(),
            },
            start,
            end,
        };
        ("pijp".into(), EventBody::Facility(f))
    }

    fn edit(
        &self,
        rng: &mut StdRng,
        _tag: &str,
        booking: usize,
        site: &str,
        prev: &EventBody,
    ) -> (String, EventBody, String) {
        let EventBody::Facility(prev) = prev else {
            return (site.into(), prev.clone(), "unchanged".into());
        };
        let mut f = prev.clone();
        let note = match rng.random_range(0..5) {
            0 | 1 => {
                (f.start, f.end) = window(rng, booking);
                "moved in time"
            }
            4 => {
                f.facility_id = if f.facility_id == ROOM {
                    FACILITY
                } else {
                    ROOM
                }
                .into();
                "moved to the other facility"
            }
            2 => {
                f.status = FacilityStatus::Cancelled;
                "cancelled"
            }
            _ => {
                f.status = FacilityStatus::Booked;
                "booked again"
            }
        };
        (site.into(), EventBody::Facility(f), note.into())
    }

    fn desired(&self, winners: &[Event]) -> Desired {
        Desired::required(
            winners
                .iter()
                .filter_map(|ev| match &ev.body {
                    EventBody::Facility(f) if f.status == FacilityStatus::Booked => Some(format!(
                        "asset-booking ah:{}:facility:{} on {} {}..{} person {}",
                        ev.tenant,
                        ev.booking_key,
                        asset_of(&f.facility_id),
                        ts(&f.start),
                        ts(&f.end),
                        ip::DEMO_PERSON_JAN
                    )),
                    _ => None,
                })
                .collect(),
        )
    }

    fn observed(&self, sim: &SimHandle) -> Vec<Object> {
        sim.state()
            .ipassan_bookings()
            .into_iter()
            .map(|b| {
                format!(
                    "asset-booking {} on {} {}..{} person {}",
                    b.reference.as_deref().unwrap_or("<no reference>"),
                    b.asset_uuid,
                    ts(&b.start),
                    ts(&b.end),
                    b.person_uuid
                )
            })
            .collect()
    }
}
