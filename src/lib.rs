//! airgap: move container images and their Kubernetes manifests into air-gapped networks.
//!
//! The data flows one way, and the modules follow it:
//! `spec` (airgap.yaml) → `pack` (resolve through `registry`) → `bundle` (tar.zst OCI layout)
//! → `load` (push through `registry`, names from `naming`) → `image_map` → `rewrite` (manifests).

pub mod bundle;
pub mod credentials;
pub mod digest;
pub mod docker_config;
pub mod fsutil;
pub mod image_map;
pub mod k8s;
pub mod load;
pub mod manifest;
pub mod naming;
pub mod outputs;
pub mod pack;
pub mod platform;
pub mod progress;
pub mod reference;
pub mod registry;
pub mod rewrite;
pub mod serve;
pub mod spec;
pub mod volume;
