//! Checks of the operator's files in `deploy/`: which metric names a Grafana dashboard's queries
//! and the alert rules use, which ones a `/metrics` exposition has, and PromQL syntax through
//! `promtool check rules`.

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde_json::Value;

use crate::workspace_root;

pub fn dashboard_path() -> PathBuf {
    workspace_root().join("deploy/grafana/pipeline.json")
}

pub fn alerts_path() -> PathBuf {
    workspace_root().join("deploy/prometheus/alerts.yml")
}

pub fn runbook_path() -> PathBuf {
    workspace_root().join("docs/runbook.md")
}

/// Every panel of a dashboard, rows' nested panels included.
pub fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().into_iter().flatten() {
        out.push(panel);
        out.extend(panel["panels"].as_array().into_iter().flatten());
    }
    out
}

/// The `pipeline_*` identifiers in a text (a PromQL expression, a rules file).
pub fn metric_names(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|word| word.starts_with("pipeline_"))
        .map(String::from)
        .collect()
}

/// The sample names of an exposition (`_bucket`, `_sum`, `_count` included, as queries use them).
pub fn exported_samples(exposition: &str) -> BTreeSet<String> {
    exposition
        .lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .filter_map(|line| line.split(['{', ' ']).next())
        .map(String::from)
        .collect()
}

/// The metric families of an exposition (`# TYPE name kind`).
pub fn exported_families(exposition: &str) -> BTreeSet<String> {
    exposition
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.split(' ').next())
        .map(String::from)
        .collect()
}

/// Whether `sample` (e.g. `pipeline_x_bucket`) belongs to `family` (`pipeline_x`).
pub fn belongs_to(sample: &str, family: &str) -> bool {
    sample == family
        || ["_bucket", "_sum", "_count"]
            .iter()
            .any(|suffix| sample.strip_suffix(suffix) == Some(family))
}

/// Runs `promtool check rules` on the expressions as recording rules: each must parse as PromQL.
/// Grafana's `$__rate_interval` becomes `5m`, as Grafana would substitute a duration.
pub fn assert_promql_parses(exprs: &[String]) {
    let promtool = std::env::var("PIPELINE_PROMTOOL").unwrap_or_else(|_| {
        panic!("PIPELINE_PROMTOOL is not set: run the tests through scripts/test.sh")
    });
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, expr) in exprs.iter().enumerate() {
        let expr = expr.replace("$__rate_interval", "5m");
        // JSON strings are valid YAML double-quoted scalars.
        let quoted = serde_json::to_string(&expr).expect("quote");
        rules.push_str(&format!(
            "      - record: dashboard:panel_{i}\n        expr: {quoted}\n"
        ));
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("dashboard-rules.yml");
    std::fs::write(&path, &rules).expect("write rules");
    let out = std::process::Command::new(&promtool)
        .args(["check", "rules"])
        .arg(&path)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {promtool}: {e}"));
    assert!(
        out.status.success(),
        "a dashboard query is not valid PromQL:\n{}{}\n--- rules ---\n{rules}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The value of the first sample in `exposition` whose line starts with `series` (a name with its
/// labels, e.g. `pipeline_events_received_total{chain="anvil"}`); 0 when there is none.
pub fn sample_value(exposition: &str, series: &str) -> f64 {
    exposition
        .lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0)
}
