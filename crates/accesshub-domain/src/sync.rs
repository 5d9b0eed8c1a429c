//! Repair commands the reconciler sends to the worker owning a vendor, on the SYNC stream
//! (`sync.<vendor>.<tenant>.<key>`). Defined here because both sides parse them.
//!
//! - `apply`: the body is the booking's [`crate::Event`] at its current revision; the worker
//!   applies it even though its binding already holds that revision (the vendor drifted).
//! - `remove`: the body is a [`RemoveCommand`]: one vendor object that carries our reference
//!   but is not desired; the worker deletes (or revokes) exactly that object.

use serde::{Deserialize, Serialize};

/// Header: id of the sync run that issued the command (for logs and the run's counts).
pub const HEADER_RUN: &str = "Accesshub-Sync-Run";
/// Header: `true` — apply even if the revision equals the one in the binding.
pub const HEADER_FORCE: &str = "Accesshub-Force";
/// Header: `apply` or `remove`.
pub const HEADER_ACTION: &str = "Accesshub-Sync-Action";
/// Header: why the reconciler sent it (`missing`, `wrong`, `stray`).
pub const HEADER_REASON: &str = "Accesshub-Sync-Reason";

/// What a repair command asks the worker to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncAction {
    /// Apply the desired state in the body (an `Event`), bypassing the equal-revision skip.
    Apply,
    /// Remove the vendor object described by the body (a `RemoveCommand`).
    Remove,
}

impl SyncAction {
    /// Header value.
    pub fn as_str(self) -> &'static str {
        match self {
            SyncAction::Apply => "apply",
            SyncAction::Remove => "remove",
        }
    }
}

impl std::str::FromStr for SyncAction {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "apply" => Ok(SyncAction::Apply),
            "remove" => Ok(SyncAction::Remove),
            other => Err(format!("unknown sync action {other:?} (apply|remove)")),
        }
    }
}

/// Remove one vendor object that carries our reference but is not desired (a "stray").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoveCommand {
    /// Sync run that found it.
    pub run_id: i64,
    /// Tenant.
    pub tenant: String,
    /// Vendor wire name (`cloudpass`, `tapkey`, ...).
    pub vendor: String,
    /// Connection name within tenant × vendor.
    pub connection: String,
    /// Event kind the object was created for.
    pub kind: crate::EventKind,
    /// Booking key the reference points to.
    pub booking_key: String,
    /// Our reference on the vendor object.
    pub reference: String,
    /// The vendor's id of the object (for CloudPass `<site>/<id>`, Tapkey the grant id, ...).
    pub vendor_id: String,
}
