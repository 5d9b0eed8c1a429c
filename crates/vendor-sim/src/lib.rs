//! In-memory simulators of the access-control vendors accesshub talks to.
//!
//! The real vendor APIs cannot be reached from development machines or CI, so every worker
//! is tested against these simulators. They follow `shared/VENDORS.md` and are deliberately
//! *faithful, not agreeable*: inputs are validated and the documented errors are returned.
//!
//! One process serves four vendors, each on its own port, plus a JSON control API:
//!
//! | vendor | module | default port |
//! | --- | --- | --- |
//! | CloudPass (REST, our wire format) | [`cloudpass`] | 18081 |
//! | Tapkey (REST + OData filters) | [`tapkey`] | 18082 |
//! | iPassan (REST, form-encoded persons) | [`ipassan`] | 18083 |
//! | dormakaba Saflok / Ambiance (SOAP 1.1) | [`dormakaba`] | 18084 |
//! | control API | [`control`] | 18080 |
//!
//! Tests start everything in-process:
//!
//! ```no_run
//! # async fn demo() -> Result<(), vendor_sim::SimError> {
//! let sim = vendor_sim::start(vendor_sim::SimConfig::ephemeral()).await?;
//! sim.state().seed_demo();
//! let base = sim.cloudpass_url(); // e.g. http://127.0.0.1:41234
//! # let _ = base;
//! sim.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! The shared [`SimState`] lets tests seed fixtures, read what the vendors hold, read the
//! call log and inject faults ([`FaultRule`]) without going through HTTP; the control API
//! ([`control`]) offers the same over JSON to tests that run the binary.
//!
//! # Testing for duplicates and leaks
//!
//! Three features exist so that a test can see a duplicate or a leak that accesshub causes,
//! instead of the simulator hiding it:
//! - **Faults after commit** ([`FaultKind::TimeoutAfterCommit`], [`FaultKind::ResetAfterCommit`],
//!   [`FaultKind::Status500AfterCommit`], [`FaultKind::Status503AfterCommit`]): the vendor
//!   applies the call, then the answer is lost. Every other fault fires before the vendor
//!   does anything, so retrying after it is always safe. They match like every rule (vendor,
//!   path substring, dormakaba `path#Operation`, probability or next-N); the call log
//!   records the status the vendor really answered in [`CallRecord::committed_status`].
//! - **No server-side de-duplication** ([`SimState::set_dedupe`], `PUT /dedupe/{vendor}`): a
//!   repeated create becomes a second object, as with a vendor that has no idempotency.
//! - **Live objects** ([`SimState::live_objects`], [`SimState::live_duplicates`],
//!   `GET /live/{vendor}`): what opens a door right now, in one canonical form
//!   ([`LiveObject`]) a checker compares with the desired set. Count these, never calls.
//!
//! ```no_run
//! # async fn demo() -> Result<(), vendor_sim::SimError> {
//! use vendor_sim::{FaultKind, FaultRule, Vendor};
//! let sim = vendor_sim::start(vendor_sim::SimConfig::ephemeral()).await?;
//! sim.state().seed_demo();
//! sim.state().set_dedupe(Vendor::CloudPass, false);
//! sim.state().add_fault(
//!     FaultRule::probability(Vendor::CloudPass, FaultKind::Status503AfterCommit, 0.2)
//!         .on_path("/vehicle-bookings"),
//! );
//! // ... drive accesshub ...
//! assert!(sim.state().live_duplicates(Vendor::CloudPass).is_empty());
//! # Ok(()) }
//! ```

// Handlers use `Result<_, Response>` so that an early error *is* the vendor's answer; boxing
// every response to please this lint would only add noise in a test simulator.
#![allow(clippy::result_large_err)]

pub mod bex;
pub mod clock;
pub mod cloudpass;
pub mod control;
pub mod dormakaba;
pub mod faults;
pub mod ipassan;
pub mod live;
pub mod nexudus;
mod server;
mod state;
pub mod tapkey;
mod upstream;
mod util;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use faults::{FaultKind, FaultMode, FaultRule};
pub use live::{LiveKind, LiveObject};
pub use state::{CallRecord, SimState, Vendor};

/// Errors of the simulator itself (not vendor errors, which are HTTP/SOAP responses).
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// A listener could not be bound (port in use, bad address).
    #[error("cannot bind {what} on {addr}: {source}")]
    Bind {
        /// Which server (vendor or control API).
        what: &'static str,
        /// The address that was tried.
        addr: SocketAddr,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A fixture was rejected (unknown parent object, duplicate id, bad value).
    #[error("invalid fixture: {0}")]
    InvalidFixture(String),
    /// An unknown vendor name was given (control API paths, parsing).
    #[error("unknown vendor {0:?} (expected cloudpass, tapkey, ipassan or dormakaba)")]
    UnknownVendor(String),
}

/// Where and how the simulators listen. Port 0 lets the OS choose (see [`SimConfig::ephemeral`]).
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Address every server binds to.
    pub bind_ip: IpAddr,
    /// CloudPass REST API port.
    pub cloudpass_port: u16,
    /// Tapkey (authority + API) port.
    pub tapkey_port: u16,
    /// iPassan REST API port.
    pub ipassan_port: u16,
    /// dormakaba SOAP port (Saflok and Ambiance endpoints share it).
    pub dormakaba_port: u16,
    /// Control API port.
    pub control_port: u16,
    /// Lifetime of Tapkey access tokens; short values make token refresh testable.
    pub tapkey_token_ttl: Duration,
    /// Lifetime of CloudPass and iPassan access tokens.
    pub other_token_ttl: Duration,
    /// Seed of the RNG used for probabilistic faults and generated key data (determinism).
    pub seed: u64,
}

impl SimConfig {
    /// The fixed local ports used by `make dev` (control 18080, CloudPass 18081, Tapkey
    /// 18082, iPassan 18083, dormakaba 18084) on 127.0.0.1.
    pub fn local_defaults() -> Self {
        Self {
            bind_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            cloudpass_port: 18081,
            tapkey_port: 18082,
            ipassan_port: 18083,
            dormakaba_port: 18084,
            control_port: 18080,
            tapkey_token_ttl: Duration::from_secs(3600),
            other_token_ttl: Duration::from_secs(3600),
            seed: 42,
        }
    }

    /// All ports 0 (the OS chooses free ports) on 127.0.0.1: for tests running in parallel.
    pub fn ephemeral() -> Self {
        Self {
            cloudpass_port: 0,
            tapkey_port: 0,
            ipassan_port: 0,
            dormakaba_port: 0,
            control_port: 0,
            ..Self::local_defaults()
        }
    }
}

impl Default for SimConfig {
    fn default() -> Self {
        Self::local_defaults()
    }
}

/// A running simulator. Dropping it stops the servers too; [`SimHandle::shutdown`] also
/// waits for them.
pub struct SimHandle {
    state: SimState,
    cloudpass: SocketAddr,
    tapkey: SocketAddr,
    ipassan: SocketAddr,
    dormakaba: SocketAddr,
    control: SocketAddr,
    cancel: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for SimHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimHandle")
            .field("cloudpass", &self.cloudpass)
            .field("tapkey", &self.tapkey)
            .field("ipassan", &self.ipassan)
            .field("dormakaba", &self.dormakaba)
            .field("control", &self.control)
            .finish_non_exhaustive()
    }
}

/// Starts all four vendor simulators and the control API with empty state.
///
/// Call [`SimState::seed_demo`] (or the `seed_*` methods) on [`SimHandle::state`] to add
/// fixtures. Fails if any listener cannot be bound.
pub async fn start(cfg: SimConfig) -> Result<SimHandle, SimError> {
    let state = SimState::new(&cfg);
    let cancel = CancellationToken::new();
    let ip = cfg.bind_ip;
    let servers: [(&'static str, u16, axum::Router); 5] = [
        (
            "cloudpass",
            cfg.cloudpass_port,
            cloudpass::router(state.clone()),
        ),
        ("tapkey", cfg.tapkey_port, tapkey::router(state.clone())),
        ("ipassan", cfg.ipassan_port, ipassan::router(state.clone())),
        (
            "dormakaba",
            cfg.dormakaba_port,
            dormakaba::router(state.clone()),
        ),
        ("control", cfg.control_port, control::router(state.clone())),
    ];
    let mut addrs = Vec::with_capacity(5);
    let mut tasks = Vec::with_capacity(5);
    for (what, port, router) in servers {
        let addr = SocketAddr::new(ip, port);
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| SimError::Bind { what, addr, source })?;
        let local =
            listener
                .local_addr()
                .map_err(|source| SimError::Bind { what, addr, source })?;
        tracing::info!(server = what, %local, "vendor simulator listening");
        addrs.push(local);
        tasks.push(tokio::spawn(server::serve(
            listener,
            router,
            cancel.clone(),
        )));
    }
    Ok(SimHandle {
        state,
        cloudpass: addrs[0],
        tapkey: addrs[1],
        ipassan: addrs[2],
        dormakaba: addrs[3],
        control: addrs[4],
        cancel,
        tasks,
    })
}

impl SimHandle {
    /// CloudPass base URL; the API lives under `/api/v1`, the token at `/oauth/token`.
    pub fn cloudpass_url(&self) -> String {
        format!("http://{}", self.cloudpass)
    }

    /// Tapkey base URL: the authority (`/connect/token`) and the API (`/api/v1`) share it.
    pub fn tapkey_url(&self) -> String {
        format!("http://{}", self.tapkey)
    }

    /// iPassan base URL; everything lives under `/api/v1`.
    pub fn ipassan_url(&self) -> String {
        format!("http://{}", self.ipassan)
    }

    /// The Saflok Messenger SOAP endpoint URL (`.../MessengerPMSWS`; WSDL at `?wsdl`).
    pub fn dormakaba_url(&self) -> String {
        format!("http://{}{}", self.dormakaba, dormakaba::SAFLOK_PATH)
    }

    /// The dormakaba SOAP listener (connections name host and port, not a URL).
    pub fn dormakaba_addr(&self) -> SocketAddr {
        self.dormakaba
    }

    /// The Ambiance SOAP endpoint URL (`.../AmbiancePMSWS`; WSDL at `?wsdl`).
    pub fn ambiance_url(&self) -> String {
        format!("http://{}{}", self.dormakaba, dormakaba::AMBIANCE_PATH)
    }

    /// Control API base URL (`/reset`, `/state/{vendor}`, `/calls`, `/faults`, `/seed/{vendor}`).
    pub fn control_url(&self) -> String {
        format!("http://{}", self.control)
    }

    /// The shared state: seed fixtures, read vendor state and call logs, inject faults.
    pub fn state(&self) -> &SimState {
        &self.state
    }

    /// Stops all servers (open connections are closed) and waits for them to finish.
    pub async fn shutdown(mut self) {
        self.cancel.cancel();
        for task in std::mem::take(&mut self.tasks) {
            let _ = task.await;
        }
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}
