//! A thin client of the host's admin API (`Authorization: Bearer <token>`), with panics that show the
//! request, the status and the body when an answer is not the expected one.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

/// A raw admin API answer.
#[derive(Clone, Debug)]
pub struct ApiResponse {
    pub method: String,
    pub path: String,
    pub status: u16,
    pub text: String,
    /// The body as JSON (`Value::Null` when it is not JSON).
    pub body: Value,
}

impl ApiResponse {
    fn context(&self) -> String {
        format!(
            "{} {} answered {} with body {:?}",
            self.method, self.path, self.status, self.text
        )
    }

    /// Asserts the status is one of `expected`; returns the JSON body.
    pub fn expect_status(&self, expected: &[u16]) -> &Value {
        assert!(
            expected.contains(&self.status),
            "expected status {expected:?}: {}",
            self.context()
        );
        &self.body
    }

    /// Asserts `status` and the error shape `{"error":{"code":"…","message":"…"}}`; returns the code.
    pub fn expect_error(&self, status: u16) -> String {
        assert_eq!(
            self.status,
            status,
            "expected status {status}: {}",
            self.context()
        );
        let code = self.body["error"]["code"].as_str();
        let message = self.body["error"]["message"].as_str();
        assert!(
            code.is_some_and(|c| !c.is_empty()) && message.is_some_and(|m| !m.is_empty()),
            "expected an error body {{\"error\":{{\"code\":\"…\",\"message\":\"…\"}}}}: {}",
            self.context()
        );
        code.unwrap_or_default().to_string()
    }

    /// A string field of the body, or a panic naming it.
    pub fn str_field(&self, field: &str) -> String {
        self.body[field]
            .as_str()
            .unwrap_or_else(|| panic!("expected a string field {field:?}: {}", self.context()))
            .to_string()
    }
}

/// The admin API of one host.
#[derive(Clone, Debug)]
pub struct Admin {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl Admin {
    /// `base` like `http://127.0.0.1:8080`.
    pub fn new(base: &str, token: Option<&str>) -> Admin {
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("build reqwest client");
        Admin {
            base: base.trim_end_matches('/').to_string(),
            token: token.map(str::to_string),
            http,
        }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// The same API with another token (`None`: no Authorization header).
    pub fn with_token(&self, token: Option<&str>) -> Admin {
        Admin {
            token: token.map(str::to_string),
            ..self.clone()
        }
    }

    /// Sends a request; `body` is JSON, or raw bytes with a content type.
    pub async fn request(&self, method: Method, path: &str, body: Body) -> ApiResponse {
        let url = format!("{}{path}", self.base);
        let mut req = self.http.request(method.clone(), &url);
        if let Some(token) = &self.token {
            req = req.bearer_auth(token);
        }
        req = match body {
            Body::None => req,
            Body::Json(v) => req.json(&v),
            Body::Raw(bytes, content_type) => req.header("content-type", content_type).body(bytes),
        };
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {url} failed: {e}"));
        let status = resp.status().as_u16();
        let text = resp
            .text()
            .await
            .unwrap_or_else(|e| panic!("{method} {url}: reading the body failed: {e}"));
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        ApiResponse {
            method: method.to_string(),
            path: path.to_string(),
            status,
            text,
            body,
        }
    }

    pub async fn get(&self, path: &str) -> ApiResponse {
        self.request(Method::GET, path, Body::None).await
    }

    pub async fn post_json(&self, path: &str, body: Value) -> ApiResponse {
        self.request(Method::POST, path, Body::Json(body)).await
    }

    /// `POST /v1/plugins?name=NAME` with the raw module (content-type application/wasm).
    pub async fn try_upload_plugin(&self, wasm: &[u8], name: &str) -> ApiResponse {
        let path = format!("/v1/plugins?name={name}");
        self.request(
            Method::POST,
            &path,
            Body::Raw(wasm.to_vec(), "application/wasm"),
        )
        .await
    }

    /// Uploads a plugin (201, or 200 for bytes already stored); returns its id.
    pub async fn upload_plugin(&self, wasm: &[u8], name: &str) -> String {
        let resp = self.try_upload_plugin(wasm, name).await;
        resp.expect_status(&[200, 201]);
        resp.str_field("id")
    }

    /// Creates an endpoint (201); returns `(id, secret)`.
    pub async fn create_endpoint(&self, url: &str) -> (String, String) {
        let resp = self
            .post_json(
                "/v1/endpoints",
                json!({"url": url, "description": "e2e test receiver"}),
            )
            .await;
        resp.expect_status(&[201]);
        let secret = resp.str_field("secret");
        assert!(
            secret.starts_with("whsec_"),
            "endpoint secret {secret:?} does not start with whsec_: {resp:?}"
        );
        (resp.str_field("id"), secret)
    }

    /// Creates a subscription (201, status active); returns its id.
    pub async fn create_subscription(&self, body: Value) -> String {
        let resp = self.post_json("/v1/subscriptions", body).await;
        resp.expect_status(&[201]);
        assert_eq!(
            resp.body["status"],
            json!("active"),
            "a new subscription should be active: {resp:?}"
        );
        resp.str_field("id")
    }

    /// `GET /v1/deliveries` → the `items` of the first page.
    pub async fn list_deliveries(&self) -> Vec<Value> {
        let resp = self.get("/v1/deliveries").await;
        resp.expect_status(&[200]);
        resp.body["items"]
            .as_array()
            .unwrap_or_else(|| panic!("expected {{\"items\":[…],\"next_cursor\":…}}: {resp:?}"))
            .clone()
    }
}

/// A request body.
pub enum Body {
    None,
    Json(Value),
    Raw(Vec<u8>, &'static str),
}
