//! `sites` / `time-restrictions` lookups over NATS request/reply (what the admin API asks with
//! `accesshub_connections::lookup::request`), answered with a connection stored only in
//! Postgres, against the CloudPass simulator.

#![allow(clippy::unwrap_used)] // tests may unwrap

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use accesshub_connections::{
    CloudpassAdministration, CloudpassSettings, Connection, ConnectionCache, ConnectionStore,
    DEFAULT_TTL, Secret, TenantStore, Vendor, VendorSettings,
    lookup::{
        LookupFailure, LookupFailureKind, LookupItem, LookupRequest, LookupResponse, request,
    },
};
use accesshub_store::SecretBox;
use vendor_sim::{SimConfig, SimHandle, cloudpass as cp};

fn connection(sim: &SimHandle, name: &str, client: (&str, &str)) -> Connection {
    let mut administrations = BTreeMap::new();
    administrations.insert(
        "adm-ams".to_owned(),
        CloudpassAdministration {
            site_id: cp::DEMO_SITE_AMSTERDAM.into(),
            time_restriction_id: None,
        },
    );
    Connection {
        tenant: "parks".into(),
        name: name.into(),
        enabled: true,
        sites: vec![],
        settings: VendorSettings::Cloudpass(CloudpassSettings {
            base_url: sim.cloudpass_url(),
            client_id: client.0.into(),
            client_secret: Secret::new(client.1),
            administrations,
            default_time_restriction_id: cp::DEMO_TR_AMSTERDAM_24_7.into(),
            reapply_time_restriction: false,
            window_before_minutes: 30,
            window_after_minutes: 30,
        }),
        version: 0,
    }
}

fn ask(connection: &str, what: &str, params: &[(&str, &str)]) -> LookupRequest {
    LookupRequest {
        tenant: "parks".into(),
        connection: connection.into(),
        what: what.into(),
        params: params
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    }
}

async fn items(bus: &accesshub_bus::Bus, req: &LookupRequest) -> Vec<LookupItem> {
    match request(bus, Vendor::Cloudpass, req, Duration::from_secs(10))
        .await
        .unwrap()
    {
        LookupResponse::Items { items } => items,
        LookupResponse::Error { error } => panic!("{req:?}: {error:?}"),
    }
}

async fn failure(bus: &accesshub_bus::Bus, req: &LookupRequest) -> LookupFailure {
    match request(bus, Vendor::Cloudpass, req, Duration::from_secs(10))
        .await
        .unwrap()
    {
        LookupResponse::Error { error } => error,
        LookupResponse::Items { items } => panic!("{req:?} answered {items:?}"),
    }
}

#[tokio::test]
async fn sites_and_time_restrictions_from_a_stored_connection() {
    accesshub_telemetry::init_for_tests();
    let (db, tb) = accesshub_testkit::isolated().await;
    let sim = vendor_sim::start(SimConfig::ephemeral()).await.unwrap();
    sim.state().seed_demo();
    let secrets = SecretBox::from_spec(&SecretBox::generate_spec()).unwrap();
    TenantStore::new(db.pool.clone(), secrets.clone())
        .create("parks", "Parks")
        .await
        .unwrap();
    let store = ConnectionStore::new(db.pool.clone(), secrets)
        .with_egress(accesshub_connections::EgressPolicy::loopback_http());
    for c in [
        connection(
            &sim,
            "default",
            (cp::DEMO_CLIENT_ID, cp::DEMO_CLIENT_SECRET),
        ),
        connection(
            &sim,
            "noperm",
            (cp::DEMO_NOPERM_CLIENT_ID, cp::DEMO_NOPERM_CLIENT_SECRET),
        ),
        connection(&sim, "wrong-secret", (cp::DEMO_CLIENT_ID, "nope")),
    ] {
        store.upsert(&c).await.unwrap();
    }
    let cache = Arc::new(ConnectionCache::new(store, DEFAULT_TTL));
    let task = worker_runtime::lookups::serve(
        &tb.bus,
        Vendor::Cloudpass,
        cache,
        cloudpass_adapter::lookup::answer,
    )
    .await
    .unwrap();

    let sites = items(&tb.bus, &ask("default", "sites", &[])).await;
    let ids: Vec<&str> = sites.iter().map(|s| s.id.as_str()).collect();
    assert!(ids.contains(&cp::DEMO_SITE_AMSTERDAM), "{sites:?}");
    assert!(ids.contains(&cp::DEMO_SITE_UTRECHT), "{sites:?}");
    assert!(sites.iter().all(|s| !s.name.is_empty()));

    let trs = items(
        &tb.bus,
        &ask(
            "default",
            "time-restrictions",
            &[("site", cp::DEMO_SITE_AMSTERDAM)],
        ),
    )
    .await;
    assert!(
        trs.iter().any(|t| t.id == cp::DEMO_TR_AMSTERDAM_24_7),
        "{trs:?}"
    );

    let e = failure(&tb.bus, &ask("default", "time-restrictions", &[])).await;
    assert_eq!(e.kind, LookupFailureKind::BadRequest, "{e:?}");
    assert!(e.message.contains("site"), "{}", e.message);
    let e = failure(&tb.bus, &ask("default", "locks", &[])).await;
    assert_eq!(e.kind, LookupFailureKind::BadRequest, "{e:?}");
    let e = failure(&tb.bus, &ask("missing", "sites", &[])).await;
    assert_eq!(e.kind, LookupFailureKind::NoConnection, "{e:?}");

    // 403: the API user lacks permissions → the credentials hint.
    let e = failure(&tb.bus, &ask("noperm", "sites", &[])).await;
    assert_eq!(e, LookupFailure::credentials(Vendor::Cloudpass, 403));
    // 401 on the token endpoint: wrong client secret.
    let e = failure(&tb.bus, &ask("wrong-secret", "sites", &[])).await;
    assert_eq!(e, LookupFailure::credentials(Vendor::Cloudpass, 401));

    task.abort();
    sim.shutdown().await;
    tb.cleanup().await;
    db.drop_db().await;
}
