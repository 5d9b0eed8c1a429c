//! Property test: broken and odd webhooks (broken JSON, wrong types, huge strings, odd
//! Unicode, missing fields, bad signatures, wrong content types) are all answered 4xx — or,
//! for an event name the sender may send that accesshub does not act on, 2xx `ignored` (a
//! 4xx would make BEX retry it forever: issue 21) — the service stays up, and nothing is
//! stored.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

mod common;

use common::*;
use proptest::{
    prelude::*,
    test_runner::{Config, TestRunner},
};
use serde_json::Value;

#[derive(Debug, Clone)]
enum Case {
    /// Arbitrary bytes, correctly signed.
    Bytes(&'static str, Vec<u8>),
    /// Arbitrary JSON, correctly signed.
    Json(&'static str, Value),
    /// A fixture with one required field removed or replaced by a wrong value.
    Broken(&'static str, &'static str, Option<Value>, String),
    /// A valid fixture with odd text, badly signed.
    BadSignature(&'static str, String, u8),
    /// A valid fixture sent as another content type.
    WrongType(&'static str, String),
    /// A body over the limit.
    Huge(&'static str, usize),
}

const SOURCES: [&str; 5] = ["bex", "clock", "nexudus", "connecx", "native"];

fn fixture(source: &str) -> Value {
    let t = "2025-06-20T09:15:00Z";
    match source {
        "bex" => bex("R-p", t, "reservation:created"),
        "clock" => clock(1, t),
        "nexudus" => nexudus("p-p", t),
        "connecx" => connecx("c-p", t),
        _ => native("n-p", 1),
    }
}

/// Required fields for which a missing field, null, a number, an array or an `x…` string
/// is never valid (free-text fields like names are left out: any string is valid there).
const REQUIRED: &[(&str, &str)] = &[
    ("bex", "/record/attributes/arrival_date"),
    ("bex", "/record/attributes/updated_at"),
    ("bex", "/event"),
    ("bex", "/record"),
    ("clock", "/booking/arrival"),
    ("clock", "/booking/status"),
    ("clock", "/event"),
    ("clock", "/booking/guest"),
    ("nexudus", "/action"),
    ("nexudus", "/data/UpdatedOn"),
    ("connecx", "/start"),
    ("connecx", "/status"),
    ("connecx", "/resident"),
    ("native", "/kind"),
    ("native", "/payload"),
    ("native", "/occurred_at"),
];

fn odd_string() -> impl Strategy<Value = String> {
    prop_oneof![
        ".*",
        "[\\u{0}-\\u{1F}\\u{200B}-\\u{200F}\\u{FEFF}\\u{1F600}-\\u{1F64F}]{0,40}",
        Just("\u{0}".to_owned()),
        Just("x".repeat(70_000)),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        odd_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map(".{0,12}", inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn wrong_value() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        Just(None),
        Just(Some(Value::Null)),
        any::<i64>().prop_map(|n| Some(Value::from(n))),
        "[a-z]{0,3}[^0-9]{0,20}".prop_map(|s| Some(Value::String(format!("x{s}")))),
        Just(Some(Value::Array(vec![]))),
    ]
}

fn case() -> impl Strategy<Value = Case> {
    let source = prop::sample::select(&SOURCES[..]);
    prop_oneof![
        (source.clone(), prop::collection::vec(any::<u8>(), 0..300))
            .prop_map(|(s, b)| Case::Bytes(s, b)),
        (source.clone(), json_value()).prop_map(|(s, v)| Case::Json(s, v)),
        (prop::sample::select(REQUIRED), wrong_value(), odd_string())
            .prop_map(|((s, p), v, odd)| Case::Broken(s, p, v, odd)),
        (source.clone(), odd_string(), 0u8..4).prop_map(|(s, o, k)| Case::BadSignature(s, o, k)),
        (source.clone(), "[a-z]{1,10}/[a-z+.-]{1,12}").prop_map(|(s, t)| Case::WrongType(s, t)),
        (source, 70_000usize..200_000).prop_map(|(s, n)| Case::Huge(s, n)),
    ]
}

async fn send(env: &Env, case: &Case) -> (u16, Value) {
    match case {
        Case::Bytes(s, b) => env.post_signed(s, TENANT, b.clone(), &[]).await,
        Case::Json(s, v) => env.post(s, v).await,
        Case::Broken(s, pointer, v, odd) => {
            let mut body = fixture(s);
            // Odd text somewhere harmless too.
            if let Some(o) = body.as_object_mut() {
                o.insert("note".into(), Value::String(odd.clone()));
            }
            let (parent, name) = pointer.rsplit_once('/').unwrap();
            let obj = body.pointer_mut(parent).unwrap().as_object_mut().unwrap();
            match v {
                None => {
                    obj.remove(name);
                }
                Some(v) => {
                    obj.insert(name.to_owned(), v.clone());
                }
            }
            env.post(s, &body).await
        }
        Case::BadSignature(s, odd, kind) => {
            let mut body = fixture(s);
            body.as_object_mut()
                .unwrap()
                .insert("note".into(), Value::String(odd.clone()));
            let bytes = serde_json::to_vec(&body).unwrap();
            let ts = chrono::Utc::now().timestamp();
            let sig = match kind {
                0 => booking_ingest::sign("wrong", ts, &bytes),
                1 => booking_ingest::sign(SECRET, ts - 1000, &bytes),
                2 => format!("sha256={odd}")
                    .chars()
                    .filter(|c| c.is_ascii_graphic())
                    .collect(),
                _ => booking_ingest::sign(SECRET, ts, b"other body"),
            };
            env.post_raw(
                &format!("/webhooks/{s}/{TENANT}"),
                bytes,
                &[
                    ("content-type", "application/json".into()),
                    ("x-accesshub-timestamp", ts.to_string()),
                    ("x-accesshub-signature", sig),
                ],
            )
            .await
        }
        Case::WrongType(s, t) => {
            let bytes = serde_json::to_vec(&fixture(s)).unwrap();
            let ts = chrono::Utc::now().timestamp();
            let ct = if t == "application/json" {
                "text/plain".to_owned()
            } else {
                t.clone()
            };
            env.post_raw(
                &format!("/webhooks/{s}/{TENANT}"),
                bytes.clone(),
                &[
                    ("content-type", ct),
                    ("x-accesshub-timestamp", ts.to_string()),
                    (
                        "x-accesshub-signature",
                        booking_ingest::sign(SECRET, ts, &bytes),
                    ),
                ],
            )
            .await
        }
        Case::Huge(s, n) => {
            let mut body = fixture(s);
            body.as_object_mut()
                .unwrap()
                .insert("padding".into(), Value::String("é".repeat(*n)));
            env.post(s, &body).await
        }
    }
}

#[test]
fn odd_webhooks_get_4xx_and_store_nothing() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let env = rt.block_on(Env::with(|c| c.body_limit = 64 * 1024));
    let cases: u32 = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&case(), |c| {
            let (status, answer) = rt.block_on(send(&env, &c));
            let ignored = (200..300).contains(&status) && answer["status"] == "ignored";
            prop_assert!(
                (400..500).contains(&status) || ignored,
                "status {status} answer {answer} for {c:?}"
            );
            Ok(())
        })
        .unwrap();
    rt.block_on(async {
        let r = env
            .client
            .get(format!("{}/healthz", env.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        for t in ["bookings", "outbox", "ingest_receipts"] {
            assert_eq!(env.count(t).await, 0, "{t}");
        }
        // Still works for a good one.
        let (s, _) = env
            .post("connecx", &connecx("ok", "2025-06-20T09:15:00Z"))
            .await;
        assert_eq!(s, 202);
        env.finish().await;
    });
}
