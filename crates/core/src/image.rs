//! Container image references, normalised the way container runtimes do
//! (`nginx` is `docker.io/library/nginx:latest`).
//!
//! Written by hand: the registry crates that parse references pull in an HTTP stack, and
//! the core must stay free of IO dependencies.

use std::fmt;

use serde::{Deserialize, Serialize};

pub const DEFAULT_REGISTRY: &str = "docker.io";

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ImageRef {
    /// The reference as written in the workload.
    pub original: String,
    /// Registry host (and port): `docker.io` for Docker Hub.
    pub registry: String,
    /// Repository path: `library/nginx`.
    pub repository: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// `algorithm:hex`, when the reference pins one (or once resolved).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid image reference {reference:?}: {reason}")]
pub struct ImageRefError {
    pub reference: String,
    pub reason: &'static str,
}

/// Checks the `algorithm:encoded` form of a digest (sha256/sha512 with lowercase hex).
pub fn is_valid_digest(d: &str) -> bool {
    let Some((alg, hex)) = d.split_once(':') else {
        return false;
    };
    let len = match alg {
        "sha256" => 64,
        "sha512" => 128,
        _ => return false,
    };
    // `fold`, not `all`: without the early exit the check compiles to vector instructions
    // (every admitted image is checked on every request).
    hex.len() == len
        && hex.bytes().fold(true, |ok, b| {
            ok & (b.is_ascii_digit() | (b'a'..=b'f').contains(&b))
        })
}

/// Longest `registry/repository` accepted (the limit container runtimes apply).
pub const MAX_NAME_LEN: usize = 255;

/// A tag per the OCI distribution spec: `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
pub fn is_valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || c == b'_' || c == b'.' || c == b'-')
}

/// One repository path component per the OCI distribution spec:
/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`.
fn is_valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    let mut i = 0;
    loop {
        // An alphanumeric run.
        let start = i;
        while i < b.len() && alnum(b[i]) {
            i += 1;
        }
        if i == start {
            return false;
        }
        if i == b.len() {
            return true;
        }
        // A separator: '.', '_', '__' or one or more '-'.
        match b[i] {
            b'.' => i += 1,
            b'_' => {
                i += 1;
                if i < b.len() && b[i] == b'_' {
                    i += 1;
                }
            }
            b'-' => {
                while i < b.len() && b[i] == b'-' {
                    i += 1;
                }
            }
            _ => return false,
        }
    }
}

/// A repository name per the OCI distribution spec: components of [`is_valid_component`]
/// separated by single `/`. So `..`, `a/../b`, `-a`, `a.` and `a//b` are refused.
pub fn is_valid_repository(r: &str) -> bool {
    !r.is_empty() && r.len() <= MAX_NAME_LEN && r.split('/').all(is_valid_component)
}

/// A registry `host[:port]`: DNS labels (`[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?`) joined by
/// `.`, or a bracketed IPv6 address, then an optional decimal port 1..=65535.
pub fn is_valid_registry_host(h: &str) -> bool {
    let (host, port) = if let Some(rest) = h.strip_prefix('[') {
        let Some((v6, after)) = rest.split_once(']') else {
            return false;
        };
        if v6.parse::<std::net::Ipv6Addr>().is_err() {
            return false;
        }
        match after {
            "" => return true,
            p => match p.strip_prefix(':') {
                Some(p) => ("", Some(p)),
                None => return false,
            },
        }
    } else {
        match h.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (h, None),
        }
    };
    if let Some(p) = port {
        let ok = !p.is_empty()
            && p.len() <= 5
            && p.bytes().all(|b| b.is_ascii_digit())
            && p.parse::<u32>().is_ok_and(|n| (1..=65535).contains(&n));
        if !ok {
            return false;
        }
    }
    if h.starts_with('[') {
        return true;
    }
    let label = |l: &str| {
        let b = l.as_bytes();
        !b.is_empty()
            && b.len() <= 63
            && b[0].is_ascii_alphanumeric()
            && b[b.len() - 1].is_ascii_alphanumeric()
            && b.iter().all(|&c| c.is_ascii_alphanumeric() || c == b'-')
    };
    !host.is_empty() && host.len() <= 253 && host.split('.').all(label)
}

/// Whether `s` has a whitespace or control character (Unicode's `White_Space`, `Cc`).
fn has_space_or_control(s: &str) -> bool {
    if s.is_ascii() {
        // The same test on ASCII (`\t`..`\r`, space, 0x00..0x1f, 0x7f) without decoding
        // characters, as a `fold` that compiles to vector instructions.
        s.bytes()
            .fold(false, |bad, b| bad | (b <= b' ') | (b == 0x7f))
    } else {
        s.chars().any(|c| c.is_whitespace() || c.is_control())
    }
}

impl ImageRef {
    pub fn parse(reference: &str) -> Result<ImageRef, ImageRefError> {
        let err = |reason| ImageRefError {
            reference: reference.to_string(),
            reason,
        };
        let s = reference.trim();
        if s.is_empty() {
            return Err(err("empty reference"));
        }
        if has_space_or_control(s) {
            return Err(err("contains whitespace or control characters"));
        }
        let (name_tag, digest) = match s.split_once('@') {
            Some((n, d)) => {
                if !is_valid_digest(d) {
                    return Err(err("digest must be sha256:<64 hex> or sha512:<128 hex>"));
                }
                (n, Some(d.to_string()))
            }
            None => (s, None),
        };
        // The tag is after the last ':' that follows the last '/'.
        let last_slash = name_tag.rfind('/').map(|i| i + 1).unwrap_or(0);
        let (name, tag) = match name_tag[last_slash..].rfind(':') {
            Some(i) => {
                let i = last_slash + i;
                (&name_tag[..i], Some(&name_tag[i + 1..]))
            }
            None => (name_tag, None),
        };
        if let Some(t) = tag {
            if !is_valid_tag(t) {
                return Err(err(
                    "tag must match [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127} (OCI distribution spec)",
                ));
            }
        }
        if name.is_empty() {
            return Err(err("empty repository name"));
        }
        if name.len() > MAX_NAME_LEN {
            return Err(err(
                "name (registry and repository) is longer than 255 characters",
            ));
        }
        let (registry, repository) = match name.split_once('/') {
            Some((first, rest))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                if !is_valid_registry_host(first) {
                    return Err(err(
                        "registry must be a host name or IP address with an optional :port",
                    ));
                }
                (first.to_string(), rest.to_string())
            }
            _ => (DEFAULT_REGISTRY.to_string(), name.to_string()),
        };
        let registry = if registry == "index.docker.io" || registry == "registry-1.docker.io" {
            DEFAULT_REGISTRY.to_string()
        } else {
            registry
        };
        if !is_valid_repository(&repository) {
            return Err(err(
                "repository must be '/'-separated components of lowercase letters and digits \
                 joined by '.', '_', '__' or dashes (OCI distribution spec)",
            ));
        }
        let repository = if registry == DEFAULT_REGISTRY && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository
        };
        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_string()),
            (None, None) => Some("latest".to_string()),
            (None, Some(_)) => None,
        };
        Ok(ImageRef {
            original: reference.to_string(),
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// `registry/repository` (what scope selectors and the registry client use).
    pub fn name(&self) -> String {
        let mut s = String::with_capacity(self.registry.len() + 1 + self.repository.len());
        s.push_str(&self.registry);
        s.push('/');
        s.push_str(&self.repository);
        s
    }

    /// The normalised reference: `registry/repository[:tag][@digest]`.
    pub fn normalized(&self) -> String {
        // Sized once: this is the findings cache's key, built on every request.
        let len = self.registry.len()
            + 1
            + self.repository.len()
            + self.tag.as_ref().map_or(0, |t| 1 + t.len())
            + self.digest.as_ref().map_or(0, |d| 1 + d.len());
        let mut s = String::with_capacity(len);
        s.push_str(&self.registry);
        s.push('/');
        s.push_str(&self.repository);
        if let Some(t) = &self.tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(d);
        }
        s
    }

    /// The same image pinned to a digest.
    pub fn with_digest(&self, digest: &str) -> ImageRef {
        let mut r = self.clone();
        r.set_digest(digest);
        r
    }

    /// Pins this reference to `digest` in place (no copy when it already is).
    pub fn set_digest(&mut self, digest: &str) {
        if self.digest.as_deref() != Some(digest) {
            self.digest = Some(digest.to_string());
        }
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.original)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("nginx", "docker.io", "library/nginx", Some("latest"), None)]
    #[case("nginx:1.25", "docker.io", "library/nginx", Some("1.25"), None)]
    #[case("bitnami/redis:7", "docker.io", "bitnami/redis", Some("7"), None)]
    #[case(
        "myacr.azurecr.io/team/app:v1",
        "myacr.azurecr.io",
        "team/app",
        Some("v1"),
        None
    )]
    #[case("127.0.0.1:5000/app:v1", "127.0.0.1:5000", "app", Some("v1"), None)]
    #[case("localhost/app", "localhost", "app", Some("latest"), None)]
    #[case(
        "ghcr.io/o/r@sha256:0000000000000000000000000000000000000000000000000000000000000000",
        "ghcr.io",
        "o/r",
        None,
        Some("sha256:0000000000000000000000000000000000000000000000000000000000000000")
    )]
    #[case(
        "registry:5000/r:t@sha256:1111111111111111111111111111111111111111111111111111111111111111",
        "registry:5000",
        "r",
        Some("t"),
        Some("sha256:1111111111111111111111111111111111111111111111111111111111111111")
    )]
    fn parses_references(
        #[case] input: &str,
        #[case] registry: &str,
        #[case] repository: &str,
        #[case] tag: Option<&str>,
        #[case] digest: Option<&str>,
    ) {
        let r = ImageRef::parse(input).unwrap();
        assert_eq!(r.registry, registry);
        assert_eq!(r.repository, repository);
        assert_eq!(r.tag.as_deref(), tag);
        assert_eq!(r.digest.as_deref(), digest);
    }

    #[rstest]
    #[case("")]
    #[case("Nginx")]
    #[case("nginx:")]
    #[case("nginx@sha256:abc")]
    #[case("nginx latest")]
    #[case("a//b")]
    #[case("a/../../admin")]
    #[case("127.0.0.1:5000/a/../../admin:1")]
    #[case("ghcr.io/../admin")]
    #[case("ghcr.io/a/./b")]
    #[case("ghcr.io/-a")]
    #[case("ghcr.io/a-")]
    #[case("ghcr.io/a..b")]
    #[case("ghcr.io/a___b")]
    #[case("ghcr.io/a/")]
    #[case("ghcr.io/.a")]
    #[case("../x")]
    #[case("evil..com/x")]
    #[case("a_b.com/x")]
    #[case("-a.com/x")]
    #[case("127.0.0.1:99999/x")]
    #[case("127.0.0.1:0/x")]
    #[case("127.0.0.1:/x")]
    #[case("[::1/x")]
    #[case("[zz]:5000/x")]
    #[case("ghcr.io/a:.v1")]
    #[case("ghcr.io/a:-v1")]
    #[case("ghcr.io/a:v%2f")]
    #[case("ghcr.io/a?x=1")]
    #[case("ghcr.io/a#x")]
    #[case("ghcr.io/a%2e%2e/b")]
    fn rejects_bad_references(#[case] input: &str) {
        assert!(
            ImageRef::parse(input).is_err(),
            "{input:?} should be rejected"
        );
    }

    #[rstest]
    #[case("ghcr.io/a__b/c---d/e.f_g:V_1.0-x", "a__b/c---d/e.f_g")]
    #[case("[::1]:5000/app:v1", "app")]
    #[case("localhost:5000/a0/b1", "a0/b1")]
    #[case("my-reg.example.com/x", "x")]
    fn accepts_spec_names(#[case] input: &str, #[case] repository: &str) {
        let r = ImageRef::parse(input).unwrap();
        assert_eq!(r.repository, repository);
    }

    #[test]
    fn spec_grammar_limits() {
        let tag = format!("ghcr.io/a:_{}", "x".repeat(127));
        assert!(ImageRef::parse(&tag).is_ok());
        let tag = format!("ghcr.io/a:_{}", "x".repeat(128));
        assert!(ImageRef::parse(&tag).is_err());
        let long = format!("ghcr.io/{}", "a".repeat(255 - 8));
        assert!(ImageRef::parse(&long).is_ok());
        let long = format!("ghcr.io/{}", "a".repeat(256 - 8));
        let e = ImageRef::parse(&long).unwrap_err();
        assert!(e.reason.contains("255"), "{e}");
        let e = ImageRef::parse("a/../../admin").unwrap_err();
        assert!(e.to_string().contains("OCI distribution spec"), "{e}");
    }

    #[test]
    fn normalized_form() {
        let r = ImageRef::parse("nginx:1.25").unwrap();
        assert_eq!(r.normalized(), "docker.io/library/nginx:1.25");
        let d = format!("sha256:{}", "ab".repeat(32));
        for (input, want) in [
            (format!("nginx@{d}"), format!("docker.io/library/nginx@{d}")),
            (
                format!("127.0.0.1:5000/a/b:v1@{d}"),
                format!("127.0.0.1:5000/a/b:v1@{d}"),
            ),
            ("ghcr.io/o/r".to_string(), "ghcr.io/o/r:latest".to_string()),
        ] {
            let r = ImageRef::parse(&input).unwrap();
            assert_eq!(r.normalized(), want, "{input}");
            assert_eq!(r.normalized().capacity(), want.len(), "sized once: {input}");
            assert_eq!(r.name(), format!("{}/{}", r.registry, r.repository));
        }
    }

    #[test]
    fn space_or_control_check_agrees_with_char_classes() {
        let by_char = |s: &str| s.chars().any(|c| c.is_whitespace() || c.is_control());
        // Every ASCII byte alone and inside a reference; and non-ASCII text (decoded path).
        for b in 0u8..=0x7f {
            let c = char::from(b);
            for s in [c.to_string(), format!("ghcr.io/o/r{c}x:v1")] {
                assert_eq!(has_space_or_control(&s), by_char(&s), "{s:?}");
            }
        }
        for s in [
            "ghcr.io/é",
            "a\u{a0}b",
            "a\u{85}b",
            "a\u{2028}",
            "ü:v1",
            "a\u{9f}",
        ] {
            assert_eq!(has_space_or_control(s), by_char(s), "{s:?}");
        }
        assert!(ImageRef::parse("ghcr.io/o/r\u{a0}:v1").is_err());
        assert!(ImageRef::parse("ghcr.io/o/r\x7f:v1").is_err());
    }

    #[test]
    fn digest_check_accepts_only_lowercase_hex() {
        let ok = format!("sha256:{}", "0123456789abcdef".repeat(4));
        assert!(is_valid_digest(&ok));
        assert!(is_valid_digest(&format!("sha512:{}", "a1".repeat(64))));
        for bad in [b'A', b'g', b'/', b':', b'`', b'G', 0x80] {
            let mut d = ok.clone().into_bytes();
            d[20] = bad;
            let d = String::from_utf8_lossy(&d).into_owned();
            assert!(!is_valid_digest(&d), "{d:?}");
        }
        assert!(!is_valid_digest(&ok[..ok.len() - 1]));
        assert!(!is_valid_digest(&format!("sha384:{}", "a".repeat(96))));
    }
}
