//! `keyreq-bench [REQUESTS]`: how long the front desk waits for a key. Real NATS and
//! Postgres (isolated namespace and database), the Saflok simulator, the dormakaba worker
//! in-process: a reservation per guest, then one new-key request at a time (the desk waits for
//! each), timed from publishing the request to its final outcome being recorded (what the
//! key-request API's long-poll reads). Target: under a second (issue 26). The edge adds one
//! NATS round trip per SOAP call (crates/vendors/dormakaba/tests/edge.rs prints its figures).

use std::sync::Arc;
use std::time::{Duration, Instant};

use accesshub_bench::{percentile, publish_event as publish};
use accesshub_connections::{Connection, VendorSettings};
use accesshub_domain::{
    Event, EventBody, Guest, KeyAction, KeyRequest, Reservation, ReservationStatus, Source,
};
use chrono::{Days, NaiveTime, Utc};
use dormakaba_adapter::{DormakabaHandler, WORKER};
use worker_runtime::{StaticConnections, WorkerConfig};

const TENANT: &str = "bench";

fn reservation() -> Reservation {
    let today = Utc::now().date_naive();
    Reservation {
        status: ReservationStatus::CheckedIn,
        guest: Guest {
            name: "Jansen, Eva".into(),
            email: None,
            mobile_phone: None,
        },
        arrival: today,
        departure: today.checked_add_days(Days::new(2)).unwrap_or(today),
        check_in_time: NaiveTime::MIN,
        check_out_time: NaiveTime::from_hms_opt(11, 0, 0).unwrap_or(NaiveTime::MIN),
        timezone: "Europe/Amsterdam".into(),
        rooms: vec!["101".into()],
        common_areas: vec![],
        license_plates: vec![],
        mobile_key: false,
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let requests: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(50);
    let (db, tb) = accesshub_testkit::isolated().await;
    let sim = vendor_sim::start(vendor_sim::SimConfig::ephemeral()).await?;
    sim.state().seed_demo();
    let settings = accesshub_bench::mix::dormakaba_settings(sim.dormakaba_addr(), false);
    let conn = Connection {
        tenant: TENANT.into(),
        name: "default".into(),
        enabled: true,
        sites: vec![],
        settings: VendorSettings::Dormakaba(settings),
        version: 1,
    };
    let cfg = WorkerConfig::new(
        tb.config(WORKER, &db.url),
        Arc::new(StaticConnections::new(vec![conn])),
    );
    let worker = worker_runtime::start(cfg, DormakabaHandler::new()).await?;

    let mut lat = Vec::with_capacity(requests);
    for i in 0..requests {
        let key = format!("K{i}");
        let ev = Event::new(
            TENANT,
            "hotel",
            key.clone(),
            1,
            Source::Native,
            Utc::now(),
            EventBody::Reservation(reservation()),
        );
        sqlx::query(
            "INSERT INTO bookings (tenant_id, kind, booking_key, site, revision, source, event_id, payload) \
             VALUES ($1, 'reservation', $2, 'hotel', 1, 'native', $3, $4)",
        )
        .bind(TENANT)
        .bind(&key)
        .bind(ev.id)
        .bind(serde_json::to_value(&ev)?)
        .execute(&db.pool)
        .await?;
        publish(&tb.bus, &ev).await?;
        let req = KeyRequest {
            request_id: uuid::Uuid::now_v7(),
            reservation_key: key,
            action: KeyAction::NewKey,
            encoder_id: Some("1".into()),
            key_count: 1,
            requested_by: Some("bench".into()),
            mobile_phone: None,
            mobile_key: false,
        };
        let id = req.request_id.to_string();
        let kr = Event::new(
            TENANT,
            "hotel",
            id.clone(),
            1,
            Source::Native,
            Utc::now(),
            EventBody::KeyRequest(req),
        );
        let t = Instant::now();
        publish(&tb.bus, &kr).await?;
        loop {
            let status: Option<String> = sqlx::query_scalar(
                "SELECT status FROM bindings WHERE tenant_id = $1 AND kind = 'keyreq' AND booking_key = $2",
            )
            .bind(TENANT)
            .bind(&id)
            .fetch_optional(&db.pool)
            .await?;
            match status.as_deref() {
                Some("encoded") => break,
                Some("failed" | "dead_lettered") => anyhow::bail!("key request {id} failed"),
                _ if t.elapsed() > Duration::from_secs(30) => {
                    anyhow::bail!("key request {id} unanswered after 30 s")
                }
                _ => tokio::time::sleep(Duration::from_millis(2)).await,
            }
        }
        lat.push(t.elapsed());
    }
    lat.sort();
    let (p50, p99) = (percentile(&lat, 50.0), percentile(&lat, 99.0));
    let body = format!(
        "`keyreq-bench {requests}`: one new-key request at a time on the Saflok simulator \
         (direct HTTP), from publishing the request to its outcome recorded.\n\n\
         | measure | value |\n|---|---|\n| key request answered, p50 | {} |\n\
         | key request answered, p99 | {} |\n",
        accesshub_bench::ms(p50),
        accesshub_bench::ms(p99),
    );
    println!("{body}");
    accesshub_bench::write_section("Key requests", &body)?;
    accesshub_bench::record_figures(
        "keyreq",
        &[
            ("requests", requests as f64),
            ("p50_ms", accesshub_bench::millis(p50)),
            ("p99_ms", accesshub_bench::millis(p99)),
        ],
    )?;
    worker.shutdown().await?;
    tb.cleanup().await;
    db.drop_db().await;
    Ok(())
}
