//! What the fuzz targets share: the framing that splits one fuzz input into the fields a
//! decoder takes, its inverse for the seed writer, and the checks every target makes.
//!
//! An input is a sequence of fields: a field is a u16 little-endian length, then that
//! many bytes (fewer when the input ends first); a number is 8 bytes little-endian
//! (zero-padded when the input ends first); the last field of a target is the rest.

use taskmill_core::{Error, ErrorKind};

/// Reads fields off a fuzz input; every read succeeds, past the end with empty values.
pub struct Input<'a>(pub &'a [u8]);

impl<'a> Input<'a> {
    /// The next byte (0 past the end).
    pub fn byte(&mut self) -> u8 {
        let (first, rest) = self.0.split_first().unwrap_or((&0, &[]));
        self.0 = rest;
        *first
    }

    /// The next 8 bytes as a little-endian number, zero-padded.
    pub fn u64(&mut self) -> u64 {
        let mut bytes = [0; 8];
        let n = self.0.len().min(8);
        bytes[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        u64::from_le_bytes(bytes)
    }

    /// The next length-prefixed field.
    pub fn field(&mut self) -> &'a [u8] {
        let len = u16::from_le_bytes([self.byte(), self.byte()]) as usize;
        let len = len.min(self.0.len());
        let (field, rest) = self.0.split_at(len);
        self.0 = rest;
        field
    }

    /// The next field, or `None` when its flag byte is even.
    pub fn optional(&mut self) -> Option<&'a [u8]> {
        (self.byte() % 2 == 1).then(|| self.field())
    }

    /// Everything left.
    pub fn rest(self) -> &'a [u8] {
        self.0
    }
}

/// Builds inputs in [`Input`]'s framing: for the seed writer.
#[derive(Default)]
pub struct Frame(pub Vec<u8>);

impl Frame {
    /// An input starting with `mode`.
    pub fn new(mode: u8) -> Self {
        Frame(vec![mode])
    }

    /// Appends a byte.
    pub fn byte(mut self, b: u8) -> Self {
        self.0.push(b);
        self
    }

    /// Appends a number.
    pub fn u64(mut self, n: u64) -> Self {
        self.0.extend_from_slice(&n.to_le_bytes());
        self
    }

    /// Appends a length-prefixed field (at most 65535 bytes).
    pub fn field(mut self, bytes: &[u8]) -> Self {
        let len = u16::try_from(bytes.len()).expect("a field of at most 65535 bytes");
        self.0.extend_from_slice(&len.to_le_bytes());
        self.0.extend_from_slice(bytes);
        self
    }

    /// Appends an optional field.
    pub fn optional(self, bytes: Option<&[u8]>) -> Self {
        match bytes {
            Some(b) => self.byte(1).field(b),
            None => self.byte(0),
        }
    }

    /// Appends the last field and returns the input.
    pub fn rest(mut self, bytes: &[u8]) -> Vec<u8> {
        self.0.extend_from_slice(bytes);
        self.0
    }
}

/// Panics unless `error` is of `kind`: a decoder failed other than as documented.
#[track_caller]
pub fn assert_kind(error: &Error, kind: ErrorKind) {
    assert_eq!(error.kind(), kind, "unexpected error kind: {error}");
}
