//! No personal data and no secret in what accesshub writes about a booking (security review
//! L6, L7; issue 23 item 6): a full run — signed webhooks → booking-ingest → JetStream → the
//! CloudPass, Tapkey, iPassan and dormakaba workers → the simulators — with every service
//! logging at DEBUG in the production JSON format, fixtures with distinctive names, e-mails,
//! phones, plates and secrets, and permanent failures on purpose (a plate CloudPass refuses
//! with 422, a resident iPassan refuses with 422, a room the Saflok lock system does not know,
//! a mobile key for a guest the app does not know, a phone number entered at the desk that the
//! lock system refuses and repeats in its fault) so the error paths write logs, DLQ reasons,
//! key-request outcomes and `bindings.last_error`. None of them may contain any fixture value.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use chrono::Utc;
use common::{
    Options, Stack, at, cloudpass_conn, connecx_for, dormakaba_conn, ipassan_conn, tapkey_conn,
};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(40);

/// A BEX reservation for Quirina Zwaardemaker with one valid plate and one CloudPass refuses.
fn bex_guest(id: &str, updated_at: &str) -> Value {
    json!({
        "event": "reservation:created",
        "subscription_id": "sub-e2e",
        "context": "administration",
        "context_id": "12",
        "record": {
            "id": id,
            "type": "reservation",
            "attributes": {
                "status": "confirmed",
                "arrival_date": "2030-07-14",
                "departure_date": "2030-07-18",
                "guest_first_name": "Quirina",
                "guest_last_name": "Zwaardemaker",
                "guest_email": "quirina.zwaardemaker@pii-fixture.example",
                "guest_phone": "+31 6 87654321",
                "rooms": ["101"],
                "license_plates": ["QZ-991-X", "QZ#7734#W"],
                "updated_at": updated_at
            },
            "relationships": {"administration": {"data": {"id": "12", "type": "administration"}}}
        },
        "event_metadata": {"changes": {"status": [null, "confirmed"]}}
    })
}

/// A Nexudus day pass for Ysolde Vanderbrugge.
fn nexudus_member(unique: &str, updated_on: &str, expire: &str) -> Value {
    json!({
        "action": "CoworkerTimePassCreate",
        "data": {
            "Id": 4712, "UniqueId": unique, "CoworkerId": 56, "BusinessId": 3,
            "TimePassId": 8, "TimePassName": "Day pass",
            "ExpireDate": expire, "Used": false, "UsedDate": Value::Null,
            "RemainingUses": 1, "UpdatedOn": updated_on,
            "CoworkerEmail": "ysolde.vanderbrugge@pii-fixture.example",
            "CoworkerFullName": "Ysolde Vanderbrugge"
        }
    })
}

/// A Clock PMS+ booking for Wendelmoet Kouwenhoven with a key card and a mobile key for her
/// phone (dormakaba Saflok); she is not registered in the lock vendor's app, so the mobile key
/// is not delivered (a lock event naming her).
fn clock_guest(id: i64, room: &str, updated_at: &str) -> Value {
    let today = Utc::now().date_naive();
    let departure = today + chrono::Days::new(2);
    json!({
        "event": "booking_new",
        "booking": {
            "id": id, "account_id": 77, "number": format!("CL-{id}"),
            "arrival": today.to_string(), "arrival_time": "00:00",
            "departure": departure.to_string(),
            "status": "expected", "status_changed_at": updated_at,
            "updated_at": updated_at,
            "guest": {"last_name": "Kouwenhoven", "first_name": "Wendelmoet",
                      "email": "wendelmoet.kouwenhoven@pii-fixture.example",
                      "phone": "+31 6 13572468"},
            "rooms": [room], "common_areas": ["fitness"], "license_plates": [],
            "mobile_key": true
        }
    })
}

/// A Clock booking for Oda Wolkenkrabber in room 101, without a phone: the desk enters
/// numbers while issuing her keys (issue 26).
fn desk_guest(id: i64, updated_at: &str) -> Value {
    let mut b = common::clock(id, "booking_new", updated_at);
    b["booking"]["guest"] = json!({"last_name": "Wolkenkrabber", "first_name": "Oda",
                                   "email": "oda.wolkenkrabber@pii-fixture.example"});
    b["booking"]["mobile_key"] = json!(false);
    b
}

/// Every value that must not appear: the guests' data (whole and in the forms the code
/// normalizes it to) and the secrets of the run.
fn forbidden(s: &Stack) -> Vec<String> {
    let mut v: Vec<String> = [
        "Quirina",
        "Zwaardemaker",
        "quirina.zwaardemaker",
        "87654321",
        "QZ991X",
        "QZ-991-X",
        "QZ#7734#W",
        "7734",
        "Ysolde",
        "Vanderbrugge",
        "ysolde.vanderbrugge",
        "Xaverius",
        "Oosterbroek",
        "xaverius.oosterbroek",
        "Wendelmoet",
        "Kouwenhoven",
        "wendelmoet.kouwenhoven",
        "13572468",
        "pms-demo-secret",
        "Wolkenkrabber",
        "oda.wolkenkrabber",
        // The numbers the desk enters at issuance (issue 26): one the app cannot match, one
        // the lock system refuses and echoes in its fault.
        "900461",
        "900463",
        "demo-cloudpass-secret",
        "demo-tapkey-secret",
        "demo-ipassan-secret",
        "e2e-admin-token",
    ]
    .map(str::to_owned)
    .to_vec();
    v.push(s.secret.clone());
    // The encryption key's material (`k1:<base64>`).
    v.push(s.enc_key.rsplit(':').next().unwrap().to_owned());
    v
}

/// Whether `line` holds `value`; a value of digits only (a plate's or phone's digits) counts
/// only as a whole number, not inside a longer one (a duration such as `0.0077341` s).
fn mentions(line: &str, value: &str) -> bool {
    if !value.bytes().all(|b| b.is_ascii_digit()) {
        return line.contains(value);
    }
    line.match_indices(value).any(|(i, _)| {
        let before = line[..i].bytes().next_back();
        let after = line[i + value.len()..].bytes().next();
        !before.is_some_and(|b| b.is_ascii_digit()) && !after.is_some_and(|b| b.is_ascii_digit())
    })
}

#[test]
fn digits_count_only_as_a_whole_number() {
    assert!(mentions("plate QZ#7734#W", "7734"));
    assert!(mentions("7734", "7734"));
    assert!(!mentions("\"elapsed\":0.0077341", "7734"));
    assert!(mentions("Quirina here", "Quirina"));
}

#[tokio::test]
async fn no_pii_or_secret_in_logs_dlq_reasons_or_last_error() {
    let mut s = Stack::new(Options {
        env: vec![
            ("ACCESSHUB_LOG_FORMAT".into(), "json".into()),
            ("RUST_LOG".into(), "debug".into()),
        ],
        ..Default::default()
    })
    .await;
    s.add_connection(cloudpass_conn(&s.sim)).await;
    s.add_connection(tapkey_conn(&s.sim)).await;
    s.add_connection(ipassan_conn(&s.sim)).await;
    s.add_connection(dormakaba_conn(&s.sim)).await;
    s.start_ingest(&[]).await;
    for w in [
        "cloudpass-worker",
        "tapkey-worker",
        "ipassan-worker",
        "dormakaba-worker",
    ] {
        s.start_worker(w, &[]).await;
    }

    // CloudPass: one plate booked, one refused (422 → dead letter naming the plate's position).
    s.accepted("bex", &bex_guest("BEX-PII-1", &at(0))).await;
    // Tapkey: grants for the member's e-mail.
    let expire =
        (Utc::now() + chrono::Duration::days(2)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    s.accepted("nexudus", &nexudus_member("pass-pii-1", &at(0), &expire))
        .await;
    // iPassan: a resident iPassan does not know is created, then lacks the asset's access
    // profiles (422 naming the resident).
    let day = (Utc::now() + chrono::Duration::days(3)).date_naive();
    let resident = json!({"id": "res-pii-9", "email": "xaverius.oosterbroek@pii-fixture.example",
                          "first_name": "Xaverius", "last_name": "Oosterbroek"});
    s.accepted(
        "connecx",
        &connecx_for(
            &resident,
            "cx-pii-1",
            &format!("{day}T17:00:00Z"),
            &format!("{day}T18:00:00Z"),
            "booked",
            &at(0),
        ),
    )
    .await;

    // dormakaba: a Saflok booking with a key card and a mobile key for a guest the app does
    // not know (room 101), and a room the lock system does not know (999 → dead letter).
    s.accepted("clock", &clock_guest(990_001, "101", &at(0)))
        .await;
    s.accepted("clock", &clock_guest(990_002, "999", &at(0)))
        .await;

    // dormakaba: key requests with the phone number entered at the desk. A card plus a
    // mobile key to a number the app does not know ("not delivered"), then a mobile key to a
    // number the lock system refuses and repeats in its fault (dead letter).
    s.accepted("clock", &desk_guest(9461, &at(0))).await;
    let mut key_ids = Vec::new();
    for body in [
        json!({"booking_id": 9461, "key_type": "new", "encoder_id": "1",
               "mobile_phone": "+44 7700 900461"}),
        json!({"booking_id": 9461, "key_type": "mobile", "mobile_phone": "07700 900463"}),
    ] {
        let (status, answer) = s.key_request("clock", &body).await;
        assert_eq!(status, 202, "{answer}\n{}", s.logs());
        key_ids.push(answer["request_id"].as_str().unwrap().to_owned());
    }

    // Wait for the outcomes: the valid plate booked, the Tapkey grants, the Saflok booking and
    // its undelivered mobile key, four dead letters.
    s.wait_until("CloudPass booking of the valid plate", WAIT, || async {
        common::cloudpass_bookings(&s.sim, "ah:acme:reservation:")
            .await
            .iter()
            .any(|b| b["license_plate"] == "QZ991X")
    })
    .await;
    s.wait_until("Tapkey grants", WAIT, || async {
        let st = s.sim.state("tapkey").await;
        st["grants"].as_array().is_some_and(|g| g.len() >= 2)
    })
    .await;
    s.wait_until(
        "the Saflok booking in room 101 and its (undelivered) mobile key",
        WAIT,
        || async {
            let st = s.sim.state("dormakaba").await["saflok"].clone();
            let booked = st["bookings"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|b| b["main_room"] == "101");
            let mobile = st["mobile_keys"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|m| m["room"] == "101" && m["delivered"] == false);
            booked && mobile
        },
    )
    .await;
    s.wait_until(
        "four dead letters (CloudPass plate, iPassan resident, Saflok room, refused phone number)",
        WAIT,
        || async {
            let dead = s.dead_letters().await;
            dead.len() >= 4 && dead.iter().any(|d| d.worker == "dormakaba-worker")
        },
    )
    .await;
    s.wait_until("both key requests answered", WAIT, || async {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM bindings WHERE kind = 'keyreq' \
              AND status IN ('encoded', 'failed', 'dead_lettered') AND booking_key = ANY($1)",
        )
        .bind(&key_ids)
        .fetch_one(&s.pool)
        .await
        .unwrap();
        n == 2
    })
    .await;
    let messages: Vec<(String, Option<String>)> = sqlx::query_as(
        "SELECT status, coalesce(vendor_ids->>'message', last_error) FROM bindings \
          WHERE kind = 'keyreq' ORDER BY booking_key",
    )
    .fetch_all(&s.pool)
    .await
    .unwrap();
    assert!(
        messages.iter().any(|(st, m)| st == "encoded"
            && m.as_deref()
                .is_some_and(|m| m.contains("mobile key not delivered"))),
        "{messages:?}"
    );
    // Let the last log lines reach the files.
    tokio::time::sleep(Duration::from_secs(1)).await;

    let dead = s.dead_letters().await;
    let errors: Vec<(String, String, Option<String>)> = sqlx::query_as(
        "SELECT vendor, status, last_error FROM bindings WHERE last_error IS NOT NULL",
    )
    .fetch_all(&s.pool)
    .await
    .unwrap();
    assert!(
        errors.iter().any(|(v, _, _)| v == "cloudpass")
            && errors.iter().any(|(v, _, _)| v == "ipassan")
            && errors.iter().any(|(v, _, _)| v == "dormakaba"),
        "the error paths ran: {errors:?}\n{}",
        s.logs()
    );

    let mut texts: Vec<(String, String)> = Vec::new();
    if let Some(i) = &s.ingest {
        texts.push(("booking-ingest log".into(), i.proc.log()));
    }
    for (n, w) in &s.workers {
        texts.push((format!("{n} log"), w.proc.log()));
    }
    for d in &dead {
        texts.push((format!("DLQ reason ({})", d.worker), d.reason.clone()));
    }
    for (st, m) in &messages {
        texts.push((
            format!("key request outcome ({st})"),
            m.clone().unwrap_or_default(),
        ));
    }
    for (v, status, e) in &errors {
        texts.push((
            format!("bindings.last_error ({v}, {status})"),
            e.clone().unwrap_or_default(),
        ));
    }
    // The logs are the production JSON lines, at DEBUG.
    let worker_log = &texts[1].1;
    assert!(
        worker_log
            .lines()
            .any(|l| l.starts_with('{') && l.contains("\"DEBUG\"")),
        "logs are JSON at DEBUG:\n{}",
        worker_log.lines().take(5).collect::<Vec<_>>().join("\n")
    );

    let mut found = Vec::new();
    for value in forbidden(&s) {
        for (what, text) in &texts {
            for line in text.lines().filter(|l| mentions(l, &value)) {
                let line: String = line.chars().take(400).collect();
                found.push(format!("{value:?} in {what}: {line}"));
            }
        }
    }
    let n = found.len();
    found.truncate(40);
    assert!(
        n == 0,
        "{n} lines with personal data or secrets, first 40:\n{}",
        found.join("\n")
    );
    s.finish().await;
}
