//! `accessctl secrets reseal` against the real Postgres: dry run, reseal, verify, and a row
//! no key opens making it fail with the row named (review M14).
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use accessctl::{
    cmd::secrets::{ResealArgs, reseal_with},
    output::Format,
};
use accesshub_connections::{Secret, TenantStore};
use accesshub_store::SecretBox;

fn spec(id: &str) -> String {
    SecretBox::generate_spec().replace("k1:", &format!("{id}:"))
}

#[tokio::test]
async fn reseal_dry_run_then_reseal_then_nothing_left_and_unopenable_rows_fail() {
    let (db, bus) = accesshub_testkit::isolated().await;
    let (old, new) = (spec("old"), spec("new"));
    let tenants = TenantStore::new(db.pool.clone(), SecretBox::from_spec(&old).unwrap());
    tenants.create("acme", "Acme").await.unwrap();
    for source in ["bex", "clock", "nexudus"] {
        tenants
            .set_source_secret("acme", source, Some(Secret::new("s")), Duration::ZERO)
            .await
            .unwrap();
    }
    let rotated =
        SecretBox::from_vars(Some(format!("{old},{new}")), None, Some("new".into())).unwrap();
    let dry = ResealArgs {
        dry_run: true,
        batch: 2,
    };
    let r = reseal_with(&db.pool, &rotated, &dry, Format::Table)
        .await
        .unwrap();
    assert_eq!((r.pending(), r.resealed), (3, 3));
    let run = ResealArgs {
        dry_run: false,
        batch: 2,
    };
    let r = reseal_with(&db.pool, &rotated, &run, Format::Json)
        .await
        .unwrap();
    assert_eq!(r.resealed, 3);
    let r = reseal_with(&db.pool, &rotated, &dry, Format::Table)
        .await
        .unwrap();
    assert_eq!(r.pending(), 0, "verify step: nothing left on the old key");

    // A source sealed with a key that is no longer configured: listed, exit non-zero.
    TenantStore::new(
        db.pool.clone(),
        SecretBox::from_spec(&spec("lost")).unwrap(),
    )
    .set_source_secret("acme", "connecx", Some(Secret::new("s")), Duration::ZERO)
    .await
    .unwrap();
    let err = reseal_with(&db.pool, &rotated, &run, Format::Table)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("1 stored secret(s) cannot be decrypted"),
        "{err}"
    );
    bus.cleanup().await;
    db.drop_db().await;
}
