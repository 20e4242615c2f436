//! The SQLite store's row decoding: a row of `tasks` or `schedules` of any values (each
//! column any storage class, text not always UTF-8). Never a panic; a row that cannot be
//! decoded is `Corrupt`; the lenient record a listing shows agrees with the strict one
//! when that succeeds; what decodes, written back as the store writes it, reads the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use taskmill_core::{ErrorKind, Timestamp};
use taskmill_fuzz::{assert_kind, Input};
use taskmill_sqlite::fuzzing::{self as sqlite, Cell};

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    match input.byte() % 2 {
        0 => task(input),
        _ => schedule(input),
    }
});

/// `n` cells: each a tag byte, then its value.
fn cells(input: &mut Input<'_>, n: usize) -> Vec<Cell> {
    (0..n)
        .map(|_| match input.byte() % 5 {
            0 => Cell::Null,
            1 => Cell::Int(input.u64() as i64),
            2 => Cell::Real(f64::from_bits(input.u64())),
            3 => Cell::Text(input.field().to_vec()),
            _ => Cell::Blob(input.field().to_vec()),
        })
        .collect()
}

fn task(mut input: Input<'_>) {
    let mut row = cells(&mut input, sqlite::task_columns());
    // The id is the rowid, which SQLite keeps an integer.
    if !matches!(row[0], Cell::Int(_)) {
        row[0] = Cell::Int(1);
    }
    let (strict, lenient) = sqlite::decode_task(&row);
    match strict {
        Err(e) => assert_kind(&e, ErrorKind::Corrupt),
        Ok(r) => {
            assert_eq!(lenient, r);
            let again = sqlite::encode_task(&r, Timestamp::EPOCH);
            let (back, _) = sqlite::decode_task(&again);
            assert_eq!(back.expect("re-encoded"), r, "from {row:?}");
        }
    }
}

fn schedule(mut input: Input<'_>) {
    let row = cells(&mut input, sqlite::schedule_columns());
    match sqlite::decode_schedule(&row) {
        Err(e) => assert_kind(&e, ErrorKind::Corrupt),
        Ok(state) => {
            let again = sqlite::encode_schedule(&state);
            let back = sqlite::decode_schedule(&again).expect("re-encoded");
            assert_eq!(back, state, "from {row:?}");
        }
    }
}
