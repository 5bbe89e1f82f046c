//! The `pipeline` binary runs on jemalloc with the settings of `host/src/malloc.rs`, and an
//! operator's `MALLOC_CONF` still wins option by option. Read back from jemalloc's own report of
//! its options (`stats_print`, printed to stderr when the process exits).

use std::process::Command;

use pipeline_tests::host::pipeline_binary;

/// `pipeline --version` with `MALLOC_CONF` set; jemalloc's exit report.
fn allocator_report(conf: &str) -> String {
    let out = Command::new(pipeline_binary())
        .arg("--version")
        .env("MALLOC_CONF", conf)
        .output()
        .expect("run pipeline --version");
    assert!(out.status.success(), "pipeline --version: {out:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn the_binary_runs_on_jemalloc_with_its_own_settings() {
    let report = allocator_report("stats_print:true");
    for option in [
        "opt.narenas: 1",
        "opt.background_thread: true",
        "opt.dirty_decay_ms: 20",
        "opt.muzzy_decay_ms: 0",
        "opt.tcache_nslots_small_max: 32",
        "opt.lg_tcache_nslots_mul: -2",
    ] {
        assert!(
            report.contains(option),
            "jemalloc's report lacks {option:?}:\n{report}"
        );
    }
}

#[test]
fn an_operators_malloc_conf_wins_option_by_option() {
    let report = allocator_report("stats_print:true,narenas:3");
    assert!(report.contains("opt.narenas: 3"), "{report}");
    assert!(report.contains("opt.dirty_decay_ms: 20"), "{report}");
}
