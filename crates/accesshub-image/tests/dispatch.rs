//! The image's one binary runs the program it is called as (a link in /usr/local/bin, as
//! deploy/Dockerfile makes them), and that program is the service's own main.

#![allow(clippy::unwrap_used)]

use std::{path::PathBuf, process::Command};

const PROGRAMS: [&str; 8] = [
    "booking-ingest",
    "accesshub-admin",
    "cloudpass-worker",
    "dormakaba-worker",
    "ipassan-worker",
    "tapkey-worker",
    "reconciler",
    "accessctl",
];

/// A directory with a link per program to the built binary, like the image's /usr/local/bin.
fn links() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("accesshub-links-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for p in PROGRAMS {
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_accesshub"), dir.join(p)).unwrap();
    }
    dir
}

#[test]
fn each_link_runs_its_program() {
    let dir = links();
    let help = Command::new(dir.join("accessctl"))
        .arg("--help")
        .env_clear()
        .output()
        .unwrap();
    assert!(help.status.success());
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(text.contains("migrate"), "{text}");
    // Every service starts its own main: in production mode without DATABASE_URL it stops
    // naming the variable (and not with the dispatcher's message).
    for p in &PROGRAMS[..7] {
        let out = Command::new(dir.join(p))
            .env_clear()
            .env("NATS_URL", "nats://127.0.0.1:1")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{p} started");
        assert!(err.contains("DATABASE_URL"), "{p}: {err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn called_by_another_name_it_lists_its_programs() {
    let out = Command::new(env!("CARGO_BIN_EXE_accesshub"))
        .env_clear()
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for p in PROGRAMS {
        assert!(err.contains(p), "{err}");
    }
}
