//! What Tapkey should hold for a pass: pure, so the worker applies it and the reconciler
//! compares the vendor with it, never a second implementation.

use accesshub_connections::TapkeySettings;
use accesshub_domain::Pass;
use chrono::{DateTime, DurationRound as _, Utc};
use std::collections::BTreeMap;

use crate::{TapkeyIds, client::Grant};

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

// What is ours. Tapkey grants carry no free-text field, so ownership rests on the contact:
// every contact tapkey-worker PUTs carries `accesshub:<tenant>` in its `comment`, and every
// grant it issues has a finite `validBefore` (the pass's expiry) and no time restriction.

/// The `comment` every contact we create or confirm carries: `accesshub:<tenant>`.
pub fn marker(tenant: &str) -> String {
    format!("accesshub:{tenant}")
}

/// Whether a contact's comment carries the tenant's marker, as a whole whitespace-separated
/// word (so tenant `acme` never claims `accesshub:acme2`'s contacts).
pub fn is_marked(comment: Option<&str>, tenant: &str) -> bool {
    carries_marker(comment, &marker(tenant))
}

/// Whether `ids` (one pass's record) holds grant `g` by id: its grants, or grants of an
/// interrupted attempt it found before and has not adopted or revoked yet.
pub fn records_grant(ids: &TapkeyIds, g: &Grant) -> bool {
    ids.grants.values().chain(&ids.found).any(|id| id == &g.id)
}

/// Whether `g` has the shape a pass's record names for its latest attempt: the recorded
/// contact, `validFrom` and `validBefore` — how the grants of an attempt that crashed between
/// its grant PUT and its record are recognised (the record is written before the PUT).
/// Records of older builds without a start or an end match on what they hold.
pub fn has_recorded_shape(ids: &TapkeyIds, g: &Grant) -> bool {
    ids.contact_id.as_deref() == Some(g.contact_id.as_str())
        && ids.valid_from.is_none_or(|f| f == g.valid_from)
        && ids.valid_before.is_none_or(|b| g.valid_before == Some(b))
}

/// Whether `g` is provably this pass's (`ids` is its record): recorded by id, or of the shape
/// its record names, on a lock the connection maps. Nothing else — in particular not a grant
/// of the same holder and start that another pass of that holder issued (issue 20).
pub fn is_own(ids: &TapkeyIds, g: &Grant, settings: &TapkeySettings) -> bool {
    records_grant(ids, g) || (has_recorded_shape(ids, g) && is_mapped(settings, &g.bound_lock_id))
}

/// Another pass's record, as [`claimed_by`] weighs it.
#[derive(Debug, Clone, Copy)]
pub struct OtherPass<'a> {
    /// Its booking key.
    pub key: &'a str,
    /// Its record.
    pub ids: &'a TapkeyIds,
    /// Whether an attempt of it is under way or crashed (progress recorded, not finished).
    pub in_flight: bool,
}

/// The other pass `g` belongs to, if any: one whose record holds its id, or one with an
/// attempt under way whose recorded shape is exactly `g`'s (it is about to record it). A pass
/// never adopts or revokes such a grant: it is that pass's, or shared with it when the two
/// cannot be told apart (same holder, lock, start and expiry: Tapkey refuses an identical
/// grant with 409, so both record the one it holds).
pub fn claimed_by<'a>(
    g: &Grant,
    others: impl IntoIterator<Item = OtherPass<'a>>,
) -> Option<&'a str> {
    others
        .into_iter()
        .find(|o| records_grant(o.ids, g) || (o.in_flight && has_recorded_shape(o.ids, g)))
        .map(|o| o.key)
}

/// Whether `comment` carries `marker` as a whole whitespace-separated word.
pub fn carries_marker(comment: Option<&str>, marker: &str) -> bool {
    comment.is_some_and(|c| c.split_whitespace().any(|w| w == marker))
}

/// `comment` with `marker` appended as a word (a human's text is kept), or unchanged when it
/// carries it already.
pub fn with_marker(comment: Option<&str>, marker: &str) -> String {
    match comment.map(str::trim_end) {
        _ if carries_marker(comment, marker) => comment.unwrap_or_default().to_owned(),
        Some(c) if !c.is_empty() => format!("{c} {marker}"),
        _ => marker.to_owned(),
    }
}

/// Whether the connection maps `lock` to any pass type.
pub fn is_mapped(settings: &TapkeySettings, lock: &str) -> bool {
    settings
        .pass_types
        .values()
        .any(|locks| locks.iter().any(|l| l == lock))
}

/// Whether an active grant has the shape of one tapkey-worker issues for `tenant` on this
/// connection, without asking our records: its (embedded) contact carries the tenant's
/// marker, its lock is mapped by the connection, it ends (`validBefore`) after it starts and
/// has no time restriction. A hand-made grant of a marked contact on a mapped lock with the
/// same shape is indistinguishable (docs/sync.md, "What is ours").
pub fn bears_our_mark(g: &Grant, tenant: &str, settings: &TapkeySettings) -> bool {
    g.active
        && g.contact
            .as_ref()
            .is_some_and(|c| is_marked(c.comment.as_deref(), tenant))
        && is_mapped(settings, &g.bound_lock_id)
        && g.valid_before.is_some_and(|b| b > g.valid_from)
        && g.time_restriction_ical.as_deref().is_none_or(str::is_empty)
}

/// What to do with a grant the reconciler reported as a stray (SYNC `remove`), decided on
/// the grant as Tapkey holds it now and the booking's current record and desired state — the
/// run that reported it may be older than both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StrayVerdict {
    /// Revoked or unknown at Tapkey already.
    Gone,
    /// Left alone, with the reason.
    Keep(&'static str),
    /// Revoke it.
    Revoke,
}

/// The booking's side of [`judge_stray`].
#[derive(Debug, Clone, Copy)]
pub struct StrayContext<'a> {
    /// Grants recorded for the booking (lock → grant id) and its recorded contact.
    pub recorded: &'a BTreeMap<String, String>,
    /// The booking's recorded contact.
    pub recorded_contact: Option<&'a str>,
    /// The pass's current desired grants and holder e-mail (`None`: no such pass).
    pub wanted: Option<(&'a DesiredGrants<'a>, &'a str)>,
    /// Whether the grant bears our mark ([`bears_our_mark`]).
    pub marked: bool,
    /// Another pass the grant belongs to ([`claimed_by`]), if any.
    pub claimed_by: Option<&'a str>,
}

/// Revoke a stray only when it is ours (recorded for the booking, or bearing our mark), no
/// other pass records it ([`claimed_by`]), and its pass — if any — does not want it now: a pass that still wants a grant on that lock,
/// for that holder and expiry keeps the one its record holds, or, when the record holds
/// none for the lock, this one (an unrecorded attempt's, adopted by the next apply). Any
/// other grant of ours on the lock is a duplicate and goes.
pub fn judge_stray(grant: Option<&Grant>, b: StrayContext<'_>) -> StrayVerdict {
    let Some(g) = grant.filter(|g| g.active) else {
        return StrayVerdict::Gone;
    };
    let held = b.recorded.values().any(|id| id == &g.id);
    if b.claimed_by.is_some() {
        // That pass's own apply adopts or revokes it (a shared grant: while one still wants it).
        return StrayVerdict::Keep("another pass records it or is recording it");
    }
    if !held && !b.marked {
        return StrayVerdict::Keep("not ours: no record holds it and it does not bear our mark");
    }
    if let Some((d, email)) = b.wanted {
        let lock_wanted = d.wants && d.locks.is_some_and(|l| l.contains(&g.bound_lock_id));
        let holder = match &g.contact {
            Some(c) => c.identifier.eq_ignore_ascii_case(email),
            None => b.recorded_contact == Some(g.contact_id.as_str()),
        };
        if lock_wanted && holder && g.valid_before == Some(d.valid_before) {
            match b.recorded.get(&g.bound_lock_id) {
                Some(id) if id == &g.id => {
                    return StrayVerdict::Keep("its pass still wants it and the record holds it");
                }
                None => {
                    return StrayVerdict::Keep(
                        "its pass still wants a grant like it and the record holds none for the lock",
                    );
                }
                Some(_) => {}
            }
        }
    }
    StrayVerdict::Revoke
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod tests {
    use super::*;
    use crate::client::Contact;
    use accesshub_connections::Secret;

    /// A connection mapping pass type `day` to locks `L1` and `L2`.
    pub(crate) fn settings() -> TapkeySettings {
        TapkeySettings {
            authority_url: "http://t".into(),
            base_url: "http://t".into(),
            client_id: "c".into(),
            client_secret: Secret::new("s"),
            owner_account_id: "o".into(),
            pass_types: [("day".to_owned(), vec!["L1".to_owned(), "L2".to_owned()])].into(),
        }
    }

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    /// An active grant from 2030-01-01 until `before`, for contact `contact` (e-mail
    /// `<contact>@x.example`) with `comment`.
    pub(crate) fn grant_of(
        id: &str,
        lock: &str,
        contact: &str,
        before: &str,
        comment: Option<&str>,
    ) -> Grant {
        Grant {
            id: id.into(),
            bound_lock_id: lock.into(),
            contact_id: contact.into(),
            valid_from: t("2030-01-01T00:00:00Z"),
            valid_before: Some(t(before)),
            active: true,
            time_restriction_ical: None,
            contact: Some(Contact {
                id: contact.into(),
                identifier: format!("{contact}@x.example"),
                comment: comment.map(str::to_owned),
            }),
        }
    }

    fn grant(id: &str, lock: &str, comment: Option<&str>) -> Grant {
        grant_of(id, lock, "M", "2030-02-01T00:00:00Z", comment)
    }

    fn record(contact: &str, before: &str, grants: &[(&str, &str)]) -> TapkeyIds {
        TapkeyIds {
            contact_id: Some(contact.into()),
            valid_from: Some(t("2030-01-01T00:00:00Z")),
            valid_before: Some(t(before)),
            grants: grants
                .iter()
                .map(|(l, i)| ((*l).to_owned(), (*i).to_owned()))
                .collect(),
            ..TapkeyIds::default()
        }
    }

    /// Issue 20: two passes of one holder, same lock and start, different expiry.
    #[test]
    fn a_pass_owns_only_grants_its_record_proves() {
        let s = settings();
        let p1 = record("M", "2030-02-01T00:00:00Z", &[("L1", "g1")]);
        let p2 = record("M", "2030-03-01T00:00:00Z", &[("L1", "g2")]);
        let g1 = grant_of("g1", "L1", "M", "2030-02-01T00:00:00Z", None);
        let g2 = grant_of("g2", "L1", "M", "2030-03-01T00:00:00Z", None);
        assert!(is_own(&p1, &g1, &s) && !is_own(&p1, &g2, &s));
        assert!(is_own(&p2, &g2, &s) && !is_own(&p2, &g1, &s));
        // A crashed attempt's grant: by the recorded shape, on a mapped lock.
        let crashed = grant_of("g3", "L2", "M", "2030-02-01T00:00:00Z", None);
        assert!(is_own(&p1, &crashed, &s) && !is_own(&p2, &crashed, &s));
        let unmapped = grant_of("g4", "L9", "M", "2030-02-01T00:00:00Z", None);
        assert!(!is_own(&p1, &unmapped, &s));
        // Found by id once the record names a new shape.
        let mut moved = record("M", "2030-05-01T00:00:00Z", &[]);
        moved.found = vec!["g3".into()];
        assert!(is_own(&moved, &crashed, &s));
        // Claims: by id, or by shape while the other pass's attempt is under way.
        let other = |ids, in_flight| OtherPass {
            key: "P2",
            ids,
            in_flight,
        };
        assert_eq!(claimed_by(&g2, [other(&p2, false)]), Some("P2"));
        assert_eq!(claimed_by(&g1, [other(&p2, true)]), None);
        let under_way = record("M", "2030-02-01T00:00:00Z", &[]);
        assert_eq!(claimed_by(&crashed, [other(&under_way, true)]), Some("P2"));
        assert_eq!(
            claimed_by(&crashed, [other(&under_way, false)]),
            None,
            "a finished record's shape claims nothing"
        );
    }

    #[test]
    fn the_marker_is_appended_to_a_humans_comment() {
        let m = "accesshub:acme";
        assert_eq!(with_marker(None, m), m);
        assert_eq!(with_marker(Some(""), m), m);
        assert_eq!(
            with_marker(Some("VIP, desk 4\n"), m),
            "VIP, desk 4 accesshub:acme"
        );
        assert_eq!(with_marker(Some("x accesshub:acme"), m), "x accesshub:acme");
        assert_eq!(
            with_marker(Some("accesshub:acme2"), m),
            "accesshub:acme2 accesshub:acme"
        );
    }

    #[test]
    fn the_marker_is_a_whole_word_of_the_comment() {
        assert!(is_marked(Some("accesshub:acme"), "acme"));
        assert!(is_marked(Some("VIP  accesshub:acme\nfront desk"), "acme"));
        assert!(!is_marked(Some("accesshub:acme2"), "acme"));
        assert!(!is_marked(Some("accesshub:acme"), "acm"));
        assert!(!is_marked(None, "acme"));
    }

    #[test]
    fn only_pass_shaped_grants_of_marked_contacts_on_mapped_locks_bear_our_mark() {
        let s = settings();
        let ours = grant("g", "L1", Some("accesshub:acme"));
        assert!(bears_our_mark(&ours, "acme", &s));
        assert!(!bears_our_mark(&ours, "other", &s), "another tenant's");
        assert!(!bears_our_mark(&grant("g", "L1", None), "acme", &s));
        assert!(!bears_our_mark(
            &grant("g", "L9", Some("accesshub:acme")),
            "acme",
            &s
        ));
        let mut open_ended = ours.clone();
        open_ended.valid_before = None;
        assert!(!bears_our_mark(&open_ended, "acme", &s));
        let mut restricted = ours.clone();
        restricted.time_restriction_ical = Some("RRULE:FREQ=DAILY".into());
        assert!(!bears_our_mark(&restricted, "acme", &s));
        let mut revoked = ours;
        revoked.active = false;
        assert!(!bears_our_mark(&revoked, "acme", &s));
    }

    #[test]
    fn a_stray_is_revoked_only_when_ours_and_unwanted() {
        let s = settings();
        let pass = |wants: bool| DesiredGrants {
            locks: s.pass_types.get("day").map(Vec::as_slice),
            wants,
            valid_before: t("2030-02-01T00:00:00Z"),
        };
        let (wanted, unwanted) = (pass(true), pass(false));
        let g = grant("g1", "L1", Some("accesshub:acme"));
        let rec = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(l, i)| ((*l).to_owned(), (*i).to_owned()))
                .collect()
        };
        let judge = |g: Option<&Grant>, recorded: &BTreeMap<String, String>, d, marked| {
            judge_stray(
                g,
                StrayContext {
                    recorded,
                    recorded_contact: Some("M"),
                    wanted: d,
                    marked,
                    claimed_by: None,
                },
            )
        };
        let held = rec(&[("L1", "g1")]);
        let other = rec(&[("L1", "g0")]);
        let none = rec(&[]);
        let w = Some((&wanted, "m@x.example"));
        assert!(matches!(
            judge(Some(&g), &held, w, true),
            StrayVerdict::Keep(_)
        ));
        assert!(matches!(
            judge(Some(&g), &none, w, true),
            StrayVerdict::Keep(_)
        ));
        assert_eq!(
            judge(Some(&g), &other, w, true),
            StrayVerdict::Revoke,
            "a duplicate"
        );
        assert_eq!(
            judge(Some(&g), &held, Some((&wanted, "new@x.example")), true),
            StrayVerdict::Revoke,
            "an old holder's"
        );
        assert_eq!(
            judge(Some(&g), &held, Some((&unwanted, "m@x.example")), true),
            StrayVerdict::Revoke
        );
        assert_eq!(
            judge(Some(&g), &none, None, true),
            StrayVerdict::Revoke,
            "no pass"
        );
        assert!(matches!(
            judge(Some(&g), &none, None, false),
            StrayVerdict::Keep(_)
        ));
        assert_eq!(
            judge(Some(&g), &held, None, false),
            StrayVerdict::Revoke,
            "recorded"
        );
        assert_eq!(judge(None, &held, None, true), StrayVerdict::Gone);
        let claimed = judge_stray(
            Some(&g),
            StrayContext {
                recorded: &none,
                recorded_contact: Some("M"),
                wanted: None,
                marked: true,
                claimed_by: Some("P2"),
            },
        );
        assert!(
            matches!(claimed, StrayVerdict::Keep(_)),
            "another pass's grant"
        );
        let mut revoked = g;
        revoked.active = false;
        assert_eq!(judge(Some(&revoked), &held, w, true), StrayVerdict::Gone);
    }
}
