use saphyr::{LoadableYamlNode, Yaml};

use super::*;

const SOURCES: &[&str] = &[
    "docker.io/library/redis:7.2-alpine",
    "docker.io/library/nginx:1.25",
    "quay.io/kairos/core-ubuntu-20-lts-rke2:v1.25.2-rke2r1",
];

fn r(s: &str) -> Reference {
    Reference::parse(s).unwrap()
}

/// (source, target) as `load` names them.
fn named(target: &Target, mode: Mode, sources: &[&str]) -> Vec<(Reference, Reference)> {
    sources
        .iter()
        .map(|s| {
            let s = r(s);
            let t = target.name_for(&s, mode).unwrap();
            (s, t)
        })
        .collect()
}

fn gen(target: &str, mode: Mode, sources: &[&str], conn: &Connection) -> MirrorConfig {
    let target = Target::parse(target).unwrap();
    let pairs = named(&target, mode, sources);
    let refs: Vec<(&Reference, &Reference)> = pairs.iter().map(|(s, t)| (s, t)).collect();
    generate(&target, mode, &refs, conn).unwrap()
}

fn text<'a>(c: &'a MirrorConfig, path: &str) -> &'a str {
    let f = c
        .file(path)
        .unwrap_or_else(|| panic!("no {path} among {:?}", paths(c)));
    std::str::from_utf8(&f.contents).unwrap()
}

fn paths(c: &MirrorConfig) -> Vec<&str> {
    c.files.iter().map(|f| f.path.as_str()).collect()
}

fn yaml(s: &str) -> Yaml<'_> {
    let mut docs = Yaml::load_from_str(s).unwrap_or_else(|e| panic!("{e}:\n{s}"));
    assert_eq!(docs.len(), 1, "{s}");
    docs.remove(0)
}

fn whole(prefix: Option<&str>) -> HostMapping {
    HostMapping::Whole {
        prefix: prefix.map(str::to_string),
    }
}

#[test]
fn every_mode_and_path_maps_whole_hosts_where_the_name_keeps_the_repository() {
    let c = Connection::default();
    let cases = [
        ("reg:5000", Mode::Replace, None, None),
        (
            "reg:5000/mirror",
            Mode::Replace,
            Some("mirror"),
            Some("mirror"),
        ),
        ("reg:5000", Mode::Prefix, Some("docker.io"), Some("quay.io")),
        (
            "reg:5000/spectro-images",
            Mode::Prefix,
            Some("spectro-images/docker.io"),
            Some("spectro-images/quay.io"),
        ),
    ];
    for (target, mode, docker, quay) in cases {
        let m = gen(target, mode, SOURCES, &c);
        assert_eq!(
            m.registries,
            vec![
                SourceRegistry {
                    host: "docker.io".into(),
                    mapping: whole(docker)
                },
                SourceRegistry {
                    host: "quay.io".into(),
                    mapping: whole(quay)
                },
            ],
            "{target} {mode}"
        );
        assert!(m.notes.is_empty(), "{target} {mode}: {:?}", m.notes);
    }
}

#[test]
fn the_palette_edge_example_prefix_under_a_path() {
    // 10.10.254.254:8000/spectro-images/quay.io/kairos/core-ubuntu-20-lts-rke2:v1.25.2-rke2r1
    let m = gen(
        "10.10.254.254:8000/spectro-images",
        Mode::Prefix,
        SOURCES,
        &Connection {
            plain_http: true,
            ..Connection::default()
        },
    );
    assert_eq!(
        text(&m, "containerd/certs.d/quay.io/hosts.toml"),
        "# airgap mirror configuration, format 1: pulls of the bundle's source names go to \
         10.10.254.254:8000/spectro-images (--mode prefix).\n\
         server = \"https://quay.io\"\n\n\
         [host.\"http://10.10.254.254:8000/v2/spectro-images/quay.io\"]\n  \
         capabilities = [\"pull\", \"resolve\"]\n  override_path = true\n"
    );
    let docker = text(&m, "containerd/certs.d/docker.io/hosts.toml");
    assert!(
        docker.contains("server = \"https://registry-1.docker.io\"\n"),
        "{docker}"
    );
    let rc = text(&m, "containers/registries.conf");
    assert!(
        rc.contains(
            "[[registry]]\nprefix = \"quay.io\"\nlocation = \"quay.io\"\n\n[[registry.mirror]]\n\
             location = \"10.10.254.254:8000/spectro-images/quay.io\"\ninsecure = true\n"
        ),
        "{rc}"
    );
    let k = yaml(text(&m, "k3s/registries.yaml"));
    let q = &k["mirrors"]["quay.io"];
    assert_eq!(q["endpoint"][0].as_str(), Some("http://10.10.254.254:8000"));
    assert_eq!(
        q["rewrite"]["^(.*)$"].as_str(),
        Some("spectro-images/quay.io/${1}")
    );
    assert!(
        k.as_mapping_get("configs").is_none(),
        "plain HTTP needs no configs"
    );
}

#[test]
fn replace_without_path_needs_no_override_and_no_rewrite() {
    let m = gen("reg:5000", Mode::Replace, SOURCES, &Connection::default());
    let d = text(&m, "containerd/certs.d/docker.io/hosts.toml");
    assert!(d.contains("[host.\"https://reg:5000\"]\n"), "{d}");
    assert!(!d.contains("override_path"), "{d}");
    let k = yaml(text(&m, "k3s/registries.yaml"));
    assert_eq!(
        k["mirrors"]["docker.io"]["endpoint"][0].as_str(),
        Some("https://reg:5000")
    );
    assert!(k["mirrors"]["docker.io"]
        .as_mapping_get("rewrite")
        .is_none());
    let idms = yaml(text(&m, "openshift/imagedigestmirrorset.yaml"));
    let e = &idms["spec"]["imageDigestMirrors"];
    assert_eq!(e[0]["source"].as_str(), Some("docker.io"));
    assert_eq!(e[0]["mirrors"][0].as_str(), Some("reg:5000"));
}

#[test]
fn flatten_is_per_repository_where_the_format_allows_and_a_note_where_not() {
    let m = gen("reg:5000/x", Mode::Flatten, SOURCES, &Connection::default());
    let repos = |pairs: &[(&str, &str)]| {
        HostMapping::Repositories(
            pairs
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
        )
    };
    assert_eq!(
        m.registries[0].mapping,
        repos(&[("library/nginx", "x/nginx"), ("library/redis", "x/redis")])
    );
    // containerd: nothing written, a note per host saying why.
    assert!(m.file("containerd/certs.d/docker.io/hosts.toml").is_none());
    assert!(m.file("containerd/certs.d/quay.io/hosts.toml").is_none());
    let notes: Vec<&Note> = m
        .notes
        .iter()
        .filter(|n| n.file.starts_with("containerd/"))
        .collect();
    assert_eq!(notes.len(), 2, "{notes:?}");
    assert_eq!(notes[0].registry, "docker.io");
    assert!(
        notes[0].text.contains("library/redis -> x/redis"),
        "{}",
        notes[0].text
    );
    // registries.conf: one [[registry]] per repository.
    let rc = text(&m, "containers/registries.conf");
    assert!(
        rc.contains("prefix = \"docker.io/library/redis\"\nlocation = \"docker.io/library/redis\"\n\n[[registry.mirror]]\nlocation = \"reg:5000/x/redis\"\n"),
        "{rc}"
    );
    assert_eq!(rc.matches("[[registry]]").count(), 3, "{rc}");
    // k3s: anchored literal rewrites.
    let k = yaml(text(&m, "k3s/registries.yaml"));
    let rw = &k["mirrors"]["quay.io"]["rewrite"];
    assert_eq!(
        rw["^kairos/core-ubuntu-20-lts-rke2$"].as_str(),
        Some("x/core-ubuntu-20-lts-rke2")
    );
    assert_eq!(rw.as_mapping().unwrap().len(), 1);
    // OpenShift: per repository.
    let itms = yaml(text(&m, "openshift/imagetagmirrorset.yaml"));
    assert_eq!(itms["kind"].as_str(), Some("ImageTagMirrorSet"));
    let e = itms["spec"]["imageTagMirrors"].as_sequence().unwrap();
    assert_eq!(e.len(), 3);
    assert_eq!(
        e[2]["source"].as_str(),
        Some("quay.io/kairos/core-ubuntu-20-lts-rke2")
    );
    assert_eq!(
        e[2]["mirrors"][0].as_str(),
        Some("reg:5000/x/core-ubuntu-20-lts-rke2")
    );
    let readme = text(&m, "README.md");
    assert!(
        readme.contains("What the formats cannot express"),
        "{readme}"
    );
}

#[test]
fn flatten_of_one_component_repositories_is_a_whole_host() {
    let m = gen(
        "reg:5000",
        Mode::Flatten,
        &["ghcr.io/app:1", "ghcr.io/db:2"],
        &Connection::default(),
    );
    assert_eq!(m.registries[0].mapping, whole(None));
    assert!(m.file("containerd/certs.d/ghcr.io/hosts.toml").is_some());
}

#[test]
fn regex_metacharacters_in_repositories_are_escaped() {
    let m = gen(
        "reg:5000",
        Mode::Flatten,
        &["ghcr.io/a.b/c.d:1"],
        &Connection::default(),
    );
    let k = text(&m, "k3s/registries.yaml");
    assert!(k.contains(r#""^a\\.b/c\\.d$": "c.d""#), "{k}");
    let y = yaml(k);
    assert_eq!(
        y["mirrors"]["ghcr.io"]["rewrite"][r"^a\.b/c\.d$"].as_str(),
        Some("c.d")
    );
}

#[test]
fn source_ports_become_path_components_in_prefix_mode() {
    let m = gen(
        "reg:5000",
        Mode::Prefix,
        &["localhost:5001/a/b:1"],
        &Connection::default(),
    );
    assert_eq!(m.registries[0].mapping, whole(Some("localhost_5001")));
    let t = text(&m, "containerd/certs.d/localhost:5001/hosts.toml");
    assert!(
        t.contains("[host.\"https://reg:5000/v2/localhost_5001\"]"),
        "{t}"
    );
}

#[test]
fn tls_with_a_ca_copied_and_without_a_node_path() {
    let pem = b"-----BEGIN CERTIFICATE-----\n".to_vec();
    let c = Connection {
        ca_pem: Some(pem.clone()),
        ..Connection::default()
    };
    let m = gen("reg:5000", Mode::Replace, SOURCES, &c);
    assert_eq!(m.file("ca.crt").unwrap().contents, pem);
    assert_eq!(
        m.file("containerd/certs.d/docker.io/ca.crt")
            .unwrap()
            .contents,
        pem
    );
    assert_eq!(
        m.file("containers/certs.d/reg:5000/ca.crt")
            .unwrap()
            .contents,
        pem
    );
    let d = text(&m, "containerd/certs.d/docker.io/hosts.toml");
    assert!(d.contains("  ca = \"ca.crt\"\n"), "{d}");
    assert!(!d.contains("skip_verify"), "{d}");
    let k = yaml(text(&m, "k3s/registries.yaml"));
    assert_eq!(
        k["configs"]["reg:5000"]["tls"]["ca_file"].as_str(),
        Some(k3s::DEFAULT_CA)
    );
    assert!(text(&m, "README.md").contains(k3s::DEFAULT_CA));
    assert!(!text(&m, "containers/registries.conf").contains("insecure"));
    let oc: Vec<&Note> = m
        .notes
        .iter()
        .filter(|n| n.file == openshift::IDMS)
        .collect();
    assert_eq!(oc.len(), 1, "{oc:?}");
    assert!(oc[0].text.contains("\"reg..5000\""), "{}", oc[0].text);
}

#[test]
fn tls_with_a_node_path_and_skip_verify() {
    let c = Connection {
        ca_node_path: Some("/etc/pki/airgap.pem".into()),
        insecure_skip_tls_verify: true,
        ..Connection::default()
    };
    let m = gen("reg:5000/p", Mode::Replace, SOURCES, &c);
    let d = text(&m, "containerd/certs.d/docker.io/hosts.toml");
    assert!(
        d.contains("  ca = \"/etc/pki/airgap.pem\"\n  skip_verify = true\n"),
        "{d}"
    );
    assert!(m.file("ca.crt").is_none());
    let k = yaml(text(&m, "k3s/registries.yaml"));
    let tls = &k["configs"]["reg:5000"]["tls"];
    assert_eq!(tls["ca_file"].as_str(), Some("/etc/pki/airgap.pem"));
    assert_eq!(tls["insecure_skip_verify"].as_bool(), Some(true));
    assert!(text(&m, "containers/registries.conf").contains("insecure = true"));
    assert!(m
        .notes
        .iter()
        .any(|n| n.file == registries_conf::PATH && n.text.contains("/etc/pki/airgap.pem")));
}

#[test]
fn credentials_only_when_given_and_only_in_secret_files() {
    let m = gen("reg:5000", Mode::Replace, SOURCES, &Connection::default());
    assert!(m.files.iter().all(|f| !f.secret), "{:?}", paths(&m));
    assert!(m.file(registries_conf::AUTH).is_none());

    let c = Connection {
        credentials: Some(Credentials::new("bob", "hunter2")),
        ..Connection::default()
    };
    let m = gen("reg:5000/p", Mode::Prefix, SOURCES, &c);
    for f in &m.files {
        let has = String::from_utf8_lossy(&f.contents).contains("hunter2")
            || f.contents.windows(4).any(|w| w == b"Ym9i");
        assert_eq!(has, f.secret, "{}", f.path);
    }
    let secret: Vec<&str> = m
        .files
        .iter()
        .filter(|f| f.secret)
        .map(|f| f.path.as_str())
        .collect();
    assert_eq!(secret, vec![registries_conf::AUTH, k3s::PATH]);
    let k = yaml(text(&m, k3s::PATH));
    assert_eq!(
        k["configs"]["reg:5000"]["auth"]["username"].as_str(),
        Some("bob")
    );
    assert_eq!(
        k["configs"]["reg:5000"]["auth"]["password"].as_str(),
        Some("hunter2")
    );
    let auth: serde_json::Value =
        serde_json::from_slice(&m.file(registries_conf::AUTH).unwrap().contents).unwrap();
    assert_eq!(auth["auths"]["reg:5000"]["auth"], "Ym9iOmh1bnRlcjI=");
    // containerd cannot hold them, and its token scope names the source repository.
    let notes: Vec<&Note> = m
        .notes
        .iter()
        .filter(|n| n.registry == "docker.io")
        .collect();
    assert_eq!(notes.len(), 2, "{notes:?}");
    assert!(text(&m, "README.md").contains("0600"));
}

#[test]
fn names_not_from_this_target_and_mode_are_refused() {
    let target = Target::parse("reg:5000").unwrap();
    let s = r("docker.io/library/redis:7");
    let wrong = r("reg:5000/docker.io/library/redis:7");
    let e = generate(
        &target,
        Mode::Replace,
        &[(&s, &wrong)],
        &Connection::default(),
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "image docker.io/library/redis:7 is named reg:5000/docker.io/library/redis:7, not \
         reg:5000/library/redis:7 as --registry reg:5000 --mode replace names it"
    );
    assert!(e.hint().is_some());
}

#[test]
fn target_and_mode_are_inferred_from_an_image_map() {
    for (target, mode) in [
        ("reg:5000", Mode::Replace),
        ("reg:5000/a/b", Mode::Replace),
        ("reg:5000", Mode::Prefix),
        ("reg:5000/spectro-images", Mode::Prefix),
        ("reg:5000/x", Mode::Flatten),
    ] {
        let t = Target::parse(target).unwrap();
        let pairs = named(&t, mode, SOURCES);
        let refs: Vec<(&Reference, &Reference)> = pairs.iter().map(|(s, t)| (s, t)).collect();
        let (it, im) = infer_target(&refs).unwrap();
        assert_eq!((&it, im), (&t, mode), "{target} {mode}");
        let a = generate(&t, mode, &refs, &Connection::default()).unwrap();
        let b = generate(&it, im, &refs, &Connection::default()).unwrap();
        assert_eq!(a, b);
    }
    let s = r("docker.io/library/redis:7");
    let t = r("reg:5000/elsewhere/redis-renamed:7");
    assert!(matches!(
        infer_target(&[(&s, &t)]),
        Err(MirrorError::NoTarget { .. })
    ));
    assert!(matches!(infer_target(&[]), Err(MirrorError::Empty)));
}

#[test]
fn write_puts_every_file_in_place_with_its_mode() {
    let dir = tempfile::tempdir().unwrap();
    let c = Connection {
        credentials: Some(Credentials::new("u", "p")),
        ca_pem: Some(b"pem".to_vec()),
        ..Connection::default()
    };
    let m = gen("reg:5000", Mode::Prefix, SOURCES, &c);
    let written = m.write(dir.path()).unwrap();
    assert_eq!(written.len(), m.files.len());
    for f in &m.files {
        let p = dir.path().join(&f.path);
        assert_eq!(std::fs::read(&p).unwrap(), f.contents, "{}", f.path);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, if f.secret { 0o600 } else { 0o644 }, "{}", f.path);
        }
    }
    let readme = std::fs::read_to_string(dir.path().join("README.md")).unwrap();
    for want in [
        "/etc/containerd/certs.d",
        "/etc/rancher/k3s/registries.yaml",
        "registries.conf.d",
        "oc apply",
    ] {
        assert!(readme.contains(want), "{want}:\n{readme}");
    }
}

#[test]
fn the_image_map_and_placements_give_the_same_pairs() {
    let target = Target::parse("reg:5000").unwrap();
    let pairs = named(&target, Mode::Prefix, SOURCES);
    let d = crate::digest::Digest::of(b"x");
    let placements: Vec<Placement> = pairs
        .iter()
        .map(|(s, t)| Placement {
            source: s.clone(),
            target: t.clone(),
            digest: d.clone(),
            source_digest: None,
            media_type: String::new(),
            chart: None,
        })
        .collect();
    let entries: Vec<ImageMapEntry> = placements
        .iter()
        .map(|p| ImageMapEntry {
            source: p.source.clone(),
            target: p.target.clone(),
            digest: p.digest.clone(),
            source_digest: None,
            chart: None,
        })
        .collect();
    assert_eq!(
        pairs_of_placements(&placements),
        pairs_of_image_map(&entries)
    );
}
