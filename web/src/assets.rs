//! The stylesheet, script and icon, compiled into the binary: nothing is fetched from
//! anywhere else, so the dashboard works offline and needs no build step.

use crate::context::Ctx;
use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use std::hash::{Hash, Hasher};
use std::sync::OnceLock;

/// One of the dashboard's static files.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Asset {
    Css,
    Js,
    Icon,
}

impl Asset {
    const ALL: [Asset; 3] = [Asset::Css, Asset::Js, Asset::Icon];

    fn name(self) -> &'static str {
        match self {
            Asset::Css => "app.css",
            Asset::Js => "app.js",
            Asset::Icon => "icon.svg",
        }
    }

    fn body(self) -> &'static str {
        match self {
            Asset::Css => include_str!("../assets/app.css"),
            Asset::Js => include_str!("../assets/app.js"),
            Asset::Icon => include_str!("../assets/icon.svg"),
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Asset::Css => "text/css; charset=utf-8",
            Asset::Js => "text/javascript; charset=utf-8",
            Asset::Icon => "image/svg+xml",
        }
    }

    /// The asset's URL, versioned by its content so browsers may cache it for good.
    pub(crate) fn url(self, ctx: &Ctx) -> String {
        ctx.url(&format!("/assets/{}?v={}", self.name(), version()))
    }
}

/// A hash of every asset: changes whenever one of them does.
fn version() -> &'static str {
    static VERSION: OnceLock<String> = OnceLock::new();
    VERSION.get_or_init(|| {
        // `DefaultHasher::new` has fixed keys: every process of one build agrees.
        let mut hasher = std::hash::DefaultHasher::new();
        for asset in Asset::ALL {
            asset.body().hash(&mut hasher);
        }
        format!("{:016x}", hasher.finish())
    })
}

/// `GET /assets/{name}`.
pub(crate) async fn serve(Path(name): Path<String>) -> Response {
    let Some(asset) = Asset::ALL.into_iter().find(|a| a.name() == name) else {
        return (StatusCode::NOT_FOUND, "no such asset\n").into_response();
    };
    (
        [
            (header::CONTENT_TYPE, asset.content_type()),
            (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
        ],
        asset.body(),
    )
        .into_response()
}
