//! `apply` against the in-process iPassan simulator: create, move, cancel, every rule, the
//! missing profile, pagination, idempotency after a crash and a wrong site GUID.
#![allow(clippy::unwrap_used)] // helpers outside #[test] fns set up fixtures

use std::collections::BTreeMap;

use accesshub_connections::{IpassanSettings, Secret};
use accesshub_domain::{Classify, ErrorClass, FacilityBooking, FacilityStatus, Resident};
use chrono::{DateTime, Utc};
use ipassan_adapter::apply::{self, ApplyError, Known, Target, VendorIds};
use ipassan_adapter::client::{IpassanClient, IpassanError, NewBooking};
use ipassan_adapter::desired::RuleError;
use vendor_http::{HttpSettings, VendorClient};
use vendor_sim::ipassan::{
    Asset, DEMO_ASSET_BBQ, DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, DEMO_PERSON_JAN, DEMO_SITE,
    IpassanFixture, Person,
};
use vendor_sim::{FaultKind, FaultRule, SimConfig, SimHandle, Vendor};
use worker_runtime::HandlerError;

const GYM: &str = "6b1f3c9e-0000-4000-8000-0000000a55e2";
const REF: &str = "ah:t1:facility:cx-1";

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn settings(sim: &SimHandle) -> IpassanSettings {
    IpassanSettings {
        base_url: sim.ipassan_url(),
        client_id: DEMO_CLIENT_ID.into(),
        client_secret: Secret::new(DEMO_CLIENT_SECRET),
        site_guid: DEMO_SITE.into(),
        facilities: BTreeMap::from([
            ("rooftop-bbq".to_owned(), DEMO_ASSET_BBQ.to_owned()),
            ("gym".to_owned(), GYM.to_owned()),
        ]),
    }
}

fn client(s: &IpassanSettings) -> IpassanClient {
    IpassanClient::new(
        VendorClient::new("ipassan", HttpSettings::default()).unwrap(),
        s,
    )
}

/// The demo plus a gym without profile requirements that allows parallel bookings.
async fn sim() -> SimHandle {
    let sim = vendor_sim::start(SimConfig::ephemeral()).await.unwrap();
    sim.state().seed_demo();
    sim.state()
        .seed_ipassan(IpassanFixture {
            assets: vec![asset(GYM, "Gym", 15, 60, false)],
            ..Default::default()
        })
        .unwrap();
    sim
}

fn asset(uuid: &str, name: &str, slot: u32, max: u32, one: bool) -> Asset {
    Asset {
        uuid: uuid.into(),
        site_uuid: DEMO_SITE.into(),
        name: name.into(),
        display: "week".into(),
        door_profile_uuid: None,
        floor_profile_uuid: None,
        time_slot_minutes: slot,
        max_booking_minutes: max,
        one_booking_per_slot: one,
    }
}

fn person(uuid: &str, mail: &str) -> Person {
    Person {
        uuid: uuid.into(),
        site_uuid: DEMO_SITE.into(),
        lastname: format!("Resident {uuid}"),
        firstname: String::new(),
        phone: String::new(),
        mail: mail.into(),
        number: String::new(),
        person_type: 1,
        door_permanent: vec![],
        door_temporary: vec![],
        floor_permanent: vec![],
        floor_temporary: vec![],
    }
}

fn booking(facility: &str, mail: &str, start: &str, end: &str) -> FacilityBooking {
    FacilityBooking {
        status: FacilityStatus::Booked,
        facility_id: facility.into(),
        resident: Resident {
            id: "res-1".into(),
            email: mail.into(),
            first_name: "Jan".into(),
            last_name: "de Vries".into(),
        },
        start: t(start),
        end: t(end),
    }
}

fn target() -> Target<'static> {
    Target {
        tenant: "t1",
        connection: "default",
        reference: REF,
    }
}

async fn run(
    c: &IpassanClient,
    s: &IpassanSettings,
    b: &FacilityBooking,
    prev: Option<&VendorIds>,
) -> Result<apply::Applied, ApplyError> {
    let known = Known {
        previous: prev,
        first_attempt: false,
    };
    apply::apply(c, s, target(), b, known, no_record).await
}

/// A record the tests do not keep (the worker tests check the runtime's).
async fn no_record(_: VendorIds) -> Result<(), HandlerError> {
    Ok(())
}

/// A booking's first attempt: no earlier attempt can have reached iPassan.
async fn first_run(
    c: &IpassanClient,
    s: &IpassanSettings,
    b: &FacilityBooking,
) -> Result<apply::Applied, ApplyError> {
    let known = Known {
        previous: None,
        first_attempt: true,
    };
    apply::apply(c, s, target(), b, known, no_record).await
}

fn ours(sim: &SimHandle) -> Vec<vendor_sim::ipassan::AssetBooking> {
    sim.state()
        .ipassan_bookings()
        .into_iter()
        .filter(|b| b.reference.as_deref() == Some(REF))
        .collect()
}

/// Methods of booking calls in order ("POST"/"DELETE"), to prove make-before-break.
fn booking_writes(sim: &SimHandle) -> Vec<String> {
    sim.state()
        .calls_for(Vendor::IPassan)
        .into_iter()
        .filter(|c| c.path.contains("/booking") && c.method != "GET")
        .map(|c| c.method)
        .collect()
}

fn posts(sim: &SimHandle) -> usize {
    booking_writes(sim).iter().filter(|m| *m == "POST").count()
}

#[tokio::test]
async fn create_then_same_again_is_a_no_op() {
    let sim = sim().await;
    let s = settings(&sim);
    let c = client(&s);
    let b = booking(
        "rooftop-bbq",
        "JAN@example.com",
        "2030-05-01T10:00:00Z",
        "2030-05-01T11:00:00Z",
    );
    let a = run(&c, &s, &b, None).await.unwrap();
    assert!(a.created);
    let list = ours(&sim);
    assert_eq!(list.len(), 1);
    assert_eq!(
        list[0].person_uuid, DEMO_PERSON_JAN,
        "found by e-mail, case-insensitive"
    );
    assert_eq!(list[0].asset_uuid, DEMO_ASSET_BBQ);
    assert_eq!(list[0].start, b.start);
    assert_eq!(list[0].end, b.end);
    assert_eq!(list[0].title.as_deref(), Some("Jan de Vries"));
    assert_eq!(a.ids.booking_uuid.as_deref(), Some(list[0].uuid.as_str()));

    let again = run(&c, &s, &b, Some(&a.ids)).await.unwrap();
    assert!(!again.created);
    assert_eq!(again.ids, a.ids);
    assert_eq!(posts(&sim), 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn unknown_resident_is_created_as_resident() {
    let sim = sim().await;
    let s = settings(&sim);
    let c = client(&s);
    let mut b = booking(
        "gym",
        "kim@example.com",
        "2030-05-01T07:15:00Z",
        "2030-05-01T08:00:00Z",
    );
    b.resident.first_name = "Kim".into();
    b.resident.last_name = "Bakker".into();
    let a = run(&c, &s, &b, None).await.unwrap();
    let p = sim
        .state()
        .ipassan_persons()
        .into_iter()
        .find(|p| p.mail == "kim@example.com")
        .expect("person created");
    assert_eq!(p.person_type, 1, "resident");
    assert_eq!(p.lastname, "Bakker");
    assert_eq!(p.number, "res-1");
    assert_eq!(a.ids.person_uuid.as_deref(), Some(p.uuid.as_str()));
    // Second apply finds the person instead of creating another.
    run(&c, &s, &b, Some(&a.ids)).await.unwrap();
    let n = sim
        .state()
        .ipassan_persons()
        .iter()
        .filter(|p| p.mail == "kim@example.com")
        .count();
    assert_eq!(n, 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn move_without_overlap_creates_before_deleting() {
    let sim = sim().await;
    let s = settings(&sim);
    let c = client(&s);
    let b1 = booking(
        "rooftop-bbq",
        "jan@example.com",
        "2030-05-01T10:00:00Z",
        "2030-05-01T11:00:00Z",
    );
    let a1 = run(&c, &s, &b1, None).await.unwrap();
    let b2 = booking(
        "rooftop-bbq",
        "jan@example.com",
        "2030-05-01T14:00:00Z",
        "2030-05-01T15:30:00Z",
    );
    let a2 = run(&c, &s, &b2, Some(&a1.ids)).await.unwrap();
    assert!(a2.created);
    assert_eq!(a2.deleted, 1);
    let list = ours(&sim);
    assert_eq!(list.len(), 1);
    assert_eq!((list[0].start, list[0].end), (b2.start, b2.end));
    assert_eq!(booking_writes(&sim), ["POST", "POST", "DELETE"]);
    sim.shutdown().await;
}

#[tokio::test]
async fn overlapping_move_on_one_per_slot_asset_deletes_first() {
    let sim = sim().await;
    let s = settings(&sim);
    let c = client(&s);
    let b1 = booking(
        "rooftop-bbq",
        "jan@example.com",
        "2030-05-01T10:00:00Z",
        "2030-05-01T11:00:00Z",
    );
    let a1 = run(&c, &s, &b1, None).await.unwrap();
    let b2 = booking(
        "rooftop-bbq",
        "jan@example.com",
        "2030-05-01T10:30:00Z",
        "2030-05-01T12:00:00Z",
    );
    let a2 = run(&c, &s, &b2, Some(&a1.ids)).await.unwrap();
    assert!(a2.created);
    let list = ours(&sim);
    assert_eq!(list.len(), 1);
    assert_eq!((list[0].start, list[0].end), (b2.start, b2.end));
    assert_eq!(booking_writes(&sim), ["POST", "DELETE", "POST"]);
    sim.shutdown().await;
}

#[tokio::test]
async fn overlapping_move_on_parallel_asset_creates_first() {
    let sim = sim().await;
    let s = settings(&sim);
    let c = client(&s);
    let b1 = booking(
        "gym",
        "jan@example.com",
        "2030-05-01T10:00:00Z",
        "2030-05-01T11:00:00Z",
    );
    let a1 = run(&c, &s, &b1, None).await.unwrap();
    let b2 = booking(
        "gym",
        "jan@example.com",
        "2030-05-01T10:15:00Z",
        "2030-05-01T11:15:00Z",
    );
    run(&c, &s, &b2, Some(&a1.ids)).await.unwrap();
    assert_eq!(ours(&sim).len(), 1);
    assert_eq!(booking_writes(&sim), ["POST", "POST", "DELETE"]);
    sim.shutdown().await;
}

#[tokio::test]
async fn refused_overlapping_move_restores_the_old_booking() {
    let sim = sim().await;
    let s = settings(&sim);
    let c = client(&s);
    let b1 = booking(
        "rooftop-bbq",
        "jan@example.com",
        "2030-05-01T10:00:00Z",
        "2030-05-01T11:00:00Z",
    );
    let a1 = run(&c, &s, &b1, None).await.unwrap();
    // The booking moves to an overlapping window and to Eva, who lacks the floor profile: our
    // pre-checks pass, the old booking is deleted to make room, iPassan refuses the new one.
    let b2 = booking(
        "rooftop-bbq",
        "eva@example.com",
        "2030-05-01T10:30:00Z",
        "2030-05-01T11:30:00Z",
    );
    let e = run(&c, &s, &b2, Some(&a1.ids)).await.unwrap_err();
    assert!(e.to_string().contains("'Floor 7'"), "{e}");
    assert_eq!(booking_writes(&sim), ["POST", "DELETE", "POST", "POST"]);
    let list = ours(&sim);
    assert_eq!(list.len(), 1, "old booking restored");
    assert_eq!((list[0].start, list[0].end), (b1.start, b1.end));
    assert_eq!(list[0].person_uuid, DEMO_PERSON_JAN);
    sim.shutdown().await;
}

#[tokio::test]
async fn overlap_found_by_precheck_keeps_the_old_booking() {
    let sim = sim().await;
    let s = settings(&sim);
    let c = client(&s);
    let b1 = booking(
        "rooftop-bbq",
        "jan@example.com",
        "2030-05-01T10:00:00Z",
        "2030-05-01T11:00:00Z",
    );
    let a1 = run(&c, &s, &b1, None).await.unwrap();
    let other = c
        .create_booking(
            DEMO_ASSET_BBQ,
            &NewBooking {
                person_uuid: DEMO_PERSON_JAN.into(),
                start: t("2030-05-01T11:00:00Z"),
                end: t("2030-05-01T11:30:00Z"),
                reference: "someone-else".into(),
                title: "other".into(),
            },
        )
        .await
        .unwrap();
    let b2 = booking(
        "rooftop-bbq",
        "jan@example.com",
        "2030-05-01T10:30:00Z",
        "2030-05-01T11:30:00Z",
    );
    let e = run(&c, &s, &b2, Some(&a1.ids)).await.unwrap_err();
    assert_eq!(e.class(), ErrorClass::Permanent);
    assert!(e.to_string().contains("one booking per time slot"), "{e}");
    assert!(e.to_string().contains(&other.uuid), "{e}");
    // Nothing deleted: the pre-check ran before the break-before-make.
    assert_eq!(booking_writes(&sim), ["POST", "POST"]);
    let list = ours(&sim);
    assert_eq!(list.len(), 1);
    assert_eq!((list[0].start, list[0].end), (b1.start, b1.end));
    sim.shutdown().await;
}

#[tokio::test]
async fn move_to_another_facility_removes_the_old_asset_booking() {
    let sim = sim().await;
    let s = settings(&sim);
    let c = client(&s);
    let a1 = run(
        &c,
        &s,
        &booking(
            "rooftop-bbq",
            "jan@example.com",
            "2030-05-01T10:00:00Z",
            "2030-05-01T11:00:00Z",
        ),
        None,
    )
    .await
    .unwrap();
    let a2 = run(
        &c,
        &s,
        &booking(
            "gym",
            "jan@example.com",
            "2030-05-01T10:00:00Z",
            "2030-05-01T11:00:00Z",
        ),
        Some(&a1.ids),
    )
    .await
    .unwrap();
    let list = ours(&sim);
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].asset_uuid, GYM);
    assert_eq!(a2.ids.asset_uuid.as_deref(), Some(GYM));
    assert_eq!(booking_writes(&sim), ["POST", "POST", "DELETE"]);
    sim.shutdown().await;
}

#[tokio::test]
async fn cancel_deletes_and_is_idempotent() {
    let sim = sim().await;
    let s = settings(&sim);
    let c = client(&s);
    let mut b = booking(
        "rooftop-bbq",
        "jan@example.com",
        "2030-05-01T10:00:00Z",
        "2030-05-01T11:00:00Z",
    );
    let a = run(&c, &s, &b, None).await.unwrap();
    b.status = FacilityStatus::Cancelled;
    let x = run(&c, &s, &b, Some(&a.ids)).await.unwrap();
    assert_eq!(x.status, worker_runtime::Status::Cancelled);
    assert_eq!(x.deleted, 1);
    assert!(ours(&sim).is_empty());
    let y = run(&c, &s, &b, Some(&x.ids)).await.unwrap();
    assert_eq!(y.deleted, 0);
    // 404 on delete = already gone = success.
    let id = a.ids.booking_uuid.unwrap();
    assert!(!c.delete_booking(DEMO_ASSET_BBQ, &id).await.unwrap());
    // Cancelling a booking of an unmapped facility that never reached iPassan is a no-op.
    b.facility_id = "sauna".into();
    run(&c, &s, &b, None).await.unwrap();
    sim.shutdown().await;
}

fn rule_error(e: ApplyError) -> RuleError {
    assert_eq!(e.class(), ErrorClass::Permanent, "{e}");
    match e {
        ApplyError::Rule(r) => r,
        other => panic!("expected a rule error, got {other}"),
    }
}

#[tokio::test]
async fn rule_violations_name_rule_and_values() {
    let sim = sim().await;
    let s = settings(&sim);
    let c = client(&s);
    let cases = [
        (
            ("2030-05-01T10:15:00Z", "2030-05-01T11:00:00Z"),
            vec![
                "time slot boundaries",
                "start 2030-05-01T10:15:00Z",
                "30-minute",
                "Rooftop BBQ",
            ],
        ),
        (
            ("2030-05-01T10:00:00Z", "2030-05-01T12:30:00Z"),
            vec!["max booking time", "150 minutes", "maximum of 120"],
        ),
        (
            ("2030-05-01T11:00:00Z", "2030-05-01T10:00:00Z"),
            vec!["end after start"],
        ),
    ];
    for ((start, end), needles) in cases {
        let e = rule_error(
            run(
                &c,
                &s,
                &booking("rooftop-bbq", "jan@example.com", start, end),
                None,
            )
            .await
            .unwrap_err(),
        );
        let msg = e.to_string();
        for n in needles {
            assert!(msg.contains(n), "{msg:?} lacks {n:?}");
        }
    }
    // One booking per slot: someone else holds 10:30-11:00.
    let other = c
        .create_booking(
            DEMO_ASSET_BBQ,
            &NewBooking {
                person_uuid: DEMO_PERSON_JAN.into(),
                start: t("2030-05-01T10:30:00Z"),
                end: t("2030-05-01T11:00:00Z"),
                reference: "not-ours".into(),
                title: "x".into(),
            },
        )
        .await
        .unwrap();
    let msg = rule_error(
        run(
            &c,
            &s,
            &booking(
                "rooftop-bbq",
                "jan@example.com",
                "2030-05-01T10:00:00Z",
                "2030-05-01T11:00:00Z",
            ),
            None,
        )
        .await
        .unwrap_err(),
    )
    .to_string();
    assert!(msg.contains("one booking per time slot"), "{msg}");
    assert!(msg.contains(&other.uuid), "{msg}");
    assert!(
        msg.contains("2030-05-01T10:30:00Z - 2030-05-01T11:00:00Z"),
        "{msg}"
    );
    assert!(
        msg.contains("2030-05-01T10:00:00Z - 2030-05-01T11:00:00Z"),
        "{msg}"
    );
    // The window rules never reach the booking endpoint; the overlap is iPassan's own
    // refusal of the create (a plain create is not pre-checked with a list of every booking
    // of the asset), read as the same rule: the seeding POST and the refused one.
    assert_eq!(posts(&sim), 2);
    assert!(ours(&sim).is_empty());
    // Missing mapping.
    let msg = rule_error(
        run(
            &c,
            &s,
            &booking(
                "sauna",
                "jan@example.com",
                "2030-05-01T10:00:00Z",
                "2030-05-01T11:00:00Z",
            ),
            None,
        )
        .await
        .unwrap_err(),
    )
    .to_string();
    assert_eq!(
        msg,
        "facility sauna is not mapped to an iPassan asset in connection t1/default (add it under settings.facilities)"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn missing_floor_profile_names_the_profile() {
    let sim = sim().await;
    let s = settings(&sim);
    let c = client(&s);
    let e = run(
        &c,
        &s,
        &booking(
            "rooftop-bbq",
            "eva@example.com",
            "2030-05-01T10:00:00Z",
            "2030-05-01T11:00:00Z",
        ),
        None,
    )
    .await
    .unwrap_err();
    let r = rule_error(e);
    assert!(
        matches!(r, RuleError::MissingProfile { kind: "floor", .. }),
        "{r:?}"
    );
    let msg = r.to_string();
    assert!(msg.contains("'Floor 7'"), "{msg}");
    // The resident is named by masked e-mail and person GUID, never the address (L7).
    assert!(msg.contains("e***@example.com (iPassan person"), "{msg}");
    assert!(!msg.contains("eva@example.com"), "{msg}");
    assert!(ours(&sim).is_empty());
    sim.shutdown().await;
}

#[tokio::test]
async fn persons_and_assets_are_read_across_pages() {
    let sim = sim().await;
    let persons: Vec<Person> = (0..120)
        .map(|i| person(&format!("p-{i:03}"), &format!("r{i}@example.com")))
        .collect();
    let mut assets: Vec<Asset> = (0..60)
        .map(|i| {
            asset(
                &format!("asset-{i:03}"),
                &format!("Room {i}"),
                15,
                60,
                false,
            )
        })
        .collect();
    assets.push(asset("asset-last", "Function room", 60, 240, true));
    sim.state()
        .seed_ipassan(IpassanFixture {
            persons,
            assets,
            ..Default::default()
        })
        .unwrap();
    let mut s = settings(&sim);
    s.facilities
        .insert("function-room".into(), "asset-last".into());
    let c = client(&s).with_page_size(25);

    let all = c.list_persons(None).await.unwrap();
    assert_eq!(all.len(), 122, "demo's 2 + 120 seeded");
    // 122 persons at 25 a page: five pages, the last one with a null cursor.
    assert_eq!(
        sim.state().count_calls(Vendor::IPassan, "GET", "/person"),
        5
    );
    assert_eq!(
        sim.state()
            .count_calls(Vendor::IPassan, "GET", "/person?limit=25&offset=100"),
        1
    );
    assert_eq!(c.list_assets().await.unwrap().len(), 63);

    sim.state().clear_calls();
    let a = run(
        &c,
        &s,
        &booking(
            "function-room",
            "r119@example.com",
            "2030-05-01T18:00:00Z",
            "2030-05-01T21:00:00Z",
        ),
        None,
    )
    .await
    .unwrap();
    assert_eq!(a.ids.person_uuid.as_deref(), Some("p-119"));
    assert_eq!(a.ids.asset_uuid.as_deref(), Some("asset-last"));
    // 63 assets at 25 a page: three pages to find the mapped one on the last.
    assert_eq!(
        sim.state().count_calls(Vendor::IPassan, "GET", "/asset?"),
        3
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn retry_after_crash_finds_the_booking_by_reference() {
    let sim = sim().await;
    let s = settings(&sim);
    let c = client(&s);
    let b = booking(
        "rooftop-bbq",
        "jan@example.com",
        "2030-05-01T10:00:00Z",
        "2030-05-01T11:00:00Z",
    );
    let first = run(&c, &s, &b, None).await.unwrap();
    // Crash: the binding was never recorded, so the retry has no previous ids.
    let retry = run(&c, &s, &b, None).await.unwrap();
    assert!(!retry.created);
    assert_eq!(retry.ids.booking_uuid, first.ids.booking_uuid);
    assert_eq!(ours(&sim).len(), 1);
    assert_eq!(posts(&sim), 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn wrong_site_guid_is_permanent_with_a_clear_reason() {
    let sim = sim().await;
    let mut s = settings(&sim);
    s.site_guid = "00000000-0000-4000-8000-000000000bad".into();
    let c = client(&s);
    let e = run(
        &c,
        &s,
        &booking(
            "rooftop-bbq",
            "jan@example.com",
            "2030-05-01T10:00:00Z",
            "2030-05-01T11:00:00Z",
        ),
        None,
    )
    .await
    .unwrap_err();
    assert_eq!(e.class(), ErrorClass::Permanent);
    assert!(
        matches!(e, ApplyError::Ipassan(IpassanError::AccessDenied { .. })),
        "{e:?}"
    );
    let msg = e.to_string();
    assert!(
        msg.contains("00000000-0000-4000-8000-000000000bad"),
        "{msg}"
    );
    assert!(
        msg.contains("Access Denied") && msg.contains("site_guid"),
        "{msg}"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn vendor_outage_is_transient() {
    let sim = sim().await;
    let s = settings(&sim);
    let c = client(&s);
    let mut rule = FaultRule::next_n(Vendor::IPassan, FaultKind::Status503, 1);
    rule.path_contains = Some("/asset".into());
    sim.state().add_fault(rule);
    let e = run(
        &c,
        &s,
        &booking(
            "rooftop-bbq",
            "jan@example.com",
            "2030-05-01T10:00:00Z",
            "2030-05-01T11:00:00Z",
        ),
        None,
    )
    .await
    .unwrap_err();
    assert_eq!(e.class(), ErrorClass::Transient, "{e}");
    sim.shutdown().await;
}

#[tokio::test]
async fn strays_are_removed_only_when_still_ours_and_not_the_copy_kept() {
    let sim = sim().await;
    let s = settings(&sim);
    let c = client(&s);
    let mk = |reference: &str, start: &str, end: &str| NewBooking {
        person_uuid: DEMO_PERSON_JAN.into(),
        start: t(start),
        end: t(end),
        reference: reference.into(),
        title: "x".into(),
    };
    let stray = c
        .create_booking(
            DEMO_ASSET_BBQ,
            &mk(REF, "2030-05-01T08:00:00Z", "2030-05-01T09:00:00Z"),
        )
        .await
        .unwrap();
    let foreign = c
        .create_booking(
            DEMO_ASSET_BBQ,
            &mk(
                "someone-else",
                "2030-05-01T10:00:00Z",
                "2030-05-01T11:00:00Z",
            ),
        )
        .await
        .unwrap();
    let current = c
        .create_booking(
            DEMO_ASSET_BBQ,
            &mk(REF, "2030-05-01T12:00:00Z", "2030-05-01T13:00:00Z"),
        )
        .await
        .unwrap();
    let binding = VendorIds {
        asset_uuid: Some(DEMO_ASSET_BBQ.into()),
        booking_uuid: Some(current.uuid.clone()),
        ..VendorIds::default()
    };
    let id = |b: &str| apply::stray_id(DEMO_ASSET_BBQ, b);
    let wanted = ipassan_adapter::desired::Wanted {
        asset: DEMO_ASSET_BBQ.into(),
        start: t("2030-05-01T12:00:00Z"),
        end: t("2030-05-01T13:00:00Z"),
    };
    use apply::StrayOutcome::*;
    let r = apply::remove_stray(&c, &id(&stray.uuid), REF, Some(&wanted), Some(&binding))
        .await
        .unwrap();
    assert_eq!(r.outcome, Deleted);
    assert_eq!(
        r.kept.as_ref().map(|k| k.booking.uuid.as_str()),
        Some(current.uuid.as_str())
    );
    assert_eq!(r.record(Some(&binding)), None, "already recorded");
    let r = apply::remove_stray(&c, &id(&stray.uuid), REF, Some(&wanted), Some(&binding))
        .await
        .unwrap();
    assert_eq!(r.outcome, Gone);
    let r = apply::remove_stray(&c, &id(&foreign.uuid), REF, Some(&wanted), Some(&binding))
        .await
        .unwrap();
    assert_eq!(r.outcome, Kept, "not carrying our reference");
    let r = apply::remove_stray(&c, &id(&current.uuid), REF, Some(&wanted), Some(&binding))
        .await
        .unwrap();
    assert_eq!(r.outcome, Kept, "the copy the desired state keeps");
    let e = apply::remove_stray(&c, "no-slash", REF, None, None)
        .await
        .unwrap_err();
    assert_eq!(e.class(), ErrorClass::Permanent);
    let left: Vec<String> = sim
        .state()
        .ipassan_bookings()
        .into_iter()
        .map(|b| b.uuid)
        .collect();
    assert_eq!(left, [foreign.uuid.clone(), current.uuid.clone()]);
    // Once the booking wants nothing here, even the recorded copy goes.
    let r = apply::remove_stray(&c, &id(&current.uuid), REF, None, Some(&binding))
        .await
        .unwrap();
    assert_eq!(r.outcome, Deleted);
    assert_eq!(r.record(Some(&binding)), None);
    sim.shutdown().await;
}

#[tokio::test]
async fn assets_lookup_lists_rules_and_explains_access_denied() {
    let sim = sim().await;
    let mut s = settings(&sim);
    let items = ipassan_adapter::lookup::assets(&s).await.unwrap();
    let bbq = items.iter().find(|i| i.id == DEMO_ASSET_BBQ).unwrap();
    assert_eq!(bbq.name, "Rooftop BBQ");
    assert_eq!(
        bbq.detail.as_deref(),
        Some("30-minute slots, max 120 minutes, one booking per slot")
    );
    assert!(items.iter().any(|i| i.id == GYM));
    s.site_guid = "00000000-0000-4000-8000-000000000bad".into();
    let e = ipassan_adapter::lookup::assets(&s).await.unwrap_err();
    assert_eq!(
        e.kind,
        accesshub_connections::lookup::LookupFailureKind::Credentials
    );
    assert!(e.message.contains("site GUID"), "{}", e.message);
    sim.shutdown().await;
}

/// A call as "<method> <what>": `assets`, `persons`, `<asset>/bookings` (list or create) or
/// `<asset>/booking` (one booking).
fn call_label(method: &str, path: &str) -> String {
    let path = path.split('?').next().unwrap_or_default();
    let parts: Vec<&str> = path.split('/').collect();
    let what = match parts.as_slice() {
        [.., "asset"] => "assets".to_owned(),
        [.., "person"] => "persons".to_owned(),
        [.., asset, "booking"] => format!("{asset}/bookings"),
        [.., asset, "booking", _] => format!("{asset}/booking"),
        _ => path.to_owned(),
    };
    format!("{method} {what}")
}

/// iPassan calls of each event (create, update, cancel) of one booking on the BBQ, every
/// attempt recorded as the worker records it, with `extra` more mapped assets (rooms like the
/// gym) and `others` bookings of other residents on the BBQ. Token calls are left out: one
/// per client, not per event.
async fn calls_per_event(extra: usize, others: usize) -> [Vec<String>; 3] {
    let sim = sim().await;
    let rooms: Vec<Asset> = (0..extra)
        .map(|i| asset(&format!("room-{i:02}"), &format!("Room {i}"), 15, 60, false))
        .collect();
    sim.state()
        .seed_ipassan(IpassanFixture {
            assets: rooms,
            ..Default::default()
        })
        .unwrap();
    let mut s = settings(&sim);
    for i in 0..extra {
        s.facilities
            .insert(format!("room-{i:02}"), format!("room-{i:02}"));
    }
    // Pages of 25: every asset of the site fits on one (the asset list is one call per
    // page of the site's assets, mapped or not), the BBQ's bookings would take two.
    let c = client(&s).with_page_size(25);
    for i in 0..others {
        let day = 2 + i % 28;
        let hour = 8 + i / 28;
        c.create_booking(
            DEMO_ASSET_BBQ,
            &NewBooking {
                person_uuid: DEMO_PERSON_JAN.into(),
                start: t(&format!("2030-06-{day:02}T{hour:02}:00:00Z")),
                end: t(&format!("2030-06-{day:02}T{hour:02}:30:00Z")),
                reference: format!("someone-else-{i}"),
                title: "other".into(),
            },
        )
        .await
        .unwrap();
    }
    let calls = |sim: &SimHandle| -> Vec<String> {
        let out = sim
            .state()
            .calls_for(Vendor::IPassan)
            .into_iter()
            .filter(|c| !c.path.contains("/token"))
            .map(|c| call_label(&c.method, &c.path))
            .collect();
        sim.state().clear_calls();
        out
    };
    calls(&sim);
    let mut b = booking(
        "rooftop-bbq",
        "jan@example.com",
        "2030-05-01T10:00:00Z",
        "2030-05-01T11:00:00Z",
    );
    let created = first_run(&c, &s, &b).await.unwrap();
    let create = calls(&sim);
    b.start = t("2030-05-01T12:00:00Z");
    b.end = t("2030-05-01T13:00:00Z");
    let updated = run(&c, &s, &b, Some(&created.ids)).await.unwrap();
    assert!(updated.created && updated.deleted == 1);
    let update = calls(&sim);
    b.status = FacilityStatus::Cancelled;
    let cancelled = run(&c, &s, &b, Some(&updated.ids)).await.unwrap();
    assert_eq!(cancelled.deleted, 1);
    let cancel = calls(&sim);
    assert!(ours(&sim).is_empty());
    sim.shutdown().await;
    [create, update, cancel]
}

/// Issue 25: calls per event used to grow with the mapped assets (each was searched for our
/// reference on every event) and with the asset's bookings (all listed before a create to
/// check overlaps). Now a create, an update and a cancel each cost the same few calls whatever
/// either number.
#[tokio::test]
async fn calls_per_event_do_not_grow_with_mapped_assets_or_bookings() {
    let few = calls_per_event(0, 0).await;
    let many = calls_per_event(14, 30).await;
    assert_eq!(
        many, few,
        "16 mapped assets and 30 other bookings vs 2 and none"
    );
    let bbq = |what: &str| what.replace("BBQ", DEMO_ASSET_BBQ);
    assert_eq!(
        few[0],
        [
            "GET assets".to_owned(),
            "GET persons".to_owned(),
            bbq("POST BBQ/bookings"),
        ],
        "create: the asset's rules, the person, the create"
    );
    assert_eq!(
        few[1],
        [
            "GET assets".to_owned(),
            "GET persons".to_owned(),
            bbq("GET BBQ/bookings"),
            bbq("POST BBQ/bookings"),
            bbq("DELETE BBQ/booking"),
        ],
        "update: rules, person, our booking on the recorded asset, make before break"
    );
    assert_eq!(
        few[2],
        [bbq("GET BBQ/bookings"), bbq("DELETE BBQ/booking")],
        "cancel: our booking on the recorded asset, deleted"
    );
}

/// Issue 20, convergence seed ipassan 434: an earlier attempt's create of this booking lands
/// after the attempt at hand looked for ours (a killed worker's request still on its way).
/// iPassan refuses the new create for the slot it holds; that is not the resident's
/// conflict, so it is retried (transient), never dead-lettered, and the retry keeps the
/// booking that landed.
#[tokio::test]
async fn a_slot_held_by_our_own_late_create_is_looked_at_again_not_refused() {
    let sim = sim().await;
    let s = settings(&sim);
    let c = client(&s);
    let b = booking(
        "rooftop-bbq",
        "jan@example.com",
        "2030-05-01T10:00:00Z",
        "2030-05-01T11:00:00Z",
    );
    // The earlier attempt's create, landing late: ours by reference, the earlier window.
    let late = c
        .create_booking(
            DEMO_ASSET_BBQ,
            &NewBooking {
                person_uuid: DEMO_PERSON_JAN.into(),
                start: t("2030-05-01T10:30:00Z"),
                end: t("2030-05-01T11:00:00Z"),
                reference: REF.into(),
                title: "Jan de Vries".into(),
            },
        )
        .await
        .unwrap();
    // A first attempt looks nowhere, so it meets the late booking only in iPassan's refusal.
    let e = first_run(&c, &s, &b).await.unwrap_err();
    assert_eq!(e.class(), ErrorClass::Transient, "{e}");
    assert!(
        matches!(&e, ApplyError::OursAppeared { booking, .. } if *booking == late.uuid),
        "{e:?}"
    );
    // The retry finds it and replaces it with the desired window: one booking, ours.
    run(&c, &s, &b, None).await.unwrap();
    let list = ours(&sim);
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!((list[0].start, list[0].end), (b.start, b.end));
    // A stranger's booking in the slot stays a permanent refusal naming it.
    let b2 = booking(
        "rooftop-bbq",
        "jan@example.com",
        "2030-05-02T10:00:00Z",
        "2030-05-02T11:00:00Z",
    );
    c.create_booking(
        DEMO_ASSET_BBQ,
        &NewBooking {
            person_uuid: DEMO_PERSON_JAN.into(),
            start: t("2030-05-02T10:00:00Z"),
            end: t("2030-05-02T10:30:00Z"),
            reference: "someone-else".into(),
            title: "other".into(),
        },
    )
    .await
    .unwrap();
    let e = first_run(&c, &s, &b2).await.unwrap_err();
    assert_eq!(e.class(), ErrorClass::Permanent, "{e}");
    sim.shutdown().await;
}
