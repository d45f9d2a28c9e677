//! Outbound request guard: which hosts may be contacted and which addresses they may resolve to.
//!
//! Three places enforce it, because each sees something the others do not:
//! - [`Guard::check_url`] before every request and every redirect hop (scheme, host patterns, and
//!   IP-literal hosts, which never reach a DNS resolver);
//! - [`FilteringResolver`], reqwest's DNS resolver: every address a name resolves to is checked
//!   *after* resolution, so a DNS name pointing at 169.254.169.254 or 127.0.0.1 is refused;
//! - the redirect policy (built in `http.rs`) calls `check_url` on each hop.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use glob::Pattern;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::Url;

use crate::config::RegistryConfig;
use crate::error::{Error, Refusal, Result};

/// An exact `host[:port]` entry (insecureRegistries, wildcard-free allowHosts). Without a port
/// it stands for the scheme's default port only.
#[derive(Debug, Clone, PartialEq, Eq)]
struct HostPort {
    /// Lowercase, as `Url::host_str` gives it (IPv6 in brackets).
    host: String,
    port: Option<u16>,
}

impl HostPort {
    fn parse(s: &str) -> Option<HostPort> {
        let s = s.to_ascii_lowercase();
        if !vulngate_core::image::is_valid_registry_host(&s) {
            return None;
        }
        let (host, port) = match s.strip_prefix('[') {
            Some(rest) => {
                let (v6, after) = rest.split_once(']')?;
                (format!("[{v6}]"), after.strip_prefix(':'))
            }
            None => match s.split_once(':') {
                Some((h, p)) => (h.to_string(), Some(p)),
                None => (s.clone(), None),
            },
        };
        let port = match port {
            Some(p) => Some(p.parse().ok()?),
            None => None,
        };
        Some(HostPort { host, port })
    }

    /// Whether a URL's `host` and explicit `port` (`None`: the scheme's `default`) are this one.
    fn matches(&self, host: &str, port: Option<u16>, default: Option<u16>) -> bool {
        self.host == host
            && match (self.port, port) {
                (None, None) => true,
                (Some(a), Some(b)) => a == b,
                (Some(a), None) => Some(a) == default,
                (None, Some(b)) => Some(b) == default,
            }
    }
}

fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// The `host`, explicit `port` and the scheme's default port of a URL (lowercase host).
fn url_parts(url: &Url) -> (String, Option<u16>, Option<u16>) {
    let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
    let default = match url.scheme() {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    };
    (host, url.port(), default)
}

fn display(host: &str, port: Option<u16>) -> String {
    match port {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    }
}

#[derive(Debug)]
pub(crate) struct Guard {
    allow: Vec<Pattern>,
    deny: Vec<Pattern>,
    /// Registries reached over plain HTTP: exactly this host and port.
    insecure: Vec<HostPort>,
    /// Entries (exact insecure or allow entries) whose host may be a loopback address, on
    /// exactly their port.
    loopback_ok: Vec<HostPort>,
}

impl Guard {
    pub fn new(cfg: &RegistryConfig) -> Result<Guard> {
        let pats = |v: &[String]| -> Result<Vec<Pattern>> {
            v.iter()
                .map(|p| {
                    Pattern::new(&p.to_ascii_lowercase())
                        .map_err(|e| Error::Config(format!("host pattern {p:?}: {e}")))
                })
                .collect()
        };
        let insecure = cfg
            .insecure_registries
            .iter()
            .map(|h| {
                HostPort::parse(h).ok_or_else(|| {
                    Error::Config(format!(
                        "insecureRegistries: {h:?} is not a registry HOST or HOST:PORT (no scheme, path or wildcard)"
                    ))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let loopback_ok = insecure
            .iter()
            .cloned()
            .chain(
                cfg.allow_hosts
                    .iter()
                    .filter(|h| !h.contains(['*', '?', '[']))
                    .filter_map(|h| HostPort::parse(h)),
            )
            .collect();
        Ok(Guard {
            allow: pats(&cfg.allow_hosts)?,
            deny: pats(&cfg.deny_hosts)?,
            insecure,
            loopback_ok,
        })
    }

    /// Whether the registry `host[:port]` (as in an image reference) is reached over plain HTTP:
    /// exactly this host and port are listed in insecureRegistries.
    pub fn is_insecure(&self, host_port: &str) -> bool {
        match HostPort::parse(host_port) {
            Some(hp) => self
                .insecure
                .iter()
                .any(|e| e.matches(&hp.host, hp.port, Some(80))),
            None => false,
        }
    }

    fn insecure_url(&self, host: &str, port: Option<u16>, default: Option<u16>) -> bool {
        self.insecure.iter().any(|e| e.matches(host, port, default))
    }

    /// Host patterns: deny first (a pattern matching the bare host or `host:port` denies), then
    /// the allow list (if any), where host and port must both match: a pattern without a port
    /// allows only the scheme's default port, `host:5000` only port 5000.
    fn check_host(&self, host: &str, port: Option<u16>, default: Option<u16>) -> Result<()> {
        let shown = display(host, port);
        let mut candidates = vec![shown.clone()];
        if port.is_none() {
            if let Some(d) = default {
                candidates.push(format!("{host}:{d}"));
            }
        }
        let hit = |p: &Pattern| candidates.iter().any(|c| p.matches(c));
        if self.deny.iter().any(|p| hit(p) || p.matches(host)) {
            return Err(Error::HostNotAllowed {
                host: shown,
                reason: "matches a denyHosts pattern".into(),
                refusal: Refusal::Policy,
            });
        }
        if !self.allow.is_empty()
            && !self.allow.iter().any(hit)
            && !self.insecure_url(host, port, default)
        {
            return Err(Error::HostNotAllowed {
                host: shown,
                reason: "matches no allowHosts pattern (host and port must both match)".into(),
                refusal: Refusal::Policy,
            });
        }
        Ok(())
    }

    /// Checks a URL before it is requested (also each redirect target and token realm): scheme,
    /// host patterns, and for hosts that may be loopback, the exact host and port.
    pub fn check_url(&self, url: &Url) -> Result<()> {
        let (host, port, default) = url_parts(url);
        let shown = display(&host, port);
        match url.scheme() {
            "https" => {}
            "http" if self.insecure_url(&host, port, default) => {}
            s => {
                return Err(Error::HostNotAllowed {
                    host: shown,
                    reason: format!(
                        "scheme {s} not allowed (plain HTTP only for insecureRegistries, host and port exactly)"
                    ),
                    refusal: Refusal::NeedsInsecure,
                })
            }
        }
        self.check_host(&host, port, default)?;
        let exact = self
            .loopback_ok
            .iter()
            .any(|e| e.matches(&host, port, default));
        let literal = host.trim_start_matches('[').trim_end_matches(']');
        let ip = literal.parse::<IpAddr>().ok();
        // A name on the list may resolve to loopback (the resolver cannot see the port), so only
        // its listed port may be contacted; a loopback literal likewise.
        let may_be_loopback = ip.is_none_or(is_loopback);
        if !exact && may_be_loopback && self.loopback_ok.iter().any(|e| e.host == host) {
            let listed: Vec<String> = self
                .loopback_ok
                .iter()
                .filter(|e| e.host == host)
                .map(|e| display(&e.host, e.port))
                .collect();
            return Err(Error::HostNotAllowed {
                host: shown,
                reason: format!(
                    "only {} of this host is listed (host and port must both match)",
                    listed.join(", ")
                ),
                refusal: Refusal::NeedsInsecure,
            });
        }
        if let Some(ip) = ip {
            self.check_addr(&shown, ip, exact)?;
        }
        Ok(())
    }

    /// An address a DNS name resolved to (the port is not known here: [`Guard::check_url`]
    /// checked it before the request).
    pub fn check_ip(&self, host: &str, ip: IpAddr) -> Result<()> {
        let h = host.to_ascii_lowercase();
        let listed = self.loopback_ok.iter().any(|e| e.host == h);
        self.check_addr(host, ip, listed)
    }

    /// Addresses never contacted, whatever the name: link-local (cloud metadata lives there),
    /// known metadata addresses, unspecified, multicast, broadcast; loopback unless the host is
    /// explicitly listed.
    fn check_addr(&self, host: &str, ip: IpAddr, loopback_listed: bool) -> Result<()> {
        let refuse_as = |reason: &str, refusal: Refusal| {
            Err(Error::AddressRefused {
                host: host.to_string(),
                reason: format!("{ip} is {reason}"),
                refusal,
            })
        };
        let refuse = |reason: &str| refuse_as(reason, Refusal::Never);
        let ip = match ip {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6(v6),
            },
            v4 => v4,
        };
        match ip {
            IpAddr::V4(v4) => {
                if v4 == Ipv4Addr::new(169, 254, 169, 254)
                    || v4 == Ipv4Addr::new(100, 100, 100, 200)
                    || v4 == Ipv4Addr::new(168, 63, 129, 16)
                {
                    return refuse("a cloud metadata address");
                }
                if v4.is_link_local() {
                    return refuse("link-local");
                }
                if v4.is_unspecified() || v4.is_broadcast() || v4.is_multicast() {
                    return refuse("not a unicast address");
                }
                if v4.is_loopback() && !loopback_listed {
                    return refuse_as(
                        "loopback (list this host:port in insecureRegistries or allowHosts)",
                        Refusal::NeedsInsecure,
                    );
                }
            }
            IpAddr::V6(v6) => {
                let seg = v6.segments();
                if seg[0] == 0xfd00 && seg[1] == 0x0ec2 {
                    return refuse("a cloud metadata address");
                }
                if (seg[0] & 0xffc0) == 0xfe80 {
                    return refuse("link-local");
                }
                if v6.is_unspecified() || v6.is_multicast() {
                    return refuse("not a unicast address");
                }
                if v6 == Ipv6Addr::LOCALHOST && !loopback_listed {
                    return refuse_as(
                        "loopback (list this host:port in insecureRegistries or allowHosts)",
                        Refusal::NeedsInsecure,
                    );
                }
            }
        }
        Ok(())
    }
}

/// reqwest DNS resolver that drops refused addresses after resolution (and fails when none is
/// left), so a name can't be used to reach metadata or loopback endpoints.
#[derive(Debug)]
pub(crate) struct FilteringResolver(pub Arc<Guard>);

impl Resolve for FilteringResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let guard = self.0.clone();
        Box::pin(async move {
            let host = name.as_str().to_string();
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let mut refused = None;
            let ok: Vec<SocketAddr> = addrs
                .into_iter()
                .filter(|a| match guard.check_ip(&host, a.ip()) {
                    Ok(()) => true,
                    Err(e) => {
                        refused = Some(e);
                        false
                    }
                })
                .collect();
            if ok.is_empty() {
                let e: Box<dyn std::error::Error + Send + Sync> = match refused {
                    Some(e) => Box::new(e),
                    None => format!("{host}: no address").into(),
                };
                return Err(e);
            }
            Ok(Box::new(ok.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(y: &str) -> Guard {
        Guard::new(&serde_yaml_ng::from_str(y).expect("config")).expect("guard")
    }

    #[test]
    fn host_patterns_and_addresses() {
        let g = guard("insecureRegistries: ['127.0.0.1:5000']\nallowHosts: ['*.azurecr.io', 'localhost']\ndenyHosts: ['bad.azurecr.io']");
        let u = |s: &str| Url::parse(s).expect("url");
        assert!(g.check_url(&u("https://a.azurecr.io/v2/")).is_ok());
        assert!(g.check_url(&u("https://bad.azurecr.io/v2/")).is_err());
        assert!(g.check_url(&u("https://ghcr.io/v2/")).is_err());
        assert!(g.check_url(&u("http://127.0.0.1:5000/v2/")).is_ok());
        assert!(
            g.check_url(&u("http://a.azurecr.io/v2/")).is_err(),
            "plain http"
        );
        assert!(g.check_url(&u("https://169.254.169.254/latest")).is_err());
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        assert!(g.check_ip("a.azurecr.io", ip("169.254.169.254")).is_err());
        assert!(g.check_ip("a.azurecr.io", ip("127.0.0.1")).is_err());
        assert!(g.check_ip("localhost", ip("127.0.0.1")).is_ok());
        assert!(g
            .check_ip("a.azurecr.io", ip("::ffff:169.254.169.254"))
            .is_err());
        assert!(g.check_ip("a.azurecr.io", ip("fe80::1")).is_err());
        assert!(g.check_ip("a.azurecr.io", ip("fd00:ec2::254")).is_err());
        assert!(g.check_ip("a.azurecr.io", ip("10.1.2.3")).is_ok());
    }

    /// Callers act on the kind of a refusal (the CLI's `--insecure-registry` hint), never on
    /// its message.
    #[test]
    fn refusals_say_what_would_allow_them() {
        use crate::error::ErrorKind;
        let g = guard("insecureRegistries: ['localhost:5001']\ndenyHosts: ['bad.example.com']");
        let u = |s: &str| Url::parse(s).expect("url");
        let kind = |url: &str| g.check_url(&u(url)).expect_err(url).kind();
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        let needs = ErrorKind::Refused(Refusal::NeedsInsecure);
        assert_eq!(kind("http://registry.example.com/v2/"), needs, "plain HTTP");
        assert_eq!(kind("https://127.0.0.1:5000/v2/"), needs, "loopback");
        assert_eq!(kind("https://localhost:6000/v2/"), needs, "another port");
        assert_eq!(
            g.check_ip("a.example.com", ip("127.0.0.1"))
                .expect_err("resolved to loopback")
                .kind(),
            needs
        );
        assert_eq!(
            kind("https://bad.example.com/v2/"),
            ErrorKind::Refused(Refusal::Policy)
        );
        assert_eq!(
            kind("https://169.254.169.254/latest"),
            ErrorKind::Refused(Refusal::Never)
        );
        assert_eq!(
            g.check_ip("a.example.com", ip("fe80::1"))
                .expect_err("link-local")
                .kind(),
            ErrorKind::Refused(Refusal::Never)
        );
    }

    #[test]
    fn host_and_port_must_both_match() {
        let u = |s: &str| Url::parse(s).expect("url");
        let g = guard("insecureRegistries: ['127.0.0.1:5000', 'localhost:5001']");
        assert!(g.is_insecure("127.0.0.1:5000"));
        assert!(!g.is_insecure("127.0.0.1:5002"));
        assert!(!g.is_insecure("127.0.0.1"));
        assert!(g.check_url(&u("http://127.0.0.1:5000/v2/")).is_ok());
        // Another port of the same loopback address, over either scheme: refused.
        for url in [
            "http://127.0.0.1:5002/v2/",
            "https://127.0.0.1:5002/v2/",
            "https://127.0.0.1/v2/",
            "http://localhost:5002/token",
            "https://localhost:5002/token",
        ] {
            let e = g.check_url(&u(url)).expect_err(url).to_string();
            assert!(
                e.contains("host and port") || e.contains("loopback"),
                "{url}: {e}"
            );
        }
        assert!(g.check_url(&u("http://localhost:5001/v2/")).is_ok());
        // A name on the loopback list resolves to loopback only for the listed entry's port:
        // another port of it is refused before DNS.
        let e = g
            .check_url(&u("https://localhost:6000/v2/"))
            .expect_err("port")
            .to_string();
        assert!(e.contains("only localhost:5001"), "{e}");

        // allowHosts: a pattern without a port is the default port only.
        let g = guard(
            "allowHosts: ['registry.example.com', 'other.example.com:8443', 'wild.example.com:*']",
        );
        assert!(g.check_url(&u("https://registry.example.com/v2/")).is_ok());
        assert!(g
            .check_url(&u("https://registry.example.com:443/v2/"))
            .is_ok());
        assert!(g
            .check_url(&u("https://registry.example.com:8443/v2/"))
            .is_err());
        assert!(g
            .check_url(&u("https://other.example.com:8443/v2/"))
            .is_ok());
        assert!(g.check_url(&u("https://other.example.com/v2/")).is_err());
        assert!(g.check_url(&u("https://wild.example.com:9000/v2/")).is_ok());
        // Exact allow entries of loopback hosts: that port only.
        let g = guard("allowHosts: ['127.0.0.1:7000']");
        assert!(g.check_url(&u("https://127.0.0.1:7000/v2/")).is_ok());
        assert!(g.check_url(&u("https://127.0.0.1:7001/v2/")).is_err());
        // denyHosts still deny every port of a bare host.
        let g = guard("denyHosts: ['evil.example.com']");
        assert!(g
            .check_url(&u("https://evil.example.com:8443/v2/"))
            .is_err());
        // Malformed insecure entries are a configuration error.
        for bad in [
            "'http://127.0.0.1:5000'",
            "'127.0.0.1:99999'",
            "'a/b'",
            "'*.x'",
        ] {
            let cfg =
                serde_yaml_ng::from_str(&format!("insecureRegistries: [{bad}]")).expect("yaml");
            let e = Guard::new(&cfg).expect_err(bad).to_string();
            assert!(e.contains("insecureRegistries"), "{bad}: {e}");
        }
    }

    #[tokio::test]
    async fn resolver_filters_after_dns() {
        let g = Arc::new(guard("{}"));
        let r = FilteringResolver(g);
        let name: Name = "localhost".parse().expect("name");
        let err = match r.resolve(name).await {
            Ok(_) => panic!("localhost must be refused"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains("loopback"), "{err}");
    }
}
