//! The process's resident memory, from `/proc/self/status` (Linux; `None` elsewhere).

/// The current resident set size (`VmRSS`) in bytes.
pub fn current() -> Option<u64> {
    status_field("VmRSS:")
}

/// The peak resident set size (`VmHWM`) in bytes: since the process started, or since
/// the last [`reset_peak`] that worked.
pub fn peak() -> Option<u64> {
    status_field("VmHWM:")
}

/// Resets the peak to the current size (writing `5` to `/proc/self/clear_refs`, Linux
/// 4.0+), so each scenario reports its own peak. Returns whether it worked; where it does
/// not, [`peak`] stays the peak since the process started.
pub fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// Hands freed heap memory back to the system (glibc's `malloc_trim`), so the memory a
/// previous scenario freed does not count in the next one's resident size. A no-op where
/// the allocator is not glibc's.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn malloc_trim(pad: usize) -> std::os::raw::c_int;
        }
        // SAFETY: malloc_trim takes no pointers and only returns unused pages of glibc's
        // own heap to the kernel; it is safe to call at any time from any thread.
        unsafe {
            malloc_trim(0);
        }
    }
}

fn status_field(name: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_field(&status, name)
}

fn parse_field(status: &str, name: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(name))?;
    let mut words = line[name.len()..].split_whitespace();
    let value: u64 = words.next()?.parse().ok()?;
    match words.next() {
        Some("kB") => Some(value * 1024),
        None => Some(value),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kilobyte_fields() {
        let status = "Name:\tx\nVmHWM:\t  2048 kB\nVmRSS:\t1024 kB\n";
        assert_eq!(parse_field(status, "VmHWM:"), Some(2048 * 1024));
        assert_eq!(parse_field(status, "VmRSS:"), Some(1024 * 1024));
        assert_eq!(parse_field(status, "VmSwap:"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn reads_this_process() {
        let rss = current().expect("VmRSS on Linux");
        let peak = peak().expect("VmHWM on Linux");
        assert!(rss > 0 && peak >= rss / 2, "rss {rss}, peak {peak}");
    }
}
