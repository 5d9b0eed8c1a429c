//! "Sync Now" across processes: booking-ingest, cloudpass-worker, the reconciler and the
//! `accessctl` CLI as the real binaries. Someone changes CloudPass behind accesshub's back
//! (a booking deleted, one moved, a stray with our reference, one of another system); an
//! operator runs `accessctl sync run --wait`; the reconciler compares Postgres' desired state
//! with CloudPass' lists and the worker repairs exactly the drift.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use accesshub_e2e::binary;
use common::{Options, Sim, Stack, TENANT, at, bex, cloudpass_bookings, cloudpass_conn};
use serde_json::{Value, json};

/// The CloudPass portal/API as a person (or another integration) uses it.
struct Portal {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Portal {
    async fn login(sim: &Sim) -> Portal {
        let base = Sim::url(sim.cloudpass);
        let http = reqwest::Client::new();
        let t: Value = http
            .post(format!("{base}/oauth/token"))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", "demo-cloudpass-client"),
                ("client_secret", "demo-cloudpass-secret"),
            ])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        Portal {
            http,
            base,
            token: t["access_token"].as_str().unwrap().to_owned(),
        }
    }

    fn url(&self, id: Option<&str>) -> String {
        let b = format!(
            "{}/api/v1/sites/cp-site-amsterdam/vehicle-bookings",
            self.base
        );
        id.map_or(b.clone(), |id| format!("{b}/{id}"))
    }

    async fn send(&self, req: reqwest::RequestBuilder) {
        let r = req.bearer_auth(&self.token).send().await.unwrap();
        assert!(r.status().is_success(), "{}", r.status());
    }

    async fn create(&self, reference: &str, plate: &str) {
        self.send(self.http.post(self.url(None)).json(&json!({
            "reference": reference, "license_plate": plate,
            "valid_from": "2030-07-14T12:30:00Z", "valid_until": "2030-07-18T09:30:00Z",
            "time_restriction_id": "cp-tr-ams-247", "name": "by hand"
        })))
        .await;
    }
}

fn by_plate(bookings: &[Value], plate: &str) -> Option<Value> {
    bookings
        .iter()
        .find(|b| b["license_plate"] == plate)
        .cloned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accessctl_sync_run_repairs_cloudpass_drift_through_reconciler_and_worker() {
    let mut s = Stack::new(Options::default()).await;
    s.add_connection(cloudpass_conn(&s.sim)).await;
    s.start_ingest(&[]).await;
    s.start_worker("cloudpass-worker", &[]).await;
    s.start_worker(
        "reconciler",
        &[("RECONCILER_POLL_INTERVAL".into(), "1s".into())],
    )
    .await;

    s.accepted(
        "bex",
        &bex(
            "BEX-SYNC-1",
            "reservation:created",
            &at(0),
            &["SY-01-NC", "SY-02-NC", "SY-03-NC"],
        ),
    )
    .await;
    let prefix = format!("ah:{TENANT}:reservation:BEX-SYNC-1:");
    s.wait_until("three bookings", Duration::from_secs(30), || async {
        cloudpass_bookings(&s.sim, &prefix).await.len() == 3
    })
    .await;

    // Drift made at CloudPass directly.
    let portal = Portal::login(&s.sim).await;
    let ours = cloudpass_bookings(&s.sim, &prefix).await;
    let deleted = by_plate(&ours, "SY01NC").unwrap();
    portal
        .send(portal.http.delete(portal.url(deleted["id"].as_str())))
        .await;
    let moved = by_plate(&ours, "SY02NC").unwrap();
    portal
        .send(
            portal
                .http
                .patch(portal.url(moved["id"].as_str()))
                .json(&json!({"valid_until": "2030-07-30T09:30:00Z"})),
        )
        .await;
    let stray = format!("ah:{TENANT}:reservation:GHOST-9:GH0ST9");
    portal.create(&stray, "GH0ST9").await;
    portal.create("parking-office-42", "F0RE1GN").await;

    // The operator: "Sync Now".
    let out = std::process::Command::new(binary("accessctl").unwrap())
        .args([
            "sync",
            "run",
            "--tenant",
            TENANT,
            "--vendor",
            "cloudpass",
            "--wait",
            "--timeout",
            "40s",
        ])
        .env("DATABASE_URL", &s.db_url)
        .env("NATS_URL", &s.nats_url)
        .env("ACCESSHUB_NAMESPACE", &s.ns)
        .env("ACCESSHUB_ENCRYPTION_KEY", &s.enc_key)
        .output()
        .unwrap();
    let cli = format!(
        "accessctl: {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("succeeded"),
        "{cli}\n{}",
        s.logs()
    );

    s.wait_until("drift repaired", Duration::from_secs(30), || async {
        let all = cloudpass_bookings(&s.sim, "").await;
        let ours = cloudpass_bookings(&s.sim, &prefix).await;
        let right_window = |p: &str| {
            by_plate(&ours, p).is_some_and(|b| {
                b["valid_from"] == "2030-07-14T12:30:00Z"
                    && b["valid_until"] == "2030-07-18T09:30:00Z"
            })
        };
        ours.len() == 3
            && ["SY01NC", "SY02NC", "SY03NC"].into_iter().all(right_window)
            && !all.iter().any(|b| b["reference"] == stray.as_str())
            && all.iter().any(|b| b["reference"] == "parking-office-42")
    })
    .await;
    let untouched = by_plate(&cloudpass_bookings(&s.sim, &prefix).await, "SY03NC").unwrap();
    assert_eq!(
        untouched["id"],
        by_plate(&ours, "SY03NC").unwrap()["id"],
        "the booking without drift is left alone"
    );
    eprintln!("{cli}");
    s.finish().await;
}
