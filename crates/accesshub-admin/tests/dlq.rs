//! Dead letters and bookings behind admin tokens (issue 23): `/admin/v1/dlq`, `/bookings` and
//! `/status` hold every token to its role and tenants, mask personal data unless an admin asks
//! (audited), replay only after a dry run and record every change. Real HTTP against the admin
//! router, real Postgres and NATS.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use accesshub_admin::{AdminConfig, AdminState};
use accesshub_bus::Bus;
use accesshub_domain::{DeadLetter, ErrorClass, EventKind, headers, subjects};
use accesshub_store::SecretBox;
use reqwest::{Method as M, StatusCode as S};
use serde_json::{Value, json};

const BOOT: &str = "bootstrap-admin-token-for-dlq-tests";
const EMAIL: &str = "quirina@zw-dlq.example";

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

    /// Mints a token with the bootstrap token.
    async fn mint(&self, name: &str, role: &str, tenants: &[&str]) -> String {
        let body = json!({"name": name, "role": role, "tenants": tenants});
        let (st, b) = self.call(M::POST, "/tokens", BOOT, Some(body)).await;
        assert_eq!(st, S::CREATED, "{b}");
        b["token"].as_str().unwrap().to_owned()
    }
}

struct Env {
    db: accesshub_testkit::TestDb,
    tb: accesshub_testkit::TestBus,
    api: Api,
}

async fn start() -> Env {
    let (db, tb) = accesshub_testkit::isolated().await;
    let state = AdminState::new(
        db.pool.clone(),
        SecretBox::from_spec(&SecretBox::generate_spec()).unwrap(),
        tb.bus.clone(),
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
    let api = Api {
        base: format!("http://{addr}/admin/v1"),
        http: reqwest::Client::new(),
    };
    for t in ["acme", "globex"] {
        let (st, b) = api
            .call(M::POST, "/tenants", BOOT, Some(json!({"id": t})))
            .await;
        assert_eq!(st, S::CREATED, "{b}");
    }
    Env { db, tb, api }
}

/// A tapkey-worker dead letter of `tenant`'s pass `key` (holder with an e-mail address), as
/// the worker runtime publishes it; returns its DLQ id.
async fn dead_letter(bus: &Bus, tenant: &str, key: &str) -> u64 {
    let id = uuid::Uuid::now_v7();
    let original = bus.subject(&subjects::booking(EventKind::Pass, tenant, key));
    let mut h = BTreeMap::new();
    h.insert(headers::MSG_ID.to_owned(), vec![id.to_string()]);
    h.insert(headers::TENANT.to_owned(), vec![tenant.to_owned()]);
    let body = json!({"id": id, "tenant": tenant, "kind": "pass", "booking_key": key,
        "payload": {"holder": {"name": "Zwaardemaker, Quirina", "email": EMAIL}}});
    let (payload, payload_encoding) = DeadLetter::encode_payload(body.to_string().as_bytes());
    let dl = DeadLetter {
        id: uuid::Uuid::now_v7(),
        worker: "tapkey-worker".into(),
        original_subject: original.clone(),
        original_headers: h,
        payload,
        payload_encoding,
        reason: format!("holder {EMAIL} refused"),
        class: ErrorClass::Permanent,
        attempts: 1,
        stream_sequence: None,
        stream: bus.stream_name(subjects::BOOKINGS_STREAM),
        trace_id: None,
        event_id: Some(id),
        tenant: Some(tenant.into()),
        kind: Some("pass".into()),
        booking_key: Some(key.into()),
        replay_count: 0,
        failed_at: chrono::Utc::now(),
    };
    let msg = async_nats::jetstream::message::PublishMessage::build()
        .payload(serde_json::to_vec(&dl).unwrap().into())
        .header(headers::DLQ_WORKER, "tapkey-worker")
        .header(headers::DLQ_CLASS, "permanent")
        .message_id(dl.id.to_string());
    bus.js
        .send_publish(bus.subject(&subjects::dlq("tapkey-worker", &original)), msg)
        .await
        .unwrap()
        .await
        .unwrap()
        .sequence
}

async fn bookings_last_seq(bus: &Bus) -> u64 {
    let mut s = bus
        .js
        .get_stream(bus.stream_name(subjects::BOOKINGS_STREAM))
        .await
        .unwrap();
    s.info().await.unwrap().state.last_sequence
}

fn seqs(list: &Value) -> Vec<u64> {
    let mut v: Vec<u64> = list
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    v.sort();
    v
}

/// Audit records of `action` visible to `token`.
async fn audited(api: &Api, token: &str, action: &str) -> Vec<Value> {
    let (st, list) = api.call(M::GET, "/audit", token, None).await;
    assert_eq!(st, S::OK, "{list}");
    list.as_array()
        .unwrap()
        .iter()
        .filter(|r| r["action"] == action)
        .cloned()
        .collect()
}

/// A token of tenant acme neither lists, shows, replays nor purges tenant globex's dead
/// letters: 403 when it names globex, 404 for a globex entry id (as for one that does not
/// exist), 422 `field: tenant` for a bulk action that names no tenant; nothing of globex is
/// republished.
#[tokio::test]
async fn a_tenant_scoped_token_cannot_list_or_replay_another_tenants_dead_letters() {
    let env = start().await;
    let bus = &env.tb.bus;
    let a = dead_letter(bus, "acme", "P-A").await;
    let g = dead_letter(bus, "globex", "P-G").await;
    let acme_op = env.api.mint("acme-op", "operator", &["acme"]).await;
    let api = &env.api;

    let (st, list) = api.call(M::GET, "/dlq", &acme_op, None).await;
    assert_eq!(st, S::OK, "{list}");
    assert_eq!(
        seqs(&list),
        vec![a],
        "acme's token lists acme's entries only"
    );
    let (st, list) = api.call(M::GET, "/dlq", BOOT, None).await;
    assert_eq!((st, seqs(&list)), (S::OK, vec![a, g]), "{list}");

    let (st, p) = api.call(M::GET, "/dlq?tenant=globex", &acme_op, None).await;
    assert_eq!(st, S::FORBIDDEN, "{p}");
    assert_eq!(p["status"], 403);
    let (st, p) = api.call(M::GET, &format!("/dlq/{g}"), &acme_op, None).await;
    assert_eq!(st, S::NOT_FOUND, "{p}");
    assert_eq!(
        p["detail"],
        format!("no DLQ entry with id {g}"),
        "same answer as for an id that does not exist"
    );

    let before = bookings_last_seq(bus).await;
    let replay = |body: Value| api.call(M::POST, "/dlq/replay", &acme_op, Some(body));
    let (st, p) = replay(json!({"seq": g, "dry_run": false})).await;
    assert_eq!(st, S::NOT_FOUND, "{p}");
    let (st, p) = replay(json!({"filter": {"tenant": "globex"}, "dry_run": false})).await;
    assert_eq!(st, S::FORBIDDEN, "{p}");
    let (st, p) = replay(json!({"all": true, "dry_run": false})).await;
    assert_eq!(
        (st, p["field"].as_str()),
        (S::UNPROCESSABLE_ENTITY, Some("tenant")),
        "{p}"
    );
    let (st, p) = replay(json!({"filter": {"vendor": "tapkey"}, "dry_run": false})).await;
    assert_eq!(
        (st, p["field"].as_str()),
        (S::UNPROCESSABLE_ENTITY, Some("tenant")),
        "{p}"
    );
    assert_eq!(
        bookings_last_seq(bus).await,
        before,
        "nothing was republished"
    );

    let purge = |body: Value| api.call(M::POST, "/dlq/purge", &acme_op, Some(body));
    let (st, p) = purge(json!({"seq": g, "confirm": true})).await;
    assert_eq!(st, S::NOT_FOUND, "{p}");
    let (st, p) = purge(json!({"filter": {"tenant": "globex"}, "confirm": true})).await;
    assert_eq!(st, S::FORBIDDEN, "{p}");
    // A confirmed purge of acme that smuggles globex's id deletes acme's only.
    let (st, p) =
        purge(json!({"filter": {"tenant": "acme"}, "confirm": true, "seqs": [a, g]})).await;
    assert_eq!(st, S::OK, "{p}");
    assert_eq!(
        (p["deleted"].as_u64(), p["seqs"].clone()),
        (Some(1), json!([a])),
        "{p}"
    );
    let (_, list) = api.call(M::GET, "/dlq", BOOT, None).await;
    assert_eq!(seqs(&list), vec![g], "globex's entry is still there");
    env.tb.cleanup().await;
    env.db.drop_db().await;
}

/// A viewer reads dead letters with personal data masked and cannot replay, purge or unmask;
/// an operator cannot unmask either; an admin can, and the view is audited first.
#[tokio::test]
async fn a_viewer_reads_masked_and_only_an_admin_unmasks_audited() {
    let env = start().await;
    let a = dead_letter(&env.tb.bus, "acme", "P-A").await;
    let api = &env.api;
    let viewer = api.mint("acme-viewer", "viewer", &["acme"]).await;
    let op = api.mint("acme-op", "operator", &["acme"]).await;
    let admin = api.mint("acme-admin", "admin", &["acme"]).await;

    let (st, list) = api.call(M::GET, "/dlq", &viewer, None).await;
    assert_eq!(st, S::OK, "{list}");
    assert_eq!(seqs(&list), vec![a]);
    let (st, one) = api.call(M::GET, &format!("/dlq/{a}"), &viewer, None).await;
    assert_eq!(st, S::OK, "{one}");
    for shown in [list.to_string(), one.to_string()] {
        assert!(
            !shown.contains(EMAIL) && !shown.contains("Quirina"),
            "{shown}"
        );
    }
    assert!(one["payload"].as_str().unwrap().contains("Z***"), "{one}");

    let (st, p) = api
        .call(M::POST, "/dlq/replay", &viewer, Some(json!({"seq": a})))
        .await;
    assert_eq!(st, S::FORBIDDEN, "{p}");
    let (st, p) = api
        .call(
            M::POST,
            "/dlq/purge",
            &viewer,
            Some(json!({"seq": a, "confirm": true})),
        )
        .await;
    assert_eq!(st, S::FORBIDDEN, "{p}");
    for token in [&viewer, &op] {
        let (st, p) = api.call(M::GET, "/dlq?show_pii=true", token, None).await;
        assert_eq!(st, S::FORBIDDEN, "{p}");
        let (st, p) = api
            .call(M::GET, &format!("/dlq/{a}?show_pii=true"), token, None)
            .await;
        assert_eq!(st, S::FORBIDDEN, "{p}");
    }
    assert!(audited(api, &admin, "dlq.show_pii").await.is_empty());

    let (st, list) = api.call(M::GET, "/dlq?show_pii=true", &admin, None).await;
    assert_eq!(st, S::OK, "{list}");
    assert!(list.to_string().contains(EMAIL), "{list}");
    let records = audited(api, &admin, "dlq.show_pii").await;
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["actor"], "acme-admin");
    assert_eq!(records[0]["tenant"], "acme");
    assert_eq!(records[0]["after"]["entries"], json!([a]));
    assert!(
        !records[0].to_string().contains(EMAIL),
        "no payload in the record"
    );
    env.tb.cleanup().await;
    env.db.drop_db().await;
}

/// A replay is a dry run unless `dry_run: false`; the real one republishes the original and is
/// in `GET /audit` with the token's name; a purge is a preview unless confirmed, then audited.
#[tokio::test]
async fn a_replay_is_dry_run_first_and_in_the_audit_log() {
    let env = start().await;
    let bus = &env.tb.bus;
    let a = dead_letter(bus, "acme", "P-A").await;
    let a2 = dead_letter(bus, "acme", "P-B").await;
    let api = &env.api;
    let op = api.mint("acme-op", "operator", &["acme"]).await;
    let before = bookings_last_seq(bus).await;

    let (st, r) = api
        .call(M::POST, "/dlq/replay", &op, Some(json!({"seq": a})))
        .await;
    assert_eq!(st, S::OK, "{r}");
    assert_eq!(
        (r["dry_run"].as_u64(), r["replayed"].as_u64()),
        (Some(1), Some(0)),
        "{r}"
    );
    assert_eq!(
        bookings_last_seq(bus).await,
        before,
        "a dry run publishes nothing"
    );
    assert!(audited(api, &op, "dlq.replay").await.is_empty());

    let (st, r) = api
        .call(
            M::POST,
            "/dlq/replay",
            &op,
            Some(json!({"seq": a, "dry_run": false})),
        )
        .await;
    assert_eq!(st, S::OK, "{r}");
    assert_eq!(r["replayed"].as_u64(), Some(1), "{r}");
    assert_eq!(bookings_last_seq(bus).await, before + 1, "republished once");
    let records = audited(api, &op, "dlq.replay").await;
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(
        (
            &records[0]["actor"],
            &records[0]["tenant"],
            &records[0]["after"]["entries"]
        ),
        (&json!("acme-op"), &json!("acme"), &json!([a]))
    );
    let (_, one) = api.call(M::GET, &format!("/dlq/{a}"), &op, None).await;
    assert_eq!(one["replays"], 1, "{one}");
    assert_eq!(one["earlier_replays"][0]["replayed_by"], "acme-op", "{one}");

    let purge = json!({"filter": {"tenant": "acme", "booking": "P-B"}});
    let (st, p) = api
        .call(M::POST, "/dlq/purge", &op, Some(purge.clone()))
        .await;
    assert_eq!(
        (st, p["confirmed"].clone(), p["seqs"].clone()),
        (S::OK, json!(false), json!([a2])),
        "{p}"
    );
    assert!(
        audited(api, &op, "dlq.purge").await.is_empty(),
        "a preview changes nothing"
    );
    let mut confirmed = purge;
    confirmed["confirm"] = json!(true);
    let (st, p) = api.call(M::POST, "/dlq/purge", &op, Some(confirmed)).await;
    assert_eq!((st, p["deleted"].as_u64()), (S::OK, Some(1)), "{p}");
    let records = audited(api, &op, "dlq.purge").await;
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["after"]["entries"], json!([a2]));
    let (_, list) = api.call(M::GET, "/dlq", &op, None).await;
    assert_eq!(seqs(&list), vec![a]);
    env.tb.cleanup().await;
    env.db.drop_db().await;
}

async fn booking(pool: &sqlx::PgPool, tenant: &str, key: &str, guest: &str) {
    sqlx::query(
        "INSERT INTO bookings (tenant_id, kind, booking_key, site, revision, source, event_id,
                               payload, starts_at, ends_at)
         VALUES ($1, 'pass', $2, 'hq', 3, 'nexudus', $3, $4, now(), now() + interval '1 day')",
    )
    .bind(tenant)
    .bind(key)
    .bind(uuid::Uuid::now_v7())
    .bind(json!({"holder": {"name": guest, "email": EMAIL}, "pass_type": "8"}))
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO bindings (tenant_id, vendor, kind, booking_key, applied_revision,
                               vendor_ids, status, last_error)
         VALUES ($1, 'tapkey', 'pass', $2, 2, '{\"grants\": [\"g-1\"]}', 'dead_lettered', $3)",
    )
    .bind(tenant)
    .bind(key)
    .bind(format!("holder {EMAIL} refused"))
    .execute(pool)
    .await
    .unwrap();
}

/// Bookings: searched within the token's tenants, another tenant's booking refused (403), an
/// unknown one 404, desired state with what each vendor applied, personal data masked unless
/// an admin asks (audited).
#[tokio::test]
async fn bookings_are_tenant_scoped_masked_and_show_what_each_vendor_applied() {
    let env = start().await;
    booking(&env.db.pool, "acme", "N-1", "Zwaardemaker, Quirina").await;
    booking(&env.db.pool, "globex", "N-2", "Zwaardemaker, Quirina").await;
    let api = &env.api;
    let viewer = api.mint("acme-viewer", "viewer", &["acme"]).await;

    let (st, found) = api
        .call(M::GET, "/bookings?q=zwaardemaker", &viewer, None)
        .await;
    assert_eq!(st, S::OK, "{found}");
    let found = found.as_array().unwrap().clone();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(
        (&found[0]["tenant"], &found[0]["key"]),
        (&json!("acme"), &json!("N-1"))
    );
    let shown = serde_json::to_string(&found).unwrap();
    assert!(
        !shown.contains(EMAIL) && !shown.contains("Quirina"),
        "{shown}"
    );
    let (st, p) = api
        .call(M::GET, "/bookings?tenant=globex", &viewer, None)
        .await;
    assert_eq!(st, S::FORBIDDEN, "{p}");

    let (st, one) = api.call(M::GET, "/bookings/acme/N-1", &viewer, None).await;
    assert_eq!(st, S::OK, "{one}");
    assert_eq!(one[0]["revision"], 3);
    assert_eq!(one[0]["applied"][0]["vendor"], "tapkey");
    assert_eq!(one[0]["applied"][0]["revision"], 2);
    assert_eq!(one[0]["applied"][0]["status"], "dead_lettered");
    assert_eq!(one[0]["applied"][0]["vendor_ids"]["grants"][0], "g-1");
    assert!(!one.to_string().contains(EMAIL), "{one}");
    let (st, _) = api
        .call(M::GET, "/bookings/globex/N-2", &viewer, None)
        .await;
    assert_eq!(st, S::FORBIDDEN);
    let (st, _) = api
        .call(M::GET, "/bookings/acme/N-404", &viewer, None)
        .await;
    assert_eq!(st, S::NOT_FOUND);
    let (st, _) = api
        .call(M::GET, "/bookings/acme/N-1?show_pii=true", &viewer, None)
        .await;
    assert_eq!(st, S::FORBIDDEN);

    let (st, one) = api
        .call(M::GET, "/bookings/acme/N-1?show_pii=true", BOOT, None)
        .await;
    assert_eq!(st, S::OK, "{one}");
    assert!(one.to_string().contains(EMAIL), "{one}");
    let records = audited(api, BOOT, "bookings.show_pii").await;
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["after"]["bookings"], json!(["pass/N-1"]));
    env.tb.cleanup().await;
    env.db.drop_db().await;
}

/// The status of the whole installation needs a token of every tenant.
#[tokio::test]
async fn status_is_for_tokens_of_every_tenant() {
    let env = start().await;
    dead_letter(&env.tb.bus, "acme", "P-A").await;
    let api = &env.api;
    let scoped = api.mint("acme-viewer", "viewer", &["acme"]).await;
    let all = api.mint("sre", "viewer", &["*"]).await;
    let (st, p) = api.call(M::GET, "/status", &scoped, None).await;
    assert_eq!(st, S::FORBIDDEN, "{p}");
    let (st, status) = api.call(M::GET, "/status", &all, None).await;
    assert_eq!(st, S::OK, "{status}");
    assert_eq!(status["dlq_depth"]["tapkey-worker"], 1, "{status}");
    env.tb.cleanup().await;
    env.db.drop_db().await;
}

/// Before any worker has created the DLQ stream (a fresh namespace, as the API fuzzer runs
/// the admin service alone), the DLQ is empty: 200 and 404, not 503 (found by
/// `make test-api-fuzz`).
#[tokio::test]
async fn a_dlq_stream_nobody_created_yet_is_an_empty_dlq() {
    let env = start().await;
    let bus = &env.tb.bus;
    bus.js
        .delete_stream(bus.stream_name(subjects::DLQ_STREAM))
        .await
        .unwrap();
    let api = &env.api;
    let (st, list) = api.call(M::GET, "/dlq", BOOT, None).await;
    assert_eq!((st, list), (S::OK, json!([])));
    let (st, p) = api.call(M::GET, "/dlq/1", BOOT, None).await;
    assert_eq!(st, S::NOT_FOUND, "{p}");
    let (st, p) = api
        .call(
            M::POST,
            "/dlq/replay",
            BOOT,
            Some(json!({"seq": 1, "dry_run": false})),
        )
        .await;
    assert_eq!(st, S::NOT_FOUND, "{p}");
    let (st, p) = api
        .call(
            M::POST,
            "/dlq/purge",
            BOOT,
            Some(json!({"all": true, "confirm": true})),
        )
        .await;
    assert_eq!((st, p["deleted"].as_u64()), (S::OK, Some(0)), "{p}");
    env.tb.cleanup().await;
    env.db.drop_db().await;
}
