//! Store URLs: `scheme://location?key=value&…`, split the same way for every backend.

use crate::error::{Error, Result};

/// A store URL split into its location and options.
///
/// ```
/// use taskmill_core::raw::StoreUrl;
///
/// let url = StoreUrl::parse("sqlite://data/tasks.db?durability=full", "sqlite", "sqlite://PATH")?;
/// assert_eq!(url.location("database file")?, "data/tasks.db");
/// assert_eq!(url.options().collect::<Vec<_>>(), vec![("durability", "full")]);
/// # Ok::<_, taskmill_core::Error>(())
/// ```
#[derive(Debug, Clone, Copy)]
pub struct StoreUrl<'a> {
    url: &'a str,
    expected: &'a str,
    location: &'a str,
    query: Option<&'a str>,
}

impl<'a> StoreUrl<'a> {
    /// Splits `url`, which must start with `scheme://`. `expected` shows the form in error
    /// messages (e.g. `sqlite://PATH`).
    pub fn parse(url: &'a str, scheme: &str, expected: &'a str) -> Result<Self> {
        let rest = url
            .strip_prefix(scheme)
            .and_then(|r| r.strip_prefix("://"))
            .ok_or_else(|| {
                Error::misuse(format!(
                    "not a {scheme} store URL: {url:?} (expected {expected})"
                ))
            })?;
        let (location, query) = match rest.split_once('?') {
            Some((location, query)) => (location, Some(query)),
            None => (rest, None),
        };
        Ok(StoreUrl {
            url,
            expected,
            location,
            query,
        })
    }

    /// The part between `://` and `?`, which must not be empty; `what` names it in the
    /// error (e.g. "database file").
    pub fn location(&self, what: &str) -> Result<&'a str> {
        if self.location.is_empty() {
            return Err(Error::misuse(format!(
                "{:?} names no {what} (expected {})",
                self.url, self.expected
            )));
        }
        Ok(self.location)
    }

    /// The `key=value` options, in order (`key` alone gives an empty value).
    pub fn options(&self) -> impl Iterator<Item = (&'a str, &'a str)> {
        self.query
            .into_iter()
            .flat_map(|q| q.split('&'))
            .filter(|pair| !pair.is_empty())
            .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
    }

    /// The error for an option value that does not parse.
    pub fn invalid(&self, key: &str, value: &str) -> Error {
        Error::misuse(format!(
            "invalid value {value:?} for {key} in {:?}",
            self.url
        ))
    }

    /// The error for an option the store does not know.
    pub fn unknown(&self, key: &str, known: &[&str]) -> Error {
        Error::misuse(format!(
            "unknown option {key:?} in {:?} (known: {})",
            self.url,
            known.join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn urls_split_into_location_and_options() {
        let url = StoreUrl::parse("sled://a/b?flush=always&&x", "sled", "sled://DIR").unwrap();
        assert_eq!(url.location("directory").unwrap(), "a/b");
        assert_eq!(
            url.options().collect::<Vec<_>>(),
            vec![("flush", "always"), ("x", "")]
        );
        assert_eq!(url.unknown("x", &["flush"]).kind(), ErrorKind::Misuse);
        for bad in ["sledx://a", "sqlite://a", "sled:/a"] {
            assert_eq!(
                StoreUrl::parse(bad, "sled", "sled://DIR")
                    .unwrap_err()
                    .kind(),
                ErrorKind::Misuse,
                "{bad}"
            );
        }
        let empty = StoreUrl::parse("sled://?flush=always", "sled", "sled://DIR").unwrap();
        assert_eq!(
            empty.location("directory").unwrap_err().kind(),
            ErrorKind::Misuse
        );
    }
}
