//! Test module: compiled only under #[cfg(test)], from its parent module.
use std::time::Duration;

use super::*;
use crate::deliver::schedule::RetrySchedule;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn defaults_match_the_design() {
    let c = Config::load_from(None, &[]).unwrap();
    assert_eq!(c.database_url, "sqlite://./data/pipeline.db");
    assert_eq!(c.admin_addr.port(), 8080);
    assert_eq!(c.metrics_addr.port(), 9090);
    // Raised from DESIGN §5's 50 (and 10 per endpoint) for issue 6: one fast endpoint at 10K
    // webhooks/s needs more than 10 in flight; a slow one still holds at most 32 of 256.
    assert_eq!(c.delivery.workers, 256);
    assert_eq!(c.delivery.per_endpoint_concurrency, 32);
    assert_eq!(c.batch.max_events, 100);
    assert_eq!(c.delivery.retry_schedule, RetrySchedule::default());
    assert_eq!(c.delivery.retry_schedule.delays().len(), 7);
    assert!(
        !c.delivery.send_before_commit,
        "durable before sent, unless asked"
    );
    assert!(c.chains.is_empty());
}

#[test]
fn flags_are_read_from_the_environment() {
    let on = env(&[
        ("PIPELINE_DELIVERY_SEND_BEFORE_COMMIT", "true"),
        ("PIPELINE_INGEST_FILTER_AT_NODE", "false"),
    ]);
    let c = Config::load_from(None, &on).unwrap();
    assert!(c.delivery.send_before_commit);
    assert!(!c.ingest.filter_at_node);
    let bad = env(&[("PIPELINE_DELIVERY_SEND_BEFORE_COMMIT", "yes please")]);
    let err = Config::load_from(None, &bad).unwrap_err().to_string();
    assert!(
        err.contains("PIPELINE_DELIVERY_SEND_BEFORE_COMMIT"),
        "{err}"
    );
}

#[test]
fn environment_overrides_file_and_adds_chains() {
    let dir = std::env::temp_dir().join(format!("pipeline-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("c.toml");
    std::fs::write(
        &file,
        "database_url = \"postgres://x/y\"\n[batch]\nmax_events = 7\nmax_wait_ms = 5\n\
         [[chains]]\nname = \"anvil\"\nchain_id = 31337\nws_urls = [\"ws://127.0.0.1:8545\"]\n",
    )
    .unwrap();
    let c = Config::load_from(
        Some(&file),
        &env(&[
            ("PIPELINE_BATCH_MAX_EVENTS", "9"),
            ("PIPELINE_DELIVERY_RETRY_SCHEDULE", "200ms,1s"),
            ("ETHEREUM_WSS", "wss://a, wss://b"),
        ]),
    )
    .unwrap();
    assert_eq!(c.database_url, "postgres://x/y");
    assert_eq!(c.batch.max_events, 9);
    assert_eq!(c.batch.max_wait_ms, 5);
    assert_eq!(c.chains.len(), 2);
    assert_eq!(c.chains[1].ws_urls, vec!["wss://a", "wss://b"]);
    assert_eq!(
        c.delivery.retry_schedule.delays(),
        [Duration::from_millis(200), Duration::from_secs(1)]
    );
}

#[test]
fn bad_values_are_named() {
    let err =
        Config::load_from(None, &env(&[("PIPELINE_DELIVERY_RETRY_SCHEDULE", "soon")])).unwrap_err();
    assert!(
        format!("{err:#}").contains("PIPELINE_DELIVERY_RETRY_SCHEDULE"),
        "{err:#}"
    );
    let err = Config::load_from(
        None,
        &env(&[("PIPELINE_DELIVERY_ALLOWED_CIDRS", "10.0.0.0/33")]),
    )
    .unwrap_err();
    assert!(format!("{err:#}").contains("ALLOWED_CIDRS"), "{err:#}");
    let err = Config::load_from(None, &env(&[("PIPELINE_DELIVERY_WORKERS", "0")])).unwrap_err();
    assert!(
        format!("{err:#}").contains("PIPELINE_DELIVERY_WORKERS"),
        "{err:#}"
    );
    let err = Config::load_from(None, &env(&[("DATABASE_URL", "mysql://x")])).unwrap_err();
    assert!(format!("{err:#}").contains("DATABASE_URL"), "{err:#}");
}
