//! The webhook HTTP client: no redirects, bounded time and response size, and no destinations
//! in private, loopback, link-local or otherwise internal address space unless allow-listed.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use ipnet::IpNet;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use url::{Host, Url};

use self::address::{AddressGuard, GuardedResolver, Refused};
use super::schedule::parse_retry_after;

mod address;
mod body;

pub use body::sanitise;
#[cfg(test)]
mod tests;

pub const USER_AGENT: &str = concat!("Pipeline-Webhooks/", env!("CARGO_PKG_VERSION"));

#[derive(Debug, Clone)]
pub struct ClientSettings {
    pub connect_timeout: Duration,
    /// Whole attempt: connect, send, and read the response.
    pub request_timeout: Duration,
    /// Destinations allowed despite the internal-address block (e.g. `127.0.0.0/8` in tests).
    pub allowed_cidrs: Vec<IpNet>,
    /// Bytes of response body kept for the delivery log; the rest is not read.
    pub max_response_body: usize,
    /// Time allowed for reading that body once the headers are in, well under `request_timeout`:
    /// a receiver that drips its body cannot hold a worker for the whole request timeout.
    pub body_timeout: Duration,
}

impl Default for ClientSettings {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            allowed_cidrs: Vec::new(),
            max_response_body: 4096,
            body_timeout: Duration::from_secs(2),
        }
    }
}

/// The receiver's answer, whatever its status: the caller decides what a non-2xx means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookResponse {
    pub status: u16,
    /// The first `max_response_body` bytes (or what arrived within the body timeout), lossy
    /// UTF-8 with control characters escaped: safe to store and to show.
    pub body: String,
    pub retry_after: Option<Duration>,
    /// From sending the request to receiving the response headers.
    pub latency: Duration,
}

/// Why an attempt got no HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    #[error("destination refused: {0}")]
    Blocked(String),
    #[error("invalid endpoint url: {0}")]
    InvalidUrl(String),
    #[error("connection failed: {0}")]
    Connect(String),
    #[error("timed out")]
    Timeout,
    #[error("{0}")]
    Other(String),
}

impl DeliveryError {
    /// Refused and malformed destinations fail the same way every time; the rest may pass later.
    pub fn is_retryable(&self) -> bool {
        !matches!(self, Self::Blocked(_) | Self::InvalidUrl(_))
    }

    pub fn code(&self) -> &'static str {
        match self {
            Self::Blocked(_) => "blocked",
            Self::InvalidUrl(_) => "invalid_url",
            Self::Connect(_) => "connect",
            Self::Timeout => "timeout",
            Self::Other(_) => "other",
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("building the webhook HTTP client: {0}")]
pub struct ClientBuildError(#[source] reqwest::Error);

/// Cheap to clone: clones share one connection pool.
#[derive(Debug, Clone)]
pub struct WebhookClient {
    http: reqwest::Client,
    guard: Arc<AddressGuard>,
    max_response_body: usize,
    body_timeout: Duration,
    /// Also bounds the name lookup of [`WebhookClient::vet_url`].
    connect_timeout: Duration,
    /// Endpoint URLs already parsed and checked by [`check_url`](Self::check_url) (which
    /// depends only on the URL and the guard's fixed allow-list): parsing was ~4 % of the host's
    /// CPU at 10K webhooks/s (BENCHMARKS.md, "Session of 2026-12-03 (third)"). Emptied when it
    /// reaches [`CHECKED_URLS`] entries.
    checked: Arc<Mutex<HashMap<String, Url>>>,
}

/// Most endpoint URLs kept parsed.
const CHECKED_URLS: usize = 4096;

impl WebhookClient {
    pub fn new(settings: ClientSettings) -> Result<Self, ClientBuildError> {
        let guard = Arc::new(AddressGuard::new(settings.allowed_cidrs));
        let http = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            // A redirect could point anywhere, including inside the network; 3xx is just a status.
            .redirect(reqwest::redirect::Policy::none())
            // A proxy would resolve names itself, out of reach of the address guard.
            .no_proxy()
            .dns_resolver(GuardedResolver::new(Arc::clone(&guard)))
            .connect_timeout(settings.connect_timeout)
            .timeout(settings.request_timeout)
            .build()
            .map_err(ClientBuildError)?;
        Ok(Self {
            http,
            guard,
            max_response_body: settings.max_response_body,
            body_timeout: settings.body_timeout,
            connect_timeout: settings.connect_timeout,
            checked: Arc::default(),
        })
    }

    /// [`check_url`](Self::check_url), remembered per URL: an accepted URL is parsed once.
    fn checked_url(&self, url: &str) -> Result<Url, DeliveryError> {
        let lock = || match self.checked.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(parsed) = lock().get(url) {
            return Ok(parsed.clone());
        }
        let parsed = self.check_url(url)?;
        let mut checked = lock();
        if checked.len() >= CHECKED_URLS {
            checked.clear();
        }
        checked.insert(url.to_owned(), parsed.clone());
        Ok(parsed)
    }

    /// Parses an endpoint URL and refuses what can be refused without DNS: other schemes and
    /// internal IP literals. Names are checked when they are resolved, on every connection.
    pub fn check_url(&self, url: &str) -> Result<Url, DeliveryError> {
        let parsed =
            Url::parse(url).map_err(|error| DeliveryError::InvalidUrl(error.to_string()))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            let message = format!(
                "scheme {:?} is not supported, use http or https",
                parsed.scheme()
            );
            return Err(DeliveryError::InvalidUrl(message));
        }
        // reqwest connects to IP literals without asking the resolver, so they are checked here.
        let literal = match parsed.host() {
            None => return Err(DeliveryError::InvalidUrl("url has no host".to_owned())),
            Some(Host::Domain(_)) => None,
            Some(Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
            Some(Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
        };
        if let Some(ip) = literal {
            self.guard.check(ip).map_err(DeliveryError::Blocked)?;
        }
        Ok(parsed)
    }

    /// For endpoint creation and update: [`check_url`](Self::check_url), and a name is resolved
    /// and every address it resolves to must pass the guard, so a URL that would be refused at
    /// delivery is refused when it is given. Deliveries still check every connection's addresses
    /// (DNS answers change) and connect only to those that pass.
    pub async fn vet_url(&self, url: &str) -> Result<Url, DeliveryError> {
        let parsed = self.check_url(url)?;
        let Some(Host::Domain(name)) = parsed.host() else {
            return Ok(parsed);
        };
        let port = parsed.port_or_known_default().unwrap_or(80);
        let unresolved = |why: String| DeliveryError::InvalidUrl(format!("{name} {why}"));
        let addresses =
            tokio::time::timeout(self.connect_timeout, tokio::net::lookup_host((name, port)))
                .await
                .map_err(|_| {
                    unresolved(format!(
                        "did not resolve within {} ms",
                        self.connect_timeout.as_millis()
                    ))
                })?
                .map_err(|error| unresolved(format!("does not resolve: {error}")))?;
        for address in addresses {
            self.guard.check(address.ip()).map_err(|refusal| {
                DeliveryError::Blocked(format!("{name} resolves to {refusal}"))
            })?;
        }
        Ok(parsed)
    }

    pub async fn post(
        &self,
        url: &str,
        headers: &[(&str, String)],
        body: Bytes,
    ) -> Result<WebhookResponse, DeliveryError> {
        let url = self.checked_url(url)?;
        let request = self.http.post(url).headers(header_map(headers)?).body(body);
        let started = Instant::now();
        let mut response = request.send().await.map_err(classify)?;
        let latency = started.elapsed();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| parse_retry_after(value, SystemTime::now()));
        Ok(WebhookResponse {
            status: response.status().as_u16(),
            body: body::read_prefix(&mut response, self.max_response_body, self.body_timeout).await,
            retry_after,
            latency,
        })
    }
}

fn header_map(headers: &[(&str, String)]) -> Result<HeaderMap, DeliveryError> {
    // Room for what reqwest and hyper add (user-agent, accept, host): growing the map was ~2.5 %
    // of the host's CPU at 10K webhooks/s.
    let mut map = HeaderMap::with_capacity(headers.len() + 4);
    for (name, value) in headers {
        let invalid = || DeliveryError::Other(format!("invalid header {name:?}"));
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| invalid())?;
        map.append(name, HeaderValue::from_str(value).map_err(|_| invalid())?);
    }
    Ok(map)
}

fn classify(error: reqwest::Error) -> DeliveryError {
    // The URL is left out because it may carry credentials and the caller knows it anyway.
    let error = error.without_url();
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&error);
    let mut chain = Vec::new();
    while let Some(current) = source {
        if let Some(refused) = current.downcast_ref::<Refused>() {
            return DeliveryError::Blocked(refused.0.clone());
        }
        chain.push(current.to_string());
        source = current.source();
    }
    let detail = chain.join(": ");
    if error.is_timeout() {
        DeliveryError::Timeout
    } else if error.is_connect() {
        DeliveryError::Connect(detail)
    } else if error.is_builder() {
        DeliveryError::InvalidUrl(detail)
    } else {
        DeliveryError::Other(detail)
    }
}
