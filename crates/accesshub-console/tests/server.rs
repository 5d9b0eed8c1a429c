//! The console served by the real admin service (real Postgres and NATS): login with API
//! tokens, session cookie attributes, CSRF refusals, the viewer role seeing but not changing,
//! tenant scopes, revocation ending sessions, field errors that keep the input, the audit log.
#![allow(clippy::unwrap_used)]

use accesshub_admin::{
    AdminConfig,
    service::{self, AdminHandle, ServiceConfig},
};
use accesshub_store::SecretBox;
use reqwest::{StatusCode as S, redirect::Policy};
use serde_json::{Value, json};

const BOOT: &str = "console-test-bootstrap-token";

struct Env {
    base: String,
    http: reqwest::Client,
    handle: AdminHandle,
    db: accesshub_testkit::TestDb,
    bus: accesshub_testkit::TestBus,
    /// The admin service's key box (to read a stored secret back).
    secrets: SecretBox,
}

/// A browser without JavaScript: keeps the session cookie, does not follow redirects.
struct Browser<'a> {
    env: &'a Env,
    cookie: Option<String>,
}

impl Env {
    async fn start() -> Env {
        accesshub_telemetry::init_for_tests();
        let (db, bus) = accesshub_testkit::isolated().await;
        let secrets = SecretBox::from_spec(&SecretBox::generate_spec()).unwrap();
        let cfg = ServiceConfig::for_test(
            bus.config(service::SERVICE, &db.url),
            secrets.clone(),
            AdminConfig {
                bootstrap_token: Some(BOOT.into()),
                lookup_timeout: Some(std::time::Duration::from_millis(300)),
                ..Default::default()
            },
        );
        let handle = service::start(cfg).await.unwrap();
        let env = Env {
            base: format!("http://{}", handle.addr()),
            http: reqwest::Client::builder()
                .redirect(Policy::none())
                .build()
                .unwrap(),
            handle,
            db,
            bus,
            secrets,
        };
        for (id, name) in [("acme", "Acme Hotels"), ("globex", "Globex Living")] {
            let r = env
                .api("POST", "/tenants", BOOT, json!({"id": id, "name": name}))
                .await;
            assert_eq!(r.0, S::CREATED, "{}", r.1);
        }
        env
    }

    async fn api(&self, method: &str, path: &str, token: &str, body: Value) -> (S, Value) {
        let r = self
            .http
            .request(
                method.parse().unwrap(),
                format!("{}/admin/v1{path}", self.base),
            )
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap();
        let st = r.status();
        (st, r.json().await.unwrap_or(Value::Null))
    }

    async fn mint(&self, name: &str, role: &str, tenants: &[&str]) -> (String, String) {
        let (st, b) = self
            .api(
                "POST",
                "/tokens",
                BOOT,
                json!({"name": name, "role": role, "tenants": tenants}),
            )
            .await;
        assert_eq!(st, S::CREATED, "{b}");
        (
            b["token"].as_str().unwrap().to_owned(),
            b["id"].as_str().unwrap_or_default().to_owned(),
        )
    }

    /// A CloudPass connection for `tenant`, through the API.
    async fn cloudpass(&self, tenant: &str) {
        let (st, b) = self
            .api(
                "PUT",
                &format!("/connections/{tenant}/cloudpass/default"),
                BOOT,
                json!({"tenant": tenant, "settings": {
                    "vendor": "cloudpass", "base_url": "https://cloudpass.example",
                    "client_id": "cid", "client_secret": "csecret",
                    "administrations": {"1001": {"site_id": "cp-site-1"}},
                    "default_time_restriction_id": "tr-1"}}),
            )
            .await;
        assert!(st.is_success(), "{st} {b}");
    }

    async fn login(&self, token: &str) -> Browser<'_> {
        let mut b = Browser {
            env: self,
            cookie: None,
        };
        let r = b.post_raw("/login", &[("token", token)]).await;
        assert_eq!(r.status(), S::SEE_OTHER, "login with a valid token");
        let set = r.headers()["set-cookie"].to_str().unwrap().to_owned();
        b.cookie = Some(set.split(';').next().unwrap().to_owned());
        b
    }

    async fn finish(self) {
        self.handle.shutdown().await;
        self.bus.cleanup().await;
        self.db.drop_db().await;
    }
}

impl Browser<'_> {
    fn req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let mut r = self
            .env
            .http
            .request(method, format!("{}/console{path}", self.env.base));
        if let Some(c) = &self.cookie {
            r = r.header("cookie", c);
        }
        r
    }

    async fn get(&self, path: &str) -> (S, String) {
        let r = self.req(reqwest::Method::GET, path).send().await.unwrap();
        (r.status(), r.text().await.unwrap())
    }

    async fn post_raw(&self, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
        self.req(reqwest::Method::POST, path)
            .form(form)
            .send()
            .await
            .unwrap()
    }

    /// The CSRF token of the page at `path`.
    async fn csrf(&self, path: &str) -> String {
        let (_, html) = self.get(path).await;
        let at = html
            .find("name=\"_csrf\" value=\"")
            .expect("a form with a CSRF token");
        let rest = &html[at + "name=\"_csrf\" value=\"".len()..];
        rest[..rest.find('"').unwrap()].to_owned()
    }

    /// POST with the page's CSRF token added.
    async fn post(&self, path: &str, form: &[(&str, &str)]) -> (S, String) {
        let csrf = self.csrf("/connections").await;
        let mut f: Vec<(&str, &str)> = form.to_vec();
        f.push(("_csrf", &csrf));
        let r = self.post_raw(path, &f).await;
        (r.status(), r.text().await.unwrap())
    }
}

/// The Sync buttons' form for `tenant`'s CloudPass connection.
fn sync_form(tenant: &'static str, scope: &'static str) -> [(&'static str, &'static str); 4] {
    [
        ("tenant", tenant),
        ("vendor", "cloudpass"),
        ("name", "default"),
        ("scope", scope),
    ]
}

#[tokio::test]
async fn login_session_cookie_and_logout() {
    let env = Env::start().await;
    let anon = Browser {
        env: &env,
        cookie: None,
    };
    // Without a session every page redirects to the login; static files are public.
    let r = anon
        .req(reqwest::Method::GET, "/connections")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), S::SEE_OTHER);
    assert_eq!(r.headers()["location"], "/console/login");
    let (st, js) = anon.get("/static/htmx.min.js").await;
    assert_eq!(st, S::OK);
    assert!(
        js.contains("htmx"),
        "htmx is served from the binary, no CDN"
    );

    // A wrong token: 401, the error next to the token field.
    let r = anon.post_raw("/login", &[("token", "not-a-token")]).await;
    assert_eq!(r.status(), S::UNAUTHORIZED);
    let html = r.text().await.unwrap();
    assert!(html.contains("data-field=\"token\""), "{html}");
    assert!(html.contains("unknown, revoked or expired"), "{html}");

    // The bootstrap token logs in; the cookie is HttpOnly, SameSite=Strict, scoped to /console.
    let r = anon.post_raw("/login", &[("token", BOOT)]).await;
    assert_eq!(r.status(), S::SEE_OTHER);
    let set = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(set.contains("HttpOnly"), "{set}");
    assert!(set.contains("SameSite=Strict"), "{set}");
    assert!(set.contains("Path=/console"), "{set}");
    assert!(
        !set.contains(BOOT),
        "the cookie is a session id, not the token"
    );
    let b = env.login(BOOT).await;
    let (st, html) = b.get("/connections").await;
    assert_eq!(st, S::OK);
    assert!(html.contains("Acme Hotels") && html.contains("Globex Living"));
    // Stored server-side as hashes only.
    let raw: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM console_sessions WHERE id_hash = $1 OR token_hash = $2",
    )
    .bind(b.cookie.as_deref().unwrap().split('=').nth(1).unwrap())
    .bind(BOOT)
    .fetch_one(&env.db.pool)
    .await
    .unwrap();
    assert_eq!(
        raw, 0,
        "neither the cookie nor the token is stored in clear"
    );

    // Logout needs the CSRF token too, then the session is gone.
    let (st, _) = b.post("/logout", &[]).await;
    assert_eq!(st, S::SEE_OTHER);
    let (st, _) = b.get("/connections").await;
    assert_eq!(st, S::SEE_OTHER, "the session ended");
    env.finish().await;
}

#[tokio::test]
async fn state_changing_requests_without_the_csrf_token_are_refused() {
    let env = Env::start().await;
    env.cloudpass("acme").await;
    let b = env.login(BOOT).await;
    let form = sync_form("acme", "upcoming");
    // No token, and a wrong token: 403, nothing queued.
    let r = b.post_raw("/sync", &form).await;
    assert_eq!(r.status(), S::FORBIDDEN);
    let mut wrong = form.to_vec();
    wrong.push(("_csrf", "guessed"));
    let r = b.post_raw("/sync", &wrong).await;
    assert_eq!(r.status(), S::FORBIDDEN);
    assert!(r.text().await.unwrap().contains("security token"));
    let runs: i64 = sqlx::query_scalar("SELECT count(*) FROM sync_runs")
        .fetch_one(&env.db.pool)
        .await
        .unwrap();
    assert_eq!(runs, 0);
    // Another session's token does not work either.
    let other = env.login(BOOT).await;
    let other_csrf = other.csrf("/connections").await;
    let mut foreign = form.to_vec();
    foreign.push(("_csrf", &other_csrf));
    let r = b.post_raw("/sync", &foreign).await;
    assert_eq!(r.status(), S::FORBIDDEN);
    // The header htmx sends works like the form field.
    let csrf = b.csrf("/sync").await;
    let r = b
        .req(reqwest::Method::POST, "/sync")
        .header("x-csrf-token", &csrf)
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), S::SEE_OTHER);
    // With the token: queued, and recorded in the API's audit log under the token's name.
    let (st, _) = b.post("/sync", &form).await;
    assert_eq!(st, S::SEE_OTHER);
    let (actor, action): (String, String) = sqlx::query_as(
        "SELECT actor, action FROM audit_log WHERE action = 'sync.request' ORDER BY id LIMIT 1",
    )
    .fetch_one(&env.db.pool)
    .await
    .unwrap();
    assert_eq!(
        (actor.as_str(), action.as_str()),
        ("bootstrap", "sync.request")
    );
    env.finish().await;
}

#[tokio::test]
async fn viewer_sees_but_cannot_change_and_is_refused_server_side() {
    let env = Env::start().await;
    env.cloudpass("acme").await;
    let (viewer, _) = env.mint("acme-viewer", "viewer", &["acme"]).await;
    let b = env.login(&viewer).await;
    let (st, html) = b.get("/connections").await;
    assert_eq!(st, S::OK);
    assert!(html.contains("read-only"), "says it is read-only");
    assert!(html.contains("Test connection"), "testing is reading");
    for control in ["Add CloudPass connection", ">Disable<", "Edit / mappings"] {
        assert!(!html.contains(control), "no {control:?} for a viewer");
    }
    let (_, html) = b.get("/sync").await;
    assert!(!html.contains("Sync Now"), "no sync buttons for a viewer");
    let (_, html) = b.get("/connections/acme/cloudpass/default").await;
    assert!(!html.contains("id=\"save\""), "no save button for a viewer");
    assert!(html.contains("fieldset disabled"), "the form is read-only");

    // Whatever the page showed, the server refuses.
    let (st, _) = b.post("/sync", &sync_form("acme", "active")).await;
    assert_eq!(st, S::FORBIDDEN);
    let (st, _) = b
        .post(
            "/connections/acme/cloudpass/default/enabled",
            &[("enabled", "false")],
        )
        .await;
    assert_eq!(st, S::FORBIDDEN);
    let (st, _) = b.post("/dlq/purge", &[("tenant", "acme")]).await;
    assert_eq!(st, S::FORBIDDEN);
    let (st, _) = b
        .post("/webhooks/rotate", &[("tenant", "acme"), ("source", "bex")])
        .await;
    assert_eq!(st, S::FORBIDDEN);
    let enabled: bool =
        sqlx::query_scalar("SELECT enabled FROM connections WHERE tenant_id = 'acme'")
            .fetch_one(&env.db.pool)
            .await
            .unwrap();
    assert!(enabled);
    let runs: i64 = sqlx::query_scalar("SELECT count(*) FROM sync_runs")
        .fetch_one(&env.db.pool)
        .await
        .unwrap();
    assert_eq!(runs, 0);
    env.finish().await;
}

#[tokio::test]
async fn tenant_scoped_tokens_see_only_their_tenants() {
    let env = Env::start().await;
    env.cloudpass("acme").await;
    env.cloudpass("globex").await;
    let (op, _) = env.mint("acme-ops", "operator", &["acme"]).await;
    let b = env.login(&op).await;
    let (st, html) = b.get("/connections").await;
    assert_eq!(st, S::OK);
    assert!(html.contains("Acme Hotels"));
    assert!(
        !html.contains("Globex") && !html.contains("globex"),
        "{html}"
    );
    let (st, _) = b.get("/connections?tenant=globex").await;
    assert_eq!(st, S::FORBIDDEN);
    let (st, _) = b.get("/connections/globex/cloudpass/default").await;
    assert_eq!(st, S::FORBIDDEN);
    let (st, _) = b.post("/sync", &sync_form("globex", "active")).await;
    assert_eq!(st, S::FORBIDDEN);
    let (_, html) = b.get("/sync").await;
    assert!(html.contains("acme/cloudpass/default") && !html.contains("globex"));
    // Its own tenant works.
    let (st, _) = b.post("/sync", &sync_form("acme", "active")).await;
    assert_eq!(st, S::SEE_OTHER);
    env.finish().await;
}

#[tokio::test]
async fn revoking_the_token_ends_its_sessions() {
    let env = Env::start().await;
    let (op, id) = env.mint("short-lived", "operator", &["acme"]).await;
    let b = env.login(&op).await;
    assert_eq!(b.get("/connections").await.0, S::OK);
    let (st, body) = env
        .api("DELETE", &format!("/tokens/{id}"), BOOT, json!({}))
        .await;
    assert!(st.is_success(), "{st} {body}");
    assert_eq!(b.get("/connections").await.0, S::SEE_OTHER);
    // And it cannot log in again.
    let r = b.post_raw("/login", &[("token", &op)]).await;
    assert_eq!(r.status(), S::UNAUTHORIZED);
    env.finish().await;
}

#[tokio::test]
async fn validation_errors_are_shown_next_to_the_field_and_keep_the_input() {
    let env = Env::start().await;
    let b = env.login(BOOT).await;
    let (st, html) = b
        .post(
            "/connections/new",
            &[
                ("tenant", "acme"),
                ("base_url", "https://cloudpass.example/typed-by-me"),
                ("client_id", ""),
                ("client_secret", "s3cret"),
                ("default_time_restriction_id", "tr-1"),
                ("window_before_minutes", "half an hour"),
                ("admin.0.id", "1001"),
                ("admin.0.site", "cp-site-1"),
            ],
        )
        .await;
    assert_eq!(st, S::BAD_REQUEST, "{html}");
    assert!(
        html.contains("data-field=\"window_before_minutes\""),
        "{html}"
    );
    assert!(html.contains("whole number of minutes"));
    assert!(
        html.contains("https://cloudpass.example/typed-by-me"),
        "input kept"
    );
    assert!(html.contains("value=\"half an hour\""), "input kept");
    assert!(html.contains("value=\"1001\""), "mapping rows kept");
    assert!(
        !html.contains("s3cret"),
        "a typed secret is never echoed back"
    );
    // Once the number is fixed the store's own validation speaks, next to its field.
    let (st, html) = b
        .post(
            "/connections/new",
            &[
                ("tenant", "acme"),
                ("base_url", "https://cloudpass.example"),
                ("client_id", ""),
                ("client_secret", "s3cret"),
                ("default_time_restriction_id", "tr-1"),
                ("window_before_minutes", "30"),
            ],
        )
        .await;
    assert_eq!(st, S::BAD_REQUEST, "{html}");
    assert!(html.contains("data-field=\"client_id\""), "{html}");
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM connections")
        .fetch_one(&env.db.pool)
        .await
        .unwrap();
    assert_eq!(n, 0);
    env.finish().await;
}

#[tokio::test]
async fn disabling_or_deleting_a_connection_with_live_access_asks_what_becomes_of_it() {
    let env = Env::start().await;
    env.cloudpass("acme").await;
    env.cloudpass("globex").await;
    // A booking holding access at CloudPass through each connection (binding rows only: a
    // booking row that is gone counts for every connection).
    for tenant in ["acme", "globex"] {
        sqlx::query(
            "INSERT INTO bindings (tenant_id, vendor, kind, booking_key, applied_revision, status)
             VALUES ($1, 'cloudpass', 'reservation', 'R-1', 1, 'active')",
        )
        .bind(tenant)
        .execute(&env.db.pool)
        .await
        .unwrap();
    }
    let b = env.login(BOOT).await;
    let state = |tenant: &'static str| {
        let pool = env.db.pool.clone();
        async move {
            sqlx::query_as::<_, (bool, Option<String>)>(
                "SELECT enabled, offboarding FROM connections WHERE tenant_id = $1",
            )
            .bind(tenant)
            .fetch_optional(&pool)
            .await
            .unwrap()
        }
    };

    // Without a choice: 409 and the two options, nothing changed.
    let (st, html) = b
        .post(
            "/connections/acme/cloudpass/default/enabled",
            &[("enabled", "false")],
        )
        .await;
    assert_eq!(st, S::CONFLICT, "{html}");
    assert!(html.contains("1 booking(s) hold access") && html.contains("data-access=\"remove\""));
    assert_eq!(state("acme").await, Some((true, None)));
    let (st, _) = b
        .post("/connections/acme/cloudpass/default/delete", &[])
        .await;
    assert_eq!(st, S::CONFLICT);

    // Remove first: the connection is offboarding and its offboard run is queued.
    let (st, _) = b
        .post(
            "/connections/acme/cloudpass/default/enabled",
            &[("enabled", "false"), ("access", "remove")],
        )
        .await;
    assert_eq!(st, S::SEE_OTHER);
    assert_eq!(state("acme").await, Some((true, Some("disable".into()))));
    let scope: String = sqlx::query_scalar("SELECT scope FROM sync_runs WHERE tenant_id = 'acme'")
        .fetch_one(&env.db.pool)
        .await
        .unwrap();
    assert_eq!(scope, "offboard");

    // Keep: deleted now, the access left at the vendor (the operator's audited choice).
    let (st, _) = b
        .post(
            "/connections/globex/cloudpass/default/delete",
            &[("access", "keep")],
        )
        .await;
    assert_eq!(st, S::SEE_OTHER);
    assert_eq!(state("globex").await, None);
    let actions: Vec<String> =
        sqlx::query_scalar("SELECT action FROM audit_log WHERE actor = 'bootstrap' ORDER BY id")
            .fetch_all(&env.db.pool)
            .await
            .unwrap();
    assert!(
        actions.iter().any(|a| a == "connection.offboard.disable")
            && actions.iter().any(|a| a == "connection.delete"),
        "{actions:?}"
    );
    env.finish().await;
}

#[tokio::test]
async fn tapkey_mappings_are_edited_in_the_console_errors_shown_and_input_kept() {
    let env = Env::start().await;
    let (st, body) = env
        .api(
            "PUT",
            "/connections/acme/tapkey/default",
            BOOT,
            json!({"tenant": "acme", "settings": {
                "vendor": "tapkey", "authority_url": "https://login.tapkey.example",
                "base_url": "https://api.tapkey.example", "client_id": "cid",
                "client_secret": "csecret", "owner_account_id": "owner-1",
                "pass_types": {"pt-gym": ["lock-a"]}}}),
        )
        .await;
    assert!(st.is_success(), "{st} {body}");
    let b = env.login(BOOT).await;
    let (st, html) = b.get("/connections/acme/tapkey/default").await;
    assert_eq!(st, S::OK);
    assert!(html.contains("Nexudus pass type → Tapkey locks") && html.contains("value=\"pt-gym\""));
    assert!(!html.contains("csecret"), "secrets never reach the page");

    // A pass type without locks: refused by the store's validation, shown, input kept.
    let (st, html) = b
        .post(
            "/connections/acme/tapkey/default/mappings",
            &[
                ("map.0.key", "pt-gym"),
                ("map.0.value", "lock-a, lock-b"),
                ("map.1.key", "pt-sauna"),
                ("map.1.value", ""),
            ],
        )
        .await;
    assert_eq!(st, S::BAD_REQUEST, "{html}");
    assert!(html.contains("at least one bound lock"), "{html}");
    assert!(html.contains("value=\"pt-sauna\"") && html.contains("lock-a, lock-b"));

    let (st, _) = b
        .post(
            "/connections/acme/tapkey/default/mappings",
            &[
                ("map.0.key", "pt-gym"),
                ("map.0.value", "lock-a, lock-b"),
                ("map.1.key", "pt-sauna"),
                ("map.1.value", "lock-c"),
            ],
        )
        .await;
    assert_eq!(st, S::SEE_OTHER);
    let (_, conn) = env
        .api("GET", "/connections/acme/tapkey/default", BOOT, Value::Null)
        .await;
    assert_eq!(
        conn["settings"]["pass_types"],
        json!({"pt-gym": ["lock-a", "lock-b"], "pt-sauna": ["lock-c"]}),
        "{conn}"
    );
    assert_eq!(conn["settings"]["client_secret"], "***");
    // A viewer cannot change mappings, whatever it sends.
    let (viewer, _) = env.mint("v", "viewer", &["acme"]).await;
    let v = env.login(&viewer).await;
    let (st, _) = v
        .post(
            "/connections/acme/tapkey/default/mappings",
            &[("map.0.key", "x")],
        )
        .await;
    assert_eq!(st, S::FORBIDDEN);
    env.finish().await;
}

/// The stored connection as the API returns it (secrets `***`).
async fn stored(env: &Env, path: &str) -> Value {
    let (st, conn) = env.api("GET", path, BOOT, Value::Null).await;
    assert_eq!(st, S::OK, "{conn}");
    conn
}

#[tokio::test]
async fn dormakaba_connection_is_added_and_edited_and_its_password_reentered_when_the_server_changes()
 {
    let env = Env::start().await;
    let b = env.login(BOOT).await;
    let (st, html) = b.get("/connections").await;
    assert_eq!(st, S::OK);
    for v in ["cloudpass", "dormakaba", "ipassan", "tapkey"] {
        assert!(html.contains(&format!("id=\"add-{v}\"")), "add {v}: {html}");
    }
    let (st, html) = b.get("/connections/new?tenant=acme&vendor=dormakaba").await;
    assert_eq!(st, S::OK, "{html}");
    for f in [
        "host",
        "port",
        "username",
        "password",
        "site_name",
        "product",
    ] {
        assert!(html.contains(&format!("name=\"{f}\"")), "field {f}");
    }
    let saflok = |host: &'static str, port: &'static str, password: &'static str| {
        vec![
            ("vendor", "dormakaba"),
            ("tenant", "acme"),
            ("product", "saflok"),
            ("scheme", "https"),
            ("host", host),
            ("port", port),
            ("username", "pms-user"),
            ("password", password),
            ("site_name", "ACME-HOTEL"),
            ("pms_terminal_id", "accesshub"),
            ("key_size", "0"),
            ("mobile_keys", "true"),
        ]
    };
    // A port that is no number and a missing password: both shown at their fields, the rest
    // kept.
    let (st, html) = b
        .post(
            "/connections/new",
            &saflok("locks.acme.example", "eighty", ""),
        )
        .await;
    assert_eq!(st, S::BAD_REQUEST, "{html}");
    assert!(html.contains("data-field=\"port\""), "{html}");
    assert!(html.contains("value=\"locks.acme.example\""), "input kept");
    let (st, html) = b
        .post(
            "/connections/new",
            &saflok("locks.acme.example", "8443", ""),
        )
        .await;
    assert_eq!(st, S::BAD_REQUEST, "{html}");
    assert!(html.contains("data-field=\"password\""), "{html}");

    let (st, _) = b
        .post(
            "/connections/new",
            &saflok("locks.acme.example", "8443", "pms-s3cret"),
        )
        .await;
    assert_eq!(st, S::SEE_OTHER);
    let conn = stored(&env, "/connections/acme/dormakaba/default").await;
    let s = &conn["settings"];
    assert_eq!(
        (
            &s["host"],
            &s["port"],
            &s["username"],
            &s["password"],
            &s["mobile_keys"]
        ),
        (
            &json!("locks.acme.example"),
            &json!(8443),
            &json!("pms-user"),
            &json!("***"),
            &json!(true)
        ),
        "{conn}"
    );
    let (_, html) = b.get("/connections/acme/dormakaba/default").await;
    assert!(html.contains("data-secret=\"password\">set<"), "{html}");
    assert!(!html.contains("pms-s3cret"), "secrets never reach the page");
    assert!(html.contains("Encoders"), "the mappings follow the account");

    // Encoders (name + ID) on the mappings form; the account form keeps them.
    let (st, html) = b
        .post(
            "/connections/acme/dormakaba/default/mappings",
            &[
                ("map.0.key", "Front desk 1"),
                ("map.0.value", "7"),
                ("area.0.key", "fitness"),
                ("area.0.value", "2"),
            ],
        )
        .await;
    assert_eq!(st, S::SEE_OTHER, "{html}");

    // Another server without the password again: refused next to the password field with
    // the API's words; nothing stored changes.
    let mut moved = saflok("locks2.acme.example", "8443", "");
    moved.push(("exists", "true"));
    let (st, html) = b.post("/connections/acme/dormakaba/default", &moved).await;
    assert_eq!(st, S::BAD_REQUEST, "{html}");
    let at = html
        .find("data-field=\"password\"")
        .expect("error at password");
    assert!(html[at..].contains("Re-supply settings.password when settings.host changes"));
    assert!(html.contains("value=\"locks2.acme.example\""), "input kept");
    assert!(
        html.contains("data-secret=\"password\">set<"),
        "still says a password is stored: {html}"
    );
    let conn = stored(&env, "/connections/acme/dormakaba/default").await;
    assert_eq!(conn["settings"]["host"], "locks.acme.example");

    // The same server, password left empty: kept. Another server with it typed: stored.
    let mut same = saflok("locks.acme.example", "9443", "");
    same.push(("exists", "true"));
    let (st, html) = b.post("/connections/acme/dormakaba/default", &same).await;
    assert_eq!(
        st,
        S::BAD_REQUEST,
        "the port is part of the endpoint too: {html}"
    );
    let mut same = saflok("locks.acme.example", "8443", "");
    same.extend([("exists", "true"), ("username", "pms-user-2")]);
    let (st, html) = b.post("/connections/acme/dormakaba/default", &same).await;
    assert_eq!(st, S::SEE_OTHER, "{html}");
    moved = saflok("locks2.acme.example", "8443", "new-s3cret");
    moved.push(("exists", "true"));
    let (st, _) = b.post("/connections/acme/dormakaba/default", &moved).await;
    assert_eq!(st, S::SEE_OTHER);
    let conn = stored(&env, "/connections/acme/dormakaba/default").await;
    assert_eq!(conn["settings"]["host"], "locks2.acme.example");
    assert_eq!(conn["settings"]["username"], "pms-user", "{conn}");
    assert_eq!(
        conn["settings"]["encoders"],
        json!([{"name": "Front desk 1", "id": "7", "kind": "network"}]),
        "the account form leaves the mappings alone"
    );
    let secret: String = {
        let store =
            accesshub_connections::ConnectionStore::new(env.db.pool.clone(), env.secrets.clone());
        let c = store
            .get("acme", accesshub_connections::Vendor::Dormakaba, "default")
            .await
            .unwrap()
            .unwrap();
        c.settings.secrets()[0].1.expose().to_owned()
    };
    assert_eq!(secret, "new-s3cret");

    // A viewer sees the account without controls and is refused whatever it sends.
    let (viewer, _) = env.mint("v", "viewer", &["acme"]).await;
    let v = env.login(&viewer).await;
    let (_, html) = v.get("/connections/acme/dormakaba/default").await;
    assert!(!html.contains("id=\"save\"") && html.contains("fieldset disabled"));
    let (_, html) = v.get("/connections").await;
    assert!(!html.contains("add-dormakaba"));
    let (st, _) = v.post("/connections/acme/dormakaba/default", &moved).await;
    assert_eq!(st, S::FORBIDDEN);
    // Without the CSRF token: refused.
    let r = b
        .post_raw("/connections/acme/dormakaba/default", &moved)
        .await;
    assert_eq!(r.status(), S::FORBIDDEN);
    env.finish().await;
}

#[tokio::test]
async fn ipassan_and_tapkey_connections_are_added_and_disabled_in_the_console() {
    let env = Env::start().await;
    let b = env.login(BOOT).await;
    let forms: [(&str, Vec<(&str, &str)>); 2] = [
        (
            "ipassan",
            vec![
                ("base_url", "https://api.ipassan.example"),
                ("client_id", "ip-client"),
                ("client_secret", "ip-s3cret"),
                ("site_guid", "6b1f3c9e-0000-4000-8000-0000000051e1"),
            ],
        ),
        (
            "tapkey",
            vec![
                ("authority_url", "https://login.tapkey.example"),
                ("base_url", "https://api.tapkey.example"),
                ("client_id", "tk-client"),
                ("client_secret", "tk-s3cret"),
                ("owner_account_id", "owner-1"),
            ],
        ),
    ];
    for (vendor, fields) in forms {
        let (st, html) = b
            .get(&format!("/connections/new?tenant=acme&vendor={vendor}"))
            .await;
        assert_eq!(st, S::OK, "{html}");
        assert!(html.contains("name=\"client_secret\""), "{html}");
        let mut form = fields.clone();
        form.extend([("vendor", vendor), ("tenant", "acme"), ("name", "main")]);
        let (st, html) = b.post("/connections/new", &form).await;
        assert_eq!(st, S::SEE_OTHER, "{vendor}: {html}");
        let conn = stored(&env, &format!("/connections/acme/{vendor}/main")).await;
        for (k, v) in &fields {
            let want = if *k == "client_secret" { "***" } else { v };
            assert_eq!(conn["settings"][k], *want, "{vendor} {k}: {conn}");
        }
        // Added twice: the name is taken, said at the name.
        let (st, html) = b.post("/connections/new", &form).await;
        assert_eq!(st, S::BAD_REQUEST);
        assert!(html.contains("data-field=\"name\""), "{html}");
        // Disable (no booking holds access through it: no question asked).
        let (st, _) = b
            .post(
                &format!("/connections/acme/{vendor}/main/enabled"),
                &[("enabled", "false")],
            )
            .await;
        assert_eq!(st, S::SEE_OTHER);
        let conn = stored(&env, &format!("/connections/acme/{vendor}/main")).await;
        assert_eq!(conn["enabled"], false, "{conn}");
    }
    env.finish().await;
}

/// Issue 20/21: switching a connection back on in the console queues a sync run (as the admin
/// API does), whose pull re-admits what ingest ignored while it was off.
#[tokio::test]
async fn enabling_a_connection_in_the_console_queues_a_sync_run() {
    let env = Env::start().await;
    env.cloudpass("acme").await;
    let b = env.login(BOOT).await;
    let runs = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM sync_runs WHERE tenant_id = 'acme' AND vendor = 'cloudpass' \
             AND connection_name = 'default' AND scope = 'full'",
        )
        .fetch_one(&env.db.pool)
        .await
        .unwrap()
    };
    let (st, _) = b
        .post(
            "/connections/acme/cloudpass/default/enabled",
            &[("enabled", "false")],
        )
        .await;
    assert_eq!(st, S::SEE_OTHER);
    assert_eq!(runs().await, 0, "switching off queues no sync");
    let (st, _) = b
        .post(
            "/connections/acme/cloudpass/default/enabled",
            &[("enabled", "true")],
        )
        .await;
    assert_eq!(st, S::SEE_OTHER);
    let conn = stored(&env, "/connections/acme/cloudpass/default").await;
    assert_eq!(conn["enabled"], true, "{conn}");
    assert_eq!(runs().await, 1, "switching on queues one full sync run");
    env.finish().await;
}

#[tokio::test]
async fn sync_screen_shows_pull_counts_and_the_ignored_events_tab() {
    let env = Env::start().await;
    env.cloudpass("acme").await;
    let conn = accesshub_sync_runs::ConnectionRef {
        tenant: "acme".into(),
        vendor: "cloudpass".into(),
        name: "default".into(),
    };
    let run = accesshub_sync_runs::store::request_run(
        &env.db.pool,
        &conn,
        accesshub_sync_runs::Scope::Active,
        accesshub_sync_runs::Trigger::Api,
        None,
    )
    .await
    .unwrap()
    .run()
    .clone();
    accesshub_sync_runs::store::set_pull_counts(
        &env.db.pool,
        run.id,
        &accesshub_sync_runs::model::PullCounts {
            fetched: 12,
            new: 3,
            changed: 2,
            vanished: 1,
            readmitted: 4,
        },
    )
    .await
    .unwrap();
    for (tenant, key, reason) in [
        ("acme", "BEX-IGN-1", "unmapped_administration"),
        ("globex", "BEX-IGN-2", "site_not_activated"),
    ] {
        sqlx::query(
            "INSERT INTO ingest_ignored (tenant_id, source, kind, booking_key, site, reason, deliveries)
             VALUES ($1, 'bex', 'reservation', $2, '13', $3, 2)",
        )
        .bind(tenant)
        .bind(key)
        .bind(reason)
        .execute(&env.db.pool)
        .await
        .unwrap();
    }
    let b = env.login(BOOT).await;
    let (st, html) = b.get("/sync").await;
    assert_eq!(st, S::OK);
    for (k, n) in [
        ("fetched", 12),
        ("new", 3),
        ("changed", 2),
        ("vanished", 1),
        ("readmitted", 4),
    ] {
        assert!(
            html.contains(&format!("data-pull=\"{k}\">{n} {k}<")),
            "{k}: {html}"
        );
    }
    assert!(html.contains("href=\"/console/sync/ignored\""), "the tab");
    let (st, html) = b.get("/sync/ignored").await;
    assert_eq!(st, S::OK);
    assert!(
        html.contains("data-ignored=\"BEX-IGN-1\"") && html.contains("data-ignored=\"BEX-IGN-2\"")
    );
    assert!(html.contains("not mapped to a vendor site"), "{html}");
    // A token of one tenant sees its own only.
    let (op, _) = env.mint("acme-ops", "viewer", &["acme"]).await;
    let o = env.login(&op).await;
    let (_, html) = o.get("/sync/ignored").await;
    assert!(
        html.contains("BEX-IGN-1") && !html.contains("BEX-IGN-2"),
        "{html}"
    );
    let (st, _) = o.get("/sync/ignored?tenant=globex").await;
    assert_eq!(st, S::FORBIDDEN);
    env.finish().await;
}

/// Issue 22, Bookings screen: per vendor what was applied, with the trace id of the worker's
/// attempt that applied it (or failed), as the text an SRE pastes into the trace UI. The
/// binding rows are written as the workers write them (the trace id is recorded by the
/// worker runtime: crates/worker-runtime/tests/runtime.rs).
#[tokio::test]
async fn the_booking_detail_shows_the_trace_id_of_each_applied_result() {
    let env = Env::start().await;
    sqlx::query(
        "INSERT INTO bookings (tenant_id, kind, booking_key, site, revision, source, event_id, payload)
         VALUES ('acme', 'reservation', 'R-77', '1001', 2, 'bex', $1, '{}'::jsonb)",
    )
    .bind(uuid::Uuid::now_v7())
    .execute(&env.db.pool)
    .await
    .unwrap();
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    for (vendor, status, error, trace_id) in [
        ("cloudpass", "active", None, Some(trace)),
        ("dormakaba", "dead_lettered", Some("room 999 unknown"), None),
    ] {
        sqlx::query(
            "INSERT INTO bindings (tenant_id, vendor, kind, booking_key, applied_revision, status,
                                   last_error, trace_id)
             VALUES ('acme', $1, 'reservation', 'R-77', 2, $2, $3, $4)",
        )
        .bind(vendor)
        .bind(status)
        .bind(error)
        .bind(trace_id)
        .execute(&env.db.pool)
        .await
        .unwrap();
    }
    let b = env.login(BOOT).await;
    let (st, html) = b.get("/bookings?q=R-77").await;
    assert_eq!(st, S::OK);
    let applied = |vendor: &str| {
        let at = html
            .find(&format!("data-vendor=\"{vendor}\""))
            .unwrap_or_else(|| panic!("no {vendor} result: {html}"));
        let rest = &html[at..];
        rest[..rest[1..].find("data-vendor=").map_or(rest.len(), |i| i + 1)].to_owned()
    };
    let cloudpass = applied("cloudpass");
    assert!(
        cloudpass.contains(&format!(
            "<code class=\"trace\" data-trace-id=\"{trace}\">{trace}</code>"
        )),
        "{cloudpass}"
    );
    let dormakaba = applied("dormakaba");
    assert!(!dormakaba.contains("data-trace-id"), "{dormakaba}");
    assert!(dormakaba.contains("room 999 unknown"), "{dormakaba}");
    env.finish().await;
}

/// Issue 23: a console change whose audit record cannot be stored is not made (503 page),
/// as in the admin API. The insert is made to fail by a trigger (the test role is a
/// superuser: a REVOKE would not bite).
#[tokio::test]
async fn a_console_change_whose_audit_record_cannot_be_written_is_not_made() {
    let env = Env::start().await;
    env.cloudpass("acme").await;
    let b = env.login(BOOT).await;
    sqlx::raw_sql(
        "CREATE FUNCTION refuse_audit() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN RAISE EXCEPTION 'audit_log is not writable (test)'; END $$;
         CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_log
             FOR EACH ROW EXECUTE FUNCTION refuse_audit();",
    )
    .execute(&env.db.pool)
    .await
    .unwrap();
    let refused = |(st, page): (S, String)| {
        assert_eq!(st, S::SERVICE_UNAVAILABLE, "{page}");
        assert!(page.contains("audit record could not be stored"), "{page}");
    };
    refused(b.post("/sync", &sync_form("acme", "full")).await);
    refused(
        b.post(
            "/connections/acme/cloudpass/default/enabled",
            &[("enabled", "false")],
        )
        .await,
    );
    refused(
        b.post("/connections/acme/cloudpass/default/delete", &[])
            .await,
    );
    refused(
        b.post("/webhooks/rotate", &[("tenant", "acme"), ("source", "bex")])
            .await,
    );
    let runs: i64 = sqlx::query_scalar("SELECT count(*) FROM sync_runs")
        .fetch_one(&env.db.pool)
        .await
        .unwrap();
    assert_eq!(runs, 0, "a sync run was queued");
    let conn = stored(&env, "/connections/acme/cloudpass/default").await;
    assert_eq!(conn["enabled"], true, "{conn}");
    let sources: i64 =
        sqlx::query_scalar("SELECT count(*) FROM tenant_sources WHERE tenant_id = 'acme'")
            .fetch_one(&env.db.pool)
            .await
            .unwrap();
    assert_eq!(sources, 0, "a webhook secret was set");
    env.finish().await;
}

/// The BEX simulator with two organizations' administrations and rentables: 4711
/// (Strandhotel, org-1, rooms 5501 and 5502) and 5800 (Elsewhere, org-2, chalet 6601).
async fn bex_sim() -> vendor_sim::bex::BexSim {
    let sim = vendor_sim::bex::start_ephemeral().await.unwrap();
    sim.add_administration("4711", "Strandhotel");
    sim.set_organization("4711", "org-1");
    sim.add_administration("5800", "Elsewhere");
    sim.set_organization("5800", "org-2");
    sim.put_rentable("4711", "5501", "Kamer 12");
    sim.put_rentable("4711", "5502", "Kamer 14");
    sim.put_rentable("5800", "6601", "Chalet 9");
    sim
}

impl Env {
    /// acme's Saflok connection (secrets kept once stored) for `sites` with `rooms`.
    async fn saflok(&self, sites: Value, rooms: Value) {
        let (st, body) = self
            .api(
                "PUT",
                "/connections/acme/dormakaba/default",
                BOOT,
                json!({"tenant": "acme", "sites": sites, "settings": {
                    "vendor": "dormakaba", "product": "saflok", "scheme": "https",
                    "host": "locks.acme.example", "port": 8443, "username": "pms",
                    "password": "pw", "site_name": "HOTEL", "pms_terminal_id": "1",
                    "rooms": rooms, "encoders": [{"name": "Front desk", "id": "1"}]}}),
            )
            .await;
        assert!(st.is_success(), "{st} {body}");
    }

    /// Stores `tenant`'s BEX API credentials (the simulator's key) through the API.
    async fn bex_credentials(&self, tenant: &str, sim: &vendor_sim::bex::BexSim) {
        let (st, b) = self
            .api(
                "PUT",
                &format!("/tenants/{tenant}/sources/bex/api"),
                BOOT,
                json!({"base_url": sim.url(), "secret": vendor_sim::bex::DEMO_API_KEY,
                       "options": {"rate_per_sec": 1000.0, "burst": 1000}}),
            )
            .await;
        assert_eq!(st, S::OK, "{b}");
    }

    /// Ties `tenant`'s BEX source to `organization`.
    async fn bex_organization(&self, tenant: &str, organization: &str) {
        let tenants =
            accesshub_connections::TenantStore::new(self.db.pool.clone(), self.secrets.clone());
        tenants
            .set_source_secret(
                tenant,
                "bex",
                Some(accesshub_connections::Secret::new("app-client-secret")),
                std::time::Duration::ZERO,
            )
            .await
            .unwrap();
        tenants
            .set_organization(tenant, "bex", Some(organization))
            .await
            .unwrap()
            .unwrap();
    }
}

/// The options of the datalist `id` on a page: (value, label).
fn datalist(html: &str, id: &str) -> Vec<(String, String)> {
    let Some(at) = html.find(&format!("<datalist id=\"{id}\">")) else {
        return Vec::new();
    };
    let list = &html[at..at + html[at..].find("</datalist>").unwrap()];
    list.split("<option value=\"")
        .skip(1)
        .map(|o| {
            let (value, rest) = o.split_once("\">").unwrap();
            let label = &rest[..rest.find("</option>").unwrap()];
            (value.to_owned(), label.to_owned())
        })
        .collect()
}

/// Issue 21 item 4: the CloudPass form offers the BEX administrations of the tenant's
/// organization (and only those) on its administration-id inputs, live with the tenant's
/// stored API key; without credentials it says why and takes typed ids.
#[tokio::test]
async fn cloudpass_form_offers_the_bex_administrations_of_the_tenants_organization() {
    let env = Env::start().await;
    let sim = bex_sim().await;
    env.cloudpass("acme").await;
    let b = env.login(BOOT).await;

    // No BEX credentials yet: the form renders, says why, and the typed id stays an input.
    for path in [
        "/connections/acme/cloudpass/default",
        "/connections/new?tenant=acme&vendor=cloudpass",
    ] {
        let (st, html) = b.get(path).await;
        assert_eq!(st, S::OK, "{path}: {html}");
        assert!(
            html.contains("The BEX administration list could not be loaded")
                && html.contains("no BEX API credentials")
                && html.contains("type the ids"),
            "{path}: {html}"
        );
        assert!(datalist(&html, "bex-administrations").is_empty(), "{html}");
    }
    let (_, html) = b.get("/connections/acme/cloudpass/default").await;
    assert!(
        html.contains("name=\"admin.0.id\" value=\"1001\""),
        "{html}"
    );

    // With credentials and no organization: every administration the key reaches.
    env.bex_credentials("acme", &sim).await;
    let (st, html) = b.get("/connections/acme/cloudpass/default").await;
    assert_eq!(st, S::OK, "{html}");
    let ids: Vec<String> = datalist(&html, "bex-administrations")
        .into_iter()
        .map(|o| o.0)
        .collect();
    assert_eq!(ids, ["4711", "5800"], "{html}");
    assert!(!html.contains("could not be loaded (tenant"), "{html}");

    // Tied to org-1: only its administration, with its name; the inputs take suggestions.
    env.bex_organization("acme", "org-1").await;
    let (st, html) = b.get("/connections/acme/cloudpass/default").await;
    assert_eq!(st, S::OK, "{html}");
    assert_eq!(
        datalist(&html, "bex-administrations"),
        [(
            "4711".to_owned(),
            "Strandhotel · organization org-1".to_owned()
        )],
        "{html}"
    );
    assert!(
        !html.contains("Elsewhere") && !html.contains("5800"),
        "{html}"
    );
    assert!(
        html.contains("name=\"admin.0.id\" value=\"1001\" placeholder=\"e.g. 1001\" list=\"bex-administrations\""),
        "{html}"
    );
    // A form sent back with errors keeps offering them.
    let (st, html) = b
        .post(
            "/connections/acme/cloudpass/default",
            &[
                ("exists", "true"),
                ("base_url", "https://cloudpass.example"),
                ("client_id", "cid"),
                ("window_before_minutes", "soon"),
                ("admin.0.id", "4711"),
                ("admin.0.site", "cp-site-1"),
            ],
        )
        .await;
    assert_eq!(st, S::BAD_REQUEST, "{html}");
    assert!(
        html.contains("data-bex-name=\"4711\">Strandhotel<"),
        "{html}"
    );
    assert_eq!(datalist(&html, "bex-administrations").len(), 1, "{html}");
    sim.shutdown().await;
    env.finish().await;
}

/// Issue 21 item 4: a dormakaba connection maps BEX object ids to lock-system room numbers on
/// its mappings form, the rentables of the administrations it serves offered while typing;
/// a row without a number comes back 400 naming it, rows as typed; without BEX credentials
/// the form still renders with the reason.
#[tokio::test]
async fn dormakaba_rooms_are_mapped_from_the_bex_rentables() {
    let env = Env::start().await;
    let sim = bex_sim().await;
    env.saflok(json!(["4711"]), json!({})).await;
    let path = "/connections/acme/dormakaba/default";
    let b = env.login(BOOT).await;

    let (st, html) = b.get(path).await;
    assert_eq!(st, S::OK, "{html}");
    assert!(html.contains("Rooms → lock-system room numbers"), "{html}");
    assert!(
        html.contains("The BEX room list could not be loaded")
            && html.contains("no BEX API credentials"),
        "{html}"
    );
    assert!(html.contains("name=\"room.0.key\""), "{html}");

    // The rentables of the connection's administration (4711), names and administration.
    env.bex_credentials("acme", &sim).await;
    let (st, html) = b.get(path).await;
    assert_eq!(st, S::OK, "{html}");
    assert_eq!(
        datalist(&html, "room-suggestions"),
        [
            (
                "5501".to_owned(),
                "Kamer 12 · administration 4711".to_owned()
            ),
            (
                "5502".to_owned(),
                "Kamer 14 · administration 4711".to_owned()
            ),
        ],
        "{html}"
    );
    assert!(
        !html.contains("Chalet 9"),
        "another administration's: {html}"
    );
    assert!(
        html.contains("name=\"room.0.key\" value=\"\" list=\"room-suggestions\""),
        "{html}"
    );

    // The mappings form with the encoder and these room rows.
    let save_rooms = async |rows: &[(&str, &str)]| {
        let mut form = vec![("map.0.key", "Front desk"), ("map.0.value", "1")];
        form.extend_from_slice(rows);
        b.post(&format!("{path}/mappings"), &form).await
    };
    // Saved by the mappings form, read back through the store.
    let (st, html) = save_rooms(&[("room.0.key", "5501"), ("room.0.value", "101")]).await;
    assert_eq!(st, S::SEE_OTHER, "{html}");
    let rooms = || async {
        let store =
            accesshub_connections::ConnectionStore::new(env.db.pool.clone(), env.secrets.clone());
        let c = store
            .get("acme", accesshub_connections::Vendor::Dormakaba, "default")
            .await
            .unwrap()
            .unwrap();
        match c.settings {
            accesshub_connections::VendorSettings::Dormakaba(d) => d.rooms,
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(
        rooms().await,
        std::collections::BTreeMap::from([("5501".to_owned(), "101".to_owned())])
    );
    let (_, html) = b.get(path).await;
    assert!(
        html.contains("name=\"room.0.key\" value=\"5501\"")
            && html.contains("name=\"room.0.value\" value=\"101\"")
            && html.contains("Kamer 12 · administration 4711</small>"),
        "{html}"
    );

    // A row without a room number: 400 naming it, every row as typed, nothing stored.
    let (st, html) = save_rooms(&[
        ("room.0.key", "5501"),
        ("room.0.value", "102"),
        ("room.1.key", "5502"),
        ("room.1.value", ""),
    ])
    .await;
    assert_eq!(st, S::BAD_REQUEST, "{html}");
    assert!(
        html.contains("room 5502: Enter the lock-system room number"),
        "{html}"
    );
    assert!(
        html.contains("value=\"5502\"") && html.contains("value=\"102\""),
        "{html}"
    );
    assert_eq!(
        rooms().await,
        std::collections::BTreeMap::from([("5501".to_owned(), "101".to_owned())])
    );

    // Serving every administration: the rentables of all the tenant's administrations.
    env.saflok(json!([]), json!({"5501": "101"})).await;
    let (_, html) = b.get(path).await;
    let ids: Vec<String> = datalist(&html, "room-suggestions")
        .into_iter()
        .map(|o| o.0)
        .collect();
    assert_eq!(ids, ["5501", "5502", "6601"], "{html}");
    sim.shutdown().await;
    env.finish().await;
}
