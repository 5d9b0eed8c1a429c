//! The short convergence run of `make test`: a few seeded histories per vendor. The long run is
//! `make soak` (`convergence-soak`). A failure prints the seed and the shrunk history; replay
//! it with `cargo run -p accesshub-convergence --bin convergence-soak -- --vendor <v> --seed <s>`.

use accesshub_convergence::{Env, Model, Shape, check, vendors};

/// Histories per vendor in `make test` (seeds 1..=N; `CONVERGENCE_HISTORIES` overrides).
fn histories() -> u64 {
    std::env::var("CONVERGENCE_HISTORIES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(8)
}

/// Share of the short histories that may hold faults after commit (each costs a retry, a
/// timeout one the client's whole timeout); `make soak` has them in every history.
const AFTER_COMMIT_SHARE: f64 = 0.5;

/// Restarts and offboardings at a low rate (each costs seconds); `make soak` has more.
const RESTART_RATE: f64 = 0.02;
const OFFBOARD_RATE: f64 = 0.02;

async fn converges<M: Model>(model: M) {
    converges_with(model, AFTER_COMMIT_SHARE).await;
}

async fn converges_with<M: Model>(model: M, after_commit_share: f64) {
    let mut env = Env::new().await.unwrap_or_else(|e| panic!("{e}"));
    let shape = Shape {
        after_commit_share,
        restart_rate: RESTART_RATE,
        offboard_rate: OFFBOARD_RATE,
        ..Shape::default()
    };
    let report = check(&mut env, &model, 1..=histories(), shape, 30)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    env.finish().await;
    println!("{report}");
    assert!(report.failures.is_empty(), "{report}");
    assert!(report.crashes > 0, "no crash was injected: {report}");
    assert!(
        report.faults_injected > 0,
        "no vendor fault was injected: {report}"
    );
    if after_commit_share > 0.0 {
        assert!(
            report.faults_after_commit > 0,
            "no fault after commit was injected: {report}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tapkey_converges() {
    converges(vendors::Tapkey).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloudpass_converges() {
    converges(vendors::Cloudpass).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipassan_converges() {
    converges(vendors::Ipassan).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dormakaba_converges() {
    converges_with(vendors::Dormakaba, 0.0).await;
}

/// dormakaba with answers lost after the lock system applied the call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dormakaba_converges_with_answers_lost_after_commit() {
    converges(vendors::Dormakaba).await;
}
