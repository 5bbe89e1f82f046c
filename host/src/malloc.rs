//! The process's allocator: jemalloc, for Rust and C code alike (SQLite's allocations included),
//! with settings baked in below.
//!
//! Why not glibc's malloc: profiled at 15–18K webhooks/s, glibc's allocator was a quarter to a
//! third of the host's CPU (`_int_malloc`, `malloc_consolidate`, `_int_free`, `unlink_chunk`):
//! the hot path's many blocks above glibc's per-thread cache limit (1,032 bytes — a delivery's
//! body, hyper's buffers, a statement's arguments) all go through an arena under its lock, and
//! every such request first folds the fast bins together. The same build with jemalloc, A/B in one
//! sitting: 20K events/s on SQLite kept up (19.5K webhooks/s, drained in 0.1–0.2 s) where glibc
//! fell behind (12.9–17.1K/s), 13–22 % less host CPU at 10K, PostgreSQL at 20K 11.6K → 12.7K/s
//! (BENCHMARKS.md, "Session of 2026-12-04 (second)"). Before that, glibc needed its arenas capped
//! at 2 and a fixed mmap threshold to stay small; jemalloc needs the settings below instead.
//!
//! The settings (jemalloc's `malloc_conf`; an operator's `MALLOC_CONF` environment variable is read
//! after them and wins option by option, e.g. `MALLOC_CONF=narenas:2`):
//! - `narenas:1` — one arena: the host's threads are a couple of runtime workers, the plugin-call
//!   pool's thread per core (`matcher/pool.rs`) and SQLite's connection threads; per-thread caches
//!   take the contention, and every further arena holds freed memory of its own.
//! - `background_thread:true`, `dirty_decay_ms:20`, `muzzy_decay_ms:0` — freed pages go back to the
//!   kernel within ~20 ms, by jemalloc's own thread rather than on the hot path (decay 0 without
//!   that thread: 13.3 against 10.7 s of host CPU in a 20K run; jemalloc's defaults altogether —
//!   8 arenas, 10 s decay — peaked at 59.9–62.0 MB at 10K events/s against 49.4 MB with these).
//!   20 ms rather than 100: at 100K events/s in batches of 1,000, 60 s runs peaked at 76.8 · 78.0
//!   against 80.4 · 78.7 MB (medians 63.4 · 63.2 against 65.6 · 65.9), and the host's CPU at 20K
//!   events/s was the same (5.05 · 5.05 against 5.34 · 4.94 s over 8 s; BENCHMARKS.md, "Session
//!   of 2026-12-06 (fifteenth)").
//! - `lg_tcache_nslots_mul:-2`, `tcache_nslots_small_max:32` — shallower per-thread caches (slots
//!   per size a quarter of the regions in a slab instead of twice, at most 32 instead of 200):
//!   peak RSS at 10K events/s with half the subscriptions through a plugin 53.6 → 49.4 MB, host
//!   CPU 5.8 → 5.6 s.

#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc reads this symbol at start (a NUL-terminated C string).
#[cfg(not(target_env = "msvc"))]
#[allow(non_upper_case_globals)]
#[unsafe(export_name = "malloc_conf")]
pub static malloc_conf: &[u8] = SETTINGS.as_bytes();

/// The settings, NUL-terminated for C.
pub const SETTINGS: &str = "narenas:1,background_thread:true,dirty_decay_ms:20,muzzy_decay_ms:0,\
                            lg_tcache_nslots_mul:-2,tcache_nslots_small_max:32\0";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_settings_are_one_nul_terminated_list_of_name_value_pairs() {
        let text = SETTINGS.strip_suffix('\0').expect("NUL-terminated");
        assert!(!text.contains('\0'));
        for pair in text.split(',') {
            let (name, value) = pair.split_once(':').expect("name:value");
            assert!(!name.is_empty() && !value.is_empty(), "{pair}");
        }
    }
}
