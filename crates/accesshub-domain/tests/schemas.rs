//! Contract tests: the JSON Schemas in proto-schemas/v1 and the Rust types must agree.
//!
//! * every example in proto-schemas/v1/examples validates against its schema, deserializes into
//!   the Rust type and re-serializes to exactly the example;
//! * values built in Rust validate against the schemas;
//! * mutated documents (field removed, unknown field added, values replaced by wrong types,
//!   other enum names, nulls, out-of-range integers) are accepted by the schema exactly when
//!   serde accepts them — so a field or variant added on one side only fails here;
//! * the schemas' property names and enum lists equal the Rust fields and serde names.
//!
//! Examples are named `<schema>--<description>.json`, where `<schema>` is the stem of a schema
//! in v1/ (`event`, `reservation`, `facility`, `pass`, `keyreq`, `key-result`, `dead-letter`);
//! any new file there is picked up automatically.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use accesshub_domain::*;
use chrono::{DateTime, NaiveDate, NaiveTime, TimeZone, Utc};
use jsonschema::{Resource, Validator};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use uuid::Uuid;

/// Base of every schema `$id`; schemas reference each other relative to it.
const BASE: &str = "https://schemas.accesshub.dev/v1/";

fn proto_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto-schemas")
}

fn v1_dir() -> PathBuf {
    proto_dir().join("v1")
}

fn read_json(path: &Path) -> Value {
    let text =
        fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

/// One schema file and the Rust type it describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Contract {
    Event,
    Reservation,
    Facility,
    Pass,
    KeyRequest,
    KeyResult,
    DeadLetter,
}

impl Contract {
    const ALL: [Contract; 7] = [
        Contract::Event,
        Contract::Reservation,
        Contract::Facility,
        Contract::Pass,
        Contract::KeyRequest,
        Contract::KeyResult,
        Contract::DeadLetter,
    ];

    /// Schema file stem, also the example file prefix.
    fn stem(self) -> &'static str {
        match self {
            Contract::Event => "event",
            Contract::Reservation => "reservation",
            Contract::Facility => "facility",
            Contract::Pass => "pass",
            Contract::KeyRequest => "keyreq",
            Contract::KeyResult => "key-result",
            Contract::DeadLetter => "dead-letter",
        }
    }

    fn from_stem(stem: &str) -> Option<Contract> {
        Contract::ALL.into_iter().find(|c| c.stem() == stem)
    }

    fn file(self) -> PathBuf {
        v1_dir().join(format!("{}.schema.json", self.stem()))
    }

    fn id(self) -> String {
        format!("{BASE}{}.schema.json", self.stem())
    }

    fn schema(self) -> Value {
        read_json(&self.file())
    }

    /// The compiled validator (formats asserted, cross-file `$ref`s resolved from an in-memory
    /// registry of every v1 schema by `$id`; no network or file retrieval).
    fn validator(self) -> &'static Validator {
        static VALIDATORS: LazyLock<BTreeMap<Contract, Validator>> = LazyLock::new(|| {
            Contract::ALL
                .into_iter()
                .map(|c| (c, build_validator(c)))
                .collect()
        });
        &VALIDATORS[&self]
    }

    fn schema_errors(self, instance: &Value) -> Vec<String> {
        self.validator()
            .iter_errors(instance)
            .map(|e| format!("{} at {}", e, e.instance_path))
            .collect()
    }

    fn schema_accepts(self, instance: &Value) -> bool {
        self.validator().is_valid(instance)
    }

    /// Deserializes the JSON text of `instance` into the Rust type and serializes it back.
    fn serde_round_trip(self, instance: &Value) -> Result<Value, String> {
        match self {
            Contract::Event => round_trip::<Event>(instance),
            Contract::Reservation => round_trip::<Reservation>(instance),
            Contract::Facility => round_trip::<FacilityBooking>(instance),
            Contract::Pass => round_trip::<Pass>(instance),
            Contract::KeyRequest => round_trip::<KeyRequest>(instance),
            Contract::KeyResult => round_trip::<KeyResult>(instance),
            Contract::DeadLetter => round_trip::<DeadLetter>(instance),
        }
    }

    fn serde_accepts(self, instance: &Value) -> bool {
        self.serde_round_trip(instance).is_ok()
    }
}

fn build_validator(root: Contract) -> Validator {
    let mut options = jsonschema::draft202012::options()
        .should_validate_formats(true)
        .should_ignore_unknown_formats(false);
    for c in Contract::ALL {
        let resource = Resource::from_contents(c.schema())
            .unwrap_or_else(|e| panic!("{}: not a schema resource: {e}", c.stem()));
        options = options.with_resource(c.id(), resource);
    }
    options
        .build(&root.schema())
        .unwrap_or_else(|e| panic!("{} does not compile: {e}", root.stem()))
}

fn round_trip<T: Serialize + DeserializeOwned>(instance: &Value) -> Result<Value, String> {
    // Through text, as on the wire.
    let value: T = serde_json::from_str(&instance.to_string()).map_err(|e| e.to_string())?;
    serde_json::to_value(&value).map_err(|e| e.to_string())
}

fn examples() -> Vec<(String, Contract, Value)> {
    let dir = v1_dir().join("examples");
    let mut out = Vec::new();
    for entry in fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("directory entry").path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()).map(str::to_owned) else {
            continue;
        };
        let Some(base) = name.strip_suffix(".json") else {
            continue;
        };
        let (stem, _) = base
            .split_once("--")
            .unwrap_or_else(|| panic!("example {name} must be named <schema>--<description>.json"));
        let contract = Contract::from_stem(stem)
            .unwrap_or_else(|| panic!("example {name}: no schema v1/{stem}.schema.json"));
        out.push((name, contract, read_json(&path)));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

// ---------------------------------------------------------------------------------------------
// Values built in Rust
// ---------------------------------------------------------------------------------------------

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .expect("test timestamp")
        .with_timezone(&Utc)
}

fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).expect("test date")
}

fn time(h: u32, m: u32, s: u32) -> NaiveTime {
    NaiveTime::from_hms_opt(h, m, s).expect("test time")
}

/// Every field set (every `Option` is `Some`, every list non-empty), written as struct literals
/// so a field added to a type does not compile here until it is given a value.
fn full_reservation() -> Reservation {
    Reservation {
        status: ReservationStatus::CheckedIn,
        guest: Guest {
            name: "Doe, John, Paul".into(),
            email: Some("john@example.com".into()),
            mobile_phone: Some("+31 6 1234 5678".into()),
        },
        arrival: date(2025, 10, 24),
        departure: date(2025, 10, 27),
        check_in_time: NaiveTime::from_hms_milli_opt(15, 0, 0, 500).expect("test time"),
        check_out_time: time(11, 0, 0),
        timezone: "Europe/Amsterdam".into(),
        rooms: vec!["101".into(), "102".into()],
        common_areas: vec!["pool".into()],
        license_plates: vec!["AB-123-C".into(), "XY-99-Z".into()],
        mobile_key: true,
    }
}

fn minimal_reservation() -> Reservation {
    Reservation {
        status: ReservationStatus::NoShow,
        guest: Guest {
            name: "Roe, Jane".into(),
            email: None,
            mobile_phone: None,
        },
        arrival: date(2025, 3, 30),
        departure: date(2025, 3, 31),
        check_in_time: time(2, 30, 0),
        check_out_time: time(10, 0, 0),
        timezone: "Europe/Amsterdam".into(),
        rooms: vec![],
        common_areas: vec![],
        license_plates: vec![],
        mobile_key: false,
    }
}

fn full_facility() -> FacilityBooking {
    FacilityBooking {
        status: FacilityStatus::Booked,
        facility_id: "function-room-2".into(),
        resident: Resident {
            id: "res-7".into(),
            email: "kim@example.org".into(),
            first_name: "Kim".into(),
            last_name: "Jansen".into(),
        },
        start: Utc::now(),
        end: Utc::now() + chrono::Duration::hours(2),
    }
}

fn full_pass() -> Pass {
    Pass {
        status: PassStatus::Active,
        holder: PassHolder {
            id: "coworker-1".into(),
            email: "sam@example.net".into(),
            name: Some("Sam".into()),
        },
        pass_type: "week".into(),
        pass_type_name: Some("Week pass".into()),
        valid_from: Some(at("2025-06-01T00:00:00Z")),
        expires_at: at("2025-06-08T00:00:00.123456789Z"),
    }
}

fn minimal_pass() -> Pass {
    Pass {
        status: PassStatus::Removed,
        holder: PassHolder {
            id: "coworker-2".into(),
            email: "alex@example.net".into(),
            name: None,
        },
        pass_type: "day".into(),
        pass_type_name: None,
        valid_from: None,
        expires_at: at("2025-06-02T00:00:00Z"),
    }
}

fn full_key_request() -> KeyRequest {
    KeyRequest {
        request_id: Uuid::now_v7(),
        reservation_key: "R-1".into(),
        action: KeyAction::DuplicateKey,
        encoder_id: Some("enc-1".into()),
        key_count: 3,
        requested_by: Some("desk.bob".into()),
        mobile_phone: Some("+31 6 1234 5678".into()),
        mobile_key: true,
    }
}

fn minimal_key_request() -> KeyRequest {
    KeyRequest {
        request_id: Uuid::now_v7(),
        reservation_key: "R-1".into(),
        action: KeyAction::MobileKey,
        encoder_id: None,
        key_count: 1,
        requested_by: None,
        mobile_phone: None,
        mobile_key: false,
    }
}

fn full_key_result() -> KeyResult {
    KeyResult {
        request_id: Uuid::now_v7(),
        tenant: "acme".into(),
        status: KeyResultStatus::Failed,
        message: Some("encoder offline".into()),
        at: Utc::now(),
    }
}

fn minimal_key_result() -> KeyResult {
    KeyResult {
        request_id: Uuid::now_v7(),
        tenant: "acme".into(),
        status: KeyResultStatus::Sent,
        message: None,
        at: Utc::now(),
    }
}

fn event(body: EventBody) -> Event {
    Event::new(
        "acme",
        "site-1",
        "booking-1",
        42,
        Source::Native,
        Utc::now(),
        body,
    )
}

fn full_dead_letter() -> DeadLetter {
    let original = event(EventBody::Pass(full_pass()));
    let bytes = serde_json::to_vec(&original).expect("serialize event");
    let (payload, payload_encoding) = DeadLetter::encode_payload(&bytes);
    DeadLetter {
        id: Uuid::now_v7(),
        worker: "tapkey-worker".into(),
        original_subject: original.subject(),
        original_headers: BTreeMap::from([
            (headers::MSG_ID.to_owned(), vec![original.id.to_string()]),
            (headers::TENANT.to_owned(), vec![original.tenant.clone()]),
            ("X-Multi".to_owned(), vec!["a".into(), "b".into()]),
        ]),
        payload,
        payload_encoding,
        reason: "Tapkey 403: grant not allowed".into(),
        class: ErrorClass::Permanent,
        attempts: 1,
        stream_sequence: Some(u64::MAX),
        stream: subjects::BOOKINGS_STREAM.into(),
        trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736".into()),
        event_id: Some(original.id),
        tenant: Some(original.tenant.clone()),
        kind: Some(original.kind().to_string()),
        booking_key: Some(original.booking_key.clone()),
        replay_count: 2,
        failed_at: Utc::now(),
    }
}

fn minimal_dead_letter() -> DeadLetter {
    let (payload, payload_encoding) = DeadLetter::encode_payload(&[0xff, 0x00, 0xfe]);
    DeadLetter {
        id: Uuid::now_v7(),
        worker: "dormakaba-worker".into(),
        original_subject: "bookings.keyreq.acme.k1".into(),
        original_headers: BTreeMap::new(),
        payload,
        payload_encoding,
        reason: "not JSON".into(),
        class: ErrorClass::Transient,
        attempts: 5,
        stream_sequence: None,
        stream: subjects::BOOKINGS_STREAM.into(),
        trace_id: None,
        event_id: None,
        tenant: None,
        kind: None,
        booking_key: None,
        replay_count: 0,
        failed_at: Utc
            .with_ymd_and_hms(2025, 1, 1, 0, 0, 0)
            .single()
            .expect("time"),
    }
}

fn to_json<T: Serialize>(v: &T) -> Value {
    serde_json::to_value(v).expect("serialize")
}

/// Rust-built documents: (label, contract, json). The "full" ones have every optional field set.
fn rust_values() -> Vec<(&'static str, Contract, Value)> {
    vec![
        (
            "full reservation event",
            Contract::Event,
            to_json(&event(EventBody::Reservation(full_reservation()))),
        ),
        (
            "minimal reservation event",
            Contract::Event,
            to_json(&event(EventBody::Reservation(minimal_reservation()))),
        ),
        (
            "facility event",
            Contract::Event,
            to_json(&event(EventBody::Facility(full_facility()))),
        ),
        (
            "full pass event",
            Contract::Event,
            to_json(&event(EventBody::Pass(full_pass()))),
        ),
        (
            "minimal pass event",
            Contract::Event,
            to_json(&event(EventBody::Pass(minimal_pass()))),
        ),
        (
            "full keyreq event",
            Contract::Event,
            to_json(&event(EventBody::KeyRequest(full_key_request()))),
        ),
        (
            "minimal keyreq event",
            Contract::Event,
            to_json(&event(EventBody::KeyRequest(minimal_key_request()))),
        ),
        (
            "full reservation",
            Contract::Reservation,
            to_json(&full_reservation()),
        ),
        (
            "minimal reservation",
            Contract::Reservation,
            to_json(&minimal_reservation()),
        ),
        ("facility", Contract::Facility, to_json(&full_facility())),
        ("full pass", Contract::Pass, to_json(&full_pass())),
        ("minimal pass", Contract::Pass, to_json(&minimal_pass())),
        (
            "full key request",
            Contract::KeyRequest,
            to_json(&full_key_request()),
        ),
        (
            "minimal key request",
            Contract::KeyRequest,
            to_json(&minimal_key_request()),
        ),
        (
            "full key result",
            Contract::KeyResult,
            to_json(&full_key_result()),
        ),
        (
            "minimal key result",
            Contract::KeyResult,
            to_json(&minimal_key_result()),
        ),
        (
            "full dead letter",
            Contract::DeadLetter,
            to_json(&full_dead_letter()),
        ),
        (
            "minimal dead letter",
            Contract::DeadLetter,
            to_json(&minimal_dead_letter()),
        ),
    ]
}

// ---------------------------------------------------------------------------------------------
// Schemas themselves
// ---------------------------------------------------------------------------------------------

#[test]
fn schemas_are_draft_2020_12_with_ids_and_compile() {
    let mut on_disk: BTreeSet<String> = BTreeSet::new();
    for entry in fs::read_dir(v1_dir()).expect("v1 dir") {
        let name = entry.expect("entry").file_name();
        let name = name.to_string_lossy();
        if let Some(stem) = name.strip_suffix(".schema.json") {
            on_disk.insert(stem.to_owned());
        }
    }
    let known: BTreeSet<String> = Contract::ALL.iter().map(|c| c.stem().to_owned()).collect();
    assert_eq!(
        on_disk, known,
        "schema files in v1/ vs contracts tested here"
    );

    for c in Contract::ALL {
        let schema = c.schema();
        assert_eq!(
            schema["$schema"],
            "https://json-schema.org/draft/2020-12/schema",
            "{}",
            c.stem()
        );
        assert_eq!(schema["$id"], c.id(), "{}: $id", c.stem());
        if let Err(e) = jsonschema::draft202012::meta::validate(&schema) {
            panic!("{} is not a valid 2020-12 schema: {e}", c.stem());
        }
        let _ = c.validator();
    }
}

// ---------------------------------------------------------------------------------------------
// Examples
// ---------------------------------------------------------------------------------------------

#[test]
fn every_example_validates_and_round_trips() {
    let all = examples();
    assert!(!all.is_empty(), "no examples found");
    for (name, contract, example) in &all {
        let errors = contract.schema_errors(example);
        assert!(errors.is_empty(), "{name} fails its schema: {errors:#?}");
        let back = contract
            .serde_round_trip(example)
            .unwrap_or_else(|e| panic!("{name} does not deserialize into the Rust type: {e}"));
        assert_eq!(
            &back, example,
            "{name}: re-serialized JSON differs from the example"
        );
    }
}

#[test]
fn examples_cover_every_kind_and_the_required_cases() {
    let all = examples();
    let events: Vec<Event> = all
        .iter()
        .filter(|(_, c, _)| *c == Contract::Event)
        .map(|(n, _, v)| serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("{n}: {e}")))
        .collect();
    for kind in EventKind::ALL {
        assert!(
            events.iter().any(|e| e.kind() == kind),
            "no example event of kind {kind}"
        );
    }
    assert!(events.iter().any(|e| matches!(&e.body,
        EventBody::Reservation(r) if r.status == ReservationStatus::Cancelled && r.license_plates.len() == 2)),
        "need a cancelled reservation with two plates");
    assert!(
        events
            .iter()
            .any(|e| matches!(&e.body, EventBody::Pass(p) if p.status == PassStatus::Used)),
        "need a used pass"
    );
    assert!(
        events.iter().any(
            |e| matches!(&e.body, EventBody::KeyRequest(k) if k.action == KeyAction::MobileKey)
        ),
        "need a mobile key request"
    );
    for e in &events {
        assert_eq!(e.schema_version, SCHEMA_VERSION);
        assert!(e.problems().is_empty(), "{}: {:?}", e.id, e.problems());
    }

    let letters: Vec<DeadLetter> = all
        .iter()
        .filter(|(_, c, _)| *c == Contract::DeadLetter)
        .map(|(n, _, v)| serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("{n}: {e}")))
        .collect();
    let binary = letters
        .iter()
        .find(|d| d.payload_encoding == PayloadEncoding::Base64)
        .expect("need a dead letter with a base64 payload");
    let bytes = binary.payload_bytes().expect("base64 payload decodes");
    assert!(
        std::str::from_utf8(&bytes).is_err(),
        "base64 example should carry non-UTF-8 bytes"
    );
    assert_eq!(DeadLetter::encode_payload(&bytes).0, binary.payload);
    // A text dead letter carrying an event: the carried event satisfies the event schema too.
    for d in letters
        .iter()
        .filter(|d| d.payload_encoding == PayloadEncoding::Utf8)
    {
        if let Ok(inner) = serde_json::from_str::<Value>(&d.payload) {
            let errors = Contract::Event.schema_errors(&inner);
            assert!(
                errors.is_empty(),
                "dead letter {} payload: {errors:#?}",
                d.id
            );
            let ev: Event = serde_json::from_value(inner).expect("carried event");
            assert_eq!(Some(ev.id), d.event_id);
            assert_eq!(ev.subject(), d.original_subject);
        }
    }
    assert!(
        all.iter().any(|(_, c, _)| *c == Contract::KeyResult),
        "need a key result example"
    );
}

// ---------------------------------------------------------------------------------------------
// Rust-built values
// ---------------------------------------------------------------------------------------------

#[test]
fn rust_values_validate_against_the_schemas() {
    for (label, contract, value) in rust_values() {
        let errors = contract.schema_errors(&value);
        assert!(errors.is_empty(), "{label}: {errors:#?}\n{value:#}");
        // And round-trip losslessly.
        assert_eq!(
            contract.serde_round_trip(&value).as_ref(),
            Ok(&value),
            "{label}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Explicit negatives: unknown field, missing required field, wrong enum — rejected by both
// ---------------------------------------------------------------------------------------------

fn mutate(mut v: Value, pointer: &str, f: impl FnOnce(&mut Value)) -> Value {
    f(v.pointer_mut(pointer)
        .unwrap_or_else(|| panic!("no {pointer}")));
    v
}

fn remove(v: Value, pointer: &str) -> Value {
    let (parent, key) = pointer.rsplit_once('/').expect("pointer");
    mutate(v, parent, |p| {
        assert!(
            p.as_object_mut().expect("object").remove(key).is_some(),
            "{pointer} absent"
        );
    })
}

fn set(v: Value, pointer: &str, new: Value) -> Value {
    mutate(v, pointer, |p| *p = new)
}

fn insert(v: Value, pointer: &str, key: &str, new: Value) -> Value {
    mutate(v, pointer, |p| {
        p.as_object_mut()
            .expect("object")
            .insert(key.to_owned(), new);
    })
}

#[test]
fn negative_cases_are_rejected_by_schema_and_serde() {
    let res_ev = to_json(&event(EventBody::Reservation(full_reservation())));
    let pass_ev = to_json(&event(EventBody::Pass(full_pass())));
    // Per schema: an unknown field, a missing required field, a wrong enum name.
    let standard = [
        (
            Contract::Event,
            res_ev.clone(),
            "/revision",
            "/source",
            "mews",
        ),
        (
            Contract::Reservation,
            to_json(&full_reservation()),
            "/arrival",
            "/status",
            "Confirmed",
        ),
        (
            Contract::Facility,
            to_json(&full_facility()),
            "/resident/email",
            "/status",
            "deleted",
        ),
        (
            Contract::Pass,
            to_json(&full_pass()),
            "/expires_at",
            "/status",
            "expired",
        ),
        (
            Contract::KeyRequest,
            to_json(&full_key_request()),
            "/action",
            "/action",
            "new-key",
        ),
        (
            Contract::KeyResult,
            to_json(&full_key_result()),
            "/at",
            "/status",
            "done",
        ),
        (
            Contract::DeadLetter,
            to_json(&full_dead_letter()),
            "/reason",
            "/class",
            "fatal",
        ),
    ];
    let mut cases: Vec<(String, Contract, Value)> = Vec::new();
    for (c, base, required, enum_pointer, bad) in standard {
        let stem = c.stem();
        cases.push((
            format!("{stem}: unknown field"),
            c,
            insert(base.clone(), "", "zz_unknown", json!(1)),
        ));
        cases.push((
            format!("{stem}: missing {required}"),
            c,
            remove(base.clone(), required),
        ));
        cases.push((
            format!("{stem}: {enum_pointer} = {bad:?}"),
            c,
            set(base, enum_pointer, json!(bad)),
        ));
    }
    let extra = [
        ("missing payload", remove(res_ev.clone(), "/payload")),
        (
            "unknown kind",
            set(res_ev.clone(), "/kind", json!("parking")),
        ),
        (
            "kind does not match payload",
            set(res_ev.clone(), "/kind", json!("pass")),
        ),
        ("id not a uuid", set(res_ev.clone(), "/id", json!("42"))),
        (
            "unknown field in payload",
            insert(res_ev.clone(), "/payload", "vip", json!(true)),
        ),
        (
            "unknown field in guest",
            insert(res_ev.clone(), "/payload/guest", "title", json!("Dr")),
        ),
        (
            "wrong pass status",
            set(pass_ev, "/payload/status", json!("expired")),
        ),
        (
            "time not HH:MM:SS",
            set(res_ev.clone(), "/payload/check_in_time", json!("3pm")),
        ),
        (
            "no such date",
            set(res_ev.clone(), "/payload/arrival", json!("2025-02-30")),
        ),
    ];
    for (label, value) in extra {
        cases.push((format!("event: {label}"), Contract::Event, value));
    }
    let key_count = set(to_json(&full_key_request()), "/key_count", json!(-1));
    cases.push((
        "keyreq: negative key_count".into(),
        Contract::KeyRequest,
        key_count,
    ));
    let headers = insert(
        to_json(&full_dead_letter()),
        "/original_headers",
        "X-One",
        json!("v"),
    );
    cases.push((
        "dead-letter: header values are lists".into(),
        Contract::DeadLetter,
        headers,
    ));

    // schema_version 2: the v1 schema rejects it; the Rust type reads it and Validate rejects it.
    let v2 = set(res_ev.clone(), "/schema_version", json!(2));
    assert!(!Contract::Event.schema_accepts(&v2));
    let v2: Event = serde_json::from_value(v2).expect("reads any version");
    assert!(v2.problems().iter().any(|p| p.field == "schema_version"));

    let mut seen: BTreeSet<Contract> = BTreeSet::new();
    for (label, contract, value) in cases {
        seen.insert(contract);
        assert!(
            !contract.schema_accepts(&value),
            "{label}: schema accepts\n{value:#}"
        );
        assert!(
            !contract.serde_accepts(&value),
            "{label}: serde accepts\n{value:#}"
        );
    }
    assert_eq!(
        seen,
        Contract::ALL.into_iter().collect(),
        "a negative case per schema"
    );
}

// ---------------------------------------------------------------------------------------------
// Mutation agreement: the schema accepts a document exactly when serde does
// ---------------------------------------------------------------------------------------------

fn escape(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

/// Every enum name in every schema: each string field is also tried with each of them, so a
/// status accepted by one side only (or a kind that does not match its payload) disagrees.
fn all_schema_enum_names() -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for c in Contract::ALL {
        visit_keyed(&c.schema(), &mut |key, child| match (key, child) {
            ("enum", Value::Array(items)) => {
                out.extend(items.iter().filter_map(|i| i.as_str().map(str::to_owned)));
            }
            ("const", Value::String(s)) => {
                out.insert(s.clone());
            }
            _ => {}
        });
    }
    out
}

/// Calls `f(key, value)` for every member of every object in `v`, depth first.
fn visit_keyed(v: &Value, f: &mut impl FnMut(&str, &Value)) {
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                f(k, child);
                visit_keyed(child, f);
            }
        }
        Value::Array(items) => items.iter().for_each(|i| visit_keyed(i, f)),
        _ => {}
    }
}

/// (description, mutated document) for every node of `root`.
fn mutations(root: &Value, enum_names: &BTreeSet<String>) -> Vec<(String, Value)> {
    let replacements = [
        json!(null),
        json!(true),
        json!(0),
        json!(7),
        json!(-1),
        json!(1.5),
        json!(4_294_967_296_u64),
        json!(""),
        json!("zz-not-a-valid-value"),
        json!("2025-02-30"),
        json!("25:00:00"),
        json!("2025-06-20T09:15:00+02:00"),
        json!("01977a4e-2c10-7b3a-9f21-5d8c4e6a1b01"),
        json!({}),
        json!([]),
        json!(["x"]),
        json!([1]),
    ];
    let mut out = Vec::new();
    let mut stack: Vec<(String, Value)> = vec![(String::new(), root.clone())];
    while let Some((pointer, node)) = stack.pop() {
        if !pointer.is_empty() {
            for r in replacements.iter().cloned().chain(
                node.is_string()
                    .then(|| enum_names.iter().map(|n| json!(n)))
                    .into_iter()
                    .flatten(),
            ) {
                // serde's derived structs also read the positional (array) form; pinned in
                // `serde_is_more_lenient_than_the_schema_only_here`.
                let positional = node.is_object() && r.as_array().is_some_and(|a| !a.is_empty());
                if r != node && !positional {
                    out.push((format!("{pointer} := {r}"), set(root.clone(), &pointer, r)));
                }
            }
        }
        match &node {
            Value::Object(map) => {
                out.push((
                    format!("{pointer} += unknown field"),
                    insert(root.clone(), &pointer, "zz_unknown", json!("x")),
                ));
                out.push((
                    format!("{pointer} += unknown list field"),
                    insert(root.clone(), &pointer, "zz_unknown_list", json!(["x"])),
                ));
                for (k, child) in map {
                    let child_pointer = format!("{pointer}/{}", escape(k));
                    out.push((
                        format!("{child_pointer} removed"),
                        mutate(root.clone(), &pointer, |p| {
                            p.as_object_mut().expect("object").remove(k);
                        }),
                    ));
                    stack.push((child_pointer, child.clone()));
                }
            }
            Value::Array(items) => {
                for (i, child) in items.iter().enumerate() {
                    stack.push((format!("{pointer}/{i}"), child.clone()));
                }
            }
            _ => {}
        }
    }
    out
}

#[test]
fn schema_and_serde_agree_on_every_mutation() {
    let enum_names = all_schema_enum_names();
    let mut documents: Vec<(String, Contract, Value)> = rust_values()
        .into_iter()
        .map(|(l, c, v)| (l.to_owned(), c, v))
        .collect();
    documents.extend(examples());
    let mut disagreements = Vec::new();
    let (mut tried, mut rejected) = (0usize, 0usize);
    for (label, contract, doc) in &documents {
        for (what, mutated) in mutations(doc, &enum_names) {
            tried += 1;
            let schema = contract.schema_accepts(&mutated);
            let mut serde = contract.serde_round_trip(&mutated);
            // The v1 schema pins schema_version to 1 (`const`); the Rust type reads any u32 and
            // `Validate` answers other versions with 422. Count that check as part of serde's answer.
            if *contract == Contract::Event
                && let Ok(back) = &serde
                && back["schema_version"] != json!(SCHEMA_VERSION)
            {
                serde = Err("schema_version is not 1 (Validate)".into());
            }
            if !schema {
                rejected += 1;
            }
            if schema != serde.is_ok() {
                disagreements.push(format!(
                    "{label}: {what}: schema {}, serde {}",
                    if schema { "accepts" } else { "rejects" },
                    match &serde {
                        Ok(_) => "accepts".to_owned(),
                        Err(e) => format!("rejects ({e})"),
                    }
                ));
            }
        }
    }
    assert!(
        disagreements.is_empty(),
        "{} of {tried} mutations disagree:\n{}",
        disagreements.len(),
        disagreements.join("\n")
    );
    assert!(
        rejected > tried / 2,
        "mutations should mostly be invalid ({rejected}/{tried})"
    );
}

/// Where serde is deliberately more lenient than the published contract (input only; what we
/// write always matches the schema). Pinned so the list of differences cannot grow silently.
#[test]
fn serde_is_more_lenient_than_the_schema_only_here() {
    let base = to_json(&event(EventBody::Reservation(full_reservation())));
    let cases = [
        // chrono parses times without seconds; the contract says HH:MM:SS.
        ("/payload/check_in_time", json!("15:00"), json!("15:00:00")),
        // uuid parses the simple (unhyphenated) form; the contract says hyphenated.
        (
            "/id",
            json!("01977a4e2c107b3a9f215d8c4e6a1b01"),
            json!("01977a4e-2c10-7b3a-9f21-5d8c4e6a1b01"),
        ),
        // serde's derived structs read the positional (array) form of a struct.
        (
            "/payload/guest",
            json!(["Doe, John"]),
            json!({"name": "Doe, John"}),
        ),
    ];
    for (pointer, lenient, normalized) in cases {
        let doc = set(base.clone(), pointer, lenient.clone());
        assert!(
            !Contract::Event.schema_accepts(&doc),
            "{pointer} = {lenient}: schema accepts"
        );
        let back = Contract::Event
            .serde_round_trip(&doc)
            .unwrap_or_else(|e| panic!("{pointer} = {lenient}: serde rejects: {e}"));
        assert_eq!(back.pointer(pointer), Some(&normalized));
        assert!(
            Contract::Event.schema_accepts(&back),
            "normalized output validates"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Property names and enum names
// ---------------------------------------------------------------------------------------------

fn schema_property_names(schema: &Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    visit_keyed(schema, &mut |key, child| {
        if let ("properties", Value::Object(props)) = (key, child) {
            out.extend(props.keys().cloned());
        }
    });
    out
}

/// Keys of every object in `v`, not descending into `opaque` keys (maps, other files' payloads).
fn instance_keys(v: &Value, opaque: &[&str]) -> BTreeSet<String> {
    fn walk(v: &Value, opaque: &[&str], out: &mut BTreeSet<String>) {
        match v {
            Value::Object(m) => {
                for (k, child) in m {
                    out.insert(k.clone());
                    if !opaque.contains(&k.as_str()) {
                        walk(child, opaque, out);
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|i| walk(i, opaque, out)),
            _ => {}
        }
    }
    let mut out = BTreeSet::new();
    walk(v, opaque, &mut out);
    out
}

#[test]
fn schema_properties_are_exactly_the_rust_fields() {
    let cases = [
        (
            Contract::Event,
            instance_keys(&to_json(&event(EventBody::Pass(full_pass()))), &["payload"]),
        ),
        (
            Contract::Reservation,
            instance_keys(&to_json(&full_reservation()), &[]),
        ),
        (
            Contract::Facility,
            instance_keys(&to_json(&full_facility()), &[]),
        ),
        (Contract::Pass, instance_keys(&to_json(&full_pass()), &[])),
        (
            Contract::KeyRequest,
            instance_keys(&to_json(&full_key_request()), &[]),
        ),
        (
            Contract::KeyResult,
            instance_keys(&to_json(&full_key_result()), &[]),
        ),
        (
            Contract::DeadLetter,
            instance_keys(&to_json(&full_dead_letter()), &["original_headers"]),
        ),
    ];
    for (contract, rust_keys) in cases {
        assert_eq!(
            schema_property_names(&contract.schema()),
            rust_keys,
            "{}: schema properties vs fields of the fully populated Rust value",
            contract.stem()
        );
    }
}

/// Every variant of an enum; the `match` stops compiling when a variant is added.
macro_rules! variants {
    ($ty:ident: $($v:ident),+ $(,)?) => {{
        let all = vec![$($ty::$v),+];
        for v in &all {
            match v {
                $($ty::$v)|+ => {}
            }
        }
        all.iter()
            .map(|v| serde_json::to_value(v).expect("serialize").as_str().expect("string").to_owned())
            .collect::<BTreeSet<String>>()
    }};
}

fn schema_enum(contract: Contract, pointer: &str) -> BTreeSet<String> {
    let schema = contract.schema();
    let list = schema
        .pointer(pointer)
        .and_then(Value::as_array)
        .unwrap_or_else(|| panic!("{}: no enum at {pointer}", contract.stem()));
    list.iter()
        .map(|v| v.as_str().expect("string enum").to_owned())
        .collect()
}

#[test]
fn schema_enums_are_exactly_the_serde_names() {
    let cases = [
        (
            Contract::Event,
            "/properties/source/enum",
            variants!(Source: Bex, Clock, Nexudus, Connecx, Native, Reconciler),
        ),
        (
            Contract::Event,
            "/properties/kind/enum",
            variants!(EventKind: Reservation, Facility, Pass, KeyRequest),
        ),
        (
            Contract::Reservation,
            "/properties/status/enum",
            variants!(ReservationStatus: Confirmed, CheckedIn, CheckedOut, Cancelled, NoShow),
        ),
        (
            Contract::Facility,
            "/properties/status/enum",
            variants!(FacilityStatus: Booked, Cancelled),
        ),
        (
            Contract::Pass,
            "/properties/status/enum",
            variants!(PassStatus: Active, Used, Removed),
        ),
        (
            Contract::KeyRequest,
            "/properties/action/enum",
            variants!(KeyAction: NewKey, DuplicateKey, MobileKey),
        ),
        (
            Contract::KeyResult,
            "/properties/status/enum",
            variants!(KeyResultStatus: Pending, Encoded, Sent, Failed),
        ),
        (
            Contract::DeadLetter,
            "/properties/payload_encoding/enum",
            variants!(PayloadEncoding: Utf8, Base64),
        ),
        (
            Contract::DeadLetter,
            "/properties/class/enum",
            variants!(ErrorClass: Transient, Permanent),
        ),
    ];
    for (contract, pointer, rust) in cases {
        assert_eq!(
            schema_enum(contract, pointer),
            rust,
            "{} {pointer}",
            contract.stem()
        );
    }
    // Kinds: serde names, as_str and the event schema's per-kind payload references agree.
    let event_schema = Contract::Event.schema();
    let branches = event_schema["allOf"].as_array().expect("allOf");
    for kind in EventKind::ALL {
        assert_eq!(to_json(&kind), json!(kind.as_str()));
        let branch = branches
            .iter()
            .find(|b| b["if"]["properties"]["kind"]["const"] == kind.as_str())
            .unwrap_or_else(|| panic!("no if/then branch for kind {kind}"));
        let target = branch["then"]["properties"]["payload"]["$ref"]
            .as_str()
            .expect("$ref");
        let contract = match kind {
            EventKind::Reservation => Contract::Reservation,
            EventKind::Facility => Contract::Facility,
            EventKind::Pass => Contract::Pass,
            EventKind::KeyRequest => Contract::KeyRequest,
        };
        assert_eq!(target, format!("{}.schema.json", contract.stem()));
    }
    assert_eq!(branches.len(), EventKind::ALL.len());
    assert_eq!(
        event_schema["properties"]["schema_version"]["const"],
        json!(SCHEMA_VERSION)
    );
}

// ---------------------------------------------------------------------------------------------
// AsyncAPI document
// ---------------------------------------------------------------------------------------------

fn asyncapi() -> Value {
    let path = proto_dir().join("asyncapi.yaml");
    let text = fs::read_to_string(&path).expect("asyncapi.yaml");
    yaml_serde::from_str(&text).expect("asyncapi.yaml parses")
}

fn collect_refs(v: &Value, out: &mut Vec<String>) {
    visit_keyed(v, &mut |key, child| {
        if let ("$ref", Value::String(s)) = (key, child) {
            out.push(s.clone());
        }
    });
}

#[test]
fn asyncapi_references_resolve_and_cover_every_schema() {
    let doc = asyncapi();
    assert_eq!(doc["asyncapi"], "3.0.0");
    let mut refs = Vec::new();
    collect_refs(&doc, &mut refs);
    let mut files_used = BTreeSet::new();
    for r in &refs {
        let (file, fragment) = r.split_once('#').unwrap_or((r.as_str(), ""));
        let target = if file.is_empty() {
            doc.clone()
        } else {
            let path = proto_dir().join(file);
            assert!(path.is_file(), "$ref {r}: no file {}", path.display());
            files_used.insert(
                path.file_name()
                    .expect("name")
                    .to_string_lossy()
                    .into_owned(),
            );
            read_json(&path)
        };
        assert!(
            target.pointer(fragment).is_some(),
            "$ref {r}: fragment does not resolve"
        );
    }
    for c in [Contract::Event, Contract::KeyResult, Contract::DeadLetter] {
        assert!(
            files_used.contains(&format!("{}.schema.json", c.stem())),
            "asyncapi.yaml does not reference {}",
            c.stem()
        );
    }
}

#[test]
fn asyncapi_streams_match_subjects_rs() {
    let doc = asyncapi();
    let streams = doc["x-jetstream-streams"]
        .as_object()
        .expect("x-jetstream-streams");
    let expected = [
        (
            subjects::BOOKINGS_STREAM,
            vec![subjects::BOOKINGS_SUBJECTS.to_owned()],
        ),
        (
            subjects::DLQ_STREAM,
            vec![
                subjects::DLQ_SUBJECTS.to_owned(),
                format!("{}.>", subjects::MAX_DELIVERIES_ADVISORY),
            ],
        ),
        (
            subjects::RESULTS_STREAM,
            vec![subjects::RESULTS_SUBJECTS.to_owned()],
        ),
        (
            subjects::SYNC_STREAM,
            vec![subjects::SYNC_SUBJECTS.to_owned()],
        ),
    ];
    assert_eq!(streams.len(), expected.len(), "streams");
    for (name, subjects) in expected {
        let got: Vec<String> = streams[name]["subjects"]
            .as_array()
            .unwrap_or_else(|| panic!("stream {name}: subjects"))
            .iter()
            .map(|s| s.as_str().expect("subject").to_owned())
            .collect();
        assert_eq!(got, subjects, "stream {name}");
    }
    // Every channel that names a stream names a declared one.
    for (id, channel) in doc["channels"].as_object().expect("channels") {
        if let Some(stream) = channel.get("x-jetstream-stream") {
            let stream = stream.as_str().expect("stream name");
            assert!(
                streams.contains_key(stream),
                "channel {id}: unknown stream {stream}"
            );
        }
    }
}

#[test]
fn asyncapi_channel_addresses_match_subjects_rs() {
    let doc = asyncapi();
    let channels = doc["channels"].as_object().expect("channels");
    // Channel id → (sample parameter values, what subjects.rs builds from them).
    let sample = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    };
    let mut expected: BTreeMap<&str, (BTreeMap<String, String>, String)> = BTreeMap::new();
    for kind in EventKind::ALL {
        let id = match kind {
            EventKind::Reservation => "bookingsReservation",
            EventKind::Facility => "bookingsFacility",
            EventKind::Pass => "bookingsPass",
            EventKind::KeyRequest => "bookingsKeyreq",
        };
        expected.insert(
            id,
            (
                sample(&[("tenant", "acme"), ("bookingKey", "R-1")]),
                subjects::booking(kind, "acme", "R-1"),
            ),
        );
    }
    expected.insert(
        "deadLetters",
        (
            sample(&[
                ("worker", "tapkey-worker"),
                ("originalSubject", "bookings.pass.acme.P-1"),
            ]),
            subjects::dlq("tapkey-worker", "bookings.pass.acme.P-1"),
        ),
    );
    expected.insert(
        "maxDeliveriesAdvisories",
        (
            sample(&[("stream", "BOOKINGS"), ("consumer", "tapkey-worker")]),
            format!(
                "{}.BOOKINGS.tapkey-worker",
                subjects::MAX_DELIVERIES_ADVISORY
            ),
        ),
    );
    expected.insert(
        "keyResults",
        (
            sample(&[("tenant", "acme"), ("requestId", "0197-1")]),
            subjects::key_result("acme", "0197-1"),
        ),
    );
    expected.insert(
        "syncCommands",
        (
            sample(&[
                ("vendor", "tapkey"),
                ("tenant", "acme"),
                ("bookingKey", "P-1"),
            ]),
            subjects::sync("tapkey", "acme", "P-1"),
        ),
    );
    expected.insert(
        "ingest",
        (
            sample(&[("source", "nexudus"), ("tenant", "acme")]),
            subjects::ingest("nexudus", "acme"),
        ),
    );
    expected.insert(
        "lookup",
        (
            sample(&[("vendor", "dormakaba")]),
            subjects::lookup("dormakaba"),
        ),
    );
    expected.insert(
        "connectionChanged",
        (
            sample(&[("vendor", "ipassan"), ("tenant", "acme")]),
            subjects::connection_changed("ipassan", "acme"),
        ),
    );

    let ids: BTreeSet<&str> = channels.keys().map(String::as_str).collect();
    let want: BTreeSet<&str> = expected.keys().copied().collect();
    assert_eq!(ids, want, "channels in asyncapi.yaml");

    for (id, (params, subject)) in expected {
        let channel = &channels[id];
        let address = channel["address"]
            .as_str()
            .unwrap_or_else(|| panic!("{id}: address"));
        // Parameters named in the address are exactly the declared ones.
        let named: BTreeSet<String> = address
            .split('{')
            .skip(1)
            .map(|s| s.split_once('}').expect("closing brace").0.to_owned())
            .collect();
        let declared: BTreeSet<String> = channel
            .get("parameters")
            .and_then(Value::as_object)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        assert_eq!(named, declared, "{id}: parameters");
        assert_eq!(
            named,
            params.keys().cloned().collect::<BTreeSet<_>>(),
            "{id}: test sample"
        );
        let mut built = address.to_owned();
        for (k, v) in &params {
            built = built.replace(&format!("{{{k}}}"), v);
        }
        assert_eq!(built, subject, "{id}: address {address}");
    }
}

#[test]
fn asyncapi_headers_are_the_ones_in_headers_rs() {
    let doc = asyncapi();
    let known: BTreeSet<&str> = [
        headers::MSG_ID,
        headers::TRACEPARENT,
        headers::TRACESTATE,
        headers::TENANT,
        headers::KIND,
        headers::REVISION,
        headers::SCHEMA_VERSION,
        headers::REPLAY_OF,
        headers::REPLAY_COUNT,
        headers::REPLAYED_BY,
        headers::EVENT_ID,
        headers::DLQ_WORKER,
        headers::DLQ_CLASS,
    ]
    .into_iter()
    .collect();
    let mut documented = BTreeSet::new();
    for (name, schema) in doc["components"]["schemas"]
        .as_object()
        .expect("components.schemas")
    {
        if name.ends_with("Headers") {
            let props = schema["properties"]
                .as_object()
                .unwrap_or_else(|| panic!("{name}: properties"));
            for header in props.keys() {
                assert!(
                    known.contains(header.as_str()),
                    "{name}: header {header} is not defined in headers.rs"
                );
                documented.insert(header.clone());
            }
        }
    }
    let documented: BTreeSet<&str> = documented.iter().map(String::as_str).collect();
    assert_eq!(documented, known, "headers documented in asyncapi.yaml");
}
