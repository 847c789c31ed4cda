//! What `airgap load` asks of the registry, seen through a forwarding proxy: small blobs are
//! never HEADed (their upload session is opened with a mount request, which tells whether the
//! registry has them), big ones are, and a blob the target already holds is not sent again.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use support::proxy::{Fault, FaultProxy};
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
        let out = AirgapCmd::new(args![
            "load",
            &self.bundle,
            "--registry",
            self.proxy.host(),
            "--plain-http"
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
    // Every small blob's upload session was opened with a mount request for it.
    for img in s.all() {
        for b in img.blobs.iter().filter(|b| b.digest != big) {
            assert!(
                seen.iter().any(|r| r.method == "POST"
                    && r.path
                        .contains(&format!("mount={}", b.digest.replace(':', "%3A")))),
                "no mount request opened the upload of {} ({}):\n{}",
                b.digest,
                img.repo,
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
