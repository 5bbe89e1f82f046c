//! The accept loop of the admin and metrics servers. `axum::serve` has no header-read timeout
//! and no connection cap, so a client that opens connections and sends nothing (slow-loris)
//! could hold them, and the process's file descriptors, forever. Here every connection is
//! bounded in count and in time:
//!
//! - at most `max_connections` are served at once; at the limit the loop stops accepting and new
//!   connections wait in the kernel's listen backlog (not closed: they are served, in order, as
//!   soon as a slot frees, and every slot frees within the timeouts below);
//! - hyper's header-read timeout closes a connection whose request headers do not arrive in
//!   time, counted from the connection's start or, kept alive, from the previous response (so it
//!   is the idle keep-alive timeout too);
//! - tower-http's body timeout bounds each gap in a request body, and the whole request
//!   (body and handler) runs under `request_timeout`.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tower_http::timeout::RequestBodyTimeout;

use crate::admin::ApiError;
use crate::config::ServerLimits;

/// How long open connections get to finish their requests once shutdown is signalled.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Pause after a failed accept (e.g. out of file descriptors) so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serves `router` on `listener` within `limits` until `shutdown`, then lets open connections
/// finish (up to a grace period). `name` labels the log lines.
pub async fn serve(
    name: &'static str,
    listener: TcpListener,
    router: Router,
    limits: &ServerLimits,
    shutdown: CancellationToken,
) {
    let request_timeout = limits.request_timeout();
    let router = router.layer(axum::middleware::from_fn(move |request, next| {
        within(request_timeout, request, next)
    }));
    let service = RequestBodyTimeout::new(router, limits.body_timeout());
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout());
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    while let Some(permit) = next_permit(&permits, &shutdown).await {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    tracing::warn!(server = name, %error, "accepting a connection failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        let service = TowerToHyperService::new(service.clone());
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            // Timeouts and clients going away end connections with an error: routine here.
            if let Err(error) = connection.await {
                tracing::debug!(server = name, %error, "connection ended");
            }
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            server = name,
            "connections still open after the shutdown grace period"
        );
    }
}

/// A connection slot, or `None` once shutdown is signalled.
async fn next_permit(
    permits: &Arc<Semaphore>,
    shutdown: &CancellationToken,
) -> Option<OwnedSemaphorePermit> {
    tokio::select! {
        permit = Arc::clone(permits).acquire_owned() => permit.ok(),
        () = shutdown.cancelled() => None,
    }
}

/// Runs the rest of the request (body read and handler) under `limit`.
async fn within(limit: Duration, request: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "request_timeout",
            format!("the request took longer than {} ms", limit.as_millis()),
        )
        .into_response(),
    }
}

/// Raises the soft open-file limit to the hard limit (every connection is a file descriptor)
/// and returns the effective limit, warning when it is too low for the configured connections.
pub fn raise_open_file_limit(limits: &ServerLimits) -> Option<u64> {
    let effective = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(error) => {
            tracing::warn!(%error, "could not read or raise the open-file limit");
            return None;
        }
    };
    // Two servers at their limit, plus the store's, the nodes' and the deliveries' sockets.
    let wanted = 2 * limits.max_connections as u64 + 1024;
    if effective < wanted {
        tracing::warn!(
            open_files = effective,
            wanted,
            "the open-file limit is below what server.max_connections may use; lower it or raise the hard limit"
        );
    } else {
        tracing::info!(open_files = effective, "open-file limit");
    }
    Some(effective)
}

#[cfg(test)]
mod tests;
