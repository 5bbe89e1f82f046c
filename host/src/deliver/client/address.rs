//! Which destinations the webhook client may connect to: public unicast addresses, plus any
//! allow-listed ranges. Checked on IP literals in URLs and on every DNS answer.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper_util::client::legacy::connect::dns::Name;
use ipnet::IpNet;
use tower_service::Service;

/// Decides which addresses may be connected to.
#[derive(Debug)]
pub(super) struct AddressGuard {
    allowed: Vec<IpNet>,
}

impl AddressGuard {
    pub(super) fn new(allowed: Vec<IpNet>) -> Self {
        Self { allowed }
    }

    /// `Err` says which address was refused and why, for the delivery log and the admin API.
    pub(super) fn check(&self, ip: IpAddr) -> Result<(), String> {
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
/// hyper-util's connector calls it for every new connection to a name (never for IP literals,
/// which `WebhookClient::check_url` checks).
#[derive(Debug, Clone)]
pub(super) struct GuardedResolver(Arc<AddressGuard>);

impl GuardedResolver {
    pub(super) fn new(guard: Arc<AddressGuard>) -> Self {
        Self(guard)
    }
}

/// The error the resolver returns when every address was refused; found again in `classify`.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(super) struct Refused(pub(super) String);

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Resolving = Pin<Box<dyn Future<Output = Result<Addrs, BoxError>> + Send>>;
type Addrs = std::vec::IntoIter<SocketAddr>;

impl Service<Name> for GuardedResolver {
    type Response = Addrs;
    type Error = BoxError;
    type Future = Resolving;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Resolving {
        let guard = Arc::clone(&self.0);
        let host = name.as_str().to_owned();
        Box::pin(async move {
            // Port 0: the connector puts the URL's port in.
            let resolved: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let mut refusals = Vec::new();
            let mut allowed = Vec::new();
            for addr in resolved {
                match guard.check(addr.ip()) {
                    Ok(()) => allowed.push(addr),
                    Err(refusal) => refusals.push(refusal),
                }
            }
            if allowed.is_empty() && !refusals.is_empty() {
                let message = format!(
                    "{host} resolves only to refused addresses: {}",
                    refusals.join("; ")
                );
                return Err(Box::new(Refused(message)) as BoxError);
            }
            Ok(allowed.into_iter())
        })
    }
}

/// Why `ip` is not a public unicast destination, or `None` if it is. IPv4 embedded in IPv6
/// (mapped `::ffff:a.b.c.d`, NAT64 `64:ff9b::a.b.c.d`) is judged as the IPv4 address it reaches.
fn refusal_reason(ip: IpAddr) -> Option<&'static str> {
    let ip = embedded_ipv4(ip).map_or(ip, IpAddr::V4);
    REFUSED_NETS
        .iter()
        .find(|(net, _)| net.contains(&ip))
        .map(|(_, reason)| *reason)
}

fn embedded_ipv4(ip: IpAddr) -> Option<Ipv4Addr> {
    let IpAddr::V6(v6) = ip else { return None };
    if let Some(v4) = v6.to_ipv4_mapped() {
        return Some(v4);
    }
    let [a, b, c, d, e, f, g, h] = v6.segments();
    let nat64 = [a, b, c, d, e, f] == [0x64, 0xff9b, 0, 0, 0, 0];
    // Local-use NAT64 (64:ff9b:1::/48) also carries the IPv4 address in its last 32 bits.
    let nat64_local = [a, b, c] == [0x64, 0xff9b, 1];
    if nat64 || nat64_local {
        return Some(Ipv4Addr::from((u32::from(g) << 16) | u32::from(h)));
    }
    // 6to4 (2002::/16) carries it in bits 16..48.
    (a == 0x2002).then(|| Ipv4Addr::from((u32::from(b) << 16) | u32::from(c)))
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
    (
        v4(0, 0, 0, 0, 8),
        "an unspecified (\"this network\") address",
    ),
    (v4(10, 0, 0, 0, 8), "a private address"),
    (
        v4(100, 64, 0, 0, 10),
        "a shared (carrier-grade NAT) address",
    ),
    (v4(127, 0, 0, 0, 8), "a loopback address"),
    (
        v4(169, 254, 0, 0, 16),
        "a link-local address (this includes cloud metadata)",
    ),
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
    (
        IpNet::new_assert(IpAddr::V6(Ipv6Addr::LOCALHOST), 128),
        "a loopback address",
    ),
    (v6(0, 0, 96), "a reserved (IPv4-compatible) address"),
    (
        IpNet::new_assert(IpAddr::V6(Ipv6Addr::new(0, 0, 0, 0, 0xffff, 0, 0, 0)), 96),
        "an IPv4-translated address",
    ),
    (v6(0x100, 0, 64), "a discard-only address"),
    (v6(0x2001, 0xdb8, 32), "a documentation address"),
    // Teredo, ORCHID, AMT, … — protocol infrastructure, not webhook receivers.
    (v6(0x2001, 0, 23), "an IETF protocol assignment address"),
    (v6(0x3fff, 0, 20), "a documentation address"),
    (v6(0xfc00, 0, 7), "a unique local (private) address"),
    (v6(0xfe80, 0, 10), "a link-local address"),
    (v6(0xfec0, 0, 10), "a site-local address"),
    (v6(0xff00, 0, 8), "a multicast address"),
];

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)] // Tests may panic (DESIGN §6).
mod tests {
    use super::*;

    fn check(allowed: &[&str], ip: &str, expected: Result<(), &str>) {
        let guard = AddressGuard::new(allowed.iter().map(|net| net.parse().unwrap()).collect());
        let actual = guard.check(ip.parse().unwrap());
        match (actual, expected) {
            (Ok(()), Ok(())) => {}
            (Err(message), Err(reason)) => {
                assert!(
                    message.starts_with(&format!("{ip} is {reason}")),
                    "{ip}: {message}"
                );
            }
            (actual, expected) => {
                panic!("{ip} with {allowed:?}: {actual:?}, expected {expected:?}")
            }
        }
    }

    #[test]
    fn internal_addresses_are_refused_with_the_narrowest_reason() {
        let cases = [
            ("0.0.0.0", "an unspecified"),
            ("10.255.0.1", "a private"),
            ("100.127.255.255", "a shared"),
            ("127.0.0.1", "a loopback"),
            ("169.254.169.254", "a link-local"),
            ("172.20.0.1", "a private"),
            ("192.0.0.8", "an IETF"),
            ("192.0.2.1", "a documentation"),
            ("192.168.0.1", "a private"),
            ("198.19.0.1", "a benchmarking"),
            ("239.255.255.250", "a multicast"),
            ("255.255.255.255", "the broadcast"),
            ("250.0.0.1", "a reserved"),
            ("::", "the unspecified"),
            ("::1", "a loopback"),
            ("::7f00:1", "a reserved (IPv4-compatible)"),
            ("100::1", "a discard-only"),
            ("2001:db8::1", "a documentation"),
            ("fd12:3456::1", "a unique local"),
            ("fe80::1", "a link-local"),
            ("fec0::1", "a site-local"),
            ("ff02::1", "a multicast"),
            // IPv4 reached through IPv6 is judged by the IPv4 address.
            ("::ffff:10.0.0.1", "a private"),
            ("::ffff:127.0.0.1", "a loopback"),
            ("::ffff:169.254.169.254", "a link-local"),
            ("::ffff:0.0.0.0", "an unspecified"),
            ("::ffff:0:808:808", "an IPv4-translated"),
            ("::ffff:0:7f00:1", "an IPv4-translated"),
            ("2001::1", "an IETF protocol assignment address"),
            (
                "2001:0:4136:e378:8000:63bf:3fff:fdd2",
                "an IETF protocol assignment address",
            ),
            ("2001:1ff:ffff::1", "an IETF protocol assignment address"),
            ("3fff::1", "a documentation"),
            ("3fff:fff:ffff::1", "a documentation"),
            ("64:ff9b::a9fe:a9fe", "a link-local"),
            ("2002:a9fe:a9fe::1", "a link-local"),
            ("2002:7f00:1::", "a loopback"),
            ("64:ff9b:1::a00:1", "a private"),
        ];
        for (ip, reason) in cases {
            check(&[], ip, Err(reason));
        }
    }

    #[test]
    fn public_addresses_pass() {
        let public = [
            "1.1.1.1",
            "8.8.8.8",
            "93.184.215.14",
            "100.63.255.255",
            "100.128.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.167.255.255",
            "223.255.255.255",
            "2606:4700::1111",
            "2001:4860::8888",
            "2001:200::1",
            "3ffe::1",
            "3fff:1000::1",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
        ];
        for ip in public {
            check(&[], ip, Ok(()));
        }
    }

    #[test]
    fn allow_list_lets_chosen_ranges_through_and_no_others() {
        check(&["127.0.0.0/8"], "127.0.0.1", Ok(()));
        check(&["127.0.0.0/8"], "::ffff:127.0.0.1", Ok(()));
        check(&["127.0.0.0/8"], "::1", Err("a loopback"));
        check(&["127.0.0.0/8"], "10.0.0.1", Err("a private"));
        check(&["10.1.0.0/16"], "10.1.2.3", Ok(()));
        check(&["10.1.0.0/16"], "10.2.0.1", Err("a private"));
        check(&["fd00::/8", "::1/128"], "::1", Ok(()));
        check(&["fd00::/8", "::1/128"], "fd00::5", Ok(()));
    }

    #[test]
    fn refusal_names_the_allow_list_setting() {
        let message = AddressGuard::new(Vec::new()).check("10.0.0.1".parse().unwrap());
        assert!(
            message
                .unwrap_err()
                .contains("PIPELINE_DELIVERY_ALLOWED_CIDRS")
        );
    }
}
