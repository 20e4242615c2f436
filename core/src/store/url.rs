//! Store URLs: `scheme://location?key=value&…`, parsed the same way for every backend.
//!
//! A URL names a store in one of two shapes:
//!
//! - a store on this machine names a path: `sqlite://data/tasks.db`, `sqlite:///abs/tasks.db`,
//!   `sqlite://:memory:`, `sled://dir`, `memory://`. [`StoreUrl::location`] gives it.
//! - a store on a server names the server as the URL authority:
//!   `redis://user:password@host:6379/0`. [`StoreUrl::server`] gives its parts.
//!
//! Every part is percent-decoded, so a password with `@`, `:`, `/` or `%` in it is written
//! `%40`, `%3A`, `%2F`, `%25`. The `url` crate parses the server shape and the options (as
//! `application/x-www-form-urlencoded`, so `+` in an option is a space). A path is not
//! parsed as an authority, which would turn `:memory:` into a bad port, normalize `a/../b`
//! into `a/b`, and lower `Data/` to a host: the text between `://` and `?` is only
//! percent-decoded.
//!
//! A URL may hold a password, so neither `Display`, `Debug` nor any error built here shows
//! it: they print the URL through [`StoreUrl::redact`].

use crate::error::{Error, Result};
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, CONTROLS};
use std::borrow::Cow;
use std::fmt;

/// What [`StoreUrl::with_location`] encodes: what would end the location early (`?`, `#`),
/// start an escape (`%`), or not be text.
const LOCATION: &AsciiSet = &CONTROLS.add(b'%').add(b'?').add(b'#');

/// A store URL, split into its scheme, its location and its options, each percent-decoded.
///
/// ```
/// use taskmill_core::raw::StoreUrl;
///
/// let url = StoreUrl::parse("sqlite://data/my%20tasks.db?durability=full", &["sqlite"], "sqlite://PATH")?;
/// assert_eq!(url.location("database file")?, "data/my tasks.db");
/// assert_eq!(url.options().collect::<Vec<_>>(), vec![("durability", "full")]);
///
/// let url = StoreUrl::parse("redis://app:p%40ss@cache:6380/2", &["redis"], "redis://HOST")?;
/// let server = url.server()?;
/// assert_eq!((server.host.as_str(), server.port, server.path.as_str()), ("cache", Some(6380), "2"));
/// assert_eq!(server.password.as_deref(), Some("p@ss"));
/// assert!(!format!("{url:?}").contains("p%40ss"));
/// # Ok::<_, taskmill_core::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct StoreUrl {
    /// The URL as given; it may hold a password.
    text: String,
    /// The length of the scheme at the start of `text`.
    scheme_len: usize,
    /// `text` from after `://` up to the `?`, if any.
    location_end: usize,
    location: String,
    options: Vec<(String, String)>,
    /// The form shown in errors, e.g. `sqlite://PATH`.
    expected: String,
}

impl StoreUrl {
    /// Parses the URL of a store whose schemes are `schemes`. `expected` shows the form in
    /// error messages (e.g. `sqlite://PATH`).
    ///
    /// Fails with `Misuse` when `url` is not `scheme://…` with one of `schemes`, has a
    /// `#fragment`, or does not percent-decode to UTF-8.
    pub fn parse(url: &str, schemes: &[&str], expected: &str) -> Result<StoreUrl> {
        let parsed = Self::split(url, expected)?;
        if !schemes.contains(&parsed.scheme()) {
            return Err(parsed.error(format!(
                "not a {} store URL",
                schemes.first().copied().unwrap_or("known")
            )));
        }
        Ok(parsed)
    }

    /// Parses a URL of any scheme: to tell which store it names, or to derive another
    /// location from it.
    pub fn parse_any(url: &str) -> Result<StoreUrl> {
        Self::split(url, "scheme://location")
    }

    fn split(text: &str, expected: &str) -> Result<StoreUrl> {
        let mut url = StoreUrl {
            text: text.to_owned(),
            scheme_len: 0,
            location_end: 0,
            location: String::new(),
            options: Vec::new(),
            expected: expected.to_owned(),
        };
        let Some((scheme, rest)) = text.split_once("://") else {
            return Err(url.error("not a store URL"));
        };
        let mut chars = scheme.chars();
        let valid_scheme = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
            && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
        if !valid_scheme {
            return Err(url.error("not a store URL"));
        }
        if rest.contains('#') {
            return Err(url.error("a store URL takes no #fragment (write `#` as %23)"));
        }
        let (location, query) = match rest.split_once('?') {
            Some((location, query)) => (location, Some(query)),
            None => (rest, None),
        };
        url.scheme_len = scheme.len();
        url.location_end = scheme.len() + "://".len() + location.len();
        url.location = url.decode(location, "location")?.into_owned();
        url.options = query
            .map(|q| {
                url::form_urlencoded::parse(q.as_bytes())
                    .into_owned()
                    .collect()
            })
            .unwrap_or_default();
        Ok(url)
    }

    fn decode<'t>(&self, text: &'t str, what: &str) -> Result<Cow<'t, str>> {
        percent_decode_str(text).decode_utf8().map_err(|e| {
            self.error(format!("the {what} is not UTF-8 once decoded"))
                .with_source(e)
        })
    }

    /// The scheme, e.g. `sqlite`.
    pub fn scheme(&self) -> &str {
        &self.text[..self.scheme_len]
    }

    /// The decoded part between `://` and `?`, which must not be empty; `what` names it in
    /// the error (e.g. "database file").
    pub fn location(&self, what: &str) -> Result<&str> {
        if self.location.is_empty() {
            return Err(self.error(format!("names no {what}")));
        }
        Ok(&self.location)
    }

    /// The decoded `key=value` options, in order (`key` alone gives an empty value).
    pub fn options(&self) -> impl Iterator<Item = (&str, &str)> {
        self.options.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The value of option `key`: the last one when it is given more than once.
    pub fn option(&self, key: &str) -> Option<&str> {
        self.options()
            .filter(|(k, _)| *k == key)
            .last()
            .map(|(_, v)| v)
    }

    /// The server a `scheme://[user[:password]@]host[:port][/path]` URL names, decoded.
    ///
    /// Fails with `Misuse` when the location is not such an authority (a bad port, no host).
    pub fn server(&self) -> Result<ServerAddress> {
        let url = url::Url::parse(&self.text[..self.location_end])
            .map_err(|e| self.error("not a server address").with_source(e))?;
        let host = match url.host() {
            Some(url::Host::Domain(name)) => self.decode(name, "host")?.into_owned(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            None => return Err(self.error("names no host")),
        };
        if host.is_empty() {
            return Err(self.error("names no host"));
        }
        let username = match url.username() {
            "" => None,
            name => Some(self.decode(name, "user name")?.into_owned()),
        };
        let password = match url.password() {
            None | Some("") => None,
            Some(password) => Some(self.decode(password, "password")?.into_owned()),
        };
        let path = url.path();
        let path = self.decode(path.strip_prefix('/').unwrap_or(path), "path")?;
        Ok(ServerAddress {
            host,
            port: url.port(),
            username,
            password,
            path: path.into_owned(),
        })
    }

    /// The same URL with another location (percent-encoded where it must be), the options
    /// kept as given.
    pub fn with_location(&self, location: &str) -> StoreUrl {
        let mut text = format!(
            "{}://{}",
            self.scheme(),
            utf8_percent_encode(location, LOCATION)
        );
        let location_end = text.len();
        text.push_str(&self.text[self.location_end..]);
        StoreUrl {
            text,
            location_end,
            location: location.to_owned(),
            ..self.clone()
        }
    }

    /// The same URL with option `key` set to `value`: in place of the first `key` given
    /// (others of that key are dropped), or last.
    pub fn with_option(&self, key: &str, value: &str) -> StoreUrl {
        let mut options = Vec::with_capacity(self.options.len() + 1);
        let mut set = false;
        for (k, v) in &self.options {
            if k != key {
                options.push((k.clone(), v.clone()));
            } else if !set {
                options.push((k.clone(), value.to_owned()));
                set = true;
            }
        }
        if !set {
            options.push((key.to_owned(), value.to_owned()));
        }
        let query = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(&options)
            .finish();
        StoreUrl {
            text: format!("{}?{query}", &self.text[..self.location_end]),
            options,
            ..self.clone()
        }
    }

    /// The URL as text, to open the store with. It holds the password, if any: show the
    /// `Display` form instead.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// `url` with everything between the first `:` and the last `@` of its location
    /// replaced by `***`, whether or not it parses: the form to show a URL a user gave in
    /// a report or a log. That covers any password a URL parser can read there, also with
    /// an unencoded `/` in it or a bad port, at the price of hiding more than the password
    /// in odd paths.
    ///
    /// ```
    /// use taskmill_core::raw::StoreUrl;
    ///
    /// assert_eq!(StoreUrl::redact("redis://app:s%40cret@h/0"), "redis://app:***@h/0");
    /// assert_eq!(StoreUrl::redact("redis://:s/cret@h:bad"), "redis://:***@h:bad");
    /// assert_eq!(StoreUrl::redact("sqlite://data/me@home.db"), "sqlite://data/me@home.db");
    /// ```
    pub fn redact(url: &str) -> Cow<'_, str> {
        let start = url.find("://").map_or(0, |i| i + "://".len());
        let rest = &url[start..];
        let location = &rest[..rest.find(['?', '#']).unwrap_or(rest.len())];
        let Some(at) = location.rfind('@') else {
            return Cow::Borrowed(url);
        };
        let Some(colon) = location[..at].find(':') else {
            return Cow::Borrowed(url);
        };
        let (head, tail) = (start + colon + 1, start + at);
        Cow::Owned(format!("{}***{}", &url[..head], &url[tail..]))
    }

    /// The error for an option value (or another part, named by `key`) that does not parse.
    pub fn invalid(&self, key: &str, value: &str) -> Error {
        self.error(format!("invalid value {value:?} for {key}"))
    }

    /// The error for an option the store does not know.
    pub fn unknown(&self, key: &str, known: &[&str]) -> Error {
        self.error(format!(
            "unknown option {key:?} (known: {})",
            known.join(", ")
        ))
    }

    /// A `Misuse` error about this URL: `message`, the URL without its password, and the
    /// form expected.
    fn error(&self, message: impl fmt::Display) -> Error {
        Error::misuse(format!(
            "{message}: {:?} (expected {})",
            Self::redact(&self.text),
            self.expected
        ))
    }
}

/// The URL without its password (see [`StoreUrl::redact`]).
impl fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&Self::redact(&self.text))
    }
}

impl fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("StoreUrl").field(&self.to_string()).finish()
    }
}

/// The server and credentials of a store URL (see [`StoreUrl::server`]), decoded.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerAddress {
    /// The host name or IP address (an IPv6 address without its brackets).
    pub host: String,
    /// The port, if the URL gives one.
    pub port: Option<u16>,
    /// The user name, if the URL gives one.
    pub username: Option<String>,
    /// The password, if the URL gives one. `Debug` does not show it.
    pub password: Option<String>,
    /// The path after the host without its leading `/` (e.g. a Redis database number);
    /// empty when there is none.
    pub path: String,
}

impl fmt::Debug for ServerAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerAddress")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("path", &self.path)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    fn misuse(result: Result<impl fmt::Debug>) -> String {
        let err = result.expect_err("a bad URL");
        assert_eq!(err.kind(), ErrorKind::Misuse, "{err}");
        err.to_string()
    }

    #[test]
    fn paths_are_decoded_text() {
        let parse = |url| StoreUrl::parse(url, &["sqlite"], "sqlite://PATH").unwrap();
        for (url, path) in [
            ("sqlite://tasks.db", "tasks.db"),
            ("sqlite://data/tasks.db", "data/tasks.db"),
            ("sqlite://./x.db", "./x.db"),
            ("sqlite://../q/../x.db", "../q/../x.db"),
            ("sqlite:///abs/Data/x.db", "/abs/Data/x.db"),
            ("sqlite://:memory:", ":memory:"),
            ("sqlite://C:/q/x.db", "C:/q/x.db"),
            ("sqlite://my%20dir/100%25.db", "my dir/100%.db"),
            ("sqlite://me@host:1/x.db", "me@host:1/x.db"),
            ("sqlite://a%3Fb%23c", "a?b#c"),
            ("sqlite://50%zz", "50%zz"),
        ] {
            let parsed = parse(url);
            assert_eq!(parsed.location("file").unwrap(), path, "{url}");
            assert_eq!(parsed.scheme(), "sqlite");
            assert_eq!(parsed.as_str(), url);
        }
    }

    #[test]
    fn options_are_decoded_pairs() {
        let url = StoreUrl::parse(
            "sled://a/b?flush=always&&x&note=a%26b+c&flush=never",
            &["sled"],
            "sled://DIR",
        )
        .unwrap();
        assert_eq!(url.location("directory").unwrap(), "a/b");
        assert_eq!(
            url.options().collect::<Vec<_>>(),
            vec![
                ("flush", "always"),
                ("x", ""),
                ("note", "a&b c"),
                ("flush", "never")
            ]
        );
        assert_eq!(url.option("flush"), Some("never"));
        assert_eq!(url.option("x"), Some(""));
        assert_eq!(url.option("y"), None);
        let memory = StoreUrl::parse("memory://", &["memory"], "memory://").unwrap();
        assert_eq!(memory.options().count(), 0);
        misuse(memory.location("place"));
    }

    #[test]
    fn servers_are_decoded_authorities() {
        let url = StoreUrl::parse(
            "redis://app%20user:p%40s%25s%3Aw%2Fd@cache.local:6380/2?namespace=x",
            &["redis", "rediss"],
            "redis://HOST",
        )
        .unwrap();
        let server = url.server().unwrap();
        assert_eq!(server.host, "cache.local");
        assert_eq!(server.port, Some(6380));
        assert_eq!(server.username.as_deref(), Some("app user"));
        assert_eq!(server.password.as_deref(), Some("p@s%s:w/d"));
        assert_eq!(server.path, "2");
        assert_eq!(url.option("namespace"), Some("x"));

        let parse = |url| {
            StoreUrl::parse(url, &["redis", "rediss"], "redis://HOST")
                .unwrap()
                .server()
                .unwrap()
        };
        let server = parse("rediss://:secret@[::1]:7000/");
        assert_eq!((server.host.as_str(), server.port), ("::1", Some(7000)));
        assert_eq!(
            (server.username, server.password.as_deref()),
            (None, Some("secret"))
        );
        assert_eq!(server.path, "");
        let server = parse("redis://127.0.0.1");
        assert_eq!((server.host.as_str(), server.port), ("127.0.0.1", None));
        assert_eq!((server.username, server.password), (None, None));
        // An `@` left unencoded in a password still ends at the last `@`.
        assert_eq!(parse("redis://:p@ss@h").password.as_deref(), Some("p@ss"));
        assert_eq!(parse("redis://bob@h").username.as_deref(), Some("bob"));
    }

    #[test]
    fn bad_urls_are_misuse_with_the_expected_form() {
        for (url, says) in [
            ("tasks.db", "not a store URL"),
            ("sqlite:/a", "not a store URL"),
            ("://a", "not a store URL"),
            ("1x://a", "not a store URL"),
            ("sledx://a", "not a sled store URL"),
            ("sqlite://a", "not a sled store URL"),
            ("sled://a#b", "#fragment"),
            ("sled://%FF", "not UTF-8"),
        ] {
            let message = misuse(StoreUrl::parse(url, &["sled"], "sled://DIR"));
            assert!(message.contains(says), "{url}: {message}");
            assert!(
                message.contains("(expected sled://DIR)"),
                "{url}: {message}"
            );
        }
        let empty = StoreUrl::parse("sled://?flush=always", &["sled"], "sled://DIR").unwrap();
        let message = misuse(empty.location("directory"));
        assert!(message.contains("names no directory"), "{message}");
        let message = empty.unknown("x", &["flush", "mode"]).to_string();
        assert!(
            message.contains("unknown option \"x\" (known: flush, mode)"),
            "{message}"
        );
        let message = empty.invalid("flush", "sometimes").to_string();
        assert!(
            message.contains("invalid value \"sometimes\" for flush"),
            "{message}"
        );

        for (url, says) in [
            ("redis://h:notaport/0", "invalid port"),
            ("redis://h:99999", "invalid port"),
            ("redis:///0", "names no host"),
            ("redis://:pw@/0", "host"),
        ] {
            let parsed = StoreUrl::parse(url, &["redis"], "redis://HOST").unwrap();
            let message = misuse(parsed.server());
            assert!(message.contains(says), "{url}: {message}");
        }
    }

    #[test]
    fn passwords_never_show() {
        let secret = "s3cr%40t";
        for url in [
            format!("redis://:{secret}@h:6379/0"),
            format!("redis://user:{secret}@h:6379/0?namespace=x"),
            format!("redis://user:{secret}@h:notaport/0"),
            "redis://:s3cr/t@h/0".to_owned(),
            format!("rediss://u:{secret}@h?bad=1#frag"),
        ] {
            let secrets = [secret, "s3cr@t", "s3cr/t"];
            let shown = |text: String| {
                for s in secrets {
                    assert!(!text.contains(s), "{s} shown in {text}");
                }
                text
            };
            match StoreUrl::parse(&url, &["redis", "rediss"], "redis://HOST") {
                Ok(parsed) => {
                    shown(format!("{parsed:?}"));
                    shown(parsed.to_string());
                    shown(parsed.invalid("k", "v").to_string());
                    shown(parsed.unknown("k", &["namespace"]).to_string());
                    match parsed.server() {
                        Ok(server) => {
                            assert_eq!(shown(format!("{server:?}")).matches("***").count(), 1);
                        }
                        Err(e) => drop(shown(e.to_string())),
                    }
                    shown(format!("{:?}", parsed.with_option("namespace", "y")));
                }
                Err(e) => drop(shown(e.to_string())),
            }
            // Still rejected by a store of another scheme, still without the password.
            shown(misuse(StoreUrl::parse(&url, &["sqlite"], "sqlite://PATH")));
        }
        assert_eq!(
            StoreUrl::redact("redis://u:pw@h/0?x=a:b@c"),
            "redis://u:***@h/0?x=a:b@c"
        );
        assert_eq!(StoreUrl::redact("sqlite://data/a.db"), "sqlite://data/a.db");
    }

    #[test]
    fn derived_urls_parse_back() {
        let url = StoreUrl::parse_any("sqlite://data/tasks.db?durability=full").unwrap();
        let moved = url.with_location("data/run 1?#%/tasks.db");
        assert_eq!(
            moved.as_str(),
            "sqlite://data/run 1%3F%23%25/tasks.db?durability=full"
        );
        let again = StoreUrl::parse_any(moved.as_str()).unwrap();
        assert_eq!(again, moved);
        assert_eq!(again.location("file").unwrap(), "data/run 1?#%/tasks.db");

        let url = StoreUrl::parse_any("redis://:p%40w@h/0?a=1&namespace=x&namespace=z").unwrap();
        let renamed = url.with_option("namespace", "x-bench 1&2");
        assert_eq!(
            renamed.as_str(),
            "redis://:p%40w@h/0?a=1&namespace=x-bench+1%262"
        );
        let again = StoreUrl::parse_any(renamed.as_str()).unwrap();
        assert_eq!(again, renamed);
        assert_eq!(again.option("namespace"), Some("x-bench 1&2"));
        assert_eq!(again.server().unwrap().password.as_deref(), Some("p@w"));
        assert_eq!(
            StoreUrl::parse_any("redis://h")
                .unwrap()
                .with_option("namespace", "n")
                .as_str(),
            "redis://h?namespace=n"
        );
    }
}
