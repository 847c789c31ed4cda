//! Mirror configuration (`airgap::outputs::mirror`) checked by its real consumers: a
//! containerd daemon fetching the *source* names through the generated `certs.d`, and skopeo
//! inspecting them through the generated `registries.conf`, digests equal to the bundle's,
//! with the sources unreachable (the fixture registry is stopped after pack; docker.io and
//! quay.io do not resolve here). k3s and OpenShift are not available: their files are parsed
//! back and checked field by field against the placements.

mod support;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use airgap::load::Placement;
use airgap::naming::{Mode, Target};
use airgap::outputs::mirror::{self, Connection, MirrorConfig};
use saphyr::{LoadableYamlNode, Yaml};
use support::containerd::Containerd;
use support::*;

/// The source names, as in the issue: Docker Hub and quay.io, one multi-platform index, one
/// Docker manifest, one image pinned by digest only.
struct World {
    bundle: PathBuf,
    metadata: airgap::bundle::Metadata,
}

fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| {
        let src = Registry::start(RegistryOpts::plain());
        let fx = Fixtures::new(&src);
        fx.image(
            "library/redis",
            Some("7.2-alpine"),
            &ImageOpts::oci(11).layers(1, 2048),
        );
        fx.oci_index("kairos/core-x", "v1.0", 12);
        fx.image(
            "kairos/provider",
            Some("v2"),
            &ImageOpts::docker(13).layers(1, 2048),
        );
        // The kinds the demo bundle has: a Docker manifest list (with an arm/v7 variant) too.
        fx.docker_list("library/nginx", "1.27", 15);
        let pinned = fx.digest_only("library/busybox", 14);
        let dir = support::containerd::process_dir("mirror-config-bundle");
        let spec = Spec::new()
            .image("docker.io/library/redis:7.2-alpine")
            .image("quay.io/kairos/core-x:v1.0")
            .image("quay.io/kairos/provider:v2")
            .image("docker.io/library/nginx:1.27")
            .image(&format!("docker.io/library/busybox@{}", pinned.digest))
            .write(&dir);
        let bundle = dir.join("bundle.tar.zst");
        pack_ok(
            &spec,
            &bundle,
            args![mirror_flags(&src, &["docker.io", "quay.io"]), "-q"],
        );
        // From here on no source answers.
        src.stop();
        let f = std::fs::File::open(&bundle).unwrap();
        let metadata = airgap::bundle::inspect(f).unwrap().metadata;
        assert_eq!(metadata.images.len(), 5);
        World { bundle, metadata }
    })
}

/// One load and the configuration generated for it.
struct Loaded {
    dir: tempfile::TempDir,
    placements: Vec<Placement>,
    config: MirrorConfig,
}

impl Loaded {
    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }
}

/// `airgap load` into `tgt` under `path` with `mode`, then the mirror files from the library's
/// placements, written to a fresh directory. Checks the image map `load` wrote has exactly
/// the placements' pairs: one computation for both.
fn load_and_generate(tgt: &Registry, path: Option<&str>, mode: Mode) -> Loaded {
    let w = world();
    let registry = match path {
        Some(p) => format!("{}/{p}", tgt.host()),
        None => tgt.host(),
    };
    let dir = tempdir();
    let map = dir.path().join("images.json");
    let out = airgap(
        args![
            "load",
            &w.bundle,
            "--registry",
            &registry,
            "--mode",
            mode.to_string(),
            tgt.target_flags(),
            "--image-map",
            &map,
            "--mirror-config",
            dir.path().join("mirror"),
            "-q"
        ],
        &[],
    );
    assert_success(&out);
    // The same files, without pushing, from `rewrite --bundle`.
    let out = airgap(
        args![
            "rewrite",
            "--bundle",
            &w.bundle,
            "--registry",
            &registry,
            "--mode",
            mode.to_string(),
            tgt.target_flags(),
            "--mirror-config",
            dir.path().join("rewrite-mirror")
        ],
        &[],
    );
    assert_success(&out);
    let target = Target::parse(&registry).unwrap();
    let placements = airgap::load::placements(&w.metadata, &target, mode).unwrap();
    let image_map = airgap::image_map::ImageMap::read(&map).unwrap();
    assert_eq!(
        mirror::pairs_of_image_map(&image_map.images),
        mirror::pairs_of_placements(&placements),
        "the image map and the placements disagree"
    );
    let conn = Connection {
        plain_http: !tgt.is_tls(),
        ca_pem: tgt.is_tls().then(|| std::fs::read(tgt.ca_file()).unwrap()),
        ..Connection::default()
    };
    let config = mirror::generate(
        &target,
        mode,
        &mirror::pairs_of_placements(&placements),
        &conn,
    )
    .unwrap();
    // And from the image map alone (target and mode read off the names).
    let out = airgap(
        args![
            "rewrite",
            "--image-map",
            &map,
            tgt.target_flags(),
            "--mirror-config",
            dir.path().join("map-mirror")
        ],
        &[],
    );
    assert_success(&out);
    // What the CLI wrote (load and rewrite) is exactly what the library generates.
    let lib = dir.path().join("lib-mirror");
    config.write(&lib).unwrap();
    for f in &config.files {
        for cli in ["mirror", "rewrite-mirror", "map-mirror"] {
            let got = std::fs::read(dir.path().join(cli).join(&f.path))
                .unwrap_or_else(|e| panic!("{cli}/{}: {e}", f.path));
            assert_eq!(
                got, f.contents,
                "{cli}/{} differs from the library's",
                f.path
            );
        }
    }
    // The generator agrees with what inference finds in the image map.
    let (it, im) = mirror::infer_target(&mirror::pairs_of_image_map(&image_map.images)).unwrap();
    let again =
        mirror::generate(&it, im, &mirror::pairs_of_placements(&placements), &conn).unwrap();
    assert_eq!(again.files, config.files, "inferred {it:?} {im}");
    Loaded {
        dir,
        placements,
        config,
    }
}

/// A namespace of the shared containerd for one check.
fn namespace(tag: &str) -> String {
    // containerd wants runs of alphanumerics joined by single separators.
    tag.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join("-")
}

/// ctr fetches every source name through `certs.d` and gets the bundle's digest.
fn assert_containerd_fetches(l: &Loaded, case: &str) {
    let ctrd = Containerd::shared();
    let ns = namespace(case);
    let hosts = l.path("mirror/containerd/certs.d");
    for p in &l.placements {
        let got = ctrd
            .fetch_digest(&ns, &hosts, &p.source.to_string())
            .unwrap_or_else(|e| {
                panic!(
                    "{case}: {e}\nhosts.toml:\n{}",
                    std::fs::read_to_string(hosts.join(p.source.registry()).join("hosts.toml"))
                        .unwrap_or_default()
                )
            });
        assert_eq!(got, p.digest.to_string(), "{case}: {}", p.source);
    }
}

/// skopeo inspects every source name through `registries.conf` and gets the bundle's digest.
fn assert_skopeo_resolves(l: &Loaded, tgt: &Registry, case: &str) {
    let conf = l.path("mirror/containers/registries.conf");
    for p in &l.placements {
        let mut a = args![
            "--registries-conf",
            &conf,
            "inspect",
            "--raw",
            "--retry-times",
            "0"
        ];
        if tgt.is_tls() {
            a.extend(args![
                "--cert-dir",
                l.path(&format!("mirror/containers/certs.d/{}", tgt.host()))
            ]);
        }
        a.push(format!("docker://{}", p.source));
        let out = skopeo(&a);
        assert!(
            out.status.success(),
            "{case}: skopeo inspect {} failed: {}\nregistries.conf:\n{}",
            p.source,
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&conf).unwrap()
        );
        assert_eq!(
            sha256_digest(&out.stdout),
            p.digest.to_string(),
            "{case}: {}",
            p.source
        );
    }
}

fn yaml_file(path: &Path) -> Yaml<'static> {
    let text = std::fs::read_to_string(path).unwrap();
    let text: &'static str = Box::leak(text.into_boxed_str());
    let mut docs = Yaml::load_from_str(text).unwrap_or_else(|e| panic!("{e}:\n{text}"));
    assert_eq!(docs.len(), 1, "{text}");
    docs.remove(0)
}

fn str_of<'a>(y: &'a Yaml, what: &str) -> &'a str {
    y.as_str()
        .unwrap_or_else(|| panic!("{what} is not a string: {y:?}"))
}

/// registries.yaml, read back: each source host's endpoint is the target's URL and its
/// rewrite rules take every source repository to its target repository.
fn assert_registries_yaml(l: &Loaded, tgt: &Registry, case: &str) {
    let y = yaml_file(&l.path("mirror/k3s/registries.yaml"));
    for p in &l.placements {
        let m = &y["mirrors"][p.source.registry()];
        assert_eq!(
            str_of(&m["endpoint"][0], "endpoint"),
            tgt.url(),
            "{case}: {}",
            p.source
        );
        assert_eq!(m["endpoint"].as_sequence().unwrap().len(), 1);
        let repo = p.source.repository();
        let rewritten = match m.as_mapping_get("rewrite") {
            None => repo.to_string(),
            Some(rules) => {
                let rules = rules.as_mapping().unwrap();
                let mut hits = Vec::new();
                for (k, v) in rules.iter() {
                    let (k, v) = (str_of(k, "rule"), str_of(v, "replacement"));
                    if k == "^(.*)$" {
                        hits.push(v.replace("${1}", repo));
                    } else if k == format!("^{}$", repo.replace('.', "\\.")) {
                        hits.push(v.to_string());
                    }
                }
                assert_eq!(hits.len(), 1, "{case}: rules for {repo}: {rules:?}");
                hits.remove(0)
            }
        };
        assert_eq!(rewritten, p.target.repository(), "{case}: {}", p.source);
    }
    let configs = y.as_mapping_get("configs");
    if tgt.is_tls() {
        let tls = &configs.expect("TLS needs configs")[tgt.host().as_str()]["tls"];
        assert_eq!(
            str_of(&tls["ca_file"], "ca_file"),
            "/etc/rancher/k3s/airgap-ca.crt"
        );
        assert!(tls.as_mapping_get("insecure_skip_verify").is_none());
    } else {
        assert!(configs.is_none(), "{case}: plain HTTP needs no configs");
    }
}

/// The OpenShift mirror sets, read back: every source name is covered by exactly one entry
/// whose mirror, with the rest of the name, is the target name.
fn assert_openshift(l: &Loaded, case: &str) {
    for (file, kind, list) in [
        (
            "imagedigestmirrorset.yaml",
            "ImageDigestMirrorSet",
            "imageDigestMirrors",
        ),
        (
            "imagetagmirrorset.yaml",
            "ImageTagMirrorSet",
            "imageTagMirrors",
        ),
    ] {
        let y = yaml_file(&l.path(&format!("mirror/openshift/{file}")));
        assert_eq!(
            str_of(&y["apiVersion"], "apiVersion"),
            "config.openshift.io/v1"
        );
        assert_eq!(str_of(&y["kind"], "kind"), kind);
        assert_eq!(str_of(&y["metadata"]["name"], "name"), "airgap");
        let entries = y["spec"][list].as_sequence().unwrap();
        for p in &l.placements {
            let name = p.source.name();
            let hits: Vec<String> = entries
                .iter()
                .filter_map(|e| {
                    let s = str_of(&e["source"], "source");
                    let rest = name.strip_prefix(s)?;
                    (rest.is_empty() || rest.starts_with('/')).then(|| {
                        let mirrors = e["mirrors"].as_sequence().unwrap();
                        assert_eq!(mirrors.len(), 1);
                        format!("{}{rest}", str_of(&mirrors[0], "mirror"))
                    })
                })
                .collect();
            assert_eq!(hits, vec![p.target.name()], "{case} {file}: {name}");
        }
    }
}

/// Every consumer, for one target registry, path and mode.
fn check(tgt: &Registry, path: Option<&str>, mode: Mode) {
    let case = format!(
        "{mode} {}{}",
        if tgt.is_tls() { "tls" } else { "http" },
        path.map(|p| format!(" /{p}")).unwrap_or_default()
    );
    let l = load_and_generate(tgt, path, mode);
    // Only OpenShift's trust settings live outside its files; every other format said it all.
    assert!(
        l.config
            .notes
            .iter()
            .all(|n| n.file.starts_with("openshift/")),
        "{case}: {:?}",
        l.config.notes
    );
    assert_containerd_fetches(&l, &case);
    assert_skopeo_resolves(&l, tgt, &case);
    assert_registries_yaml(&l, tgt, &case);
    assert_openshift(&l, &case);
}

fn both(path: Option<&str>, mode: Mode) {
    check(&Registry::start(RegistryOpts::plain()), path, mode);
    check(&Registry::start(RegistryOpts::tls()), path, mode);
}

#[test]
fn replace_mode() {
    both(None, Mode::Replace);
}

#[test]
fn replace_mode_under_a_path() {
    both(Some("mirror/x"), Mode::Replace);
}

#[test]
fn prefix_mode() {
    both(None, Mode::Prefix);
}

#[test]
fn prefix_mode_under_a_path_as_palette_edge_names_it() {
    both(Some("spectro-images"), Mode::Prefix);
}

#[test]
fn flatten_is_expressed_per_repository_by_registries_conf_and_noted_for_containerd() {
    let tgt = Registry::start(RegistryOpts::plain());
    let l = load_and_generate(&tgt, Some("flat"), Mode::Flatten);
    // Every repository here has several components: containerd cannot map them.
    assert!(!l.path("mirror/containerd").exists());
    let notes: Vec<_> = l
        .config
        .notes
        .iter()
        .filter(|n| n.file.starts_with("containerd/"))
        .map(|n| n.registry.as_str())
        .collect();
    assert_eq!(notes, vec!["docker.io", "quay.io"]);
    let readme = std::fs::read_to_string(l.path("mirror/README.md")).unwrap();
    assert!(
        readme.contains("containerd maps a whole registry host"),
        "{readme}"
    );
    assert_skopeo_resolves(&l, &tgt, "flatten");
    assert_registries_yaml(&l, &tgt, "flatten");
    assert_openshift(&l, "flatten");
}

#[test]
fn without_the_mirror_files_the_source_names_do_not_resolve() {
    // Proves the fetches above went through the mirror: the sources are unreachable, and a
    // name the bundle lacks is not answered by the mirror either.
    let tgt = Registry::start(RegistryOpts::plain());
    let l = load_and_generate(&tgt, None, Mode::Prefix);
    let ctrd = Containerd::shared();
    let empty = tempdir();
    let source = l.placements[0].source.to_string();
    assert!(ctrd
        .fetch_digest("negative", empty.path(), &source)
        .is_err());
    let missing = "docker.io/library/redis:not-in-the-bundle";
    assert!(ctrd
        .fetch_digest("negative", &l.path("mirror/containerd/certs.d"), missing)
        .is_err());
}
