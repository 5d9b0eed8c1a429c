use chrono::{Duration as CDuration, Utc};
use vendor_sim::dormakaba::{
    AMBIANCE_NAMESPACE, DEMO_AMBIANCE_SITE, DEMO_PASSWORD, DEMO_SAFLOK_SITE, DEMO_USERNAME,
    Product, SAFLOK_NAMESPACE,
};
use vendor_sim::{FaultKind, FaultRule, SimHandle, Vendor};

use crate::{http, sim};

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

fn envelope(ns: &str, op: &str, fields: &str, user: Option<(&str, &str)>) -> String {
    let header = match user {
        Some((u, p)) => format!(
            "<soap:Header><AuthHeader xmlns=\"{ns}\"><From>accesshub</From><MessageID>6f1c0c4e-1111-4222-8333-444455556666</MessageID><Security><Timestamp><Created>2030-01-01T00:00:00Z</Created><Expires>2030-01-01T00:05:00Z</Expires></Timestamp><UsernameToken><Username>{}</Username><Password>{}</Password><Created>2030-01-01T00:00:00Z</Created></UsernameToken></Security></AuthHeader></soap:Header>",
            esc(u),
            esc(p)
        ),
        None => String::new(),
    };
    format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?><soap:Envelope xmlns:soap=\"http://schemas.xmlsoap.org/soap/envelope/\">{header}<soap:Body><{op} xmlns=\"{ns}\">{fields}</{op}></soap:Body></soap:Envelope>"
    )
}

/// A Saflok request with the demo credentials (for requests whose answer is not a 200).
pub(crate) fn saflok_envelope(op: &str, fields: &str) -> String {
    envelope(
        SAFLOK_NAMESPACE,
        op,
        fields,
        Some((DEMO_USERNAME, DEMO_PASSWORD)),
    )
}

pub(crate) async fn call(sim: &SimHandle, op: &str, fields: &str) -> String {
    call_as(
        sim,
        &sim.dormakaba_url(),
        SAFLOK_NAMESPACE,
        op,
        fields,
        Some((DEMO_USERNAME, DEMO_PASSWORD)),
    )
    .await
}

async fn call_as(
    sim: &SimHandle,
    url: &str,
    ns: &str,
    op: &str,
    fields: &str,
    user: Option<(&str, &str)>,
) -> String {
    let _ = sim;
    let r = http()
        .post(url)
        .header("Content-Type", "text/xml; charset=utf-8")
        .header("SOAPAction", format!("\"{ns}/{op}\""))
        .body(envelope(ns, op, fields, user))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.text().await.unwrap()
}

pub(crate) fn tag<'a>(xml: &'a str, name: &str) -> Option<&'a str> {
    let open = format!("<{name}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find(&format!("</{name}>"))? + start;
    Some(&xml[start..end])
}

pub(crate) fn fault(xml: &str) -> Option<&str> {
    tag(xml, "faultcode")
}

pub(crate) fn booking_fields(
    res: &str,
    room: &str,
    guest: &str,
    encoder: u32,
    extra: &str,
) -> String {
    let ci = (Utc::now() - CDuration::hours(1)).format("%Y-%m-%dT%H:%M:%S");
    let co = (Utc::now() + CDuration::days(2)).format("%Y-%m-%dT%H:%M:%S");
    format!(
        "<ReservationID>{res}</ReservationID><SiteName>{DEMO_SAFLOK_SITE}</SiteName><PMSTerminalID>1</PMSTerminalID><EncoderID>{encoder}</EncoderID><CheckIn>{ci}</CheckIn><CheckOut>{co}</CheckOut><GuestName>{}</GuestName><MainRoomNo>{room}</MainRoomNo><bGrantAccessPredefinedSuiteDoors>false</bGrantAccessPredefinedSuiteDoors><VariableRoomList><string>102</string></VariableRoomList><CommonAreaList><CCommonAreas><PassLevelNo>2</PassLevelNo><eMode>GrantAccess</eMode></CCommonAreas></CommonAreaList><KeyCount>1</KeyCount><KeySize>0</KeySize><UID></UID>{extra}",
        esc(guest)
    )
}

#[tokio::test]
async fn auth_header_is_checked() {
    let sim = sim().await;
    let url = sim.dormakaba_url();
    let none = call_as(&sim, &url, SAFLOK_NAMESPACE, "HelloWorldTest", "", None).await;
    assert_eq!(fault(&none), Some("UserCredentialsNotProvided"));
    let wrong = call_as(
        &sim,
        &url,
        SAFLOK_NAMESPACE,
        "HelloWorldTest",
        "",
        Some((DEMO_USERNAME, "nope")),
    )
    .await;
    assert_eq!(fault(&wrong), Some("AuthHeaderNotRecognized"));
    // The fault is inside the result element, not a SOAP Fault.
    assert!(wrong.contains("<HelloWorldTestResponse"));
    assert!(
        wrong.contains(
            "<HelloWorldTestResult><Fault><faultcode>AuthHeaderNotRecognized</faultcode>"
        )
    );
    assert!(!wrong.contains("soap:Fault"));
    let ok = call(&sim, "HelloWorldTest", "").await;
    assert_eq!(tag(&ok, "bSuccess"), Some("true"));
}

#[tokio::test]
async fn create_booking_with_key_data_and_idempotency() {
    let sim = sim().await;
    let guest = "O'Brien & <Sons>, \"Zoë\" 東京";
    let r = call(
        &sim,
        "CreateNewBooking",
        &booking_fields("R1", "101", guest, 0, ""),
    )
    .await;
    assert_eq!(tag(&r, "bSuccess"), Some("true"), "{r}");
    let tx = tag(&r, "retPMSTransactionNo").unwrap().to_owned();
    let key = tag(&r, "retAccessKey").unwrap();
    assert_eq!(key.len(), 32, "encoder 0 returns key data");
    let bookings = sim.state().dormakaba_bookings(Product::Saflok);
    assert_eq!(bookings.len(), 1);
    assert_eq!(bookings[0].guest_name, guest, "escaping round-trips");
    assert_eq!(bookings[0].variable_rooms, vec!["102".to_owned()]);
    // Same reservation again: same transaction number, no second key.
    let again = call(
        &sim,
        "CreateNewBooking",
        &booking_fields("R1", "101", guest, 0, ""),
    )
    .await;
    assert_eq!(tag(&again, "retPMSTransactionNo"), Some(tx.as_str()));
    assert_eq!(sim.state().dormakaba_keys(Product::Saflok).len(), 1);
    // Guest name comes back escaped in the response of a duplicate key? (data only) — check state.
    let dup = call(&sim, "MakeDuplicateKey", &format!("<ReservationID>R1</ReservationID><SiteName>{DEMO_SAFLOK_SITE}</SiteName><EncoderID>1</EncoderID><KeyCount>1</KeyCount>")).await;
    assert_eq!(tag(&dup, "bSuccess"), Some("true"), "{dup}");
    assert_eq!(
        tag(&dup, "retAccessKey"),
        Some(""),
        "a real encoder writes a card"
    );
}

#[tokio::test]
async fn faults_where_state_warrants_them() {
    let sim = sim().await;
    let st = sim.state();
    let site = format!("<SiteName>{DEMO_SAFLOK_SITE}</SiteName>");
    let f = |x: String| async move { fault(&x).map(str::to_owned) };
    assert_eq!(
        f(call(
            &sim,
            "CreateNewBooking",
            &booking_fields("R2", "999", "A", 1, "")
        )
        .await)
        .await
        .as_deref(),
        Some("RoomNumberNotFound")
    );
    assert_eq!(
        f(call(
            &sim,
            "CreateNewBooking",
            &booking_fields("R2", "101", "A", 3, "")
        )
        .await)
        .await
        .as_deref(),
        Some("EncoderNotOnlineOrNotExist")
    );
    assert_eq!(
        f(call(
            &sim,
            "CreateNewBooking",
            &booking_fields("R2", "101", "A", 77, "")
        )
        .await)
        .await
        .as_deref(),
        Some("InvalidEncoderNumber")
    );
    st.dormakaba_set_encoder(Product::Saflok, 2, true, true)
        .unwrap();
    assert_eq!(
        f(call(
            &sim,
            "CreateNewBooking",
            &booking_fields("R2", "101", "A", 2, "")
        )
        .await)
        .await
        .as_deref(),
        Some("EncoderBusy")
    );
    let bad_enc = booking_fields("R2", "101", "A", 1, "")
        .replace("<EncoderID>1</EncoderID>", "<EncoderID>USB</EncoderID>");
    assert_eq!(
        f(call(&sim, "CreateNewBooking", &bad_enc).await)
            .await
            .as_deref(),
        Some("InvalidEncoderNumber")
    );
    let past = booking_fields("R2", "101", "A", 1, "").replace(
        &(Utc::now() + CDuration::days(2))
            .format("%Y-%m-%dT%H:%M:%S")
            .to_string(),
        "2001-01-01T10:00:00",
    );
    assert_eq!(
        f(call(&sim, "CreateNewBooking", &past).await)
            .await
            .as_deref(),
        Some("CheckoutDateLessThanSystemDate")
    );
    let wrong_site = booking_fields("R2", "101", "A", 1, "").replace(DEMO_SAFLOK_SITE, "OTHER");
    assert_eq!(
        f(call(&sim, "CreateNewBooking", &wrong_site).await)
            .await
            .as_deref(),
        Some("InvalidWSParameter")
    );
    assert_eq!(
        f(call(
            &sim,
            "CheckOutGuest",
            &format!("<ReservationID>nope</ReservationID>{site}")
        )
        .await)
        .await
        .as_deref(),
        Some("ReservationNotFound")
    );
    // Duplicates up to the maximum (5), then MaxDuplicatesMadeReached.
    let ok = call(
        &sim,
        "CreateNewBooking",
        &booking_fields("R3", "201", "B", 1, ""),
    )
    .await;
    assert_eq!(tag(&ok, "bSuccess"), Some("true"), "{ok}");
    let dup = format!(
        "<ReservationID>R3</ReservationID>{site}<EncoderID>1</EncoderID><KeyCount>5</KeyCount>"
    );
    assert_eq!(
        tag(&call(&sim, "MakeDuplicateKey", &dup).await, "bSuccess"),
        Some("true")
    );
    let dup1 = dup.replace("<KeyCount>5</KeyCount>", "<KeyCount>1</KeyCount>");
    assert_eq!(
        f(call(&sim, "MakeDuplicateKey", &dup1).await)
            .await
            .as_deref(),
        Some("MaxDuplicatesMadeReached")
    );
    // Extend, check out, then everything says ReservationCheckedOut.
    let new_co = (Utc::now() + CDuration::days(5)).to_rfc3339();
    let ext = call(
        &sim,
        "ExtendCheckOut",
        &format!("<ReservationID>R3</ReservationID>{site}<NewCheckOut>{new_co}</NewCheckOut>"),
    )
    .await;
    assert_eq!(tag(&ext, "bSuccess"), Some("true"), "{ext}");
    let ext_past = call(
        &sim,
        "ExtendCheckOut",
        &format!(
            "<ReservationID>R3</ReservationID>{site}<NewCheckOut>2001-01-01T00:00:00Z</NewCheckOut>"
        ),
    )
    .await;
    assert_eq!(fault(&ext_past), Some("CheckoutDateLessThanSystemDate"));
    let co = call(
        &sim,
        "CheckOutGuest",
        &format!("<ReservationID>R3</ReservationID>{site}<PMSTerminalID>1</PMSTerminalID>"),
    )
    .await;
    assert_eq!(tag(&co, "bSuccess"), Some("true"));
    assert_eq!(
        f(call(
            &sim,
            "CheckOutGuest",
            &format!("<ReservationID>R3</ReservationID>{site}")
        )
        .await)
        .await
        .as_deref(),
        Some("ReservationCheckedOut")
    );
    assert_eq!(
        f(call(
            &sim,
            "CreateNewBooking",
            &booking_fields("R3", "201", "B", 1, "")
        )
        .await)
        .await
        .as_deref(),
        Some("ReservationCheckedOut")
    );
    // ChangeKeyAccess on a live booking.
    call(
        &sim,
        "CreateNewBooking",
        &booking_fields("R4", "202", "C", 0, ""),
    )
    .await;
    let ch = call(&sim, "ChangeKeyAccess", &format!("<ReservationID>R4</ReservationID>{site}<EncoderID>0</EncoderID><MainRoomNo>301</MainRoomNo>")).await;
    assert_eq!(tag(&ch, "bSuccess"), Some("true"), "{ch}");
    assert!(
        sim.state()
            .dormakaba_bookings(Product::Saflok)
            .iter()
            .any(|b| b.reservation_id == "R4" && b.main_room == "301")
    );
}

#[tokio::test]
async fn mobile_keys_match_surname_and_phone() {
    let sim = sim().await;
    let site = format!("<SiteName>{DEMO_SAFLOK_SITE}</SiteName>");
    // Demo app guest: Jansen, +31612345678.
    let r = call(
        &sim,
        "CreateNewBooking",
        &booking_fields(
            "M1",
            "103",
            "Jansen, Piet",
            1,
            "<GuestMobileNumber>+31 6 1234 5678</GuestMobileNumber>",
        ),
    )
    .await;
    assert_eq!(tag(&r, "bSuccess"), Some("true"), "{r}");
    let keys = sim.state().dormakaba_mobile_keys(Product::Saflok);
    assert_eq!(keys.len(), 1);
    assert!(keys[0].delivered);
    assert!(sim.state().dormakaba_events(Product::Saflok).is_empty());

    let mk = |name: &str, phone: &str| {
        format!(
            "{site}<ReservationID>M1</ReservationID><MainRoomNumber>103</MainRoomNumber><GuestName>{name}</GuestName><GuestMobileNumber>{phone}</GuestMobileNumber><PMSTerminalID>1</PMSTerminalID>"
        )
    };
    // Mismatched surname: the PMS is told nothing, no key is delivered, the lock system logs it.
    let r = call(&sim, "IssueMobileKey", &mk("Janssen, Piet", "+31612345678")).await;
    assert_eq!(tag(&r, "bSuccess"), Some("true"));
    let keys = sim.state().dormakaba_mobile_keys(Product::Saflok);
    assert!(!keys[1].delivered);
    let events = sim.state().dormakaba_events(Product::Saflok);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].code, "MobileKeyNotDelivered");
    assert_eq!(
        fault(&call(&sim, "IssueMobileKey", &mk("Jansen", "")).await),
        Some("EmptyPhoneNumber")
    );
    assert_eq!(
        fault(&call(&sim, "IssueMobileKey", &mk("Jansen", "+3161")).await),
        Some("PhoneNumberTooSmall")
    );
    assert_eq!(
        fault(&call(&sim, "IssueMobileKey", &mk("Jansen", "0612345678")).await),
        Some("UnableToDeliverToPhone")
    );

    let cancel = format!(
        "{site}<ReservationID>M1</ReservationID><MainRoomNumber>103</MainRoomNumber><GuestMobileNumber>+31612345678</GuestMobileNumber><PMSTerminalID>1</PMSTerminalID>"
    );
    let r = call(&sim, "CancelGuestsMobileAccessToRoom", &cancel).await;
    assert_eq!(tag(&r, "bSuccess"), Some("true"));
    assert!(
        sim.state()
            .dormakaba_mobile_keys(Product::Saflok)
            .iter()
            .all(|k| k.cancelled)
    );
}

#[tokio::test]
async fn ambiance_has_its_own_namespace_and_site() {
    let sim = sim().await;
    let url = sim.ambiance_url();
    let auth = Some((DEMO_USERNAME, DEMO_PASSWORD));
    let ok = call_as(&sim, &url, AMBIANCE_NAMESPACE, "HelloWorldTest", "", auth).await;
    assert_eq!(tag(&ok, "bSuccess"), Some("true"));
    assert!(ok.contains(&format!("xmlns=\"{AMBIANCE_NAMESPACE}\"")));
    // The Saflok namespace is not understood by the Ambiance endpoint: a real SOAP fault.
    let r = http()
        .post(&url)
        .header("Content-Type", "text/xml")
        .body(envelope(SAFLOK_NAMESPACE, "HelloWorldTest", "", auth))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 500);
    assert!(r.text().await.unwrap().contains("soap:Fault"));
    let fields =
        booking_fields("A1", "101", "Smit", 0, "").replace(DEMO_SAFLOK_SITE, DEMO_AMBIANCE_SITE);
    let r = call_as(
        &sim,
        &url,
        AMBIANCE_NAMESPACE,
        "CreateNewBooking",
        &fields,
        auth,
    )
    .await;
    assert_eq!(tag(&r, "bSuccess"), Some("true"), "{r}");
    assert_eq!(sim.state().dormakaba_bookings(Product::Ambiance).len(), 1);
    assert!(sim.state().dormakaba_bookings(Product::Saflok).is_empty());
}

#[tokio::test]
async fn wsdl_malformed_and_injected_soap_faults() {
    let sim = sim().await;
    let c = http();
    let wsdl = c
        .get(format!("{}?wsdl", sim.dormakaba_url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        wsdl.contains("wsdl:definitions")
            && wsdl.contains("CreateNewBooking")
            && wsdl.contains("MessengerPMSWSService")
    );
    let r = c
        .post(sim.dormakaba_url())
        .body("<not xml")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 500);
    let r = c
        .post(sim.dormakaba_url())
        .body(envelope(SAFLOK_NAMESPACE, "FormatHardDisk", "", None))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 500);

    sim.state().add_fault(
        FaultRule::next_n(
            Vendor::Dormakaba,
            FaultKind::SoapFault("BusyProcessingPreviousRequest".into()),
            1,
        )
        .on_path("CreateNewBooking"),
    );
    let hello = call(&sim, "HelloWorldTest", "").await;
    assert_eq!(
        tag(&hello, "bSuccess"),
        Some("true"),
        "other operations are not affected"
    );
    let busy = call(
        &sim,
        "CreateNewBooking",
        &booking_fields("F1", "101", "A", 1, ""),
    )
    .await;
    assert_eq!(fault(&busy), Some("BusyProcessingPreviousRequest"));
    assert!(busy.contains("<CreateNewBookingResult><Fault>"));
    let ok = call(
        &sim,
        "CreateNewBooking",
        &booking_fields("F1", "101", "A", 1, ""),
    )
    .await;
    assert_eq!(tag(&ok, "bSuccess"), Some("true"));
    let calls = sim.state().calls_for(Vendor::Dormakaba);
    let ops: Vec<_> = calls.iter().filter_map(|c| c.operation.clone()).collect();
    assert!(ops.ends_with(&[
        "HelloWorldTest".to_owned(),
        "CreateNewBooking".to_owned(),
        "CreateNewBooking".to_owned()
    ]));
    assert!(calls.iter().rev().nth(1).unwrap().injected_fault);
}
