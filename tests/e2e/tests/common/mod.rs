//! The whole system as processes for one test: vendor-sim, booking-ingest and workers started
//! from the workspace binaries, a fresh database and a unique namespace, a tenant with webhook
//! secrets and connections stored through the libraries, signed upstream webhooks, and
//! readers for the simulator's state, its call log and the DLQ stream.
#![allow(dead_code, clippy::unwrap_used)]

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use std::collections::BTreeMap;

use accesshub_connections::{
    CloudpassAdministration, CloudpassSettings, Connection, ConnectionStore, DormakabaProduct,
    DormakabaSettings, Encoder, EncoderKind, IpassanSettings, Secret, TapkeySettings, TenantStore,
    VendorSettings,
};
use accesshub_domain::DeadLetter;
use accesshub_e2e::{Proc, binary, free_port, port_open};
use accesshub_store::SecretBox;
use accesshub_testkit::TestDb;
use chrono::{Days, Utc};
use hmac::{Hmac, KeyInit as _, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

pub mod flows;

/// Tenant every scenario books for.
pub const TENANT: &str = "acme";

/// Site defaults of every source: Amsterdam times, as a hotel/coworking in NL would have.
pub fn site_defaults() -> Value {
    json!({"*": {"check_in_time": "15:00", "check_out_time": "11:00", "timezone": "Europe/Amsterdam"}})
}

/// `sha256=<hex HMAC-SHA256(secret, "<ts>.<body>")>`, exactly what an upstream computes.
pub fn sign(secret: &str, ts: i64, body: &[u8]) -> String {
    let mut m = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    m.update(ts.to_string().as_bytes());
    m.update(b".");
    m.update(body);
    format!("sha256={}", hex::encode(m.finalize().into_bytes()))
}

/// A started service with its HTTP (ops) port.
#[derive(Debug)]
pub struct Service {
    /// The process.
    pub proc: Proc,
    /// `ACCESSHUB_HTTP_ADDR` port.
    pub port: u16,
}

/// The vendor-sim binary on free ports.
#[derive(Debug)]
pub struct Sim {
    /// The process.
    pub proc: Proc,
    /// Control API port.
    pub control: u16,
    /// CloudPass port.
    pub cloudpass: u16,
    /// Tapkey port.
    pub tapkey: u16,
    /// iPassan port.
    pub ipassan: u16,
    /// dormakaba SOAP port.
    pub dormakaba: u16,
    http: reqwest::Client,
}

fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

impl Sim {
    /// Starts vendor-sim with the demo fixtures and `extra` environment. Free ports are
    /// picked by the OS and may be taken again before vendor-sim binds them (other tests run
    /// in parallel): a start that exits is retried on new ports.
    pub fn start(extra: &[(String, String)]) -> Sim {
        let mut env = vec![("RUST_LOG".to_owned(), "info".to_owned())];
        env.extend(extra.iter().cloned());
        let mut last_log = String::new();
        for _attempt in 0..5 {
            let ports = [
                free_port(),
                free_port(),
                free_port(),
                free_port(),
                free_port(),
            ];
            let p = ports.map(|p| p.to_string());
            let mut proc = Proc::spawn(
                "vendor-sim",
                &binary("vendor-sim").unwrap(),
                &[
                    "--bind-ip",
                    "127.0.0.1",
                    "--control-port",
                    &p[0],
                    "--cloudpass-port",
                    &p[1],
                    "--tapkey-port",
                    &p[2],
                    "--ipassan-port",
                    &p[3],
                    "--dormakaba-port",
                    &p[4],
                    // No Clock PMS+ simulator: its default port is fixed (make dev's), so
                    // parallel tests would collide on it; tests that pull from Clock start
                    // their own in-process.
                    "--clock-port",
                    "0",
                ],
                &env,
            )
            .unwrap();
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(20) && proc.running() {
                if ports.iter().all(|p| port_open(*p)) {
                    std::thread::sleep(Duration::from_millis(100));
                    if proc.running() {
                        let [control, cloudpass, tapkey, ipassan, dormakaba] = ports;
                        return Sim {
                            proc,
                            control,
                            cloudpass,
                            tapkey,
                            ipassan,
                            dormakaba,
                            http: http_client(),
                        };
                    }
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            last_log = proc.log();
            proc.kill9();
        }
        panic!("vendor-sim did not start (5 attempts)\n--- last log ---\n{last_log}");
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(port: u16) -> String {
        format!("http://127.0.0.1:{port}")
    }

    async fn get_json(&self, path: &str) -> Value {
        let url = format!("{}{path}", Self::url(self.control));
        let r = self.http.get(&url).send().await.unwrap();
        r.json().await.unwrap()
    }

    /// `GET /state/{vendor}`.
    pub async fn state(&self, vendor: &str) -> Value {
        self.get_json(&format!("/state/{vendor}")).await
    }

    /// `GET /calls?vendor=`.
    pub async fn calls(&self, vendor: &str) -> Vec<Value> {
        let v = self.get_json(&format!("/calls?vendor={vendor}")).await;
        v.as_array().cloned().unwrap_or_default()
    }

    /// Calls with `method` whose path contains `path` (dormakaba: `operation` equal to `path`).
    pub async fn count(&self, vendor: &str, method: &str, path: &str) -> usize {
        self.calls(vendor)
            .await
            .iter()
            .filter(|c| {
                c["method"] == method
                    && (c["path"].as_str().unwrap_or_default().contains(path)
                        || c["operation"].as_str() == Some(path))
            })
            .count()
    }

    /// `POST /faults` with one rule or an array.
    pub async fn add_faults(&self, rules: Value) {
        let r = self
            .http
            .post(format!("{}/faults", Self::url(self.control)))
            .json(&rules)
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status().as_u16(),
            201,
            "faults refused: {}",
            r.text().await.unwrap()
        );
    }

    /// `PUT /dedupe/{vendor}`: with `false` the vendor accepts repeated creates, so a
    /// duplicate accesshub causes becomes a second live object (see docs/simulators.md).
    pub async fn set_dedupe(&self, vendor: &str, enabled: bool) {
        let r = self
            .http
            .put(format!("{}/dedupe/{vendor}", Self::url(self.control)))
            .json(&json!({ "enabled": enabled }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200, "dedupe switch refused");
    }

    /// `GET /live/{vendor}`: what grants access at the vendor now, in canonical form.
    pub async fn live(&self, vendor: &str) -> Vec<Value> {
        let v = self.get_json(&format!("/live/{vendor}")).await;
        v.as_array().cloned().unwrap_or_default()
    }

    /// `GET /live/{vendor}/duplicates`: groups of live objects that are the same access.
    pub async fn live_duplicates(&self, vendor: &str) -> Vec<Value> {
        let v = self.get_json(&format!("/live/{vendor}/duplicates")).await;
        v.as_array().cloned().unwrap_or_default()
    }

    /// `POST /seed/{vendor}` with a fixture document.
    pub async fn seed(&self, vendor: &str, fixture: &Value) {
        let r = self
            .http
            .post(format!("{}/seed/{vendor}", Self::url(self.control)))
            .json(fixture)
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status().as_u16(),
            204,
            "fixture refused: {}",
            r.text().await.unwrap()
        );
    }

    /// `DELETE /faults`.
    pub async fn clear_faults(&self) {
        self.http
            .delete(format!("{}/faults", Self::url(self.control)))
            .send()
            .await
            .unwrap();
    }
}

/// Where the stack's NATS and Postgres are.
#[derive(Debug, Default, Clone)]
pub struct Options {
    /// NATS URL (default: the shared local server).
    pub nats_url: Option<String>,
    /// Database URL of an already existing database (default: a fresh `TestDb`).
    pub database_url: Option<String>,
    /// Extra environment for every accesshub service.
    pub env: Vec<(String, String)>,
    /// Extra environment for vendor-sim.
    pub sim_env: Vec<(String, String)>,
    /// Namespace of streams and subjects (default: a fresh unique one).
    pub namespace: Option<String>,
    /// NATS user → password (`PrivateNats::start_authorized`): each service then connects as
    /// the user of its own name, the harness's readers as `accessctl-dlq`.
    pub nats_passwords: Option<BTreeMap<String, String>>,
}

/// One test's system.
#[derive(Debug)]
pub struct Stack {
    /// Namespace of every stream and subject.
    pub ns: String,
    /// Database URL.
    pub db_url: String,
    /// NATS URL.
    pub nats_url: String,
    /// Pool to the database.
    pub pool: sqlx::PgPool,
    /// `k1:<base64>` key spec for `ACCESSHUB_ENCRYPTION_KEY`.
    pub enc_key: String,
    /// Webhook secret of every source.
    pub secret: String,
    /// The simulators.
    pub sim: Sim,
    /// booking-ingest, once started.
    pub ingest: Option<Service>,
    /// Workers by name.
    pub workers: Vec<(String, Service)>,
    db: Option<TestDb>,
    conns: Vec<Connection>,
    conns_file: PathBuf,
    env: Vec<(String, String)>,
    nats_passwords: Option<BTreeMap<String, String>>,
    http: reqwest::Client,
}

impl Stack {
    /// Fresh database (migrated), unique namespace, vendor-sim, tenant `acme` with a webhook
    /// secret for every upstream source.
    pub async fn new(opts: Options) -> Stack {
        let (db, db_url) = match opts.database_url {
            Some(url) => (None, url),
            None => {
                let db = TestDb::new().await;
                let url = db.url.clone();
                (Some(db), url)
            }
        };
        let pool = accesshub_store::connect_lazy(&db_url, 4).unwrap();
        accesshub_store::migrate(&pool).await.unwrap();
        let enc_key = SecretBox::generate_spec();
        let sbox = SecretBox::from_spec(&enc_key).unwrap();
        let secret = format!("whsec_{}", uuid::Uuid::new_v4().simple());
        let tenants = TenantStore::new(pool.clone(), sbox.clone());
        tenants.upsert(TENANT, "Acme Hospitality").await.unwrap();
        for source in ["bex", "clock", "nexudus", "connecx", "native"] {
            tenants
                .set_source_secret(
                    TENANT,
                    source,
                    Some(Secret::new(secret.clone())),
                    Duration::from_secs(3600),
                )
                .await
                .unwrap();
        }
        // Site defaults have no TenantStore API yet: set them the way an operator's SQL would.
        sqlx::query("UPDATE tenant_sources SET site_defaults = $1 WHERE tenant_id = $2")
            .bind(site_defaults())
            .bind(TENANT)
            .execute(&pool)
            .await
            .unwrap();
        let ns = opts
            .namespace
            .unwrap_or_else(|| format!("e2e{}", &uuid::Uuid::new_v4().simple().to_string()[..10]));
        let nats_url = opts
            .nats_url
            .unwrap_or_else(|| "nats://127.0.0.1:4222".to_owned());
        let sim = Sim::start(&opts.sim_env);
        let conns_file = std::env::temp_dir().join(format!("accesshub-{ns}-connections.json"));
        let stack = Stack {
            ns,
            db_url,
            nats_url,
            pool,
            enc_key,
            secret,
            sim,
            ingest: None,
            workers: Vec::new(),
            db,
            conns: Vec::new(),
            conns_file,
            env: opts.env,
            nats_passwords: opts.nats_passwords,
            http: http_client(),
        };
        stack.apply_streams();
        stack
    }

    /// Creates the streams as a release's migrations Job does: `accessctl streams apply` as
    /// the streams identity (`accesshub-streams` when the server has users). The services
    /// run in production mode here, so they only check the streams.
    pub fn apply_streams(&self) {
        let identity = self.nats_identity("accesshub-streams");
        let out = std::process::Command::new(binary("accessctl").unwrap())
            .args(["streams", "apply"])
            .envs(self.service_env(0, &identity))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "accessctl streams apply failed\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Stores a connection with `ConnectionStore` and adds it to the connections file the
    /// worker binaries read (`ACCESSHUB_CONNECTIONS_FILE`; `serve_main` does not read the
    /// Postgres store yet).
    pub async fn add_connection(&mut self, conn: Connection) {
        let sbox = SecretBox::from_spec(&self.enc_key).unwrap();
        ConnectionStore::new(self.pool.clone(), sbox)
            .with_egress(accesshub_connections::EgressPolicy::loopback_http())
            .upsert(&conn)
            .await
            .unwrap();
        self.conns.push(conn);
        std::fs::write(
            &self.conns_file,
            serde_json::to_vec_pretty(&self.conns).unwrap(),
        )
        .unwrap();
    }

    fn service_env(&self, port: u16, extra: &[(String, String)]) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = [
            ("DATABASE_URL", self.db_url.clone()),
            ("NATS_URL", self.nats_url.clone()),
            ("ACCESSHUB_NAMESPACE", self.ns.clone()),
            ("ACCESSHUB_HTTP_ADDR", format!("127.0.0.1:{port}")),
            ("ACCESSHUB_ENCRYPTION_KEY", self.enc_key.clone()),
            ("ACCESSHUB_ADMIN_TOKEN", "e2e-admin-token".to_owned()),
            // The vendor simulators listen on loopback over plain http.
            (
                "ACCESSHUB_EGRESS_ALLOW",
                "http://127.0.0.1:*,http://localhost:*".to_owned(),
            ),
            ("ACCESSHUB_LOG_FORMAT", "pretty".to_owned()),
            (
                "ACCESSHUB_CONNECTIONS_FILE",
                self.conns_file.display().to_string(),
            ),
            ("ACCESSHUB_OUTBOX_POLL", "100ms".to_owned()),
            ("ACCESSHUB_WORKER_BACKOFF_BASE", "200ms".to_owned()),
            ("ACCESSHUB_WORKER_BACKOFF_MAX", "2s".to_owned()),
            ("ACCESSHUB_WORKER_ACK_WAIT", "10s".to_owned()),
            // The circuit breaker on, on the same short clock as the retries: a vendor fault
            // that opens it is probed again within seconds, not minutes.
            ("ACCESSHUB_WORKER_BREAKER_OPEN_BASE", "200ms".to_owned()),
            ("ACCESSHUB_WORKER_BREAKER_OPEN_MAX", "2s".to_owned()),
            (
                "RUST_LOG",
                "info,sqlx=warn,async_nats=warn,hyper=warn".to_owned(),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        env.extend(self.env.iter().cloned());
        env.extend(extra.iter().cloned());
        env
    }

    /// `NATS_USER`/`NATS_PASSWORD` of the identity named `user`, when the server has users.
    pub fn nats_identity(&self, user: &str) -> Vec<(String, String)> {
        match self.nats_passwords.as_ref().and_then(|p| p.get(user)) {
            Some(pw) => vec![
                ("NATS_USER".to_owned(), user.to_owned()),
                ("NATS_PASSWORD".to_owned(), pw.clone()),
            ],
            None => Vec::new(),
        }
    }

    /// Waits for `/readyz`; `Err(log)` when the process exits first.
    async fn wait_ready(&self, svc: &mut Service, timeout: Duration) -> Result<(), String> {
        let url = format!("http://127.0.0.1:{}/readyz", svc.port);
        let start = Instant::now();
        while start.elapsed() < timeout {
            if !svc.proc.running() {
                return Err(svc.proc.log());
            }
            if let Ok(r) = self.http.get(&url).send().await
                && r.status().is_success()
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "{} not ready after {timeout:?}\n--- log ---\n{}",
            svc.proc.name,
            svc.proc.log()
        );
    }

    /// Spawns `name` on a free port and waits until ready; an exit during start-up because
    /// the port was taken meanwhile is retried on another port.
    async fn spawn_ready(&self, name: &str, extra: &[(String, String)]) -> Service {
        for _attempt in 0..4 {
            let port = free_port();
            let mut env = self.nats_identity(name);
            env.extend(extra.iter().cloned());
            let proc = Proc::spawn(
                name,
                &binary(name).unwrap(),
                &[],
                &self.service_env(port, &env),
            )
            .unwrap();
            let mut svc = Service { proc, port };
            match self.wait_ready(&mut svc, Duration::from_secs(40)).await {
                Ok(()) => return svc,
                Err(log) if log.contains("in use") => continue,
                Err(log) => panic!("{name} exited during start-up\n--- log ---\n{log}"),
            }
        }
        panic!("{name}: no free port after 4 attempts");
    }

    /// Starts booking-ingest and waits for `/readyz`.
    pub async fn start_ingest(&mut self, extra: &[(String, String)]) {
        self.ingest = Some(self.spawn_ready("booking-ingest", extra).await);
    }

    /// Starts a worker binary (or any service binary with an ops port) and waits for `/readyz`.
    pub async fn start_worker(&mut self, name: &str, extra: &[(String, String)]) {
        let svc = self.spawn_ready(name, extra).await;
        self.workers.push((name.to_owned(), svc));
    }

    /// The worker called `name`.
    pub fn worker(&mut self, name: &str) -> &mut Service {
        &mut self
            .workers
            .iter_mut()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("worker {name} not started"))
            .1
    }

    /// Restarts a (killed) worker and waits until it is ready again.
    pub async fn restart_worker(&mut self, name: &str) {
        let idx = self
            .workers
            .iter()
            .position(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("worker {name} not started"));
        let mut svc = self.workers.remove(idx).1;
        svc.proc.start().unwrap();
        if let Err(log) = self.wait_ready(&mut svc, Duration::from_secs(40)).await {
            panic!("{name} exited after restart\n--- log ---\n{log}");
        }
        self.workers.insert(idx, (name.to_owned(), svc));
    }

    /// Every process's log, for failure messages.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        let mut add = |name: &str, log: String| {
            let tail: String = {
                let lines: Vec<&str> = log.lines().collect();
                let from = lines.len().saturating_sub(150);
                lines[from..].join("\n")
            };
            out.push_str(&format!("\n--- {name} (last 150 lines) ---\n{tail}\n"));
        };
        if let Some(i) = &self.ingest {
            add("booking-ingest", i.proc.log());
        }
        for (n, w) in &self.workers {
            add(n, w.proc.log());
        }
        add("vendor-sim", self.sim.proc.log());
        out
    }

    /// POSTs a signed webhook; returns status and JSON body.
    pub async fn webhook(&self, source: &str, body: &Value) -> (u16, Value) {
        self.webhook_with(source, body, &[]).await
    }

    /// [`Stack::webhook`] with extra headers (`traceparent`, `Idempotency-Key`).
    pub async fn webhook_with(
        &self,
        source: &str,
        body: &Value,
        headers: &[(&str, String)],
    ) -> (u16, Value) {
        let port = self.ingest.as_ref().expect("booking-ingest started").port;
        self.webhook_at(port, source, body, headers).await
    }

    /// [`Stack::webhook_with`] to the booking-ingest replica listening on `port`.
    pub async fn webhook_at(
        &self,
        port: u16,
        source: &str,
        body: &Value,
        headers: &[(&str, String)],
    ) -> (u16, Value) {
        self.post_signed(port, &format!("/webhooks/{source}/{TENANT}"), body, headers)
            .await
    }

    /// A signed key request (`POST /webhooks/{source}/{tenant}/keyrequests`).
    pub async fn key_request(&self, source: &str, body: &Value) -> (u16, Value) {
        let port = self.ingest.as_ref().expect("booking-ingest started").port;
        self.post_signed(
            port,
            &format!("/webhooks/{source}/{TENANT}/keyrequests"),
            body,
            &[],
        )
        .await
    }

    /// POSTs `body` to `path` of the booking-ingest replica on `port`, signed with the
    /// tenant's webhook secret.
    async fn post_signed(
        &self,
        port: u16,
        path: &str,
        body: &Value,
        headers: &[(&str, String)],
    ) -> (u16, Value) {
        let bytes = serde_json::to_vec(body).unwrap();
        let ts = chrono::Utc::now().timestamp();
        let mut req = self
            .http
            .post(format!("http://127.0.0.1:{port}{path}"))
            .header("content-type", "application/json")
            .header("x-accesshub-timestamp", ts.to_string())
            .header("x-accesshub-signature", sign(&self.secret, ts, &bytes))
            .body(bytes);
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        match req.send().await {
            Ok(r) => {
                let status = r.status().as_u16();
                let text = r.text().await.unwrap_or_default();
                (
                    status,
                    serde_json::from_str(&text).unwrap_or(Value::String(text)),
                )
            }
            Err(e) => (0, Value::String(e.to_string())),
        }
    }

    /// Posts and asserts 202 accepted (not superseded).
    pub async fn accepted(&self, source: &str, body: &Value) {
        let (status, answer) = self.webhook(source, body).await;
        assert!(
            status == 202 && answer["status"] == "accepted",
            "webhook {source} answered {status} {answer}\n{}",
            self.logs()
        );
    }

    /// Polls `check` until true; panics with every process's log otherwise.
    pub async fn wait_until<F, Fut>(&self, what: &str, timeout: Duration, mut check: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if check().await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        panic!(
            "timed out after {timeout:?} waiting for {what}\n{}",
            self.logs()
        );
    }

    /// A bus on the stack's namespace (for reading streams).
    pub async fn bus(&self) -> accesshub_bus::Bus {
        let mut cfg = accesshub_config::CommonConfig::for_test("e2e", &self.ns, &self.db_url);
        cfg.nats_url = self.nats_url.clone();
        // The services' NATS TLS settings (Options::env) apply to the harness's reader too.
        let var = |k: &str| {
            self.env
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
        };
        cfg.nats_tls = accesshub_config::NatsTls::from_values(
            var("ACCESSHUB_NATS_CA"),
            var("ACCESSHUB_NATS_CLIENT_CERT"),
            var("ACCESSHUB_NATS_CLIENT_KEY"),
        )
        .unwrap();
        if let Some(pw) = self
            .nats_passwords
            .as_ref()
            .and_then(|p| p.get("accessctl-dlq"))
        {
            cfg.nats_user = Some(("accessctl-dlq".to_owned(), pw.clone()));
            cfg.nats_inbox_prefix = Some("_INBOX.accessctl-dlq".to_owned());
        }
        accesshub_bus::connect(&cfg).await.unwrap()
    }

    /// Every dead letter in the namespace's DLQ stream (advisories skipped).
    pub async fn dead_letters(&self) -> Vec<DeadLetter> {
        let bus = self.bus().await;
        let Ok(stream) = bus.js.get_stream(bus.stream_name("DLQ")).await else {
            return Vec::new();
        };
        let Ok(info) = stream.get_info().await else {
            return Vec::new();
        };
        let (first, last) = (info.state.first_sequence, info.state.last_sequence);
        let mut out = Vec::new();
        for seq in first.max(1)..=last {
            if let Ok(m) = stream.get_raw_message(seq).await
                && let Ok(d) = serde_json::from_slice::<DeadLetter>(&m.payload)
            {
                out.push(d);
            }
        }
        out
    }

    /// Messages in the namespace's DLQ stream, dead letters and MAX_DELIVERIES advisories
    /// alike (0 when the stream does not exist).
    pub async fn dlq_messages(&self) -> u64 {
        let bus = self.bus().await;
        let Ok(stream) = bus.js.get_stream(bus.stream_name("DLQ")).await else {
            return 0;
        };
        stream.get_info().await.map_or(0, |i| i.state.messages)
    }

    /// Outbox rows not yet acknowledged by JetStream (the relay deletes a row once it is).
    pub async fn outbox_pending(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM outbox")
            .fetch_one(&self.pool)
            .await
            .unwrap_or(-1)
    }

    /// Every message in the namespace's streams (BOOKINGS, SYNC, DLQ, RESULTS) checked against
    /// its JSON Schema (`accesshub_e2e::contract`): what is wrong with each that is not.
    pub async fn bus_contract_violations(&self) -> Vec<String> {
        let Ok(bus) = tokio::time::timeout(Duration::from_secs(5), self.bus()).await else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for base in ["BOOKINGS", "SYNC", "DLQ", "RESULTS"] {
            let Ok(stream) = bus.js.get_stream(bus.stream_name(base)).await else {
                continue;
            };
            let Ok(info) = stream.get_info().await else {
                continue;
            };
            let (first, last) = (info.state.first_sequence, info.state.last_sequence);
            for seq in first.max(1)..=last {
                let Ok(m) = stream.get_raw_message(seq).await else {
                    continue;
                };
                let action = m
                    .headers
                    .get(accesshub_domain::sync::HEADER_ACTION)
                    .map(|v| v.as_str().to_owned());
                if let Err(e) = accesshub_e2e::contract::validate(
                    bus.ns.strip(&m.subject),
                    action.as_deref(),
                    &m.payload,
                ) {
                    out.push(format!("{base} #{seq}: {e}"));
                }
            }
        }
        out
    }

    /// Stops every process gracefully, checks every message left on the bus against its
    /// schema, deletes the namespace's streams and the database; fails the test when a
    /// message broke its schema.
    pub async fn finish(mut self) {
        for (_, w) in &mut self.workers {
            w.proc.terminate(Duration::from_secs(5));
        }
        if let Some(i) = &mut self.ingest {
            i.proc.terminate(Duration::from_secs(5));
        }
        let violations = self.bus_contract_violations().await;
        // With NATS users the streams live on the test's private server, which goes with it.
        if self.nats_passwords.is_none()
            && let Ok(bus) = tokio::time::timeout(Duration::from_secs(5), self.bus()).await
        {
            let _ = tokio::time::timeout(Duration::from_secs(5), bus.delete_streams()).await;
        }
        self.pool.close().await;
        if let Some(db) = self.db.take() {
            db.drop_db().await;
        }
        let _ = std::fs::remove_file(&self.conns_file);
        assert!(
            violations.is_empty(),
            "messages on the bus that break proto-schemas/v1:\n{}",
            violations.join("\n")
        );
    }
}

/// CloudPass: BEX administration 12 → the demo Amsterdam site, 24/7, ±30 minutes.
pub fn cloudpass_conn(sim: &Sim) -> Connection {
    conn(VendorSettings::Cloudpass(CloudpassSettings {
        base_url: Sim::url(sim.cloudpass),
        client_id: "demo-cloudpass-client".into(),
        client_secret: Secret::new("demo-cloudpass-secret"),
        administrations: BTreeMap::from([(
            "12".to_owned(),
            CloudpassAdministration {
                site_id: "cp-site-amsterdam".into(),
                time_restriction_id: None,
            },
        )]),
        default_time_restriction_id: "cp-tr-ams-247".into(),
        reapply_time_restriction: false,
        window_before_minutes: 30,
        window_after_minutes: 30,
    }))
}

/// A BEX `reservation:*` webhook for administration 12.
pub fn bex(id: &str, event: &str, updated_at: &str, plates: &[&str]) -> Value {
    bex_for("12", id, event, updated_at, plates)
}

/// [`bex`] for another administration.
pub fn bex_for(admin: &str, id: &str, event: &str, updated_at: &str, plates: &[&str]) -> Value {
    json!({
        "event": event,
        "subscription_id": "sub-e2e",
        "context": "administration",
        "context_id": admin,
        "record": {
            "id": id,
            "type": "reservation",
            "attributes": {
                "status": "confirmed",
                "arrival_date": "2030-07-14",
                "departure_date": "2030-07-18",
                "guest_first_name": "John",
                "guest_last_name": "Doe",
                "guest_email": "john.doe@example.com",
                "guest_phone": "+31 6 12345678",
                "rooms": ["101"],
                "license_plates": plates,
                "updated_at": updated_at
            },
            "relationships": {"administration": {"data": {"id": admin, "type": "administration"}}}
        },
        "event_metadata": {"changes": {"status": [null, "confirmed"]}}
    })
}

/// Milliseconds-precision RFC 3339 "now + `ms`" (revisions are upstream change times).
pub fn at(ms: i64) -> String {
    (Utc::now() + chrono::Duration::milliseconds(ms))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// CloudPass bookings whose reference starts with `prefix`.
pub async fn cloudpass_bookings(sim: &Sim, prefix: &str) -> Vec<Value> {
    let st = sim.state("cloudpass").await;
    st["vehicle_bookings"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|b| {
            b["reference"]
                .as_str()
                .unwrap_or_default()
                .starts_with(prefix)
        })
        .collect()
}

/// Successful creates (201) of CloudPass vehicle bookings carrying `reference` in the body.
pub async fn cloudpass_creates(sim: &Sim, reference: &str) -> usize {
    sim.calls("cloudpass")
        .await
        .iter()
        .filter(|c| {
            c["method"] == "POST"
                && c["path"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("/vehicle-bookings")
                && c["status"] == 201
                && c["body_summary"]
                    .as_str()
                    .unwrap_or_default()
                    .contains(&format!("\"{reference}\""))
        })
        .count()
}

/// A connection of tenant `acme` serving every site.
pub fn conn(settings: VendorSettings) -> Connection {
    Connection {
        tenant: TENANT.into(),
        name: "default".into(),
        enabled: true,
        sites: vec![],
        settings,
        version: 0,
    }
}

/// Tapkey: Nexudus time pass 8 ("Day pass") opens the front door and the meeting room.
pub fn tapkey_conn(sim: &Sim) -> Connection {
    conn(VendorSettings::Tapkey(TapkeySettings {
        authority_url: Sim::url(sim.tapkey),
        base_url: Sim::url(sim.tapkey),
        client_id: "demo-tapkey-client".into(),
        client_secret: Secret::new("demo-tapkey-secret"),
        owner_account_id: "tk-owner-demo".into(),
        pass_types: BTreeMap::from([(
            "8".to_owned(),
            vec![
                "tk-lock-front-door".to_owned(),
                "tk-lock-meeting-room".to_owned(),
            ],
        )]),
    }))
}

/// The demo iPassan site ("Residence De Pijp").
pub const IPASSAN_SITE: &str = "6b1f3c9e-0000-4000-8000-0000000051e1";
/// The demo "Rooftop BBQ" asset: 30-minute slots, one booking per slot.
pub const IPASSAN_BBQ: &str = "6b1f3c9e-0000-4000-8000-0000000a55e1";

/// iPassan: connecX facility `rooftop-bbq` → the demo "Rooftop BBQ" asset.
pub fn ipassan_conn(sim: &Sim) -> Connection {
    ipassan_conn_to(sim, IPASSAN_BBQ)
}

/// iPassan: connecX facility `rooftop-bbq` → `asset`.
pub fn ipassan_conn_to(sim: &Sim, asset: &str) -> Connection {
    conn(VendorSettings::Ipassan(IpassanSettings {
        base_url: Sim::url(sim.ipassan),
        client_id: "demo-ipassan-client".into(),
        client_secret: Secret::new("demo-ipassan-secret"),
        site_guid: IPASSAN_SITE.into(),
        facilities: BTreeMap::from([("rooftop-bbq".to_owned(), asset.to_owned())]),
    }))
}

/// dormakaba: the demo Saflok lock system, two network encoders, mobile keys on.
pub fn dormakaba_conn(sim: &Sim) -> Connection {
    conn(VendorSettings::Dormakaba(DormakabaSettings {
        product: DormakabaProduct::Saflok,
        host: "127.0.0.1".into(),
        port: sim.dormakaba,
        scheme: "http".into(),
        path: None,
        namespace: None,
        username: "pms-demo".into(),
        password: Secret::new("pms-demo-secret"),
        site_name: "DEMO-HOTEL".into(),
        pms_terminal_id: "accesshub".into(),
        encoders: vec![
            Encoder {
                name: "Front desk 1".into(),
                id: "1".into(),
                kind: EncoderKind::Network,
            },
            Encoder {
                name: "Front desk 2".into(),
                id: "2".into(),
                kind: EncoderKind::Network,
            },
        ],
        rooms: BTreeMap::new(),
        common_areas: BTreeMap::from([("fitness".to_owned(), 2)]),
        mobile_keys: true,
        key_size: 0,
        edge_site: None,
    }))
}

/// Jan de Vries: known to iPassan with both profiles the rooftop BBQ needs.
pub fn resident_jan() -> Value {
    json!({"id": "res-17", "email": "jan@example.com", "first_name": "Jan", "last_name": "de Vries"})
}

/// Eva Visser: known to iPassan with the door profile only (bookings → 422 naming "Floor 7").
pub fn resident_eva() -> Value {
    json!({"id": "res-18", "email": "eva@example.com", "first_name": "Eva", "last_name": "Visser"})
}

/// A connecX facility booking of the rooftop BBQ by Jan de Vries (known to iPassan).
pub fn connecx(id: &str, start: &str, end: &str, status: &str, updated_at: &str) -> Value {
    connecx_for(&resident_jan(), id, start, end, status, updated_at)
}

/// [`connecx`] for another resident.
pub fn connecx_for(
    resident: &Value,
    id: &str,
    start: &str,
    end: &str,
    status: &str,
    updated_at: &str,
) -> Value {
    json!({
        "booking_id": id, "facility_id": "rooftop-bbq", "building_id": "pijp",
        "resident": resident,
        "start": start, "end": end, "status": status, "updated_at": updated_at
    })
}

/// A Clock PMS+ booking in room 101 for Mr Jansen (registered in the dormakaba app).
pub fn clock(id: i64, event: &str, updated_at: &str) -> Value {
    clock_in_room(id, "101", event, updated_at)
}

/// [`clock`] in another room (one the lock system may not know).
pub fn clock_in_room(id: i64, room: &str, event: &str, updated_at: &str) -> Value {
    let today = Utc::now().date_naive();
    let departure = today.checked_add_days(Days::new(2)).unwrap();
    json!({
        "event": event,
        "booking": {
            "id": id, "account_id": 77, "number": format!("CL-{id}"),
            "arrival": today.to_string(), "arrival_time": "00:00",
            "departure": departure.to_string(),
            "status": "expected", "status_changed_at": updated_at,
            "updated_at": updated_at,
            "guest": {"last_name": "Jansen", "first_name": "Piet", "email": "piet@example.com",
                      "phone": "+31612345678"},
            "rooms": [room], "common_areas": ["fitness"], "license_plates": [],
            "mobile_key": true
        }
    })
}

/// A Nexudus day pass (type 8 → two Tapkey locks) for member `i` of a scenario.
pub fn pass_event(tag: &str, i: usize) -> Value {
    let expire = (chrono::Utc::now() + chrono::Duration::days(1))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    json!({
        "action": "CoworkerTimePassCreate",
        "data": {
            "Id": 9000 + i, "UniqueId": format!("{tag}-pass-{i:03}"), "CoworkerId": 100 + i,
            "BusinessId": 3, "TimePassId": 8, "TimePassName": "Day pass",
            "ExpireDate": expire, "Used": false, "UsedDate": null, "RemainingUses": 1,
            "UpdatedOn": at(0),
            "CoworkerEmail": pass_email(tag, i), "CoworkerFullName": format!("Member {i}")
        }
    })
}

/// The e-mail of member `i` of a scenario (the Tapkey grant holder).
pub fn pass_email(tag: &str, i: usize) -> String {
    format!("{tag}-member{i:03}@example.com")
}
