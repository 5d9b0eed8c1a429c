//! The SOAP client against the in-process simulator, for both products.
#![allow(clippy::unwrap_used)]

use accesshub_connections::{DormakabaProduct, Secret};
use accesshub_domain::{Classify, ErrorClass};
use chrono::{Duration, TimeZone, Utc};
use chrono_tz::Europe::Amsterdam;
use dormakaba_adapter::client::{AreaMode, BookingRequest, CommonArea, SoapClient, SoapConfig};
use vendor_sim::dormakaba::{DormakabaFixture, Product};
use vendor_sim::{FaultKind, FaultRule, SimConfig, SimHandle, Vendor};

mod common;
use common::{port_of, sim_settings as settings};

fn client(sim: &SimHandle, product: DormakabaProduct) -> SoapClient {
    SoapClient::new(SoapConfig::from_settings(&settings(sim, product))).unwrap()
}

fn sim_product(p: DormakabaProduct) -> Product {
    match p {
        DormakabaProduct::Saflok => Product::Saflok,
        DormakabaProduct::Ambiance => Product::Ambiance,
    }
}

fn booking(id: &str, name: &str) -> BookingRequest {
    let now = Utc::now();
    BookingRequest {
        reservation_id: id.into(),
        guest_name: name.into(),
        main_room: "101".into(),
        extra_rooms: vec!["102".into()],
        common_areas: vec![
            CommonArea {
                pass_level: 1,
                mode: AreaMode::GrantAccess,
            },
            CommonArea {
                pass_level: 2,
                mode: AreaMode::GrantAccess,
            },
        ],
        check_in: (now - Duration::hours(1)).with_timezone(&Amsterdam),
        check_out: (now + Duration::days(2)).with_timezone(&Amsterdam),
        encoder_id: "1".into(),
        key_count: 2,
        key_size: 0,
        mobile_number: None,
    }
}

async fn sim() -> SimHandle {
    let sim = vendor_sim::start(SimConfig::ephemeral()).await.unwrap();
    sim.state().seed_demo();
    sim
}

const NASTY: &str = "O'Brien & <Søns> \"Zoë\", Jürgen, 東京";

#[tokio::test]
async fn operations_and_escaping_for_both_products() {
    let sim = sim().await;
    for product in [DormakabaProduct::Saflok, DormakabaProduct::Ambiance] {
        let sp = sim_product(product);
        let c = client(&sim, product);
        let hello = c.hello_world_test().await.unwrap();
        assert_eq!(hello.message, "Hello World");

        let b = booking("acme-R1", NASTY);
        let r = c.create_new_booking(&b).await.unwrap();
        assert_eq!(r.transaction_no.as_deref(), Some("100001"));
        let bookings = sim.state().dormakaba_bookings(sp);
        assert_eq!(bookings.len(), 1);
        assert_eq!(bookings[0].guest_name, NASTY, "name arrives intact");
        assert_eq!(bookings[0].variable_rooms, vec!["102".to_owned()]);
        assert_eq!(bookings[0].common_areas.len(), 2);
        assert_eq!(
            bookings[0].check_out.timestamp(),
            b.check_out.timestamp(),
            "offset-qualified xs:dateTime"
        );
        assert_eq!(sim.state().dormakaba_keys(sp)[0].key_count, 2);

        // Idempotent: same ReservationID → same transaction, no second booking, no card.
        let again = c.create_new_booking(&b).await.unwrap();
        assert_eq!(again.transaction_no.as_deref(), Some("100001"));
        assert_eq!(sim.state().dormakaba_bookings(sp).len(), 1);
        assert_eq!(sim.state().dormakaba_keys(sp).len(), 1);

        c.make_duplicate_key("acme-R1", NASTY, "2", 1, 0)
            .await
            .unwrap();
        let mut changed = b.clone();
        changed.main_room = "201".into();
        changed.extra_rooms.clear();
        changed.key_count = 1;
        c.change_key_access(&changed).await.unwrap();
        let new_out = (Utc::now() + Duration::days(4)).with_timezone(&Amsterdam);
        c.extend_check_out("acme-R1", &new_out).await.unwrap();
        let bk = &sim.state().dormakaba_bookings(sp)[0];
        assert_eq!(bk.main_room, "201");
        assert_eq!(bk.check_out.timestamp(), new_out.timestamp());

        // Mobile key: surname + phone registered in the app → delivered; mismatch → logged.
        c.issue_mobile_key("acme-R1", "201", "Jansen", "+31612345678")
            .await
            .unwrap();
        c.issue_mobile_key("acme-R1", "201", "O'Brien & <Søns> \"Zoë\"", "+31600000000")
            .await
            .unwrap();
        let mk = sim.state().dormakaba_mobile_keys(sp);
        assert!(mk[0].delivered && !mk[1].delivered);
        assert_eq!(mk[1].surname, "O'Brien & <Søns> \"Zoë\"");
        assert!(
            sim.state()
                .dormakaba_events(sp)
                .iter()
                .any(|e| e.code == "MobileKeyNotDelivered")
        );
        c.cancel_mobile_access("acme-R1", "201", "+31612345678")
            .await
            .unwrap();
        assert!(sim.state().dormakaba_mobile_keys(sp)[0].cancelled);

        c.check_out_guest("acme-R1").await.unwrap();
        assert!(sim.state().dormakaba_bookings(sp)[0].checked_out);
        let e = c.check_out_guest("acme-R1").await.unwrap_err();
        assert_eq!(e.fault_code(), Some("ReservationCheckedOut"));
        assert_eq!(e.class(), ErrorClass::Permanent);
        let e = c.create_new_booking(&b).await.unwrap_err();
        assert_eq!(e.fault_code(), Some("ReservationCheckedOut"));
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn faults_are_classified() {
    let sim = sim().await;
    let c = client(&sim, DormakabaProduct::Saflok);
    let st = sim.state();

    // Credentials.
    let mut s = settings(&sim, DormakabaProduct::Saflok);
    s.password = Secret::new("wrong");
    let bad = SoapClient::new(SoapConfig::from_settings(&s)).unwrap();
    let e = bad.hello_world_test().await.unwrap_err();
    assert_eq!(e.fault_code(), Some("AuthHeaderNotRecognized"));
    assert_eq!(e.class(), ErrorClass::Permanent);
    s.password = Secret::new("");
    let e = SoapClient::new(SoapConfig::from_settings(&s))
        .unwrap()
        .hello_world_test()
        .await
        .unwrap_err();
    assert_eq!(e.fault_code(), Some("UserCredentialsNotProvided"));

    // State-driven faults.
    st.dormakaba_set_encoder(Product::Saflok, 1, true, true)
        .unwrap();
    let e = c
        .create_new_booking(&booking("B1", "Doe, J"))
        .await
        .unwrap_err();
    assert_eq!(e.fault_code(), Some("EncoderBusy"));
    assert_eq!(e.class(), ErrorClass::Transient);
    let mut b = booking("B1", "Doe, J");
    b.encoder_id = "3".into();
    let e = c.create_new_booking(&b).await.unwrap_err();
    assert_eq!(e.fault_code(), Some("EncoderNotOnlineOrNotExist"));
    assert_eq!(e.class(), ErrorClass::Transient);
    b.encoder_id = "USB1".into();
    let e = c.create_new_booking(&b).await.unwrap_err();
    assert_eq!(e.fault_code(), Some("InvalidEncoderNumber"));
    assert_eq!(e.class(), ErrorClass::Permanent);
    b.encoder_id = "2".into();
    b.main_room = "999".into();
    let e = c.create_new_booking(&b).await.unwrap_err();
    assert_eq!(e.fault_code(), Some("RoomNumberNotFound"));
    assert_eq!(e.class(), ErrorClass::Permanent);
    b.main_room = "101".into();
    b.check_in = (Utc::now() - Duration::days(3)).with_timezone(&Amsterdam);
    b.check_out = (Utc::now() - Duration::days(1)).with_timezone(&Amsterdam);
    let e = c.create_new_booking(&b).await.unwrap_err();
    assert_eq!(e.fault_code(), Some("CheckoutDateLessThanSystemDate"));
    assert_eq!(e.class(), ErrorClass::Permanent);
    let e = c.check_out_guest("nope").await.unwrap_err();
    assert_eq!(e.fault_code(), Some("ReservationNotFound"));
    let mut mb = booking("B2", "Doe, J");
    mb.encoder_id = "0".into();
    let r = c.create_new_booking(&mb).await.unwrap();
    assert_eq!(
        r.access_key.map(|k| k.len()),
        Some(32),
        "encoder 0 returns key data"
    );
    for (phone, fault) in [
        ("", "EmptyPhoneNumber"),
        ("+3161", "PhoneNumberTooSmall"),
        ("0612345678", "UnableToDeliverToPhone"),
    ] {
        let e = c
            .issue_mobile_key("B2", "101", "Doe", phone)
            .await
            .unwrap_err();
        assert_eq!(e.fault_code(), Some(fault));
        assert_eq!(e.class(), ErrorClass::Permanent);
    }
    st.seed_dormakaba(DormakabaFixture {
        product: Product::Saflok,
        max_duplicates: Some(1),
        ..Default::default()
    })
    .unwrap();
    c.make_duplicate_key("B2", "Doe", "2", 1, 0).await.unwrap();
    let e = c
        .make_duplicate_key("B2", "Doe", "2", 1, 0)
        .await
        .unwrap_err();
    assert_eq!(e.fault_code(), Some("MaxDuplicatesMadeReached"));
    assert_eq!(e.class(), ErrorClass::Permanent);

    // Injected: vendor faults, HTTP 5xx, dropped connections.
    for reason in [
        "KeyJammed",
        "TimeoutWaitingKey",
        "RoomOFFLine",
        "BusyProcessingPreviousRequest",
    ] {
        st.add_fault(
            FaultRule::next_n(Vendor::Dormakaba, FaultKind::SoapFault(reason.into()), 1)
                .on_path("#CheckOutGuest"),
        );
        let e = c.check_out_guest("B2").await.unwrap_err();
        assert_eq!(e.fault_code(), Some(reason));
        assert_eq!(e.class(), ErrorClass::Transient, "{reason}");
    }
    st.add_fault(FaultRule::next_n(
        Vendor::Dormakaba,
        FaultKind::Status503,
        1,
    ));
    let e = c.hello_world_test().await.unwrap_err();
    assert_eq!(e.class(), ErrorClass::Transient, "{e}");
    st.add_fault(FaultRule::next_n(
        Vendor::Dormakaba,
        FaultKind::DropConnection,
        1,
    ));
    let e = c.hello_world_test().await.unwrap_err();
    assert_eq!(e.class(), ErrorClass::Transient, "{e}");
    st.add_fault(FaultRule::next_n(
        Vendor::Dormakaba,
        FaultKind::Status429 {
            retry_after_secs: 7,
        },
        1,
    ));
    let e = c.hello_world_test().await.unwrap_err();
    assert_eq!(e.class(), ErrorClass::Transient);
    assert_eq!(e.retry_after(), Some(std::time::Duration::from_secs(7)));
    // Timeouts.
    let mut s = settings(&sim, DormakabaProduct::Saflok);
    s.port = port_of(&sim.dormakaba_url());
    let mut cfg = SoapConfig::from_settings(&s);
    cfg.timeout = std::time::Duration::from_millis(300);
    st.add_fault(FaultRule::next_n(Vendor::Dormakaba, FaultKind::Hang, 1));
    let e = SoapClient::new(cfg)
        .unwrap()
        .hello_world_test()
        .await
        .unwrap_err();
    assert_eq!(e.class(), ErrorClass::Transient, "{e}");
    sim.shutdown().await;
}

#[tokio::test]
async fn namespace_and_path_are_configurable() {
    let sim = sim().await;
    sim.state()
        .seed_dormakaba(DormakabaFixture {
            product: Product::Ambiance,
            namespace: Some("urn:example:ambiance".into()),
            ..Default::default()
        })
        .unwrap();
    let mut s = settings(&sim, DormakabaProduct::Ambiance);
    // Default namespace no longer matches → a real SOAP Fault (soap:Client), permanent.
    let e = SoapClient::new(SoapConfig::from_settings(&s))
        .unwrap()
        .hello_world_test()
        .await
        .unwrap_err();
    assert_eq!(e.class(), ErrorClass::Permanent, "{e}");
    s.namespace = Some("urn:example:ambiance".into());
    let c = SoapClient::new(SoapConfig::from_settings(&s)).unwrap();
    c.hello_world_test().await.unwrap();
    c.create_new_booking(&booking("amb-1", NASTY))
        .await
        .unwrap();
    assert_eq!(
        sim.state().dormakaba_bookings(Product::Ambiance)[0].guest_name,
        NASTY
    );
    assert!(sim.state().dormakaba_bookings(Product::Saflok).is_empty());
    // A wrong path is a permanent configuration error (404).
    s.path = Some("/Nope".into());
    let e = SoapClient::new(SoapConfig::from_settings(&s))
        .unwrap()
        .hello_world_test()
        .await
        .unwrap_err();
    assert_eq!(e.class(), ErrorClass::Permanent, "{e}");
    let _ = Utc.timestamp_opt(0, 0);
    sim.shutdown().await;
}
