//! The SSRF guard: refuses connections to addresses a courier has no business reaching
//! (loopback, private, link-local, shared, unique-local, multicast, unspecified, reserved ranges,
//! their IPv4-in-IPv6 forms, and cloud metadata endpoints) unless allowed by CIDR or host name.
//!
//! It checks the addresses a name resolves to (those refused are never dialled) and, after the
//! TCP connect, the peer address of the socket itself, so neither an IP literal nor DNS
//! rebinding between check and connect gets through.

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper::Uri;
use hyper_util::client::legacy::connect::dns::{GaiResolver, Name};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tower_service::Service;

type BoxError = Box<dyn StdError + Send + Sync>;
type BoxFuture<T> = Pin<Box<dyn Future<Output = Result<T, BoxError>> + Send>>;

/// Why an address is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// 0.0.0.0/8, `::`.
    Unspecified,
    /// 127.0.0.0/8, `::1`.
    Loopback,
    /// 10/8, 172.16/12, 192.168/16.
    Private,
    /// 169.254/16, fe80::/10.
    LinkLocal,
    /// 100.64/10 (carrier-grade NAT, shared address space).
    Cgnat,
    /// fc00::/7 (and the deprecated site-local fec0::/10).
    UniqueLocal,
    /// 224/4, ff00::/8.
    Multicast,
    /// Cloud instance metadata (169.254.169.254, 169.254.170.2, 100.100.100.200, fd00:ec2::254).
    Metadata,
    /// Documentation, benchmarking, protocol-assignment, reserved and broadcast ranges.
    Reserved,
}

impl Rule {
    /// A short name, as errors show it.
    pub fn name(self) -> &'static str {
        match self {
            Rule::Unspecified => "unspecified",
            Rule::Loopback => "loopback",
            Rule::Private => "private",
            Rule::LinkLocal => "link-local",
            Rule::Cgnat => "carrier-grade NAT",
            Rule::UniqueLocal => "unique-local",
            Rule::Multicast => "multicast",
            Rule::Metadata => "cloud metadata",
            Rule::Reserved => "reserved",
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The rule that refuses `ip`, if any; IPv4 addresses inside IPv6 ones (mapped, compatible,
/// NAT64, 6to4, Teredo) are judged by the IPv4 address they carry.
pub fn classify(ip: IpAddr) -> Option<Rule> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> Option<Rule> {
    let [a, b, c, d] = ip.octets();
    let in_net = |net: [u8; 4], len: u32| {
        let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
        u32::from(ip) & mask == u32::from_be_bytes(net) & mask
    };
    Some(match (a, b, c, d) {
        (169, 254, 169, 254) | (169, 254, 170, 2) | (100, 100, 100, 200) => Rule::Metadata,
        (0, ..) => Rule::Unspecified,
        (127, ..) => Rule::Loopback,
        (10, ..) => Rule::Private,
        (172, 16..=31, ..) | (192, 168, ..) => Rule::Private,
        (169, 254, ..) => Rule::LinkLocal,
        _ if in_net([100, 64, 0, 0], 10) => Rule::Cgnat,
        (224..=239, ..) => Rule::Multicast,
        (240..=255, ..) => Rule::Reserved,
        (192, 0, 0, _) | (192, 0, 2, _) | (198, 51, 100, _) | (203, 0, 113, _) => Rule::Reserved,
        (198, 18..=19, ..) => Rule::Reserved,
        _ => return None,
    })
}

fn classify_v6(ip: Ipv6Addr) -> Option<Rule> {
    let seg = ip.segments();
    let o = ip.octets();
    let v4_at = |i: usize| Ipv4Addr::new(o[i], o[i + 1], o[i + 2], o[i + 3]);
    if ip.is_unspecified() {
        return Some(Rule::Unspecified);
    }
    if ip.is_loopback() {
        return Some(Rule::Loopback);
    }
    if ip == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) {
        return Some(Rule::Metadata);
    }
    match seg {
        // ::ffff:a.b.c.d (mapped), ::a.b.c.d (compatible), 64:ff9b::a.b.c.d (NAT64).
        [0, 0, 0, 0, 0, 0xffff, ..] | [0, 0, 0, 0, 0, 0, ..] | [0x64, 0xff9b, 0, 0, 0, 0, ..] => {
            classify_v4(v4_at(12))
        }
        // Local-use NAT64 and discard-only prefixes lead nowhere public.
        [0x64, 0xff9b, 1, ..] | [0x100, 0, 0, 0, ..] => Some(Rule::Reserved),
        // 6to4 carries the IPv4 address right after the prefix.
        [0x2002, ..] => classify_v4(v4_at(2)),
        // Teredo carries the client's IPv4 address inverted in the last 32 bits.
        [0x2001, 0, ..] => {
            let v = v4_at(12);
            classify_v4(Ipv4Addr::from(!u32::from(v)))
        }
        [0x2001, 0xdb8, ..] => Some(Rule::Reserved),
        [s, ..] if s & 0xfe00 == 0xfc00 => Some(Rule::UniqueLocal),
        [s, ..] if s & 0xffc0 == 0xfe80 => Some(Rule::LinkLocal),
        [s, ..] if s & 0xffc0 == 0xfec0 => Some(Rule::UniqueLocal),
        [s, ..] if s & 0xff00 == 0xff00 => Some(Rule::Multicast),
        _ => None,
    }
}

/// An IP network in CIDR form (`10.0.0.0/8`, `fd00::/8`), or one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    len: u8,
}

impl Cidr {
    /// Whether `ip` is in the network; an IPv4-mapped IPv6 address matches IPv4 networks.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.len)).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.len))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl std::str::FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (addr, len) = match s.trim().split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s.trim(), None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("{s:?} is not an IP address or CIDR network"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len = match len {
            None => max,
            Some(l) => l
                .parse::<u8>()
                .ok()
                .filter(|l| *l <= max)
                .ok_or_else(|| format!("{s:?}: the prefix length must be 0 to {max}"))?,
        };
        Ok(Self { addr, len })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl serde::Serialize for Cidr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Cidr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// A refused connection: which host, which address, which rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the SSRF guard refused {addr} (host {host}): a {rule} address; allow it with jsonnet_courier.http.guard.allow_cidrs or allow_hosts")]
pub struct Refused {
    /// The host of the URL.
    pub host: String,
    /// The refused address.
    pub addr: IpAddr,
    /// The rule it falls under.
    pub rule: Rule,
}

impl Refused {
    /// The refusal somewhere in `err`'s chain of causes, if it is one.
    pub fn find<'a>(err: &'a (dyn StdError + 'static)) -> Option<&'a Refused> {
        let mut cur = Some(err);
        while let Some(e) = cur {
            if let Some(r) = e.downcast_ref::<Refused>() {
                return Some(r);
            }
            cur = e.source();
        }
        None
    }
}

/// What the guard lets through.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Guard {
    /// Off: everything is allowed.
    pub enabled: bool,
    /// Networks allowed despite the rules.
    pub allow_cidrs: Vec<Cidr>,
    /// Host names allowed despite the rules: exact (case-insensitive) or `*.suffix`.
    pub allow_hosts: Vec<String>,
}

impl Guard {
    /// A guard that allows everything.
    pub fn off() -> Self {
        Self::default()
    }

    /// Whether `host` is allowed whatever it resolves to.
    pub fn host_allowed(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.');
        self.allow_hosts.iter().any(|h| match h.strip_prefix("*.") {
            Some(suffix) => {
                host.len() > suffix.len() + 1
                    && host[host.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
                    && host.as_bytes()[host.len() - suffix.len() - 1] == b'.'
            }
            None => h.eq_ignore_ascii_case(host),
        })
    }

    /// Allows or refuses connecting to `addr` for a URL whose host is `host`.
    ///
    /// # Errors
    /// The address falls under a rule and no allowance covers it.
    pub fn check(&self, host: &str, addr: IpAddr) -> Result<(), Refused> {
        if !self.enabled || self.host_allowed(host) {
            return Ok(());
        }
        match classify(addr) {
            Some(rule) if !self.allow_cidrs.iter().any(|c| c.contains(addr)) => Err(Refused {
                host: host.to_owned(),
                addr,
                rule,
            }),
            _ => Ok(()),
        }
    }
}

/// DNS through `getaddrinfo`, dropping the addresses the guard refuses. When all are refused,
/// the first refusal is the error.
#[derive(Clone)]
pub struct GuardedResolver {
    inner: GaiResolver,
    guard: Arc<Guard>,
}

impl Service<Name> for GuardedResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = BoxError;
    type Future = BoxFuture<Self::Response>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let host = name.as_str().to_owned();
        let guard = Arc::clone(&self.guard);
        let lookup = self.inner.call(name);
        Box::pin(async move {
            let mut refused = None;
            let kept: Vec<SocketAddr> = lookup
                .await?
                .filter(|a| match guard.check(&host, a.ip()) {
                    Ok(()) => true,
                    Err(r) => {
                        refused.get_or_insert(r);
                        false
                    }
                })
                .collect();
            match refused {
                Some(r) if kept.is_empty() => Err(Box::new(r) as BoxError),
                _ => Ok(kept.into_iter()),
            }
        })
    }
}

/// hyper-util's TCP connector with the guard on both sides of the connect: IP-literal hosts
/// are checked before dialling, names through [`GuardedResolver`], and every socket's peer
/// address once connected.
#[derive(Clone)]
pub struct GuardedConnector {
    inner: HttpConnector<GuardedResolver>,
    guard: Arc<Guard>,
}

impl GuardedConnector {
    /// A connector enforcing `guard`; configure the TCP side through [`Self::tcp`].
    pub fn new(guard: Arc<Guard>) -> Self {
        let resolver = GuardedResolver {
            inner: GaiResolver::new(),
            guard: Arc::clone(&guard),
        };
        Self {
            inner: HttpConnector::new_with_resolver(resolver),
            guard,
        }
    }

    /// The TCP connector, for timeouts and socket options.
    pub fn tcp(&mut self) -> &mut HttpConnector<GuardedResolver> {
        &mut self.inner
    }
}

impl Service<Uri> for GuardedConnector {
    type Response = TokioIo<TcpStream>;
    type Error = BoxError;
    type Future = BoxFuture<Self::Response>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let host = uri
            .host()
            .unwrap_or("")
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let guard = Arc::clone(&self.guard);
        if let Ok(ip) = host.parse::<IpAddr>() {
            if let Err(r) = guard.check(&host, ip) {
                return Box::pin(async move { Err(Box::new(r) as BoxError) });
            }
        }
        let connecting = self.inner.call(uri);
        Box::pin(async move {
            let io = connecting.await?;
            if guard.enabled {
                let peer = io.inner().peer_addr()?;
                guard.check(&host, peer.ip())?;
            }
            Ok(io)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(s: &str) -> Option<Rule> {
        classify(s.parse().unwrap())
    }

    #[test]
    fn every_range_is_classified() {
        use Rule::*;
        let table: &[(&str, Option<Rule>)] = &[
            ("0.0.0.0", Some(Unspecified)),
            ("0.1.2.3", Some(Unspecified)),
            ("127.0.0.1", Some(Loopback)),
            ("127.255.255.254", Some(Loopback)),
            ("10.0.0.1", Some(Private)),
            ("10.255.255.255", Some(Private)),
            ("172.15.255.255", None),
            ("172.16.0.1", Some(Private)),
            ("172.31.255.255", Some(Private)),
            ("172.32.0.0", None),
            ("192.168.1.1", Some(Private)),
            ("192.169.0.1", None),
            ("169.254.0.1", Some(LinkLocal)),
            ("169.254.169.254", Some(Metadata)),
            ("169.254.170.2", Some(Metadata)),
            ("100.100.100.200", Some(Metadata)),
            ("100.63.255.255", None),
            ("100.64.0.0", Some(Cgnat)),
            ("100.127.255.255", Some(Cgnat)),
            ("100.128.0.0", None),
            ("224.0.0.1", Some(Multicast)),
            ("239.255.255.250", Some(Multicast)),
            ("240.0.0.1", Some(Reserved)),
            ("255.255.255.255", Some(Reserved)),
            ("192.0.0.8", Some(Reserved)),
            ("192.0.2.1", Some(Reserved)),
            ("198.18.0.1", Some(Reserved)),
            ("198.19.255.255", Some(Reserved)),
            ("198.20.0.0", None),
            ("198.51.100.7", Some(Reserved)),
            ("203.0.113.9", Some(Reserved)),
            ("8.8.8.8", None),
            ("1.1.1.1", None),
            ("93.184.216.34", None),
            ("::", Some(Unspecified)),
            ("::1", Some(Loopback)),
            ("fe80::1", Some(LinkLocal)),
            ("febf::1", Some(LinkLocal)),
            ("fec0::1", Some(UniqueLocal)),
            ("fc00::1", Some(UniqueLocal)),
            ("fdff:ffff::1", Some(UniqueLocal)),
            ("fd00:ec2::254", Some(Metadata)),
            ("ff02::1", Some(Multicast)),
            ("ff0e::1", Some(Multicast)),
            ("2001:db8::1", Some(Reserved)),
            ("100::1", Some(Reserved)),
            ("64:ff9b:1::1", Some(Reserved)),
            ("2606:4700:4700::1111", None),
            ("2001:4860:4860::8888", None),
        ];
        for (ip, want) in table {
            assert_eq!(rule(ip), *want, "{ip}");
        }
    }

    #[test]
    fn ipv4_inside_ipv6_is_judged_by_the_ipv4_address() {
        use Rule::*;
        for (ip, want) in [
            ("::ffff:127.0.0.1", Some(Loopback)),
            ("::ffff:7f00:1", Some(Loopback)),
            ("::ffff:10.1.2.3", Some(Private)),
            ("::ffff:169.254.169.254", Some(Metadata)),
            ("::ffff:100.64.1.1", Some(Cgnat)),
            ("::ffff:0.0.0.0", Some(Unspecified)),
            ("::ffff:8.8.8.8", None),
            ("::127.0.0.1", Some(Loopback)),
            ("::192.168.0.1", Some(Private)),
            ("64:ff9b::10.0.0.1", Some(Private)),
            ("64:ff9b::169.254.169.254", Some(Metadata)),
            ("64:ff9b::8.8.8.8", None),
            ("2002:7f00:1::1", Some(Loopback)),
            ("2002:a9fe:a9fe::", Some(Metadata)),
            ("2002:0808:0808::1", None),
            // Teredo: client 127.0.0.1 is stored inverted as 80ff:fffe.
            ("2001:0:4136:e378:8000:63bf:80ff:fffe", Some(Loopback)),
            ("2001:0:4136:e378:8000:63bf:f7f7:f7f7", None),
        ] {
            assert_eq!(rule(ip), want, "{ip}");
        }
    }

    #[test]
    fn allowances_by_cidr_and_host() {
        let guard = Guard {
            enabled: true,
            allow_cidrs: vec!["10.1.0.0/16".parse().unwrap(), "::1".parse().unwrap()],
            allow_hosts: vec!["hooks.internal".into(), "*.svc.cluster".into()],
        };
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(guard.check("x", ip("10.1.200.3")).is_ok());
        assert!(guard.check("x", ip("::ffff:10.1.200.3")).is_ok());
        let r = guard.check("x", ip("10.2.0.1")).unwrap_err();
        assert_eq!((r.addr, r.rule), (ip("10.2.0.1"), Rule::Private));
        assert!(r.to_string().contains("10.2.0.1") && r.to_string().contains("private"));
        assert!(guard.check("x", ip("::1")).is_ok());
        assert!(guard.check("x", ip("127.0.0.1")).is_err());
        assert!(guard.check("HOOKS.internal", ip("127.0.0.1")).is_ok());
        assert!(guard.check("a.b.svc.cluster", ip("127.0.0.1")).is_ok());
        assert!(guard.check("svc.cluster", ip("127.0.0.1")).is_err());
        assert!(guard.check("evilsvc.cluster", ip("127.0.0.1")).is_err());
        assert!(guard.check("x", ip("8.8.8.8")).is_ok());
        assert!(Guard::off().check("x", ip("127.0.0.1")).is_ok());
    }

    #[test]
    fn cidr_parsing() {
        assert_eq!(
            "10.0.0.0/8".parse::<Cidr>().unwrap().to_string(),
            "10.0.0.0/8"
        );
        assert_eq!("::1".parse::<Cidr>().unwrap().to_string(), "::1/128");
        assert!("0.0.0.0/0"
            .parse::<Cidr>()
            .unwrap()
            .contains("1.2.3.4".parse().unwrap()));
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("example.com".parse::<Cidr>().is_err());
        let v6: Cidr = "fd00::/8".parse().unwrap();
        assert!(v6.contains("fd12::1".parse().unwrap()));
        assert!(!v6.contains("10.0.0.1".parse().unwrap()));
    }
}
