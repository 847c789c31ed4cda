//! The Tigera `Installation`: for every naming mode, the names the operator computes from the
//! rewritten Installation (Tigera's rule, `tests/support/tigera.rs`) are the target names.

#[path = "../../tests/support/tigera.rs"]
mod rule;

use saphyr::{LoadableYamlNode, Yaml};

use super::*;
use crate::digest::Digest;
use crate::image_map::{ImageMap, ImageMapEntry};
use crate::naming::{Mode, Target};
use rule::{operator_reference, InstallationImages};

const CALICO: [&str; 4] = [
    "quay.io/calico/node:v3.30.2",
    "quay.io/calico/cni:v3.30.2",
    "quay.io/calico/typha:v3.30.2",
    "quay.io/tigera/operator:v1.38.3",
];

fn map_for(target: &str, mode: Mode, sources: &[&str]) -> ImageMap {
    let target = Target::parse(target).unwrap();
    ImageMap::new(
        sources
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

const INSTALLATION: &str = "\
# Base configuration.
apiVersion: operator.tigera.io/v1
kind: Installation
metadata:
  name: default
spec:
  # Configures Calico networking.
  calicoNetwork:
    ipPools:
      - name: default-ipv4-ippool
        cidr: 192.168.0.0/16

---
apiVersion: operator.tigera.io/v1
kind: APIServer
metadata:
  name: default
spec: {}
";

fn spec_of(text: &str) -> InstallationImages {
    let docs = Yaml::load_from_str(text).unwrap_or_else(|e| panic!("{e}:\n{text}"));
    let inst = docs
        .iter()
        .find(|d| d["kind"].as_str() == Some("Installation"))
        .expect("an Installation");
    let field = |k: &str| {
        let v = inst
            .as_mapping_get("spec")
            .and_then(|s| s.as_mapping_get(k));
        v.and_then(|v| v.as_str()).unwrap_or("").to_string()
    };
    InstallationImages {
        registry: field("registry"),
        image_path: field("imagePath"),
        image_prefix: field("imagePrefix"),
    }
}

fn rw(text: &str, map: &ImageMap) -> Rewritten {
    rewrite(text, map, &RewriteOptions::default()).unwrap()
}

/// Every image the operator computes is the image's target name.
fn assert_operator_names(out: &str, map: &ImageMap) {
    let spec = spec_of(out);
    for e in &map.images {
        let version = e.source.tag().unwrap();
        let image = e.source.repository();
        assert_eq!(
            operator_reference(&spec, image, version),
            e.target.to_string(),
            "{image} with {spec:?}"
        );
    }
}

#[test]
fn every_expressible_mode_gives_the_operator_the_target_names() {
    let cases = [
        ("reg.local:5000", Mode::Replace, "reg.local:5000/", None),
        (
            "reg.local:5000/mirror/x",
            Mode::Replace,
            "reg.local:5000/mirror/x/",
            None,
        ),
        (
            "reg.local:5000",
            Mode::Prefix,
            "reg.local:5000/quay.io/",
            None,
        ),
        (
            "reg.local:5000/m",
            Mode::Prefix,
            "reg.local:5000/m/quay.io/",
            None,
        ),
        (
            "reg.local:5000/flat/p",
            Mode::Flatten,
            "reg.local:5000/",
            Some("flat/p"),
        ),
    ];
    for (target, mode, registry, path) in cases {
        let map = map_for(target, mode, &CALICO);
        let out = rw(INSTALLATION, &map);
        assert_operator_names(&out.text, &map);
        let spec = spec_of(&out.text);
        assert_eq!(spec.registry, registry, "{target} {mode}");
        assert_eq!(spec.image_path, path.unwrap_or(""), "{target} {mode}");
        assert_eq!(out.installations, [3]);
        let kinds: Vec<_> = out.changes.iter().map(|c| c.kind).collect();
        let mut want = vec![ChangeKind::Registry];
        want.extend(path.map(|_| ChangeKind::ImagePath));
        assert_eq!(kinds, want, "{target} {mode}");
        // Running again changes nothing.
        assert_eq!(rw(&out.text, &map).text, out.text);
        assert!(rw(&out.text, &map).changes.is_empty());
    }
}

#[test]
fn only_the_new_keys_are_added_every_other_byte_kept() {
    let map = map_for("reg.local:5000/mirror", Mode::Replace, &CALICO);
    let opts = RewriteOptions {
        pin_digests: false,
        pull_secret: Some("regcred".into()),
        ..Default::default()
    };
    let out = rewrite(INSTALLATION, &map, &opts).unwrap();
    let want = INSTALLATION.replace(
        "        cidr: 192.168.0.0/16\n",
        "        cidr: 192.168.0.0/16\n  registry: \"reg.local:5000/mirror/\"\n  imagePullSecrets:\n    - name: regcred\n",
    );
    assert_eq!(out.text, want);
    assert_eq!(
        out.changes[0],
        Change {
            line: 8,
            kind: ChangeKind::Registry,
            from: String::new(),
            to: "reg.local:5000/mirror/".into(),
        }
    );
    assert_eq!(out.changes[1].kind, ChangeKind::PullSecret);
}

#[test]
fn flatten_without_a_path_is_an_error_saying_why() {
    let map = map_for("reg.local:5000", Mode::Flatten, &CALICO);
    let e = rewrite(INSTALLATION, &map, &RewriteOptions::default()).unwrap_err();
    let RewriteError::Operator { line, reason } = &e else {
        panic!("{e}")
    };
    assert_eq!(*line, 3);
    assert!(
        reason.contains("calico/node is reg.local:5000/node"),
        "{reason}"
    );
    assert!(reason.contains("always puts a path"), "{reason}");
}

#[test]
fn calico_images_from_two_registries_under_prefix_are_an_error() {
    let map = map_for(
        "reg.local:5000",
        Mode::Prefix,
        &[
            "docker.io/calico/node:v3.30.2",
            "quay.io/tigera/operator:v1.38.3",
        ],
    );
    let e = rewrite(INSTALLATION, &map, &RewriteOptions::default()).unwrap_err();
    assert!(
        e.to_string().contains("no one registry and imagePath"),
        "{e}"
    );
    // Replace drops the source registry: fine.
    let map = map_for(
        "reg.local:5000",
        Mode::Replace,
        &[
            "docker.io/calico/node:v3.30.2",
            "quay.io/tigera/operator:v1.38.3",
        ],
    );
    assert_operator_names(&rw(INSTALLATION, &map).text, &map);
}

#[test]
fn existing_values_pointing_at_a_source_registry_are_replaced_in_their_style() {
    let map = map_for("reg.local:5000", Mode::Replace, &CALICO);
    let text = "\
apiVersion: operator.tigera.io/v1
kind: Installation
metadata: {name: default}
spec:
  registry: 'quay.io/'   # upstream
  imagePath: \"calico\"
  imagePrefix: custom-
  variant: Calico
";
    let out = rw(text, &map);
    assert_eq!(
        out.text,
        "\
apiVersion: operator.tigera.io/v1
kind: Installation
metadata: {name: default}
spec:
  registry: 'reg.local:5000/'   # upstream
  imagePath: \"UseDefault\"
  imagePrefix: UseDefault
  variant: Calico
"
    );
    assert_operator_names(&out.text, &map);
    let kinds: Vec<_> = out
        .changes
        .iter()
        .map(|c| (c.kind, c.from.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [
            (ChangeKind::Registry, "quay.io/"),
            (ChangeKind::ImagePath, "calico"),
            (ChangeKind::ImagePrefix, "custom-"),
        ]
    );
}

#[test]
fn a_registry_the_bundle_did_not_come_from_is_left_alone_with_a_note() {
    let map = map_for("reg.local:5000", Mode::Flatten, &CALICO);
    let text = "apiVersion: operator.tigera.io/v1\nkind: Installation\nspec:\n  registry: mirror.corp/\n  imagePath: x\n";
    let out = rw(text, &map);
    assert_eq!(out.text, text);
    assert!(out.changes.is_empty());
    assert_eq!(out.notes.len(), 1);
    assert!(
        out.notes[0].text.contains("\"mirror.corp/\""),
        "{:?}",
        out.notes
    );
}

#[test]
fn flow_null_and_absent_specs() {
    let map = map_for("reg.local:5000", Mode::Prefix, &CALICO);
    let opts = RewriteOptions {
        pin_digests: false,
        pull_secret: Some("regcred".into()),
        ..Default::default()
    };
    let cases = [
        (
            "{apiVersion: operator.tigera.io/v1, kind: Installation, spec: {}}\n",
            "{apiVersion: operator.tigera.io/v1, kind: Installation, spec: {registry: \"reg.local:5000/quay.io/\", imagePullSecrets: [{name: regcred}]}}\n",
        ),
        (
            "{apiVersion: operator.tigera.io/v1, kind: Installation, spec: {variant: Calico}}\n",
            "{apiVersion: operator.tigera.io/v1, kind: Installation, spec: {variant: Calico, registry: \"reg.local:5000/quay.io/\", imagePullSecrets: [{name: regcred}]}}\n",
        ),
        (
            "apiVersion: operator.tigera.io/v1\nkind: Installation\nspec:\n",
            "apiVersion: operator.tigera.io/v1\nkind: Installation\nspec: {registry: \"reg.local:5000/quay.io/\", imagePullSecrets: [{name: regcred}]}\n",
        ),
        (
            "apiVersion: operator.tigera.io/v1\nkind: Installation\nmetadata:\n  name: default\n",
            "apiVersion: operator.tigera.io/v1\nkind: Installation\nmetadata:\n  name: default\nspec: {registry: \"reg.local:5000/quay.io/\", imagePullSecrets: [{name: regcred}]}\n",
        ),
    ];
    for (text, want) in cases {
        let out = rewrite(text, &map, &opts).unwrap();
        assert_eq!(out.text, want);
        assert_operator_names(&out.text, &map);
    }
}

#[test]
fn installations_of_other_groups_and_maps_without_calico_are_left_alone() {
    let map = map_for("reg.local:5000", Mode::Replace, &["redis:7"]);
    let out = rw(INSTALLATION, &map);
    assert_eq!(out.text, INSTALLATION);
    assert_eq!(out.notes.len(), 1);
    let map = map_for("reg.local:5000", Mode::Replace, &CALICO);
    let other = "apiVersion: example.com/v1\nkind: Installation\nspec: {}\n";
    assert_eq!(rw(other, &map).text, other);
    assert!(rw(other, &map).installations.is_empty());
}

#[test]
fn related_image_variables_naming_bundle_images_are_rewritten() {
    let map = map_for(
        "reg.local:5000",
        Mode::Replace,
        &["quay.io/org/operand:v2", "redis:7"],
    );
    let text = "\
kind: Deployment
spec:
  template:
    spec:
      containers:
      - name: op
        image: redis:7
        env:
        - name: RELATED_IMAGE_OPERAND
          value: \"quay.io/org/operand:v2\"   # the operand
        - name: RELATED_IMAGE_OTHER
          value: quay.io/org/unknown:v1
        - name: OTHER
          value: quay.io/org/operand:v2
        - {name: RELATED_IMAGE_FLOW, value: 'quay.io/org/operand:v2'}
        - name: RELATED_IMAGE_TEXT
          value: not a reference
";
    let out = rw(text, &map);
    let want = text
        .replace(
            "image: redis:7",
            "image: reg.local:5000/library/redis:7\n        imagePullPolicy: IfNotPresent",
        )
        .replace(
            "value: \"quay.io/org/operand:v2\"",
            "value: \"reg.local:5000/org/operand:v2\"",
        )
        .replace(
            "'quay.io/org/operand:v2'",
            "'reg.local:5000/org/operand:v2'",
        );
    assert_eq!(out.text, want);
    assert!(out.missing.is_empty(), "{:?}", out.missing);
    assert_eq!(out.images_rewritten(), 3);
}
