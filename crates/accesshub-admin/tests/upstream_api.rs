//! Upstream API credentials at the admin API (issue 21): set (sealed), read without the
//! secret, bad input answered with the field at fault, deleted.
#![allow(clippy::unwrap_used)]

mod common;

use accesshub_admin::{AdminConfig, AdminState};
use accesshub_store::SecretBox;
use serde_json::json;

const BOOT: &str = "bootstrap-admin-token-for-upstream-tests";

/// The admin state over `db` and `bus` with the bootstrap token [`BOOT`].
fn state(
    db: &accesshub_testkit::TestDb,
    bus: &accesshub_testkit::TestBus,
    sbox: &SecretBox,
) -> AdminState {
    AdminState::new(
        db.pool.clone(),
        sbox.clone(),
        bus.bus.clone(),
        AdminConfig {
            bootstrap_token: Some(BOOT.into()),
            ..Default::default()
        },
    )
}

#[tokio::test]
async fn upstream_api_credentials_are_sealed_and_never_returned() {
    let (db, bus) = accesshub_testkit::isolated().await;
    let sbox = SecretBox::from_spec(&SecretBox::generate_spec()).unwrap();
    let api = common::serve(state(&db, &bus, &sbox), BOOT).await;
    use reqwest::Method as M;
    assert_eq!(
        api.call(M::POST, "/tenants", Some(json!({"id": "acme"})))
            .await
            .0,
        201
    );
    let path = "/tenants/acme/sources/bex/api";
    let key = "bex-api-key-0123456789";

    for (body, field) in [
        (json!({"base_url": "ftp://x", "secret": key}), "base_url"),
        (
            json!({"base_url": "https://api.bookingexperts.nl", "secret": " "}),
            "secret",
        ),
        (
            json!({"base_url": "https://api.bookingexperts.nl", "secret": key, "options": 3}),
            "options",
        ),
    ] {
        let (st, b) = api.call(M::PUT, path, Some(body)).await;
        assert!(st == 400 || st == 422, "{st} {b}");
        assert_eq!(b["field"], field, "{b}");
    }
    let (st, b) = api
        .call(
            M::PUT,
            "/tenants/acme/sources/nexudus/api",
            Some(json!({"base_url": "https://spaces.nexudus.com", "secret": "no-colon"})),
        )
        .await;
    assert_eq!(
        (st == 400 || st == 422, b["field"].as_str()),
        (true, Some("secret"))
    );
    let (st, b) = api
        .call(
            M::PUT,
            "/tenants/acme/sources/connecx/api",
            Some(json!({"base_url": "https://x.example", "secret": "a:b"})),
        )
        .await;
    assert_eq!(b["field"], "source", "{st} {b}");

    let (st, b) = api.call(
        M::PUT,
        path,
        Some(json!({"base_url": "https://api.bookingexperts.nl", "secret": key, "options": {"lookback_days": 14}})),
    )
    .await;
    assert_eq!(st, 200, "{b}");
    assert_eq!(b["secret"], "***");
    assert!(!b.to_string().contains(key));
    let (st, b) = api.call(M::GET, path, None).await;
    assert_eq!(
        (st, b["options"]["lookback_days"].as_i64()),
        (200, Some(14))
    );
    assert!(!b.to_string().contains(key));
    // Sealed at rest, opened by the store with the key box.
    let sealed: String = sqlx::query_scalar("SELECT credentials_enc FROM upstream_credentials")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert!(!sealed.contains(key));
    let opened = accesshub_upstreams::UpstreamStore::new(db.pool.clone(), sbox)
        .get("acme", "bex")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(opened.secret, key);

    assert_eq!(api.call(M::DELETE, path, None).await.0, 204);
    assert_eq!(api.call(M::GET, path, None).await.0, 404);
    bus.cleanup().await;
    db.drop_db().await;
}

/// BEX look-ups for the mapping screens (issue 21 item 4), against the BEX simulator with the
/// tenant's stored API key: an administration's rentables (the object ids a dormakaba room map
/// is keyed by) and the administrations of the tenant's organization; bad requests name the
/// field, a base URL outside the egress policy is refused before any call.
#[tokio::test]
async fn bex_lookups_list_rentables_and_the_organizations_administrations() {
    use accesshub_connections::{EgressPolicy, Secret, TenantStore};
    use reqwest::Method as M;
    use vendor_sim::bex;
    let (db, bus) = accesshub_testkit::isolated().await;
    let bexsim = bex::start_ephemeral().await.unwrap();
    bexsim.add_administration("4711", "Strandhotel");
    bexsim.set_organization("4711", "org-1");
    bexsim.add_administration("5800", "Elsewhere");
    bexsim.set_organization("5800", "org-2");
    bexsim.put_rentable("4711", "5501", "Kamer 12");
    bexsim.put_rentable("4711", "5502", "Kamer 14");
    let sbox = SecretBox::from_spec(&SecretBox::generate_spec()).unwrap();
    let state = |egress: EgressPolicy| state(&db, &bus, &sbox).with_egress(egress);
    let api = common::serve(state(EgressPolicy::loopback_http()), BOOT).await;
    assert_eq!(
        api.call(M::POST, "/tenants", Some(json!({"id": "acme"})))
            .await
            .0,
        201
    );
    // No API key yet: 404 saying what to set.
    let (st, b) = api.get("/lookups/bex/acme/administrations").await;
    assert_eq!(st, 404, "{b}");
    assert!(b.to_string().contains("sources/bex/api"), "{b}");
    let (st, b) = api
        .call(
            M::PUT,
            "/tenants/acme/sources/bex/api",
            Some(
                json!({"base_url": bexsim.url(), "secret": bex::DEMO_API_KEY,
                        "options": {"rate_per_sec": 1000.0, "burst": 1000}}),
            ),
        )
        .await;
    assert_eq!(st, 200, "{b}");

    let (st, b) = api
        .get("/lookups/bex/acme/rentables?administration=4711")
        .await;
    assert_eq!(st, 200, "{b}");
    assert_eq!(
        b["items"],
        json!([
            {"id": "5501", "name": "Kamer 12", "detail": "administration 4711"},
            {"id": "5502", "name": "Kamer 14", "detail": "administration 4711"}
        ])
    );
    let (st, b) = api.get("/lookups/bex/acme/administrations").await;
    assert_eq!(st, 200, "{b}");
    let ids: Vec<&str> = b["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["4711", "5800"], "{b}");
    assert_eq!(b["items"][0]["name"], "Strandhotel");
    assert_eq!(b["items"][0]["detail"], "organization org-1");

    // Bad requests name the field.
    let (st, b) = api.get("/lookups/bex/acme/rentables").await;
    assert_eq!(
        (st, b["field"].as_str()),
        (400, Some("administration")),
        "{b}"
    );
    let (st, b) = api.get("/lookups/bex/acme/rooms").await;
    assert_eq!((st, b["field"].as_str()), (400, Some("what")), "{b}");
    // BEX's own refusal: 502.
    let (st, b) = api
        .get("/lookups/bex/acme/rentables?administration=9999")
        .await;
    assert_eq!(st, 502, "{b}");

    // Tied to its organization: only its administrations, and no rentables of another's.
    let tenants = TenantStore::new(db.pool.clone(), sbox.clone());
    tenants
        .set_source_secret(
            "acme",
            "bex",
            Some(Secret::new("app-client-secret")),
            std::time::Duration::ZERO,
        )
        .await
        .unwrap();
    tenants
        .set_organization("acme", "bex", Some("org-1"))
        .await
        .unwrap()
        .unwrap();
    let (st, b) = api.get("/lookups/bex/acme/administrations").await;
    assert_eq!(st, 200, "{b}");
    assert_eq!(b["items"].as_array().unwrap().len(), 1, "{b}");
    assert_eq!(b["items"][0]["id"], "4711");
    let (st, b) = api
        .get("/lookups/bex/acme/rentables?administration=5800")
        .await;
    assert_eq!(
        (st, b["field"].as_str()),
        (422, Some("administration")),
        "{b}"
    );
    assert!(b.to_string().contains("org-2"), "{b}");

    // Outside the egress policy (production's strict one): refused, BEX never called.
    let calls = bexsim.calls();
    let strict = common::serve(state(EgressPolicy::strict()), BOOT).await;
    let (st, b) = strict.get("/lookups/bex/acme/administrations").await;
    assert_eq!(st, 502, "{b}");
    assert!(b.to_string().contains("refused"), "{b}");
    assert_eq!(bexsim.calls(), calls);

    bexsim.shutdown().await;
    bus.cleanup().await;
    db.drop_db().await;
}
