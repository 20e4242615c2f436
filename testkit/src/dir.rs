//! Temporary directories.

pub use tempfile::TempDir;

/// A fresh directory under the system's temp dir, removed (with everything in it) when the
/// returned value is dropped.
///
/// # Panics
/// When the directory cannot be created.
pub fn temp_dir() -> TempDir {
    tempfile::Builder::new()
        .prefix("taskmill-")
        .tempdir()
        .expect("create a temporary directory")
}
