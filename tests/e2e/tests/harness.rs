//! The harness's own chaos primitives work: a private NATS and a private Postgres can be
//! started, killed and restarted without touching the shared services.

use std::time::Duration;

use accesshub_e2e::{PrivateNats, PrivatePostgres, port_open};

#[test]
fn private_nats_kill_and_restart() {
    let mut nats = PrivateNats::start().unwrap();
    assert!(port_open(nats.port));
    nats.kill();
    std::thread::sleep(Duration::from_millis(200));
    assert!(!port_open(nats.port));
    nats.restart().unwrap();
    assert!(port_open(nats.port));
    assert!(port_open(4222), "shared NATS untouched");
}

#[test]
fn private_postgres_restart() {
    let pg = PrivatePostgres::start().unwrap();
    assert!(port_open(pg.port));
    pg.restart().unwrap();
    assert!(port_open(pg.port));
    assert!(port_open(5432), "shared Postgres untouched");
}
