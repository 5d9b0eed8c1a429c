//! Tapkey: Nexudus-style time passes. A pass that wants access (active, not expired) should
//! leave one active grant per lock its pass type maps to, for its holder's contact, valid until
//! its expiry; nothing else. Holders come from a small pool per history, so holders change and
//! two passes share a holder.

use std::{collections::BTreeMap, sync::Arc};

use accesshub_connections::{Connection, Secret, TapkeySettings, VendorSettings};
use accesshub_domain::{Event, EventBody, Pass, PassHolder, PassStatus};
use accesshub_inventory::Inventory;
use chrono::{DateTime, Duration, SecondsFormat, TimeZone as _, Utc};
use rand::{Rng as _, rngs::StdRng};
use tapkey_adapter::{TapkeyHandler, inventory::TapkeyInventory};
use vendor_sim::{SimHandle, Vendor, tapkey as tk};

use crate::model::{Desired, Model, Object};

/// The Tapkey model.
#[derive(Debug, Default, Clone, Copy)]
pub struct Tapkey;

const HOLDERS: [&str; 3] = ["ann", "bob", "cy"];
const SITE: &str = "hq";

fn pass_types() -> BTreeMap<String, Vec<String>> {
    BTreeMap::from([
        (
            "day".to_owned(),
            vec![
                tk::DEMO_LOCK_FRONT.to_owned(),
                tk::DEMO_LOCK_MEETING.to_owned(),
            ],
        ),
        ("meet".to_owned(), vec![tk::DEMO_LOCK_MEETING.to_owned()]),
    ])
}

fn holder(tag: &str, rng: &mut StdRng) -> PassHolder {
    let who = HOLDERS[rng.random_range(0..HOLDERS.len())];
    PassHolder {
        id: format!("{tag}-{who}"),
        email: format!("{who}.{tag}@example.com"),
        name: rng.random_bool(0.3).then(|| format!("{who} {tag}")),
    }
}

fn expiry(rng: &mut StdRng) -> DateTime<Utc> {
    let base = Utc
        .with_ymd_and_hms(2031, 1, 1, 0, 0, 0)
        .single()
        .unwrap_or(DateTime::<Utc>::MAX_UTC);
    base + Duration::days(rng.random_range(0..4)) + Duration::minutes(rng.random_range(0..3) * 30)
}

fn ms(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl Model for Tapkey {
    type Handler = TapkeyHandler;

    const NAME: &'static str = "tapkey";
    const WORKER: &'static str = tapkey_adapter::NAME;
    const SIM: Vendor = Vendor::Tapkey;
    fn handler(&self) -> TapkeyHandler {
        TapkeyHandler::new()
    }

    fn connections(&self, tenant: &str, sim: &SimHandle) -> Vec<Connection> {
        vec![Connection {
            tenant: tenant.into(),
            name: "default".into(),
            enabled: true,
            sites: vec![],
            settings: VendorSettings::Tapkey(TapkeySettings {
                authority_url: sim.tapkey_url(),
                base_url: sim.tapkey_url(),
                client_id: tk::DEMO_CLIENT_ID.into(),
                client_secret: Secret::new(tk::DEMO_CLIENT_SECRET),
                owner_account_id: tk::DEMO_OWNER_ID.into(),
                pass_types: pass_types(),
            }),
            version: 1,
        }]
    }

    fn inventory(&self) -> Arc<dyn Inventory> {
        Arc::new(TapkeyInventory::new(1_000.0))
    }

    fn first(&self, rng: &mut StdRng, tag: &str, _booking: usize) -> (String, EventBody) {
        let pass = Pass {
            status: PassStatus::Active,
            holder: holder(tag, rng),
            pass_type: if rng.random_bool(0.6) { "day" } else { "meet" }.into(),
            pass_type_name: None,
            // Nexudus never sends a start; native sources may.
            valid_from: rng.random_bool(0.3).then(|| {
                Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
                    .single()
                    .unwrap_or(DateTime::<Utc>::MIN_UTC)
            }),
            expires_at: expiry(rng),
        };
        (SITE.into(), EventBody::Pass(pass))
    }

    fn edit(
        &self,
        rng: &mut StdRng,
        tag: &str,
        _booking: usize,
        site: &str,
        prev: &EventBody,
    ) -> (String, EventBody, String) {
        let EventBody::Pass(prev) = prev else {
            return (site.into(), prev.clone(), "unchanged".into());
        };
        let mut p = prev.clone();
        let note = match rng.random_range(0..6) {
            0 => {
                p.holder = holder(tag, rng);
                "holder changed"
            }
            1 => {
                p.pass_type = if p.pass_type == "day" { "meet" } else { "day" }.into();
                "pass type changed"
            }
            2 => {
                p.expires_at = expiry(rng);
                "expiry changed"
            }
            3 => {
                p.status = PassStatus::Used;
                "used"
            }
            4 => {
                p.status = PassStatus::Removed;
                "deleted"
            }
            _ => {
                p.status = PassStatus::Active;
                "active again"
            }
        };
        (site.into(), EventBody::Pass(p), note.into())
    }

    fn desired(&self, winners: &[Event]) -> Desired {
        let types = pass_types();
        let now = Utc::now();
        let mut out = Vec::new();
        for ev in winners {
            let EventBody::Pass(p) = &ev.body else {
                continue;
            };
            if p.status != PassStatus::Active || p.expires_at <= now {
                continue;
            }
            for lock in types.get(&p.pass_type).into_iter().flatten() {
                out.push(format!(
                    "grant {} {lock} until {}",
                    p.holder.email.to_ascii_lowercase(),
                    ms(&p.expires_at)
                ));
            }
        }
        Desired::required(out)
    }

    /// Grants carry no reference: two passes of one holder on one lock may each want a
    /// grant, so the simulator's grouping by holder and lock is no failure here; the oracle's
    /// count per wanted grant is.
    fn live_duplicates(&self, _sim: &SimHandle) -> Vec<Object> {
        Vec::new()
    }

    fn observed(&self, sim: &SimHandle) -> Vec<Object> {
        let contacts: BTreeMap<String, String> = sim
            .state()
            .tapkey_contacts()
            .into_iter()
            .map(|c| (c.id, c.identifier.to_ascii_lowercase()))
            .collect();
        sim.state()
            .tapkey_grants()
            .into_iter()
            .filter(|g| g.active)
            .map(|g| {
                format!(
                    "grant {} {} until {}",
                    contacts
                        .get(&g.contact_id)
                        .map_or("<unknown contact>", String::as_str),
                    g.bound_lock_id,
                    g.valid_before
                        .as_ref()
                        .map_or_else(|| "<unlimited>".to_owned(), ms)
                )
            })
            .collect()
    }
}
