//! Calico's published `tigera-operator.yaml` and `custom-resources.yaml`
//! (`../shared/realworld/calico/`, read there, never edited) through the outputs of a load:
//! the operator Deployment, the Installation the operator computes its image names from
//! (judged by Tigera's rule, `support/tigera.rs`), the pull secret, the ImageSet, and every
//! other byte unchanged. No registry: the image map is built as a load would build it.

#[path = "support/tigera.rs"]
mod tigera;

use std::path::{Path, PathBuf};

use airgap::digest::Digest;
use airgap::image_map::{ImageMap, ImageMapEntry};
use airgap::naming::{Mode, Target};
use airgap::outputs::{plan_from_map, OutputOptions, TargetAccess};
use airgap::reference::Reference;
use airgap::registry::credentials::Credentials;
use airgap::rewrite::{K8sOptions, RewriteOptions};
use saphyr::{LoadableYamlNode, Yaml};
use tigera::{operator_reference, operator_reference_by_digest, InstallationImages};

/// What the published manifests deploy (tag `master`, as `tigera-operator.yaml` names the
/// operator), plus an image the operator does not deploy.
const IMAGES: [&str; 6] = [
    "quay.io/tigera/operator:master",
    "quay.io/calico/node:master",
    "quay.io/calico/cni:master",
    "quay.io/calico/typha:master",
    "quay.io/calico/kube-controllers:master",
    "quay.io/calico/ctl:master",
];

fn realworld() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/realworld/calico")
}

/// The published files, copied into a temporary directory (the test never opens them for
/// writing), as the bundle's manifests.
fn manifests(tmp: &Path) -> Vec<(String, Vec<u8>)> {
    ["tigera-operator.yaml", "custom-resources.yaml"]
        .iter()
        .map(|name| {
            let copy = tmp.join(name);
            std::fs::copy(realworld().join(name), &copy).unwrap();
            (name.to_string(), std::fs::read(&copy).unwrap())
        })
        .collect()
}

fn image_map(target: &Target, mode: Mode) -> ImageMap {
    ImageMap::new(
        IMAGES
            .iter()
            .map(|s| {
                let source = Reference::parse(s).unwrap();
                ImageMapEntry {
                    target: target.name_for(&source, mode).unwrap(),
                    digest: Digest::of(s.as_bytes()),
                    source,
                    source_digest: None,
                    chart: None,
                }
            })
            .collect(),
    )
}

fn docs(text: &str) -> Vec<Yaml<'_>> {
    Yaml::load_from_str(text).unwrap_or_else(|e| panic!("{e}:\n{text}"))
}

fn kind<'a, 'y>(docs: &'a [Yaml<'y>], kind: &str) -> &'a Yaml<'y> {
    docs.iter()
        .find(|d| d.as_mapping_get("kind").and_then(|k| k.as_str()) == Some(kind))
        .unwrap_or_else(|| panic!("no {kind}"))
}

fn get<'a, 'y>(y: &'a Yaml<'y>, path: &[&str]) -> Option<&'a Yaml<'y>> {
    path.iter().try_fold(y, |y, k| y.as_mapping_get(k))
}

fn str_at(y: &Yaml, path: &[&str]) -> String {
    get(y, path)
        .and_then(|v| v.as_str())
        .unwrap_or("")
        .to_string()
}

struct Out {
    operator: String,
    resources: String,
    secret: String,
    image_set: String,
}

fn run(target: &str, mode: Mode) -> (Out, ImageMap) {
    let tmp = tempfile::tempdir().unwrap();
    let target = Target::parse(target).unwrap();
    let map = image_map(&target, mode);
    let out = tmp.path().join("out");
    let opts = OutputOptions {
        manifests_out: Some(out.clone()),
        rewrite: K8sOptions {
            rewrite: RewriteOptions {
                pin_digests: false,
                pull_secret: Some("regcred".into()),
                ..Default::default()
            },
            allow_missing: false,
        },
        ..Default::default()
    };
    let access = TargetAccess {
        target: Some(target),
        mode,
        credentials: Some(Credentials::new("user", "pw")),
        ..Default::default()
    };
    let planned = plan_from_map(map.clone(), &manifests(tmp.path()), &access, &opts).unwrap();
    let written = planned.write().unwrap();
    let mut names: Vec<_> = written
        .manifests
        .iter()
        .map(|p| p.strip_prefix(&out).unwrap().display().to_string())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "custom-resources.yaml",
            "imageset-calico-master.yaml",
            "regcred-pull-secret.yaml",
            "tigera-operator.yaml"
        ]
    );
    let read = |n: &str| std::fs::read_to_string(out.join(n)).unwrap();
    (
        Out {
            operator: read("tigera-operator.yaml"),
            resources: read("custom-resources.yaml"),
            secret: read("regcred-pull-secret.yaml"),
            image_set: read("imageset-calico-master.yaml"),
        },
        map,
    )
}

fn target_of<'m>(map: &'m ImageMap, source: &str) -> &'m ImageMapEntry {
    let s = Reference::parse(source).unwrap();
    map.images.iter().find(|e| e.source == s).unwrap()
}

#[test]
fn calico_manifests_for_every_expressible_mode() {
    let original_operator =
        std::fs::read_to_string(realworld().join("tigera-operator.yaml")).unwrap();
    let original_resources =
        std::fs::read_to_string(realworld().join("custom-resources.yaml")).unwrap();
    let cases = [
        ("10.10.254.254:8000", Mode::Replace, "10.10.254.254:8000/"),
        (
            "reg.local:5000/mirror",
            Mode::Replace,
            "reg.local:5000/mirror/",
        ),
        ("reg.local:5000", Mode::Prefix, "reg.local:5000/quay.io/"),
        (
            "reg.local:5000/m",
            Mode::Prefix,
            "reg.local:5000/m/quay.io/",
        ),
    ];
    for (target, mode, registry) in cases {
        let (out, map) = run(target, mode);
        let operator_target = target_of(&map, IMAGES[0]).target.to_string();

        // Every other byte unchanged: the original with exactly these edits is the output.
        let want_operator = original_operator
            .replacen(
                "imagePullSecrets:\n  []\n",
                "imagePullSecrets:\n  [{name: regcred}]\n",
                1,
            )
            .replacen(
                "image: quay.io/tigera/operator:master\n",
                &format!("image: {operator_target}\n"),
                1,
            )
            .replacen(
                "          hostPath:\n            path: /var/lib/calico\n",
                "          hostPath:\n            path: /var/lib/calico\n      imagePullSecrets:\n        - name: regcred\n",
                1,
            );
        assert_eq!(out.operator, want_operator, "{target} {mode}");
        let want_resources = original_resources.replacen(
            "        nodeSelector: all()\n",
            &format!(
                "        nodeSelector: all()\n  registry: \"{registry}\"\n  imagePullSecrets:\n    - name: regcred\n"
            ),
            1,
        );
        assert_eq!(out.resources, want_resources, "{target} {mode}");

        // The Installation: the names the operator computes are the target names.
        let d = docs(&out.resources);
        let inst = kind(&d, "Installation");
        let spec = InstallationImages {
            registry: str_at(inst, &["spec", "registry"]),
            image_path: str_at(inst, &["spec", "imagePath"]),
            image_prefix: str_at(inst, &["spec", "imagePrefix"]),
        };
        assert_eq!(spec.registry, registry);
        for source in &IMAGES[..5] {
            let e = target_of(&map, source);
            let image = e.source.repository();
            assert_eq!(
                operator_reference(&spec, image, "master"),
                e.target.to_string(),
                "{image}"
            );
        }
        let secrets = get(inst, &["spec", "imagePullSecrets"]).unwrap();
        assert_eq!(str_at(&secrets[0], &["name"]), "regcred");

        // The operator Deployment.
        let d = docs(&out.operator);
        let dep = kind(&d, "Deployment");
        let pod = get(dep, &["spec", "template", "spec"]).unwrap();
        assert_eq!(str_at(&pod["containers"][0], &["image"]), operator_target);
        assert_eq!(str_at(&pod["imagePullSecrets"][0], &["name"]), "regcred");

        // The pull secret, where the operator copies it from.
        let d = docs(&out.secret);
        let secret = kind(&d, "Secret");
        assert_eq!(str_at(secret, &["metadata", "name"]), "regcred");
        assert_eq!(
            str_at(secret, &["metadata", "namespace"]),
            "tigera-operator"
        );
        let host = target.split('/').next().unwrap();
        assert_eq!(str_at(secret, &["type"]), "kubernetes.io/dockerconfigjson");
        assert!(out
            .secret
            .contains(&format!("pull credentials for {host}.")));

        // The ImageSet: exactly the bundle's digests of the Calico images the operator
        // deploys, and by them the operator pulls the target names with those digests.
        let d = docs(&out.image_set);
        let set = kind(&d, "ImageSet");
        assert_eq!(str_at(set, &["apiVersion"]), "operator.tigera.io/v1");
        assert_eq!(str_at(set, &["metadata", "name"]), "calico-master");
        let listed: Vec<(String, String)> = get(set, &["spec", "images"])
            .unwrap()
            .as_vec()
            .unwrap()
            .iter()
            .map(|i| (str_at(i, &["image"]), str_at(i, &["digest"])))
            .collect();
        let mut want: Vec<(String, String)> = IMAGES[1..5]
            .iter()
            .map(|s| {
                let e = target_of(&map, s);
                (e.source.repository().to_string(), e.digest.to_string())
            })
            .collect();
        want.sort();
        assert_eq!(listed, want);
        assert!(out.image_set.contains("Not listed") && out.image_set.contains("calico/ctl"));
        for (image, digest) in &listed {
            let e = target_of(&map, &format!("quay.io/{image}:master"));
            assert_eq!(
                operator_reference_by_digest(&spec, image, digest),
                format!("{}@{}", e.target.with_tag(None), e.digest)
            );
        }
    }
}

#[test]
fn flatten_without_a_path_is_refused_with_the_reason_and_a_hint() {
    let tmp = tempfile::tempdir().unwrap();
    let target = Target::parse("reg.local:5000").unwrap();
    let opts = OutputOptions {
        manifests_out: Some(tmp.path().join("out")),
        ..Default::default()
    };
    let access = TargetAccess {
        target: Some(target.clone()),
        mode: Mode::Flatten,
        ..Default::default()
    };
    let map = image_map(&target, Mode::Flatten);
    let e = plan_from_map(map, &manifests(tmp.path()), &access, &opts).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.starts_with("custom-resources.yaml:4: Tigera Installation: "),
        "{msg}"
    );
    assert!(msg.contains("calico/node is reg.local:5000/node"), "{msg}");
    assert!(
        e.hint().unwrap().contains("--mode replace"),
        "{:?}",
        e.hint()
    );
}
