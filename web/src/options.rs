//! What an application decides about its dashboard.

use std::fmt;
use std::time::Duration;
use taskmill_core::Clock;

/// Options for [`router`](crate::router).
///
/// ```
/// use taskmill_web::DashboardOptions;
///
/// let options = DashboardOptions::default()
///     .title("Billing tasks")
///     .token("correct-horse-battery-staple")
///     .read_only(true);
/// assert!(options.is_read_only());
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct DashboardOptions {
    /// Shown in the header and the window title.
    pub title: String,
    /// When set, every request must carry this token, as `Authorization: Bearer TOKEN` or
    /// through the sign-in form (which sets a session cookie). `None` leaves the dashboard
    /// open to whoever can reach it: bind it to loopback, or put it behind your own auth.
    pub token: Option<String>,
    /// Hides every button that changes the store and refuses such requests with 403.
    pub read_only: bool,
    /// A topic is flagged “no worker” when its oldest due task has waited longer than this
    /// and the dashboard's own stats snapshots show none of its tasks claimed over this
    /// long (the store keeps no registry of which manager runs which topic; see the README's
    /// “Topics nobody works on”). Default 60 s.
    pub unworked_after: Duration,
    /// Where the dashboard reads the time: queue latency, how long ago things happened, the
    /// snapshots the “no worker” flag compares, the times of cancels and retries. Default
    /// [`Clock::system`]; a test can pass a [`Clock::manual`] and move it.
    pub clock: Clock,
}

impl Default for DashboardOptions {
    fn default() -> Self {
        DashboardOptions {
            title: "taskmill".to_owned(),
            token: None,
            read_only: false,
            unworked_after: Duration::from_secs(60),
            clock: Clock::system(),
        }
    }
}

impl DashboardOptions {
    /// Sets the title shown in the header.
    pub fn title(mut self, title: impl Into<String>) -> Self {
        self.title = title.into();
        self
    }

    /// Requires this token on every request. An empty token is treated as none.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        let token = token.into();
        self.token = (!token.is_empty()).then_some(token);
        self
    }

    /// Hides and refuses every action that changes the store.
    pub fn read_only(mut self, read_only: bool) -> Self {
        self.read_only = read_only;
        self
    }

    /// Sets how long a topic's due tasks may wait without a claim before it is flagged as
    /// having no worker ([`unworked_after`](Self::unworked_after)).
    pub fn unworked_after(mut self, after: Duration) -> Self {
        self.unworked_after = after;
        self
    }

    /// Reads the time from `clock` ([`clock`](Self::clock)).
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Whether actions that change the store are refused.
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }
}

/// Keeps the token out of logs.
impl fmt::Debug for DashboardOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DashboardOptions")
            .field("title", &self.title)
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .field("read_only", &self.read_only)
            .field("unworked_after", &self.unworked_after)
            .field("clock", &self.clock)
            .finish()
    }
}
