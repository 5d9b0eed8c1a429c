//! Bad input at scale against the booking-ingest binary: generated webhooks for every source
//! (truncated JSON, wrong types, missing fields, NUL and oversized keys in odd Unicode, huge
//! bodies, bad, missing, stale or foreign signatures, wrong content types, unknown tenants).
//! Every one is answered 4xx, the process stays up and ready, nothing is stored or published;
//! the untouched templates are accepted afterwards (so it was the damage that was refused).

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{Options, Stack, TENANT, at, bex, sign};
use serde_json::{Value, json};

/// Valid bodies per source, and the JSON paths of their booking key and revision fields.
fn templates() -> Vec<(&'static str, Value, Vec<&'static str>, Vec<&'static str>)> {
    let updated = at(0);
    vec![
        (
            "bex",
            bex("BAD-BEX-1", "reservation:created", &updated, &["AB-12-CD"]),
            vec!["record", "id"],
            vec!["record", "attributes", "updated_at"],
        ),
        (
            "clock",
            json!({"event": "booking_new", "booking": {
                "id": 5501, "account_id": 77, "number": "B-5501",
                "arrival": "2030-08-01", "departure": "2030-08-03", "status": "expected",
                "updated_at": updated, "guest": {"last_name": "Smith", "first_name": "Anna"},
                "rooms": ["201"]}}),
            vec!["booking", "id"],
            vec!["booking", "updated_at"],
        ),
        (
            "nexudus",
            json!({"action": "CoworkerTimePassCreate", "data": {
                "Id": 991, "UniqueId": "bad-pass-1", "CoworkerId": 55, "BusinessId": 3,
                "TimePassId": 8, "TimePassName": "Day pass", "ExpireDate": "2030-09-01T18:00:00",
                "Used": false, "UsedDate": null, "RemainingUses": 1, "UpdatedOn": updated,
                "CoworkerEmail": "cw@example.com", "CoworkerFullName": "Co Worker"}}),
            vec!["data", "UniqueId"],
            vec!["data", "UpdatedOn"],
        ),
        (
            "connecx",
            json!({"booking_id": "bad-cx-1", "facility_id": "gym-1", "building_id": "b7",
                "resident": {"id": "r1", "email": "res@example.com", "first_name": "Rita", "last_name": "Res"},
                "start": "2030-07-01T08:00:00Z", "end": "2030-07-01T09:00:00Z",
                "status": "booked", "updated_at": updated}),
            vec!["booking_id"],
            vec!["updated_at"],
        ),
        (
            "native",
            json!({"id": uuid::Uuid::now_v7().to_string(), "tenant": TENANT,
                "site": "administration-12", "booking_key": "bad-native-1", "revision": 7,
                "source": "native", "occurred_at": "2030-06-20T09:15:00Z", "schema_version": 1,
                "kind": "facility", "payload": {"status": "booked", "facility_id": "f1",
                    "resident": {"id": "r9", "email": "n@example.com", "first_name": "N", "last_name": "Ative"},
                    "start": "2030-07-01T08:00:00Z", "end": "2030-07-01T10:00:00Z"}}),
            vec!["booking_key"],
            vec!["revision"],
        ),
    ]
}

fn set(v: &mut Value, path: &[&str], to: Option<Value>) {
    let (last, parents) = path.split_last().unwrap();
    let mut cur = v;
    for p in parents {
        cur = &mut cur[*p];
    }
    let obj = cur.as_object_mut().unwrap();
    match to {
        Some(x) => {
            obj.insert((*last).to_owned(), x);
        }
        None => {
            obj.remove(*last);
        }
    }
}

/// One request to send: what it is, body, content type, signature override, tenant.
struct Case {
    what: String,
    source: &'static str,
    tenant: String,
    body: Vec<u8>,
    content_type: &'static str,
    /// `None`: signed correctly; `Some(headers)`: exactly these auth headers.
    auth: Option<Vec<(&'static str, String)>>,
}

fn case(what: String, source: &'static str, body: Vec<u8>) -> Case {
    Case {
        what,
        source,
        tenant: TENANT.to_owned(),
        body,
        content_type: "application/json",
        auth: None,
    }
}

fn cases(secret: &str) -> Vec<Case> {
    let mut out = Vec::new();
    // A small deterministic generator (no shrinking needed: every case is named).
    let mut seed: u64 = 0x5eed_cafe;
    let mut next = move |n: usize| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((seed >> 33) as usize) % n.max(1)
    };
    let odd = ["\u{0}", "a\u{0}b", "\u{202E}\u{0}"];
    for (source, body, key, rev) in templates() {
        let bytes = serde_json::to_vec(&body).unwrap();
        for _ in 0..12 {
            let cut = next(bytes.len() - 1);
            out.push(case(
                format!("{source}: truncated at {cut}"),
                source,
                bytes[..cut].to_vec(),
            ));
        }
        for junk in ["", "null", "[]", "42", "\"text\"", "{", "{}}", "\u{feff}{}"] {
            out.push(case(
                format!("{source}: body {junk:?}"),
                source,
                junk.into(),
            ));
        }
        for wrong in [json!({}), json!([]), json!(true), Value::Null] {
            let mut b = body.clone();
            set(&mut b, &key, Some(wrong.clone()));
            out.push(case(
                format!("{source}: key {} = {wrong}", key.join(".")),
                source,
                serde_json::to_vec(&b).unwrap(),
            ));
        }
        for wrong in [json!("not a time"), json!({}), json!([1]), Value::Null] {
            let mut b = body.clone();
            set(&mut b, &rev, Some(wrong.clone()));
            out.push(case(
                format!("{source}: {} = {wrong}", rev.join(".")),
                source,
                serde_json::to_vec(&b).unwrap(),
            ));
        }
        for path in [&key, &rev] {
            let mut b = body.clone();
            set(&mut b, path, None);
            out.push(case(
                format!("{source}: {} missing", path.join(".")),
                source,
                serde_json::to_vec(&b).unwrap(),
            ));
        }
        // Keys only when the format's key is a string.
        if body
            .pointer(&format!("/{}", key.join("/")))
            .is_some_and(Value::is_string)
        {
            for o in odd {
                let mut b = body.clone();
                set(&mut b, &key, Some(json!(format!("k{o}"))));
                out.push(case(
                    format!("{source}: key with {o:?}"),
                    source,
                    serde_json::to_vec(&b).unwrap(),
                ));
            }
            for (unit, n) in [("é", 101), ("😀", 51), ("x", 201)] {
                let mut b = body.clone();
                set(&mut b, &key, Some(json!(unit.repeat(n))));
                out.push(case(
                    format!("{source}: key of {n} × {unit:?} (> 200 bytes)"),
                    source,
                    serde_json::to_vec(&b).unwrap(),
                ));
            }
        }
        // Over the 1 MiB body limit.
        let mut huge = body.clone();
        set(&mut huge, &["padding"], Some(json!("🦀".repeat(300_000))));
        out.push(case(
            format!("{source}: 1.2 MB body"),
            source,
            serde_json::to_vec(&huge).unwrap(),
        ));
        // Authentication.
        let ts = chrono::Utc::now().timestamp();
        let good = sign(secret, ts, &bytes);
        let auths: Vec<(&str, Vec<(&'static str, String)>)> = vec![
            (
                "no signature",
                vec![("x-accesshub-timestamp", ts.to_string())],
            ),
            (
                "wrong secret",
                vec![
                    ("x-accesshub-timestamp", ts.to_string()),
                    ("x-accesshub-signature", sign("guessed", ts, &bytes)),
                ],
            ),
            (
                "signature of another timestamp",
                vec![
                    ("x-accesshub-timestamp", (ts + 1).to_string()),
                    ("x-accesshub-signature", good.clone()),
                ],
            ),
            (
                "stale (10 minutes old)",
                vec![
                    ("x-accesshub-timestamp", (ts - 600).to_string()),
                    ("x-accesshub-signature", sign(secret, ts - 600, &bytes)),
                ],
            ),
            (
                "garbage signature",
                vec![
                    ("x-accesshub-timestamp", ts.to_string()),
                    ("x-accesshub-signature", "sha256=zz\u{e9}".into()),
                ],
            ),
        ];
        for (what, headers) in auths {
            let mut c = case(format!("{source}: {what}"), source, bytes.clone());
            c.auth = Some(headers);
            out.push(c);
        }
        let mut c = case(format!("{source}: text/plain"), source, bytes.clone());
        c.content_type = "text/plain";
        out.push(c);
        let mut c = case(format!("{source}: unknown tenant"), source, bytes.clone());
        c.tenant = "nobody".into();
        out.push(c);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_bad_webhooks_are_all_refused_and_nothing_is_stored() {
    let mut s = Stack::new(Options::default()).await;
    s.start_ingest(&[]).await;
    let port = s.ingest.as_ref().unwrap().port;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let all = cases(&s.secret);
    let mut wrong = Vec::new();
    for c in &all {
        let ts = chrono::Utc::now().timestamp();
        let mut req = http
            .post(format!(
                "http://127.0.0.1:{port}/webhooks/{}/{}",
                c.source, c.tenant
            ))
            .header("content-type", c.content_type)
            .body(c.body.clone());
        match &c.auth {
            None => {
                req = req
                    .header("x-accesshub-timestamp", ts.to_string())
                    .header("x-accesshub-signature", sign(&s.secret, ts, &c.body));
            }
            Some(h) => {
                for (k, v) in h {
                    req = req.header(*k, v);
                }
            }
        }
        match req.send().await {
            Ok(r) => {
                let status = r.status().as_u16();
                if !(400..500).contains(&status) {
                    let text = r.text().await.unwrap_or_default();
                    wrong.push(format!("{}: {status} {text}", c.what));
                }
            }
            Err(e) => wrong.push(format!("{}: no answer ({e})", c.what)),
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} bad webhooks not answered 4xx:\n{}\n{}",
        wrong.len(),
        all.len(),
        wrong.join("\n"),
        s.logs()
    );
    let ingest = s.ingest.as_mut().unwrap();
    assert!(ingest.proc.running(), "booking-ingest still up");
    let ready = http
        .get(format!("http://127.0.0.1:{port}/readyz"))
        .send()
        .await
        .unwrap();
    assert!(ready.status().is_success(), "still ready");
    let count = |table: &'static str| {
        let pool = s.pool.clone();
        async move {
            let (n,): (i64,) =
                sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
                    .fetch_one(&pool)
                    .await
                    .unwrap();
            n
        }
    };
    assert_eq!(count("bookings").await, 0, "no desired state stored");
    assert_eq!(count("outbox").await, 0, "nothing queued for the bus");

    // The undamaged templates are accepted: it was the damage that was refused.
    for (source, body, _, _) in templates() {
        let (status, answer) = s.webhook(source, &body).await;
        assert_eq!(status, 202, "{source} template: {answer}\n{}", s.logs());
    }
    assert_eq!(count("bookings").await, 5);
    eprintln!("{} bad webhooks refused", all.len());
    s.finish().await;
}
