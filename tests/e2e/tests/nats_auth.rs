//! NATS identities (issue 23 item 1, security review H1): a private nats-server with the
//! configuration generated from deploy/nats/permissions.yaml. Each service runs as its own
//! user; the server refuses what an identity's permissions do not allow, the unauthenticated
//! client is not let in, an upstream bound to one tenant can ingest for that tenant only, and
//! no service may change a stream (only `accessctl streams apply` as accesshub-streams may).
//! The whole path (NATS ingest → BOOKINGS → tapkey-worker → Tapkey simulator) still works.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use accesshub_domain::subjects;
use accesshub_e2e::PrivateNats;
use common::{Options, Stack, TENANT, tapkey_conn};
use serde_json::{Value, json};

/// A client connected as `user`, and the server errors it has been told about.
async fn client_as(
    nats: &PrivateNats,
    user: &str,
) -> (async_nats::Client, Arc<Mutex<Vec<String>>>) {
    let errors = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&errors);
    let client = async_nats::ConnectOptions::with_user_and_password(
        user.to_owned(),
        nats.passwords[user].clone(),
    )
    .custom_inbox_prefix(accesshub_natsauth::inbox_prefix(user))
    .event_callback(move |ev| {
        let seen = Arc::clone(&seen);
        async move {
            seen.lock().unwrap().push(ev.to_string());
        }
    })
    .connect(nats.url())
    .await
    .unwrap_or_else(|e| panic!("connect as {user}: {e}"));
    (client, errors)
}

/// Publishes on `subject` as this client and asserts the server refused it: a permissions
/// violation naming the subject arrives, and a JetStream publish gets no PubAck.
async fn assert_publish_refused(
    client: &async_nats::Client,
    errors: &Arc<Mutex<Vec<String>>>,
    who: &str,
    subject: &str,
) {
    client
        .publish(subject.to_owned(), b"{}".to_vec().into())
        .await
        .unwrap();
    client.flush().await.unwrap();
    let want = format!("Permissions Violation for Publish to \"{subject}\"");
    let found = accesshub_e2e::eventually(Duration::from_secs(5), || {
        let errors = Arc::clone(errors);
        let want = want.clone();
        async move {
            errors
                .lock()
                .unwrap()
                .iter()
                .any(|e| e.contains(&want))
                .then_some(())
        }
    })
    .await;
    assert!(
        found.is_some(),
        "{who} published {subject} without a permissions violation; server said {:?}",
        errors.lock().unwrap()
    );
    let js = async_nats::jetstream::ContextBuilder::new()
        .timeout(Duration::from_secs(2))
        .build(client.clone());
    let acked = match js.publish(subject.to_owned(), b"{}".to_vec().into()).await {
        Ok(f) => f.await.is_ok(),
        Err(_) => false,
    };
    assert!(!acked, "{who}: a stream acknowledged {subject}");
}

/// A native (accesshub schema) Tapkey pass for `tenant`: pass type 8 opens two locks.
fn native_pass(tenant: &str, key: &str, email: &str) -> Value {
    let now = chrono::Utc::now();
    json!({
        "id": uuid::Uuid::new_v4().to_string(),
        "tenant": tenant,
        "site": "coworking",
        "booking_key": key,
        "revision": now.timestamp_millis(),
        "source": "native",
        "occurred_at": now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "schema_version": 1,
        "kind": "pass",
        "payload": {
            "status": "active",
            "holder": {"id": key, "email": email, "name": "Nat S. Identity"},
            "pass_type": "8",
            "pass_type_name": "Day pass",
            "valid_from": (now - chrono::Duration::minutes(5)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "expires_at": (now + chrono::Duration::hours(8)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        }
    })
}

#[tokio::test]
async fn every_identity_is_held_to_its_permissions_and_the_system_still_works() {
    let ns = format!("e2eauth{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let nats = PrivateNats::start_authorized(&ns, &["acme-pms:acme", "globex-pms:globex"]).unwrap();
    let mut s = Stack::new(Options {
        nats_url: Some(nats.url()),
        namespace: Some(ns.clone()),
        nats_passwords: Some(nats.passwords.clone()),
        ..Options::default()
    })
    .await;
    let conn = tapkey_conn(&s.sim);
    s.add_connection(conn).await;
    // Each service connects as the user of its name (Stack::nats_identity). The streams were
    // created by `accessctl streams apply` as accesshub-streams (Stack::new), as the release's
    // migrations Job does; the services (production mode) only check them. NATS ingest is
    // opt-in outside dev mode.
    s.start_ingest(&[("ACCESSHUB_NATS_INGEST".to_owned(), "true".to_owned())])
        .await;
    s.start_worker("tapkey-worker", &[]).await;
    // The other services start and run under their identities too (their consumers, streams
    // and subscriptions are created at start-up; any refusal shows in the server log below).
    for other in [
        "cloudpass-worker",
        "dormakaba-worker",
        "ipassan-worker",
        "reconciler",
        "accesshub-admin",
    ] {
        s.start_worker(other, &[]).await;
    }
    let sub = |x: &str| format!("{ns}.{x}");

    // Nobody gets in without credentials, so nobody anonymous publishes bookings.>.
    let anon = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(3))
        .connect(nats.url())
        .await;
    assert!(anon.is_err(), "an unauthenticated client was let in");

    // booking-ingest publishes bookings, never repair commands.
    let (ingest, ingest_err) = client_as(&nats, "booking-ingest").await;
    assert_publish_refused(
        &ingest,
        &ingest_err,
        "booking-ingest",
        &sub("sync.tapkey.acme.k1"),
    )
    .await;
    // A worker consumes; it can neither inject events nor another vendor's repair commands
    // (its own vendor's feed it may publish: events parked by a circuit breaker go back
    // through it, and it holds that vendor's credentials anyway).
    let (worker, worker_err) = client_as(&nats, "tapkey-worker").await;
    for subject in [sub("bookings.pass.acme.k1"), sub("sync.cloudpass.acme.k1")] {
        assert_publish_refused(&worker, &worker_err, "tapkey-worker", &subject).await;
    }
    // ...nor read another identity's replies.
    assert!(
        worker.subscribe("_INBOX.booking-ingest.>").await.is_ok(),
        "the subscribe call itself is local"
    );
    worker.flush().await.unwrap();
    let sub_refused = accesshub_e2e::eventually(Duration::from_secs(5), || {
        let e = Arc::clone(&worker_err);
        async move {
            e.lock()
                .unwrap()
                .iter()
                .any(|m| {
                    m.contains(
                        "Permissions Violation for Subscription to \"_INBOX.booking-ingest.>\"",
                    )
                })
                .then_some(())
        }
    })
    .await;
    assert!(sub_refused.is_some(), "{:?}", worker_err.lock().unwrap());

    // No service may change a stream (its limits): only the streams identity may. A
    // compromised worker or ingest pod is refused the JetStream API call outright.
    let bookings = subjects::Namespace::new(&ns).stream(subjects::BOOKINGS_STREAM);
    let update = format!("$JS.API.STREAM.UPDATE.{bookings}");
    assert_publish_refused(&worker, &worker_err, "tapkey-worker", &update).await;
    for service in ["booking-ingest", "reconciler"] {
        let (client, errors) = client_as(&nats, service).await;
        assert_publish_refused(&client, &errors, service, &update).await;
        let js = async_nats::jetstream::ContextBuilder::new()
            .timeout(Duration::from_secs(2))
            .build(client.clone());
        // It may read the stream's settings (the start-up check)...
        let mut config = js
            .get_stream(&bookings)
            .await
            .unwrap_or_else(|e| panic!("{service} reads stream info: {e}"))
            .cached_info()
            .config
            .clone();
        // ...but not change them.
        let before = config.max_age;
        config.max_age = Duration::from_secs(60);
        assert!(
            js.update_stream(config).await.is_err(),
            "{service} updated stream {bookings}"
        );
        let (setup, _) = client_as(&nats, "accesshub-streams").await;
        let now = async_nats::jetstream::new(setup)
            .get_stream(&bookings)
            .await
            .unwrap()
            .cached_info()
            .config
            .max_age;
        assert_eq!(now, before, "{service} changed the stream's max age");
    }

    // An upstream bound to tenant acme ingests for acme, and only for acme.
    let (pms, pms_err) = client_as(&nats, "acme-pms").await;
    let email = format!("{ns}@example.com");
    let body = serde_json::to_vec(&native_pass(TENANT, &format!("{ns}-p1"), &email)).unwrap();
    let reply = tokio::time::timeout(
        Duration::from_secs(10),
        pms.request(
            sub(&subjects::ingest("native", TENANT)),
            body.clone().into(),
        ),
    )
    .await
    .expect("ingest answered in time")
    .expect("request as acme-pms");
    let answer: Value = serde_json::from_slice(&reply.payload).unwrap();
    assert_eq!(answer["status"], "accepted", "{answer}\n{}", s.logs());
    let other = serde_json::to_vec(&native_pass("globex", "g1", "g@example.com")).unwrap();
    assert_publish_refused(
        &pms,
        &pms_err,
        "acme-pms",
        &sub(&subjects::ingest("native", "globex")),
    )
    .await;
    let refused = tokio::time::timeout(
        Duration::from_secs(3),
        pms.request(sub(&subjects::ingest("native", "globex")), other.into()),
    )
    .await;
    assert!(
        !matches!(refused, Ok(Ok(_))),
        "acme-pms got an answer for tenant globex"
    );

    // The accepted pass went ingest → BOOKINGS → tapkey-worker → Tapkey, all under identities.
    s.wait_until(
        "two Tapkey grants for the pass",
        Duration::from_secs(30),
        || async {
            let st = s.sim.state("tapkey").await;
            st.to_string().matches(&email).count() >= 1
                && s.sim
                    .live("tapkey")
                    .await
                    .iter()
                    .filter(|g| g.to_string().contains(&email))
                    .count()
                    == 2
        },
    )
    .await;
    // The DLQ role reads the DLQ stream (empty here) without being refused.
    assert!(s.dead_letters().await.is_empty());
    // No service was refused anything on its own path: the only violations in the server's
    // log are the ones this test provoked, the only failed login the anonymous one.
    let log = nats.log();
    let provoked = |l: &str| {
        l.contains(".k1\"")
            || l.contains("globex")
            || l.contains("\"_INBOX.booking-ingest.>\"")
            || l.contains("$JS.API.STREAM.UPDATE.")
    };
    let unexpected: Vec<&str> = log
        .lines()
        .filter(|l| {
            (l.contains("Violation") && !provoked(l))
                || (l.contains("authentication error") && !l.contains("User \"\""))
        })
        .collect();
    assert!(
        unexpected.is_empty(),
        "a service hit its permissions in normal operation: {unexpected:#?}"
    );
    assert!(
        log.contains("Publish Violation - User \"booking-ingest\""),
        "{log}"
    );
    s.finish().await;
}
