//! A service of the image runs without transparent huge pages: with them, every 2 MiB region of
//! mimalloc's arena it touches is resident in full, which doubled booking-ingest's idle memory.

#![allow(clippy::unwrap_used)]

use std::{
    process::{Command, Stdio},
    time::Duration,
};

/// `THP_enabled` of a live process's `/proc/<pid>/status` (Linux ≥ 5.0).
fn thp_enabled(pid: u32) -> Option<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("THP_enabled:"))
        .map(|v| v.trim().to_owned())
}

#[tokio::test]
async fn a_running_service_has_transparent_huge_pages_off() {
    let db = accesshub_testkit::TestDb::new().await;
    let dir = std::env::temp_dir().join(format!("accesshub-thp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let link = dir.join("booking-ingest");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_accesshub"), &link).unwrap();
    let nats = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let mut child = Command::new(&link)
        .env_clear()
        .env("DATABASE_URL", &db.url)
        .env("NATS_URL", nats)
        .env("ACCESSHUB_NAMESPACE", format!("thp{}", std::process::id()))
        .env("ACCESSHUB_HTTP_ADDR", "127.0.0.1:0")
        .env(
            "ACCESSHUB_ENCRYPTION_KEY",
            accesshub_store::SecretBox::generate_spec(),
        )
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The flag is set first thing in main; a second later the service is running (it waits
    // for its streams in the background, so it does not exit).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let seen = thp_enabled(child.id());
    let exited = child.try_wait().unwrap();
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    db.drop_db().await;
    assert!(
        exited.is_none(),
        "booking-ingest exited: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Kernels before 5.0 do not report it; every machine this runs on does.
    assert_eq!(seen.as_deref(), Some("0"));
}
