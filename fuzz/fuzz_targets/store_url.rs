//! Store URLs: the shared parser (`taskmill_core::raw::StoreUrl`) and each store's
//! reading of it. Never a panic; a URL that is refused is `Misuse`; no shown form holds
//! the password; a location or option set again reads back as set.
#![no_main]

use libfuzzer_sys::fuzz_target;
use taskmill_core::raw::StoreUrl;
use taskmill_core::ErrorKind;
use taskmill_fuzz::assert_kind;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for parsed in [
        taskmill_sled::fuzzing::parse_url(text).map(drop),
        taskmill_sqlite::fuzzing::parse_url(text).map(drop),
    ] {
        if let Err(e) = parsed {
            assert_kind(&e, ErrorKind::Misuse);
        }
    }
    // `rediss://` is `Unsupported` in a build without the `tls` feature, as this one.
    if let Err(e) = taskmill_redis::fuzzing::parse_url(text) {
        let tls = text.starts_with("rediss://") && e.kind() == ErrorKind::Unsupported;
        if !tls {
            assert_kind(&e, ErrorKind::Misuse);
        }
    }
    let _ = StoreUrl::redact(text);
    let url = match StoreUrl::parse_any(text) {
        Ok(url) => url,
        Err(e) => return assert_kind(&e, ErrorKind::Misuse),
    };
    assert_eq!(url.to_string(), StoreUrl::redact(text));
    let location = match url.location("location") {
        Ok(location) => location.to_owned(),
        Err(e) => {
            assert_kind(&e, ErrorKind::Misuse);
            String::new()
        }
    };
    match url.server() {
        Err(e) => assert_kind(&e, ErrorKind::Misuse),
        Ok(server) => {
            if let Some(password) = server.password.as_deref() {
                assert!(format!("{server:?}").contains("password: Some(\"***\")"));
                // Where the password is written as it reads (no escapes, no `*`), the
                // shown URL holds it fewer times than the URL: not in its user info.
                let shown = url.to_string();
                if !text.contains(['%', '*']) {
                    // (The URL parser drops tabs and newlines, so it may not be written.)
                    let written = text.matches(password).count();
                    if written > 0 {
                        assert!(shown.matches(password).count() < written, "{shown}");
                    }
                }
            }
        }
    }
    // The same URL with its own location, and with each option set again.
    let moved = StoreUrl::parse_any(url.with_location(&location).as_str()).expect("re-made");
    assert_eq!(moved.scheme(), url.scheme());
    assert_eq!(moved.location("location").unwrap_or(""), location);
    assert!(moved.options().eq(url.options()));
    for (key, value) in url.options() {
        let set = StoreUrl::parse_any(url.with_option(key, value).as_str()).expect("re-made");
        assert_eq!(set.option(key), Some(value));
        assert_eq!(set.location("location").unwrap_or(""), location);
    }
});
