//! NATS JetStream plumbing shared by every service: connecting (without blocking start-up
//! when NATS is down), creating or updating the streams idempotently, and publishing
//! events with their de-duplication id and trace context.

use std::time::Duration;

use accesshub_config::{CommonConfig, Mode, StreamSettings};
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
    /// A stream a service needs does not exist. Outside dev mode services never create
    /// streams: `accessctl streams apply` (the release's migrations Job) does.
    #[error(
        "stream {stream} does not exist: run `accessctl streams apply` with the streams identity \
         (the release's migrations Job does; services create streams only with ACCESSHUB_MODE=dev)"
    )]
    StreamMissing {
        /// Stream name.
        stream: String,
    },
    /// A stream exists without a setting a service relies on (its subjects, limits
    /// retention, a de-duplication window at least as long as configured).
    #[error(
        "stream {stream}: {setting} is {have}, this service needs {want}: run `accessctl streams \
         apply` with the streams identity (the release's migrations Job does)"
    )]
    StreamSetting {
        /// Stream name.
        stream: String,
        /// The setting, by its JetStream name (`subjects`, `retention`, `duplicate_window`).
        setting: &'static str,
        /// What the stream has.
        have: String,
        /// What the service needs.
        want: String,
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
            // Missing or outdated streams are fixed by the migrations Job, which may still be
            // running: wait for it.
            BusError::Connect(_)
            | BusError::Publish { .. }
            | BusError::StreamMissing { .. }
            | BusError::StreamSetting { .. } => ErrorClass::Transient,
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

    /// Checks that every stream exists with the settings services rely on, without changing
    /// anything (a service's identity may only read stream info outside dev mode). Other
    /// differences from the configuration (ages, replicas, storage, size limits) are the
    /// operator's to decide: they are logged as a warning, not refused.
    pub async fn check_streams(&self) -> Result<(), BusError> {
        for want in self.stream_configs() {
            let name = want.name.clone();
            // One STREAM.INFO request (the identity's only stream right besides consumers).
            let have = match self.js.get_stream(&name).await {
                Ok(s) => s.cached_info().config.clone(),
                Err(e) => {
                    if let jetstream::context::GetStreamErrorKind::JetStream(j) = e.kind()
                        && j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
                    {
                        return Err(BusError::StreamMissing { stream: name });
                    }
                    return Err(BusError::Connect(format!("stream {name} info: {e}")));
                }
            };
            if let Some(problem) = stream_problem(&want, &have) {
                return Err(problem);
            }
            let drift = stream_drift(&want, &have);
            if !drift.is_empty() {
                tracing::warn!(stream = %name, differences = %drift.join(", "),
                    "stream differs from this service's configuration; `accessctl streams apply` brings it in line");
            }
        }
        Ok(())
    }

    /// What a service does with the streams at start-up: check them ([`Bus::check_streams`]);
    /// in [`Mode::Dev`] (tests, `make dev`) create or update them when the check fails.
    /// Production leaves creating and changing streams to `accessctl streams apply`, so a
    /// service's NATS identity needs no right to change stream limits.
    pub async fn prepare_streams(&self, mode: Mode) -> Result<(), BusError> {
        match self.check_streams().await {
            Ok(()) => Ok(()),
            Err(e) if mode == Mode::Dev => {
                tracing::info!(reason = %e, "dev mode: creating or updating the streams");
                self.ensure_streams().await
            }
            Err(e) => Err(e),
        }
    }

    /// Deletes every stream of this namespace (tests clean up after themselves).
    pub async fn delete_streams(&self) {
        for cfg in self.stream_configs() {
            let _ = self.js.delete_stream(&cfg.name).await;
        }
    }
}

/// The first setting of `have` that breaks what services rely on, as the error naming it:
/// every configured subject (events would have no stream), limits retention (workers and the
/// DLQ tooling read the same stream with several consumers), and a de-duplication window at
/// least as long as configured (the outbox relay's exactly-once publishing depends on it).
pub fn stream_problem(want: &StreamConfig, have: &StreamConfig) -> Option<BusError> {
    let setting = |setting, have_value: String, want_value: String| BusError::StreamSetting {
        stream: want.name.clone(),
        setting,
        have: have_value,
        want: want_value,
    };
    if let Some(missing) = want.subjects.iter().find(|s| !have.subjects.contains(s)) {
        return Some(setting(
            "subjects",
            format!("{:?}", have.subjects),
            format!("{missing:?} among them"),
        ));
    }
    if have.retention != want.retention {
        return Some(setting(
            "retention",
            format!("{:?}", have.retention),
            format!("{:?}", want.retention),
        ));
    }
    if have.duplicate_window < want.duplicate_window {
        return Some(setting(
            "duplicate_window",
            format!("{:?}", have.duplicate_window),
            format!("at least {:?}", want.duplicate_window),
        ));
    }
    None
}

/// Settings of `have` that differ from the configuration without breaking anything (logged).
fn stream_drift(want: &StreamConfig, have: &StreamConfig) -> Vec<String> {
    let d = |v: &dyn std::fmt::Debug| format!("{v:?}");
    [
        ("max_age", d(&want.max_age), d(&have.max_age)),
        ("num_replicas", d(&want.num_replicas), d(&have.num_replicas)),
        ("storage", d(&want.storage), d(&have.storage)),
        ("max_bytes", d(&want.max_bytes), d(&have.max_bytes)),
        (
            "duplicate_window",
            d(&want.duplicate_window),
            d(&have.duplicate_window),
        ),
    ]
    .into_iter()
    .filter(|(_, w, h)| w != h)
    .map(|(name, w, h)| format!("{name} {h} (configured {w})"))
    .collect()
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod stream_ownership_tests {
    use super::*;

    async fn bus(ns: &str) -> Bus {
        let cfg = CommonConfig::for_test("bus-test", ns, "postgres://unused");
        connect(&cfg).await.unwrap()
    }

    /// Outside dev mode a service only checks: missing streams are an error naming the stream
    /// and what to run, and nothing is created (issue 23: streams are created and changed by
    /// `accessctl streams apply` only).
    #[tokio::test]
    async fn production_checks_the_streams_and_never_creates_them() {
        let ns = format!("bt{}", std::process::id());
        let bus = bus(&ns).await;
        bus.delete_streams().await;
        let err = bus.prepare_streams(Mode::Production).await.unwrap_err();
        let bookings = bus.stream_name(subjects::BOOKINGS_STREAM);
        assert!(
            matches!(&err, BusError::StreamMissing { stream } if *stream == bookings),
            "{err}"
        );
        assert!(err.to_string().contains("accessctl streams apply"), "{err}");
        assert_eq!(err.class(), ErrorClass::Transient);
        assert!(
            bus.js.get_stream(&bookings).await.is_err(),
            "created a stream"
        );

        // Dev mode creates them; then production's check passes.
        bus.prepare_streams(Mode::Dev).await.unwrap();
        bus.prepare_streams(Mode::Production).await.unwrap();

        // A de-duplication window shorter than configured breaks exactly-once publishing:
        // refused, naming the stream and the setting; the check does not repair it.
        let mut short = bus.stream_configs().remove(0);
        short.duplicate_window = Duration::from_secs(1);
        bus.js.update_stream(short).await.unwrap();
        let err = bus.check_streams().await.unwrap_err();
        match &err {
            BusError::StreamSetting {
                stream, setting, ..
            } => assert_eq!(
                (stream.as_str(), *setting),
                (bookings.as_str(), "duplicate_window")
            ),
            other => panic!("{other}"),
        }
        assert!(
            bus.check_streams().await.is_err(),
            "the check changed the stream"
        );
        // What `accessctl streams apply` runs brings it back.
        bus.ensure_streams().await.unwrap();
        bus.check_streams().await.unwrap();
        bus.delete_streams().await;
    }

    /// Settings services rely on, checked without a server.
    #[test]
    fn a_stream_without_a_needed_subject_or_with_other_retention_is_named() {
        let cfg = CommonConfig::for_test("bus-test", "x", "postgres://unused");
        let want = StreamConfig {
            name: "X_BOOKINGS".into(),
            subjects: vec!["x.bookings.>".into()],
            duplicate_window: cfg.streams.duplicate_window,
            ..Default::default()
        };
        assert!(stream_problem(&want, &want.clone()).is_none());
        let mut have = want.clone();
        have.subjects = vec!["x.other.>".into()];
        let e = stream_problem(&want, &have).unwrap().to_string();
        assert!(e.contains("X_BOOKINGS: subjects"), "{e}");
        let mut have = want.clone();
        have.retention = RetentionPolicy::WorkQueue;
        let e = stream_problem(&want, &have).unwrap().to_string();
        assert!(e.contains("X_BOOKINGS: retention"), "{e}");
        // A longer window than configured is fine (only the age of duplicates grows).
        let mut have = want.clone();
        have.duplicate_window = want.duplicate_window * 2;
        assert!(stream_problem(&want, &have).is_none());
        assert_eq!(stream_drift(&want, &have).len(), 1);
    }
}
