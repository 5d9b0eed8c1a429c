//! Chaos on the whole system, with the real binaries as processes: NATS killed and restarted
//! during a stream of webhooks, Postgres restarted, a worker SIGKILLed mid-load, vendors
//! failing a fifth of their calls. NATS and Postgres are private instances the test starts
//! itself (the machine's shared ones are never disturbed). The end state is read from the
//! simulators (state and call log) and the DLQ stream: every accepted (202) event
//! applied, none twice, permanent failures dead-lettered with their reason.

#![allow(clippy::unwrap_used)]

mod common;

use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, Instant},
};

use accesshub_domain::ErrorClass;
use accesshub_e2e::{PrivateNats, PrivatePostgres};
use common::{Options, Stack, TENANT, at, bex, bex_for, cloudpass_conn};
use serde_json::{Value, json};

/// booking-ingest and cloudpass-worker on `opts`, with the demo CloudPass connection.
async fn cloudpass_stack(opts: Options) -> Stack {
    let mut s = Stack::new(opts).await;
    s.add_connection(cloudpass_conn(&s.sim)).await;
    s.start_ingest(&[]).await;
    s.start_worker("cloudpass-worker", &[]).await;
    s
}

/// The reservation key of load event `i`.
fn key(tag: &str, i: usize) -> String {
    format!("{tag}-{i:03}")
}

/// The one plate of load event `i` (already normalized).
fn plate(i: usize) -> String {
    format!("E2E{i:03}")
}

fn reference(k: &str, i: usize) -> String {
    format!("ah:{TENANT}:reservation:{k}:{}", plate(i))
}

/// One reservation with one plate.
fn load_event(tag: &str, i: usize) -> Value {
    bex(
        &key(tag, i),
        "reservation:created",
        &at(0),
        &[plate(i).as_str()],
    )
}

/// Posts like an upstream does: retries (same body) on anything but a 2xx for up to
/// `patience`. Returns whether it was accepted and how many attempts failed.
async fn deliver(s: &Stack, body: &Value, patience: Duration) -> (bool, u32) {
    let start = Instant::now();
    let mut failed = 0;
    loop {
        let (status, answer) = s.webhook("bex", body).await;
        if status == 202 {
            return (true, failed);
        }
        assert!(
            status == 0 || status == 503,
            "only 503 or a refused connection are acceptable during chaos, got {status} {answer}\n{}",
            s.logs()
        );
        failed += 1;
        if start.elapsed() > patience {
            return (false, failed);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Per reference: (bookings at CloudPass, successful creates in the call log).
async fn cloudpass_tally(s: &Stack) -> BTreeMap<String, (usize, usize)> {
    let mut out: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let st = s.sim.state("cloudpass").await;
    for b in st["vehicle_bookings"].as_array().into_iter().flatten() {
        if let Some(r) = b["reference"].as_str() {
            out.entry(r.to_owned()).or_default().0 += 1;
        }
    }
    for c in s.sim.calls("cloudpass").await {
        let create = c["method"] == "POST"
            && c["path"]
                .as_str()
                .unwrap_or_default()
                .contains("/vehicle-bookings")
            && c["status"] == 201;
        if !create {
            continue;
        }
        let body: Value = serde_json::from_str(c["body_summary"].as_str().unwrap_or_default())
            .unwrap_or_default();
        if let Some(r) = body["reference"].as_str() {
            out.entry(r.to_owned()).or_default().1 += 1;
        }
    }
    out
}

/// Waits until every accepted event has its booking, then asserts exactly one booking and
/// exactly one successful create per reference.
async fn assert_applied_once(s: &Stack, accepted: &[(String, usize)], timeout: Duration) {
    let want: Vec<String> = accepted.iter().map(|(k, i)| reference(k, *i)).collect();
    let start = Instant::now();
    loop {
        let tally = cloudpass_tally(s).await;
        let missing: Vec<&String> = want
            .iter()
            .filter(|r| tally.get(*r).is_none_or(|t| t.0 == 0))
            .collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            start.elapsed() < timeout,
            "{} of {} accepted events not applied after {timeout:?}: {missing:?}\n{}",
            missing.len(),
            want.len(),
            s.logs()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // Give stragglers (redeliveries) a moment to show themselves before counting.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let tally = cloudpass_tally(s).await;
    let wrong: Vec<(&String, &(usize, usize))> = want
        .iter()
        .filter_map(|r| tally.get(r).map(|t| (r, t)))
        .filter(|(_, t)| **t != (1, 1))
        .collect();
    assert!(
        wrong.is_empty(),
        "(bookings, creates) must be (1, 1) per reference: {wrong:?}\n{}",
        s.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_killed_and_restarted_during_a_stream_of_webhooks() {
    let mut nats = PrivateNats::start().unwrap();
    let s = cloudpass_stack(Options {
        nats_url: Some(nats.url()),
        ..Options::default()
    })
    .await;

    let mut accepted = Vec::new();
    let mut during_outage = 0;
    let mut down = false;
    for i in 0..45 {
        if i == 15 {
            nats.kill();
            down = true;
        }
        if i == 30 {
            nats.restart().unwrap();
            down = false;
        }
        let (ok, _) = deliver(&s, &load_event("nats", i), Duration::from_secs(10)).await;
        assert!(ok, "event {i} never accepted\n{}", s.logs());
        if down {
            during_outage += 1;
        }
        accepted.push((key("nats", i), i));
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    assert_eq!(during_outage, 15, "webhooks accepted while NATS was down");
    assert_applied_once(&s, &accepted, Duration::from_secs(40)).await;
    s.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarted_during_a_stream_of_webhooks() {
    let pg = Arc::new(PrivatePostgres::start().unwrap());
    let s = cloudpass_stack(Options {
        database_url: Some(pg.url()),
        ..Options::default()
    })
    .await;

    // Webhooks every 60 ms, each delivered concurrently (an upstream does not wait for the
    // previous answer); three seconds without a database start 0.7 s in.
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
    let results = futures::future::join_all((0..40).map(|i| {
        let s = &s;
        async move {
            tokio::time::sleep(Duration::from_millis(60 * i as u64)).await;
            let sent = load_start.elapsed();
            let (ok, failed) = deliver(s, &load_event("pg", i), Duration::from_secs(25)).await;
            (i, ok, failed, sent)
        }
    }))
    .await;
    let outage_from = restart.await.unwrap() - load_start;
    let outage = outage_from..outage_from + Duration::from_secs(3);
    let mut accepted = Vec::new();
    let (mut refused, mut sent_during_outage) = (0, 0);
    for (i, ok, failed, sent) in results {
        assert!(ok, "event {i} never accepted\n{}", s.logs());
        refused += failed;
        if outage.contains(&sent) {
            sent_during_outage += 1;
        }
        accepted.push((key("pg", i), i));
    }
    eprintln!(
        "{sent_during_outage} webhooks sent while Postgres was down; {refused} answers were 503/refused and retried by the upstream"
    );
    assert!(sent_during_outage > 0, "the outage overlapped the load");
    assert_applied_once(&s, &accepted, Duration::from_secs(40)).await;
    s.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_sigkilled_mid_load_and_restarted() {
    let mut s = cloudpass_stack(Options {
        env: vec![("ACCESSHUB_WORKER_ACK_WAIT".into(), "4s".into())],
        ..Options::default()
    })
    .await;
    // Slow creates so the kill lands while calls are in flight.
    s.sim
        .add_faults(
            json!({"vendor": "cloudpass", "kind": {"type": "latency", "ms": 400},
                           "mode": {"probability": 1.0}, "path_contains": "/vehicle-bookings"}),
        )
        .await;

    let mut accepted = Vec::new();
    for i in 0..30 {
        s.accepted("bex", &load_event("kill", i)).await;
        accepted.push((key("kill", i), i));
    }
    s.wait_until(
        "some creates before the kill",
        Duration::from_secs(20),
        || async { s.sim.count("cloudpass", "POST", "/vehicle-bookings").await >= 5 },
    )
    .await;
    s.worker("cloudpass-worker").proc.kill9();
    let at_kill = s.sim.count("cloudpass", "POST", "/vehicle-bookings").await;
    s.sim.clear_faults().await;
    s.restart_worker("cloudpass-worker").await;
    eprintln!("creates attempted before SIGKILL: {at_kill} of 30");
    assert_applied_once(&s, &accepted, Duration::from_secs(40)).await;
    s.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vendor_failing_a_fifth_of_calls_applies_everything_once_and_dead_letters_the_permanent() {
    let s = cloudpass_stack(Options {
        env: vec![("ACCESSHUB_WORKER_MAX_DELIVER".into(), "25".into())],
        ..Options::default()
    })
    .await;
    // ≈ 20 % of all CloudPass calls (token, lookups, creates) fail: 503, 429 with
    // Retry-After, or no answer at all (the client times out).
    s.sim
        .add_faults(json!([
            {"vendor": "cloudpass", "kind": {"type": "status503"}, "mode": {"probability": 0.09}},
            {"vendor": "cloudpass", "kind": {"type": "status429", "retry_after_secs": 1}, "mode": {"probability": 0.08}},
            {"vendor": "cloudpass", "kind": {"type": "hang"}, "mode": {"probability": 0.03}}
        ]))
        .await;

    let mut accepted = Vec::new();
    for i in 0..30 {
        s.accepted("bex", &load_event("flaky", i)).await;
        accepted.push((key("flaky", i), i));
    }
    // Permanent failures: administrations nobody mapped to a CloudPass site.
    let unmapped = ["flaky-unmapped-1", "flaky-unmapped-2"];
    for k in unmapped {
        s.accepted(
            "bex",
            &bex_for("99", k, "reservation:created", &at(0), &["ZZ999Z"]),
        )
        .await;
    }
    assert_applied_once(&s, &accepted, Duration::from_secs(45)).await;

    let injected = s
        .sim
        .calls("cloudpass")
        .await
        .iter()
        .filter(|c| c["injected_fault"] == true)
        .count();
    assert!(injected > 0, "faults were injected");
    let dead = accesshub_e2e::eventually(Duration::from_secs(20), || async {
        let d = s.dead_letters().await;
        (d.len() >= unmapped.len()).then_some(d)
    })
    .await
    .unwrap_or_else(|| panic!("unmapped events not dead-lettered\n{}", s.logs()));
    let mut keys: Vec<String> = dead
        .iter()
        .map(|d| d.original_subject.rsplit('.').next().unwrap().to_owned())
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        unmapped,
        "only the permanent failures are dead-lettered: {dead:?}\n{}",
        s.logs()
    );
    for d in &dead {
        assert_eq!(d.class, ErrorClass::Permanent, "{d:?}");
        assert_eq!(d.worker, "cloudpass-worker");
        assert!(
            d.reason.contains("99"),
            "the reason names the unmapped administration: {:?}",
            d.reason
        );
    }
    eprintln!("faults injected: {injected}");
    s.finish().await;
}

/// A Nexudus day pass (type 8 → two Tapkey locks) for coworker `i`.
fn pass_event(i: usize) -> Value {
    let expire = (chrono::Utc::now() + chrono::Duration::days(1))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    json!({
        "action": "CoworkerTimePassCreate",
        "data": {
            "Id": 9000 + i, "UniqueId": format!("kill-pass-{i:03}"), "CoworkerId": 100 + i,
            "BusinessId": 3, "TimePassId": 8, "TimePassName": "Day pass",
            "ExpireDate": expire, "Used": false, "UsedDate": null, "RemainingUses": 1,
            "UpdatedOn": at(0),
            "CoworkerEmail": format!("member{i:03}@example.com"), "CoworkerFullName": format!("Member {i}")
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tapkey_worker_sigkilled_mid_grant_never_issues_a_second_grant() {
    let mut s = Stack::new(Options {
        env: vec![("ACCESSHUB_WORKER_ACK_WAIT".into(), "4s".into())],
        ..Options::default()
    })
    .await;
    s.add_connection(common::conn(accesshub_connections::VendorSettings::Tapkey(
        accesshub_connections::TapkeySettings {
            authority_url: common::Sim::url(s.sim.tapkey),
            base_url: common::Sim::url(s.sim.tapkey),
            client_id: "demo-tapkey-client".into(),
            client_secret: accesshub_connections::Secret::new("demo-tapkey-secret"),
            owner_account_id: "tk-owner-demo".into(),
            pass_types: BTreeMap::from([(
                "8".to_owned(),
                vec![
                    "tk-lock-front-door".to_owned(),
                    "tk-lock-meeting-room".to_owned(),
                ],
            )]),
        },
    )))
    .await;
    s.start_ingest(&[]).await;
    s.start_worker("tapkey-worker", &[]).await;
    // Grant creation answers slowly, so the kill lands between Tapkey's work and our ack.
    s.sim
        .add_faults(
            json!({"vendor": "tapkey", "kind": {"type": "latency", "ms": 400},
                           "mode": {"probability": 1.0}, "path_contains": "/Grants"}),
        )
        .await;
    let n = 15;
    for i in 0..n {
        s.accepted("nexudus", &pass_event(i)).await;
    }
    s.wait_until(
        "some grants before the kill",
        Duration::from_secs(20),
        || async { s.sim.count("tapkey", "PUT", "/Grants").await >= 4 },
    )
    .await;
    s.worker("tapkey-worker").proc.kill9();
    s.sim.clear_faults().await;
    s.restart_worker("tapkey-worker").await;

    // Per member: exactly two active grants (one per lock), and exactly two grants ever
    // issued for them (no revoked duplicates either).
    let tally = || async {
        let st = s.sim.state("tapkey").await;
        let mut per: BTreeMap<String, (usize, usize)> = BTreeMap::new();
        for c in st["contacts"].as_array().into_iter().flatten() {
            let email = c["identifier"].as_str().unwrap_or_default().to_lowercase();
            if !email.starts_with("member") {
                continue;
            }
            let grants: Vec<&Value> = st["grants"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|g| g["contactId"] == c["id"])
                .collect();
            let active = grants.iter().filter(|g| g["active"] == true).count();
            per.insert(email, (active, grants.len()));
        }
        per
    };
    let done = accesshub_e2e::eventually(Duration::from_secs(40), || async {
        let t = tally().await;
        (t.len() == n && t.values().all(|v| v.0 == 2)).then_some(t)
    })
    .await;
    let t = tally().await;
    assert!(
        done.is_some(),
        "every member gets two grants: {t:?}\n{}",
        s.logs()
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let t = tally().await;
    let wrong: Vec<_> = t.iter().filter(|(_, v)| **v != (2, 2)).collect();
    assert!(
        wrong.is_empty(),
        "(active, ever issued) must be (2, 2) per member: {wrong:?}\n{}",
        s.logs()
    );
    s.finish().await;
}
