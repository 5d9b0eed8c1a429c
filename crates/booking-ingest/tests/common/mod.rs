//! Shared test harness: a fresh database and NATS namespace, booking-ingest in-process, a
//! registered tenant for every source, signed requests, and stream readers.
#![allow(dead_code, clippy::unwrap_used)]

use std::time::{Duration, Instant};

use accesshub_connections::{Secret, TenantStore};
use accesshub_store::SecretBox;
use accesshub_testkit::{TestBus, TestDb};
use booking_ingest::{IngestConfig, IngestHandle};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

pub const TENANT: &str = "acme";

/// Asserts that booking-ingest refuses to start with `var=value`, naming the variable, before
/// it touches NATS or PostgreSQL (both unreachable here).
pub fn refuses_to_start_with(var: &str, value: &str) {
    let key = SecretBox::generate_spec();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_booking-ingest"))
        .env("ACCESSHUB_ENCRYPTION_KEY", &key)
        .env("DATABASE_URL", "postgres://nobody@127.0.0.1:1/none")
        .env("NATS_URL", "nats://127.0.0.1:1")
        .env(var, value)
        .output()
        .unwrap();
    assert!(!out.status.success(), "{var}={value} started");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(var), "{var}={value}: {err}");
}
pub const SECRET: &str = "s3cret-webhook-key";

pub struct Env {
    pub db: TestDb,
    pub bus: TestBus,
    pub sbox: SecretBox,
    pub handle: Option<IngestHandle>,
    pub client: reqwest::Client,
    pub base: String,
}

pub fn site_defaults() -> Value {
    json!({"12": {"check_in_time": "16:00", "check_out_time": "10:30", "timezone": "Europe/Amsterdam"},
           "*": {"timezone": "Europe/Amsterdam"}})
}

/// Registers every source of [`TENANT`] through the tenant store, the one owner of
/// `tenant_sources` (what the admin API and `accessctl tenants set-secret` use).
pub async fn register_all(pool: &sqlx::PgPool, sbox: &SecretBox) {
    let tenants = TenantStore::new(pool.clone(), sbox.clone());
    tenants.upsert(TENANT, TENANT).await.unwrap();
    for source in ["bex", "clock", "nexudus", "connecx", "native"] {
        set_secret(&tenants, source, SECRET).await;
        tenants
            .set_site_defaults(TENANT, source, &site_defaults())
            .await
            .unwrap()
            .unwrap();
    }
}

/// Replaces `source`'s secret at once (no previous secret left valid).
pub async fn set_secret(tenants: &TenantStore, source: &str, secret: &str) {
    tenants
        .set_source_secret(TENANT, source, Some(Secret::new(secret)), Duration::ZERO)
        .await
        .unwrap();
}

/// No connection reuse: the server closes a connection after answering 413 without reading
/// the body, and a pooled client would race that close.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

impl Env {
    pub async fn new() -> Env {
        Self::with(|_| {}).await
    }

    pub async fn with(tweak: impl FnOnce(&mut IngestConfig)) -> Env {
        accesshub_telemetry::init_for_tests();
        let (db, bus) = accesshub_testkit::isolated().await;
        let sbox = SecretBox::from_spec(&SecretBox::generate_spec()).unwrap();
        register_all(&db.pool, &sbox).await;
        let mut cfg = IngestConfig::for_test(bus.config("booking-ingest", &db.url), sbox.clone());
        tweak(&mut cfg);
        let handle = booking_ingest::start(cfg).await.unwrap();
        let base = format!("http://{}", handle.addr());
        Env {
            db,
            bus,
            sbox,
            handle: Some(handle),
            client: client(),
            base,
        }
    }

    pub async fn post_raw(
        &self,
        path: &str,
        body: Vec<u8>,
        headers: &[(&str, String)],
    ) -> (u16, Value) {
        let mut req = self.client.post(format!("{}{path}", self.base)).body(body);
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// The `/metrics` text.
    pub async fn metrics(&self) -> String {
        self.client
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Signed JSON POST to `/webhooks/{source}/{tenant}`.
    pub async fn post(&self, source: &str, body: &Value) -> (u16, Value) {
        self.post_signed(source, TENANT, serde_json::to_vec(body).unwrap(), &[])
            .await
    }

    pub async fn post_signed(
        &self,
        source: &str,
        tenant: &str,
        body: Vec<u8>,
        extra: &[(&str, String)],
    ) -> (u16, Value) {
        let ts = chrono::Utc::now().timestamp();
        let mut h = vec![
            ("content-type", "application/json".to_owned()),
            ("x-accesshub-timestamp", ts.to_string()),
            (
                "x-accesshub-signature",
                booking_ingest::sign(SECRET, ts, &body),
            ),
        ];
        h.extend(extra.iter().cloned());
        self.post_raw(&format!("/webhooks/{source}/{tenant}"), body, &h)
            .await
    }

    pub async fn count(&self, table: &str) -> i64 {
        let q = format!("SELECT count(*) FROM {table}");
        let (n,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(q))
            .fetch_one(&self.db.pool)
            .await
            .unwrap();
        n
    }

    /// Waits until the namespaced BOOKINGS stream holds `n` messages and returns them.
    pub async fn messages(&self, n: u64) -> Vec<async_nats::jetstream::message::StreamMessage> {
        let name = self.bus.bus.stream_name("BOOKINGS");
        let stream = self.bus.bus.js.get_stream(&name).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let info = stream.get_info().await.unwrap();
            if info.state.messages >= n {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "only {} of {n} messages arrived",
                info.state.messages
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mut out = Vec::new();
        for seq in 1..=n {
            out.push(stream.get_raw_message(seq).await.unwrap());
        }
        out
    }

    /// Events the service wrote to its outbox, once the relay has published them all: the
    /// relay deletes a row after its PubAck, so this waits for an empty outbox and counts
    /// BOOKINGS (event ids are unique, so JetStream's dedupe folds nothing here).
    pub async fn events_written(&self) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.count("outbox").await > 0 {
            assert!(Instant::now() < deadline, "outbox not drained");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.stream_count().await
    }

    pub async fn stream_count(&self) -> u64 {
        let name = self.bus.bus.stream_name("BOOKINGS");
        let stream = self.bus.bus.js.get_stream(&name).await.unwrap();
        stream.get_info().await.unwrap().state.messages
    }

    pub async fn finish(mut self) {
        if let Some(h) = self.handle.take() {
            h.shutdown().await;
        }
        self.bus.cleanup().await;
        self.db.drop_db().await;
    }
}

pub fn bex(id: &str, updated_at: &str, event: &str) -> Value {
    json!({
        "event": event,
        "subscription_id": "sub-1",
        "context": "administration",
        "context_id": "12",
        "record": {
            "id": id,
            "type": "reservation",
            "attributes": {
                "status": "confirmed",
                "arrival_date": "2025-07-14",
                "departure_date": "2025-07-18",
                "guest_first_name": "John",
                "guest_middle_name": "Paul",
                "guest_last_name": "Doe",
                "guest_email": "john.doe@example.com",
                "guest_phone": "+31 6 12345678",
                "rooms": ["101"],
                "common_areas": ["pool"],
                "license_plates": ["AB-123-C"],
                "mobile_key": true,
                "updated_at": updated_at
            },
            "relationships": {"administration": {"data": {"id": "12", "type": "administration"}}}
        },
        "event_metadata": {"changes": {"status": [null, "confirmed"]}}
    })
}

pub fn clock(id: i64, updated_at: &str) -> Value {
    json!({
        "event": "booking_update",
        "booking": {
            "id": id, "account_id": 77, "number": "B-1",
            "arrival": "2025-08-01", "arrival_time": "14:00",
            "departure": "2025-08-03",
            "status": "expected", "status_changed_at": "2025-06-01T10:00:00Z",
            "updated_at": updated_at,
            "guest": {"last_name": "Smith", "first_name": "Anna", "email": "anna@example.com"},
            "rooms": ["201"], "license_plates": []
        }
    })
}

pub fn nexudus(unique: &str, updated_on: &str) -> Value {
    json!({
        "action": "CoworkerTimePassCreate",
        "data": {
            "Id": 991, "UniqueId": unique, "CoworkerId": 55, "BusinessId": 3,
            "TimePassId": 8, "TimePassName": "Day pass",
            "ExpireDate": "2025-09-01T18:00:00", "Used": false, "UsedDate": null,
            "RemainingUses": 1, "UpdatedOn": updated_on,
            "CoworkerEmail": "cw@example.com", "CoworkerFullName": "Co Worker"
        }
    })
}

pub fn connecx(id: &str, updated_at: &str) -> Value {
    json!({
        "booking_id": id, "facility_id": "gym-1", "building_id": "b7",
        "resident": {"id": "r1", "email": "res@example.com", "first_name": "Rita", "last_name": "Res"},
        "start": "2025-07-01T08:00:00Z", "end": "2025-07-01T09:00:00Z",
        "status": "booked", "updated_at": updated_at
    })
}

pub fn native(key: &str, revision: i64) -> Value {
    json!({
        "id": "01977a4e-2c10-7b3a-9f21-5d8c4e6a1b01",
        "tenant": TENANT, "site": "administration-12", "booking_key": key,
        "revision": revision, "source": "native", "occurred_at": "2025-06-20T09:15:00Z",
        "schema_version": 1, "kind": "facility",
        "payload": {"status": "booked", "facility_id": "f1",
            "resident": {"id": "r9", "email": "n@example.com", "first_name": "N", "last_name": "Ative"},
            "start": "2025-07-01T08:00:00Z", "end": "2025-07-01T10:00:00Z"}
    })
}

/// Sends `head` (request line and headers, without the blank line) and `body` on a fresh
/// connection and reads one response; `None` when none arrives within `wait` (the server is
/// still waiting for the rest of the body).
pub async fn raw_request(
    addr: std::net::SocketAddr,
    head: &str,
    body: &[u8],
    wait: Duration,
) -> Option<(u16, Value)> {
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    conn.write_all(format!("{head}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    // The server may answer (and close) before taking the whole body: ignore write errors.
    let _ = conn.write_all(body).await;
    let mut buf = Vec::new();
    let read = async {
        let mut chunk = [0u8; 4096];
        loop {
            let n = conn.read(&mut chunk).await.unwrap_or(0);
            if n == 0 {
                return;
            }
            buf.extend_from_slice(&chunk[..n]);
            if let Some(end) = find(&buf, b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                let len = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                if buf.len() >= end + 4 + len {
                    return;
                }
            }
        }
    };
    tokio::time::timeout(wait, read).await.ok()?;
    let end = find(&buf, b"\r\n\r\n")?;
    let text = String::from_utf8_lossy(&buf[..end]).to_string();
    let status = text.split(' ').nth(1)?.parse().ok()?;
    let body = serde_json::from_slice(&buf[end + 4..]).unwrap_or(Value::Null);
    Some((status, body))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
