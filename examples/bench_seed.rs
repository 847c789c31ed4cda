//! The registry side of `scripts/bench.sh`: starts a source registry (CNCF distribution, on
//! loopback, through the test harness), pushes a deterministic image set into it through the
//! registry API, writes what it pushed as TSV files, then serves a tiny line protocol on
//! stdin/stdout so the script can start and stop fresh target registries:
//!
//! ```text
//! bench_seed SET SCALE OUTDIR        SET: large | many | interop; SCALE: e.g. 1 or 0.1
//! <- ready HOST STORAGE                 (after seeding)
//! -> start NAME                         a fresh, empty plain-HTTP registry
//! <- started NAME HOST STORAGE
//! -> stop NAME                          kills it and deletes its storage
//! <- stopped NAME
//! -> shape NAME RTT_MS BITS_PER_S       the source behind the harness proxy shaped as a WAN
//!                                       link (tests/support/shaping.rs): RTT_MS round trip,
//!                                       BITS_PER_S each way, shared by its connections
//! <- shaped NAME HOST
//! (stdin closed)                        every registry is stopped, storage deleted
//! ```
//!
//! Files written into OUTDIR:
//! - `images.tsv`: `name repo tag digest media_type` per image (what is packed and loaded);
//! - `checks.tsv`: `reference digest` for every manifest to check at a target: each image by
//!   tag and each child of an index by digest;
//! - `blobs.tsv`: `repo digest size path` for every config and layer blob (each once), `path`
//!   being the file in the source registry's storage;
//! - `summary.env`: counts and sizes, for the report.
//!
//! Every image is OCI-typed (OCI manifests and indexes, `tar+gzip` layers): skopeo cannot keep
//! the digest of a Docker manifest list in an OCI layout, and the comparison must be on the
//! same data. Layers are real tar files of incompressible bytes, wrapped in gzip streams made
//! of stored blocks, so their size is what the set says.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use serde_json::json;

// The harness modules refer to each other as `super::…`, so they sit at this crate's root.
#[allow(dead_code)]
#[path = "../tests/support/fixtures.rs"]
mod fixtures;
#[allow(dead_code)]
#[path = "../tests/support/proxy.rs"]
mod proxy;
#[allow(dead_code)]
#[path = "../tests/support/registry.rs"]
mod registry;
#[allow(dead_code)]
#[path = "../tests/support/shaping.rs"]
mod shaping;
#[allow(dead_code)]
#[path = "../tests/support/tls.rs"]
mod tls;

use fixtures::{gzip_stored, TarLayer, OCI_CONFIG, OCI_INDEX, OCI_MANIFEST};
use registry::{Registry, RegistryClient, RegistryOpts};

const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const MIB: f64 = 1024.0 * 1024.0;
const KIB: f64 = 1024.0;

fn sha256_digest(bytes: &[u8]) -> String {
    use sha2::{Digest as _, Sha256};
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// One platform manifest of the set: its platform and the sizes of its own layers (on top of
/// the shared base layer).
struct PlatformPlan {
    platform: &'static str,
    layers: Vec<u64>,
}

/// One image of the set: a single manifest, or an OCI index when it has several platforms.
struct ImagePlan {
    repo: String,
    tag: String,
    platforms: Vec<PlatformPlan>,
}

struct SetPlan {
    base: u64,
    images: Vec<ImagePlan>,
}

fn scaled(bytes: f64, scale: f64) -> u64 {
    ((bytes * scale).round() as u64).max(4096)
}

/// About a dozen images, three of them multi-platform (linux/amd64 + linux/arm64), a shared
/// 24 MiB base layer and unique layers of 16–96 MiB: about 1 GiB unique.
fn large(scale: f64) -> SetPlan {
    let mib = |m: u64| scaled(m as f64 * MIB, scale);
    let table: &[(&str, &[&[u64]])] = &[
        ("large/api", &[&[96]]),
        ("large/web", &[&[64, 16]]),
        ("large/worker", &[&[48], &[48]]),
        ("large/db", &[&[96]]),
        ("large/cache", &[&[32, 32]]),
        ("large/proxy", &[&[64], &[64]]),
        ("large/search", &[&[80]]),
        ("large/queue", &[&[48, 16]]),
        ("large/ml", &[&[96], &[96]]),
        ("large/auth", &[&[32]]),
        ("large/ui", &[&[24, 16]]),
        ("large/batch", &[&[64]]),
    ];
    let platforms = ["linux/amd64", "linux/arm64"];
    SetPlan {
        base: mib(24),
        images: table
            .iter()
            .map(|(repo, plats)| ImagePlan {
                repo: repo.to_string(),
                tag: "1.0".into(),
                platforms: plats
                    .iter()
                    .zip(platforms)
                    .map(|(layers, platform)| PlatformPlan {
                        platform,
                        layers: layers.iter().map(|&m| mib(m)).collect(),
                    })
                    .collect(),
            })
            .collect(),
    }
}

/// The acceptance set of issue 13 (`scripts/bench-interop.sh`): one single-platform image, a
/// 4 MiB base layer and one 100 MiB layer.
fn interop(scale: f64) -> SetPlan {
    SetPlan {
        base: scaled(4.0 * MIB, scale),
        images: vec![ImagePlan {
            repo: "interop/big".into(),
            tag: "1.0".into(),
            platforms: vec![PlatformPlan {
                platform: "linux/amd64",
                layers: vec![scaled(100.0 * MIB, scale)],
            }],
        }],
    }
}

/// 240 small single-platform images (80 repositories × 3 tags) on an 8 MiB shared base, each
/// with two layers of 256–767 KiB and 256 KiB: about 200 MB in all.
fn many(scale: f64) -> SetPlan {
    let images = (0..240u64)
        .map(|i| {
            let a = (256 + (i * 97) % 512) as f64 * KIB;
            ImagePlan {
                repo: format!("many/svc-{:02}", i / 3),
                tag: format!("1.0.{}", i % 3),
                platforms: vec![PlatformPlan {
                    platform: "linux/amd64",
                    layers: vec![scaled(a, scale), scaled(256.0 * KIB, scale)],
                }],
            }
        })
        .collect();
    SetPlan {
        base: scaled(8.0 * MIB, scale),
        images,
    }
}

/// A pushed blob.
#[derive(Clone)]
struct Blob {
    digest: String,
    size: u64,
    media_type: &'static str,
    diff_id: Option<String>,
}

fn descriptor(b: &Blob) -> serde_json::Value {
    json!({"mediaType": b.media_type, "digest": b.digest, "size": b.size})
}

fn platform_json(p: &str) -> serde_json::Value {
    let parts: Vec<&str> = p.split('/').collect();
    json!({"architecture": parts[1], "os": parts[0]})
}

/// Pushes blobs and manifests of one image; shared by the seeding threads.
struct Seeder<'a> {
    client: &'a RegistryClient,
    base: Blob,
    base_repo: String,
    /// Repositories the base layer is linked into already.
    base_linked: Mutex<BTreeSet<String>>,
}

/// What seeding one image produced.
struct Seeded {
    pushed: Pushed,
    /// (digest, repo, size) of the image's own config and layer blobs.
    blobs: Vec<(String, String, u64)>,
}

fn push_layer(client: &RegistryClient, repo: &str, layer: &TarLayer) -> Blob {
    let tar = layer.bytes();
    let diff_id = sha256_digest(&tar);
    let gz = gzip_stored(&tar);
    drop(tar);
    let digest = client.push_blob(repo, &gz);
    Blob {
        digest,
        size: gz.len() as u64,
        media_type: OCI_LAYER_GZIP,
        diff_id: Some(diff_id),
    }
}

impl Seeder<'_> {
    /// Links the base layer into `repo` by a cross-repository mount (once per repository).
    fn mount_base(&self, repo: &str) {
        if !self.base_linked.lock().unwrap().insert(repo.to_string()) {
            return;
        }
        let resp = self
            .client
            .request(
                reqwest::Method::POST,
                &format!(
                    "/v2/{repo}/blobs/uploads/?mount={}&from={}",
                    self.base.digest, self.base_repo
                ),
            )
            .send()
            .expect("mount request");
        assert_eq!(
            resp.status(),
            reqwest::StatusCode::CREATED,
            "mount {} from {} into {repo}",
            self.base.digest,
            self.base_repo
        );
    }

    /// Pushes a single-platform image's config (its layers are pushed already) and returns
    /// the config blob and the manifest bytes (not pushed).
    fn manifest(&self, repo: &str, platform: &str, seed: u64, layers: &[Blob]) -> (Blob, Vec<u8>) {
        let p = platform_json(platform);
        let diff_ids: Vec<&str> = layers
            .iter()
            .map(|l| l.diff_id.as_deref().unwrap())
            .collect();
        let cfg = json!({
            "created": "2024-01-01T00:00:00Z",
            "architecture": p["architecture"],
            "os": p["os"],
            "config": {
                "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                "Cmd": ["/bin/sh"],
                "Labels": {"airgap.bench.seed": seed.to_string()},
            },
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": diff_ids.iter().enumerate().map(|(i, _)| json!({
                "created": "2024-01-01T00:00:00Z",
                "created_by": format!("layer {i}"),
            })).collect::<Vec<_>>(),
        });
        let cfg = serde_json::to_vec(&cfg).unwrap();
        let config = Blob {
            digest: self.client.push_blob(repo, &cfg),
            size: cfg.len() as u64,
            media_type: OCI_CONFIG,
            diff_id: None,
        };
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": descriptor(&config),
            "layers": layers.iter().map(descriptor).collect::<Vec<_>>(),
        }))
        .unwrap();
        (config, manifest)
    }

    /// Pushes image number `i` of the set: every seed is derived from `i`, so the set is the
    /// same whatever the order the threads take the images in.
    fn image(&self, i: usize, img: &ImagePlan) -> Seeded {
        self.mount_base(&img.repo);
        let mut blobs = Vec::new();
        let mut manifests = Vec::new();
        for (p, plat) in img.platforms.iter().enumerate() {
            let seed = (i as u64 + 1) * 1000 + p as u64 * 100;
            let mut layers = vec![self.base.clone()];
            for (l, &size) in plat.layers.iter().enumerate() {
                let layer = push_layer(
                    self.client,
                    &img.repo,
                    &TarLayer::new(seed + l as u64 + 1, size),
                );
                blobs.push((layer.digest.clone(), img.repo.clone(), layer.size));
                layers.push(layer);
            }
            let (config, manifest) = self.manifest(&img.repo, plat.platform, seed, &layers);
            blobs.push((config.digest, img.repo.clone(), config.size));
            manifests.push((plat.platform, manifest));
        }
        let name = format!("img-{i:03}");
        let pushed = if manifests.len() == 1 {
            let digest =
                self.client
                    .push_manifest(&img.repo, &img.tag, OCI_MANIFEST, &manifests[0].1);
            Pushed {
                name,
                repo: img.repo.clone(),
                tag: img.tag.clone(),
                digest,
                media_type: OCI_MANIFEST,
                children: vec![],
            }
        } else {
            let mut children = Vec::new();
            let mut entries = Vec::new();
            for (platform, bytes) in &manifests {
                let d = sha256_digest(bytes);
                self.client
                    .push_manifest(&img.repo, &d, OCI_MANIFEST, bytes);
                entries.push(json!({
                    "mediaType": OCI_MANIFEST,
                    "digest": d,
                    "size": bytes.len(),
                    "platform": platform_json(platform),
                }));
                children.push(d);
            }
            let index = serde_json::to_vec(&json!({
                "schemaVersion": 2,
                "mediaType": OCI_INDEX,
                "manifests": entries,
            }))
            .unwrap();
            let digest = self
                .client
                .push_manifest(&img.repo, &img.tag, OCI_INDEX, &index);
            Pushed {
                name,
                repo: img.repo.clone(),
                tag: img.tag.clone(),
                digest,
                media_type: OCI_INDEX,
                children,
            }
        };
        Seeded { pushed, blobs }
    }
}

struct Pushed {
    name: String,
    repo: String,
    tag: String,
    digest: String,
    media_type: &'static str,
    /// The digest of each child of an index.
    children: Vec<String>,
}

/// Threads pushing images at once while seeding.
const SEED_THREADS: usize = 4;

fn seed_set(reg: &Registry, plan: &SetPlan) -> (Vec<Pushed>, BTreeMap<String, (String, u64)>) {
    let client = reg.client();
    let base_repo = plan.images[0].repo.clone();
    let base = push_layer(&client, &base_repo, &TarLayer::new(0xBA5E, plan.base));
    let mut blobs = BTreeMap::new();
    blobs.insert(base.digest.clone(), (base_repo.clone(), base.size));
    let seeder = Seeder {
        client: &client,
        base,
        base_linked: Mutex::new(BTreeSet::from([base_repo.clone()])),
        base_repo,
    };
    let next = AtomicUsize::new(0);
    let done: Mutex<Vec<Option<Seeded>>> =
        Mutex::new((0..plan.images.len()).map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..SEED_THREADS {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(img) = plan.images.get(i) else { break };
                let seeded = seeder.image(i, img);
                eprintln!(
                    "  seeded {}:{} {} ({} platform(s))",
                    img.repo,
                    img.tag,
                    &seeded.pushed.digest[..19],
                    img.platforms.len()
                );
                done.lock().unwrap()[i] = Some(seeded);
            });
        }
    });
    let mut images = Vec::new();
    for seeded in done.into_inner().unwrap() {
        let seeded = seeded.expect("every image seeded");
        for (digest, repo, size) in seeded.blobs {
            blobs.entry(digest).or_insert((repo, size));
        }
        images.push(seeded.pushed);
    }
    (images, blobs)
}

fn blob_path(storage: &Path, digest: &str) -> PathBuf {
    let hex = digest.strip_prefix("sha256:").unwrap();
    storage
        .join("docker/registry/v2/blobs/sha256")
        .join(&hex[..2])
        .join(hex)
        .join("data")
}

fn write_files(
    out: &Path,
    reg: &Registry,
    set: &str,
    scale: f64,
    images: &[Pushed],
    blobs: &BTreeMap<String, (String, u64)>,
) {
    let storage = reg.storage_dir();
    let mut f = String::new();
    for i in images {
        f.push_str(&format!(
            "{}\t{}\t{}\t{}\t{}\n",
            i.name, i.repo, i.tag, i.digest, i.media_type
        ));
    }
    std::fs::write(out.join("images.tsv"), f).unwrap();

    let mut f = String::new();
    for i in images {
        f.push_str(&format!("{}:{}\t{}\n", i.repo, i.tag, i.digest));
        for c in &i.children {
            f.push_str(&format!("{}@{c}\t{c}\n", i.repo));
        }
    }
    std::fs::write(out.join("checks.tsv"), f).unwrap();

    let mut f = String::new();
    let mut total = 0u64;
    for (digest, (repo, size)) in blobs {
        let p = blob_path(&storage, digest);
        let on_disk = std::fs::metadata(&p)
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
            .len();
        assert_eq!(on_disk, *size, "{} in storage", digest);
        f.push_str(&format!("{repo}\t{digest}\t{size}\t{}\n", p.display()));
        total += size;
    }
    std::fs::write(out.join("blobs.tsv"), f).unwrap();

    let manifests: usize = images.iter().map(|i| 1 + i.children.len()).sum();
    let multi = images.iter().filter(|i| !i.children.is_empty()).count();
    let summary = format!(
        "SEED_SET={set}\nSEED_SCALE={scale}\nSEED_IMAGES={}\nSEED_MULTI={multi}\n\
         SEED_MANIFESTS={manifests}\nSEED_BLOBS={}\nSEED_BLOB_BYTES={total}\n",
        images.len(),
        blobs.len(),
    );
    std::fs::write(out.join("summary.env"), summary).unwrap();
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() != 3 {
        eprintln!("usage: bench_seed large|many|interop SCALE OUTDIR");
        std::process::exit(2);
    }
    let scale: f64 = args[1].parse().expect("SCALE is a number, e.g. 1 or 0.1");
    assert!(scale > 0.0, "SCALE must be positive");
    let plan = match args[0].as_str() {
        "large" => large(scale),
        "many" => many(scale),
        "interop" => interop(scale),
        other => {
            eprintln!("unknown set {other:?}: large, many or interop");
            std::process::exit(2);
        }
    };
    let out = PathBuf::from(&args[2]);
    std::fs::create_dir_all(&out).expect("create OUTDIR");

    let t = std::time::Instant::now();
    let source = Registry::start(RegistryOpts::plain());
    eprintln!("source registry {} (seeding {})", source.host(), args[0]);
    let (images, blobs) = seed_set(&source, &plan);
    write_files(&out, &source, &args[0], scale, &images, &blobs);
    eprintln!(
        "seeded {} images, {} blobs in {:.1}s",
        images.len(),
        blobs.len(),
        t.elapsed().as_secs_f64()
    );

    let stdout = std::io::stdout();
    let mut w = stdout.lock();
    writeln!(
        w,
        "ready {} {}",
        source.host(),
        source.storage_dir().display()
    )
    .unwrap();
    w.flush().unwrap();

    let mut targets: BTreeMap<String, Registry> = BTreeMap::new();
    let mut proxies: BTreeMap<String, proxy::FaultProxy> = BTreeMap::new();
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let mut parts = line.split_whitespace();
        match (parts.next(), parts.next()) {
            (Some("shape"), Some(name)) => {
                let num = |p: Option<&str>| p.and_then(|v| v.parse::<u64>().ok());
                let (Some(rtt), Some(bits)) = (num(parts.next()), num(parts.next())) else {
                    writeln!(w, "error shape NAME RTT_MS BITS_PER_S: {line:?}").unwrap();
                    w.flush().unwrap();
                    continue;
                };
                let opts = proxy::ProxyOptions {
                    shape: Some(shaping::Shape::wan(
                        std::time::Duration::from_millis(rtt),
                        bits,
                    )),
                    // A benchmark runs for many minutes; pooled connections idle for a while.
                    lifetime: std::time::Duration::from_secs(6 * 3600),
                    idle: std::time::Duration::from_secs(300),
                };
                let p = proxy::FaultProxy::start_with(&source.host(), proxy::Fault::None, opts);
                writeln!(w, "shaped {name} {}", p.host()).unwrap();
                proxies.insert(name.to_string(), p);
            }
            (Some("start"), Some(name)) => {
                if let Some(old) = targets.remove(name) {
                    drop(old);
                }
                let r = Registry::start(RegistryOpts::plain());
                writeln!(
                    w,
                    "started {name} {} {}",
                    r.host(),
                    r.storage_dir().display()
                )
                .unwrap();
                targets.insert(name.to_string(), r);
            }
            (Some("stop"), Some(name)) => {
                targets.remove(name);
                writeln!(w, "stopped {name}").unwrap();
            }
            _ => writeln!(w, "error unknown command {line:?}").unwrap(),
        }
        w.flush().unwrap();
    }
    drop(proxies);
    drop(targets);
    drop(source);
}
