//! `POST /mutate` (digest pinning), in process: tag references of Pods, Deployments and
//! CronJobs (containers, init and ephemeral containers) pinned to the digests a real
//! docker-registry resolves (or a findings index entry's `digest:`), the JSONPatch applied
//! with the json-patch crate, digests and unresolvable images left alone, the findings cache
//! shared with `/validate`, `pinDigests: false`, and the same 400s as `/validate`.

#![allow(clippy::unwrap_used)] // helpers outside #[test] functions

mod support;

#[path = "../../registry/tests/support/mod.rs"]
mod registry_support;

use axum::http::StatusCode;
use base64::Engine as _;
use serde_json::{json, Value};
use support::{
    create, harness, harness_with, post_raw, review, workload, TestSource, CENTOS, DEBIAN,
    DEBIAN_DIGEST, RULES,
};
use vulngate_server::Server;

const REPORT_TYPE: &str = "application/vnd.vulngate.report+json";

/// The AdmissionResponse of `/mutate` for `review`, and its patch decoded (None: no patch).
async fn mutate(server: &Server, review: &Value) -> (Value, Option<json_patch::Patch>) {
    let (status, body) = post_raw(
        server,
        "/mutate?timeout=10s",
        serde_json::to_vec(review).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    // Not through kube's `AdmissionReview`: its `patch` reads only a list of numbers, while the
    // API server's field is base64 (kube-rs/kube#1781); the harness test has the Go reader.
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(v["kind"], "AdmissionReview");
    let resp = v["response"].clone();
    assert_eq!(resp["uid"], review["request"]["uid"]);
    assert_eq!(resp["allowed"], true, "{resp}");
    let patch = resp.get("patch").map(|p| {
        assert_eq!(resp["patchType"], "JSONPatch");
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(p.as_str().expect("patch is a base64 string"))
            .unwrap();
        serde_json::from_slice::<json_patch::Patch>(&bytes).unwrap()
    });
    if patch.is_none() {
        assert!(resp.get("patchType").is_none(), "{resp}");
    }
    (resp, patch)
}

/// `object` with `patch` applied (the json-patch crate, as the API server applies it).
fn apply(object: &Value, patch: &json_patch::Patch) -> Value {
    let mut doc = object.clone();
    json_patch::patch(&mut doc, patch).unwrap();
    // Still an object the webhook (and the API server's types) read.
    vulngate_core::workload::extract(&doc).unwrap();
    serde_json::from_slice(&serde_json::to_vec(&doc).unwrap()).unwrap()
}

/// The pod spec of `object` (by kind).
fn pod_spec(object: &mut Value) -> &mut Value {
    let ptr = match object["kind"].as_str().unwrap() {
        "Pod" => "/spec",
        "CronJob" => "/spec/jobTemplate/spec/template/spec",
        _ => "/spec/template/spec",
    };
    object.pointer_mut(ptr).unwrap()
}

/// The images of `object`'s `list` (containers, initContainers, ephemeralContainers).
fn images(object: &Value, list: &str) -> Vec<String> {
    let mut o = object.clone();
    pod_spec(&mut o)[list]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|c| c["image"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// An object of `kind` with init, regular and ephemeral containers.
fn object(kind: &str, ns: &str, init: &[&str], containers: &[&str], ephemeral: &[&str]) -> Value {
    let mut o = workload(kind, "web", ns, containers);
    let list = |images: &[&str], prefix: &str| {
        images
            .iter()
            .enumerate()
            .map(|(i, im)| json!({ "name": format!("{prefix}{i}"), "image": im }))
            .collect::<Vec<_>>()
    };
    let spec = pod_spec(&mut o);
    spec["initContainers"] = json!(list(init, "init"));
    spec["ephemeralContainers"] = json!(list(ephemeral, "debug"));
    o
}

/// A docker-registry with images, and vulngate looking findings up there.
struct Env {
    reg: registry_support::Registry,
    _dir: tempfile::TempDir,
    server: Server,
    /// (reference, digest): a report attached.
    scanned: (String, String),
    /// No report: the digest is still known.
    unscanned: (String, String),
    init: (String, String),
    debug: (String, String),
    /// A multi-platform index: pinned to the index digest.
    multi: (String, String),
}

impl Env {
    async fn start(tweak: impl FnOnce(&mut vulngate_server::Config) + Send + 'static) -> Env {
        tokio::task::spawn_blocking(move || {
            let reg = registry_support::Registry::start(registry_support::Kind::Distribution);
            let push = |tag: &str| (format!("{}/app:{tag}", reg.host), reg.push_image(tag, tag));
            let scanned = push("scanned");
            reg.oras_attach(
                &scanned.1,
                REPORT_TYPE,
                &support::fixture("trivy/alpine-310.json"),
                None,
            );
            let unscanned = push("unscanned");
            let init = push("init");
            let debug = push("debug");
            let (index, _, _) = reg.push_multiarch("multi");
            let multi = (format!("{}/app:multi", reg.host), index);
            let dir = tempfile::tempdir().unwrap();
            let mut cfg = support::config(dir.path(), Some(RULES));
            cfg.registry = Some(vulngate_registry::RegistryConfig {
                insecure_registries: vec![reg.host.clone()],
                ..Default::default()
            });
            tweak(&mut cfg);
            let server = Server::from_config(cfg).unwrap();
            Env {
                reg,
                _dir: dir,
                server,
                scanned,
                unscanned,
                init,
                debug,
                multi,
            }
        })
        .await
        .unwrap()
    }

    /// A reference to a tag the registry does not have: never resolved.
    fn missing(&self) -> String {
        format!("{}/app:missing", self.reg.host)
    }
}

fn pinned(image: &(String, String)) -> String {
    format!("{}@{}", image.0, image.1)
}

/// Every tag reference of a Pod, a Deployment and a CronJob (init, regular and ephemeral
/// containers) is pinned to the digest the registry resolved; a reference that already has a
/// digest and one the registry does not know are left as written; the patch holds exactly
/// one `test` and one `replace` per pinned container, and applied it yields the object with
/// the pinned images.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tag_references_are_pinned_to_the_resolved_digests() {
    let env = Env::start(|_| {}).await;
    let already = pinned(&env.scanned); // a digest reference: left alone
    let missing = env.missing();
    for kind in ["Pod", "Deployment", "CronJob"] {
        let obj = object(
            kind,
            "prod-shop",
            &[&env.init.0],
            &[
                &env.scanned.0,
                &already,
                &env.unscanned.0,
                &missing,
                &env.multi.0,
                &env.scanned.0, // the same image twice: looked up once, pinned twice
            ],
            &[&env.debug.0],
        );
        let (_, patch) = mutate(&env.server, &create(&obj)).await;
        let patch = patch.unwrap_or_else(|| panic!("{kind}: no patch"));
        let spec = match kind {
            "Pod" => "/spec",
            "CronJob" => "/spec/jobTemplate/spec/template/spec",
            _ => "/spec/template/spec",
        };
        // Exactly the tag references the registry resolved, each tested then replaced.
        let want: Vec<(String, String, String)> = [
            ("initContainers/0", &env.init.0, pinned(&env.init)),
            ("containers/0", &env.scanned.0, pinned(&env.scanned)),
            ("containers/2", &env.unscanned.0, pinned(&env.unscanned)),
            ("containers/4", &env.multi.0, pinned(&env.multi)),
            ("containers/5", &env.scanned.0, pinned(&env.scanned)),
            ("ephemeralContainers/0", &env.debug.0, pinned(&env.debug)),
        ]
        .into_iter()
        .map(|(p, from, to)| (format!("{spec}/{p}/image"), from.clone(), to))
        .collect();
        let ops = serde_json::to_value(&patch).unwrap();
        let ops = ops.as_array().unwrap();
        assert_eq!(ops.len(), want.len() * 2, "{kind}: {ops:?}");
        for (pair, (path, from, to)) in ops.chunks(2).zip(&want) {
            assert_eq!(
                pair[0],
                json!({ "op": "test", "path": path, "value": from }),
                "{kind}"
            );
            assert_eq!(
                pair[1],
                json!({ "op": "replace", "path": path, "value": to }),
                "{kind}"
            );
        }
        let out = apply(&obj, &patch);
        assert_eq!(
            images(&out, "initContainers"),
            [pinned(&env.init)],
            "{kind}"
        );
        assert_eq!(
            images(&out, "containers"),
            [
                pinned(&env.scanned),
                already.clone(),
                pinned(&env.unscanned),
                missing.clone(),
                pinned(&env.multi),
                pinned(&env.scanned),
            ],
            "{kind}"
        );
        assert_eq!(
            images(&out, "ephemeralContainers"),
            [pinned(&env.debug)],
            "{kind}"
        );
        // Nothing else changed.
        let mut back = out.clone();
        for (path, from, _) in &want {
            *back.pointer_mut(path).unwrap() = json!(from);
        }
        assert_eq!(back, obj, "{kind}");
        // The pinned object again (what a reinvocation sends): nothing left to pin but the
        // unresolvable image, so no patch.
        let (_, again) = mutate(&env.server, &create(&out)).await;
        assert!(again.is_none(), "{kind}: {again:?}");
    }
    let pins = env.server.metrics().pins();
    assert_eq!(pins.images("pinned"), 18);
    assert_eq!(pins.images("unresolved"), 6); // `missing`, three times each round
    assert_eq!(pins.requests("patched"), 3);
    assert_eq!(pins.requests("unchanged"), 3);
}

/// `/mutate` looks images up through the findings cache `/validate` uses: a warm request
/// looks nothing up, and the validating call on the pinned object finds the pinned
/// references cached (the findings of the digest the tag resolved to), judging what runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_findings_cache_is_shared_with_validate() {
    let env = Env::start(|_| {}).await;
    let m = env.server.metrics().clone();
    let obj = object("Deployment", "dev-shop", &[], &[&env.scanned.0], &[]);
    let (_, patch) = mutate(&env.server, &create(&obj)).await;
    let out = apply(&obj, &patch.unwrap());
    assert_eq!(images(&out, "containers"), [pinned(&env.scanned)]);
    let misses = m.cache_misses();
    assert_eq!(misses, 1);
    // Warm: the same request again is answered from the cache, with the same patch.
    let (_, again) = mutate(&env.server, &create(&obj)).await;
    assert_eq!(apply(&obj, &again.unwrap()), out);
    assert_eq!(m.cache_misses(), misses);
    // The validating call on the pinned object: no lookup, the digest's findings (4 medium in
    // alpine-310: allowed, no warning but the registry's note on unsigned reports).
    let resp = support::admit(&env.server, &create(&out)).await;
    assert!(resp.allowed);
    assert_eq!(m.cache_misses(), misses);
    assert!(
        support::warnings(&resp)
            .iter()
            .all(|w| w.contains("no trust policy configured")),
        "{:?}",
        resp.warnings
    );
}

/// A findings index entry's `digest:` pins its image; an entry without one (and an image
/// with no entry) cannot be resolved and is left as written.
#[tokio::test]
async fn a_findings_index_digest_pins_its_image() {
    let h = harness(RULES);
    let obj = object(
        "Pod",
        "shop",
        &[],
        &[DEBIAN, CENTOS, "example.com/none:1"],
        &[],
    );
    let (_, patch) = mutate(&h.server, &create(&obj)).await;
    let out = apply(&obj, &patch.unwrap());
    assert_eq!(
        images(&out, "containers"),
        [
            format!("{DEBIAN}@{DEBIAN_DIGEST}"),
            CENTOS.to_string(),
            "example.com/none:1".to_string()
        ]
    );
}

/// Nothing to pin: `pinDigests: false`, an excluded namespace, an UPDATE that changes no
/// image, a kind that is not gated, a source that fails, a skipped image: allowed, no patch.
#[tokio::test]
async fn requests_left_alone_are_allowed_without_a_patch() {
    let obj = object("Deployment", "shop", &[], &[DEBIAN], &[]);
    // The same review pins with the defaults (so each case below is a real difference).
    let h = harness(RULES);
    assert!(mutate(&h.server, &create(&obj)).await.1.is_some());

    let off = harness_with(RULES, TestSource::new(), |c| c.pin_digests = false);
    let (resp, patch) = mutate(&off.server, &create(&obj)).await;
    assert!(patch.is_none(), "{resp}");
    assert_eq!(off.source.calls(), 0, "pinDigests: false looks nothing up");
    // /validate is not affected by the switch.
    assert!(support::admit(&off.server, &create(&obj)).await.allowed);

    let mut excluded = obj.clone();
    excluded["metadata"]["namespace"] = json!("kube-system");
    let mut rv = create(&excluded);
    rv["request"]["namespace"] = json!("kube-system");
    assert!(mutate(&h.server, &rv).await.1.is_none());

    let old = object("Deployment", "shop", &[], &[DEBIAN], &[]);
    let mut relabelled = old.clone();
    relabelled["metadata"]["labels"] = json!({ "team": "a" });
    assert!(
        mutate(&h.server, &review("UPDATE", &relabelled, Some(&old)))
            .await
            .1
            .is_none()
    );
    // An UPDATE that changes an image is pinned.
    let newer = object("Deployment", "shop", &[], &[DEBIAN, CENTOS], &[]);
    assert!(mutate(&h.server, &review("UPDATE", &newer, Some(&old)))
        .await
        .1
        .is_some());

    let mut cm = create(&obj);
    cm["request"]["kind"]["kind"] = json!("ConfigMap");
    assert!(mutate(&h.server, &cm).await.1.is_none());

    let failing = harness_with(
        RULES,
        std::sync::Arc::new(TestSource::with(true, false, None)),
        |_| {},
    );
    assert!(mutate(&failing.server, &create(&obj)).await.1.is_none());

    let skipped = harness_with(RULES, TestSource::new(), |c| {
        c.skip_images = vec!["registry.example.com/team/*".into()]
    });
    assert!(mutate(&skipped.server, &create(&obj)).await.1.is_none());
    assert_eq!(skipped.source.calls(), 0);

    // An object that cannot be read: left to the validating call's failure policy.
    let mut broken = create(&obj);
    broken["request"]["object"]["spec"]["template"]["spec"]["containers"] = json!("nginx");
    assert!(mutate(&h.server, &broken).await.1.is_none());
}

/// Malformed requests get exactly the 400 (status and message) `/validate` gives.
#[tokio::test]
async fn malformed_reviews_get_the_same_400_as_validate() {
    let h = harness(RULES);
    let good = create(&object("Pod", "shop", &[], &[DEBIAN], &[]));
    let mut cases: Vec<(&str, Vec<u8>)> = vec![
        ("/mutate", b"{not json".to_vec()),
        ("/mutate", b"[]".to_vec()),
        (
            "/mutate",
            br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#.to_vec(),
        ),
        ("/mutate?timeout=banana", serde_json::to_vec(&good).unwrap()),
    ];
    let with = |f: &dyn Fn(&mut Value)| {
        let mut v = good.clone();
        f(&mut v);
        serde_json::to_vec(&v).unwrap()
    };
    cases.push(("/mutate", with(&|v| v["request"]["uid"] = json!(""))));
    cases.push((
        "/mutate",
        with(&|v| v["apiVersion"] = json!("admission.k8s.io/v1beta1")),
    ));
    cases.push((
        "/mutate",
        with(&|v| v["request"]["object"]["kind"] = json!("Deployment")),
    ));
    for (uri, body) in cases {
        let (status, text) = post_raw(&h.server, uri, body.clone()).await;
        let validate_uri = uri.replace("/mutate", "/validate");
        let (vstatus, vtext) = post_raw(&h.server, &validate_uri, body).await;
        assert_eq!(
            status,
            StatusCode::BAD_REQUEST,
            "{uri}: {}",
            String::from_utf8_lossy(&text)
        );
        assert_eq!((status, &text), (vstatus, &vtext), "{uri}");
        assert!(!text.is_empty());
    }
    assert_eq!(h.server.metrics().pins().requests("invalid"), 7);
    // Too large a body: refused before it is read, like /validate.
    let big = vec![b' '; h.server.config().max_request_bytes + 1];
    let (status, _) = post_raw(&h.server, "/mutate", big).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(h.source.calls(), 0);
}

/// examples/digest-pinning: the documented patch is what `/mutate` answers for the example
/// review with the example configuration (findings index digests; a digest reference and an
/// image without an entry left alone).
#[tokio::test]
async fn the_digest_pinning_example_gives_its_documented_patch() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/digest-pinning");
    let data = tempfile::tempdir().unwrap();
    let mut cfg = vulngate_server::Config::load(&dir.join("vulngate.yaml")).unwrap();
    assert!(cfg.pin_digests);
    cfg.data_dir = data.path().to_path_buf();
    let server = Server::from_config(cfg).unwrap();
    let review: Value =
        serde_json::from_slice(&std::fs::read(dir.join("review.json")).unwrap()).unwrap();
    let want: Value =
        serde_json::from_slice(&std::fs::read(dir.join("patch.json")).unwrap()).unwrap();
    let (_, patch) = mutate(&server, &review).await;
    let patch = patch.unwrap();
    assert_eq!(serde_json::to_value(&patch).unwrap(), want);
    let out = apply(&review["request"]["object"], &patch);
    assert_eq!(
        images(&out, "containers")[1..],
        images(&review["request"]["object"], "containers")[1..]
    );
    // The validating call judges the pinned digest, and the unpinned image by its tag
    // (unscanned: blocked in prod-shop), as the worked example says.
    let mut pinned_review = review.clone();
    pinned_review["request"]["object"] = out;
    let (status, body) = post_raw(
        &server,
        "/validate?timeout=10s",
        serde_json::to_vec(&pinned_review).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let v: Value = serde_json::from_slice(&body).unwrap();
    let message = v["response"]["status"]["message"].as_str().unwrap();
    assert_eq!(v["response"]["allowed"], false);
    // The api image has a critical vulnerability: denied under its pinned reference.
    assert!(
        message.contains(&format!(
            "{}: denied by rule \"deny-critical-prod\"",
            images(&pinned_review["request"]["object"], "containers")[0]
        )),
        "{message}"
    );
    assert!(
        message.contains(
            "registry.example.com/platform/exporter:0.9: denied by rule \"deny-critical-prod\""
        ),
        "{message}"
    );
}
