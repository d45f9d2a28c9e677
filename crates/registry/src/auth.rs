//! Registry credentials: per-registry basic auth from the config, and docker `config.json` /
//! `.dockerconfigjson` (`auths`). Values are kept out of `Debug` output and error messages.

use std::collections::HashMap;

use base64::Engine as _;
use serde::Deserialize;

use vulngate_core::limits::{read_capped, read_to_string_capped, FileKind};

use crate::config::AuthConfig;
use crate::error::{Error, Result};

/// Registry credentials by registry host. Built from the configuration, or per call from a
/// docker config JSON (a Kubernetes pull secret) for [`RegistryClient::lookup_with`](crate::RegistryClient::lookup_with).
/// The values never appear in `Debug` output or error messages.
#[derive(Default, Clone)]
pub struct Credentials {
    /// Normalised registry host -> (username, password).
    by_host: HashMap<String, (String, String)>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut hosts: Vec<&String> = self.by_host.keys().collect();
        hosts.sort();
        f.debug_struct("Credentials")
            .field("hosts", &hosts)
            .finish()
    }
}

#[derive(Deserialize)]
struct DockerConfig {
    #[serde(default)]
    auths: HashMap<String, DockerAuth>,
}

#[derive(Deserialize)]
struct DockerAuth {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

/// `https://index.docker.io/v1/` -> `docker.io`; `http://r:5000/x` -> `r:5000`.
pub(crate) fn normalize_registry(key: &str) -> String {
    let k = key.trim();
    let k = k
        .strip_prefix("https://")
        .or_else(|| k.strip_prefix("http://"))
        .unwrap_or(k);
    let host = k.split('/').next().unwrap_or(k).to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "docker.io" => "docker.io".to_string(),
        _ => host,
    }
}

impl Credentials {
    /// Credentials from a docker config JSON (`config.json`, a `kubernetes.io/dockerconfigjson`
    /// Secret's `.dockerconfigjson`): the `auths` map. The error never quotes the input.
    pub fn from_docker_config_json(bytes: &[u8]) -> std::result::Result<Credentials, String> {
        Ok(Credentials {
            by_host: parse_docker_config(bytes)?,
        })
    }

    /// Credentials from the legacy `.dockercfg` format (a `kubernetes.io/dockercfg` Secret):
    /// the `auths` map without its wrapper.
    pub fn from_dockercfg(bytes: &[u8]) -> std::result::Result<Credentials, String> {
        let inner: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| {
            format!(
                "not a .dockercfg (line {}, column {})",
                e.line(),
                e.column()
            )
        })?;
        let wrapped = serde_json::json!({ "auths": inner });
        let bytes = serde_json::to_vec(&wrapped).map_err(|_| "not a .dockercfg".to_string())?;
        Credentials::from_docker_config_json(&bytes)
    }

    /// Adds `other`'s registries that `self` does not have (the first credentials for a
    /// registry win, as the kubelet tries pull secrets in order).
    pub fn merge(&mut self, other: &Credentials) {
        for (k, v) in &other.by_host {
            self.by_host.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }

    pub fn is_empty(&self) -> bool {
        self.by_host.is_empty()
    }

    /// The registries these credentials are for (normalised hosts), sorted.
    pub fn registries(&self) -> Vec<String> {
        let mut v: Vec<String> = self.by_host.keys().cloned().collect();
        v.sort();
        v
    }

    pub(crate) fn load(cfg: &AuthConfig) -> Result<Credentials> {
        let mut by_host = HashMap::new();
        if let Some(path) = &cfg.docker_config {
            let bytes = read_capped(path, FileKind::Config)
                .map_err(|e| Error::Config(format!("auth.dockerConfig: {e}")))?;
            by_host = parse_docker_config(&bytes)
                .map_err(|e| Error::Config(format!("auth.dockerConfig {}: {e}", path.display())))?;
        }
        for b in &cfg.basic {
            let password = match (&b.password, &b.password_file) {
                (Some(p), None) => p.clone(),
                (None, Some(f)) => read_to_string_capped(f, FileKind::Config)
                    .map_err(|e| {
                        Error::Config(format!("auth.basic[{}]: passwordFile: {e}", b.registry,))
                    })?
                    .trim_end_matches(['\r', '\n'])
                    .to_string(),
                _ => {
                    return Err(Error::Config(format!(
                        "auth.basic[{}]: give exactly one of password and passwordFile",
                        b.registry
                    )))
                }
            };
            by_host.insert(
                normalize_registry(&b.registry),
                (b.username.clone(), password),
            );
        }
        Ok(Credentials { by_host })
    }

    /// Credentials for a registry (as in the image reference) or the host actually contacted.
    pub(crate) fn get(&self, registry: &str, host: &str) -> Option<(&str, &str)> {
        self.by_host
            .get(&normalize_registry(registry))
            .or_else(|| self.by_host.get(&normalize_registry(host)))
            .map(|(u, p)| (u.as_str(), p.as_str()))
    }
}

/// Parses `auths` (the error never quotes the file, which holds secrets).
pub(crate) fn parse_docker_config(
    bytes: &[u8],
) -> Result<HashMap<String, (String, String)>, String> {
    let cfg: DockerConfig = serde_json::from_slice(bytes).map_err(|e| {
        format!(
            "not a docker config (line {}, column {})",
            e.line(),
            e.column()
        )
    })?;
    let mut out = HashMap::new();
    for (key, a) in cfg.auths {
        let pair = match (a.auth, a.username, a.password) {
            (Some(auth), _, _) if !auth.is_empty() => {
                let raw = base64::engine::general_purpose::STANDARD
                    .decode(auth.trim())
                    .map_err(|_| format!("auths[{key}].auth is not base64"))?;
                let s = String::from_utf8(raw)
                    .map_err(|_| format!("auths[{key}].auth is not UTF-8"))?;
                let (u, p) = s
                    .split_once(':')
                    .ok_or_else(|| format!("auths[{key}].auth is not user:password"))?;
                (u.to_string(), p.to_string())
            }
            (_, Some(u), Some(p)) => (u, p),
            _ => continue,
        };
        out.insert(normalize_registry(&key), pair);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_config_formats() {
        let j = br#"{"auths":{"https://index.docker.io/v1/":{"auth":"dTpwYXNz"},
            "myreg.io:5000":{"username":"a","password":"b"},"x.io":{"identitytoken":"t"}}}"#;
        let m = parse_docker_config(j).expect("parses");
        assert_eq!(m["docker.io"], ("u".to_string(), "pass".to_string()));
        assert_eq!(m["myreg.io:5000"], ("a".to_string(), "b".to_string()));
        assert!(!m.contains_key("x.io"));
        let err =
            parse_docker_config(br#"{"auths":{"r":{"auth":"c2VjcmV0"}}}"#).expect_err("no colon");
        assert!(!err.contains("secret"), "{err}");
        let c = Credentials { by_host: m };
        assert!(!format!("{c:?}").contains("pass"));
        assert_eq!(
            c.get("docker.io", "registry-1.docker.io"),
            Some(("u", "pass"))
        );
    }
}
