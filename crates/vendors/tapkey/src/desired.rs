//! What Tapkey should hold for a pass: pure, so the worker applies it and the reconciler
//! compares the vendor with it, never a second implementation.

use accesshub_connections::TapkeySettings;
use accesshub_domain::Pass;
use chrono::{DateTime, DurationRound as _, Utc};

/// Millisecond precision, as Tapkey stores grant times (comparisons must match it).
pub fn ms(t: DateTime<Utc>) -> DateTime<Utc> {
    t.duration_trunc(chrono::Duration::milliseconds(1))
        .unwrap_or(t)
}

/// The pass type is mapped to no lock of the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("pass type {0:?} is not mapped to any Tapkey lock")]
pub struct Unmapped(pub String);

/// The grants a pass should have: one per lock mapped to its pass type, each valid until the
/// pass expires; none when the pass wants no access now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredGrants<'s> {
    /// Locks mapped to the pass type (`None`: not mapped). Known even when no access is
    /// wanted, so grants of ours on them can still be recognised and revoked.
    pub locks: Option<&'s [String]>,
    /// Whether the pass wants access now.
    pub wants: bool,
    /// End of every grant: the pass's expiry, at Tapkey's precision.
    pub valid_before: DateTime<Utc>,
}

impl<'s> DesiredGrants<'s> {
    /// The locks that should carry a grant (none when no access is wanted).
    pub fn wanted_locks(&self, pass_type: &str) -> Result<&'s [String], Unmapped> {
        if !self.wants {
            return Ok(&[]);
        }
        self.locks.ok_or_else(|| Unmapped(pass_type.to_owned()))
    }
}

/// What Tapkey should hold for `pass` at `now`.
pub fn desired_grants<'s>(
    settings: &'s TapkeySettings,
    pass: &Pass,
    now: DateTime<Utc>,
) -> DesiredGrants<'s> {
    DesiredGrants {
        locks: settings.pass_types.get(&pass.pass_type).map(Vec::as_slice),
        wants: pass.wants_access(now),
        valid_before: ms(pass.expires_at),
    }
}
