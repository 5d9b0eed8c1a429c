//! The control API (JSON, its own port): reset, state, call log, faults, seeding, health.
//!
//! | method | path | does |
//! | --- | --- | --- |
//! | POST | `/reset` (`?seed=demo` to re-seed the demo fixtures) | [`SimState::reset`] |
//! | GET | `/state/{vendor}` | [`SimState::snapshot`] |
//! | GET | `/calls?vendor=` | [`SimState::calls`] / [`SimState::calls_for`] |
//! | DELETE | `/calls` | [`SimState::clear_calls`] |
//! | GET / POST / DELETE | `/faults` | list / add (one rule or an array) / clear |
//! | POST | `/seed/{vendor}` (`demo` as vendor seeds all demo fixtures) | [`SimState::seed_json`] |
//! | GET / PUT | `/modes/cloudpass` | [`SimState::cloudpass_modes`] / [`SimState::cloudpass_set_modes`] |
//! | GET | `/dedupe` | `{"cloudpass": true, ...}`: each vendor's de-duplication ([`SimState::dedupe`]) |
//! | PUT | `/dedupe/{vendor}` with `{"enabled": false}` | [`SimState::set_dedupe`]; answers the map |
//! | PUT | `/tapkey/grant-filter` with `{"honoured": false}` | [`SimState::set_tapkey_grant_filter`] |
//! | GET | `/live/{vendor}` | [`SimState::live_objects`]: the live objects, sorted |
//! | GET | `/live/{vendor}/duplicates` | [`SimState::live_duplicates`]: groups of two or more |
//! | GET | `/healthz` | `ok` |

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

use crate::faults::FaultRule;
use crate::state::{SimState, Vendor};

/// The control router.
pub(crate) fn router(state: SimState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/reset", post(reset))
        .route("/state/{vendor}", get(snapshot))
        .route("/calls", get(calls).delete(clear_calls))
        .route("/faults", get(faults).post(add_faults).delete(clear_faults))
        .route("/seed/{vendor}", post(seed))
        .route(
            "/modes/cloudpass",
            get(cloudpass_modes).put(set_cloudpass_modes),
        )
        .route("/dedupe", get(dedupe_modes))
        .route("/dedupe/{vendor}", axum::routing::put(set_dedupe))
        .route("/tapkey/grant-filter", axum::routing::put(set_grant_filter))
        .route("/live/{vendor}", get(live))
        .route("/live/{vendor}/duplicates", get(live_duplicates))
        .with_state(state)
}

fn bad(status: StatusCode, message: String) -> Response {
    (status, Json(json!({"error": message}))).into_response()
}

fn vendor(v: &str) -> Result<Vendor, Response> {
    v.parse::<Vendor>()
        .map_err(|e| bad(StatusCode::NOT_FOUND, e.to_string()))
}

async fn reset(State(st): State<SimState>, Query(q): Query<HashMap<String, String>>) -> Response {
    st.reset();
    if q.get("seed").map(String::as_str) == Some("demo") {
        st.seed_demo();
    }
    StatusCode::NO_CONTENT.into_response()
}

async fn snapshot(State(st): State<SimState>, Path(v): Path<String>) -> Response {
    match vendor(&v) {
        Ok(v) => Json(st.snapshot(v)).into_response(),
        Err(r) => r,
    }
}

async fn calls(State(st): State<SimState>, Query(q): Query<HashMap<String, String>>) -> Response {
    match q.get("vendor").filter(|v| !v.is_empty()) {
        None => Json(st.calls()).into_response(),
        Some(v) => match vendor(v) {
            Ok(v) => Json(st.calls_for(v)).into_response(),
            Err(r) => r,
        },
    }
}

async fn clear_calls(State(st): State<SimState>) -> StatusCode {
    st.clear_calls();
    StatusCode::NO_CONTENT
}

async fn faults(State(st): State<SimState>) -> Response {
    Json(st.faults()).into_response()
}

async fn add_faults(State(st): State<SimState>, body: Bytes) -> Response {
    let rules: Vec<FaultRule> = match serde_json::from_slice::<FaultRule>(&body) {
        Ok(r) => vec![r],
        Err(_) => match serde_json::from_slice::<Vec<FaultRule>>(&body) {
            Ok(r) => r,
            Err(e) => {
                return bad(
                    StatusCode::BAD_REQUEST,
                    format!("expected a fault rule or an array of them: {e}"),
                );
            }
        },
    };
    for r in rules {
        st.add_fault(r);
    }
    (StatusCode::CREATED, Json(st.faults())).into_response()
}

async fn clear_faults(State(st): State<SimState>) -> StatusCode {
    st.clear_faults();
    StatusCode::NO_CONTENT
}

async fn seed(State(st): State<SimState>, Path(v): Path<String>, body: Bytes) -> Response {
    if v == "demo" {
        st.seed_demo();
        return StatusCode::NO_CONTENT.into_response();
    }
    let v = match vendor(&v) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let doc: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(d) => d,
        Err(e) => return bad(StatusCode::BAD_REQUEST, format!("invalid JSON: {e}")),
    };
    match st.seed_json(v, doc) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => bad(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
    }
}

async fn cloudpass_modes(State(st): State<SimState>) -> Response {
    Json(st.cloudpass_modes()).into_response()
}

async fn set_cloudpass_modes(State(st): State<SimState>, body: Bytes) -> Response {
    match serde_json::from_slice::<crate::cloudpass::CloudPassModes>(&body) {
        Ok(m) => {
            st.cloudpass_set_modes(m);
            Json(m).into_response()
        }
        Err(e) => bad(
            StatusCode::BAD_REQUEST,
            format!("expected CloudPass modes: {e}"),
        ),
    }
}

fn dedupe_map(st: &SimState) -> serde_json::Value {
    let map: serde_json::Map<String, serde_json::Value> = Vendor::ALL
        .iter()
        .map(|v| (v.as_str().to_owned(), json!(st.dedupe(*v))))
        .collect();
    serde_json::Value::Object(map)
}

async fn dedupe_modes(State(st): State<SimState>) -> Response {
    Json(dedupe_map(&st)).into_response()
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct DedupeBody {
    enabled: bool,
}

async fn set_dedupe(State(st): State<SimState>, Path(v): Path<String>, body: Bytes) -> Response {
    let v = match vendor(&v) {
        Ok(v) => v,
        Err(r) => return r,
    };
    match serde_json::from_slice::<DedupeBody>(&body) {
        Ok(b) => {
            st.set_dedupe(v, b.enabled);
            Json(dedupe_map(&st)).into_response()
        }
        Err(e) => bad(
            StatusCode::BAD_REQUEST,
            format!("expected {{\"enabled\": true|false}}: {e}"),
        ),
    }
}

async fn live(State(st): State<SimState>, Path(v): Path<String>) -> Response {
    match vendor(&v) {
        Ok(v) => Json(st.live_objects(v)).into_response(),
        Err(r) => r,
    }
}

async fn live_duplicates(State(st): State<SimState>, Path(v): Path<String>) -> Response {
    match vendor(&v) {
        Ok(v) => Json(st.live_duplicates(v)).into_response(),
        Err(r) => r,
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct GrantFilterBody {
    honoured: bool,
}

async fn set_grant_filter(State(st): State<SimState>, body: Bytes) -> Response {
    match serde_json::from_slice::<GrantFilterBody>(&body) {
        Ok(b) => {
            st.set_tapkey_grant_filter(b.honoured);
            Json(json!({ "honoured": b.honoured })).into_response()
        }
        Err(e) => bad(
            StatusCode::BAD_REQUEST,
            format!("expected {{\"honoured\": true|false}}: {e}"),
        ),
    }
}
