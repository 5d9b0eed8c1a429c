//! `accessctl connections apply -f`, `tenants` and `lookup` end to end, in-process, against
//! the admin API served on an ephemeral port (real Postgres and NATS).
#![allow(clippy::unwrap_used)]

use accessctl::{
    cmd::{
        connections::{self, ApiClient, ConnectionsCommand},
        lookup::{self, LookupArgs},
        tenants::{self, TenantsCommand},
    },
    output::Format,
};
use accesshub_admin::{AdminConfig, AdminState};
use accesshub_connections::{
    ApplyStatus, ConnectionStore, Vendor, VendorSettings,
    lookup::{LookupFailure, LookupItem, LookupRequest, serve_lookups},
};
use accesshub_store::SecretBox;

const BOOT: &str = "accessctl-test-admin-token";

const FILE: &str = r#"
apiVersion: accesshub/v1
kind: Tenant
metadata: { name: acme }
spec: { name: Acme Hotels }
---
apiVersion: accesshub/v1
kind: Connection
metadata: { tenant: acme }
spec:
  vendor: cloudpass
  base_url: http://127.0.0.1:9
  client_id: api-user
  client_secret: cp-secret-1
  default_time_restriction_id: tr-1
  administrations:
    adm-1: { site_id: site-1 }
---
apiVersion: accesshub/v1
kind: Connection
metadata: { tenant: acme, name: hotel-a }
spec:
  vendor: dormakaba
  sites: [hotel-a]
  product: saflok
  host: 10.0.0.5
  port: 8080
  username: pms
  password: pms-pw
  site_name: HOTEL
  pms_terminal_id: "1"
  encoders:
    - { name: Front desk, id: "1" }
"#;

/// The admin API over `db` and `bus` (bootstrap token [`BOOT`], `egress`) served on an
/// ephemeral port: its base URL and a client for it.
async fn serve_admin(
    db: &accesshub_testkit::TestDb,
    bus: &accesshub_testkit::TestBus,
    secrets: &SecretBox,
    egress: accesshub_connections::EgressPolicy,
) -> (String, ApiClient) {
    let state = AdminState::new(
        db.pool.clone(),
        secrets.clone(),
        bus.bus.clone(),
        AdminConfig {
            bootstrap_token: Some(BOOT.into()),
            lookup_timeout: None,
            ..Default::default()
        },
    )
    .with_egress(egress);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/admin/v1", listener.local_addr().unwrap());
    tokio::spawn(async move {
        axum::serve(listener, accesshub_admin::mounted(state))
            .await
            .unwrap()
    });
    let api = ApiClient::new(&base, BOOT).unwrap();
    (base, api)
}

#[tokio::test]
async fn apply_yaml_end_to_end() {
    let (db, bus) = accesshub_testkit::isolated().await;
    let secrets = SecretBox::from_spec(&SecretBox::generate_spec()).unwrap();
    let (base, api) = serve_admin(
        &db,
        &bus,
        &secrets,
        "http://127.0.0.1:*,https://10.0.0.5:*".parse().unwrap(),
    )
    .await;

    // apply -f FILE through the command itself.
    let path = std::env::temp_dir().join(format!("accessctl-{}.yaml", uuid_like()));
    std::fs::write(&path, FILE).unwrap();
    connections::run_with(
        &api,
        ConnectionsCommand::Apply {
            file: path.to_string_lossy().into_owned(),
            dry_run: false,
        },
        Format::Table,
    )
    .await
    .unwrap();
    let _ = std::fs::remove_file(&path);
    let store = ConnectionStore::new(db.pool.clone(), secrets);
    let cp = store
        .get("acme", Vendor::Cloudpass, "default")
        .await
        .unwrap()
        .unwrap();
    let VendorSettings::Cloudpass(s) = &cp.settings else {
        panic!()
    };
    assert_eq!(s.client_secret.expose(), "cp-secret-1");
    let dk = store
        .get("acme", Vendor::Dormakaba, "hotel-a")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(dk.sites, ["hotel-a"]);

    // Idempotent: applying again changes nothing.
    let again = connections::apply_text(&api, FILE, false).await.unwrap();
    assert!(
        again.iter().all(|r| r.status == ApplyStatus::Unchanged),
        "{again:?}"
    );

    // Dry run of an edit: a diff, nothing written.
    let edited = FILE.replace("port: 8080", "port: 8443");
    let plan = connections::apply_text(&api, &edited, true).await.unwrap();
    let dk_plan = &plan[2];
    assert_eq!(dk_plan.status, ApplyStatus::Updated);
    assert_eq!(dk_plan.changes[0].path, "settings.port");
    assert_eq!(
        store
            .get("acme", Vendor::Dormakaba, "hotel-a")
            .await
            .unwrap()
            .unwrap()
            .version,
        1
    );
    let done = connections::apply_text(&api, &edited, false).await.unwrap();
    assert_eq!(done[2].version, Some(2));

    // `get -o yaml` output re-applies unchanged (secrets come back as *** and are kept).
    let c: accesshub_connections::Connection = api
        .get("/connections/acme/dormakaba/hotel-a", &[])
        .await
        .unwrap();
    let doc = yaml_serde::to_string(&connections::to_document(&c).unwrap()).unwrap();
    assert!(doc.contains("'***'") && !doc.contains("pms-pw"), "{doc}");
    let round = connections::apply_text(&api, &doc, false).await.unwrap();
    assert_eq!(round[0].status, ApplyStatus::Unchanged);

    // Bad documents name the document and field.
    let usb = FILE.replace(
        "    - { name: Front desk, id: \"1\" }",
        "    - { name: Front desk, id: \"1\" }\n    - { name: Back office, id: \"2\", kind: usb }",
    );
    let err = connections::apply_text(&api, &usb, false)
        .await
        .unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("settings.encoders[1].kind: USB encoders are not supported"),
        "{msg}"
    );
    let typo = FILE.replace("port: 8080", "port: eighty");
    let msg = format!(
        "{:#}",
        connections::apply_text(&api, &typo, false)
            .await
            .unwrap_err()
    );
    assert!(
        msg.contains("document 3") && msg.contains("spec.port"),
        "{msg}"
    );
    let unset = FILE.replace("cp-secret-1", "${ACCESSCTL_TEST_UNSET_VAR}");
    let msg = format!(
        "{:#}",
        connections::apply_text(&api, &unset, false)
            .await
            .unwrap_err()
    );
    assert!(
        msg.contains(
            "spec.client_secret: environment variable ACCESSCTL_TEST_UNSET_VAR is not set"
        ),
        "{msg}"
    );

    // Lookup: the CloudPass 403 surfaces with the Website Users hint.
    let _srv = serve_lookups(&bus.bus, Vendor::Cloudpass, |r: LookupRequest| async move {
        match r.what.as_str() {
            "sites" => Err(LookupFailure::credentials(Vendor::Cloudpass, 403)),
            _ => Ok(vec![LookupItem {
                id: "tr-1".into(),
                name: "24/7".into(),
                detail: r.params.get("site").cloned(),
            }]),
        }
    })
    .await
    .unwrap();
    let args = |what: &str, params: Vec<String>| LookupArgs {
        tenant: "acme".into(),
        vendor: "cloudpass".into(),
        what: what.into(),
        params,
        connection: "default".into(),
    };
    let err = lookup::fetch(&api, &args("sites", vec![]))
        .await
        .unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("check the API user's permissions under Settings → Website Users"),
        "{msg}"
    );
    let items = lookup::fetch(&api, &args("time-restrictions", vec!["site=site-1".into()]))
        .await
        .unwrap();
    assert_eq!(items[0].detail.as_deref(), Some("site-1"));

    // Tenants and a read-only token's 403 message.
    tenants::run_with(&api, TenantsCommand::List, Format::Json)
        .await
        .unwrap();
    tenants::run_with(
        &api,
        TenantsCommand::RotateSecret {
            tenant: "acme".into(),
            source: "bex".into(),
            previous_ttl: "1h".parse().unwrap(),
        },
        Format::Json,
    )
    .await
    .unwrap();
    let created: serde_json::Value = api
        .write(
            reqwest::Method::POST,
            "/tokens",
            &[],
            &serde_json::json!({"name": "ro", "scopes": ["read"]}),
        )
        .await
        .unwrap();
    let ro = ApiClient::new(&base, created["token"].as_str().unwrap()).unwrap();
    let msg = format!(
        "{:#}",
        connections::run_with(
            &ro,
            ConnectionsCommand::Delete {
                tenant: "acme".into(),
                vendor: Vendor::Cloudpass,
                name: "default".into(),
                access: Default::default(),
            },
            Format::Table
        )
        .await
        .unwrap_err()
    );
    assert!(msg.contains("403"), "{msg}");

    // A booking holds access through the connection: no delete or disable without a choice.
    sqlx::raw_sql(
        "INSERT INTO bookings (tenant_id, kind, booking_key, site, revision, source, event_id, payload)
         VALUES ('acme', 'reservation', 'R1', 'adm-1', 1, 'bex', gen_random_uuid(), '{}');
         INSERT INTO bindings (tenant_id, vendor, kind, booking_key, applied_revision, status)
         VALUES ('acme', 'cloudpass', 'reservation', 'R1', 1, 'active')",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    let target = |access| ConnectionsCommand::Delete {
        tenant: "acme".into(),
        vendor: Vendor::Cloudpass,
        name: "default".into(),
        access,
    };
    let msg = format!(
        "{:#}",
        connections::run_with(&api, target(Default::default()), Format::Table)
            .await
            .unwrap_err()
    );
    assert!(
        msg.contains("409")
            && msg.contains("1 booking(s) hold access")
            && msg.contains("--remove-access"),
        "{msg}"
    );
    let keep = || accessctl::cmd::offboard::AccessArgs {
        keep_access: true,
        ..Default::default()
    };
    connections::run_with(
        &api,
        ConnectionsCommand::Disable {
            tenant: "acme".into(),
            vendor: Vendor::Cloudpass,
            name: "default".into(),
            access: keep(),
        },
        Format::Table,
    )
    .await
    .unwrap();
    let cp = store
        .get("acme", Vendor::Cloudpass, "default")
        .await
        .unwrap()
        .unwrap();
    assert!(!cp.enabled);
    connections::run_with(&api, target(keep()), Format::Table)
        .await
        .unwrap();
    assert!(
        store
            .get("acme", Vendor::Cloudpass, "default")
            .await
            .unwrap()
            .is_none()
    );
    let msg = format!(
        "{:#}",
        tenants::run_with(
            &api,
            TenantsCommand::Delete {
                id: "acme".into(),
                access: Default::default()
            },
            Format::Table
        )
        .await
        .unwrap_err()
    );
    assert!(msg.contains("409"), "{msg}");
    tenants::run_with(
        &api,
        TenantsCommand::Delete {
            id: "acme".into(),
            access: keep(),
        },
        Format::Table,
    )
    .await
    .unwrap();
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM bookings WHERE tenant_id = 'acme'")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(left, 0, "the tenant's bookings go with it");

    bus.cleanup().await;
    db.drop_db().await;
}

fn uuid_like() -> String {
    format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

/// `accessctl lookup TENANT bex rentables administration=ID` (issue 21 item 4): the object ids
/// of a BEX administration, read by the admin API from the BEX simulator with the tenant's
/// stored API key; `administrations` lists the administrations.
#[tokio::test]
async fn lookup_bex_rentables_and_administrations() {
    use vendor_sim::bex;
    let (db, bus) = accesshub_testkit::isolated().await;
    let bexsim = bex::start_ephemeral().await.unwrap();
    bexsim.add_administration("4711", "Strandhotel");
    bexsim.put_rentable("4711", "5501", "Kamer 12");
    let secrets = SecretBox::from_spec(&SecretBox::generate_spec()).unwrap();
    let (_, api) = serve_admin(
        &db,
        &bus,
        &secrets,
        accesshub_connections::EgressPolicy::loopback_http(),
    )
    .await;
    let _: serde_json::Value = api
        .write(
            reqwest::Method::POST,
            "/tenants",
            &[],
            &serde_json::json!({"id": "acme"}),
        )
        .await
        .unwrap();
    let _: serde_json::Value = api
        .write(
            reqwest::Method::PUT,
            "/tenants/acme/sources/bex/api",
            &[],
            &serde_json::json!({"base_url": bexsim.url(), "secret": bex::DEMO_API_KEY}),
        )
        .await
        .unwrap();
    let args = |what: &str, params: Vec<String>| LookupArgs {
        tenant: "acme".into(),
        vendor: "bex".into(),
        what: what.into(),
        params,
        connection: "default".into(),
    };
    let items = lookup::fetch(&api, &args("rentables", vec!["administration=4711".into()]))
        .await
        .unwrap();
    assert_eq!(
        items
            .iter()
            .map(|i| (i.id.as_str(), i.name.as_str()))
            .collect::<Vec<_>>(),
        [("5501", "Kamer 12")]
    );
    let items = lookup::fetch(&api, &args("administrations", vec![]))
        .await
        .unwrap();
    assert_eq!(items[0].id, "4711");
    assert_eq!(items[0].name, "Strandhotel");
    let err = lookup::fetch(&api, &args("rentables", vec![]))
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("administration"), "{err:#}");

    bexsim.shutdown().await;
    bus.cleanup().await;
    db.drop_db().await;
}
