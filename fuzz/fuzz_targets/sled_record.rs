//! The sled store's codec: records, chunks of records, schedule states and stats rows.
//! Never a panic; what cannot be decoded is `Corrupt`; what decodes re-encodes to bytes
//! that decode equal; the in-place completion agrees with decoding and applying it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::Arc;
use taskmill_core::raw::{PayloadExt, RecordExt};
use taskmill_core::store::{LeaseRef, Outcome, OutcomeKind};
use taskmill_core::{Counters, ErrorKind, Payload, Queue, Timestamp};
use taskmill_fuzz::{assert_kind, Input};
use taskmill_sled::fuzzing as sled;

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    match input.byte() % 4 {
        0 => record(input),
        1 => chunk(input),
        2 => schedule(input),
        _ => row(input.rest()),
    }
});

/// A record, and the in-place completion of it at `now` with a result.
fn record(mut input: Input<'_>) {
    let now = Timestamp::from_millis(input.u64() as i64);
    let result = input.optional().map(String::from_utf8_lossy);
    let bytes = input.rest();
    let decoded = sled::decode_record(bytes);
    match &decoded {
        Err(e) => assert_kind(e, ErrorKind::Corrupt),
        Ok(r) => {
            assert!(
                sled::state_agrees(bytes, r),
                "the index state differs: {r:?}"
            );
            let again = sled::encode_record(r);
            assert_eq!(&sled::decode_record(&again).expect("re-encoded"), r);
            assert!(sled::state_agrees(&again, r));
        }
    }
    let Some((completed, keeps_unique)) = sled::complete_in_place(bytes, now, result.as_deref())
    else {
        return;
    };
    let done = sled::decode_record(&completed).expect("a completion in place decodes");
    // The owner of the lease is dropped unread, so a record that does not decode for its
    // owner alone may be completed in place; any other is decoded and completed.
    let Ok(mut expected) = decoded else { return };
    assert_eq!(expected.queue, Queue::Work);
    // A task in WORK without a lease is indexed with token 0, which no claim issues: the
    // store never completes it, the reaper takes it.
    let Some(token) = expected.lease.as_ref().map(|l| l.token) else {
        return;
    };
    let lease = LeaseRef {
        id: expected.id,
        topic: Arc::clone(&expected.topic),
        token,
    };
    let kind = OutcomeKind::complete_with(result.map(|r| Payload::from_stored(&*r)));
    let outcome = Outcome::new(lease, kind);
    expected.apply_outcome(&outcome, now, &mut Counters::default());
    assert_eq!(done, expected);
    assert_eq!(keeps_unique, expected.unique_while_kept);
}

/// A chunk of the key `first..=last`: its records re-encoded into a chunk read back the
/// same, placeholder included, and nothing is lost from it.
fn chunk(mut input: Input<'_>) {
    let (first, last) = (input.u64(), input.u64());
    let value = input.rest();
    let mut records = Vec::new();
    for decoded in sled::decode_chunk(first, last, value) {
        match decoded {
            Ok(r) => records.push(r),
            Err(e) => assert_kind(&e, ErrorKind::Corrupt),
        }
    }
    for r in &records {
        assert!(
            (first..=last).contains(&r.id.get()),
            "task {} is outside",
            r.id
        );
    }
    let again = sled::encode_chunk(&records);
    let read: Vec<_> = sled::decode_chunk(first, last, &again)
        .into_iter()
        .map(|r| r.expect("re-encoded"))
        .collect();
    assert_eq!(read, records);
}

/// A schedule state: it decodes from exactly the bytes it encodes to.
fn schedule(mut input: Input<'_>) {
    let name = input.field();
    let value = input.rest();
    match sled::decode_schedule(name, value) {
        Err(e) => assert_kind(&e, ErrorKind::Corrupt),
        Ok(state) => {
            let again = sled::encode_schedule(&state);
            assert_eq!(again, value, "{state:?} is not stored canonically");
            assert_eq!(
                sled::decode_schedule(name, &again).expect("re-encoded"),
                state
            );
        }
    }
}

/// A stats row.
fn row(value: &[u8]) {
    match sled::decode_row(value) {
        Err(e) => assert_kind(&e, ErrorKind::Corrupt),
        Ok((counters, paused)) => {
            let again = sled::encode_row(&counters, paused);
            assert_eq!(
                sled::decode_row(&again).expect("re-encoded"),
                (counters, paused)
            );
        }
    }
}
