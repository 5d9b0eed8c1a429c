//! No change without its audit record (issue 23 item 2): when the `audit_log` insert fails,
//! every change through the admin API is refused with 503 problem+json and nothing is
//! changed; a change that fails leaves no record. The insert is made to fail by a trigger on
//! the isolated test database (the test role is a superuser, so a REVOKE would not bite).
#![allow(clippy::unwrap_used)]

mod common;

use accesshub_admin::{AdminConfig, AdminState};
use accesshub_store::SecretBox;
use reqwest::{Method as M, StatusCode as S};
use serde_json::{Value, json};

const BOOT: &str = "bootstrap-admin-token-for-audit-atomic";

struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    /// Status, content type and JSON answer.
    async fn call(&self, m: M, path: &str, token: &str, body: Option<Value>) -> (S, String, Value) {
        let mut req = self
            .http
            .request(m, format!("{}{path}", self.base))
            .bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let ct = resp
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let text = resp.text().await.unwrap();
        (
            status,
            ct,
            serde_json::from_str(&text).unwrap_or(Value::Null),
        )
    }

    async fn ok(&self, m: M, path: &str, body: Option<Value>) -> Value {
        let (st, _, b) = self.call(m, path, BOOT, body).await;
        assert!(st.is_success(), "{path}: {st} {b}");
        b
    }

    /// Asserts the change is refused with 503 problem+json naming the audit record.
    async fn refused(&self, m: M, path: &str, token: &str, body: Option<Value>) {
        let (st, ct, b) = self.call(m.clone(), path, token, body).await;
        assert_eq!(st, S::SERVICE_UNAVAILABLE, "{m} {path}: {b}");
        assert!(ct.starts_with("application/problem+json"), "{ct}");
        assert!(
            b["detail"]
                .as_str()
                .unwrap_or_default()
                .contains("audit record"),
            "{b}"
        );
    }
}

fn dormakaba(port: u16) -> Value {
    json!({
        "tenant": "acme",
        "name": "default",
        "settings": {
            "vendor": "dormakaba", "product": "saflok", "host": "10.0.0.5", "port": port,
            "username": "pms", "password": "vendor-pw", "site_name": "HOTEL",
            "pms_terminal_id": "1", "encoders": [{"name": "Front desk", "id": "1"}]
        }
    })
}

async fn audit_rows(pool: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM audit_log")
        .fetch_one(pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_change_whose_audit_record_cannot_be_written_is_not_made() {
    let (db, bus) = accesshub_testkit::isolated().await;
    let state = AdminState::new(
        db.pool.clone(),
        SecretBox::from_spec(&SecretBox::generate_spec()).unwrap(),
        bus.bus.clone(),
        AdminConfig {
            bootstrap_token: Some(BOOT.into()),
            lookup_timeout: Some(std::time::Duration::from_millis(300)),
            ..Default::default()
        },
    )
    .with_egress("https://10.0.0.5:*".parse().unwrap());
    let api = Api {
        base: common::serve(state, BOOT).await.base,
        http: reqwest::Client::new(),
    };

    // While the log works: a tenant, its webhook secret, a connection, a token.
    api.ok(
        M::POST,
        "/tenants",
        Some(json!({"id": "acme", "name": "Acme"})),
    )
    .await;
    api.ok(
        M::PUT,
        "/tenants/acme/sources/bex/secret",
        Some(json!({"secret": "whsec-before-the-outage-0123456789abcdef"})),
    )
    .await;
    let conn = "/connections/acme/dormakaba/default";
    api.ok(M::PUT, conn, Some(dormakaba(8080))).await;
    let minted = api
        .ok(
            M::POST,
            "/tokens",
            Some(json!({"name": "ops", "role": "admin", "tenants": ["*"]})),
        )
        .await;
    let ops = minted["token"].as_str().unwrap().to_owned();
    let ops_id = minted["id"].as_str().unwrap().to_owned();
    let secret_before: String =
        sqlx::query_scalar("SELECT secret_enc FROM tenant_sources WHERE tenant_id = 'acme'")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    let tokens_before: i64 = sqlx::query_scalar("SELECT count(*) FROM api_tokens")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    let records_before = audit_rows(&db.pool).await;

    // The audit log stops accepting records.
    sqlx::raw_sql(
        "CREATE FUNCTION refuse_audit() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN RAISE EXCEPTION 'audit_log is not writable (test)'; END $$;
         CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_log
             FOR EACH ROW EXECUTE FUNCTION refuse_audit();",
    )
    .execute(&db.pool)
    .await
    .unwrap();

    api.refused(M::POST, "/tenants", &ops, Some(json!({"id": "beta"})))
        .await;
    api.refused(
        M::PUT,
        "/tenants/acme",
        &ops,
        Some(json!({"name": "Renamed"})),
    )
    .await;
    api.refused(M::PUT, conn, &ops, Some(dormakaba(8443))).await;
    api.refused(M::DELETE, &format!("{conn}?access=keep"), &ops, None)
        .await;
    api.refused(
        M::PUT,
        "/tenants/acme/sources/bex/secret",
        &ops,
        Some(json!({"secret": "whsec-during-the-outage-0123456789abcdef"})),
    )
    .await;
    api.refused(M::POST, "/tenants/acme/sources/bex/rotate", &ops, None)
        .await;
    api.refused(
        M::PUT,
        "/tenants/acme/sources/bex/site-defaults",
        &ops,
        Some(json!({})),
    )
    .await;
    api.refused(
        M::PUT,
        "/tenants/acme/sources/bex/organization",
        &ops,
        Some(json!({"organization_id": "org-1"})),
    )
    .await;
    let sync = json!({"tenant": "acme", "vendor": "dormakaba", "scope": "full"});
    api.refused(M::POST, "/syncs", &ops, Some(sync)).await;
    api.refused(
        M::POST,
        "/tokens",
        &ops,
        Some(json!({"name": "sneaky", "role": "admin", "tenants": ["*"]})),
    )
    .await;
    api.refused(M::DELETE, &format!("/tokens/{ops_id}"), BOOT, None)
        .await;
    api.refused(M::DELETE, "/tokens/bootstrap", &ops, None)
        .await;

    // Nothing changed.
    let (st, _, _) = api.call(M::GET, "/tenants/beta", BOOT, None).await;
    assert_eq!(st, S::NOT_FOUND);
    let acme = api.ok(M::GET, "/tenants/acme", None).await;
    assert_eq!(acme["name"], "Acme");
    assert!(acme["sources"][0]["organization_id"].is_null(), "{acme}");
    let c = api.ok(M::GET, conn, None).await;
    assert_eq!(c["settings"]["port"], 8080);
    let secret_after: String =
        sqlx::query_scalar("SELECT secret_enc FROM tenant_sources WHERE tenant_id = 'acme'")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(secret_after, secret_before, "the webhook secret changed");
    let runs: i64 = sqlx::query_scalar("SELECT count(*) FROM sync_runs")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(runs, 0, "a sync run was queued");
    let tokens_after: i64 = sqlx::query_scalar("SELECT count(*) FROM api_tokens")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(tokens_after, tokens_before, "a token was minted or revoked");
    // Both tokens still work: neither was revoked.
    let (st, _, _) = api.call(M::GET, "/tokens/self", &ops, None).await;
    assert_eq!(st, S::OK);
    let (st, _, _) = api.call(M::GET, "/tokens/self", BOOT, None).await;
    assert_eq!(st, S::OK);

    // The log works again; a change that fails (409) leaves no record, one that succeeds does.
    sqlx::query("DROP TRIGGER refuse_audit ON audit_log")
        .execute(&db.pool)
        .await
        .unwrap();
    assert_eq!(audit_rows(&db.pool).await, records_before);
    let (st, _, b) = api
        .call(M::POST, "/tenants", &ops, Some(json!({"id": "acme"})))
        .await;
    assert_eq!(st, S::CONFLICT, "{b}");
    let (st, _, b) = api
        .call(M::PUT, "/tenants/acme", &ops, Some(json!({"name": "Acme"})))
        .await;
    assert_eq!(st, S::OK, "{b}");
    assert_eq!(
        audit_rows(&db.pool).await,
        records_before,
        "a failed or empty change left a record"
    );
    let (st, _, b) = api
        .call(
            M::PUT,
            "/tenants/acme",
            &ops,
            Some(json!({"name": "Renamed"})),
        )
        .await;
    assert_eq!(st, S::OK, "{b}");
    let last: (String, String, Value) =
        sqlx::query_as("SELECT actor, action, after FROM audit_log ORDER BY id DESC LIMIT 1")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!((last.0.as_str(), last.1.as_str()), ("ops", "tenant.update"));
    assert_eq!(last.2["name"], "Renamed");
    assert_eq!(audit_rows(&db.pool).await, records_before + 1);

    bus.cleanup().await;
    db.drop_db().await;
}
