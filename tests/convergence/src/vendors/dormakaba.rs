//! dormakaba Saflok: Clock-style reservations. A reservation that wants access (confirmed or
//! checked in) should leave one booking in the lock system that is not checked out, with its
//! rooms, the pass levels of its common areas granted, valid from check-in to check-out; and,
//! when it asks for a mobile key, one delivered mobile key that is not cancelled. A
//! reservation that wants no access leaves nothing live. Each booking has its own rooms, so
//! bookings never compete for a room.

use std::{collections::BTreeMap, sync::Arc};

use accesshub_connections::{
    Connection, DormakabaProduct, DormakabaSettings, Secret, VendorSettings,
};
use accesshub_domain::{Event, EventBody, Guest, Reservation, ReservationStatus};
use accesshub_inventory::Inventory;
use chrono::{DateTime, Duration, NaiveDate, NaiveTime, SecondsFormat, Utc};
use dormakaba_adapter::{DormakabaHandler, inventory::DormakabaInventory};
use rand::{Rng as _, rngs::StdRng};
use vendor_sim::{SimHandle, Vendor, dormakaba::Product};

use crate::model::{Desired, Model, Object};

/// The dormakaba model.
#[derive(Debug, Default, Clone, Copy)]
pub struct Dormakaba;

/// Rooms of booking `b` (the demo lock system has 101–103, 201, 202, 301).
fn rooms_of(b: usize) -> &'static [&'static str] {
    match b % 3 {
        0 => &["101", "102"],
        1 => &["201", "202"],
        _ => &["103", "301"],
    }
}

const AREAS: [(&str, u32); 2] = [("gym", 2), ("parking", 3)];
/// The demo lock system's app guest: mobile keys to it are delivered.
const PHONE: &str = "+31612345678";

fn rooms(rng: &mut StdRng, b: usize) -> Vec<String> {
    let pool = rooms_of(b);
    let mut v = vec![pool[rng.random_range(0..pool.len())].to_owned()];
    if rng.random_bool(0.3) {
        let other = pool
            .iter()
            .find(|r| **r != v[0])
            .copied()
            .unwrap_or(pool[0]);
        v.push(other.to_owned());
    }
    v
}

fn areas(rng: &mut StdRng) -> Vec<String> {
    AREAS
        .iter()
        .filter(|_| rng.random_bool(0.4))
        .map(|(a, _)| (*a).to_owned())
        .collect()
}

fn arrival(rng: &mut StdRng, b: usize) -> NaiveDate {
    NaiveDate::from_ymd_opt(2030, 7, 1).unwrap_or_default()
        + Duration::days(10 * b as i64 + rng.random_range(0..3))
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

impl Model for Dormakaba {
    type Handler = DormakabaHandler;

    const NAME: &'static str = "dormakaba";
    const WORKER: &'static str = dormakaba_adapter::WORKER;
    const SIM: Vendor = Vendor::Dormakaba;
    fn handler(&self) -> DormakabaHandler {
        DormakabaHandler::new()
    }

    fn connections(&self, tenant: &str, sim: &SimHandle) -> Vec<Connection> {
        let port = sim
            .dormakaba_url()
            .rsplit(':')
            .next()
            .and_then(|s| s.split('/').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        vec![Connection {
            tenant: tenant.into(),
            name: "default".into(),
            enabled: true,
            sites: vec![],
            settings: VendorSettings::Dormakaba(DormakabaSettings {
                product: DormakabaProduct::Saflok,
                host: "127.0.0.1".into(),
                port,
                scheme: "http".into(),
                path: None,
                namespace: None,
                username: "pms-demo".into(),
                password: Secret::new("pms-demo-secret"),
                site_name: "DEMO-HOTEL".into(),
                pms_terminal_id: "accesshub".into(),
                encoders: vec![],
                rooms: Default::default(),
                common_areas: AREAS.iter().map(|(a, l)| ((*a).to_owned(), *l)).collect(),
                mobile_keys: true,
                key_size: 0,
                edge_site: None,
            }),
            version: 1,
        }]
    }

    fn inventory(&self) -> Arc<dyn Inventory> {
        Arc::new(DormakabaInventory::new(1_000.0))
    }

    fn first(&self, rng: &mut StdRng, _tag: &str, booking: usize) -> (String, EventBody) {
        let arrival = arrival(rng, booking);
        let r = Reservation {
            status: ReservationStatus::Confirmed,
            guest: Guest {
                name: format!("Jansen, Guest{booking}"),
                email: None,
                mobile_phone: Some(PHONE.into()),
            },
            arrival,
            departure: arrival + Duration::days(rng.random_range(1..4)),
            check_in_time: NaiveTime::from_hms_opt(15, 0, 0).unwrap_or_default(),
            check_out_time: NaiveTime::from_hms_opt(11, 0, 0).unwrap_or_default(),
            timezone: "Europe/Amsterdam".into(),
            rooms: rooms(rng, booking),
            common_areas: areas(rng),
            license_plates: vec![],
            mobile_key: rng.random_bool(0.5),
        };
        ("hotel".into(), EventBody::Reservation(r))
    }

    fn edit(
        &self,
        rng: &mut StdRng,
        _tag: &str,
        booking: usize,
        site: &str,
        prev: &EventBody,
    ) -> (String, EventBody, String) {
        let EventBody::Reservation(prev) = prev else {
            return (site.into(), prev.clone(), "unchanged".into());
        };
        let mut r = prev.clone();
        let note = match rng.random_range(0..7) {
            0 => {
                r.rooms = rooms(rng, booking);
                "rooms changed"
            }
            1 => {
                r.arrival = arrival(rng, booking);
                r.departure = r.arrival + Duration::days(rng.random_range(1..4));
                "dates changed"
            }
            2 => {
                r.common_areas = areas(rng);
                "common areas changed"
            }
            3 => {
                r.mobile_key = !r.mobile_key;
                "mobile key switched"
            }
            4 => {
                r.status = ReservationStatus::Cancelled;
                "cancelled"
            }
            5 => {
                r.status = if rng.random_bool(0.5) {
                    ReservationStatus::CheckedOut
                } else {
                    ReservationStatus::NoShow
                };
                "checked out / no-show"
            }
            _ => {
                r.status = if rng.random_bool(0.5) {
                    ReservationStatus::CheckedIn
                } else {
                    ReservationStatus::Confirmed
                };
                "confirmed / checked in"
            }
        };
        (site.into(), EventBody::Reservation(r), note.into())
    }

    fn desired(&self, winners: &[Event]) -> Desired {
        let levels: BTreeMap<&str, u32> = AREAS.into_iter().collect();
        let mut out = Desired::default();
        for ev in winners {
            let EventBody::Reservation(r) = &ev.body else {
                continue;
            };
            if !r.status.wants_access() {
                continue;
            }
            let (Ok(check_in), Ok(check_out), Some(main)) =
                (r.check_in(), r.check_out(), r.rooms.first())
            else {
                continue;
            };
            let mut granted: Vec<u32> = r
                .common_areas
                .iter()
                .filter_map(|a| levels.get(a.as_str()).copied())
                .collect();
            granted.sort_unstable();
            granted.dedup();
            let stay = format!(
                "stay {} room {main} extra {:?} levels {granted:?} {}..{}",
                r.guest.name,
                &r.rooms[1..],
                ts(check_in),
                ts(check_out)
            );
            // A stay is registered once a mobile key is sent (or a key cut); after that,
            // changes follow it even when the mobile key is switched off.
            if r.mobile_key {
                out.required.push(stay);
                out.required.push(format!("mobile key {main} {PHONE}"));
            } else {
                out.optional.push(stay);
            }
        }
        out
    }

    /// Messenger: a ReservationID that was checked out cannot be used again
    /// (`ReservationCheckedOut`); a stay reopened after check-out needs a new key at the desk.
    fn documented_refusal(&self, reason: &str) -> bool {
        reason.contains("cannot be reopened") || reason.contains("cannot be reused")
    }

    fn observed(&self, sim: &SimHandle) -> Vec<Object> {
        let bookings = sim.state().dormakaba_bookings(Product::Saflok);
        let live: BTreeMap<&str, bool> = bookings
            .iter()
            .map(|b| (b.reservation_id.as_str(), !b.checked_out))
            .collect();
        let mut out: Vec<Object> = bookings
            .iter()
            .filter(|b| !b.checked_out)
            .map(|b| {
                let mut granted: Vec<u32> = b
                    .common_areas
                    .iter()
                    .filter(|a| a.mode == "GrantAccess")
                    .map(|a| a.pass_level_no)
                    .collect();
                granted.sort_unstable();
                granted.dedup();
                format!(
                    "stay {} room {} extra {:?} levels {granted:?} {}..{}",
                    b.guest_name,
                    b.main_room,
                    b.variable_rooms,
                    ts(b.check_in),
                    ts(b.check_out)
                )
            })
            .collect();
        for k in sim.state().dormakaba_mobile_keys(Product::Saflok) {
            if k.delivered
                && !k.cancelled
                && live
                    .get(k.reservation_id.as_str())
                    .copied()
                    .unwrap_or(false)
            {
                out.push(format!("mobile key {} {}", k.room, k.phone));
            }
        }
        out
    }
}
