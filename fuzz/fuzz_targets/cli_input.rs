//! What a person types that reaches a store: the CLI's `enqueue` arguments (topic, JSON
//! args, delay, time, priority, unique key, headers), task ids (CLI and dashboard, also
//! the list cursor `--after`), queue names, event names. Never a panic; refused input is
//! `Misuse` (or the CLI's usage message); parsed values print and parse back; a task built
//! from them is stored by every store's codec and reads back the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::str::FromStr;
use taskmill_cli::admin::{format, watch};
use taskmill_core::raw::TaskExt;
use taskmill_core::store::EnqueueOptions;
use taskmill_core::{ErrorKind, Payload, Queue, Task, TaskId, Timestamp};
use taskmill_fuzz::{assert_kind, Input};

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let mode = input.byte();
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    match mode % 2 {
        0 => words(&text(input.rest())),
        _ => {
            let fields: Vec<String> = (0..7).map(|_| text(input.field())).collect();
            let headers = text(input.rest());
            enqueue(&fields, &headers);
        }
    }
});

/// One word as each parser of a single value reads it.
fn words(text: &str) {
    // Task ids: `show`, `retry`, `delete`, `cancel`, and the dashboard's `/tasks/ID`
    // (trimmed); the list cursor is the id of a page's last task.
    for text in [text, text.trim()] {
        match TaskId::from_str(text) {
            Ok(id) => assert_eq!(id.to_string().parse::<TaskId>().expect("prints"), id),
            Err(e) => assert_kind(&e, ErrorKind::Misuse),
        }
    }
    match Queue::from_str(text) {
        Ok(queue) => assert_eq!(queue.as_str(), text),
        Err(e) => assert_kind(&e, ErrorKind::Misuse),
    }
    if let Ok(name) = watch::parse_event_name(text) {
        assert_eq!(watch::parse_event_name(name), Ok(name));
    }
    if let Ok(d) = format::parse_duration(text) {
        let _ = format::human_duration(d);
    }
    if let Ok(at) = format::parse_time(text) {
        // Times print to the millisecond, as they are kept.
        let printed = at.to_string();
        if !printed.starts_with('@') {
            assert_eq!(format::parse_time(&printed), Ok(at), "{printed}");
        }
    }
    let _ = format::fit(text, 20);
}

/// `taskmill enqueue TOPIC ARGS --delay D --at T --priority P --unique-key K --header
/// K=V…`, built as the command builds it, then stored and read back by every codec.
fn enqueue(fields: &[String], headers: &str) {
    let [topic, args, delay, at, priority, unique, retries] = fields else {
        unreachable!("seven fields")
    };
    let Ok(args) = Payload::from_json(args.as_str()) else {
        return;
    };
    let mut task = match Task::with_payload(topic.as_str(), args) {
        Ok(task) => task,
        Err(e) => return assert_kind(&e, ErrorKind::Misuse),
    };
    if let Ok(delay) = format::parse_duration(delay) {
        task = task.delay(delay);
    }
    if let Ok(at) = format::parse_time(at) {
        task = task.run_at(at);
    }
    if let Ok(priority) = priority.parse() {
        task = task.priority(priority);
    }
    if !unique.is_empty() {
        task = task.unique_key(unique.as_str());
    }
    if let Ok(retries) = retries.parse() {
        task = task.max_retries(retries);
    }
    for header in headers.split('\n') {
        if let Some((key, value)) = header.split_once('=').filter(|(k, _)| !k.is_empty()) {
            task = match task.clone().header(key, value) {
                Ok(task) => task,
                Err(e) => {
                    assert_kind(&e, ErrorKind::Misuse);
                    task
                }
            };
        }
    }
    let now = Timestamp::from_millis(1_700_000_000_000);
    let record = task.into_record(TaskId::new(1), &EnqueueOptions::new(now));
    // Each store's codec, as it stores a new task and reads it back.
    let sled = taskmill_sled::fuzzing::encode_chunk(std::slice::from_ref(&record));
    let read = taskmill_sled::fuzzing::decode_chunk(1, 1, &sled);
    assert_eq!(read.len(), 1);
    assert_eq!(read[0].as_ref().expect("sled reads it"), &record);
    let redis = taskmill_redis::fuzzing::encode_record(&record);
    let read = taskmill_redis::fuzzing::decode_record(&redis, Queue::Input, None, None, None);
    // Redis keeps the topic in the key, which the fuzzing reader fixes to `t`.
    let mut expected = record.clone();
    expected.topic = "t".into();
    assert_eq!(read.expect("redis reads it"), expected);
    let sqlite = taskmill_sqlite::fuzzing::encode_task(&record, now);
    let (read, _) = taskmill_sqlite::fuzzing::decode_task(&sqlite);
    assert_eq!(read.expect("sqlite reads it"), record);
}
