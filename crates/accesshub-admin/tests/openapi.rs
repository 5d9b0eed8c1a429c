//! The OpenAPI 3.1 document of the admin API (issue 24, item 1): committed, served, complete,
//! and errors as RFC 9457 problems. The fuzzer (`tests/api-fuzz/run.sh`, in `make test`) checks
//! the live service against it.
#![allow(clippy::unwrap_used)]

use std::{collections::BTreeSet, path::PathBuf};

use accesshub_admin::{AdminConfig, AdminState};
use accesshub_store::SecretBox;
use reqwest::StatusCode;
use serde_json::{Value, json};

const BOOT: &str = "bootstrap-admin-token-for-openapi-tests";

fn committed_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto-schemas/admin-openapi.json")
}

const REGENERATE: &str = "regenerate it with \
    `ACCESSHUB_UPDATE_OPENAPI=1 cargo test -p accesshub-admin --test openapi` and commit \
    proto-schemas/admin-openapi.json";

#[test]
fn committed_document_matches_the_handlers() {
    let generated = accesshub_admin::openapi::json();
    let path = committed_path();
    if std::env::var_os("ACCESSHUB_UPDATE_OPENAPI").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "proto-schemas/admin-openapi.json differs from the OpenAPI document the handlers \
         generate (a handler, a request/response type or an annotation changed): {REGENERATE}"
    );
}

#[test]
fn document_is_openapi_3_1_with_bearer_auth_and_problem_errors() {
    let doc: Value = serde_json::from_str(&accesshub_admin::openapi::json()).unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"],
        json!({"type": "http", "scheme": "bearer"})
    );
    assert_eq!(doc["security"], json!([{"bearer": []}]));
    // Every operation answers its errors as problem+json; the document itself needs no token.
    let mut operations = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            operations += 1;
            let responses = op["responses"].as_object().unwrap();
            if path == "/admin/v1/openapi.json" {
                assert_eq!(op["security"], json!([{}]), "{path}");
                continue;
            }
            for code in ["400", "401", "403", "500"] {
                let r = &responses[code];
                assert_eq!(
                    r["content"]["application/problem+json"]["schema"]["$ref"],
                    "#/components/schemas/Problem",
                    "{method} {path} {code}"
                );
            }
            assert!(
                responses.keys().any(|c| c.starts_with('2')),
                "{method} {path}"
            );
        }
    }
    assert!(operations >= 21, "{operations}");
    // Every $ref resolves inside the document.
    let mut refs = Vec::new();
    collect_refs(&doc, &mut refs);
    for r in refs {
        let pointer = r.strip_prefix('#').unwrap();
        assert!(doc.pointer(pointer).is_some(), "{r} does not resolve");
    }
}

fn collect_refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                if let ("$ref", Value::String(s)) = (k.as_str(), x) {
                    out.push(s.clone());
                }
                collect_refs(x, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|x| collect_refs(x, out)),
        _ => {}
    }
}

/// `(METHOD, /admin/v1/path)` of every `.route(..)` in `src/lib.rs`'s router, read from the
/// source: a route added there without an annotation listed in `openapi::AdminApi` fails.
fn routes_in_router_source() -> BTreeSet<(String, String)> {
    let src = std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs"))
        .unwrap();
    let mut out = BTreeSet::new();
    let mut rest = src.as_str();
    while let Some(i) = rest.find(".route(") {
        rest = &rest[i + ".route(".len()..];
        // The arguments up to the matching parenthesis.
        let mut depth = 1;
        let end = rest
            .char_indices()
            .find(|&(_, c)| {
                match c {
                    '(' => depth += 1,
                    ')' => depth -= 1,
                    _ => {}
                }
                depth == 0
            })
            .unwrap()
            .0;
        let args = &rest[..end];
        let path = args.split('"').nth(1).unwrap();
        for method in ["get", "post", "put", "delete", "patch"] {
            let called = args.match_indices(&format!("{method}(")).any(|(at, _)| {
                at == 0 || !args[..at].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
            });
            if called {
                out.insert((method.to_uppercase(), format!("/admin/v1{path}")));
            }
        }
        rest = &rest[end..];
    }
    out
}

#[test]
fn every_route_is_documented() {
    let doc: Value = serde_json::from_str(&accesshub_admin::openapi::json()).unwrap();
    let documented: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .map(|m| (m.to_uppercase(), path.clone()))
                .collect::<Vec<_>>()
        })
        .collect();
    let routed = routes_in_router_source();
    assert!(routed.len() >= 21, "{routed:?}");
    let missing: Vec<_> = routed.difference(&documented).collect();
    assert!(
        missing.is_empty(),
        "routes without an OpenAPI annotation (add #[utoipa::path] and list the handler in \
         openapi::AdminApi, then {REGENERATE}): {missing:?}"
    );
    let stale: Vec<_> = documented.difference(&routed).collect();
    assert!(stale.is_empty(), "documented but not routed: {stale:?}");
}

async fn serve(
    db: &accesshub_testkit::TestDb,
    bus: &accesshub_testkit::TestBus,
) -> (String, reqwest::Client) {
    let state = AdminState::new(
        db.pool.clone(),
        SecretBox::from_spec(&SecretBox::generate_spec()).unwrap(),
        bus.bus.clone(),
        AdminConfig {
            bootstrap_token: Some(BOOT.into()),
            ..Default::default()
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, accesshub_admin::mounted(state))
            .await
            .unwrap()
    });
    (format!("http://{addr}/admin/v1"), reqwest::Client::new())
}

async fn problem(resp: reqwest::Response) -> (StatusCode, Value) {
    let status = resp.status();
    assert_eq!(
        resp.headers()[reqwest::header::CONTENT_TYPE],
        "application/problem+json",
        "{status}"
    );
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["type"], "about:blank");
    assert_eq!(body["status"], status.as_u16());
    assert_eq!(body["title"], status.canonical_reason().unwrap());
    assert!(body["detail"].is_string(), "{body}");
    (status, body)
}

/// `method path` with the bootstrap token and an optional JSON body.
async fn send(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    body: Option<Value>,
) -> reqwest::Response {
    let mut req = http.request(method, url).bearer_auth(BOOT);
    if let Some(b) = body {
        req = req.json(&b);
    }
    req.send().await.unwrap()
}

use reqwest::Method as M;

#[tokio::test]
async fn served_without_a_token_and_errors_are_problem_json() {
    let (db, bus) = accesshub_testkit::isolated().await;
    let (base, http) = serve(&db, &bus).await;

    let resp = http
        .get(format!("{base}/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.headers()[reqwest::header::CONTENT_TYPE],
        "application/json"
    );
    assert_eq!(resp.text().await.unwrap(), accesshub_admin::openapi::json());

    // 401 without a token.
    let (st, _) = problem(http.get(format!("{base}/tenants")).send().await.unwrap()).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);

    // 422 with the field at fault.
    let resp = send(
        &http,
        M::POST,
        format!("{base}/tenants"),
        Some(json!({"id": "a b"})),
    )
    .await;
    let (st, body) = problem(resp).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["field"], "id");
    assert_eq!(body["errors"][0]["field"], "id");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("letters")
    );

    // 400 for a body that does not parse, naming the field.
    let resp = send(
        &http,
        M::POST,
        format!("{base}/tenants"),
        Some(json!({"id": 7})),
    )
    .await;
    let (st, body) = problem(resp).await;
    assert_eq!(
        (st, &body["field"]),
        (StatusCode::BAD_REQUEST, &json!("id"))
    );

    // 400 from axum's own query extractor: a problem too, naming the parameter.
    let resp = send(&http, M::GET, format!("{base}/syncs?limit=many"), None).await;
    let (st, body) = problem(resp).await;
    assert_eq!(
        (st, &body["field"]),
        (StatusCode::BAD_REQUEST, &json!("limit"))
    );

    // 405 from the router keeps its Allow header.
    let resp = send(&http, M::PATCH, format!("{base}/tenants"), None).await;
    assert!(resp.headers().contains_key(reqwest::header::ALLOW));
    let (st, _) = problem(resp).await;
    assert_eq!(st, StatusCode::METHOD_NOT_ALLOWED);

    bus.cleanup().await;
    db.drop_db().await;
}

/// Found by the fuzzer: serde reads a struct from a JSON array by position, so `[null, null]`
/// was a valid tenant body. Every body is an object.
#[tokio::test]
async fn a_body_that_is_not_an_object_is_refused() {
    let (db, bus) = accesshub_testkit::isolated().await;
    let (base, http) = serve(&db, &bus).await;
    for body in [
        json!([null, null]),
        json!(["acme", "Acme"]),
        json!("acme"),
        json!(7),
    ] {
        let resp = send(
            &http,
            M::PUT,
            format!("{base}/tenants/acme"),
            Some(body.clone()),
        )
        .await;
        let (st, p) = problem(resp).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{body}: {p}");
    }
    bus.cleanup().await;
    db.drop_db().await;
}

/// Found by the fuzzer: a huge `previous_ttl_seconds` overflowed the expiry time and the
/// handler panicked (the connection dropped). Now a 422 naming the field.
#[tokio::test]
async fn a_previous_secret_lifetime_beyond_30_days_is_refused() {
    let (db, bus) = accesshub_testkit::isolated().await;
    let (base, http) = serve(&db, &bus).await;
    let resp = send(
        &http,
        M::POST,
        format!("{base}/tenants"),
        Some(json!({"id": "acme"})),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    for ttl in [
        304_250_263_527_210_u64,
        9_223_372_036_854_775_808,
        2_592_001,
    ] {
        let resp = send(
            &http,
            M::PUT,
            format!("{base}/tenants/acme/sources/bex/secret"),
            Some(json!({"secret": "s".repeat(40), "previous_ttl_seconds": ttl})),
        )
        .await;
        let (st, p) = problem(resp).await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{ttl}: {p}");
        assert_eq!(p["field"], "previous_ttl_seconds");
    }
    let resp = send(
        &http,
        M::PUT,
        format!("{base}/tenants/acme/sources/bex/secret"),
        Some(json!({"secret": "s".repeat(40), "previous_ttl_seconds": 2_592_000})),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    bus.cleanup().await;
    db.drop_db().await;
}

/// Found by the fuzzer: a NUL character in a query parameter or body reached PostgreSQL, which
/// refuses it as text, and the API answered 500. It is the caller's input: 400.
#[tokio::test]
async fn a_nul_character_is_a_bad_request_not_a_server_error() {
    let (db, bus) = accesshub_testkit::isolated().await;
    let (base, http) = serve(&db, &bus).await;
    for (method, url, body) in [
        (M::GET, format!("{base}/syncs?tenant=a%00b"), None),
        (M::GET, format!("{base}/audit?tenant=a%00b"), None),
        (M::GET, format!("{base}/connections?tenant=a%00b"), None),
        (
            M::POST,
            format!("{base}/tenants"),
            Some(json!({"id": "acme", "name": "a\u{0}b"})),
        ),
    ] {
        let (st, p) = problem(send(&http, method.clone(), url.clone(), body).await).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{method} {url}: {p}");
    }
    bus.cleanup().await;
    db.drop_db().await;
}
