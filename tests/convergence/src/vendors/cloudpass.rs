//! CloudPass: BEX-style reservations with license plates. A reservation that wants access
//! (confirmed or checked in) should leave one vehicle booking per plate at the CloudPass site
//! its administration maps to, valid from check-in minus the window to check-out plus the
//! window (VENDORS.md, "one vehicle booking per license plate"), carrying our reference;
//! nothing else. Histories move reservations between administrations (sites), change plates,
//! dates and status.

use std::{collections::BTreeMap, sync::Arc};

use accesshub_connections::{
    CloudpassAdministration, CloudpassSettings, Connection, Secret, VendorSettings,
};
use accesshub_domain::{Event, EventBody, Guest, Reservation, ReservationStatus};
use accesshub_inventory::Inventory;
use chrono::{DateTime, Duration, NaiveDate, NaiveTime, SecondsFormat, Utc};
use cloudpass_adapter::{CloudpassHandler, inventory::CloudpassInventory};
use rand::{Rng as _, rngs::StdRng};
use vendor_sim::{SimHandle, Vendor, cloudpass as cp};

use crate::model::{Desired, Model, Object};

/// The CloudPass model.
#[derive(Debug, Default, Clone, Copy)]
pub struct Cloudpass;

const ADMINS: [&str; 2] = ["adm-ams", "adm-utr"];
const WINDOW_MINUTES: i64 = 30;

fn administrations() -> BTreeMap<String, CloudpassAdministration> {
    BTreeMap::from([
        (
            "adm-ams".to_owned(),
            CloudpassAdministration {
                site_id: cp::DEMO_SITE_AMSTERDAM.into(),
                time_restriction_id: None,
            },
        ),
        (
            "adm-utr".to_owned(),
            CloudpassAdministration {
                site_id: cp::DEMO_SITE_UTRECHT.into(),
                time_restriction_id: Some("cp-tr-utr-247".into()),
            },
        ),
    ])
}

/// Up to three plates from the booking's own pool (sometimes written with a space or dash,
/// as guests type them), sometimes a plate two bookings share.
fn plates(rng: &mut StdRng, booking: usize) -> Vec<String> {
    let pool = [
        format!("K{booking}AB1"),
        format!("k{booking}-cd2"),
        format!("K{booking} EF3"),
        "SHARED9".to_owned(),
    ];
    let n = rng.random_range(0..=3);
    let mut out: Vec<String> = Vec::new();
    for _ in 0..n {
        let p = pool[rng.random_range(0..pool.len())].clone();
        if !out.contains(&p) {
            out.push(p);
        }
    }
    out
}

fn arrival(rng: &mut StdRng) -> NaiveDate {
    NaiveDate::from_ymd_opt(2030, 5, 1).unwrap_or_default() + Duration::days(rng.random_range(0..5))
}

fn status(rng: &mut StdRng) -> ReservationStatus {
    match rng.random_range(0..5) {
        0 => ReservationStatus::CheckedIn,
        1 => ReservationStatus::CheckedOut,
        2 => ReservationStatus::Cancelled,
        3 => ReservationStatus::NoShow,
        _ => ReservationStatus::Confirmed,
    }
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The reference CloudPass bookings of ours carry (docs/sync.md).
fn reference(tenant: &str, key: &str, plate: &str) -> String {
    format!("ah:{tenant}:reservation:{key}:{plate}")
}

fn normalized(plate: &str) -> String {
    plate
        .chars()
        .filter(|c| !matches!(c, ' ' | '-'))
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

impl Model for Cloudpass {
    type Handler = CloudpassHandler;

    const NAME: &'static str = "cloudpass";
    const WORKER: &'static str = cloudpass_adapter::NAME;
    const SIM: Vendor = Vendor::CloudPass;
    fn handler(&self) -> CloudpassHandler {
        CloudpassHandler::new()
    }

    fn connections(&self, tenant: &str, sim: &SimHandle) -> Vec<Connection> {
        vec![Connection {
            tenant: tenant.into(),
            name: "default".into(),
            enabled: true,
            sites: vec![],
            settings: VendorSettings::Cloudpass(CloudpassSettings {
                base_url: sim.cloudpass_url(),
                client_id: cp::DEMO_CLIENT_ID.into(),
                client_secret: Secret::new(cp::DEMO_CLIENT_SECRET),
                administrations: administrations(),
                default_time_restriction_id: cp::DEMO_TR_AMSTERDAM_24_7.into(),
                reapply_time_restriction: false,
                window_before_minutes: WINDOW_MINUTES as u32,
                window_after_minutes: WINDOW_MINUTES as u32,
            }),
            version: 1,
        }]
    }

    fn inventory(&self) -> Arc<dyn Inventory> {
        Arc::new(CloudpassInventory::with_rate(1_000.0))
    }

    fn first(&self, rng: &mut StdRng, _tag: &str, booking: usize) -> (String, EventBody) {
        let arrival = arrival(rng);
        let r = Reservation {
            status: ReservationStatus::Confirmed,
            guest: Guest {
                name: "Jansen, Piet".into(),
                email: None,
                mobile_phone: None,
            },
            arrival,
            departure: arrival + Duration::days(rng.random_range(1..4)),
            check_in_time: NaiveTime::from_hms_opt(15, 0, 0).unwrap_or_default(),
            check_out_time: NaiveTime::from_hms_opt(11, 0, 0).unwrap_or_default(),
            timezone: "Europe/Amsterdam".into(),
            rooms: vec![],
            common_areas: vec![],
            license_plates: plates(rng, booking),
            mobile_key: false,
        };
        (
            ADMINS[rng.random_range(0..ADMINS.len())].into(),
            EventBody::Reservation(r),
        )
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
        let mut site = site.to_owned();
        let note = match rng.random_range(0..6) {
            0 => {
                r.license_plates = plates(rng, booking);
                "plates changed"
            }
            1 => {
                r.arrival = arrival(rng);
                r.departure = r.arrival + Duration::days(rng.random_range(1..4));
                "dates changed"
            }
            2 => {
                site = if site == ADMINS[0] {
                    ADMINS[1]
                } else {
                    ADMINS[0]
                }
                .into();
                "moved to the other administration"
            }
            3 => {
                r.guest.name = format!("Jansen, Piet {}", rng.random_range(0..9));
                "guest renamed"
            }
            _ => {
                r.status = status(rng);
                "status changed"
            }
        };
        (site, EventBody::Reservation(r), note.into())
    }

    fn desired(&self, winners: &[Event]) -> Desired {
        let admins = administrations();
        let mut out = Vec::new();
        for ev in winners {
            let EventBody::Reservation(r) = &ev.body else {
                continue;
            };
            if !r.status.wants_access() {
                continue;
            }
            let (Some(admin), Ok(check_in), Ok(check_out)) =
                (admins.get(&ev.site), r.check_in(), r.check_out())
            else {
                continue;
            };
            let from = check_in - Duration::minutes(WINDOW_MINUTES);
            let until = check_out + Duration::minutes(WINDOW_MINUTES);
            let mut plates: Vec<String> = r.license_plates.iter().map(|p| normalized(p)).collect();
            plates.sort();
            plates.dedup();
            for plate in plates.into_iter().filter(|p| !p.is_empty()) {
                out.push(format!(
                    "vehicle {} {plate} at {} {}..{} restriction {}",
                    reference(&ev.tenant, &ev.booking_key, &plate),
                    admin.site_id,
                    ts(from),
                    ts(until),
                    admin
                        .time_restriction_id
                        .as_deref()
                        .unwrap_or(cp::DEMO_TR_AMSTERDAM_24_7)
                ));
            }
        }
        Desired::required(out)
    }

    fn observed(&self, sim: &SimHandle) -> Vec<Object> {
        sim.state()
            .cloudpass_bookings()
            .into_iter()
            .map(|b| {
                format!(
                    "vehicle {} {} at {} {}..{} restriction {}",
                    b.reference,
                    b.license_plate,
                    b.site_id,
                    ts(b.valid_from),
                    ts(b.valid_until),
                    b.time_restriction_id
                )
            })
            .collect()
    }
}
