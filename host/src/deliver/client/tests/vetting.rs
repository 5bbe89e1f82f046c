//! Endpoint URLs vetted when they are given: a name is resolved and every address checked.

use super::*;

#[tokio::test]
async fn names_are_resolved_and_vetted_when_an_endpoint_is_given() {
    // localhost resolves from the hosts file: no network needed.
    let error = client(&[])
        .vet_url("http://localhost:9/x")
        .await
        .unwrap_err();
    assert_eq!(error.code(), "blocked", "{error}");
    let message = error.to_string();
    assert!(message.contains("localhost resolves to"), "{message}");
    assert!(message.contains("is a loopback address"), "{message}");
    let allowed = client(&["127.0.0.0/8", "::1/128"]);
    assert!(allowed.vet_url("http://localhost:9/x").await.is_ok());
    // Literals are judged as before, without a lookup.
    assert_eq!(
        client(&[])
            .vet_url("http://[::ffff:127.0.0.1]/")
            .await
            .unwrap_err()
            .code(),
        "blocked"
    );
    assert_eq!(
        client(&[])
            .vet_url("http://[2001::1]/")
            .await
            .unwrap_err()
            .code(),
        "blocked"
    );
    let unknown = client(&[])
        .vet_url("http://no-such-host.invalid/")
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), "invalid_url", "{unknown}");
}
