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
