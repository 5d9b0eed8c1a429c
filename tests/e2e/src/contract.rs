//! Every message the end-to-end tests see on the bus, validated against its JSON Schema in
//! `proto-schemas/` (issue 24, item 2): `bookings.>` and `sync.>` carry events (a `sync.>`
//! message with `Accesshub-Sync-Action: remove` a remove command, whose schema is
//! `components.schemas.syncRemoveCommand` of `asyncapi.yaml`), `dlq.>` dead letters,
//! `results.keyreq.>` key results; the server's MAX_DELIVERIES advisories in the DLQ stream are
//! checked for the fields accesshub reads. `Stack::finish` runs it over every
//! message left in the test's streams.

use std::{collections::BTreeMap, path::PathBuf, sync::LazyLock};

use jsonschema::{Resource, Validator};
use serde_json::Value;

const BASE: &str = "https://schemas.accesshub.dev/v1/";

fn v1_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto-schemas/v1")
}

/// The validators by schema file, cross-file `$ref`s resolved in memory by `$id`.
fn validators() -> Result<&'static BTreeMap<&'static str, Validator>, String> {
    static VALIDATORS: LazyLock<Result<BTreeMap<&'static str, Validator>, String>> =
        LazyLock::new(build);
    VALIDATORS.as_ref().map_err(Clone::clone)
}

const SCHEMAS: [&str; 7] = [
    "event.schema.json",
    "reservation.schema.json",
    "facility.schema.json",
    "pass.schema.json",
    "keyreq.schema.json",
    "key-result.schema.json",
    "dead-letter.schema.json",
];

/// Key of the remove command's validator (a schema inside asyncapi.yaml).
const REMOVE_COMMAND: &str = "asyncapi.yaml#/components/schemas/syncRemoveCommand";

fn remove_command_schema() -> Result<Value, String> {
    let path = v1_dir().join("../asyncapi.yaml");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let doc: Value = yaml_serde::from_str(&text).map_err(|e| format!("asyncapi.yaml: {e}"))?;
    doc.pointer("/components/schemas/syncRemoveCommand")
        .cloned()
        .ok_or_else(|| "asyncapi.yaml has no components.schemas.syncRemoveCommand".to_owned())
}

fn build() -> Result<BTreeMap<&'static str, Validator>, String> {
    let mut docs = BTreeMap::new();
    docs.insert(REMOVE_COMMAND, remove_command_schema()?);
    for name in SCHEMAS {
        let path = v1_dir().join(name);
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let doc: Value = serde_json::from_str(&text).map_err(|e| format!("{name}: {e}"))?;
        docs.insert(name, doc);
    }
    let mut out = BTreeMap::new();
    for (name, doc) in &docs {
        let mut options = jsonschema::draft202012::options().should_validate_formats(true);
        for (other, d) in docs.iter().filter(|(k, _)| **k != REMOVE_COMMAND) {
            let resource =
                Resource::from_contents(d.clone()).map_err(|e| format!("{other}: {e}"))?;
            options = options.with_resource(format!("{BASE}{other}"), resource);
        }
        let v = options.build(doc).map_err(|e| format!("{name}: {e}"))?;
        out.insert(*name, v);
    }
    Ok(out)
}

/// The schema a message on `subject` (namespace already stripped) with the sync action header
/// `action` must follow; `None` for the server's advisories.
pub fn schema_for(subject: &str, action: Option<&str>) -> Option<&'static str> {
    let first = subject.split('.').next().unwrap_or_default();
    match first {
        "sync" if action == Some("remove") => Some(REMOVE_COMMAND),
        "bookings" | "sync" => Some("event.schema.json"),
        "dlq" => Some("dead-letter.schema.json"),
        "results" => Some("key-result.schema.json"),
        _ => None,
    }
}

/// Checks one message: `Err` says what is wrong (subject, schema, JSON path and problem).
/// `action` is its `Accesshub-Sync-Action` header, if any.
pub fn validate(subject: &str, action: Option<&str>, payload: &[u8]) -> Result<(), String> {
    let doc: Value = serde_json::from_slice(payload)
        .map_err(|e| format!("{subject}: payload is not JSON: {e}"))?;
    let Some(schema) = schema_for(subject, action) else {
        // io.nats.jetstream.advisory.v1.max_deliver: the fields the DLQ tooling reads.
        if subject.starts_with("$JS.EVENT.ADVISORY.") {
            for field in ["type", "stream", "consumer", "stream_seq", "deliveries"] {
                if doc.get(field).is_none() {
                    return Err(format!("{subject}: advisory without {field}"));
                }
            }
            return Ok(());
        }
        return Err(format!("{subject}: no schema for this subject"));
    };
    let validators = validators()?;
    let v = validators
        .get(schema)
        .ok_or_else(|| format!("{schema}: not loaded"))?;
    let errors: Vec<String> = v
        .iter_errors(&doc)
        .map(|e| format!("{} at {}", e, e.instance_path))
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{subject} does not follow {schema}: {}",
            errors.join("; ")
        ))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn example(name: &str) -> Vec<u8> {
        std::fs::read(v1_dir().join("examples").join(name)).unwrap()
    }

    #[test]
    fn examples_pass_and_a_broken_event_fails() {
        let pass = example("event--pass-active.json");
        validate("bookings.pass.acme.P-1", None, &pass).unwrap();
        validate("sync.tapkey.acme.P-1", Some("apply"), &pass).unwrap();
        let dead = example("dead-letter--base64-payload.json");
        validate("dlq.tapkey-worker.bookings.pass.acme.P-1", None, &dead).unwrap();
        let result = example("key-result--sent.json");
        validate("results.keyreq.acme.r1", None, &result).unwrap();
        let remove = serde_json::json!({
            "run_id": 1, "tenant": "acme", "vendor": "cloudpass", "connection": "default",
            "kind": "reservation", "booking_key": "GHOST-9", "reference": "r", "vendor_id": "s/1"
        });
        let remove = serde_json::to_vec(&remove).unwrap();
        validate("sync.cloudpass.acme.GHOST-9", Some("remove"), &remove).unwrap();
        assert!(validate("sync.cloudpass.acme.GHOST-9", Some("apply"), &remove).is_err());
        let mut broken: Value = serde_json::from_slice(&pass).unwrap();
        broken["kind"] = "parking".into();
        let broken = serde_json::to_vec(&broken).unwrap();
        let err = validate("bookings.pass.acme.P-1", None, &broken).unwrap_err();
        assert!(err.contains("event.schema.json"), "{err}");
        assert!(validate("bookings.pass.acme.P-1", None, b"not json").is_err());
        assert!(validate("elsewhere.x", None, b"{}").is_err());
    }
}
