//! NATS identities of accesshub (security review H1, ARCHITECTURE.md principle 10).
//!
//! The permission set is written once, as data, in `deploy/nats/permissions.yaml` (compiled in
//! here), and rendered from there into every place that needs it: the nats-server
//! configuration of `make dev` and of the e2e tests ([`server_config`]) and the values of the
//! official NATS chart ([`helm_values`], committed as `deploy/nats/values-nats.yaml`). The
//! accesshub chart gives each service the user of the same name.

pub mod edge;

use std::collections::BTreeMap;
use std::fmt::Write as _;

use accesshub_domain::subjects::{self, Namespace};
use serde::Deserialize;

/// The permission data, as committed.
pub const PERMISSIONS_YAML: &str = include_str!("../../../deploy/nats/permissions.yaml");

/// The permission data cannot be used; a bug in the data or in the operator's arguments, so
/// never worth retrying.
#[derive(Debug, thiserror::Error)]
pub enum NatsAuthError {
    /// permissions.yaml does not parse.
    #[error("deploy/nats/permissions.yaml: {0}")]
    Parse(String),
    /// An identity names a group that does not exist.
    #[error("identity {identity}: unknown group {group}")]
    UnknownGroup {
        /// Identity.
        identity: String,
        /// Group named.
        group: String,
    },
    /// A subject still has a `{placeholder}` after rendering (missing var).
    #[error("identity {identity}: unresolved placeholder in {subject:?}")]
    Unresolved {
        /// Identity.
        identity: String,
        /// The subject as rendered so far.
        subject: String,
    },
    /// An upstream binding is malformed (`USER:TENANT[:SOURCE]`).
    #[error("upstream {0:?}: expected USER:TENANT[:SOURCE]")]
    BadUpstream(String),
    /// An edge binding is malformed (`USER:TENANT:SITE`).
    #[error("edge {0:?}: expected USER:TENANT:SITE")]
    BadEdge(String),
    /// A password is missing for a user.
    #[error("no password for NATS user {0}")]
    MissingPassword(String),
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Rules {
    #[serde(default)]
    publish: Vec<String>,
    #[serde(default)]
    subscribe: Vec<String>,
    #[serde(default)]
    allow_responses: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct IdentitySpec {
    #[serde(default)]
    description: String,
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default)]
    vars: BTreeMap<String, String>,
    #[serde(default)]
    publish: Vec<String>,
    #[serde(default)]
    subscribe: Vec<String>,
    #[serde(default)]
    allow_responses: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Spec {
    groups: BTreeMap<String, Rules>,
    identities: BTreeMap<String, IdentitySpec>,
    upstream: Rules,
    /// A hotel's leaf-node user ([`edge`]).
    #[serde(default)]
    edge: Rules,
}

/// What one identity may do, with every placeholder filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permissions {
    /// Subjects it may publish to.
    pub publish: Vec<String>,
    /// Subjects it may subscribe to.
    pub subscribe: Vec<String>,
    /// Whether it may answer requests (publish once to the reply subject of a message it got).
    pub allow_responses: bool,
}

/// One NATS user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// User name (the service's name for services).
    pub user: String,
    /// Why it exists (comment in generated files).
    pub description: String,
    /// Its permissions.
    pub permissions: Permissions,
}

/// An upstream booking system bound to one tenant (and optionally one source).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamBinding {
    /// NATS user name.
    pub user: String,
    /// The tenant it may ingest for.
    pub tenant: String,
    /// The source it may ingest as (`None`: any source of that tenant).
    pub source: Option<String>,
}

impl std::str::FromStr for UpstreamBinding {
    type Err = NatsAuthError;
    /// `USER:TENANT` or `USER:TENANT:SOURCE`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.split(':').collect();
        match parts.as_slice() {
            [u, t] if !u.is_empty() && !t.is_empty() => Ok(UpstreamBinding {
                user: (*u).to_owned(),
                tenant: (*t).to_owned(),
                source: None,
            }),
            [u, t, src] if !u.is_empty() && !t.is_empty() && !src.is_empty() => {
                Ok(UpstreamBinding {
                    user: (*u).to_owned(),
                    tenant: (*t).to_owned(),
                    source: Some((*src).to_owned()),
                })
            }
            _ => Err(NatsAuthError::BadUpstream(s.to_owned())),
        }
    }
}

/// The reply-inbox prefix of `user` (`NATS_INBOX_PREFIX`): its identity may subscribe to
/// `<prefix>.>` and nothing else under `_INBOX`, so it cannot read other identities' replies.
pub fn inbox_prefix(user: &str) -> String {
    format!("_INBOX.{}", subjects::token(user))
}

pub(crate) fn spec() -> Result<Spec, NatsAuthError> {
    yaml_serde::from_str(PERMISSIONS_YAML).map_err(|e| NatsAuthError::Parse(e.to_string()))
}

/// Fills `{ns}`, `{NS}`, `{user}` and `vars` into `subject`.
fn render(
    identity: &str,
    subject: &str,
    ns: &Namespace,
    vars: &BTreeMap<String, String>,
) -> Result<String, NatsAuthError> {
    let mut out = subject
        .replace("{ns}", &ns.subject(""))
        .replace("{NS}", &ns.stream(""))
        .replace("{user}", &subjects::token(identity));
    for (k, v) in vars {
        out = out.replace(&format!("{{{k}}}"), v);
    }
    if out.contains('{') || out.contains('}') {
        return Err(NatsAuthError::Unresolved {
            identity: identity.to_owned(),
            subject: out,
        });
    }
    Ok(out)
}

pub(crate) fn render_all(
    identity: &str,
    subjects: &[String],
    ns: &Namespace,
    vars: &BTreeMap<String, String>,
    into: &mut Vec<String>,
) -> Result<(), NatsAuthError> {
    for s in subjects {
        let r = render(identity, s, ns, vars)?;
        if !into.contains(&r) {
            into.push(r);
        }
    }
    Ok(())
}

/// Every service identity (plus the operator's `accessctl-dlq`), for `namespace` (empty in
/// production; the e2e tests isolate themselves with one).
pub fn identities(namespace: &str) -> Result<Vec<Identity>, NatsAuthError> {
    let spec = spec()?;
    let ns = Namespace::new(namespace);
    let mut out = Vec::new();
    for (user, id) in &spec.identities {
        let mut perms = Permissions {
            publish: Vec::new(),
            subscribe: Vec::new(),
            allow_responses: id.allow_responses,
        };
        for g in &id.groups {
            let rules = spec
                .groups
                .get(g)
                .ok_or_else(|| NatsAuthError::UnknownGroup {
                    identity: user.clone(),
                    group: g.clone(),
                })?;
            render_all(user, &rules.publish, &ns, &id.vars, &mut perms.publish)?;
            render_all(user, &rules.subscribe, &ns, &id.vars, &mut perms.subscribe)?;
            perms.allow_responses |= rules.allow_responses;
        }
        render_all(user, &id.publish, &ns, &id.vars, &mut perms.publish)?;
        render_all(user, &id.subscribe, &ns, &id.vars, &mut perms.subscribe)?;
        out.push(Identity {
            user: user.clone(),
            description: id.description.trim().to_owned(),
            permissions: perms,
        });
    }
    Ok(out)
}

/// The identity of an upstream bound to one tenant: it may request
/// `ingest.<source>.<tenant>` of that tenant only.
pub fn upstream_identity(b: &UpstreamBinding, namespace: &str) -> Result<Identity, NatsAuthError> {
    let spec = spec()?;
    let ns = Namespace::new(namespace);
    let vars = BTreeMap::from([
        ("tenant".to_owned(), subjects::token(&b.tenant)),
        (
            "source".to_owned(),
            b.source.as_deref().map_or("*".to_owned(), subjects::token),
        ),
    ]);
    let perms = bound_permissions(&b.user, &spec.upstream, &ns, &vars)?;
    Ok(Identity {
        user: b.user.clone(),
        description: format!(
            "upstream bound to tenant {} (source {})",
            b.tenant,
            b.source.as_deref().unwrap_or("any")
        ),
        permissions: perms,
    })
}

/// The permissions of an identity bound by `vars` (an upstream's tenant, a hotel's site).
pub(crate) fn bound_permissions(
    user: &str,
    rules: &Rules,
    ns: &Namespace,
    vars: &BTreeMap<String, String>,
) -> Result<Permissions, NatsAuthError> {
    let mut perms = Permissions {
        publish: Vec::new(),
        subscribe: Vec::new(),
        allow_responses: rules.allow_responses,
    };
    render_all(user, &rules.publish, ns, vars, &mut perms.publish)?;
    render_all(user, &rules.subscribe, ns, vars, &mut perms.subscribe)?;
    Ok(perms)
}

/// TLS for the client port (optional; `tls://` URLs on the client side).
#[derive(Debug, Clone, Default)]
pub struct Tls {
    /// Server certificate (PEM).
    pub cert_file: String,
    /// Its key (PEM).
    pub key_file: String,
    /// CA to verify client certificates with (`verify: true`) when set.
    pub ca_file: Option<String>,
}

/// Where and how the generated nats-server listens.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// `host:port` of the client listener.
    pub listen: String,
    /// JetStream store directory.
    pub store_dir: String,
    /// Optional TLS.
    pub tls: Option<Tls>,
}

pub(crate) fn q(s: &str) -> String {
    // JSON strings are valid nats-server config strings; quoted values are never `$VAR`-expanded.
    serde_json::Value::String(s.to_owned()).to_string()
}

pub(crate) fn list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| q(s)).collect();
    format!("[{}]", quoted.join(", "))
}

/// A complete nats-server configuration (JetStream, authorization with one user per identity)
/// for `make dev` and the e2e tests. `password` gives each user's password.
pub fn server_config(
    ids: &[Identity],
    password: impl Fn(&str) -> Option<String>,
    opts: &ServerOptions,
) -> Result<String, NatsAuthError> {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Generated by accesshub-nats-config from deploy/nats/permissions.yaml: do not edit."
    );
    let _ = writeln!(out, "listen: {}", q(&opts.listen));
    let _ = writeln!(out, "jetstream {{\n  store_dir: {}\n}}", q(&opts.store_dir));
    if let Some(tls) = &opts.tls {
        let _ = writeln!(out, "tls {{");
        let _ = writeln!(out, "  cert_file: {}", q(&tls.cert_file));
        let _ = writeln!(out, "  key_file: {}", q(&tls.key_file));
        if let Some(ca) = &tls.ca_file {
            let _ = writeln!(out, "  ca_file: {}\n  verify: true", q(ca));
        }
        let _ = writeln!(out, "}}");
    }
    let _ = writeln!(out, "authorization {{\n  users = [");
    for id in ids {
        let pw =
            password(&id.user).ok_or_else(|| NatsAuthError::MissingPassword(id.user.clone()))?;
        let p = &id.permissions;
        // An empty allow list would mean "no restriction": deny everything instead.
        let sub = if p.subscribe.is_empty() {
            "{deny: [\">\"]}".to_owned()
        } else {
            format!("{{allow: {}}}", list(&p.subscribe))
        };
        let publ = if p.publish.is_empty() {
            "{deny: [\">\"]}".to_owned()
        } else {
            format!("{{allow: {}}}", list(&p.publish))
        };
        let _ = writeln!(out, "    # {}", id.description.replace('\n', " "));
        let _ = writeln!(
            out,
            "    {{user: {}, password: {}, permissions: {{publish: {publ}, subscribe: {sub}{}}}}}",
            q(&id.user),
            q(&pw),
            if p.allow_responses {
                ", allow_responses: true"
            } else {
                ""
            }
        );
    }
    let _ = writeln!(out, "  ]\n}}");
    Ok(out)
}

/// Environment variable of the NATS container holding `user`'s password (values-nats.yaml).
pub fn password_env(user: &str) -> String {
    let mut s: String = user
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    s.insert_str(0, "NATS_PW_");
    s
}

const HELM_HEADER: &str = include_str!("values-nats.head.yaml");
const HELM_TAIL: &str = include_str!("values-nats.tail.yaml");

/// Secret (in the NATS namespace) holding the service passwords, key = user name.
pub const SERVICES_SECRET: &str = "accesshub-nats-users";
/// Secret (in the NATS namespace) holding upstream passwords, key = user name.
pub const UPSTREAMS_SECRET: &str = "accesshub-nats-upstreams";

/// `deploy/nats/values-nats.yaml` for the official NATS chart: the durable JetStream settings
/// plus account ACCESSHUB with one user per identity, passwords from the Secrets above.
pub fn helm_values(ids: &[Identity], upstreams: &[Identity]) -> String {
    let mut out = String::from(HELM_HEADER);
    out.push_str(
        "  merge:\n    accounts:\n      ACCESSHUB:\n        jetstream: enabled\n        users:\n",
    );
    let all = ids
        .iter()
        .map(|i| (i, SERVICES_SECRET))
        .chain(upstreams.iter().map(|i| (i, UPSTREAMS_SECRET)));
    let mut env = String::new();
    for (id, secret) in all {
        let p = &id.permissions;
        let _ = writeln!(out, "          # {}", id.description.replace('\n', " "));
        let _ = writeln!(out, "          - user: {}", q(&id.user));
        let _ = writeln!(
            out,
            "            password: << ${} >>",
            password_env(&id.user)
        );
        let _ = writeln!(out, "            permissions:");
        let _ = writeln!(
            out,
            "              publish:\n                allow: {}",
            list(&p.publish)
        );
        let _ = writeln!(
            out,
            "              subscribe:\n                allow: {}",
            list(&p.subscribe)
        );
        if p.allow_responses {
            let _ = writeln!(out, "              allow_responses: true");
        }
        let _ = writeln!(
            env,
            "    {}:\n      valueFrom:\n        secretKeyRef:\n          name: {secret}\n          key: {}",
            password_env(&id.user),
            q(&id.user)
        );
    }
    out.push_str("\ncontainer:\n  env:\n");
    out.push_str(&env);
    out.push_str(HELM_TAIL);
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn every_identity_renders_without_placeholders() {
        for ns in ["", "e2eabc"] {
            let ids = identities(ns).unwrap();
            let names: Vec<&str> = ids.iter().map(|i| i.user.as_str()).collect();
            assert_eq!(
                names,
                [
                    "accessctl-dlq",
                    "accesshub-admin",
                    "accesshub-streams",
                    "booking-ingest",
                    "cloudpass-worker",
                    "dormakaba-worker",
                    "ipassan-worker",
                    "reconciler",
                    "tapkey-worker"
                ]
            );
            for id in &ids {
                assert!(!id.permissions.subscribe.is_empty(), "{}", id.user);
                for s in id
                    .permissions
                    .publish
                    .iter()
                    .chain(&id.permissions.subscribe)
                {
                    assert!(!s.contains('{'), "{s}");
                    // No identity may publish or subscribe to everything.
                    assert!(s != ">" && !s.starts_with("_INBOX.>"), "{}: {s}", id.user);
                }
            }
        }
    }

    #[test]
    fn least_privilege_where_the_review_asked() {
        let ids = identities("").unwrap();
        let by = |u: &str| {
            ids.iter()
                .find(|i| i.user == u)
                .unwrap()
                .permissions
                .clone()
        };
        let ingest = by("booking-ingest");
        assert!(ingest.publish.contains(&"bookings.>".to_owned()));
        assert!(!ingest.publish.iter().any(|s| s.starts_with("sync.")));
        let tapkey = by("tapkey-worker");
        // Its own vendor's repair feed only (parked events published again when a
        // connection's circuit breaker closes), never bookings or another vendor's repairs.
        assert!(!tapkey.publish.iter().any(|s| s.starts_with("bookings.")));
        let sync: Vec<&String> = tapkey
            .publish
            .iter()
            .filter(|s| s.starts_with("sync."))
            .collect();
        assert_eq!(sync, vec!["sync.tapkey.>"]);
        assert!(tapkey.publish.contains(
            &"$JS.API.CONSUMER.CREATE.BOOKINGS.tapkey-worker.bookings.pass.>".to_owned()
        ));
        assert!(
            tapkey
                .subscribe
                .contains(&"_INBOX.tapkey-worker.>".to_owned())
        );
        let rec = by("reconciler");
        assert!(rec.publish.contains(&"sync.>".to_owned()));
        assert!(!rec.publish.iter().any(|s| s.starts_with("bookings.")));
        let ns = identities("e2ex").unwrap();
        let t = ns.iter().find(|i| i.user == "tapkey-worker").unwrap();
        assert!(
            t.permissions.publish.contains(
                &"$JS.API.CONSUMER.CREATE.E2EX_BOOKINGS.E2EX_tapkey-worker.e2ex.bookings.pass.>"
                    .to_owned()
            )
        );
    }

    /// Issue 23: streams are created and changed in one place only. No service identity may
    /// create or update a stream (a compromised pod could change its limits); each may read
    /// stream info (the start-up check). The streams identity may, and nothing else.
    #[test]
    fn only_the_streams_identity_creates_or_updates_streams() {
        let ids = identities("").unwrap();
        let changes = |s: &String| {
            s.starts_with("$JS.API.STREAM.CREATE.") || s.starts_with("$JS.API.STREAM.UPDATE.")
        };
        for id in &ids {
            let p = &id.permissions.publish;
            if id.user == "accesshub-streams" {
                for stream in ["BOOKINGS", "DLQ", "RESULTS", "SYNC"] {
                    for op in ["INFO", "CREATE", "UPDATE"] {
                        let s = format!("$JS.API.STREAM.{op}.{stream}");
                        assert!(p.contains(&s), "{s}");
                    }
                }
                assert!(p.iter().all(|s| s.starts_with("$JS.API.STREAM.")), "{p:?}");
                continue;
            }
            assert!(
                !p.iter().any(changes),
                "{} may change streams: {p:?}",
                id.user
            );
            if id.user.ends_with("-worker")
                || ["booking-ingest", "reconciler"].contains(&id.user.as_str())
            {
                assert!(
                    p.contains(&"$JS.API.STREAM.INFO.BOOKINGS".to_owned()),
                    "{}: no stream info for the start-up check",
                    id.user
                );
            }
        }
    }

    #[test]
    fn upstream_is_bound_to_its_tenant() {
        let b: UpstreamBinding = "acme-pms:acme".parse().unwrap();
        let id = upstream_identity(&b, "").unwrap();
        assert_eq!(id.permissions.publish, ["ingest.*.acme"]);
        assert_eq!(id.permissions.subscribe, ["_INBOX.acme-pms.>"]);
        let b: UpstreamBinding = "x:a.b:native".parse().unwrap();
        let id = upstream_identity(&b, "").unwrap();
        assert_eq!(id.permissions.publish, ["ingest.native.a%2Eb"]);
        assert!("nope".parse::<UpstreamBinding>().is_err());
    }

    /// The committed deploy/nats/values-nats.yaml is what the generator writes today
    /// (regenerate with `make nats-config`).
    #[test]
    fn committed_helm_values_are_current() {
        let committed = include_str!("../../../deploy/nats/values-nats.yaml");
        let fresh = helm_values(&identities("").unwrap(), &[]);
        assert!(
            committed == fresh,
            "deploy/nats/values-nats.yaml is stale: run `make nats-config`"
        );
    }
}
