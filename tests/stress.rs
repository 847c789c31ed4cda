//! Scale and concurrency: a bundle of 500 small images packs and loads within bounded
//! memory and open files, and 8 loads of 8 bundles (sharing blobs) run at the same time
//! into one registry, each image landing complete with its digest; plus the manifest
//! refusals that race causes, replayed deterministically through a proxy.

mod support;

use std::path::Path;
use std::process::Output;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::json;
use support::*;

const TIME: &str = "/usr/bin/time";
const MAX_RSS_KIB: u64 = 256 * 1024;
const MAX_FDS: usize = 256;

/// A pushed single-platform OCI image.
#[derive(Clone, Debug)]
struct Pushed {
    repo: String,
    tag: String,
    digest: String,
    manifest: Vec<u8>,
    /// Config and layers: (digest, size).
    blobs: Vec<(String, u64)>,
}

/// A layer blob (an uncompressed tar) to put in an image.
#[derive(Clone)]
struct Layer {
    bytes: Vec<u8>,
    digest: String,
}

impl Layer {
    fn new(seed: u64, size: u64) -> Layer {
        let bytes = TarLayer::new(seed, size).bytes();
        let digest = sha256_digest(&bytes);
        Layer { bytes, digest }
    }
}

/// Cross-repository mount of `digest` from `from` into `repo` (one request, no upload).
fn mount(client: &RegistryClient, repo: &str, digest: &str, from: &str) {
    let resp = client
        .request(
            reqwest::Method::POST,
            &format!("/v2/{repo}/blobs/uploads/?mount={digest}&from={from}"),
        )
        .send()
        .unwrap_or_else(|e| panic!("mount {digest} into {repo}: {e}"));
    assert_eq!(
        resp.status().as_u16(),
        201,
        "mount {digest} from {from} into {repo} was not done"
    );
}

/// Pushes `layers` (already present in `repo` when `present` says so), a config naming
/// `seed`, and the manifest under `tag`.
fn push_image(
    client: &RegistryClient,
    repo: &str,
    tag: &str,
    seed: u64,
    layers: &[&Layer],
    present: &dyn Fn(&Layer) -> bool,
) -> Pushed {
    for l in layers {
        if !present(l) {
            client.push_blob(repo, &l.bytes);
        }
    }
    let diff_ids: Vec<&str> = layers.iter().map(|l| l.digest.as_str()).collect();
    let config = serde_json::to_vec(&json!({
        "created": "2024-01-01T00:00:00Z",
        "architecture": "amd64",
        "os": "linux",
        "config": {"Labels": {"airgap.test.seed": seed.to_string()}},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .unwrap();
    let config_digest = client.push_blob(repo, &config);
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": config.len()},
        "layers": layers.iter().map(|l| json!({
            "mediaType": OCI_LAYER_TAR, "digest": l.digest, "size": l.bytes.len()
        })).collect::<Vec<_>>(),
    }))
    .unwrap();
    let digest = client.push_manifest(repo, tag, OCI_MANIFEST, &manifest);
    let mut blobs = vec![(config_digest, config.len() as u64)];
    blobs.extend(
        layers
            .iter()
            .map(|l| (l.digest.clone(), l.bytes.len() as u64)),
    );
    Pushed {
        repo: repo.into(),
        tag: tag.into(),
        digest,
        manifest,
        blobs,
    }
}

/// "Maximum resident set size (kbytes): N" from GNU time -v.
fn max_rss_kib(out: &Output) -> u64 {
    let err = stderr_of(out);
    err.lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("Maximum resident set size (kbytes):")
                .map(|v| v.trim().parse().unwrap())
        })
        .unwrap_or_else(|| panic!("no maximum RSS in the output of {TIME} -v:\n{err}"))
}

/// The pid of a child of `parent` (found through `/proc/*/stat`).
fn child_of(parent: u32) -> Option<u32> {
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // "PID (COMM) STATE PPID ...": COMM may hold spaces, so split after the last ')'.
        let after = &stat[stat.rfind(')')? + 1..];
        let ppid: u32 = after.split_whitespace().nth(1)?.parse().ok()?;
        if ppid == parent {
            return Some(pid);
        }
    }
    None
}

fn fd_count(pid: u32) -> Option<usize> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()
        .map(|d| d.count())
}

/// Writes an `images:` spec of `refs`.
fn spec_of(dir: &Path, name: &str, refs: &[String]) -> std::path::PathBuf {
    let mut s = Spec::new();
    for r in refs {
        s = s.image(r);
    }
    write_file(dir, name, &s.to_yaml())
}

#[test]
fn five_hundred_small_images_pack_and_load_in_bounded_memory_and_files() {
    assert!(
        Path::new(TIME).exists(),
        "{TIME} is missing: install the `time` package (scripts/test.sh does)"
    );
    const REPOS: usize = 50;
    const PER_REPO: usize = 10;
    let t0 = Instant::now();
    let src = Registry::start(RegistryOpts::plain());
    let sh = src.host();
    let client = src.client();
    let base = Layer::new(500_000, 64 * 1024);
    let first_repo = "many/r00".to_string();
    client.push_blob(&first_repo, &base.bytes);

    // 4 threads, each pushing whole repositories: mount the base, then per image one tiny
    // layer, a config and the manifest.
    let next = AtomicUsize::new(0);
    let images: Mutex<Vec<Pushed>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| loop {
                let r = next.fetch_add(1, Ordering::SeqCst);
                if r >= REPOS {
                    break;
                }
                let repo = format!("many/r{r:02}");
                if repo != first_repo {
                    mount(&client, &repo, &base.digest, &first_repo);
                }
                for i in 0..PER_REPO {
                    let seed = 500_001 + (r * PER_REPO + i) as u64;
                    let own = Layer::new(seed, 100);
                    let p = push_image(
                        &client,
                        &repo,
                        &format!("t{i}"),
                        seed,
                        &[&base, &own],
                        &|l| l.digest == base.digest,
                    );
                    images.lock().unwrap().push(p);
                }
            });
        }
    });
    let mut images = images.into_inner().unwrap();
    images.sort_by(|a, b| (&a.repo, &a.tag).cmp(&(&b.repo, &b.tag)));
    assert_eq!(images.len(), REPOS * PER_REPO);
    let pushed_in = t0.elapsed();

    let dir = tempdir();
    let refs: Vec<String> = images
        .iter()
        .map(|p| format!("{sh}/{}:{}", p.repo, p.tag))
        .collect();
    let spec = spec_of(dir.path(), "airgap.yaml", &refs);
    let bundle = dir.path().join("bundle.tar.zst");
    let t1 = Instant::now();
    pack_ok(&spec, &bundle, args![src.source_flags(), "--quiet"]);
    let packed_in = t1.elapsed();

    let tgt = Registry::start(RegistryOpts::plain());
    let th = tgt.host();
    let t2 = Instant::now();
    let running = AirgapCmd::new(args![
        "load",
        &bundle,
        "--registry",
        &th,
        tgt.target_flags(),
        "--quiet"
    ])
    .wrap(&[TIME, "-v"])
    .timeout(Duration::from_secs(240))
    .spawn();
    let wrapper = running.id();
    // Sample the open files of airgap itself (the child of `time`) every 20 ms.
    let done = AtomicBool::new(false);
    let (max_fds, samples) = std::thread::scope(|s| {
        let sampler = s.spawn(|| {
            let (mut max, mut n, mut pid) = (0usize, 0usize, None);
            while !done.load(Ordering::SeqCst) {
                if pid.is_none() {
                    pid = child_of(wrapper);
                }
                if let Some(c) = pid.and_then(fd_count) {
                    max = max.max(c);
                    n += 1;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            (max, n)
        });
        let out = running.wait();
        done.store(true, Ordering::SeqCst);
        let r = sampler.join().unwrap();
        assert_success(&out);
        let rss = max_rss_kib(&out);
        eprintln!(
            "500 images: pushed in {pushed_in:?}, packed in {packed_in:?} ({} KiB bundle), \
             loaded in {:?}; load max RSS {} MiB",
            std::fs::metadata(&bundle).unwrap().len() / 1024,
            t2.elapsed(),
            rss / 1024
        );
        assert!(
            rss < MAX_RSS_KIB,
            "load of 500 images peaked at {} MiB RSS (limit 256 MiB)",
            rss / 1024
        );
        r
    });
    eprintln!("load open files: max {max_fds} over {samples} samples");
    assert!(
        samples >= 3,
        "only {samples} fd samples of the load were taken"
    );
    assert!(
        max_fds < MAX_FDS,
        "load of 500 images had {max_fds} files open at once (limit {MAX_FDS})"
    );

    // Every image at the target, byte for byte, by the harness client.
    let t3 = Instant::now();
    let tc = tgt.client();
    for p in &images {
        let got = tc
            .get_manifest(&p.repo, &p.tag)
            .unwrap_or_else(|| panic!("{th}/{}:{} is missing at the target", p.repo, p.tag));
        assert_eq!(
            got.digest_header.as_deref(),
            Some(p.digest.as_str()),
            "{}:{}",
            p.repo,
            p.tag
        );
        assert!(got.bytes == p.manifest, "{}:{} bytes differ", p.repo, p.tag);
    }
    // A sample of 10, spread over the repositories, with skopeo and every blob.
    for p in images.iter().step_by(images.len() / 10) {
        assert_skopeo_digest(&format!("{th}/{}:{}", p.repo, p.tag), &tgt, &p.digest);
        for (d, size) in &p.blobs {
            assert_eq!(tc.blob_size(&p.repo, d), Some(*size), "{} {d}", p.repo);
        }
    }
    eprintln!("verified in {:?}; total {:?}", t3.elapsed(), t0.elapsed());
}

#[test]
fn eight_loads_at_once_into_one_registry_all_land_complete() {
    const BUNDLES: usize = 8;
    let t0 = Instant::now();
    let src = Registry::start(RegistryOpts::plain());
    let sh = src.host();
    let client = src.client();
    // Blobs shared across bundles: one base in every image, and one layer shared by each
    // pair of neighbouring bundles; plus an image that every bundle carries.
    let base = Layer::new(800_000, 512 * 1024);
    let pair: Vec<Layer> = (0..BUNDLES)
        .map(|k| Layer::new(800_100 + k as u64, 200 * 1024))
        .collect();
    let common = push_image(&client, "shared/common", "1", 800_050, &[&base], &|_| false);
    let per_bundle: Vec<Vec<Pushed>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..BUNDLES)
            .map(|k| {
                let (client, base, pair) = (&client, &base, &pair);
                s.spawn(move || {
                    let repo = format!("multi/b{k}");
                    (0..2)
                        .map(|i| {
                            let seed = 800_200 + (k * 10 + i) as u64;
                            let own = Layer::new(seed, 50 * 1024);
                            let left = &pair[k];
                            let right = &pair[(k + 1) % BUNDLES];
                            push_image(
                                client,
                                &repo,
                                &format!("v{i}"),
                                seed,
                                &[base, left, right, &own],
                                // The first image brings the shared layers into the repository.
                                &|l| i > 0 && l.digest != own.digest,
                            )
                        })
                        .collect()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });

    let dir = tempdir();
    let mut bundles = Vec::new();
    let mut expected: Vec<Vec<Pushed>> = Vec::new();
    for (k, imgs) in per_bundle.iter().enumerate() {
        let mut all = imgs.clone();
        all.push(common.clone());
        // Every other bundle also carries the next bundle's first image.
        if k % 2 == 0 {
            all.push(per_bundle[(k + 1) % BUNDLES][0].clone());
        }
        let refs: Vec<String> = all
            .iter()
            .map(|p| format!("{sh}/{}:{}", p.repo, p.tag))
            .collect();
        let spec = spec_of(dir.path(), &format!("spec-{k}.yaml"), &refs);
        let bundle = dir.path().join(format!("b{k}.tar.zst"));
        pack_ok(&spec, &bundle, args![src.source_flags(), "--quiet"]);
        bundles.push(bundle);
        expected.push(all);
    }
    let packed = t0.elapsed();

    let tgt = Registry::start(RegistryOpts::plain());
    let th = tgt.host();
    let t1 = Instant::now();
    let running: Vec<_> = bundles
        .iter()
        .map(|b| {
            AirgapCmd::new(args![
                "load",
                b,
                "--registry",
                &th,
                tgt.target_flags(),
                "--quiet"
            ])
            .timeout(Duration::from_secs(120))
            .spawn()
        })
        .collect();
    let outs: Vec<Output> = running.into_iter().map(|r| r.wait()).collect();
    let loaded = t1.elapsed();
    for (k, out) in outs.iter().enumerate() {
        assert!(
            out.status.success(),
            "load {k} of {BUNDLES} concurrent loads failed:\n{}",
            text_of(out)
        );
    }

    let tc = tgt.client();
    let mut checked = 0;
    for (k, imgs) in expected.iter().enumerate() {
        for p in imgs {
            let name = format!("{th}/{}:{} (bundle {k})", p.repo, p.tag);
            let got = tc
                .get_manifest(&p.repo, &p.tag)
                .unwrap_or_else(|| panic!("{name} is missing at the target"));
            assert_eq!(
                got.digest_header.as_deref(),
                Some(p.digest.as_str()),
                "{name}"
            );
            assert!(got.bytes == p.manifest, "{name}: manifest bytes differ");
            assert!(
                tc.get_manifest(&p.repo, &p.digest).is_some(),
                "{name}: not there by digest"
            );
            for (d, size) in &p.blobs {
                assert_eq!(tc.blob_size(&p.repo, d), Some(*size), "{name}: blob {d}");
            }
            checked += 1;
        }
    }
    // One image per bundle through skopeo too.
    for imgs in &expected {
        let p = &imgs[0];
        assert_skopeo_digest(&format!("{th}/{}:{}", p.repo, p.tag), &tgt, &p.digest);
    }
    eprintln!(
        "8 concurrent loads: packed in {packed:?}, loaded in {loaded:?}, {checked} images \
         checked; total {:?}",
        t0.elapsed()
    );
}

// ---------------------------------------------------------------------------------------
// The race above, made deterministic: a proxy answers manifest PUTs the way distribution 2.8
// does when it reads a blob link another client is rewriting (DIGEST_INVALID plus
// MANIFEST_BLOB_UNKNOWN naming the blob), or hides a blob as if the registry had lost it.

use std::sync::Arc;
use support::proxy::{Action, Fault, FaultProxy};

/// One image packed from a fresh source, and a fresh target behind a proxy with `fault`.
struct Refusals {
    _src: Registry,
    tgt: Registry,
    proxy: FaultProxy,
    img: Image,
    bundle: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Refusals {
    fn new(seed: u64, index: bool, fault: impl FnOnce(&Image) -> Fault) -> Refusals {
        let src = Registry::start(RegistryOpts::plain());
        let fx = Fixtures::new(&src);
        let img = if index {
            fx.oci_index("race/idx", "1", seed)
        } else {
            fx.image("race/img", Some("1"), &ImageOpts::oci(seed))
        };
        let dir = tempdir();
        let spec = spec_of(dir.path(), "airgap.yaml", &[img.reference(&src.host())]);
        let bundle = dir.path().join("bundle.tar.zst");
        pack_ok(&spec, &bundle, args![src.source_flags(), "--quiet"]);
        let tgt = Registry::start(RegistryOpts::plain());
        let proxy = FaultProxy::start(&tgt.host(), fault(&img));
        Refusals {
            _src: src,
            tgt,
            proxy,
            img,
            bundle,
            _dir: dir,
        }
    }

    fn load(&self) -> Output {
        AirgapCmd::new(args![
            "load",
            &self.bundle,
            "--registry",
            self.proxy.host(),
            "--plain-http",
            "--quiet"
        ])
        .timeout(Duration::from_secs(120))
        .run()
    }

    /// Indexes in the proxy log of requests with `method` whose path contains `part`.
    fn seen(&self, method: &str, part: &str) -> Vec<(usize, Action)> {
        self.proxy
            .seen()
            .into_iter()
            .enumerate()
            .filter(|(_, s)| s.method == method && s.path.contains(part))
            .map(|(i, s)| (i, s.action))
            .collect()
    }

    /// Monolithic upload PUTs of `digest`.
    fn uploads_of(&self, digest: &str) -> usize {
        self.seen("PUT", &format!("digest=sha256%3A{}", digest_hex(digest)))
            .len()
    }

    /// The image is at the real target, complete, by tag.
    fn assert_landed(&self) {
        let host = self.tgt.host();
        assert_skopeo_digest(&self.img.reference(&host), &self.tgt, &self.img.digest);
        let c = self.tgt.client();
        let images: Vec<&Image> = if self.img.is_index() {
            self.img.children.iter().collect()
        } else {
            vec![&self.img]
        };
        for i in images {
            for b in &i.blobs {
                assert_eq!(c.blob_size(&self.img.repo, &b.digest), Some(b.size));
            }
        }
    }
}

/// The body distribution 2.8 answers when the link of each of `digests` reads empty.
fn blob_unknown_body(digests: &[&str]) -> Arc<Vec<u8>> {
    let mut errors = vec![json!({
        "code": "DIGEST_INVALID",
        "message": "provided digest did not match uploaded content"
    })];
    for d in digests {
        errors.push(json!({
            "code": "MANIFEST_BLOB_UNKNOWN",
            "message": "blob unknown to registry",
            "detail": d
        }));
    }
    Arc::new(serde_json::to_vec(&json!({ "errors": errors })).unwrap())
}

fn refuse_manifest_put(n: usize, path_contains: &str, digests: &[&str]) -> Fault {
    Fault::CannedFirst {
        n,
        method: "PUT".into(),
        path_contains: path_contains.into(),
        status: 400,
        content_type: "application/json; charset=utf-8".into(),
        body: blob_unknown_body(digests),
    }
}

/// HEAD of `digest` answers 404, as if the registry had lost the blob.
fn hide_blob(digest: &str) -> Fault {
    Fault::Canned {
        method: Some("HEAD".into()),
        path_contains: format!("/blobs/{digest}"),
        status: 404,
        content_type: "application/json; charset=utf-8".into(),
        headers: vec![],
        body: Arc::new(br#"{"errors":[{"code":"BLOB_UNKNOWN"}]}"#.to_vec()),
    }
}

#[test]
fn a_manifest_refused_for_a_blob_that_is_there_is_pushed_again() {
    let s = Refusals::new(810, false, |img| {
        refuse_manifest_put(2, "/manifests/", &[&img.layers()[0].digest])
    });
    let layer = s.img.layers()[0].digest.clone();
    let out = s.load();
    assert_success(&out);
    let log = s.proxy.describe();
    let puts = s.seen("PUT", "/manifests/");
    let actions: Vec<&Action> = puts.iter().map(|(_, a)| a).collect();
    assert_eq!(
        actions,
        [
            &Action::Answered(400),
            &Action::Answered(400),
            &Action::Forwarded
        ],
        "{log}"
    );
    // Between refusals the blob was checked (HEAD), and found, so never uploaded again.
    let heads = s.seen("HEAD", &format!("/blobs/{layer}"));
    for w in puts.windows(2) {
        assert!(
            heads.iter().any(|(i, _)| *i > w[0].0 && *i < w[1].0),
            "no HEAD of {layer} between two manifest PUTs:\n{log}"
        );
    }
    assert_eq!(s.uploads_of(&layer), 1, "{log}");
    s.assert_landed();
}

#[test]
fn an_index_refused_for_a_child_manifest_pushes_the_child_again() {
    let s = Refusals::new(820, true, |img| {
        refuse_manifest_put(1, "/manifests/1", &[&img.children[0].digest])
    });
    let child = s.img.children[0].digest.clone();
    let out = s.load();
    assert_success(&out);
    let log = s.proxy.describe();
    let tag_puts: Vec<Action> = s
        .seen("PUT", "/manifests/1")
        .into_iter()
        .map(|x| x.1)
        .collect();
    assert_eq!(
        tag_puts,
        [Action::Answered(400), Action::Forwarded],
        "{log}"
    );
    assert_eq!(
        s.seen("PUT", &format!("/manifests/{child}")).len(),
        2,
        "{log}"
    );
    s.assert_landed();
}

#[test]
fn a_blob_the_registry_lost_is_uploaded_again_from_the_bundle() {
    let s = Refusals::new(830, false, |img| {
        let layer = &img.layers()[0].digest;
        Fault::Each(vec![
            hide_blob(layer),
            refuse_manifest_put(1, "/manifests/", &[layer]),
        ])
    });
    let layer = s.img.layers()[0].digest.clone();
    let out = s.load();
    assert_success(&out);
    let log = s.proxy.describe();
    assert_eq!(s.uploads_of(&layer), 2, "{log}");
    for b in s.img.blobs.iter().filter(|b| b.digest != layer) {
        assert_eq!(s.uploads_of(&b.digest), 1, "{} {log}", b.digest);
    }
    s.assert_landed();
}

#[test]
fn manifest_refusals_that_do_not_end_fail_naming_image_registry_and_blob() {
    // The registry keeps saying the blob is missing while HEAD finds it: bounded attempts.
    let s = Refusals::new(840, false, |img| {
        refuse_manifest_put(usize::MAX, "/manifests/", &[&img.layers()[0].digest])
    });
    let layer = s.img.layers()[0].digest.clone();
    let out = s.load();
    assert_failure_contains(
        &out,
        &[
            &s.img.reference(&s.proxy.host()),
            &s.proxy.host(),
            &layer,
            "MANIFEST_BLOB_UNKNOWN",
            "6 attempts",
        ],
    );
    assert_eq!(
        s.seen("PUT", "/manifests/").len(),
        6,
        "{}",
        s.proxy.describe()
    );
    assert!(s.tgt.client().tags(&s.img.repo).is_empty());

    // The blob stays lost even after the bundle was read again for it.
    let s = Refusals::new(850, false, |img| {
        let layer = &img.layers()[0].digest;
        Fault::Each(vec![
            hide_blob(layer),
            refuse_manifest_put(usize::MAX, "/manifests/", &[layer]),
        ])
    });
    let layer = s.img.layers()[0].digest.clone();
    let out = s.load();
    assert_failure_contains(
        &out,
        &[
            &s.img.reference(&s.proxy.host()),
            &s.proxy.host(),
            &layer,
            "still missing after the bundle was read again",
        ],
    );
    assert_eq!(s.uploads_of(&layer), 2, "{}", s.proxy.describe());
    assert!(s.tgt.client().tags(&s.img.repo).is_empty());
}
