//! The seed scenarios end to end, with the real binaries as processes: a signed upstream
//! webhook → booking-ingest (Postgres + outbox) → JetStream → the vendor's worker → the vendor
//! simulator. Outcomes are read from the simulator's state and call log only.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use chrono::Utc;
use common::{
    Options, Stack, TENANT, at, bex, clock, cloudpass_bookings, cloudpass_conn, cloudpass_creates,
    connecx, dormakaba_conn, ipassan_conn, tapkey_conn,
};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn bex_reservation_with_two_plates_gives_two_cloudpass_bookings_with_the_window() {
    let mut s = Stack::new(Options::default()).await;
    s.add_connection(cloudpass_conn(&s.sim)).await;
    s.start_ingest(&[]).await;
    s.start_worker("cloudpass-worker", &[]).await;

    let body = bex(
        "BEX-R-1001",
        "reservation:created",
        &at(0),
        &["AB-123-C", "xy 99 zz"],
    );
    s.accepted("bex", &body).await;
    // The PMS retries its delivery (it did not see our answer): same answer, no new event.
    let (status, _) = s.webhook("bex", &body).await;
    assert_eq!(status, 202, "{}", s.logs());

    let prefix = format!("ah:{TENANT}:reservation:BEX-R-1001:");
    s.wait_until("two CloudPass vehicle bookings", WAIT, || async {
        cloudpass_bookings(&s.sim, &prefix).await.len() == 2
    })
    .await;
    // Let any duplicate delivery finish before counting.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut got: Vec<(String, String, String, String, String)> =
        cloudpass_bookings(&s.sim, &prefix)
            .await
            .iter()
            .map(|b| {
                (
                    b["license_plate"].as_str().unwrap().to_owned(),
                    b["site_id"].as_str().unwrap().to_owned(),
                    b["valid_from"].as_str().unwrap().to_owned(),
                    b["valid_until"].as_str().unwrap().to_owned(),
                    b["time_restriction_id"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
    got.sort();
    // Check-in 15:00 CEST (13:00Z) − 30 min; check-out 11:00 CEST (09:00Z) + 30 min.
    let want = |plate: &str| {
        (
            plate.to_owned(),
            "cp-site-amsterdam".to_owned(),
            "2030-07-14T12:30:00Z".to_owned(),
            "2030-07-18T09:30:00Z".to_owned(),
            "cp-tr-ams-247".to_owned(),
        )
    };
    assert_eq!(
        got,
        vec![want("AB123C"), want("XY99ZZ")],
        "bookings at CloudPass\n{}",
        s.logs()
    );
    for b in cloudpass_bookings(&s.sim, &prefix).await {
        let reference = b["reference"].as_str().unwrap().to_owned();
        assert_eq!(
            cloudpass_creates(&s.sim, &reference).await,
            1,
            "exactly one create for {reference}\n{}",
            s.logs()
        );
    }
    s.finish().await;
}

/// A Nexudus `CoworkerTimePass` webhook for business 3, pass type 8.
fn nexudus(unique: &str, action: &str, updated_on: &str, used: bool, expire: &str) -> Value {
    json!({
        "action": action,
        "data": {
            "Id": 4711, "UniqueId": unique, "CoworkerId": 55, "BusinessId": 3,
            "TimePassId": 8, "TimePassName": "Day pass",
            "ExpireDate": expire, "Used": used,
            "UsedDate": if used { Value::String(updated_on.to_owned()) } else { Value::Null },
            "RemainingUses": if used { 0 } else { 1 }, "UpdatedOn": updated_on,
            "CoworkerEmail": "cowork.er@example.com", "CoworkerFullName": "Co Worker"
        }
    })
}

fn tapkey_grants_of(state: &Value, contact: &str) -> Vec<Value> {
    let Some(cid) = state["contacts"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| {
            c["identifier"]
                .as_str()
                .is_some_and(|i| i.eq_ignore_ascii_case(contact))
        })
        .and_then(|c| c["id"].as_str())
        .map(str::to_owned)
    else {
        return Vec::new();
    };
    state["grants"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|g| g["contactId"] == cid.as_str())
        .cloned()
        .collect()
}

#[tokio::test]
async fn nexudus_pass_used_early_revokes_the_tapkey_grants() {
    let mut s = Stack::new(Options::default()).await;
    s.add_connection(tapkey_conn(&s.sim)).await;
    s.start_ingest(&[]).await;
    s.start_worker("tapkey-worker", &[]).await;

    let expire =
        (Utc::now() + chrono::Duration::days(2)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    s.accepted(
        "nexudus",
        &nexudus(
            "pass-e2e-1",
            "CoworkerTimePassCreate",
            &at(-5_000),
            false,
            &expire,
        ),
    )
    .await;
    s.wait_until("two active Tapkey grants", WAIT, || async {
        let st = s.sim.state("tapkey").await;
        let g = tapkey_grants_of(&st, "cowork.er@example.com");
        g.len() == 2 && g.iter().all(|g| g["active"] == true)
    })
    .await;
    let st = s.sim.state("tapkey").await;
    let mut locks: Vec<String> = tapkey_grants_of(&st, "cowork.er@example.com")
        .iter()
        .map(|g| g["boundLockId"].as_str().unwrap().to_owned())
        .collect();
    locks.sort();
    assert_eq!(locks, ["tk-lock-front-door", "tk-lock-meeting-room"]);

    // The member used the pass early: Nexudus marks it used long before it expires.
    s.accepted(
        "nexudus",
        &nexudus(
            "pass-e2e-1",
            "CoworkerTimePassUpdate",
            &at(0),
            true,
            &expire,
        ),
    )
    .await;
    s.wait_until("both grants revoked", WAIT, || async {
        let st = s.sim.state("tapkey").await;
        let g = tapkey_grants_of(&st, "cowork.er@example.com");
        g.len() == 2
            && g.iter()
                .all(|g| g["active"] == false && g["state"] == "Revoked")
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let calls = s.sim.calls("tapkey").await;
    let grant_creates = calls
        .iter()
        .filter(|c| {
            c["method"] == "PUT"
                && c["path"].as_str().unwrap_or_default().contains("/Grants")
                && (c["status"] == 200 || c["status"] == 201)
        })
        .count();
    let revokes = calls
        .iter()
        .filter(|c| {
            c["method"] == "POST"
                && c["path"].as_str().unwrap_or_default().ends_with("/Revoke")
                && c["status"] == 200
        })
        .count();
    assert_eq!(grant_creates, 2, "one grant per lock, once\n{}", s.logs());
    assert_eq!(revokes, 2, "each grant revoked once\n{}", s.logs());
    s.finish().await;
}

fn ipassan_ours(state: &Value, reference: &str) -> Vec<(String, String)> {
    state["asset_bookings"]
        .as_array()
        .or_else(|| state["bookings"].as_array())
        .into_iter()
        .flatten()
        .filter(|b| b["reference"] == reference)
        .map(|b| {
            (
                b["start"].as_str().unwrap_or_default().to_owned(),
                b["end"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn connecx_facility_booking_moved_then_cancelled_follows_at_ipassan() {
    let mut s = Stack::new(Options::default()).await;
    s.add_connection(ipassan_conn(&s.sim)).await;
    s.start_ingest(&[]).await;
    s.start_worker("ipassan-worker", &[]).await;
    let reference = format!("ah:{TENANT}:facility:cx-bbq-1");

    // (start, end, status, what the iPassan booking must then be, revision offset in ms)
    type Step<'a> = (&'a str, &'a str, &'a str, Option<(&'a str, &'a str)>, i64);
    let steps: [Step; 3] = [
        (
            "2030-06-01T16:00:00Z",
            "2030-06-01T17:00:00Z",
            "booked",
            Some(("2030-06-01T16:00:00Z", "2030-06-01T17:00:00Z")),
            -10_000,
        ),
        (
            "2030-06-01T18:00:00Z",
            "2030-06-01T19:30:00Z",
            "booked",
            Some(("2030-06-01T18:00:00Z", "2030-06-01T19:30:00Z")),
            -5_000,
        ),
        (
            "2030-06-01T18:00:00Z",
            "2030-06-01T19:30:00Z",
            "cancelled",
            None,
            0,
        ),
    ];
    for (start, end, status, want, offset) in steps {
        s.accepted(
            "connecx",
            &connecx("cx-bbq-1", start, end, status, &at(offset)),
        )
        .await;
        let want: Vec<(String, String)> = want
            .map(|(a, b)| (a.to_owned(), b.to_owned()))
            .into_iter()
            .collect();
        s.wait_until(
            &format!("iPassan booking {want:?} after {status} {start}"),
            WAIT,
            || async { ipassan_ours(&s.sim.state("ipassan").await, &reference) == want },
        )
        .await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    // One create per window (the move is make-before-break), none repeated.
    let creates = s
        .sim
        .calls("ipassan")
        .await
        .iter()
        .filter(|c| {
            c["method"] == "POST"
                && c["path"].as_str().unwrap_or_default().ends_with("/booking")
                && (c["status"] == 200 || c["status"] == 201)
        })
        .count();
    assert_eq!(creates, 2, "one create per window\n{}", s.logs());
    assert!(
        ipassan_ours(&s.sim.state("ipassan").await, &reference).is_empty(),
        "nothing left"
    );
    s.finish().await;
}

/// A front-desk key request (native format): encode one card on encoder 1.
fn key_request(reservation_key: &str) -> (String, Value) {
    let request_id = uuid::Uuid::now_v7().to_string();
    let body = json!({
        "id": uuid::Uuid::now_v7().to_string(),
        "tenant": TENANT, "site": "77", "booking_key": request_id,
        "revision": 1, "source": "native",
        "occurred_at": Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "schema_version": 1, "kind": "keyreq",
        "payload": {"request_id": request_id, "reservation_key": reservation_key,
                    "action": "new_key", "encoder_id": "1", "key_count": 1,
                    "requested_by": "front-desk"}
    });
    (request_id, body)
}

#[tokio::test]
async fn clock_booking_with_key_card_and_mobile_key_reaches_dormakaba() {
    let mut s = Stack::new(Options::default()).await;
    s.add_connection(dormakaba_conn(&s.sim)).await;
    s.start_ingest(&[]).await;
    s.start_worker("dormakaba-worker", &[]).await;

    s.accepted("clock", &clock(880_001, "booking_new", &at(0)))
        .await;
    let saflok = |st: Value| st["saflok"].clone();
    s.wait_until("the Saflok booking and its mobile key", WAIT, || async {
        let st = saflok(s.sim.state("dormakaba").await);
        let booked = st["bookings"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|b| b["main_room"] == "101" && b["checked_out"] == false);
        let mobile = st["mobile_keys"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|m| m["delivered"] == true && m["cancelled"] == false);
        booked && mobile
    })
    .await;

    let (_req, body) = key_request("880001");
    s.accepted("native", &body).await;
    s.wait_until("one key card encoded on encoder 1", WAIT, || async {
        let st = saflok(s.sim.state("dormakaba").await);
        st["keys"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|k| k["encoder_id"] == 1 && k["key_count"] == 1)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let st = saflok(s.sim.state("dormakaba").await);
    let bookings: Vec<&Value> = st["bookings"].as_array().unwrap().iter().collect();
    assert_eq!(
        bookings.len(),
        1,
        "one lock-system booking: {bookings:?}\n{}",
        s.logs()
    );
    let b = bookings[0];
    assert!(
        b["guest_name"].as_str().unwrap().starts_with("Jansen"),
        "guest name {b}"
    );
    assert!(
        b["common_areas"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["pass_level_no"] == 2),
        "fitness pass level on the key: {b}"
    );
    let mobile: Vec<&Value> = st["mobile_keys"].as_array().unwrap().iter().collect();
    assert_eq!(mobile.len(), 1, "one mobile key: {mobile:?}");
    assert_eq!(mobile[0]["room"], "101");
    let creates = s
        .sim
        .calls("dormakaba")
        .await
        .iter()
        .filter(|c| c["operation"] == "CreateNewBooking")
        .count();
    assert_eq!(creates, 1, "exactly one CreateNewBooking\n{}", s.logs());
    s.finish().await;
}
