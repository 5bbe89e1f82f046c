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
//! Blocks of 128 KiB and more get memory of their own from the kernel (`mmap`), returned when
//! freed. glibc's default starts there too but raises the threshold each time such a block is
//! freed, up to 32 MiB, after which the hot path's large, short-lived buffers (a block's
//! `eth_getLogs` answer, a 512-row statement's arguments) are carved out of the arenas and the
//! gaps they leave stay resident. A fixed threshold keeps them out: 10K events/s on SQLite, peak
//! RSS 50.1 / 50.1 → 47.1 / 47.0 MB (anonymous −2.6 MB) with host CPU per webhook unchanged
//! (BENCHMARKS.md, "Session of 2026-12-03 (sixth)").
//!
//! An operator's own setting wins, each on its own: `MALLOC_ARENA_MAX` or a
//! `glibc.malloc.arena_max` tunable in `GLIBC_TUNABLES` leaves the arena count as glibc read it
//! from the environment, and `MALLOC_MMAP_THRESHOLD_` or `glibc.malloc.mmap_threshold` the
//! threshold.

/// Arenas the allocator may create (glibc's `M_ARENA_MAX`).
pub const ARENAS: i32 = 2;

/// Smallest block given its own mapping (glibc's `M_MMAP_THRESHOLD`, fixed at its default).
pub const MMAP_THRESHOLD_BYTES: i32 = 128 * 1024;

/// One of the allocator's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Setting {
    ArenaMax,
    MmapThreshold,
}

impl Setting {
    /// The environment variable and the `GLIBC_TUNABLES` name that set it.
    fn operator_names(self) -> (&'static str, &'static str) {
        match self {
            Setting::ArenaMax => ("MALLOC_ARENA_MAX", "glibc.malloc.arena_max"),
            Setting::MmapThreshold => ("MALLOC_MMAP_THRESHOLD_", "glibc.malloc.mmap_threshold"),
        }
    }
}

/// What [`tune`] did with one setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tuning {
    /// Set to this module's value.
    Applied,
    /// The environment already sets it; left as it is.
    OperatorSet,
    /// Not glibc (or glibc refused the setting).
    Unsupported,
}

/// What [`tune`] did, per setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tunings {
    pub arena_max: Tuning,
    pub mmap_threshold: Tuning,
}

/// Applies [`ARENAS`] and [`MMAP_THRESHOLD_BYTES`], each unless the environment sets it. Call
/// first thing in `main`.
pub fn tune() -> Tunings {
    let apply = |setting: Setting, value: i32| {
        if operator_set(setting, |name| std::env::var(name).ok()) {
            Tuning::OperatorSet
        } else {
            set(setting, value)
        }
    };
    Tunings {
        arena_max: apply(Setting::ArenaMax, ARENAS),
        mmap_threshold: apply(Setting::MmapThreshold, MMAP_THRESHOLD_BYTES),
    }
}

/// Whether the environment, read through `var`, sets `setting`.
fn operator_set(setting: Setting, var: impl Fn(&str) -> Option<String>) -> bool {
    let (variable, tunable) = setting.operator_names();
    var(variable).is_some() || var("GLIBC_TUNABLES").is_some_and(|t| t.contains(tunable))
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn set(setting: Setting, value: i32) -> Tuning {
    let parameter = match setting {
        Setting::ArenaMax => libc::M_ARENA_MAX,
        Setting::MmapThreshold => libc::M_MMAP_THRESHOLD,
    };
    // SAFETY: mallopt only changes the allocator's parameters; it takes no pointers. Called
    // before the runtime starts any thread, as glibc documents for M_ARENA_MAX.
    let ok = unsafe { libc::mallopt(parameter, value) } == 1;
    if ok {
        Tuning::Applied
    } else {
        Tuning::Unsupported
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set(_setting: Setting, _value: i32) -> Tuning {
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
        assert!(operator_set(
            Setting::ArenaMax,
            env(&[("MALLOC_ARENA_MAX", "4")])
        ));
        assert!(operator_set(
            Setting::ArenaMax,
            env(&[(
                "GLIBC_TUNABLES",
                "glibc.malloc.tcache_count=0:glibc.malloc.arena_max=8"
            )])
        ));
    }

    #[test]
    fn an_operators_threshold_is_left_alone_and_does_not_stop_the_arena_setting() {
        let operator = [("GLIBC_TUNABLES", "glibc.malloc.mmap_threshold=65536")];
        assert!(operator_set(Setting::MmapThreshold, env(&operator)));
        assert!(!operator_set(Setting::ArenaMax, env(&operator)));
        assert!(operator_set(
            Setting::MmapThreshold,
            env(&[("MALLOC_MMAP_THRESHOLD_", "65536")])
        ));
    }

    #[test]
    fn other_settings_do_not_count_as_the_operators() {
        for setting in [Setting::ArenaMax, Setting::MmapThreshold] {
            assert!(!operator_set(setting, env(&[])));
            assert!(!operator_set(
                setting,
                env(&[
                    ("GLIBC_TUNABLES", "glibc.malloc.tcache_count=0"),
                    ("MALLOC_TRIM_THRESHOLD_", "131072"),
                ])
            ));
        }
    }

    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn glibc_takes_both_settings() {
        assert_eq!(set(Setting::ArenaMax, ARENAS), Tuning::Applied);
        assert_eq!(
            set(Setting::MmapThreshold, MMAP_THRESHOLD_BYTES),
            Tuning::Applied
        );
    }
}
