//! The page frame, shared bits of markup and the static files (htmx vendored, no CDN).

use axum::{
    http::{StatusCode, header},
    response::IntoResponse,
};
use maud::{DOCTYPE, Markup, PreEscaped, html};

use crate::{
    PREFIX,
    session::{CSRF_FIELD, Role, Session},
};

/// htmx 2.0.11, vendored unmodified (0BSD, see static/HTMX-LICENSE.txt).
const HTMX: &str = include_str!("../static/htmx.min.js");
/// The console's stylesheet.
const CSS: &str = include_str!("../static/console.css");

/// `GET /console/static/htmx.min.js`.
pub async fn htmx() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        HTMX,
    )
}

/// `GET /console/static/console.css`.
pub async fn css() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        CSS,
    )
}

/// A console URL (`/console` + `path`).
pub fn url(path: &str) -> String {
    format!("{PREFIX}{path}")
}

/// The screens, in the navigation's order.
pub const SCREENS: &[(&str, &str)] = &[
    ("connections", "Connections"),
    ("bookings", "Bookings"),
    ("sync", "Sync"),
    ("dlq", "Dead letters"),
    ("webhooks", "Webhooks"),
];

fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) " · accesshub console" }
            link rel="stylesheet" href=(url("/static/console.css"));
            script src=(url("/static/htmx.min.js")) defer {}
        }
    }
}

/// A full page for a logged-in operator: header with navigation, who is logged in (role and
/// tenants) and logout; htmx requests carry the CSRF token as a header.
pub fn page(s: &Session, active: &str, title: &str, body: Markup) -> Markup {
    let hx_headers = serde_json::json!({ "X-CSRF-Token": s.csrf }).to_string();
    let tenants = match &s.tenants {
        None => "all tenants".to_owned(),
        Some(t) => t.iter().cloned().collect::<Vec<_>>().join(", "),
    };
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body hx-headers=(hx_headers) {
                header.top {
                    a.brand href=(url("/")) { "accesshub" }
                    nav {
                        @for (path, label) in SCREENS {
                            a href=(url(&format!("/{path}"))) class=[(*path == active).then_some("active")] { (label) }
                        }
                    }
                    div.who {
                        span #who { (s.name) " · " strong { (s.role.as_str()) } " · " (tenants) }
                        form method="post" action=(url("/logout")) {
                            (csrf(s))
                            button.link type="submit" { "Log out" }
                        }
                    }
                }
                main {
                    h1 { (title) }
                    @if !s.can(Role::Operator) {
                        p.notice #read-only { "Read-only: your token can look but not change anything." }
                    }
                    (body)
                }
            }
        }
    }
}

/// The hidden CSRF field every form carries.
pub fn csrf(s: &Session) -> Markup {
    html! { input type="hidden" name=(CSRF_FIELD) value=(s.csrf); }
}

/// A page without a session (login, errors before login).
pub fn bare(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body {
                header.top { a.brand href=(url("/")) { "accesshub" } }
                main.narrow { h1 { (title) } (body) }
            }
        }
    }
}

/// The page shown for a refused or failed request.
pub fn error_page(status: StatusCode, message: &str) -> Markup {
    let title = match status {
        StatusCode::UNAUTHORIZED => "Please log in",
        StatusCode::FORBIDDEN => "Not allowed",
        StatusCode::NOT_FOUND => "Not found",
        StatusCode::BAD_REQUEST => "Please check your input",
        _ => "Something went wrong",
    };
    bare(
        title,
        html! {
            p.error role="alert" #error-message { (message) }
            p { a href=(url("/")) { "Back to the console" } }
        },
    )
}

/// A labelled input with its error right under it; keeps what the operator typed.
pub fn field(
    label: &str,
    name: &str,
    value: &str,
    error: Option<&str>,
    hint: Option<&str>,
) -> Markup {
    html! {
        label.field {
            span { (label) }
            input name=(name) value=(value) aria-invalid=[error.map(|_| "true")];
            @if let Some(h) = hint { small.hint { (h) } }
            @if let Some(e) = error { small.error data-field=(name) { (e) } }
        }
    }
}

/// A write-only secret input: never filled, says whether one is stored (`data-secret`); left
/// empty it keeps the stored one, except where the API asks for it again (a changed
/// endpoint), whose words come back as `error`.
pub fn secret_field(
    label: &str,
    name: &str,
    set: bool,
    exists: bool,
    error: Option<&str>,
) -> Markup {
    html! {
        label.field {
            span { (label) }
            input type="password" name=(name) autocomplete="new-password"
                placeholder=(if set { "set: leave empty to keep it" } else { "not set" })
                aria-invalid=[error.map(|_| "true")];
            small.hint { "Write-only: it is never shown again. Currently "
                strong data-secret=(name) { @if set { "set" } @else { "not set" } } "."
                @if exists { " Changing the server or URL needs it typed again." } }
            @if let Some(e) = error { small.error data-field=(name) { (e) } }
        }
    }
}

/// A one-line verdict (`ok` or `bad`), for htmx swaps.
pub fn verdict(ok: bool, text: &str) -> Markup {
    html! {
        div class=(if ok { "verdict ok" } else { "verdict bad" }) role="status" { (text) }
    }
}

/// A trace id as an SRE uses it: the 32 hex digits the trace UI searches for (as in
/// `traceparent`, the exported spans and every JSON log line), selected whole with one
/// click, and a link into the trace UI when the console knows its URL
/// (`ACCESSHUB_CONSOLE_TRACE_URL`). `-` when nothing was traced.
pub fn trace_ref(trace_id: Option<&str>, trace_url: Option<&str>) -> Markup {
    let Some(t) = trace_id.filter(|t| !t.is_empty()) else {
        return html! { span.muted { "-" } };
    };
    // Only an id of the traceparent shape goes into a URL.
    let link = trace_url
        .filter(|_| t.len() == 32 && t.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(|tpl| tpl.replace("{trace_id}", t));
    html! {
        code.trace data-trace-id=(t) { (t) }
        @if let Some(href) = link { " " a.trace-link href=(href) target="_blank" rel="noopener noreferrer" { "open trace" } }
    }
}

/// Time as operators read it (UTC, to the second).
pub fn when(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// Raw HTML from a trusted constant.
pub fn raw(s: &'static str) -> PreEscaped<&'static str> {
    PreEscaped(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The id is always the text; the link only with a configured trace UI, and only for an
    /// id of the traceparent shape.
    #[test]
    fn a_trace_id_is_text_and_a_link_into_the_configured_trace_ui() {
        let t = "4bf92f3577b34da6a3ce929d0e0e4736";
        let plain = trace_ref(Some(t), None).into_string();
        assert_eq!(
            plain,
            format!("<code class=\"trace\" data-trace-id=\"{t}\">{t}</code>")
        );
        let linked =
            trace_ref(Some(t), Some("https://jaeger.example/trace/{trace_id}")).into_string();
        assert!(
            linked.contains(&format!("href=\"https://jaeger.example/trace/{t}\"")),
            "{linked}"
        );
        let odd = trace_ref(Some("x\"><script>"), Some("https://j/{trace_id}")).into_string();
        assert!(!odd.contains("href") && !odd.contains("<script>"), "{odd}");
        assert_eq!(
            trace_ref(None, None).into_string(),
            "<span class=\"muted\">-</span>"
        );
    }
}
