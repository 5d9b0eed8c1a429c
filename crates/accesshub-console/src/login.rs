//! Login (an admin-API token for a session cookie) and logout.

use axum::{
    Extension, Form,
    extract::State,
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Redirect, Response},
};
use maud::{Markup, html};
use serde::Deserialize;

use crate::{
    ConsoleState,
    error::ConsoleError,
    html::{bare, url},
    session::{self, Session},
};

fn login_page(error: Option<&str>) -> Markup {
    bare(
        "Log in",
        html! {
            p { "Paste an accesshub API token (from your administrator, or "
                code { "accessctl tokens create" } "). The console keeps it only for this login; "
                "you stay logged in with a session cookie." }
            form.card method="post" action=(url("/login")) #login {
                label.field {
                    span { "API token" }
                    input type="password" name="token" autocomplete="off" required
                        aria-invalid=[error.map(|_| "true")];
                    @if let Some(e) = error { small.error data-field="token" { (e) } }
                }
                button type="submit" { "Log in" }
            }
        },
    )
}

/// `GET /console/login`.
pub async fn form() -> Markup {
    login_page(None)
}

/// The login form.
#[derive(Debug, Deserialize)]
pub struct LoginForm {
    token: String,
}

/// `POST /console/login`: resolves the token like the admin API does; on success opens a
/// session and redirects to the console.
pub async fn submit(
    State(state): State<ConsoleState>,
    Form(f): Form<LoginForm>,
) -> Result<Response, ConsoleError> {
    let token = f.token.trim();
    if token.is_empty() {
        return Ok((
            StatusCode::BAD_REQUEST,
            login_page(Some("Paste your API token here.")),
        )
            .into_response());
    }
    let op = (state.resolver)(token.to_owned())
        .await
        .map_err(|e| ConsoleError::BadRequest(format!("The token could not be checked: {e}")))?;
    let Some(op) = op else {
        return Ok((
            StatusCode::UNAUTHORIZED,
            login_page(Some(
                "This token is unknown, revoked or expired. Ask your administrator for a valid one.",
            )),
        )
            .into_response());
    };
    let (id, expires) = session::open(&state, token, &op).await?;
    let max_age = (expires - chrono::Utc::now()).to_std().unwrap_or_default();
    tracing::info!(by = %op.name, role = op.role.as_str(), "console login");
    Ok((
        [(
            header::SET_COOKIE,
            session::set_cookie(&state, &id, max_age),
        )],
        Redirect::to(&url("/connections")),
    )
        .into_response())
}

/// `POST /console/logout`: ends the session.
pub async fn logout(
    State(state): State<ConsoleState>,
    Extension(_who): Extension<Session>,
    headers: HeaderMap,
) -> Result<Response, ConsoleError> {
    if let Some(id) = session::cookie_value(&headers) {
        session::close(&state, &id).await?;
    }
    Ok((
        [(header::SET_COOKIE, session::clear_cookie())],
        Redirect::to(&url("/login")),
    )
        .into_response())
}
