//! Loads and refreshes the exploitation catalogs (`kev:`, `epss:`): from a file, or from the
//! one URL the operator configured (no redirect is followed), size-capped, with the last good
//! copy kept in the data directory (`catalogs/kev.json`, `catalogs/epss.csv`) and used until a
//! refresh succeeds. A failed refresh never removes the catalog in use.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use vulngate_core::exploit::{
    CatalogError as ParseError, DEFAULT_EPSS_MAX_BYTES, DEFAULT_KEV_MAX_BYTES,
};
use vulngate_core::{Catalogs, EpssScores, KevCatalog};

use crate::config::{CatalogConfig, Config};
use crate::metrics::Metrics;

/// Which catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Kev,
    Epss,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Kev => "kev",
            Kind::Epss => "epss",
        }
    }
    fn disk_name(self) -> &'static str {
        match self {
            Kind::Kev => "kev.json",
            Kind::Epss => "epss.csv",
        }
    }
}

/// Why a catalog could not be loaded or refreshed.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("{kind}: cannot read {path}: {source}")]
    Read {
        kind: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{kind}: {path}: more than {limit} bytes (raise maxBytes)")]
    TooLarge {
        kind: &'static str,
        path: String,
        limit: u64,
    },
    #[error("{kind}: fetching {url}: {detail}")]
    Fetch {
        kind: &'static str,
        url: String,
        detail: String,
    },
    #[error(transparent)]
    Parse(#[from] ParseError),
}

#[derive(Debug)]
enum Data {
    Kev(Arc<KevCatalog>),
    Epss(Arc<EpssScores>),
}

#[derive(Debug)]
struct Loaded {
    data: Data,
    /// When it was fetched (or its file last changed).
    at: SystemTime,
}

/// One configured catalog.
#[derive(Debug)]
pub struct Source {
    kind: Kind,
    config: CatalogConfig,
    disk: PathBuf,
    current: RwLock<Option<Loaded>>,
}

impl Source {
    fn max_bytes(&self) -> u64 {
        self.config.max_bytes.unwrap_or(match self.kind {
            Kind::Kev => DEFAULT_KEV_MAX_BYTES,
            Kind::Epss => DEFAULT_EPSS_MAX_BYTES,
        })
    }

    fn parse(&self, bytes: &[u8]) -> Result<Data, CatalogError> {
        Ok(match self.kind {
            Kind::Kev => Data::Kev(Arc::new(KevCatalog::parse(bytes)?)),
            Kind::Epss => Data::Epss(Arc::new(EpssScores::parse(bytes, self.max_bytes())?)),
        })
    }

    fn read_file(&self, path: &Path) -> Result<(Vec<u8>, SystemTime), CatalogError> {
        use std::io::Read;
        let kind = self.kind.as_str();
        let io = |source| CatalogError::Read {
            kind,
            path: path.to_path_buf(),
            source,
        };
        let f = std::fs::File::open(path).map_err(io)?;
        let at = f
            .metadata()
            .and_then(|m| m.modified())
            .unwrap_or_else(|_| SystemTime::now());
        let mut bytes = Vec::new();
        f.take(self.max_bytes() + 1)
            .read_to_end(&mut bytes)
            .map_err(io)?;
        if bytes.len() as u64 > self.max_bytes() {
            return Err(CatalogError::TooLarge {
                kind,
                path: path.display().to_string(),
                limit: self.max_bytes(),
            });
        }
        Ok((bytes, at))
    }

    async fn download(&self, url: &str) -> Result<Vec<u8>, CatalogError> {
        let kind = self.kind.as_str();
        let fail = |detail: String| CatalogError::Fetch {
            kind,
            url: url.to_string(),
            detail,
        };
        // Only the configured URL: no redirect is followed.
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(self.config.timeout)
            .build()
            .map_err(|e| fail(e.to_string()))?;
        let mut resp = client
            .get(url)
            .send()
            .await
            .map_err(|e| fail(e.to_string()))?;
        if !resp.status().is_success() {
            return Err(fail(format!(
                "HTTP {} (redirects are not followed: configure the final URL)",
                resp.status()
            )));
        }
        let limit = self.max_bytes();
        let too_large = || CatalogError::TooLarge {
            kind,
            path: url.to_string(),
            limit,
        };
        if resp.content_length().is_some_and(|n| n > limit) {
            return Err(too_large());
        }
        let mut out = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| fail(e.to_string()))? {
            if (out.len() + chunk.len()) as u64 > limit {
                return Err(too_large());
            }
            out.extend_from_slice(&chunk);
        }
        Ok(out)
    }

    fn install(&self, data: Data, at: SystemTime) {
        if let Ok(mut c) = self.current.write() {
            *c = Some(Loaded { data, at });
        }
    }

    /// Loads the file, or fetches the URL and keeps the copy on disk. On error the catalog in
    /// use stays.
    pub async fn refresh(&self) -> Result<(), CatalogError> {
        if let Some(path) = &self.config.file {
            let (bytes, at) = self.read_file(path)?;
            let data = self.parse(&bytes)?;
            self.install(data, at);
            return Ok(());
        }
        let Some(url) = &self.config.url else {
            return Ok(());
        };
        let bytes = self.download(url).await?;
        let data = self.parse(&bytes)?;
        // The last good copy, written atomically.
        let tmp = self.disk.with_extension("tmp");
        let io = |source| CatalogError::Read {
            kind: self.kind.as_str(),
            path: self.disk.clone(),
            source,
        };
        if let Some(dir) = self.disk.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        std::fs::write(&tmp, &bytes).map_err(io)?;
        std::fs::rename(&tmp, &self.disk).map_err(io)?;
        self.install(data, SystemTime::now());
        Ok(())
    }

    /// Age of the catalog in use; `None` when none is loaded.
    pub fn age(&self) -> Option<Duration> {
        let c = self.current.read().ok()?;
        let at = c.as_ref()?.at;
        Some(SystemTime::now().duration_since(at).unwrap_or_default())
    }
}

/// The configured catalogs.
#[derive(Debug, Default)]
pub struct CatalogStore {
    sources: Vec<Arc<Source>>,
}

impl CatalogStore {
    /// Reads `file` sources now (an error is a configuration error) and, for `url` sources,
    /// the last good copy in the data directory if there is one (a bad copy is ignored with a
    /// warning; the first refresh replaces it).
    pub fn load(config: &Config) -> Result<CatalogStore, CatalogError> {
        let mut sources = Vec::new();
        for (kind, cfg) in [(Kind::Kev, &config.kev), (Kind::Epss, &config.epss)] {
            let Some(cfg) = cfg else { continue };
            let source = Source {
                kind,
                config: cfg.clone(),
                disk: config.data_dir.join("catalogs").join(kind.disk_name()),
                current: RwLock::new(None),
            };
            if let Some(path) = &cfg.file {
                let (bytes, at) = source.read_file(path)?;
                source.install(source.parse(&bytes)?, at);
            } else if source.disk.exists() {
                match source
                    .read_file(&source.disk)
                    .and_then(|(b, at)| Ok((source.parse(&b)?, at)))
                {
                    Ok((data, at)) => source.install(data, at),
                    Err(e) => tracing::warn!(catalog = kind.as_str(), error = %e,
                        "ignoring the kept copy of the catalog"),
                }
            }
            sources.push(Arc::new(source));
        }
        Ok(CatalogStore { sources })
    }

    pub fn source(&self, kind: Kind) -> Option<&Arc<Source>> {
        self.sources.iter().find(|s| s.kind == kind)
    }

    /// The catalogs in use, for one evaluation.
    pub fn current(&self) -> Catalogs {
        let mut out = Catalogs::default();
        for s in &self.sources {
            let Ok(c) = s.current.read() else { continue };
            match c.as_ref().map(|l| &l.data) {
                Some(Data::Kev(k)) => out.kev = Some(k.clone()),
                Some(Data::Epss(e)) => out.epss = Some(e.clone()),
                None => {}
            }
        }
        out
    }

    /// Refreshes every source now, then every `refreshInterval`, on the current runtime:
    /// metrics and warnings after each attempt.
    pub fn spawn_refresh(self: &Arc<Self>, metrics: Metrics) {
        for s in &self.sources {
            let s = s.clone();
            let metrics = metrics.clone();
            tokio::spawn(async move {
                loop {
                    refresh_and_report(&s, &metrics).await;
                    tokio::time::sleep(s.config.refresh_interval).await;
                }
            });
        }
    }
}

/// One refresh with its log lines and metrics.
pub async fn refresh_and_report(s: &Source, metrics: &Metrics) {
    let name = s.kind.as_str();
    if let Err(e) = s.refresh().await {
        metrics.catalog_refresh_failed(name);
        tracing::warn!(catalog = name, error = %e, "catalog refresh failed; the last good copy stays in use");
    }
    match s.age() {
        Some(age) => {
            metrics.catalog_age(name, age.as_secs_f64());
            if age > s.config.max_age {
                tracing::warn!(
                    catalog = name,
                    age_secs = age.as_secs(),
                    "catalog is older than its maxAge"
                );
            }
        }
        None => tracing::warn!(
            catalog = name,
            "no catalog loaded: its conditions count no vulnerability"
        ),
    }
}
