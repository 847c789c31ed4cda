//! Foreign archives in (src/archive/): OCI layouts written by skopeo (`oci:` directory,
//! `oci-archive:` tar), and tars shaped like Hauler's and Zarf's, load into a registry with
//! every digest checked by skopeo at the target. One source registry with the fixtures and one
//! skopeo layout are shared by the whole file.

mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use support::*;

struct Shared {
    src: Registry,
    fx: AllFixtures,
    /// `skopeo copy --all --preserve-digests docker://… oci:DIR:<full reference>` of the
    /// single image, the OCI index and the Docker manifest list.
    layout: PathBuf,
    _dir: tempfile::TempDir,
}

fn shared() -> &'static Shared {
    static S: OnceLock<Shared> = OnceLock::new();
    S.get_or_init(|| {
        let src = Registry::start(RegistryOpts::plain());
        let fx = AllFixtures::push(&src, false);
        let dir = tempdir();
        let layout = dir.path().join("layout");
        // skopeo's oci: transport holds no Docker manifest list: it converts the list (and
        // so its digest), which it refuses under --preserve-digests.
        for (img, preserve) in [
            (&fx.single, true),
            (&fx.oci_index, true),
            (&fx.docker_list, false),
        ] {
            let r = img.reference(&src.host());
            skopeo_copy_to_oci(&r, &src, &layout, &r, preserve).expect("skopeo oci:");
        }
        Shared {
            src,
            fx,
            layout,
            _dir: dir,
        }
    })
}

fn images(s: &Shared) -> Vec<&Image> {
    vec![&s.fx.single, &s.fx.oci_index, &s.fx.docker_list]
}

fn load(path: &Path, tgt: &Registry, extra: &[&str]) -> std::process::Output {
    airgap(
        args![
            "load",
            path,
            "--registry",
            tgt.host(),
            tgt.target_flags(),
            extra
        ],
        &[],
    )
}

/// The files of a layout directory, relative names, `index.json` first.
fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = vec![];
    for name in ["index.json", "oci-layout"] {
        out.push((name.to_string(), std::fs::read(dir.join(name)).unwrap()));
    }
    let mut blobs: Vec<_> = std::fs::read_dir(dir.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    blobs.sort();
    for b in blobs {
        let name = format!("blobs/sha256/{}", b.file_name().unwrap().to_string_lossy());
        out.push((name, std::fs::read(&b).unwrap()));
    }
    out
}

/// Writes `entries` as a tar, compressed by the file name's extension.
fn write_tar(path: &Path, entries: &[(String, Vec<u8>)]) {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in entries {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, name, &data[..]).unwrap();
    }
    let raw = b.into_inner().unwrap();
    let name = path.to_string_lossy();
    let bytes = if name.ends_with(".zst") {
        zstd::encode_all(&raw[..], 3).unwrap()
    } else if name.ends_with(".gz") {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(&raw).unwrap();
        e.finish().unwrap()
    } else {
        raw
    };
    std::fs::write(path, bytes).unwrap();
}

fn index_of(entries: &[(String, Vec<u8>)], name: &str) -> serde_json::Value {
    let (_, b) = entries.iter().find(|(n, _)| n == name).unwrap();
    serde_json::from_slice(b).unwrap()
}

fn set(entries: &mut [(String, Vec<u8>)], name: &str, v: &serde_json::Value) {
    let e = entries.iter_mut().find(|(n, _)| n == name).unwrap();
    e.1 = serde_json::to_vec(v).unwrap();
}

/// Each image at the target with the digest the layout's index.json gives it, which for the
/// images copied with --preserve-digests is the source registry's.
fn assert_loaded(s: &Shared, tgt: &Registry) {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(s.layout.join("index.json")).unwrap()).unwrap();
    for img in images(s) {
        let name = img.reference(&s.src.host());
        let m = index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == name.as_str())
            .unwrap_or_else(|| panic!("{name} not in the layout"));
        let digest = m["digest"].as_str().unwrap();
        if img.repo != s.fx.docker_list.repo {
            assert_eq!(digest, img.digest, "{name}: skopeo kept the digest");
        }
        assert_skopeo_digest(&img.reference(&tgt.host()), tgt, digest);
    }
}

#[test]
fn skopeo_oci_directory_loads_verifies_and_inspects() {
    let s = shared();
    let out = airgap(args!["inspect", &s.layout], &[]);
    assert_success(&out);
    let text = stdout_of(&out);
    assert!(text.contains("OCI image layout (directory)"), "{text}");
    for img in images(s) {
        assert!(text.contains(&img.reference(&s.src.host())), "{text}");
    }
    assert_success(&airgap(args!["verify", &s.layout], &[]));
    let tgt = Registry::start(RegistryOpts::plain());
    let out = load(&s.layout, &tgt, &[]);
    assert_success(&out);
    assert_loaded(s, &tgt);
}

/// skopeo's own `oci-archive:` with a bare tag: refused without --repository (naming the
/// manifest and the annotation, nothing tagged), loaded with it.
#[test]
fn skopeo_oci_archive_with_a_bare_tag_needs_repository() {
    let s = shared();
    let dir = tempdir();
    let archive = dir.path().join("single.tar");
    let img = &s.fx.single;
    skopeo_copy(
        &args!["--preserve-digests", skopeo_flags(&s.src, "src-")],
        &format!("docker://{}", img.reference(&s.src.host())),
        &format!("oci-archive:{}:1.0", archive.display()),
    )
    .unwrap();
    let tgt = Registry::start(RegistryOpts::plain());
    let out = load(&archive, &tgt, &[]);
    assert_failure_contains(
        &out,
        &[
            &img.digest,
            "org.opencontainers.image.ref.name",
            "\"1.0\"",
            "--repository",
        ],
    );
    assert_skopeo_absent(&img.reference(&tgt.host()), &tgt);
    let repo = format!("{}/{}", s.src.host(), img.repo);
    let out = load(&archive, &tgt, &["--repository", &repo]);
    assert_success(&out);
    assert_skopeo_digest(&img.reference(&tgt.host()), &tgt, &img.digest);
}

/// A tar with index.json last (.tar.gz), then the same damaged in one layer.
#[test]
fn index_last_tar_gz_loads_and_a_damaged_layer_tags_nothing() {
    let s = shared();
    let dir = tempdir();
    let mut entries = files(&s.layout);
    entries.rotate_left(2);
    assert_eq!(entries.last().unwrap().0, "oci-layout");
    let archive = dir.path().join("last.tar.gz");
    write_tar(&archive, &entries);
    let tgt = Registry::start(RegistryOpts::plain());
    assert_success(&load(&archive, &tgt, &[]));
    assert_loaded(s, &tgt);

    let layer = s.fx.single.layers()[1].digest.clone();
    let name = format!("blobs/sha256/{}", layer.trim_start_matches("sha256:"));
    let e = entries.iter_mut().find(|(n, _)| *n == name).unwrap();
    let mid = e.1.len() / 2;
    e.1[mid] ^= 0xff;
    let bad = dir.path().join("bad.tar");
    write_tar(&bad, &entries);
    let out = airgap(args!["verify", &bad], &[]);
    assert_failure_contains(&out, &[&layer]);
    let fresh = Registry::start(RegistryOpts::plain());
    let out = load(&bad, &fresh, &[]);
    assert_failure_contains(&out, &[&layer]);
    assert_skopeo_absent(&s.fx.single.reference(&fresh.host()), &fresh);
}

/// Hauler's store as `hauler store save` writes it (hauler-dev/hauler pkg/consts and
/// pkg/store: an OCI layout in a tar.zst; index.json entries carry
/// `io.containerd.image.name` with the full name, `org.opencontainers.image.ref.name`, and
/// `kind` = `dev.hauler/image` or `dev.hauler/imageIndex`; signatures are `dev.hauler/sigs`).
#[test]
fn hauler_shaped_haul_tar_zst_loads() {
    let s = shared();
    let dir = tempdir();
    let mut entries = files(&s.layout);
    let mut index = index_of(&entries, "index.json");
    for m in index["manifests"].as_array_mut().unwrap() {
        let full = m["annotations"]["org.opencontainers.image.ref.name"].clone();
        let is_index = m["mediaType"].as_str().unwrap().contains("index")
            || m["mediaType"].as_str().unwrap().contains("list");
        m["annotations"] = serde_json::json!({
            "io.containerd.image.name": full,
            "org.opencontainers.image.ref.name": full,
            "kind": if is_index { "dev.hauler/imageIndex" } else { "dev.hauler/image" },
        });
    }
    // A signature entry whose blobs are not there: skipped, as Hauler's own copy skips it.
    index["manifests"].as_array_mut().unwrap().push(serde_json::json!({
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": format!("sha256:{}", "ab".repeat(32)),
        "size": 10,
        "annotations": {"kind": "dev.hauler/sigs", "org.opencontainers.image.ref.name": "x.sig"},
    }));
    set(&mut entries, "index.json", &index);
    let archive = dir.path().join("haul.tar.zst");
    write_tar(&archive, &entries);
    let out = airgap(args!["inspect", &archive], &[]);
    assert!(
        stdout_of(&out).contains("Hauler store"),
        "{}",
        text_of(&out)
    );
    let tgt = Registry::start(RegistryOpts::plain());
    assert_success(&load(&archive, &tgt, &[]));
    assert_loaded(s, &tgt);
}

/// A Zarf package (zarf-dev/zarf src/pkg/zarfoci/manifest.go: `images/index.json`,
/// `images/oci-layout`, `images/blobs/sha256/`; index entries named by
/// `org.opencontainers.image.base.name`, as crane writes them) beside `zarf.yaml` and
/// `components/`, in a tar.zst.
#[test]
fn zarf_shaped_package_loads() {
    let s = shared();
    let dir = tempdir();
    let mut entries = files(&s.layout);
    let mut index = index_of(&entries, "index.json");
    for m in index["manifests"].as_array_mut().unwrap() {
        let full = m["annotations"]["org.opencontainers.image.ref.name"].clone();
        m["annotations"] = serde_json::json!({ "org.opencontainers.image.base.name": full });
    }
    set(&mut entries, "index.json", &index);
    let mut zarf: Vec<(String, Vec<u8>)> = vec![
        (
            "zarf.yaml".into(),
            b"kind: ZarfPackageConfig\nmetadata:\n  name: test\n".to_vec(),
        ),
        ("components/main.tar".into(), vec![0u8; 1024]),
    ];
    zarf.extend(entries.into_iter().map(|(n, b)| (format!("images/{n}"), b)));
    let archive = dir.path().join("zarf-package-test-amd64.tar.zst");
    write_tar(&archive, &zarf);
    let out = airgap(args!["inspect", &archive], &[]);
    assert!(
        stdout_of(&out).contains("Zarf package"),
        "{}",
        text_of(&out)
    );
    let tgt = Registry::start(RegistryOpts::plain());
    assert_success(&load(&archive, &tgt, &[]));
    assert_loaded(s, &tgt);
}

/// `airgap export --oci DIR` and `--oci-archive FILE` of a packed bundle: skopeo copies each
/// image out of both into a registry with its digest kept; airgap loads the tar back; a
/// damaged bundle leaves no layout behind.
#[test]
fn export_writes_layouts_skopeo_reads() {
    let s = shared();
    let dir = tempdir();
    let mut spec = Spec::new();
    for img in images(s) {
        spec = spec.image(&img.reference(&s.src.host()));
    }
    let spec = spec.write(dir.path());
    let bundle = dir.path().join("bundle.tar.zst");
    pack_ok(&spec, &bundle, s.src.source_flags());
    let oci = dir.path().join("oci");
    let tar = dir.path().join("out.tar");
    assert_success(&airgap(args!["export", &bundle, "--oci", &oci], &[]));
    assert_success(&airgap(
        args!["export", &bundle, "--oci-archive", &tar],
        &[],
    ));
    let tgt = Registry::start(RegistryOpts::plain());
    // skopeo 1.9's oci transport finds no descriptor of a Docker manifest list in index.json
    // ("no descriptor found for reference"): the list is checked by the airgap load below.
    for img in [&s.fx.single, &s.fx.oci_index] {
        let r = img.reference(&s.src.host());
        for (i, from) in [
            format!("oci:{}:{r}", oci.display()),
            format!("oci-archive:{}:{r}", tar.display()),
        ]
        .iter()
        .enumerate()
        {
            let dst = format!("{}/{}:skopeo{i}", tgt.host(), img.repo);
            skopeo_copy(
                &args!["--all", "--preserve-digests", "--dest-tls-verify=false"],
                from,
                &format!("docker://{dst}"),
            )
            .unwrap();
            assert_skopeo_digest(&dst, &tgt, &img.digest);
        }
    }
    // The tar reads back as a foreign archive.
    let back = Registry::start(RegistryOpts::plain());
    assert_success(&load(&tar, &back, &[]));
    for img in images(s) {
        assert_skopeo_digest(&img.reference(&back.host()), &back, &img.digest);
    }

    let layer = s.fx.single.layers()[0].digest.clone();
    let bad = dir.path().join("bad.tar.zst");
    flip_byte_in_blob(&bundle, &bad, &layer);
    let bad_oci = dir.path().join("bad-oci");
    let out = airgap(args!["export", &bad, "--oci", &bad_oci], &[]);
    assert_failure_contains(&out, &[&layer]);
    assert!(
        !bad_oci.exists(),
        "a failed export left {}",
        bad_oci.display()
    );
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(".airgap-export-")
        })
        .collect();
    assert!(leftovers.is_empty(), "temporary directory left behind");
}

/// A spec mixing a registry image with images from archives (an image built in CI and never
/// pushed): skopeo's `oci-archive:` with a bare tag, and one image picked with `ref:` from a
/// multi-image layout directory. One bundle; digests as in the archives, checked by skopeo at
/// the target after load.
#[test]
fn spec_mixing_registry_and_archive_images_packs_into_one_bundle() {
    let s = shared();
    let dir = tempdir();
    let img = &s.fx.single;
    skopeo_copy(
        &args!["--preserve-digests", skopeo_flags(&s.src, "src-")],
        &format!("docker://{}", img.reference(&s.src.host())),
        &format!("oci-archive:{}:1.0", dir.path().join("app.tar").display()),
    )
    .unwrap();
    let index = &s.fx.oci_index;
    let registry_image = s.fx.docker_list.reference(&s.src.host());
    let spec = dir.path().join("airgap.yaml");
    std::fs::write(
        &spec,
        format!(
            "images:\n  - image: ci.example.com/team/app:1.0\n    archive: app.tar\n  \
             - image: ci.example.com/team/multi:2.0\n    archive: {}\n    ref: {}\n  \
             - image: {registry_image}\n",
            s.layout.display(),
            index.reference(&s.src.host()),
        ),
    )
    .unwrap();
    let bundle = dir.path().join("b.tar.zst");
    let out = airgap(
        args!["pack", &spec, "-o", &bundle, s.src.source_flags()],
        &[],
    );
    assert_success(&out);
    let b = Bundle::open(&bundle);
    assert_eq!(b.ref_digest("ci.example.com/team/app:1.0"), img.digest);
    assert_eq!(b.ref_digest("ci.example.com/team/multi:2.0"), index.digest);
    assert_success(&airgap(args!["verify", &bundle], &[]));

    let tgt = Registry::start(RegistryOpts::plain());
    assert_success(&load(&bundle, &tgt, &[]));
    let at = |r: &str| format!("{}/{r}", tgt.host());
    assert_skopeo_digest(&at("team/app:1.0"), &tgt, &img.digest);
    assert_skopeo_digest(&at("team/multi:2.0"), &tgt, &index.digest);
    let list = &s.fx.docker_list;
    assert_skopeo_digest(&list.reference(&tgt.host()), &tgt, &list.digest);
}

/// Bad `archive:` entries: each error names the spec line and the archive, and no bundle is
/// written.
#[test]
fn bad_archive_entries_fail_naming_the_spec_line() {
    let s = shared();
    let dir = tempdir();
    let bundle = dir.path().join("b.tar.zst");
    let pack = |body: &str| {
        let spec = dir.path().join("airgap.yaml");
        std::fs::write(&spec, format!("images:\n{body}")).unwrap();
        airgap(
            args!["pack", &spec, "-o", &bundle, s.src.source_flags()],
            &[],
        )
    };
    // Missing file.
    let out = pack("  - image: ci.example.com/a:1\n    archive: nope.tar\n");
    assert_failure_contains(&out, &["airgap.yaml:3", "nope.tar", "no such file"]);
    assert!(!bundle.exists());
    // Several images and no `ref:`.
    let layout = s.layout.display();
    let out = pack(&format!(
        "  - image: ci.example.com/a:1\n    archive: {layout}\n"
    ));
    assert_failure_contains(&out, &["airgap.yaml:3", "3 images", "ref:"]);
    assert!(!bundle.exists());
    // A `ref:` naming nothing in it.
    let out = pack(&format!(
        "  - image: ci.example.com/a:1\n    archive: {layout}\n    ref: nothere:9\n"
    ));
    assert_failure_contains(&out, &["nothere:9", &s.fx.single.reference(&s.src.host())]);
    assert!(!bundle.exists());
    // `archive:` without `image:`, and `ref:` without `archive:`.
    let out = pack("  - name: a\n    archive: x.tar\n");
    assert_failure_contains(&out, &["airgap.yaml:3", "needs `image:`"]);
    let out = pack("  - image: ci.example.com/a:1\n    ref: x\n");
    assert_failure_contains(&out, &["airgap.yaml:3", "no `archive:`"]);
    assert!(!bundle.exists());
}

/// `airgap serve PATH --listen 127.0.0.1:0` once it prints its address; killed when dropped.
struct Serving(RunningAirgap, String);

impl Serving {
    fn start(path: &Path, extra: &[&str]) -> Serving {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let host = format!("127.0.0.1:{port}");
        let mut a = args!["serve", path, "--listen", &host];
        a.extend(extra.iter().map(|s| s.to_string()));
        let mut proc = AirgapCmd::new(&a).spawn();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            if proc.child.try_wait().unwrap().is_some() {
                panic!("serve exited: {}", text_of(&proc.wait()));
            }
            if std::net::TcpStream::connect(&host).is_ok() {
                return Serving(proc, host);
            }
            assert!(std::time::Instant::now() < deadline, "serve did not start");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        self.0.kill();
    }
}

/// skopeo pulls every image of a layout directory and of an uncompressed oci-archive straight
/// from `airgap serve`, digests kept (skopeo verifies each blob as it copies).
#[test]
fn serve_answers_from_a_layout_directory_and_an_oci_archive() {
    let s = shared();
    let served = Serving::start(&s.layout, &[]);
    let dir = tempdir();
    for (i, img) in [&s.fx.single, &s.fx.oci_index].into_iter().enumerate() {
        let name = img.reference(&s.src.host());
        // Served as `load --mode replace` names it: the source host dropped.
        let at = img.reference(&served.1);
        let out = dir.path().join(format!("copy{i}"));
        skopeo_copy(
            &args!["--all", "--preserve-digests", "--src-tls-verify=false"],
            &format!("docker://{at}"),
            &format!("oci:{}:x", out.display()),
        )
        .unwrap_or_else(|e| panic!("{name} from serve: {e}"));
        let idx: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join("index.json")).unwrap()).unwrap();
        assert_eq!(idx["manifests"][0]["digest"], img.digest.as_str(), "{name}");
    }
    drop(served);

    let archive = dir.path().join("single.tar");
    let img = &s.fx.single;
    skopeo_copy(
        &args!["--preserve-digests", skopeo_flags(&s.src, "src-")],
        &format!("docker://{}", img.reference(&s.src.host())),
        &format!("oci-archive:{}:1.0", archive.display()),
    )
    .unwrap();
    let repo = format!("{}/{}", s.src.host(), img.repo);
    let served = Serving::start(&archive, &["--repository", &repo]);
    let out = dir.path().join("copy-tar");
    skopeo_copy(
        &args!["--preserve-digests", "--src-tls-verify=false"],
        &format!("docker://{}/{}:1.0", served.1, img.repo),
        &format!("oci:{}:x", out.display()),
    )
    .unwrap();
    let idx: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("index.json")).unwrap()).unwrap();
    assert_eq!(idx["manifests"][0]["digest"], img.digest.as_str());
}

/// A foreign archive has no airgap signature: `serve --key` and `load --key` refuse it.
#[test]
fn serve_key_refuses_an_unsigned_foreign_archive() {
    let s = shared();
    let dir = tempdir();
    let key = dir.path().join("k.pem");
    let public = dir.path().join("k.pub");
    let ok = std::process::Command::new("openssl")
        .args([
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
        ])
        .arg(&key)
        .status()
        .unwrap()
        .success()
        && std::process::Command::new("openssl")
            .args(["ec", "-pubout", "-in"])
            .arg(&key)
            .arg("-out")
            .arg(&public)
            .status()
            .unwrap()
            .success();
    assert!(ok, "openssl made the key pair");
    let out = airgap(
        args![
            "serve",
            &s.layout,
            "--listen",
            "127.0.0.1:0",
            "--key",
            &public
        ],
        &[],
    );
    assert_failure_contains(&out, &["carries no airgap signature", "layout"]);
    // The same for load: nothing is pushed.
    let tgt = Registry::start(RegistryOpts::plain());
    let out = load(&s.layout, &tgt, &["--key", &public.display().to_string()]);
    assert_failure_contains(&out, &["carries no airgap signature"]);
    assert_skopeo_absent(&s.fx.single.reference(&tgt.host()), &tgt);
}
