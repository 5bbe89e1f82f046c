//! The web console through the admin router (one router per test: sessions live in it): sign-in
//! sets a strict cookie, every page renders, every POST needs the session's CSRF token and the
//! write scope, hostile text is escaped, sign-out and revocation end the session, and each store
//! serves the console's pages.

use axum::http::header::{CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE};

use super::*;

struct Browser {
    app: axum::Router,
    cookie: String,
}

impl Browser {
    /// Signs in with `token` on `app`; panics unless it is accepted.
    async fn sign_in(app: &axum::Router, token: &str) -> Browser {
        let request = Request::post("/console/sign-in")
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(format!("token={token}")))
            .unwrap();
        let response = app.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        let set = response.headers()[SET_COOKIE].to_str().unwrap().to_string();
        for part in ["HttpOnly", "SameSite=Strict", "Path=/console"] {
            assert!(set.contains(part), "{set}");
        }
        let cookie = set.split(';').next().unwrap().to_string();
        Browser {
            app: app.clone(),
            cookie,
        }
    }

    async fn get(&self, uri: &str) -> (StatusCode, String) {
        let request = Request::get(uri)
            .header(COOKIE, &self.cookie)
            .body(Body::empty())
            .unwrap();
        let response = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }

    async fn post(&self, uri: &str, form: &str) -> (StatusCode, Option<String>) {
        let request = Request::post(uri)
            .header(COOKIE, &self.cookie)
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(form.to_string()))
            .unwrap();
        let response = self.app.clone().oneshot(request).await.unwrap();
        let location = response
            .headers()
            .get(LOCATION)
            .map(|l| l.to_str().unwrap().to_string());
        (response.status(), location)
    }

    /// The CSRF token the pages carry in their forms.
    async fn csrf(&self) -> String {
        let (_, page) = self.get("/console/").await;
        let at = page
            .find(r#"name="csrf" value=""#)
            .expect("a form with the CSRF token");
        let rest = &page[at + r#"name="csrf" value=""#.len()..];
        rest[..rest.find('"').unwrap()].to_string()
    }
}

#[tokio::test]
async fn console_pages_actions_csrf_and_scopes() {
    each_store(async |h: Harness| {
        let app = router(h.state.clone());
        let request = Request::post("/console/sign-in")
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from("token=wrong"))
            .unwrap();
        let refused = app.clone().oneshot(request).await.unwrap();
        assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
        let anonymous = Request::get("/console/deliveries")
            .body(Body::empty())
            .unwrap();
        let redirected = app.clone().oneshot(anonymous).await.unwrap();
        assert_eq!(redirected.headers()[LOCATION], "/console/sign-in");

        let (_, sub) = h.subscription(json!({})).await;
        let sub = sub["id"].as_str().unwrap().to_string();
        let hostile =
            json!({"url": "http://127.0.0.1:9/x", "description": "<script>alert(1)</script>"});
        let (_, endpoint) = h.json(Method::POST, "/v1/endpoints", hostile).await;
        let endpoint = endpoint["id"].as_str().unwrap().to_string();
        let admin = Browser::sign_in(&app, "t").await;
        for page in [
            "/console/".to_string(),
            "/console/subscriptions?status=active".into(),
            format!("/console/subscriptions/{sub}"),
            "/console/endpoints".into(),
            format!("/console/endpoints/{endpoint}"),
            "/console/deliveries?status=dead&from=2020-01-01T00:00:00Z".into(),
            "/console/plugins".into(),
        ] {
            let (status, html) = admin.get(&page).await;
            assert_eq!(status, StatusCode::OK, "{page}: {html}");
            assert!(!html.contains("<script>alert"), "{page} is not escaped");
        }
        let (_, list) = admin.get("/console/endpoints").await;
        assert!(
            list.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{list}"
        );

        // Every POST needs the session's CSRF token.
        let pause = format!("/console/subscriptions/{sub}/status");
        assert_eq!(
            admin.post(&pause, "status=paused").await.0,
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            admin.post(&pause, "status=paused&csrf=00").await.0,
            StatusCode::FORBIDDEN
        );
        let csrf = admin.csrf().await;
        let (status, location) = admin
            .post(&pause, &format!("status=paused&csrf={csrf}"))
            .await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        assert_eq!(
            location.unwrap(),
            format!("/console/subscriptions/{sub}?notice=paused")
        );
        assert_eq!(
            h.get(&format!("/v1/subscriptions/{sub}")).await.1["status"],
            "paused"
        );

        // A read token sees the pages and is refused every action.
        let (_, token) = h
            .json(
                Method::POST,
                "/v1/tokens",
                json!({"name": "r", "scope": "read"}),
            )
            .await;
        let reader = Browser::sign_in(&app, token["token"].as_str().unwrap()).await;
        let (status, html) = reader.get(&format!("/console/subscriptions/{sub}")).await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            html.contains("read-only") && html.contains("disabled"),
            "{html}"
        );
        let csrf = reader.csrf().await;
        let resume = format!("status=active&csrf={csrf}");
        assert_eq!(reader.post(&pause, &resume).await.0, StatusCode::FORBIDDEN);
        assert_eq!(
            h.get(&format!("/v1/subscriptions/{sub}")).await.1["status"],
            "paused"
        );

        // Revoking the token ends its sessions; signing out ends the session.
        let id = token["id"].as_str().unwrap();
        h.send(
            Method::DELETE,
            &format!("/v1/tokens/{id}"),
            Some("t"),
            Body::empty(),
        )
        .await;
        assert_eq!(reader.get("/console/").await.0, StatusCode::SEE_OTHER);
        let csrf = admin.csrf().await;
        let (status, location) = admin
            .post("/console/sign-out", &format!("csrf={csrf}"))
            .await;
        assert_eq!(
            (status, location.as_deref()),
            (StatusCode::SEE_OTHER, Some("/console/sign-in"))
        );
        assert_eq!(admin.get("/console/").await.0, StatusCode::SEE_OTHER);
    })
    .await;
}
