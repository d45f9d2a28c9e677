//! Applying VEX statements (OpenVEX 0.2, CycloneDX `analysis`) to findings.
//!
//! A statement with status `not_affected` or `fixed` removes a finding before the engine
//! groups vulnerabilities (ARCHITECTURE.md section 3) when:
//! - it names the finding's vulnerability (its id or one of the aliases on either side);
//! - its image products, if any (`pkg:oci/...` purls or image references), name this image
//!   (by digest, or by repository when the product pins no digest);
//! - its package constraint, if any, names the finding's package: the subcomponents when the
//!   statement lists some, else the products that are package purls.

use crate::image::ImageRef;
use crate::model::{Finding, VexStatement};

/// Does `st` suppress `finding` in `image`?
pub fn suppresses(st: &VexStatement, finding: &Finding, image: Option<&ImageRef>) -> bool {
    st.status.suppresses() && names_vulnerability(st, finding) && applies_to(st, finding, image)
}

fn names_vulnerability(st: &VexStatement, f: &Finding) -> bool {
    let st_ids = std::iter::once(&st.vulnerability).chain(st.aliases.iter());
    let f_ids: Vec<&String> = std::iter::once(&f.id).chain(f.aliases.iter()).collect();
    st_ids
        .into_iter()
        .any(|s| f_ids.iter().any(|i| i.eq_ignore_ascii_case(s)))
}

/// Whether a product string identifies an image rather than a package.
fn is_image_product(p: &str) -> bool {
    p.starts_with("pkg:oci/") || (!p.starts_with("pkg:") && ImageRef::parse(p).is_ok())
}

fn applies_to(st: &VexStatement, f: &Finding, image: Option<&ImageRef>) -> bool {
    let (image_products, package_products): (Vec<&String>, Vec<&String>) =
        st.products.iter().partition(|p| is_image_product(p));
    if !image_products.is_empty() {
        let Some(img) = image else {
            return false; // statement limited to images, and we do not know which image this is
        };
        if !image_products.iter().any(|p| product_names_image(p, img)) {
            return false;
        }
    }
    let packages: &[String] = if !st.subcomponents.is_empty() {
        &st.subcomponents
    } else {
        // Products that are packages narrow the statement to those packages.
        return package_products.is_empty()
            || package_products.iter().any(|p| purl_names_package(p, f));
    };
    packages.iter().any(|p| purl_names_package(p, f))
}

fn product_names_image(p: &str, img: &ImageRef) -> bool {
    if let Some(rest) = p.strip_prefix("pkg:oci/") {
        // pkg:oci/<name>@<url-encoded digest>?repository_url=<registry/repo>&tag=...
        let decoded = rest.replace("%3A", ":").replace("%3a", ":");
        let (path, query) = decoded.split_once('?').unwrap_or((&decoded, ""));
        let (name, version) = path.split_once('@').unwrap_or((path, ""));
        if !version.is_empty() {
            return img.digest.as_deref() == Some(version);
        }
        let repo_url = query
            .split('&')
            .find_map(|kv| kv.strip_prefix("repository_url="));
        return match repo_url {
            Some(u) => {
                let u = u.replace("%2F", "/").replace("%2f", "/");
                u == img.name() || u == img.repository
            }
            None => img.repository.rsplit('/').next() == Some(name),
        };
    }
    match ImageRef::parse(p) {
        Ok(r) => match (&r.digest, &img.digest) {
            (Some(a), Some(b)) => a == b,
            (Some(_), None) => false,
            (None, _) => r.name() == img.name() && (r.tag.is_none() || r.tag == img.tag),
        },
        Err(_) => false,
    }
}

/// Splits a purl into (`type/namespace/name` lowercase-compared part, version).
fn purl_core(p: &str) -> Option<(String, Option<String>)> {
    let rest = p.strip_prefix("pkg:")?;
    let rest = rest.split(['?', '#']).next().unwrap_or(rest);
    let (name, version) = match rest.rsplit_once('@') {
        Some((n, v)) => (n, Some(v.replace("%2B", "+").replace("%2b", "+"))),
        None => (rest, None),
    };
    Some((name.replace("%40", "@").replace("%2F", "/"), version))
}

fn purl_names_package(p: &str, f: &Finding) -> bool {
    let Some((name, version)) = purl_core(p) else {
        // Not a purl: a plain package name.
        return p == f.package.name;
    };
    let version_ok = |v: Option<&str>| match (&version, v) {
        (None, _) => true,
        (Some(want), Some(have)) => {
            want == have || want.trim_start_matches('v') == have.trim_start_matches('v')
        }
        (Some(_), None) => false,
    };
    if let Some(fp) = f.package.purl.as_deref().and_then(purl_core) {
        return fp.0 == name && version_ok(fp.1.as_deref().or(f.package.version.as_deref()));
    }
    // No purl on the finding: compare `namespace/name` (after the type) with the package name.
    let bare = name.split_once('/').map(|(_, n)| n).unwrap_or(&name);
    let last = bare.rsplit('/').next().unwrap_or(bare);
    (bare == f.package.name || last == f.package.name) && version_ok(f.package.version.as_deref())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Package, VexStatus};

    fn finding(id: &str, purl: &str, name: &str, version: &str) -> Finding {
        Finding {
            id: id.into(),
            package: Package {
                name: name.into(),
                version: Some(version.into()),
                purl: (!purl.is_empty()).then(|| purl.into()),
                kind: None,
            },
            ..Finding::default()
        }
    }

    fn st(id: &str, products: &[&str], subs: &[&str], status: VexStatus) -> VexStatement {
        VexStatement {
            vulnerability: id.into(),
            aliases: vec![],
            products: products.iter().map(|s| s.to_string()).collect(),
            subcomponents: subs.iter().map(|s| s.to_string()).collect(),
            status,
            justification: None,
        }
    }

    const D: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";

    #[test]
    fn not_affected_with_subcomponent_suppresses_that_package_only() {
        let s = st(
            "CVE-2022-23628",
            &["pkg:golang/github.com/testdata/testdata"],
            &["pkg:golang/github.com/open-policy-agent/opa@v0.35.0"],
            VexStatus::NotAffected,
        );
        let hit = finding(
            "CVE-2022-23628",
            "pkg:golang/github.com/open-policy-agent/opa@v0.35.0",
            "github.com/open-policy-agent/opa",
            "v0.35.0",
        );
        let other_version = finding(
            "CVE-2022-23628",
            "pkg:golang/github.com/open-policy-agent/opa@v0.36.0",
            "github.com/open-policy-agent/opa",
            "v0.36.0",
        );
        assert!(suppresses(&s, &hit, None));
        assert!(!suppresses(&s, &other_version, None));
    }

    #[test]
    fn affected_and_under_investigation_do_not_suppress() {
        let f = finding("CVE-1", "", "openssl", "1.0");
        assert!(!suppresses(
            &st("CVE-1", &[], &[], VexStatus::Affected),
            &f,
            None
        ));
        assert!(!suppresses(
            &st("CVE-1", &[], &[], VexStatus::UnderInvestigation),
            &f,
            None
        ));
        assert!(suppresses(
            &st("CVE-1", &[], &[], VexStatus::Fixed),
            &f,
            None
        ));
    }

    #[test]
    fn image_products_must_name_this_image() {
        let img = ImageRef::parse(&format!("example.com/app@{D}")).unwrap();
        let other = ImageRef::parse("example.com/other:v1").unwrap();
        let f = finding("CVE-1", "", "openssl", "1.0");
        let s = st(
            "CVE-1",
            &[&format!("pkg:oci/app@{}", D.replace(':', "%3A"))],
            &[],
            VexStatus::NotAffected,
        );
        assert!(suppresses(&s, &f, Some(&img)));
        assert!(!suppresses(&s, &f, Some(&other)));
        assert!(!suppresses(&s, &f, None));
    }

    #[test]
    fn alias_matches() {
        let mut f = finding("GHSA-xxxx", "", "x", "1");
        f.aliases = vec!["CVE-9".into()];
        assert!(suppresses(
            &st("CVE-9", &[], &[], VexStatus::NotAffected),
            &f,
            None
        ));
    }
}
