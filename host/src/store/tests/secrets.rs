//! Endpoint secrets at rest: never in plaintext in the table when a key is set; key rotation
//! (new key first, old second) keeps old rows readable and re-seals them at start; plaintext rows
//! from before encryption are sealed at start; a second rotation within the grace period keeps
//! the secret still signing.

use super::*;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn keys(seeds: &[u8]) -> SecretKeys {
    let keys: Vec<[u8; 32]> = seeds.iter().map(|s| [*s; 32]).collect();
    SecretKeys::new(&keys)
}

fn endpoint(id: &str, secret: &str) -> EndpointRow {
    EndpointRow {
        id: id.into(),
        url: "http://127.0.0.1:9/hook".into(),
        description: String::new(),
        secret: secret.into(),
        previous_secret: None,
        previous_secret_expires_at: None,
        status: EndpointStatus::Enabled,
        disabled_reason: None,
        created_at: 1,
        updated_at: 1,
    }
}

/// Every stored secret column of every endpoint, as the table holds them.
async fn raw(store: &Store) -> Vec<String> {
    let rows: Vec<(String, Option<String>)> =
        sqlx::query_as("SELECT secret, previous_secret FROM endpoints ORDER BY id")
            .fetch_all(&store.pool)
            .await
            .unwrap();
    rows.into_iter()
        .flat_map(|(s, p)| std::iter::once(s).chain(p))
        .collect()
}

/// The key bytes of a `whsec_` secret in every form it could leak in.
fn leaks(stored: &[String], secret: &str) -> bool {
    let encoded = secret.trim_start_matches("whsec_");
    stored.iter().any(|s| s.contains(encoded))
}

#[tokio::test]
async fn no_plaintext_secret_is_stored_when_a_key_is_set() {
    each_store(async |store: Store| {
        let store = store.with_secret_keys(keys(&[1]));
        store.insert_endpoint(&endpoint("ep_a", SECRET)).await.unwrap();
        let rotated = crate::deliver::sign::generate_secret();
        assert!(store.rotate_endpoint_secret("ep_a", &rotated, now_ms() + 1000, now_ms()).await.unwrap());
        let stored = raw(&store).await;
        assert_eq!(stored.len(), 2);
        assert!(!leaks(&stored, SECRET) && !leaks(&stored, &rotated), "{stored:?}");
        assert!(stored.iter().all(|s| s.starts_with("enc:v1:")), "{stored:?}");
        let row = store.get_endpoint("ep_a").await.unwrap().unwrap();
        assert_eq!(row.signing_secrets(now_ms()), vec![rotated.as_str(), SECRET]);
        // The ciphertext is bound to its endpoint: copied to another row it does not open.
        store.insert_endpoint(&endpoint("ep_b", SECRET)).await.unwrap();
        sqlx::query("UPDATE endpoints SET secret = (SELECT secret FROM endpoints WHERE id = 'ep_a') WHERE id = 'ep_b'")
            .execute(&store.pool)
            .await
            .unwrap();
        assert!(matches!(store.get_endpoint("ep_b").await, Err(StoreError::Secret(SecretError::Corrupt { .. }))));
    })
    .await;
}

#[tokio::test]
async fn plaintext_rows_are_sealed_at_start_and_key_rotation_keeps_them_readable() {
    each_store(async |store: Store| {
        // Written before encryption was configured.
        store
            .insert_endpoint(&endpoint("ep_a", SECRET))
            .await
            .unwrap();
        assert_eq!(raw(&store).await, vec![SECRET.to_string()]);

        let old = store.clone().with_secret_keys(keys(&[1]));
        assert_eq!(old.reseal_endpoint_secrets().await.unwrap(), 1);
        assert!(!leaks(&raw(&store).await, SECRET));
        assert_eq!(
            old.reseal_endpoint_secrets().await.unwrap(),
            0,
            "already current"
        );
        let sealed_old = raw(&store).await;

        // Rotation: the new key first, the old one second. Readable before re-sealing…
        let both = store.clone().with_secret_keys(keys(&[2, 1]));
        assert_eq!(
            both.get_endpoint("ep_a").await.unwrap().unwrap().secret,
            SECRET
        );
        assert_eq!(both.reseal_endpoint_secrets().await.unwrap(), 1);
        let sealed_new = raw(&store).await;
        assert_ne!(sealed_new, sealed_old);
        assert!(!leaks(&sealed_new, SECRET));
        // …and after it, with the new key alone, the old key no longer needed.
        let new = store.clone().with_secret_keys(keys(&[2]));
        let row = new.get_endpoint("ep_a").await.unwrap().unwrap();
        let signature = crate::deliver::sign::sign(&row.secret, "msg_1", 7, b"{}").unwrap();
        assert_eq!(
            signature,
            crate::deliver::sign::sign(SECRET, "msg_1", 7, b"{}").unwrap()
        );
        // A key list without the key a row is sealed under is refused, naming what is missing.
        let error = old.reseal_endpoint_secrets().await.unwrap_err();
        assert!(
            matches!(&error, StoreError::Secret(SecretError::UnknownKey { .. })),
            "{error}"
        );
        assert!(error.to_string().contains("PIPELINE_SECRET_KEY"), "{error}");
        assert!(
            store.reseal_endpoint_secrets().await.is_err(),
            "no key at all"
        );
    })
    .await;
}

#[tokio::test]
async fn a_second_rotation_within_the_grace_period_keeps_the_secret_still_signing() {
    each_store(async |store: Store| {
        let store = store.with_secret_keys(keys(&[1]));
        store
            .insert_endpoint(&endpoint("ep_a", "whsec_A"))
            .await
            .unwrap();
        let day = 24 * 3_600_000;
        let t0 = 1_000_000;
        assert!(
            store
                .rotate_endpoint_secret("ep_a", "whsec_B", t0 + day, t0)
                .await
                .unwrap()
        );
        // An hour later, again: A (which receivers had) keeps signing until its own expiry.
        let t1 = t0 + 3_600_000;
        assert!(
            store
                .rotate_endpoint_secret("ep_a", "whsec_C", t1 + day, t1)
                .await
                .unwrap()
        );
        let row = store.get_endpoint("ep_a").await.unwrap().unwrap();
        assert_eq!(row.signing_secrets(t1), vec!["whsec_C", "whsec_A"]);
        assert_eq!(row.previous_secret_expires_at, Some(t0 + day));
        // After A's grace period, a rotation makes the current secret the previous one again.
        let t2 = t0 + day + 1;
        assert!(
            store
                .rotate_endpoint_secret("ep_a", "whsec_D", t2 + day, t2)
                .await
                .unwrap()
        );
        let row = store.get_endpoint("ep_a").await.unwrap().unwrap();
        assert_eq!(row.signing_secrets(t2), vec!["whsec_D", "whsec_C"]);
        assert_eq!(row.previous_secret_expires_at, Some(t2 + day));
    })
    .await;
}
