//! NATS JetStream plumbing shared by every service: connecting (without blocking start-up
//! when NATS is down), creating or updating the streams idempotently, and publishing
//! events with their de-duplication id and trace context.

use std::time::Duration;

use accesshub_config::{CommonConfig, StreamSettings};
use accesshub_domain::{
    Classify, ErrorClass,
    subjects::{self, Namespace},
};
use async_nats::jetstream::{
    self,
    stream::{Config as StreamConfig, DiscardPolicy, RetentionPolicy, StorageType},
};

/// A NATS operation failed; every variant knows whether retrying can help.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// Could not connect or lost the connection.
    #[error("NATS connection: {0}")]
    Connect(String),
    /// Reading the credentials file failed.
    #[error("NATS credentials file {path}: {source}")]
    Credentials {
        /// Path configured in `NATS_CREDS`.
        path: String,
        /// Underlying error.
        source: std::io::Error,
    },
    /// Stream create/update was refused (bad settings, overlapping subjects).
    #[error("stream {stream}: {message}")]
    Stream {
        /// Stream name.
        stream: String,
        /// Server's answer.
        message: String,
    },
    /// `NATS_URL` holds an address the client cannot use.
    #[error("NATS_URL entry {url:?}: {message}")]
    ServerAddr {
        /// The entry (credentials in it are the operator's own config, not echoed elsewhere).
        url: String,
        /// Why it is unusable.
        message: String,
    },
    /// A publish was not acknowledged.
    #[error("publish to {subject}: {message}")]
    Publish {
        /// Subject.
        subject: String,
        /// Error.
        message: String,
    },
}

impl Classify for BusError {
    fn class(&self) -> ErrorClass {
        match self {
            BusError::Connect(_) | BusError::Publish { .. } => ErrorClass::Transient,
            BusError::Credentials { .. }
            | BusError::Stream { .. }
            | BusError::ServerAddr { .. } => ErrorClass::Permanent,
        }
    }
}

/// The connection plus the namespace every subject and stream name goes through.
#[derive(Clone, Debug)]
pub struct Bus {
    /// Core NATS client (request/reply, plain publish).
    pub client: async_nats::Client,
    /// JetStream context.
    pub js: jetstream::Context,
    /// Subject/stream prefix.
    pub ns: Namespace,
    /// Stream settings from configuration.
    pub streams: StreamSettings,
}

/// The servers of `NATS_URL`: one URL or a comma-separated list (every node of a cluster, so
/// a service starts and reconnects whichever node is down; the client also learns the other
/// nodes from the servers it reaches). Blank entries are ignored.
pub fn server_addrs(nats_url: &str) -> Result<Vec<async_nats::ServerAddr>, BusError> {
    let addrs = nats_url
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(|u| {
            u.parse::<async_nats::ServerAddr>()
                .map_err(|e| BusError::ServerAddr {
                    url: accesshub_config::redact_url_password(u),
                    message: e.to_string(),
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if addrs.is_empty() {
        return Err(BusError::ServerAddr {
            url: nats_url.to_owned(),
            message: "no server URL".into(),
        });
    }
    Ok(addrs)
}

/// TLS settings on the client: the CA replaces the system roots (a private CA is the usual
/// case inside a cluster), a client certificate answers servers that verify clients, and any
/// of them makes TLS required, so a misconfigured plain server is refused instead of being
/// sent the NATS password in the clear. `tls://` URLs require TLS on their own.
fn tls_options(
    mut opts: async_nats::ConnectOptions,
    tls: &accesshub_config::NatsTls,
) -> async_nats::ConnectOptions {
    if let Some(ca) = &tls.ca_file {
        opts = opts.add_root_certificates(ca.clone());
    }
    if let Some((cert, key)) = &tls.client_cert {
        opts = opts.add_client_certificate(cert.clone(), key.clone());
    }
    if tls.is_configured() {
        opts = opts.require_tls(true);
    }
    opts
}

/// Connects to NATS. With `retry_on_initial_connect` the call returns at once and the
/// client keeps trying in the background, so booking-ingest can accept webhooks (into the
/// outbox) while NATS is down.
pub async fn connect(cfg: &CommonConfig) -> Result<Bus, BusError> {
    let mut opts = async_nats::ConnectOptions::new()
        .name(&cfg.service)
        .retry_on_initial_connect()
        .max_reconnects(None::<usize>)
        .connection_timeout(Duration::from_secs(5))
        .event_callback(|ev| async move {
            tracing::info!(event = %ev, "NATS connection event");
        });
    if let Some(path) = &cfg.nats_creds {
        opts = opts
            .credentials_file(path)
            .await
            .map_err(|source| BusError::Credentials {
                path: path.clone(),
                source,
            })?;
    }
    if let Some((u, p)) = &cfg.nats_user {
        opts = opts.user_and_password(u.clone(), p.clone());
    }
    if let Some(prefix) = &cfg.nats_inbox_prefix {
        opts = opts.custom_inbox_prefix(prefix);
    }
    opts = tls_options(opts, &cfg.nats_tls);
    let client = opts
        .connect(server_addrs(&cfg.nats_url)?)
        .await
        .map_err(|e| BusError::Connect(e.to_string()))?;
    let js = jetstream::ContextBuilder::new()
        .timeout(Duration::from_secs(10))
        .build(client.clone());
    Ok(Bus {
        client,
        js,
        ns: Namespace::new(&cfg.namespace),
        streams: cfg.streams.clone(),
    })
}

impl Bus {
    /// Whether the client is connected right now (readiness).
    pub fn is_connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    /// Stream name within the namespace.
    pub fn stream_name(&self, base: &str) -> String {
        self.ns.stream(base)
    }

    /// Subject within the namespace.
    pub fn subject(&self, s: &str) -> String {
        self.ns.subject(s)
    }

    /// The configurations of every stream accesshub uses, with explicit settings.
    pub fn stream_configs(&self) -> Vec<StreamConfig> {
        let s = &self.streams;
        let storage = if s.file_storage {
            StorageType::File
        } else {
            StorageType::Memory
        };
        let base = |name: &str, subjects: Vec<String>, max_age: Duration| StreamConfig {
            name: self.ns.stream(name),
            subjects,
            retention: RetentionPolicy::Limits,
            storage,
            num_replicas: s.replicas,
            max_age,
            duplicate_window: s.duplicate_window,
            discard: DiscardPolicy::Old,
            max_bytes: -1,
            max_messages: -1,
            max_messages_per_subject: -1,
            ..Default::default()
        };
        let bookings_stream = self.ns.stream(subjects::BOOKINGS_STREAM);
        vec![
            base(
                subjects::BOOKINGS_STREAM,
                vec![self.ns.subject(subjects::BOOKINGS_SUBJECTS)],
                s.bookings_max_age,
            ),
            StreamConfig {
                max_bytes: s.dlq_max_bytes,
                ..base(
                    subjects::DLQ_STREAM,
                    vec![
                        self.ns.subject(subjects::DLQ_SUBJECTS),
                        // Server advisories for messages that hit max_deliver on BOOKINGS.
                        format!("{}.{bookings_stream}.>", subjects::MAX_DELIVERIES_ADVISORY),
                    ],
                    s.dlq_max_age,
                )
            },
            base(
                subjects::RESULTS_STREAM,
                vec![self.ns.subject(subjects::RESULTS_SUBJECTS)],
                Duration::from_secs(7 * 24 * 3600),
            ),
            base(
                subjects::SYNC_STREAM,
                vec![self.ns.subject(subjects::SYNC_SUBJECTS)],
                Duration::from_secs(24 * 3600),
            ),
        ]
    }

    /// Creates every stream or brings an existing one to the configured settings.
    /// Idempotent: services call it at every start-up.
    pub async fn ensure_streams(&self) -> Result<(), BusError> {
        for cfg in self.stream_configs() {
            let name = cfg.name.clone();
            self.js
                .create_or_update_stream(cfg)
                .await
                .map_err(|e| BusError::Stream {
                    stream: name.clone(),
                    message: e.to_string(),
                })?;
            tracing::debug!(stream = %name, "stream ready");
        }
        Ok(())
    }

    /// Deletes every stream of this namespace (tests clean up after themselves).
    pub async fn delete_streams(&self) {
        for cfg in self.stream_configs() {
            let _ = self.js.delete_stream(&cfg.name).await;
        }
    }
}

/// Copies NATS headers into a sorted multimap, keeping every value: the shape dead letters
/// store (`DeadLetter::original_headers`) and `accessctl dlq show` prints.
pub fn header_map(
    h: Option<&async_nats::HeaderMap>,
) -> std::collections::BTreeMap<String, Vec<String>> {
    let mut out = std::collections::BTreeMap::new();
    if let Some(h) = h {
        for (name, values) in h.iter() {
            out.insert(
                name.to_string(),
                values.iter().map(|v| v.as_str().to_owned()).collect(),
            );
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod server_list_tests {
    use super::*;

    /// `NATS_URL` may name every node of a cluster, comma-separated (docs/deploy.md): the
    /// client must get them all, not one unparsable address.
    #[test]
    fn a_comma_separated_nats_url_is_a_list_of_servers() {
        let addrs =
            server_addrs("nats://127.0.0.1:4222, nats://127.0.0.1:4223,,tls://n3:4222 ").unwrap();
        let ports: Vec<u16> = addrs.iter().map(|a| a.port()).collect();
        assert_eq!(ports, [4222, 4223, 4222]);
        assert!(matches!(
            server_addrs("nats://127.0.0.1:4222,nats://bad host:x"),
            Err(BusError::ServerAddr { .. })
        ));
        assert!(matches!(
            server_addrs(" , "),
            Err(BusError::ServerAddr { .. })
        ));
    }

    /// One dead node in the list does not keep a service from the live ones.
    #[tokio::test]
    async fn connects_through_a_list_whose_first_node_is_down() {
        let dead = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let live = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
        let mut cfg = CommonConfig::for_test("bus-test", "bustest", "postgres://unused");
        cfg.nats_url = format!("nats://127.0.0.1:{dead},{live}");
        let bus = connect(&cfg).await.unwrap();
        let start = std::time::Instant::now();
        while !bus.is_connected() {
            assert!(start.elapsed() < Duration::from_secs(15), "never connected");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bus.client.flush().await.unwrap();
    }
}
