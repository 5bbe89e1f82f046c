//! The webhook HTTP client: no redirects, bounded time and response size, and no destinations
//! in private, loopback, link-local or otherwise internal address space unless allow-listed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use ipnet::IpNet;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use url::{Host, Url};

use super::schedule::parse_retry_after;

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
}

impl Default for ClientSettings {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            allowed_cidrs: Vec::new(),
            max_response_body: 4096,
        }
    }
}

/// The receiver's answer, whatever its status: the caller decides what a non-2xx means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookResponse {
    pub status: u16,
    /// The first `max_response_body` bytes, lossy UTF-8.
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
}

impl WebhookClient {
    pub fn new(settings: ClientSettings) -> Result<Self, ClientBuildError> {
        let guard = Arc::new(AddressGuard { allowed: settings.allowed_cidrs });
        let http = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            // A redirect could point anywhere, including inside the network; 3xx is just a status.
            .redirect(reqwest::redirect::Policy::none())
            // A proxy would resolve names itself, out of reach of the address guard.
            .no_proxy()
            .dns_resolver(GuardedResolver(Arc::clone(&guard)))
            .connect_timeout(settings.connect_timeout)
            .timeout(settings.request_timeout)
            .build()
            .map_err(ClientBuildError)?;
        Ok(Self { http, guard, max_response_body: settings.max_response_body })
    }

    /// Parses an endpoint URL and refuses what can be refused without DNS: other schemes and
    /// internal IP literals. Names are checked when they are resolved, on every connection.
    pub fn check_url(&self, url: &str) -> Result<Url, DeliveryError> {
        let parsed = Url::parse(url).map_err(|error| DeliveryError::InvalidUrl(error.to_string()))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            let message = format!("scheme {:?} is not supported, use http or https", parsed.scheme());
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

    pub async fn post(
        &self,
        url: &str,
        headers: &[(&str, String)],
        body: Bytes,
    ) -> Result<WebhookResponse, DeliveryError> {
        let url = self.check_url(url)?;
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
            body: read_prefix(&mut response, self.max_response_body).await,
            retry_after,
            latency,
        })
    }
}

/// Decides which addresses may be connected to.
#[derive(Debug)]
struct AddressGuard {
    allowed: Vec<IpNet>,
}

impl AddressGuard {
    /// `Err` says which address was refused and why, for the delivery log and the admin API.
    fn check(&self, ip: IpAddr) -> Result<(), String> {
        let embedded_v4 = embedded_ipv4(ip);
        let allowed = |net: &IpNet| {
            net.contains(&ip) || embedded_v4.is_some_and(|v4| net.contains(&IpAddr::V4(v4)))
        };
        match refusal_reason(ip) {
            Some(reason) if !self.allowed.iter().any(allowed) => Err(format!(
                "{ip} is {reason} (allow it with PIPELINE_DELIVERY_ALLOWED_CIDRS)"
            )),
            _ => Ok(()),
        }
    }
}

/// Resolves with the system resolver, then drops refused addresses, so the connection goes
/// exactly where the check looked: a DNS answer that changes later (rebinding) cannot slip past.
#[derive(Debug)]
struct GuardedResolver(Arc<AddressGuard>);

/// The error the resolver returns when every address was refused; found again in `classify`.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Refused(String);

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let guard = Arc::clone(&self.0);
        let host = name.as_str().to_owned();
        Box::pin(async move {
            // Port 0: reqwest puts the URL's port in.
            let resolved: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let mut refusals = Vec::new();
            let mut allowed = Vec::new();
            for addr in resolved {
                match guard.check(addr.ip()) {
                    Ok(()) => allowed.push(addr),
                    Err(refusal) => refusals.push(refusal),
                }
            }
            if allowed.is_empty() && !refusals.is_empty() {
                let message = format!("{host} resolves only to refused addresses: {}", refusals.join("; "));
                return Err(Box::new(Refused(message)) as BoxError);
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

/// Why `ip` is not a public unicast destination, or `None` if it is. IPv4 embedded in IPv6
/// (mapped `::ffff:a.b.c.d`, NAT64 `64:ff9b::a.b.c.d`) is judged as the IPv4 address it reaches.
pub fn refusal_reason(ip: IpAddr) -> Option<&'static str> {
    let ip = embedded_ipv4(ip).map_or(ip, IpAddr::V4);
    REFUSED_NETS.iter().find(|(net, _)| net.contains(&ip)).map(|(_, reason)| *reason)
}

fn embedded_ipv4(ip: IpAddr) -> Option<Ipv4Addr> {
    let IpAddr::V6(v6) = ip else { return None };
    if let Some(v4) = v6.to_ipv4_mapped() {
        return Some(v4);
    }
    let [a, b, c, d, e, f, g, h] = v6.segments();
    let nat64 = [a, b, c, d, e, f] == [0x64, 0xff9b, 0, 0, 0, 0];
    nat64.then(|| Ipv4Addr::from((u32::from(g) << 16) | u32::from(h)))
}

const fn v4(a: u8, b: u8, c: u8, d: u8, prefix: u8) -> IpNet {
    IpNet::new_assert(IpAddr::V4(Ipv4Addr::new(a, b, c, d)), prefix)
}

const fn v6(first_segment: u16, second_segment: u16, prefix: u8) -> IpNet {
    let ip = Ipv6Addr::new(first_segment, second_segment, 0, 0, 0, 0, 0, 0);
    IpNet::new_assert(IpAddr::V6(ip), prefix)
}

/// Checked in order, most specific first, so the reason names the narrowest range.
const REFUSED_NETS: &[(IpNet, &str)] = &[
    (v4(0, 0, 0, 0, 8), "an unspecified (\"this network\") address"),
    (v4(10, 0, 0, 0, 8), "a private address"),
    (v4(100, 64, 0, 0, 10), "a shared (carrier-grade NAT) address"),
    (v4(127, 0, 0, 0, 8), "a loopback address"),
    (v4(169, 254, 0, 0, 16), "a link-local address (this includes cloud metadata)"),
    (v4(172, 16, 0, 0, 12), "a private address"),
    (v4(192, 0, 0, 0, 24), "an IETF protocol address"),
    (v4(192, 0, 2, 0, 24), "a documentation address"),
    (v4(192, 168, 0, 0, 16), "a private address"),
    (v4(198, 18, 0, 0, 15), "a benchmarking address"),
    (v4(198, 51, 100, 0, 24), "a documentation address"),
    (v4(203, 0, 113, 0, 24), "a documentation address"),
    (v4(224, 0, 0, 0, 4), "a multicast address"),
    (v4(255, 255, 255, 255, 32), "the broadcast address"),
    (v4(240, 0, 0, 0, 4), "a reserved address"),
    (v6(0, 0, 128), "the unspecified address"),
    (IpNet::new_assert(IpAddr::V6(Ipv6Addr::LOCALHOST), 128), "a loopback address"),
    (v6(0, 0, 96), "a reserved (IPv4-compatible) address"),
    (v6(0x100, 0, 64), "a discard-only address"),
    (v6(0x2001, 0xdb8, 32), "a documentation address"),
    (v6(0xfc00, 0, 7), "a unique local (private) address"),
    (v6(0xfe80, 0, 10), "a link-local address"),
    (v6(0xfec0, 0, 10), "a site-local address"),
    (v6(0xff00, 0, 8), "a multicast address"),
];

fn header_map(headers: &[(&str, String)]) -> Result<HeaderMap, DeliveryError> {
    let mut map = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        let invalid = || DeliveryError::Other(format!("invalid header {name:?}"));
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| invalid())?;
        map.append(name, HeaderValue::from_str(value).map_err(|_| invalid())?);
    }
    Ok(map)
}

/// Reads at most `limit` body bytes. A body error just ends the read: the status is already
/// the receiver's answer and the body is only kept for diagnostics.
async fn read_prefix(response: &mut reqwest::Response, limit: usize) -> String {
    let mut prefix = Vec::new();
    while prefix.len() < limit {
        let Ok(Some(chunk)) = response.chunk().await else { break };
        let take = chunk.len().min(limit.saturating_sub(prefix.len()));
        prefix.extend_from_slice(chunk.get(..take).unwrap_or_default());
    }
    String::from_utf8_lossy(&prefix).into_owned()
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
