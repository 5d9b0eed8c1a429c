//! `POST/GET /syncs` (runs queued for the reconciler) and `PUT .../site-defaults`, against real
//! Postgres and NATS.
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
        },
    );
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
            Some(json!({"secret": "whsec-test"})),
        )
        .await;
    assert_eq!(s, 200);
    let (s, b) = api.call(M::PUT, path, BOOT, Some(defaults.clone())).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["site_defaults"], defaults);
    assert_eq!(b["secret"], "***");

    let (_, b) = api.call(M::GET, "/tenants/acme", BOOT, None).await;
    assert_eq!(b["sources"][0]["site_defaults"], defaults);

    let (s, b) = api
        .call(
            M::PUT,
            path,
            BOOT,
            Some(json!({"12": {"check_in_time": "3 pm"}})),
        )
        .await;
    assert_eq!(s, 422, "{b}");
    assert_eq!(b["field"], "12.check_in_time");
    let (s, b) = api.call(M::PUT, path, BOOT, Some(json!([1]))).await;
    assert_eq!(s, 422, "{b}");

    bus.cleanup().await;
    db.drop_db().await;
}
