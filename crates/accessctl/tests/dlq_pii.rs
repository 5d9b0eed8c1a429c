//! `accessctl dlq list/show` mask personal data unless `--show-pii`, which is audited first
//! (security review L7; real Postgres and NATS).
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use accessctl::cmd::dlq;
use accesshub_domain::{DeadLetter, ErrorClass, headers, subjects};

const PII: [&str; 5] = [
    "Zwaardemaker",
    "quirina@zw-pii.example",
    "+31687654321",
    "QZ99XY",
    "Quirina",
];

async fn dead_letter(bus: &accesshub_bus::Bus) {
    let id = uuid::Uuid::now_v7();
    let original = bus.subject(&subjects::booking(
        accesshub_domain::EventKind::Reservation,
        "acme",
        "R-1",
    ));
    let mut h = BTreeMap::new();
    h.insert(headers::MSG_ID.to_owned(), vec![id.to_string()]);
    h.insert(headers::TENANT.to_owned(), vec!["acme".to_owned()]);
    let body = serde_json::json!({"id": id, "tenant": "acme", "kind": "reservation", "payload": {
        "guest": {"name": "Zwaardemaker, Quirina", "email": "quirina@zw-pii.example",
                  "mobile_phone": "+31687654321"},
        "license_plates": ["QZ99XY"], "rooms": ["101"]}});
    let (payload, payload_encoding) = DeadLetter::encode_payload(body.to_string().as_bytes());
    let dl = DeadLetter {
        id: uuid::Uuid::now_v7(),
        worker: "cloudpass-worker".into(),
        original_subject: original.clone(),
        original_headers: h,
        payload,
        payload_encoding,
        reason: "person quirina@zw-pii.example refused".into(),
        class: ErrorClass::Permanent,
        attempts: 1,
        stream_sequence: None,
        stream: bus.stream_name(subjects::BOOKINGS_STREAM),
        trace_id: None,
        event_id: Some(id),
        tenant: Some("acme".into()),
        kind: Some("reservation".into()),
        booking_key: Some("R-1".into()),
        replay_count: 0,
        failed_at: chrono::Utc::now(),
    };
    let msg = async_nats::jetstream::message::PublishMessage::build()
        .payload(serde_json::to_vec(&dl).unwrap().into())
        .header(headers::DLQ_WORKER, "cloudpass-worker")
        .header(headers::DLQ_CLASS, "permanent")
        .message_id(dl.id.to_string());
    bus.js
        .send_publish(
            bus.subject(&subjects::dlq("cloudpass-worker", &original)),
            msg,
        )
        .await
        .unwrap()
        .await
        .unwrap();
}

#[tokio::test]
async fn dlq_listing_masks_pii_unless_show_pii_which_is_audited() {
    let (db, bus) = accesshub_testkit::isolated().await;
    dead_letter(&bus.bus).await;
    let handle = accesshub_dlq::Dlq::new(bus.bus.clone(), db.pool.clone());

    // Default: masked, in every output format (they all serialize these entries).
    let mut entries = handle.list(&Default::default(), Some(10)).await.unwrap();
    assert_eq!(entries.len(), 1);
    dlq::pii_gate(&handle, false, &mut entries).await.unwrap();
    let shown = serde_json::to_string(&entries).unwrap();
    for p in PII {
        assert!(!shown.contains(p), "{p} shown without --show-pii: {shown}");
    }
    assert!(
        shown.contains("q***@zw-pii.example") && shown.contains("101"),
        "{shown}"
    );
    let audited: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_log")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(audited, 0, "a masked listing is not audited");

    // --show-pii: unmasked, and recorded (who, which entries, never the payload).
    let mut entries = handle.list(&Default::default(), Some(10)).await.unwrap();
    dlq::pii_gate(&handle, true, &mut entries).await.unwrap();
    let shown = serde_json::to_string(&entries).unwrap();
    assert!(shown.contains("quirina@zw-pii.example"), "{shown}");
    let (actor, action, after): (String, String, serde_json::Value) =
        sqlx::query_as("SELECT actor, action, after FROM audit_log")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert!(actor.starts_with("accessctl:"), "{actor}");
    assert_eq!(action, "dlq.show_pii");
    assert_eq!(after["entries"].as_array().unwrap().len(), 1);
    assert!(!after.to_string().contains("quirina"), "{after}");

    // No audit table (or any failure to record) → nothing shown.
    sqlx::query("DROP TABLE audit_log")
        .execute(&db.pool)
        .await
        .unwrap();
    let mut entries = handle.list(&Default::default(), Some(10)).await.unwrap();
    assert!(dlq::pii_gate(&handle, true, &mut entries).await.is_err());
    bus.cleanup().await;
}

/// `accessctl dlq` goes through the admin API with the token given (issue 23): the same
/// listing, masked; a viewer's replay is refused (exit 1, 403); a token of another tenant sees
/// nothing and cannot replay (404); an operator's replay is in `accessctl audit`; `--show-pii`
/// needs an admin token. No NATS or database settings in the process's environment.
#[tokio::test]
async fn accessctl_dlq_goes_through_the_admin_api_with_the_tokens_rights() {
    use accesshub_admin::{AdminConfig, service};
    const BOOT: &str = "accessctl-dlq-api-test-admin-token";
    let (db, bus) = accesshub_testkit::isolated().await;
    dead_letter(&bus.bus).await;
    let cfg = service::ServiceConfig::for_test(
        bus.config(service::SERVICE, &db.url),
        accesshub_store::SecretBox::from_spec(&accesshub_store::SecretBox::generate_spec())
            .unwrap(),
        AdminConfig {
            bootstrap_token: Some(BOOT.into()),
            ..Default::default()
        },
    );
    let admin = service::start(cfg).await.unwrap();
    let server = format!("http://{}/admin/v1", admin.addr());
    let run = |token: String, args: Vec<&'static str>| {
        let server = server.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                std::process::Command::new(env!("CARGO_BIN_EXE_accessctl"))
                    .args(["--server", &server, "--token", &token])
                    .args(&args)
                    .env("ACCESSCTL_CONFIG", "/nonexistent/accessctl-config.yaml")
                    .env_remove("ACCESSHUB_TOKEN")
                    .env_remove("DATABASE_URL")
                    .env_remove("NATS_URL")
                    .output()
                    .unwrap()
            })
            .await
            .unwrap()
        }
    };
    let text = |o: &std::process::Output| {
        format!(
            "exit {:?}\n{}\n{}",
            o.status.code(),
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };
    let out = run(BOOT.into(), vec!["tenants", "create", "acme"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let out = run(BOOT.into(), vec!["tenants", "create", "globex"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let mut tokens = BTreeMap::new();
    for (name, role, tenant) in [
        ("acme-viewer", "viewer", "acme"),
        ("acme-op", "operator", "acme"),
        ("globex-op", "operator", "globex"),
    ] {
        let out = run(
            BOOT.into(),
            vec![
                "tokens", "create", name, "--role", role, "--tenant", tenant, "-o", "json",
            ],
        )
        .await;
        assert!(out.status.success(), "{}", text(&out));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        tokens.insert(name, v["token"].as_str().unwrap().to_owned());
    }

    let out = run(
        tokens["acme-viewer"].clone(),
        vec!["dlq", "list", "-o", "json"],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    let seq = list[0]["seq"].as_u64().unwrap().to_string();
    for p in PII {
        assert!(!list.to_string().contains(p), "{p}: {list}");
    }
    let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
    let seq: &'static str = leak(seq);

    let out = run(tokens["acme-viewer"].clone(), vec!["dlq", "replay", seq]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("403"),
        "{}",
        text(&out)
    );
    let out = run(tokens["acme-op"].clone(), vec!["dlq", "list", "--show-pii"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));

    let out = run(
        tokens["globex-op"].clone(),
        vec!["dlq", "list", "-o", "json"],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "[]");
    let out = run(tokens["globex-op"].clone(), vec!["dlq", "replay", seq]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("404"),
        "{}",
        text(&out)
    );
    let out = run(
        tokens["globex-op"].clone(),
        vec!["dlq", "list", "--tenant", "acme"],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));

    let out = run(tokens["acme-op"].clone(), vec!["dlq", "replay", seq]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("1 replayed"),
        "{}",
        text(&out)
    );
    let out = run(tokens["acme-op"].clone(), vec!["audit", "-o", "json"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let records: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let replay = records
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["action"] == "dlq.replay")
        .unwrap_or_else(|| panic!("no dlq.replay in {records}"));
    assert_eq!(
        (&replay["actor"], &replay["tenant"]),
        (&serde_json::json!("acme-op"), &serde_json::json!("acme"))
    );

    let out = run(
        BOOT.into(),
        vec!["dlq", "show", seq, "--show-pii", "-o", "json"],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("quirina@zw-pii.example"));
    admin.shutdown().await;
    bus.cleanup().await;
    db.drop_db().await;
}
