//! The Tapkey Web API client — the only module that knows Tapkey's wire format
//! (shared/VENDORS.md: contacts by e-mail, grants per bound lock, revoke).

use std::{collections::HashMap, sync::Arc};

use accesshub_connections::TapkeySettings;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use vendor_http::{
    AuthedClient, HttpSettings, Method, RateLimiter, StatusCode, TokenSourceConfig, Url,
    VendorClient, VendorError,
};

/// Scopes the worker needs (read owners/locks/contacts/grants, write contacts and grants).
pub const SCOPES: &str =
    "read:owneraccounts read:core:entities write:core:entities read:grants write:grants";

/// A Tapkey contact (an identity within the owner account).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Contact {
    /// Contact id.
    pub id: String,
    /// E-mail.
    pub identifier: String,
    /// Free text; ours carry [`crate::desired::marker`] (how a contact is recognised as
    /// accesshub's without our records).
    #[serde(default)]
    pub comment: Option<String>,
}

/// A grant: a contact's access to one bound lock for a time window.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Grant {
    /// Grant id.
    pub id: String,
    /// Lock.
    pub bound_lock_id: String,
    /// Holder.
    pub contact_id: String,
    /// Start.
    pub valid_from: DateTime<Utc>,
    /// End (exclusive); `None` = unlimited.
    pub valid_before: Option<DateTime<Utc>>,
    /// Still effective.
    #[serde(default)]
    pub active: bool,
    /// Recurrence restriction (we never set one).
    #[serde(default)]
    pub time_restriction_ical: Option<String>,
    /// The holder as Tapkey embeds it in grant documents (its `comment` says whether the
    /// contact is ours); absent if the server does not embed it.
    #[serde(default)]
    pub contact: Option<Contact>,
}

/// A lock bound to the owner account.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BoundLock {
    /// Lock id (what `pass_types` maps to).
    pub id: String,
    /// Display name.
    pub title: String,
    /// Whether grants can be issued.
    #[serde(default)]
    pub active: bool,
}

/// Tapkey times: ISO-8601 UTC with milliseconds.
pub fn ts(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// OData string literal (`'` doubled).
fn lit(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Most cached contact ids per client (the cache is cleared when it is full).
const CONTACT_CACHE_MAX: usize = 100_000;

/// (lower-case e-mail, title) → contact id.
type ContactCache = std::sync::Mutex<HashMap<(String, Option<String>), String>>;

/// `PUT /Contacts` body (borrowed: no JSON tree built per call).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ContactBody<'a> {
    ip_id: &'static str,
    identifier: &'a str,
    title: Option<&'a str>,
    comment: &'a str,
}

/// `PATCH /Contacts/{id}` body: the comment only (the title is the holder's name, left as
/// the PUT or a human set it).
#[derive(Serialize)]
struct ContactPatch<'a> {
    comment: &'a str,
}

/// `PUT /Grants` body. Always by `contactId`: a grant naming `contact: {identifier}` would
/// let Tapkey create the contact without our marker.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct GrantBody<'a> {
    bound_lock_id: &'a str,
    contact_id: &'a str,
    valid_from: String,
    valid_before: String,
}

/// One owner account of one connection.
#[derive(Debug)]
pub struct TapkeyClient {
    http: AuthedClient,
    api: String,
    owner: String,
    /// `{api}/Owners/{owner}/Contacts` and `.../Grants`, parsed once (a request built from
    /// a string parses it again every time).
    contacts_url: Url,
    grants_url: Url,
    /// The comment every contact we PUT carries ([`crate::desired::marker`] of the tenant).
    marker: String,
    /// Contacts this client has created or confirmed (PUT answered), keyed with the title
    /// sent, so a repeat holder costs no PUT and a changed name still updates the title.
    /// A PUT is create-or-return, so skipping it for a known contact changes nothing at
    /// Tapkey; a contact deleted there makes the grant PUT fail, and the caller forgets it.
    contacts: ContactCache,
}

impl TapkeyClient {
    /// A client for a connection of `tenant`; tokens are cached inside.
    pub fn new(
        s: &TapkeySettings,
        tenant: &str,
        limiter: Arc<RateLimiter>,
    ) -> Result<Self, VendorError> {
        let client = VendorClient::new("tapkey", HttpSettings::default())?.with_rate_limit(limiter);
        let http = AuthedClient::new(
            client,
            TokenSourceConfig {
                token_url: format!("{}/connect/token", s.authority_url.trim_end_matches('/')),
                client_id: s.client_id.clone(),
                client_secret: s.client_secret.expose().to_owned(),
                scope: Some(SCOPES.to_owned()),
            },
        );
        let api = format!("{}/api/v1", s.base_url.trim_end_matches('/'));
        let owner = s.owner_account_id.clone();
        let parse = |u: String| {
            Url::parse(&u).map_err(|e| VendorError::Config(format!("Tapkey URL {u:?}: {e}")))
        };
        Ok(TapkeyClient {
            http,
            contacts_url: parse(format!("{api}/Owners/{owner}/Contacts"))?,
            grants_url: parse(format!("{api}/Owners/{owner}/Grants"))?,
            api,
            owner,
            marker: crate::desired::marker(tenant),
            contacts: ContactCache::default(),
        })
    }

    fn contact_key(email: &str, title: Option<&str>) -> (String, Option<String>) {
        (email.to_ascii_lowercase(), title.map(str::to_owned))
    }

    /// The contact id for `email` (and `title`): from the cache, else by [`Self::put_contact`],
    /// with our marker appended to its comment by a PATCH when the contact existed unmarked.
    /// The flag says whether it came from the cache (see [`Self::forget_contact`]).
    pub async fn ensure_contact(
        &self,
        email: &str,
        title: Option<&str>,
    ) -> Result<(String, bool), VendorError> {
        let key = Self::contact_key(email, title);
        if let Some(id) = self
            .contacts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return Ok((id.clone(), true));
        }
        let mut c = self.put_contact(email, title).await?;
        if !crate::desired::carries_marker(c.comment.as_deref(), &self.marker) {
            // The PUT returns an existing contact unchanged (made by hand, or before the
            // marker): mark it, keeping whatever a human wrote.
            let comment = crate::desired::with_marker(c.comment.as_deref(), &self.marker);
            c = self.patch_contact_comment(&c.id, &comment).await?;
        }
        let mut map = self.contacts.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= CONTACT_CACHE_MAX {
            map.clear();
        }
        map.insert(key, c.id.clone());
        Ok((c.id, false))
    }

    /// Whether the contact of `email` (with `title`) is cached.
    pub fn knows_contact(&self, email: &str, title: Option<&str>) -> bool {
        self.contacts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(&Self::contact_key(email, title))
    }

    /// Drops a cached contact id Tapkey no longer knows.
    pub fn forget_contact(&self, email: &str, title: Option<&str>) {
        self.contacts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&Self::contact_key(email, title));
    }

    fn url(&self, path: &str) -> String {
        format!("{}/Owners/{}{path}", self.api, self.owner)
    }

    /// Creates or returns the contact for `email` (PUT is create-or-return: an existing
    /// contact comes back unchanged, see [`Self::ensure_contact`]), marked as ours in its
    /// `comment` when created.
    pub async fn put_contact(
        &self,
        email: &str,
        title: Option<&str>,
    ) -> Result<Contact, VendorError> {
        let url = &self.contacts_url;
        let body = ContactBody {
            ip_id: "tapkey",
            identifier: email,
            title,
            comment: &self.marker,
        };
        self.http
            .send_json("put_contact", |h| {
                h.request(Method::PUT, url.clone()).json(&body)
            })
            .await
    }

    /// Sets a contact's `comment` (`PATCH .../Contacts/{id}`: only title and comment can
    /// change) and returns the contact.
    pub async fn patch_contact_comment(
        &self,
        contact_id: &str,
        comment: &str,
    ) -> Result<Contact, VendorError> {
        let url = self.url(&format!("/Contacts/{contact_id}"));
        let body = ContactPatch { comment };
        self.http
            .send_json("patch_contact", |h| {
                h.request(Method::PATCH, &url).json(&body)
            })
            .await
    }

    /// The contact for `email`, if it exists (no side effect).
    pub async fn find_contact(&self, email: &str) -> Result<Option<Contact>, VendorError> {
        let url = &self.contacts_url;
        let filter = format!("identifier eq {}", lit(email));
        let list: Vec<Contact> = self
            .http
            .send_json("list_contacts", |h| {
                h.request(Method::GET, url.clone())
                    .query(&[("$filter", &filter)])
            })
            .await?;
        Ok(list.into_iter().next())
    }

    /// Active grants of a contact.
    pub async fn active_grants(&self, contact_id: &str) -> Result<Vec<Grant>, VendorError> {
        let url = &self.grants_url;
        let filter = format!("contactId eq {} and active eq true", lit(contact_id));
        self.http
            .send_json("list_grants", |h| {
                h.request(Method::GET, url.clone())
                    .query(&[("$filter", &filter)])
            })
            .await
    }

    /// One page of the owner account's active grants (the reconciler's inventory; OData
    /// `$top`/`$skip` paging).
    pub async fn list_active_grants(&self, skip: u64, top: u64) -> Result<Vec<Grant>, VendorError> {
        let url = self.url("/Grants");
        self.http
            .send_json("list_grants", |h| {
                h.request(Method::GET, &url).query(&[
                    ("$filter", "active eq true".to_owned()),
                    ("$skip", skip.to_string()),
                    ("$top", top.to_string()),
                ])
            })
            .await
    }

    /// One grant by id (`None`: unknown to Tapkey), with its contact embedded.
    pub async fn grant(&self, grant_id: &str) -> Result<Option<Grant>, VendorError> {
        let url = self.url(&format!("/Grants/{grant_id}"));
        let resp = self
            .http
            .send_raw("get_grant", |h| h.request(Method::GET, &url))
            .await?;
        match resp.status() {
            s if s.is_success() => Ok(Some(
                vendor_http::decode_json("tapkey", "get_grant", resp).await?,
            )),
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(VendorError::from_response("tapkey", "get_grant", resp).await),
        }
    }

    /// Issues a grant to a contact. `Ok(None)` on 409: an identical active grant already
    /// exists (the caller looks it up).
    pub async fn create_grant(
        &self,
        lock_id: &str,
        contact_id: &str,
        from: &DateTime<Utc>,
        before: &DateTime<Utc>,
    ) -> Result<Option<Grant>, VendorError> {
        let url = &self.grants_url;
        let body = GrantBody {
            bound_lock_id: lock_id,
            contact_id,
            valid_from: ts(from),
            valid_before: ts(before),
        };
        let resp = self
            .http
            .send_raw("create_grant", |h| {
                h.request(Method::PUT, url.clone()).json(&body)
            })
            .await?;
        match resp.status() {
            s if s.is_success() => Ok(Some(
                vendor_http::decode_json("tapkey", "create_grant", resp).await?,
            )),
            StatusCode::CONFLICT => Ok(None),
            _ => Err(VendorError::from_response("tapkey", "create_grant", resp).await),
        }
    }

    /// Revokes a grant; 409 (already revoked) and 404 (gone) mean the desired state holds.
    pub async fn revoke(&self, grant_id: &str) -> Result<(), VendorError> {
        let url = self.url(&format!("/Grants/{grant_id}/Revoke"));
        let resp = self
            .http
            .send_raw("revoke_grant", |h| h.request(Method::POST, &url))
            .await?;
        match resp.status() {
            s if s.is_success() => Ok(()),
            StatusCode::CONFLICT | StatusCode::NOT_FOUND => Ok(()),
            _ => Err(VendorError::from_response("tapkey", "revoke_grant", resp).await),
        }
    }

    /// Locks bound to the owner account (for the lookup dropdown).
    pub async fn bound_locks(&self) -> Result<Vec<BoundLock>, VendorError> {
        let url = self.url("/BoundLocks");
        self.http
            .send_json("bound_locks", |h| h.request(Method::GET, &url))
            .await
    }
}
