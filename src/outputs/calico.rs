//! "Install by digest" for the Tigera operator: an `operator.tigera.io/v1` `ImageSet` per
//! Calico version the bundle holds, listing each Calico image's pushed digest. The operator
//! uses the ImageSet named `calico-<its Calico release>` and then pulls
//! `REGISTRY/IMAGEPATH/NAME@DIGEST` (the Installation says REGISTRY and IMAGEPATH).
//!
//! The operator refuses an ImageSet naming an image it does not deploy ("unexpected images",
//! `ValidateImageSet`), so only the images of its `CalicoImages` list are written: that list
//! for operators v1.39 (Calico 3.30, one image per component) to v1.45 (the combined
//! `calico/calico` image). `tigera/operator` itself is not in that list either. Images left
//! out are named in the file's header comment.

use std::collections::BTreeMap;

use super::OutputFile;
use crate::image_map::ImageMap;

/// The Calico Open Source images the operator deploys, by their original name.
const OPERATOR_IMAGES: &[&str] = &[
    "apiserver",
    "calico",
    "cni",
    "cni-windows",
    "csi",
    "envoy-gateway",
    "envoy-proxy",
    "envoy-ratelimit",
    "goldmane",
    "guardian",
    "istio-install-cni",
    "istio-pilot",
    "istio-proxyv2",
    "istio-ztunnel",
    "key-cert-provisioner",
    "kube-controllers",
    "node",
    "node-driver-registrar",
    "node-windows",
    "pod2daemon-flexvol",
    "third-party-cni-plugins",
    "typha",
    "whisker",
    "whisker-backend",
];

/// One `ImageSet` file per Calico version (the tag of the bundle's `calico/*` images), named
/// `imageset-calico-VERSION.yaml`; none when the bundle has no Calico image.
pub fn image_sets(map: &ImageMap) -> Vec<OutputFile> {
    // version -> image -> digest; version -> images left out.
    let mut sets: BTreeMap<&str, BTreeMap<&str, &str>> = BTreeMap::new();
    let mut left_out: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for e in &map.images {
        let repo = e.source.repository();
        let (Some(name), Some(version)) = (repo.strip_prefix("calico/"), e.source.tag()) else {
            continue;
        };
        if OPERATOR_IMAGES.contains(&name) {
            sets.entry(version)
                .or_default()
                .entry(repo)
                .or_insert(e.digest.as_str());
        } else {
            left_out.entry(version).or_default().push(repo);
        }
    }
    sets.into_iter()
        .map(|(version, images)| OutputFile {
            name: format!("imageset-calico-{version}.yaml"),
            text: image_set(version, &images, left_out.get(version)),
            secret: false,
        })
        .collect()
}

fn image_set(version: &str, images: &BTreeMap<&str, &str>, left_out: Option<&Vec<&str>>) -> String {
    let mut out = String::from(
        "# Written by airgap: the digests of the bundle's Calico images, for the Tigera operator\n\
         # (install by digest). It uses this ImageSet when its Calico release is the one named.\n",
    );
    if let Some(l) = left_out {
        out.push_str(&format!(
            "# Not listed (the operator does not deploy them and refuses an ImageSet naming them): {}\n",
            l.join(", ")
        ));
    }
    out.push_str(&format!(
        "apiVersion: operator.tigera.io/v1\nkind: ImageSet\nmetadata:\n  name: {}\nspec:\n  images:\n",
        serde_json::to_string(&format!("calico-{version}")).expect("JSON string")
    ));
    for (image, digest) in images {
        out.push_str(&format!("  - image: {image}\n    digest: {digest}\n"));
    }
    out
}
