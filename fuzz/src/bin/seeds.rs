//! Writes the seed corpora under `corpus/<target>/`: a few valid inputs per target, built
//! with the stores' own encoders, so the fuzzers start past the format checks. Run from
//! `fuzz/`: `cargo run --bin seeds` (stable is enough). Rewrites the seeds it makes.

use std::path::Path;
use taskmill_core::raw::{PayloadExt, TaskExt};
use taskmill_core::store::{EnqueueOptions, ScheduleEntry, ScheduleState};
use taskmill_core::{
    AttemptError, Counters, Lease, Payload, Queue, Task, TaskId, TaskRecord, Timestamp,
};
use taskmill_fuzz::Frame;
use taskmill_sqlite::fuzzing::Cell;

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new("corpus").join(target);
    std::fs::create_dir_all(&dir).expect("corpus directory");
    std::fs::write(dir.join(name), bytes).expect("seed written");
}

/// A new task, and the same with every field set, in WORK under a lease.
fn records() -> [TaskRecord; 2] {
    let task = Task::with_payload("t", Payload::from_json(r#"{"to":"ada"}"#).unwrap()).unwrap();
    let new = task.into_record(
        TaskId::new(1),
        &EnqueueOptions::new(Timestamp::from_millis(5)),
    );
    let mut full = new.clone();
    full.queue = Queue::Work;
    full.attempt = 2;
    full.max_retries = Some(3);
    full.external_id = Some("ext".into());
    full.unique_while_kept = true;
    full.first_started_at = Some(Timestamp::from_millis(6));
    full.started_at = Some(Timestamp::from_millis(7));
    full.errors = vec![AttemptError {
        attempt: 1,
        at: Timestamp::from_millis(6),
        message: "boom".into(),
    }];
    full.progress = Some(Payload::from_stored("0.5"));
    full.lease = Some(Lease {
        owner: "m1".into(),
        token: 9,
        deadline: Timestamp::from_millis(99),
    });
    full.headers.insert("x-trace", "ab").unwrap();
    [new, full]
}

fn schedule() -> ScheduleState {
    let entry = ScheduleEntry::new("nightly", "0 3 * * *", "UTC", "t");
    let mut state = ScheduleState::new(&entry, Timestamp::from_millis(1_000));
    state.last_tick = Some(Timestamp::from_millis(900));
    state.last_task = Some(TaskId::new(4));
    state
}

/// A row of cells in `sqlite_row`'s framing.
fn cells(mode: u8, row: &[Cell]) -> Vec<u8> {
    let mut frame = Frame::new(mode);
    for cell in row {
        frame = match cell {
            Cell::Null => frame.byte(0),
            Cell::Int(i) => frame.byte(1).u64(*i as u64),
            Cell::Real(f) => frame.byte(2).u64(f.to_bits()),
            Cell::Text(t) => frame.byte(3).field(t),
            Cell::Blob(b) => frame.byte(4).field(b),
        };
    }
    frame.0
}

fn main() {
    let records = records();
    for (i, r) in records.iter().enumerate() {
        let bytes = taskmill_sled::fuzzing::encode_record(r);
        let now = Timestamp::from_millis(50).as_millis() as u64;
        write(
            "sled_record",
            &format!("record-{i}"),
            &Frame::new(0).u64(now).optional(Some(b"1")).rest(&bytes),
        );
        let chunk = taskmill_sled::fuzzing::encode_chunk(std::slice::from_ref(r));
        write(
            "sled_record",
            &format!("chunk-{i}"),
            &Frame::new(1).u64(1).u64(3).rest(&chunk),
        );
        let bytes = taskmill_redis::fuzzing::encode_record(r);
        let lease = b"9:99;7;3:m1";
        write(
            "redis_record",
            &format!("record-{i}"),
            &Frame::new(0)
                .byte(0)
                .optional(None)
                .optional(None)
                .optional(None)
                .rest(&bytes),
        );
        write(
            "redis_record",
            &format!("leased-{i}"),
            &Frame::new(0)
                .byte(1)
                .optional(Some(lease))
                .optional(Some(b"ops"))
                .optional(Some(b"0.7"))
                .rest(&bytes),
        );
        let row = taskmill_sqlite::fuzzing::encode_task(r, Timestamp::EPOCH);
        write("sqlite_row", &format!("task-{i}"), &cells(0, &row));
    }
    let both = taskmill_sled::fuzzing::encode_chunk(&records.clone().map(|mut r| {
        r.id = TaskId::new(r.id.get() + 1);
        r
    }));
    write(
        "sled_record",
        "chunk-2",
        &Frame::new(1).u64(1).u64(3).rest(&both),
    );
    let state = schedule();
    let bytes = taskmill_sled::fuzzing::encode_schedule(&state);
    write(
        "sled_record",
        "schedule",
        &Frame::new(2).field(state.name.as_bytes()).rest(&bytes),
    );
    let mut counters = Counters::default();
    counters.enqueued = 3;
    write(
        "sled_record",
        "row",
        &Frame::new(3).rest(&taskmill_sled::fuzzing::encode_row(&counters, true)),
    );
    write(
        "redis_record",
        "schedule",
        &Frame::new(1)
            .field(b"nightly")
            .rest(b"s1:0:900:4:900:1000:9:3:1:1:0 3 * * *UTCtt"),
    );
    write(
        "sqlite_row",
        "schedule",
        &cells(1, &taskmill_sqlite::fuzzing::encode_schedule(&state)),
    );
    let enqueued = serde_json::to_vec(&[taskmill_core::Event::enqueued(&records[0])]).unwrap();
    write("redis_event", "enqueued", &enqueued);
    write("redis_event", "events", br#"[{"type":"TASK_ENQUEUE","id":1,"topic":"t","run_at":5},{"type":"TASK_COMPLETION","id":1,"topic":"t","attempt":1,"duration_ms":3,"result":{"a":[1,2.5]}}]"#);
    write("redis_event", "cancels", b"[1,2,3]");
    for (i, url) in [
        "sqlite://data/tasks.db?durability=full&busy_timeout_ms=250",
        "sqlite://:memory:",
        "sled:///var/lib/x?flush=enqueues",
        "redis://app:p%40ss@cache:6380/2?namespace=jobs",
        "redis://[::1]/0",
        "memory://",
    ]
    .iter()
    .enumerate()
    {
        write("store_url", &format!("url-{i}"), url.as_bytes());
    }
    for (i, word) in [
        "42",
        " 7 ",
        "dead",
        "task-failure",
        "90s",
        "1.5h",
        "2026-11-22T06:40:01.250Z",
    ]
    .iter()
    .enumerate()
    {
        write(
            "cli_input",
            &format!("word-{i}"),
            &Frame::new(0).rest(word.as_bytes()),
        );
    }
    let mut enqueue = Frame::new(1);
    for field in [
        "emails",
        r#"{"to":"ada"}"#,
        "10m",
        "2026-11-22T06:40:01Z",
        "-3",
        "k1",
        "5",
    ] {
        enqueue = enqueue.field(field.as_bytes());
    }
    write(
        "cli_input",
        "enqueue",
        &enqueue.rest(b"traceparent=00-ab-cd-01\nx-note=hi"),
    );
}
