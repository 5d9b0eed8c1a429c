//! The admin router served on an ephemeral port, against real Postgres and NATS.
#![allow(clippy::unwrap_used)]

use accesshub_admin::{AdminConfig, AdminState};
use accesshub_connections::{
    Vendor,
    lookup::{LookupFailure, LookupItem, LookupRequest, serve_lookups},
};
use accesshub_store::SecretBox;
use reqwest::StatusCode;
use serde_json::{Value, json};

const BOOT: &str = "bootstrap-admin-token-for-tests";

struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
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
            lookup_timeout: Some(std::time::Duration::from_secs(2)),
            ..Default::default()
        },
    )
    .with_egress("https://10.0.0.5:*".parse().unwrap());
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

fn dormakaba(secret: &str) -> Value {
    json!({
        "tenant": "acme",
        "name": "default",
        "sites": ["hotel-a"],
        "settings": {
            "vendor": "dormakaba", "product": "saflok", "host": "10.0.0.5", "port": 8080,
            "username": "pms", "password": secret, "site_name": "HOTEL", "pms_terminal_id": "1",
            "encoders": [{"name": "Front desk", "id": "1"}]
        }
    })
}

use reqwest::Method as M;

#[tokio::test]
async fn auth_scopes_tenants_connections_and_lookups() {
    let (db, bus) = accesshub_testkit::isolated().await;
    let api = serve(&db, &bus).await;

    // 401 without or with a bad token.
    assert_eq!(
        api.call(M::GET, "/tenants", None, None).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        api.call(M::GET, "/tenants", Some("nope"), None).await.0,
        StatusCode::UNAUTHORIZED
    );

    // Tokens: admin creates a read token.
    let (st, tok) = api
        .call(
            M::POST,
            "/tokens",
            Some(BOOT),
            Some(json!({"name": "grafana", "scopes": ["read"]})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{tok}");
    let read = tok["token"].as_str().unwrap().to_owned();
    let hash: String = sqlx::query_scalar("SELECT token_hash FROM api_tokens")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_ne!(hash, read);
    assert_eq!(hash, accesshub_admin::auth::hash_token(&read));

    // Tenants.
    let (st, _) = api
        .call(
            M::POST,
            "/tenants",
            Some(BOOT),
            Some(json!({"id": "acme", "name": "Acme"})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED);
    assert_eq!(
        api.call(M::POST, "/tenants", Some(BOOT), Some(json!({"id": "acme"})))
            .await
            .0,
        StatusCode::CONFLICT
    );
    let (st, body) = api
        .call(M::POST, "/tenants", Some(BOOT), Some(json!({"id": "a b"})))
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["field"], "id");
    let (st, list) = api.call(M::GET, "/tenants", Some(&read), None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(list[0]["id"], "acme");

    // 403: read token on writes and on token management.
    assert_eq!(
        api.call(M::POST, "/tenants", Some(&read), Some(json!({"id": "x"})))
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        api.call(M::GET, "/tokens", Some(&read), None).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        api.call(
            M::PUT,
            "/connections/acme/dormakaba/default",
            Some(&read),
            Some(dormakaba("pw"))
        )
        .await
        .0,
        StatusCode::FORBIDDEN
    );

    // USB encoder refused, naming the field.
    let mut usb = dormakaba("pw");
    usb["settings"]["encoders"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "Back office", "id": "2", "kind": "usb"}));
    let (st, body) = api
        .call(
            M::PUT,
            "/connections/acme/dormakaba/default",
            Some(BOOT),
            Some(usb),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["field"], "settings.encoders[1].kind");
    assert_eq!(
        body["errors"][0]["message"],
        "USB encoders are not supported by the web service; use a networked encoder"
    );

    // Malformed body: 400 naming the field.
    let mut bad = dormakaba("pw");
    bad["settings"]["port"] = json!("eighty");
    let (st, body) = api
        .call(
            M::PUT,
            "/connections/acme/dormakaba/default",
            Some(BOOT),
            Some(bad),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["field"], "settings.port");
    // Path and body disagree.
    let (st, body) = api
        .call(
            M::PUT,
            "/connections/acme/dormakaba/other",
            Some(BOOT),
            Some(dormakaba("pw")),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["field"], "name");
    // Unknown tenant.
    let mut ghost = dormakaba("pw");
    ghost["tenant"] = json!("ghost");
    assert_eq!(
        api.call(
            M::PUT,
            "/connections/ghost/dormakaba/default",
            Some(BOOT),
            Some(ghost)
        )
        .await
        .0,
        StatusCode::NOT_FOUND
    );

    // Idempotent apply.
    let path = "/connections/acme/dormakaba/default";
    let (st, body) = api
        .call(M::PUT, path, Some(BOOT), Some(dormakaba("pw-1")))
        .await;
    assert_eq!(st, StatusCode::CREATED, "{body}");
    assert_eq!(body["status"], "created");
    assert_eq!(body["connection"]["settings"]["password"], "***");
    let (st, body) = api
        .call(M::PUT, path, Some(BOOT), Some(dormakaba("pw-1")))
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(body["status"], "unchanged");
    assert_eq!(body["connection"]["version"], 1);

    // Dry run returns a diff and writes nothing.
    let mut changed = dormakaba("pw-2");
    changed["settings"]["port"] = json!(8443);
    let (st, body) = api
        .call(
            M::PUT,
            &format!("{path}?dry_run=true"),
            Some(BOOT),
            Some(changed.clone()),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(body["status"], "updated");
    assert_eq!(body["dry_run"], true);
    let changes = body["changes"].as_array().unwrap();
    assert!(
        changes
            .iter()
            .any(|c| c["path"] == "settings.port" && c["old"] == 8080 && c["new"] == 8443)
    );
    assert!(
        changes
            .iter()
            .any(|c| c["path"] == "settings.password" && c["new"] == "*** (changed)")
    );
    assert!(!body.to_string().contains("pw-2"));
    let (_, got) = api.call(M::GET, path, Some(&read), None).await;
    assert_eq!(got["settings"]["port"], 8080);
    assert_eq!(got["settings"]["password"], "***");

    // Real apply bumps the version; list never shows secrets.
    let (_, body) = api.call(M::PUT, path, Some(BOOT), Some(changed)).await;
    assert_eq!(body["status"], "updated");
    assert_eq!(body["connection"]["version"], 2);
    let (_, list) = api
        .call(M::GET, "/connections?tenant=acme", Some(&read), None)
        .await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert!(!list.to_string().contains("pw-"));

    // Lookups: no worker → 504 with a clear message.
    let (st, body) = api
        .call(
            M::GET,
            "/lookups/dormakaba/acme/encoder-test",
            Some(&read),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::GATEWAY_TIMEOUT);
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("no dormakaba-worker"),
        "{body}"
    );
    // No connection → 404.
    assert_eq!(
        api.call(M::GET, "/lookups/cloudpass/acme/sites", Some(&read), None)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    let _srv = serve_lookups(&bus.bus, Vendor::Dormakaba, |r: LookupRequest| async move {
        match r.what.as_str() {
            "encoder-test" => Ok(vec![LookupItem {
                id: r.params.get("encoder").cloned().unwrap_or_default(),
                name: "HelloWorldTest".into(),
                detail: Some("ok".into()),
            }]),
            "denied" => Err(LookupFailure::credentials(Vendor::Dormakaba, 401)),
            _ => Err(LookupFailure::bad_request("unknown lookup")),
        }
    })
    .await
    .unwrap();
    let (st, body) = api
        .call(
            M::GET,
            "/lookups/dormakaba/acme/encoder-test?encoder=1",
            Some(&read),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(body["items"][0]["id"], "1");
    let (st, body) = api
        .call(M::GET, "/lookups/dormakaba/acme/denied", Some(&read), None)
        .await;
    assert_eq!(st, StatusCode::BAD_GATEWAY);
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("PMS user name or password")
    );
    assert_eq!(
        api.call(M::GET, "/lookups/dormakaba/acme/what", Some(&read), None)
            .await
            .0,
        StatusCode::BAD_REQUEST
    );

    // Webhook secrets: set, rotate (generated shown once), never returned by GET.
    let (st, body) = api
        .call(
            M::PUT,
            "/tenants/acme/sources/bex/secret",
            Some(BOOT),
            Some(json!({"secret": "whsec-first-0123456789abcdef0123456789"})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert!(
        !body
            .to_string()
            .contains("whsec-first-0123456789abcdef0123456789")
    );
    let (st, body) = api
        .call(
            M::POST,
            "/tenants/acme/sources/bex/rotate",
            Some(BOOT),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert!(
        body["generated_secret"]
            .as_str()
            .unwrap()
            .starts_with("whsec_")
    );
    assert_eq!(body["source"]["previous_valid"], true);
    let (_, t) = api.call(M::GET, "/tenants/acme", Some(&read), None).await;
    assert_eq!(t["sources"][0]["secret"], "***");
    assert!(!t.to_string().contains("whsec"));

    // Revoke the read token → 401.
    let id = tok["id"].as_str().unwrap();
    assert_eq!(
        api.call(M::DELETE, &format!("/tokens/{id}"), Some(BOOT), None)
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        api.call(M::GET, "/tenants", Some(&read), None).await.0,
        StatusCode::UNAUTHORIZED
    );

    // Delete.
    assert_eq!(
        api.call(M::DELETE, path, Some(BOOT), None).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        api.call(M::DELETE, path, Some(BOOT), None).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        api.call(M::DELETE, "/tenants/acme", Some(BOOT), None)
            .await
            .0,
        StatusCode::NO_CONTENT
    );

    bus.cleanup().await;
    db.drop_db().await;
}
