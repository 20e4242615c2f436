//! Task headers: small string key/values carried with a task from its enqueue to every
//! run, in every store, so that trace context (`traceparent`) and request ids cross
//! processes.

use crate::error::{Error, Result};
use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// The most headers a task may carry.
pub const MAX_HEADERS: usize = 32;

/// The longest header key, in bytes.
pub const MAX_HEADER_KEY_BYTES: usize = 128;

/// The most bytes a task's headers may hold, keys and values together: room for W3C
/// `traceparent`, `tracestate` and `baggage` with a few ids beside them.
pub const MAX_HEADERS_BYTES: usize = 8 * 1024;

/// A task's headers, ordered by key; each key at most once.
///
/// A key is 1 to [`MAX_HEADER_KEY_BYTES`] bytes of ASCII letters, digits, `-`, `_` and
/// `.` (`traceparent`, `x-request-id`); a value is any text without control characters.
/// Keys are case-sensitive. [`insert`](Self::insert) enforces these rules and the limits
/// ([`MAX_HEADERS`], [`MAX_HEADERS_BYTES`]), so every store can keep what it is given.
///
/// ```
/// use taskmill_core::Headers;
///
/// let mut headers = Headers::new();
/// headers.insert("x-request-id", "req-42")?;
/// assert_eq!(headers.get("x-request-id"), Some("req-42"));
/// assert!(headers.insert("bad key", "x").is_err());
/// # Ok::<_, taskmill_core::Error>(())
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Headers {
    /// Sorted by key, keys unique. An empty `Vec` allocates nothing, and most tasks carry
    /// no headers.
    entries: Vec<(Box<str>, Box<str>)>,
}

impl Headers {
    /// No headers.
    pub const fn new() -> Self {
        Headers {
            entries: Vec::new(),
        }
    }

    /// The value of `key`, if set.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.find(key).ok().map(|i| &*self.entries[i].1)
    }

    /// Sets `key` to `value`, returning the value it replaces.
    ///
    /// Fails with [`ErrorKind::Misuse`](crate::ErrorKind::Misuse), and changes nothing,
    /// when the key or value breaks the rules above or the headers would exceed a limit.
    pub fn insert(
        &mut self,
        key: impl Into<String>,
        value: impl Into<String>,
    ) -> Result<Option<String>> {
        let (key, value) = (key.into(), value.into());
        validate_key(&key)?;
        if value.chars().any(char::is_control) {
            return Err(Error::misuse(format!(
                "invalid value of header {key:?}: it contains control characters"
            )));
        }
        let slot = self.find(&key);
        let replaced = slot.map_or(0, |i| self.entries[i].0.len() + self.entries[i].1.len());
        let size = self.size_bytes() - replaced + key.len() + value.len();
        if size > MAX_HEADERS_BYTES {
            return Err(Error::misuse(format!(
                "header {key:?} makes the task's headers {size} bytes, more than the limit of \
                 {MAX_HEADERS_BYTES}"
            )));
        }
        match slot {
            Ok(i) => {
                let old = std::mem::replace(&mut self.entries[i].1, value.into_boxed_str());
                Ok(Some(old.into_string()))
            }
            Err(_) if self.entries.len() >= MAX_HEADERS => Err(Error::misuse(format!(
                "header {key:?} would be the task's {}th; at most {MAX_HEADERS} are allowed",
                MAX_HEADERS + 1
            ))),
            Err(i) => {
                self.entries
                    .insert(i, (key.into_boxed_str(), value.into_boxed_str()));
                Ok(None)
            }
        }
    }

    /// Removes `key`, returning its value.
    pub fn remove(&mut self, key: &str) -> Option<String> {
        let i = self.find(key).ok()?;
        Some(self.entries.remove(i).1.into_string())
    }

    /// The headers in key order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &str)> + '_ {
        self.entries.iter().map(|(k, v)| (&**k, &**v))
    }

    /// How many headers there are.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The bytes of every key and value, the figure [`MAX_HEADERS_BYTES`] limits.
    pub fn size_bytes(&self) -> usize {
        self.entries.iter().map(|(k, v)| k.len() + v.len()).sum()
    }

    fn find(&self, key: &str) -> std::result::Result<usize, usize> {
        self.entries.binary_search_by(|(k, _)| (**k).cmp(key))
    }

    /// Headers read back from storage (backends reach it through
    /// [`raw::HeadersExt`](crate::raw::HeadersExt)): not validated against the rules, only
    /// put in key order (the last value of a repeated key wins), so that a record written
    /// by another version still reads.
    pub(crate) fn from_stored(mut entries: Vec<(Box<str>, Box<str>)>) -> Self {
        // A stable sort keeps repeated keys in stored order; the last one is kept.
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        let mut kept: Vec<(Box<str>, Box<str>)> = Vec::with_capacity(entries.len());
        for (key, value) in entries {
            match kept.last_mut() {
                Some(last) if last.0 == key => last.1 = value,
                _ => kept.push((key, value)),
            }
        }
        Headers { entries: kept }
    }
}

/// Checks a header key against the rules of [`Headers`].
fn validate_key(key: &str) -> Result<()> {
    let allowed = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.');
    if key.is_empty() || key.len() > MAX_HEADER_KEY_BYTES || !key.bytes().all(allowed) {
        return Err(Error::misuse(format!(
            "invalid header key {key:?}: it must be 1 to {MAX_HEADER_KEY_BYTES} ASCII letters, \
             digits, '-', '_' or '.'"
        )));
    }
    Ok(())
}

impl fmt::Debug for Headers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<'a> IntoIterator for &'a Headers {
    type Item = (&'a str, &'a str);
    type IntoIter = Box<dyn ExactSizeIterator<Item = (&'a str, &'a str)> + 'a>;
    fn into_iter(self) -> Self::IntoIter {
        Box::new(self.iter())
    }
}

impl Serialize for Headers {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.len()))?;
        for (k, v) in self.iter() {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Headers {
    /// Reads a map of strings as stored (see [`HeadersExt::from_stored`](crate::raw::HeadersExt::from_stored)).
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        struct Entries;
        impl<'de> Visitor<'de> for Entries {
            type Value = Headers;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of header names to string values")
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<Headers, A::Error> {
                let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(0).min(MAX_HEADERS));
                while let Some((k, v)) = map.next_entry::<String, String>()? {
                    entries.push((k.into_boxed_str(), v.into_boxed_str()));
                }
                Ok(Headers::from_stored(entries))
            }
        }
        deserializer.deserialize_map(Entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_keeps_key_order_and_replaces() {
        let mut h = Headers::new();
        assert_eq!(h.insert("b", "2").unwrap(), None);
        assert_eq!(h.insert("a", "1").unwrap(), None);
        assert_eq!(h.insert("b", "3").unwrap().as_deref(), Some("2"));
        assert_eq!(h.iter().collect::<Vec<_>>(), [("a", "1"), ("b", "3")]);
        assert_eq!(h.remove("a").as_deref(), Some("1"));
        assert_eq!(h.get("a"), None);
        assert_eq!(h.len(), 1);
    }

    #[test]
    fn bad_keys_values_and_sizes_are_refused_and_change_nothing() {
        let mut h = Headers::new();
        h.insert("k", "v").unwrap();
        for key in ["", "a b", "é", "a:b", &"k".repeat(MAX_HEADER_KEY_BYTES + 1)] {
            assert!(h.insert(key, "v").is_err(), "{key:?} was accepted");
        }
        assert!(h.insert("k", "line\nbreak").is_err());
        assert!(h.insert("big", "x".repeat(MAX_HEADERS_BYTES)).is_err());
        assert_eq!(
            h.iter().collect::<Vec<_>>(),
            [("k", "v")],
            "a refusal changed them"
        );
        for i in 1..MAX_HEADERS {
            h.insert(format!("k{i}"), "v").unwrap();
        }
        let error = h.insert("one-too-many", "v").unwrap_err();
        assert!(error.to_string().contains("at most 32"), "{error}");
        // Replacing a value is not an extra header.
        h.insert("k", "w").unwrap();
    }

    #[test]
    fn the_size_limit_counts_a_replaced_value_once() {
        let mut h = Headers::new();
        let half = "x".repeat(MAX_HEADERS_BYTES / 2);
        h.insert("a", half.clone()).unwrap();
        h.insert("a", half).unwrap();
        assert!(h.size_bytes() <= MAX_HEADERS_BYTES);
    }

    #[test]
    fn json_round_trips_and_stored_repeats_keep_the_last() {
        let mut h = Headers::new();
        h.insert("traceparent", "00-abc-def-01").unwrap();
        h.insert("x-id", "\"quoted\" <b>").unwrap();
        let json = serde_json::to_string(&h).unwrap();
        assert_eq!(serde_json::from_str::<Headers>(&json).unwrap(), h);
        let repeated: Headers = serde_json::from_str(r#"{"b":"1","a":"2","b":"3"}"#).unwrap();
        assert_eq!(
            repeated.iter().collect::<Vec<_>>(),
            [("a", "2"), ("b", "3")]
        );
        assert!(serde_json::from_str::<Headers>(r#"{"a":1}"#).is_err());
    }
}
