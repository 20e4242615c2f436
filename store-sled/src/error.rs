//! sled's errors as taskmill's: [`backend_error`].

use std::borrow::Cow;
use std::path::Path;
use taskmill_core::{Error, ErrorKind};

/// Maps a sled error to a taskmill error of the kind a caller can act on, with `context`
/// saying what was being done and the sled error as the source: detected corruption is
/// `Corrupt`; I/O failures and the rest are `Storage` (the write was refused).
pub(crate) fn backend_error(err: sled::Error, context: impl Into<Cow<'static, str>>) -> Error {
    let (kind, what) = match &err {
        sled::Error::Corruption { .. } => (ErrorKind::Corrupt, "sled found corrupt data on disk"),
        sled::Error::Io(_) => (ErrorKind::Storage, "sled could not read or write its files"),
        sled::Error::CollectionNotFound(_) => (ErrorKind::Storage, "a sled tree is missing"),
        sled::Error::Unsupported(_) => (ErrorKind::Storage, "sled refused the operation"),
        sled::Error::ReportableBug(_) => (ErrorKind::Storage, "sled hit an internal error"),
        #[allow(unreachable_patterns)]
        _ => (ErrorKind::Storage, "sled failed"),
    };
    Error::new(kind, format!("{}: {what}", context.into())).with_source(err)
}

/// [`backend_error`] for opening the database at `path`: a lock held by another process
/// (or another store of this one) is `Unavailable`.
pub(crate) fn open_error(path: &Path, err: sled::Error) -> Error {
    // sled reports a held lock as an `Other` I/O error with this text (0.34).
    let locked =
        matches!(&err, sled::Error::Io(io) if io.to_string().contains("could not acquire lock"));
    if locked {
        return Error::new(
            ErrorKind::Unavailable,
            format!(
                "the sled database at {} is locked: it is open in another process or \
                 another SledStore of this one (sled allows one process per database; \
                 share one SledStore instead)",
                path.display()
            ),
        )
        .with_source(err);
    }
    backend_error(
        err,
        format!("cannot open the sled database at {}", path.display()),
    )
}
