//! Key rotation against the real Postgres: reseal of connections and webhook secrets, the
//! dry-run counts, undecryptable rows, and ciphertexts bound to their rows (review M14, L5).
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use accesshub_connections::{
    reseal::{ResealOptions, reseal},
    *,
};
use accesshub_domain::egress::EgressPolicy;
use accesshub_domain::{Classify, ErrorClass};
use accesshub_store::SecretBox;

fn spec(id: &str) -> String {
    SecretBox::generate_spec().replace("k1:", &format!("{id}:"))
}

fn cloudpass(tenant: &str, secret: &str) -> Connection {
    serde_json::from_value(serde_json::json!({
        "tenant": tenant,
        "settings": {
            "vendor": "cloudpass",
            "base_url": "http://127.0.0.1:9001",
            "client_id": "api-user",
            "client_secret": secret,
            "default_time_restriction_id": "tr-1",
            "administrations": {"adm-1": {"site_id": "site-1"}}
        }
    }))
    .unwrap()
}

fn client_secret(c: &Connection) -> String {
    match &c.settings {
        VendorSettings::Cloudpass(s) => s.client_secret.expose().to_owned(),
        _ => panic!("not cloudpass"),
    }
}

fn loopback() -> EgressPolicy {
    "http://127.0.0.1:*".parse().unwrap()
}

/// A ciphertext in the format stored before rows were bound (`v1`, no associated data):
/// XChaCha20-Poly1305 with empty associated data is exactly that, under another prefix.
fn legacy_v1(b: &SecretBox, plaintext: &str) -> String {
    b.seal(plaintext, b"").unwrap().replacen("v2:", "v1:", 1)
}

#[tokio::test]
async fn reseal_moves_every_secret_to_the_active_key_and_is_resumable() {
    let (db, bus) = accesshub_testkit::isolated().await;
    let (old, new) = (spec("old"), spec("new"));
    let old_box = SecretBox::from_spec(&old).unwrap();
    let tenants = TenantStore::new(db.pool.clone(), old_box.clone());
    for t in ["acme", "beta"] {
        tenants.create(t, t).await.unwrap();
    }
    // acme/bex: current + previous (valid for an hour); beta/clock: current + an expired
    // previous; beta/nexudus: a legacy v1 row.
    for (t, s, secret, ttl) in [
        ("acme", "bex", "first-secret", Duration::from_secs(3600)),
        ("acme", "bex", "second-secret", Duration::from_secs(3600)),
        ("beta", "clock", "clock-1", Duration::ZERO),
        ("beta", "clock", "clock-2", Duration::ZERO),
        ("beta", "nexudus", "placeholder", Duration::ZERO),
    ] {
        tenants
            .set_source_secret(t, s, Some(Secret::new(secret)), ttl)
            .await
            .unwrap();
    }
    sqlx::query("UPDATE tenant_sources SET secret_enc = $1 WHERE source = 'nexudus'")
        .bind(legacy_v1(&old_box, "nexudus-legacy"))
        .execute(&db.pool)
        .await
        .unwrap();
    let conns = ConnectionStore::new(db.pool.clone(), old_box).with_egress(loopback());
    conns
        .upsert(&cloudpass("acme", "acme-vendor-secret"))
        .await
        .unwrap();
    conns
        .upsert(&cloudpass("beta", "beta-vendor-secret"))
        .await
        .unwrap();

    // Deploy step: the new key is active, the old one still configured.
    let rotated = SecretBox::from_spec(&format!("{new},{old}")).unwrap();
    let dry = ResealOptions {
        batch: 2,
        dry_run: true,
    };
    let before = reseal(&db.pool, &rotated, &dry, |_| {}).await.unwrap();
    assert!(before.failed.is_empty(), "{:?}", before.failed);
    // 2 connections, 3 current webhook secrets (one v1), 1 live previous; the expired
    // previous is dropped, not counted.
    assert_eq!(before.pending(), 6, "{:?}", before.found);
    assert_eq!(before.resealed, 6);
    assert_eq!(before.expired_cleared, 1);
    let json = serde_json::to_value(&before).unwrap();
    assert!(
        json["found"].as_array().unwrap().iter().any(|k| k["column"]
            == "tenant_sources.secret_enc"
            && k["key_id"] == "old"
            && k["format"] == "v1"
            && k["rows"] == 1),
        "{json}"
    );
    // A dry run writes nothing.
    let again = reseal(&db.pool, &rotated, &dry, |_| {}).await.unwrap();
    assert_eq!(again.pending(), 6);

    // The real run, in batches of one, reporting progress after each committed batch.
    let mut batches = 0;
    let run = reseal(
        &db.pool,
        &rotated,
        &ResealOptions {
            batch: 1,
            dry_run: false,
        },
        |_| batches += 1,
    )
    .await
    .unwrap();
    assert_eq!(run.resealed, 6);
    assert!(run.failed.is_empty());
    assert_eq!(batches, 5, "2 connections + 3 sources, one batch each");
    // Re-running (after an interruption, or to verify) finds nothing left.
    let after = reseal(&db.pool, &rotated, &dry, |_| {}).await.unwrap();
    assert_eq!(after.pending(), 0, "{:?}", after.found);
    assert_eq!(after.resealed, 0);

    // The old key can go: everything opens with the new key alone.
    let only_new = SecretBox::from_spec(&new).unwrap();
    let tenants = TenantStore::new(db.pool.clone(), only_new.clone());
    let bex = tenants
        .webhook_secrets("acme", "bex")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(bex.current.expose(), "second-secret");
    assert_eq!(bex.previous.unwrap().expose(), "first-secret");
    let nex = tenants
        .webhook_secrets("beta", "nexudus")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(nex.current.expose(), "nexudus-legacy");
    let conns = ConnectionStore::new(db.pool.clone(), only_new);
    for (t, s) in [
        ("acme", "acme-vendor-secret"),
        ("beta", "beta-vendor-secret"),
    ] {
        let c = conns
            .get(t, Vendor::Cloudpass, "default")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(client_secret(&c), s);
    }
    bus.cleanup().await;
    db.drop_db().await;
}

#[tokio::test]
async fn rows_no_key_opens_are_listed_and_the_rest_is_resealed() {
    let (db, bus) = accesshub_testkit::isolated().await;
    let (gone, old, new) = (spec("gone"), spec("old"), spec("new"));
    let tenants = TenantStore::new(db.pool.clone(), SecretBox::from_spec(&gone).unwrap());
    tenants.create("acme", "Acme").await.unwrap();
    tenants
        .set_source_secret("acme", "bex", Some(Secret::new("lost")), Duration::ZERO)
        .await
        .unwrap();
    let old_tenants = TenantStore::new(db.pool.clone(), SecretBox::from_spec(&old).unwrap());
    old_tenants
        .set_source_secret("acme", "clock", Some(Secret::new("kept")), Duration::ZERO)
        .await
        .unwrap();

    let rotated = SecretBox::from_spec(&format!("{new},{old}")).unwrap();
    let report = reseal(&db.pool, &rotated, &ResealOptions::default(), |_| {})
        .await
        .unwrap();
    assert_eq!(report.resealed, 1);
    assert_eq!(report.failed.len(), 1);
    let f = &report.failed[0];
    assert_eq!(
        (f.column, f.row.as_str(), f.key_id.as_str()),
        ("tenant_sources.secret_enc", "acme/bex", "gone")
    );
    assert!(!format!("{report:?}").contains("lost"));
    // The library wrapper refuses to call it done.
    let conns = ConnectionStore::new(db.pool.clone(), rotated);
    assert!(matches!(
        conns.reseal_all().await,
        Err(ConnectionError::Secret { .. })
    ));
    bus.cleanup().await;
    db.drop_db().await;
}

/// L5: swapping `settings_enc` between two tenants' rows (or webhook secrets between
/// sources) in SQL used to hand each tenant the other's credentials. Now neither opens, and
/// the error is a transient configuration error naming the row, not the secret.
#[tokio::test]
async fn swapped_ciphertexts_do_not_open() {
    let (db, bus) = accesshub_testkit::isolated().await;
    let sbox = SecretBox::from_spec(&SecretBox::generate_spec()).unwrap();
    let tenants = TenantStore::new(db.pool.clone(), sbox.clone());
    for t in ["acme", "evil"] {
        tenants.create(t, t).await.unwrap();
        tenants
            .set_source_secret(
                t,
                "bex",
                Some(Secret::new(format!("{t}-webhook"))),
                Duration::ZERO,
            )
            .await
            .unwrap();
    }
    let conns = ConnectionStore::new(db.pool.clone(), sbox).with_egress(loopback());
    conns
        .upsert(&cloudpass("acme", "acme-vendor-secret"))
        .await
        .unwrap();
    conns
        .upsert(&cloudpass("evil", "evil-vendor-secret"))
        .await
        .unwrap();
    for table in [
        "connections SET settings_enc",
        "tenant_sources SET secret_enc",
    ] {
        let (col, tbl) = (
            table.rsplit(' ').next().unwrap(),
            table.split(' ').next().unwrap(),
        );
        let sql = format!(
            "UPDATE {tbl} AS a SET {col} = b.{col} FROM {tbl} AS b
              WHERE a.tenant_id <> b.tenant_id"
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&db.pool)
            .await
            .unwrap();
    }
    let err = conns
        .get("acme", Vendor::Cloudpass, "default")
        .await
        .unwrap_err();
    assert!(matches!(err, ConnectionError::Secret { .. }), "{err}");
    assert_eq!(err.class(), ErrorClass::Transient);
    let msg = err.to_string();
    assert!(msg.contains("acme/cloudpass/default"), "{msg}");
    assert!(!msg.contains("vendor-secret"), "{msg}");
    assert!(
        conns
            .get("evil", Vendor::Cloudpass, "default")
            .await
            .is_err()
    );
    assert!(tenants.webhook_secrets("acme", "bex").await.is_err());
    assert!(tenants.webhook_secrets("evil", "bex").await.is_err());
    bus.cleanup().await;
    db.drop_db().await;
}

/// The booking systems' API credentials (issue 21) are resealed with the rest: after the run
/// the new key alone opens them, bound to their tenant and source.
#[tokio::test]
async fn reseal_covers_upstream_api_credentials() {
    let (db, bus) = accesshub_testkit::isolated().await;
    let (old, new) = (spec("old"), spec("new"));
    let old_box = SecretBox::from_spec(&old).unwrap();
    TenantStore::new(db.pool.clone(), old_box.clone())
        .create("acme", "Acme")
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO upstream_credentials (tenant_id, source, base_url, credentials_enc)
         VALUES ('acme', 'bex', 'http://127.0.0.1:9002', $1)",
    )
    .bind(
        old_box
            .seal("bex-api-key", &accesshub_store::upstream_aad("acme", "bex"))
            .unwrap(),
    )
    .execute(&db.pool)
    .await
    .unwrap();
    let rotated = SecretBox::from_spec(&format!("{new},{old}")).unwrap();
    let run = reseal(&db.pool, &rotated, &ResealOptions::default(), |_| {})
        .await
        .unwrap();
    assert!(run.failed.is_empty(), "{:?}", run.failed);
    assert_eq!(run.resealed, 1, "{:?}", run.found);
    let stored: String = sqlx::query_scalar(
        "SELECT credentials_enc FROM upstream_credentials WHERE tenant_id = 'acme'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    let new_only = SecretBox::from_spec(&new).unwrap();
    assert_eq!(
        new_only
            .open(&stored, &accesshub_store::upstream_aad("acme", "bex"))
            .unwrap(),
        "bex-api-key"
    );
    assert!(
        new_only
            .open(&stored, &accesshub_store::upstream_aad("acme", "clock"))
            .is_err(),
        "bound to its source"
    );
    bus.cleanup().await;
    db.drop_db().await;
}
