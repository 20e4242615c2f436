//! The options of a [`MemoryStore`](crate::MemoryStore) and its URL form.

use taskmill_core::raw::{StoreUrl, DEFAULT_EVENT_BUFFER};
use taskmill_core::{Error, Result};

/// Options for [`MemoryStore::open_with`](crate::MemoryStore::open_with).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct MemoryOptions {
    /// How many events a subscriber may fall behind before it gets `Event::Lagged`.
    pub event_buffer: usize,
}

impl Default for MemoryOptions {
    fn default() -> Self {
        MemoryOptions {
            event_buffer: DEFAULT_EVENT_BUFFER,
        }
    }
}

impl MemoryOptions {
    /// Sets how far an event subscriber may fall behind.
    pub fn event_buffer(mut self, buffer: usize) -> Self {
        self.event_buffer = buffer;
        self
    }
}

/// Reads a store URL, `memory://`, into the options: nothing may follow the scheme.
pub(crate) fn parse_url(url: &str) -> Result<MemoryOptions> {
    let parsed = StoreUrl::parse(url, &["memory"], "memory://")?;
    if parsed.location("").is_ok() || parsed.options().next().is_some() {
        return Err(Error::misuse(format!(
            "memory:// takes no location or options, got {parsed}"
        )));
    }
    Ok(MemoryOptions::default())
}
