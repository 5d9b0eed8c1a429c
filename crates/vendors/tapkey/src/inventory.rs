//! Tapkey: one grant per lock mapped to the pass type, valid until the pass expires.
//!
//! Tapkey grants carry no reference field; a grant is *ours* (listed here, compared, removable)
//! when it is active and either
//! - its id is recorded in one of this tenant's Tapkey bindings (`vendor_ids.grants`), or
//! - it bears our mark ([`crate::desired::bears_our_mark`]): its contact's `comment` carries
//!   `accesshub:<tenant>`, its lock is mapped by the connection (any pass type), and it has a
//!   finite `validBefore` after its `validFrom` and no time restriction — the shape of every
//!   grant tapkey-worker issues. Found without our records: grants a crash, a holder change
//!   or a lost binding made us forget.
//!
//! Every other grant of the owner account is never returned, never touched.
//!
//! Each grant of ours is tied to a pass: by every binding that records its id (`grants` or
//! `found`; two passes Tapkey cannot tell apart share one grant, which is listed for each);
//! else by the binding whose record names exactly its shape — holder contact, `validFrom`,
//! `validBefore` ([`crate::desired::has_recorded_shape`], the worker's own rule); else it
//! belongs to no known pass and gets the booking key [`stray_key`] — a key no booking has, so
//! the engine reports it as a stray and tapkey-worker's removal (which re-checks, see
//! `TapkeyHandler::remove`) revokes it. A grant recorded by another pass of the same holder
//! is never this pass's stray or duplicate (issue 20).
//!
//! The comparison key is `<booking key>#<lock>#<holder tag>` (the tag a hash of the holder's
//! e-mail, lower-cased): an old holder's grant never passes for the new holder's. Compared
//! fields: lock and `validBefore` (the pass's expiry, millisecond precision). The start is
//! not compared: when upstream gives none the worker keeps the first event's time, which the
//! desired state in Postgres does not carry.
//!
//! Records are held as grant id → booking keys and contact id → (booking key, shape):
//! ~150 bytes per pass, fine for the pass volumes Tapkey owner accounts hold (tens of
//! thousands), not meant for a million.

use std::{collections::HashMap, sync::Arc};

use accesshub_connections::{Connection, TapkeySettings};
use accesshub_domain::{Event, EventBody, EventKind};
use chrono::{DateTime, SecondsFormat, Utc};
use futures::{StreamExt as _, TryStreamExt as _, stream::BoxStream};
use serde::Deserialize as _;

use crate::{
    TapkeyIds,
    client::Grant,
    desired::{bears_our_mark, desired_grants, has_recorded_shape},
};
use accesshub_inventory::{
    DesiredObject, Fingerprint, Inventory, InventoryError, Records, VendorObject, with_retry,
};

const VENDOR: &str = "tapkey";
const PAGE: u64 = 500;

/// Comparison key of one grant of one pass for one holder.
pub fn reference(booking_key: &str, lock: &str, holder_email: &str) -> String {
    let tag = Fingerprint::new()
        .field(&holder_email.to_lowercase())
        .finish();
    format!("{booking_key}#{lock}#{tag:016x}")
}

/// Booking key of a grant of ours that no record ties to a pass (`~` + contact id: no
/// upstream key looks like it, and the worker finds no desired state under it).
pub fn stray_key(contact_id: &str) -> String {
    format!("~tapkey-contact:{contact_id}")
}

fn fingerprint(lock: &str, valid_before: Option<&DateTime<Utc>>) -> u64 {
    let before = valid_before
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
        .unwrap_or_default();
    Fingerprint::new().field(lock).field(&before).finish()
}

/// The grants a pass should have: the worker's own [`desired_grants`], reduced to reference
/// and fingerprint.
pub fn desired_objects(
    conn: &Connection,
    event: &Event,
    now: DateTime<Utc>,
) -> Result<Vec<DesiredObject>, String> {
    let s = conn.settings.tapkey().map_err(|e| e.to_string())?;
    let EventBody::Pass(pass) = &event.body else {
        return Ok(Vec::new());
    };
    let d = desired_grants(s, pass, now);
    let locks = d.wanted_locks(&pass.pass_type).map_err(|e| e.to_string())?;
    Ok(locks
        .iter()
        .map(|lock| DesiredObject {
            reference: reference(&event.booking_key, lock, &pass.holder.email),
            fingerprint: fingerprint(lock, Some(&d.valid_before)),
        })
        .collect())
}

/// Lists the owner account's active grants with tapkey-worker's client and keeps ours.
#[derive(Debug)]
pub struct TapkeyInventory {
    rate: f64,
}

impl TapkeyInventory {
    /// At most `rate` list pages per second.
    pub fn new(rate: f64) -> Self {
        TapkeyInventory {
            rate: rate.max(0.1),
        }
    }
}

/// The worker's records, indexed for tying grants to passes.
#[derive(Debug, Default)]
struct Owned {
    /// Grant id → booking keys of the passes recording it (more than one when passes Tapkey
    /// cannot tell apart share it).
    by_grant: HashMap<String, Vec<String>>,
    /// Contact id → (booking key, recorded shape) of every pass recording it as its holder.
    by_contact: HashMap<String, Vec<(String, TapkeyIds)>>,
}

impl Owned {
    fn new(records: &Records) -> Self {
        let mut o = Owned::default();
        for (key, ids) in records {
            // Unreadable records hold nothing usable; their grants may still bear our mark.
            let Ok(ids) = TapkeyIds::deserialize(ids) else {
                continue;
            };
            for id in ids.grants.values().chain(&ids.found) {
                o.by_grant.entry(id.clone()).or_default().push(key.clone());
            }
            if let Some(c) = &ids.contact_id {
                let shape = TapkeyIds {
                    contact_id: ids.contact_id.clone(),
                    valid_from: ids.valid_from,
                    valid_before: ids.valid_before,
                    ..TapkeyIds::default()
                };
                o.by_contact
                    .entry(c.clone())
                    .or_default()
                    .push((key.clone(), shape));
            }
        }
        for keys in o.by_grant.values_mut() {
            keys.sort();
            keys.dedup();
        }
        for passes in o.by_contact.values_mut() {
            // Complete shapes (start and end recorded) first, then older builds' records.
            passes.sort_by_key(|(k, s)| {
                (
                    s.valid_from.is_none() || s.valid_before.is_none(),
                    k.clone(),
                )
            });
        }
        o
    }

    /// The booking keys `g` belongs to, if it is ours (see the module doc): every pass
    /// recording its id — a grant another pass records is never this one's stray or
    /// duplicate — else the pass whose record names its shape, else [`stray_key`].
    fn keys_of(&self, g: &Grant, tenant: &str, s: &TapkeySettings) -> Vec<String> {
        if let Some(keys) = self.by_grant.get(&g.id) {
            return keys.clone();
        }
        if !bears_our_mark(g, tenant, s) {
            return Vec::new();
        }
        let pass = self.by_contact.get(&g.contact_id).and_then(|passes| {
            passes
                .iter()
                .find(|(_, shape)| has_recorded_shape(shape, g))
        });
        vec![match pass {
            Some((k, _)) => k.clone(),
            None => stray_key(&g.contact_id),
        }]
    }
}

fn vendor_err(e: vendor_http::VendorError) -> InventoryError {
    InventoryError::call(VENDOR, &e)
}

impl Inventory for TapkeyInventory {
    fn vendor(&self) -> &'static str {
        VENDOR
    }

    fn kinds(&self) -> &'static [EventKind] {
        &[EventKind::Pass]
    }

    /// Grants carry no reference: the records tie grants to passes (and find grants of
    /// contacts that predate the marker).
    fn needs_records(&self) -> bool {
        true
    }

    fn list_ours<'a>(
        &'a self,
        conn: &'a Connection,
        records: &'a Records,
    ) -> BoxStream<'a, Result<VendorObject, InventoryError>> {
        let setup = async move {
            let s = conn.settings.tapkey()?;
            let limiter = Arc::new(vendor_http::RateLimiter::new(self.rate, 20));
            let client =
                Arc::new(crate::TapkeyClient::new(s, &conn.tenant, limiter).map_err(vendor_err)?);
            let owned = Arc::new(Owned::new(records));
            Ok::<_, InventoryError>((client, owned, s))
        };
        futures::stream::once(setup)
            .map_ok(move |(client, owned, settings)| {
                futures::stream::try_unfold(Some(0u64), move |skip| {
                    let client = client.clone();
                    async move {
                        let Some(skip) = skip else {
                            return Ok::<_, InventoryError>(None);
                        };
                        let page = with_retry(|| async {
                            client
                                .list_active_grants(skip, PAGE)
                                .await
                                .map_err(vendor_err)
                        })
                        .await?;
                        let next = (page.len() as u64 == PAGE).then_some(skip + PAGE);
                        Ok(Some((
                            futures::stream::iter(page.into_iter().map(Ok::<_, InventoryError>)),
                            next,
                        )))
                    }
                })
                .try_flatten()
                .map_ok(move |g| {
                    // The `active` filter is applied here too: OData filtering of grants is
                    // not documented, a server may ignore it.
                    let keys = if g.active {
                        owned.keys_of(&g, &conn.tenant, settings)
                    } else {
                        Vec::new()
                    };
                    let holder = g.contact.as_ref().map_or("", |c| c.identifier.as_str());
                    let objects: Vec<_> = keys
                        .into_iter()
                        .map(|key| VendorObject {
                            reference: reference(&key, &g.bound_lock_id, holder),
                            booking_key: key,
                            fingerprint: fingerprint(&g.bound_lock_id, g.valid_before.as_ref()),
                            vendor_id: g.id.clone(),
                        })
                        .collect();
                    futures::stream::iter(objects.into_iter().map(Ok::<_, InventoryError>))
                })
                .try_flatten()
            })
            .try_flatten()
            .boxed()
    }

    fn desired(
        &self,
        conn: &Connection,
        event: &Event,
        now: DateTime<Utc>,
    ) -> Result<Vec<DesiredObject>, String> {
        desired_objects(conn, event, now)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::desired::tests::{grant_of, settings};
    use serde_json::json;

    fn grant(id: &str, contact: &str, before: &str, comment: Option<&str>) -> Grant {
        grant_of(id, "L1", contact, before, comment)
    }

    #[test]
    fn grants_are_tied_to_passes_by_id_then_recorded_shape_else_stray() {
        let records: Records = [
            (
                "K1".to_owned(),
                json!({"contact_id": "A", "valid_from": "2030-01-01T00:00:00Z",
                "valid_before": "2030-02-01T00:00:00Z", "grants": {"L1": "g1"}}),
            ),
            (
                "K2".to_owned(),
                json!({"contact_id": "B", "valid_from": "2030-01-01T00:00:00Z",
                "valid_before": "2030-03-01T00:00:00Z", "former_contacts": ["A"],
                "found": ["g7"]}),
            ),
            ("K3".to_owned(), json!({"contact_id": "D"})),
            // Same holder and start as K1, another expiry (issue 20).
            (
                "K4".to_owned(),
                json!({"contact_id": "A", "valid_from": "2030-01-01T00:00:00Z",
                "valid_before": "2030-04-01T00:00:00Z", "grants": {"L1": "g8"}}),
            ),
            // Indistinguishable from K4: shares its grant.
            (
                "K5".to_owned(),
                json!({"contact_id": "A", "valid_from": "2030-01-01T00:00:00Z",
                "valid_before": "2030-04-01T00:00:00Z", "grants": {"L1": "g8"}}),
            ),
        ]
        .into();
        let o = Owned::new(&records);
        let s = settings();
        let m = Some("accesshub:t");
        let keys = |g: &Grant| o.keys_of(g, "t", &s);
        let one = |k: &str| vec![k.to_owned()];
        // Recorded id: ours even without the mark; a found id too.
        assert_eq!(
            keys(&grant("g1", "A", "2030-02-01T00:00:00Z", None)),
            one("K1")
        );
        assert_eq!(
            keys(&grant("g7", "A", "2030-09-01T00:00:00Z", None)),
            one("K2")
        );
        // A grant recorded by another pass of the same holder is that pass's, never K1's.
        assert_eq!(
            keys(&grant("g8", "A", "2030-04-01T00:00:00Z", m)),
            ["K4", "K5"]
        );
        // Marked, unrecorded: by the recorded shape (contact, start, end), or a record
        // of an older build without them.
        assert_eq!(
            keys(&grant("g2", "A", "2030-02-01T00:00:00Z", m)),
            one("K1")
        );
        assert_eq!(
            keys(&grant("g3", "D", "2031-01-01T00:00:00Z", m)),
            one("K3")
        );
        // A former holder's unrecorded grant is no longer tied by its contact alone.
        assert_eq!(
            keys(&grant("g9", "A", "2030-03-01T00:00:00Z", m)),
            vec![stray_key("A")]
        );
        let mut other_start = grant("g10", "A", "2030-02-01T00:00:00Z", m);
        other_start.valid_from = "2029-12-01T00:00:00Z".parse().unwrap();
        assert_eq!(keys(&other_start), vec![stray_key("A")]);
        assert_eq!(
            keys(&grant("g5", "Z", "2031-01-01T00:00:00Z", m)),
            vec![stray_key("Z")]
        );
        // Neither recorded nor marked: not ours.
        assert!(keys(&grant("g6", "A", "2030-02-01T00:00:00Z", None)).is_empty());
    }

    #[test]
    fn the_reference_tells_holders_apart_whatever_the_case() {
        assert_eq!(
            reference("K", "L", "M@x.example"),
            reference("K", "L", "m@X.example")
        );
        assert_ne!(
            reference("K", "L", "a@x.example"),
            reference("K", "L", "b@x.example")
        );
    }
}
