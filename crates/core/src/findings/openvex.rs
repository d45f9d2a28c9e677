//! OpenVEX documents (`@context: https://openvex.dev/ns/...`), bare or as an in-toto predicate.
//!
//! Mapping per `statements[]`: vulnerability = `vulnerability.name`, else `vulnerability["@id"]`
//! (v0.2 objects), or the plain string of older documents; aliases = `vulnerability.aliases` (and the
//! `@id` when a name is given and the `@id` is an id rather than a URL); products = `products[]["@id"]`
//! (plain strings in older documents) plus their `identifiers.purl`; subcomponents = every product's
//! `subcomponents[]["@id"]` plus the statement-level `subcomponents` of older documents; status and
//! justification as given (an unknown status is an error).

use serde::Deserialize;
use serde_json::Value;

use super::common::{self, non_empty, push_alias, Fail};
use crate::model::{VexStatement, VexStatus};

/// The `@context` prefix of OpenVEX documents.
pub(crate) const CONTEXT_PREFIX: &str = "https://openvex.dev/ns";

#[derive(Debug, Deserialize)]
struct Document {
    #[serde(rename = "@context")]
    context: Value,
    #[serde(default)]
    statements: Option<Vec<Statement>>,
}

#[derive(Debug, Deserialize)]
struct Statement {
    vulnerability: VulnerabilityRef,
    #[serde(default)]
    products: Option<Vec<ProductRef>>,
    #[serde(default)]
    subcomponents: Option<Vec<ProductRef>>,
    status: VexStatus,
    #[serde(default)]
    justification: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum VulnerabilityRef {
    Id(String),
    Object {
        #[serde(rename = "@id", default)]
        id: Option<String>,
        #[serde(default)]
        name: Option<String>,
        #[serde(default)]
        aliases: Option<Vec<String>>,
    },
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum ProductRef {
    Id(String),
    Object {
        #[serde(rename = "@id", default)]
        id: Option<String>,
        #[serde(default)]
        identifiers: Option<Identifiers>,
        #[serde(default)]
        subcomponents: Option<Vec<ProductRef>>,
    },
}

#[derive(Debug, Deserialize)]
struct Identifiers {
    #[serde(default)]
    purl: Option<String>,
}

impl ProductRef {
    /// The product's own names: `@id` and `identifiers.purl`.
    fn names(&self, out: &mut Vec<String>) {
        let (id, purl) = match self {
            ProductRef::Id(s) => (Some(s.as_str()), None),
            ProductRef::Object {
                id, identifiers, ..
            } => (
                id.as_deref(),
                identifiers.as_ref().and_then(|i| i.purl.as_deref()),
            ),
        };
        for name in [id, purl].into_iter().flatten() {
            let name = name.trim();
            if !name.is_empty() && !out.iter().any(|o| o == name) {
                out.push(name.to_string());
            }
        }
    }
}

/// Whether an `@context` value (a string, or an array of them) is OpenVEX's.
pub(crate) fn is_openvex_context(context: &Value) -> bool {
    match context {
        Value::String(s) => s.trim().starts_with(CONTEXT_PREFIX),
        Value::Array(items) => items.iter().any(|c| {
            c.as_str()
                .is_some_and(|s| s.trim().starts_with(CONTEXT_PREFIX))
        }),
        _ => false,
    }
}

pub(crate) fn parse_slice(bytes: &[u8]) -> Result<Vec<VexStatement>, Fail> {
    convert(common::from_slice(bytes)?)
}

pub(crate) fn parse_value(value: &Value) -> Result<Vec<VexStatement>, Fail> {
    convert(common::from_value(value)?)
}

fn convert(doc: Document) -> Result<Vec<VexStatement>, Fail> {
    if !is_openvex_context(&doc.context) {
        return Err(Fail::new(
            "$[\"@context\"]",
            format!(
                "@context {} is not OpenVEX's ({CONTEXT_PREFIX}/...)",
                doc.context
            ),
        ));
    }
    let mut out = Vec::new();
    for (i, s) in doc.statements.unwrap_or_default().into_iter().enumerate() {
        let mut aliases = Vec::new();
        let vulnerability = match s.vulnerability {
            VulnerabilityRef::Id(id) => non_empty(Some(&id)),
            VulnerabilityRef::Object {
                id,
                name,
                aliases: listed,
            } => {
                let primary = non_empty(name.as_deref()).or_else(|| non_empty(id.as_deref()));
                if let Some(primary) = &primary {
                    for a in listed.iter().flatten() {
                        push_alias(&mut aliases, primary, a);
                    }
                    if let Some(id) = id.as_deref().filter(|id| !id.contains("://")) {
                        push_alias(&mut aliases, primary, id);
                    }
                }
                primary
            }
        };
        let Some(vulnerability) = vulnerability else {
            return Err(Fail::new(
                format!("$.statements[{i}].vulnerability"),
                "statement names no vulnerability (no name or @id)",
            ));
        };
        let mut products = Vec::new();
        let mut subcomponents = Vec::new();
        for p in s.products.iter().flatten() {
            p.names(&mut products);
            if let ProductRef::Object {
                subcomponents: Some(subs),
                ..
            } = p
            {
                for sub in subs {
                    sub.names(&mut subcomponents);
                }
            }
        }
        for sub in s.subcomponents.iter().flatten() {
            sub.names(&mut subcomponents);
        }
        out.push(VexStatement {
            vulnerability,
            aliases,
            products,
            subcomponents,
            status: s.status,
            justification: non_empty(s.justification.as_deref()),
        });
    }
    Ok(out)
}
