//! Random, seeded histories of upstream events for a handful of bookings, with the points where
//! faults are injected. The same seed always yields the same history, so a failure replays.

use std::fmt;

use accesshub_domain::{Event, EventBody, Source};
use chrono::{DateTime, Duration, TimeZone as _, Utc};
use rand::{Rng as _, SeedableRng as _, rngs::StdRng};

use crate::model::Model;

/// One step of a history.
#[derive(Debug, Clone)]
pub enum Op {
    /// The upstream sends a change of booking `booking` (index into [`History::keys`]).
    Send {
        /// Which booking.
        booking: usize,
        /// Its revision (the upstream's last-change stamp): usually newer, sometimes equal
        /// or older (reordering, a delete that does not bump it).
        revision: i64,
        /// Upstream site (administration, building, location).
        site: String,
        /// The booking's state.
        body: Box<EventBody>,
        /// What changed, for the printed history.
        note: String,
    },
    /// The upstream delivers an earlier [`Op::Send`] again (index into [`History::ops`]).
    Resend {
        /// Index of the repeated op.
        of: usize,
    },
    /// The worker dies right after its next successful vendor call, before recording it.
    Crash,
    /// The next `calls` vendor calls fail: before the vendor does anything (5xx or 429), or
    /// after it applied the call (its answer lost: 500, 503, a reset connection or a timeout).
    Fail {
        /// How many calls.
        calls: u8,
        /// Whether the faults hit after the vendor applied the change (answer lost).
        after_commit: bool,
    },
    /// NATS (JetStream, file store) is killed, stays down `down_ms`, and starts again on the
    /// same store: every service must reconnect and nothing in flight may be lost.
    RestartNats {
        /// Outage.
        down_ms: u16,
    },
    /// PostgreSQL is shut down immediately, stays down `down_ms`, and starts again.
    RestartPostgres {
        /// Outage.
        down_ms: u16,
    },
    /// The tenant's connection is offboarded with `?access=remove` (what `DELETE` or `PUT
    /// enabled:false …?access=remove` does), and the history waits until the offboard run
    /// finished: nothing of ours may be left at the vendor, and later events of the tenant are
    /// skipped (deleted) or dead-lettered as documented (disabled). Never for dormakaba, whose
    /// offboarding is a documented refusal.
    Offboard {
        /// Disable or delete.
        how: Offboard,
    },
    /// The connection is enabled again (or created again): the next sync must bring back
    /// what the bookings want.
    Reconnect,
}

impl Op {
    /// A restart or an offboarding (drawn apart from the rest of a history).
    pub fn is_infrastructure(&self) -> bool {
        matches!(
            self,
            Op::RestartNats { .. }
                | Op::RestartPostgres { .. }
                | Op::Offboard { .. }
                | Op::Reconnect
        )
    }
}

/// How [`Op::Offboard`] ends the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offboard {
    /// Disabled (kept, with its credentials).
    Disable,
    /// Deleted.
    Delete,
}

/// A history: the bookings it touches and what happens, in order.
#[derive(Debug, Clone)]
pub struct History {
    /// The seed it was generated from.
    pub seed: u64,
    /// Tenant of this history (one per history: nothing is shared with another).
    pub tenant: String,
    /// Booking keys.
    pub keys: Vec<String>,
    /// Whether this history may hold faults after commit (decided per seed, see
    /// [`Shape::after_commit_share`]).
    pub after_commit: bool,
    /// The restart and offboard rates it was generated with (printed, so that it replays).
    pub rates: (f64, f64),
    /// Steps.
    pub ops: Vec<Op>,
}

/// Fixed origin of `occurred_at`, so a history's events are the same on every replay.
pub fn origin() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 8, 0, 0)
        .single()
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

impl History {
    /// The event op `i` delivers (a resend delivers its original's event).
    pub fn event(&self, i: usize) -> Option<Event> {
        match self.ops.get(i)? {
            Op::Send {
                booking,
                revision,
                site,
                body,
                ..
            } => {
                let mut ev = Event::new(
                    &self.tenant,
                    site,
                    &self.keys[*booking],
                    *revision,
                    Source::Native,
                    origin() + Duration::minutes(i as i64),
                    (**body).clone(),
                );
                // Deterministic id: a resend is the same delivery.
                ev.id = uuid_for(self.seed, i);
                Some(ev)
            }
            Op::Resend { of } => self.event(*of),
            _ => None,
        }
    }

    /// Whether the connection is there (created or enabled again after any offboarding) once
    /// the history is over.
    pub fn connected_at_end(&self) -> bool {
        self.ops.iter().fold(true, |on, op| match op {
            Op::Offboard { .. } => false,
            Op::Reconnect => true,
            _ => on,
        })
    }

    /// Whether the event of op `i` may meet a disabled connection: delivered before the end
    /// of some disable window (a disable, up to the next reconnect), by this op or a resend of
    /// it. The worker then dead-letters it as permanent ("no enabled … connection"), as
    /// documented, so that it can be replayed once the connection is back.
    pub fn may_meet_a_disabled_connection(&self, i: usize) -> bool {
        let delivered: Vec<usize> = std::iter::once(i)
            .chain(
                self.ops
                    .iter()
                    .enumerate()
                    .filter(|(_, o)| matches!(o, Op::Resend { of } if *of == i))
                    .map(|(r, _)| r),
            )
            .collect();
        let mut windows = Vec::new();
        let mut open = None;
        for (j, op) in self.ops.iter().enumerate() {
            match op {
                Op::Offboard {
                    how: Offboard::Disable,
                } if open.is_none() => open = Some(j),
                Op::Reconnect => {
                    if let Some(from) = open.take() {
                        windows.push((from, j));
                    }
                }
                _ => {}
            }
        }
        if let Some(from) = open {
            windows.push((from, usize::MAX));
        }
        // In flight before the disable counts too: it may be processed after it.
        delivered
            .iter()
            .any(|d| windows.iter().any(|(_, until)| d < until))
    }

    /// The op that first delivered `ev` (booking-ingest gives events ids of its own, so by
    /// the `occurred_at` [`History::event`] stamps: one minute per op).
    pub fn op_of_event(&self, ev: &Event) -> Option<usize> {
        let i = usize::try_from((ev.occurred_at - origin()).num_minutes()).ok()?;
        (i < self.ops.len()
            && self
                .event(i)
                .is_some_and(|e| e.booking_key == ev.booking_key))
        .then_some(i)
    }

    /// The state each booking ends in, by the documented rule and independently of the code
    /// under test: a newer revision wins; at an equal revision an event that ends access wins
    /// over one that does not; otherwise the first one stays.
    pub fn winners(&self) -> Vec<Event> {
        let mut win: Vec<Option<Event>> = vec![None; self.keys.len()];
        for i in 0..self.ops.len() {
            let Some(ev) = self.event(i) else { continue };
            let slot = match self.ops[i] {
                Op::Send { booking, .. } => booking,
                Op::Resend { of } => match self.ops[of] {
                    Op::Send { booking, .. } => booking,
                    _ => continue,
                },
                _ => continue,
            };
            let replace = match &win[slot] {
                None => true,
                Some(cur) => {
                    ev.revision > cur.revision
                        || (ev.revision == cur.revision && ev.ends_access() && !cur.ends_access())
                }
            };
            if replace {
                win[slot] = Some(ev);
            }
        }
        win.into_iter().flatten().collect()
    }

    /// Number of crash and fault ops.
    pub fn faults(&self) -> usize {
        self.ops
            .iter()
            .filter(|o| matches!(o, Op::Crash | Op::Fail { .. }))
            .count()
    }

    /// Number of NATS and Postgres restarts.
    pub fn restarts(&self) -> usize {
        self.ops
            .iter()
            .filter(|o| matches!(o, Op::RestartNats { .. } | Op::RestartPostgres { .. }))
            .count()
    }

    /// Number of offboardings.
    pub fn offboards(&self) -> usize {
        self.ops
            .iter()
            .filter(|o| matches!(o, Op::Offboard { .. }))
            .count()
    }
}

fn uuid_for(seed: u64, i: usize) -> uuid::Uuid {
    let hi = seed as u128;
    let lo = i as u128;
    uuid::Uuid::from_u128((hi << 64) | lo)
}

/// What a history may contain.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// Bookings per history.
    pub bookings: usize,
    /// Ops per history.
    pub ops: usize,
    /// Share of histories (0.0 to 1.0) in which faults after the vendor applied a call may be
    /// injected: in those, half the fault ops are after commit. Decided per seed apart from
    /// the history's own draws, so a history with them is the same whatever the share
    /// (`convergence-soak --seed S`, share 1, replays it).
    pub after_commit_share: f64,
    /// Chance (0.0 to 1.0), before each event or fault op, of a NATS or Postgres restart.
    /// Drawn, like the offboardings, from a stream of their own: the rest of a history is the
    /// same whatever the rates.
    pub restart_rate: f64,
    /// Chance, before each event or fault op, of an offboarding (or, when the connection is
    /// offboarded, of enabling or creating it again). Never for vendors that refuse it.
    pub offboard_rate: f64,
}

impl Default for Shape {
    fn default() -> Self {
        Shape {
            bookings: 3,
            ops: 14,
            after_commit_share: 1.0,
            restart_rate: 0.04,
            offboard_rate: 0.04,
        }
    }
}

/// Whether the history of `seed` may hold faults after commit under `share`.
pub fn after_commit(seed: u64, share: f64) -> bool {
    share >= 1.0 || (share > 0.0 && StdRng::seed_from_u64(seed ^ 0xafc0_4417).random_bool(share))
}

/// Generates the history of `seed` for `model`.
pub fn generate<M: Model + ?Sized>(model: &M, seed: u64, shape: Shape) -> History {
    let mut rng = StdRng::seed_from_u64(seed);
    let after = after_commit(seed, shape.after_commit_share);
    let tag = format!("h{seed:x}");
    let keys: Vec<String> = (0..shape.bookings).map(|b| format!("{tag}-b{b}")).collect();
    let mut state: Vec<Option<(i64, String, EventBody)>> = vec![None; shape.bookings];
    let mut ops = Vec::with_capacity(shape.ops);
    let mut sends = Vec::new();
    let mut infra = StdRng::seed_from_u64(seed ^ 0x1f4a_57c3);
    let mut connected = true;
    for _ in 0..shape.ops {
        if infra.random_bool(shape.restart_rate.clamp(0.0, 1.0)) {
            let down_ms = infra.random_range(200..=2_000);
            ops.push(if infra.random_bool(0.5) {
                Op::RestartNats { down_ms }
            } else {
                Op::RestartPostgres { down_ms }
            });
        }
        if infra.random_bool(shape.offboard_rate.clamp(0.0, 1.0)) && model.can_offboard() {
            ops.push(if connected {
                Op::Offboard {
                    how: if infra.random_bool(0.5) {
                        Offboard::Disable
                    } else {
                        Offboard::Delete
                    },
                }
            } else {
                Op::Reconnect
            });
            connected = !connected;
        }
        let roll: u32 = rng.random_range(0..100);
        let op = match roll {
            0..=7 if !sends.is_empty() => Op::Resend {
                of: sends[rng.random_range(0..sends.len())],
            },
            8..=15 => Op::Crash,
            16..=23 => Op::Fail {
                calls: rng.random_range(1..=4),
                after_commit: after && rng.random_bool(0.5),
            },
            _ => {
                let b = rng.random_range(0..shape.bookings);
                let (revision, site, body, note) = match &state[b] {
                    None => {
                        let (site, body) = model.first(&mut rng, &tag, b);
                        (1, site, body, "create".to_owned())
                    }
                    Some((rev, site, prev)) => {
                        let (site, body, note) = model.edit(&mut rng, &tag, b, site, prev);
                        let revision = match rng.random_range(0..100) {
                            0..=11 => *rev,                 // equal revision
                            12..=21 if *rev > 1 => rev - 1, // older: arrives out of order
                            _ => rev + 1,
                        };
                        (revision, site, body, note)
                    }
                };
                if state[b].as_ref().is_none_or(|(r, ..)| revision >= *r) {
                    state[b] = Some((revision, site.clone(), body.clone()));
                }
                sends.push(ops.len());
                Op::Send {
                    booking: b,
                    revision,
                    site,
                    body: Box::new(body),
                    note,
                }
            }
        };
        ops.push(op);
    }
    History {
        seed,
        tenant: format!("conv-{tag}"),
        keys,
        after_commit: after,
        rates: (shape.restart_rate, shape.offboard_rate),
        ops,
    }
}

impl fmt::Display for History {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "history seed={} tenant={} faults after commit: {} (replay: --restart-rate {} --offboard-rate {})",
            self.seed,
            self.tenant,
            if self.after_commit { "on" } else { "off" },
            self.rates.0,
            self.rates.1
        )?;
        for (i, op) in self.ops.iter().enumerate() {
            match op {
                Op::Send {
                    booking,
                    revision,
                    site,
                    body,
                    note,
                } => writeln!(
                    f,
                    "  {i:>2}. send {} rev {revision} site {site}: {note} → {}",
                    self.keys[*booking],
                    crate::model::summary(body)
                )?,
                Op::Resend { of } => writeln!(f, "  {i:>2}. resend #{of}")?,
                Op::Crash => writeln!(f, "  {i:>2}. crash after the next vendor call")?,
                Op::RestartNats { down_ms } => {
                    writeln!(f, "  {i:>2}. restart NATS ({down_ms} ms down)")?
                }
                Op::RestartPostgres { down_ms } => {
                    writeln!(f, "  {i:>2}. restart Postgres ({down_ms} ms down)")?
                }
                Op::Offboard { how } => writeln!(
                    f,
                    "  {i:>2}. offboard the connection: {} with ?access=remove, until done",
                    match how {
                        Offboard::Disable => "disable",
                        Offboard::Delete => "delete",
                    }
                )?,
                Op::Reconnect => writeln!(f, "  {i:>2}. enable (or create) the connection again")?,
                Op::Fail {
                    calls,
                    after_commit,
                } => writeln!(
                    f,
                    "  {i:>2}. the next {calls} vendor calls fail{}",
                    if *after_commit {
                        " after committing"
                    } else {
                        ""
                    }
                )?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restarts_and_offboardings_are_seeded_and_leave_the_rest_of_a_history_alone() {
        let model = crate::vendors::Tapkey;
        let none = Shape {
            restart_rate: 0.0,
            offboard_rate: 0.0,
            ..Shape::default()
        };
        let (mut restarts, mut offboards, mut back) = (0, 0, 0);
        for seed in 1..=40 {
            let h = generate(&model, seed, Shape::default());
            assert_eq!(
                h.to_string(),
                generate(&model, seed, Shape::default()).to_string(),
                "seed {seed} replays"
            );
            restarts += h.restarts();
            offboards += h.offboards();
            back += h.ops.iter().filter(|o| matches!(o, Op::Reconnect)).count();
            // Without them, the same history minus them (resend indices renumbered).
            let plain = generate(&model, seed, none);
            let kept: Vec<String> = h
                .ops
                .iter()
                .filter(|o| !o.is_infrastructure())
                .map(|o| match o {
                    Op::Resend { of } => {
                        format!("resend {}", h.event(*of).map(|e| e.id).unwrap_or_default())
                    }
                    other => format!("{other:?}"),
                })
                .collect();
            let want: Vec<String> = plain
                .ops
                .iter()
                .map(|o| match o {
                    Op::Resend { of } => {
                        format!(
                            "resend {}",
                            plain.event(*of).map(|e| e.id).unwrap_or_default()
                        )
                    }
                    other => format!("{other:?}"),
                })
                .collect();
            assert_eq!(kept.len(), want.len(), "seed {seed}");
            for (k, w) in kept.iter().zip(&want) {
                if !k.starts_with("resend") {
                    assert_eq!(k, w, "seed {seed}");
                }
            }
        }
        assert!(
            restarts > 5 && offboards > 5 && back > 0,
            "{restarts} {offboards} {back}"
        );
        let printed = (1..=40)
            .map(|s| generate(&model, s, Shape::default()).to_string())
            .collect::<String>();
        for what in [
            "restart NATS",
            "restart Postgres",
            "disable with",
            "delete with",
            "again",
        ] {
            assert!(printed.contains(what), "{what} never printed");
        }
        // Never for a vendor whose offboarding is a documented refusal.
        for seed in 1..=40 {
            assert_eq!(
                generate(&crate::vendors::Dormakaba, seed, Shape::default()).offboards(),
                0
            );
        }
    }

    #[test]
    fn the_end_state_and_the_disable_windows_follow_the_offboard_ops() {
        let mut h = generate(
            &crate::vendors::Tapkey,
            1,
            Shape {
                restart_rate: 0.0,
                offboard_rate: 0.0,
                ..Shape::default()
            },
        );
        assert!(h.connected_at_end());
        assert!(!(0..h.ops.len()).any(|i| h.may_meet_a_disabled_connection(i)));
        h.ops.insert(
            3,
            Op::Offboard {
                how: Offboard::Disable,
            },
        );
        h.ops.insert(6, Op::Reconnect);
        assert!(h.connected_at_end());
        assert!(
            h.may_meet_a_disabled_connection(0),
            "in flight when disabled"
        );
        assert!(h.may_meet_a_disabled_connection(5));
        assert!(!h.may_meet_a_disabled_connection(7));
        h.ops.push(Op::Offboard {
            how: Offboard::Delete,
        });
        assert!(!h.connected_at_end());
        assert!(
            !h.may_meet_a_disabled_connection(7),
            "deleted: skipped, not dead-lettered"
        );
        let sent = (0..h.ops.len()).find(|&i| matches!(h.ops[i], Op::Send { .. }));
        let ev = sent.and_then(|i| h.event(i));
        assert_eq!(ev.as_ref().and_then(|e| h.op_of_event(e)), sent);
    }

    #[test]
    fn a_history_with_faults_after_commit_is_the_same_whatever_the_share() {
        let model = crate::vendors::Ipassan;
        let half = Shape {
            after_commit_share: 0.5,
            ..Shape::default()
        };
        let (mut on, mut off) = (0, 0);
        for seed in 1..=40 {
            let h = generate(&model, seed, half);
            if h.after_commit {
                on += 1;
                let all = generate(&model, seed, Shape::default());
                assert_eq!(h.to_string(), all.to_string(), "seed {seed}");
            } else {
                off += 1;
                assert!(!h.ops.iter().any(|o| matches!(
                    o,
                    Op::Fail {
                        after_commit: true,
                        ..
                    }
                )));
            }
        }
        assert!(on > 5 && off > 5, "{on} on, {off} off");
    }
}
