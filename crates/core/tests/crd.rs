//! The `SecurityRule` custom resource definition generated from the rule types (feature `crd`).
#![cfg(feature = "crd")]

use kube::CustomResourceExt;
use vulngate_core::rules::{SecurityRule, SecurityRuleDoc};

fn crd_json() -> serde_json::Value {
    serde_json::to_value(SecurityRule::crd()).expect("CRD serialises")
}

#[test]
fn crd_is_cluster_scoped_v1_with_status_and_printer_columns() {
    let crd = crd_json();
    assert_eq!(crd["metadata"]["name"], "securityrules.vulngate.io");
    assert_eq!(crd["spec"]["group"], "vulngate.io");
    assert_eq!(crd["spec"]["scope"], "Cluster");
    assert_eq!(crd["spec"]["names"]["kind"], "SecurityRule");
    let v = &crd["spec"]["versions"][0];
    assert_eq!(v["name"], "v1");
    assert_eq!(v["served"], true);
    assert_eq!(v["storage"], true);
    assert!(v["subresources"]["status"].is_object());
    let cols: Vec<&str> = v["additionalPrinterColumns"]
        .as_array()
        .expect("printer columns")
        .iter()
        .map(|c| c["name"].as_str().expect("name"))
        .collect();
    assert_eq!(cols, ["Action", "Enabled", "Accepted", "Age"]);
}

#[test]
fn crd_schema_follows_the_rule_types() {
    let crd = crd_json();
    let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
    assert_eq!(spec["required"], serde_json::json!(["action"]));
    assert_eq!(
        spec["properties"]["action"]["enum"],
        serde_json::json!(["audit", "deny"])
    );
    assert_eq!(spec["properties"]["enabled"]["default"], true);
    let cond = &spec["properties"]["conditions"]["items"]["properties"];
    for field in [
        "severity",
        "maxCount",
        "cveIds",
        "fixAvailable",
        "cvssAtLeast",
        "packages",
    ] {
        assert!(
            cond[field].is_object(),
            "conditions[].{field} in the schema"
        );
    }
    assert_eq!(
        spec["properties"]["maxReportAge"]["pattern"],
        "^([0-9]+[smhdw])+$"
    );
    let status = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"];
    for field in [
        "observedGeneration",
        "conditions",
        "expiredAllowances",
        "expiredExemptions",
    ] {
        assert!(status["properties"][field].is_object(), "status.{field}");
    }
}

#[test]
fn a_rule_file_document_is_a_valid_custom_resource_and_back() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/rules.yaml"
    ))
    .expect("examples/rules.yaml");
    let mut n = 0;
    for doc in serde_yaml_ng::Deserializer::from_str(&text) {
        let value = serde_yaml_ng::Value::deserialize(doc).expect("yaml");
        if value.is_null() {
            continue;
        }
        let cr: SecurityRule = serde_yaml_ng::from_value(value.clone()).expect("custom resource");
        let file: SecurityRuleDoc = serde_yaml_ng::from_value(value).expect("rule document");
        assert_eq!(cr.spec, file.spec);
        assert_eq!(
            cr.metadata.name.as_deref(),
            Some(file.metadata.name.as_str())
        );
        n += 1;
    }
    assert!(n >= 3, "examples/rules.yaml has several rules, read {n}");
}

use serde::Deserialize;
