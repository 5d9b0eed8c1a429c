//! Egress guards through the admin API (security review M3): a stored vendor secret never
//! reaches a URL it was not entered for, endpoints must satisfy the egress policy, and vendor
//! words coming back through lookups are scrubbed. Real HTTP, Postgres and NATS.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use accesshub_admin::{AdminConfig, AdminState};
use accesshub_connections::{
    ConnectionStore, EgressPolicy, Vendor,
    lookup::{LookupFailure, serve_lookups},
};
use accesshub_domain::ErrorClass;
use accesshub_store::SecretBox;
use accesshub_testkit::http::recording_server;
use reqwest::StatusCode;
use serde_json::{Value, json};
use vendor_http::{HttpSettings, TokenSource, TokenSourceConfig, VendorClient};

const BOOT: &str = "bootstrap-admin-token-for-egress";
const SECRET: &str = "Tapkey-Client-S3cret-9f3a";

struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(BOOT);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }
}

async fn serve(
    db: &accesshub_testkit::TestDb,
    bus: &accesshub_testkit::TestBus,
    secrets: SecretBox,
    egress: EgressPolicy,
) -> Api {
    let state = AdminState::new(
        db.pool.clone(),
        secrets,
        bus.bus.clone(),
        AdminConfig {
            bootstrap_token: Some(BOOT.into()),
            lookup_timeout: Some(Duration::from_secs(2)),
            ..Default::default()
        },
    )
    .with_egress(egress);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, accesshub_admin::mounted(state))
            .await
            .unwrap()
    });
    let api = Api {
        base: format!("http://{addr}/admin/v1"),
        http: reqwest::Client::new(),
    };
    let (st, body) = api
        .call(
            reqwest::Method::POST,
            "/tenants",
            Some(json!({"id": "acme"})),
        )
        .await;
    assert!(st.is_success(), "{body}");
    api
}

fn tapkey(authority: &str, secret: &str) -> Value {
    json!({
        "tenant": "acme",
        "name": "default",
        "settings": {
            "vendor": "tapkey", "authority_url": authority, "base_url": authority,
            "client_id": "acme-client", "client_secret": secret,
            "owner_account_id": "owner-1", "pass_types": {"gym": ["lock-1"]}
        }
    })
}

fn token_answer() -> String {
    let body = r#"{"access_token":"tok","token_type":"Bearer","expires_in":3600}"#;
    format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// Fetches a token the way the Tapkey worker does, from the connection as stored.
async fn worker_token(store: &ConnectionStore) {
    let conn = store
        .get("acme", Vendor::Tapkey, "default")
        .await
        .unwrap()
        .unwrap();
    let s = conn.settings.tapkey().unwrap();
    let source = TokenSource::new(
        VendorClient::new("tapkey", HttpSettings::default()).unwrap(),
        TokenSourceConfig {
            token_url: format!("{}/connect/token", s.authority_url.trim_end_matches('/')),
            client_id: s.client_id.clone(),
            client_secret: s.client_secret.expose().to_owned(),
            scope: None,
        },
    );
    source.token().await.unwrap();
}

/// The review's reproduction: a stored Tapkey connection is re-applied with a new
/// `authority_url` and `client_secret: "***"`. Expected: 422 naming the secret, nothing
/// stored, and the worker's next token request goes to the old authority — the new URL
/// never sees the stored secret.
#[tokio::test]
async fn the_stored_secret_never_reaches_a_changed_url() {
    let (db, bus) = accesshub_testkit::isolated().await;
    let secrets = SecretBox::from_spec(&SecretBox::generate_spec()).unwrap();
    let api = serve(&db, &bus, secrets.clone(), EgressPolicy::loopback_http()).await;
    let store = ConnectionStore::new(db.pool.clone(), secrets);
    let (vendor, mut vendor_seen) = recording_server(vec![token_answer(), token_answer()]).await;
    let (attacker, mut attacker_seen) = recording_server(vec![token_answer()]).await;
    let path = "/connections/acme/tapkey/default";

    let (st, body) = api
        .call(
            reqwest::Method::PUT,
            path,
            Some(tapkey(&format!("http://{vendor}"), SECRET)),
        )
        .await;
    assert!(st.is_success(), "{body}");

    let (st, body) = api
        .call(
            reqwest::Method::PUT,
            path,
            Some(tapkey(&format!("http://{attacker}"), "***")),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let text = body.to_string();
    assert!(
        text.contains("re-supply settings.client_secret when settings.authority_url changes"),
        "{text}"
    );
    assert!(!text.contains(SECRET));
    let (_, got) = api.call(reqwest::Method::GET, path, None).await;
    assert_eq!(
        got["settings"]["authority_url"],
        format!("http://{vendor}"),
        "{got}"
    );
    assert_eq!(got["version"], 1);

    worker_token(&store).await;
    let (_, sent) = vendor_seen.recv().await.unwrap();
    assert!(sent.contains(SECRET), "the vendor got the secret: {sent}");
    assert!(
        attacker_seen.try_recv().is_err(),
        "the changed URL was called"
    );

    // Re-entering the secret is what moving a connection takes; the new URL then gets
    // the secret it was given, nothing else.
    let (st, body) = api
        .call(
            reqwest::Method::PUT,
            path,
            Some(tapkey(
                &format!("http://{attacker}"),
                "a-new-secret-for-the-new-url",
            )),
        )
        .await;
    assert!(st.is_success(), "{body}");
    worker_token(&store).await;
    let (_, sent) = attacker_seen.recv().await.unwrap();
    assert!(
        sent.contains("a-new-secret-for-the-new-url") && !sent.contains(SECRET),
        "{sent}"
    );

    bus.cleanup().await;
    db.drop_db().await;
}

/// With the default (strict) policy, plain http, loopback and the metadata address are
/// refused with 422 naming the field.
#[tokio::test]
async fn a_strict_deployment_refuses_http_and_internal_endpoints() {
    let (db, bus) = accesshub_testkit::isolated().await;
    let secrets = SecretBox::from_spec(&SecretBox::generate_spec()).unwrap();
    let api = serve(&db, &bus, secrets, EgressPolicy::strict()).await;
    let path = "/connections/acme/tapkey/default";
    for (url, expect) in [
        ("http://tapkey.example", "must use https"),
        ("https://127.0.0.1:8443", "loopback"),
        ("https://169.254.169.254", "link-local"),
        ("https://[fd00::1]", "private"),
    ] {
        let (st, body) = api
            .call(reqwest::Method::PUT, path, Some(tapkey(url, SECRET)))
            .await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{url}: {body}");
        let text = body.to_string();
        assert!(
            text.contains("settings.authority_url") && text.contains(expect),
            "{url}: {text}"
        );
    }
    let (st, body) = api
        .call(
            reqwest::Method::PUT,
            path,
            Some(tapkey("https://login.tapkey.example", SECRET)),
        )
        .await;
    assert!(st.is_success(), "{body}");

    bus.cleanup().await;
    db.drop_db().await;
}

/// A worker answering a lookup with the vendor's raw words (a token, a secret echoed back):
/// the 502 body carries the words and none of the credentials.
#[tokio::test]
async fn lookup_failures_reach_the_caller_scrubbed() {
    let (db, bus) = accesshub_testkit::isolated().await;
    let secrets = SecretBox::from_spec(&SecretBox::generate_spec()).unwrap();
    let api = serve(&db, &bus, secrets, EgressPolicy::loopback_http()).await;
    let (st, body) = api
        .call(
            reqwest::Method::PUT,
            "/connections/acme/tapkey/default",
            Some(tapkey("http://127.0.0.1:1", SECRET)),
        )
        .await;
    assert!(st.is_success(), "{body}");
    let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.q1w2e3r4t5y6u7i8o9p0";
    let message = format!(
        "Tapkey list_locks: HTTP 400: {{\"error\":\"bad_request\",\"client_secret\":\"{SECRET}\",\"token\":\"{jwt}\"}} {}",
        "x".repeat(600)
    );
    let m = message.clone();
    let _lookups = serve_lookups(&bus.bus, Vendor::Tapkey, move |_| {
        let m = m.clone();
        async move { Err(LookupFailure::vendor(m, ErrorClass::Permanent)) }
    })
    .await
    .unwrap();
    let (st, body) = api
        .call(reqwest::Method::GET, "/lookups/tapkey/acme/locks", None)
        .await;
    assert_eq!(st, StatusCode::BAD_GATEWAY, "{body}");
    let text = body["detail"].as_str().unwrap();
    assert!(text.contains("bad_request"), "{text}");
    assert!(!text.contains(SECRET) && !text.contains(jwt), "{text}");
    assert!(
        text.chars().count() <= vendor_http::MAX_MESSAGE_CHARS + 1,
        "{text}"
    );

    bus.cleanup().await;
    db.drop_db().await;
}
