//! An in-process fake of the Kubernetes API server for core resources (Pods, Secrets,
//! ServiceAccounts, Events), which no real API server on the test machine can serve.
//!
//! A `kube::Client` over a `tower::service_fn` routes requests by method and path to an
//! in-memory store of JSON objects: GET of one object, LIST (one namespace or all, paged
//! with `limit`/`continue`), POST (create). Every request is recorded; failures can be
//! injected per method and path prefix. No watches.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::{Method, Request, Response, StatusCode};
use serde_json::{json, Value};

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: Method,
    pub path: String,
    pub query: Option<String>,
    pub body: Option<Value>,
}

#[derive(Debug, Default)]
struct Store {
    /// collection path (`/api/v1/namespaces/ns/pods`) -> name -> object.
    objects: BTreeMap<String, BTreeMap<String, Value>>,
    requests: Vec<Recorded>,
    failures: Vec<(Method, String, u16)>,
}

/// The fake; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct FakeApi {
    store: Arc<Mutex<Store>>,
}

/// `Pod` -> `pods`, `ServiceAccount` -> `serviceaccounts`.
fn plural(kind: &str) -> String {
    format!("{}s", kind.to_ascii_lowercase())
}

fn group_prefix(api_version: &str) -> String {
    if api_version.contains('/') {
        format!("/apis/{api_version}")
    } else {
        format!("/api/{api_version}")
    }
}

fn status(code: u16, reason: &str, message: &str) -> (u16, Value) {
    (
        code,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": message, "reason": reason, "code": code}),
    )
}

impl FakeApi {
    pub fn new() -> FakeApi {
        FakeApi::default()
    }

    /// A client whose every request goes to this fake.
    pub fn client(&self) -> kube::Client {
        let this = self.clone();
        let svc = tower::service_fn(move |req: Request<kube::client::Body>| {
            let this = this.clone();
            async move {
                let (parts, body) = req.into_parts();
                let bytes = body.collect_bytes().await.unwrap_or_default();
                let (code, v) =
                    this.handle(parts.method, parts.uri.path(), parts.uri.query(), &bytes);
                let resp = Response::builder()
                    .status(StatusCode::from_u16(code).unwrap())
                    .header("content-type", "application/json")
                    .body(kube::client::Body::from(serde_json::to_vec(&v).unwrap()))
                    .unwrap();
                Ok::<_, Infallible>(resp)
            }
        });
        kube::Client::new(svc, "default")
    }

    /// Stores an object (JSON with apiVersion, kind, metadata.name, metadata.namespace),
    /// as is: a malformed object is served malformed.
    pub fn insert(&self, obj: Value) {
        let api = obj["apiVersion"].as_str().unwrap().to_string();
        let kind = obj["kind"].as_str().unwrap().to_string();
        let name = obj["metadata"]["name"].as_str().unwrap().to_string();
        let ns = obj["metadata"]["namespace"].as_str().map(str::to_string);
        let coll = match ns {
            Some(ns) => format!("{}/namespaces/{ns}/{}", group_prefix(&api), plural(&kind)),
            None => format!("{}/{}", group_prefix(&api), plural(&kind)),
        };
        let mut s = self.store.lock().unwrap();
        s.objects.entry(coll).or_default().insert(name, obj);
    }

    /// Removes every object of `kind` (e.g. to replace the pod set between scans).
    pub fn clear_kind(&self, kind: &str) {
        let suffix = format!("/{}", plural(kind));
        let mut s = self.store.lock().unwrap();
        s.objects.retain(|k, _| !k.ends_with(&suffix));
    }

    /// Requests whose method is `method` and path starts with `prefix` answer `code`.
    pub fn fail(&self, method: Method, prefix: &str, code: u16) {
        self.store
            .lock()
            .unwrap()
            .failures
            .push((method, prefix.to_string(), code));
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.store.lock().unwrap().requests.clone()
    }

    /// The bodies of the successful and failed POSTs to paths ending in `/<plural>`.
    pub fn posted(&self, plural: &str) -> Vec<Value> {
        let suffix = format!("/{plural}");
        self.requests()
            .into_iter()
            .filter(|r| r.method == Method::POST && r.path.ends_with(&suffix))
            .filter_map(|r| r.body)
            .collect()
    }

    fn handle(&self, method: Method, path: &str, query: Option<&str>, body: &[u8]) -> (u16, Value) {
        let mut s = self.store.lock().unwrap();
        let body_json: Option<Value> = serde_json::from_slice(body).ok();
        s.requests.push(Recorded {
            method: method.clone(),
            path: path.to_string(),
            query: query.map(str::to_string),
            body: body_json.clone(),
        });
        if let Some((_, _, code)) = s
            .failures
            .iter()
            .find(|(m, p, _)| *m == method && path.starts_with(p.as_str()))
        {
            let code = *code;
            let reason = match code {
                403 => "Forbidden",
                404 => "NotFound",
                _ => "InternalError",
            };
            return status(code, reason, &format!("injected failure for {path}"));
        }
        let params: BTreeMap<String, String> = query
            .unwrap_or("")
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        match method {
            Method::GET => {
                // A collection (list) or one object?
                if let Some(items) = self.list(&s, path) {
                    return page(path, items, &params);
                }
                let Some((coll, name)) = path.rsplit_once('/') else {
                    return status(404, "NotFound", "not found");
                };
                match s.objects.get(coll).and_then(|m| m.get(name)) {
                    Some(o) => (200, o.clone()),
                    None => status(404, "NotFound", &format!("{name} not found")),
                }
            }
            Method::POST => {
                let Some(mut obj) = body_json else {
                    return status(400, "BadRequest", "body is not JSON");
                };
                let name = obj["metadata"]["name"].as_str().unwrap_or("").to_string();
                if name.is_empty() {
                    return status(422, "Invalid", "metadata.name required");
                }
                obj["metadata"]["uid"] = json!(format!("uid-{}", s.requests.len()));
                s.objects
                    .entry(path.to_string())
                    .or_default()
                    .insert(name, obj.clone());
                (201, obj)
            }
            _ => status(405, "MethodNotAllowed", "not supported by the fake"),
        }
    }

    /// The objects of a collection path (namespaced, or all namespaces: `/api/v1/pods`).
    fn list(&self, s: &Store, path: &str) -> Option<Vec<Value>> {
        let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        // /api/v1/<res>, /api/v1/namespaces/<ns>/<res>, /apis/<g>/<v>/<res>, .../namespaces/<ns>/<res>
        let (prefix_len, rest) = match segs.first() {
            Some(&"api") => (2, &segs[2.min(segs.len())..]),
            Some(&"apis") => (3, &segs[3.min(segs.len())..]),
            _ => return None,
        };
        let prefix = format!("/{}", segs[..prefix_len.min(segs.len())].join("/"));
        match rest {
            [res] => {
                let suffix = format!("/{res}");
                let mut items = Vec::new();
                for (k, m) in &s.objects {
                    if k.starts_with(&prefix) && k.ends_with(&suffix) {
                        items.extend(m.values().cloned());
                    }
                }
                Some(items)
            }
            ["namespaces", _, _] => Some(
                s.objects
                    .get(path)
                    .map(|m| m.values().cloned().collect())
                    .unwrap_or_default(),
            ),
            _ => None,
        }
    }
}

fn page(path: &str, items: Vec<Value>, params: &BTreeMap<String, String>) -> (u16, Value) {
    let start: usize = params
        .get("continue")
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let limit: usize = params
        .get("limit")
        .and_then(|l| l.parse().ok())
        .filter(|l| *l > 0)
        .unwrap_or(usize::MAX);
    let end = start.saturating_add(limit).min(items.len());
    let slice = items.get(start..end).unwrap_or(&[]).to_vec();
    let mut meta = json!({ "resourceVersion": "1" });
    if end < items.len() {
        meta["continue"] = json!(end.to_string());
    }
    let kind = path.rsplit('/').next().unwrap_or("");
    (
        200,
        json!({ "apiVersion": "v1", "kind": format!("{kind}List"), "metadata": meta, "items": slice }),
    )
}

/// Records how many requests (`requests()`) carried `limit` (paging evidence).
pub fn paged_requests(api: &FakeApi, path: &str) -> Vec<Option<String>> {
    api.requests()
        .into_iter()
        .filter(|r| r.method == Method::GET && r.path == path)
        .map(|r| r.query)
        .collect()
}

/// Bytes helper (keeps the import used when only some helpers are).
pub fn bytes(v: &Value) -> Bytes {
    Bytes::from(serde_json::to_vec(v).unwrap())
}
