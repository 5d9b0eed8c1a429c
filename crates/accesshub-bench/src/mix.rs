//! The four vendor paths the production-like benchmarks drive (issue 25): for each, the
//! upstream webhook that feeds it (BEX → CloudPass, Clock → dormakaba Saflok SOAP, connecX →
//! iPassan, Nexudus → Tapkey), the connection to the in-process simulator, and its worker
//! started with a hook that notes when each booking was applied at the vendor. The pipeline,
//! worker and RSS benchmarks share them, so they measure the same bookings.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
    time::Instant,
};

use accesshub_connections::{
    Connection, DormakabaProduct, DormakabaSettings, Encoder, EncoderKind, IpassanSettings, Secret,
    TapkeySettings, VendorSettings,
};
use accesshub_domain::{Event, Source};
use serde_json::{Value, json};
use worker_runtime::{AfterApply, WorkerConfig, WorkerHandle};

/// The Nexudus pass type the Tapkey connection maps (to the simulator's front door).
const PASS_TYPE: u64 = 8;
/// connecX facilities the iPassan connection maps, each to an asset of its own (like the
/// simulator's rooftop BBQ: 30-minute slots, one booking per slot). ipassan-worker's calls
/// per event used to grow with both the mapped assets and the asset's bookings (9 calls/event
/// with one asset at 1,000 events, 500 with 256 assets); since issue 25 they grow with
/// neither (3 per create), so eight is as good a figure as any.
pub const IPASSAN_ASSETS: u64 = 8;

/// connecX facility `k` and its iPassan asset.
fn facility(k: u64) -> (String, String) {
    (
        format!("room-{k}"),
        format!("6b1f3c9e-0000-4000-8000-0b{k:010x}"),
    )
}

/// The simulator's demo fixtures plus the [`IPASSAN_ASSETS`] assets of the iPassan flow.
pub fn seed(sim: &vendor_sim::SimState) -> Result<(), vendor_sim::SimError> {
    use vendor_sim::ipassan as ip;
    sim.seed_demo();
    sim.seed_ipassan(ip::IpassanFixture {
        assets: (0..IPASSAN_ASSETS)
            .map(|k| {
                let (name, uuid) = facility(k);
                ip::Asset {
                    uuid,
                    site_uuid: ip::DEMO_SITE.into(),
                    name,
                    display: "week".into(),
                    door_profile_uuid: Some(ip::DEMO_PROFILE_DOOR.into()),
                    floor_profile_uuid: Some(ip::DEMO_PROFILE_FLOOR.into()),
                    time_slot_minutes: 30,
                    max_booking_minutes: 120,
                    one_booking_per_slot: true,
                }
            })
            .collect(),
        ..Default::default()
    })
}

/// One vendor flow: upstream webhook → worker → vendor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Flow {
    /// BEX reservations with one plate → CloudPass vehicle bookings.
    Cloudpass,
    /// Clock PMS+ bookings → dormakaba Saflok reservations (SOAP).
    Dormakaba,
    /// connecX facility bookings → iPassan asset bookings.
    Ipassan,
    /// Nexudus day passes → Tapkey grants.
    Tapkey,
}

impl Flow {
    /// All four, in the order the tables list them.
    pub const ALL: [Flow; 4] = [
        Flow::Cloudpass,
        Flow::Dormakaba,
        Flow::Ipassan,
        Flow::Tapkey,
    ];

    /// The vendor's name (`cloudpass`, …): table rows and figure names.
    pub fn name(self) -> &'static str {
        self.sim_vendor().as_str()
    }

    /// The upstream whose webhook feeds this path.
    pub fn source(self) -> Source {
        match self {
            Flow::Cloudpass => Source::Bex,
            Flow::Dormakaba => Source::Clock,
            Flow::Ipassan => Source::Connecx,
            Flow::Tapkey => Source::Nexudus,
        }
    }

    /// The worker's service name (its binary and consumer).
    pub fn worker(self) -> &'static str {
        match self {
            Flow::Cloudpass => cloudpass_adapter::NAME,
            Flow::Dormakaba => dormakaba_adapter::WORKER,
            Flow::Ipassan => ipassan_adapter::WORKER,
            Flow::Tapkey => tapkey_adapter::NAME,
        }
    }

    /// The simulator serving this vendor.
    pub fn sim_vendor(self) -> vendor_sim::Vendor {
        match self {
            Flow::Cloudpass => vendor_sim::Vendor::CloudPass,
            Flow::Dormakaba => vendor_sim::Vendor::Dormakaba,
            Flow::Ipassan => vendor_sim::Vendor::IPassan,
            Flow::Tapkey => vendor_sim::Vendor::Tapkey,
        }
    }

    /// The path of booking `i` in a mix of all four (round robin).
    pub fn of(i: u64) -> Flow {
        Flow::ALL[(i % 4) as usize]
    }

    /// The webhook body of booking `i` (`tag` keeps runs sharing a database apart): each a
    /// different booking the vendor accepts (distinct plates; iPassan slots that never
    /// overlap, since the BBQ takes one booking per 30-minute slot). Clock bookings ask for
    /// a mobile key for the simulator's app user: without one the lock system has nothing to
    /// do until a card is encoded at the desk.
    pub fn webhook(self, tag: &str, i: u64) -> Value {
        let now = chrono::Utc::now();
        let updated = now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        match self {
            Flow::Cloudpass => json!({
                "event": "reservation:created", "subscription_id": "sub-bench",
                "context": "administration", "context_id": "12",
                "record": {
                    "id": format!("{tag}-r{i}"), "type": "reservation",
                    "attributes": {
                        "status": "confirmed", "arrival_date": "2030-07-14",
                        "departure_date": "2030-07-18", "guest_first_name": "Bench",
                        "guest_last_name": format!("Guest{i}"), "guest_email": "guest@example.com",
                        "rooms": ["101"], "license_plates": [format!("BN{i:07}")],
                        "updated_at": updated
                    },
                    "relationships": {"administration": {"data": {"id": "12", "type": "administration"}}}
                }
            }),
            Flow::Dormakaba => {
                let today = now.date_naive();
                let departure = today + chrono::Duration::days(2);
                json!({
                    "event": "booking_new",
                    "booking": {
                        "id": format!("{tag}{i}"), "account_id": 77, "number": format!("CL-{tag}-{i}"),
                        "arrival": today.to_string(), "arrival_time": "00:00",
                        "departure": departure.to_string(), "status": "expected",
                        "status_changed_at": updated, "updated_at": updated,
                        "guest": {"last_name": "Jansen", "first_name": "Piet",
                                  "email": "piet@example.com", "phone": "+31612345678"},
                        "rooms": ["101"], "common_areas": [], "license_plates": [],
                        "mobile_key": true
                    }
                })
            }
            Flow::Ipassan => {
                let base = chrono::DateTime::parse_from_rfc3339("2031-01-01T00:00:00Z")
                    .map(|d| d.with_timezone(&chrono::Utc))
                    .unwrap_or(now);
                let start = base + chrono::Duration::minutes(30 * i as i64);
                let end = start + chrono::Duration::minutes(30);
                let ts = |t: chrono::DateTime<chrono::Utc>| {
                    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                };
                json!({
                    "booking_id": format!("{tag}-f{i}"), "facility_id": facility((i / 4) % IPASSAN_ASSETS).0,
                    "building_id": "pijp",
                    "resident": {"id": "res-17", "email": "jan@example.com",
                                 "first_name": "Jan", "last_name": "de Vries"},
                    "start": ts(start), "end": ts(end), "status": "booked",
                    "updated_at": updated
                })
            }
            Flow::Tapkey => {
                let expire = (now + chrono::Duration::days(1))
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
                json!({
                    "action": "CoworkerTimePassCreate",
                    "data": {
                        "Id": i, "UniqueId": format!("{tag}-p{i}"), "CoworkerId": i,
                        "BusinessId": 3, "TimePassId": PASS_TYPE, "TimePassName": "Day pass",
                        "ExpireDate": expire, "Used": false, "UsedDate": null,
                        "RemainingUses": 1, "UpdatedOn": updated,
                        "CoworkerEmail": format!("{tag}-m{i}@example.com"),
                        "CoworkerFullName": format!("Member {i}")
                    }
                })
            }
        }
    }

    /// Booking `i` as the event booking-ingest makes of its webhook (the same mapping), for
    /// benchmarks that publish to BOOKINGS directly.
    pub fn event(self, tenant: &str, tag: &str, i: u64) -> Result<Event, MixError> {
        let body =
            serde_json::to_vec(&self.webhook(tag, i)).map_err(|e| MixError(e.to_string()))?;
        let defaults = site_defaults();
        let cx = booking_ingest::upstream::Context {
            tenant,
            site_defaults: &defaults,
        };
        booking_ingest::upstream::normalize(self.source(), &body, cx)
            .map_err(|e| MixError(format!("{}: {e}", self.name())))?
            .event()
            .map(|n| n.event)
            .ok_or_else(|| MixError(format!("{}: webhook ignored", self.name())))
    }

    /// The connection of `tenant` to this vendor's simulator in `sim`.
    pub fn connection(self, tenant: &str, sim: &vendor_sim::SimHandle) -> Connection {
        use vendor_sim::{ipassan as ip, tapkey as tk};
        let settings = match self {
            Flow::Cloudpass => {
                return crate::cloudpass_connection(tenant, "12", &sim.cloudpass_url());
            }
            Flow::Dormakaba => {
                VendorSettings::Dormakaba(dormakaba_settings(sim.dormakaba_addr(), true))
            }
            Flow::Ipassan => VendorSettings::Ipassan(IpassanSettings {
                base_url: sim.ipassan_url(),
                client_id: ip::DEMO_CLIENT_ID.into(),
                client_secret: Secret::new(ip::DEMO_CLIENT_SECRET),
                site_guid: ip::DEMO_SITE.into(),
                facilities: (0..IPASSAN_ASSETS).map(facility).collect(),
            }),
            Flow::Tapkey => VendorSettings::Tapkey(TapkeySettings {
                authority_url: sim.tapkey_url(),
                base_url: sim.tapkey_url(),
                client_id: tk::DEMO_CLIENT_ID.into(),
                client_secret: Secret::new(tk::DEMO_CLIENT_SECRET),
                owner_account_id: tk::DEMO_OWNER_ID.into(),
                pass_types: BTreeMap::from([(
                    PASS_TYPE.to_string(),
                    vec![tk::DEMO_LOCK_FRONT.to_owned()],
                )]),
            }),
        };
        Connection {
            tenant: tenant.into(),
            name: "default".into(),
            enabled: true,
            sites: vec![],
            settings,
            version: 1,
        }
    }

    /// Starts this path's worker with `cfg`, noting in `applied` when each booking was
    /// applied at the vendor (the handler returned, before the runtime records it).
    pub async fn start_worker(
        self,
        cfg: WorkerConfig,
        applied: Applied,
    ) -> Result<WorkerHandle, worker_runtime::WorkerError> {
        let hook = move |event: &Event| {
            applied.note(&event.booking_key);
            std::future::ready(())
        };
        match self {
            Flow::Cloudpass => {
                worker_runtime::start(
                    cfg,
                    AfterApply::new(cloudpass_adapter::CloudpassHandler::new(), hook),
                )
                .await
            }
            Flow::Dormakaba => {
                worker_runtime::start(
                    cfg,
                    AfterApply::new(dormakaba_adapter::DormakabaHandler::new(), hook),
                )
                .await
            }
            Flow::Ipassan => {
                worker_runtime::start(
                    cfg,
                    AfterApply::new(ipassan_adapter::IpassanHandler::default(), hook),
                )
                .await
            }
            Flow::Tapkey => {
                worker_runtime::start(
                    cfg,
                    AfterApply::new(tapkey_adapter::TapkeyHandler::new(), hook),
                )
                .await
            }
        }
    }
}

/// A Saflok connection to the simulator's demo lock system listening on `addr`, one network
/// encoder, mobile keys on or off.
pub fn dormakaba_settings(addr: std::net::SocketAddr, mobile_keys: bool) -> DormakabaSettings {
    DormakabaSettings {
        product: DormakabaProduct::Saflok,
        host: addr.ip().to_string(),
        port: addr.port(),
        scheme: "http".into(),
        path: None,
        namespace: None,
        username: vendor_sim::dormakaba::DEMO_USERNAME.into(),
        password: Secret::new(vendor_sim::dormakaba::DEMO_PASSWORD),
        site_name: vendor_sim::dormakaba::DEMO_SAFLOK_SITE.into(),
        pms_terminal_id: "accesshub".into(),
        encoders: vec![Encoder {
            name: "Front desk 1".into(),
            id: "1".into(),
            kind: EncoderKind::Network,
        }],
        rooms: BTreeMap::new(),
        common_areas: BTreeMap::new(),
        mobile_keys,
        key_size: 0,
        edge_site: None,
    }
}

/// Creates `tenant` with `secret` as the webhook secret of the four flows' upstreams and
/// [`site_defaults`] for them.
pub async fn bench_tenant(
    pool: &sqlx::PgPool,
    sbox: accesshub_store::SecretBox,
    tenant: &str,
    secret: &str,
) -> Result<(), MixError> {
    let fail = |e: &dyn std::fmt::Display| MixError(format!("tenant {tenant}: {e}"));
    let tenants = accesshub_connections::TenantStore::new(pool.clone(), sbox);
    tenants.upsert(tenant, tenant).await.map_err(|e| fail(&e))?;
    for flow in Flow::ALL {
        tenants
            .set_source_secret(
                tenant,
                flow.source().as_str(),
                Some(Secret::new(secret)),
                std::time::Duration::ZERO,
            )
            .await
            .map_err(|e| fail(&e))?;
    }
    // Site defaults have no TenantStore API yet: set the way an operator's SQL would.
    sqlx::query("UPDATE tenant_sources SET site_defaults = $1 WHERE tenant_id = $2")
        .bind(site_defaults())
        .bind(tenant)
        .execute(pool)
        .await
        .map_err(|e| fail(&e))?;
    Ok(())
}

/// Site defaults of the bench tenant's upstream sources (Clock bookings need check-in and
/// check-out times and a zone), as `make dev`'s demo tenant has them.
pub fn site_defaults() -> Value {
    json!({"*": {"check_in_time": "15:00", "check_out_time": "11:00", "timezone": "Europe/Amsterdam"}})
}

/// A booking of the mix could not be made (a mapping refused it: the mix is wrong).
#[derive(Debug, thiserror::Error)]
#[error("bench booking: {0}")]
pub struct MixError(pub String);

impl accesshub_domain::Classify for MixError {
    fn class(&self) -> accesshub_domain::ErrorClass {
        accesshub_domain::ErrorClass::Permanent
    }
}

/// When each booking (by booking key) was applied at its vendor; shared by the workers'
/// hooks and the benchmark that waits for them.
#[derive(Debug, Clone, Default)]
pub struct Applied(Arc<Mutex<HashMap<String, Instant>>>);

impl Applied {
    /// Notes `key` as applied now (the first time only: a redelivery does not move it).
    pub fn note(&self, key: &str) {
        if let Ok(mut m) = self.0.lock() {
            m.entry(key.to_owned()).or_insert_with(Instant::now);
        }
    }

    /// How many bookings were applied.
    pub fn len(&self) -> usize {
        self.0.lock().map(|m| m.len()).unwrap_or(0)
    }

    /// Whether none was.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// When `key` was applied.
    pub fn at(&self, key: &str) -> Option<Instant> {
        self.0.lock().ok().and_then(|m| m.get(key).copied())
    }

    /// Waits (polling every 5 ms) until `n` bookings were applied or `timeout` passed;
    /// returns how many were.
    pub async fn wait_for(&self, n: usize, timeout: std::time::Duration) -> usize {
        let start = Instant::now();
        loop {
            let got = self.len();
            if got >= n || start.elapsed() > timeout {
                return got;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn every_flow_maps_to_distinct_events_of_its_source() {
        for flow in Flow::ALL {
            let a = flow.event("t", "x", 0).unwrap();
            let b = flow.event("t", "x", 1).unwrap();
            assert_eq!(a.source, flow.source(), "{flow:?}");
            assert_eq!(a.tenant, "t");
            assert_ne!(a.booking_key, b.booking_key, "{flow:?}");
            assert_eq!(Flow::of(flow as u64), flow);
        }
    }

    #[test]
    fn applied_keeps_the_first_time() {
        let a = Applied::default();
        a.note("k");
        let first = a.at("k").unwrap();
        a.note("k");
        assert_eq!(a.at("k"), Some(first));
        assert_eq!(a.len(), 1);
    }
}
