//! The webhook HTTP client: no redirects, bounded time and response size, and no destinations
//! in private, loopback, link-local or otherwise internal address space unless allow-listed.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{
    ACCEPT, AUTHORIZATION, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER, USER_AGENT as UA,
};
use hyper::{Method, Request, Uri};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use ipnet::IpNet;
use url::{Host, Url};

use self::address::{AddressGuard, GuardedResolver, Refused};
use super::schedule::parse_retry_after;

mod address;
mod body;
mod tls;

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
pub struct ClientBuildError(String);

/// hyper-util's pooled client over TCP (names resolved through the address guard), with TLS
/// where the URL says `https` (h2 or HTTP/1.1 by ALPN).
type Http = Client<HttpsConnector<HttpConnector<GuardedResolver>>, Full<Bytes>>;

/// Cheap to clone: clones share one connection pool.
#[derive(Debug, Clone)]
pub struct WebhookClient {
    http: Http,
    guard: Arc<AddressGuard>,
    max_response_body: usize,
    body_timeout: Duration,
    /// Also bounds the name lookup of [`WebhookClient::vet_url`].
    connect_timeout: Duration,
    request_timeout: Duration,
    /// Endpoint URLs already parsed, checked by [`check_url`](Self::check_url) (which depends
    /// only on the URL and the guard's fixed allow-list) and made into a request target: parsing
    /// was ~4 % of the host's CPU at 10K webhooks/s (BENCHMARKS.md, "Session of 2026-12-03
    /// (third)"). Emptied when it reaches [`CHECKED_URLS`] entries.
    checked: Arc<Mutex<HashMap<String, Target>>>,
}

/// An accepted endpoint URL as a request goes to it: the URI without credentials or fragment,
/// and the `Authorization: Basic` header its `user:password@` part asks for (as reqwest and
/// curl do), so credentials never travel in the request line or a `Host` header.
#[derive(Debug, Clone)]
struct Target {
    uri: Uri,
    authorization: Option<HeaderValue>,
}

/// Idle time before a pooled connection is probed, and time between probes.
const TCP_KEEPALIVE: Duration = Duration::from_secs(15);

/// Most endpoint URLs kept parsed.
const CHECKED_URLS: usize = 4096;

impl WebhookClient {
    pub fn new(settings: ClientSettings) -> Result<Self, ClientBuildError> {
        let guard = Arc::new(AddressGuard::new(settings.allowed_cidrs));
        // No redirects are followed (hyper-util's client has none: a 3xx is just a status, and a
        // redirect could point anywhere, including inside the network) and no proxy is used (it
        // would resolve names itself, out of reach of the address guard).
        let mut tcp = HttpConnector::new_with_resolver(GuardedResolver::new(Arc::clone(&guard)));
        tcp.enforce_http(false);
        tcp.set_nodelay(true);
        tcp.set_connect_timeout(Some(settings.connect_timeout));
        // reqwest's defaults, kept: a pooled connection to a receiver that vanished (a NAT or
        // load balancer dropped it) is found dead within a minute instead of on the next POST.
        tcp.set_keepalive(Some(TCP_KEEPALIVE));
        tcp.set_keepalive_interval(Some(TCP_KEEPALIVE));
        tcp.set_keepalive_retries(Some(3));
        let connector = HttpsConnectorBuilder::new()
            .with_tls_config(tls::client_config()?)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(tcp);
        let http = Client::builder(TokioExecutor::new())
            // Idle connections are closed after the pool's idle timeout (90 s) only with a timer.
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .build(connector);
        Ok(Self {
            http,
            guard,
            max_response_body: settings.max_response_body,
            body_timeout: settings.body_timeout,
            connect_timeout: settings.connect_timeout,
            request_timeout: settings.request_timeout,
            checked: Arc::default(),
        })
    }

    /// [`check_url`](Self::check_url) and [`Target::of`], remembered per URL: an accepted URL
    /// is parsed once.
    fn checked_url(&self, url: &str) -> Result<Target, DeliveryError> {
        let lock = || match self.checked.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(parsed) = lock().get(url) {
            return Ok(parsed.clone());
        }
        let target = Target::of(self.check_url(url)?)?;
        let mut checked = lock();
        if checked.len() >= CHECKED_URLS {
            checked.clear();
        }
        checked.insert(url.to_owned(), target.clone());
        Ok(target)
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
        // The connector connects to IP literals without asking the resolver: checked here.
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

    /// One POST of `body` with `headers`: the receiver's answer within the request timeout (its
    /// body within the body timeout), or why there was none.
    pub async fn post(
        &self,
        url: &str,
        headers: &[(&str, String)],
        body: Bytes,
    ) -> Result<WebhookResponse, DeliveryError> {
        let target = self.checked_url(url)?;
        let request = request(&target, headers, body)?;
        let started = Instant::now();
        let response = tokio::time::timeout(self.request_timeout, self.http.request(request))
            .await
            .map_err(|_| DeliveryError::Timeout)?
            .map_err(classify)?;
        let latency = started.elapsed();
        let (head, mut body) = response.into_parts();
        let retry_after = head
            .headers
            .get(RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| parse_retry_after(value, SystemTime::now()));
        let body_timeout = self
            .body_timeout
            .min(self.request_timeout.saturating_sub(latency));
        Ok(WebhookResponse {
            status: head.status.as_u16(),
            body: body::read_prefix(&mut body, self.max_response_body, body_timeout).await,
            retry_after,
            latency,
        })
    }
}

impl Target {
    fn of(mut url: Url) -> Result<Target, DeliveryError> {
        let authorization = basic_auth(&url)?;
        // Both only fail for URLs that cannot have credentials, which then have none to remove.
        let _ = url.set_username("");
        let _ = url.set_password(None);
        url.set_fragment(None);
        let uri = url
            .as_str()
            .parse::<Uri>()
            .map_err(|error| DeliveryError::InvalidUrl(error.to_string()))?;
        Ok(Target { uri, authorization })
    }
}

/// `Basic base64(user:password)` from the URL's percent-decoded credentials, if it has any.
fn basic_auth(url: &Url) -> Result<Option<HeaderValue>, DeliveryError> {
    if url.username().is_empty() && url.password().is_none() {
        return Ok(None);
    }
    let decode = |part: &str| percent_encoding::percent_decode_str(part).collect::<Vec<u8>>();
    let mut credentials = decode(url.username());
    credentials.push(b':');
    credentials.extend(decode(url.password().unwrap_or_default()));
    let encoded = base64::engine::general_purpose::STANDARD.encode(credentials);
    let mut value = HeaderValue::try_from(format!("Basic {encoded}"))
        .map_err(|_| DeliveryError::InvalidUrl("invalid credentials".to_owned()))?;
    value.set_sensitive(true);
    Ok(Some(value))
}

fn request(
    target: &Target,
    headers: &[(&str, String)],
    body: Bytes,
) -> Result<Request<Full<Bytes>>, DeliveryError> {
    let mut request = Request::new(Full::new(body));
    *request.method_mut() = Method::POST;
    *request.uri_mut() = target.uri.clone();
    *request.headers_mut() = header_map(headers)?;
    let map = request.headers_mut();
    map.insert(UA, HeaderValue::from_static(USER_AGENT));
    map.insert(ACCEPT, HeaderValue::from_static("*/*"));
    if let Some(authorization) = &target.authorization {
        map.insert(AUTHORIZATION, authorization.clone());
    }
    Ok(request)
}

fn header_map(headers: &[(&str, String)]) -> Result<HeaderMap, DeliveryError> {
    // Room for what `request` and hyper add (user-agent, accept, authorization, host,
    // content-length): growing the map was ~2.5 % of the host's CPU at 10K webhooks/s.
    let mut map = HeaderMap::with_capacity(headers.len() + 5);
    for (name, value) in headers {
        let invalid = || DeliveryError::Other(format!("invalid header {name:?}"));
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| invalid())?;
        map.append(name, HeaderValue::from_str(value).map_err(|_| invalid())?);
    }
    Ok(map)
}

fn classify(error: hyper_util::client::legacy::Error) -> DeliveryError {
    // hyper-util's errors do not carry the URL (which may hold credentials); the caller knows it.
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&error);
    let mut chain = Vec::new();
    let mut timed_out = false;
    while let Some(current) = source {
        if let Some(refused) = current.downcast_ref::<Refused>() {
            return DeliveryError::Blocked(refused.0.clone());
        }
        timed_out |= current
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut);
        chain.push(current.to_string());
        source = current.source();
    }
    let detail = chain.join(": ");
    if timed_out {
        DeliveryError::Timeout
    } else if error.is_connect() {
        DeliveryError::Connect(detail)
    } else {
        DeliveryError::Other(detail)
    }
}
