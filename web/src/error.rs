//! A request that could not be served, as a page.

use crate::context::Ctx;
use crate::views;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use taskmill_core::ErrorKind;

/// What a handler returns when it cannot serve the request.
pub(crate) struct Failure {
    ctx: Ctx,
    status: StatusCode,
    message: String,
}

impl Ctx {
    /// A failure with this status and message.
    pub(crate) fn failure(&self, status: StatusCode, message: impl Into<String>) -> Failure {
        Failure {
            ctx: self.clone(),
            status,
            message: message.into(),
        }
    }

    /// The store's error, with the status that says whose fault it is.
    pub(crate) fn store_failure(&self, error: taskmill_core::Error) -> Failure {
        self.failure(status_of(&error), error.to_string())
    }

    /// The store's error after what could not be done (`"Cannot list the schedules"`):
    /// for the calls whose error alone would not tell an operator which part failed, such
    /// as a store that keeps no schedules answering `Unsupported`.
    pub(crate) fn store_failure_while(&self, doing: &str, error: taskmill_core::Error) -> Failure {
        self.failure(status_of(&error), format!("{doing}: {error}"))
    }
}

/// The status that says whose fault a store's error is.
fn status_of(error: &taskmill_core::Error) -> StatusCode {
    match error.kind() {
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Misuse => StatusCode::BAD_REQUEST,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Unsupported => StatusCode::NOT_IMPLEMENTED,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let page = views::error(&self.ctx, self.status, &self.message);
        (self.status, [(header::CACHE_CONTROL, "no-store")], page).into_response()
    }
}
