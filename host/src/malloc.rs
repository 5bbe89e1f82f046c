//! The C allocator's settings, applied once at start, before any thread exists.
//!
//! glibc gives threads that contend for the allocator their own arena, up to 8 per core, and an
//! arena keeps the memory freed in it for reuse. The host runs a plugin call per subscription per
//! batch on tokio's blocking threads (60 threads at 10K events/s with 50 plugin subscriptions),
//! so most of those arenas existed, each holding its own freed memory: at 10K events/s, 15 of
//! them held 43 MB against ~28 MB live (BENCHMARKS.md, "Memory — session of 2026-12-02
//! (seventh)"). Two arenas keep that retention down (peak RSS −6 MB at 10K, −8 MB at 5K) at the
//! same throughput; one arena (every thread on one lock) fell behind at 10K.
//!
//! An operator's own setting wins: `MALLOC_ARENA_MAX` or a `glibc.malloc.arena_max` tunable in
//! `GLIBC_TUNABLES` leaves the allocator as glibc read it from the environment.

/// Arenas the allocator may create (glibc's `M_ARENA_MAX`).
pub const ARENAS: i32 = 2;

/// What [`tune`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tuning {
    /// `M_ARENA_MAX` set to [`ARENAS`].
    Applied,
    /// The environment already sets it; left as it is.
    OperatorSet,
    /// Not glibc (or glibc refused the setting).
    Unsupported,
}

/// Applies [`ARENAS`] unless the environment sets the arena count. Call first thing in `main`.
pub fn tune() -> Tuning {
    if operator_set(|name| std::env::var(name).ok()) {
        return Tuning::OperatorSet;
    }
    set_arena_max(ARENAS)
}

/// Whether the environment, read through `var`, sets glibc's arena count.
fn operator_set(var: impl Fn(&str) -> Option<String>) -> bool {
    var("MALLOC_ARENA_MAX").is_some()
        || var("GLIBC_TUNABLES").is_some_and(|t| t.contains("glibc.malloc.arena_max"))
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn set_arena_max(arenas: i32) -> Tuning {
    // SAFETY: mallopt only changes the allocator's parameters; it takes no pointers. Called
    // before the runtime starts any thread, as glibc documents for M_ARENA_MAX.
    let ok = unsafe { libc::mallopt(libc::M_ARENA_MAX, arenas) } == 1;
    if ok {
        Tuning::Applied
    } else {
        Tuning::Unsupported
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set_arena_max(_arenas: i32) -> Tuning {
    Tuning::Unsupported
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn an_operators_arena_setting_is_left_alone() {
        assert!(operator_set(env(&[("MALLOC_ARENA_MAX", "4")])));
        assert!(operator_set(env(&[(
            "GLIBC_TUNABLES",
            "glibc.malloc.tcache_count=0:glibc.malloc.arena_max=8"
        )])));
    }

    #[test]
    fn other_settings_do_not_count_as_the_operators() {
        assert!(!operator_set(env(&[])));
        assert!(!operator_set(env(&[
            ("GLIBC_TUNABLES", "glibc.malloc.tcache_count=0"),
            ("MALLOC_TRIM_THRESHOLD_", "131072"),
        ])));
    }

    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn glibc_takes_the_arena_count() {
        assert_eq!(set_arena_max(ARENAS), Tuning::Applied);
    }
}
