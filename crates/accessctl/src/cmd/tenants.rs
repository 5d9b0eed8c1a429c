//! `accessctl tenants list/get/create` and webhook secrets of a tenant's upstream sources
//! (`set-secret` reads the secret from an environment variable or stdin, never the command
//! line; `rotate-secret` generates one and prints it once), and the API credentials Sync and
//! polls read a source with (`set-api`, sealed like vendor secrets).

use accesshub_admin::{SourceSecretResponse, TenantDetail};
use accesshub_connections::Tenant;
use anyhow::{Context as _, anyhow, bail};
use clap::Subcommand;

use super::connections::{ApiClient, seg};
use crate::output::{self, Format};

/// `accessctl tenants …`
#[derive(Debug, Subcommand)]
pub enum TenantsCommand {
    /// List tenants.
    List,
    /// Show a tenant with its upstream sources.
    Get {
        /// Tenant id.
        id: String,
    },
    /// Create a tenant.
    Create {
        /// Tenant id (letters, digits, '-', '_', '.').
        id: String,
        /// Display name (defaults to the id).
        #[arg(long)]
        name: Option<String>,
    },
    /// Delete a tenant with its sources, connections, bookings and bindings. Refused while
    /// bookings hold access at a vendor, unless --remove-access (every connection is
    /// offboarded first; the tenant goes with the last) or --keep-access.
    Delete {
        /// Tenant id.
        id: String,
        /// What happens to the access its connections created.
        #[command(flatten)]
        access: super::offboard::AccessArgs,
    },
    /// Set a source's webhook secret; the old one stays valid for `--previous-ttl`.
    SetSecret {
        /// Tenant id.
        tenant: String,
        /// Source (bex, clock, nexudus, connecx, native).
        source: String,
        /// Read the secret from this environment variable (otherwise from stdin).
        #[arg(long)]
        from_env: Option<String>,
        /// How long the previous secret stays valid.
        #[arg(long, default_value = "24h")]
        previous_ttl: humantime::Duration,
    },
    /// Set a source's site defaults (check-in/out times, IANA time zone per site, "*" for
    /// all) from a JSON or YAML file ("-" for stdin); refused naming the field at fault.
    SiteDefaults {
        /// Tenant id.
        tenant: String,
        /// Source.
        source: String,
        /// File with `{"<site>": {"check_in_time": "15:00", "check_out_time": "11:00",
        /// "timezone": "Europe/Amsterdam"}}`.
        #[arg(short = 'f', long = "file")]
        file: String,
    },
    /// Tie a source to its upstream organization (BEX organization id); `--none` unties it.
    SetOrganization {
        /// Tenant id.
        tenant: String,
        /// Source.
        source: String,
        /// Organization id.
        #[arg(required_unless_present = "none")]
        organization_id: Option<String>,
        /// Untie the source.
        #[arg(long)]
        none: bool,
    },
    /// Bookings booking-ingest ignored (site not activated, connection disabled, unmapped).
    Ignored {
        /// Tenant id.
        tenant: String,
        /// How many, latest first.
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Set how accesshub reads a source's API for Sync and polls (issue 21): base URL and
    /// credentials (BEX: the API key; Nexudus: user:password; Clock: user:api key), read from
    /// an environment variable or stdin, never the command line.
    SetApi {
        /// Tenant id.
        tenant: String,
        /// Source (bex, nexudus, clock).
        source: String,
        /// API base URL (BEX: https://api.bookingexperts.nl; Nexudus: https://spaces.nexudus.com).
        #[arg(long)]
        base_url: String,
        /// Read the credentials from this environment variable (otherwise from stdin).
        #[arg(long)]
        from_env: Option<String>,
        /// Options as JSON (BEX: {"lookback_days": 30, "guests": true}).
        #[arg(long)]
        options: Option<String>,
    },
    /// Choose how a source's webhooks authenticate: `signature` (default) or `token` (the
    /// secret itself in X-Accesshub-Token or ?token=; Clock only, whose signing is not public).
    SetAuth {
        /// Tenant id.
        tenant: String,
        /// Source.
        source: String,
        /// signature | token.
        #[arg(long)]
        mode: String,
    },
    /// Generate a new webhook secret for a source and print it once.
    RotateSecret {
        /// Tenant id.
        tenant: String,
        /// Source.
        source: String,
        /// How long the previous secret stays valid.
        #[arg(long, default_value = "24h")]
        previous_ttl: humantime::Duration,
    },
}

/// Runs `accessctl tenants …`.
pub async fn run(cmd: TenantsCommand, format: Format) -> anyhow::Result<()> {
    run_with(&ApiClient::from_env()?, cmd, format).await
}

fn tenant_rows(list: &[Tenant]) -> Vec<Vec<String>> {
    list.iter()
        .map(|t| {
            vec![
                t.id.clone(),
                t.name.clone(),
                t.created_at.format("%Y-%m-%d %H:%M").to_string(),
            ]
        })
        .collect()
}

/// A secret from the environment variable `from_env`, else stdin; never empty.
fn read_secret(from_env: Option<String>) -> anyhow::Result<String> {
    let secret = match from_env {
        Some(var) => std::env::var(&var).map_err(|_| anyhow!("{var} is not set"))?,
        None => std::io::read_to_string(std::io::stdin())
            .context("reading the secret from stdin")?
            .trim_end_matches(['\r', '\n'])
            .to_owned(),
    };
    if secret.is_empty() {
        bail!("the secret is empty");
    }
    Ok(secret)
}

/// [`run`] with an explicit client (tests).
pub async fn run_with(api: &ApiClient, cmd: TenantsCommand, format: Format) -> anyhow::Result<()> {
    match cmd {
        TenantsCommand::List => {
            let list: Vec<Tenant> = api.get("/tenants", &[]).await?;
            output::print(
                format,
                &list,
                &["ID", "NAME", "CREATED"],
                tenant_rows(&list),
            )
        }
        TenantsCommand::Get { id } => {
            let t: TenantDetail = api
                .get_opt(&format!("/tenants/{}", seg(&id)), &[])
                .await?
                .ok_or_else(|| anyhow!("unknown tenant {id:?}"))?;
            if format != Format::Table {
                return output::print(format, &t, &[], vec![]);
            }
            output::print(
                format,
                &t,
                &["ID", "NAME", "CREATED"],
                tenant_rows(std::slice::from_ref(&t.tenant)),
            )?;
            let rows = t
                .sources
                .iter()
                .map(|s| {
                    vec![
                        s.source.clone(),
                        s.secret.clone(),
                        match (s.previous_valid, s.previous_expires) {
                            (true, Some(e)) => format!("until {}", e.format("%Y-%m-%d %H:%M UTC")),
                            _ => "-".into(),
                        },
                    ]
                })
                .collect();
            output::print(
                Format::Table,
                &(),
                &["SOURCE", "SECRET", "PREVIOUS VALID"],
                rows,
            )
        }
        TenantsCommand::Delete { id, access } => {
            let path = format!("/tenants/{}", seg(&id));
            let answer = api
                .send(reqwest::Method::DELETE, &path, &access.query(), None, false)
                .await?;
            super::offboard::report(api, &format!("tenant {id}"), answer, &access).await
        }
        TenantsCommand::Create { id, name } => {
            let t: Tenant = api
                .write(
                    reqwest::Method::POST,
                    "/tenants",
                    &[],
                    &serde_json::json!({ "id": id, "name": name }),
                )
                .await?;
            output::print(
                format,
                &t,
                &["ID", "NAME", "CREATED"],
                tenant_rows(std::slice::from_ref(&t)),
            )
        }
        TenantsCommand::SetSecret {
            tenant,
            source,
            from_env,
            previous_ttl,
        } => {
            let secret = read_secret(from_env)?;
            let r: SourceSecretResponse = api
                .write(
                    reqwest::Method::PUT,
                    &format!("/tenants/{}/sources/{}/secret", seg(&tenant), seg(&source)),
                    &[],
                    &serde_json::json!({
                        "secret": secret,
                        "previous_ttl_seconds": previous_ttl.as_secs(),
                    }),
                )
                .await?;
            println!(
                "webhook secret of {tenant}/{source} set; previous secret valid: {}",
                if r.source.previous_valid { "yes" } else { "no" }
            );
            Ok(())
        }
        TenantsCommand::SiteDefaults {
            tenant,
            source,
            file,
        } => {
            let text = if file == "-" {
                std::io::read_to_string(std::io::stdin()).context("reading stdin")?
            } else {
                std::fs::read_to_string(&file).with_context(|| format!("reading {file}"))?
            };
            let doc: serde_json::Value =
                yaml_serde::from_str(&text).with_context(|| format!("parsing {file}"))?;
            let s: accesshub_connections::TenantSource = api
                .write(
                    reqwest::Method::PUT,
                    &format!(
                        "/tenants/{}/sources/{}/site-defaults",
                        seg(&tenant),
                        seg(&source)
                    ),
                    &[],
                    &doc,
                )
                .await?;
            output::print(format, &s.site_defaults, &[], vec![])
        }
        TenantsCommand::SetOrganization {
            tenant,
            source,
            organization_id,
            none,
        } => {
            let org = if none { None } else { organization_id };
            let s: accesshub_connections::TenantSource = api
                .write(
                    reqwest::Method::PUT,
                    &format!(
                        "/tenants/{}/sources/{}/organization",
                        seg(&tenant),
                        seg(&source)
                    ),
                    &[],
                    &serde_json::json!({ "organization_id": org }),
                )
                .await?;
            println!(
                "{tenant}/{source}: organization {}",
                s.organization_id.as_deref().unwrap_or("(none)")
            );
            Ok(())
        }
        TenantsCommand::Ignored { tenant, limit } => {
            let list: Vec<accesshub_admin::scope::IgnoredBooking> = api
                .get(
                    &format!("/tenants/{}/ignored", seg(&tenant)),
                    &[("limit".into(), limit.to_string())],
                )
                .await?;
            let rows = list
                .iter()
                .map(|i| {
                    vec![
                        i.source.clone(),
                        i.kind.clone(),
                        i.booking_key.clone(),
                        i.site.clone(),
                        i.reason.clone(),
                        i.deliveries.to_string(),
                        i.last_at.format("%Y-%m-%d %H:%M").to_string(),
                    ]
                })
                .collect();
            output::print(
                format,
                &list,
                &[
                    "SOURCE",
                    "KIND",
                    "BOOKING",
                    "SITE",
                    "REASON",
                    "DELIVERIES",
                    "LAST",
                ],
                rows,
            )
        }
        TenantsCommand::SetApi {
            tenant,
            source,
            base_url,
            from_env,
            options,
        } => {
            let secret = read_secret(from_env)?;
            let options: serde_json::Value = match options {
                Some(o) => serde_json::from_str(&o).context("--options is not JSON")?,
                None => serde_json::json!({}),
            };
            let info: serde_json::Value = api
                .write(
                    reqwest::Method::PUT,
                    &format!("/tenants/{}/sources/{}/api", seg(&tenant), seg(&source)),
                    &[],
                    &serde_json::json!({"base_url": base_url, "secret": secret, "options": options}),
                )
                .await?;
            if format != Format::Table {
                return output::print(format, &info, &[], vec![]);
            }
            println!("API credentials of {tenant}/{source} set ({base_url})");
            Ok(())
        }
        TenantsCommand::SetAuth {
            tenant,
            source,
            mode,
        } => {
            let _: serde_json::Value = api
                .write(
                    reqwest::Method::PUT,
                    &format!("/tenants/{}/sources/{}/auth", seg(&tenant), seg(&source)),
                    &[],
                    &serde_json::json!({ "mode": mode }),
                )
                .await?;
            println!("webhooks of {tenant}/{source} authenticate by {mode}");
            Ok(())
        }
        TenantsCommand::RotateSecret {
            tenant,
            source,
            previous_ttl,
        } => {
            let r: SourceSecretResponse = api
                .write(
                    reqwest::Method::POST,
                    &format!("/tenants/{}/sources/{}/rotate", seg(&tenant), seg(&source)),
                    &[],
                    &serde_json::json!({ "previous_ttl_seconds": previous_ttl.as_secs() }),
                )
                .await?;
            if format != Format::Table {
                return output::print(format, &r, &[], vec![]);
            }
            println!(
                "new webhook secret of {tenant}/{source} (shown once, configure it upstream):\n{}",
                r.generated_secret.unwrap_or_default()
            );
            Ok(())
        }
    }
}
