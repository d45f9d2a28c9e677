//! Workload manifests: which images a Kubernetes object runs.
