//! What `airgap load` asks of the registry, seen through a forwarding proxy: the catalog
//! first (nothing is asked about a repository it does not list), small blobs never HEADed on
//! a first load (their upload session is opened with a mount request, which tells whether the
//! registry has them), big ones HEADed, and a blob the target already holds not sent again.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use support::proxy::{Action, Fault, FaultProxy};
use support::*;

fn show(what: &str, out: &std::process::Output) {
    eprintln!("---- {what}: {} ----\n{}", out.status, text_of(out));
}

struct Setup {
    tgt: Registry,
    proxy: FaultProxy,
    imgs: Vec<Image>,
    big: Image,
    base: String,
    bundle: std::path::PathBuf,
    _dir: tempfile::TempDir,
    src: Registry,
}

/// Three images in three repositories sharing a small base layer, and one with a 6 MiB
/// layer (above load's 4 MiB in-memory limit), packed; a fresh target behind a proxy.
fn setup() -> Setup {
    setup_with(RegistryOpts::plain())
}

fn setup_with(target: RegistryOpts) -> Setup {
    let src = Registry::start(RegistryOpts::plain());
    let fx = Fixtures::new(&src);
    let base = TarLayer::new(0x5EED, 64 << 10);
    let imgs: Vec<Image> = (0..3)
        .map(|i| {
            fx.image(
                &format!("req{i}/app"),
                Some("1"),
                &ImageOpts::oci(300 + i).base(base.clone()),
            )
        })
        .collect();
    let big = fx.big_layer_image("req-big/app", "1", 6 << 20, 301);
    let dir = tempdir();
    let mut spec = Spec::new();
    for img in imgs.iter().chain([&big]) {
        spec = spec.image(&img.reference(&src.host()));
    }
    let spec = spec.write(dir.path());
    let bundle = dir.path().join("bundle.tar.zst");
    pack_ok(&spec, &bundle, src.source_flags());
    let tgt = Registry::start(target);
    let proxy = FaultProxy::start(&tgt.host(), Fault::None);
    Setup {
        tgt,
        proxy,
        imgs,
        big,
        base: base.digest(),
        bundle,
        _dir: dir,
        src,
    }
}

impl Setup {
    fn load(&self) -> std::process::Output {
        self.load_with(&self.bundle, &[])
    }

    fn load_with(&self, bundle: &std::path::Path, extra: &[&str]) -> std::process::Output {
        let out = AirgapCmd::new(args![
            "load",
            bundle,
            "--registry",
            self.proxy.host(),
            "--plain-http",
            extra
        ])
        .timeout(Duration::from_secs(120))
        .run();
        show("load", &out);
        assert_success(&out);
        out
    }

    fn all(&self) -> Vec<&Image> {
        self.imgs.iter().chain([&self.big]).collect()
    }

    fn big_layer(&self) -> String {
        self.big
            .blobs
            .iter()
            .max_by_key(|b| b.size)
            .unwrap()
            .digest
            .clone()
    }

    /// Whether a POST opened an upload of `digest` in `repo` with a mount request from `repo`.
    fn self_mount_asked(&self, repo: &str, digest: &str) -> bool {
        let want = format!(
            "/v2/{repo}/blobs/uploads/?mount={}&from={}",
            enc(digest),
            enc(repo)
        );
        self.proxy
            .seen()
            .iter()
            .any(|r| r.method == "POST" && r.path == want)
    }

    /// Loads the bundle again (the proxy's log starting afresh): every image is found, nothing
    /// is pushed.
    fn reload_changes_nothing(&self) {
        self.proxy.reset_counts();
        let again = stdout_of(&self.load());
        assert!(
            again.contains(&format!("({} already present)", self.all().len()))
                && again.contains(" 0 manifest(s) pushed"),
            "{again}\n{}",
            self.proxy.describe()
        );
        assert_eq!(self.count("PUT", "/v2/"), 0, "{}", self.proxy.describe());
    }

    /// The requests with `method` whose path contains `part`.
    fn count(&self, method: &str, part: &str) -> usize {
        self.proxy
            .seen()
            .iter()
            .filter(|r| r.method == method && r.path.contains(part))
            .count()
    }

    fn headed(&self, digest: &str) -> bool {
        self.proxy
            .seen()
            .iter()
            .any(|r| r.method == "HEAD" && r.path.ends_with(&format!("/blobs/{digest}")))
    }

    /// Digests named by the upload PUTs (`...?digest=D`) the proxy forwarded.
    fn uploaded(&self) -> Vec<String> {
        self.proxy
            .seen()
            .iter()
            .filter(|s| s.method == "PUT" && s.path.contains("/blobs/uploads/"))
            .filter_map(|s| {
                let q = s.path.split_once("digest=")?.1;
                Some(q.split('&').next()?.replace("%3A", ":"))
            })
            .collect()
    }
}

fn enc(s: &str) -> String {
    s.replace(':', "%3A").replace('/', "%2F")
}

/// The catalog of a fresh target lists none of the bundle's repositories: one request
/// instead of a HEAD per image and per big blob.
#[test]
fn a_fresh_load_reads_the_catalog_heads_nothing_and_sends_every_blob_once() {
    let s = setup();
    let out = s.load();
    for img in s.all() {
        assert_skopeo_digest(&img.reference(&s.tgt.host()), &s.tgt, &img.digest);
    }
    assert_eq!(s.count("GET", "/v2/_catalog"), 1, "{}", s.proxy.describe());
    assert_eq!(
        s.count("HEAD", "/v2/"),
        0,
        "nothing is HEADed:\n{}",
        s.proxy.describe()
    );
    let big = s.big_layer();
    // Every small blob's upload session was opened in the first repository that wants it
    // with a request to mount it from that same repository.
    for img in s.all() {
        for b in img.blobs.iter().filter(|b| b.digest != big) {
            let first = s
                .all()
                .into_iter()
                .find(|i| i.blobs.iter().any(|x| x.digest == b.digest))
                .unwrap();
            assert!(
                s.self_mount_asked(&first.repo, &b.digest),
                "no mount request from {} opened the upload of {}:\n{}",
                first.repo,
                b.digest,
                s.proxy.describe()
            );
        }
    }
    // Each distinct blob is sent once: the shared base to one repository, mounted into the rest.
    let uploaded = s.uploaded();
    let distinct: BTreeSet<String> = s
        .all()
        .iter()
        .flat_map(|i| i.blobs.iter().map(|b| b.digest.clone()))
        .collect();
    assert_eq!(
        uploaded.iter().cloned().collect::<BTreeSet<_>>(),
        distinct,
        "{}",
        s.proxy.describe()
    );
    assert_eq!(
        uploaded.len(),
        distinct.len(),
        "a blob was sent twice: {uploaded:?}"
    );
    for img in &s.imgs {
        assert!(
            s.tgt.client().blob_exists(&img.repo, &s.base),
            "{}",
            img.repo
        );
    }
    let text = stdout_of(&out);
    assert!(
        text.contains(&format!("{} blob(s) uploaded", distinct.len()))
            && text.contains(" 2 mounted")
            && text.contains(" 0 skipped"),
        "{text}"
    );
}

/// A load that stopped after some small blobs landed (simulated by pushing them first, with
/// no manifest): the re-run does not send them again, on the registry's answer to the mount
/// request alone.
#[test]
fn small_blobs_already_in_the_repository_are_not_sent_again() {
    let s = setup();
    let first = &s.imgs[0];
    let have: Vec<String> = vec![first.blobs[0].digest.clone(), s.base.clone()];
    for d in &have {
        let bytes = s
            .src
            .client()
            .request(
                reqwest::Method::GET,
                &format!("/v2/{}/blobs/{d}", first.repo),
            )
            .send()
            .unwrap()
            .bytes()
            .unwrap();
        assert_eq!(&s.tgt.client().push_blob(&first.repo, &bytes), d);
    }
    assert!(s.tgt.client().tags(&first.repo).is_empty());

    let out = s.load();
    for img in s.all() {
        assert_skopeo_digest(&img.reference(&s.tgt.host()), &s.tgt, &img.digest);
    }
    let uploaded = s.uploaded();
    for d in &have {
        assert!(
            !uploaded.contains(d),
            "{d}, already in {}, was sent again:\n{}",
            first.repo,
            s.proxy.describe()
        );
        // Found by the mount request alone: nothing of the bundle was at the target before.
        assert!(!s.headed(d), "{d} was HEADed:\n{}", s.proxy.describe());
        assert!(s.self_mount_asked(&first.repo, d), "{}", s.proxy.describe());
    }
    let text = stdout_of(&out);
    assert!(text.contains(" 2 skipped"), "{text}");
    // The base still reached the other repositories, by mount from the first.
    for img in &s.imgs[1..] {
        assert!(
            s.tgt.client().blob_exists(&img.repo, &s.base),
            "{}",
            img.repo
        );
    }
}

/// Where the target holds some of the bundle already (here: an earlier version of the
/// application), the small blobs of its repositories are HEADed again like big ones: a skip
/// by HEAD writes nothing, where a granted mount request rewrites the repository's link to
/// the blob. Nothing is asked about a repository new in this version (the catalog does not
/// list it); it gets the shared base by a mount from a repository that has it.
#[test]
fn a_target_holding_part_of_the_bundle_gets_small_blobs_headed() {
    let s = setup();
    s.load();
    // v2: every image of v1, a new tag in a repository of v1 and an image in a new one, all
    // sharing the base layer.
    let fx = Fixtures::new(&s.src);
    let base = || TarLayer::new(0x5EED, 64 << 10);
    let in_old = fx.image("req0/app", Some("2"), &ImageOpts::oci(398).base(base()));
    let in_new = fx.image("req3/app", Some("1"), &ImageOpts::oci(399).base(base()));
    let dir = tempdir();
    let mut spec = Spec::new();
    for img in s.all().into_iter().chain([&in_old, &in_new]) {
        spec = spec.image(&img.reference(&s.src.host()));
    }
    let spec = spec.write(dir.path());
    let v2 = dir.path().join("v2.tar.zst");
    pack_ok(&spec, &v2, s.src.source_flags());
    s.proxy.reset_counts();
    let out = s.load_with(&v2, &[]);
    for img in [&in_old, &in_new] {
        assert_skopeo_digest(&img.reference(&s.tgt.host()), &s.tgt, &img.digest);
    }
    for b in in_old.blobs.iter().filter(|b| b.digest != s.base) {
        assert!(
            s.headed(&b.digest),
            "{} not HEADed:\n{}",
            b.digest,
            s.proxy.describe()
        );
        assert!(
            !s.self_mount_asked(&in_old.repo, &b.digest),
            "{}",
            s.proxy.describe()
        );
    }
    assert_eq!(
        s.count("HEAD", &format!("/v2/{}/", in_new.repo)),
        0,
        "{} is not in the catalog, yet was asked about:\n{}",
        in_new.repo,
        s.proxy.describe()
    );
    // The shared base is in the repositories of v1's images: mounted from one, not sent.
    assert!(!s.uploaded().contains(&s.base), "{}", s.proxy.describe());
    assert!(s.tgt.client().blob_exists(&in_new.repo, &s.base));
    let text = stdout_of(&out);
    assert!(
        text.contains("(4 already present)")
            && text.contains(" 1 mounted")
            && text.contains(" 0 skipped"),
        "{text}"
    );
}

/// A target whose catalog gives no usable answer (no catalog API, refused, not JSON) is asked
/// about each image and big blob instead; one whose catalog leaves repositories out gets
/// them pushed again (costing time, not correctness).
#[test]
fn a_target_without_a_usable_catalog_is_asked_image_by_image() {
    let canned = |status: u16, content_type: &str, body: &str| Fault::Canned {
        method: Some("GET".into()),
        path_contains: "/v2/_catalog".into(),
        status,
        content_type: content_type.into(),
        headers: Vec::new(),
        body: std::sync::Arc::new(body.as_bytes().to_vec()),
    };
    let broken = [
        (
            "404",
            canned(
                404,
                "application/json",
                r#"{"errors":[{"code":"UNSUPPORTED"}]}"#,
            ),
        ),
        (
            "403",
            canned(403, "application/json", r#"{"errors":[{"code":"DENIED"}]}"#),
        ),
        ("HTML", canned(200, "text/html", "<html>catalog</html>")),
    ];
    for (what, fault) in broken {
        let s = setup();
        s.proxy.set_fault(fault);
        s.load();
        for img in s.all() {
            assert_skopeo_digest(&img.reference(&s.tgt.host()), &s.tgt, &img.digest);
            assert_eq!(
                s.count("HEAD", &format!("/v2/{}/manifests/", img.repo)),
                1,
                "{what}: {}\n{}",
                img.repo,
                s.proxy.describe()
            );
        }
        assert!(s.headed(&s.big_layer()), "{what}: {}", s.proxy.describe());
        // A re-load through the same catalog finds every image by its HEAD.
        eprintln!("---- {what}: re-load ----");
        s.reload_changes_nothing();
    }
    // A catalog listing nothing while the images are there: pushed again, nothing lost.
    let s = setup();
    s.load();
    s.proxy
        .set_fault(canned(200, "application/json", r#"{"repositories":[]}"#));
    s.proxy.reset_counts();
    let out = s.load();
    for img in s.all() {
        assert_skopeo_digest(&img.reference(&s.tgt.host()), &s.tgt, &img.digest);
    }
    assert!(
        s.count("PUT", "/manifests/") >= s.all().len(),
        "{}",
        text_of(&out)
    );
}

/// A catalog in pages: every page is read, so a re-load finds every image; one with more
/// pages than the images could justify is not relied on, and each image is HEADed instead.
#[test]
fn the_catalog_is_read_page_by_page_and_only_while_it_pays() {
    // 4 repositories, 2 per page: two pages, the most a 4-image load asks for.
    let s = setup_with(RegistryOpts {
        catalog_page: Some(2),
        ..RegistryOpts::plain()
    });
    s.load();
    s.reload_changes_nothing();
    assert_eq!(s.count("GET", "/v2/_catalog"), 2, "{}", s.proxy.describe());
    assert_eq!(
        s.count("GET", "/v2/_catalog?last="),
        1,
        "{}",
        s.proxy.describe()
    );
    assert_eq!(s.count("HEAD", "/manifests/"), 4, "{}", s.proxy.describe());

    // 1 per page: a third page would be needed, and is not asked for; each image is HEADed.
    let s = setup_with(RegistryOpts {
        catalog_page: Some(1),
        ..RegistryOpts::plain()
    });
    s.load();
    for img in s.all() {
        assert_skopeo_digest(&img.reference(&s.tgt.host()), &s.tgt, &img.digest);
    }
    s.reload_changes_nothing();
    assert_eq!(s.count("GET", "/v2/_catalog"), 2, "{}", s.proxy.describe());
    assert_eq!(s.count("HEAD", "/manifests/"), 4, "{}", s.proxy.describe());
}

/// A registry that answers the request to mount a blob from its own repository with an error
/// (403 as a registry may for a request it does not take, or a 500) gets a plain upload
/// instead; after a 403 no more such requests, after a transient 500 only this one is plain.
#[test]
fn a_registry_refusing_the_mount_request_gets_plain_uploads() {
    for status in [403, 500] {
        let s = setup();
        // Only requests from req-big/app into itself (its config is its one small blob): no
        // other repository mounts from it.
        s.proxy.set_fault(Fault::StatusFirstMatching {
            method: "POST".into(),
            path_contains: format!("from={}", enc(&s.big.repo)),
            n: usize::MAX,
            status,
        });
        let out = s.load_with(&s.bundle, &["--concurrency", "1", "--retries", "0"]);
        for img in s.all() {
            assert_skopeo_digest(&img.reference(&s.tgt.host()), &s.tgt, &img.digest);
        }
        let seen = s.proxy.seen();
        let refused: Vec<usize> = seen
            .iter()
            .enumerate()
            .filter(|(_, r)| r.action == Action::Answered(status))
            .map(|(i, _)| i)
            .collect();
        // After a 403 the registry is asked plainly from then on: one refusal. A 500 is
        // transient: each small blob of req-big/app asks once and is refused.
        let small_of_big = s.big.blobs.len() - 1;
        let want = if status == 403 { 1 } else { small_of_big };
        assert_eq!(
            refused.len(),
            want,
            "HTTP {status}:\n{}",
            s.proxy.describe()
        );
        // Each refusal is followed by a plain POST for the same repository.
        for i in &refused {
            let next = &seen[i + 1];
            assert_eq!(
                (next.method.as_str(), next.path.as_str()),
                (
                    "POST",
                    format!("/v2/{}/blobs/uploads/", s.big.repo).as_str()
                ),
                "HTTP {status}:\n{}",
                s.proxy.describe()
            );
        }
        let text = stdout_of(&out);
        assert!(text.contains(" 0 skipped"), "HTTP {status}: {text}");
    }
}
