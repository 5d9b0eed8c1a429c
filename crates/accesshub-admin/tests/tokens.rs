//! Tenant-scoped, expiring, role-based admin tokens and the audit log (issue 23 item 2;
//! security review M2, L4): real HTTP against the admin router, real Postgres and NATS.
#![allow(clippy::unwrap_used)]

use accesshub_admin::{AdminConfig, AdminState};
use accesshub_store::SecretBox;
use reqwest::{Method as M, StatusCode as S};
use serde_json::{Value, json};

const BOOT: &str = "bootstrap-admin-token-for-token-tests";

struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    async fn call(&self, method: M, path: &str, token: &str, body: Option<Value>) -> (S, Value) {
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

    async fn status(&self, method: M, path: &str, token: &str, body: Option<Value>) -> S {
        self.call(method, path, token, body).await.0
    }

    /// Mints a token with `by`; panics unless 201.
    async fn mint(&self, by: &str, body: Value) -> (String, Value) {
        let (st, b) = self.call(M::POST, "/tokens", by, Some(body)).await;
        assert_eq!(st, S::CREATED, "{b}");
        (b["token"].as_str().unwrap().to_owned(), b)
    }
}

async fn serve_with(
    db: &accesshub_testkit::TestDb,
    bus: &accesshub_testkit::TestBus,
    bootstrap: &str,
) -> Api {
    let state = AdminState::new(
        db.pool.clone(),
        SecretBox::from_spec(&SecretBox::generate_spec()).unwrap(),
        bus.bus.clone(),
        AdminConfig {
            bootstrap_token: Some(bootstrap.into()),
            lookup_timeout: Some(std::time::Duration::from_millis(300)),
            ..Default::default()
        },
    )
    // The dormakaba fixtures' lock server is on the hotel's private network.
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

fn dormakaba(tenant: &str, secret: &str) -> Value {
    json!({
        "tenant": tenant,
        "name": "default",
        "sites": ["hotel-a"],
        "settings": {
            "vendor": "dormakaba", "product": "saflok", "host": "10.0.0.5", "port": 8080,
            "username": "pms", "password": secret, "site_name": "HOTEL", "pms_terminal_id": "1",
            "encoders": [{"name": "Front desk", "id": "1"}]
        }
    })
}

/// Tenants `acme` and `other`, each with a dormakaba connection and a queued sync run.
async fn two_tenants(api: &Api) {
    for t in ["acme", "other"] {
        assert_eq!(
            api.status(M::POST, "/tenants", BOOT, Some(json!({"id": t})))
                .await,
            S::CREATED
        );
        let path = format!("/connections/{t}/dormakaba/default");
        let (st, b) = api
            .call(M::PUT, &path, BOOT, Some(dormakaba(t, "pw")))
            .await;
        assert_eq!(st, S::CREATED, "{b}");
        let sync = json!({"tenant": t, "vendor": "dormakaba", "scope": "full"});
        assert_eq!(
            api.status(M::POST, "/syncs", BOOT, Some(sync)).await,
            S::ACCEPTED
        );
    }
}

fn tenants_of(list: &Value, key: &str) -> Vec<String> {
    let mut v: Vec<String> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.pointer(key).and_then(Value::as_str).unwrap().to_owned())
        .collect();
    v.sort();
    v.dedup();
    v
}

/// M2: a token scoped to one tenant neither reads nor changes another tenant's tenant,
/// connections, sync runs or lookups, and its lists show only its tenant.
#[tokio::test]
async fn a_tenant_scoped_token_sees_and_changes_only_its_tenants() {
    let (db, bus) = accesshub_testkit::isolated().await;
    let api = serve_with(&db, &bus, BOOT).await;
    two_tenants(&api).await;

    let (viewer, _) = api
        .mint(
            BOOT,
            json!({"name": "acme-grafana", "role": "viewer", "tenants": ["acme"]}),
        )
        .await;
    let (operator, _) = api
        .mint(
            BOOT,
            json!({"name": "acme-oncall", "role": "operator", "tenants": ["acme"]}),
        )
        .await;
    // The review's example, scoped: the legacy form still works, with tenants.
    let (admin, _) = api
        .mint(
            BOOT,
            json!({"name": "acme-ops", "scopes": ["admin"], "tenants": ["acme"]}),
        )
        .await;

    // Reads of another tenant: 403, whatever the role.
    for tok in [&viewer, &operator, &admin] {
        for path in [
            "/tenants/other",
            "/connections/other/dormakaba/default",
            "/connections?tenant=other",
            "/syncs?tenant=other",
            "/lookups/dormakaba/other/encoders",
            "/audit?tenant=other",
        ] {
            assert_eq!(
                api.status(M::GET, path, tok, None).await,
                S::FORBIDDEN,
                "{path}"
            );
        }
        // Lists hold only its tenant.
        let (st, list) = api.call(M::GET, "/tenants", tok, None).await;
        assert_eq!(st, S::OK);
        assert_eq!(tenants_of(&list, "/id"), ["acme"]);
        let (_, list) = api.call(M::GET, "/connections", tok, None).await;
        assert_eq!(tenants_of(&list, "/tenant"), ["acme"]);
        let (_, list) = api.call(M::GET, "/syncs", tok, None).await;
        assert_eq!(tenants_of(&list, "/connection/tenant"), ["acme"], "{list}");
        // Its own tenant reads fine.
        assert_eq!(
            api.status(M::GET, "/connections/acme/dormakaba/default", tok, None)
                .await,
            S::OK
        );
    }

    // Roles: a viewer changes nothing; an operator syncs and applies connections, but does
    // not manage tenants or tokens.
    let acme_conn = "/connections/acme/dormakaba/default";
    let sync = |t: &str| json!({"tenant": t, "vendor": "dormakaba", "scope": "upcoming"});
    assert_eq!(
        api.status(M::PUT, acme_conn, &viewer, Some(dormakaba("acme", "pw2")))
            .await,
        S::FORBIDDEN
    );
    assert_eq!(
        api.status(M::POST, "/syncs", &viewer, Some(sync("acme")))
            .await,
        S::FORBIDDEN
    );
    assert_eq!(
        api.status(M::PUT, acme_conn, &operator, Some(dormakaba("acme", "pw2")))
            .await,
        S::OK
    );
    assert!(
        api.status(M::POST, "/syncs", &operator, Some(sync("acme")))
            .await
            .is_success()
    );
    assert_eq!(
        api.status(
            M::PUT,
            "/tenants/acme",
            &operator,
            Some(json!({"name": "A"}))
        )
        .await,
        S::FORBIDDEN
    );
    assert_eq!(
        api.status(
            M::POST,
            "/tokens",
            &operator,
            Some(json!({"name": "x", "role": "viewer"}))
        )
        .await,
        S::FORBIDDEN
    );

    // Changes to another tenant: 403 for the operator and the scoped admin (M2: 200 before).
    for tok in [&operator, &admin] {
        assert_eq!(
            api.status(
                M::PUT,
                "/connections/other/dormakaba/default",
                tok,
                Some(dormakaba("other", "stolen"))
            )
            .await,
            S::FORBIDDEN
        );
        assert_eq!(
            api.status(M::DELETE, "/connections/other/dormakaba/default", tok, None)
                .await,
            S::FORBIDDEN
        );
        assert_eq!(
            api.status(M::POST, "/syncs", tok, Some(sync("other")))
                .await,
            S::FORBIDDEN
        );
    }
    for (m, path, body) in [
        (M::PUT, "/tenants/other", Some(json!({"name": "Mine"}))),
        (M::DELETE, "/tenants/other", None),
        (M::POST, "/tenants", Some(json!({"id": "new-tenant"}))),
        (
            M::PUT,
            "/tenants/other/sources/bex/secret",
            Some(json!({"secret": "attacker-chosen-secret-long-enough-0001"})),
        ),
        (M::POST, "/tenants/other/sources/bex/rotate", None),
        (
            M::PUT,
            "/tenants/other/sources/bex/site-defaults",
            Some(json!({})),
        ),
    ] {
        assert_eq!(
            api.status(m.clone(), path, &admin, body).await,
            S::FORBIDDEN,
            "{m} {path}"
        );
    }
    // Its own tenant it administers.
    let (st, b) = api
        .call(
            M::PUT,
            "/tenants/acme/sources/bex/secret",
            &admin,
            Some(json!({"secret": "a-good-long-webhook-secret-0123456789"})),
        )
        .await;
    assert_eq!(st, S::OK, "{b}");

    // The other tenant is untouched.
    let (_, other) = api
        .call(M::GET, "/connections/other/dormakaba/default", BOOT, None)
        .await;
    assert_eq!(other["version"], 1, "{other}");
    bus.cleanup().await;
}

/// M2: a token never mints one with a higher role, more tenants or a longer life than its
/// own; tokens expire, are hashed at rest and shown once; lists show only tokens in scope.
#[tokio::test]
async fn tokens_expire_and_never_mint_more_than_their_own_rights() {
    let (db, bus) = accesshub_testkit::isolated().await;
    let api = serve_with(&db, &bus, BOOT).await;
    two_tenants(&api).await;

    let (admin, info) = api
        .mint(
            BOOT,
            json!({"name": "acme-ops", "role": "admin", "tenants": ["acme"],
                   "expires_in_seconds": 7 * 86400}),
        )
        .await;
    assert_eq!(info["tenants"], json!(["acme"]));
    assert_eq!(info["role"], "admin");
    assert_eq!(info["created_by"], "bootstrap");
    // Tenant-scoped tokens carry no legacy scope, so a rolled-back build refuses them.
    assert_eq!(info["scopes"], json!([]));

    // Default lifetime: 90 days.
    let (_, all) = api
        .mint(
            BOOT,
            json!({"name": "ci", "role": "operator", "tenants": ["*"]}),
        )
        .await;
    let exp: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(all["expires_at"].clone()).unwrap();
    let days = (exp - chrono::Utc::now()).num_days();
    assert!((89..=90).contains(&days), "{days}");
    assert_eq!(all["tenants"], json!(["*"]));
    // Beyond the maximum lifetime (365 days): refused.
    let (st, b) = api
        .call(
            M::POST,
            "/tokens",
            BOOT,
            Some(json!({"name": "forever", "role": "viewer", "expires_in_seconds": 400 * 86400})),
        )
        .await;
    assert_eq!(st, S::UNPROCESSABLE_ENTITY, "{b}");

    // More tenants, all tenants, or a longer life than its own: 403.
    for body in [
        json!({"name": "x", "role": "viewer", "tenants": ["other"]}),
        json!({"name": "x", "role": "viewer", "tenants": ["acme", "other"]}),
        json!({"name": "x", "role": "admin", "tenants": ["*"]}),
        json!({"name": "x", "role": "viewer", "tenants": ["acme"],
               "expires_in_seconds": 30 * 86400}),
    ] {
        let (st, b) = api
            .call(M::POST, "/tokens", &admin, Some(body.clone()))
            .await;
        assert_eq!(st, S::FORBIDDEN, "{body} → {b}");
    }
    // Within its rights: fine; no tenants given means its own.
    let (viewer, v) = api
        .mint(
            &admin,
            json!({"name": "acme-viewer", "role": "viewer", "expires_in_seconds": 3600}),
        )
        .await;
    assert_eq!(v["tenants"], json!(["acme"]));
    assert_eq!(v["created_by"], "acme-ops");

    // Hashed at rest: the token is nowhere in the table, its SHA-256 is.
    let dump: String = sqlx::query_scalar("SELECT string_agg(t::text, ' ') FROM api_tokens t")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert!(!dump.contains(&viewer) && !dump.contains(&admin));
    assert!(dump.contains(&accesshub_admin::auth::hash_token(&viewer)));
    // Listing never shows a token or hash, and a scoped admin sees only tokens in its scope.
    let (st, list) = api.call(M::GET, "/tokens", &admin, None).await;
    assert_eq!(st, S::OK);
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["acme-viewer", "acme-ops"]);
    assert!(!list.to_string().contains("ahk_") && !list.to_string().contains("hash"));
    // …and cannot revoke one outside it (looks unknown).
    let ci_id = all["id"].as_str().unwrap();
    assert_eq!(
        api.status(M::DELETE, &format!("/tokens/{ci_id}"), &admin, None)
            .await,
        S::NOT_FOUND
    );

    // Expired: 401.
    assert_eq!(api.status(M::GET, "/tenants", &viewer, None).await, S::OK);
    sqlx::query("UPDATE api_tokens SET expires_at = now() - interval '1 second' WHERE name = $1")
        .bind("acme-viewer")
        .execute(&db.pool)
        .await
        .unwrap();
    assert_eq!(
        api.status(M::GET, "/tenants", &viewer, None).await,
        S::UNAUTHORIZED
    );
    // Revoked by id: 401.
    let admin_id = info["id"].as_str().unwrap();
    assert_eq!(
        api.status(M::DELETE, &format!("/tokens/{admin_id}"), BOOT, None)
            .await,
        S::NO_CONTENT
    );
    assert_eq!(
        api.status(M::GET, "/tenants", &admin, None).await,
        S::UNAUTHORIZED
    );
    bus.cleanup().await;
}

/// M2: the bootstrap token can be revoked through the API, on every replica, and replaced by
/// configuring another one (rotation).
#[tokio::test]
async fn the_bootstrap_token_is_revoked_through_the_api_and_rotated_by_config() {
    let (db, bus) = accesshub_testkit::isolated().await;
    let api = serve_with(&db, &bus, BOOT).await;
    let replica = serve_with(&db, &bus, BOOT).await;

    let (st, me) = api.call(M::GET, "/tokens/self", BOOT, None).await;
    assert_eq!(st, S::OK);
    assert_eq!(me["name"], "bootstrap");
    assert_eq!(me["role"], "admin");
    let (successor, _) = api
        .mint(
            BOOT,
            json!({"name": "platform-admin", "role": "admin", "tenants": ["*"]}),
        )
        .await;
    // A tenant-scoped admin may not revoke it.
    let (scoped, _) = api
        .mint(
            BOOT,
            json!({"name": "acme-admin", "role": "admin", "tenants": ["acme"]}),
        )
        .await;
    assert_eq!(
        api.status(M::DELETE, "/tokens/bootstrap", &scoped, None)
            .await,
        S::FORBIDDEN
    );
    let id = me["id"].as_str().unwrap();
    assert_eq!(
        api.status(M::DELETE, &format!("/tokens/{id}"), &successor, None)
            .await,
        S::NO_CONTENT
    );
    // Refused here and on the other replica, although both still have it configured.
    assert_eq!(
        api.status(M::GET, "/tenants", BOOT, None).await,
        S::UNAUTHORIZED
    );
    assert_eq!(
        replica.status(M::GET, "/tenants", BOOT, None).await,
        S::UNAUTHORIZED
    );
    assert_eq!(
        api.status(M::DELETE, "/tokens/bootstrap", &successor, None)
            .await,
        S::NOT_FOUND
    );
    assert_eq!(
        api.status(M::GET, "/tenants", &successor, None).await,
        S::OK
    );
    // Rotation: a new ACCESSHUB_ADMIN_TOKEN works (break glass), the old one stays dead.
    let rotated = serve_with(&db, &bus, "a-new-bootstrap-token-after-rotation").await;
    assert_eq!(
        rotated
            .status(
                M::GET,
                "/tenants",
                "a-new-bootstrap-token-after-rotation",
                None
            )
            .await,
        S::OK
    );
    assert_eq!(
        rotated.status(M::GET, "/tenants", BOOT, None).await,
        S::UNAUTHORIZED
    );
    bus.cleanup().await;
}

/// L4: every change through the API leaves a durable audit record naming the token, with
/// before/after and no secret; the log is readable per tenant, scoped like everything else.
#[tokio::test]
async fn every_change_is_audited_with_the_token_and_masked_secrets() {
    let (db, bus) = accesshub_testkit::isolated().await;
    let api = serve_with(&db, &bus, BOOT).await;
    let (ci, ci_info) = api
        .mint(
            BOOT,
            json!({"name": "ci", "role": "admin", "tenants": ["*"]}),
        )
        .await;
    let ci_id = ci_info["id"].as_str().unwrap().to_owned();
    let started = chrono::Utc::now() - chrono::Duration::seconds(1);

    assert_eq!(
        api.status(
            M::POST,
            "/tenants",
            &ci,
            Some(json!({"id": "acme", "name": "Acme"}))
        )
        .await,
        S::CREATED
    );
    assert_eq!(
        api.status(
            M::PUT,
            "/tenants/acme",
            &ci,
            Some(json!({"name": "Acme Hotels"}))
        )
        .await,
        S::OK
    );
    let (st, _) = api
        .call(
            M::PUT,
            "/tenants/acme/sources/bex/secret",
            &ci,
            Some(json!({"secret": "whsec-audit-must-not-see-this-0123456789"})),
        )
        .await;
    assert_eq!(st, S::OK);
    let (st, rotated) = api
        .call(M::POST, "/tenants/acme/sources/bex/rotate", &ci, None)
        .await;
    assert_eq!(st, S::OK);
    let generated = rotated["generated_secret"].as_str().unwrap().to_owned();
    let conn = "/connections/acme/dormakaba/default";
    assert_eq!(
        api.status(M::PUT, conn, &ci, Some(dormakaba("acme", "vendor-pw-one")))
            .await,
        S::CREATED
    );
    let mut changed = dormakaba("acme", "vendor-pw-two");
    changed["settings"]["port"] = json!(8443);
    assert_eq!(api.status(M::PUT, conn, &ci, Some(changed)).await, S::OK);
    let sync = json!({"tenant": "acme", "vendor": "dormakaba", "scope": "full"});
    assert_eq!(
        api.status(M::POST, "/syncs", &ci, Some(sync)).await,
        S::ACCEPTED
    );
    let (viewer, viewer_info) = api
        .mint(
            &ci,
            json!({"name": "acme-viewer", "role": "viewer", "tenants": ["acme"]}),
        )
        .await;
    let viewer_id = viewer_info["id"].as_str().unwrap().to_owned();
    assert_eq!(
        api.status(M::DELETE, &format!("/tokens/{viewer_id}"), &ci, None)
            .await,
        S::NO_CONTENT
    );
    assert_eq!(api.status(M::DELETE, conn, &ci, None).await, S::NO_CONTENT);
    // Reads and dry runs are not changes.
    let _ = api.call(M::GET, "/tenants/acme", &ci, None).await;

    let (st, log) = api
        .call(
            M::GET,
            &format!(
                "/audit?tenant=acme&since={}",
                started.to_rfc3339().replace('+', "%2B")
            ),
            &ci,
            None,
        )
        .await;
    assert_eq!(st, S::OK, "{log}");
    let records = log.as_array().unwrap();
    let mut actions: Vec<&str> = records
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    actions.reverse();
    assert_eq!(
        actions,
        [
            "tenant.create",
            "tenant.update",
            "source.secret.set",
            "source.secret.rotate",
            "connection.apply",
            "connection.apply",
            "sync.request",
            "token.create",
            "token.revoke",
            "connection.delete",
        ],
        "{log:#}"
    );
    for r in records {
        assert_eq!(r["actor"], "ci");
        assert_eq!(r["token_id"], ci_id.as_str());
        assert_eq!(r["tenant"], "acme");
    }
    let update = records
        .iter()
        .find(|r| r["action"] == "connection.apply" && !r["before"].is_null())
        .unwrap();
    assert_eq!(update["target"], "acme/dormakaba/default");
    assert_eq!(update["before"]["settings"]["port"], 8080);
    assert_eq!(update["after"]["settings"]["port"], 8443);
    assert_eq!(update["after"]["settings"]["password"], "***");
    let tenant_update = records
        .iter()
        .find(|r| r["action"] == "tenant.update")
        .unwrap();
    assert_eq!(tenant_update["before"]["name"], "Acme");
    assert_eq!(tenant_update["after"]["name"], "Acme Hotels");
    // No secret and no token anywhere in the stored log.
    let stored: String = sqlx::query_scalar("SELECT string_agg(a::text, ' ') FROM audit_log a")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    for secret in [
        "whsec-audit-must-not-see-this-0123456789",
        generated.as_str(),
        "vendor-pw-one",
        "vendor-pw-two",
        ci.as_str(),
        viewer.as_str(),
    ] {
        assert!(!stored.contains(secret), "audit log holds a secret");
    }

    // Scoped: a token of another tenant sees none of it; `limit` and `since` apply.
    let (other, _) = api
        .mint(
            BOOT,
            json!({"name": "other-viewer", "role": "viewer", "tenants": ["other"]}),
        )
        .await;
    let (st, seen) = api.call(M::GET, "/audit", &other, None).await;
    assert_eq!(st, S::OK);
    // Only the minting of its own token, filed under its tenant.
    assert_eq!(tenants_of(&seen, "/tenant"), ["other"], "{seen}");
    let (_, two) = api.call(M::GET, "/audit?limit=2", &ci, None).await;
    assert_eq!(two.as_array().unwrap().len(), 2);
    let (_, none) = api
        .call(M::GET, "/audit?since=2999-01-01T00:00:00Z", &ci, None)
        .await;
    assert_eq!(none, json!([]));
    bus.cleanup().await;
}
