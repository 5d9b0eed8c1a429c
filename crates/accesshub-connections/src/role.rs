//! What an admin token may do. One definition for the admin API, which stores and checks it,
//! and the console, which shows or hides its controls by it.

use serde::{Deserialize, Serialize};

/// What a token may do; each role includes the ones before it.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Reads tenants, connections (redacted), sync runs, lookups and the audit log.
    Viewer,
    /// Also requests sync runs and applies, disables and deletes connections; replays and
    /// purges dead letters.
    Operator,
    /// Also manages tenants, their webhook secrets and site defaults, and tokens.
    Admin,
}

impl Role {
    /// Name stored in `api_tokens.role`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    /// Parses a stored or typed role name.
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "viewer" => Some(Role::Viewer),
            "operator" => Some(Role::Operator),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
