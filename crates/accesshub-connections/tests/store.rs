//! Against the real Postgres and NATS (isolated per test by accesshub-testkit).
#![allow(clippy::unwrap_used)]

use std::{sync::Arc, time::Duration};

use accesshub_connections::{
    lookup::{self, LookupFailure, LookupItem, LookupRequest, LookupResponse},
    *,
};
use accesshub_domain::egress::EgressPolicy;
use accesshub_store::SecretBox;
use sqlx::Row;

const SECRET: &str = "sUp3r-S3cret-CloudPass-7f1e";

fn cloudpass(tenant: &str) -> Connection {
    yaml_serde::from_str(&format!(
        r#"
tenant: {tenant}
settings:
  vendor: cloudpass
  base_url: http://127.0.0.1:9001
  client_id: api-user
  client_secret: {SECRET}
  default_time_restriction_id: tr-1
  administrations:
    adm-1: {{ site_id: site-1 }}
"#
    ))
    .unwrap()
}

fn dormakaba(tenant: &str) -> Connection {
    yaml_serde::from_str(&format!(
        r#"
tenant: {tenant}
sites: [hotel-a]
settings:
  vendor: dormakaba
  product: saflok
  host: 10.0.0.5
  port: 8080
  username: pms
  password: pw
  site_name: HOTEL
  pms_terminal_id: "1"
  encoders:
    - {{ name: Front desk, id: "1" }}
"#
    ))
    .unwrap()
}

/// The fixtures' endpoints: the CloudPass simulator on loopback, the lock server on 10.0.0.5.
fn allow_fixtures() -> EgressPolicy {
    "http://127.0.0.1:*,https://10.0.0.5:8080".parse().unwrap()
}

async fn setup() -> (
    accesshub_testkit::TestDb,
    accesshub_testkit::TestBus,
    ConnectionStore,
) {
    let (db, bus) = accesshub_testkit::isolated().await;
    let secrets = SecretBox::from_spec(&SecretBox::generate_spec()).unwrap();
    TenantStore::new(db.pool.clone(), secrets.clone())
        .create("acme", "Acme Hotels")
        .await
        .unwrap();
    let store = ConnectionStore::new(db.pool.clone(), secrets)
        .with_bus(bus.bus.clone())
        .with_egress(allow_fixtures());
    (db, bus, store)
}

#[tokio::test]
async fn apply_is_idempotent_versions_and_never_stores_secrets_in_clear() {
    let (db, bus, store) = setup().await;
    let c = cloudpass("acme");

    let out = store.apply(&c, false).await.unwrap();
    assert_eq!(out.status, ApplyStatus::Created);
    assert_eq!(out.connection.version, 1);

    let again = store.apply(&c, false).await.unwrap();
    assert_eq!(again.status, ApplyStatus::Unchanged);
    assert_eq!(again.connection.version, 1);
    assert!(again.changes.is_empty());

    // The stored row holds the secret only sealed.
    let row = sqlx::query("SELECT settings::text AS s, settings_enc FROM connections")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    let plain: String = row.get("s");
    let enc: String = row.get("settings_enc");
    assert!(!plain.contains(SECRET) && !enc.contains(SECRET));
    assert!(plain.contains("\"***\""));

    // Dry run of a change: diff, nothing written.
    let mut changed = c.clone();
    if let VendorSettings::Cloudpass(s) = &mut changed.settings {
        s.window_before_minutes = 15;
        s.client_secret = Secret::new("another-secret");
    }
    let plan = store.apply(&changed, true).await.unwrap();
    assert_eq!(plan.status, ApplyStatus::Updated);
    let paths: Vec<_> = plan.changes.iter().map(|c| c.path.as_str()).collect();
    assert!(
        paths.contains(&"settings.window_before_minutes"),
        "{paths:?}"
    );
    assert!(paths.contains(&"settings.client_secret"), "{paths:?}");
    let rendered = diff::render(&plan.changes);
    assert!(!rendered.contains("another-secret") && !rendered.contains(SECRET));
    assert_eq!(
        store
            .get("acme", Vendor::Cloudpass, "default")
            .await
            .unwrap()
            .unwrap()
            .version,
        1
    );

    let upd = store.upsert(&changed).await.unwrap();
    assert_eq!(upd.version, 2);

    // `***` keeps the stored secret.
    let mut redacted = upd.redacted();
    redacted.version = 0;
    let out = store.apply(&redacted, false).await.unwrap();
    assert_eq!(out.status, ApplyStatus::Unchanged);
    let got = store
        .get("acme", Vendor::Cloudpass, "default")
        .await
        .unwrap()
        .unwrap();
    if let VendorSettings::Cloudpass(s) = &got.settings {
        assert_eq!(s.client_secret.expose(), "another-secret");
    }

    // Stale version → conflict.
    let mut stale = changed.clone();
    stale.version = 1;
    stale.enabled = false;
    assert!(matches!(
        store.apply(&stale, false).await,
        Err(ConnectionError::Conflict {
            stored: 2,
            given: 1
        })
    ));

    // Unknown tenant.
    assert!(matches!(
        store.apply(&cloudpass("nobody"), false).await,
        Err(ConnectionError::UnknownTenant(_))
    ));

    // Listing is redacted; find_for_site prefers explicit site lists.
    let list = store.list_redacted(Some("acme"), None).await.unwrap();
    assert!(format!("{list:?}").contains("Secret(***)"));
    store.upsert(&dormakaba("acme")).await.unwrap();
    let mut catch_all = dormakaba("acme");
    catch_all.name = "aaa".into();
    catch_all.sites.clear();
    store.upsert(&catch_all).await.unwrap();
    let hit = store
        .find_for_site("acme", Vendor::Dormakaba, "hotel-a")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(hit.name, "default");
    let other = store
        .find_for_site("acme", Vendor::Dormakaba, "hotel-b")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(other.name, "aaa");
    assert!(
        store
            .delete("acme", Vendor::Dormakaba, "aaa")
            .await
            .unwrap()
    );
    assert!(
        store
            .find_for_site("acme", Vendor::Dormakaba, "hotel-b")
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(store.list(None, None).await.unwrap().len(), 2);

    bus.cleanup().await;
    db.drop_db().await;
}

#[test]
fn validation_names_fields() {
    let mut d = dormakaba("acme");
    if let VendorSettings::Dormakaba(s) = &mut d.settings {
        s.encoders.push(Encoder {
            name: "Back office".into(),
            id: "2".into(),
            kind: EncoderKind::Usb,
        });
        s.password = Secret::new("");
        s.host = "https://x".into();
    }
    let errs = validate(&d);
    let find = |f: &str| {
        errs.iter()
            .find(|e| e.field == f)
            .map(|e| e.problem.clone())
    };
    assert_eq!(
        find("settings.encoders[1].kind").as_deref(),
        Some("USB encoders are not supported by the web service; use a networked encoder")
    );
    assert!(find("settings.password").is_some());
    assert!(find("settings.host").is_some());

    let mut c = cloudpass("acme");
    if let VendorSettings::Cloudpass(s) = &mut c.settings {
        s.base_url = "not a url".into();
        s.client_id = " ".into();
        s.default_time_restriction_id = String::new();
    }
    let errs = validate(&c);
    let fields: Vec<_> = errs.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "settings.base_url",
            "settings.client_id",
            "settings.default_time_restriction_id"
        ]
    );
    assert!(validate(&cloudpass("acme")).is_empty());
    let mut bad_name = cloudpass("acme");
    bad_name.name = "a b".into();
    assert_eq!(validate(&bad_name)[0].field, "name");
}

#[tokio::test]
async fn key_rotation_old_ciphertext_still_opens_and_reseals() {
    let (db, bus) = accesshub_testkit::isolated().await;
    let old = SecretBox::generate_spec().replace("k1:", "old:");
    let new = SecretBox::generate_spec().replace("k1:", "new:");
    let old_box = SecretBox::from_spec(&old).unwrap();
    TenantStore::new(db.pool.clone(), old_box.clone())
        .create("acme", "Acme")
        .await
        .unwrap();
    ConnectionStore::new(db.pool.clone(), old_box)
        .with_egress(allow_fixtures())
        .upsert(&cloudpass("acme"))
        .await
        .unwrap();

    let rotated = ConnectionStore::new(
        db.pool.clone(),
        SecretBox::from_spec(&format!("{new},{old}")).unwrap(),
    );
    let got = rotated
        .get("acme", Vendor::Cloudpass, "default")
        .await
        .unwrap()
        .unwrap();
    if let VendorSettings::Cloudpass(s) = &got.settings {
        assert_eq!(s.client_secret.expose(), SECRET);
    }
    assert_eq!(rotated.reseal_all().await.unwrap(), 1);
    assert_eq!(rotated.reseal_all().await.unwrap(), 0);
    let only_new = ConnectionStore::new(db.pool.clone(), SecretBox::from_spec(&new).unwrap());
    assert!(
        only_new
            .get("acme", Vendor::Cloudpass, "default")
            .await
            .unwrap()
            .is_some()
    );
    bus.cleanup().await;
    db.drop_db().await;
}

#[tokio::test]
async fn cache_is_invalidated_by_nats_change_events() {
    let (db, bus, store) = setup().await;
    store.upsert(&cloudpass("acme")).await.unwrap();
    // TTL long enough that only the notification can refresh it.
    let cache = Arc::new(ConnectionCache::new(
        store.clone(),
        Duration::from_secs(3600),
    ));
    let _listener = cache
        .listen(&bus.bus, Some(Vendor::Cloudpass))
        .await
        .unwrap();
    let first = cache
        .get_for_site("acme", Vendor::Cloudpass, "adm-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.version, 1);

    let mut c = cloudpass("acme");
    c.sites = vec!["adm-2".into()];
    store.upsert(&c).await.unwrap();
    let mut seen = None;
    for _ in 0..50 {
        let got = cache
            .get_for_site("acme", Vendor::Cloudpass, "adm-2")
            .await
            .unwrap();
        if got.as_ref().is_some_and(|c| c.version == 2) {
            seen = got;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(seen.expect("cache picked up the change").version, 2);

    store
        .delete("acme", Vendor::Cloudpass, "default")
        .await
        .unwrap();
    let mut gone = false;
    for _ in 0..50 {
        if cache
            .get("acme", Vendor::Cloudpass, "default")
            .await
            .unwrap()
            .is_none()
        {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(gone);
    bus.cleanup().await;
    db.drop_db().await;
}

#[tokio::test]
async fn lookups_travel_over_nats() {
    let (db, bus) = accesshub_testkit::isolated().await;
    let req = LookupRequest {
        tenant: "acme".into(),
        connection: "default".into(),
        what: "sites".into(),
        params: Default::default(),
    };
    match lookup::request(
        &bus.bus,
        Vendor::Cloudpass,
        &req,
        Duration::from_millis(500),
    )
    .await
    {
        Err(lookup::LookupError::NoWorker(Vendor::Cloudpass)) => {}
        other => panic!("expected NoWorker, got {other:?}"),
    }

    let _srv = lookup::serve_lookups(&bus.bus, Vendor::Cloudpass, |r: LookupRequest| async move {
        match r.what.as_str() {
            "sites" => Ok(vec![LookupItem {
                id: "site-1".into(),
                name: format!("Main car park of {}", r.tenant),
                detail: None,
            }]),
            "forbidden" => Err(LookupFailure::credentials(Vendor::Cloudpass, 403)),
            other => Err(LookupFailure::bad_request(format!(
                "unknown lookup {other:?}"
            ))),
        }
    })
    .await
    .unwrap();

    let ok = lookup::request(&bus.bus, Vendor::Cloudpass, &req, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(
        ok,
        LookupResponse::Items {
            items: vec![LookupItem {
                id: "site-1".into(),
                name: "Main car park of acme".into(),
                detail: None
            }]
        }
    );
    let denied = lookup::request(
        &bus.bus,
        Vendor::Cloudpass,
        &LookupRequest {
            what: "forbidden".into(),
            ..req.clone()
        },
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    let LookupResponse::Error { error } = denied else {
        panic!("expected an error")
    };
    assert!(
        error.message.contains("Settings → Website Users"),
        "{}",
        error.message
    );
    bus.cleanup().await;
    db.drop_db().await;
}

#[tokio::test]
async fn webhook_secret_rotation_keeps_previous_until_expiry() {
    let (db, bus) = accesshub_testkit::isolated().await;
    let tenants = TenantStore::new(
        db.pool.clone(),
        SecretBox::from_spec(&SecretBox::generate_spec()).unwrap(),
    );
    tenants.create("acme", "Acme").await.unwrap();
    assert!(matches!(
        tenants.create("acme", "Again").await,
        Err(ConnectionError::AlreadyExists(_))
    ));
    let (_, first) = tenants
        .set_source_secret(
            "acme",
            "bex",
            Some(Secret::new("first-secret")),
            tenants::DEFAULT_PREVIOUS_TTL,
        )
        .await
        .unwrap();
    assert_eq!(first.expose(), "first-secret");
    let (src, second) = tenants
        .set_source_secret("acme", "bex", None, tenants::DEFAULT_PREVIOUS_TTL)
        .await
        .unwrap();
    assert!(src.previous_valid);
    assert_eq!(src.secret, "***");
    let s = tenants
        .webhook_secrets("acme", "bex")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(s.current.expose(), second.expose());
    assert_eq!(s.previous.unwrap().expose(), "first-secret");

    // A zero TTL expires the previous secret at once.
    tenants
        .set_source_secret("acme", "bex", None, Duration::ZERO)
        .await
        .unwrap();
    let s = tenants
        .webhook_secrets("acme", "bex")
        .await
        .unwrap()
        .unwrap();
    assert!(s.previous.is_none());
    let raw: String = sqlx::query_scalar("SELECT secret_enc FROM tenant_sources")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert!(
        raw.starts_with("v2:k1:"),
        "sealed, row-bound, with its key id"
    );
    assert!(matches!(
        tenants
            .set_source_secret("nobody", "bex", None, Duration::ZERO)
            .await,
        Err(ConnectionError::UnknownTenant(_))
    ));
    bus.cleanup().await;
    db.drop_db().await;
}

fn problem<'a>(e: &'a ConnectionError, field: &str) -> Option<&'a str> {
    match e {
        ConnectionError::Invalid(errs) => errs
            .iter()
            .find(|x| x.field == field)
            .map(|x| x.problem.as_str()),
        _ => None,
    }
}

/// Security review M3: `***` keeps the stored secret only while every endpoint field stays.
#[tokio::test]
async fn changing_an_endpoint_requires_the_secrets_again() {
    let (db, bus, store) = setup().await;
    store.apply(&cloudpass("acme"), false).await.unwrap();
    store.apply(&dormakaba("acme"), false).await.unwrap();

    // Re-applying what `get` printed (secrets `***`) with the same endpoint keeps the secret.
    let same = store
        .get("acme", Vendor::Cloudpass, "default")
        .await
        .unwrap()
        .unwrap()
        .redacted();
    assert_eq!(
        store.apply(&same, false).await.unwrap().status,
        ApplyStatus::Unchanged
    );

    // A new base URL with `***`: refused, naming the secret and the endpoint; nothing stored.
    let mut moved = same.clone();
    if let VendorSettings::Cloudpass(s) = &mut moved.settings {
        s.base_url = "http://127.0.0.1:9002".into();
    }
    for dry_run in [true, false] {
        let e = store.apply(&moved, dry_run).await.unwrap_err();
        let p = problem(&e, "settings.client_secret").unwrap_or_else(|| panic!("{e}"));
        assert!(
            p.starts_with("re-supply settings.client_secret when settings.base_url changes"),
            "{p}"
        );
    }
    let stored = store
        .get("acme", Vendor::Cloudpass, "default")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        stored.settings.cloudpass().unwrap().base_url,
        "http://127.0.0.1:9001"
    );
    assert_eq!(stored.version, 1);

    // With the secret re-entered the move is fine.
    if let VendorSettings::Cloudpass(s) = &mut moved.settings {
        s.client_secret = Secret::new("n3w-S3cret-for-9002");
    }
    assert_eq!(
        store.apply(&moved, false).await.unwrap().status,
        ApplyStatus::Updated
    );

    // dormakaba: host, port, scheme and path are all endpoint fields.
    let d = store
        .get("acme", Vendor::Dormakaba, "default")
        .await
        .unwrap()
        .unwrap()
        .redacted();
    for change in [
        |s: &mut DormakabaSettings| s.host = "127.0.0.1".into(),
        |s: &mut DormakabaSettings| s.port = 8081,
        |s: &mut DormakabaSettings| s.scheme = "http".into(),
        |s: &mut DormakabaSettings| s.path = Some("/other".into()),
    ] {
        let mut c = d.clone();
        if let VendorSettings::Dormakaba(s) = &mut c.settings {
            change(s);
        }
        let e = store.apply(&c, true).await.unwrap_err();
        let p = problem(&e, "settings.password").unwrap_or_else(|| panic!("{e}"));
        assert!(
            p.starts_with("re-supply settings.password when settings."),
            "{p}"
        );
    }
    // Non-endpoint changes still keep the secret.
    let mut renamed = d.clone();
    if let VendorSettings::Dormakaba(s) = &mut renamed.settings {
        s.site_name = "HOTEL-2".into();
    }
    assert_eq!(
        store.apply(&renamed, false).await.unwrap().status,
        ApplyStatus::Updated
    );
    let kept = store
        .get("acme", Vendor::Dormakaba, "default")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(kept.settings.dormakaba().unwrap().password.expose(), "pw");

    bus.cleanup().await;
    db.drop_db().await;
}

/// Security review M3: vendor endpoints must be https to public addresses unless the
/// deployment's allow-list says otherwise, checked when the connection is stored.
#[tokio::test]
async fn egress_policy_refuses_plain_http_and_internal_targets() {
    let (db, bus, allowing) = setup().await;
    let secrets = SecretBox::from_spec(&SecretBox::generate_spec()).unwrap();
    TenantStore::new(db.pool.clone(), secrets.clone())
        .create("strict", "Strict")
        .await
        .unwrap();
    let strict = ConnectionStore::new(db.pool.clone(), secrets);

    let with_url = |url: &str| {
        let mut c = cloudpass("strict");
        if let VendorSettings::Cloudpass(s) = &mut c.settings {
            s.base_url = url.into();
        }
        c
    };
    for (url, expect) in [
        ("http://127.0.0.1:9001", "must use https"),
        ("http://api.cloudpass.example", "must use https"),
        ("https://169.254.169.254/latest", "link-local"),
        ("https://10.1.2.3", "private"),
        ("https://[::1]:8443", "loopback"),
        ("https://0x7f.1", "loopback"),
        ("https://0.0.0.0", "unspecified"),
        ("https://localhost:9001", "this machine"),
    ] {
        let e = strict.apply(&with_url(url), true).await.unwrap_err();
        let p = problem(&e, "settings.base_url").unwrap_or_else(|| panic!("{url}: {e}"));
        assert!(p.contains(expect), "{url}: {p}");
    }
    assert_eq!(
        strict
            .apply(&with_url("https://api.cloudpass.example/v1"), false)
            .await
            .unwrap()
            .status,
        ApplyStatus::Created
    );

    // dormakaba's endpoint is scheme + host + port.
    let mut d = dormakaba("strict");
    let e = strict.apply(&d, true).await.unwrap_err();
    assert!(
        problem(&e, "settings.host").unwrap().contains("private"),
        "{e}"
    );
    if let VendorSettings::Dormakaba(s) = &mut d.settings {
        s.host = "locks.hotel.example".into();
        s.scheme = "http".into();
    }
    let e = strict.apply(&d, true).await.unwrap_err();
    assert!(
        problem(&e, "settings.scheme")
            .unwrap()
            .contains("must use https"),
        "{e}"
    );

    // The allow-list opens exactly what it names.
    assert!(allowing.apply(&dormakaba("acme"), true).await.is_ok());
    let mut other_port = dormakaba("acme");
    if let VendorSettings::Dormakaba(s) = &mut other_port.settings {
        s.port = 8443;
    }
    assert!(
        problem(
            &allowing.apply(&other_port, true).await.unwrap_err(),
            "settings.host"
        )
        .is_some()
    );

    bus.cleanup().await;
    db.drop_db().await;
}
