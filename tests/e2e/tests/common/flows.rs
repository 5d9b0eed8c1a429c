//! The four vendor paths as the chaos tests drive and check them (tests/chaos.rs on one node,
//! tests/cluster.rs on a 3-node cluster): each path's webhooks, the vendor objects they must
//! leave, the simulator's live objects named the same way, its fault mixes and its permanent
//! failures, and the end-state assertions read from the outside.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use accesshub_domain::ErrorClass;
use serde_json::{Value, json};

use super::{
    IPASSAN_SITE, Options, Stack, TENANT, at, bex, bex_for, clock, clock_in_room, cloudpass_conn,
    connecx, connecx_for, dormakaba_conn, ipassan_conn_to, pass_email, pass_event, resident_eva,
    tapkey_conn,
};

/// One vendor's path through accesshub, as the chaos scenarios drive and check it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
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
pub enum VendorDedupe {
    Off,
    On,
}

/// How many live copies of one object the end state must hold: 1 applied, 0 moved away or
/// cancelled. More than one is a duplicate, whatever the call log says.
pub type Want = usize;
pub const ONCE: Want = 1;
pub const GONE: Want = 0;

/// Live objects at the vendor, per canonical name (see [`Flow::tally`]).
pub type Tally = BTreeMap<String, usize>;

/// The first of the 30-minute iPassan slots used by the load.
pub const SLOT0: &str = "2030-06-01T00:00:00Z";

/// An iPassan asset like the demo "Rooftop BBQ" (same profiles, 30-minute slots, at most
/// 120 minutes) that does **not** limit itself to one booking per slot: the BBQ's documented
/// rule would refuse a duplicate booking with 422 and so hide it.
pub const LOUNGE: &str = "6b1f3c9e-0000-4000-8000-0000000a55e3";

/// The Tapkey locks Nexudus time pass 8 opens (see `common::tapkey_conn`).
pub const TAPKEY_LOCKS: [&str; 2] = ["tk-lock-front-door", "tk-lock-meeting-room"];

/// iPassan slot `n` (30 minutes each from [`SLOT0`]) as (start, end).
pub fn slot(n: usize) -> (String, String) {
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
pub fn norm_time(t: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(t)
        .map(|t| {
            t.to_utc()
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        })
        .unwrap_or_else(|_| t.to_owned())
}

impl Flow {
    pub fn worker(self) -> &'static str {
        match self {
            Flow::Cloudpass => "cloudpass-worker",
            Flow::Dormakaba => "dormakaba-worker",
            Flow::Ipassan => "ipassan-worker",
            Flow::Tapkey => "tapkey-worker",
        }
    }

    /// The simulator's vendor name.
    pub fn vendor(self) -> &'static str {
        match self {
            Flow::Cloudpass => "cloudpass",
            Flow::Dormakaba => "dormakaba",
            Flow::Ipassan => "ipassan",
            Flow::Tapkey => "tapkey",
        }
    }

    pub fn source(self) -> &'static str {
        match self {
            Flow::Cloudpass => "bex",
            Flow::Dormakaba => "clock",
            Flow::Ipassan => "connecx",
            Flow::Tapkey => "nexudus",
        }
    }

    /// booking-ingest and the flow's worker on `opts`, with the demo connection, against a
    /// simulator that de-duplicates or not.
    pub async fn stack(self, opts: Options, dedupe: VendorDedupe) -> Stack {
        let mut s = Stack::new(opts).await;
        self.connect(&mut s, dedupe).await;
        s.start_ingest(&[]).await;
        s.start_worker(self.worker(), &[]).await;
        s
    }

    /// The flow's demo connection on `s` (and the simulator set up for it: de-duplication,
    /// the iPassan lounge asset).
    pub async fn connect(self, s: &mut Stack, dedupe: VendorDedupe) {
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
    }

    /// The upstream booking key of load item `i` (the last segment of its subject).
    pub fn key(self, tag: &str, i: usize) -> String {
        match self {
            Flow::Cloudpass => format!("{tag}-{i:03}"),
            Flow::Dormakaba => (700_000 + i).to_string(),
            Flow::Ipassan => format!("cx-{tag}-{i:03}"),
            Flow::Tapkey => format!("{tag}-pass-{i:03}"),
        }
    }

    /// The webhooks of load item `i`, oldest revision first.
    pub fn webhooks(self, tag: &str, i: usize) -> Vec<Value> {
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
    pub fn wants(self, tag: &str, i: usize) -> Vec<(String, Want)> {
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
    pub async fn tally(self, s: &Stack) -> Tally {
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
    pub fn create_path(self) -> &'static str {
        match self {
            Flow::Cloudpass => "/vehicle-bookings",
            Flow::Dormakaba => "#CreateNewBooking",
            Flow::Ipassan => "/booking",
            Flow::Tapkey => "/Grants",
        }
    }

    /// The HTTP method of the calls that create.
    pub fn create_method(self) -> &'static str {
        if self == Flow::Tapkey { "PUT" } else { "POST" }
    }

    /// Creates that the vendor applied but whose answer an after-commit fault has not (yet)
    /// delivered: the calls a SIGKILL must cut between the vendor's work and our record.
    pub async fn applied_unanswered(self, s: &Stack) -> usize {
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
    pub fn flaky_faults(self) -> Value {
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
    pub fn after_commit_faults(self) -> Value {
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
    pub fn permanent_failures(self) -> (Vec<(String, Value)>, &'static str) {
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

pub fn str_of(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_owned()
}

/// The one plate of CloudPass load item `i` (already normalized).
pub fn plate(i: usize) -> String {
    format!("E2E{i:03}")
}

/// What an upstream's delivery of one webhook came to.
#[derive(Debug, Clone, Copy)]
pub struct Delivered {
    /// Answered 202 `accepted` (not `superseded`, not refused).
    pub accepted: bool,
    /// Attempts answered 503 or refused before that.
    pub failed: u32,
}

/// Posts like an upstream does: retries (same body) on anything but a 2xx for up to
/// `patience`. Panics when it is never answered 202.
pub async fn deliver(s: &Stack, source: &str, body: &Value, patience: Duration) -> Delivered {
    deliver_via(s, &[], source, body, patience).await
}

/// [`deliver`] to booking-ingest replicas listening on `ports` (none: the stack's own), the
/// next replica after each refusal, as a load balancer in front of them would.
pub async fn deliver_via(
    s: &Stack,
    ports: &[u16],
    source: &str,
    body: &Value,
    patience: Duration,
) -> Delivered {
    let start = Instant::now();
    let mut failed = 0;
    loop {
        let (status, answer) = match ports.get(failed as usize % ports.len().max(1)) {
            Some(port) => s.webhook_at(*port, source, body, &[]).await,
            None => s.webhook(source, body).await,
        };
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
pub async fn deliver_item(
    s: &Stack,
    flow: Flow,
    tag: &str,
    i: usize,
    patience: Duration,
) -> Vec<Delivered> {
    deliver_item_via(s, &[], flow, tag, i, patience).await
}

/// [`deliver_item`] through the booking-ingest replicas on `ports` (see [`deliver_via`]).
pub async fn deliver_item_via(
    s: &Stack,
    ports: &[u16],
    flow: Flow,
    tag: &str,
    i: usize,
    patience: Duration,
) -> Vec<Delivered> {
    let mut out = Vec::new();
    for body in flow.webhooks(tag, i) {
        out.push(deliver_via(s, ports, flow.source(), &body, patience).await);
    }
    out
}

/// Whether everything accepted has reached the worker and been settled: no outbox row left to
/// publish, nothing pending or unacknowledged at the worker's consumer.
pub async fn quiescent(s: &Stack, worker: &str) -> bool {
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
pub async fn assert_applied_once(
    s: &Stack,
    flow: Flow,
    tag: &str,
    items: usize,
    timeout: Duration,
) {
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
pub async fn assert_no_dead_letters(s: &Stack, flow: Flow) {
    let n = s.dlq_messages().await;
    assert_eq!(
        n,
        0,
        "{flow:?}: nothing may be dead-lettered: {:?}\n{}",
        s.dead_letters().await,
        s.logs()
    );
}

/// Every dead letter is one of the permanent failures, each exactly once, with its reason.
pub async fn assert_permanent_failures_dead_lettered(s: &Stack, flow: Flow) {
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
