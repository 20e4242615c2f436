//! Messages read from the Redis store's channels: events (a JSON array of events, or one)
//! and cancel requests (a JSON array of ids). Never a panic; the events a message decodes
//! to, published again, decode to the same events.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use taskmill_core::Event;
use taskmill_redis::fuzzing as redis;

fuzz_target!(|data: &[u8]| {
    let _ = serde_json::from_slice::<Vec<u64>>(data);
    let Ok(events) = redis::decode_events(data) else {
        return;
    };
    let again = serde_json::to_vec(&events).expect("events serialize");
    let read = redis::decode_events(&again).expect("published events decode");
    assert_eq!(read.len(), events.len());
    for (read, event) in read.iter().zip(&events) {
        let (a, b) = (json(read), json(event));
        assert!(same(&a, &b), "{event:?} reads back as {read:?}");
    }
});

/// An event as the JSON value it is published as, a result of `null` left out (it reads
/// back as no result, as `Event`'s own serde does).
fn json(event: &Event) -> Value {
    let mut value = serde_json::to_value(event).expect("an event serializes");
    if let Some(object) = value.as_object_mut() {
        if object.get("result") == Some(&Value::Null) {
            object.remove("result");
        }
    }
    value
}

/// Equal JSON, but for floats, which serde_json's parser (without `float_roundtrip`)
/// may read one unit in the last place off what it printed.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => {
            let (x, y) = (
                x.as_f64().unwrap_or(f64::NAN),
                y.as_f64().unwrap_or(f64::NAN),
            );
            x == y || (x - y).abs() <= f64::EPSILON * x.abs().max(y.abs()) * 4.0
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}
