//! Images outside pod specs, end to end with real registries (issue 14): Calico's published
//! manifests loaded for `replace` and `prefix` (with and without a path), every name the
//! operator computes from the rewritten `Installation` (Tigera's rule, `support/tigera.rs`)
//! checked in the target by skopeo, by digest; and a manifest set with related-image variables
//! and a declared CRD field, its images found by `imagesFromManifests`, packed into the same
//! bundle as the explicit list, loaded, and every scalar of the output scanned.

mod support;

#[path = "support/tigera.rs"]
mod tigera;

use std::path::{Path, PathBuf};

use saphyr::{LoadableYamlNode, Yaml};
use support::bundle::Bundle;
use support::cli::AirgapCmd;
use support::*;
use tigera::{operator_reference, operator_reference_by_digest, InstallationImages};

fn realworld_calico() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/realworld/calico")
}

fn docs(text: &str) -> Vec<Yaml<'_>> {
    Yaml::load_from_str(text).unwrap_or_else(|e| panic!("{e}:\n{text}"))
}

fn str_at(y: &Yaml, path: &[&str]) -> String {
    path.iter()
        .try_fold(y, |y, k| y.as_mapping_get(k))
        .and_then(|v| v.as_str())
        .unwrap_or("")
        .to_string()
}

/// Every scalar string of a YAML tree.
fn scalars<'a>(y: &'a Yaml, out: &mut Vec<&'a str>) {
    if let Some(s) = y.as_str() {
        out.push(s);
    } else if let Some(seq) = y.as_sequence() {
        seq.iter().for_each(|i| scalars(i, out));
    } else if let Some(map) = y.as_mapping() {
        for (k, v) in map {
            scalars(k, out);
            scalars(v, out);
        }
    }
}

/// The Calico images the published manifests need, pushed under `quay.io` names (the
/// source registry answers for quay.io through `registries:`).
const CALICO: [&str; 5] = [
    "calico/node",
    "calico/cni",
    "calico/typha",
    "calico/kube-controllers",
    "calico/csi",
];

#[test]
fn calico_names_the_operator_computes_exist_in_the_target_by_digest() {
    let src = Registry::start(RegistryOpts::plain());
    let fx = Fixtures::new(&src);
    for (i, repo) in CALICO.iter().chain(["tigera/operator"].iter()).enumerate() {
        fx.image(
            repo,
            Some("master"),
            &ImageOpts::oci(900 + i as u64).layers(1, 1024),
        );
    }
    let dir = tempdir();
    let k8s = dir.path().join("calico");
    std::fs::create_dir(&k8s).unwrap();
    for f in ["tigera-operator.yaml", "custom-resources.yaml"] {
        std::fs::copy(realworld_calico().join(f), k8s.join(f)).unwrap();
    }
    // The Calico components listed; the operator itself found in its Deployment.
    let mut spec = format!(
        "registries: {{quay.io: {}}}\nmanifests: [calico/]\nimagesFromManifests: true\nimages:\n",
        src.url()
    );
    for repo in CALICO {
        spec.push_str(&format!("- image: quay.io/{repo}:master\n"));
    }
    let spec = write_file(dir.path(), "airgap.yaml", &spec);
    let bundle = dir.path().join("calico.tar.zst");
    let out = pack_ok(&spec, &bundle, args!["-q"]);
    assert!(
        stderr_of(&out).is_empty(),
        "an ImageSet-less Installation with every image listed needs no note: {}",
        stderr_of(&out)
    );
    let b = Bundle::open(&bundle);
    let operator_digest = b.ref_digest("quay.io/tigera/operator:master");

    let tgt = Registry::start(RegistryOpts::auth("site", "site-pw"));
    let cases = [
        (tgt.host(), "replace"),
        (tgt.host(), "prefix"),
        (format!("{}/mirror", tgt.host()), "prefix"),
        (format!("{}/flat", tgt.host()), "replace"),
    ];
    for (registry, mode) in cases {
        let out_dir = dir.path().join(format!("out-{mode}-{}", registry.len()));
        let out = AirgapCmd::new(args![
            "load",
            &bundle,
            "--registry",
            &registry,
            "--mode",
            mode,
            "--plain-http",
            "--username",
            "site",
            "--password-stdin",
            "--manifests-out",
            &out_dir,
            "--pull-secret",
            "regcred",
            "-q"
        ])
        .stdin("site-pw")
        .run();
        assert_success(&out);
        let resources =
            std::fs::read_to_string(out_dir.join("calico/custom-resources.yaml")).unwrap();
        let d = docs(&resources);
        let inst = d
            .iter()
            .find(|d| str_at(d, &["kind"]) == "Installation")
            .expect("an Installation");
        let spec = InstallationImages {
            registry: str_at(inst, &["spec", "registry"]),
            image_path: str_at(inst, &["spec", "imagePath"]),
            image_prefix: str_at(inst, &["spec", "imagePrefix"]),
        };
        let secrets = inst
            .as_mapping_get("spec")
            .and_then(|s| s.as_mapping_get("imagePullSecrets"))
            .and_then(|s| s.as_sequence())
            .map(|s| s.iter().map(|i| str_at(i, &["name"])).collect::<Vec<_>>());
        assert_eq!(
            secrets,
            Some(vec!["regcred".to_string()]),
            "{registry} {mode}"
        );
        // The operator copies the secret from its own namespace.
        let secret = std::fs::read_to_string(out_dir.join("regcred-pull-secret.yaml")).unwrap();
        assert!(
            secret.contains("namespace: \"tigera-operator\""),
            "{secret}"
        );

        // Tag names, as the operator computes them without an ImageSet.
        for repo in CALICO {
            let name = operator_reference(&spec, repo, "master");
            let want = b.ref_digest(&format!("quay.io/{repo}:master"));
            assert_skopeo_digest(&name, &tgt, &want);
        }
        // The operator Deployment's image, rewritten in the pod spec.
        let operator =
            std::fs::read_to_string(out_dir.join("calico/tigera-operator.yaml")).unwrap();
        let image = operator
            .lines()
            .find_map(|l| l.trim().strip_prefix("image: "))
            .expect("the operator image")
            .to_string();
        assert!(!image.starts_with("quay.io"), "{image}");
        assert_skopeo_digest(&image, &tgt, &operator_digest);

        // By digest, as the operator pulls once the ImageSet is applied: exactly the bundle's
        // digests of the images the operator deploys.
        let set_file = out_dir.join("imageset-calico-master.yaml");
        let set_text = std::fs::read_to_string(&set_file).unwrap();
        let set = docs(&set_text);
        assert_eq!(str_at(&set[0], &["metadata", "name"]), "calico-master");
        let listed: Vec<(String, String)> = set[0]
            .as_mapping_get("spec")
            .and_then(|s| s.as_mapping_get("images"))
            .and_then(|s| s.as_sequence())
            .unwrap()
            .iter()
            .map(|i| (str_at(i, &["image"]), str_at(i, &["digest"])))
            .collect();
        let mut want: Vec<(String, String)> = CALICO
            .iter()
            .map(|r| (r.to_string(), b.ref_digest(&format!("quay.io/{r}:master"))))
            .collect();
        want.sort();
        let mut got = listed.clone();
        got.sort();
        assert_eq!(got, want, "{registry} {mode}");
        for (image, digest) in &listed {
            let name = operator_reference_by_digest(&spec, image, digest);
            assert_skopeo_digest(&name, &tgt, digest);
        }
    }
}

/// A vendor's manifests: an operator Deployment whose operand is a related-image variable, and
/// a CRD object (`Prometheus`) with its image in a declared field; one image in each place,
/// all from the vendor's registry.
const APP: &str = "\
apiVersion: apps/v1
kind: Deployment
metadata: {name: operator}
spec:
  template:
    spec:
      containers:
      - name: operator
        image: vendor.example.com/team/operator:1.0
        env:
        - name: RELATED_IMAGE_OPERAND
          value: vendor.example.com/team/operand:2.0
        - name: LOG_LEVEL
          value: vendor.example.com/not-an-image-by-name
";

const CR: &str = "\
apiVersion: monitoring.coreos.com/v1
kind: Prometheus
metadata: {name: k8s}
spec:
  image: vendor.example.com/monitoring/prometheus:v2.54.1
  imagePullPolicy: Always
";

const FIELDS: &str = "\
imageFields:
- {kind: Prometheus, group: monitoring.coreos.com, path: spec.image, pullPolicy: imagePullPolicy, pullSecrets: spec.imagePullSecrets}
";

fn vendor_tree(dir: &Path, src: &Registry, images: &str) -> PathBuf {
    std::fs::create_dir_all(dir.join("k8s")).unwrap();
    write_file(&dir.join("k8s"), "operator.yaml", APP);
    write_file(&dir.join("k8s"), "prometheus.yaml", CR);
    let spec = format!(
        "registries: {{vendor.example.com: {}}}\nmanifests: [k8s/]\n{FIELDS}{images}",
        src.url()
    );
    write_file(dir, "airgap.yaml", &spec)
}

#[test]
fn discovered_images_pack_the_explicit_bundle_and_load_with_nothing_left_at_the_source() {
    let src = Registry::start(RegistryOpts::plain());
    let fx = Fixtures::new(&src);
    fx.image(
        "team/operator",
        Some("1.0"),
        &ImageOpts::oci(931).layers(1, 1024),
    );
    fx.image(
        "team/operand",
        Some("2.0"),
        &ImageOpts::oci(932).layers(1, 1024),
    );
    fx.image(
        "monitoring/prometheus",
        Some("v2.54.1"),
        &ImageOpts::docker(933).layers(1, 1024),
    );
    let root = tempdir();
    let found = vendor_tree(
        &root.path().join("found"),
        &src,
        "imagesFromManifests: true\n",
    );
    let listed = vendor_tree(
        &root.path().join("listed"),
        &src,
        "images:\n- image: vendor.example.com/team/operator:1.0\n- image: vendor.example.com/team/operand:2.0\n- image: vendor.example.com/monitoring/prometheus:v2.54.1\n",
    );

    // --list-images: every image, where it came from, nothing downloaded (the source is not
    // asked: it answers only after this).
    src.stop();
    let out = airgap(args!["pack", &found, "--list-images"], &[]);
    assert_success(&out);
    let text = stdout_of(&out);
    let text = text
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join("\n");
    for want in [
        "vendor.example.com/team/operator:1.0 k8s/operator.yaml:9 (container image)",
        "vendor.example.com/team/operand:2.0 k8s/operator.yaml:12 (env RELATED_IMAGE_OPERAND)",
        "vendor.example.com/monitoring/prometheus:v2.54.1 k8s/prometheus.yaml:5 (field Prometheus.monitoring.coreos.com spec.image)",
        "3 image(s)",
    ] {
        assert!(text.contains(want), "{want:?} in:\n{text}");
    }
    assert!(!text.contains("not-an-image"), "{text}");
    let out = airgap(args!["pack", &found, "--list-images", "--json"], &[]);
    assert_success(&out);
    let json: serde_json::Value = serde_json::from_str(&stdout_of(&out)).unwrap();
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("bundle-spec/schemas/list-images.schema.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&json)
        .map(|e| e.to_string())
        .collect();
    assert!(errors.is_empty(), "{errors:?}\n{json}");
    let images = json["images"].as_array().unwrap();
    assert_eq!(images.len(), 3);
    assert_eq!(
        images[1]["reference"],
        "vendor.example.com/team/operand:2.0"
    );
    assert_eq!(images[1]["from"]["kind"], "manifest");
    assert_eq!(images[1]["from"]["file"], "k8s/operator.yaml");
    assert_eq!(images[1]["from"]["line"], 12);
    let out = airgap(args!["pack", &listed, "--list-images", "--json"], &[]);
    let json: serde_json::Value = serde_json::from_str(&stdout_of(&out)).unwrap();
    assert_eq!(json["images"][0]["from"]["kind"], "spec");
    assert_eq!(json["images"][0]["from"]["line"], 6);
    src.restart();

    // The same bundle, to the byte of its identity.
    let pack_id = |spec: &Path, name: &str| {
        let bundle = root.path().join(name);
        let out = pack_ok(spec, &bundle, args!["--json"]);
        let r: serde_json::Value = serde_json::from_str(&stdout_of(&out)).unwrap();
        (bundle, r["id"].as_str().unwrap().to_string())
    };
    let (bundle, found_id) = pack_id(&found, "found.tar.zst");
    let (_, listed_id) = pack_id(&listed, "listed.tar.zst");
    assert_eq!(
        found_id, listed_id,
        "discovery and the explicit list differ"
    );

    // Load: the declared field travels in the bundle, so no flag is needed on this side.
    let tgt = Registry::start(RegistryOpts::auth("site", "site-pw"));
    let out_dir = root.path().join("out");
    let out = AirgapCmd::new(args![
        "load",
        &bundle,
        "--registry",
        format!("{}/apps", tgt.host()),
        "--plain-http",
        "--username",
        "site",
        "--password-stdin",
        "--manifests-out",
        &out_dir,
        "--pull-secret",
        "regcred",
        "-q"
    ])
    .stdin("site-pw")
    .run();
    assert_success(&out);
    let b = Bundle::open(&bundle);
    let mut checked = 0;
    for f in ["operator.yaml", "prometheus.yaml"] {
        let text = std::fs::read_to_string(out_dir.join("k8s").join(f)).unwrap();
        let d = docs(&text);
        let mut all = Vec::new();
        d.iter().for_each(|y| scalars(y, &mut all));
        for s in &all {
            // The env value that is not a related image is free text: left alone.
            if *s == "vendor.example.com/not-an-image-by-name" {
                continue;
            }
            assert!(
                !s.contains("vendor.example.com"),
                "{f}: {s} still at the source"
            );
            if let Some(rest) = s.strip_prefix(&format!("{}/apps/", tgt.host())) {
                let source = format!("vendor.example.com/{rest}");
                assert_skopeo_digest(s, &tgt, &b.ref_digest(&source));
                checked += 1;
            }
        }
        if f == "prometheus.yaml" {
            assert_eq!(str_at(&d[0], &["spec", "imagePullPolicy"]), "IfNotPresent");
            assert!(
                text.contains("imagePullSecrets:\n  - name: regcred\n"),
                "{text}"
            );
        }
    }
    assert_eq!(checked, 3, "every image reference checked in the target");
}

#[test]
fn a_found_image_that_does_not_resolve_fails_naming_file_line_and_reference() {
    let src = Registry::start(RegistryOpts::plain());
    let fx = Fixtures::new(&src);
    fx.image(
        "team/operator",
        Some("1.0"),
        &ImageOpts::oci(941).layers(1, 512),
    );
    // team/operand:2.0 and the Prometheus image are not in the registry.
    let root = tempdir();
    let spec = vendor_tree(root.path(), &src, "imagesFromManifests: true\n");
    let bundle = root.path().join("b.tar.zst");
    let out = airgap(args!["pack", &spec, "-o", &bundle], &[]);
    assert_failure_contains(
        &out,
        &["vendor.example.com/team/operand:2.0", "MANIFEST_UNKNOWN"],
    );
    assert_failure_contains(&out, &["k8s/operator.yaml:12"]);
    assert_no_file(&bundle);

    // A reference that is not one, in a declared field: the file and line, before any request.
    std::fs::write(
        root.path().join("k8s/prometheus.yaml"),
        CR.replace(
            "vendor.example.com/monitoring/prometheus:v2.54.1",
            "'Not/A:Ref:x'",
        ),
    )
    .unwrap();
    let out = airgap(args!["pack", &spec, "--list-images"], &[]);
    assert_failure_contains(&out, &["k8s/prometheus.yaml:5", "invalid image reference"]);
}
