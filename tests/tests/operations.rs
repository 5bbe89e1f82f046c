//! The operator's files in `deploy/` and `docs/runbook.md`, checked against a real host: the
//! Grafana dashboard's queries name only metrics a live host exports (and show every one it
//! exports), the alert rules likewise, and every alert has a runbook section. `promtool check
//! rules` / `promtool test rules` on the alert rules run in scripts/test.sh.

use std::time::Duration;

use pipeline_tests::checks::wait_delivered;
use pipeline_tests::operations::{
    alerts_path, assert_promql_parses, belongs_to, dashboard_path, exported_families,
    exported_samples, metric_names, panels, runbook_path,
};
use pipeline_tests::plugins::example_plugin;
use pipeline_tests::{DbKind, Fixture, wait_until};
use serde_json::{Value, json};

fn dashboard() -> Value {
    let text = std::fs::read_to_string(dashboard_path()).expect("read the dashboard");
    serde_json::from_str(&text).expect("the dashboard is JSON")
}

/// Importable: a Prometheus datasource variable, used by every panel and query.
#[test]
fn the_dashboard_uses_a_prometheus_datasource_variable() {
    let d = dashboard();
    let vars = d["templating"]["list"].as_array().expect("templating.list");
    assert!(
        vars.iter().any(|v| v["name"] == "datasource"
            && v["type"] == "datasource"
            && v["query"] == "prometheus"),
        "no Prometheus datasource variable: {vars:?}"
    );
    let ds = json!({"type": "prometheus", "uid": "${datasource}"});
    let mut ids = std::collections::BTreeSet::new();
    for panel in panels(&d) {
        assert!(
            ids.insert(panel["id"].as_u64()),
            "duplicate panel id {}",
            panel["id"]
        );
        if panel["type"] == "row" {
            continue;
        }
        assert_eq!(panel["datasource"], ds, "panel {}", panel["title"]);
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "panel {} has no query", panel["title"]);
        for target in targets {
            assert_eq!(target["datasource"], ds, "panel {}", panel["title"]);
        }
    }
}

/// A host that has ingested, matched, run a plugin and delivered: its `/metrics` has every family
/// (labelled ones included) that the dashboard and alerts could name.
async fn live_exposition() -> (Fixture, String) {
    let fx = Fixture::start(DbKind::Sqlite).await;
    let admin = fx.admin();
    let plugin = admin
        .upload_plugin(&example_plugin("erc20-transfers"), "erc20")
        .await;
    let (endpoint, _) = fx.endpoint_for(&fx.receiver).await;
    let sub = fx
        .subscribe_transfers(&endpoint, &plugin, json!({"min_value": "0"}))
        .await;
    let to = fx.anvil.account(1);
    fx.anvil.transfer(&fx.token, &to, 7).await;
    fx.transfer_webhooks(1, &sub, &to).await;
    wait_delivered(admin, 1).await;
    let host = &fx.host;
    let exposition = wait_until(
        "a delivery counted in /metrics",
        Duration::from_secs(10),
        Duration::from_millis(200),
        || async move {
            let text = host.metrics().await;
            if text.contains("pipeline_deliveries_attempted_total{status=\"success\"} 1") {
                Ok(text)
            } else {
                Err(text)
            }
        },
    )
    .await;
    (fx, exposition)
}

#[tokio::test(flavor = "multi_thread")]
async fn dashboard_and_alerts_name_only_metrics_a_live_host_exports() {
    let (_fx, exposition) = live_exposition().await;
    let samples = exported_samples(&exposition);
    let families = exported_families(&exposition);

    let d = dashboard();
    let mut exprs = Vec::new();
    let mut used = std::collections::BTreeSet::new();
    for panel in panels(&d).into_iter().filter(|p| p["type"] != "row") {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().expect("a PromQL expr").to_string();
            let names = metric_names(&expr);
            assert!(
                !names.is_empty(),
                "panel {}: {expr} names no pipeline metric",
                panel["title"]
            );
            for name in &names {
                assert!(
                    samples.contains(name),
                    "panel {}: {name} is not exported by the host; it exports:\n{samples:#?}",
                    panel["title"]
                );
            }
            used.extend(names);
            exprs.push(expr);
        }
    }
    assert_promql_parses(&exprs);
    for family in &families {
        assert!(
            used.iter().any(|sample| belongs_to(sample, family)),
            "the host exports {family} but no dashboard panel shows it: add one to deploy/grafana/pipeline.json"
        );
    }

    let alerts = std::fs::read_to_string(alerts_path()).expect("read alerts.yml");
    for name in metric_names(&alerts) {
        assert!(
            samples.contains(&name),
            "alerts.yml names {name}, which the host does not export"
        );
    }
}

/// Every alert links its own runbook section, and the section exists.
#[test]
fn every_alert_has_a_runbook_section() {
    let alerts = std::fs::read_to_string(alerts_path()).expect("read alerts.yml");
    let runbook = std::fs::read_to_string(runbook_path()).expect("read docs/runbook.md");
    let names: Vec<&str> = alerts
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .collect();
    assert!(names.len() >= 7, "{names:?}");
    for name in names {
        let anchor = format!("runbook_url: \"docs/runbook.md#{}\"", name.to_lowercase());
        assert!(alerts.contains(&anchor), "{name}: no {anchor}");
        assert!(
            runbook.lines().any(|l| l.trim() == format!("## {name}")),
            "docs/runbook.md has no section \"## {name}\""
        );
    }
    let readme = std::fs::read_to_string(pipeline_tests::workspace_root().join("README.md"))
        .expect("read README.md");
    assert!(
        readme.contains("docs/runbook.md"),
        "README does not link the runbook"
    );
}
