//! Test module: the full reload and plugin loading (the incremental path is tested in `changes/tests.rs`).

use super::*;
use crate::config::PluginLimits;
use crate::event::ChainLog;
use crate::store::PluginRow;

const KEEP_NONE: &str = r#"(module (memory (export "memory") 2) (data (i32.const 8192) "\01\00\00\00\00\00")
      (func (export "pipeline_abi_v1"))
      (func (export "pipeline_input") (param i32) (result i32) i32.const 1024)
      (func (export "pipeline_process") (param i32) (result i64) (i64.const 35184372088838)))"#;

fn subscription_row(id: &str) -> SubscriptionRow {
    SubscriptionRow {
        id: id.to_string(),
        endpoint_id: "ep_1".into(),
        chain_id: 1,
        addresses: None,
        topics: None,
        plugin_id: None,
        plugin_config: None,
        confirmations: 0,
        status: crate::store::SubscriptionStatus::Active,
        last_error: None,
        created_at: 0,
        updated_at: 0,
        mode: Default::default(),
    }
}

#[tokio::test]
async fn concurrent_reloads_share_rebuilds_and_each_sees_its_own_write() {
    let dir = std::env::temp_dir().join(format!("pipeline-registry-{}", rand::random::<u32>()));
    let store = Store::connect(&format!("sqlite://{}/r.db", dir.display()))
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let endpoint = crate::store::EndpointRow {
        id: "ep_1".into(),
        url: "http://127.0.0.1:9/hook".into(),
        description: "d".into(),
        secret: "whsec_first".into(),
        previous_secret: None,
        previous_secret_expires_at: None,
        status: crate::store::EndpointStatus::Enabled,
        disabled_reason: None,
        created_at: 1,
        updated_at: 1,
    };
    store.insert_endpoint(&endpoint).await.unwrap();
    let registry = Registry::new(
        store.clone(),
        PluginRuntime::new(PluginLimits::default()).unwrap(),
    );
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..40 {
        let (store, registry) = (store.clone(), registry.clone());
        tasks.spawn(async move {
            let id = format!("sub_{n}");
            store
                .insert_subscription(&subscription_row(&id))
                .await
                .unwrap();
            registry.reload().await.unwrap();
            // When reload returns, the caller's own write is in the live snapshot.
            let live = registry.subscriptions().borrow().clone();
            assert!(
                live.subscriptions.iter().any(|s| s.id == id),
                "{id} missing"
            );
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    assert_eq!(registry.subscriptions().borrow().subscriptions.len(), 40);
    let rebuilds = registry.rebuilds();
    assert!(
        rebuilds < 40,
        "40 concurrent reloads took {rebuilds} rebuilds"
    );

    // One at a time, every reload rebuilds.
    let before = registry.rebuilds();
    registry.reload().await.unwrap();
    registry.reload().await.unwrap();
    assert_eq!(registry.rebuilds(), before + 2);
}

#[tokio::test]
async fn a_restart_loads_precompiled_plugins_from_the_store() {
    let dir = std::env::temp_dir().join(format!("pipeline-registry-{}", rand::random::<u32>()));
    let store = Store::connect(&format!("sqlite://{}/r.db", dir.display()))
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let wasm = wat::parse_str(KEEP_NONE).unwrap();
    let id = crate::plugin::plugin_id(&wasm);
    let row = PluginRow {
        id: id.clone(),
        name: "n".into(),
        size: wasm.len() as i64,
        created_at: 0,
    };
    store.insert_plugin(&row, &wasm).await.unwrap();

    let first = Registry::new(
        store.clone(),
        PluginRuntime::new(PluginLimits::default()).unwrap(),
    );
    first.plugin(&id).await.unwrap();
    let engine = first.runtime().engine_fingerprint();
    let artifact = store
        .get_plugin_artifact(&id, &engine)
        .await
        .unwrap()
        .expect("stored after compiling");

    // A new process: empty cache, same engine configuration.
    let runtime = PluginRuntime::new(PluginLimits::default()).unwrap();
    assert_eq!(runtime.engine_fingerprint(), engine);
    let loaded = runtime
        .load_precompiled(&id, &artifact)
        .expect("precompiled code loads");
    let mut instance = runtime.instantiate(loaded, "null").unwrap();
    let log = ChainLog::from_json(r#"{"address":"0x0000000000000000000000000000000000000001","topics":[],"data":"0x","blockNumber":"0x1","blockHash":"0x0000000000000000000000000000000000000000000000000000000000000001","transactionHash":"0x0000000000000000000000000000000000000000000000000000000000000002","transactionIndex":"0x0","logIndex":"0x0","removed":false}"#).unwrap();
    assert!(instance.process(&[&log]).is_ok());
    // Garbage in the artifact slot is refused, not trusted.
    assert!(runtime.load_precompiled(&id, b"not an artifact").is_none());
    let second = Registry::new(store.clone(), runtime);
    assert_eq!(second.plugin(&id).await.unwrap().id, id);
}
