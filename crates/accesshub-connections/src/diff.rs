//! What an apply would change, computed on redacted values so a diff can be printed and
//! returned by the API without revealing secrets (a changed secret shows as `***` → `*** (changed)`).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::model::{Connection, REDACTED};

/// Kind of change at one path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChangeOp {
    /// The path did not exist before.
    Added,
    /// The path no longer exists.
    Removed,
    /// The value differs.
    Changed,
}

/// One changed field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Change {
    /// Field path, e.g. `settings.encoders[1].id`.
    pub path: String,
    /// Added, removed or changed.
    pub op: ChangeOp,
    /// Value before (absent when added).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old: Option<Value>,
    /// Value after (absent when removed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new: Option<Value>,
}

/// The changes from `old` (none: a new connection) to `new`, secrets redacted. The version is
/// not compared.
pub fn diff(old: Option<&Connection>, new: &Connection) -> Vec<Change> {
    let mut out = Vec::new();
    let new_v = content_value(new);
    match old {
        None => walk("", &Value::Null, &new_v, &mut out),
        Some(old) => {
            walk("", &content_value(old), &new_v, &mut out);
            if old.vendor() == new.vendor() {
                let olds = old.settings.secrets();
                for (name, s) in new.settings.secrets() {
                    if let Some((_, o)) = olds.iter().find(|(n, _)| *n == name)
                        && o.expose() != s.expose()
                    {
                        out.push(Change {
                            path: format!("settings.{name}"),
                            op: ChangeOp::Changed,
                            old: Some(Value::String(REDACTED.into())),
                            new: Some(Value::String(format!("{REDACTED} (changed)"))),
                        });
                    }
                }
            }
        }
    }
    out
}

/// Renders changes as `+`/`-`/`~` lines for people.
pub fn render(changes: &[Change]) -> String {
    let show = |v: &Option<Value>| v.as_ref().map(compact).unwrap_or_default();
    let mut s = String::new();
    for c in changes {
        match c.op {
            ChangeOp::Added => s.push_str(&format!("+ {}: {}\n", c.path, show(&c.new))),
            ChangeOp::Removed => s.push_str(&format!("- {}: {}\n", c.path, show(&c.old))),
            ChangeOp::Changed => s.push_str(&format!(
                "~ {}: {} -> {}\n",
                c.path,
                show(&c.old),
                show(&c.new)
            )),
        }
    }
    s
}

fn compact(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn content_value(c: &Connection) -> Value {
    let mut v = serde_json::to_value(c.redacted()).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut v {
        m.remove("version");
    }
    v
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_owned()
    } else {
        format!("{prefix}.{key}")
    }
}

fn walk(path: &str, old: &Value, new: &Value, out: &mut Vec<Change>) {
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, av) in a {
                match b.get(k) {
                    Some(bv) => walk(&join(path, k), av, bv, out),
                    None => out.push(Change {
                        path: join(path, k),
                        op: ChangeOp::Removed,
                        old: Some(av.clone()),
                        new: None,
                    }),
                }
            }
            for (k, bv) in b {
                if !a.contains_key(k) {
                    leaf_added(&join(path, k), bv, out);
                }
            }
        }
        (Value::Null, Value::Object(b)) if path.is_empty() => {
            for (k, bv) in b {
                leaf_added(k, bv, out);
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            for i in 0..a.len().max(b.len()) {
                let p = format!("{path}[{i}]");
                match (a.get(i), b.get(i)) {
                    (Some(x), Some(y)) => walk(&p, x, y, out),
                    (Some(x), None) => out.push(Change {
                        path: p,
                        op: ChangeOp::Removed,
                        old: Some(x.clone()),
                        new: None,
                    }),
                    (None, Some(y)) => leaf_added(&p, y, out),
                    (None, None) => {}
                }
            }
        }
        (a, b) if a == b => {}
        (a, b) => out.push(Change {
            path: path.to_owned(),
            op: ChangeOp::Changed,
            old: Some(a.clone()),
            new: Some(b.clone()),
        }),
    }
}

fn leaf_added(path: &str, v: &Value, out: &mut Vec<Change>) {
    out.push(Change {
        path: path.to_owned(),
        op: ChangeOp::Added,
        old: None,
        new: Some(v.clone()),
    });
}
