//! The features that let a test see duplicates accesshub causes: faults after the vendor
//! applied the call, the no-de-duplication mode and the live-object view.

use std::time::Duration;

use serde_json::{Value, json};
use vendor_sim::cloudpass::{DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, DEMO_SITE_AMSTERDAM};
use vendor_sim::dormakaba::Product;
use vendor_sim::ipassan::{DEMO_ASSET_BBQ, DEMO_PERSON_JAN, DEMO_SITE, IpassanFixture};
use vendor_sim::tapkey::{DEMO_LOCK_FRONT, DEMO_OWNER_ID};
use vendor_sim::{FaultKind, FaultRule, LiveKind, SimHandle, Vendor};

use crate::cloudpass::{booking, cp_token};
use crate::dormakaba::{booking_fields, call, fault, tag};
use crate::ipassan::ip_token;
use crate::tapkey::{SCOPES, grant, tk_token};
use crate::{http, sim};

/// POSTs a CloudPass vehicle booking; (status or 0 when no answer, is_timeout).
async fn cp_post(c: &reqwest::Client, sim: &SimHandle, tok: &str, body: &Value) -> (u16, bool) {
    let url = format!(
        "{}/api/v1/sites/{DEMO_SITE_AMSTERDAM}/vehicle-bookings",
        sim.cloudpass_url()
    );
    match c.post(url).bearer_auth(tok).json(body).send().await {
        Ok(r) => (r.status().as_u16(), false),
        Err(e) => (0, e.is_timeout()),
    }
}

async fn cp_setup(sim: &SimHandle) -> (reqwest::Client, String) {
    let c = reqwest::Client::builder()
        .timeout(Duration::from_millis(800))
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let tok = cp_token(&c, &sim.cloudpass_url(), DEMO_CLIENT_ID, DEMO_CLIENT_SECRET).await;
    (c, tok)
}

/// GETs a control-API document.
async fn get_json(c: &reqwest::Client, url: String) -> Value {
    c.get(url).send().await.unwrap().json().await.unwrap()
}

/// PUTs a JSON body; the status.
async fn put_status(c: &reqwest::Client, url: String, body: Value) -> (u16, Value) {
    let r = c.put(url).json(&body).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn live_refs(sim: &SimHandle, vendor: Vendor) -> Vec<String> {
    sim.state()
        .live_objects(vendor)
        .into_iter()
        .map(|o| o.reference.unwrap_or_default())
        .collect()
}

#[tokio::test]
async fn after_commit_faults_apply_the_call_then_lose_the_answer() {
    let sim = sim().await;
    let st = sim.state();
    let (c, tok) = cp_setup(&sim).await;
    let cases = [
        (FaultKind::Status503AfterCommit, "ac-503", 503),
        (FaultKind::Status500AfterCommit, "ac-500", 500),
        (FaultKind::ResetAfterCommit, "ac-reset", 0),
        (FaultKind::TimeoutAfterCommit, "ac-timeout", 0),
    ];
    let list = format!(
        "{}/api/v1/sites/{DEMO_SITE_AMSTERDAM}/vehicle-bookings",
        sim.cloudpass_url()
    );
    for (kind, reference, want) in cases.clone() {
        st.add_fault(
            FaultRule::next_n(Vendor::CloudPass, kind.clone(), 1)
                .on_path("/vehicle-bookings")
                .on_method("post"),
        );
        // The lookup on the same path is not the call the rule is for.
        let r = c.get(&list).bearer_auth(&tok).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let (status, timed_out) = cp_post(&c, &sim, &tok, &booking(reference, "AB12CD")).await;
        assert_eq!(status, want, "{kind:?}: the client sees the lost answer");
        assert_eq!(timed_out, kind == FaultKind::TimeoutAfterCommit, "{kind:?}");
    }
    // Every call was applied although no client saw a 201.
    assert_eq!(
        live_refs(&sim, Vendor::CloudPass),
        ["ac-500", "ac-503", "ac-reset", "ac-timeout"]
    );
    let posts: Vec<_> = st
        .calls_for(Vendor::CloudPass)
        .into_iter()
        .filter(|c| c.method == "POST" && c.path.contains("/vehicle-bookings"))
        .collect();
    assert_eq!(posts.len(), 4);
    for (call, (_, _, want)) in posts.iter().zip(cases) {
        assert!(call.injected_fault);
        assert_eq!(call.status, want, "{call:?}");
        assert_eq!(call.committed_status, Some(201), "{call:?}");
    }
    // The retry a client makes meets the vendor's de-duplication (409), not a second object.
    assert_eq!(
        cp_post(&c, &sim, &tok, &booking("ac-503", "AB12CD"))
            .await
            .0,
        409
    );

    // The same through the SOAP operation match, and for a Tapkey grant.
    st.add_fault(
        FaultRule::next_n(Vendor::Dormakaba, FaultKind::Status503AfterCommit, 1)
            .on_path("#CreateNewBooking"),
    );
    let r = http()
        .post(sim.dormakaba_url())
        .header("Content-Type", "text/xml; charset=utf-8")
        .body(crate::dormakaba::saflok_envelope(
            "CreateNewBooking",
            &booking_fields("AC-R1", "101", "Jansen, Piet", 1, ""),
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(st.dormakaba_bookings(Product::Saflok).len(), 1);

    let tk = http();
    let tok = tk_token(&tk, &sim, SCOPES).await;
    st.add_fault(
        FaultRule::next_n(Vendor::Tapkey, FaultKind::Status500AfterCommit, 1).on_path("/Grants"),
    );
    let r = tk
        .put(format!(
            "{}/api/v1/Owners/{DEMO_OWNER_ID}/Grants",
            sim.tapkey_url()
        ))
        .bearer_auth(&tok)
        .json(&grant(DEMO_LOCK_FRONT, "ac@example.com"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 500);
    assert_eq!(st.live_objects(Vendor::Tapkey).len(), 1);
}

#[tokio::test]
async fn after_commit_rules_round_trip_through_the_control_api() {
    let sim = sim().await;
    let c = http();
    let kinds = [
        "timeout_after_commit",
        "reset_after_commit",
        "status500_after_commit",
        "status503_after_commit",
    ];
    let rules: Vec<Value> = kinds
        .iter()
        .map(|k| json!({"vendor": "tapkey", "kind": {"type": k}, "mode": {"probability": 0.1}, "path_contains": "/Grants"}))
        .collect();
    let r = c
        .post(format!("{}/faults", sim.control_url()))
        .json(&rules)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let got: Value = r.json().await.unwrap();
    let got: Vec<&str> = got
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["kind"]["type"].as_str().unwrap())
        .collect();
    assert_eq!(got, kinds);
    assert!(sim.state().faults().iter().all(|r| r.kind.after_commit()));
}

#[tokio::test]
async fn cloudpass_without_dedupe_accepts_a_repeated_reference() {
    let sim = sim().await;
    let st = sim.state();
    let (c, tok) = cp_setup(&sim).await;
    assert_eq!(
        cp_post(&c, &sim, &tok, &booking("dup-1", "AB12CD")).await.0,
        201
    );
    assert_eq!(
        cp_post(&c, &sim, &tok, &booking("dup-1", "AB12CD")).await.0,
        409
    );
    assert!(st.live_duplicates(Vendor::CloudPass).is_empty());

    st.set_dedupe(Vendor::CloudPass, false);
    assert_eq!(
        cp_post(&c, &sim, &tok, &booking("dup-1", "AB12CD")).await.0,
        201
    );
    let dups = st.live_duplicates(Vendor::CloudPass);
    assert_eq!(dups.len(), 1);
    assert_eq!(dups[0].len(), 2);
    assert_eq!(dups[0][0].kind, LiveKind::VehicleBooking);
    assert_eq!(dups[0][0].holder, "AB12CD");
    // A lookup by reference shows both, as a vendor without a unique key would.
    let list: Value = c
        .get(format!(
            "{}/api/v1/sites/{DEMO_SITE_AMSTERDAM}/vehicle-bookings?reference=dup-1",
            sim.cloudpass_url()
        ))
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["meta"]["total"], 2);
    assert_eq!(list["data"].as_array().unwrap().len(), 2);
    // Deleting one copy leaves the other findable by reference.
    let first = list["data"][0]["id"].as_str().unwrap();
    let r = c
        .delete(format!(
            "{}/api/v1/sites/{DEMO_SITE_AMSTERDAM}/vehicle-bookings/{first}",
            sim.cloudpass_url()
        ))
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let left = st
        .cloudpass_booking_by_reference(DEMO_SITE_AMSTERDAM, "dup-1")
        .unwrap();
    assert_eq!(left.id, list["data"][1]["id"].as_str().unwrap());
    assert!(st.live_duplicates(Vendor::CloudPass).is_empty());

    // Reset switches de-duplication back on.
    st.reset();
    assert!(st.dedupe(Vendor::CloudPass));
}

#[tokio::test]
async fn tapkey_without_dedupe_issues_an_identical_grant_again() {
    let sim = sim().await;
    let st = sim.state();
    let c = http();
    let tok = tk_token(&c, &sim, SCOPES).await;
    let put = || {
        c.put(format!(
            "{}/api/v1/Owners/{DEMO_OWNER_ID}/Grants",
            sim.tapkey_url()
        ))
        .bearer_auth(&tok)
        .json(&grant(DEMO_LOCK_FRONT, "Dup@Example.com"))
        .send()
    };
    assert_eq!(put().await.unwrap().status(), 200);
    assert_eq!(
        put().await.unwrap().status(),
        409,
        "documented: desired state already present"
    );
    st.set_dedupe(Vendor::Tapkey, false);
    assert_eq!(put().await.unwrap().status(), 200);
    let live = st.live_objects(Vendor::Tapkey);
    assert_eq!(live.len(), 2);
    assert_eq!(live[0].holder, "dup@example.com");
    assert_eq!(live[0].place, DEMO_LOCK_FRONT);
    assert_eq!(live[0].scope, DEMO_OWNER_ID);
    assert_eq!(
        live[0].valid_until.map(|t| t.to_rfc3339()),
        Some("2030-02-02T10:00:00+00:00".to_owned())
    );
    assert_eq!(st.live_duplicates(Vendor::Tapkey).len(), 1);
}

#[tokio::test]
async fn dormakaba_without_dedupe_keeps_a_second_reservation_record() {
    let sim = sim().await;
    let st = sim.state();
    let fields = booking_fields("DUP-1", "101", "Jansen, Piet", 1, "");
    let r = call(&sim, "CreateNewBooking", &fields).await;
    assert_eq!(tag(&r, "bSuccess"), Some("true"));
    let r = call(&sim, "CreateNewBooking", &fields).await;
    assert_eq!(tag(&r, "ResponseMessage"), Some("Booking already exists"));
    assert_eq!(st.live_objects(Vendor::Dormakaba).len(), 1);

    st.set_dedupe(Vendor::Dormakaba, false);
    let r = call(&sim, "CreateNewBooking", &fields).await;
    assert_eq!(tag(&r, "ResponseMessage"), Some("Booking created"));
    let dups = st.live_duplicates(Vendor::Dormakaba);
    assert_eq!(dups.len(), 1, "{dups:?}");
    assert_eq!(dups[0][0].kind, LiveKind::Reservation);
    assert_eq!(dups[0][0].scope, "saflok:DEMO-HOTEL");
    assert_ne!(dups[0][0].id, dups[0][1].id, "two transaction numbers");
    // One checkout ends one record: the second one stays live, visibly.
    let out = "<ReservationID>DUP-1</ReservationID><SiteName>DEMO-HOTEL</SiteName><PMSTerminalID>1</PMSTerminalID>";
    let r = call(&sim, "CheckOutGuest", out).await;
    assert_eq!(tag(&r, "bSuccess"), Some("true"));
    let live = st.live_objects(Vendor::Dormakaba);
    assert_eq!(live.len(), 1, "{live:?}");
    let r = call(&sim, "CheckOutGuest", out).await;
    assert_eq!(tag(&r, "bSuccess"), Some("true"));
    assert!(st.live_objects(Vendor::Dormakaba).is_empty());
    let r = call(&sim, "CheckOutGuest", out).await;
    assert_eq!(fault(&r), Some("ReservationCheckedOut"));
}

#[tokio::test]
async fn ipassan_keeps_its_documented_slot_rule_and_never_dedupes_by_reference() {
    let sim = sim().await;
    let st = sim.state();
    // An asset that allows overlapping bookings (no one-booking-per-slot).
    let fixture: IpassanFixture = serde_json::from_value(json!({"assets": [{
        "uuid": "6b1f3c9e-0000-4000-8000-0000000a55e2", "site_uuid": DEMO_SITE,
        "name": "Lounge", "time_slot_minutes": 30, "max_booking_minutes": 240,
        "one_booking_per_slot": false
    }]}))
    .unwrap();
    st.seed_ipassan(fixture).unwrap();
    st.set_dedupe(Vendor::IPassan, false);
    let c = http();
    let tok = ip_token(&c, &sim.ipassan_url()).await;
    let post = |asset: &str| {
        c.post(format!(
            "{}/api/v1/access/site/{DEMO_SITE}/asset/{asset}/booking",
            sim.ipassan_url()
        ))
        .bearer_auth(&tok)
        .json(
            &json!({"person_uuid": DEMO_PERSON_JAN, "start": "2030-06-01T18:00:00Z",
                      "end": "2030-06-01T19:00:00Z", "reference": "ah:dup", "title": "x"}),
        )
        .send()
    };
    let lounge = "6b1f3c9e-0000-4000-8000-0000000a55e2";
    assert_eq!(post(lounge).await.unwrap().status(), 201);
    assert_eq!(post(lounge).await.unwrap().status(), 201);
    assert_eq!(post(DEMO_ASSET_BBQ).await.unwrap().status(), 201);
    assert_eq!(
        post(DEMO_ASSET_BBQ).await.unwrap().status(),
        422,
        "one booking per slot is the asset's documented rule, kept in every mode"
    );
    let dups = st.live_duplicates(Vendor::IPassan);
    assert_eq!(dups.len(), 1);
    assert_eq!(dups[0][0].place, lounge);
    assert_eq!(dups[0][0].reference.as_deref(), Some("ah:dup"));
}

#[tokio::test]
async fn dedupe_switch_and_live_objects_over_the_control_api() {
    let sim = sim().await;
    let c = http();
    let ctl = sim.control_url();
    let modes: Value = get_json(&c, format!("{ctl}/dedupe")).await;
    assert_eq!(
        modes,
        json!({"cloudpass": true, "tapkey": true, "ipassan": true, "dormakaba": true})
    );
    let (status, modes) = put_status(
        &c,
        format!("{ctl}/dedupe/cloudpass"),
        json!({"enabled": false}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(modes["cloudpass"], false);
    let bad = put_status(
        &c,
        format!("{ctl}/dedupe/cloudpass"),
        json!({"enable": false}),
    )
    .await;
    assert_eq!(bad.0, 400);
    let unknown = put_status(&c, format!("{ctl}/dedupe/acme"), json!({"enabled": false})).await;
    assert_eq!(unknown.0, 404);

    let (cc, tok) = cp_setup(&sim).await;
    for _ in 0..2 {
        assert_eq!(
            cp_post(&cc, &sim, &tok, &booking("ctl-1", "XY-99-ZZ"))
                .await
                .0,
            201
        );
    }
    let live: Value = get_json(&c, format!("{ctl}/live/cloudpass")).await;
    let live = live.as_array().unwrap();
    assert_eq!(live.len(), 2);
    assert_eq!(live[0]["kind"], "vehicle_booking");
    assert_eq!(live[0]["reference"], "ctl-1");
    assert_eq!(live[0]["holder"], "XY99ZZ");
    assert_eq!(live[0]["scope"], DEMO_SITE_AMSTERDAM);
    assert_eq!(live[0]["valid_from"], "2030-05-01T14:00:00Z");
    assert_eq!(
        live[0]["attributes"]["time_restriction_id"],
        "cp-tr-ams-247"
    );
    let dups: Value = get_json(&c, format!("{ctl}/live/cloudpass/duplicates")).await;
    assert_eq!(dups.as_array().unwrap().len(), 1);
    let r = c.post(format!("{ctl}/reset")).send().await.unwrap();
    assert_eq!(r.status(), 204);
    let modes: Value = get_json(&c, format!("{ctl}/dedupe")).await;
    assert_eq!(modes["cloudpass"], true, "reset restores de-duplication");
}
