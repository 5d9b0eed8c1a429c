//! The SOAP client against the in-process simulator, for both products, and against a
//! recording server for what the simulator cannot show (request headers, metrics, limits).
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

/// A lock server that answers its n-th request with `answers[n]` (a whole HTTP/1.1 answer)
/// and sends each request's head, lower-cased, to the test.
/// The testkit's recording server; the tests look at the request heads.
async fn recording_server(
    answers: Vec<String>,
) -> (u16, tokio::sync::mpsc::UnboundedReceiver<(String, String)>) {
    let (addr, rx) = accesshub_testkit::http::recording_server(answers).await;
    (addr.port(), rx)
}

use accesshub_testkit::http::xml_answer as http_answer;

const HELLO_OK: &str = r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><HelloWorldTestResponse xmlns="http://tempuri.org"><HelloWorldTestResult><bSuccess>true</bSuccess><ResponseCode>0</ResponseCode><ResponseMessage>Hello World</ResponseMessage></HelloWorldTestResult></HelloWorldTestResponse></soap:Body></soap:Envelope>"#;

/// A client of the Saflok demo connection pointed at `port` on localhost.
fn local_client(sim: &SimHandle, port: u16) -> SoapClient {
    let mut s = settings(sim, DormakabaProduct::Saflok);
    s.port = port;
    SoapClient::new(SoapConfig::from_settings(&s)).unwrap()
}

/// Spans at info level with OpenTelemetry ids on this thread (the default test subscriber
/// keeps only warnings, which disables the `vendor.request` span and so its `traceparent`).
fn traced() -> tracing::subscriber::DefaultGuard {
    use opentelemetry::trace::TracerProvider as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    accesshub_telemetry::init_for_tests(); // the W3C propagator
    let provider = accesshub_telemetry::tracer_provider("dormakaba-test").unwrap();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
    tracing::subscriber::set_default(subscriber)
}

/// The value of the first `accesshub_vendor_*` sample line starting with `series` that has
/// every one of `labels` (0 when absent).
fn vendor_metric(series: &str, labels: &[&str]) -> u64 {
    let reg = accesshub_telemetry::Registry::new();
    vendor_http::register_metrics(&reg);
    let text = reg.encode();
    text.lines()
        .find(|l| l.starts_with(series) && labels.iter().all(|want| l.contains(want)))
        .and_then(|l| l.rsplit(' ').next())
        .map_or(0, |v| v.parse().unwrap())
}

fn hello_calls() -> u64 {
    vendor_metric(
        "accesshub_vendor_request_duration_seconds_count",
        &["vendor=\"dormakaba\"", "operation=\"HelloWorldTest\""],
    )
}

fn transient_errors() -> u64 {
    vendor_metric(
        "accesshub_vendor_errors_total",
        &["vendor=\"dormakaba\"", "class=\"transient\""],
    )
}

#[tokio::test]
async fn calls_carry_traceparent_are_counted_and_read_http_date_retry_after() {
    let _traced = traced();
    let sim = sim().await;
    let retry_at = (Utc::now() + Duration::seconds(60))
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string();
    let (port, mut heads) = recording_server(vec![
        http_answer("200 OK", "", HELLO_OK),
        http_answer(
            "503 Service Unavailable",
            &format!("retry-after: {retry_at}\r\n"),
            "busy",
        ),
    ])
    .await;
    let c = local_client(&sim, port);
    let (calls, errors) = (hello_calls(), transient_errors());

    let hello = c.hello_world_test().await.unwrap();
    assert_eq!(hello.message, "Hello World");
    let (head, _) = heads.recv().await.unwrap();
    assert!(head.starts_with("post /messengerpmsws "), "{head}");
    assert!(
        head.contains("\r\nsoapaction: \"http://tempuri.org/helloworldtest\""),
        "{head}"
    );
    let traceparent = head
        .lines()
        .find_map(|l| l.strip_prefix("traceparent: "))
        .unwrap_or_else(|| panic!("no traceparent in {head}"));
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(parts.len(), 4, "{traceparent}");
    assert_ne!(parts[1], "0".repeat(32), "{traceparent}");

    // A 503 with an HTTP-date Retry-After: transient, and the date is read (vendor-http's
    // one Retry-After rule; the old SOAP transport read only delay-seconds).
    let e = c.hello_world_test().await.unwrap_err();
    assert_eq!(e.class(), ErrorClass::Transient, "{e}");
    let wait = e
        .retry_after()
        .unwrap_or_else(|| panic!("no Retry-After in {e:?}"));
    assert!(
        (std::time::Duration::from_secs(50)..=std::time::Duration::from_secs(60)).contains(&wait),
        "{wait:?}"
    );
    assert!(
        heads
            .recv()
            .await
            .unwrap()
            .0
            .contains("\r\ntraceparent: 00-")
    );

    // Both calls timed under vendor="dormakaba"; the 503 counted as a transient error.
    // (At least: other tests of this binary may call too when run by `cargo test`.)
    assert!(hello_calls() >= calls + 2, "{calls} → {}", hello_calls());
    assert!(
        transient_errors() > errors,
        "{errors} → {}",
        transient_errors()
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn a_client_with_a_rate_limit_waits_for_a_token() {
    let sim = sim().await;
    let (port, mut heads) = recording_server(vec![
        http_answer("200 OK", "", HELLO_OK),
        http_answer("200 OK", "", HELLO_OK),
    ])
    .await;
    // One call at once, then one every 10 s.
    let limiter = std::sync::Arc::new(vendor_http::RateLimiter::new(0.1, 1));
    let c = local_client(&sim, port).with_rate_limit(limiter);
    c.hello_world_test().await.unwrap();
    heads.recv().await.unwrap();
    let second =
        tokio::time::timeout(std::time::Duration::from_millis(300), c.hello_world_test()).await;
    assert!(second.is_err(), "the second call did not wait for a token");
    assert!(
        heads.try_recv().is_err(),
        "the second call reached the server"
    );
    // Without the limiter the same endpoint answers at once.
    local_client(&sim, port).hello_world_test().await.unwrap();
    sim.shutdown().await;
}
