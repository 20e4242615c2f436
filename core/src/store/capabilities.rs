//! [`Capabilities`]: what a backend does beyond the contract every [`Store`](super::Store)
//! keeps.

/// What a backend does beyond the contract every store keeps.
///
/// Every [`Store`](super::Store) method works on every backend; a flag says how far a
/// guarantee reaches. A flag that is `false` promises nothing either way. The conformance
/// suite runs a check that relies on a flag only on stores that set it, and callers (the
/// CLI, a dashboard) read it to say what they can offer.
///
/// Non-exhaustive: a backend takes one of the constants, which are updated with each new
/// flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
    /// Events published through one handle of the store reach subscribers of every other
    /// handle on the same data, in other processes too ([`Store::publish`] and
    /// [`Store::subscribe`]). When `false`, a subscriber receives only what was published
    /// through the handle it subscribed on (or a clone of it), in its own process.
    ///
    /// [`Store::publish`]: super::Store::publish
    /// [`Store::subscribe`]: super::Store::subscribe
    pub cross_process_events: bool,
    /// Acknowledged changes survive the process: once a call that changes the store has
    /// returned `Ok`, killing the process (SIGKILL) at any later instant loses none of it,
    /// and opening the same location again shows it, tasks and counters alike. For a store
    /// on a server (Redis) this holds as far as the server's own persistence is
    /// configured.
    pub durable: bool,
}

impl Capabilities {
    /// Neither flag: a store that lives in its process, like the memory store.
    pub const IN_PROCESS: Capabilities = Capabilities {
        cross_process_events: false,
        durable: false,
    };

    /// [`durable`](Self::durable) only, like SQLite and sled.
    pub const DURABLE: Capabilities = Capabilities {
        cross_process_events: false,
        durable: true,
    };

    /// [`durable`](Self::durable) and [`cross_process_events`](Self::cross_process_events),
    /// like Redis.
    pub const SHARED: Capabilities = Capabilities {
        cross_process_events: true,
        durable: true,
    };
}
