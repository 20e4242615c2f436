//! The Redis store's codec: a task's record with its run (lease, cancel request,
//! progress), and schedule states. Never a panic; what cannot be decoded is `Corrupt`
//! (the listing's lenient decoding never fails, and agrees when the strict one succeeds);
//! a record without a run re-encodes to bytes that decode equal.
#![no_main]

use libfuzzer_sys::fuzz_target;
use taskmill_core::{ErrorKind, Queue};
use taskmill_fuzz::{assert_kind, Input};
use taskmill_redis::fuzzing as redis;

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    match input.byte() % 2 {
        0 => record(input),
        _ => schedule(input),
    }
});

fn record(mut input: Input<'_>) {
    let queue = Queue::ALL[input.byte() as usize % Queue::ALL.len()];
    let (lease, request, progress) = (input.optional(), input.optional(), input.optional());
    let bytes = input.rest();
    let strict = redis::decode_record(bytes, queue, lease, request, progress);
    let lenient = redis::decode_lenient(bytes, queue, lease, request, progress);
    match strict {
        Err(e) => assert_kind(&e, ErrorKind::Corrupt),
        Ok(r) => {
            assert_eq!(lenient, r);
            assert_eq!(r.queue, if lease.is_some() { Queue::Work } else { queue });
            // A run is applied on top of the record, which does not store it.
            if lease.is_none() {
                let again = redis::encode_record(&r);
                let back = redis::decode_record(&again, queue, None, None, None);
                assert_eq!(back.expect("re-encoded"), r);
            }
        }
    }
}

fn schedule(mut input: Input<'_>) {
    let name = String::from_utf8_lossy(input.field()).into_owned();
    if let Err(e) = redis::decode_schedule(&name, input.rest()) {
        assert_kind(&e, ErrorKind::Corrupt);
    }
}
