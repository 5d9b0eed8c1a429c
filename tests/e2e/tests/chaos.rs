//! Chaos on the whole system, with the real binaries as processes: NATS killed and restarted
//! during a stream of webhooks, Postgres restarted, a worker SIGKILLed mid-load, vendors
//! failing a fifth of their calls. NATS and Postgres are private instances the test starts
//! itself (the machine's shared ones are never disturbed). The end state is read from the
//! simulators' **live objects** (`GET /live/{vendor}`) and the DLQ stream: every accepted
//! (202) event applied, no object twice, nothing live that no event asked for, permanent
//! failures dead-lettered with their reason and nothing else in the DLQ.
//!
//! The simulators run with their server-side de-duplication **off** (as a real vendor may
//! be): a repeated create is a second live object, not a 409 or an idempotent answer, so a
//! duplicate accesshub causes cannot hide. One scenario loses the vendor's answers *after*
//! the vendor applied the call (5xx, connection reset, timeout after commit), and the SIGKILL
//! scenario kills the worker while applied creates are still waiting for their answer.
//!
//! Each scenario runs for the vendor paths ([`Flow`]): BEX → CloudPass, Clock PMS+ →
//! dormakaba Saflok (booking + mobile key), connecX → iPassan (bookings, moves, cancels) and,
//! for the after-commit scenario, Nexudus → Tapkey (two grants per pass).

#![allow(clippy::unwrap_used)]

mod common;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use accesshub_e2e::{PrivateNats, PrivatePostgres};
use common::{
    Options, Stack,
    flows::{
        Flow, VendorDedupe, assert_applied_once, assert_no_dead_letters,
        assert_permanent_failures_dead_lettered, deliver_item,
    },
};
use serde_json::{Value, json};

async fn nats_killed_and_restarted(flow: Flow, dedupe: VendorDedupe) {
    let mut nats = PrivateNats::start().unwrap();
    let s = flow
        .stack(
            Options {
                nats_url: Some(nats.url()),
                ..Options::default()
            },
            dedupe,
        )
        .await;
    let items = 45;
    let (mut sent_while_down, mut accepted_while_down) = (0, 0);
    let mut waiting_at_restart = 0;
    for i in 0..items {
        if i == 15 {
            nats.kill();
        }
        if i == 30 {
            // Everything accepted meanwhile waits in the outbox: proof that NATS was down.
            waiting_at_restart = s.outbox_pending().await;
            nats.restart().unwrap();
        }
        let answers = deliver_item(&s, flow, "nats", i, Duration::from_secs(10)).await;
        if (15..30).contains(&i) {
            sent_while_down += answers.len();
            accepted_while_down += answers.iter().filter(|d| d.accepted).count();
        }
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    assert!(sent_while_down > 0);
    assert_eq!(
        accepted_while_down, sent_while_down,
        "{flow:?}: every webhook sent while NATS was down answered 202 accepted"
    );
    assert!(
        waiting_at_restart >= accepted_while_down as i64,
        "{flow:?}: the {accepted_while_down} events accepted while NATS was down waited in the outbox ({waiting_at_restart} rows)"
    );
    assert_applied_once(&s, flow, "nats", items, Duration::from_secs(40)).await;
    assert_no_dead_letters(&s, flow).await;
    s.finish().await;
}

async fn postgres_restarted(flow: Flow, dedupe: VendorDedupe) {
    let pg = Arc::new(PrivatePostgres::start().unwrap());
    let s = flow
        .stack(
            Options {
                database_url: Some(pg.url()),
                ..Options::default()
            },
            dedupe,
        )
        .await;

    // Webhooks every 60 ms, each item delivered concurrently (an upstream does not wait for
    // the previous answer); three seconds without a database start 0.7 s in.
    let pg2 = pg.clone();
    let restart = tokio::task::spawn(async move {
        tokio::time::sleep(Duration::from_millis(700)).await;
        let t0 = Instant::now();
        tokio::task::spawn_blocking(move || pg2.restart_after(Duration::from_secs(3)))
            .await
            .unwrap()
            .unwrap();
        t0
    });
    let load_start = Instant::now();
    let items = 40;
    let results = futures::future::join_all((0..items).map(|i| {
        let s = &s;
        async move {
            tokio::time::sleep(Duration::from_millis(60 * i as u64)).await;
            let sent = load_start.elapsed();
            let answers = deliver_item(s, flow, "pg", i, Duration::from_secs(25)).await;
            (answers, sent, load_start.elapsed() - sent)
        }
    }))
    .await;
    let outage_from = restart.await.unwrap() - load_start;
    let outage = outage_from..outage_from + Duration::from_secs(3);
    let refused: u32 = results.iter().flat_map(|r| &r.0).map(|d| d.failed).sum();
    let sent_during_outage = results.iter().filter(|r| outage.contains(&r.1)).count();
    // booking-ingest may hold a webhook until the database is back instead of refusing it.
    let held = results
        .iter()
        .filter(|r| r.2 >= Duration::from_secs(1))
        .count();
    eprintln!(
        "{flow:?}: {sent_during_outage} items sent while Postgres was down; {refused} answers were 503/refused and retried by the upstream; {held} items waited ≥ 1 s for their 202"
    );
    assert!(sent_during_outage > 0, "the outage overlapped the load");
    assert!(
        refused > 0 || held > 0,
        "{flow:?}: the outage was felt (webhooks refused, or held until the database was back)"
    );
    assert_applied_once(&s, flow, "pg", items, Duration::from_secs(40)).await;
    assert_no_dead_letters(&s, flow).await;
    s.finish().await;
}

async fn worker_sigkilled_mid_load(flow: Flow, dedupe: VendorDedupe) {
    let mut s = flow
        .stack(
            Options {
                env: vec![("ACCESSHUB_WORKER_ACK_WAIT".into(), "4s".into())],
                ..Options::default()
            },
            dedupe,
        )
        .await;
    // Half the creates are applied by the vendor and then never answered, the others answer
    // slowly: the kill lands between the vendor's work and the worker's record.
    s.sim
        .add_faults(json!([
            {"vendor": flow.vendor(), "kind": {"type": "timeout_after_commit"},
             "mode": {"probability": 0.5}, "path_contains": flow.create_path(),
             "method": flow.create_method()},
            {"vendor": flow.vendor(), "kind": {"type": "latency", "ms": 400},
             "mode": {"probability": 1.0}, "path_contains": flow.create_path(),
             "method": flow.create_method()}
        ]))
        .await;
    let items = 30;
    for i in 0..items {
        for body in flow.webhooks("kill", i) {
            s.accepted(flow.source(), &body).await;
        }
    }
    s.wait_until(
        "creates applied and still unanswered before the kill",
        Duration::from_secs(20),
        || async { flow.applied_unanswered(&s).await >= 3 },
    )
    .await;
    s.worker(flow.worker()).proc.kill9();
    let cut = flow.applied_unanswered(&s).await;
    s.sim.clear_faults().await;
    s.restart_worker(flow.worker()).await;
    eprintln!("{flow:?}: creates applied but unanswered at the SIGKILL: {cut} of {items} items");
    assert_applied_once(&s, flow, "kill", items, Duration::from_secs(60)).await;
    assert_no_dead_letters(&s, flow).await;
    s.finish().await;
}

/// A stack whose vendor injects `faults` for the whole run (retries raised to 25): `items`
/// load items and then `extra` webhooks delivered, then [`assert_applied_once`].
async fn under_vendor_faults(
    flow: Flow,
    dedupe: VendorDedupe,
    faults: Value,
    (tag, items, extra): (&str, usize, &[Value]),
    timeout: Duration,
) -> Stack {
    let s = flow
        .stack(
            Options {
                env: vec![("ACCESSHUB_WORKER_MAX_DELIVER".into(), "25".into())],
                ..Options::default()
            },
            dedupe,
        )
        .await;
    s.sim.add_faults(faults).await;
    for i in 0..items {
        for body in flow.webhooks(tag, i) {
            s.accepted(flow.source(), &body).await;
        }
    }
    for body in extra {
        s.accepted(flow.source(), body).await;
    }
    assert_applied_once(&s, flow, tag, items, timeout).await;
    s
}

async fn vendor_failing_a_fifth_of_calls(flow: Flow, dedupe: VendorDedupe) {
    let permanent: Vec<Value> = flow
        .permanent_failures()
        .0
        .into_iter()
        .map(|p| p.1)
        .collect();
    let s = under_vendor_faults(
        flow,
        dedupe,
        flow.flaky_faults(),
        ("flaky", 30, &permanent),
        Duration::from_secs(60),
    )
    .await;
    let injected = s
        .sim
        .calls(flow.vendor())
        .await
        .iter()
        .filter(|c| c["injected_fault"] == true)
        .count();
    assert!(injected > 0, "faults were injected");
    assert_permanent_failures_dead_lettered(&s, flow).await;
    eprintln!("{flow:?}: faults injected: {injected}");
    s.finish().await;
}

async fn vendor_losing_answers_after_commit(flow: Flow, dedupe: VendorDedupe) {
    let s = under_vendor_faults(
        flow,
        dedupe,
        flow.after_commit_faults(),
        ("lost", 20, &[]),
        Duration::from_secs(90),
    )
    .await;
    let lost = s
        .sim
        .calls(flow.vendor())
        .await
        .iter()
        .filter(|c| c["committed_status"].as_u64().is_some_and(|st| st < 300))
        .count();
    assert!(lost > 0, "{flow:?}: some applied calls lost their answer");
    assert_no_dead_letters(&s, flow).await;
    eprintln!("{flow:?}: applied calls whose answer was lost: {lost}");
    s.finish().await;
}

/// One `#[tokio::test]` per flow for a scenario function; `=> Flow / On` runs it against a
/// simulator that de-duplicates (default: `Off`).
macro_rules! per_flow {
    (@dedupe) => { VendorDedupe::Off };
    (@dedupe $d:ident) => { VendorDedupe::$d };
    ($scenario:ident: $($(#[$attr:meta])* $name:ident => $flow:ident $(/ $dedupe:ident)?),+ $(,)?) => {
        $(
            $(#[$attr])*
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                $scenario(Flow::$flow, per_flow!(@dedupe $($dedupe)?)).await;
            }
        )+
    };
}

per_flow!(nats_killed_and_restarted:
    cloudpass_nats_killed_and_restarted_during_a_stream_of_webhooks => Cloudpass,
    dormakaba_nats_killed_and_restarted_during_a_stream_of_webhooks => Dormakaba,
    ipassan_nats_killed_and_restarted_during_a_stream_of_webhooks => Ipassan,
);
per_flow!(postgres_restarted:
    cloudpass_postgres_restarted_during_a_stream_of_webhooks => Cloudpass,
    dormakaba_postgres_restarted_during_a_stream_of_webhooks => Dormakaba,
    ipassan_postgres_restarted_during_a_stream_of_webhooks => Ipassan,
);
per_flow!(worker_sigkilled_mid_load:
    cloudpass_worker_sigkilled_mid_load_and_restarted => Cloudpass,
    dormakaba_worker_sigkilled_mid_load_and_restarted => Dormakaba,
    dormakaba_worker_sigkilled_mid_load_and_restarted_with_an_idempotent_lock_system => Dormakaba / On,
    ipassan_worker_sigkilled_mid_load_and_restarted => Ipassan,
    tapkey_worker_sigkilled_mid_grant_never_issues_a_second_grant => Tapkey,
);
per_flow!(vendor_failing_a_fifth_of_calls:
    cloudpass_failing_a_fifth_of_calls_applies_everything_once_and_dead_letters_the_permanent => Cloudpass,
    dormakaba_failing_a_fifth_of_calls_applies_everything_once_and_dead_letters_the_permanent => Dormakaba,
    dormakaba_failing_a_fifth_of_calls_with_an_idempotent_lock_system => Dormakaba / On,
    ipassan_failing_a_fifth_of_calls_applies_everything_once_and_dead_letters_the_permanent => Ipassan,
);
per_flow!(vendor_losing_answers_after_commit:
    cloudpass_answers_lost_after_commit_leave_exactly_one_booking => Cloudpass,
    dormakaba_answers_lost_after_commit_leave_exactly_one_reservation => Dormakaba,
    dormakaba_answers_lost_after_commit_with_an_idempotent_lock_system => Dormakaba / On,
    ipassan_answers_lost_after_commit_leave_exactly_one_booking => Ipassan,
    tapkey_answers_lost_after_commit_leave_exactly_one_grant_per_lock => Tapkey,
);
