//! The shared, in-memory state of all simulators: vendor objects, the call log, the fault
//! rules and the simulated clock. Cheap to clone (an `Arc`).

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::faults::{FaultEngine, FaultRule};
use crate::{SimConfig, SimError, cloudpass, dormakaba, ipassan, tapkey};

/// The four simulated vendors (dormakaba covers both Saflok and Ambiance).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Vendor {
    /// CloudPass vehicle bookings.
    CloudPass,
    /// Tapkey grants.
    Tapkey,
    /// iPassan persons and asset bookings.
    #[serde(rename = "ipassan")]
    IPassan,
    /// dormakaba Saflok 6000 and Ambiance (SOAP).
    Dormakaba,
}

impl Vendor {
    /// All vendors, in port order.
    pub const ALL: [Vendor; 4] = [
        Vendor::CloudPass,
        Vendor::Tapkey,
        Vendor::IPassan,
        Vendor::Dormakaba,
    ];

    /// The lowercase name used in the control API and in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Vendor::CloudPass => "cloudpass",
            Vendor::Tapkey => "tapkey",
            Vendor::IPassan => "ipassan",
            Vendor::Dormakaba => "dormakaba",
        }
    }
}

impl fmt::Display for Vendor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Vendor {
    type Err = SimError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "cloudpass" => Ok(Vendor::CloudPass),
            "tapkey" => Ok(Vendor::Tapkey),
            "ipassan" => Ok(Vendor::IPassan),
            "dormakaba" | "saflok" | "ambiance" => Ok(Vendor::Dormakaba),
            _ => Err(SimError::UnknownVendor(s.to_owned())),
        }
    }
}

/// One request received by a vendor simulator, logged so tests can prove exactly-once
/// effects (e.g. "one POST per reference") and see what a client really sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallRecord {
    /// Which vendor received it.
    pub vendor: Vendor,
    /// HTTP method, e.g. `POST`.
    pub method: String,
    /// Request path with query string, e.g. `/api/v1/sites/s1/vehicle-bookings?page=1`.
    pub path: String,
    /// The SOAP operation for dormakaba calls (e.g. `CreateNewBooking`), else `None`.
    pub operation: Option<String>,
    /// HTTP status answered; 0 when a fault hung or dropped the connection.
    pub status: u16,
    /// When the request arrived (simulated clock).
    pub at: DateTime<Utc>,
    /// The first bytes of the request body (lossy UTF-8).
    pub body_summary: String,
    /// The first bytes of the response body (lossy UTF-8); empty for hang/drop.
    pub response_summary: String,
    /// Whether an injected fault decided the answer (not latency alone).
    pub injected_fault: bool,
    /// For an after-commit fault: the status the vendor really answered (its change is
    /// applied) before the fault lost that answer; `None` otherwise.
    #[serde(default)]
    pub committed_status: Option<u16>,
}

/// Shared simulator state. Clone freely: all clones see the same data.
#[derive(Clone)]
pub struct SimState {
    pub(crate) inner: Arc<Inner>,
}

impl fmt::Debug for SimState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimState").finish_non_exhaustive()
    }
}

pub(crate) struct Inner {
    pub(crate) tapkey_token_ttl: Duration,
    pub(crate) other_token_ttl: Duration,
    pub(crate) seed: u64,
    pub(crate) clock_offset: Mutex<chrono::Duration>,
    pub(crate) cloudpass: Mutex<cloudpass::CloudPassState>,
    pub(crate) tapkey: Mutex<tapkey::TapkeyState>,
    pub(crate) ipassan: Mutex<ipassan::IpassanState>,
    pub(crate) dormakaba: Mutex<dormakaba::DormakabaState>,
    pub(crate) calls: Mutex<Vec<CallRecord>>,
    pub(crate) faults: Mutex<FaultEngine>,
    /// Vendors whose server-side de-duplication is switched off ([`SimState::set_dedupe`]).
    pub(crate) no_dedupe: Mutex<HashSet<Vendor>>,
    /// Whether Tapkey's `GET .../Grants` applies `$filter` ([`SimState::set_tapkey_grant_filter`]).
    pub(crate) tapkey_grant_filter: Mutex<bool>,
}

/// Locks a mutex, recovering from poisoning (a panicking test must not wedge the simulator).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl SimState {
    /// Empty state with the token lifetimes and RNG seed of `cfg`.
    pub fn new(cfg: &SimConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                tapkey_token_ttl: cfg.tapkey_token_ttl,
                other_token_ttl: cfg.other_token_ttl,
                seed: cfg.seed,
                clock_offset: Mutex::new(chrono::Duration::zero()),
                cloudpass: Mutex::new(cloudpass::CloudPassState::default()),
                tapkey: Mutex::new(tapkey::TapkeyState::default()),
                ipassan: Mutex::new(ipassan::IpassanState::default()),
                dormakaba: Mutex::new(dormakaba::DormakabaState::new(cfg.seed)),
                calls: Mutex::new(Vec::new()),
                faults: Mutex::new(FaultEngine::new(cfg.seed)),
                no_dedupe: Mutex::new(HashSet::new()),
                tapkey_grant_filter: Mutex::new(true),
            }),
        }
    }

    /// The simulated "now": wall clock plus whatever [`SimState::advance_clock`] added.
    /// Token expiry and dormakaba's date checks use it.
    pub fn now(&self) -> DateTime<Utc> {
        Utc::now() + *lock(&self.inner.clock_offset)
    }

    /// Moves the simulated clock forward, e.g. to expire tokens without sleeping.
    pub fn advance_clock(&self, by: Duration) {
        let by = chrono::Duration::from_std(by).unwrap_or(chrono::Duration::zero());
        *lock(&self.inner.clock_offset) += by;
    }

    /// Forgets everything: vendor objects, tokens, call log, fault rules (RNG re-seeded with
    /// the configured seed) and the clock offset. Fixtures must be seeded again.
    pub fn reset(&self) {
        *lock(&self.inner.clock_offset) = chrono::Duration::zero();
        *lock(&self.inner.cloudpass) = cloudpass::CloudPassState::default();
        *lock(&self.inner.tapkey) = tapkey::TapkeyState::default();
        *lock(&self.inner.ipassan) = ipassan::IpassanState::default();
        *lock(&self.inner.dormakaba) = dormakaba::DormakabaState::new(self.inner.seed);
        lock(&self.inner.calls).clear();
        *lock(&self.inner.faults) = FaultEngine::new(self.inner.seed);
        lock(&self.inner.no_dedupe).clear();
        *lock(&self.inner.tapkey_grant_filter) = true;
    }

    /// Whether Tapkey's grant list applies OData `$filter` (default) or ignores it.
    ///
    /// VENDORS.md: OData filtering is documented for BoundLocks, not for Grants, so a client
    /// must filter grants itself if the server ignores `$filter`. Off, the simulator ignores it
    /// (`$skip`/`$top` still apply) and answers every grant of the owner, so a client that
    /// trusts the server-side filter acts on other contacts' grants here, not in production.
    pub fn set_tapkey_grant_filter(&self, honoured: bool) {
        *lock(&self.inner.tapkey_grant_filter) = honoured;
    }

    /// See [`SimState::set_tapkey_grant_filter`].
    pub fn tapkey_grant_filter_honoured(&self) -> bool {
        *lock(&self.inner.tapkey_grant_filter)
    }

    /// Switches a vendor's server-side de-duplication on (the default) or off.
    ///
    /// Off, the simulator behaves as a real vendor may: it does not refuse or absorb a
    /// repeated create, so a duplicate accesshub causes becomes a second live object that
    /// [`SimState::live_objects`] shows. Per vendor:
    /// - CloudPass: a second create with the same `reference` at a site is accepted (no 409);
    ///   a list filtered by `reference` returns every match.
    /// - Tapkey: an identical active grant is issued again (no 409).
    /// - dormakaba: `CreateNewBooking` on a live `ReservationID` creates a second booking
    ///   record (and encodes a new key) instead of answering the existing one; operations on
    ///   the reservation act on its oldest live record.
    /// - iPassan: nothing changes — the simulator never de-duplicates asset bookings by
    ///   reference; "one booking per time slot" stays, it is documented asset configuration
    ///   (use an asset without it to see duplicates).
    pub fn set_dedupe(&self, vendor: Vendor, enabled: bool) {
        let mut off = lock(&self.inner.no_dedupe);
        if enabled {
            off.remove(&vendor);
        } else {
            off.insert(vendor);
        }
    }

    /// Whether the vendor's server-side de-duplication is on (see [`SimState::set_dedupe`]).
    pub fn dedupe(&self, vendor: Vendor) -> bool {
        !lock(&self.inner.no_dedupe).contains(&vendor)
    }

    /// Seeds the demo fixtures of every vendor (documented in `docs/simulators.md`);
    /// the binary does this at start-up so `make dev` has something to talk to.
    pub fn seed_demo(&self) {
        self.seed_cloudpass_demo();
        self.seed_tapkey_demo();
        self.seed_ipassan_demo();
        self.seed_dormakaba_demo();
    }

    /// Every call received so far, oldest first.
    pub fn calls(&self) -> Vec<CallRecord> {
        lock(&self.inner.calls).clone()
    }

    /// The calls received by one vendor, oldest first.
    pub fn calls_for(&self, vendor: Vendor) -> Vec<CallRecord> {
        lock(&self.inner.calls)
            .iter()
            .filter(|c| c.vendor == vendor)
            .cloned()
            .collect()
    }

    /// How many calls of `vendor` had this method and a path (or SOAP operation) containing
    /// `path_contains`: the usual exactly-once assertion.
    pub fn count_calls(&self, vendor: Vendor, method: &str, path_contains: &str) -> usize {
        lock(&self.inner.calls)
            .iter()
            .filter(|c| {
                c.vendor == vendor
                    && c.method.eq_ignore_ascii_case(method)
                    && (c.path.contains(path_contains)
                        || c.operation
                            .as_deref()
                            .is_some_and(|o| o.contains(path_contains)))
            })
            .count()
    }

    /// Empties the call log (vendor state is kept).
    pub fn clear_calls(&self) {
        lock(&self.inner.calls).clear();
    }

    pub(crate) fn record_call(&self, rec: CallRecord) {
        lock(&self.inner.calls).push(rec);
    }

    /// Adds a fault rule; rules are evaluated in insertion order for every matching call.
    pub fn add_fault(&self, rule: FaultRule) {
        lock(&self.inner.faults).add(rule);
    }

    /// The fault rules still active (a `NextN` rule disappears once used up).
    pub fn faults(&self) -> Vec<FaultRule> {
        lock(&self.inner.faults).rules()
    }

    /// Removes every fault rule (the RNG keeps its position).
    pub fn clear_faults(&self) {
        lock(&self.inner.faults).clear();
    }

    /// Re-seeds the fault RNG so a probabilistic scenario can be replayed exactly.
    pub fn reseed_faults(&self, seed: u64) {
        lock(&self.inner.faults).reseed(seed);
    }

    /// A JSON snapshot of one vendor's state (what `GET /state/{vendor}` returns).
    pub fn snapshot(&self, vendor: Vendor) -> serde_json::Value {
        let v = match vendor {
            Vendor::CloudPass => serde_json::to_value(&*lock(&self.inner.cloudpass)),
            Vendor::Tapkey => serde_json::to_value(&*lock(&self.inner.tapkey)),
            Vendor::IPassan => serde_json::to_value(&*lock(&self.inner.ipassan)),
            Vendor::Dormakaba => serde_json::to_value(&*lock(&self.inner.dormakaba)),
        };
        v.unwrap_or_else(|e| serde_json::json!({ "error": e.to_string() }))
    }

    /// Applies a fixture document (the JSON accepted by `POST /seed/{vendor}`).
    pub fn seed_json(&self, vendor: Vendor, fixture: serde_json::Value) -> Result<(), SimError> {
        let bad = |e: serde_json::Error| SimError::InvalidFixture(e.to_string());
        match vendor {
            Vendor::CloudPass => self.seed_cloudpass(serde_json::from_value(fixture).map_err(bad)?),
            Vendor::Tapkey => self.seed_tapkey(serde_json::from_value(fixture).map_err(bad)?),
            Vendor::IPassan => self.seed_ipassan(serde_json::from_value(fixture).map_err(bad)?),
            Vendor::Dormakaba => self.seed_dormakaba(serde_json::from_value(fixture).map_err(bad)?),
        }
    }
}

/// Random opaque token / id text.
pub(crate) fn new_token() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}
