//! What the checker needs to know of one vendor: how to wire its worker and reconciler to the
//! simulator, how bookings of its kind change, and — written from the vendor's documented
//! behaviour, not from the adapter's code — which live objects a set of bookings should leave
//! at the vendor, and which the simulator holds.

use std::sync::Arc;

use accesshub_connections::Connection;
use accesshub_domain::{Event, EventBody};
use accesshub_inventory::Inventory;
use rand::rngs::StdRng;
use vendor_sim::{SimHandle, Vendor};

/// One live object at the vendor in a canonical, comparable form (e.g.
/// `grant a@x front-door until 2031-01-01T00:00:00.000Z`).
pub type Object = String;

/// What the final states ask of the vendor.
#[derive(Debug, Default, Clone)]
pub struct Desired {
    /// Objects that must be live, one entry per booking that wants it (two bookings may want
    /// the same object: the vendor may hold it once).
    pub required: Vec<Object>,
    /// Objects that may be live or not, as documented (e.g. dormakaba registers a stay only
    /// once a key is cut or a mobile key sent): live at most once per entry, exactly as stated.
    pub optional: Vec<Object>,
}

impl Desired {
    /// Only required objects.
    pub fn required(required: Vec<Object>) -> Self {
        Desired {
            required,
            optional: Vec::new(),
        }
    }
}

/// A vendor under test.
pub trait Model: Send + Sync + 'static {
    /// The worker's handler.
    type Handler: worker_runtime::Handler;

    /// Vendor name, as in subjects and bindings.
    const NAME: &'static str;
    /// The simulator's vendor.
    const SIM: Vendor;
    /// The worker's consumer name (the handler's name).
    const WORKER: &'static str;
    /// A fresh handler.
    fn handler(&self) -> Self::Handler;
    /// Fixtures beyond the simulator's demo ones (seeded before every history).
    fn seed(&self, _sim: &SimHandle) -> Result<(), String> {
        Ok(())
    }
    /// The tenant's connections to the simulator.
    fn connections(&self, tenant: &str, sim: &SimHandle) -> Vec<Connection>;
    /// The reconciler's inventory of this vendor.
    fn inventory(&self) -> Arc<dyn Inventory>;

    /// A new booking: its upstream site and first state.
    fn first(&self, rng: &mut StdRng, tag: &str, booking: usize) -> (String, EventBody);
    /// A change of a booking: new site, new state, and what changed (for the printed history).
    fn edit(
        &self,
        rng: &mut StdRng,
        tag: &str,
        booking: usize,
        site: &str,
        prev: &EventBody,
    ) -> (String, EventBody, String);

    /// The objects the final states should leave at the vendor.
    fn desired(&self, winners: &[Event]) -> Desired;
    /// The live objects the simulator holds (every entry: duplicates count).
    fn observed(&self, sim: &SimHandle) -> Vec<Object>;

    /// Live objects the simulator counts as the same access twice
    /// ([`vendor_sim::LiveObject::duplicate_key`]: kind, place and our reference), one line
    /// per group: every one is a failure, whatever the windows. Vendors whose objects carry no
    /// per-booking reference (Tapkey grants: two passes may want the same grant) override it.
    fn live_duplicates(&self, sim: &SimHandle) -> Vec<Object> {
        sim.state()
            .live_duplicates(Self::SIM)
            .into_iter()
            .map(|group| {
                let ids: Vec<&str> = group.iter().map(|o| o.id.as_str()).collect();
                let first = group.first();
                format!(
                    "live duplicate {:?} {} at {} ×{} (ids {})",
                    first.map(|o| o.kind),
                    first
                        .and_then(|o| o.reference.as_deref())
                        .unwrap_or("<no reference>"),
                    first.map_or("", |o| o.place.as_str()),
                    group.len(),
                    ids.join(", ")
                )
            })
            .collect()
    }

    /// Whether the tenant's connection may be offboarded with its access removed. dormakaba
    /// cannot list what its lock systems hold, so its offboard run refuses by design
    /// (docs/runbooks/offboarding.md): histories never offboard it.
    fn can_offboard(&self) -> bool {
        !matches!(Self::SIM, Vendor::Dormakaba)
    }

    /// Whether a permanent failure is one the vendor's documentation makes unavoidable (the
    /// booking's objects are then optional, and the dead letter is expected).
    fn documented_refusal(&self, _reason: &str) -> bool {
        false
    }
}

/// A one-line summary of a booking state for printed histories.
pub fn summary(body: &EventBody) -> String {
    match body {
        EventBody::Pass(p) => format!(
            "pass {:?} holder {} type {} from {} until {}",
            p.status,
            p.holder.email,
            p.pass_type,
            p.valid_from
                .map_or_else(|| "-".to_owned(), |t| t.to_rfc3339()),
            p.expires_at.to_rfc3339()
        ),
        EventBody::Reservation(r) => format!(
            "reservation {:?} {}..{} rooms {:?} plates {:?} areas {:?} mobile {}",
            r.status,
            r.arrival,
            r.departure,
            r.rooms,
            r.license_plates,
            r.common_areas,
            r.mobile_key
        ),
        EventBody::Facility(f) => format!(
            "facility {:?} {} {}..{} resident {}",
            f.status,
            f.facility_id,
            f.start.to_rfc3339(),
            f.end.to_rfc3339(),
            f.resident.email
        ),
        EventBody::KeyRequest(k) => format!("key request {:?}", k.action),
    }
}
