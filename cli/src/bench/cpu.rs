//! The CPU time the process has used, from `clock_gettime(CLOCK_PROCESS_CPUTIME_ID)`
//! (Linux with glibc; `None` elsewhere).
//!
//! On a machine shared with other work, wall-clock rates move with everyone else's load;
//! the CPU time a phase used is what the code under test cost, much less disturbed by it.

use std::time::Duration;

/// CPU time used by every thread of the process so far.
pub fn process_time() -> Option<Duration> {
    #[cfg(all(target_os = "linux", target_env = "gnu", target_pointer_width = "64"))]
    {
        #[repr(C)]
        struct Timespec {
            tv_sec: i64,
            tv_nsec: i64,
        }
        extern "C" {
            fn clock_gettime(clock: std::os::raw::c_int, out: *mut Timespec)
                -> std::os::raw::c_int;
        }
        /// `CLOCK_PROCESS_CPUTIME_ID` in Linux's `<time.h>`.
        const CLOCK_PROCESS_CPUTIME_ID: std::os::raw::c_int = 2;
        let mut t = Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `t` is a valid, writable timespec (two 64-bit fields on 64-bit Linux),
        // and clock_gettime only writes it.
        let rc = unsafe { clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &mut t) };
        if rc == 0 && t.tv_sec >= 0 && (0..1_000_000_000).contains(&t.tv_nsec) {
            return Some(Duration::new(t.tv_sec as u64, t.tv_nsec as u32));
        }
        None
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu", target_pointer_width = "64")))]
    {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_grows_with_work() {
        let Some(before) = process_time() else {
            return; // not measurable on this platform
        };
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let after = process_time().expect("measured once, measured again");
        assert!(after > before, "{before:?} then {after:?}");
    }
}
