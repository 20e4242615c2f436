#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod actions;
mod assets;
mod auth;
mod context;
mod data;
mod error;
mod guard;
mod live;
mod options;
mod pages;
mod unworked;
mod views;

pub use options::DashboardOptions;

use axum::http::{header, HeaderValue};
use axum::middleware::{from_fn_with_state, map_response};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use context::Dashboard;
use std::sync::Arc;
use taskmill_core::Store;

/// The dashboard for `store`, as a router to serve on its own or to
/// [`nest`](Router::nest) under a path of an application's router.
///
/// Every link and asset URL is built from the path the router is mounted at, so it works
/// at any prefix. The router needs no particular server: it is a tower service.
///
/// # Panics
/// If the operating system cannot supply the random bytes of the router's secrets.
pub fn router(store: Arc<dyn Store>, options: DashboardOptions) -> Router {
    let source = data::Source::new(store, options.clock.clone(), options.unworked_after);
    let dash = Arc::new(Dashboard::new(source, options));
    Router::new()
        .route("/", get(pages::overview))
        .route("/queues/{state}", get(pages::queue))
        .route("/tasks", get(pages::find))
        .route("/tasks/{id}", get(pages::task))
        .route("/tasks/{id}/retry", post(actions::retry))
        .route("/tasks/{id}/delete", post(actions::delete))
        .route("/tasks/{id}/cancel", post(actions::cancel))
        .route("/topics/pause", post(actions::pause))
        .route("/topics/resume", post(actions::resume))
        .route("/schedules", get(pages::schedules))
        .route("/schedules/pause", post(actions::pause_schedule))
        .route("/schedules/resume", post(actions::resume_schedule))
        .route("/bulk", get(pages::confirm_bulk).post(actions::bulk))
        .route("/events", get(live::events))
        .route("/assets/{name}", get(assets::serve))
        .route("/login", get(auth::login_page).post(auth::login))
        .route("/logout", post(auth::logout))
        .fallback(pages::not_found)
        // Outermost last: headers on every response, then the token, then the write guard.
        .layer(from_fn_with_state(dash.clone(), guard::guard_writes))
        .layer(from_fn_with_state(dash.clone(), auth::require_token))
        .layer(map_response(secure_headers))
        .with_state(dash)
}

/// Headers that keep a page from being framed, sniffed, or made to run anything but the
/// dashboard's own script.
async fn secure_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    let set = [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "same-origin"),
    ];
    for (name, value) in set {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}
