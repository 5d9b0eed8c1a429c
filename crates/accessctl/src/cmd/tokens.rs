//! `accessctl tokens create/list/revoke/whoami`: admin API tokens with a role (viewer,
//! operator, admin), tenants (one, several or `*`) and an expiry. A created token is printed
//! once; only its hash is stored. The API refuses a token with more rights than the caller's.

use accesshub_admin::{CreatedToken, TokenInfo, TokenSelf};
use anyhow::anyhow;
use chrono::{DateTime, Utc};
use clap::Subcommand;

use super::connections::{ApiClient, seg};
use crate::output::{self, Format};

/// `accessctl tokens …`
#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// Tokens in the caller's scope, newest first (never the tokens themselves).
    List {
        /// Also revoked and expired ones.
        #[arg(long)]
        all: bool,
    },
    /// Create a token and print it once.
    Create {
        /// Who or what uses it (e.g. `grafana`, `acme-oncall`).
        name: String,
        /// viewer (reads), operator (also syncs and connections), admin (also tenants and
        /// tokens).
        #[arg(long, value_parser = ["viewer", "operator", "admin"])]
        role: String,
        /// A tenant it may act on (repeat, or comma-separate); `*` for every tenant. Default:
        /// the tenants of the token used to create it.
        #[arg(long = "tenant", value_delimiter = ',')]
        tenants: Vec<String>,
        /// Lifetime, e.g. `30d`, `12h` (default: the service's, 90 days), or
        #[arg(long, conflicts_with = "expires_at")]
        expires_in: Option<humantime::Duration>,
        /// an RFC 3339 expiry.
        #[arg(long)]
        expires_at: Option<DateTime<Utc>>,
    },
    /// Revoke a token by id; `bootstrap` revokes the bootstrap token (ACCESSHUB_ADMIN_TOKEN)
    /// for good (see docs/security.md, "rotating the bootstrap token").
    Revoke {
        /// Token id (`tokens list`), or `bootstrap`.
        id: String,
    },
    /// The token accessctl is using: id, role, tenants, expiry.
    Whoami,
}

/// Runs `accessctl tokens …`.
pub async fn run(cmd: TokensCommand, format: Format) -> anyhow::Result<()> {
    run_with(&ApiClient::from_env()?, cmd, format).await
}

fn when(t: Option<DateTime<Utc>>) -> String {
    t.map_or_else(|| "-".into(), |t| t.format("%Y-%m-%d %H:%M").to_string())
}

fn state(t: &TokenInfo, now: DateTime<Utc>) -> &'static str {
    if t.revoked_at.is_some() {
        "revoked"
    } else if t.expires_at.is_some_and(|e| e <= now) {
        "expired"
    } else {
        "active"
    }
}

fn rows(list: &[TokenInfo]) -> Vec<Vec<String>> {
    let now = Utc::now();
    list.iter()
        .map(|t| {
            vec![
                t.id.to_string(),
                t.name.clone(),
                t.role.to_string(),
                t.tenants.to_string(),
                when(t.expires_at),
                when(t.last_used_at),
                state(t, now).into(),
            ]
        })
        .collect()
}

const HEADERS: &[&str] = &[
    "ID",
    "NAME",
    "ROLE",
    "TENANTS",
    "EXPIRES",
    "LAST USED",
    "STATE",
];

/// The body of `POST /tokens` for `create`.
pub fn create_body(
    name: &str,
    role: &str,
    tenants: &[String],
    expires_in: Option<std::time::Duration>,
    expires_at: Option<DateTime<Utc>>,
) -> serde_json::Value {
    let mut body = serde_json::json!({ "name": name, "role": role });
    if !tenants.is_empty() {
        body["tenants"] = serde_json::json!(tenants);
    }
    if let Some(d) = expires_in {
        body["expires_in_seconds"] = serde_json::json!(d.as_secs());
    }
    if let Some(at) = expires_at {
        body["expires_at"] = serde_json::json!(at);
    }
    body
}

/// [`run`] with an explicit client (tests).
pub async fn run_with(api: &ApiClient, cmd: TokensCommand, format: Format) -> anyhow::Result<()> {
    match cmd {
        TokensCommand::List { all } => {
            let mut list: Vec<TokenInfo> = api.get("/tokens", &[]).await?;
            if !all {
                let now = Utc::now();
                list.retain(|t| state(t, now) == "active");
            }
            output::print(format, &list, HEADERS, rows(&list))
        }
        TokensCommand::Create {
            name,
            role,
            tenants,
            expires_in,
            expires_at,
        } => {
            let body = create_body(
                &name,
                &role,
                &tenants,
                expires_in.map(Into::into),
                expires_at,
            );
            let created: CreatedToken = api
                .write(reqwest::Method::POST, "/tokens", &[], &body)
                .await?;
            if format != Format::Table {
                return output::print(format, &created, &[], vec![]);
            }
            output::print(
                format,
                &created.info,
                HEADERS,
                rows(std::slice::from_ref(&created.info)),
            )?;
            println!("token (shown once, store it now):\n{}", created.token);
            Ok(())
        }
        TokensCommand::Revoke { id } => {
            if api.delete(&format!("/tokens/{}", seg(&id))).await? {
                println!("token {id} revoked");
                Ok(())
            } else {
                Err(anyhow!("no active token {id} in your scope"))
            }
        }
        TokensCommand::Whoami => {
            let me: TokenSelf = api.get("/tokens/self", &[]).await?;
            output::print(
                format,
                &me,
                &["ID", "NAME", "ROLE", "TENANTS", "EXPIRES"],
                vec![vec![
                    me.id.to_string(),
                    me.name.clone(),
                    me.role.to_string(),
                    me.tenants.to_string(),
                    when(me.expires_at),
                ]],
            )
        }
    }
}
