//! The Clock PMS+ client against the Clock simulator: HTTP Digest (a challenge, then one
//! round trip per call on the kept nonce), paging, the arrival filter, 429s retried, wrong
//! credentials a permanent 401, and a replayed Digest answer refused.

#![allow(clippy::unwrap_used)]

use accesshub_domain::{Classify, ErrorClass};
use accesshub_upstreams::{
    UpstreamError,
    clock::{BookingQuery, ClockClient, client},
};
use chrono::NaiveDate;
use serde_json::json;
use vendor_sim::clock;

fn day(d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2030, 7, d).unwrap()
}

fn booking(id: i64, arrival: NaiveDate) -> serde_json::Value {
    json!({"id": id, "arrival": arrival.to_string(), "departure": "2030-08-01",
           "status": "expected", "updated_at": "2030-06-01T10:00:00Z",
           "guest": {"last_name": "Doe"}})
}

fn client(sim: &clock::ClockSim, key: &str) -> ClockClient {
    ClockClient::new(
        &sim.account_url(clock::DEMO_ACCOUNT),
        &format!("{}:{key}", clock::DEMO_USER),
        client::DEFAULT_RATE_PER_SEC,
        client::DEFAULT_BURST,
    )
    .unwrap()
}

async fn ids(c: &ClockClient, q: &BookingQuery) -> Result<Vec<i64>, UpstreamError> {
    let mut out = Vec::new();
    c.bookings(q, |page| {
        out.extend(page.iter().filter_map(|b| b["id"].as_i64()));
        Ok(())
    })
    .await?;
    Ok(out)
}

#[tokio::test]
async fn pages_filters_by_arrival_and_keeps_the_digest_nonce() {
    let sim = clock::start_ephemeral().await.unwrap();
    for id in 1..=250 {
        sim.put_booking(clock::DEMO_ACCOUNT, booking(id, day(10)));
    }
    sim.put_booking(clock::DEMO_ACCOUNT, booking(900, day(20)));
    let c = client(&sim, clock::DEMO_API_KEY);
    assert_eq!(c.account().as_deref(), Some(clock::DEMO_ACCOUNT));

    let got = ids(
        &c,
        &BookingQuery {
            arrival: Some((day(9), day(11))),
            ..BookingQuery::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(
        got,
        (1..=250).collect::<Vec<_>>(),
        "three pages, the far one filtered"
    );
    // One challenge, then the three pages on the kept nonce.
    assert_eq!(sim.calls(), 4);

    // Two 429s (the injected ones) are waited out.
    sim.throttle_next(2);
    let got = ids(
        &c,
        &BookingQuery {
            arrival: Some((day(20), day(20))),
            ..BookingQuery::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(got, vec![900]);
    sim.shutdown().await;
}

#[tokio::test]
async fn wrong_credentials_are_a_permanent_401() {
    let sim = clock::start_ephemeral().await.unwrap();
    let err = ids(&client(&sim, "not-the-key"), &BookingQuery::default())
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::Permanent, "{err}");
    assert!(
        matches!(&err, UpstreamError::Http(e) if e.status() == Some(401)),
        "{err:?}"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn a_replayed_digest_answer_is_refused() {
    let sim = clock::start_ephemeral().await.unwrap();
    let url = format!("{}/bookings/", sim.account_url(clock::DEMO_ACCOUNT));
    let http = reqwest::Client::new();
    let first = http.get(&url).send().await.unwrap();
    assert_eq!(first.status(), 401);
    let challenge = first.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    let mut prompt = digest_auth::parse(&challenge).unwrap();
    let uri = reqwest::Url::parse(&url).unwrap().path().to_owned();
    let cx = digest_auth::AuthContext::new(clock::DEMO_USER, clock::DEMO_API_KEY, uri.as_str());
    let answer = prompt.respond(&cx).unwrap().to_header_string();
    let ok = http
        .get(&url)
        .header("authorization", &answer)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let replay = http
        .get(&url)
        .header("authorization", &answer)
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), 401, "same nonce and nc again");
    // The answer is bound to its uri: another request with it is refused.
    let other = http
        .get(format!("{url}?page=2"))
        .header(
            "authorization",
            prompt.respond(&cx).unwrap().to_header_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 401);
    sim.shutdown().await;
}

/// Clock serves a booking's room and main guest by reference; [`References`] looks each up
/// once per run (here: the make-dev demo account's bookings, served as Clock serves them).
#[tokio::test]
async fn room_and_guest_references_are_looked_up_once_each() {
    use accesshub_upstreams::clock::{Booking, client::References};
    let sim = clock::start_ephemeral().await.unwrap();
    sim.seed_demo(clock::DEMO_ACCOUNT);
    let c = client(&sim, clock::DEMO_API_KEY);
    let mut raw = Vec::new();
    c.bookings(&BookingQuery::default(), |page| {
        raw.extend(page);
        Ok(())
    })
    .await
    .unwrap();
    assert_eq!(raw.len(), 4);
    let mut refs = References::default();
    let mut resolved = Vec::new();
    for r in raw {
        let mut b: Booking = serde_json::from_value(r).unwrap();
        assert!(b.rooms.is_empty(), "served by reference");
        refs.resolve(&c, &mut b).await.unwrap();
        resolved.push((
            b.id.to_string(),
            b.rooms.clone(),
            b.guest_last_name.clone().unwrap_or_default(),
        ));
    }
    assert_eq!(
        resolved,
        vec![
            ("580301".into(), vec!["101".to_owned()], "Jansen".into()),
            ("580302".into(), vec!["102".to_owned()], "Petrova".into()),
            ("580303".into(), vec!["201".to_owned()], "de Vries".into()),
            ("580304".into(), vec!["201".to_owned()], "Müller".into()),
        ],
        "the moved booking is in its current room; the blank guest comes from the profile"
    );
    assert_eq!(
        refs.calls, 4,
        "rooms 7101, 7102, 7201 and one guest profile"
    );
    assert_eq!(sim.calls_to("/rooms/"), 3);
    assert_eq!(sim.calls_to("/guests/"), 1);
    sim.shutdown().await;
}
