//! tapkey-worker: Nexudus time passes → Tapkey grants (seed 004).
//!
//! An active pass gives its holder (a Tapkey contact, by e-mail) one grant on every lock
//! mapped to the pass type, valid until the pass expires. Used, removed or expired → the
//! pass's grants are revoked. Expiry changed → new grants first, then the old ones revoked
//! (no gap in access). Tapkey grants carry no reference field, so a grant is "ours" when its
//! id is in the binding or — after a crash before the binding was saved — when it is an active
//! grant of the holder on a mapped lock starting at the pass's stable start time; such a
//! grant is adopted instead of issuing a second one (principle 3). That search (the grants
//! list) is skipped only when the runtime proves that no attempt for the booking has reached
//! Tapkey before ([`worker_runtime::ApplyContext::first_attempt`], a durable marker written
//! before the first call).

pub mod client;
pub mod inventory;
pub mod lookup;

use std::collections::BTreeMap;

use accesshub_connections::{Vendor, VendorSettings};
use accesshub_domain::{Event, EventBody, EventKind, PassStatus, sync::RemoveCommand};
use chrono::{DateTime, DurationRound as _, Utc};
use serde::{Deserialize, Serialize};
use worker_runtime::{ApplyContext, ApplyOutcome, Binding, ClientCache, Handler, HandlerError};

pub use client::TapkeyClient;

/// Worker name (consumer, metrics, DLQ subject).
pub const NAME: &str = "tapkey-worker";

/// What the binding remembers about a pass at Tapkey.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct TapkeyIds {
    /// The holder's contact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact_id: Option<String>,
    /// Start of the grants (kept stable across revisions when upstream gives none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_from: Option<DateTime<Utc>>,
    /// Lock id → grant id of the active grants.
    #[serde(default)]
    pub grants: BTreeMap<String, String>,
}

/// The Tapkey adapter.
#[derive(Debug, Default)]
pub struct TapkeyHandler {
    clients: ClientCache<TapkeyClient>,
}

impl TapkeyHandler {
    /// A handler with an empty client cache.
    pub fn new() -> Self {
        Self::default()
    }
}

fn ms(t: DateTime<Utc>) -> DateTime<Utc> {
    t.duration_trunc(chrono::Duration::milliseconds(1))
        .unwrap_or(t)
}

impl Handler for TapkeyHandler {
    fn name(&self) -> &'static str {
        NAME
    }

    fn vendor(&self) -> Vendor {
        Vendor::Tapkey
    }

    fn kinds(&self) -> &[EventKind] {
        &[EventKind::Pass]
    }

    /// Yes: a new pass's first attempt then skips the grants list (see `apply`).
    fn marks_attempts(&self) -> bool {
        true
    }

    async fn apply(
        &self,
        ctx: &ApplyContext,
        event: &Event,
        binding: Option<&Binding>,
    ) -> Result<ApplyOutcome, HandlerError> {
        let EventBody::Pass(pass) = &event.body else {
            return Err(HandlerError::permanent("tapkey-worker handles passes only"));
        };
        let VendorSettings::Tapkey(settings) = &ctx.connection.settings else {
            return Err(HandlerError::permanent(
                "connection is not a Tapkey connection",
            ));
        };
        let client = self
            .clients
            .get_or_try_init(&ctx.connection, || {
                TapkeyClient::new(settings, ctx.rate_limiter.clone())
            })
            .await?;
        let prev: TapkeyIds = binding
            .and_then(|b| serde_json::from_value(b.vendor_ids.clone()).ok())
            .unwrap_or_default();
        // Stable start: upstream's, else the one used before, else this event's time (a retry
        // of the same event computes the same value, so crash recovery can match it).
        let from = ms(pass
            .valid_from
            .or(prev.valid_from)
            .unwrap_or(event.occurred_at));
        let before = ms(pass.expires_at);
        let locks = settings.pass_types.get(&pass.pass_type);
        let now = Utc::now();
        let wants = pass.wants_access(now);

        // Nothing of this booking can be at Tapkey yet (no binding, and the runtime's durable
        // attempt marker says no earlier attempt started): no grants of ours to find.
        let nothing_there = binding.is_none() && ctx.first_attempt;
        if nothing_there && !wants {
            return Ok(ApplyOutcome::new(
                status_of(pass.status, wants),
                serde_json::json!({}),
            ));
        }
        // A holder without a name, new to this client, on a first attempt: the grant PUT names
        // the contact by e-mail and Tapkey creates or finds it — one call per lock instead of
        // a contact PUT first. (A named holder's PUT also sets the contact's title.)
        let by_email = nothing_there
            && wants
            && pass.holder.name.is_none()
            && !client.knows_contact(&pass.holder.email, None);
        let mut cached_contact = false;
        let mut contact_id = if by_email {
            None
        } else if wants {
            let (id, cached) = client
                .ensure_contact(&pass.holder.email, pass.holder.name.as_deref())
                .await?;
            cached_contact = cached;
            Some(id)
        } else {
            let found = match &prev.contact_id {
                Some(id) => Some(id.clone()),
                None => client.find_contact(&pass.holder.email).await?.map(|c| c.id),
            };
            if found.is_none() {
                // Never had access at Tapkey: nothing to revoke.
                return Ok(ApplyOutcome::new(
                    status_of(pass.status, wants),
                    serde_json::json!({}),
                ));
            }
            found
        };
        let active = match &contact_id {
            // Skipping the list is what makes a new holder cost one or two calls instead of
            // three. Should a grant exist anyway (a concurrent identical one), the PUT answers
            // 409 and the grant is looked up below.
            _ if nothing_there => Vec::new(),
            Some(id) => client.active_grants(id).await?,
            None => Vec::new(),
        };
        let known: Vec<&String> = prev.grants.values().collect();
        let ours: Vec<&client::Grant> = active
            .iter()
            .filter(|g| {
                known.contains(&&g.id)
                    || (locks.is_some_and(|l| l.contains(&g.bound_lock_id)) && g.valid_from == from)
            })
            .collect();

        let mut kept = BTreeMap::new();
        if wants {
            let Some(locks) = locks else {
                return Err(HandlerError::permanent(format!(
                    "pass type {:?} is not mapped to any Tapkey lock in connection {:?} (pass_types)",
                    pass.pass_type, ctx.connection.name
                )));
            };
            if before <= from {
                return Err(HandlerError::permanent(format!(
                    "pass expires ({before}) before it starts ({from})"
                )));
            }
            for lock in locks {
                let existing = ours.iter().find(|g| {
                    &g.bound_lock_id == lock
                        && g.valid_from == from
                        && g.valid_before == Some(before)
                });
                let id = match existing {
                    Some(g) => g.id.clone(),
                    None => {
                        let holder = match &contact_id {
                            Some(id) => client::GrantHolder::Contact(id),
                            None => client::GrantHolder::Email(&pass.holder.email),
                        };
                        match client.create_grant(lock, holder, &from, &before).await {
                            Ok(Some(g)) => {
                                if contact_id.is_none() {
                                    client.remember_contact(
                                        &pass.holder.email,
                                        None,
                                        &g.contact_id,
                                    );
                                    contact_id = Some(g.contact_id.clone());
                                }
                                g.id
                            }
                            // 409: an identical grant exists (created by an earlier attempt).
                            Ok(None) => {
                                let cid = match &contact_id {
                                    Some(id) => id.clone(),
                                    None => {
                                        let (id, _) =
                                            client.ensure_contact(&pass.holder.email, None).await?;
                                        contact_id = Some(id.clone());
                                        id
                                    }
                                };
                                client
                                    .active_grants(&cid)
                                    .await?
                                    .into_iter()
                                    .find(|g| {
                                        &g.bound_lock_id == lock
                                            && g.valid_from == from
                                            && g.valid_before == Some(before)
                                    })
                                    .map(|g| g.id)
                                    .ok_or_else(|| {
                                        HandlerError::transient(format!(
                                            "Tapkey answered 409 for lock {lock} but the grant is not listed yet"
                                        ))
                                    })?
                            }
                            Err(e) if cached_contact && matches!(e.status(), Some(400 | 404)) => {
                                // The cached contact may be gone at Tapkey: resolve it again on
                                // the retry (a PUT), instead of dead-lettering a good event.
                                client.forget_contact(
                                    &pass.holder.email,
                                    pass.holder.name.as_deref(),
                                );
                                return Err(HandlerError::transient(format!(
                                    "grant on lock {lock} refused for cached contact {}: {e}; resolving the contact again",
                                    contact_id.as_deref().unwrap_or_default()
                                )));
                            }
                            Err(e) => {
                                return Err(
                                    HandlerError::from(e).context(format!("grant on lock {lock}"))
                                );
                            }
                        }
                    }
                };
                kept.insert(lock.clone(), id);
            }
        }
        // Revoke what is ours and not wanted any more (after issuing the new grants).
        for g in &ours {
            if !kept.values().any(|id| id == &g.id) {
                client.revoke(&g.id).await?;
            }
        }
        let ids = TapkeyIds {
            contact_id,
            valid_from: Some(from),
            grants: kept,
        };
        Ok(ApplyOutcome::new(
            status_of(pass.status, wants),
            serde_json::to_value(&ids).unwrap_or_default(),
        ))
    }

    /// A grant the reconciler found active although its pass wants no access (`vendor_id` is
    /// the grant id): revoke it; already revoked or gone counts as done.
    async fn remove(
        &self,
        ctx: &ApplyContext,
        cmd: &RemoveCommand,
        _binding: Option<&Binding>,
    ) -> Result<(), HandlerError> {
        let VendorSettings::Tapkey(settings) = &ctx.connection.settings else {
            return Err(HandlerError::permanent(
                "connection is not a Tapkey connection",
            ));
        };
        let client = self
            .clients
            .get_or_try_init(&ctx.connection, || {
                TapkeyClient::new(settings, ctx.rate_limiter.clone())
            })
            .await?;
        client.revoke(&cmd.vendor_id).await?;
        Ok(())
    }
}

fn status_of(status: PassStatus, wants: bool) -> &'static str {
    match (wants, status) {
        (true, _) => "active",
        (false, PassStatus::Active) => "expired",
        (false, PassStatus::Used) => "used",
        (false, PassStatus::Removed) => "removed",
    }
}
