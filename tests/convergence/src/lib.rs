//! Convergence checker (issue #20 item 5). For each vendor it generates seeded random histories
//! of upstream events for a handful of bookings — creates, edits of every field that matters,
//! cancellations, deletions, duplicates, reordering, equal revisions, the connection offboarded
//! (disabled or deleted with its access removed) and back — injects faults at random points
//! (the worker dying between the vendor call and the record, vendor 5xx/429 and answers lost
//! after commit, NATS or Postgres restarted), lets
//! everything settle, runs the reconciler once, and asserts that the vendor then holds exactly
//! what the bookings want: nothing missing, nothing no booking wants, no duplicates, no
//! permanent failure. A failing history is shrunk to a minimal one and printed with its seed.
//!
//! The oracle is independent of the code under test: [`history::History::winners`] applies the
//! documented revision rule, and each [`model::Model`] states from the vendor's documentation
//! which live objects a booking should leave; the simulators are asked for live objects, never
//! for counts of successful calls.

pub mod env;
pub mod history;
pub mod model;
pub mod vendors;

use std::time::{Duration, Instant};

pub use env::{Env, Outcome};
pub use history::{History, Offboard, Op, Shape, generate};
pub use model::Model;

/// Why a check could not be carried out (as opposed to a history that did not converge).
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The environment could not be set up or torn down.
    #[error("setup: {0}")]
    Setup(String),
    /// booking-ingest refused a well-formed event.
    #[error("booking-ingest refused an event: {0}")]
    Refused(String),
    /// Work never settled.
    #[error("stuck: {0}")]
    Stuck(String),
}

/// A history that did not converge, shrunk.
#[derive(Debug)]
pub struct Failure {
    /// The seed of the original history.
    pub seed: u64,
    /// The smallest history found that still fails.
    pub minimal: History,
    /// What it came to.
    pub outcome: Outcome,
}

/// Figures of one checker run over many histories.
#[derive(Debug, Default)]
pub struct Report {
    /// Vendor.
    pub vendor: &'static str,
    /// Histories run (not counting shrinking).
    pub histories: usize,
    /// Upstream events delivered.
    pub events: usize,
    /// Worker crashes injected.
    pub crashes: usize,
    /// Vendor calls answered with an injected fault.
    pub faults_injected: usize,
    /// Of those, the ones the vendor applied before the answer was lost.
    pub faults_after_commit: usize,
    /// NATS and Postgres restarts.
    pub restarts: usize,
    /// Offboard runs that finished.
    pub offboards: usize,
    /// Permanent dead letters the documentation promises (events meeting a disabled
    /// connection).
    pub expected_dlq: usize,
    /// Histories the workers alone left different from the desired state.
    pub drifted_before_sync: usize,
    /// Objects the reconciler repaired.
    pub repaired: i64,
    /// Transient dead letters (retries exhausted under faults).
    pub transient_dlq: usize,
    /// Histories that did not converge.
    pub failures: Vec<Failure>,
    /// Wall time.
    pub elapsed: Duration,
}

impl Report {
    /// Adds `other`'s figures (a run over other seeds of the same vendor, in parallel with this
    /// one): counts add up, failures join, the wall time is the longer of the two.
    pub fn absorb(&mut self, other: Report) {
        self.histories += other.histories;
        self.events += other.events;
        self.crashes += other.crashes;
        self.faults_injected += other.faults_injected;
        self.faults_after_commit += other.faults_after_commit;
        self.restarts += other.restarts;
        self.offboards += other.offboards;
        self.expected_dlq += other.expected_dlq;
        self.drifted_before_sync += other.drifted_before_sync;
        self.repaired += other.repaired;
        self.transient_dlq += other.transient_dlq;
        self.failures.extend(other.failures);
        self.failures.sort_by_key(|f| f.seed);
        self.elapsed = self.elapsed.max(other.elapsed);
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{}: {} histories, {} events, {} crashes, {} faults injected ({} after commit), {} restarts, {} offboards ({} expected dead letters), {} drifted before the sync ({} objects repaired), {} transient dead letters, {} failures, {:.1} s",
            self.vendor,
            self.histories,
            self.events,
            self.crashes,
            self.faults_injected,
            self.faults_after_commit,
            self.restarts,
            self.offboards,
            self.expected_dlq,
            self.drifted_before_sync,
            self.repaired,
            self.transient_dlq,
            self.failures.len(),
            self.elapsed.as_secs_f64()
        )?;
        for fail in &self.failures {
            writeln!(
                f,
                "FAILED seed {} — minimal history:\n{}{}",
                fail.seed, fail.minimal, fail.outcome
            )?;
        }
        Ok(())
    }
}

/// Runs the histories of `seeds` for `model` in `env`; failures are shrunk (at most
/// `shrink_runs` extra runs each).
pub async fn check<M: Model>(
    env: &mut Env,
    model: &M,
    seeds: impl IntoIterator<Item = u64>,
    shape: Shape,
    shrink_runs: usize,
) -> Result<Report, CheckError> {
    let started = Instant::now();
    let mut report = Report {
        vendor: M::NAME,
        ..Report::default()
    };
    for seed in seeds {
        let h = generate(model, seed, shape);
        let out = env.run(model, &h).await?;
        report.histories += 1;
        report.events += h
            .ops
            .iter()
            .filter(|o| matches!(o, Op::Send { .. } | Op::Resend { .. }))
            .count();
        report.crashes += out.crashes;
        report.faults_injected += out.faults_injected;
        report.faults_after_commit += out.faults_after_commit;
        report.restarts += out.restarts;
        report.offboards += out.offboards;
        report.expected_dlq += out.expected_dlq;
        report.drifted_before_sync += usize::from(out.drift_before_sync > 0);
        report.repaired += out.repaired;
        report.transient_dlq += out.transient_dlq;
        if !out.converged() {
            let (minimal, outcome) = shrink(env, model, h, out, shrink_runs).await?;
            report.failures.push(Failure {
                seed,
                minimal,
                outcome,
            });
        }
    }
    report.elapsed = started.elapsed();
    Ok(report)
}

/// Greedy shrinking: drops one op at a time (last first) while the history still fails.
async fn shrink<M: Model>(
    env: &mut Env,
    model: &M,
    mut h: History,
    mut out: Outcome,
    budget: usize,
) -> Result<(History, Outcome), CheckError> {
    let mut runs = 0;
    let base = h.tenant.clone();
    let mut i = h.ops.len();
    while i > 0 && runs < budget {
        i -= 1;
        let Some(mut cand) = without(&h, i) else {
            continue;
        };
        runs += 1;
        cand.tenant = format!("{base}-s{runs}");
        let o = env.run(model, &cand).await?;
        if !o.converged() {
            h = cand;
            out = o;
        }
    }
    Ok((h, out))
}

/// `h` without op `i`; resends of it go too, later resend indices shift.
fn without(h: &History, i: usize) -> Option<History> {
    let mut ops = Vec::with_capacity(h.ops.len());
    let mut map = vec![None; h.ops.len()];
    for (j, op) in h.ops.iter().enumerate() {
        if j == i {
            continue;
        }
        let op = match op {
            Op::Resend { of } if *of == i => continue,
            Op::Resend { of } => Op::Resend { of: map[*of]? },
            other => other.clone(),
        };
        map[j] = Some(ops.len());
        ops.push(op);
    }
    Some(History { ops, ..h.clone() })
}
