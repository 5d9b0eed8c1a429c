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
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, Instant},
};

use accesshub_domain::ErrorClass;
use accesshub_e2e::{PrivateNats, PrivatePostgres};
use common::{
    IPASSAN_SITE, Options, Stack, TENANT, at, bex, bex_for, clock, clock_in_room, cloudpass_conn,
    connecx, connecx_for, dormakaba_conn, ipassan_conn_to, pass_email, pass_event, resident_eva,
    tapkey_conn,
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
    /// Nexudus day passes → two Tapkey grants each (front door, meeting room).
    Tapkey,
}

/// Whether the simulator de-duplicates repeated creates itself (a vendor's own idempotency).
/// `Off` everywhere unless a test says why not: only then is a duplicate accesshub causes a
/// second live object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum VendorDedupe {
    Off,
    On,
}

/// How many live copies of one object the end state must hold: 1 applied, 0 moved away or
/// cancelled. More than one is a duplicate, whatever the call log says.
type Want = usize;
const ONCE: Want = 1;
const GONE: Want = 0;

/// Live objects at the vendor, per canonical name (see [`Flow::tally`]).
type Tally = BTreeMap<String, usize>;

/// The first of the 30-minute iPassan slots used by the load.
const SLOT0: &str = "2030-06-01T00:00:00Z";

/// An iPassan asset like the demo "Rooftop BBQ" (same profiles, 30-minute slots, at most
/// 120 minutes) that does **not** limit itself to one booking per slot: the BBQ's documented
/// rule would refuse a duplicate booking with 422 and so hide it.
const LOUNGE: &str = "6b1f3c9e-0000-4000-8000-0000000a55e3";

/// The Tapkey locks Nexudus time pass 8 opens (see `common::tapkey_conn`).
const TAPKEY_LOCKS: [&str; 2] = ["tk-lock-front-door", "tk-lock-meeting-room"];

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
            Flow::Tapkey => "tapkey-worker",
        }
    }

    /// The simulator's vendor name.
    fn vendor(self) -> &'static str {
        match self {
            Flow::Cloudpass => "cloudpass",
            Flow::Dormakaba => "dormakaba",
            Flow::Ipassan => "ipassan",
            Flow::Tapkey => "tapkey",
        }
    }

    fn source(self) -> &'static str {
        match self {
            Flow::Cloudpass => "bex",
            Flow::Dormakaba => "clock",
            Flow::Ipassan => "connecx",
            Flow::Tapkey => "nexudus",
        }
    }

    /// booking-ingest and the flow's worker on `opts`, with the demo connection, against a
    /// simulator that de-duplicates or not.
    async fn stack(self, opts: Options, dedupe: VendorDedupe) -> Stack {
        let mut s = Stack::new(opts).await;
        s.sim
            .set_dedupe(self.vendor(), dedupe == VendorDedupe::On)
            .await;
        let conn = match self {
            Flow::Cloudpass => cloudpass_conn(&s.sim),
            Flow::Dormakaba => dormakaba_conn(&s.sim),
            Flow::Ipassan => {
                s.sim
                    .seed(
                        "ipassan",
                        &json!({"assets": [{
                            "uuid": LOUNGE, "site_uuid": IPASSAN_SITE, "name": "Rooftop lounge",
                            "door_profile_uuid": "6b1f3c9e-0000-4000-8000-00000000d001",
                            "floor_profile_uuid": "6b1f3c9e-0000-4000-8000-00000000f007",
                            "time_slot_minutes": 30, "max_booking_minutes": 120,
                            "one_booking_per_slot": false
                        }]}),
                    )
                    .await;
                ipassan_conn_to(&s.sim, LOUNGE)
            }
            Flow::Tapkey => tapkey_conn(&s.sim),
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
            Flow::Tapkey => format!("{tag}-pass-{i:03}"),
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
            Flow::Tapkey => vec![pass_event(tag, i)],
        }
    }

    /// The vendor objects load item `i` must leave behind, named as [`Flow::tally`] names them.
    fn wants(self, tag: &str, i: usize) -> Vec<(String, Want)> {
        let key = self.key(tag, i);
        match self {
            Flow::Cloudpass => vec![(format!("ah:{TENANT}:reservation:{key}:{}", plate(i)), ONCE)],
            Flow::Dormakaba => {
                let rid = format!("{TENANT}-{key}");
                vec![(format!("{rid} mobile key"), ONCE), (rid, ONCE)]
            }
            Flow::Ipassan => {
                let at_slot = |n| format!("ah:{TENANT}:facility:{key}@{}", slot(n).0);
                match i % 3 {
                    0 => vec![(at_slot(2 * i), ONCE)],
                    1 => vec![(at_slot(2 * i), GONE), (at_slot(2 * i + 1), ONCE)],
                    _ => vec![(at_slot(2 * i), GONE)],
                }
            }
            Flow::Tapkey => TAPKEY_LOCKS
                .iter()
                .map(|l| (format!("{}@{l}", pass_email(tag, i)), ONCE))
                .collect(),
        }
    }

    /// The simulator's live objects, counted per canonical name: the reference (CloudPass,
    /// dormakaba reservations), `<reservation> mobile key`, `<reference>@<start>` (iPassan),
    /// `<e-mail>@<lock>` (Tapkey grants).
    async fn tally(self, s: &Stack) -> Tally {
        let mut out = Tally::new();
        for o in s.sim.live(self.vendor()).await {
            let reference = str_of(&o["reference"]);
            let name = match (self, o["kind"].as_str().unwrap_or_default()) {
                (Flow::Dormakaba, "mobile_key") => format!("{reference} mobile key"),
                (Flow::Ipassan, _) => {
                    format!("{reference}@{}", norm_time(&str_of(&o["valid_from"])))
                }
                (Flow::Tapkey, _) => format!("{}@{}", str_of(&o["holder"]), str_of(&o["place"])),
                _ => reference,
            };
            *out.entry(name).or_default() += 1;
        }
        out
    }

    /// The vendor calls that create (path substring; dormakaba `path#Operation`).
    fn create_path(self) -> &'static str {
        match self {
            Flow::Cloudpass => "/vehicle-bookings",
            Flow::Dormakaba => "#CreateNewBooking",
            Flow::Ipassan => "/booking",
            Flow::Tapkey => "/Grants",
        }
    }

    /// The HTTP method of the calls that create.
    fn create_method(self) -> &'static str {
        if self == Flow::Tapkey { "PUT" } else { "POST" }
    }

    /// Creates that the vendor applied but whose answer an after-commit fault has not (yet)
    /// delivered: the calls a SIGKILL must cut between the vendor's work and our record.
    async fn applied_unanswered(self, s: &Stack) -> usize {
        let path = self.create_path().trim_start_matches('#');
        s.sim
            .calls(self.vendor())
            .await
            .iter()
            .filter(|c| {
                c["method"] == self.create_method()
                    && (str_of(&c["path"]).contains(path) || str_of(&c["operation"]) == path)
                    && c["status"] == 0
                    && c["committed_status"].as_u64().is_some_and(|st| st < 300)
            })
            .count()
    }

    /// ≈ 20 % of all the vendor's calls fail, transiently, before the vendor does anything:
    /// busy, 5xx, 429, no answer.
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
            Flow::Cloudpass | Flow::Ipassan | Flow::Tapkey => json!([
                p(json!({"type": "status503"}), 0.09),
                p(json!({"type": "status429", "retry_after_secs": 1}), 0.08),
                p(json!({"type": "hang"}), 0.03)
            ]),
        }
    }

    /// ≈ 25 % of the calls that change something are applied by the vendor and then lose
    /// their answer: 5xx after commit, connection reset after commit, (REST vendors) a
    /// timeout after commit.
    fn after_commit_faults(self) -> Value {
        let v = self.vendor();
        // Every call that changes something (dormakaba: every SOAP operation is a POST).
        let (path, methods): (&str, &[&str]) = match self {
            Flow::Cloudpass => ("/vehicle-bookings", &["POST", "PATCH", "DELETE"]),
            Flow::Dormakaba => ("/MessengerPMSWS#", &["POST"]),
            Flow::Ipassan => ("/booking", &["POST", "DELETE"]),
            Flow::Tapkey => ("/Owners/", &["PUT", "POST", "PATCH"]),
        };
        let mut kinds = vec![
            ("status503_after_commit", 0.12),
            ("status500_after_commit", 0.05),
            ("reset_after_commit", 0.06),
        ];
        // The SOAP client waits a fixed 30 s for an answer, the REST clients 10 s.
        if self != Flow::Dormakaba {
            kinds.push(("timeout_after_commit", 0.02));
        }
        let rules: Vec<Value> = methods
            .iter()
            .flat_map(|m| {
                kinds.iter().map(move |(kind, p)| {
                    json!({"vendor": v, "kind": {"type": kind}, "mode": {"probability": p},
                           "path_contains": path, "method": m})
                })
            })
            .collect();
        Value::Array(rules)
    }

    /// Webhooks that can never be applied, keyed by booking key, and what their dead letter's
    /// reason must mention.
    fn permanent_failures(self) -> (Vec<(String, Value)>, &'static str) {
        match self {
            // A plate CloudPass refuses (422). (An unmapped administration is no failure any
            // more: access control is off there, the event is ignored and counted.)
            Flow::Cloudpass => (
                ["flaky-badplate-1", "flaky-badplate-2"]
                    .map(|k| {
                        (
                            k.to_owned(),
                            bex_for("12", k, "reservation:created", &at(0), &["BAD!PLATE"]),
                        )
                    })
                    .into(),
                "plate #1 of 1",
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
            // Eva lacks the floor profile the rooftop assets need: 422 naming it.
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
            Flow::Tapkey => (Vec::new(), ""),
        }
    }
}

fn str_of(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_owned()
}

/// The one plate of CloudPass load item `i` (already normalized).
fn plate(i: usize) -> String {
    format!("E2E{i:03}")
}

/// What an upstream's delivery of one webhook came to.
#[derive(Debug, Clone, Copy)]
struct Delivered {
    /// Answered 202 `accepted` (not `superseded`, not refused).
    accepted: bool,
    /// Attempts answered 503 or refused before that.
    failed: u32,
}

/// Posts like an upstream does: retries (same body) on anything but a 2xx for up to
/// `patience`. Panics when it is never answered 202.
async fn deliver(s: &Stack, source: &str, body: &Value, patience: Duration) -> Delivered {
    let start = Instant::now();
    let mut failed = 0;
    loop {
        let (status, answer) = s.webhook(source, body).await;
        if status == 202 {
            return Delivered {
                accepted: answer["status"] == "accepted",
                failed,
            };
        }
        assert!(
            status == 0 || status == 503,
            "only 503 or a refused connection are acceptable during chaos, got {status} {answer}\n{}",
            s.logs()
        );
        failed += 1;
        assert!(
            start.elapsed() <= patience,
            "{source} webhook never accepted within {patience:?}: {body}\n{}",
            s.logs()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Delivers every webhook of load item `i` in order (each retried until answered 202).
async fn deliver_item(
    s: &Stack,
    flow: Flow,
    tag: &str,
    i: usize,
    patience: Duration,
) -> Vec<Delivered> {
    let mut out = Vec::new();
    for body in flow.webhooks(tag, i) {
        out.push(deliver(s, flow.source(), &body, patience).await);
    }
    out
}

/// Whether everything accepted has reached the worker and been settled: no outbox row left to
/// publish, nothing pending or unacknowledged at the worker's consumer.
async fn quiescent(s: &Stack, worker: &str) -> bool {
    if s.outbox_pending().await != 0 {
        return false;
    }
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

/// Waits until every load item's objects are live as wanted and the system is quiescent
/// (positive signals only), then asserts the whole end state from the vendor's live objects:
/// each wanted object live exactly as often as wanted (never twice), nothing live that no
/// event asked for, no duplicate group at the vendor.
async fn assert_applied_once(s: &Stack, flow: Flow, tag: &str, items: usize, timeout: Duration) {
    let want: Vec<(String, Want)> = (0..items).flat_map(|i| flow.wants(tag, i)).collect();
    let start = Instant::now();
    loop {
        let tally = flow.tally(s).await;
        let waiting: Vec<&String> = want
            .iter()
            .filter(|(id, w)| tally.get(id).copied().unwrap_or(0) != *w)
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
            let live = tally.get(id).copied().unwrap_or(0);
            (live != *w).then(|| format!("{id}: {live} live, want {w}"))
        })
        .collect();
    let unexpected: Vec<(&String, &usize)> = tally
        .iter()
        .filter(|(id, n)| **n > 0 && !want.iter().any(|(w, _)| w == *id))
        .collect();
    assert!(
        unexpected.is_empty(),
        "{flow:?}: live objects no event asked for: {unexpected:?}\n{}",
        s.logs()
    );
    assert!(
        wrong.is_empty(),
        "{flow:?}: every object live exactly as often as wanted:\n{}\n{}",
        wrong.join("\n"),
        s.logs()
    );
    let dups = s.sim.live_duplicates(flow.vendor()).await;
    assert!(
        dups.is_empty(),
        "{flow:?}: the same access twice at the vendor: {dups:?}\n{}",
        s.logs()
    );
}

/// Nothing in the DLQ stream: no dead letter, no MAX_DELIVERIES advisory. Called once the
/// flow is quiescent ([`assert_applied_once`]), when a dead letter would already be stored.
async fn assert_no_dead_letters(s: &Stack, flow: Flow) {
    let n = s.dlq_messages().await;
    assert_eq!(
        n,
        0,
        "{flow:?}: nothing may be dead-lettered: {:?}\n{}",
        s.dead_letters().await,
        s.logs()
    );
}

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

/// Every dead letter is one of the permanent failures, each exactly once, with its reason.
async fn assert_permanent_failures_dead_lettered(s: &Stack, flow: Flow) {
    let (permanent, reason) = flow.permanent_failures();
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
    assert_eq!(
        s.dlq_messages().await,
        permanent.len() as u64,
        "{flow:?}: no MAX_DELIVERIES advisory either"
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
