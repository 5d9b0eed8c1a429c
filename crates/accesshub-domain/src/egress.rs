//! Where vendor traffic may go. A connection's URL carries its secret (OAuth client secret,
//! SOAP password) and, for whoever can edit it, points our workers at any host: without a
//! policy an operator token is enough to exfiltrate secrets or probe the cluster (SSRF).
//!
//! The rule: `https` to a public address, unless the deployment's allow-list
//! (`ACCESSHUB_EGRESS_ALLOW`) says otherwise. Private, loopback, link-local (cloud metadata
//! 169.254.169.254), CGNAT, unspecified, multicast and reserved addresses are refused unless an
//! entry names them. The same policy is checked when a connection is validated (its URL) and
//! when a worker connects (every address a host name resolves to, against DNS rebinding).
//!
//! Allow-list syntax: comma-separated `SCHEME://HOST[:PORT]` entries.
//! - `SCHEME`: `http`, `https` or `*`.
//! - `HOST`: a DNS name (`sim.local`), `*.suffix` (any name below `suffix`), `*` (any host), an
//!   IPv4 address, a bracketed IPv6 address (`[::1]`), or a CIDR block (`10.0.0.0/8`,
//!   `[fd00::/8]`).
//! - `PORT`: a number or `*`; omitted means the scheme's default port (443 / 80), or any port
//!   for scheme `*`.
//!
//! Example: `http://127.0.0.1:*,https://*.sim.local`. Empty means strict.

use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    str::FromStr,
};

/// One allow-list entry is malformed; names the entry so the operator can fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("egress allow-list entry {entry:?}: {problem}")]
pub struct EgressParseError {
    /// The offending entry.
    pub entry: String,
    /// What is wrong with it.
    pub problem: String,
}

/// A target the policy refuses; the message says what would allow it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EgressDenied {
    /// Not `https`, and no entry allows the scheme for this host.
    #[error(
        "must use https (scheme {scheme:?} to {host} is not in the deployment's egress allow-list ACCESSHUB_EGRESS_ALLOW)"
    )]
    Scheme {
        /// The URL's scheme.
        scheme: String,
        /// The URL's host.
        host: String,
    },
    /// The host is (or resolves to) a non-public address no entry allows.
    #[error(
        "{host} is a {kind} address ({addr}): refused unless the deployment's egress allow-list ACCESSHUB_EGRESS_ALLOW permits it"
    )]
    Address {
        /// The URL's host.
        host: String,
        /// The address.
        addr: IpAddr,
        /// Which kind of non-public address.
        kind: &'static str,
    },
    /// A name that always means this machine (`localhost`).
    #[error(
        "{host} is this machine: refused unless the deployment's egress allow-list ACCESSHUB_EGRESS_ALLOW permits it"
    )]
    Local {
        /// The host name.
        host: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    Any,
    Name(String),
    Suffix(String),
    Net { addr: IpAddr, prefix: u8 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum PortPattern {
    Any,
    Default,
    Port(u16),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    /// `None` = any scheme.
    scheme: Option<String>,
    host: HostPattern,
    port: PortPattern,
    text: String,
}

/// The deployment's egress policy (see the module documentation). `Default` is strict.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct EgressPolicy {
    entries: Vec<Entry>,
}

impl fmt::Debug for EgressPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EgressPolicy({self})")
    }
}

impl fmt::Display for EgressPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.entries.is_empty() {
            return f.write_str("strict");
        }
        let texts: Vec<&str> = self.entries.iter().map(|e| e.text.as_str()).collect();
        f.write_str(&texts.join(","))
    }
}

impl FromStr for EgressPolicy {
    type Err = EgressParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let entries = s
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(parse_entry)
            .collect::<Result<_, _>>()?;
        Ok(EgressPolicy { entries })
    }
}

fn parse_entry(text: &str) -> Result<Entry, EgressParseError> {
    let bad = |problem: &str| EgressParseError {
        entry: text.to_owned(),
        problem: problem.to_owned(),
    };
    let (scheme, rest) = text
        .split_once("://")
        .ok_or_else(|| bad("expected SCHEME://HOST[:PORT], e.g. http://127.0.0.1:*"))?;
    let scheme = match scheme.to_ascii_lowercase().as_str() {
        "*" => None,
        s @ ("http" | "https") => Some(s.to_owned()),
        _ => return Err(bad("scheme must be http, https or *")),
    };
    if rest.contains(['?', '#', '@']) {
        return Err(bad("only SCHEME://HOST[:PORT]: no user, path or query"));
    }
    // Bracketed IPv6 (with an optional prefix inside), then an optional `:port`.
    let (host, port) = if let Some(after) = rest.strip_prefix('[') {
        let (inside, tail) = after
            .split_once(']')
            .ok_or_else(|| bad("unclosed '[' in the host"))?;
        let port = match tail {
            "" => None,
            t => Some(
                t.strip_prefix(':')
                    .ok_or_else(|| bad("expected ':PORT' after ']'"))?,
            ),
        };
        (format!("[{inside}]"), port)
    } else {
        match rest.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), Some(p)),
            None => (rest.to_owned(), None),
        }
    };
    let port = match port {
        None => PortPattern::Default,
        Some("*") => PortPattern::Any,
        Some(p) => PortPattern::Port(
            p.parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| bad("port must be 1-65535 or *"))?,
        ),
    };
    let host = parse_host_pattern(&host).map_err(|p| bad(&p))?;
    Ok(Entry {
        scheme,
        host,
        port,
        text: text.to_owned(),
    })
}

fn parse_host_pattern(h: &str) -> Result<HostPattern, String> {
    if h == "*" {
        return Ok(HostPattern::Any);
    }
    let inner = h
        .strip_prefix('[')
        .and_then(|x| x.strip_suffix(']'))
        .unwrap_or(h);
    if let Some((a, p)) = inner.split_once('/') {
        let addr: IpAddr = a
            .parse()
            .map_err(|_| format!("{a:?} is not an IP address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = p
            .parse::<u8>()
            .ok()
            .filter(|p| *p <= max)
            .ok_or_else(|| format!("prefix length must be 0-{max}"))?;
        return Ok(HostPattern::Net { addr, prefix });
    }
    if let Ok(addr) = inner.parse::<IpAddr>() {
        let prefix = if addr.is_ipv4() { 32 } else { 128 };
        return Ok(HostPattern::Net { addr, prefix });
    }
    if h.starts_with('[') {
        return Err(format!("{h:?} is not an IPv6 address"));
    }
    let (suffix, name) = match h.strip_prefix("*.") {
        Some(s) => (true, s),
        None => (false, h),
    };
    let valid = !name.is_empty()
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if !valid {
        return Err(format!(
            "{h:?} is not a host name, *.suffix, *, IP address or CIDR block"
        ));
    }
    let name = name.to_ascii_lowercase();
    Ok(if suffix {
        HostPattern::Suffix(name)
    } else {
        HostPattern::Name(name)
    })
}

/// A URL's host as the policy sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Host<'a> {
    /// A DNS name (lower-case, no trailing dot).
    Name(&'a str),
    /// An IP literal.
    Ip(IpAddr),
}

impl fmt::Display for Host<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Name(n) => f.write_str(n),
            Host::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

impl Host<'_> {
    fn matches(&self, p: &HostPattern) -> bool {
        match (p, self) {
            (HostPattern::Any, _) => true,
            (HostPattern::Name(n), Host::Name(h)) => h.eq_ignore_ascii_case(n),
            (HostPattern::Suffix(s), Host::Name(h)) => {
                let h = h.to_ascii_lowercase();
                h.len() > s.len() + 1 && h.ends_with(s.as_str()) && {
                    let dot = h.len() - s.len() - 1;
                    h.as_bytes()[dot] == b'.'
                }
            }
            (HostPattern::Net { addr, prefix }, Host::Ip(ip)) => in_net(*ip, *addr, *prefix),
            _ => false,
        }
    }
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "https" => Some(443),
        "http" => Some(80),
        _ => None,
    }
}

impl EgressPolicy {
    /// No exceptions: https to public addresses only (production).
    pub fn strict() -> Self {
        EgressPolicy::default()
    }

    /// Plain http to loopback on any port: the vendor simulators in tests and `make dev`.
    pub fn loopback_http() -> Self {
        let http = |host: HostPattern, text: &str| Entry {
            scheme: Some("http".to_owned()),
            host,
            port: PortPattern::Any,
            text: text.to_owned(),
        };
        EgressPolicy {
            entries: vec![
                http(
                    HostPattern::Net {
                        addr: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 0)),
                        prefix: 8,
                    },
                    "http://127.0.0.0/8:*",
                ),
                http(
                    HostPattern::Net {
                        addr: IpAddr::V6(Ipv6Addr::LOCALHOST),
                        prefix: 128,
                    },
                    "http://[::1]:*",
                ),
                http(
                    HostPattern::Name("localhost".to_owned()),
                    "http://localhost:*",
                ),
            ],
        }
    }

    /// Whether no entry is configured.
    pub fn is_strict(&self) -> bool {
        self.entries.is_empty()
    }

    fn entry_for(&self, scheme: &str, host: Host<'_>, port: Option<u16>) -> bool {
        self.entries.iter().any(|e| {
            e.scheme.as_deref().is_none_or(|s| s == scheme)
                && host.matches(&e.host)
                && match e.port {
                    PortPattern::Any => true,
                    PortPattern::Default => {
                        e.scheme.is_none() || port.or(default_port(scheme)) == default_port(scheme)
                    }
                    PortPattern::Port(p) => port.or(default_port(scheme)) == Some(p),
                }
        })
    }

    /// Checks a URL's scheme, host and port (`None` = the scheme's default) before it is
    /// stored or called. A host name is checked for what it is, not what it resolves to: that
    /// is [`EgressPolicy::check_resolved`]'s job at connect time.
    pub fn check_target(
        &self,
        scheme: &str,
        host: Host<'_>,
        port: Option<u16>,
    ) -> Result<(), EgressDenied> {
        let scheme = scheme.to_ascii_lowercase();
        if self.entry_for(&scheme, host, port) {
            return Ok(());
        }
        if scheme != "https" {
            return Err(EgressDenied::Scheme {
                scheme,
                host: host.to_string(),
            });
        }
        match host {
            Host::Ip(ip) => match non_public(ip) {
                Some(kind) => Err(EgressDenied::Address {
                    host: ip.to_string(),
                    addr: ip,
                    kind,
                }),
                None => Ok(()),
            },
            Host::Name(n) => {
                let n = n.trim_end_matches('.').to_ascii_lowercase();
                if n == "localhost" || n.ends_with(".localhost") {
                    Err(EgressDenied::Local { host: n })
                } else {
                    Ok(())
                }
            }
        }
    }

    /// Checks one address `host` resolved to, at connect time: a non-public address must be
    /// allowed by an entry naming `host` or the address (scheme and port were checked with
    /// the URL).
    pub fn check_resolved(&self, host: &str, addr: IpAddr) -> Result<(), EgressDenied> {
        let Some(kind) = non_public(addr) else {
            return Ok(());
        };
        let by_name = Host::Name(host.trim_end_matches('.'));
        let by_addr = Host::Ip(addr);
        if self
            .entries
            .iter()
            .any(|e| by_name.matches(&e.host) || by_addr.matches(&e.host))
        {
            return Ok(());
        }
        Err(EgressDenied::Address {
            host: host.to_owned(),
            addr,
            kind,
        })
    }
}

fn in_net(ip: IpAddr, net: IpAddr, prefix: u8) -> bool {
    match (canonical(ip), canonical(net)) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// IPv4-mapped IPv6 (`::ffff:10.0.0.1`) is the IPv4 address it carries.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => ip,
        },
        v4 => v4,
    }
}

/// What kind of non-public address `ip` is, or `None` for a public one.
pub fn non_public(ip: IpAddr) -> Option<&'static str> {
    match canonical(ip) {
        IpAddr::V4(v4) => non_public_v4(v4),
        IpAddr::V6(v6) => non_public_v6(v6),
    }
}

fn non_public_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        (0, _, _) => "unspecified",
        (127, _, _) => "loopback",
        (10, _, _) | (192, 168, _) => "private",
        (172, b, _) if (16..32).contains(&b) => "private",
        (169, 254, _) => "link-local (cloud metadata)",
        (100, b, _) if (64..128).contains(&b) => "shared (CGNAT)",
        (192, 0, 0) => "IETF protocol assignment",
        (198, 18..=19, _) => "benchmarking",
        (224..=239, _, _) => "multicast",
        (240..=255, _, _) => "reserved",
        _ => return None,
    })
}

fn non_public_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let seg = ip.segments();
    Some(if ip.is_unspecified() {
        "unspecified"
    } else if ip.is_loopback() {
        "loopback"
    } else if seg[0] & 0xfe00 == 0xfc00 {
        "private (unique local)"
    } else if seg[0] & 0xffc0 == 0xfe80 {
        "link-local"
    } else if seg[0] & 0xff00 == 0xff00 {
        "multicast"
    } else if seg[0] == 0x64 && seg[1] == 0xff9b {
        // NAT64: judge the IPv4 address it embeds.
        let v4 = Ipv4Addr::new(
            (seg[6] >> 8) as u8,
            seg[6] as u8,
            (seg[7] >> 8) as u8,
            seg[7] as u8,
        );
        return non_public_v4(v4);
    } else {
        return None;
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn ip(s: &str) -> Host<'static> {
        Host::Ip(s.parse().unwrap())
    }

    #[test]
    fn strict_wants_https_to_public_addresses() {
        let p = EgressPolicy::strict();
        assert!(
            p.check_target("https", Host::Name("api.cloudpass.example"), None)
                .is_ok()
        );
        assert!(p.check_target("https", ip("93.184.216.34"), None).is_ok());
        assert!(matches!(
            p.check_target("http", Host::Name("api.cloudpass.example"), None),
            Err(EgressDenied::Scheme { .. })
        ));
        for bad in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "::ffff:169.254.169.254",
            "64:ff9b::a00:1",
            "224.0.0.1",
        ] {
            assert!(
                matches!(
                    p.check_target("https", ip(bad), None),
                    Err(EgressDenied::Address { .. })
                ),
                "{bad}"
            );
        }
        assert!(p.check_target("https", ip("172.32.0.1"), None).is_ok());
        assert!(matches!(
            p.check_target("https", Host::Name("LocalHost"), None),
            Err(EgressDenied::Local { .. })
        ));
        let msg = p
            .check_target("https", ip("169.254.169.254"), None)
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("link-local") && msg.contains("ACCESSHUB_EGRESS_ALLOW"),
            "{msg}"
        );
    }

    #[test]
    fn allow_list_entries() {
        let p: EgressPolicy =
            "http://127.0.0.1:*, https://*.sim.local, https://10.0.0.0/8:8443, *://[fd00::/8]"
                .parse()
                .unwrap();
        assert!(p.check_target("http", ip("127.0.0.1"), Some(9000)).is_ok());
        assert!(p.check_target("http", ip("127.0.0.2"), Some(9000)).is_err());
        assert!(
            p.check_target("https", ip("127.0.0.1"), Some(9000))
                .is_err(),
            "the entry allows http only"
        );
        assert!(
            p.check_target("https", Host::Name("cp.sim.local"), None)
                .is_ok()
        );
        assert!(
            p.check_target("http", Host::Name("cp.sim.local"), None)
                .is_err()
        );
        assert!(p.check_target("https", ip("10.9.9.9"), Some(8443)).is_ok());
        assert!(
            p.check_target("https", ip("10.9.9.9"), None).is_err(),
            "port 443 is not 8443"
        );
        assert!(p.check_target("http", ip("fd00::5"), Some(1)).is_ok());
        // Resolution: names and addresses the list names may be private.
        assert!(
            p.check_resolved("cp.sim.local", "10.0.0.7".parse().unwrap())
                .is_ok()
        );
        assert!(
            p.check_resolved("evil.example", "10.0.0.7".parse().unwrap())
                .is_ok(),
            "10.0.0.0/8 is allowed by address"
        );
        assert!(
            p.check_resolved("evil.example", "169.254.169.254".parse().unwrap())
                .is_err()
        );
        assert!(
            p.check_resolved("evil.example", "93.184.216.34".parse().unwrap())
                .is_ok()
        );
        assert!(
            p.check_resolved("sim.local", "10.0.0.7".parse().unwrap())
                .is_ok()
        );
        assert_eq!(
            p.to_string(),
            "http://127.0.0.1:*,https://*.sim.local,https://10.0.0.0/8:8443,*://[fd00::/8]"
        );
    }

    #[test]
    fn suffix_needs_a_label_boundary() {
        let p: EgressPolicy = "https://*.sim.local".parse().unwrap();
        assert!(
            p.check_resolved("evilsim.local", "10.0.0.1".parse().unwrap())
                .is_err()
        );
        assert!(
            p.check_resolved("sim.local", "10.0.0.1".parse().unwrap())
                .is_err()
        );
        assert!(
            p.check_resolved("a.b.sim.local", "10.0.0.1".parse().unwrap())
                .is_ok()
        );
    }

    #[test]
    fn parse_errors_name_the_entry() {
        for bad in [
            "127.0.0.1",
            "ftp://x",
            "http://x:0",
            "http://x:abc",
            "http://10.0.0.0/33",
            "http://[::1",
            "http://a/b?c",
            "http://user@host",
            "http://bad_host",
        ] {
            let e = bad.parse::<EgressPolicy>().unwrap_err();
            assert_eq!(e.entry, bad, "{e}");
        }
        assert!("".parse::<EgressPolicy>().unwrap().is_strict());
        assert!(" , ".parse::<EgressPolicy>().unwrap().is_strict());
    }

    #[test]
    fn loopback_http_allows_the_simulators_only() {
        let p = EgressPolicy::loopback_http();
        assert!(p.check_target("http", ip("127.0.0.1"), Some(4711)).is_ok());
        assert!(
            p.check_target("http", Host::Name("localhost"), Some(1))
                .is_ok()
        );
        assert!(p.check_target("http", ip("10.0.0.1"), Some(80)).is_err());
        assert!(
            p.check_resolved("x", "169.254.169.254".parse().unwrap())
                .is_err()
        );
    }
}
