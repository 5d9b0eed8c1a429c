//! Configuration from the environment (the Helm chart's ConfigMap and Secret), loaded once
//! and validated at start-up so a typo fails fast with the variable's name.

use std::{net::SocketAddr, path::PathBuf, str::FromStr, time::Duration};

pub use accesshub_domain::egress::EgressPolicy;

/// A variable is missing or does not parse; names the variable so an operator can fix it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Required and unset (or empty).
    #[error(
        "environment variable {0} is required (unset or empty; local defaults apply only with \
         {MODE_VAR}=dev)"
    )]
    Missing(&'static str),
    /// Set but unusable.
    #[error("environment variable {name} = {value:?}: {problem}")]
    Invalid {
        /// Variable name.
        name: &'static str,
        /// The value found (never a secret: secrets are not echoed).
        value: String,
        /// What is wrong.
        problem: String,
    },
}

/// `ACCESSHUB_MODE`: `production` (the default) or `dev`.
pub const MODE_VAR: &str = "ACCESSHUB_MODE";

/// The database of `make dev` and the tests, used only in [`Mode::Dev`].
pub const DEV_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// How a service treats settings it cannot run without (the database URL, the encryption
/// key, the admin token). Production is the default, so a forgotten Secret stops the pod with
/// the variable's name instead of quietly reaching for a local test database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Required settings must be set (non-empty).
    #[default]
    Production,
    /// Local development and tests (`make dev`, the test kit): local defaults apply.
    Dev,
}

impl FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "production" | "prod" => Ok(Mode::Production),
            "dev" | "development" => Ok(Mode::Dev),
            other => Err(format!("expected production or dev, got {other:?}")),
        }
    }
}

impl Mode {
    /// From `ACCESSHUB_MODE` (unset or empty: production).
    pub fn from_env() -> Result<Mode, ConfigError> {
        env_or(MODE_VAR, Mode::Production)
    }
}

/// A setting production cannot run without: its value, or in [`Mode::Dev`] `None` when unset
/// (the caller applies its local default). Empty counts as unset.
pub fn env_required_unless_dev(name: &'static str) -> Result<Option<String>, ConfigError> {
    required_unless_dev(name, env_opt(name), Mode::from_env()?)
}

/// The rule of [`env_required_unless_dev`] over given values.
pub fn required_unless_dev(
    name: &'static str,
    value: Option<String>,
    mode: Mode,
) -> Result<Option<String>, ConfigError> {
    match (value.filter(|v| !v.trim().is_empty()), mode) {
        (Some(v), _) => Ok(Some(v.trim().to_owned())),
        (None, Mode::Dev) => Ok(None),
        (None, Mode::Production) => Err(ConfigError::Missing(name)),
    }
}

/// `DATABASE_URL`: required in production; [`DEV_DATABASE_URL`] in dev mode when unset.
pub fn database_url() -> Result<String, ConfigError> {
    Ok(env_required_unless_dev("DATABASE_URL")?.unwrap_or_else(|| DEV_DATABASE_URL.to_owned()))
}

/// Reads `name`, or `default` when unset; parse errors name the variable.
pub fn env_or<T: FromStr>(name: &'static str, default: T) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => {
            v.trim().parse().map_err(|e: T::Err| ConfigError::Invalid {
                name,
                value: v.clone(),
                problem: e.to_string(),
            })
        }
        _ => Ok(default),
    }
}

/// Reads an optional variable.
pub fn env_opt(name: &'static str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// Reads a duration written the human way (`30s`, `5m`, `7days`).
pub fn env_duration(name: &'static str, default: Duration) -> Result<Duration, ConfigError> {
    match env_opt(name) {
        Some(v) => humantime::parse_duration(v.trim()).map_err(|e| ConfigError::Invalid {
            name,
            value: v,
            problem: e.to_string(),
        }),
        None => Ok(default),
    }
}

/// Log output shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line (production).
    Json,
    /// Human-readable (local development).
    Pretty,
}

impl FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "json" => Ok(LogFormat::Json),
            "pretty" | "text" => Ok(LogFormat::Pretty),
            other => Err(format!("expected json or pretty, got {other:?}")),
        }
    }
}

/// Settings of the JetStream streams, so retention is an operator decision, not a constant.
#[derive(Debug, Clone)]
pub struct StreamSettings {
    /// Replicas of every stream (1 locally, 3 in production clusters).
    pub replicas: usize,
    /// How long BOOKINGS keeps events.
    pub bookings_max_age: Duration,
    /// JetStream de-duplication window for `Nats-Msg-Id`.
    pub duplicate_window: Duration,
    /// How long the DLQ keeps entries.
    pub dlq_max_age: Duration,
    /// Byte limit of the DLQ stream (-1 = unlimited).
    pub dlq_max_bytes: i64,
    /// Whether streams live on disk (true) or in memory (tests may choose memory).
    pub file_storage: bool,
}

impl std::fmt::Debug for CommonConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommonConfig")
            .field("service", &self.service)
            .field("database_url", &redact_url_password(&self.database_url))
            .field("nats_url", &redact_url_password(&self.nats_url))
            .field("nats_creds", &self.nats_creds)
            .field(
                "nats_user",
                &self.nats_user.as_ref().map(|(u, _)| (u, "***")),
            )
            .field("nats_inbox_prefix", &self.nats_inbox_prefix)
            .field("nats_tls", &self.nats_tls)
            .field("namespace", &self.namespace)
            .field("http_addr", &self.http_addr)
            .field("log_format", &self.log_format)
            .field("streams", &self.streams)
            .field("egress", &self.egress)
            .field("mode", &self.mode)
            .finish()
    }
}

/// `postgres://user:pw@host/db` → `postgres://user:***@host/db`; any URL whose userinfo has a
/// password, and also `password=` query/keyword parameters.
pub fn redact_url_password(url: &str) -> String {
    let mut out = match url.split_once("://") {
        Some((scheme, rest)) => {
            let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
            let (authority, tail) = rest.split_at(authority_end);
            match authority.rsplit_once('@') {
                Some((userinfo, host)) => {
                    let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
                    let masked = if userinfo.contains(':') {
                        format!("{user}:***")
                    } else {
                        user.to_owned()
                    };
                    format!("{scheme}://{masked}@{host}{tail}")
                }
                None => url.to_owned(),
            }
        }
        None => url.to_owned(),
    };
    if let Some(i) = out.to_ascii_lowercase().find("password=") {
        let start = i + "password=".len();
        let end = out[start..]
            .find(['&', ' '])
            .map_or(out.len(), |e| start + e);
        out.replace_range(start..end, "***");
    }
    out
}

impl Default for StreamSettings {
    fn default() -> Self {
        StreamSettings {
            replicas: 1,
            bookings_max_age: Duration::from_secs(7 * 24 * 3600),
            duplicate_window: Duration::from_secs(10 * 60),
            dlq_max_age: Duration::from_secs(30 * 24 * 3600),
            dlq_max_bytes: -1,
            file_storage: true,
        }
    }
}

/// TLS towards NATS, for when NATS traffic leaves the network the deployment trusts
/// (docs/security.md "Transport"). A `tls://` URL alone verifies the server against the
/// system roots; a private CA and client certificates (servers with `verify: true`) come from
/// files, which the chart mounts from Secrets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NatsTls {
    /// PEM bundle the server's certificate must chain to, instead of the system roots
    /// (`ACCESSHUB_NATS_CA`).
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate and its key (`ACCESSHUB_NATS_CLIENT_CERT`,
    /// `ACCESSHUB_NATS_CLIENT_KEY`: both or neither).
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

impl NatsTls {
    /// Whether any TLS setting is given: the client then refuses a server that does not speak
    /// TLS, rather than sending the NATS password in the clear.
    pub fn is_configured(&self) -> bool {
        self.ca_file.is_some() || self.client_cert.is_some()
    }

    /// From `ACCESSHUB_NATS_CA`, `ACCESSHUB_NATS_CLIENT_CERT` and `ACCESSHUB_NATS_CLIENT_KEY`.
    /// Each file must be readable now, so a missing Secret mount stops the service at start-up
    /// with the variable's name instead of a reconnect loop.
    pub fn from_env() -> Result<NatsTls, ConfigError> {
        Self::from_values(
            env_opt("ACCESSHUB_NATS_CA"),
            env_opt("ACCESSHUB_NATS_CLIENT_CERT"),
            env_opt("ACCESSHUB_NATS_CLIENT_KEY"),
        )
    }

    /// The rules of [`NatsTls::from_env`] over given values.
    pub fn from_values(
        ca: Option<String>,
        cert: Option<String>,
        key: Option<String>,
    ) -> Result<NatsTls, ConfigError> {
        let file = |name: &'static str, v: String| -> Result<PathBuf, ConfigError> {
            let path = PathBuf::from(v.trim());
            std::fs::File::open(&path).map_err(|e| ConfigError::Invalid {
                name,
                value: v.clone(),
                problem: format!("cannot read the file: {e}"),
            })?;
            Ok(path)
        };
        let ca_file = ca.map(|v| file("ACCESSHUB_NATS_CA", v)).transpose()?;
        let client_cert = match (cert, key) {
            (Some(c), Some(k)) => Some((
                file("ACCESSHUB_NATS_CLIENT_CERT", c)?,
                file("ACCESSHUB_NATS_CLIENT_KEY", k)?,
            )),
            (None, None) => None,
            (Some(c), None) => {
                return Err(ConfigError::Invalid {
                    name: "ACCESSHUB_NATS_CLIENT_CERT",
                    value: c,
                    problem: "set ACCESSHUB_NATS_CLIENT_KEY too (a certificate needs its key)"
                        .into(),
                });
            }
            (None, Some(_)) => {
                return Err(ConfigError::Invalid {
                    name: "ACCESSHUB_NATS_CLIENT_KEY",
                    // A key's path is not secret, but say nothing more about it than needed.
                    value: String::new(),
                    problem: "set ACCESSHUB_NATS_CLIENT_CERT too (a key needs its certificate)"
                        .into(),
                });
            }
        };
        Ok(NatsTls {
            ca_file,
            client_cert,
        })
    }
}

/// What every service needs: where NATS and Postgres are, where to listen, how to log.
/// Debug hides the NATS password and the database URL's password (security review L6).
#[derive(Clone)]
pub struct CommonConfig {
    /// Service name, for logs, traces and metrics.
    pub service: String,
    /// PostgreSQL URL (`DATABASE_URL`).
    pub database_url: String,
    /// NATS URL (`NATS_URL`).
    pub nats_url: String,
    /// Path to a NATS credentials file (`NATS_CREDS`).
    pub nats_creds: Option<String>,
    /// NATS user/password (`NATS_USER`, `NATS_PASSWORD`).
    pub nats_user: Option<(String, String)>,
    /// Reply-inbox prefix (`NATS_INBOX_PREFIX`; default `_INBOX.<NATS_USER>` when a user is
    /// set, else the client's `_INBOX`). Each identity may subscribe to its own inbox only, so
    /// no service can read the replies (PubAcks, lookups, ingest answers) meant for another.
    pub nats_inbox_prefix: Option<String>,
    /// TLS towards NATS (CA and client certificate files).
    pub nats_tls: NatsTls,
    /// Prefix for every subject and stream, so tests and tenants of a shared NATS stay apart
    /// (`ACCESSHUB_NAMESPACE`; empty in production).
    pub namespace: String,
    /// Address of the HTTP server (health, readiness, metrics, APIs).
    pub http_addr: SocketAddr,
    /// Log shape.
    pub log_format: LogFormat,
    /// Stream settings.
    pub streams: StreamSettings,
    /// Where vendor traffic may go (`ACCESSHUB_EGRESS_ALLOW`, comma-separated
    /// `SCHEME://HOST[:PORT]` exceptions; empty = strict: https to public addresses only).
    /// Checked when a connection is stored and when a worker connects.
    pub egress: EgressPolicy,
    /// `ACCESSHUB_MODE`. Besides local defaults it decides who owns the streams: in
    /// production only `accessctl streams apply` (the release's hook Job) creates or changes
    /// them and services only check them; in dev mode a service creates missing streams itself.
    pub mode: Mode,
}

impl CommonConfig {
    /// Loads from the environment. `DATABASE_URL` is required unless `ACCESSHUB_MODE=dev`
    /// (then the local test database); everything else has a default.
    pub fn from_env(service: &str) -> Result<Self, ConfigError> {
        let nats_user = match (env_opt("NATS_USER"), env_opt("NATS_PASSWORD")) {
            (Some(u), Some(p)) => Some((u, p)),
            _ => None,
        };
        let nats_inbox_prefix = env_opt("NATS_INBOX_PREFIX").or_else(|| {
            nats_user
                .as_ref()
                .map(|(u, _)| format!("_INBOX.{}", accesshub_domain::subjects::token(u)))
        });
        let defaults = StreamSettings::default();
        Ok(CommonConfig {
            service: service.to_owned(),
            database_url: database_url()?,
            nats_url: env_or("NATS_URL", "nats://127.0.0.1:4222".to_owned())?,
            nats_creds: env_opt("NATS_CREDS"),
            nats_user,
            nats_inbox_prefix,
            nats_tls: NatsTls::from_env()?,
            namespace: env_or("ACCESSHUB_NAMESPACE", String::new())?,
            http_addr: env_or(
                "ACCESSHUB_HTTP_ADDR",
                SocketAddr::from(([0, 0, 0, 0], 8080)),
            )?,
            log_format: env_or("ACCESSHUB_LOG_FORMAT", LogFormat::Json)?,
            streams: StreamSettings {
                replicas: env_or("ACCESSHUB_STREAM_REPLICAS", defaults.replicas)?,
                bookings_max_age: env_duration(
                    "ACCESSHUB_BOOKINGS_MAX_AGE",
                    defaults.bookings_max_age,
                )?,
                duplicate_window: env_duration(
                    "ACCESSHUB_DUPLICATE_WINDOW",
                    defaults.duplicate_window,
                )?,
                dlq_max_age: env_duration("ACCESSHUB_DLQ_MAX_AGE", defaults.dlq_max_age)?,
                dlq_max_bytes: env_or("ACCESSHUB_DLQ_MAX_BYTES", defaults.dlq_max_bytes)?,
                file_storage: env_or("ACCESSHUB_STREAM_FILE_STORAGE", true)?,
            },
            egress: env_or("ACCESSHUB_EGRESS_ALLOW", EgressPolicy::strict())?,
            mode: Mode::from_env()?,
        })
    }

    /// Switches to another NATS identity when both variables are set: accessctl's DLQ role
    /// (`ACCESSCTL_NATS_USER`/`ACCESSCTL_NATS_PASSWORD`) is not the identity of the pod it
    /// runs in, so a reconciler's credentials never grant DLQ replays and the reverse.
    pub fn use_nats_identity_from(&mut self, user_var: &'static str, password_var: &'static str) {
        if let (Some(u), Some(p)) = (env_opt(user_var), env_opt(password_var)) {
            self.nats_inbox_prefix =
                Some(format!("_INBOX.{}", accesshub_domain::subjects::token(&u)));
            self.nats_user = Some((u, p));
            self.nats_creds = None;
        }
    }

    /// Defaults for a test: local services, a given namespace, ephemeral port.
    pub fn for_test(service: &str, namespace: &str, database_url: &str) -> Self {
        CommonConfig {
            service: service.to_owned(),
            database_url: database_url.to_owned(),
            nats_url: std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into()),
            nats_creds: None,
            nats_user: None,
            nats_inbox_prefix: None,
            nats_tls: NatsTls::default(),
            namespace: namespace.to_owned(),
            http_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            log_format: LogFormat::Pretty,
            streams: StreamSettings {
                bookings_max_age: Duration::from_secs(3600),
                dlq_max_age: Duration::from_secs(3600),
                duplicate_window: Duration::from_secs(120),
                file_storage: false,
                ..StreamSettings::default()
            },
            // The vendor simulators listen on loopback over plain http.
            egress: EgressPolicy::loopback_http(),
            // Tests create their streams as `make dev` does.
            mode: Mode::Dev,
        }
    }
}

#[cfg(test)]
mod redaction_tests {
    use super::*;

    /// Security review L6: the config's Debug must not print passwords.
    #[test]
    fn common_config_debug_hides_passwords() {
        let mut cfg = CommonConfig::for_test("svc", "ns", "postgres://u:pw-s3cr3t@h:5432/db");
        cfg.nats_user = Some(("svc".into(), "nats-s3cr3t".into()));
        cfg.nats_url = "nats://n:natsurl-s3cr3t@127.0.0.1:4222".into();
        let s = format!("{cfg:?}");
        for secret in ["pw-s3cr3t", "nats-s3cr3t", "natsurl-s3cr3t"] {
            assert!(!s.contains(secret), "{secret} in {s}");
        }
        assert!(s.contains("postgres://u:***@h:5432/db"), "{s}");
        assert_eq!(
            redact_url_password("postgres://h/db?user=u&password=x1&sslmode=require"),
            "postgres://h/db?user=u&password=***&sslmode=require"
        );
        assert_eq!(
            redact_url_password("nats://127.0.0.1:4222"),
            "nats://127.0.0.1:4222"
        );
    }
}

#[cfg(test)]
mod mode_tests {
    use super::*;

    /// Issue 24: production (the default) stops on a missing or empty required setting,
    /// naming it; only dev mode falls back to local defaults.
    #[test]
    fn production_requires_dev_defaults() {
        assert_eq!(Mode::default(), Mode::Production);
        for value in [None, Some(String::new()), Some("  ".to_owned())] {
            let err = required_unless_dev("DATABASE_URL", value.clone(), Mode::Production)
                .unwrap_err()
                .to_string();
            assert!(err.contains("DATABASE_URL"), "{err}");
            assert!(err.contains("ACCESSHUB_MODE=dev"), "{err}");
            assert_eq!(
                required_unless_dev("DATABASE_URL", value, Mode::Dev).unwrap(),
                None
            );
        }
        assert_eq!(
            required_unless_dev("X", Some(" v ".into()), Mode::Production).unwrap(),
            Some("v".to_owned())
        );
        assert_eq!("dev".parse::<Mode>(), Ok(Mode::Dev));
        assert_eq!("production".parse::<Mode>(), Ok(Mode::Production));
        assert!("staging".parse::<Mode>().is_err());
    }
}

#[cfg(test)]
mod nats_tls_tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A certificate without its key, or a file the pod cannot read, stops the service at
    /// start-up naming the variable (not a reconnect loop against a TLS server).
    #[test]
    fn nats_tls_settings_are_checked_at_start_up() {
        let dir = std::env::temp_dir().join(format!("nats-tls-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pem = dir.join("ca.pem");
        std::fs::write(&pem, "x").unwrap();
        let p = pem.display().to_string();

        assert_eq!(
            NatsTls::from_values(None, None, None).unwrap(),
            NatsTls::default()
        );
        assert!(!NatsTls::default().is_configured());
        let tls = NatsTls::from_values(Some(p.clone()), Some(p.clone()), Some(p.clone())).unwrap();
        assert!(tls.is_configured());
        assert_eq!(tls.ca_file.as_deref(), Some(pem.as_path()));

        let missing = dir.join("absent.pem").display().to_string();
        let e = NatsTls::from_values(Some(missing), None, None).unwrap_err();
        assert!(e.to_string().contains("ACCESSHUB_NATS_CA"), "{e}");
        let e = NatsTls::from_values(None, Some(p.clone()), None).unwrap_err();
        assert!(e.to_string().contains("ACCESSHUB_NATS_CLIENT_KEY"), "{e}");
        let e = NatsTls::from_values(None, None, Some(p)).unwrap_err();
        assert!(e.to_string().contains("ACCESSHUB_NATS_CLIENT_CERT"), "{e}");
    }
}
