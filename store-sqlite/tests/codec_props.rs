//! Property tests of the row codec (issue #17), through the `fuzzing` module the fuzz
//! targets use: a record written as the store writes it reads back equal, and a row of any
//! values decodes or is `Corrupt`, never a panic. Cases: proptest's default (256), or
//! `PROPTEST_CASES`.

use proptest::prelude::*;
use taskmill_core::raw::PayloadExt;
use taskmill_core::store::{ScheduleEntry, ScheduleState};
use taskmill_core::{
    AttemptError, ErrorKind, Lease, Payload, Queue, TaskId, TaskRecord, Timestamp,
};
use taskmill_sqlite::fuzzing::{self as sqlite, Cell};

fn time() -> impl Strategy<Value = Timestamp> {
    any::<i64>().prop_map(Timestamp::from_millis)
}

/// Any text, control characters and non-ASCII included.
fn text() -> impl Strategy<Value = String> {
    ".{0,12}"
}

/// JSON text, as the store requires of payloads it hands out.
fn json() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("null".to_string()),
        any::<bool>().prop_map(|b| b.to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        text().prop_map(|s| serde_json::to_string(&s).unwrap()),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(|v| format!("[{}]", v.join(","))),
            prop::collection::vec((text(), inner), 0..4).prop_map(|v| {
                let fields: Vec<_> = v
                    .iter()
                    .map(|(k, v)| format!("{}:{v}", serde_json::to_string(k).unwrap()))
                    .collect();
                format!("{{{}}}", fields.join(","))
            }),
        ]
    })
}

fn error() -> impl Strategy<Value = AttemptError> {
    (any::<u32>(), time(), text()).prop_map(|(attempt, at, message)| AttemptError {
        attempt,
        at,
        message: message.into(),
    })
}

prop_compose! {
    /// A record the store can hold: ids and tokens in SQLite's integer range, an attempt
    /// a claim can still add one to, a lease exactly when in WORK.
    fn record()(
        (id, topic, args, queue) in (0..=i64::MAX as u64, text(), json(), 0..Queue::ALL.len()),
        (external_id, attempt, max_retries, priority) in
            (proptest::option::of(text()), 0..u32::MAX, proptest::option::of(any::<u32>()), any::<i16>()),
        (enqueued_at, run_at, unique_key, unique_while_kept) in
            (time(), time(), proptest::option::of(text()), any::<bool>()),
        (first_started_at, started_at, finished_at) in
            (proptest::option::of(time()), proptest::option::of(time()), proptest::option::of(time())),
        errors in prop::collection::vec(error(), 0..4),
        (result, progress, cancelled_by) in
            (proptest::option::of(json()), proptest::option::of(json()), proptest::option::of(text())),
        lease in (text(), 0..=i64::MAX as u64, time()),
        headers in prop::collection::vec(("[a-z][a-z0-9-]{0,6}", text()), 0..4),
    ) -> TaskRecord {
        let mut r = TaskRecord::new(TaskId::new(id), topic, Payload::from_stored(args));
        r.queue = Queue::ALL[queue];
        r.external_id = external_id.map(Into::into);
        r.attempt = attempt;
        r.max_retries = max_retries;
        r.priority = priority;
        r.enqueued_at = enqueued_at;
        r.run_at = run_at;
        r.unique_key = unique_key.map(Into::into);
        r.unique_while_kept = unique_while_kept;
        r.first_started_at = first_started_at;
        r.started_at = started_at;
        r.finished_at = finished_at;
        r.errors = errors;
        r.result = result.map(Payload::from_stored);
        r.progress = progress.map(Payload::from_stored);
        r.cancelled_by = cancelled_by.map(Into::into);
        let (owner, token, deadline) = lease;
        if r.queue == Queue::Work {
            r.lease = Some(Lease { owner: owner.into(), token, deadline });
        }
        for (key, value) in headers {
            // A value the rules refuse is left out: the store writes what they allow.
            let _ = r.headers.insert(key, value);
        }
        r
    }
}

fn cell() -> impl Strategy<Value = Cell> {
    prop_oneof![
        Just(Cell::Null),
        any::<i64>().prop_map(Cell::Int),
        any::<f64>().prop_map(Cell::Real),
        prop::collection::vec(any::<u8>(), 0..16).prop_map(Cell::Text),
        json().prop_map(|j| Cell::Text(j.into_bytes())),
        prop::collection::vec(any::<u8>(), 0..16).prop_map(Cell::Blob),
    ]
}

proptest! {
    #[test]
    fn records_round_trip(r in record(), now in time()) {
        let (strict, lenient) = sqlite::decode_task(&sqlite::encode_task(&r, now));
        prop_assert_eq!(strict.unwrap(), r.clone());
        prop_assert_eq!(lenient, r);
    }

    #[test]
    fn rows_of_any_values_decode_or_are_corrupt(
        r in record(),
        changes in prop::collection::vec((any::<prop::sample::Index>(), cell()), 0..4),
    ) {
        let mut row = sqlite::encode_task(&r, Timestamp::EPOCH);
        // The id stays an integer, as a rowid does.
        for (at, cell) in changes {
            let at = 1 + at.index(row.len() - 1);
            row[at] = cell;
        }
        match sqlite::decode_task(&row) {
            (Ok(decoded), lenient) => {
                prop_assert_eq!(&lenient, &decoded);
                let (back, _) = sqlite::decode_task(&sqlite::encode_task(&decoded, Timestamp::EPOCH));
                prop_assert_eq!(back.unwrap(), decoded);
            }
            (Err(e), _) => prop_assert_eq!(e.kind(), ErrorKind::Corrupt),
        }
    }

    #[test]
    fn schedules_round_trip(
        (name, spec, zone, topic) in (text(), text(), text(), text()),
        (seen_at, paused, last_tick, fired_at) in
            (time(), any::<bool>(), proptest::option::of(time()), proptest::option::of(time())),
        last_task in proptest::option::of(0..=i64::MAX as u64),
    ) {
        let mut state = ScheduleState::new(&ScheduleEntry::new(name, spec, zone, topic), seen_at);
        state.paused = paused;
        state.last_tick = last_tick;
        state.last_task = last_task.map(TaskId::new);
        state.fired_at = fired_at;
        prop_assert_eq!(sqlite::decode_schedule(&sqlite::encode_schedule(&state)).unwrap(), state);
    }

    #[test]
    fn schedule_rows_of_any_values_decode_or_are_corrupt(
        row in prop::collection::vec(cell(), sqlite::schedule_columns()),
    ) {
        if let Err(e) = sqlite::decode_schedule(&row) {
            prop_assert_eq!(e.kind(), ErrorKind::Corrupt);
        }
    }
}

/// A row of a task in WORK, as the store writes it, with `column` set to `value`.
fn leased_row_with(column: usize, value: Cell) -> Vec<Cell> {
    let mut r = TaskRecord::new(TaskId::new(3), "t", Payload::from_stored("{}"));
    r.queue = Queue::Work;
    r.lease = Some(Lease {
        owner: "m1".into(),
        token: 7,
        deadline: Timestamp::from_millis(9),
    });
    let mut row = sqlite::encode_task(&r, Timestamp::EPOCH);
    assert!(sqlite::decode_task(&row).0.is_ok());
    row[column] = value;
    row
}

/// Found by the `sqlite_row` fuzz target: a negative lease token or id read as a huge
/// number, which the store writes back as another (`sql_u64` clamps), instead of
/// `Corrupt`.
#[test]
fn a_negative_token_or_id_is_corrupt() {
    for (column, name) in [(20, "lease_token"), (0, "id")] {
        let (strict, _) = sqlite::decode_task(&leased_row_with(column, Cell::Int(-2)));
        let e = strict.expect_err(name);
        assert_eq!(e.kind(), ErrorKind::Corrupt);
        assert!(e.to_string().contains(name), "{e}");
    }
}
