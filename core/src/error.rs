//! The one error type of the workspace.

use std::borrow::Cow;
use std::error::Error as StdError;
use std::fmt;

/// A boxed error from a backend or a library below taskmill.
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// A `Result` whose error is taskmill's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, in terms a caller can act on.
///
/// Callers and tests match on the kind, never on the message text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The store cannot be reached or is busy right now; the same call may succeed later.
    Unavailable,
    /// The store could not carry out the operation (a full disk, a read-only file, a
    /// backend refusing the write). Retrying as-is is unlikely to help; nothing was changed.
    Storage,
    /// Stored data could not be decoded: a corrupt record, or a schema this code does not
    /// understand.
    Corrupt,
    /// The claim a worker acted on no longer owns the task: its lease expired or was
    /// recovered, and another claim may hold it now.
    LeaseLost,
    /// The task, topic or record asked for does not exist.
    NotFound,
    /// The call was wrong for the state it was made in (registering a topic twice, enqueueing
    /// into a closed manager, an invalid argument or URL).
    Misuse,
    /// The backend does not support this operation.
    Unsupported,
}

impl ErrorKind {
    /// Whether retrying the same call later may succeed.
    pub fn is_transient(self) -> bool {
        matches!(self, ErrorKind::Unavailable)
    }

    fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Unavailable => "store unavailable",
            ErrorKind::Storage => "storage failure",
            ErrorKind::Corrupt => "corrupt data",
            ErrorKind::LeaseLost => "lease lost",
            ErrorKind::NotFound => "not found",
            ErrorKind::Misuse => "misuse",
            ErrorKind::Unsupported => "unsupported",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// taskmill's error: a [kind](ErrorKind), a message, and the backend's own error as the source.
pub struct Error {
    kind: ErrorKind,
    message: Cow<'static, str>,
    source: Option<BoxError>,
}

impl Error {
    /// An error of `kind` with a message.
    pub fn new(kind: ErrorKind, message: impl Into<Cow<'static, str>>) -> Self {
        Error {
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// Attaches the lower-level error that caused this one.
    pub fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// What went wrong.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message, without the kind or the source.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Shorthand for an [`ErrorKind::Unavailable`] error.
    pub fn unavailable(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorKind::Unavailable, message)
    }

    /// Shorthand for an [`ErrorKind::Storage`] error.
    pub fn storage(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorKind::Storage, message)
    }

    /// Shorthand for an [`ErrorKind::Corrupt`] error.
    pub fn corrupt(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorKind::Corrupt, message)
    }

    /// Shorthand for an [`ErrorKind::NotFound`] error.
    pub fn not_found(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }

    /// Shorthand for an [`ErrorKind::Misuse`] error.
    pub fn misuse(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorKind::Misuse, message)
    }

    /// Shorthand for an [`ErrorKind::Unsupported`] error.
    pub fn unsupported(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorKind::Unsupported, message)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.kind).field("message", &self.message);
        if let Some(source) = &self.source {
            d.field("source", source);
        }
        d.finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)?;
        // Callers often print only the top error, so the cause goes on the same line.
        if let Some(source) = &self.source {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn StdError + 'static))
    }
}

impl From<serde_json::Error> for Error {
    fn from(err: serde_json::Error) -> Self {
        Error::misuse("invalid JSON").with_source(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_includes_kind_message_and_source() {
        let io = std::io::Error::other("disk full");
        let err = Error::storage("cannot write task").with_source(io);
        assert_eq!(err.kind(), ErrorKind::Storage);
        assert_eq!(
            err.to_string(),
            "storage failure: cannot write task: disk full"
        );
        assert!(err.source().is_some());
        assert!(!err.kind().is_transient());
        assert!(ErrorKind::Unavailable.is_transient());
    }
}
