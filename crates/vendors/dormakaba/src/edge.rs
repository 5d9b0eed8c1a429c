//! The lock server on the hotel's LAN (docs/deploy.md "On-premises lock servers").
//!
//! Saflok Messenger and Ambiance web services are not reachable from the cluster. The hotel
//! runs a nats-server *leaf node* that dials out to the cluster's NATS, plus this crate's
//! binary in `edge` mode: a thin relay that answers requests on
//! `edge.dormakaba.<tenant>.<site>` by POSTing the SOAP envelope to the local lock server and
//! replying with its status and body. Everything else — plans, bindings, locks, retries, key
//! results — stays in the cloud worker, which needs Postgres; the edge holds no state and no
//! lock-system credentials (the envelope carries them, built in the cloud).
//!
//! - [`EdgeLink`]: the cloud side. SOAP calls of edge connections go through it; "no
//!   responders" (the leaf link is down) is [`SoapError::SiteOffline`], and the site's state
//!   is tracked (metric `accesshub_edge_site_online`) and watched until it answers again.
//! - [`run_relay`]: the edge side.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use accesshub_config::CommonConfig;
use accesshub_domain::subjects::{self, Namespace};
use accesshub_domain::{Classify, ErrorClass};
use accesshub_telemetry::metrics::GaugeVec;
use async_nats::{HeaderMap, client::RequestErrorKind};
use futures::StreamExt as _;
use tokio::sync::OnceCell;
use vendor_http::{HttpSettings, Method, VendorClient};

use crate::client::SoapError;

/// Header naming what the relay is asked: `ping` or the SOAP operation.
pub const H_OP: &str = "Accesshub-Edge-Op";
/// Header of a relay answer: the lock server's HTTP status.
pub const H_STATUS: &str = "Accesshub-Edge-Status";
/// Header of a relay answer: the lock server could not be reached (the reason).
pub const H_ERROR: &str = "Accesshub-Edge-Error";
/// Header of a relay answer: `transient` or `permanent` (with [`H_ERROR`]).
pub const H_CLASS: &str = "Accesshub-Edge-Class";
/// `SOAPAction`, passed through.
pub const H_SOAP_ACTION: &str = "SOAPAction";
/// `Retry-After` of the lock server's answer, passed through (seconds).
pub const H_RETRY_AFTER: &str = "Retry-After";
/// The [`H_OP`] of a liveness probe: answered by the relay without touching the lock server.
pub const OP_PING: &str = "ping";

/// The relay subject of one site, un-namespaced: `edge.dormakaba.<tenant>.<site>`.
pub fn relay_subject(tenant: &str, site: &str) -> String {
    format!(
        "edge.dormakaba.{}.{}",
        subjects::token(tenant),
        subjects::token(site)
    )
}

/// Whether a site's relay answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SiteState {
    /// The last request reached the relay.
    Online,
    /// The last request found no relay (leaf link down, relay stopped).
    Offline,
}

/// A site the cloud worker has talked to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteInfo {
    /// Tenant.
    pub tenant: String,
    /// Edge site (the connection's `edge_site`).
    pub site: String,
    /// Upstream sites the connection serves (empty: all of the tenant's).
    pub upstream_sites: Vec<String>,
    /// State.
    pub state: SiteState,
    /// Since when.
    pub since: chrono::DateTime<chrono::Utc>,
    /// Sweeps still owed to reservations parked while it was offline (two per parking: a
    /// parking's record is committed just after the handler notes it).
    pub parked: u8,
}

/// The cloud side of edge connections: one NATS client (connected on first use) and what is
/// known of each site.
pub struct EdgeLink {
    common: CommonConfig,
    ns: Namespace,
    client: OnceCell<async_nats::Client>,
    sites: Mutex<BTreeMap<(String, String), SiteInfo>>,
    gauge: GaugeVec,
    /// Longest wait for a relay's answer (a lock server call takes seconds; the relay's own
    /// HTTP timeout is shorter, so silence this long means the link is gone).
    pub timeout: Duration,
    changed: tokio::sync::Notify,
}

impl std::fmt::Debug for EdgeLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EdgeLink")
            .field("namespace", &self.ns.prefix())
            .finish_non_exhaustive()
    }
}

impl EdgeLink {
    /// A link using the worker's NATS settings; the site gauge goes into `registry`.
    pub fn new(common: CommonConfig, registry: &accesshub_telemetry::Registry) -> Arc<Self> {
        Arc::new(EdgeLink {
            ns: Namespace::new(&common.namespace),
            common,
            client: OnceCell::new(),
            sites: Mutex::new(BTreeMap::new()),
            gauge: registry.gauge(
                "accesshub_edge_site_online",
                "1 while the site's edge relay answers, 0 while it does not (leaf link down)",
            ),
            timeout: Duration::from_secs(40),
            changed: tokio::sync::Notify::new(),
        })
    }

    async fn client(&self) -> Result<&async_nats::Client, SoapError> {
        self.client
            .get_or_try_init(|| async {
                accesshub_bus::connect(&self.common)
                    .await
                    .map(|b| b.client)
                    .map_err(|e| SoapError::Transport {
                        operation: "edge",
                        message: format!("NATS: {e}"),
                        class: e.class(),
                    })
            })
            .await
    }

    /// Every site seen, with its state (for status pages and tests).
    pub fn sites(&self) -> Vec<SiteInfo> {
        self.lock().values().cloned().collect()
    }

    /// The state of one site (`None`: never talked to).
    pub fn state(&self, tenant: &str, site: &str) -> Option<SiteState> {
        self.lock()
            .get(&(tenant.to_owned(), site.to_owned()))
            .map(|s| s.state)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<(String, String), SiteInfo>> {
        self.sites.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a site's state; `true` when it changed.
    fn mark(&self, tenant: &str, site: &str, upstream_sites: &[String], state: SiteState) -> bool {
        let mut map = self.lock();
        let key = (tenant.to_owned(), site.to_owned());
        let changed = map.get(&key).is_none_or(|s| s.state != state);
        if changed {
            let parked = map.get(&key).map_or(0, |s| s.parked);
            map.insert(
                key,
                SiteInfo {
                    tenant: tenant.to_owned(),
                    site: site.to_owned(),
                    upstream_sites: upstream_sites.to_vec(),
                    state,
                    since: chrono::Utc::now(),
                    parked,
                },
            );
            self.gauge
                .get_or_create(&accesshub_telemetry::metrics::labels([
                    ("tenant", tenant),
                    ("site", site),
                ]))
                .set(i64::from(state == SiteState::Online));
            match state {
                SiteState::Online => tracing::info!(tenant, site, "edge site online"),
                SiteState::Offline => tracing::warn!(tenant, site, "edge site offline"),
            }
            drop(map);
            self.changed.notify_waiters();
        }
        changed
    }

    /// A site recorded offline before this process started (`edge_sites`): watched and, once it
    /// answers, its tenant's parked reservations resumed (any upstream site: those of another
    /// site still offline are parked again).
    pub fn seed_offline(&self, tenant: &str, site: &str) {
        let mut map = self.lock();
        map.entry((tenant.to_owned(), site.to_owned()))
            .or_insert_with(|| SiteInfo {
                tenant: tenant.to_owned(),
                site: site.to_owned(),
                upstream_sites: Vec::new(),
                state: SiteState::Offline,
                since: chrono::Utc::now(),
                parked: 2,
            });
        drop(map);
        self.gauge
            .get_or_create(&accesshub_telemetry::metrics::labels([
                ("tenant", tenant),
                ("site", site),
            ]))
            .set(0);
    }

    /// Notes that a reservation of the site was parked (the watcher resumes it).
    pub fn park(&self, tenant: &str, site: &str) {
        if let Some(s) = self.lock().get_mut(&(tenant.to_owned(), site.to_owned())) {
            s.parked = 2;
        }
    }

    /// Whether a sweep is owed to reservations parked at the site (counts it as done).
    pub fn take_parked(&self, tenant: &str, site: &str) -> bool {
        self.lock()
            .get_mut(&(tenant.to_owned(), site.to_owned()))
            .is_some_and(|s| {
                let owed = s.parked > 0;
                s.parked = s.parked.saturating_sub(1);
                owed
            })
    }

    /// One SOAP call through the site's relay: the lock server's status, body and
    /// `Retry-After`.
    pub async fn call(
        &self,
        target: &EdgeTarget,
        operation: &'static str,
        soap_action: &str,
        envelope: Vec<u8>,
    ) -> Result<(u16, Vec<u8>, Option<Duration>), SoapError> {
        let client = self.client().await?;
        let mut h = HeaderMap::new();
        h.insert(H_OP, operation);
        h.insert(H_SOAP_ACTION, soap_action);
        accesshub_telemetry::propagation::inject_nats(&mut h);
        let subject = self
            .ns
            .subject(&relay_subject(&target.tenant, &target.site));
        let req = async_nats::Request::new()
            .payload(envelope.into())
            .headers(h)
            .timeout(Some(self.timeout));
        let reply = match client.send_request(subject, req).await {
            Ok(m) => m,
            Err(e) => {
                let err = match e.kind() {
                    RequestErrorKind::NoResponders | RequestErrorKind::TimedOut => {
                        self.mark(
                            &target.tenant,
                            &target.site,
                            &target.upstream_sites,
                            SiteState::Offline,
                        );
                        SoapError::SiteOffline {
                            operation,
                            site: target.site.clone(),
                        }
                    }
                    RequestErrorKind::InvalidSubject | RequestErrorKind::MaxPayloadExceeded => {
                        SoapError::Transport {
                            operation,
                            message: format!("edge request: {e}"),
                            class: ErrorClass::Permanent,
                        }
                    }
                    _ => SoapError::Transport {
                        operation,
                        message: format!("edge request: {e}"),
                        class: ErrorClass::Transient,
                    },
                };
                return Err(err);
            }
        };
        self.mark(
            &target.tenant,
            &target.site,
            &target.upstream_sites,
            SiteState::Online,
        );
        read_reply(operation, &reply)
    }

    /// Asks the site's relay whether it is there (no lock-server call); records the state.
    pub async fn ping(&self, target: &EdgeTarget) -> SiteState {
        let Ok(client) = self.client().await else {
            return SiteState::Offline;
        };
        let mut h = HeaderMap::new();
        h.insert(H_OP, OP_PING);
        let subject = self
            .ns
            .subject(&relay_subject(&target.tenant, &target.site));
        let req = async_nats::Request::new()
            .headers(h)
            .timeout(Some(Duration::from_secs(5)));
        let state = match client.send_request(subject, req).await {
            Ok(_) => SiteState::Online,
            Err(_) => SiteState::Offline,
        };
        self.mark(&target.tenant, &target.site, &target.upstream_sites, state);
        state
    }

    /// Waits until some site's state changes (or `max` passes).
    pub async fn changed(&self, max: Duration) {
        let _ = tokio::time::timeout(max, self.changed.notified()).await;
    }
}

/// Where an edge connection's calls go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeTarget {
    /// Tenant.
    pub tenant: String,
    /// Edge site (`edge_site` of the connection).
    pub site: String,
    /// Upstream sites the connection serves (which parked bookings resume with it).
    pub upstream_sites: Vec<String>,
}

fn header<'a>(m: &'a async_nats::Message, name: &str) -> Option<&'a str> {
    m.headers.as_ref()?.get(name).map(|v| v.as_str())
}

fn read_reply(
    operation: &'static str,
    reply: &async_nats::Message,
) -> Result<(u16, Vec<u8>, Option<Duration>), SoapError> {
    if let Some(why) = header(reply, H_ERROR) {
        let class = match header(reply, H_CLASS) {
            Some("permanent") => ErrorClass::Permanent,
            _ => ErrorClass::Transient,
        };
        return Err(SoapError::Transport {
            operation,
            message: format!("edge relay: {why}"),
            class,
        });
    }
    let status = header(reply, H_STATUS)
        .and_then(|s| s.trim().parse::<u16>().ok())
        .ok_or_else(|| SoapError::Decode {
            operation,
            message: "edge relay answer without a status".to_owned(),
        })?;
    let retry_after = header(reply, H_RETRY_AFTER)
        .and_then(|s| s.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    Ok((status, reply.payload.to_vec(), retry_after))
}

/// The relay could not run.
#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    /// Bad configuration (missing tenant, site or lock-server URL).
    #[error("edge configuration: {0}")]
    Config(String),
    /// NATS (the local leaf node).
    #[error("NATS: {0}")]
    Nats(String),
}

impl Classify for EdgeError {
    fn class(&self) -> ErrorClass {
        match self {
            EdgeError::Config(_) => ErrorClass::Permanent,
            EdgeError::Nats(_) => ErrorClass::Transient,
        }
    }
}

/// What the relay needs: where to listen (on the local leaf node) and the lock server.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Tenant this hotel belongs to.
    pub tenant: String,
    /// Edge site name (the connection's `edge_site`).
    pub site: String,
    /// The lock server's web-service URL on the LAN, e.g.
    /// `http://10.0.0.5:80/MessengerPMSWS`.
    pub lock_url: String,
    /// Subject prefix (`ACCESSHUB_NAMESPACE`; empty in production).
    pub namespace: String,
    /// HTTP timeout of one lock-server call (shorter than the cloud's wait for the answer).
    pub timeout: Duration,
}

impl RelayConfig {
    /// From `ACCESSHUB_EDGE_TENANT`, `ACCESSHUB_EDGE_SITE`, `ACCESSHUB_EDGE_LOCK_URL`,
    /// `ACCESSHUB_EDGE_LOCK_TIMEOUT` (default 30s) and `ACCESSHUB_NAMESPACE`.
    pub fn from_env() -> Result<Self, EdgeError> {
        let need = |name: &'static str| {
            accesshub_config::env_opt(name)
                .ok_or_else(|| EdgeError::Config(format!("{name} is required in edge mode")))
        };
        let lock_url = need("ACCESSHUB_EDGE_LOCK_URL")?;
        if !(lock_url.starts_with("http://") || lock_url.starts_with("https://")) {
            return Err(EdgeError::Config(format!(
                "ACCESSHUB_EDGE_LOCK_URL {lock_url:?} must be an http(s) URL"
            )));
        }
        Ok(RelayConfig {
            tenant: need("ACCESSHUB_EDGE_TENANT")?,
            site: need("ACCESSHUB_EDGE_SITE")?,
            lock_url,
            namespace: accesshub_config::env_opt("ACCESSHUB_NAMESPACE").unwrap_or_default(),
            timeout: accesshub_config::env_duration(
                "ACCESSHUB_EDGE_LOCK_TIMEOUT",
                Duration::from_secs(30),
            )
            .map_err(|e| EdgeError::Config(e.to_string()))?,
        })
    }

    /// The subject this relay answers on.
    pub fn subject(&self) -> String {
        Namespace::new(&self.namespace).subject(&relay_subject(&self.tenant, &self.site))
    }
}

/// Answers relay requests on `client` (connected to the hotel's leaf node) until `shutdown`.
pub async fn run_relay(
    client: async_nats::Client,
    cfg: RelayConfig,
    shutdown: tokio_util::sync::CancellationToken,
) -> Result<(), EdgeError> {
    let http = VendorClient::new(
        "dormakaba",
        HttpSettings {
            timeout: cfg.timeout,
            connect_timeout: Duration::from_secs(5),
        },
    )
    .map_err(|e| EdgeError::Config(e.to_string()))?;
    let subject = cfg.subject();
    // A plain subscription: nats-server 2.9 does not carry a queue subscription across a leaf
    // connection whose user has subscribe permissions. So one relay per site (the chart and
    // the systemd unit run one): two would both call the lock server.
    let mut sub = client
        .subscribe(subject.clone())
        .await
        .map_err(|e| EdgeError::Nats(e.to_string()))?;
    // The interest must reach the hub before the relay counts as up.
    client
        .flush()
        .await
        .map_err(|e| EdgeError::Nats(e.to_string()))?;
    tracing::info!(%subject, lock = %cfg.lock_url, "edge relay listening");
    let cfg = Arc::new(cfg);
    loop {
        let msg = tokio::select! {
            _ = shutdown.cancelled() => break,
            m = sub.next() => match m {
                Some(m) => m,
                None => break,
            },
        };
        let (client, http, cfg) = (client.clone(), http.clone(), cfg.clone());
        tokio::spawn(async move {
            let Some(reply_to) = msg.reply.clone() else {
                return;
            };
            let h = relay_one(&http, &cfg, &msg).await;
            if let Err(e) = client.publish_with_headers(reply_to, h.0, h.1.into()).await {
                tracing::warn!(error = %e, "edge relay: answer not sent");
            }
        });
    }
    let _ = sub.unsubscribe().await;
    Ok(())
}

async fn relay_one(
    http: &VendorClient,
    cfg: &RelayConfig,
    msg: &async_nats::Message,
) -> (HeaderMap, Vec<u8>) {
    let mut out = HeaderMap::new();
    let op = header(msg, H_OP).unwrap_or_default();
    if op == OP_PING {
        out.insert(H_STATUS, "200");
        return (out, b"pong".to_vec());
    }
    let action = header(msg, H_SOAP_ACTION).unwrap_or_default().to_owned();
    let request = http
        .request(Method::POST, &cfg.lock_url)
        .header("Content-Type", "text/xml; charset=utf-8")
        .header("SOAPAction", action)
        .body(msg.payload.to_vec());
    match http.send_bytes("edge-relay", request).await {
        Ok(reply) => {
            out.insert(H_STATUS, reply.status.as_u16().to_string().as_str());
            if let Some(d) = reply.retry_after() {
                out.insert(H_RETRY_AFTER, d.as_secs().to_string().as_str());
            }
            (out, reply.body.to_vec())
        }
        Err(e) => {
            let class = match e.class() {
                ErrorClass::Permanent => "permanent",
                ErrorClass::Transient => "transient",
            };
            tracing::warn!(error = %e, op, "edge relay: lock server call failed");
            out.insert(H_ERROR, e.to_string().replace(['\r', '\n'], " ").as_str());
            out.insert(H_CLASS, class);
            (out, Vec::new())
        }
    }
}
