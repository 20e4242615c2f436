//! The router's shared state, and what each request knows about where it is mounted.

use crate::data::Source;
use crate::options::DashboardOptions;
use axum::extract::{FromRequestParts, OriginalUri};
use axum::http::request::Parts;
use axum::http::Uri;
use std::convert::Infallible;
use std::sync::Arc;

/// State shared by every request to one router.
pub(crate) struct Dashboard {
    pub(crate) source: Source,
    pub(crate) options: DashboardOptions,
    /// The value forms carry in their `csrf` field; random per router, so a page of
    /// another origin cannot know it.
    pub(crate) csrf: String,
    /// The session cookie's value after a sign-in; random per router, so the token itself
    /// never sits in a browser, and a restart signs everyone out.
    pub(crate) session: String,
}

impl Dashboard {
    pub(crate) fn new(source: Source, options: DashboardOptions) -> Self {
        Dashboard {
            source,
            options,
            csrf: random_hex(),
            session: random_hex(),
        }
    }
}

/// 32 random bytes from the operating system, as hex.
fn random_hex() -> String {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes).expect("the operating system's random source failed");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The path the dashboard is mounted under ("" at the root, "/admin/tasks" when nested
/// there): the part of the original URI that the nesting router stripped.
pub(crate) fn mount_path(parts: &Parts) -> String {
    let inner = parts.uri.path();
    let original = parts
        .extensions
        .get::<OriginalUri>()
        .map_or(inner, |o| o.0.path());
    let base = match original.strip_suffix(inner) {
        Some(base) => base,
        // `nest("/x", ..)` serves "/x" as the inner "/".
        None if inner == "/" => original,
        None => "",
    };
    base.trim_end_matches('/').to_owned()
}

/// What a handler needs to render a page: the shared state and where the router sits.
#[derive(Clone)]
pub(crate) struct Ctx {
    pub(crate) dash: Arc<Dashboard>,
    /// See [`mount_path`].
    pub(crate) base: Arc<str>,
    /// This request's path and query below the mount point, for links back to it.
    pub(crate) here: Arc<str>,
}

impl Ctx {
    /// An absolute URL path to `path` (which starts with `/`) inside the dashboard.
    ///
    /// The dashboard's root is the mount path itself ("/admin/tasks", not
    /// "/admin/tasks/"): that is the one a nesting router serves.
    pub(crate) fn url(&self, path: &str) -> String {
        match path {
            "/" if !self.base.is_empty() => self.base.to_string(),
            _ => format!("{}{path}", self.base),
        }
    }

    /// The cookie path that covers the dashboard and nothing beside it.
    pub(crate) fn cookie_path(&self) -> &str {
        if self.base.is_empty() {
            "/"
        } else {
            &self.base
        }
    }

    pub(crate) fn options(&self) -> &DashboardOptions {
        &self.dash.options
    }

    pub(crate) fn source(&self) -> &Source {
        &self.dash.source
    }

    /// Whether buttons that change the store are shown.
    pub(crate) fn can_act(&self) -> bool {
        !self.dash.options.read_only
    }
}

impl FromRequestParts<Arc<Dashboard>> for Ctx {
    type Rejection = Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        dash: &Arc<Dashboard>,
    ) -> Result<Self, Self::Rejection> {
        Ok(Ctx {
            dash: dash.clone(),
            base: mount_path(parts).into(),
            here: here(&parts.uri).into(),
        })
    }
}

fn here(uri: &Uri) -> &str {
    uri.path_and_query().map_or("/", |p| p.as_str())
}

/// Whether `next` is a path inside the dashboard that a redirect may send a browser to:
/// it starts with one `/` and can be read as nothing but a path (no `//host`, no `/\host`,
/// no control characters).
pub(crate) fn is_local_path(next: &str) -> bool {
    let mut chars = next.chars();
    chars.next() == Some('/')
        && !matches!(chars.next(), Some('/' | '\\'))
        && !next.chars().any(|c| c.is_control() || c == '\\')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(original: &str, inner: &str) -> Parts {
        let (mut parts, ()) = axum::http::Request::builder()
            .uri(inner)
            .body(())
            .unwrap()
            .into_parts();
        parts
            .extensions
            .insert(OriginalUri(original.parse().unwrap()));
        parts
    }

    #[test]
    fn mount_path_is_what_nesting_stripped() {
        assert_eq!(mount_path(&parts("/tasks/7", "/tasks/7")), "");
        assert_eq!(
            mount_path(&parts("/admin/q/tasks/7", "/tasks/7")),
            "/admin/q"
        );
        assert_eq!(mount_path(&parts("/admin/q", "/")), "/admin/q");
        assert_eq!(mount_path(&parts("/admin/q/", "/")), "/admin/q");
        assert_eq!(mount_path(&parts("/", "/")), "");
    }

    #[test]
    fn only_plain_paths_are_local() {
        for ok in ["/", "/queues/dead?topic=a%2Fb", "/tasks/1"] {
            assert!(is_local_path(ok), "{ok}");
        }
        for bad in [
            "",
            "//evil.example",
            "/\\evil.example",
            "https://x",
            "/a\nb",
            "x/y",
        ] {
            assert!(!is_local_path(bad), "{bad}");
        }
    }
}
