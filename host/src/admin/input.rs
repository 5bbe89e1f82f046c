//! Everything a client sends passes through here: JSON bodies, query strings and path ids. Besides
//! parsing, one rule is enforced for every handler at once: no string may hold a NUL character.
//! PostgreSQL's `text` cannot store one (it refuses the whole statement, which would surface as a
//! 503), SQLite can; refusing it here answers the same 400 naming the field on both stores, and no
//! handler has to remember it field by field.

use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::{ApiError, ApiResult};

/// Parses a JSON body into `T`, answering bad input with a 400 in the API's error shape. Every
/// body of the API is a JSON object: serde would also read a struct from an array of its fields
/// in order (`[null, null]` as `{}`), which the document does not allow (schemathesis found it).
pub fn parse_json<T: DeserializeOwned>(body: &Bytes) -> ApiResult<T> {
    if body.is_empty() {
        return Err(ApiError::bad_request(
            "invalid_json",
            "the request needs a JSON body",
        ));
    }
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError::bad_request(
            "invalid_json",
            "the body must be a JSON object",
        ));
    }
    let parsed: T = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request("invalid_json", format!("invalid JSON body: {e}")))?;
    // JSON cannot carry a raw NUL inside a string, only the escape `\u0000`: bodies without it
    // (nearly all) skip the second parse that finds which field holds one.
    if contains(body, br"\u0000") {
        let value: Value = serde_json::from_slice(body).map_err(|e| {
            ApiError::bad_request("invalid_json", format!("invalid JSON body: {e}"))
        })?;
        if let Some(field) = nul_field(&value, "") {
            return Err(nul_error(&field));
        }
    }
    Ok(parsed)
}

/// Parses a query string into `T` with the API's error shape; no key or value may hold a NUL.
pub fn parse_query<T: DeserializeOwned>(query: Option<&str>) -> ApiResult<T> {
    let query = query.unwrap_or("");
    let invalid = |e: serde_urlencoded::de::Error| {
        ApiError::bad_request("invalid_query", format!("invalid query string: {e}"))
    };
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).map_err(invalid)?;
    if let Some((key, _)) = pairs
        .iter()
        .find(|(key, value)| key.contains('\0') || value.contains('\0'))
    {
        return Err(nul_error(&key.replace('\0', "\\u0000")));
    }
    serde_urlencoded::from_str(query).map_err(invalid)
}

/// The `{id}` of a route, percent-decoded, refused with a 400 in the API's shape when it is not
/// one path segment of text the store can hold.
pub struct Id(pub String);

impl<S: Send + Sync> FromRequestParts<S> for Id {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Id, ApiError> {
        let Path(id) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::bad_request("invalid_path", e.body_text()))?;
        if id.contains('\0') {
            return Err(nul_error("id"));
        }
        Ok(Id(id))
    }
}

/// The `{id}` path parameter, as the OpenAPI document shows it.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct IdParam {
    /// The resource's id, as the API gave it out.
    #[allow(dead_code)] // read by the OpenAPI derive only
    id: String,
}

fn nul_error(field: &str) -> ApiError {
    ApiError::bad_request(
        "invalid_field",
        format!("{field} contains a NUL character (\\u0000), which cannot be stored"),
    )
}

/// The path (`a.b[2].c`) of the first string or key in `value` holding a NUL, if any.
fn nul_field(value: &Value, path: &str) -> Option<String> {
    match value {
        Value::String(text) if text.contains('\0') => Some(or_body(path)),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(index, item)| nul_field(item, &format!("{path}[{index}]"))),
        Value::Object(fields) => fields.iter().find_map(|(key, item)| {
            let child = if path.is_empty() {
                key.replace('\0', "\\u0000")
            } else {
                format!("{path}.{}", key.replace('\0', "\\u0000"))
            };
            if key.contains('\0') {
                return Some(format!("the key {child}"));
            }
            nul_field(item, &child)
        }),
        _ => None,
    }
}

fn or_body(path: &str) -> String {
    if path.is_empty() {
        "the body".to_string()
    } else {
        path.to_string()
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_field_holding_a_nul_is_named() {
        let body = json!({"a": "ok", "b": {"c": ["x", "y\u{0}"]}});
        assert_eq!(nul_field(&body, "").as_deref(), Some("b.c[1]"));
        assert_eq!(
            nul_field(&json!({"k\u{0}": 1}), "").as_deref(),
            Some("the key k\\u0000")
        );
        assert_eq!(nul_field(&json!({"a": "\\u0000"}), ""), None);
    }

    #[test]
    fn a_body_must_be_a_json_object() {
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct Fields {
            a: Option<String>,
            b: Option<String>,
        }
        for body in [&b"[null, null]"[..], b"null", b"\"a\"", b"  [1]"] {
            let error = parse_json::<Fields>(&Bytes::copy_from_slice(body)).unwrap_err();
            assert_eq!(
                error.code,
                "invalid_json",
                "{:?}",
                String::from_utf8_lossy(body)
            );
        }
        assert!(parse_json::<Fields>(&Bytes::from_static(b" \n{\"a\": null}")).is_ok());
    }

    #[test]
    fn bodies_and_queries_with_a_nul_are_refused_naming_the_field() {
        let body = Bytes::from_static(br#"{"name":"a\u0000b"}"#);
        let error = parse_json::<Value>(&body).err().unwrap();
        assert_eq!(
            (error.code, error.message.starts_with("name ")),
            ("invalid_field", true)
        );
        let escaped = Bytes::from_static(br#"{"name":"a\\u0000b"}"#);
        assert!(parse_json::<Value>(&escaped).is_ok());
        let error = parse_query::<std::collections::HashMap<String, String>>(Some("status=a%00"))
            .err()
            .unwrap();
        assert_eq!(
            (error.code, error.message.starts_with("status ")),
            ("invalid_field", true)
        );
    }
}
