//! One re-evaluator among replicas: two real `vulngate serve` processes elect a leader through a
//! `coordination.k8s.io/v1` Lease on a real API server (etcd + the apiextensions API server of
//! `tests/crd-apiserver`, serving Leases from a CustomResourceDefinition in that group, accepted
//! with the `api-approved.kubernetes.io` annotation). Only the leader re-evaluates; when it is
//! killed (SIGKILL: no release) the other takes over after the Lease expires; when it stops
//! normally (SIGTERM) it releases the Lease and the other takes over at once.
#![allow(clippy::unwrap_used)]

#[allow(dead_code)]
#[path = "../../server/tests/support/crd_apiserver.rs"]
mod crd_apiserver;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crd_apiserver::CrdApiServer;

const LEASE_CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: leases.coordination.k8s.io
  annotations:
    api-approved.kubernetes.io: "https://github.com/kubernetes/kubernetes/pull/61488"
spec:
  group: coordination.k8s.io
  scope: Namespaced
  names: { plural: leases, singular: lease, kind: Lease, listKind: LeaseList }
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              properties:
                holderIdentity: { type: string }
                leaseDurationSeconds: { type: integer, format: int32 }
                acquireTime: { type: string, format: date-time }
                renewTime: { type: string, format: date-time }
                leaseTransitions: { type: integer, format: int32 }
                preferredHolder: { type: string }
                strategy: { type: string }
"#;

/// The Lease duration of this test (the default is 10 s); the grace is 2 s.
const LEASE_SECONDS: u64 = 6;

struct Replica {
    child: Child,
    log: PathBuf,
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Replica {
    fn start(dir: &Path, api: &CrdApiServer, identity: &str) -> Replica {
        let data = dir.join(identity);
        std::fs::create_dir_all(&data).unwrap();
        let rules = dir.join("rules.yaml");
        std::fs::write(
            &rules,
            "apiVersion: vulngate.io/v1\nkind: SecurityRule\nmetadata: { name: audit-critical }\n\
             spec: { action: audit, conditions: [ { severity: critical, maxCount: 0 } ] }\n",
        )
        .unwrap();
        let config = data.join("vulngate.yaml");
        std::fs::write(
            &config,
            format!(
                "listen: 127.0.0.1:{port}\nrules: {rules}\nkubernetes:\n  kubeconfig: {kc}\n  \
                 rulesFrom: files\n  policyReports: false\n  events: false\n  pullSecrets: false\n  \
                 rescanInterval: 1s\n  leaderElection:\n    namespace: vulngate\n    \
                 identity: {identity}\n    leaseDuration: {LEASE_SECONDS}s\n    renewGrace: 2s\n",
                port = crd_apiserver::free_port(),
                rules = rules.display(),
                kc = api.kubeconfig_path.display(),
            ),
        )
        .unwrap();
        let log = data.join("serve.log");
        let child = Command::new(env!("CARGO_BIN_EXE_vulngate"))
            .args(["serve", "--config"])
            .arg(&config)
            .arg("--data-dir")
            .arg(&data)
            .args(["--metrics-listen", "127.0.0.1:0"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("vulngate serve starts");
        Replica { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn count(&self, needle: &str) -> usize {
        self.log().matches(needle).count()
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig}");
    }
}

const SCANS: &str = "re-evaluating running workloads";
const LEADER: &str = "this replica is the leader";
const FOLLOWER: &str = "another replica holds the Lease";

fn holder(api: &CrdApiServer) -> String {
    let out = api.kubectl(&[
        "get",
        "leases.coordination.k8s.io",
        "-n",
        "vulngate",
        "vulngate-reevaluation",
        "-o",
        "jsonpath={.spec.holderIdentity}",
    ]);
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Polls `f` every 100 ms for at most `limit`; panics with `what` and the logs otherwise.
fn eventually(what: &str, limit: Duration, logs: &[&Replica], mut f: impl FnMut() -> bool) {
    let started = Instant::now();
    while !f() {
        if started.elapsed() > limit {
            let logs: Vec<String> = logs.iter().map(|r| r.log()).collect();
            panic!(
                "{what}: not within {limit:?}\nlogs:\n{}",
                logs.join("\n----\n")
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn only_the_lease_holder_re_evaluates_and_the_other_replica_takes_over() {
    let dir = tempfile::tempdir().unwrap();
    let api = CrdApiServer::start(&dir.path().join("api"));
    api.kubectl_apply(LEASE_CRD);
    api.kubectl_ok(&[
        "wait",
        "--for=condition=Established",
        "crd/leases.coordination.k8s.io",
    ]);
    let limit = Duration::from_secs(60); // a loaded 2-core machine; the failover is measured below

    let a = Replica::start(dir.path(), &api, "replica-a");
    eventually("replica-a holds the Lease", limit, &[&a], || {
        holder(&api) == "replica-a" && a.count(LEADER) == 1
    });
    eventually("the leader re-evaluates", limit, &[&a], || {
        a.count(SCANS) >= 1
    });

    let b = Replica::start(dir.path(), &api, "replica-b");
    eventually("replica-b sees the leader", limit, &[&a, &b], || {
        b.count(FOLLOWER) >= 1
    });
    // While replica-a scans twice more (every second), replica-b, the follower, never does.
    let before = a.count(SCANS);
    eventually("the leader keeps re-evaluating", limit, &[&a, &b], || {
        a.count(SCANS) >= before + 2
    });
    assert_eq!(b.count(SCANS), 0, "a follower re-evaluated:\n{}", b.log());
    assert_eq!(holder(&api), "replica-a");

    // kill -9: the Lease is not released; replica-b takes over once it expires.
    a.signal("-KILL");
    let killed = Instant::now();
    eventually("replica-b takes over", limit, &[&a, &b], || {
        holder(&api) == "replica-b" && b.count(LEADER) == 1 && b.count(SCANS) >= 1
    });
    let failover = killed.elapsed();
    eprintln!("failover after SIGKILL of the leader: {failover:?} (Lease {LEASE_SECONDS} s)");
    // Not a timing assertion on speed: the takeover cannot happen before the Lease expired.
    assert!(
        failover >= Duration::from_secs(LEASE_SECONDS - 2),
        "replica-b took a Lease that had not expired ({failover:?})"
    );
    drop(a);

    // A normal stop (SIGTERM) releases the Lease: the waiting replica takes over at once, long
    // before the Lease would have expired.
    let c = Replica::start(dir.path(), &api, "replica-c");
    eventually("replica-c follows", limit, &[&b, &c], || {
        c.count(FOLLOWER) >= 1
    });
    b.signal("-TERM");
    eventually("replica-b releases on SIGTERM", limit, &[&b, &c], || {
        b.log().contains("Lease released on shutdown")
    });
    eventually("replica-c takes over", limit, &[&b, &c], || {
        holder(&api) == "replica-c" && c.count(LEADER) == 1 && c.count(SCANS) >= 1
    });
}
