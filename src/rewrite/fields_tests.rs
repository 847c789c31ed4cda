//! Declared image fields, related-image patterns and discovery: text in, text out.

use super::*;
use crate::digest::Digest;
use crate::image_map::{ImageMap, ImageMapEntry};
use crate::image_rules::ImageField;

fn digest(c: char) -> Digest {
    Digest::parse(&format!("sha256:{}", c.to_string().repeat(64))).unwrap()
}

fn entry(source: &str, target: &str, d: char) -> ImageMapEntry {
    ImageMapEntry {
        source: Reference::parse(source).unwrap(),
        target: Reference::parse(target).unwrap(),
        digest: digest(d),
        source_digest: None,
        chart: None,
    }
}

fn map() -> ImageMap {
    ImageMap::new(vec![
        entry(
            "quay.io/prometheus/prometheus:v2.54.1",
            "reg.local/prometheus/prometheus:v2.54.1",
            'a',
        ),
        entry(
            "quay.io/argoproj/argocd:v2.12.3",
            "reg.local/argoproj/argocd:v2.12.3",
            'b',
        ),
        entry("ghcr.io/org/sidecar:1.0", "reg.local/org/sidecar:1.0", 'c'),
        entry("ghcr.io/org/operand:2.0", "reg.local/org/operand:2.0", 'd'),
    ])
}

fn opts(fields: &[&str], secret: Option<&str>) -> RewriteOptions {
    RewriteOptions {
        rules: ImageRules::default().with_fields(
            &fields
                .iter()
                .map(|f| ImageField::parse_flag(f).unwrap())
                .collect::<Vec<_>>(),
        ),
        pull_secret: secret.map(str::to_string),
        ..Default::default()
    }
}

const PROMETHEUS: &str = "\
apiVersion: monitoring.coreos.com/v1
kind: Prometheus
metadata:
  name: k8s # the cluster's
spec:
  image: quay.io/prometheus/prometheus:v2.54.1
  replicas: 2
---
apiVersion: example.com/v1
kind: Prometheus
spec:
  image: quay.io/prometheus/prometheus:v2.54.1
";

#[test]
fn declared_field_with_policy_and_secret_in_its_group_only() {
    let o = opts(
        &["Prometheus.monitoring.coreos.com:spec.image,pullPolicy=imagePullPolicy,pullSecrets=spec.imagePullSecrets"],
        Some("regcred"),
    );
    let r = rewrite(PROMETHEUS, &map(), &o).unwrap();
    assert_eq!(
        r.text,
        "\
apiVersion: monitoring.coreos.com/v1
kind: Prometheus
metadata:
  name: k8s # the cluster's
spec:
  image: reg.local/prometheus/prometheus:v2.54.1
  imagePullPolicy: IfNotPresent
  replicas: 2
  imagePullSecrets:
  - name: regcred
---
apiVersion: example.com/v1
kind: Prometheus
spec:
  image: quay.io/prometheus/prometheus:v2.54.1
"
    );
    assert!(r.missing.is_empty());
    // Running twice changes nothing.
    let again = rewrite(&r.text, &map(), &o).unwrap();
    assert_eq!(again.text, r.text);
    // Without the rule, the object is data.
    assert_eq!(
        rewrite(PROMETHEUS, &map(), &opts(&[], None)).unwrap().text,
        PROMETHEUS
    );
}

#[test]
fn split_reference_and_list_paths() {
    let text = "\
kind: ArgoCD
spec:
  image: quay.io/argoproj/argocd
  version: v2.12.3
---
kind: Agent
spec:
  sidecars:
  - {name: a, image: ghcr.io/org/sidecar:1.0}
  - {name: b, image: \"\"}
";
    let o = opts(
        &[
            "ArgoCD:spec.image,tag=version",
            "Agent:spec.sidecars[].image",
        ],
        None,
    );
    let r = rewrite(text, &map(), &o).unwrap();
    assert_eq!(
        r.text,
        "\
kind: ArgoCD
spec:
  image: reg.local/argoproj/argocd
  version: v2.12.3
---
kind: Agent
spec:
  sidecars:
  - {name: a, image: reg.local/org/sidecar:1.0}
  - {name: b, image: \"\"}
"
    );
    assert_eq!(r.images_rewritten(), 2);
}

#[test]
fn declared_values_must_be_references_and_in_the_bundle() {
    let o = opts(&["Prometheus:spec.image"], None);
    let e = rewrite("kind: Prometheus\nspec: {image: [a]}\n", &map(), &o).unwrap_err();
    assert!(
        matches!(&e, RewriteError::BadReference { line: 2, reason, .. } if reason.contains("not a string")),
        "{e:?}"
    );
    let e = rewrite("kind: Prometheus\nspec: {image: 'Bad:Ref:x'}\n", &map(), &o).unwrap_err();
    assert!(
        matches!(e, RewriteError::BadReference { line: 2, .. }),
        "{e:?}"
    );
    let text = "kind: Prometheus\nspec:\n  image: quay.io/other/thing:1\n";
    let r = rewrite(text, &map(), &o).unwrap();
    assert_eq!(r.text, text, "an image the map lacks is left as it is");
    assert_eq!(r.missing.len(), 1);
    assert_eq!(
        (r.missing[0].line, r.missing[0].reference.as_str()),
        (3, "quay.io/other/thing:1")
    );
    // The pack check sees declared fields too.
    let uses = image_references(text, &o.rules).unwrap();
    assert_eq!(uses.len(), 1);
    assert_eq!(
        uses[0].kind,
        UseKind::Declared("Prometheus spec.image".into())
    );
}

#[test]
fn related_image_patterns_are_configurable() {
    let text = "\
kind: Deployment
spec:
  template:
    spec:
      containers:
      - image: ghcr.io/org/sidecar:1.0
        env:
        - {name: RELATED_IMAGE_OPERAND, value: ghcr.io/org/operand:2.0}
        - {name: OPERAND_IMAGE, value: ghcr.io/org/operand:2.0}
        - {name: OPERAND_NOTE, value: ghcr.io/org/operand:2.0}
";
    let default = rewrite(text, &map(), &opts(&[], None)).unwrap().text;
    assert!(default.contains("{name: RELATED_IMAGE_OPERAND, value: reg.local/org/operand:2.0}"));
    assert!(default.contains("{name: OPERAND_IMAGE, value: ghcr.io/org/operand:2.0}"));
    let mut o = opts(&[], None);
    o.rules.related_image_env = vec!["*_IMAGE".into()];
    let custom = rewrite(text, &map(), &o).unwrap().text;
    assert!(custom.contains("{name: RELATED_IMAGE_OPERAND, value: ghcr.io/org/operand:2.0}"));
    assert!(custom.contains("{name: OPERAND_IMAGE, value: reg.local/org/operand:2.0}"));
    assert!(custom.contains("{name: OPERAND_NOTE, value: ghcr.io/org/operand:2.0}"));
}

#[test]
fn discovery_finds_every_kind_of_use_once() {
    let app = "\
kind: Deployment
spec:
  template:
    spec:
      containers:
      - image: ghcr.io/org/sidecar:1.0
        env:
        - {name: RELATED_IMAGE_OPERAND, value: ghcr.io/org/operand:2.0}
        - {name: RELATED_IMAGE_FREE, value: 'not a reference!'}
      initContainers:
      - image: ghcr.io/org/sidecar:1.0
---
apiVersion: monitoring.coreos.com/v1
kind: Prometheus
spec: {image: quay.io/prometheus/prometheus:v2.54.1}
";
    let calico = format!(
        "\
apiVersion: operator.tigera.io/v1
kind: Installation
metadata: {{name: default}}
spec: {{registry: vendor.example.com/, imagePath: mirror}}
---
apiVersion: operator.tigera.io/v1
kind: ImageSet
metadata: {{name: calico-v3.29.0}}
spec:
  images:
  - {{image: calico/node, digest: {}}}
  - {{image: tigera/operator, digest: {}}}
",
        digest('e'),
        digest('f')
    );
    let files = vec![
        ("app.yaml".to_string(), app.as_bytes().to_vec()),
        ("calico.yaml".to_string(), calico.into_bytes()),
    ];
    let rules = opts(&["Prometheus:spec.image"], None).rules;
    let d = discover_images(&files, &rules).unwrap();
    let got: Vec<(String, usize, String, String)> = d
        .images
        .iter()
        .map(|i| {
            (
                i.file.clone(),
                i.line,
                i.reference.to_string(),
                i.kind.to_string(),
            )
        })
        .collect();
    let e = digest('e');
    let f = digest('f');
    assert_eq!(
        got,
        [
            (
                "app.yaml".into(),
                6,
                "ghcr.io/org/sidecar:1.0".into(),
                "container image".into()
            ),
            (
                "app.yaml".into(),
                8,
                "ghcr.io/org/operand:2.0".into(),
                "env RELATED_IMAGE_OPERAND".into()
            ),
            (
                "app.yaml".into(),
                15,
                "quay.io/prometheus/prometheus:v2.54.1".into(),
                "field Prometheus spec.image".into()
            ),
            (
                "calico.yaml".into(),
                11,
                format!("vendor.example.com/mirror/node:v3.29.0@{e}"),
                "ImageSet calico-v3.29.0".into()
            ),
            (
                "calico.yaml".into(),
                12,
                format!("vendor.example.com/mirror/operator@{f}"),
                "ImageSet calico-v3.29.0".into()
            ),
        ]
    );
    assert!(d.notes.is_empty(), "{:?}", d.notes);

    // An Installation alone: the operator's images cannot be found; say so.
    let only = vec![(
        "i.yaml".to_string(),
        b"apiVersion: operator.tigera.io/v1\nkind: Installation\nspec: {}\n".to_vec(),
    )];
    let d = discover_images(&only, &ImageRules::default()).unwrap();
    assert!(d.images.is_empty());
    assert_eq!(d.installations_without_image_set, ["i.yaml:1"]);
}

#[test]
fn discovery_errors_name_file_and_line() {
    let files = vec![(
        "bad.yaml".to_string(),
        b"kind: Pod\nspec:\n  containers:\n  - image: 'UPPER/case:1'\n".to_vec(),
    )];
    let e = discover_images(&files, &ImageRules::default()).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("bad.yaml:4: invalid image reference"),
        "{e}"
    );
}
