use std::cell::RefCell;
use std::path::{Path, PathBuf};

use super::*;

const FILE: &str = "airgap.yaml";
const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn env(var: &str) -> Option<String> {
    match var {
        "VENDOR_USER" => Some("vendor".into()),
        "VENDOR_PASS" => Some("vendor-secret".into()),
        "QUAY_USER" => Some("quay".into()),
        "QUAY_PASS" => Some("quay-secret".into()),
        "HUB_USER" => Some("hub".into()),
        "HUB_PASS" => Some("hub-secret".into()),
        "EMPTY" => Some(String::new()),
        _ => None,
    }
}

fn parse(text: &str) -> Result<Spec, SpecError> {
    Spec::parse(text, Path::new(FILE), &env)
}

fn ok(text: &str) -> Spec {
    parse(text).unwrap_or_else(|e| panic!("should parse: {e}\n{text}"))
}

/// Asserts `text` fails with a message at `FILE:line:col` that contains `needle`.
fn fails_at(text: &str, line: usize, col: usize, needle: &str) -> SpecError {
    let e = match parse(text) {
        Ok(_) => panic!("should fail with {needle:?}:\n{text}"),
        Err(e) => e,
    };
    let msg = e.to_string();
    let prefix = format!("{FILE}:{line}:{col}: ");
    assert!(msg.starts_with(&prefix), "expected {prefix:?} in {msg:?}");
    assert!(msg.contains(needle), "expected {needle:?} in {msg:?}");
    let at = e.location().expect("a location");
    assert_eq!((at.line, at.column), (line, col));
    e
}

fn refs(spec: &Spec) -> Vec<String> {
    spec.images
        .iter()
        .map(|i| i.reference.to_string())
        .collect()
}

const ISSUE_EXAMPLE: &str = r#"
sources:
  replicated:                       # the vendor's own registry
    registry: registry.replicated.com/myapp
    auth: {usernameEnv: VENDOR_USER, passwordEnv: VENDOR_PASS}
  mythirdpartyprivateregistry:
    registry: quay.io
    auth: {usernameEnv: QUAY_USER, passwordEnv: QUAY_PASS}
images:
- source: mythirdpartyprivateregistry
  name: namespace/imagename
  tag: 2.0.0
- source: public
  name: redis
  tag: 3.2-alpine
- source: replicated
  name: worker
  tag: 1.0.1
- source: public
  name: busybox
  digest: sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
- image: quay.io/kairos/core-ubuntu-20-lts-rke2:v1.25.2-rke2r1
platforms: [linux/amd64, linux/arm64]
manifests: [k8s/]
registries:
  docker.io: http://127.0.0.1:5000
"#;

#[test]
fn issue_example() {
    let spec = ok(ISSUE_EXAMPLE);
    assert_eq!(
        refs(&spec),
        [
            "quay.io/namespace/imagename:2.0.0".to_string(),
            "docker.io/library/redis:3.2-alpine".into(),
            "registry.replicated.com/myapp/worker:1.0.1".into(),
            format!("docker.io/library/busybox@{DIGEST}"),
            "quay.io/kairos/core-ubuntu-20-lts-rke2:v1.25.2-rke2r1".into(),
        ]
    );
    let sources: Vec<&str> = spec.images.iter().map(|i| i.source.as_str()).collect();
    assert_eq!(
        sources,
        [
            "mythirdpartyprivateregistry",
            "public",
            "replicated",
            "public",
            "image"
        ]
    );
    let lines: Vec<usize> = spec.images.iter().map(|i| i.line).collect();
    assert_eq!(lines, [10, 13, 16, 19, 22]);
    let quay = Some(Credentials::new("quay", "quay-secret"));
    let vendor = Some(Credentials::new("vendor", "vendor-secret"));
    let creds: Vec<Option<Credentials>> =
        spec.images.iter().map(|i| i.credentials.clone()).collect();
    // The `image:` entry on quay.io gets quay's credentials too; Docker Hub images get none.
    assert_eq!(creds, [quay.clone(), None, vendor, None, quay]);
    assert_eq!(
        spec.images[4].credentials_source.as_deref(),
        Some("mythirdpartyprivateregistry")
    );
    assert_eq!(
        spec.platforms,
        [
            Platform::parse("linux/amd64").unwrap(),
            Platform::parse("linux/arm64").unwrap()
        ]
    );
    assert_eq!(
        spec.manifests,
        [ManifestSource {
            pattern: "k8s/".into(),
            line: 24,
            column: 13
        }]
    );
    assert_eq!(spec.mirrors["docker.io"].as_str(), "http://127.0.0.1:5000/");
    assert!(spec.warnings.is_empty(), "{:?}", spec.warnings);
    let replicated = spec.source("replicated").unwrap();
    assert_eq!(
        (
            replicated.host.as_str(),
            replicated.prefix.as_str(),
            replicated.line
        ),
        ("registry.replicated.com", "myapp", 3)
    );
    assert_eq!(
        replicated.auth.as_ref().unwrap().password_env,
        "VENDOR_PASS"
    );
    // Debug output of the spec never shows a secret.
    let debug = format!("{spec:?}");
    assert!(!debug.contains("quay-secret") && !debug.contains("vendor-secret"));
}

#[test]
fn replicated_seed_format() {
    // The `images:` section of Replicated's docs, verbatim: `tag: 9.4` is a YAML float.
    let spec = ok("images:
- source: public
  name: redis
  tag: 3.2-alpine
- source: public
  name: postgres
  tag: 9.4
- source: public
  name: postgres
  tag: 1.10
- name: app
  tag: 1
");
    assert_eq!(
        refs(&spec),
        [
            "docker.io/library/redis:3.2-alpine",
            "docker.io/library/postgres:9.4",
            "docker.io/library/postgres:1.10",
            "docker.io/library/app:1",
        ]
    );
}

#[test]
fn numbers_with_anchors_tags_and_aliases() {
    let spec = ok("images:
- name: a
  tag: &v 1.10
- name: b
  tag: !!float 2.50
- name: c
  tag: 0x10
");
    assert_eq!(
        refs(&spec),
        [
            "docker.io/library/a:1.10",
            "docker.io/library/b:2.50",
            "docker.io/library/c:0x10"
        ]
    );
    // An alias's text is `*v`: the written form of the number is unknown, so say so.
    fails_at(
        "images:\n- name: a\n  tag: &v 1.10\n- name: b\n  tag: *v\n",
        5,
        8,
        "write it in quotes",
    );
}

#[test]
fn number_text_after_multibyte_characters() {
    // saphyr's markers count characters; the raw text must still be sliced right.
    let spec = ok("# café, naïve, 日本語\nimages:\n- name: redis # é\n  tag: 1.10\n");
    assert_eq!(refs(&spec), ["docker.io/library/redis:1.10"]);
}

#[test]
fn public_names_with_their_own_host_and_defaults() {
    let spec = ok("version: 1
images:
- name: ghcr.io/org/tool
  tag: v1
- name: bitnami/redis
  tag: '7'
- source: public
  name: localhost:5000/x/y
  tag: a
  digest: sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
");
    assert_eq!(
        refs(&spec),
        [
            "ghcr.io/org/tool:v1".to_string(),
            "docker.io/bitnami/redis:7".into(),
            format!("localhost:5000/x/y:a@{DIGEST}"),
        ]
    );
    assert!(spec.platforms.is_empty() && spec.manifests.is_empty() && spec.mirrors.is_empty());
}

#[test]
fn latest_warnings() {
    let spec = ok(&format!(
        "images:
- name: redis
- name: nginx
  tag: latest
- image: quay.io/a/b
- image: quay.io/a/c:latest@{DIGEST}
- image: quay.io/a/d@{DIGEST}
- image: quay.io/a/e:1
"
    ));
    assert_eq!(
        refs(&spec)[..4],
        [
            "docker.io/library/redis:latest".to_string(),
            "docker.io/library/nginx:latest".into(),
            "quay.io/a/b:latest".into(),
            format!("quay.io/a/c:latest@{DIGEST}"),
        ]
    );
    assert_eq!(
        spec.images[4].reference.tag(),
        None,
        "digest-only stays digest-only"
    );
    let w = &spec.warnings;
    assert_eq!(w.len(), 4, "{w:#?}");
    assert!(
        w[0].starts_with("airgap.yaml:2:9: docker.io/library/redis has no tag"),
        "{}",
        w[0]
    );
    assert!(
        w[1].starts_with("airgap.yaml:3:9: docker.io/library/nginx is tagged `latest`"),
        "{}",
        w[1]
    );
    assert!(w[2].starts_with("airgap.yaml:5:10:"), "{}", w[2]);
    assert!(w[3].starts_with("airgap.yaml:6:10:"), "{}", w[3]);
    for x in w {
        assert!(x.contains("pin a version tag or a digest"), "{x}");
    }
}

#[test]
fn duplicates_are_dropped_with_a_warning_naming_both_lines() {
    let spec = ok("images:
- name: redis
  tag: '7'
- image: docker.io/library/redis:7
- image: index.docker.io/redis:7
- name: redis
  tag: '8'
");
    assert_eq!(
        refs(&spec),
        ["docker.io/library/redis:7", "docker.io/library/redis:8"]
    );
    assert_eq!(spec.warnings.len(), 2, "{:?}", spec.warnings);
    assert!(
        spec.warnings[0].starts_with("airgap.yaml:4:3:")
            && spec.warnings[0].contains("first on line 2"),
        "{}",
        spec.warnings[0]
    );
    assert!(
        spec.warnings[1].starts_with("airgap.yaml:5:3:"),
        "{}",
        spec.warnings[1]
    );
    // `redis` and `redis:latest` are the same image.
    let spec = ok("images:\n- name: redis\n- image: redis:latest\n");
    assert_eq!(spec.images.len(), 1);
    assert!(spec.warnings.iter().any(|w| w.contains("listed twice")));
    // The ignored duplicate gets no `latest` warning of its own.
    assert_eq!(spec.warnings.len(), 2, "{:?}", spec.warnings);
    assert!(
        spec.warnings[0].starts_with("airgap.yaml:2:9:") && spec.warnings[0].contains("`latest`")
    );
}

#[test]
fn credentials_follow_hosts_and_prefixes() {
    let spec = ok("sources:
  hub:
    registry: index.docker.io
    auth: {usernameEnv: HUB_USER, passwordEnv: HUB_PASS}
  vendor:
    registry: quay.io/vendor
    auth: {usernameEnv: VENDOR_USER, passwordEnv: VENDOR_PASS}
  quay:
    registry: quay.io
    auth: {usernameEnv: QUAY_USER, passwordEnv: QUAY_PASS}
  open:
    registry: ghcr.io/open
images:
- name: myorg/private
  tag: '1'
- image: quay.io/vendor/app:1
- image: quay.io/vendorx/app:1
- source: quay
  name: vendor/other
  tag: '1'
- source: open
  name: tool
  tag: '1'
- image: gcr.io/x/y:1
");
    assert_eq!(
        refs(&spec),
        [
            "docker.io/myorg/private:1",
            "quay.io/vendor/app:1",
            "quay.io/vendorx/app:1",
            "quay.io/vendor/other:1",
            "ghcr.io/open/tool:1",
            "gcr.io/x/y:1",
        ]
    );
    let users: Vec<Option<&str>> = spec
        .images
        .iter()
        .map(|i| i.credentials.as_ref().map(|c| c.username.as_str()))
        .collect();
    // public → hub by host; longest prefix wins; `vendorx` is not under `vendor`;
    // an explicit `source:` with auth wins over a longer prefix; no auth → none.
    assert_eq!(
        users,
        [
            Some("hub"),
            Some("vendor"),
            Some("quay"),
            Some("quay"),
            None,
            None
        ]
    );
    assert!(spec.warnings.is_empty(), "{:?}", spec.warnings);
}

#[test]
fn first_source_wins_on_the_same_host() {
    let spec = ok("sources:
  a: {registry: quay.io, auth: {usernameEnv: QUAY_USER, passwordEnv: QUAY_PASS}}
  b: {registry: quay.io, auth: {usernameEnv: HUB_USER, passwordEnv: HUB_PASS}}
  c: {registry: quay.io/team, auth: {usernameEnv: VENDOR_USER, passwordEnv: VENDOR_PASS}}
images:
- image: quay.io/x/y:1
- image: quay.io/team/y:1
- {source: b, name: x/z, tag: '1'}
");
    let from: Vec<Option<&str>> = spec
        .images
        .iter()
        .map(|i| i.credentials_source.as_deref())
        .collect();
    assert_eq!(from, [Some("a"), Some("c"), Some("b")]);
    assert!(spec.warnings.is_empty(), "{:?}", spec.warnings);
}

#[test]
fn unused_sources_warn_and_their_variables_are_not_read() {
    let read = RefCell::new(Vec::<String>::new());
    let env = |v: &str| {
        read.borrow_mut().push(v.to_string());
        None
    };
    let spec = Spec::parse(
        "sources:
  unused:
    registry: quay.io/x
    auth: {usernameEnv: NOT_SET_U, passwordEnv: NOT_SET_P}
images:
- image: ghcr.io/a/b:1
",
        Path::new(FILE),
        &env,
    )
    .unwrap();
    assert!(read.borrow().is_empty(), "{:?}", read.borrow());
    assert_eq!(
        spec.warnings,
        ["airgap.yaml:2:3: source `unused` is not used by any image"]
    );
}

#[test]
fn missing_or_empty_credentials() {
    let text = "sources:
  vendor:
    registry: registry.replicated.com/myapp
    auth:
      usernameEnv: NOT_SET
      passwordEnv: VENDOR_PASS
images:
- source: vendor
  name: worker
  tag: 1.0.1
";
    let e = fails_at(text, 5, 20, "environment variable NOT_SET is not set");
    assert!(e.to_string().contains("source `vendor`"), "{e}");
    assert!(matches!(
        e,
        SpecError::MissingEnv {
            field: "usernameEnv",
            ..
        }
    ));
    let e = fails_at(
        &text
            .replace("NOT_SET", "VENDOR_USER")
            .replace("VENDOR_PASS", "EMPTY"),
        6,
        20,
        "EMPTY is not set or is empty",
    );
    assert!(
        matches!(
            e,
            SpecError::MissingEnv {
                field: "passwordEnv",
                ..
            }
        ),
        "{e}"
    );
    // Flow style: the position is the variable's name.
    fails_at(
        "sources:\n  q:\n    registry: quay.io\n    auth: {usernameEnv: QUAY_USER, passwordEnv: NOPE}\nimages:\n- image: quay.io/a/b:1\n",
        4,
        49,
        "NOPE",
    );
}

#[test]
fn unknown_keys() {
    fails_at(
        "images: [{name: redis}]\nplatform: [linux/amd64]\n",
        2,
        1,
        "unknown key `platform` in the spec (did you mean `platforms`?)",
    );
    fails_at(
        "images:\n- name: redis\n  tags: 1\n",
        3,
        3,
        "unknown key `tags` in an image entry (did you mean `tag`?)",
    );
    fails_at(
        "images:\n- name: redis\n  pullPolicy: Always\n",
        3,
        3,
        "allowed keys: `image`, `source`, `name`, `tag`, `digest`",
    );
    fails_at(
        "sources:\n  q:\n    registry: quay.io\n    url: x\nimages: [{name: a}]\n",
        4,
        5,
        "unknown key `url` in source `q`",
    );
    let e = fails_at(
        "sources:\n  q:\n    registry: quay.io\n    auth: {username: me, passwordEnv: P}\nimages: [{name: a}]\n",
        4,
        12,
        "unknown key `username`",
    );
    assert!(e.to_string().contains("use `usernameEnv`"), "{e}");
    assert_eq!(e.kind(), Some(ErrorKind::UnknownKey));
}

#[test]
fn unknown_source() {
    let e = fails_at(
        "sources:\n  quay: {registry: quay.io}\nimages:\n- source: qauy\n  name: a/b\n",
        4,
        11,
        "unknown source `qauy` (known: `public`, `quay`)",
    );
    assert_eq!(e.kind(), Some(ErrorKind::UnknownSource));
}

#[test]
fn bad_references() {
    let e = fails_at("images:\n- name: UPPER/case\n", 2, 9, "must be lower case");
    assert_eq!(e.kind(), Some(ErrorKind::BadReference));
    fails_at(
        "images:\n- image: a::b\n",
        2,
        10,
        "invalid image reference \"a::b\"",
    );
    fails_at(
        "images:\n- name: redis\n  tag: \"\"\n",
        3,
        8,
        "`tag` is empty",
    );
    fails_at("images:\n- name: redis\n  tag:\n", 3, 6, "`tag` is empty");
    fails_at("images:\n- name: redis\n  tag: -x\n", 3, 8, "tag \"-x\"");
    fails_at(
        "images:\n- name: redis\n  digest: sha256:abc\n",
        3,
        11,
        "digest:",
    );
    fails_at(
        "images:\n- name: redis:7\n",
        2,
        9,
        "must not carry a tag or digest",
    );
    fails_at(
        "sources:\n  q: {registry: quay.io}\nimages:\n- source: q\n  name: a/b:1\n",
        5,
        9,
        "must be a path inside source `q` (quay.io)",
    );
    fails_at(
        "sources:\n  q: {registry: quay.io}\nimages:\n- source: q\n  name: A\n",
        5,
        9,
        "must be lower case",
    );
    fails_at("images:\n- image: ''\n", 2, 10, "it is empty");
}

#[test]
fn bad_platforms() {
    let e = fails_at(
        "images: [{name: a, tag: '1'}]\nplatforms: [linux/amd64, linux]\n",
        2,
        26,
        "invalid platform \"linux\"",
    );
    assert_eq!(e.kind(), Some(ErrorKind::BadPlatform));
    fails_at(
        "images: [{name: a, tag: '1'}]\nplatforms: []\n",
        2,
        12,
        "leave `platforms:` out",
    );
    fails_at(
        "images: [{name: a, tag: '1'}]\nplatforms: linux/amd64\n",
        2,
        12,
        "platforms: expected a list",
    );
}

#[test]
fn malformed_yaml() {
    let e = fails_at(
        "images:\n- name: redis\n  tag: [1, 2\n",
        4,
        1,
        "invalid YAML",
    );
    assert!(matches!(e, SpecError::Yaml { .. }));
    fails_at("images:\n- name: a\n  name: b\n", 3, 3, "duplicated key");
    fails_at("images:\n\t- name: a\n", 2, 2, "tabs");
    fails_at(
        "images: [{name: a}]\n---\nimages: [{name: b}]\n",
        3,
        1,
        "more than one YAML document",
    );
}

#[test]
fn wrong_types() {
    let e = fails_at(
        "images: 5\n",
        1,
        9,
        "images: expected a list of images, found the number 5",
    );
    assert_eq!(e.kind(), Some(ErrorKind::WrongType));
    fails_at("images:\n- redis:7\n", 2, 3, "write `- image: redis:7`");
    fails_at("images:\n- [a]\n", 2, 3, "found a list");
    fails_at(
        "images:\n- name: {a: b}\n",
        2,
        9,
        "name: expected a string, found a mapping",
    );
    fails_at("- a\n- b\n", 1, 1, "the spec: expected a mapping");
    fails_at(
        "sources: [a]\nimages: [{name: a}]\n",
        1,
        10,
        "sources: expected a mapping",
    );
    fails_at(
        "sources:\n  q: quay.io\nimages: [{name: a}]\n",
        2,
        6,
        "source `q`: expected a mapping",
    );
    fails_at(
        "images: [{name: a}]\nmanifests: k8s/\n",
        2,
        12,
        "manifests: expected a list",
    );
    fails_at(
        "images: [{name: a}]\nregistries: [a]\n",
        2,
        13,
        "registries: expected a mapping",
    );
    fails_at(
        "images:\n  1: a\n",
        2,
        3,
        "expected a list of images, found a mapping",
    );
    fails_at("images:\n- ? [x]\n  : y\n", 2, 5, "keys must be strings");
}

#[test]
fn empty_and_missing() {
    let e = fails_at("images: []\n", 1, 9, "images: the list is empty");
    assert_eq!(e.kind(), Some(ErrorKind::EmptyImages));
    fails_at(
        "images:\n",
        1,
        7,
        "images: expected a list of images, found an empty value",
    );
    fails_at("", 1, 1, "the spec is empty");
    fails_at("# nothing\n", 1, 1, "the spec is empty");
    fails_at("platforms: [linux/amd64]\n", 1, 1, "no `images:` list");
    fails_at("images:\n- tag: '1'\n", 2, 3, "needs `name:`");
    fails_at(
        "sources:\n  q: {auth: {usernameEnv: A, passwordEnv: B}}\nimages: [{name: a}]\n",
        2,
        6,
        "has no `registry:`",
    );
    fails_at(
        "sources:\n  q:\n    registry: quay.io\n    auth: {usernameEnv: A}\nimages: [{name: a}]\n",
        4,
        11,
        "needs `passwordEnv`",
    );
}

#[test]
fn conflicts() {
    let e = fails_at(
        "images:\n- image: redis:7\n  name: redis\n",
        3,
        3,
        "either `image:` or `name:`",
    );
    assert_eq!(e.kind(), Some(ErrorKind::Conflict));
    fails_at(
        "images:\n- image: redis\n  tag: '7'\n",
        3,
        3,
        "`tag` cannot be used with `image:`",
    );
    fails_at(
        "images:\n- source: public\n  image: redis:7\n",
        2,
        3,
        "`source` cannot be used with `image:`",
    );
}

#[test]
fn versions() {
    ok("version: 1\nimages: [{name: a, tag: '1'}]\n");
    let e = fails_at(
        "version: 2\nimages: [{name: a}]\n",
        1,
        10,
        "unsupported spec version 2",
    );
    assert_eq!(e.kind(), Some(ErrorKind::UnsupportedVersion));
    fails_at(
        "version: v1\nimages: [{name: a}]\n",
        1,
        10,
        "expected the number 1",
    );
}

#[test]
fn bad_sources() {
    fails_at(
        "sources:\n  public: {registry: quay.io}\nimages: [{name: a}]\n",
        2,
        3,
        "built-in",
    );
    fails_at(
        "sources:\n  q: {registry: 'https://quay.io'}\nimages: [{name: a}]\n",
        2,
        17,
        "without the https:// scheme",
    );
    fails_at(
        "sources:\n  q: {registry: myregistry}\nimages: [{name: a}]\n",
        2,
        17,
        "Docker Hub namespace",
    );
    fails_at(
        "sources:\n  q: {registry: 'quay.io:99999'}\nimages: [{name: a}]\n",
        2,
        17,
        "invalid port",
    );
    fails_at(
        "sources:\n  q: {registry: quay.io/Bad}\nimages: [{name: a}]\n",
        2,
        17,
        "path prefix \"Bad\"",
    );
    fails_at(
        "sources:\n  'a b': {registry: quay.io}\nimages: [{name: a}]\n",
        2,
        3,
        "may only contain",
    );
    fails_at("sources:\n  q:\n    registry: quay.io\n    auth: {usernameEnv: 'A B', passwordEnv: P}\nimages: [{name: a}]\n", 4, 25, "not an environment variable name");
    // index.docker.io is Docker Hub; a trailing slash is fine; a port is a host.
    let spec = ok("sources:
  hub: {registry: index.docker.io/}
  local: {registry: 'localhost:5000/team'}
  intranet: {registry: 'registry:5000'}
images:
- {source: hub, name: redis, tag: '7'}
- {source: local, name: app, tag: '1'}
- {source: intranet, name: app, tag: '1'}
");
    assert_eq!(
        refs(&spec),
        [
            "docker.io/library/redis:7",
            "localhost:5000/team/app:1",
            "registry:5000/app:1"
        ]
    );
}

#[test]
fn name_that_looks_like_a_host_under_a_source_warns() {
    let spec = ok(
        "sources:\n  q: {registry: quay.io}\nimages:\n- {source: q, name: ghcr.io/x, tag: '1'}\n",
    );
    assert_eq!(refs(&spec), ["quay.io/ghcr.io/x:1"]);
    assert_eq!(spec.warnings.len(), 1);
    assert!(
        spec.warnings[0].starts_with("airgap.yaml:4:21:"),
        "{}",
        spec.warnings[0]
    );
}

#[test]
fn mirrors() {
    let spec = ok("images: [{name: a, tag: '1'}]
registries:
  index.docker.io: http://127.0.0.1:5000
  quay.io: https://mirror.example.com:8443/
");
    assert_eq!(spec.mirrors.len(), 2);
    assert_eq!(spec.mirrors["docker.io"].as_str(), "http://127.0.0.1:5000/");
    assert_eq!(spec.mirrors["quay.io"].port(), Some(8443));
    let base = "images: [{name: a}]\nregistries:\n";
    fails_at(
        &format!("{base}  quay.io: ftp://x\n"),
        3,
        12,
        "scheme must be http or https",
    );
    fails_at(
        &format!("{base}  quay.io: mirror:5000\n"),
        3,
        12,
        "scheme must be http or https",
    );
    fails_at(
        &format!("{base}  quay.io: '127.0.0.1:5000'\n"),
        3,
        12,
        "not a URL",
    );
    fails_at(
        &format!("{base}  quay.io: http://u:p@x\n"),
        3,
        12,
        "must not contain credentials",
    );
    fails_at(
        &format!("{base}  quay.io: http://x/v2/\n"),
        3,
        12,
        "just scheme://host[:port]",
    );
    fails_at(
        &format!("{base}  https://quay.io: http://x\n"),
        3,
        3,
        "without scheme or path",
    );
    fails_at(
        &format!("{base}  docker.io: http://x\n  index.docker.io: http://y\n"),
        4,
        3,
        "listed twice",
    );
}

#[test]
fn manifests_patterns_are_checked() {
    let base = "images: [{name: a}]\nmanifests:\n";
    fails_at(&format!("{base}- /etc/k8s\n"), 3, 3, "is absolute");
    fails_at(
        &format!("{base}- ../k8s\n"),
        3,
        3,
        "leaves the spec file's directory",
    );
    fails_at(&format!("{base}- ''\n"), 3, 3, "empty path");
}

fn touch(root: &Path, rel: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, "kind: ConfigMap\n").unwrap();
}

fn rels(files: &[ManifestFile]) -> Vec<String> {
    files
        .iter()
        .map(|f| f.relative.to_string_lossy().into_owned())
        .collect()
}

#[test]
fn manifest_expansion() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    for f in [
        "k8s/deploy.yaml",
        "k8s/svc.yml",
        "k8s/README.md",
        "k8s/.hidden.yaml",
        "k8s/sub/cm.yaml",
        "k8s/.git/config.yaml",
        "charts/a/templates/t.yaml",
        "charts/b/templates/t.yaml",
        "charts/b/values.yaml",
        "extra/kustomization",
        "empty/notes.txt",
    ] {
        touch(root, f);
    }
    std::os::unix::fs::symlink(root.join("k8s"), root.join("k8s/sub/loop")).unwrap();
    let spec_path = root.join(FILE);
    let spec = |manifests: &str| {
        Spec::parse(
            &format!("images: [{{name: a, tag: '1'}}]\nmanifests: {manifests}\n"),
            &spec_path,
            &env,
        )
        .unwrap()
    };
    let files = spec("[k8s/]").manifest_files().unwrap();
    assert_eq!(
        rels(&files),
        ["k8s/deploy.yaml", "k8s/sub/cm.yaml", "k8s/svc.yml"]
    );
    assert_eq!(files[0].path, root.join("k8s/deploy.yaml"));
    assert_eq!(files[0].line, 2);

    let files =
        spec("['charts/*/templates/*.yaml', extra/kustomization, ./k8s/deploy.yaml, 'k8s/*.yaml']")
            .manifest_files()
            .unwrap();
    assert_eq!(
        rels(&files),
        [
            "charts/a/templates/t.yaml",
            "charts/b/templates/t.yaml",
            "extra/kustomization",
            "k8s/deploy.yaml"
        ]
    );
    let files = spec("['**/t.yaml', 'charts/**']").manifest_files().unwrap();
    assert_eq!(
        rels(&files),
        [
            "charts/a/templates/t.yaml",
            "charts/b/templates/t.yaml",
            "charts/b/values.yaml"
        ]
    );
    let files = spec("['k8s/s?b']").manifest_files().unwrap();
    assert_eq!(rels(&files), ["k8s/sub/cm.yaml"]);

    for (pattern, needle) in [
        ("[k8s/, missing/]", "\"missing/\" does not exist"),
        (
            "[k8s/, empty]",
            "directory \"empty\" holds no .yaml or .yml file",
        ),
        (
            "[k8s/, 'k8s/*.json']",
            "\"k8s/*.json\" matches no .yaml or .yml file",
        ),
        ("[k8s/, 'nowhere/*.yaml']", "matches no"),
    ] {
        let e = spec(pattern).manifest_files().unwrap_err().to_string();
        let prefix = format!("{}:2:", spec_path.display());
        assert!(
            e.starts_with(&prefix) && e.contains(needle),
            "{pattern}: {e}"
        );
    }
    // ManifestSource::expand works on its own too.
    let s = spec("['k8s/*.y*ml']");
    assert_eq!(
        s.manifests[0].expand(&spec_path).unwrap(),
        [
            PathBuf::from("k8s/deploy.yaml"),
            PathBuf::from("k8s/svc.yml")
        ]
    );
}

#[test]
fn load_reads_files_and_names_them() {
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("spec.yaml");
    std::fs::write(&path, "images:\n- name: redis\n  tag: '7'\n").unwrap();
    let spec = Spec::load(&path).unwrap();
    assert_eq!(spec.path, path);
    assert_eq!(spec.base_dir(), d.path());
    assert_eq!(refs(&spec), ["docker.io/library/redis:7"]);

    std::fs::write(&path, "images:\n- name: redis\n  tagg: '7'\n").unwrap();
    let e = Spec::load(&path).unwrap_err().to_string();
    assert!(e.starts_with(&format!("{}:3:3: ", path.display())), "{e}");

    let missing = d.path().join("absent.yaml");
    let e = Spec::load(&missing).unwrap_err();
    assert!(matches!(e, SpecError::Read { .. }));
    assert!(e.to_string().contains("absent.yaml"), "{e}");
    assert_eq!(
        Spec::parse("images: [{name: a, tag: '1'}]", Path::new("x.yaml"), &env)
            .unwrap()
            .base_dir(),
        Path::new(".")
    );
}

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("bundle-spec/examples")
}

/// Every example in bundle-spec/examples parses, without warnings, with every variable set.
#[test]
fn examples_parse() {
    let mut count = 0;
    for entry in std::fs::read_dir(examples_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let spec = Spec::parse(&text, &path, &|v| Some(format!("value-of-{v}")))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            spec.warnings.is_empty(),
            "{}: {:?}",
            path.display(),
            spec.warnings
        );
        assert!(!spec.images.is_empty());
        count += 1;
    }
    assert!(count >= 2, "expected at least two examples, found {count}");
}

/// The JSON Schema lists exactly the keys the parser accepts.
#[test]
fn schema_matches_the_parser() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("bundle-spec/airgap.schema.json");
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert_eq!(
        schema["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    let keys = |v: &serde_json::Value| -> Vec<String> {
        let mut k: Vec<String> = v["properties"]
            .as_object()
            .unwrap_or_else(|| panic!("no properties in {v}"))
            .keys()
            .cloned()
            .collect();
        k.sort();
        k
    };
    let sorted = |s: &[&str]| {
        let mut v: Vec<String> = s.iter().map(|x| x.to_string()).collect();
        v.sort();
        v
    };
    assert_eq!(keys(&schema), sorted(parse::TOP_KEYS));
    let defs = &schema["$defs"];
    assert_eq!(keys(&defs["source"]), sorted(parse::SOURCE_KEYS));
    assert_eq!(keys(&defs["auth"]), sorted(parse::AUTH_KEYS));
    let mut image_keys = keys(&defs["namedImage"]);
    image_keys.extend(keys(&defs["plainImage"]));
    image_keys.sort();
    assert_eq!(image_keys, sorted(parse::IMAGE_KEYS));
    assert_eq!(keys(&defs["imageField"]), sorted(rules::FIELD_KEYS));
    assert_eq!(keys(&defs["chart"]), sorted(charts::CHART_KEYS));
    assert_eq!(defs["imageField"]["additionalProperties"], false);
    for def in ["source", "auth", "namedImage", "plainImage", "chart"] {
        assert_eq!(defs[def]["additionalProperties"], false, "{def}");
    }
    assert_eq!(schema["additionalProperties"], false);
}

#[test]
fn image_rules_and_images_from_manifests() {
    let s = ok("\
imagesFromManifests: true
manifests: [k8s/]
imageFields:
- {kind: Prometheus, group: monitoring.coreos.com, path: spec.image, pullPolicy: imagePullPolicy}
- {kind: ArgoCD, path: spec.image, tag: version}
relatedImageEnv: [RELATED_IMAGE_*, '*_IMAGE']
sources:
  quay: {registry: quay.io, auth: {usernameEnv: QUAY_USER, passwordEnv: QUAY_PASS}}
");
    assert!(s.images.is_empty());
    assert_eq!(s.images_from_manifests.as_ref().map(|l| l.line), Some(1));
    assert_eq!(s.rules.fields.len(), 2);
    assert_eq!(
        s.rules.fields[0].group.as_deref(),
        Some("monitoring.coreos.com")
    );
    assert_eq!(s.rules.fields[1].tag.as_deref(), Some("version"));
    assert_eq!(s.rules.related_image_env, ["RELATED_IMAGE_*", "*_IMAGE"]);
    // A found image gets the credentials of the source that contains it.
    let e = s
        .found_image(Reference::parse("quay.io/org/app:1").unwrap(), &env)
        .unwrap();
    assert_eq!(e.source, IMAGE_SOURCE);
    assert_eq!(e.credentials_source.as_deref(), Some("quay"));
    assert!(e.credentials.is_some());
    let hub = s
        .found_image(Reference::parse("redis").unwrap(), &env)
        .unwrap();
    assert_eq!(hub.reference.to_string(), "docker.io/library/redis:latest");
    assert!(hub.credentials.is_none());
    // Without the switch, nothing changes: images: is required, rules default.
    let plain = ok("images: [{image: redis:7}]\n");
    assert!(plain.images_from_manifests.is_none() && plain.rules.is_default());
}

#[test]
fn bad_image_rules_are_errors_at_their_line() {
    fails_at("imagesFromManifests: true\n", 1, 22, "needs `manifests:`");
    fails_at(
        "imagesFromManifests: yes please\nmanifests: [k]\n",
        1,
        22,
        "expected true or false",
    );
    fails_at(
        "images: [{image: a}]\nimageFields:\n- {kind: Prometheus}\n",
        3,
        3,
        "no `path:`",
    );
    fails_at(
        "images: [{image: a}]\nimageFields:\n- {kind: Prometheus, path: spec..image}\n",
        3,
        3,
        "is not a key",
    );
    fails_at(
        "images: [{image: a}]\nimageFields:\n- {kind: Prometheus, path: spec.image, colour: red}\n",
        3,
        40,
        "unknown key `colour`",
    );
    fails_at(
        "images: [{image: a}]\nrelatedImageEnv: ['*']\n",
        2,
        19,
        "would take every variable",
    );
    fails_at("imageFields: [{kind: X, path: a}]\n", 1, 1, "no `images:`");
}

#[test]
fn charts_become_entries_named_charts_name_version() {
    let s = ok("\
charts:
- oci: oci://ghcr.io/acme/charts/app
  version: 1.0.0+meta
- repo: https://charts.example.com:8443/stable/
  name: web
  version: '0.4'
- path: pkgs/demo-chart-1.2.3-rc.1.tgz
");
    let names: Vec<String> = s.images.iter().map(|i| i.reference.to_string()).collect();
    assert_eq!(
        names,
        [
            "ghcr.io/acme/charts/app:1.0.0_meta",
            "charts.example.com:8443/charts/web:0.4",
            "localhost/charts/demo-chart:1.2.3-rc.1",
        ]
    );
    assert!(s.images.iter().all(|i| i.source == CHART_SOURCE));
    assert_eq!(s.images[0].chart.as_ref().unwrap().source, ChartWhere::Oci);
    assert_eq!(s.images[2].chart.as_ref().unwrap().at.line, 7);
}

#[test]
fn bad_chart_entries_name_their_line() {
    for (text, want) in [
        (
            "charts:\n- repo: https://c.example.com\n  name: web\n",
            "2:3: this chart entry needs `version:`",
        ),
        (
            "charts:\n- oci: ghcr.io/a/b\n  version: 1.0.0\n",
            "2:8: `oci:` \"ghcr.io/a/b\" must start with oci://",
        ),
        (
            "charts:\n- oci: oci://h/a\n  path: x.tgz\n",
            "2:3: a chart entry needs exactly one of",
        ),
        (
            "charts:\n- repo: ftp://x\n  name: a\n  version: 1.0.0\n",
            "is not an http(s) URL",
        ),
        (
            "charts:\n- path: chart.tgz\n",
            "cannot tell the chart's name and version",
        ),
        (
            "charts:\n- oci: oci://h/a\n  version: 1\n  tag: x\n",
            "unknown key `tag` in a chart entry",
        ),
    ] {
        let e = Spec::parse(text, Path::new("airgap.yaml"), &|_| None).unwrap_err();
        assert!(e.to_string().contains(want), "{text}: {e}");
    }
}
