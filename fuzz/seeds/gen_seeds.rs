//! Writes the seed corpora of every fuzz target into DIR (default `corpus`): built by
//! `cargo fuzz build gen_seeds`, run as `target/<triple>/release/gen_seeds DIR` (scripts/fuzz.sh
//! does both). Not a fuzz target. The bundle seeds are a small valid bundle made with
//! `BundleWriter` (and its uncompressed tar, for `bundle_tar`); the others are short texts.

use std::fs;
use std::io::Read;
use std::path::Path;

use airgap::bundle::{
    BlobKind, BlobRecord, BundleWriter, FileRecord, ImageRecord, Metadata, FORMAT_VERSION,
    INDEX_NAME, LAYOUT_NAME, MANIFESTS_DIR, METADATA_NAME, OCI_LAYOUT_CONTENT, REF_NAME_ANNOTATION,
};
use airgap::digest::Digest;
use airgap::manifest::{OCI_INDEX, OCI_MANIFEST};
use airgap::platform::Platform;
use airgap::reference::Reference;

const REFERENCE: &str = "docker.io/library/app:1";
const CONFIG_TYPE: &str = "application/vnd.oci.image.config.v1+json";
const LAYER_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const K8S_PATH: &str = "k8s/app.yaml";

fn descriptor(media_type: &str, bytes: &[u8]) -> serde_json::Value {
    serde_json::json!({
        "mediaType": media_type,
        "digest": Digest::of(bytes).to_string(),
        "size": bytes.len(),
    })
}

/// One image (manifest, config, one layer) and one Kubernetes file.
fn bundle() -> Vec<u8> {
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#
            .to_vec();
    let layer = b"not really a gzipped tar, but the bundle does not care".to_vec();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(CONFIG_TYPE, &config),
        "layers": [descriptor(LAYER_TYPE, &layer)],
    }))
    .unwrap();
    let k8s = b"apiVersion: v1\nkind: Pod\nmetadata:\n  name: app\nspec:\n  containers:\n  - name: app\n    image: app:1\n".to_vec();
    let platform = Platform::parse("linux/amd64").unwrap();
    let record = |bytes: &[u8], kind, media_type: &str| BlobRecord {
        digest: Digest::of(bytes),
        size: bytes.len() as u64,
        kind,
        media_type: media_type.into(),
    };
    let blobs = vec![
        record(&manifest, BlobKind::Manifest, OCI_MANIFEST),
        record(&config, BlobKind::Config, CONFIG_TYPE),
        record(&layer, BlobKind::Layer, LAYER_TYPE),
    ];
    let total: u64 = blobs.iter().map(|b| b.size).sum();
    let metadata = Metadata {
        format_version: FORMAT_VERSION,
        tool: "airgap fuzz seed".into(),
        spec: Some("airgap.yaml".into()),
        platforms: vec![platform.clone()],
        images: vec![ImageRecord {
            reference: Reference::parse(REFERENCE).unwrap(),
            source: "public".into(),
            digest: Digest::of(&manifest),
            source_digest: None,
            media_type: OCI_MANIFEST.into(),
            size: manifest.len() as u64,
            platforms: vec![platform],
            total_size: total,
        }],
        blobs,
        manifests: vec![FileRecord {
            path: K8S_PATH.into(),
            size: k8s.len() as u64,
            digest: Digest::of(&k8s),
        }],
        total_size: total,
        base: None,
    };
    let mut top = descriptor(OCI_MANIFEST, &manifest);
    top["annotations"] = serde_json::json!({ REF_NAME_ANNOTATION: REFERENCE });
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [top],
    }))
    .unwrap();

    let mut w = BundleWriter::new(Vec::new(), 3, 0).unwrap();
    w.add_file(METADATA_NAME, &serde_json::to_vec(&metadata).unwrap())
        .unwrap();
    w.add_file(LAYOUT_NAME, OCI_LAYOUT_CONTENT).unwrap();
    w.add_file(INDEX_NAME, &index).unwrap();
    w.add_file(&format!("{MANIFESTS_DIR}{K8S_PATH}"), &k8s)
        .unwrap();
    for blob in [&manifest, &config, &layer] {
        w.add_blob(&Digest::of(blob), blob.len() as u64, &blob[..], true)
            .unwrap();
    }
    let bytes = w.finish().unwrap();
    let report = airgap::bundle::verify(&bytes[..]).expect("the seed bundle verifies");
    assert_eq!((report.images, report.blobs), (1, 3));
    bytes
}

const REFERENCES: &[&str] = &[
    "redis",
    "redis:7",
    "library/redis:7.2-alpine",
    "quay.io/org/app:v1.0",
    "localhost:5000/a/b",
    "127.0.0.1:5000/x__y.z-w:tag_1",
    "[::1]:5000/app:1",
    "[fe80::1]/app",
    "index.docker.io/library/nginx:latest",
    "registry-1.docker.io/foo/bar",
    "ghcr.io/a/b/c/d@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    "busybox:1.36@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
];

const SPECS: &[&str] = &[
    include_str!("../../bundle-spec/examples/minimal.yaml"),
    include_str!("../../bundle-spec/examples/local-mirror.yaml"),
    include_str!("../../bundle-spec/examples/vendor-app.yaml"),
];

const MANIFESTS: &[&str] = &[
    "apiVersion: v1\nkind: Pod\nmetadata:\n  name: a\nspec:\n  containers:\n  - name: r\n    image: redis:7\n  initContainers:\n  - {name: i, image: busybox:1.36}\n",
    "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  template:\n    spec:\n      imagePullSecrets: []\n      containers:\n      - name: web\n        image: \"nginx\"   # the front\n        imagePullPolicy: Always\n---\napiVersion: v1\nkind: ConfigMap\ndata:\n  image: redis:7\n",
    "kind: CronJob\nspec:\n  jobTemplate:\n    spec:\n      template:\n        spec:\n          containers:\n          - name: c\n            image: &img quay.io/org/app@sha256:dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd\n          ephemeralContainers:\n          - name: d\n            image: *img\n",
    "kind: List\nitems:\n- kind: Pod\n  spec: {containers: [{name: a, image: 'redis:7'}, {name: b, image: nginx:1.25}]}\n- kind: ServiceAccount\n  metadata: {name: sa}\n",
    "kind: DaemonSet\r\nspec:\r\n  template:\r\n    spec:\r\n      containers:\r\n        - name: x\r\n          image: >-\r\n            redis:7\r\n",
];

fn write(dir: &Path, target: &str, name: &str, bytes: &[u8]) {
    let d = dir.join(target);
    fs::create_dir_all(&d).unwrap();
    fs::write(d.join(name), bytes).unwrap();
}

fn main() {
    let dir = std::env::args().nth(1).unwrap_or_else(|| "corpus".into());
    let dir = Path::new(&dir);
    let bundle = bundle();
    let mut tar = Vec::new();
    zstd::stream::Decoder::new(&bundle[..])
        .unwrap()
        .read_to_end(&mut tar)
        .unwrap();
    write(dir, "bundle", "seed.tar.zst", &bundle);
    write(dir, "seek_table", "seed.tar.zst", &bundle);
    write(dir, "bundle_tar", "seed.tar", &tar);
    for (i, r) in REFERENCES.iter().enumerate() {
        write(dir, "reference", &format!("seed-{i}"), r.as_bytes());
    }
    for (i, s) in SPECS.iter().enumerate() {
        write(dir, "spec", &format!("seed-{i}.yaml"), s.as_bytes());
    }
    for (i, m) in MANIFESTS.iter().enumerate() {
        write(dir, "rewrite", &format!("seed-{i}.yaml"), m.as_bytes());
    }
    println!(
        "seeds written under {} (bundle: {} bytes, tar: {} bytes)",
        dir.display(),
        bundle.len(),
        tar.len()
    );
}
