//! The incremental path on SQLite and, when `PIPELINE_TEST_POSTGRES_URL` is set, on PostgreSQL:
//! each admin-style change (a store write, then `reload_subscription`/`reload_endpoint`) is in
//! the snapshot when the call returns, without a full rebuild; the full `reload` still picks up a
//! change nobody announced (another replica's).

use std::sync::Arc;

use crate::config::PluginLimits;
use crate::event::ChainLog;
use crate::matcher::SubscriptionSet;
use crate::plugin::PluginRuntime;
use crate::registry::Registry;
use crate::store::{
    CanaryRow, EndpointRow, EndpointStatus, PluginRow, Store, SubscriptionPatch, SubscriptionRow,
    SubscriptionStatus,
};

const TOKEN_A: &str = "0x00000000000000000000000000000000000000aa";
const TOKEN_B: &str = "0x00000000000000000000000000000000000000bb";
const KEEP_NONE: &str = r#"(module (memory (export "memory") 2) (data (i32.const 8192) "\01\00\00\00\00\00")
  (func (export "pipeline_abi_v1"))
  (func (export "pipeline_input") (param i32) (result i32) i32.const 1024)
  (func (export "pipeline_process") (param i32) (result i64) (i64.const 35184372088838)))"#;

async fn each_store(check: impl AsyncFn(Store)) {
    let dir = std::env::temp_dir().join(format!("pipeline-registry-{}", rand::random::<u32>()));
    let sqlite = Store::connect(&format!("sqlite://{}/r.db", dir.display()))
        .await
        .unwrap();
    sqlite.migrate().await.unwrap();
    check(sqlite).await;
    if let Some(pg) = crate::store::tests::postgres().await {
        check(pg).await;
    }
}

/// A registry loaded the way a host starts, over a store holding endpoint `ep_1`.
async fn started(store: &Store) -> Registry {
    store.insert_endpoint(&endpoint("ep_1")).await.unwrap();
    let registry = Registry::new(
        store.clone(),
        PluginRuntime::new(PluginLimits::default()).unwrap(),
    );
    registry.reload().await.unwrap();
    registry
}

fn endpoint(id: &str) -> EndpointRow {
    EndpointRow {
        id: id.into(),
        url: "http://127.0.0.1:9/hook".into(),
        description: "d".into(),
        secret: "whsec_first".into(),
        previous_secret: None,
        previous_secret_expires_at: None,
        status: EndpointStatus::Enabled,
        disabled_reason: None,
        created_at: 1,
        updated_at: 1,
    }
}

fn subscription(id: &str, address: &str) -> SubscriptionRow {
    SubscriptionRow {
        id: id.to_string(),
        endpoint_id: "ep_1".into(),
        chain_id: 1,
        addresses: Some(format!("[\"{address}\"]")),
        topics: None,
        plugin_id: None,
        plugin_config: None,
        confirmations: 0,
        status: SubscriptionStatus::Active,
        last_error: None,
        created_at: 1,
        updated_at: 1,
        mode: Default::default(),
    }
}

fn log_from(address: &str) -> ChainLog {
    ChainLog::from_json(&format!(r#"{{"address":"{address}","topics":[],"data":"0x","blockNumber":"0x1","blockHash":"0x0000000000000000000000000000000000000000000000000000000000000001","transactionHash":"0x0000000000000000000000000000000000000000000000000000000000000002","transactionIndex":"0x0","logIndex":"0x0","removed":false}}"#)).unwrap()
}

fn live(registry: &Registry) -> Arc<SubscriptionSet> {
    registry.subscriptions().borrow().clone()
}

fn patch() -> SubscriptionPatch {
    SubscriptionPatch {
        updated_at: 2,
        ..Default::default()
    }
}

#[tokio::test]
async fn a_create_update_pause_and_delete_show_without_a_rebuild() {
    each_store(async |store: Store| {
        let registry = started(&store).await;
        let rebuilds = registry.rebuilds();

        store
            .insert_subscription(&subscription("sub_a", TOKEN_A))
            .await
            .unwrap();
        registry.reload_subscription("sub_a").await.unwrap();
        assert!(
            live(&registry).matches_any(1, &log_from(TOKEN_A)),
            "created"
        );

        let addresses = Some(Some(format!("[\"{TOKEN_B}\"]")));
        let moved = SubscriptionPatch {
            addresses,
            ..patch()
        };
        assert!(store.patch_subscription("sub_a", &moved).await.unwrap());
        registry.reload_subscription("sub_a").await.unwrap();
        let set = live(&registry);
        assert!(
            !set.matches_any(1, &log_from(TOKEN_A)),
            "updated: old address"
        );
        assert!(
            set.matches_any(1, &log_from(TOKEN_B)),
            "updated: new address"
        );
        assert_eq!(set.subscriptions.len(), 1, "replaced, not added");

        let paused = SubscriptionPatch {
            status: Some(SubscriptionStatus::Paused),
            ..patch()
        };
        assert!(store.patch_subscription("sub_a", &paused).await.unwrap());
        registry.reload_subscription("sub_a").await.unwrap();
        let set = live(&registry);
        assert_eq!(set.get("sub_a").unwrap().status, SubscriptionStatus::Paused);
        assert!(!set.matches_any(1, &log_from(TOKEN_B)), "paused");

        assert!(store.delete_subscription("sub_a").await.unwrap());
        registry.reload_subscription("sub_a").await.unwrap();
        assert!(live(&registry).subscriptions.is_empty(), "deleted");

        assert_eq!(registry.rebuilds(), rebuilds, "no full rebuild");
        assert_eq!(registry.updates(), 4);
    })
    .await;
}

#[tokio::test]
async fn a_canary_start_and_promote_show_in_the_subscription() {
    each_store(async |store: Store| {
        let registry = started(&store).await;
        let wasm = wat::parse_str(KEEP_NONE).unwrap();
        let plugin_id = crate::plugin::plugin_id(&wasm);
        let plugin = PluginRow {
            id: plugin_id.clone(),
            name: "n".into(),
            size: wasm.len() as i64,
            created_at: 0,
        };
        store.insert_plugin(&plugin, &wasm).await.unwrap();
        store
            .insert_subscription(&subscription("sub_c", TOKEN_A))
            .await
            .unwrap();
        registry.reload_subscription("sub_c").await.unwrap();
        assert!(live(&registry).get("sub_c").unwrap().canary.is_none());

        let canary = CanaryRow {
            id: "can_1".into(),
            subscription_id: "sub_c".into(),
            plugin_id: plugin_id.clone(),
            plugin_config: None,
            tally: Default::default(),
            created_at: 1,
            updated_at: 1,
        };
        assert!(store.insert_canary(&canary).await.unwrap());
        registry.reload_subscription("sub_c").await.unwrap();
        let shown = live(&registry).get("sub_c").unwrap().clone();
        assert_eq!(shown.canary.as_ref().map(|c| c.id.as_str()), Some("can_1"));
        assert!(shown.plugin.is_none());

        store.promote_canary("sub_c").await.unwrap().unwrap();
        registry.reload_subscription("sub_c").await.unwrap();
        let shown = live(&registry).get("sub_c").unwrap().clone();
        assert!(shown.canary.is_none(), "promoted: no canary left");
        let bound = shown.plugin.as_ref().map(|p| p.plugin.id.clone());
        assert_eq!(bound, Some(plugin_id));
    })
    .await;
}

#[tokio::test]
async fn endpoint_changes_show_without_a_rebuild() {
    each_store(async |store: Store| {
        let registry = started(&store).await;
        let rebuilds = registry.rebuilds();
        let endpoints = registry.endpoints();

        store.insert_endpoint(&endpoint("ep_2")).await.unwrap();
        registry.reload_endpoint("ep_2").await.unwrap();
        assert!(endpoints.borrow().contains_key("ep_2"), "created");

        assert!(
            store
                .rotate_endpoint_secret("ep_2", "whsec_second", 10, 2)
                .await
                .unwrap()
        );
        registry.reload_endpoint("ep_2").await.unwrap();
        assert_eq!(endpoints.borrow()["ep_2"].secret, "whsec_second", "rotated");

        assert!(store.disable_endpoint("ep_2", "gone", 3).await.unwrap());
        registry.reload_endpoint("ep_2").await.unwrap();
        assert_eq!(endpoints.borrow()["ep_2"].status, EndpointStatus::Disabled);

        assert!(store.delete_endpoint("ep_2").await.unwrap());
        registry.reload_endpoint("ep_2").await.unwrap();
        assert!(!endpoints.borrow().contains_key("ep_2"), "deleted");
        assert!(endpoints.borrow().contains_key("ep_1"), "the others kept");
        assert_eq!(registry.rebuilds(), rebuilds);
    })
    .await;
}

#[tokio::test]
async fn the_full_reload_still_picks_up_an_unannounced_change() {
    each_store(async |store: Store| {
        let registry = started(&store).await;
        store
            .insert_subscription(&subscription("sub_a", TOKEN_A))
            .await
            .unwrap();
        registry.reload_subscription("sub_a").await.unwrap();

        // Another replica pauses sub_a and creates sub_b: this one is not told.
        let paused = SubscriptionPatch {
            status: Some(SubscriptionStatus::Paused),
            ..patch()
        };
        assert!(store.patch_subscription("sub_a", &paused).await.unwrap());
        store
            .insert_subscription(&subscription("sub_b", TOKEN_B))
            .await
            .unwrap();
        store.insert_endpoint(&endpoint("ep_2")).await.unwrap();
        assert!(live(&registry).get("sub_b").is_none());

        registry.reload().await.unwrap();
        let set = live(&registry);
        assert_eq!(set.get("sub_a").unwrap().status, SubscriptionStatus::Paused);
        assert!(set.matches_any(1, &log_from(TOKEN_B)));
        assert!(registry.endpoints().borrow().contains_key("ep_2"));
    })
    .await;
}

#[tokio::test]
async fn concurrent_creates_share_updates_and_each_sees_its_own() {
    each_store(async |store: Store| {
        let registry = started(&store).await;
        let rebuilds = registry.rebuilds();
        let mut tasks = tokio::task::JoinSet::new();
        for n in 0..40 {
            let (store, registry) = (store.clone(), registry.clone());
            tasks.spawn(async move {
                let id = format!("sub_{n:02}");
                let address = format!("0x{:040x}", n + 1);
                store
                    .insert_subscription(&subscription(&id, &address))
                    .await
                    .unwrap();
                registry.reload_subscription(&id).await.unwrap();
                assert!(live(&registry).get(&id).is_some(), "{id} missing");
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.unwrap();
        }
        assert_eq!(live(&registry).subscriptions.len(), 40);
        assert_eq!(registry.rebuilds(), rebuilds, "no full rebuild");
        let updates = registry.updates();
        assert!(updates < 40, "40 concurrent creates took {updates} updates");
    })
    .await;
}
