//! What `airgap load` asks of the registry, seen through a forwarding proxy: small blobs are
//! never HEADed (their upload session is opened with a mount request, which tells whether the
//! registry has them), big ones are, and a blob the target already holds is not sent again.

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
    let tgt = Registry::start(RegistryOpts::plain());
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

#[test]
fn a_fresh_load_heads_only_big_blobs_and_sends_every_blob_once() {
    let s = setup();
    let out = s.load();
    for img in s.all() {
        assert_skopeo_digest(&img.reference(&s.tgt.host()), &s.tgt, &img.digest);
    }
    let seen = s.proxy.seen();
    let headed: Vec<&str> = seen
        .iter()
        .filter(|r| r.method == "HEAD" && r.path.contains("/blobs/"))
        .map(|r| r.path.as_str())
        .collect();
    let big = s.big_layer();
    assert_eq!(
        headed,
        vec![format!("/v2/{}/blobs/{big}", s.big.repo)],
        "only the big layer is HEADed:\n{}",
        s.proxy.describe()
    );
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
/// application), small blobs are HEADed again like big ones: a skip by HEAD writes nothing,
/// where a granted mount request rewrites the repository's link to the blob. A blob of an
/// image already there is mounted from its repository.
#[test]
fn a_target_holding_part_of_the_bundle_gets_small_blobs_headed() {
    let s = setup();
    s.load();
    // v2: every image of v1 plus one more, sharing the base layer.
    let extra = Fixtures::new(&s.src).image(
        "req3/app",
        Some("1"),
        &ImageOpts::oci(399).base(TarLayer::new(0x5EED, 64 << 10)),
    );
    let dir = tempdir();
    let mut spec = Spec::new();
    for img in s.all().into_iter().chain([&extra]) {
        spec = spec.image(&img.reference(&s.src.host()));
    }
    let spec = spec.write(dir.path());
    let v2 = dir.path().join("v2.tar.zst");
    pack_ok(&spec, &v2, s.src.source_flags());
    s.proxy.reset_counts();
    let out = s.load_with(&v2, &[]);
    assert_skopeo_digest(&extra.reference(&s.tgt.host()), &s.tgt, &extra.digest);
    for b in &extra.blobs {
        assert!(
            s.headed(&b.digest),
            "{} not HEADed:\n{}",
            b.digest,
            s.proxy.describe()
        );
        assert!(
            !s.self_mount_asked(&extra.repo, &b.digest),
            "{}",
            s.proxy.describe()
        );
    }
    // The shared base is in the repositories of v1's images: mounted from one, not sent.
    assert!(!s.uploaded().contains(&s.base), "{}", s.proxy.describe());
    assert!(s.tgt.client().blob_exists(&extra.repo, &s.base));
    let text = stdout_of(&out);
    assert!(
        text.contains("(4 already present)")
            && text.contains(" 1 mounted")
            && text.contains(" 0 skipped"),
        "{text}"
    );
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
