//! Text in, text out: every expected output is written out in full.

use super::*;
use crate::digest::Digest;
use crate::image_map::{ImageMap, ImageMapEntry};

const REDIS: &str = "reg.local:5000/library/redis:7";
const NGINX: &str = "reg.local:5000/library/nginx:1.25";

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
    let mut busybox = entry("busybox:1.36", "reg.local:5000/library/busybox:1.36", 'b');
    busybox.source_digest = Some(digest('e'));
    ImageMap::new(vec![
        entry("redis:7", REDIS, 'a'),
        entry("nginx:1.25", NGINX, 'c'),
        busybox,
        entry(
            &format!("quay.io/org/app@{}", digest('d')),
            "reg.local:5000/org/app",
            'd',
        ),
    ])
}

/// Drops the leading line break of a raw string literal, so that texts read as files.
fn t(s: &str) -> &str {
    s.strip_prefix('\n').unwrap_or(s)
}

fn rw(text: &str) -> Rewritten {
    rewrite(text, &map(), &RewriteOptions::default()).unwrap()
}

fn rw_with(text: &str, opts: RewriteOptions) -> String {
    rewrite(text, &map(), &opts).unwrap().text
}

fn secret(name: &str) -> RewriteOptions {
    RewriteOptions {
        pin_digests: false,
        pull_secret: Some(name.to_string()),
        ..Default::default()
    }
}

#[test]
fn pod_block_style() {
    let input = t(r#"
apiVersion: v1
kind: Pod
metadata:
  name: web
spec:
  containers:
    - name: cache
      image: redis:7
      ports:
        - containerPort: 6379
    - image: nginx:1.25
      name: web
"#);
    let out = rw(input);
    assert_eq!(
        out.text,
        t(r#"
apiVersion: v1
kind: Pod
metadata:
  name: web
spec:
  containers:
    - name: cache
      image: reg.local:5000/library/redis:7
      imagePullPolicy: IfNotPresent
      ports:
        - containerPort: 6379
    - image: reg.local:5000/library/nginx:1.25
      imagePullPolicy: IfNotPresent
      name: web
"#)
    );
    assert_eq!(
        out.changes,
        [
            Change {
                line: 8,
                kind: ChangeKind::Image,
                from: "redis:7".into(),
                to: REDIS.into()
            },
            Change {
                line: 8,
                kind: ChangeKind::PullPolicy,
                from: "".into(),
                to: "IfNotPresent".into()
            },
            Change {
                line: 11,
                kind: ChangeKind::Image,
                from: "nginx:1.25".into(),
                to: NGINX.into()
            },
            Change {
                line: 11,
                kind: ChangeKind::PullPolicy,
                from: "".into(),
                to: "IfNotPresent".into()
            },
        ]
    );
    assert_eq!(out.images_rewritten(), 2);
    assert!(out.missing.is_empty());
}

/// The workload kinds whose pod spec is at `spec.template.spec`, in any apiVersion.
#[test]
fn template_kinds() {
    for kind in [
        "Deployment",
        "StatefulSet",
        "DaemonSet",
        "ReplicaSet",
        "ReplicationController",
        "Job",
    ] {
        let input = format!(
            "apiVersion: example.io/v9\nkind: {kind}\nspec:\n  replicas: 1\n  template:\n    metadata: {{labels: {{app: a}}}}\n    spec:\n      containers:\n      - name: a\n        image: redis:7\n  paused: false\n"
        );
        let want = format!(
            "apiVersion: example.io/v9\nkind: {kind}\nspec:\n  replicas: 1\n  template:\n    metadata: {{labels: {{app: a}}}}\n    spec:\n      containers:\n      - name: a\n        image: {REDIS}\n        imagePullPolicy: IfNotPresent\n  paused: false\n"
        );
        assert_eq!(rw(&input).text, want, "{kind}");
    }
}

#[test]
fn cronjob_pod_template_and_container_fields() {
    let input = t(r#"
kind: CronJob
spec:
  schedule: "* * * * *"
  jobTemplate:
    spec:
      template:
        spec:
          initContainers:
          - name: init
            image: busybox:1.36
          containers:
          - name: a
            image: redis:7
          ephemeralContainers:
          - name: debug
            image: nginx:1.25
---
kind: PodTemplate
template:
  spec:
    containers:
    - name: a
      image: redis:7
"#);
    assert_eq!(
        rw(input).text,
        t(r#"
kind: CronJob
spec:
  schedule: "* * * * *"
  jobTemplate:
    spec:
      template:
        spec:
          initContainers:
          - name: init
            image: reg.local:5000/library/busybox:1.36
            imagePullPolicy: IfNotPresent
          containers:
          - name: a
            image: reg.local:5000/library/redis:7
            imagePullPolicy: IfNotPresent
          ephemeralContainers:
          - name: debug
            image: reg.local:5000/library/nginx:1.25
            imagePullPolicy: IfNotPresent
---
kind: PodTemplate
template:
  spec:
    containers:
    - name: a
      image: reg.local:5000/library/redis:7
      imagePullPolicy: IfNotPresent
"#)
    );
}

#[test]
fn list_items_recursively() {
    let input = t(r#"
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Pod
  spec: {containers: [{name: a, image: redis:7}]}
- kind: ConfigMap
  data:
    image: redis:7
- kind: List
  items:
  - kind: Deployment
    spec:
      template:
        spec:
          containers:
          - {name: b, image: "nginx:1.25"}
"#);
    assert_eq!(
        rw(input).text,
        t(r#"
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Pod
  spec: {containers: [{name: a, image: reg.local:5000/library/redis:7, imagePullPolicy: IfNotPresent}]}
- kind: ConfigMap
  data:
    image: redis:7
- kind: List
  items:
  - kind: Deployment
    spec:
      template:
        spec:
          containers:
          - {name: b, image: "reg.local:5000/library/nginx:1.25", imagePullPolicy: IfNotPresent}
"#)
    );
}

#[test]
fn other_kinds_are_data() {
    let input = t(r#"
apiVersion: v1
kind: ConfigMap
data:
  image: redis:7
  spec: |
    containers:
    - image: redis:7
---
kind: Service
spec:
  containers:
  - image: redis:7
---
containers:
- image: redis:7
"#);
    let out = rw(input);
    assert_eq!(out.text, input);
    assert!(out.changes.is_empty());
    assert!(out.missing.is_empty());
    assert!(image_references(input, &Default::default())
        .unwrap()
        .is_empty());
}

#[test]
fn quoting_styles_are_kept() {
    let input = t(r#"
kind: Pod
spec:
  containers:
  - image: redis:7
    imagePullPolicy: Always
  - image: 'nginx:1.25'
    imagePullPolicy: 'Always'
  - image: "docker.io/library/busybox:1.36"
    imagePullPolicy: "Always"
"#);
    assert_eq!(
        rw(input).text,
        t(r#"
kind: Pod
spec:
  containers:
  - image: reg.local:5000/library/redis:7
    imagePullPolicy: IfNotPresent
  - image: 'reg.local:5000/library/nginx:1.25'
    imagePullPolicy: 'IfNotPresent'
  - image: "reg.local:5000/library/busybox:1.36"
    imagePullPolicy: "IfNotPresent"
"#)
    );
}

#[test]
fn escaped_and_multi_line_quoted_scalars() {
    let input = "kind: Pod\nspec:\n  containers:\n  - image: \"re\\\n      dis:7\" # split\n    imagePullPolicy: Never\n  - image: 'nginx:1.25'' # not a comment' # a comment\n";
    let out = rewrite(input, &map(), &RewriteOptions::default());
    let err = out.unwrap_err();
    assert_eq!(
        err,
        RewriteError::BadReference {
            line: 7,
            reference: "nginx:1.25' # not a comment".into(),
            reason: "it contains white space".into()
        }
    );
    let input = "kind: Pod\nspec:\n  containers:\n  - image: \"re\\\n      dis:7\" # split\n    imagePullPolicy: Never\n";
    assert_eq!(
        rw(input).text,
        format!("kind: Pod\nspec:\n  containers:\n  - image: \"{REDIS}\" # split\n    imagePullPolicy: Never\n")
    );
}

#[test]
fn policy_never_and_if_not_present_are_kept() {
    let input = t(r#"
kind: Pod
spec:
  containers:
  - image: redis:7
    imagePullPolicy: Never
  - image: nginx:1.25
    imagePullPolicy: IfNotPresent
  - image: busybox:1.36
    imagePullPolicy:
  - image: busybox:1.36
    imagePullPolicy: ~ # null
"#);
    assert_eq!(
        rw(input).text,
        t(r#"
kind: Pod
spec:
  containers:
  - image: reg.local:5000/library/redis:7
    imagePullPolicy: Never
  - image: reg.local:5000/library/nginx:1.25
    imagePullPolicy: IfNotPresent
  - image: reg.local:5000/library/busybox:1.36
    imagePullPolicy: IfNotPresent
  - image: reg.local:5000/library/busybox:1.36
    imagePullPolicy: IfNotPresent # null
"#)
    );
}

#[test]
fn flow_style_containers() {
    let input = t(r#"
kind: Pod
spec:
  containers: [{name: a, image: redis:7}, {image: 'nginx:1.25', name: b,}]
  initContainers: [
    {name: c, image: busybox:1.36 # a comment
    },
    {name: d, image: redis:7, imagePullPolicy: Always},
  ]
"#);
    assert_eq!(
        rw(input).text,
        t(r#"
kind: Pod
spec:
  containers: [{name: a, image: reg.local:5000/library/redis:7, imagePullPolicy: IfNotPresent}, {image: 'reg.local:5000/library/nginx:1.25', imagePullPolicy: IfNotPresent, name: b,}]
  initContainers: [
    {name: c, image: reg.local:5000/library/busybox:1.36, imagePullPolicy: IfNotPresent # a comment
    },
    {name: d, image: reg.local:5000/library/redis:7, imagePullPolicy: IfNotPresent},
  ]
"#)
    );
}

#[test]
fn comments_on_the_same_line_and_around() {
    let input = t(r#"
# a Pod
kind: Pod # kind
spec: # the spec
  containers: # list
  # first
  - name: a # name
    image: redis:7 # pinned
    # policy below?
    args: ["--x"] # args
"#);
    assert_eq!(
        rw(input).text,
        t(r#"
# a Pod
kind: Pod # kind
spec: # the spec
  containers: # list
  # first
  - name: a # name
    image: reg.local:5000/library/redis:7 # pinned
    imagePullPolicy: IfNotPresent
    # policy below?
    args: ["--x"] # args
"#)
    );
}

#[test]
fn crlf_line_endings() {
    let input = "kind: Pod\r\nspec:\r\n  containers:\r\n  - name: a\r\n    image: redis:7 # c\r\n  - name: b\r\n    image: \"nginx:1.25\"\r\n";
    assert_eq!(
        rw_with(input, secret("regcred")),
        format!("kind: Pod\r\nspec:\r\n  containers:\r\n  - name: a\r\n    image: {REDIS} # c\r\n    imagePullPolicy: IfNotPresent\r\n  - name: b\r\n    image: \"{NGINX}\"\r\n    imagePullPolicy: IfNotPresent\r\n  imagePullSecrets:\r\n  - name: regcred\r\n")
    );
}

#[test]
fn no_final_line_break() {
    let input = "kind: Pod\nspec:\n  containers:\n  - name: a\n    image: redis:7";
    assert_eq!(
        rw_with(input, secret("regcred")),
        format!("kind: Pod\nspec:\n  containers:\n  - name: a\n    image: {REDIS}\n    imagePullPolicy: IfNotPresent\n  imagePullSecrets:\n  - name: regcred")
    );
}

#[test]
fn multiple_documents_with_markers() {
    let input = t(r#"
%YAML 1.2
---
kind: Pod
spec:
  containers:
  - image: redis:7
...
---
# empty document follows
---
kind: Pod
spec:
  containers:
  - image: nginx:1.25
...
"#);
    assert_eq!(
        rw(input).text,
        t(r#"
%YAML 1.2
---
kind: Pod
spec:
  containers:
  - image: reg.local:5000/library/redis:7
    imagePullPolicy: IfNotPresent
...
---
# empty document follows
---
kind: Pod
spec:
  containers:
  - image: reg.local:5000/library/nginx:1.25
    imagePullPolicy: IfNotPresent
...
"#)
    );
}

#[test]
fn unicode_before_the_image_line() {
    let input = t(r#"
# Ünïcödé: 日本語のコメント 🚀
kind: Pod
metadata:
  annotations: {description: "façade — 東京", emoji: 🐳}
spec:
  containers:
  - name: café
    image: "redis:7" # ☕
    env: [{name: GREETING, value: 'héllo wörld'}]
  - {name: ñ, image: nginx:1.25}
"#);
    assert_eq!(
        rw(input).text,
        t(r#"
# Ünïcödé: 日本語のコメント 🚀
kind: Pod
metadata:
  annotations: {description: "façade — 東京", emoji: 🐳}
spec:
  containers:
  - name: café
    image: "reg.local:5000/library/redis:7" # ☕
    imagePullPolicy: IfNotPresent
    env: [{name: GREETING, value: 'héllo wörld'}]
  - {name: ñ, image: reg.local:5000/library/nginx:1.25, imagePullPolicy: IfNotPresent}
"#)
    );
}

#[test]
fn byte_order_mark() {
    let input = "\u{feff}kind: Pod\nspec:\n  containers: [{image: 'redis:7'}]\n";
    assert_eq!(
        rw(input).text,
        format!("\u{feff}kind: Pod\nspec:\n  containers: [{{image: '{REDIS}', imagePullPolicy: IfNotPresent}}]\n")
    );
}

/// `image: *x`: the anchored scalar is rewritten, once; the aliases stay aliases.
#[test]
fn anchors_and_aliases() {
    let input = t(r#"
kind: Deployment
spec:
  template:
    spec:
      initContainers:
      - name: init
        image: &img "redis:7"
      containers:
      - name: a
        image: *img
      - &sidecar
        name: b
        image: nginx:1.25
---
kind: Pod
spec:
  containers:
  - <<: &base {image: busybox:1.36, imagePullPolicy: Always}
    name: c
  - <<: *base
    name: d
"#);
    let out = rw(input);
    assert_eq!(
        out.text,
        t(r#"
kind: Deployment
spec:
  template:
    spec:
      initContainers:
      - name: init
        image: &img "reg.local:5000/library/redis:7"
        imagePullPolicy: IfNotPresent
      containers:
      - name: a
        image: *img
        imagePullPolicy: IfNotPresent
      - &sidecar
        name: b
        image: reg.local:5000/library/nginx:1.25
        imagePullPolicy: IfNotPresent
---
kind: Pod
spec:
  containers:
  - <<: &base {image: reg.local:5000/library/busybox:1.36, imagePullPolicy: IfNotPresent}
    name: c
  - <<: *base
    name: d
"#)
    );
    assert_eq!(out.images_rewritten(), 3);
}

#[test]
fn aliased_containers_are_rewritten_once() {
    let input = t(r#"
kind: List
items:
- kind: Pod
  spec:
    containers: &ctrs
    - name: a
      image: redis:7
- kind: Pod
  spec:
    containers: *ctrs
"#);
    let out = rw_with(input, secret("regcred"));
    assert_eq!(
        out,
        t(r#"
kind: List
items:
- kind: Pod
  spec:
    containers: &ctrs
    - name: a
      image: reg.local:5000/library/redis:7
      imagePullPolicy: IfNotPresent
    imagePullSecrets:
    - name: regcred
- kind: Pod
  spec:
    containers: *ctrs
    imagePullSecrets:
    - name: regcred
"#)
    );
}

#[test]
fn missing_images_are_collected() {
    let input = t(r#"
kind: Pod
spec:
  containers:
  - name: a
    image: redis:6
  - name: b
    image: ghcr.io/x/y:1
---
kind: Pod
spec:
  containers:
  - name: a
    image: redis:6
  - name: b
    image: redis:7
"#);
    let out = rw(input);
    assert_eq!(
        out.missing,
        [
            Missing {
                line: 5,
                reference: "redis:6".into()
            },
            Missing {
                line: 7,
                reference: "ghcr.io/x/y:1".into()
            },
            Missing {
                line: 13,
                reference: "redis:6".into()
            },
        ]
    );
    // The first pod spec matched nothing: untouched. The second was rewritten: every
    // container gets the policy, the missing one too.
    assert_eq!(
        out.text,
        t(r#"
kind: Pod
spec:
  containers:
  - name: a
    image: redis:6
  - name: b
    image: ghcr.io/x/y:1
---
kind: Pod
spec:
  containers:
  - name: a
    image: redis:6
    imagePullPolicy: IfNotPresent
  - name: b
    image: reg.local:5000/library/redis:7
    imagePullPolicy: IfNotPresent
"#)
    );
}

#[test]
fn malformed_yaml_is_an_error_with_line_and_column() {
    let input = "kind: Pod\nspec:\n  containers:\n  - image: redis:7\n   bad: [\n";
    match rewrite(input, &map(), &RewriteOptions::default()) {
        Err(RewriteError::Yaml { line, col, message }) => {
            assert_eq!((line, col), (5, 4), "{message}");
        }
        other => panic!("expected a YAML error, got {other:?}"),
    }
    let input = "kind: Pod\nspec: {containers: [}\n";
    let err = image_references(input, &Default::default()).unwrap_err();
    assert!(matches!(err, RewriteError::Yaml { line: 2, .. }), "{err}");
    assert!(err.to_string().starts_with("line 2, column "), "{err}");
}

#[test]
fn bad_references_are_errors_with_line() {
    let cases = [
        ("image: Redis:7", "Redis:7"),
        ("image: \"\"", ""),
        ("image: redis@sha256:abc", "redis@sha256:abc"),
        ("image: [redis]", "[redis]"),
    ];
    for (line, reference) in cases {
        let input = format!("kind: Pod\nspec:\n  containers:\n  - name: a\n    {line}\n");
        match rewrite(&input, &map(), &RewriteOptions::default()) {
            Err(RewriteError::BadReference {
                line: 5,
                reference: r,
                ..
            }) => assert_eq!(r, reference),
            other => panic!("{line}: expected a bad reference on line 5, got {other:?}"),
        }
    }
}

#[test]
fn digests() {
    let a = digest('a');
    let b = digest('b');
    let d = digest('d');
    let e = digest('e');
    let input = format!(
        "kind: Pod\nspec:\n  containers:\n  - image: redis:7\n  - image: redis@{a}\n  - image: redis:7@{a}\n  - image: busybox@{e}\n  - image: quay.io/org/app@{d}\n  - image: quay.io/org/app:v1@{d}\n"
    );
    let plain = rewrite(&input, &map(), &RewriteOptions::default()).unwrap();
    let policy = "    imagePullPolicy: IfNotPresent\n";
    assert_eq!(
        plain.text,
        format!(
            "kind: Pod\nspec:\n  containers:\n  - image: {REDIS}\n{policy}  - image: reg.local:5000/library/redis@{a}\n{policy}  - image: {REDIS}@{a}\n{policy}  - image: reg.local:5000/library/busybox@{b}\n{policy}  - image: reg.local:5000/org/app@{d}\n{policy}  - image: reg.local:5000/org/app@{d}\n{policy}"
        )
    );
    let pinned = rw_with(
        "kind: Pod\nspec:\n  containers:\n  - image: redis:7\n    imagePullPolicy: Never\n",
        RewriteOptions {
            pin_digests: true,
            pull_secret: None,
            ..Default::default()
        },
    );
    assert_eq!(
        pinned,
        format!(
            "kind: Pod\nspec:\n  containers:\n  - image: {REDIS}@{a}\n    imagePullPolicy: Never\n"
        )
    );
}

#[test]
fn running_twice_changes_nothing() {
    let input = t(r#"
kind: Pod
spec:
  containers:
  - image: redis:7
  - image: "nginx:1.25"
    imagePullPolicy: Always
  - {image: busybox:1.36}
"#);
    for opts in [
        RewriteOptions::default(),
        RewriteOptions {
            pin_digests: true,
            pull_secret: Some("regcred".into()),
            ..Default::default()
        },
    ] {
        let once = rewrite(input, &map(), &opts).unwrap();
        assert_ne!(once.text, input);
        let twice = rewrite(&once.text, &map(), &opts).unwrap();
        assert_eq!(twice.text, once.text);
        assert!(twice.changes.is_empty(), "{:?}", twice.changes);
        assert!(twice.missing.is_empty(), "{:?}", twice.missing);
    }
}

#[test]
fn pull_secret_added_when_absent() {
    let input = t(r#"
kind: Deployment
spec:
  template:
    spec:
      containers:
        - name: a
          image: ghcr.io/not/mapped:1
      restartPolicy: Always # keep
  strategy: {}
---
kind: Pod
spec: {containers: [{image: redis:7}]}
---
kind: Pod
spec: {}
"#);
    assert_eq!(
        rw_with(input, secret("regcred")),
        t(r#"
kind: Deployment
spec:
  template:
    spec:
      containers:
        - name: a
          image: ghcr.io/not/mapped:1
      restartPolicy: Always # keep
      imagePullSecrets:
        - name: regcred
  strategy: {}
---
kind: Pod
spec: {containers: [{image: reg.local:5000/library/redis:7, imagePullPolicy: IfNotPresent}], imagePullSecrets: [{name: regcred}]}
---
kind: Pod
spec: {imagePullSecrets: [{name: regcred}]}
"#)
    );
}

#[test]
fn pull_secret_appended_to_existing_lists() {
    let input = t(r#"
kind: Pod
spec:
  imagePullSecrets:
  - name: other # theirs
  containers: []
---
kind: Pod
spec:
  imagePullSecrets: [{name: other}, ]
---
kind: Pod
spec:
  imagePullSecrets: []
---
kind: Pod
spec:
  imagePullSecrets:
---
kind: Pod
spec:
  imagePullSecrets: ~
---
kind: Pod
spec:
  imagePullSecrets:
    - name: other
    - {name: regcred}
"#);
    assert_eq!(
        rw_with(input, secret("regcred")),
        t(r#"
kind: Pod
spec:
  imagePullSecrets:
  - name: other # theirs
  - name: regcred
  containers: []
---
kind: Pod
spec:
  imagePullSecrets: [{name: other}, {name: regcred}, ]
---
kind: Pod
spec:
  imagePullSecrets: [{name: regcred}]
---
kind: Pod
spec:
  imagePullSecrets: [{name: regcred}]
---
kind: Pod
spec:
  imagePullSecrets: [{name: regcred}]
---
kind: Pod
spec:
  imagePullSecrets:
    - name: other
    - {name: regcred}
"#)
    );
}

#[test]
fn pull_secret_for_service_accounts() {
    let input = t(r#"
apiVersion: v1
kind: ServiceAccount
metadata:
  name: default
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: builder}
imagePullSecrets:
- name: other
automountServiceAccountToken: false
---
kind: ConfigMap
metadata: {name: x}
"#);
    assert_eq!(
        rw_with(input, secret("regcred")),
        t(r#"
apiVersion: v1
kind: ServiceAccount
metadata:
  name: default
imagePullSecrets:
- name: regcred
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: builder}
imagePullSecrets:
- name: other
- name: regcred
automountServiceAccountToken: false
---
kind: ConfigMap
metadata: {name: x}
"#)
    );
    // Without the option, nothing changes.
    assert_eq!(rw(input).text, input);
}

#[test]
fn pull_secret_names_are_quoted_when_needed() {
    let input = "kind: ServiceAccount\nmetadata: {name: a}\n";
    assert_eq!(
        rw_with(input, secret("true")),
        "kind: ServiceAccount\nmetadata: {name: a}\nimagePullSecrets:\n- name: \"true\"\n"
    );
}

#[test]
fn block_scalar_images() {
    let input = "kind: Pod\nspec:\n  containers:\n  - image: |-\n      redis:7\n    name: a\n";
    assert_eq!(
        rw(input).text,
        format!("kind: Pod\nspec:\n  containers:\n  - image: |-\n      {REDIS}\n    imagePullPolicy: IfNotPresent\n    name: a\n")
    );
}

#[test]
fn image_references_lists_every_container_image() {
    let input = t(r#"
kind: Pod
spec:
  initContainers: [{image: busybox}]
  containers:
  - image: &x redis:7
  - image: *x
---
kind: ConfigMap
data: {image: nope}
---
kind: CronJob
spec: {jobTemplate: {spec: {template: {spec: {containers: [{image: "quay.io/a/b:1"}]}}}}}
"#);
    let refs: Vec<(usize, String, String)> = image_references(input, &Default::default())
        .unwrap()
        .into_iter()
        .map(|u| (u.line, u.text, u.reference.to_string()))
        .collect();
    let want = [
        (3, "busybox", "docker.io/library/busybox"),
        (5, "redis:7", "docker.io/library/redis:7"),
        (6, "redis:7", "docker.io/library/redis:7"),
        (12, "quay.io/a/b:1", "quay.io/a/b:1"),
    ];
    let want: Vec<(usize, String, String)> = want
        .iter()
        .map(|&(l, t, r)| (l, t.to_string(), r.to_string()))
        .collect();
    assert_eq!(refs, want);
}

#[test]
fn merge_keys_get_the_policy_after_the_merge() {
    let input = t(r#"
x-template: &tmpl
  image: redis:7
kind: Pod
spec:
  containers:
  - <<: *tmpl # from the template
    name: a
  - name: b
    <<: [{args: [x]}, *tmpl]
"#);
    assert_eq!(
        rw(input).text,
        t(r#"
x-template: &tmpl
  image: reg.local:5000/library/redis:7
kind: Pod
spec:
  containers:
  - <<: *tmpl # from the template
    imagePullPolicy: IfNotPresent
    name: a
  - name: b
    <<: [{args: [x]}, *tmpl]
    imagePullPolicy: IfNotPresent
"#)
    );
}
