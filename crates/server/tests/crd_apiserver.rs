//! Smoke test of the CRD API server used by the Kubernetes tests (`support::crd_apiserver`):
//! the real k8s.io/apiextensions-apiserver on a real etcd, driven with Debian's kubectl. A CRD
//! with a status subresource and printer columns is applied, becomes Established, and an object
//! of it goes through create, get, list, patch of spec and status, server-side apply, restart of
//! the API server (the object survives in etcd) and delete. Missing tools fail the test (run
//! `scripts/install-test-tools.sh`).

mod support;

use serde_json::Value;
use support::crd_apiserver::CrdApiServer;

const CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.test.vulngate.io
spec:
  group: test.vulngate.io
  scope: Cluster
  names: { plural: widgets, singular: widget, kind: Widget, shortNames: [wdg] }
  versions:
  - name: v1
    served: true
    storage: true
    subresources: { status: {} }
    additionalPrinterColumns:
    - { name: Size, type: integer, jsonPath: .spec.size }
    - { name: Phase, type: string, jsonPath: .status.phase }
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              size: { type: integer, minimum: 1 }
              color: { type: string }
          status:
            type: object
            properties:
              phase: { type: string }
"#;

const WIDGET: &str = r#"
apiVersion: test.vulngate.io/v1
kind: Widget
metadata: { name: w1, labels: { team: shop } }
spec: { size: 3, color: blue }
"#;

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

#[test]
fn crds_and_custom_objects_through_kubectl_survive_an_apiserver_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut api = CrdApiServer::start(dir.path());

    // discovery: /api has no resources, /apis lists apiextensions.k8s.io
    let core = json(&api.kubectl_ok(&["get", "--raw", "/api/v1"]));
    assert_eq!(core["resources"], serde_json::json!([]));
    let groups = json(&api.kubectl_ok(&["get", "--raw", "/apis"]));
    let names: Vec<&str> = groups["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .filter_map(|g| g["name"].as_str())
        .collect();
    assert!(names.contains(&"apiextensions.k8s.io"), "{groups}");
    assert!(!names.contains(&"test.vulngate.io"), "{groups}");

    // the CRD
    let out = api.kubectl_apply(CRD);
    assert!(
        out.contains(
            "customresourcedefinition.apiextensions.k8s.io/widgets.test.vulngate.io created"
        ),
        "{out}"
    );
    api.kubectl_ok(&[
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/widgets.test.vulngate.io",
    ]);
    let groups = json(&api.kubectl_ok(&["get", "--raw", "/apis"]));
    let group = groups["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .find(|g| g["name"] == "test.vulngate.io")
        .unwrap_or_else(|| panic!("test.vulngate.io not in /apis: {groups}"));
    assert_eq!(
        group["preferredVersion"]["groupVersion"],
        "test.vulngate.io/v1"
    );
    // (`kubectl api-resources` exits 1 here: core/v1 has no resources on this server)
    let resources: Value =
        serde_json::from_str(&api.kubectl_ok(&["get", "--raw", "/apis/test.vulngate.io/v1"]))
            .expect("APIResourceList");
    let widgets = resources["resources"]
        .as_array()
        .and_then(|rs| rs.iter().find(|r| r["name"] == "widgets"))
        .unwrap_or_else(|| panic!("widgets not discovered: {resources}"));
    assert_eq!(widgets["kind"], "Widget");
    assert_eq!(widgets["namespaced"], false);
    assert_eq!(widgets["shortNames"], serde_json::json!(["wdg"]));

    // create, get (printer columns), list
    let out = api.kubectl_apply(WIDGET);
    assert!(out.contains("widget.test.vulngate.io/w1 created"), "{out}");
    let table = api.kubectl_ok(&["get", "widgets"]);
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert_eq!(header, ["NAME", "SIZE", "PHASE"], "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["w1", "3"]),
        "{table}"
    );
    let list = json(&api.kubectl_ok(&["get", "wdg", "-o", "json"]));
    assert_eq!(list["items"].as_array().map(Vec::len), Some(1), "{list}");
    assert_eq!(list["items"][0]["spec"]["color"], "blue");
    assert_eq!(list["items"][0]["metadata"]["labels"]["team"], "shop");

    // schema validation is the server's: size must be >= 1
    let out = api.kubectl(&[
        "patch",
        "widget",
        "w1",
        "--type=merge",
        "-p",
        r#"{"spec":{"size":0}}"#,
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("spec.size") && err.contains("should be greater than or equal to 1"),
        "{err}"
    );

    // the status subresource: a status patch on the main resource is ignored, on /status it sticks
    api.kubectl_ok(&[
        "patch",
        "widget",
        "w1",
        "--type=merge",
        "-p",
        r#"{"status":{"phase":"Ignored"}}"#,
    ]);
    let w = json(&api.kubectl_ok(&["get", "widget", "w1", "-o", "json"]));
    assert_eq!(w["status"], Value::Null, "{w}");
    api.kubectl_ok(&[
        "patch",
        "widget",
        "w1",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"phase":"Ready"}}"#,
    ]);
    let w = json(&api.kubectl_ok(&["get", "widget", "w1", "-o", "json"]));
    assert_eq!(w["status"]["phase"], "Ready", "{w}");
    assert_eq!(w["spec"]["size"], 3);
    let generation = w["metadata"]["generation"].as_i64().expect("generation");

    // server-side apply by another field manager changes spec and bumps the generation
    let out = api.kubectl_with_stdin(
        &["apply", "--server-side", "--validate=false", "--field-manager=vulngate-test", "--force-conflicts", "-f", "-"],
        "apiVersion: test.vulngate.io/v1\nkind: Widget\nmetadata: { name: w1 }\nspec: { size: 5 }\n",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let w = json(&api.kubectl_ok(&["get", "widget", "w1", "-o", "json", "--show-managed-fields"]));
    assert_eq!(w["spec"]["size"], 5, "{w}");
    assert!(
        w["metadata"]["generation"].as_i64() > Some(generation),
        "{w}"
    );
    let managers: Vec<&str> = w["metadata"]["managedFields"]
        .as_array()
        .expect("managedFields")
        .iter()
        .filter_map(|m| m["manager"].as_str())
        .collect();
    assert!(managers.contains(&"vulngate-test"), "{managers:?}");
    let rv_before = w["metadata"]["resourceVersion"]
        .as_str()
        .expect("rv")
        .to_string();

    // restart the API server on the same etcd: CRD, object and status are still there
    api.restart_apiserver();
    api.kubectl_ok(&[
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/widgets.test.vulngate.io",
    ]);
    let w = json(&api.kubectl_ok(&["get", "widget", "w1", "-o", "json"]));
    assert_eq!(w["spec"]["size"], 5, "{w}");
    assert_eq!(w["status"]["phase"], "Ready", "{w}");
    assert_eq!(w["metadata"]["resourceVersion"], rv_before.as_str(), "{w}");

    // delete
    let out = api.kubectl_ok(&["delete", "widget", "w1"]);
    assert!(
        out.contains("widget.test.vulngate.io \"w1\" deleted"),
        "{out}"
    );
    let list = json(&api.kubectl_ok(&["get", "widgets", "-o", "json"]));
    assert_eq!(list["items"], serde_json::json!([]), "{list}");
    let out = api.kubectl(&["get", "widget", "w1"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("NotFound")
            || String::from_utf8_lossy(&out.stderr).contains("not found"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A watch through kubectl sees changes as they happen: ADDED, MODIFIED (status), DELETED.
#[test]
fn kubectl_watch_sees_changes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let api = CrdApiServer::start(dir.path());
    api.kubectl_apply(CRD);
    api.kubectl_ok(&[
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/widgets.test.vulngate.io",
    ]);
    // a sentinel object: its ADDED event (from the initial list) shows the watch is running, so
    // every later change arrives as a watch event
    api.kubectl_apply(&WIDGET.replace("name: w1", "name: sentinel"));
    let mut watch = api
        .kubectl_command()
        .args([
            "get",
            "widgets",
            "--watch",
            "--output-watch-events",
            "-o",
            "json",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("kubectl get --watch");
    let stdout = watch.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel::<Value>();
    std::thread::spawn(move || {
        for ev in serde_json::Deserializer::from_reader(stdout).into_iter::<Value>() {
            let Ok(ev) = ev else { break };
            if tx.send(ev).is_err() {
                break;
            }
        }
    });
    let next = || {
        rx.recv_timeout(std::time::Duration::from_secs(60))
            .expect("a watch event from kubectl")
    };
    let first = next();
    assert_eq!(first["type"], "ADDED", "{first}");
    assert_eq!(first["object"]["metadata"]["name"], "sentinel", "{first}");

    api.kubectl_apply(WIDGET);
    api.kubectl_ok(&[
        "patch",
        "widget",
        "w1",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"phase":"Ready"}}"#,
    ]);
    api.kubectl_ok(&["delete", "widget", "w1"]);
    let events = [next(), next(), next()];
    let _ = watch.kill();
    let _ = watch.wait();
    let seen: Vec<(String, String, String)> = events
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap_or_default().to_string(),
                e["object"]["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                e["object"]["status"]["phase"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect();
    let expected = [
        ("ADDED", "w1", ""),
        ("MODIFIED", "w1", "Ready"),
        ("DELETED", "w1", "Ready"),
    ]
    .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()));
    assert_eq!(seen, expected, "{events:?}");
}
