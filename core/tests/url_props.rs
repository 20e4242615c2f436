//! Property tests of the store URL parser (issue #17): no text makes it panic, every error
//! it returns is `Misuse`, and a password never shows in the parsed URL's `Debug` or
//! `Display`, in a server address's `Debug`, nor in any error about the URL. Cases:
//! proptest's default (256), or `PROPTEST_CASES`, which the default config reads.

use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use proptest::prelude::*;
use taskmill_core::raw::StoreUrl;
use taskmill_core::{ErrorKind, Result};

/// Checks that `result` is Ok or a `Misuse` error.
fn misuse_or_ok<T>(result: Result<T>) -> std::result::Result<Option<T>, TestCaseError> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(e) if e.kind() == ErrorKind::Misuse => Ok(None),
        Err(e) => Err(TestCaseError::fail(format!("not Misuse: {e:?}"))),
    }
}

/// Calls everything a parsed URL offers; each fails with `Misuse` if at all.
fn exercise(url: &StoreUrl, text: &str) -> std::result::Result<(), TestCaseError> {
    let _ = (url.scheme(), url.as_str(), url.option("k"), url.to_string());
    let _ = format!("{url:?}");
    let _ = url.options().count();
    misuse_or_ok(url.location("x"))?;
    if let Some(server) = misuse_or_ok(url.server())? {
        let _ = format!("{server:?}");
    }
    let derived = url.with_location(text).with_option(text, text);
    let _ = (derived.to_string(), format!("{derived:?}"));
    misuse_or_ok(derived.server())?;
    prop_assert_eq!(url.invalid("k", "v").kind(), ErrorKind::Misuse);
    prop_assert_eq!(url.unknown("k", &["a"]).kind(), ErrorKind::Misuse);
    Ok(())
}

/// Text shaped like a URL: a scheme, `://`, then pieces that reach every branch (an
/// authority, a port, `%` escapes, bad ones among them, options, a fragment).
fn urlish() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("://".to_string()),
        Just("@".to_string()),
        Just(":".to_string()),
        Just("/".to_string()),
        Just("?".to_string()),
        Just("&".to_string()),
        Just("=".to_string()),
        Just("#".to_string()),
        Just("[::1]".to_string()),
        "%[0-9a-fA-FgG]{0,2}",
        "[0-9]{1,6}",
        "[a-zA-Z.+-]{1,6}",
        ".{1,3}",
    ];
    (
        prop_oneof![
            "redis",
            "rediss",
            "sqlite",
            "sled",
            "memory",
            "[a-z][a-z0-9+.-]{0,4}",
            ".{0,3}"
        ],
        prop::collection::vec(piece, 0..12),
    )
        .prop_map(|(scheme, pieces)| format!("{scheme}://{}", pieces.concat()))
}

proptest! {
    #[test]
    fn any_text_parses_or_is_misuse(text in prop_oneof![".{0,40}", urlish()]) {
        let _ = StoreUrl::redact(&text);
        if let Some(url) = misuse_or_ok(StoreUrl::parse_any(&text))? {
            exercise(&url, &text)?;
        }
        if let Some(url) = misuse_or_ok(StoreUrl::parse(&text, &["redis", "rediss"], "redis://HOST"))? {
            exercise(&url, &text)?;
        }
        misuse_or_ok(StoreUrl::parse(&text, &[], "nothing://"))?;
    }

    /// A derived URL parses back to the location and options it was given.
    #[test]
    fn derived_urls_parse_back(
        base in urlish(),
        location in ".{1,16}",
        key in ".{0,6}",
        value in ".{0,6}",
    ) {
        let Ok(url) = StoreUrl::parse_any(&base) else {
            return Ok(());
        };
        let derived = url.with_location(&location).with_option(&key, &value);
        let again = StoreUrl::parse_any(derived.as_str()).unwrap();
        prop_assert_eq!(again.location("x").unwrap(), location.as_str());
        prop_assert_eq!(again.option(&key), Some(value.as_str()));
    }

    /// A password, percent-encoded as the module says or with its `@`, `:` and `/` left
    /// as they are, shows nowhere: neither as written nor decoded.
    #[test]
    fn passwords_never_show(
        // A leading `Q` is in no other part (they are lower case), so a match is a leak.
        password in "Q[a-zA-Z0-9@:/%!$&'()*+,;= ~é-]{5,16}",
        encoded in any::<bool>(),
        user in proptest::option::of("[a-z]{1,6}"),
        host in prop_oneof!["[a-z]{1,8}", Just("127.0.0.1".to_string()), Just("[::1]".to_string())],
        port in prop_oneof![Just(String::new()), "[0-9]{1,5}", "[a-z]{1,3}"].prop_map(|p| {
            if p.is_empty() { p } else { format!(":{p}") }
        }),
        path in "(/[a-z0-9]{0,3})?",
        query in "(\\?[a-z]{1,4}=[a-z0-9]{0,4}(&[a-z]=[a-z]{0,2})?)?",
        fragment in "(#[a-z]{0,3})?",
        scheme in prop_oneof![Just("redis"), Just("rediss"), Just("sqlite")],
    ) {
        let written = if encoded {
            utf8_percent_encode(&password, NON_ALPHANUMERIC).to_string()
        } else {
            // `%` left as is could read as an escape of other text; `?`, `#` and
            // whitespace end the location or the URL. Those stay encoded.
            password.replace('%', "%25").replace(' ', "%20")
        };
        let text = format!(
            "{scheme}://{}:{written}@{host}{port}{path}{query}{fragment}",
            user.unwrap_or_default()
        );
        let secrets = [password.as_str(), written.as_str()];
        let hidden = |shown: String| -> std::result::Result<(), TestCaseError> {
            for secret in secrets {
                prop_assert!(!shown.contains(secret), "{:?} shown in {:?}", secret, shown);
            }
            Ok(())
        };
        hidden(StoreUrl::redact(&text).into_owned())?;
        for parsed in [
            StoreUrl::parse(&text, &["redis", "rediss"], "redis://HOST"),
            StoreUrl::parse(&text, &["sqlite"], "sqlite://PATH"),
            StoreUrl::parse_any(&text),
        ] {
            match parsed {
                Ok(url) => {
                    hidden(format!("{url:?}"))?;
                    hidden(url.to_string())?;
                    hidden(format!("{:?}", url.invalid("k", "v")))?;
                    hidden(url.unknown("k", &["namespace"]).to_string())?;
                    match url.server() {
                        Ok(server) => {
                            // Encoded, it is the password; unencoded, a `/` in it ends
                            // the authority early, so the parser reads another one.
                            if encoded {
                                prop_assert_eq!(server.password.as_deref(), Some(password.as_str()));
                            }
                            hidden(format!("{server:?}"))?;
                        }
                        Err(e) => {
                            prop_assert_eq!(e.kind(), ErrorKind::Misuse);
                            hidden(e.to_string())?;
                            hidden(format!("{e:?}"))?;
                        }
                    }
                    if let Err(e) = url.location("x") {
                        hidden(e.to_string())?;
                    }
                    let derived = url.with_option("namespace", "y");
                    hidden(format!("{derived:?}"))?;
                    hidden(derived.to_string())?;
                }
                Err(e) => {
                    prop_assert_eq!(e.kind(), ErrorKind::Misuse);
                    hidden(e.to_string())?;
                    hidden(format!("{e:?}"))?;
                }
            }
        }
    }
}
