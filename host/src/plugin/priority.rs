//! Scheduling priority of the thread running a plugin call. A call that is still running after a
//! few epoch ticks is demoted to the lowest CPU priority (nice 19), so a plugin that spins until
//! its wall-clock limit takes CPU only when nothing healthy wants it (Linux gives a nice-19 thread
//! about 1.5 % of a core against a nice-0 one). The priority is restored when the call's job ends,
//! where the process may raise it again (root or CAP_SYS_NICE); where it may not, the thread
//! stays low — the matcher's plugin threads then take no further call (`matcher/pool.rs`), a
//! canary's blocking thread stays low until tokio retires it — and a warning says so once.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};

/// The nice value of a demoted thread.
const LOW: i32 = 19;

thread_local! {
    /// The nice value the thread had before it was demoted, while it is demoted.
    static DEMOTED_FROM: Cell<Option<i32>> = const { Cell::new(None) };
}

/// Lowers the calling thread's CPU priority; `true` if it is (now or already) demoted.
pub fn demote_current_thread() -> bool {
    if DEMOTED_FROM.with(Cell::get).is_some() {
        return true;
    }
    let Some(before) = current_nice() else {
        return false;
    };
    if set_current_nice(LOW) {
        DEMOTED_FROM.with(|d| d.set(Some(before)));
        true
    } else {
        false
    }
}

/// Whether the calling thread is demoted.
pub fn is_demoted() -> bool {
    DEMOTED_FROM.with(Cell::get).is_some()
}

/// Gives the calling thread back the priority it had before [`demote_current_thread`].
pub fn restore_current_thread() {
    let Some(before) = DEMOTED_FROM.with(Cell::get) else {
        return;
    };
    if set_current_nice(before) {
        DEMOTED_FROM.with(|d| d.set(None));
    } else {
        static WARNED: AtomicBool = AtomicBool::new(false);
        if !WARNED.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "a plugin thread demoted for running long cannot be given its priority back \
                 (the process lacks CAP_SYS_NICE); it runs no further matcher plugin calls \
                 (a canary's thread stays low until the runtime retires it)"
            );
        }
    }
}

#[cfg(target_os = "linux")]
fn current_nice() -> Option<i32> {
    // SAFETY: plain syscalls on the calling thread's own id; no memory is passed.
    unsafe {
        let tid = libc::gettid() as libc::id_t;
        *libc::__errno_location() = 0;
        let nice = libc::getpriority(libc::PRIO_PROCESS, tid);
        (nice != -1 || *libc::__errno_location() == 0).then_some(nice)
    }
}

#[cfg(target_os = "linux")]
fn set_current_nice(nice: i32) -> bool {
    // SAFETY: as above. On Linux PRIO_PROCESS with a thread id sets that thread's nice only.
    unsafe { libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, nice) == 0 }
}

#[cfg(not(target_os = "linux"))]
fn current_nice() -> Option<i32> {
    None
}

#[cfg(not(target_os = "linux"))]
fn set_current_nice(_nice: i32) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_demoted_thread_runs_at_the_lowest_priority_until_restored() {
        std::thread::spawn(|| {
            let before = current_nice().unwrap();
            assert!(demote_current_thread());
            assert!(is_demoted());
            assert_eq!(current_nice(), Some(LOW));
            restore_current_thread();
            // Raising priority again needs privilege; where the test runs unprivileged the thread
            // stays demoted and says so.
            if current_nice() == Some(before) {
                assert!(!is_demoted());
            } else {
                assert!(is_demoted());
            }
        })
        .join()
        .unwrap();
    }
}
