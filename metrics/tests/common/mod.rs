//! A parser of the OpenMetrics text the tests scrape, and a store whose statistics fail.

mod exposition;

pub use exposition::{parse, Exposition};
use std::sync::atomic::{AtomicBool, Ordering};
use taskmill_core::{Error, Result, Stats, Store};

/// A store whose `stats` fail while [`fail`](FailingStats::fail) says so; everything else
/// is the memory store's.
pub struct FailingStats<S> {
    inner: S,
    failing: AtomicBool,
}

impl<S: Store> FailingStats<S> {
    pub fn new(inner: S) -> Self {
        FailingStats {
            inner,
            failing: AtomicBool::new(false),
        }
    }

    pub fn fail(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }
}

taskmill_testkit::forward_store! {
    impl<S: Store> Store for FailingStats<S> {
        forward |s| &s.inner;
        async fn stats(&self, opts: &taskmill_core::store::StatsOptions) -> Result<Stats> {
            if self.failing.load(Ordering::SeqCst) {
                return Err(Error::unavailable("the disk is on fire"));
            }
            self.inner.stats(opts).await
        }
    }
}

#[test]
fn the_parser_reads_labels_with_escapes_and_rejects_garbage() {
    let m = parse(concat!(
        "# HELP a_total help text\n",
        "# TYPE a counter\n",
        "a_total{topic=\"say \\\"hi\\\" \\\\ now\",q=\"x\"} 3\n",
        "b 1.5\n",
        "c{le=\"+Inf\"} +Inf\n",
        "# EOF\n",
    ));
    assert_eq!(
        m.value("a_total", &[("topic", "say \"hi\" \\ now"), ("q", "x")]),
        Some(3.0)
    );
    assert_eq!(m.value("b", &[]), Some(1.5));
    assert_eq!(m.value("c", &[("le", "+Inf")]), Some(f64::INFINITY));
    assert_eq!(m.kind("a"), Some("counter"));
    for bad in [
        "a 1\n",                     // no EOF
        "a{x=\"1} 2\n# EOF\n",       // unclosed value
        "a{x=1} 2\n# EOF\n",         // unquoted value
        "a 1\na 2\n# EOF\n",         // the same sample twice
        "a one\n# EOF\n",            // not a number
        "# BOGUS x y\na 1\n# EOF\n", // unknown comment
    ] {
        let text = bad.to_string();
        assert!(
            std::panic::catch_unwind(|| parse(&text)).is_err(),
            "accepted {bad:?}"
        );
    }
}
