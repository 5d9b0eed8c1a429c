//! Makes Tapkey hold exactly the desired grants of one pass.
//!
//! Tapkey grants carry no reference field, so ownership rests on the contact: the holder's
//! contact is PUT with our marker in its `comment` ([`crate::desired::marker`]) before any
//! grant is issued to it, and grants are always issued by contact id (never by e-mail, which
//! would let Tapkey create an unmarked contact). A pass adopts or revokes only grants it can
//! prove are its own ([`desired::is_own`]): ids in its binding, or — after a crash before the
//! binding was saved — grants of exactly the contact, start and end its progress record
//! names, on a mapped lock; never a grant another pass of the tenant records or is recording
//! ([`desired::claimed_by`]): two passes of one holder share a contact, and often a start
//! (issue 20). A crashed attempt's grant is adopted instead of issuing a second one
//! (principle 3). Two passes Tapkey cannot tell apart (same holder, lock, start and end)
//! share one grant: Tapkey answers the second PUT with 409, both record the grant, and it is
//! revoked only by the last pass recording it.
//!
//! The pass's contacts are the holder's, the recorded one and recorded former ones: a holder
//! change (new e-mail) searches and revokes the old holder's grants too. Before the first
//! grant PUT of an attempt the binding records (durably, without marking the event applied)
//! the contact, the start and end the grants get, and the former contacts still to clear, so
//! a later revision — whose `occurred_at`, the start when upstream gives none, differs —
//! still recognises a crashed attempt's grants.
//!
//! Calls: a new holder's first attempt costs one contact PUT and one grant PUT per lock (the
//! grants list is skipped: the runtime's durable attempt marker proves nothing can be there),
//! plus one local progress write. A known holder (cached contact) with a recorded binding
//! costs one grants list per contact searched, one query of the other passes' records (when
//! any grant is listed), plus the PUTs/revokes that differ.
//! New grants are issued before old ones are revoked (no gap in access).

use std::collections::BTreeMap;

use accesshub_domain::{Pass, PassStatus};
use chrono::{DateTime, Utc};
use worker_runtime::{ApplyContext, HandlerError, Recorded, Status};

use crate::{
    TapkeyClient, TapkeyIds, client,
    desired::{self, DesiredGrants, ms},
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

/// The contacts whose grants may be this pass's: the holder's (when access is wanted), the
/// recorded one and recorded former ones, each once, the holder's first.
pub fn contacts_to_search(holder: Option<&str>, prev: &TapkeyIds) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let recorded = prev.contact_id.iter().chain(&prev.former_contacts);
    for c in holder.into_iter().chain(recorded.map(String::as_str)) {
        if !out.iter().any(|x| x == c) {
            out.push(c.to_owned());
        }
    }
    out
}

/// Issues, adopts and revokes grants until Tapkey holds `target`; `prev` is what the binding
/// recorded.
pub async fn apply(
    ctx: &ApplyContext<TapkeyClient>,
    target: Target<'_>,
    prev: &TapkeyIds,
) -> Result<TapkeyIds, HandlerError> {
    let client: &TapkeyClient = &ctx.client;
    let Target {
        pass,
        desired,
        occurred_at,
        connection,
        recorded,
        first_attempt,
    } = target;
    // Stable start: upstream's, else the one used (or recorded as about to be used) before,
    // else this event's time (a retry of the same event computes the same value).
    let from = ms(pass.valid_from.or(prev.valid_from).unwrap_or(occurred_at));
    let before = desired.valid_before;
    let wants = desired.wants;

    // Nothing of this booking can be at Tapkey yet (no binding, and the runtime's durable
    // attempt marker says no earlier attempt started): no grants of ours to find.
    let nothing_there = !recorded && first_attempt;
    if nothing_there && !wants {
        return Ok(TapkeyIds::default());
    }
    // The holder's contact, created or confirmed with our marker, when access is wanted.
    let mut cached_contact = false;
    let holder = if wants {
        let (id, cached) = client
            .ensure_contact(&pass.holder.email, pass.holder.name.as_deref())
            .await?;
        cached_contact = cached;
        Some(id)
    } else {
        None
    };
    let mut contacts = contacts_to_search(holder.as_deref(), prev);
    if contacts.is_empty() {
        // No access wanted and nothing recorded: the holder's contact, if Tapkey has one.
        match client.find_contact(&pass.holder.email).await? {
            Some(c) => contacts.push(c.id),
            // Never had access at Tapkey: nothing to revoke.
            None => return Ok(TapkeyIds::default()),
        }
    }
    // Skipping the list is what keeps a new holder's first attempt at one contact PUT plus
    // one PUT per lock. Should a grant exist anyway (a concurrent identical one), the PUT
    // answers 409 and the grant is looked up below.
    let mut active = Vec::new();
    if !nothing_there {
        for c in &contacts {
            active.extend(client.active_grants(c).await?);
        }
    }
    // The filter is not trusted (OData on grants is undocumented).
    active.retain(|g| g.active && contacts.contains(&g.contact_id));
    // Two passes of one holder share a contact: a grant another pass records (or is
    // recording) is that pass's, whatever its shape (issue 20).
    let others = if active.is_empty() {
        Vec::new()
    } else {
        ctx.records_containing::<TapkeyIds>(&claim_fragments(&active, &contacts))
            .await?
    };
    let others = other_passes(&others);
    let settings = ctx.connection.settings.tapkey()?;
    let ours: Vec<&client::Grant> = active
        .iter()
        .filter(|g| desired::is_own(prev, g, settings))
        .filter(|g| match desired::claimed_by(g, others.iter().copied()) {
            Some(other) => {
                tracing::debug!(grant = %g.id, other, "grant of another pass left alone");
                false
            }
            None => true,
        })
        .collect();

    let mut kept = BTreeMap::new();
    if let Some(contact_id) = &holder {
        let locks = desired.wanted_locks(&pass.pass_type).map_err(|e| {
            HandlerError::permanent(format!("{e} in connection {connection:?} (pass_types)"))
        })?;
        if before <= from {
            return Err(HandlerError::permanent(format!(
                "pass expires ({before}) before it starts ({from})"
            )));
        }
        // Written once, before this attempt's first grant PUT (unless already recorded).
        let progress = TapkeyIds {
            contact_id: Some(contact_id.clone()),
            valid_from: Some(from),
            valid_before: Some(before),
            grants: prev.grants.clone(),
            former_contacts: contacts
                .iter()
                .filter(|c| *c != contact_id)
                .cloned()
                .collect(),
            // Found by the shape the record names now; the new shape replaces it.
            found: ours
                .iter()
                .filter(|g| !prev.grants.values().any(|id| id == &g.id))
                .map(|g| g.id.clone())
                .collect(),
        };
        let mut progress_recorded = progress == *prev;
        for lock in locks {
            // Exactly the wanted grant: ours, else one Tapkey would answer a PUT with 409
            // for (another pass's identical grant, then shared by both).
            let exact = |g: &&client::Grant| {
                &g.contact_id == contact_id
                    && &g.bound_lock_id == lock
                    && g.valid_from == from
                    && g.valid_before == Some(before)
                    && g.time_restriction_ical.as_deref().is_none_or(str::is_empty)
            };
            let existing = ours
                .iter()
                .copied()
                .find(exact)
                .or_else(|| active.iter().find(exact));
            let id = match existing {
                Some(g) => g.id.clone(),
                None => {
                    if !progress_recorded {
                        ctx.record_progress(Status::InFlight, &progress).await?;
                        progress_recorded = true;
                    }
                    issue(
                        client,
                        lock,
                        contact_id,
                        (&from, &before),
                        cached_contact,
                        pass,
                    )
                    .await?
                }
            };
            kept.insert(lock.clone(), id);
        }
    }
    // Revoke what is ours and not wanted any more (after issuing the new grants); a grant
    // another pass records is only dropped from this record.
    for g in &ours {
        if !kept.values().any(|id| id == &g.id) {
            client.revoke(&g.id).await?;
        }
    }
    Ok(TapkeyIds {
        contact_id: holder.or_else(|| prev.contact_id.clone().or(contacts.into_iter().next())),
        valid_from: Some(from),
        valid_before: Some(before),
        grants: kept,
        former_contacts: Vec::new(),
        found: Vec::new(),
    })
}

/// JSONB fragments ([`ApplyContext::records_containing`]) that find the records of other
/// passes that may claim `grants`: by grant id (recorded or found), and by contact (an
/// attempt under way records its contact and shape before its PUT).
pub fn claim_fragments(grants: &[client::Grant], contacts: &[String]) -> Vec<serde_json::Value> {
    let by_id = grants.iter().flat_map(|g| {
        [
            serde_json::json!({"grants": {g.bound_lock_id.as_str(): g.id.as_str()}}),
            serde_json::json!({"found": [g.id.as_str()]}),
        ]
    });
    let by_contact = contacts
        .iter()
        .map(|c| serde_json::json!({"contact_id": c.as_str()}));
    by_id.chain(by_contact).collect()
}

/// Other passes' records as [`desired::claimed_by`] weighs them.
pub fn other_passes(records: &[(String, Recorded<TapkeyIds>)]) -> Vec<desired::OtherPass<'_>> {
    records
        .iter()
        .map(|(key, r)| desired::OtherPass {
            key,
            ids: &r.ids,
            in_flight: r.status == Some(Status::InFlight),
        })
        .collect()
}

/// Issues one grant on `lock` for `contact_id`; a 409 (identical grant present, from an
/// earlier attempt) is answered with that grant's id.
async fn issue(
    client: &TapkeyClient,
    lock: &str,
    contact_id: &str,
    (from, before): (&DateTime<Utc>, &DateTime<Utc>),
    cached_contact: bool,
    pass: &Pass,
) -> Result<String, HandlerError> {
    match client.create_grant(lock, contact_id, from, before).await {
        Ok(Some(g)) => Ok(g.id),
        // 409: an identical grant exists (created by an earlier attempt).
        Ok(None) => client
            .active_grants(contact_id)
            .await?
            .into_iter()
            .find(|g| {
                g.bound_lock_id == lock && &g.valid_from == from && g.valid_before == Some(*before)
            })
            .map(|g| g.id)
            .ok_or_else(|| {
                HandlerError::transient(format!(
                    "Tapkey answered 409 for lock {lock} but the grant is not listed yet"
                ))
            }),
        Err(e) if cached_contact && matches!(e.status(), Some(400 | 404)) => {
            // The cached contact may be gone at Tapkey: resolve it again on the retry (a
            // PUT), instead of dead-lettering a good event.
            client.forget_contact(&pass.holder.email, pass.holder.name.as_deref());
            Err(HandlerError::transient(format!(
                "grant on lock {lock} refused for cached contact {contact_id}: {e}; resolving the contact again"
            )))
        }
        Err(e) => Err(HandlerError::from(e).context(format!("grant on lock {lock}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_holder_change_searches_the_old_holders_contact_too() {
        let prev = TapkeyIds {
            contact_id: Some("a".into()),
            former_contacts: vec!["z".into(), "b".into()],
            ..TapkeyIds::default()
        };
        assert_eq!(contacts_to_search(Some("b"), &prev), ["b", "a", "z"]);
        assert_eq!(contacts_to_search(None, &prev), ["a", "z", "b"]);
        assert!(contacts_to_search(None, &TapkeyIds::default()).is_empty());
    }
}
