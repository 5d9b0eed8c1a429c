//! `accessctl tokens` and `accessctl audit` against the admin API served in-process, and the
//! audit records of `accessctl dlq purge/replay` (real Postgres and NATS).
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use accessctl::{
    cmd::{
        audit::{self, AuditArgs},
        connections::ApiClient,
        dlq::{self, DlqCommand, FilterArgs},
        tokens::{self, TokensCommand},
    },
    output::Format,
};
use accesshub_admin::{AdminConfig, AdminState, CreatedToken, TokenInfo};
use accesshub_domain::{DeadLetter, ErrorClass, EventKind, headers, subjects};
use accesshub_store::SecretBox;

const BOOT: &str = "accessctl-tokens-test-admin-token";

async fn serve(db: &accesshub_testkit::TestDb, bus: &accesshub_testkit::TestBus) -> String {
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
    let base = format!("http://{}/admin/v1", listener.local_addr().unwrap());
    tokio::spawn(async move {
        axum::serve(listener, accesshub_admin::mounted(state))
            .await
            .unwrap()
    });
    base
}

#[tokio::test]
async fn tokens_create_list_revoke_whoami_and_audit() {
    let (db, bus) = accesshub_testkit::isolated().await;
    let base = serve(&db, &bus).await;
    let boot = ApiClient::new(&base, BOOT).unwrap();
    for t in ["acme", "other"] {
        accessctl::cmd::tenants::run_with(
            &boot,
            accessctl::cmd::tenants::TenantsCommand::Create {
                id: t.into(),
                name: None,
            },
            Format::Table,
        )
        .await
        .unwrap();
    }

    // `tokens create` runs as a command; the body it sends carries role, tenants, expiry.
    tokens::run_with(
        &boot,
        TokensCommand::Create {
            name: "acme-oncall".into(),
            role: "operator".into(),
            tenants: vec!["acme".into()],
            expires_in: Some("30days".parse().unwrap()),
            expires_at: None,
        },
        Format::Json,
    )
    .await
    .unwrap();
    let body = tokens::create_body(
        "acme-admin",
        "admin",
        &["acme".into()],
        Some(std::time::Duration::from_secs(86400)),
        None,
    );
    let created: CreatedToken = boot
        .write(reqwest::Method::POST, "/tokens", &[], &body)
        .await
        .unwrap();
    assert_eq!(created.info.role.as_str(), "admin");
    assert_eq!(created.info.tenants.to_string(), "acme");
    let scoped = ApiClient::new(&base, &created.token).unwrap();
    tokens::run_with(&scoped, TokensCommand::Whoami, Format::Table)
        .await
        .unwrap();
    // The scoped admin cannot mint for another tenant; the error explains.
    let err = tokens::run_with(
        &scoped,
        TokensCommand::Create {
            name: "x".into(),
            role: "viewer".into(),
            tenants: vec!["other".into()],
            expires_in: None,
            expires_at: None,
        },
        Format::Table,
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(err.contains("403") && err.contains("other"), "{err}");

    let list: Vec<TokenInfo> = boot.get("/tokens", &[]).await.unwrap();
    let oncall = list.iter().find(|t| t.name == "acme-oncall").unwrap();
    assert_eq!(oncall.role.as_str(), "operator");
    let days = (oncall.expires_at.unwrap() - chrono::Utc::now()).num_days();
    assert!((29..=30).contains(&days), "{days}");
    tokens::run_with(&scoped, TokensCommand::List { all: true }, Format::Table)
        .await
        .unwrap();
    tokens::run_with(
        &scoped,
        TokensCommand::Revoke {
            id: oncall.id.to_string(),
        },
        Format::Table,
    )
    .await
    .unwrap();
    assert!(
        tokens::run_with(
            &scoped,
            TokensCommand::Revoke {
                id: oncall.id.to_string()
            },
            Format::Table
        )
        .await
        .is_err()
    );

    // `accessctl audit`: the scoped admin sees acme's records, by whom.
    let args = AuditArgs {
        tenant: None,
        since: Some(chrono::Utc::now() - chrono::Duration::hours(1)),
        limit: 100,
    };
    let records = audit::fetch(&scoped, &args).await.unwrap();
    let actions: Vec<(&str, &str)> = records
        .iter()
        .map(|r| (r.action.as_str(), r.actor.as_str()))
        .collect();
    assert_eq!(
        actions,
        [
            ("token.revoke", "acme-admin"),
            ("token.create", "bootstrap"),
            ("token.create", "bootstrap"),
            ("tenant.create", "bootstrap"),
        ],
        "{records:#?}"
    );
    assert!(records.iter().all(|r| r.tenant.as_deref() == Some("acme")));
    audit::run_with(&scoped, args.clone(), Format::Table)
        .await
        .unwrap();
    audit::run_with(&scoped, args, Format::Json).await.unwrap();
    bus.cleanup().await;
}

/// Publishes a dead letter the way the worker runtime does.
async fn dead_letter(bus: &accesshub_bus::Bus, tenant: &str, key: &str) {
    let original = bus.subject(&subjects::booking(EventKind::Pass, tenant, key));
    let id = uuid::Uuid::now_v7();
    let mut h = BTreeMap::new();
    h.insert(headers::MSG_ID.to_owned(), vec![id.to_string()]);
    h.insert(headers::TENANT.to_owned(), vec![tenant.to_owned()]);
    let body = serde_json::json!({"id": id, "tenant": tenant, "secret-ish": "guest@example.com"});
    let (payload, payload_encoding) = DeadLetter::encode_payload(body.to_string().as_bytes());
    let dl = DeadLetter {
        id: uuid::Uuid::now_v7(),
        worker: "tapkey-worker".into(),
        original_subject: original.clone(),
        original_headers: h,
        payload,
        payload_encoding,
        reason: "unknown mapping".into(),
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
        .unwrap();
}

/// token_id, actor, action, tenant_id, after.
type AuditRow = (
    Option<uuid::Uuid>,
    String,
    String,
    Option<String>,
    serde_json::Value,
);

/// L4: a DLQ purge through accessctl leaves an audit record per tenant (ids, no payload).
#[tokio::test]
async fn dlq_purge_is_audited() {
    let (db, bus) = accesshub_testkit::isolated().await;
    dead_letter(&bus.bus, "acme", "P-1").await;
    dead_letter(&bus.bus, "acme", "P-2").await;
    dead_letter(&bus.bus, "globex", "P-3").await;
    let handle = accesshub_dlq::Dlq::new(bus.bus.clone(), db.pool.clone());
    dlq::run_with(
        &handle,
        DlqCommand::Purge {
            filter: FilterArgs {
                tenant: Some("acme".into()),
                ..Default::default()
            },
            all: false,
            yes: true,
        },
        Format::Json,
    )
    .await
    .unwrap();
    let rows: Vec<AuditRow> =
        sqlx::query_as("SELECT token_id, actor, action, tenant_id, after FROM audit_log")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    let (token, actor, action, tenant, after) = &rows[0];
    assert_eq!(token, &None);
    assert!(actor.starts_with("accessctl:"), "{actor}");
    assert_eq!(action, "dlq.purge");
    assert_eq!(tenant.as_deref(), Some("acme"));
    assert_eq!(after["entries"].as_array().unwrap().len(), 2);
    assert!(!after.to_string().contains("guest@example.com"));
    bus.cleanup().await;
}
