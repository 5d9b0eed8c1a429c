//! `accessctl connections get/list/apply -f FILE/delete`, and the admin API client shared by
//! `tenants` and `lookup`.
//!
//! Files are kubectl-style YAML, several documents per file:
//! ```yaml
//! apiVersion: accesshub/v1
//! kind: Connection
//! metadata: { tenant: acme, name: default }   # name defaults to "default"
//! spec:                                       # the vendor settings, plus optional
//!   vendor: cloudpass                         #   `enabled` and `sites`
//!   client_secret: ${CLOUDPASS_SECRET}        # ${VAR} is read from the environment
//!   ...
//! ```
//! `kind: Tenant` documents (`metadata: {name: acme}`, `spec: {name: "Acme Hotels"}`) create
//! or rename tenants first. Apply is idempotent; `--dry-run` prints the diff.

use std::collections::BTreeMap;

use accesshub_admin::ApplyResponse;
use accesshub_connections::{ApplyStatus, Connection, Vendor, VendorSettings, diff};
use anyhow::{Context as _, anyhow, bail};
use clap::Subcommand;
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use yaml_serde::Value;

use crate::output::{self, Format};

/// Default admin API base URL.
pub const DEFAULT_API_URL: &str = "http://127.0.0.1:8086/admin/v1";

/// A client of the admin API (`ACCESSHUB_API_URL`, `ACCESSHUB_TOKEN`).
#[derive(Clone)]
pub struct ApiClient {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl std::fmt::Debug for ApiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiClient")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl ApiClient {
    /// A client for `base` (e.g. `http://127.0.0.1:8086/admin/v1`) with a bearer token.
    pub fn new(base: &str, token: &str) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(60))
            .build()?;
        Ok(ApiClient {
            base: base.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
            http,
        })
    }

    /// From `ACCESSHUB_API_URL` (default [`DEFAULT_API_URL`]) and `ACCESSHUB_TOKEN`.
    pub fn from_env() -> anyhow::Result<Self> {
        let base = std::env::var("ACCESSHUB_API_URL").unwrap_or_else(|_| DEFAULT_API_URL.into());
        let token = std::env::var("ACCESSHUB_TOKEN")
            .map_err(|_| anyhow!("ACCESSHUB_TOKEN is not set (an admin API bearer token)"))?;
        Self::new(&base, &token)
    }

    /// Sends a request and decodes the JSON answer (`None` for 204/404 when `allow_404`).
    pub(crate) async fn send<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(String, String)],
        body: Option<&serde_json::Value>,
        allow_404: bool,
    ) -> anyhow::Result<Option<T>> {
        let url = format!("{}{path}", self.base);
        let mut req = self
            .http
            .request(method.clone(), &url)
            .bearer_auth(&self.token)
            .query(query);
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("admin API not reachable at {}", self.base))?;
        let status = resp.status();
        if status == reqwest::StatusCode::NO_CONTENT || (allow_404 && status.as_u16() == 404) {
            return Ok(None);
        }
        let bytes = resp.bytes().await?;
        if status.is_success() {
            return Ok(Some(serde_json::from_slice(&bytes).with_context(|| {
                format!("unexpected answer from {method} {path}")
            })?));
        }
        let hint = match status.as_u16() {
            401 => " (check the token: --token, ACCESSHUB_TOKEN or the context's)",
            403 => " (the token's role or tenants do not allow this; `accessctl tokens whoami`)",
            _ => "",
        };
        bail!(
            "{method} {path} failed ({status}){hint}: {}",
            problem_text(&bytes)
        )
    }

    /// GET returning `None` on 404.
    pub async fn get_opt<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(String, String)],
    ) -> anyhow::Result<Option<T>> {
        self.send(reqwest::Method::GET, path, query, None, true)
            .await
    }

    /// GET.
    pub async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(String, String)],
    ) -> anyhow::Result<T> {
        self.send(reqwest::Method::GET, path, query, None, false)
            .await?
            .ok_or_else(|| anyhow!("empty answer from GET {path}"))
    }

    /// Any write with a JSON body.
    pub async fn write<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(String, String)],
        body: &serde_json::Value,
    ) -> anyhow::Result<T> {
        self.send(method.clone(), path, query, Some(body), false)
            .await?
            .ok_or_else(|| anyhow!("empty answer from {method} {path}"))
    }

    /// DELETE; `false` when it did not exist.
    pub async fn delete(&self, path: &str) -> anyhow::Result<bool> {
        let url = format!("{}{path}", self.base);
        let resp = self
            .http
            .delete(&url)
            .bearer_auth(&self.token)
            .send()
            .await
            .with_context(|| format!("admin API not reachable at {}", self.base))?;
        match resp.status().as_u16() {
            200..=299 => Ok(true),
            404 => Ok(false),
            _ => {
                let status = resp.status();
                let bytes = resp.bytes().await.unwrap_or_default();
                bail!("DELETE {path} failed ({status}): {}", problem_text(&bytes))
            }
        }
    }
}

/// What an error answer says: the RFC 9457 problem's detail and every field at fault, or the
/// body as text when it is not a problem document.
fn problem_text(body: &[u8]) -> String {
    match serde_json::from_slice::<accesshub_admin::Problem>(body) {
        Ok(p) => p.describe(),
        Err(_) => String::from_utf8_lossy(body).into_owned(),
    }
}

/// Percent-encodes one path segment.
pub fn seg(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `accessctl connections …`
#[derive(Debug, Subcommand)]
pub enum ConnectionsCommand {
    /// List connections (secrets shown as ***).
    List {
        /// Only this tenant.
        #[arg(long)]
        tenant: Option<String>,
        /// Only this vendor.
        #[arg(long)]
        vendor: Option<Vendor>,
    },
    /// Show one connection (as an apply-able document with `-o yaml`).
    Get {
        /// Tenant id.
        tenant: String,
        /// Vendor.
        vendor: Vendor,
        /// Connection name.
        #[arg(default_value = "default")]
        name: String,
    },
    /// Create or update connections (and tenants) from a YAML file; `-` reads stdin.
    Apply {
        /// File with one or more documents.
        #[arg(short = 'f', long = "filename")]
        file: String,
        /// Show what would change without writing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Delete a connection. Refused while bookings hold access through it, unless
    /// --remove-access (remove it first) or --keep-access (leave it at the vendor).
    Delete {
        /// Tenant id.
        tenant: String,
        /// Vendor.
        vendor: Vendor,
        /// Connection name.
        #[arg(default_value = "default")]
        name: String,
        /// What happens to the access it created.
        #[command(flatten)]
        access: super::offboard::AccessArgs,
    },
    /// Disable a connection (kept with its credentials, used no more); same choice about
    /// its access as `delete`.
    Disable {
        /// Tenant id.
        tenant: String,
        /// Vendor.
        vendor: Vendor,
        /// Connection name.
        #[arg(default_value = "default")]
        name: String,
        /// What happens to the access it created.
        #[command(flatten)]
        access: super::offboard::AccessArgs,
    },
}

/// The kubectl-style document of a connection.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Document {
    /// `accesshub/v1`.
    pub api_version: String,
    /// `Connection` or `Tenant`.
    pub kind: String,
    /// Identity.
    pub metadata: BTreeMap<String, Value>,
    /// Settings.
    #[serde(default)]
    pub spec: Value,
}

/// API version of the documents.
pub const API_VERSION: &str = "accesshub/v1";

/// The document form of a connection (what `get -o yaml` prints and `apply` reads).
pub fn to_document(c: &Connection) -> anyhow::Result<Document> {
    let mut spec = yaml_serde::to_value(&c.settings)?;
    if let Value::Mapping(m) = &mut spec {
        if !c.enabled {
            m.insert("enabled".into(), false.into());
        }
        if !c.sites.is_empty() {
            m.insert("sites".into(), yaml_serde::to_value(&c.sites)?);
        }
    }
    let mut metadata = BTreeMap::new();
    metadata.insert("tenant".into(), c.tenant.clone().into());
    metadata.insert("name".into(), c.name.clone().into());
    metadata.insert("version".into(), c.version.into());
    Ok(Document {
        api_version: API_VERSION.into(),
        kind: "Connection".into(),
        metadata,
        spec,
    })
}

/// One parsed document of an apply file.
#[derive(Debug, Clone)]
pub enum Resource {
    /// A tenant: id and display name.
    Tenant {
        /// Id.
        id: String,
        /// Display name.
        name: Option<String>,
    },
    /// A connection.
    Connection(Box<Connection>),
}

fn meta_str(d: &Document, key: &str) -> Option<String> {
    d.metadata.get(key).and_then(|v| match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    })
}

/// Replaces `${VAR}` strings with the environment variable (secrets stay out of Git).
fn expand_env(path: &str, v: &mut Value) -> anyhow::Result<()> {
    match v {
        Value::String(s) => {
            if let Some(name) = s.strip_prefix("${").and_then(|r| r.strip_suffix('}')) {
                *s = std::env::var(name)
                    .map_err(|_| anyhow!("{path}: environment variable {name} is not set"))?;
            }
        }
        Value::Mapping(m) => {
            for (k, val) in m.iter_mut() {
                let key = k.as_str().unwrap_or("?");
                expand_env(&format!("{path}.{key}"), val)?;
            }
        }
        Value::Sequence(s) => {
            for (i, val) in s.iter_mut().enumerate() {
                expand_env(&format!("{path}[{i}]"), val)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Parses a multi-document YAML text into resources, naming the document and field of any
/// error (`document 2: spec.encoders[1].kind: unknown variant ...`).
pub fn parse_documents(text: &str) -> anyhow::Result<Vec<Resource>> {
    let mut out = Vec::new();
    for (i, de) in yaml_serde::Deserializer::from_str(text).enumerate() {
        let n = i + 1;
        let value = Value::deserialize(de).with_context(|| format!("document {n}: not YAML"))?;
        if value.is_null() {
            continue;
        }
        let mut doc: Document = serde_path_to_error::deserialize(value)
            .map_err(|e| anyhow!("document {n}: {}: {}", e.path(), e.inner()))?;
        if doc.api_version != API_VERSION {
            bail!(
                "document {n}: apiVersion: expected {API_VERSION}, got {:?}",
                doc.api_version
            );
        }
        match doc.kind.as_str() {
            "Tenant" => {
                let id = meta_str(&doc, "name")
                    .or_else(|| meta_str(&doc, "tenant"))
                    .ok_or_else(|| anyhow!("document {n}: metadata.name: required"))?;
                let name = doc
                    .spec
                    .get("name")
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                out.push(Resource::Tenant { id, name });
            }
            "Connection" => {
                let tenant = meta_str(&doc, "tenant")
                    .ok_or_else(|| anyhow!("document {n}: metadata.tenant: required"))?;
                let name = meta_str(&doc, "name").unwrap_or_else(|| "default".into());
                expand_env("spec", &mut doc.spec)
                    .map_err(|e| anyhow!("document {n} ({tenant}/{name}): {e}"))?;
                let Value::Mapping(mut spec) = doc.spec else {
                    bail!("document {n}: spec: must be a mapping with `vendor` and its settings");
                };
                let enabled = match spec.remove("enabled") {
                    None => true,
                    Some(Value::Bool(b)) => b,
                    Some(_) => bail!("document {n}: spec.enabled: must be true or false"),
                };
                let sites: Vec<String> = match spec.remove("sites") {
                    None => vec![],
                    Some(v) => yaml_serde::from_value(v)
                        .map_err(|e| anyhow!("document {n}: spec.sites: {e}"))?,
                };
                let json = serde_json::to_value(Value::Mapping(spec))
                    .map_err(|e| anyhow!("document {n} ({tenant}/{name}): spec: {e}"))?;
                let settings: VendorSettings = accesshub_connections::settings_from_json(json)
                    .map_err(|(p, msg)| {
                        let p = if p.is_empty() { p } else { format!(".{p}") };
                        anyhow!("document {n} ({tenant}/{name}): spec{p}: {msg}")
                    })?;
                let version = doc
                    .metadata
                    .get("version")
                    .and_then(Value::as_i64)
                    .unwrap_or(0);
                out.push(Resource::Connection(Box::new(Connection {
                    tenant,
                    name,
                    enabled,
                    sites,
                    settings,
                    version,
                })));
            }
            other => bail!("document {n}: kind: expected Connection or Tenant, got {other:?}"),
        }
    }
    Ok(out)
}

/// What applying one document did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApplyReport {
    /// `Tenant` or `Connection`.
    pub kind: String,
    /// `tenant/vendor/name` or the tenant id.
    pub id: String,
    /// Created, updated or unchanged.
    pub status: ApplyStatus,
    /// Version after apply (connections).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<i64>,
    /// Field changes (connections; secrets redacted).
    #[serde(default)]
    pub changes: Vec<accesshub_connections::Change>,
}

/// Applies every document of `text` through the API, in order (tenants before connections
/// if listed first). Stops at the first error, naming the document.
pub async fn apply_text(
    api: &ApiClient,
    text: &str,
    dry_run: bool,
) -> anyhow::Result<Vec<ApplyReport>> {
    let resources = parse_documents(text)?;
    let mut reports = Vec::new();
    for r in resources {
        match r {
            Resource::Tenant { id, name } => {
                let existing: Option<serde_json::Value> =
                    api.get_opt(&format!("/tenants/{}", seg(&id)), &[]).await?;
                let wanted = name.clone().unwrap_or_else(|| id.clone());
                let status = match &existing {
                    None => ApplyStatus::Created,
                    Some(t) if t.get("name").and_then(|n| n.as_str()) == Some(&wanted) => {
                        ApplyStatus::Unchanged
                    }
                    Some(_) => ApplyStatus::Updated,
                };
                if !dry_run && status != ApplyStatus::Unchanged {
                    let _: serde_json::Value = api
                        .write(
                            reqwest::Method::PUT,
                            &format!("/tenants/{}", seg(&id)),
                            &[],
                            &serde_json::json!({ "name": wanted }),
                        )
                        .await
                        .with_context(|| format!("tenant {id}"))?;
                }
                reports.push(ApplyReport {
                    kind: "Tenant".into(),
                    id,
                    status,
                    version: None,
                    changes: vec![],
                });
            }
            Resource::Connection(c) => {
                let id = format!("{}/{}/{}", c.tenant, c.vendor(), c.name);
                let path = format!(
                    "/connections/{}/{}/{}",
                    seg(&c.tenant),
                    c.vendor(),
                    seg(&c.name)
                );
                let query = if dry_run {
                    vec![("dry_run".to_owned(), "true".to_owned())]
                } else {
                    vec![]
                };
                let body = serde_json::to_value(&*c)?;
                let resp: ApplyResponse = api
                    .write(reqwest::Method::PUT, &path, &query, &body)
                    .await
                    .with_context(|| format!("connection {id}"))?;
                reports.push(ApplyReport {
                    kind: "Connection".into(),
                    id,
                    status: resp.status,
                    version: Some(resp.connection.version),
                    changes: resp.changes,
                });
            }
        }
    }
    Ok(reports)
}

fn status_word(s: ApplyStatus, dry_run: bool) -> &'static str {
    match (s, dry_run) {
        (ApplyStatus::Created, false) => "created",
        (ApplyStatus::Updated, false) => "configured",
        (ApplyStatus::Unchanged, _) => "unchanged",
        (ApplyStatus::Created, true) => "would be created",
        (ApplyStatus::Updated, true) => "would be configured",
    }
}

/// Prints apply reports: one line per document, with the diff for a dry run.
pub fn print_reports(format: Format, reports: &[ApplyReport], dry_run: bool) -> anyhow::Result<()> {
    if format != Format::Table {
        return output::print(format, &reports, &[], vec![]);
    }
    for r in reports {
        let version = r
            .version
            .map(|v| format!(" (version {v})"))
            .unwrap_or_default();
        println!(
            "{} {} {}{}",
            r.kind.to_lowercase(),
            r.id,
            status_word(r.status, dry_run),
            if dry_run { String::new() } else { version }
        );
        if dry_run && !r.changes.is_empty() {
            for line in diff::render(&r.changes).lines() {
                println!("    {line}");
            }
        }
    }
    Ok(())
}

fn rows(list: &[Connection]) -> Vec<Vec<String>> {
    list.iter()
        .map(|c| {
            vec![
                c.tenant.clone(),
                c.vendor().to_string(),
                c.name.clone(),
                if c.enabled { "yes" } else { "no" }.into(),
                if c.sites.is_empty() {
                    "*".into()
                } else {
                    c.sites.join(",")
                },
                c.version.to_string(),
            ]
        })
        .collect()
}

const HEADERS: [&str; 6] = ["TENANT", "VENDOR", "NAME", "ENABLED", "SITES", "VERSION"];

/// Runs `accessctl connections …`.
pub async fn run(cmd: ConnectionsCommand, format: Format) -> anyhow::Result<()> {
    let api = ApiClient::from_env()?;
    run_with(&api, cmd, format).await
}

/// [`run`] with an explicit client (tests).
pub async fn run_with(
    api: &ApiClient,
    cmd: ConnectionsCommand,
    format: Format,
) -> anyhow::Result<()> {
    match cmd {
        ConnectionsCommand::List { tenant, vendor } => {
            let mut q = vec![];
            if let Some(t) = tenant {
                q.push(("tenant".to_owned(), t));
            }
            if let Some(v) = vendor {
                q.push(("vendor".to_owned(), v.to_string()));
            }
            let list: Vec<Connection> = api.get("/connections", &q).await?;
            if format == Format::Table {
                output::print(format, &list, &HEADERS, rows(&list))
            } else {
                let docs = list
                    .iter()
                    .map(to_document)
                    .collect::<Result<Vec<_>, _>>()?;
                output::print(format, &docs, &[], vec![])
            }
        }
        ConnectionsCommand::Get {
            tenant,
            vendor,
            name,
        } => {
            let path = format!("/connections/{}/{vendor}/{}", seg(&tenant), seg(&name));
            let c: Connection = api.get_opt(&path, &[]).await?.ok_or_else(|| {
                anyhow!("tenant {tenant:?} has no {vendor} connection named {name:?}")
            })?;
            match format {
                Format::Table => {
                    output::print(format, &c, &HEADERS, rows(std::slice::from_ref(&c)))
                }
                _ => output::print(format, &to_document(&c)?, &[], vec![]),
            }
        }
        ConnectionsCommand::Apply { file, dry_run } => {
            let text = if file == "-" {
                std::io::read_to_string(std::io::stdin()).context("reading stdin")?
            } else {
                std::fs::read_to_string(&file).with_context(|| format!("reading {file}"))?
            };
            let reports = apply_text(api, &text, dry_run).await?;
            print_reports(format, &reports, dry_run)
        }
        ConnectionsCommand::Delete {
            tenant,
            vendor,
            name,
            access,
        } => {
            let path = format!("/connections/{}/{vendor}/{}", seg(&tenant), seg(&name));
            let answer = api
                .send(reqwest::Method::DELETE, &path, &access.query(), None, false)
                .await?;
            let what = format!("connection {tenant}/{vendor}/{name}");
            super::offboard::report(api, &what, answer, &access).await
        }
        ConnectionsCommand::Disable {
            tenant,
            vendor,
            name,
            access,
        } => {
            let path = format!("/connections/{}/{vendor}/{}", seg(&tenant), seg(&name));
            let mut c: Connection = api.get_opt(&path, &[]).await?.ok_or_else(|| {
                anyhow!("tenant {tenant:?} has no {vendor} connection named {name:?}")
            })?;
            c.enabled = false;
            // Secrets come back as `***`: the API keeps the stored ones.
            let resp: ApplyResponse = api
                .write(
                    reqwest::Method::PUT,
                    &path,
                    &access.query(),
                    &serde_json::to_value(&c)?,
                )
                .await?;
            let what = format!("connection {tenant}/{vendor}/{name}");
            if let Some(w) = &resp.warning {
                eprintln!("warning: {w}");
            }
            match resp.offboard_run {
                Some(run) => {
                    println!(
                        "{what} offboarding: run {} removes its access, then disables it",
                        run.id
                    );
                    if access.wait {
                        super::offboard::wait_for(api, &[run], access.timeout).await?;
                        println!("{what} disabled");
                    }
                }
                None => println!("{what} disabled"),
            }
            Ok(())
        }
    }
}
