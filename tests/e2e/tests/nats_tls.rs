//! NATS over TLS (issue 23 item 1, "TLS optional but supported"): a private nats-server with
//! the configuration `accesshub-nats-config server --tls-cert --tls-key --tls-ca` renders (one
//! user per service, client certificates verified), a throwaway CA made with openssl, and the
//! services configured the way the chart does it: `tls://` in `NATS_URL`, the CA in
//! `ACCESSHUB_NATS_CA`, the client certificate in `ACCESSHUB_NATS_CLIENT_CERT`/`_KEY`.
//! A webhook goes booking-ingest → BOOKINGS → tapkey-worker → Tapkey over it; a client that
//! does not trust the CA, or has no client certificate, is refused.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use accesshub_e2e::{PrivateNats, TestPki};
use common::{Options, Stack, pass_email, pass_event, tapkey_conn};

#[tokio::test]
async fn services_talk_over_tls_and_clients_without_the_ca_or_a_certificate_are_refused() {
    // The test's own NATS clients (the refused ones) need a process-wide rustls provider, as
    // every service's main installs.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ns = format!("e2etls{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let pki = TestPki::generate().unwrap();
    let path = |p: &std::path::Path| p.display().to_string();
    let nats = PrivateNats::start_authorized_with(
        &ns,
        &[],
        Some(accesshub_natsauth::Tls {
            cert_file: path(&pki.server_cert),
            key_file: path(&pki.server_key),
            ca_file: Some(path(&pki.ca)),
        }),
    )
    .unwrap();
    assert!(nats.url().starts_with("tls://"), "{}", nats.url());
    let mut s = Stack::new(Options {
        nats_url: Some(nats.url()),
        namespace: Some(ns.clone()),
        nats_passwords: Some(nats.passwords.clone()),
        env: vec![
            ("ACCESSHUB_NATS_CA".into(), path(&pki.ca)),
            ("ACCESSHUB_NATS_CLIENT_CERT".into(), path(&pki.client_cert)),
            ("ACCESSHUB_NATS_CLIENT_KEY".into(), path(&pki.client_key)),
        ],
        ..Options::default()
    })
    .await;
    s.add_connection(tapkey_conn(&s.sim)).await;
    // Ready means connected: both create their streams and consumers at start-up.
    s.start_ingest(&[]).await;
    s.start_worker("tapkey-worker", &[]).await;

    s.accepted("nexudus", &pass_event(&ns, 1)).await;
    let email = pass_email(&ns, 1);
    s.wait_until(
        "two Tapkey grants for the pass, over TLS",
        Duration::from_secs(30),
        || async {
            s.sim
                .live("tapkey")
                .await
                .iter()
                .filter(|g| g.to_string().contains(&email))
                .count()
                == 2
        },
    )
    .await;
    assert!(s.dead_letters().await.is_empty());

    // A client with the right password but the system roots does not trust the server.
    let user = "booking-ingest";
    let pw = nats.passwords[user].clone();
    let connect = |opts: async_nats::ConnectOptions| {
        let url = nats.url();
        async move {
            opts.connection_timeout(Duration::from_secs(3))
                .connect(url)
                .await
        }
    };
    let no_ca = connect(async_nats::ConnectOptions::with_user_and_password(
        user.into(),
        pw.clone(),
    ))
    .await;
    assert!(
        no_ca.is_err(),
        "a client without the CA connected to the TLS server"
    );
    // Trusting the CA is not enough where the server verifies clients: no certificate, no entry.
    let no_cert = connect(
        async_nats::ConnectOptions::with_user_and_password(user.into(), pw.clone())
            .add_root_certificates(pki.ca.clone()),
    )
    .await;
    assert!(
        no_cert.is_err(),
        "a client without a client certificate connected"
    );
    // The same settings as the services' connect.
    let ok = connect(
        async_nats::ConnectOptions::with_user_and_password(user.into(), pw)
            .add_root_certificates(pki.ca.clone())
            .add_client_certificate(pki.client_cert.clone(), pki.client_key.clone()),
    )
    .await;
    assert!(ok.is_ok(), "{:?}", ok.err());
    s.finish().await;
}

/// A service given a CA refuses a server that does not speak TLS rather than sending its
/// NATS password in the clear (`require_tls` when any TLS setting is present).
#[tokio::test]
async fn a_service_with_a_ca_refuses_a_plain_server() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ns = format!("e2etls{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let pki = TestPki::generate().unwrap();
    let nats = PrivateNats::start_authorized(&ns, &[]).unwrap();
    let mut cfg = accesshub_config::CommonConfig::for_test("booking-ingest", &ns, "postgres://x");
    cfg.nats_url = nats.url();
    cfg.nats_user = Some((
        "booking-ingest".into(),
        nats.passwords["booking-ingest"].clone(),
    ));
    cfg.nats_inbox_prefix = Some("_INBOX.booking-ingest".into());
    let bus = accesshub_bus::connect(&cfg).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(bus.is_connected(), "plain control connection failed");

    cfg.nats_tls.ca_file = Some(pki.ca.clone());
    let bus = accesshub_bus::connect(&cfg).await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        !bus.is_connected(),
        "connected in plain text although a CA is configured"
    );
    // The client starts a TLS handshake where the server expects CONNECT: the server sees
    // bytes without a user, never this identity's login.
    let log = nats.log();
    assert!(
        log.contains("authentication error - User \"\""),
        "the client did not try TLS: {log}"
    );
    assert!(
        !log.contains("User \"booking-ingest\""),
        "the identity logged in over plain text: {log}"
    );
}
