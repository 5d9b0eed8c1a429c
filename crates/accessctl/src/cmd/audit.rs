//! `accessctl audit`: the admin API's audit log (who changed what, when, before/after with
//! secrets masked), newest first, limited to the token's tenants.

use accesshub_admin::audit::AuditRecord;
use chrono::{DateTime, Utc};
use clap::Args;

use super::connections::ApiClient;
use crate::output::{self, Format};

/// `accessctl audit` flags.
#[derive(Debug, Clone, Args)]
pub struct AuditArgs {
    /// Only this tenant.
    #[arg(long)]
    pub tenant: Option<String>,
    /// At or after: RFC 3339 time or an age like `2h`, `7days`.
    #[arg(long, value_parser = super::dlq::parse_time)]
    pub since: Option<DateTime<Utc>>,
    /// At most this many.
    #[arg(long, default_value_t = 100)]
    pub limit: u32,
}

/// Runs `accessctl audit`.
pub async fn run(args: AuditArgs, format: Format) -> anyhow::Result<()> {
    run_with(&ApiClient::from_env()?, args, format).await
}

/// Fetches the records (`GET /audit`).
pub async fn fetch(api: &ApiClient, args: &AuditArgs) -> anyhow::Result<Vec<AuditRecord>> {
    let mut q = vec![("limit".to_owned(), args.limit.to_string())];
    if let Some(t) = &args.tenant {
        q.push(("tenant".into(), t.clone()));
    }
    if let Some(s) = args.since {
        q.push(("since".into(), s.to_rfc3339()));
    }
    api.get("/audit", &q).await
}

/// What changed, in one short cell: the fields whose values differ between before and after.
fn summary(r: &AuditRecord) -> String {
    match (&r.before, &r.after) {
        (None, Some(_)) => "created".into(),
        (Some(_), None) => "removed".into(),
        (Some(b), Some(a)) => {
            let mut changed = Vec::new();
            diff("", b, a, &mut changed);
            if changed.is_empty() {
                "-".into()
            } else {
                changed.join(", ")
            }
        }
        (None, None) => "-".into(),
    }
}

fn diff(path: &str, b: &serde_json::Value, a: &serde_json::Value, out: &mut Vec<String>) {
    use serde_json::Value::Object;
    match (b, a) {
        (Object(bm), Object(am)) => {
            let keys: std::collections::BTreeSet<&String> = bm.keys().chain(am.keys()).collect();
            for k in keys {
                if matches!(k.as_str(), "version" | "updated_at" | "created_at") {
                    continue;
                }
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                let null = serde_json::Value::Null;
                diff(
                    &p,
                    bm.get(k).unwrap_or(&null),
                    am.get(k).unwrap_or(&null),
                    out,
                );
            }
        }
        _ if b != a => out.push(path.to_owned()),
        _ => {}
    }
}

/// [`run`] with an explicit client (tests).
pub async fn run_with(api: &ApiClient, args: AuditArgs, format: Format) -> anyhow::Result<()> {
    let list = fetch(api, &args).await?;
    let rows = list
        .iter()
        .map(|r| {
            vec![
                r.at.format("%Y-%m-%d %H:%M:%S").to_string(),
                r.actor.clone(),
                r.action.clone(),
                r.tenant.clone().unwrap_or_else(|| "-".into()),
                r.target.clone(),
                summary(r),
            ]
        })
        .collect();
    output::print(
        format,
        &list,
        &["AT (UTC)", "BY", "ACTION", "TENANT", "TARGET", "CHANGED"],
        rows,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn summary_names_the_changed_fields() {
        let r = AuditRecord {
            id: 1,
            at: Utc::now(),
            token_id: None,
            actor: "ci".into(),
            action: "connection.apply".into(),
            tenant: Some("acme".into()),
            target: "acme/tapkey/default".into(),
            before: Some(json!({"settings": {"port": 1, "password": "***"}, "version": 1})),
            after: Some(json!({"settings": {"port": 2, "password": "***"}, "version": 2})),
        };
        assert_eq!(summary(&r), "settings.port");
    }
}
