//! Tapkey simulator (follows the public Tapkey Web API: OAuth2 client credentials, owner
//! accounts, bound locks, contacts, grants with OData `$filter`).
//!
//! Rules enforced: times are ISO-8601 UTC with milliseconds (`2019-02-01T10:00:00.000Z`,
//! anything else 400); contact PUT is create-or-return (an existing contact is returned
//! unchanged) and only `PATCH .../Contacts/{id}` changes a title or comment; tokens expire after `SimConfig::tapkey_token_ttl` (401 afterwards);
//! requested scopes must be allowed for the client and each endpoint needs its scope (403);
//! unknown owner → 404, owner not linked to the client → 403; grants need a known bound lock
//! and `validBefore > validFrom` (400); an identical active grant → 409 ("desired state
//! already present"; issued again with de-duplication off, see [`crate::SimState::set_dedupe`]); revoking a revoked
//! grant → 409 ("desired state already present"); an owner's optional grant limit → 402.
//! Contacts keep their `comment` (returned in contact and in embedded grant documents); it is
//! not an OData filter field (400), as filtering on it is not documented.
//! Error bodies are `{errorCode, message}` (our choice; the public docs do not fix one).

mod api;
mod odata;

use std::collections::HashMap;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::SimError;
use crate::state::{SimState, lock};

pub(crate) use api::router;

/// Every scope a Tapkey client of accesshub uses.
pub const ALL_SCOPES: [&str; 5] = [
    "read:owneraccounts",
    "read:core:entities",
    "write:core:entities",
    "read:grants",
    "write:grants",
];

/// An OAuth2 client (client-credentials grant).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TapkeyClient {
    /// Client id.
    pub client_id: String,
    /// Client secret.
    pub client_secret: String,
    /// Scopes the client may request (default: [`ALL_SCOPES`]).
    #[serde(default = "all_scopes")]
    pub scopes: Vec<String>,
    /// Owner accounts the client may manage (others → 403).
    #[serde(default)]
    pub owner_ids: Vec<String>,
}

fn all_scopes() -> Vec<String> {
    ALL_SCOPES.iter().map(|s| (*s).to_owned()).collect()
}

/// An owner account.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Owner {
    /// Owner account id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Plan limit on active grants; exceeding it answers 402.
    #[serde(default)]
    pub grant_limit: Option<usize>,
}

/// A lock bound to an owner account.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BoundLock {
    /// Bound lock id.
    pub id: String,
    /// Owning account.
    pub owner_account_id: String,
    /// Title.
    pub title: String,
    /// Description.
    #[serde(default)]
    pub description: Option<String>,
    /// Inactive locks reject new grants (400).
    #[serde(default = "yes")]
    pub active: bool,
    /// Physical lock id.
    #[serde(default)]
    pub physical_lock_id: String,
    /// Lock type id.
    #[serde(default)]
    pub lock_type_id: String,
}

fn yes() -> bool {
    true
}

/// A contact (the person a grant is for), identified by e-mail.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Contact {
    /// Contact id.
    pub id: String,
    /// Owning account.
    pub owner_id: String,
    /// E-mail address.
    pub identifier: String,
    /// Identity provider, `tapkey`.
    pub ip_id: String,
    /// Title.
    pub title: Option<String>,
    /// Comment.
    pub comment: Option<String>,
}

/// A grant: a contact may open a bound lock in a time window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Grant {
    /// Grant id.
    pub id: String,
    /// Owning account.
    pub owner_account_id: String,
    /// The lock.
    pub bound_lock_id: String,
    /// The contact.
    pub contact_id: String,
    /// Start.
    pub valid_from: DateTime<Utc>,
    /// Exclusive end; `None` = unlimited.
    pub valid_before: Option<DateTime<Utc>>,
    /// Optional iCal recurrence.
    pub time_restriction_ical: Option<String>,
    /// `Ok` or `Revoked`.
    pub state: String,
    /// False once revoked.
    pub active: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct Token {
    pub(crate) client_id: String,
    pub(crate) scopes: Vec<String>,
    pub(crate) expires_at: DateTime<Utc>,
}

/// Everything the Tapkey simulator holds.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TapkeyState {
    /// OAuth clients.
    pub clients: Vec<TapkeyClient>,
    /// Owner accounts.
    pub owners: Vec<Owner>,
    /// Bound locks of all owners.
    pub bound_locks: Vec<BoundLock>,
    /// Contacts of all owners.
    pub contacts: Vec<Contact>,
    /// Grants of all owners, in creation order.
    pub grants: Vec<Grant>,
    #[serde(skip)]
    pub(crate) tokens: HashMap<String, Token>,
    /// Lookups by id, e-mail and contact, so a request costs the same with 100,000 grants as
    /// with ten (the simulator is a test peer: it must not be what a benchmark measures).
    #[serde(skip)]
    index: Index,
}

/// Positions in [`TapkeyState::contacts`] / [`TapkeyState::grants`] (neither ever shrinks:
/// grants are revoked, not deleted) plus the active-grant count per owner (the 402 limit).
#[derive(Debug, Default)]
struct Index {
    contact_by_ident: HashMap<(String, String), usize>,
    contact_by_id: HashMap<String, usize>,
    grant_by_id: HashMap<String, usize>,
    grants_by_contact: HashMap<String, Vec<usize>>,
    active_by_owner: HashMap<String, usize>,
}

impl TapkeyState {
    /// The owner's contact with this identifier (e-mail, case-insensitive).
    pub(crate) fn contact_by_identifier(&self, owner: &str, identifier: &str) -> Option<usize> {
        self.index
            .contact_by_ident
            .get(&(owner.to_owned(), identifier.to_ascii_lowercase()))
            .copied()
    }

    /// Position of the owner's contact with this id.
    pub(crate) fn contact_position(&self, owner: &str, id: &str) -> Option<usize> {
        let at = *self.index.contact_by_id.get(id)?;
        (self.contacts.get(at)?.owner_id == owner).then_some(at)
    }

    /// The owner's contact with this id.
    pub(crate) fn contact_by_id(&self, owner: &str, id: &str) -> Option<&Contact> {
        self.contacts.get(self.contact_position(owner, id)?)
    }

    /// Adds a contact (the caller checked that its identifier is new for the owner).
    pub(crate) fn push_contact(&mut self, c: Contact) {
        let at = self.contacts.len();
        self.index
            .contact_by_ident
            .insert((c.owner_id.clone(), c.identifier.to_ascii_lowercase()), at);
        self.index.contact_by_id.insert(c.id.clone(), at);
        self.contacts.push(c);
    }

    /// Positions of a contact's grants, oldest first.
    pub(crate) fn grants_of_contact(&self, contact_id: &str) -> &[usize] {
        self.index
            .grants_by_contact
            .get(contact_id)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// Position of the owner's grant with this id.
    pub(crate) fn grant_by_id(&self, owner: &str, id: &str) -> Option<usize> {
        let at = *self.index.grant_by_id.get(id)?;
        (self.grants.get(at)?.owner_account_id == owner).then_some(at)
    }

    /// Active grants of an owner.
    pub(crate) fn active_grants_of_owner(&self, owner: &str) -> usize {
        self.index.active_by_owner.get(owner).copied().unwrap_or(0)
    }

    /// Adds a grant.
    pub(crate) fn push_grant(&mut self, g: Grant) {
        let at = self.grants.len();
        self.index.grant_by_id.insert(g.id.clone(), at);
        self.index
            .grants_by_contact
            .entry(g.contact_id.clone())
            .or_default()
            .push(at);
        if g.active {
            *self
                .index
                .active_by_owner
                .entry(g.owner_account_id.clone())
                .or_default() += 1;
        }
        self.grants.push(g);
    }

    /// Revokes the grant at `at`; false when it was not active.
    pub(crate) fn revoke_at(&mut self, at: usize) -> bool {
        let Some(g) = self.grants.get_mut(at) else {
            return false;
        };
        if !g.active {
            return false;
        }
        g.active = false;
        g.state = "Revoked".to_owned();
        if let Some(n) = self.index.active_by_owner.get_mut(&g.owner_account_id) {
            *n = n.saturating_sub(1);
        }
        true
    }
}

/// Fixture document for [`SimState::seed_tapkey`] / `POST /seed/tapkey` (upsert by id).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TapkeyFixture {
    /// Clients.
    #[serde(default)]
    pub clients: Vec<TapkeyClient>,
    /// Owner accounts.
    #[serde(default)]
    pub owners: Vec<Owner>,
    /// Bound locks (their owner must exist).
    #[serde(default)]
    pub bound_locks: Vec<BoundLock>,
}

/// Demo client id.
pub const DEMO_CLIENT_ID: &str = "demo-tapkey-client";
/// Demo client secret.
pub const DEMO_CLIENT_SECRET: &str = "demo-tapkey-secret";
/// Demo owner account.
pub const DEMO_OWNER_ID: &str = "tk-owner-demo";
/// Demo lock "Front door".
pub const DEMO_LOCK_FRONT: &str = "tk-lock-front-door";
/// Demo lock "Meeting room".
pub const DEMO_LOCK_MEETING: &str = "tk-lock-meeting-room";

impl SimState {
    /// Adds or replaces Tapkey clients, owners and bound locks.
    pub fn seed_tapkey(&self, f: TapkeyFixture) -> Result<(), SimError> {
        let mut s = lock(&self.inner.tapkey);
        for c in f.clients {
            s.clients.retain(|x| x.client_id != c.client_id);
            s.clients.push(c);
        }
        for o in f.owners {
            s.owners.retain(|x| x.id != o.id);
            s.owners.push(o);
        }
        for l in f.bound_locks {
            if !s.owners.iter().any(|o| o.id == l.owner_account_id) {
                return Err(SimError::InvalidFixture(format!(
                    "bound lock {} names unknown owner {}",
                    l.id, l.owner_account_id
                )));
            }
            s.bound_locks.retain(|x| x.id != l.id);
            s.bound_locks.push(l);
        }
        Ok(())
    }

    /// Adds a client allowed every scope on the given owners.
    pub fn tapkey_add_client(&self, client_id: &str, client_secret: &str, owner_ids: &[&str]) {
        let mut s = lock(&self.inner.tapkey);
        s.clients.retain(|x| x.client_id != client_id);
        s.clients.push(TapkeyClient {
            client_id: client_id.to_owned(),
            client_secret: client_secret.to_owned(),
            scopes: all_scopes(),
            owner_ids: owner_ids.iter().map(|o| (*o).to_owned()).collect(),
        });
    }

    /// Adds an owner account.
    pub fn tapkey_add_owner(&self, id: &str, name: &str) {
        let mut s = lock(&self.inner.tapkey);
        s.owners.retain(|x| x.id != id);
        s.owners.push(Owner {
            id: id.to_owned(),
            name: name.to_owned(),
            grant_limit: None,
        });
    }

    /// Binds an (active) lock to an existing owner.
    pub fn tapkey_add_lock(
        &self,
        owner_id: &str,
        lock_id: &str,
        title: &str,
    ) -> Result<(), SimError> {
        self.seed_tapkey(TapkeyFixture {
            bound_locks: vec![BoundLock {
                id: lock_id.to_owned(),
                owner_account_id: owner_id.to_owned(),
                title: title.to_owned(),
                description: None,
                active: true,
                physical_lock_id: format!("phys-{lock_id}"),
                lock_type_id: "TLCK".to_owned(),
            }],
            ..TapkeyFixture::default()
        })
    }

    /// All grants (every owner), in creation order.
    pub fn tapkey_grants(&self) -> Vec<Grant> {
        lock(&self.inner.tapkey).grants.clone()
    }

    /// A contact made by hand in the portal (create-or-return by e-mail; `comment` set when
    /// given); its id.
    pub fn tapkey_add_contact(&self, owner_id: &str, email: &str, comment: Option<&str>) -> String {
        let mut s = lock(&self.inner.tapkey);
        api::upsert_contact(&mut s, owner_id, email, None, comment.map(str::to_owned)).id
    }

    /// A grant issued by hand in the portal (no checks: the portal's own); its id.
    pub fn tapkey_add_grant(
        &self,
        owner_id: &str,
        lock_id: &str,
        contact_id: &str,
        valid_from: DateTime<Utc>,
        valid_before: Option<DateTime<Utc>>,
    ) -> String {
        let g = Grant {
            id: crate::state::new_token(),
            owner_account_id: owner_id.to_owned(),
            bound_lock_id: lock_id.to_owned(),
            contact_id: contact_id.to_owned(),
            valid_from,
            valid_before,
            time_restriction_ical: None,
            state: "Ok".to_owned(),
            active: true,
        };
        let id = g.id.clone();
        lock(&self.inner.tapkey).push_grant(g);
        id
    }

    /// All contacts (every owner).
    pub fn tapkey_contacts(&self) -> Vec<Contact> {
        lock(&self.inner.tapkey).contacts.clone()
    }

    pub(crate) fn seed_tapkey_demo(&self) {
        self.tapkey_add_owner(DEMO_OWNER_ID, "Demo Coworking B.V.");
        self.tapkey_add_client(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, &[DEMO_OWNER_ID]);
        let _ = self.tapkey_add_lock(DEMO_OWNER_ID, DEMO_LOCK_FRONT, "Front door");
        let _ = self.tapkey_add_lock(DEMO_OWNER_ID, DEMO_LOCK_MEETING, "Meeting room");
    }
}

/// `{errorCode, message}` with the given status.
pub(crate) fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        axum::Json(serde_json::json!({"errorCode": code, "message": message})),
    )
        .into_response()
}
