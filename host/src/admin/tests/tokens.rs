//! Scoped API tokens: create, use, list, revoke; every mutating route of the OpenAPI document
//! (the route table) refused to a read token; token management refused to a write token; and
//! replicas starting together on one empty database agreeing on the bootstrap token.

use super::*;

impl Harness {
    /// Creates a token with the bootstrap token and returns (id, token).
    async fn token(&self, scope: &str) -> (String, String) {
        let (status, body) = self
            .json(
                Method::POST,
                "/v1/tokens",
                json!({"name": format!("{scope} token"), "scope": scope}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert_eq!(body["scope"], scope);
        let token = body["token"].as_str().unwrap();
        assert!(token.starts_with("pat_"), "{body}");
        (body["id"].as_str().unwrap().into(), token.into())
    }

    async fn with(&self, token: &str, method: Method, uri: &str) -> (StatusCode, Value) {
        let body = if method == Method::GET || method == Method::DELETE {
            Body::empty()
        } else {
            Body::from("{}")
        };
        self.send(method, uri, Some(token), body).await
    }
}

/// Every (method, path) of the OpenAPI document under `/v1`, path ids filled in.
fn route_table() -> Vec<(Method, String)> {
    let doc = super::super::openapi::document();
    let mut routes = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        if !path.starts_with("/v1/") {
            continue;
        }
        // The operation keys of a path item (its other keys are `parameters`, `summary`, …).
        for method in [
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ] {
            if item.get(method.as_str().to_lowercase()).is_some() {
                routes.push((method, path.replace("{id}", "x_unknown")));
            }
        }
    }
    routes
}

#[tokio::test]
async fn tokens_are_created_used_listed_and_revoked() {
    each_store(async |h: Harness| {
        let (id, read) = h.token("read").await;
        let (status, _) = h.with(&read, Method::GET, "/v1/endpoints").await;
        assert_eq!(status, StatusCode::OK);

        let (status, list) = h.get("/v1/tokens").await;
        assert_eq!(status, StatusCode::OK);
        let item = &list["items"][0];
        assert_eq!((&item["id"], &item["scope"]), (&json!(id), &json!("read")));
        assert!(item.get("token").is_none(), "listed with its token: {item}");
        assert!(item["last_used_at"].is_string(), "use not recorded: {item}");
        assert!(item["revoked_at"].is_null());
        assert!(!list.to_string().contains(&read), "{list}");

        let (_, write) = h.token("write").await;
        let (status, body) = h
            .send(
                Method::POST,
                "/v1/endpoints",
                Some(&write),
                Body::from(json!({"url": "http://127.0.0.1:9/hook"}).to_string()),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");

        let (status, _) = h
            .send(
                Method::DELETE,
                &format!("/v1/tokens/{id}"),
                Some("t"),
                Body::empty(),
            )
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let (status, body) = h.with(&read, Method::GET, "/v1/endpoints").await;
        assert_eq!(
            error_code(status, &body, StatusCode::UNAUTHORIZED),
            "unauthorized"
        );
        let (_, list) = h.get("/v1/tokens").await;
        assert!(list["items"][0]["revoked_at"].is_string(), "{list}");

        let (status, body) = h
            .send(
                Method::DELETE,
                "/v1/tokens/tok_none",
                Some("t"),
                Body::empty(),
            )
            .await;
        assert_eq!(
            error_code(status, &body, StatusCode::NOT_FOUND),
            "not_found"
        );
        for bad in [
            json!({"name": "x", "scope": "root"}),
            json!({"name": " ", "scope": "read"}),
            json!({"scope": "read"}),
        ] {
            let (status, body) = h.json(Method::POST, "/v1/tokens", bad).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        }
    })
    .await;
}

#[tokio::test]
async fn a_read_token_is_refused_every_mutation_and_a_write_token_token_management() {
    let h = harness().await;
    let (_, read) = h.token("read").await;
    let (_, write) = h.token("write").await;
    let routes = route_table();
    let mutations: Vec<_> = routes.iter().filter(|(m, _)| *m != Method::GET).collect();
    assert!(mutations.len() >= 12, "route table too small: {routes:?}");
    for (method, uri) in &routes {
        // The route exists: the bootstrap token is neither refused nor sent to the fallbacks.
        let (status, body) = h.with("t", method.clone(), uri).await;
        assert!(
            ![
                StatusCode::UNAUTHORIZED,
                StatusCode::FORBIDDEN,
                StatusCode::METHOD_NOT_ALLOWED
            ]
            .contains(&status)
                && body["error"]["message"] != "no such route",
            "{method} {uri}: {status} {body}"
        );
        let (status, body) = h.with(&read, method.clone(), uri).await;
        if *method == Method::GET && !uri.starts_with("/v1/tokens") {
            assert_ne!(status, StatusCode::FORBIDDEN, "{method} {uri}: {body}");
        } else {
            assert_eq!(
                error_code(status, &body, StatusCode::FORBIDDEN),
                "forbidden",
                "{method} {uri}"
            );
        }
        let (status, body) = h.with(&write, method.clone(), uri).await;
        if uri.starts_with("/v1/tokens") {
            assert_eq!(
                error_code(status, &body, StatusCode::FORBIDDEN),
                "forbidden",
                "{method} {uri}"
            );
        } else {
            assert_ne!(status, StatusCode::FORBIDDEN, "{method} {uri}: {body}");
        }
    }
}

/// Two replicas on one empty database, generating the bootstrap token at the same time.
async fn replicas_agree(url: &str) {
    let (a, b) = (
        Store::connect(url).await.unwrap(),
        Store::connect(url).await.unwrap(),
    );
    a.migrate().await.unwrap();
    let dirs = [
        std::env::temp_dir().join(new_id("pipeline-token-a")),
        std::env::temp_dir().join(new_id("pipeline-token-b")),
    ];
    let (ha, hb) = tokio::join!(
        auth::resolve_token(None, &a, &dirs[0]),
        auth::resolve_token(None, &b, &dirs[1])
    );
    let (ha, hb) = (ha.unwrap(), hb.unwrap());
    assert_eq!(ha, hb, "replicas disagree on the bootstrap token");
    let files: Vec<String> = dirs
        .iter()
        .filter_map(|d| std::fs::read_to_string(d.join("admin-token")).ok())
        .collect();
    assert_eq!(files.len(), 1, "exactly one replica keeps the token file");
    assert_eq!(auth::hash_token(files[0].trim()), ha);
    for dir in &dirs {
        assert!(!dir.join("admin-token.new").exists());
        let _ = std::fs::remove_dir_all(dir);
    }
    // A restart reads the stored hash and writes no new file.
    assert_eq!(auth::resolve_token(None, &b, &dirs[1]).await.unwrap(), ha);
    assert!(!dirs[1].join("admin-token").exists());
}

#[tokio::test]
async fn two_replicas_on_an_empty_database_agree_on_the_bootstrap_token() {
    let dir = std::env::temp_dir().join(new_id("pipeline-token-db"));
    replicas_agree(&format!("sqlite://{}/a.db", dir.display())).await;
    let _ = std::fs::remove_dir_all(&dir);
    if let Some(url) = crate::store::tests::postgres_url().await {
        replicas_agree(&url).await;
    }
}
