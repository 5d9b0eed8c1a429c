//! iPassan HTTP handlers.

use axum::Router;
use axum::http::StatusCode;

use super::error;
use crate::faults::{LayerCtx, vendor_layer};
use crate::state::{SimState, Vendor};

/// The iPassan router (everything under `/api/v1`).
pub(crate) fn router(state: SimState) -> Router {
    let ctx = LayerCtx {
        state: state.clone(),
        vendor: Vendor::IPassan,
    };
    Router::new()
        .fallback(|| async { error(StatusCode::NOT_FOUND, "not found") })
        .with_state(state)
        .layer(axum::middleware::from_fn_with_state(ctx, vendor_layer))
}
