//! `POST/GET /syncs` (runs queued for the reconciler), `PUT .../site-defaults`, and the choice
//! about vendor access when a connection or tenant is deleted or disabled (offboarding runs are
//! sync runs too), against real Postgres and NATS.
#![allow(clippy::unwrap_used)]

use accesshub_admin::{AdminConfig, AdminState};
use accesshub_store::SecretBox;
use reqwest::{Method as M, StatusCode};
use serde_json::{Value, json};

const BOOT: &str = "bootstrap-admin-token-for-sync-tests";

struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    async fn call(
        &self,
        method: M,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }
}

async fn serve(db: &accesshub_testkit::TestDb, bus: &accesshub_testkit::TestBus) -> Api {
    let state = AdminState::new(
        db.pool.clone(),
        SecretBox::from_spec(&SecretBox::generate_spec()).unwrap(),
        bus.bus.clone(),
        AdminConfig {
            bootstrap_token: Some(BOOT.into()),
            lookup_timeout: None,
            ..Default::default()
        },
    )
    .with_egress(accesshub_connections::EgressPolicy::loopback_http());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, accesshub_admin::mounted(state))
            .await
            .unwrap()
    });
    Api {
        base: format!("http://{addr}/admin/v1"),
        http: reqwest::Client::new(),
    }
}

fn cloudpass() -> Value {
    json!({
        "tenant": "acme",
        "name": "default",
        "settings": {
            "vendor": "cloudpass", "base_url": "http://127.0.0.1:18081",
            "client_id": "c", "client_secret": "s",
            "administrations": {"12": {"site_id": "cp-site-amsterdam"}},
            "default_time_restriction_id": "cp-tr-ams-247"
        }
    })
}

#[tokio::test]
async fn sync_runs_are_queued_once_per_connection_and_listed() {
    let (db, bus) = accesshub_testkit::isolated().await;
    let api = serve(&db, &bus).await;
    let (s, _) = api
        .call(M::POST, "/tenants", BOOT, Some(json!({"id": "acme"})))
        .await;
    assert_eq!(s, 201);
    let (s, b) = api
        .call(
            M::PUT,
            "/connections/acme/cloudpass/default",
            BOOT,
            Some(cloudpass()),
        )
        .await;
    assert_eq!(s, 201, "{b}");

    // A read token may list but not queue.
    let (s, b) = api
        .call(
            M::POST,
            "/tokens",
            BOOT,
            Some(json!({"name": "viewer", "scopes": ["read"]})),
        )
        .await;
    assert_eq!(s, 201);
    let read = b["token"].as_str().unwrap().to_owned();
    let body = json!({"tenant": "acme", "vendor": "cloudpass", "scope": "upcoming", "days": 3});
    let (s, _) = api.call(M::POST, "/syncs", &read, Some(body.clone())).await;
    assert_eq!(s, 403);

    let (s, b) = api.call(M::POST, "/syncs", BOOT, Some(body.clone())).await;
    assert_eq!(s, 202, "{b}");
    assert_eq!(b["queued"], true);
    let id = b["run_id"].as_i64().unwrap();
    assert_eq!(b["run"]["id"], id);
    assert_eq!(b["run"]["trigger"], "api");
    assert_eq!(b["run"]["status"], "queued");
    assert_eq!(b["run"]["scope"], json!({"scope": "upcoming", "days": 3}));
    assert_eq!(b["run"]["requested_by"], "bootstrap");
    assert_eq!(b["run"]["connection"]["name"], "default");

    // Asked again while queued: the same run, nothing new.
    let (s, b) = api
        .call(
            M::POST,
            "/syncs",
            BOOT,
            Some(json!({"tenant": "acme", "vendor": "cloudpass", "connection": "default", "scope": "full"})),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["queued"], false);
    assert_eq!(b["run_id"], id);

    let (s, b) = api
        .call(M::GET, "/syncs?tenant=acme&vendor=cloudpass", &read, None)
        .await;
    assert_eq!(s, 200, "{b}");
    let runs = b.as_array().unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0]["id"], id);
    let (s, b) = api.call(M::GET, "/syncs?tenant=other", &read, None).await;
    assert_eq!(s, 200);
    assert_eq!(b, json!([]));

    // Errors name the field; unknown connections are 404.
    let (s, b) = api
        .call(
            M::POST,
            "/syncs",
            BOOT,
            Some(json!({"tenant": "acme", "vendor": "cloudpass", "scope": "weekly"})),
        )
        .await;
    assert_eq!(s, 422, "{b}");
    assert_eq!(b["field"], "scope");
    let (s, b) = api
        .call(
            M::POST,
            "/syncs",
            BOOT,
            Some(json!({"tenant": "acme", "vendor": "cloudpass", "scope": "upcoming", "days": 0})),
        )
        .await;
    assert_eq!(s, 422, "{b}");
    assert_eq!(b["field"], "days");
    let (s, b) = api
        .call(
            M::POST,
            "/syncs",
            BOOT,
            Some(json!({"tenant": "acme", "vendor": "tapkey", "scope": "full"})),
        )
        .await;
    assert_eq!(s, 404, "{b}");
    let (s, b) = api
        .call(
            M::POST,
            "/syncs",
            BOOT,
            Some(json!({"tenant": "acme", "vendor": "nope", "scope": "full"})),
        )
        .await;
    assert_eq!(s, 400, "{b}");
    assert_eq!(b["field"], "vendor");
    let (s, _) = api.call(M::GET, "/syncs?limit=0", BOOT, None).await;
    assert_eq!(s, 422);

    bus.cleanup().await;
    db.drop_db().await;
}

#[tokio::test]
async fn site_defaults_are_set_on_an_existing_source() {
    let (db, bus) = accesshub_testkit::isolated().await;
    let api = serve(&db, &bus).await;
    api.call(M::POST, "/tenants", BOOT, Some(json!({"id": "acme"})))
        .await;
    let defaults = json!({"12": {"check_in_time": "16:00", "check_out_time": "10:30",
                                  "timezone": "Europe/Amsterdam"},
                          "*": {"timezone": "Europe/Amsterdam"}});
    let path = "/tenants/acme/sources/bex/site-defaults";

    // No source yet (its secret makes it): 404.
    let (s, b) = api.call(M::PUT, path, BOOT, Some(defaults.clone())).await;
    assert_eq!(s, 404, "{b}");

    let (s, _) = api
        .call(
            M::PUT,
            "/tenants/acme/sources/bex/secret",
            BOOT,
            Some(json!({"secret": "whsec-test-0123456789abcdef0123456789"})),
        )
        .await;
    assert_eq!(s, 200);
    let (s, b) = api.call(M::PUT, path, BOOT, Some(defaults.clone())).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["site_defaults"], defaults);
    assert_eq!(b["secret"], "***");

    let (_, b) = api.call(M::GET, "/tenants/acme", BOOT, None).await;
    assert_eq!(b["sources"][0]["site_defaults"], defaults);

    // 400 naming the field; an unknown IANA zone is refused, not silently UTC.
    for (body, field) in [
        (json!({"12": {"check_in_time": "3 pm"}}), "12.check_in_time"),
        (json!({"12": {"timezone": "Europe/Nowhere"}}), "12.timezone"),
        (
            json!({"*": {"check_out_time": "11:00 "}}),
            "*.check_out_time",
        ),
    ] {
        let (s, b) = api.call(M::PUT, path, BOOT, Some(body)).await;
        assert_eq!(
            (s, b["field"].as_str()),
            (StatusCode::BAD_REQUEST, Some(field)),
            "{b}"
        );
    }
    // Not an object: a shape error (400), like every body.
    let (s, b) = api.call(M::PUT, path, BOOT, Some(json!([1]))).await;
    assert_eq!(s, 400, "{b}");

    bus.cleanup().await;
    db.drop_db().await;
}

/// A booking of `tenant` at site `site` whose CloudPass binding has `status`.
async fn booking(
    db: &accesshub_testkit::TestDb,
    tenant: &str,
    key: &str,
    site: &str,
    status: &str,
) {
    sqlx::query(
        "INSERT INTO bookings (tenant_id, kind, booking_key, site, revision, source, event_id, payload)
         VALUES ($1, 'reservation', $2, $3, 1, 'bex', gen_random_uuid(), '{}')",
    )
    .bind(tenant)
    .bind(key)
    .bind(site)
    .execute(&db.pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO bindings (tenant_id, vendor, kind, booking_key, applied_revision, status)
         VALUES ($1, 'cloudpass', 'reservation', $2, 1, $3)",
    )
    .bind(tenant)
    .bind(key)
    .bind(status)
    .execute(&db.pool)
    .await
    .unwrap();
}

async fn rows(db: &accesshub_testkit::TestDb, table: &str, tenant: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM {table} WHERE tenant_id = $1"
    )))
    .bind(tenant)
    .fetch_one(&db.pool)
    .await
    .unwrap()
}

/// Two bookings hold access through acme's CloudPass connection, a third holds nothing.
async fn acme_with_live_access(api: &Api, db: &accesshub_testkit::TestDb) {
    let (s, _) = api
        .call(M::POST, "/tenants", BOOT, Some(json!({"id": "acme"})))
        .await;
    assert_eq!(s, 201);
    let (s, b) = api.call(M::PUT, CONN, BOOT, Some(cloudpass())).await;
    assert_eq!(s, 201, "{b}");
    booking(db, "acme", "R1", "12", "active").await;
    booking(db, "acme", "R2", "12", "no_plates_but_new_status").await;
    booking(db, "acme", "R3", "12", "cancelled").await;
}

const CONN: &str = "/connections/acme/cloudpass/default";

#[tokio::test]
async fn deleting_or_disabling_a_connection_with_live_access_asks_what_to_do_with_it() {
    let (db, bus) = accesshub_testkit::isolated().await;
    let api = serve(&db, &bus).await;
    acme_with_live_access(&api, &db).await;

    // Default: refused, with the count and both choices; nothing changed.
    let (s, b) = api.call(M::DELETE, CONN, BOOT, None).await;
    assert_eq!(s, 409, "{b}");
    let msg = b["detail"].as_str().unwrap();
    assert!(
        msg.contains("2 booking(s) hold access at cloudpass"),
        "{msg}"
    );
    assert!(
        msg.contains("?access=remove") && msg.contains("?access=keep"),
        "{msg}"
    );
    let mut off = cloudpass();
    off["enabled"] = json!(false);
    let (s, b) = api.call(M::PUT, CONN, BOOT, Some(off.clone())).await;
    assert_eq!(s, 409, "{b}");
    assert!(
        b["detail"].as_str().unwrap().contains("--remove-access"),
        "{b}"
    );
    let (s, b) = api.call(M::GET, CONN, BOOT, None).await;
    assert_eq!((s.as_u16(), &b["enabled"]), (200, &json!(true)), "{b}");
    assert_eq!(rows(&db, "bindings", "acme").await, 3);
    let (s, b) = api
        .call(M::DELETE, &format!("{CONN}?access=force"), BOOT, None)
        .await;
    assert_eq!((s.as_u16(), &b["field"]), (422, &json!("access")), "{b}");

    // Keep: deleted now, the access stays at the vendor, and the answer says so.
    let (s, b) = api
        .call(M::DELETE, &format!("{CONN}?access=keep"), BOOT, None)
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["state"], "deleted");
    assert_eq!(b["live_bookings"], 2);
    assert!(
        b["warning"]
            .as_str()
            .unwrap()
            .contains("2 booking(s) keep their access"),
        "{b}"
    );
    assert_eq!(api.call(M::GET, CONN, BOOT, None).await.0, 404);
    assert_eq!(rows(&db, "bindings", "acme").await, 3);

    bus.cleanup().await;
    db.drop_db().await;
}

#[tokio::test]
async fn removing_access_first_offboards_the_connection_through_an_offboard_run() {
    let (db, bus) = accesshub_testkit::isolated().await;
    let api = serve(&db, &bus).await;
    acme_with_live_access(&api, &db).await;

    let (s, b) = api
        .call(M::DELETE, &format!("{CONN}?access=remove"), BOOT, None)
        .await;
    assert_eq!(s, 202, "{b}");
    assert_eq!(b["state"], "offboarding");
    assert_eq!(b["live_bookings"], 2);
    let run = &b["runs"][0];
    assert_eq!(run["scope"], json!({"scope": "offboard"}));
    assert_eq!(
        (&run["status"], &run["requested_by"]),
        (&json!("queued"), &json!("bootstrap"))
    );
    let intent = accesshub_connections::offboard::intent(
        &db.pool,
        "acme",
        accesshub_connections::Vendor::Cloudpass,
        "default",
    )
    .await
    .unwrap();
    assert_eq!(intent, Some(accesshub_connections::OffboardIntent::Delete));
    // Kept (with its credentials) until the run has removed everything; not changeable.
    let (s, b) = api.call(M::PUT, CONN, BOOT, Some(cloudpass())).await;
    assert_eq!(s, 409, "{b}");
    assert!(
        b["detail"].as_str().unwrap().contains("being offboarded"),
        "{b}"
    );
    let (s, b) = api
        .call(M::GET, "/syncs?tenant=acme&vendor=cloudpass", BOOT, None)
        .await;
    assert_eq!((s.as_u16(), &b[0]["id"]), (200, &run["id"]), "{b}");

    bus.cleanup().await;
    db.drop_db().await;
}

#[tokio::test]
async fn deleting_a_tenant_deletes_its_bookings_and_bindings() {
    let (db, bus) = accesshub_testkit::isolated().await;
    let api = serve(&db, &bus).await;
    acme_with_live_access(&api, &db).await;
    api.call(M::POST, "/tenants", BOOT, Some(json!({"id": "globex"})))
        .await;
    booking(&db, "globex", "G1", "1", "active").await;

    let (s, b) = api.call(M::DELETE, "/tenants/acme", BOOT, None).await;
    assert_eq!(s, 409, "{b}");
    assert!(
        b["detail"]
            .as_str()
            .unwrap()
            .contains("2 booking(s) of tenant"),
        "{b}"
    );
    assert_eq!(rows(&db, "bookings", "acme").await, 3);

    let (s, b) = api
        .call(M::DELETE, "/tenants/acme?access=keep", BOOT, None)
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["state"], "deleted");
    assert!(b["warning"].as_str().is_some(), "{b}");
    assert_eq!(api.call(M::GET, "/tenants/acme", BOOT, None).await.0, 404);
    for table in ["bookings", "bindings", "connections"] {
        assert_eq!(rows(&db, table, "acme").await, 0, "{table}");
    }
    assert_eq!(
        rows(&db, "bookings", "globex").await,
        1,
        "another tenant's rows stay"
    );
    assert_eq!(rows(&db, "bindings", "globex").await, 1);

    bus.cleanup().await;
    db.drop_db().await;
}

/// Install per administration: a source tied to its upstream organization, and the bookings
/// booking-ingest ignored listed with their reason.
#[tokio::test]
async fn a_source_is_tied_to_its_organization_and_ignored_bookings_are_listed() {
    let (db, bus) = accesshub_testkit::isolated().await;
    let api = serve(&db, &bus).await;
    api.call(M::POST, "/tenants", BOOT, Some(json!({"id": "acme"})))
        .await;
    let path = "/tenants/acme/sources/bex/organization";
    let (s, _) = api
        .call(
            M::PUT,
            path,
            BOOT,
            Some(json!({"organization_id": "org-1"})),
        )
        .await;
    assert_eq!(s, 404);
    api.call(
        M::PUT,
        "/tenants/acme/sources/bex/secret",
        BOOT,
        Some(json!({"secret": "whsec-test-0123456789abcdef0123456789"})),
    )
    .await;
    let (s, b) = api
        .call(
            M::PUT,
            path,
            BOOT,
            Some(json!({"organization_id": "org-1"})),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["organization_id"], "org-1");
    let (_, b) = api.call(M::GET, "/tenants/acme", BOOT, None).await;
    assert_eq!(b["sources"][0]["organization_id"], "org-1");
    let (s, b) = api
        .call(M::PUT, path, BOOT, Some(json!({"organisation": "x"})))
        .await;
    assert_eq!(s, 400, "{b}");

    sqlx::query(
        "INSERT INTO ingest_ignored (tenant_id, source, kind, booking_key, site, reason, deliveries)
         VALUES ('acme', 'bex', 'reservation', 'r-99', '99', 'site_not_activated', 2)",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    let (s, b) = api.call(M::GET, "/tenants/acme/ignored", BOOT, None).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b[0]["booking_key"], "r-99");
    assert_eq!(b[0]["reason"], "site_not_activated");
    assert_eq!(b[0]["deliveries"], 2);
    let (s, b) = api
        .call(M::GET, "/tenants/acme/ignored?limit=0", BOOT, None)
        .await;
    assert_eq!(
        (s, b["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("limit"))
    );
    // An unknown (or deleted) tenant is 404, not an empty list (found by the API fuzzer).
    let (s, b) = api.call(M::GET, "/tenants/gone/ignored", BOOT, None).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{b}");

    bus.cleanup().await;
    db.drop_db().await;
}

/// Switching access control on through the API (issues 20/21) queues a sync run for the
/// connection, so the events booking-ingest ignored meanwhile are re-admitted without the
/// operator pressing Sync: enabling it again, or mapping another administration. With a run
/// already active that one is answered; other changes (and creating it) queue nothing.
#[tokio::test]
async fn enabling_a_connection_or_mapping_more_queues_a_sync_run() {
    let (db, bus) = accesshub_testkit::isolated().await;
    let api = serve(&db, &bus).await;
    let (s, _) = api
        .call(M::POST, "/tenants", BOOT, Some(json!({"id": "acme"})))
        .await;
    assert_eq!(s, 201);
    let path = "/connections/acme/cloudpass/default";
    let mut conn = cloudpass();
    conn["enabled"] = json!(false);
    let (s, b) = api.call(M::PUT, path, BOOT, Some(conn.clone())).await;
    assert_eq!(s, 201, "{b}");
    assert!(b.get("sync_run").is_none(), "{b}");

    // Enabled again: a full run, queued by the caller.
    conn["enabled"] = json!(true);
    let (s, b) = api.call(M::PUT, path, BOOT, Some(conn.clone())).await;
    assert_eq!(s, 200, "{b}");
    let run = &b["sync_run"];
    assert_eq!(run["status"], "queued", "{b}");
    assert_eq!(run["trigger"], "api");
    assert_eq!(run["requested_by"], "bootstrap");
    assert_eq!(run["scope"], json!({"scope": "full"}));
    let id = run["id"].as_i64().unwrap();

    // Unchanged, or changed without acting on more: nothing.
    let (_, b) = api.call(M::PUT, path, BOOT, Some(conn.clone())).await;
    assert!(b.get("sync_run").is_none(), "{b}");
    conn["settings"]["default_time_restriction_id"] = json!("cp-tr-other");
    let (_, b) = api.call(M::PUT, path, BOOT, Some(conn.clone())).await;
    assert_eq!(b["status"], "updated", "{b}");
    assert!(b.get("sync_run").is_none(), "{b}");

    // Another administration mapped while that run is still queued: the same run.
    conn["settings"]["administrations"]["13"] = json!({"site_id": "cp-site-utrecht"});
    let (s, b) = api.call(M::PUT, path, BOOT, Some(conn.clone())).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["sync_run"]["id"], id, "{b}");
    let (_, runs) = api
        .call(M::GET, "/syncs?tenant=acme&vendor=cloudpass", BOOT, None)
        .await;
    assert_eq!(runs.as_array().unwrap().len(), 1, "{runs}");
    db.drop_db().await;
    bus.cleanup().await;
}
