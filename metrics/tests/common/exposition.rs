//! A strict parser of OpenMetrics text, with nothing but std: the metrics crate's tests
//! use it through `common`, and the tests of `taskmill serve` (cli/tests/operator.rs) and
//! of the metrics example (examples/metrics.rs) include this file by its path.

use std::collections::BTreeMap;

/// Labels of a sample, sorted by name.
pub type Labels = BTreeMap<String, String>;

/// A parsed exposition: every sample by name and labels, and every family's type.
#[derive(Debug, Default)]
pub struct Exposition {
    pub samples: BTreeMap<(String, Labels), f64>,
    pub types: BTreeMap<String, String>,
}

impl Exposition {
    /// The value of the sample `name` with exactly `labels`.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let labels: Labels = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.samples.get(&(name.to_string(), labels)).copied()
    }

    /// The `# TYPE` of family `name`.
    pub fn kind(&self, name: &str) -> Option<&str> {
        self.types.get(name).map(String::as_str)
    }
}

/// Parses OpenMetrics text strictly enough to catch a malformed exposition: `# HELP`,
/// `# TYPE` and `# UNIT` lines, samples `name{label="value",…} number`, label values with
/// `\\`, `\"` and `\n` escapes, no sample twice, and a final `# EOF`.
///
/// # Panics
/// On anything else, naming the line.
pub fn parse(text: &str) -> Exposition {
    let mut out = Exposition::default();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.last(), Some(&"# EOF"), "no # EOF at the end:\n{text}");
    assert!(text.ends_with("# EOF\n"), "the text ends with a newline");
    for line in &lines[..lines.len() - 1] {
        if let Some(meta) = line.strip_prefix("# ") {
            let mut parts = meta.splitn(3, ' ');
            let (what, name) = (parts.next(), parts.next());
            match (what, name, parts.next()) {
                (Some("TYPE"), Some(name), Some(kind)) => {
                    let known = ["counter", "gauge", "histogram", "info", "unknown"];
                    assert!(known.contains(&kind), "type {kind:?}: {line}");
                    let previous = out.types.insert(name.to_string(), kind.to_string());
                    assert!(previous.is_none(), "family {name} declared twice");
                }
                (Some("HELP" | "UNIT"), Some(_), Some(_)) => {}
                _ => panic!("unexpected comment line: {line}"),
            }
            continue;
        }
        let (name, labels, rest) = sample(line);
        let value = match rest {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v
                .parse::<f64>()
                .unwrap_or_else(|_| panic!("bad value {v:?}: {line}")),
        };
        let previous = out.samples.insert((name.to_string(), labels), value);
        assert!(previous.is_none(), "sample twice: {line}");
    }
    out
}

/// A sample line's name, labels and value text.
fn sample(line: &str) -> (&str, Labels, &str) {
    let name_end = line
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .unwrap_or_else(|| panic!("no value: {line}"));
    let (name, mut rest) = line.split_at(name_end);
    assert!(!name.is_empty(), "no name: {line}");
    let mut labels = Labels::new();
    if let Some(inside) = rest.strip_prefix('{') {
        let mut chars = inside.char_indices();
        let mut key = String::new();
        loop {
            let (i, c) = chars
                .next()
                .unwrap_or_else(|| panic!("unclosed {{: {line}"));
            match c {
                '}' if key.is_empty() => {
                    rest = &inside[i + 1..];
                    break;
                }
                '=' => {
                    assert_eq!(chars.next().map(|(_, c)| c), Some('"'), "{line}");
                    let mut value = String::new();
                    loop {
                        match chars.next().map(|(_, c)| c) {
                            Some('"') => break,
                            Some('\\') => match chars.next().map(|(_, c)| c) {
                                Some('\\') => value.push('\\'),
                                Some('"') => value.push('"'),
                                Some('n') => value.push('\n'),
                                other => panic!("bad escape {other:?}: {line}"),
                            },
                            Some(c) => value.push(c),
                            None => panic!("unclosed label value: {line}"),
                        }
                    }
                    let k = std::mem::take(&mut key);
                    assert!(labels.insert(k, value).is_none(), "label twice: {line}");
                    match chars.next() {
                        Some((_, ',')) => {}
                        Some((i, '}')) => {
                            rest = &inside[i + 1..];
                            break;
                        }
                        other => panic!("expected , or }} but got {other:?}: {line}"),
                    }
                }
                c if c.is_ascii_alphanumeric() || c == '_' => key.push(c),
                _ => panic!("bad label name character {c:?}: {line}"),
            }
        }
    }
    let value = rest
        .strip_prefix(' ')
        .unwrap_or_else(|| panic!("no space before the value: {line}"));
    assert!(!value.contains(' '), "timestamps or exemplars: {line}");
    (name, labels, value)
}
