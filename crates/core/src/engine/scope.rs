//! Scope selectors and resource exemptions: which rules apply to a request.

use chrono::{DateTime, Utc};

use super::RequestContext;
use crate::image::ImageRef;
use crate::rules::{is_live, ExemptionField, Op, Rule, ScopeField};

/// Values of a scope field for this request; several when a value has two spellings (the image
/// as written and normalised). `None` when the request does not have the field.
fn field_values(
    field: ScopeField,
    key: Option<&str>,
    ctx: &RequestContext,
    image: &ImageRef,
) -> Option<Vec<String>> {
    let one = |v: &Option<String>| v.as_ref().map(|s| vec![s.clone()]);
    match field {
        ScopeField::Cluster => one(&ctx.cluster),
        ScopeField::Namespace => one(&ctx.namespace),
        ScopeField::Pod => one(&ctx.pod),
        ScopeField::Deployment => one(&ctx.workload_name),
        ScopeField::Image => {
            let n = image.normalized();
            Some(if n == image.original {
                vec![n]
            } else {
                vec![image.original.clone(), n]
            })
        }
        ScopeField::Registry => Some(vec![image.registry.clone()]),
        ScopeField::Repository => {
            let mut v = vec![image.repository.clone()];
            if let Some(short) = image.repository.strip_prefix("library/") {
                if image.registry == crate::image::DEFAULT_REGISTRY {
                    v.push(short.to_string());
                }
            }
            Some(v)
        }
        ScopeField::Label => key.and_then(|k| ctx.labels.get(k)).map(|v| vec![v.clone()]),
        ScopeField::User => one(&ctx.user),
        // Several values: `equals` is membership, `notEquals` is "in none of them".
        ScopeField::Group => (!ctx.groups.is_empty()).then(|| ctx.groups.clone()),
        ScopeField::ServiceAccount => ctx.service_account().map(|s| vec![s.to_string()]),
    }
}

/// `notEquals` is the negation of `equals` over every spelling; the other operators match
/// when any spelling matches.
pub(super) fn op_matches(op: Op, values: Option<&[String]>, expected: &str) -> bool {
    match values {
        None => op.matches(None, expected),
        Some(vs) if op == Op::NotEquals => !vs.iter().any(|v| v == expected),
        Some(vs) => vs.iter().any(|v| op.matches(Some(v), expected)),
    }
}

pub(super) fn in_scope(rule: &Rule, ctx: &RequestContext, image: &ImageRef) -> bool {
    rule.spec.scope.iter().all(|s| {
        let vals = field_values(s.field, s.key.as_deref(), ctx, image);
        op_matches(s.op, vals.as_deref(), &s.value)
    })
}

fn exemption_scope_field(f: ExemptionField) -> Option<ScopeField> {
    Some(match f {
        ExemptionField::Cve => return None,
        ExemptionField::Cluster => ScopeField::Cluster,
        ExemptionField::Deployment => ScopeField::Deployment,
        ExemptionField::Image => ScopeField::Image,
        ExemptionField::Namespace => ScopeField::Namespace,
        ExemptionField::Pod => ScopeField::Pod,
        ExemptionField::Registry => ScopeField::Registry,
        ExemptionField::Repository => ScopeField::Repository,
        ExemptionField::Label => ScopeField::Label,
    })
}

pub(super) fn resource_exempt(
    rule: &Rule,
    ctx: &RequestContext,
    image: &ImageRef,
    now: DateTime<Utc>,
) -> bool {
    rule.spec.exemptions.iter().any(|e| {
        let Some(field) = exemption_scope_field(e.field) else {
            return false;
        };
        is_live(e.valid_until, now) && {
            let vals = field_values(field, e.key.as_deref(), ctx, image);
            op_matches(e.op, vals.as_deref(), &e.value)
        }
    })
}
