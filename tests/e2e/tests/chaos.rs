//! Chaos on the whole system, with the real binaries as processes: NATS killed and restarted
//! during a stream of webhooks, Postgres restarted, a worker SIGKILLed mid-load, vendors
//! failing a fifth of their calls. NATS and Postgres are private instances the test starts
//! itself (the machine's shared ones are never disturbed). The end state is read from the
//! simulators (state and call log) and the DLQ stream: every accepted (202) event
//! applied, none twice, permanent failures dead-lettered with their reason.
//!
//! Each scenario runs for three vendor paths ([`Flow`]): BEX → CloudPass, Clock PMS+ →
//! dormakaba Saflok (booking + mobile key) and connecX → iPassan (bookings, moves, cancels).

#![allow(clippy::unwrap_used)]

mod common;

use std::{
    collections::BTreeMap,
    ops::RangeInclusive,
    sync::Arc,
    time::{Duration, Instant},
};

use accesshub_domain::ErrorClass;
use accesshub_e2e::{PrivateNats, PrivatePostgres};
use common::{
    Options, Stack, TENANT, at, bex, bex_for, clock, clock_in_room, cloudpass_conn, connecx,
    connecx_for, dormakaba_conn, ipassan_conn, resident_eva,
};
use serde_json::{Value, json};

/// One vendor's path through accesshub, as the chaos scenarios drive and check it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    /// BEX reservations with one plate → one CloudPass vehicle booking each.
    Cloudpass,
    /// Clock PMS+ bookings with a mobile key → a Saflok booking (`CreateNewBooking`, no card)
    /// and one mobile key each.
    Dormakaba,
    /// connecX facility bookings → iPassan asset bookings; every third one is moved to the next
    /// slot, every third cancelled.
    Ipassan,
}

/// What one vendor object must be in the end.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Want {
    /// Live at the vendor (1: applied; 0: moved away or cancelled).
    live: usize,
    /// How often it may have been created at the vendor (never twice).
    created: RangeInclusive<usize>,
}

const ONCE: Want = Want {
    live: 1,
    created: 1..=1,
};
/// Superseded (moved or cancelled): gone, created at most once (a newer revision may have
/// overtaken it before it was applied).
const GONE: Want = Want {
    live: 0,
    created: 0..=1,
};

/// A mobile key: exactly one live. Messenger cannot say whether a key was sent, so after an
/// attempt that sent it and could not record it (worker killed, Postgres down) the worker
/// cancels that key and sends it again: sent at most twice, never two live.
const MOBILE_KEY: Want = Want {
    live: 1,
    created: 1..=2,
};

/// Per vendor object: (live now, ever created).
type Tally = BTreeMap<String, (usize, usize)>;

/// The first of the 30-minute iPassan slots used by the load.
const SLOT0: &str = "2030-06-01T00:00:00Z";

/// iPassan slot `n` (30 minutes each from [`SLOT0`]) as (start, end).
fn slot(n: usize) -> (String, String) {
    let base = chrono::DateTime::parse_from_rfc3339(SLOT0).unwrap();
    let start = base + chrono::Duration::minutes(30 * n as i64);
    let end = start + chrono::Duration::minutes(30);
    let f = |t: chrono::DateTime<chrono::FixedOffset>| {
        t.to_utc()
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    };
    (f(start), f(end))
}

/// An instant as [`slot`] prints it, whatever precision the vendor or the worker used.
fn norm_time(t: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(t)
        .map(|t| {
            t.to_utc()
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        })
        .unwrap_or_else(|_| t.to_owned())
}

impl Flow {
    fn worker(self) -> &'static str {
        match self {
            Flow::Cloudpass => "cloudpass-worker",
            Flow::Dormakaba => "dormakaba-worker",
            Flow::Ipassan => "ipassan-worker",
        }
    }

    /// The simulator's vendor name.
    fn vendor(self) -> &'static str {
        match self {
            Flow::Cloudpass => "cloudpass",
            Flow::Dormakaba => "dormakaba",
            Flow::Ipassan => "ipassan",
        }
    }

    fn source(self) -> &'static str {
        match self {
            Flow::Cloudpass => "bex",
            Flow::Dormakaba => "clock",
            Flow::Ipassan => "connecx",
        }
    }

    /// booking-ingest and the flow's worker on `opts`, with the demo connection.
    async fn stack(self, opts: Options) -> Stack {
        let mut s = Stack::new(opts).await;
        let conn = match self {
            Flow::Cloudpass => cloudpass_conn(&s.sim),
            Flow::Dormakaba => dormakaba_conn(&s.sim),
            Flow::Ipassan => ipassan_conn(&s.sim),
        };
        s.add_connection(conn).await;
        s.start_ingest(&[]).await;
        s.start_worker(self.worker(), &[]).await;
        s
    }

    /// The upstream booking key of load item `i` (the last segment of its subject).
    fn key(self, tag: &str, i: usize) -> String {
        match self {
            Flow::Cloudpass => format!("{tag}-{i:03}"),
            Flow::Dormakaba => (700_000 + i).to_string(),
            Flow::Ipassan => format!("cx-{tag}-{i:03}"),
        }
    }

    /// The webhooks of load item `i`, oldest revision first.
    fn webhooks(self, tag: &str, i: usize) -> Vec<Value> {
        let key = self.key(tag, i);
        match self {
            Flow::Cloudpass => vec![bex(&key, "reservation:created", &at(0), &[&plate(i)])],
            Flow::Dormakaba => vec![clock(700_000 + i as i64, "booking_new", &at(0))],
            Flow::Ipassan => {
                let (a, b) = slot(2 * i);
                let first = connecx(&key, &a, &b, "booked", &at(-2_000));
                match i % 3 {
                    0 => vec![first],
                    1 => {
                        let (c, d) = slot(2 * i + 1);
                        vec![first, connecx(&key, &c, &d, "booked", &at(0))]
                    }
                    _ => vec![first, connecx(&key, &a, &b, "cancelled", &at(0))],
                }
            }
        }
    }

    /// The vendor objects load item `i` must leave behind, named as [`Flow::tally`] names them.
    fn wants(self, tag: &str, i: usize) -> Vec<(String, Want)> {
        let key = self.key(tag, i);
        match self {
            Flow::Cloudpass => vec![(format!("ah:{TENANT}:reservation:{key}:{}", plate(i)), ONCE)],
            Flow::Dormakaba => {
                let rid = format!("{TENANT}-{key}");
                vec![(format!("{rid} mobile key"), MOBILE_KEY), (rid, ONCE)]
            }
            Flow::Ipassan => {
                let at_slot = |n| format!("ah:{TENANT}:facility:{key}@{}", slot(n).0);
                match i % 3 {
                    0 => vec![(at_slot(2 * i), ONCE)],
                    1 => vec![(at_slot(2 * i), GONE), (at_slot(2 * i + 1), ONCE)],
                    _ => vec![(at_slot(2 * i), GONE)],
                }
            }
        }
    }

    /// What the simulator holds and how often it created each object (from its state and, for
    /// CloudPass and iPassan, its call log).
    async fn tally(self, s: &Stack) -> Tally {
        let mut out = Tally::new();
        let st = s.sim.state(self.vendor()).await;
        match self {
            Flow::Cloudpass => {
                for b in st["vehicle_bookings"].as_array().into_iter().flatten() {
                    if let Some(r) = b["reference"].as_str() {
                        out.entry(r.to_owned()).or_default().0 += 1;
                    }
                }
                for body in created_bodies(s, self, "POST", "/vehicle-bookings", &[201]).await {
                    if let Some(r) = body["reference"].as_str() {
                        out.entry(r.to_owned()).or_default().1 += 1;
                    }
                }
            }
            Flow::Dormakaba => {
                // The lock system answers a repeated CreateNewBooking with the existing booking
                // and records a "new" key issue only for a real create; every mobile key sent is
                // recorded, a repeated one too.
                let sys = &st["saflok"];
                let list = |name: &str| sys[name].as_array().cloned().unwrap_or_default();
                for b in list("bookings") {
                    let e = out.entry(str_of(&b["reservation_id"])).or_default();
                    e.0 += usize::from(b["checked_out"] != true);
                }
                for k in list("keys") {
                    if k["kind"] == "new" {
                        out.entry(str_of(&k["reservation_id"])).or_default().1 += 1;
                    }
                }
                for m in list("mobile_keys") {
                    let e = out
                        .entry(format!("{} mobile key", str_of(&m["reservation_id"])))
                        .or_default();
                    e.0 += usize::from(m["cancelled"] != true);
                    e.1 += 1;
                }
            }
            Flow::Ipassan => {
                let bookings = st["asset_bookings"]
                    .as_array()
                    .or_else(|| st["bookings"].as_array())
                    .cloned()
                    .unwrap_or_default();
                let id = |b: &Value| {
                    format!(
                        "{}@{}",
                        str_of(&b["reference"]),
                        norm_time(b["start"].as_str().unwrap_or_default())
                    )
                };
                for b in bookings {
                    out.entry(id(&b)).or_default().0 += 1;
                }
                for body in created_bodies(s, self, "POST", "/booking", &[200, 201]).await {
                    out.entry(id(&body)).or_default().1 += 1;
                }
            }
        }
        out
    }

    /// Slow answers on the calls that create, so a SIGKILL lands while they are in flight.
    fn slow_calls(self) -> Value {
        let path = match self {
            Flow::Cloudpass => "/vehicle-bookings",
            Flow::Dormakaba => "/MessengerPMSWS",
            Flow::Ipassan => "/booking",
        };
        json!({"vendor": self.vendor(), "kind": {"type": "latency", "ms": 400},
               "mode": {"probability": 1.0}, "path_contains": path})
    }

    /// Calls that create so far (successful or not).
    async fn creates_attempted(self, s: &Stack) -> usize {
        let (method, path) = match self {
            Flow::Cloudpass => ("POST", "/vehicle-bookings"),
            Flow::Dormakaba => ("POST", "CreateNewBooking"),
            Flow::Ipassan => ("POST", "/booking"),
        };
        s.sim.count(self.vendor(), method, path).await
    }

    /// ≈ 20 % of all the vendor's calls fail, transiently: busy, 5xx, 429, no answer.
    fn flaky_faults(self) -> Value {
        let v = self.vendor();
        let p =
            |kind: Value, p: f64| json!({"vendor": v, "kind": kind, "mode": {"probability": p}});
        match self {
            // The lock system's own busy/timeout faults (inside an HTTP 200), 5xx and dropped
            // connections. (A hung call waits for the SOAP client's fixed 30 s timeout, too
            // long for this test; a dropped connection takes the same path.)
            Flow::Dormakaba => json!([
                p(
                    json!({"type": "soap_fault", "reason": "BusyProcessingPreviousRequest"}),
                    0.06
                ),
                p(json!({"type": "soap_fault", "reason": "EncoderBusy"}), 0.03),
                p(
                    json!({"type": "soap_fault", "reason": "TimeoutWaitingKey"}),
                    0.02
                ),
                p(json!({"type": "status503"}), 0.04),
                p(json!({"type": "status500"}), 0.02),
                p(json!({"type": "drop_connection"}), 0.03)
            ]),
            Flow::Cloudpass | Flow::Ipassan => json!([
                p(json!({"type": "status503"}), 0.09),
                p(json!({"type": "status429", "retry_after_secs": 1}), 0.08),
                p(json!({"type": "hang"}), 0.03)
            ]),
        }
    }

    /// Webhooks that can never be applied, keyed by booking key, and what their dead letter's
    /// reason must mention.
    fn permanent_failures(self) -> (Vec<(String, Value)>, &'static str) {
        match self {
            // Administration 99 is mapped to no CloudPass site.
            Flow::Cloudpass => (
                ["flaky-unmapped-1", "flaky-unmapped-2"]
                    .map(|k| {
                        (
                            k.to_owned(),
                            bex_for("99", k, "reservation:created", &at(0), &["ZZ999Z"]),
                        )
                    })
                    .into(),
                "99",
            ),
            // Room 999 does not exist in the lock system.
            Flow::Dormakaba => (
                [790_001, 790_002]
                    .map(|id| {
                        (
                            id.to_string(),
                            clock_in_room(id, "999", "booking_new", &at(0)),
                        )
                    })
                    .into(),
                "RoomNumberNotFound",
            ),
            // Eva lacks the floor profile the rooftop BBQ needs: 422 naming it.
            Flow::Ipassan => (
                [1, 2]
                    .map(|n| {
                        let key = format!("cx-eva-{n}");
                        let (a, b) = slot(400 + n);
                        let body = connecx_for(&resident_eva(), &key, &a, &b, "booked", &at(0));
                        (key, body)
                    })
                    .into(),
                "Floor 7",
            ),
        }
    }
}

fn str_of(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_owned()
}

/// The JSON bodies of the vendor's calls that created something (`method`, path containing
/// `path`, one of `statuses`).
async fn created_bodies(
    s: &Stack,
    flow: Flow,
    method: &str,
    path: &str,
    statuses: &[u16],
) -> Vec<Value> {
    s.sim
        .calls(flow.vendor())
        .await
        .into_iter()
        .filter(|c| {
            c["method"] == method
                && c["path"].as_str().unwrap_or_default().contains(path)
                && statuses.iter().any(|st| c["status"] == *st)
        })
        .map(|c| {
            serde_json::from_str(c["body_summary"].as_str().unwrap_or_default()).unwrap_or_default()
        })
        .collect()
}

/// The one plate of CloudPass load item `i` (already normalized).
fn plate(i: usize) -> String {
    format!("E2E{i:03}")
}

/// Posts like an upstream does: retries (same body) on anything but a 2xx for up to
/// `patience`. Returns whether it was accepted and how many attempts failed.
async fn deliver(s: &Stack, source: &str, body: &Value, patience: Duration) -> (bool, u32) {
    let start = Instant::now();
    let mut failed = 0;
    loop {
        let (status, answer) = s.webhook(source, body).await;
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

/// Delivers every webhook of load item `i` in order (each retried until accepted); returns
/// the failed attempts.
async fn deliver_item(s: &Stack, flow: Flow, tag: &str, i: usize, patience: Duration) -> u32 {
    let mut failed = 0;
    for body in flow.webhooks(tag, i) {
        let (ok, f) = deliver(s, flow.source(), &body, patience).await;
        assert!(ok, "{flow:?} item {i} never accepted: {body}\n{}", s.logs());
        failed += f;
    }
    failed
}

/// Whether the worker's consumer has nothing left to deliver or waiting for an ack.
async fn quiescent(s: &Stack, worker: &str) -> bool {
    let bus = s.bus().await;
    let Ok(stream) = bus.js.get_stream(bus.stream_name("BOOKINGS")).await else {
        return false;
    };
    let Ok(mut consumer) = stream
        .get_consumer::<async_nats::jetstream::consumer::pull::Config>(&bus.stream_name(worker))
        .await
    else {
        return false;
    };
    consumer
        .info()
        .await
        .is_ok_and(|i| i.num_pending == 0 && i.num_ack_pending == 0)
}

/// Waits until every load item's objects are live as wanted and the worker is idle, then
/// asserts the whole end state: every accepted event applied, nothing created twice.
async fn assert_applied_once(s: &Stack, flow: Flow, tag: &str, items: usize, timeout: Duration) {
    let want: Vec<(String, Want)> = (0..items).flat_map(|i| flow.wants(tag, i)).collect();
    let start = Instant::now();
    loop {
        let tally = flow.tally(s).await;
        let waiting: Vec<&String> = want
            .iter()
            .filter(|(id, w)| tally.get(id).map_or(0, |t| t.0) != w.live)
            .map(|(id, _)| id)
            .collect();
        if waiting.is_empty() && quiescent(s, flow.worker()).await {
            break;
        }
        assert!(
            start.elapsed() < timeout,
            "{flow:?}: {} of {} objects not as wanted after {timeout:?}: {waiting:?}\n{tally:?}\n{}",
            waiting.len(),
            want.len(),
            s.logs()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let tally = flow.tally(s).await;
    let wrong: Vec<String> = want
        .iter()
        .filter_map(|(id, w)| {
            let t = tally.get(id).copied().unwrap_or_default();
            (t.0 != w.live || !w.created.contains(&t.1))
                .then(|| format!("{id}: (live, created) = {t:?}, want {w:?}"))
        })
        .collect();
    let unexpected: Vec<(&String, &(usize, usize))> = tally
        .iter()
        .filter(|(id, t)| t.0 > 0 && !want.iter().any(|(w, _)| w == *id))
        .collect();
    assert!(
        unexpected.is_empty(),
        "{flow:?}: live objects no event asked for: {unexpected:?}\n{}",
        s.logs()
    );
    assert!(
        wrong.is_empty(),
        "{flow:?}: every object live as wanted and created at most once:\n{}\n{}",
        wrong.join("\n"),
        s.logs()
    );
}

async fn nats_killed_and_restarted(flow: Flow) {
    let mut nats = PrivateNats::start().unwrap();
    let s = flow
        .stack(Options {
            nats_url: Some(nats.url()),
            ..Options::default()
        })
        .await;
    let mut during_outage = 0;
    let mut down = false;
    let items = 45;
    for i in 0..items {
        if i == 15 {
            nats.kill();
            down = true;
        }
        if i == 30 {
            nats.restart().unwrap();
            down = false;
        }
        deliver_item(&s, flow, "nats", i, Duration::from_secs(10)).await;
        if down {
            during_outage += 1;
        }
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    assert_eq!(during_outage, 15, "webhooks accepted while NATS was down");
    assert_applied_once(&s, flow, "nats", items, Duration::from_secs(40)).await;
    s.finish().await;
}

async fn postgres_restarted(flow: Flow) {
    let pg = Arc::new(PrivatePostgres::start().unwrap());
    let s = flow
        .stack(Options {
            database_url: Some(pg.url()),
            ..Options::default()
        })
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
            let failed = deliver_item(s, flow, "pg", i, Duration::from_secs(25)).await;
            (failed, sent)
        }
    }))
    .await;
    let outage_from = restart.await.unwrap() - load_start;
    let outage = outage_from..outage_from + Duration::from_secs(3);
    let refused: u32 = results.iter().map(|r| r.0).sum();
    let sent_during_outage = results.iter().filter(|r| outage.contains(&r.1)).count();
    eprintln!(
        "{flow:?}: {sent_during_outage} items sent while Postgres was down; {refused} answers were 503/refused and retried by the upstream"
    );
    assert!(sent_during_outage > 0, "the outage overlapped the load");
    assert_applied_once(&s, flow, "pg", items, Duration::from_secs(40)).await;
    s.finish().await;
}

async fn worker_sigkilled_mid_load(flow: Flow) {
    let mut s = flow
        .stack(Options {
            env: vec![("ACCESSHUB_WORKER_ACK_WAIT".into(), "4s".into())],
            ..Options::default()
        })
        .await;
    // Slow creates so the kill lands while calls are in flight.
    s.sim.add_faults(flow.slow_calls()).await;
    let items = 30;
    for i in 0..items {
        for body in flow.webhooks("kill", i) {
            s.accepted(flow.source(), &body).await;
        }
    }
    s.wait_until(
        "some creates before the kill",
        Duration::from_secs(20),
        || async { flow.creates_attempted(&s).await >= 5 },
    )
    .await;
    s.worker(flow.worker()).proc.kill9();
    let at_kill = flow.creates_attempted(&s).await;
    s.sim.clear_faults().await;
    s.restart_worker(flow.worker()).await;
    eprintln!("{flow:?}: creates attempted before SIGKILL: {at_kill} for {items} items");
    assert_applied_once(&s, flow, "kill", items, Duration::from_secs(40)).await;
    s.finish().await;
}

async fn vendor_failing_a_fifth_of_calls(flow: Flow) {
    let s = flow
        .stack(Options {
            env: vec![("ACCESSHUB_WORKER_MAX_DELIVER".into(), "25".into())],
            ..Options::default()
        })
        .await;
    s.sim.add_faults(flow.flaky_faults()).await;
    let items = 30;
    for i in 0..items {
        for body in flow.webhooks("flaky", i) {
            s.accepted(flow.source(), &body).await;
        }
    }
    let (permanent, reason) = flow.permanent_failures();
    for (_, body) in &permanent {
        s.accepted(flow.source(), body).await;
    }
    assert_applied_once(&s, flow, "flaky", items, Duration::from_secs(60)).await;

    let injected = s
        .sim
        .calls(flow.vendor())
        .await
        .iter()
        .filter(|c| c["injected_fault"] == true)
        .count();
    assert!(injected > 0, "faults were injected");
    let dead = accesshub_e2e::eventually(Duration::from_secs(20), || async {
        let d = s.dead_letters().await;
        (d.len() >= permanent.len()).then_some(d)
    })
    .await
    .unwrap_or_else(|| {
        panic!(
            "{flow:?}: permanent failures not dead-lettered\n{}",
            s.logs()
        )
    });
    let mut keys: Vec<String> = dead
        .iter()
        .map(|d| d.original_subject.rsplit('.').next().unwrap().to_owned())
        .collect();
    keys.sort();
    let want: Vec<String> = permanent.iter().map(|(k, _)| k.clone()).collect();
    assert_eq!(
        keys,
        want,
        "{flow:?}: only the permanent failures are dead-lettered: {dead:?}\n{}",
        s.logs()
    );
    for d in &dead {
        assert_eq!(d.class, ErrorClass::Permanent, "{d:?}");
        assert_eq!(d.worker, flow.worker());
        assert!(
            d.reason.contains(reason),
            "{flow:?}: the reason names the cause ({reason}): {:?}",
            d.reason
        );
    }
    eprintln!("{flow:?}: faults injected: {injected}");
    s.finish().await;
}

/// One `#[tokio::test]` per flow for a scenario function.
macro_rules! per_flow {
    ($scenario:ident: $($name:ident => $flow:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                $scenario(Flow::$flow).await;
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
    ipassan_worker_sigkilled_mid_load_and_restarted => Ipassan,
);
per_flow!(vendor_failing_a_fifth_of_calls:
    cloudpass_failing_a_fifth_of_calls_applies_everything_once_and_dead_letters_the_permanent => Cloudpass,
    dormakaba_failing_a_fifth_of_calls_applies_everything_once_and_dead_letters_the_permanent => Dormakaba,
    ipassan_failing_a_fifth_of_calls_applies_everything_once_and_dead_letters_the_permanent => Ipassan,
);

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
    s.add_connection(common::tapkey_conn(&s.sim)).await;
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
    // Redeliveries still in flight would show themselves before the worker is idle.
    s.wait_until("tapkey-worker idle", Duration::from_secs(20), || {
        quiescent(&s, "tapkey-worker")
    })
    .await;
    let t = tally().await;
    let wrong: Vec<_> = t.iter().filter(|(_, v)| **v != (2, 2)).collect();
    assert!(
        wrong.is_empty(),
        "(active, ever issued) must be (2, 2) per member: {wrong:?}\n{}",
        s.logs()
    );
    s.finish().await;
}
