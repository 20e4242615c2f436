//! The token: who may see the dashboard at all.
//!
//! With [`DashboardOptions::token`](crate::DashboardOptions::token) set, a request passes
//! when it carries `Authorization: Bearer TOKEN`, or the session cookie that signing in
//! with the token sets (HttpOnly, SameSite=Strict, scoped to the mount path). Only the
//! sign-in form and the static assets are served without it.

use crate::context::{is_local_path, mount_path, Ctx, Dashboard};
use crate::views;
use axum::extract::{Form, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use std::sync::Arc;

/// The session cookie's name.
const COOKIE: &str = "taskmill_session";

/// Compares secrets in time that depends on their lengths only, not on where they differ.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// Whether the request carries the token or a session from signing in with it.
fn is_signed_in(headers: &HeaderMap, dash: &Dashboard) -> bool {
    let Some(token) = &dash.options.token else {
        return true;
    };
    let bearer = headers
        .get_all(header::AUTHORIZATION)
        .iter()
        .filter_map(|v| v.to_str().ok()?.strip_prefix("Bearer "))
        .any(|given| constant_time_eq(given.trim().as_bytes(), token.as_bytes()));
    bearer
        || cookie(headers, COOKIE).any(|v| constant_time_eq(v.as_bytes(), dash.session.as_bytes()))
}

/// The values of cookie `name` in the request's `Cookie` headers.
fn cookie<'a>(headers: &'a HeaderMap, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(move |pair| {
            let (key, value) = pair.trim().split_once('=')?;
            (key == name).then_some(value)
        })
}

/// Middleware: lets a request through when no token is set or it carries one; otherwise a
/// browser asking for a page is sent to the sign-in form and anything else gets 401.
pub(crate) async fn require_token(
    State(dash): State<Arc<Dashboard>>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path();
    let public = path == "/login" || path.starts_with("/assets/");
    if public || is_signed_in(request.headers(), &dash) {
        return next.run(request).await;
    }
    let wants_page = request.method() == Method::GET
        && request
            .headers()
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("text/html"));
    if wants_page {
        let (parts, _) = request.into_parts();
        let here = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let next: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("next", here)
            .finish();
        return Redirect::to(&format!("{}/login?{next}", mount_path(&parts))).into_response();
    }
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer realm=\"taskmill\"")],
        "a token is required: send Authorization: Bearer TOKEN, or sign in\n",
    )
        .into_response()
}

/// The query of the sign-in page.
#[derive(Deserialize)]
pub(crate) struct LoginQuery {
    next: Option<String>,
}

/// `GET /login`: the sign-in form.
pub(crate) async fn login_page(
    ctx: Ctx,
    axum::extract::Query(query): axum::extract::Query<LoginQuery>,
) -> Response {
    let next = query.next.filter(|n| is_local_path(n));
    views::login(&ctx, next.as_deref(), None).into_response()
}

/// The sign-in form's fields.
#[derive(Deserialize)]
pub(crate) struct Login {
    token: String,
    next: Option<String>,
}

/// `POST /login`: checks the token and sets the session cookie.
pub(crate) async fn login(ctx: Ctx, headers: HeaderMap, Form(form): Form<Login>) -> Response {
    let next = form.next.filter(|n| is_local_path(n));
    let Some(token) = &ctx.options().token else {
        return Redirect::to(&ctx.url(next.as_deref().unwrap_or("/"))).into_response();
    };
    if !constant_time_eq(form.token.as_bytes(), token.as_bytes()) {
        let page = views::login(&ctx, next.as_deref(), Some("That token is not the one."));
        return (StatusCode::UNAUTHORIZED, page).into_response();
    }
    // Secure only over HTTPS: a cookie marked Secure is dropped on plain http://127.0.0.1.
    let secure = headers
        .get(header::ORIGIN)
        .and_then(|o| o.to_str().ok())
        .is_some_and(|o| o.starts_with("https://"));
    let cookie = format!(
        "{COOKIE}={}; Path={}; HttpOnly; SameSite=Strict{}",
        ctx.dash.session,
        ctx.cookie_path(),
        if secure { "; Secure" } else { "" }
    );
    session_response(&ctx, &cookie, next.as_deref().unwrap_or("/"))
}

/// `POST /logout`: forgets the session cookie.
pub(crate) async fn logout(ctx: Ctx) -> Response {
    let cookie = format!(
        "{COOKIE}=; Path={}; HttpOnly; SameSite=Strict; Max-Age=0",
        ctx.cookie_path()
    );
    session_response(&ctx, &cookie, "/login")
}

fn session_response(ctx: &Ctx, cookie: &str, to: &str) -> Response {
    let mut response = Redirect::to(&ctx.url(to)).into_response();
    if let Ok(value) = HeaderValue::from_str(cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_eq_compares_whole_secrets() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret!"));
        assert!(!constant_time_eq(b"", b"x"));
    }

    #[test]
    fn cookies_are_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.append(header::COOKIE, "a=1; taskmill_session=abc".parse().unwrap());
        headers.append(header::COOKIE, "b=2".parse().unwrap());
        assert_eq!(cookie(&headers, COOKIE).collect::<Vec<_>>(), ["abc"]);
        assert_eq!(cookie(&headers, "b").collect::<Vec<_>>(), ["2"]);
    }
}
