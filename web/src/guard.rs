//! What a request that changes something must show: that it comes from the dashboard's
//! own pages (same origin, and the form's CSRF token), and that changes are allowed.
//!
//! Every route that is not a GET is guarded here, so a handler cannot forget it.

use crate::auth::constant_time_eq;
use crate::context::Dashboard;
use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

/// The largest form body read; the dashboard's forms are a few fields.
const MAX_FORM: usize = 64 * 1024;

/// The form field that carries the CSRF token.
pub(crate) const CSRF_FIELD: &str = "csrf";

/// Middleware: refuses a request that would change something unless it is same-origin,
/// the dashboard is not read-only, and its form carries the router's CSRF token (403).
///
/// Signing in is exempt from the token and from read-only (it changes no task), not from
/// the origin check; signing out is exempt from read-only.
pub(crate) async fn guard_writes(
    State(dash): State<Arc<Dashboard>>,
    request: Request,
    next: Next,
) -> Response {
    if matches!(*request.method(), Method::GET | Method::HEAD) {
        return next.run(request).await;
    }
    if !is_same_origin(request.headers()) {
        return refuse("cross-origin request refused");
    }
    let path = request.uri().path();
    if path == "/login" {
        return next.run(request).await;
    }
    if dash.options.read_only && path != "/logout" {
        return refuse("the dashboard is read-only");
    }
    let (parts, body) = request.into_parts();
    let Ok(bytes) = to_bytes(body, MAX_FORM).await else {
        return (StatusCode::PAYLOAD_TOO_LARGE, "form too large\n").into_response();
    };
    let token_ok = form_urlencoded::parse(&bytes)
        .any(|(k, v)| k == CSRF_FIELD && constant_time_eq(v.as_bytes(), dash.csrf.as_bytes()));
    if !token_ok {
        return refuse("missing or stale form token: reload the page and try again");
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

fn refuse(why: &'static str) -> Response {
    (StatusCode::FORBIDDEN, format!("{why}\n")).into_response()
}

/// Whether a browser says the request comes from the dashboard's own origin.
///
/// `Sec-Fetch-Site` decides where a browser sends it (all current ones do): only
/// `same-origin`, or `none` (typed by the user), passes. Otherwise an `Origin` must name
/// the `Host` the request was sent to (or the proxy's `X-Forwarded-Host`). A request with
/// neither header does not come from a browser's form or script, so cross-site forgery
/// does not apply to it; the CSRF token is still required.
fn is_same_origin(headers: &HeaderMap) -> bool {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = text("sec-fetch-site") {
        return matches!(site, "same-origin" | "none");
    }
    let Some(origin) = text(header::ORIGIN.as_str()) else {
        return true;
    };
    let Some(authority) = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
    else {
        // "null" (a sandboxed frame, a file:// page) or a scheme no form of ours uses.
        return false;
    };
    [text(header::HOST.as_str()), text("x-forwarded-host")]
        .into_iter()
        .flatten()
        .any(|host| host.eq_ignore_ascii_case(authority))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(*k, v.parse().unwrap());
        }
        map
    }

    #[test]
    fn fetch_metadata_decides_when_present() {
        assert!(is_same_origin(&headers(&[(
            "sec-fetch-site",
            "same-origin"
        )])));
        assert!(!is_same_origin(&headers(&[(
            "sec-fetch-site",
            "cross-site"
        )])));
        assert!(!is_same_origin(&headers(&[(
            "sec-fetch-site",
            "same-site"
        )])));
        // The Origin cannot overrule a cross-site fetch.
        assert!(!is_same_origin(&headers(&[
            ("sec-fetch-site", "cross-site"),
            ("origin", "http://127.0.0.1:8080"),
            ("host", "127.0.0.1:8080"),
        ])));
    }

    #[test]
    fn origin_must_name_the_host() {
        let host = ("host", "127.0.0.1:8080");
        assert!(is_same_origin(&headers(&[
            ("origin", "http://127.0.0.1:8080"),
            host
        ])));
        assert!(!is_same_origin(&headers(&[
            ("origin", "http://evil.example"),
            host
        ])));
        assert!(!is_same_origin(&headers(&[("origin", "null"), host])));
        assert!(is_same_origin(&headers(&[
            ("origin", "https://tasks.example"),
            host,
            ("x-forwarded-host", "tasks.example"),
        ])));
        assert!(is_same_origin(&headers(&[host])));
    }
}
