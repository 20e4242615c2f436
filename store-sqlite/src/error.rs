//! SQLite's errors as taskmill's: [`backend_error`].

use rusqlite::ErrorCode;
use std::borrow::Cow;
use taskmill_core::{Error, ErrorKind};

/// Maps a rusqlite error to a taskmill error of the kind a caller can act on, with
/// `context` saying what was being done and the SQLite error as the source.
///
/// | SQLite says | kind |
/// |---|---|
/// | `SQLITE_BUSY`, `SQLITE_LOCKED` (the busy timeout passed) | `Unavailable` |
/// | `SQLITE_NOTADB`, `SQLITE_CORRUPT`, a column of the wrong type | `Corrupt` |
/// | `SQLITE_MISUSE` | `Misuse` |
/// | anything else (full disk, read-only file, I/O error, …) | `Storage` |
pub(crate) fn backend_error(err: rusqlite::Error, context: impl Into<Cow<'static, str>>) -> Error {
    use rusqlite::Error as E;
    let kind = match &err {
        E::SqliteFailure(e, _) => match e.code {
            ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => ErrorKind::Unavailable,
            ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt => ErrorKind::Corrupt,
            ErrorCode::ApiMisuse => ErrorKind::Misuse,
            // Full disk, read-only file, I/O error, cannot open, permission denied,
            // constraint violations and the rest: SQLite refused the operation.
            _ => ErrorKind::Storage,
        },
        E::FromSqlConversionFailure(..)
        | E::IntegralValueOutOfRange(..)
        | E::Utf8Error(..)
        | E::InvalidColumnType(..) => ErrorKind::Corrupt,
        _ => ErrorKind::Storage,
    };
    Error::new(kind, context).with_source(err)
}
