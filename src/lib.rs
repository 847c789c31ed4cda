//! airgap: move container images and their Kubernetes manifests into air-gapped networks.
//!
//! The data flows one way, and the modules follow it (bundle-spec/ARCHITECTURE.md):
//! `spec` (airgap.yaml) → `pack` (resolve through `registry`) → `bundle` (tar.zst OCI layout)
//! → `load` (push through `registry`, names from `naming`) → `outputs` (image map, rewritten
//! manifests, pull secret) using `rewrite` (manifests). `commands` holds each command's
//! workflow; the binary only parses and prints.

pub mod archive;
pub mod bundle;
pub mod cache;
pub mod commands;
pub mod digest;
pub mod error;
pub mod fsutil;
pub mod image_map;
pub mod image_rules;
pub mod load;
pub mod manifest;
pub mod naming;
pub mod outputs;
pub mod pack;
pub mod platform;
pub mod progress;
pub mod reference;
pub mod referrers;
pub mod registry;
pub mod rewrite;
pub mod serve;
pub mod sign;
pub mod spec;
