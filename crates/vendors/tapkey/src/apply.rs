//! Makes Tapkey hold exactly the desired grants of one pass. Tapkey grants carry no
//! reference field, so a grant is ours when its id is in the binding or — after a crash before
//! the binding was saved — when it is an active grant of the holder on a mapped lock starting
//! at the pass's stable start time; such a grant is adopted instead of issuing a second one.
//! New grants are issued before old ones are revoked (no gap in access).

use std::collections::BTreeMap;

use accesshub_domain::{Pass, PassStatus};
use chrono::{DateTime, Utc};
use worker_runtime::{HandlerError, Status};

use crate::{
    TapkeyClient, TapkeyIds, client,
    desired::{DesiredGrants, ms},
};

/// What one pass should come to at Tapkey.
#[derive(Debug)]
pub struct Target<'a> {
    /// The pass.
    pub pass: &'a Pass,
    /// Its desired grants.
    pub desired: DesiredGrants<'a>,
    /// When the event happened: the grants' start when upstream gives none and none was used
    /// before (a retry of the same event computes the same value, so crash recovery matches).
    pub occurred_at: DateTime<Utc>,
    /// The connection's name, for error messages.
    pub connection: &'a str,
    /// Whether the binding recorded anything for the pass.
    pub recorded: bool,
    /// No earlier attempt for the pass can have reached Tapkey (the runtime's durable marker).
    pub first_attempt: bool,
}

/// Short status of the binding after [`apply`].
pub fn status_of(status: PassStatus, wants: bool) -> Status {
    match (wants, status) {
        (true, _) => Status::Active,
        (false, PassStatus::Active) => Status::Expired,
        (false, PassStatus::Used) => Status::Used,
        (false, PassStatus::Removed) => Status::Removed,
    }
}

/// Issues, adopts and revokes grants until Tapkey holds `target`; `prev` is what the binding
/// recorded.
pub async fn apply(
    client: &TapkeyClient,
    target: Target<'_>,
    prev: &TapkeyIds,
) -> Result<TapkeyIds, HandlerError> {
    let Target {
        pass,
        desired,
        occurred_at,
        connection,
        recorded,
        first_attempt,
    } = target;
    // Stable start: upstream's, else the one used before, else this event's time (a retry
    // of the same event computes the same value, so crash recovery can match it).
    let from = ms(pass.valid_from.or(prev.valid_from).unwrap_or(occurred_at));
    let before = desired.valid_before;
    let locks = desired.locks;
    let wants = desired.wants;

    // Nothing of this booking can be at Tapkey yet (no binding, and the runtime's durable
    // attempt marker says no earlier attempt started): no grants of ours to find.
    let nothing_there = !recorded && first_attempt;
    if nothing_there && !wants {
        return Ok(TapkeyIds::default());
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
            return Ok(TapkeyIds::default());
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
        let locks = desired.wanted_locks(&pass.pass_type).map_err(|e| {
            HandlerError::permanent(format!("{e} in connection {connection:?} (pass_types)"))
        })?;
        if before <= from {
            return Err(HandlerError::permanent(format!(
                "pass expires ({before}) before it starts ({from})"
            )));
        }
        for lock in locks {
            let existing = ours.iter().find(|g| {
                &g.bound_lock_id == lock && g.valid_from == from && g.valid_before == Some(before)
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
                                client.remember_contact(&pass.holder.email, None, &g.contact_id);
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
                            client.forget_contact(&pass.holder.email, pass.holder.name.as_deref());
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
    Ok(TapkeyIds {
        contact_id,
        valid_from: Some(from),
        grants: kept,
    })
}
