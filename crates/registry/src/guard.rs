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
use crate::error::{Error, Result};

#[derive(Debug)]
pub(crate) struct Guard {
    allow: Vec<Pattern>,
    deny: Vec<Pattern>,
    /// Hosts (`host` or `host:port`, lowercase) reached over plain HTTP.
    insecure: Vec<String>,
    /// Host names (no port) that may resolve to loopback: exact insecure or allow entries.
    loopback_ok: Vec<String>,
}

fn host_only(h: &str) -> &str {
    // `[::1]:5000` -> `[::1]`, `a:5000` -> `a`
    if let Some(rest) = h.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match h.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => h,
    }
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
        let insecure: Vec<String> = cfg
            .insecure_registries
            .iter()
            .map(|h| h.to_ascii_lowercase())
            .collect();
        let loopback_ok = insecure
            .iter()
            .chain(cfg.allow_hosts.iter())
            .filter(|h| !h.contains(['*', '?', '[']))
            .map(|h| host_only(&h.to_ascii_lowercase()).to_string())
            .collect();
        Ok(Guard {
            allow: pats(&cfg.allow_hosts)?,
            deny: pats(&cfg.deny_hosts)?,
            insecure,
            loopback_ok,
        })
    }

    pub fn is_insecure(&self, host_port: &str) -> bool {
        let h = host_port.to_ascii_lowercase();
        self.insecure.contains(&h)
    }

    /// Host patterns: deny first, then the allow list (if any). `host_port` as in the URL.
    pub fn check_host(&self, host_port: &str) -> Result<()> {
        let h = host_port.to_ascii_lowercase();
        let bare = host_only(&h);
        let hit = |p: &Pattern| p.matches(&h) || p.matches(bare);
        if self.deny.iter().any(hit) {
            return Err(Error::HostNotAllowed {
                host: host_port.to_string(),
                reason: "matches a denyHosts pattern".into(),
            });
        }
        if !self.allow.is_empty() && !self.allow.iter().any(hit) && !self.is_insecure(&h) {
            return Err(Error::HostNotAllowed {
                host: host_port.to_string(),
                reason: "matches no allowHosts pattern".into(),
            });
        }
        Ok(())
    }

    /// Checks a URL before it is requested (also each redirect target).
    pub fn check_url(&self, url: &Url) -> Result<()> {
        let host = url.host_str().unwrap_or_default().to_string();
        let host_port = match url.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.clone(),
        };
        match url.scheme() {
            "https" => {}
            "http" if self.is_insecure(&host_port) || self.is_insecure(&host) => {}
            s => {
                return Err(Error::HostNotAllowed {
                    host: host_port,
                    reason: format!(
                        "scheme {s} not allowed (plain HTTP only for insecureRegistries)"
                    ),
                })
            }
        }
        self.check_host(&host_port)?;
        let literal = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = literal.parse::<IpAddr>() {
            self.check_ip(&host, ip)?;
        }
        Ok(())
    }

    /// Addresses never contacted, whatever the name: link-local (cloud metadata lives there),
    /// known metadata addresses, unspecified, multicast, broadcast; loopback unless the host is
    /// explicitly listed.
    pub fn check_ip(&self, host: &str, ip: IpAddr) -> Result<()> {
        let refuse = |reason: &str| {
            Err(Error::AddressRefused {
                host: host.to_string(),
                reason: format!("{ip} is {reason}"),
            })
        };
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
                if v4.is_loopback() && !self.loopback_allowed(host) {
                    return refuse("loopback (list the host in insecureRegistries or allowHosts)");
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
                if v6 == Ipv6Addr::LOCALHOST && !self.loopback_allowed(host) {
                    return refuse("loopback (list the host in insecureRegistries or allowHosts)");
                }
            }
        }
        Ok(())
    }

    fn loopback_allowed(&self, host: &str) -> bool {
        let h = host_only(&host.to_ascii_lowercase()).to_string();
        self.loopback_ok.contains(&h)
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
        assert!(g.check_host("a.azurecr.io").is_ok());
        assert!(g.check_host("bad.azurecr.io").is_err());
        assert!(g.check_host("ghcr.io").is_err());
        assert!(g.check_host("127.0.0.1:5000").is_ok());
        let u = |s: &str| Url::parse(s).expect("url");
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
