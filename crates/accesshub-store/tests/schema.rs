//! The start-up schema gate against a real PostgreSQL: a service refuses a database older than
//! it needs, and the previous release (N−1) keeps running on a schema a newer release migrated.

#![allow(clippy::unwrap_used)]

use accesshub_store::{MIGRATOR, StoreError, check_schema, migrate};
use accesshub_testkit::{NEXT_RELEASE_VERSION, TestDb, next_release_migrator};

#[tokio::test]
async fn a_service_refuses_a_schema_older_than_it_needs_until_migrated() {
    let db = TestDb::unmigrated().await;
    let err = check_schema(&db.pool).await.unwrap_err();
    assert!(matches!(err, StoreError::Schema(_)), "{err:?}");
    assert!(err.to_string().contains("no migration applied"), "{err}");

    // The database of the previous release: everything but the newest migration.
    let versions: Vec<i64> = MIGRATOR.iter().map(|m| m.version).collect();
    let (newest, previous) = (versions[versions.len() - 1], versions[versions.len() - 2]);
    MIGRATOR.run_to(previous, &db.pool).await.unwrap();
    let err = check_schema(&db.pool).await.unwrap_err().to_string();
    assert!(err.contains(&newest.to_string()), "{err}");
    assert!(err.contains(&format!("database at {previous}")), "{err}");
    assert!(err.contains("accessctl migrate"), "{err}");

    migrate(&db.pool).await.unwrap();
    let status = check_schema(&db.pool).await.unwrap();
    assert_eq!(status.required, newest);
    assert!(status.newer.is_empty());
    db.drop_db().await;
}

#[tokio::test]
async fn the_previous_release_runs_on_a_schema_a_newer_release_migrated() {
    let db = TestDb::new().await;
    next_release_migrator("ALTER TABLE outbox ADD COLUMN next_release_note text")
        .run(&db.pool)
        .await
        .unwrap();

    // What services did before: sqlx's own runner refuses a database with a migration it
    // does not know (the rollback failure of issue 24).
    // On a connection of its own, closed after: sqlx returns this error while still holding
    // its migration advisory lock, and a pooled connection would keep it (the `migrate`
    // below then waits forever; seen under `make test`).
    let mut own = db.pool.acquire().await.unwrap().detach();
    let refused = MIGRATOR.run(&mut own).await.unwrap_err();
    accesshub_store::sqlx::Connection::close(own).await.unwrap();
    assert!(
        matches!(
            refused,
            sqlx::migrate::MigrateError::VersionMissing(99_991_231_235_959)
        ),
        "{refused:?}"
    );
    // The gate tolerates it, and `accessctl migrate` of the older release is a no-op.
    let status = check_schema(&db.pool).await.unwrap();
    assert_eq!(status.newer, vec![NEXT_RELEASE_VERSION]);
    migrate(&db.pool).await.unwrap();
    // The older code's statements still work on the expanded table.
    accesshub_store::sqlx::query("SELECT count(*) FROM outbox")
        .execute(&db.pool)
        .await
        .unwrap();
    db.drop_db().await;
}
