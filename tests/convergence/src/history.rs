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
            Op::Crash | Op::Fail { .. } => None,
        }
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
}

impl Default for Shape {
    fn default() -> Self {
        Shape {
            bookings: 3,
            ops: 14,
            after_commit_share: 1.0,
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
    while ops.len() < shape.ops {
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
        ops,
    }
}

impl fmt::Display for History {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "history seed={} tenant={} faults after commit: {}",
            self.seed,
            self.tenant,
            if self.after_commit { "on" } else { "off" }
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
