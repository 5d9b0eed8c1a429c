//! What the real binaries do at start-up (issue 24): in production mode (the default) a
//! missing or empty required setting stops them naming the variable; services never migrate,
//! refuse a schema older than they need until `accessctl migrate` ran, and keep running on a
//! schema a newer release migrated (so `helm rollback` across a migration works).

#![allow(clippy::unwrap_used)]

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use accesshub_e2e::{binary, free_port};
use accesshub_store::MIGRATOR;
use accesshub_testkit::{NEXT_RELEASE_VERSION, TestBus, TestDb, next_release_migrator};

/// The outcome of a process that had `timeout` to finish.
#[derive(Debug)]
enum Outcome {
    Exited { success: bool, output: String },
    StillRunning,
}

/// Runs `name` with exactly `env` (nothing inherited: no ambient `DATABASE_URL` or
/// `ACCESSHUB_MODE` can help it), for at most `timeout`.
fn run(name: &str, args: &[&str], env: &[(&str, String)], timeout: Duration) -> Outcome {
    let dir = std::env::temp_dir().join(format!("ah-gate-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("out.log");
    let out = std::fs::File::create(&log).unwrap();
    let mut child = Command::new(binary(name).unwrap())
        .args(args)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    let start = Instant::now();
    let outcome = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Outcome::Exited {
                success: status.success(),
                output: std::fs::read_to_string(&log).unwrap_or_default(),
            };
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            break Outcome::StillRunning;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let _ = std::fs::remove_dir_all(&dir);
    outcome
}

fn assert_refused(outcome: Outcome, what: &str, needles: &[&str]) -> String {
    match outcome {
        Outcome::Exited {
            success: false,
            output,
        } => {
            for n in needles {
                assert!(output.contains(n), "{what}: output lacks {n:?}:\n{output}");
            }
            output
        }
        other => panic!("{what}: expected a refusal, got {other:?}"),
    }
}

fn key() -> String {
    accesshub_store::SecretBox::generate_spec()
}

#[test]
fn production_mode_stops_naming_the_missing_setting() {
    let t = Duration::from_secs(20);
    let no_db = [("NATS_URL", "nats://127.0.0.1:1".to_owned())];
    for service in [
        "booking-ingest",
        "accesshub-admin",
        "cloudpass-worker",
        "reconciler",
    ] {
        assert_refused(run(service, &[], &no_db, t), service, &["DATABASE_URL"]);
        // Empty counts as unset (a chart rendered without the value).
        let empty = [("DATABASE_URL", String::new()), no_db[0].clone()];
        assert_refused(run(service, &[], &empty, t), service, &["DATABASE_URL"]);
    }
    assert_refused(
        run("accessctl", &["migrate"], &[], t),
        "accessctl migrate",
        &["DATABASE_URL"],
    );
    let db_only = [
        (
            "DATABASE_URL",
            "postgres://nobody@127.0.0.1:1/none".to_owned(),
        ),
        ("NATS_URL", "nats://127.0.0.1:1".to_owned()),
    ];
    for service in ["booking-ingest", "accesshub-admin"] {
        assert_refused(
            run(service, &[], &db_only, t),
            service,
            &["ACCESSHUB_ENCRYPTION_KEY"],
        );
    }
    let mut no_token = db_only.to_vec();
    no_token.push(("ACCESSHUB_ENCRYPTION_KEY", key()));
    assert_refused(
        run("accesshub-admin", &[], &no_token, t),
        "accesshub-admin",
        &["ACCESSHUB_ADMIN_TOKEN"],
    );
    no_token.push(("ACCESSHUB_ADMIN_TOKEN", "  ".to_owned()));
    assert_refused(
        run("accesshub-admin", &[], &no_token, t),
        "accesshub-admin (blank token)",
        &["ACCESSHUB_ADMIN_TOKEN"],
    );
}

/// booking-ingest's environment against `db` and the test namespace, on `port`.
fn ingest_env(db: &TestDb, bus: &TestBus, port: u16) -> Vec<(&'static str, String)> {
    vec![
        ("DATABASE_URL", db.url.clone()),
        ("NATS_URL", "nats://127.0.0.1:4222".to_owned()),
        ("ACCESSHUB_NAMESPACE", bus.namespace.clone()),
        ("ACCESSHUB_HTTP_ADDR", format!("127.0.0.1:{port}")),
        ("ACCESSHUB_ENCRYPTION_KEY", key()),
        ("ACCESSHUB_STREAM_FILE_STORAGE", "false".to_owned()),
    ]
}

/// Starts booking-ingest and waits for `/readyz`; panics with its log if it exits.
async fn ingest_becomes_ready(db: &TestDb, bus: &TestBus) {
    let port = free_port();
    let env = ingest_env(db, bus, port);
    let handle = tokio::task::spawn_blocking(move || {
        let env: Vec<(&str, String)> = env;
        run("booking-ingest", &[], &env, Duration::from_secs(8))
    });
    let url = format!("http://127.0.0.1:{port}/readyz");
    let ready = accesshub_e2e::eventually(Duration::from_secs(8), || async {
        reqwest::get(&url)
            .await
            .ok()
            .filter(|r| r.status().is_success())
            .map(|_| ())
    })
    .await;
    let outcome = handle.await.unwrap();
    assert!(
        ready.is_some() && matches!(outcome, Outcome::StillRunning),
        "booking-ingest did not run: {outcome:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_refuse_an_old_schema_until_accessctl_migrate_ran() {
    let db = TestDb::unmigrated().await;
    let bus = TestBus::new(&db.url).await;
    let versions: Vec<i64> = MIGRATOR.iter().map(|m| m.version).collect();
    let (newest, previous) = (versions[versions.len() - 1], versions[versions.len() - 2]);
    // The database as the previous release left it.
    MIGRATOR.run_to(previous, &db.pool).await.unwrap();

    let t = Duration::from_secs(30);
    let env = ingest_env(&db, &bus, free_port());
    let needles = [newest.to_string(), "accessctl migrate".to_owned()];
    let needles: Vec<&str> = needles.iter().map(String::as_str).collect();
    assert_refused(
        run("booking-ingest", &[], &env, t),
        "booking-ingest",
        &needles,
    );
    let conns = std::env::temp_dir().join(format!("{}-conns.json", bus.namespace));
    std::fs::write(&conns, "[]").unwrap();
    let mut worker_env = env.clone();
    worker_env.push(("ACCESSHUB_CONNECTIONS_FILE", conns.display().to_string()));
    // A worker retries an unreachable database, but refuses a stale schema at once.
    let started = Instant::now();
    assert_refused(
        run("cloudpass-worker", &[], &worker_env, t),
        "cloudpass-worker",
        &needles,
    );
    assert!(started.elapsed() < Duration::from_secs(15));

    match run(
        "accessctl",
        &["migrate"],
        &[("DATABASE_URL", db.url.clone())],
        t,
    ) {
        Outcome::Exited {
            success: true,
            output,
        } => assert!(output.contains(&format!("schema at {newest}")), "{output}"),
        other => panic!("accessctl migrate: {other:?}"),
    }
    ingest_becomes_ready(&db, &bus).await;
    let _ = std::fs::remove_file(conns);
    bus.cleanup().await;
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_previous_release_runs_on_a_schema_a_newer_release_migrated() {
    let db = TestDb::new().await;
    let bus = TestBus::new(&db.url).await;
    // The next release's migration: an expand step (docs/deploy.md "Migrations").
    next_release_migrator("ALTER TABLE bookings ADD COLUMN next_release_note text")
        .run(&db.pool)
        .await
        .unwrap();

    ingest_becomes_ready(&db, &bus).await;
    match run(
        "accessctl",
        &["migrate"],
        &[("DATABASE_URL", db.url.clone())],
        Duration::from_secs(30),
    ) {
        Outcome::Exited {
            success: true,
            output,
        } => assert!(
            output.contains(&format!(
                "left alone: 1 newer migration(s) from a later release ({NEXT_RELEASE_VERSION})"
            )),
            "{output}"
        ),
        other => panic!("accessctl migrate of the previous release: {other:?}"),
    }
    bus.cleanup().await;
    db.drop_db().await;
}
