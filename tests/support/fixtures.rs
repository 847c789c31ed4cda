//! Image fixtures pushed with plain HTTP: single-platform OCI images, OCI indexes, Docker
//! manifest lists, images sharing a base layer, digest-only images, a huge streamed layer and
//! non-canonical manifest JSON. Everything is deterministic from a seed.
//!
//! Layers are real tar files (one member of pseudo-random, incompressible bytes); Docker
//! layers are gzip streams of them (stored deflate blocks), so the configs' `diff_ids` are
//! right and other tools can unpack them.

use std::collections::BTreeSet;
use std::io::Read;

use serde_json::json;

use super::registry::{Registry, RegistryClient};
use super::sha256_digest;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// 64 MiB + 1 MiB: the size of "a layer larger than 64 MiB".
pub const BIG_LAYER_SIZE: u64 = 65 << 20;

// ---------------------------------------------------------------------------------------
// Deterministic incompressible bytes

/// xorshift64* seeded through splitmix64: fast enough in a debug build, incompressible.
#[derive(Clone)]
pub struct Prng(u64);

impl Prng {
    pub fn new(seed: u64) -> Self {
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        Prng(z | 1)
    }
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn fill(&mut self, buf: &mut [u8]) {
        let mut chunks = buf.chunks_exact_mut(8);
        for c in &mut chunks {
            c.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        let rest = chunks.into_remainder();
        if !rest.is_empty() {
            let v = self.next_u64().to_le_bytes();
            let n = rest.len();
            rest.copy_from_slice(&v[..n]);
        }
    }
    pub fn bytes(seed: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        Prng::new(seed).fill(&mut v);
        v
    }
}

/// A `Read` of `len` pseudo-random bytes from `seed`.
pub struct RandomReader {
    prng: Prng,
    left: u64,
    pending: [u8; 8],
    pending_len: usize,
}

impl RandomReader {
    pub fn new(seed: u64, len: u64) -> Self {
        RandomReader {
            prng: Prng::new(seed),
            left: len,
            pending: [0; 8],
            pending_len: 0,
        }
    }
}

impl Read for RandomReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let want = (buf.len() as u64).min(self.left) as usize;
        if want == 0 {
            return Ok(0);
        }
        let mut n = 0;
        // Leftover bytes of a word cut by the previous call keep the stream identical
        // whatever the read sizes.
        while n < want && self.pending_len > 0 {
            buf[n] = self.pending[8 - self.pending_len];
            self.pending_len -= 1;
            n += 1;
        }
        let whole = (want - n) / 8 * 8;
        self.prng.fill(&mut buf[n..n + whole]);
        n += whole;
        if n < want {
            self.pending = self.prng.next_u64().to_le_bytes();
            self.pending_len = 8;
            while n < want {
                buf[n] = self.pending[8 - self.pending_len];
                self.pending_len -= 1;
                n += 1;
            }
        }
        self.left -= n as u64;
        Ok(n)
    }
}

// ---------------------------------------------------------------------------------------
// Layers

/// A tar with one regular file of `data_len` pseudo-random bytes, streamable.
#[derive(Clone, Debug)]
pub struct TarLayer {
    pub seed: u64,
    pub data_len: u64,
}

impl TarLayer {
    pub fn new(seed: u64, data_len: u64) -> Self {
        TarLayer { seed, data_len }
    }
    fn header(&self) -> Vec<u8> {
        let mut h = tar::Header::new_ustar();
        h.set_path(format!("data/layer-{:016x}.bin", self.seed))
            .unwrap();
        h.set_size(self.data_len);
        h.set_mode(0o644);
        h.set_mtime(1_700_000_000);
        h.set_uid(0);
        h.set_gid(0);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        h.as_bytes().to_vec()
    }
    fn trailer_len(&self) -> u64 {
        let pad = (512 - self.data_len % 512) % 512;
        pad + 1024
    }
    /// The tar's size in bytes.
    pub fn len(&self) -> u64 {
        512 + self.data_len + self.trailer_len()
    }
    pub fn is_empty(&self) -> bool {
        false
    }
    /// The tar as a stream (never held in memory).
    pub fn reader(&self) -> impl Read + Send + 'static {
        std::io::Cursor::new(self.header())
            .chain(RandomReader::new(self.seed, self.data_len))
            .chain(std::io::repeat(0).take(self.trailer_len()))
    }
    pub fn bytes(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.len() as usize);
        self.reader().read_to_end(&mut v).unwrap();
        v
    }
    /// sha256 of the tar, computed by streaming it once.
    pub fn digest(&self) -> String {
        use sha2::{Digest as _, Sha256};
        let mut h = Sha256::new();
        let mut r = self.reader();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = r.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
        format!("sha256:{}", hex::encode(h.finalize()))
    }
}

fn crc32(data: &[u8]) -> u32 {
    static TABLE: std::sync::OnceLock<[u32; 256]> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut t = [0u32; 256];
        for (i, e) in t.iter_mut().enumerate() {
            let mut c = i as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
            *e = c;
        }
        t
    });
    let mut c = !0u32;
    for &b in data {
        c = table[((c ^ b as u32) & 0xff) as usize] ^ (c >> 8);
    }
    !c
}

/// A valid gzip stream of `data` made of stored (uncompressed) deflate blocks.
pub fn gzip_stored(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    let mut chunks: Vec<&[u8]> = data.chunks(65535).collect();
    if chunks.is_empty() {
        chunks.push(&[]);
    }
    let last = chunks.len() - 1;
    for (i, c) in chunks.iter().enumerate() {
        out.push(u8::from(i == last));
        let len = c.len() as u16;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(c);
    }
    out.extend_from_slice(&crc32(data).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

// ---------------------------------------------------------------------------------------
// Pushed images

/// A blob referenced by a manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlobRef {
    pub digest: String,
    pub size: u64,
    pub media_type: String,
}

/// One image (manifest) or index as pushed to the source registry.
#[derive(Clone, Debug)]
pub struct Image {
    /// Repository path in the source registry (`app/single`).
    pub repo: String,
    /// The tag it was pushed under; `None` for a digest-only image.
    pub tag: Option<String>,
    /// sha256 of the exact manifest bytes.
    pub digest: String,
    pub media_type: String,
    pub manifest: Vec<u8>,
    /// `os/arch[/variant]` of a single-platform image (from its config).
    pub platform: Option<String>,
    /// Config and layers of a single-platform image (config first); empty for an index.
    pub blobs: Vec<BlobRef>,
    /// The children of an index or manifest list, in order.
    pub children: Vec<Image>,
}

impl Image {
    /// `HOST/repo:tag`, or `HOST/repo@digest` for a digest-only image.
    pub fn reference(&self, host: &str) -> String {
        match &self.tag {
            Some(t) => format!("{host}/{}:{t}", self.repo),
            None => format!("{host}/{}@{}", self.repo, self.digest),
        }
    }
    /// `HOST/repo@digest`.
    pub fn by_digest(&self, host: &str) -> String {
        format!("{host}/{}@{}", self.repo, self.digest)
    }
    pub fn manifest_size(&self) -> u64 {
        self.manifest.len() as u64
    }
    pub fn is_index(&self) -> bool {
        !self.children.is_empty()
    }
    /// Layers of this image, or of all children of an index.
    pub fn layers(&self) -> Vec<BlobRef> {
        if self.is_index() {
            return self.children.iter().flat_map(|c| c.layers()).collect();
        }
        self.blobs.iter().skip(1).cloned().collect()
    }
    /// The platforms of an index's children, or of a single image.
    pub fn platforms(&self) -> Vec<String> {
        if self.is_index() {
            self.children
                .iter()
                .filter_map(|c| c.platform.clone())
                .collect()
        } else {
            self.platform.iter().cloned().collect()
        }
    }
    /// The child of an index for a platform.
    pub fn child(&self, platform: &str) -> &Image {
        self.children
            .iter()
            .find(|c| c.platform.as_deref() == Some(platform))
            .unwrap_or_else(|| panic!("{} has no {platform} child", self.repo))
    }
    /// Every digest a complete copy needs: manifests (own and children's), configs, layers.
    pub fn all_digests(&self) -> BTreeSet<String> {
        let mut s = BTreeSet::new();
        s.insert(self.digest.clone());
        for b in &self.blobs {
            s.insert(b.digest.clone());
        }
        for c in &self.children {
            s.extend(c.all_digests());
        }
        s
    }
    /// The sum of the sizes of every distinct blob of [`Image::all_digests`].
    pub fn total_size(&self) -> u64 {
        let mut seen = BTreeSet::new();
        let mut total = 0;
        self.add_sizes(&mut seen, &mut total);
        total
    }
    fn add_sizes(&self, seen: &mut BTreeSet<String>, total: &mut u64) {
        if seen.insert(self.digest.clone()) {
            *total += self.manifest_size();
        }
        for b in &self.blobs {
            if seen.insert(b.digest.clone()) {
                *total += b.size;
            }
        }
        for c in &self.children {
            c.add_sizes(seen, total);
        }
    }
}

/// How to build a single-platform image.
#[derive(Clone, Debug)]
pub struct ImageOpts {
    pub seed: u64,
    /// Number of layers on top of `base`.
    pub layers: usize,
    /// Bytes of random data in each layer's file.
    pub layer_size: u64,
    pub platform: String,
    /// Docker schema 2 (gzip layers) instead of OCI.
    pub docker: bool,
    /// A layer put first, e.g. shared with other images.
    pub base: Option<TarLayer>,
}

impl ImageOpts {
    pub fn oci(seed: u64) -> Self {
        ImageOpts {
            seed,
            layers: 2,
            layer_size: 8 * 1024,
            platform: "linux/amd64".into(),
            docker: false,
            base: None,
        }
    }
    pub fn docker(seed: u64) -> Self {
        ImageOpts {
            docker: true,
            ..Self::oci(seed)
        }
    }
    pub fn layers(mut self, n: usize, size: u64) -> Self {
        self.layers = n;
        self.layer_size = size;
        self
    }
    pub fn platform(mut self, p: &str) -> Self {
        self.platform = p.into();
        self
    }
    pub fn base(mut self, base: TarLayer) -> Self {
        self.base = Some(base);
        self
    }
}

fn platform_json(p: &str) -> serde_json::Value {
    let parts: Vec<&str> = p.split('/').collect();
    let mut v = json!({"architecture": parts[1], "os": parts[0]});
    if let Some(var) = parts.get(2) {
        v["variant"] = json!(var);
    }
    v
}

fn descriptor(b: &BlobRef) -> serde_json::Value {
    json!({"mediaType": b.media_type, "digest": b.digest, "size": b.size})
}

/// Pushes fixtures to one registry.
pub struct Fixtures {
    pub client: RegistryClient,
    pub host: String,
}

impl Fixtures {
    pub fn new(reg: &Registry) -> Self {
        Fixtures {
            client: reg.client(),
            host: reg.host(),
        }
    }

    /// Pushes a layer given as bytes (small) and returns its descriptor.
    fn push_layer(&self, repo: &str, layer: &TarLayer, docker: bool) -> (BlobRef, String) {
        let tar = layer.bytes();
        let diff_id = sha256_digest(&tar);
        let (bytes, mt) = if docker {
            (gzip_stored(&tar), DOCKER_LAYER)
        } else {
            (tar, OCI_LAYER_TAR)
        };
        let digest = self.client.push_blob(repo, &bytes);
        (
            BlobRef {
                digest,
                size: bytes.len() as u64,
                media_type: mt.into(),
            },
            diff_id,
        )
    }

    fn config_bytes(opts: &ImageOpts, diff_ids: &[String]) -> Vec<u8> {
        let p = platform_json(&opts.platform);
        let mut cfg = json!({
            "created": "2024-01-01T00:00:00Z",
            "architecture": p["architecture"],
            "os": p["os"],
        });
        if let Some(v) = p.get("variant") {
            cfg["variant"] = v.clone();
        }
        cfg["config"] = json!({
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": ["/bin/sh"],
            "Labels": {"airgap.test.seed": opts.seed.to_string()},
        });
        cfg["rootfs"] = json!({"type": "layers", "diff_ids": diff_ids});
        cfg["history"] = json!(diff_ids
            .iter()
            .enumerate()
            .map(|(i, _)| json!({"created": "2024-01-01T00:00:00Z", "created_by": format!("layer {i}")}))
            .collect::<Vec<_>>());
        serde_json::to_vec(&cfg).unwrap()
    }

    /// Pushes the config and layers of an image and returns its manifest bytes (not pushed).
    fn build_manifest(
        &self,
        repo: &str,
        opts: &ImageOpts,
        extra_layers: Vec<(BlobRef, String)>,
    ) -> (Vec<u8>, Vec<BlobRef>) {
        let mut layers: Vec<(BlobRef, String)> = Vec::new();
        if let Some(base) = &opts.base {
            layers.push(self.push_layer(repo, base, opts.docker));
        }
        for i in 0..opts.layers {
            let l = TarLayer::new(
                opts.seed.wrapping_mul(1000).wrapping_add(i as u64 + 1),
                opts.layer_size,
            );
            layers.push(self.push_layer(repo, &l, opts.docker));
        }
        layers.extend(extra_layers);
        let diff_ids: Vec<String> = layers.iter().map(|(_, d)| d.clone()).collect();
        let cfg = Self::config_bytes(opts, &diff_ids);
        let cfg_digest = self.client.push_blob(repo, &cfg);
        let config = BlobRef {
            digest: cfg_digest,
            size: cfg.len() as u64,
            media_type: if opts.docker {
                DOCKER_CONFIG
            } else {
                OCI_CONFIG
            }
            .into(),
        };
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": if opts.docker { DOCKER_MANIFEST } else { OCI_MANIFEST },
            "config": descriptor(&config),
            "layers": layers.iter().map(|(b, _)| descriptor(b)).collect::<Vec<_>>(),
        });
        let mut blobs = vec![config];
        blobs.extend(layers.into_iter().map(|(b, _)| b));
        (serde_json::to_vec(&manifest).unwrap(), blobs)
    }

    /// Pushes `img.manifest` under its tag (or by digest) and fills in its digest.
    fn finish(&self, mut img: Image) -> Image {
        img.digest = sha256_digest(&img.manifest);
        let reference = img.tag.clone().unwrap_or_else(|| img.digest.clone());
        let pushed =
            self.client
                .push_manifest(&img.repo, &reference, &img.media_type, &img.manifest);
        assert_eq!(pushed, img.digest);
        img
    }

    /// (a) A single-platform image (OCI unless `opts.docker`), pushed by tag, or by digest
    /// only when `tag` is `None`.
    pub fn image(&self, repo: &str, tag: Option<&str>, opts: &ImageOpts) -> Image {
        let (manifest, blobs) = self.build_manifest(repo, opts, vec![]);
        let mt = if opts.docker {
            DOCKER_MANIFEST
        } else {
            OCI_MANIFEST
        };
        self.finish(Image {
            repo: repo.into(),
            tag: tag.map(str::to_string),
            digest: String::new(),
            media_type: mt.into(),
            manifest,
            platform: Some(opts.platform.clone()),
            blobs,
            children: vec![],
        })
    }

    fn index_of(
        &self,
        repo: &str,
        tag: Option<&str>,
        seed: u64,
        docker: bool,
        platforms: &[&str],
    ) -> Image {
        let mut children = Vec::new();
        for (i, p) in platforms.iter().enumerate() {
            let mut o = if docker {
                ImageOpts::docker(seed * 10 + i as u64)
            } else {
                ImageOpts::oci(seed * 10 + i as u64)
            };
            o = o.platform(p);
            children.push(self.image(repo, None, &o));
        }
        let (list_mt, child_mt) = if docker {
            (DOCKER_LIST, DOCKER_MANIFEST)
        } else {
            (OCI_INDEX, OCI_MANIFEST)
        };
        let index = json!({
            "schemaVersion": 2,
            "mediaType": list_mt,
            "manifests": children.iter().map(|c| json!({
                "mediaType": child_mt,
                "digest": c.digest,
                "size": c.manifest_size(),
                "platform": platform_json(c.platform.as_deref().unwrap()),
            })).collect::<Vec<_>>(),
        });
        self.finish(Image {
            repo: repo.into(),
            tag: tag.map(str::to_string),
            digest: String::new(),
            media_type: list_mt.into(),
            manifest: serde_json::to_vec(&index).unwrap(),
            platform: None,
            blobs: vec![],
            children,
        })
    }

    /// (b) An OCI index with linux/amd64 and linux/arm64 OCI images (children by digest).
    pub fn oci_index(&self, repo: &str, tag: &str, seed: u64) -> Image {
        self.index_of(
            repo,
            Some(tag),
            seed,
            false,
            &["linux/amd64", "linux/arm64"],
        )
    }

    /// (c) A Docker schema-2 manifest list with linux/amd64 and linux/arm/v7 manifests.
    pub fn docker_list(&self, repo: &str, tag: &str, seed: u64) -> Image {
        self.index_of(
            repo,
            Some(tag),
            seed,
            true,
            &["linux/amd64", "linux/arm/v7"],
        )
    }

    /// An index of any platforms (OCI or Docker), e.g. for platform-filter tests.
    pub fn index_with(
        &self,
        repo: &str,
        tag: Option<&str>,
        seed: u64,
        docker: bool,
        platforms: &[&str],
    ) -> Image {
        self.index_of(repo, tag, seed, docker, platforms)
    }

    /// (d) Images (one per `(repo, tag)`) whose first layer is the same base layer.
    pub fn shared_base(&self, images: &[(&str, &str)], seed: u64) -> Vec<Image> {
        let base = TarLayer::new(seed.wrapping_mul(7919), 16 * 1024);
        images
            .iter()
            .enumerate()
            .map(|(i, (repo, tag))| {
                self.image(
                    repo,
                    Some(tag),
                    &ImageOpts::oci(seed * 100 + i as u64 + 1)
                        .layers(1, 4096)
                        .base(base.clone()),
                )
            })
            .collect()
    }

    /// (e) An image pushed by digest only (no tag).
    pub fn digest_only(&self, repo: &str, seed: u64) -> Image {
        self.image(repo, None, &ImageOpts::oci(seed))
    }

    /// (f) An OCI image with one small layer and one layer of `size` bytes of data, streamed
    /// from the generator both when hashed and when pushed (never held in memory).
    pub fn big_layer_image(&self, repo: &str, tag: &str, size: u64, seed: u64) -> Image {
        let big = TarLayer::new(seed.wrapping_mul(31337), size);
        let digest = big.digest();
        self.client
            .push_blob_reader(repo, &digest, big.len(), big.reader());
        let blob = BlobRef {
            digest: digest.clone(),
            size: big.len(),
            media_type: OCI_LAYER_TAR.into(),
        };
        let opts = ImageOpts::oci(seed).layers(1, 1024);
        let (manifest, blobs) = self.build_manifest(repo, &opts, vec![(blob, digest)]);
        self.finish(Image {
            repo: repo.into(),
            tag: Some(tag.to_string()),
            digest: String::new(),
            media_type: OCI_MANIFEST.into(),
            manifest,
            platform: Some(opts.platform.clone()),
            blobs,
            children: vec![],
        })
    }

    /// (g) An OCI manifest whose JSON is not canonical: tabs, CR LF, odd spacing, keys out
    /// of order, `\u00e9` and `\/` escapes, two trailing newlines. Its digest is the sha256
    /// of exactly these bytes; any re-serialisation changes it.
    pub fn non_canonical(&self, repo: &str, tag: &str, seed: u64) -> Image {
        let opts = ImageOpts::oci(seed).layers(1, 2048);
        let (canonical, blobs) = self.build_manifest(repo, &opts, vec![]);
        drop(canonical);
        let cfg = &blobs[0];
        let layer = &blobs[1];
        let manifest = format!(
            "{{\n\t\"layers\" : [ {{\"size\": {ls} ,  \"digest\":\"{ld}\",\n \"mediaType\": \"{lmt}\"}} ],\r\n  \
             \"schemaVersion\":2,\"config\":{{\"digest\":\"{cd}\",\"mediaType\":\"{cmt}\",   \"size\":{cs}}},\n  \
             \"annotations\": {{\"org.example.note\": \"caf\\u00e9 \\/ odd\"}},\n    \
             \"mediaType\": \"{mt}\"\n}}\n\n",
            ls = layer.size,
            ld = layer.digest,
            lmt = layer.media_type,
            cd = cfg.digest,
            cmt = cfg.media_type,
            cs = cfg.size,
            mt = OCI_MANIFEST,
        )
        .into_bytes();
        // It must still be valid JSON.
        serde_json::from_slice::<serde_json::Value>(&manifest).expect("non-canonical JSON parses");
        self.finish(Image {
            repo: repo.into(),
            tag: Some(tag.to_string()),
            digest: String::new(),
            media_type: OCI_MANIFEST.into(),
            manifest,
            platform: Some(opts.platform.clone()),
            blobs,
            children: vec![],
        })
    }

    /// Pushes an existing image (manifest bytes) under another tag of the same repository.
    pub fn tag(&self, image: &Image, tag: &str) -> Image {
        self.client
            .push_manifest(&image.repo, tag, &image.media_type, &image.manifest);
        Image {
            tag: Some(tag.into()),
            ..image.clone()
        }
    }
}

/// Every fixture kind (a)–(g) pushed to one registry, for round-trip tests.
pub struct AllFixtures {
    /// (a) `app/single:1.0`, OCI, 3 layers.
    pub single: Image,
    /// (a) pushed as `library/redis:7`: reached as `redis:7` through a docker.io mirror.
    pub hub: Image,
    /// (b) `multi/oci-index:v1`
    pub oci_index: Image,
    /// (c) `multi/docker-list:v1`
    pub docker_list: Image,
    /// (d) `shared/one:1` and `shared/two:1`
    pub shared: Vec<Image>,
    /// (e) `digest/only@sha256:…`
    pub digest_only: Image,
    /// (f) `big/layer:1`, `None` unless asked for.
    pub big: Option<Image>,
    /// (g) `odd/json:v1`
    pub non_canonical: Image,
}

impl AllFixtures {
    pub fn push(reg: &Registry, with_big: bool) -> Self {
        let fx = Fixtures::new(reg);
        AllFixtures {
            single: fx.image(
                "app/single",
                Some("1.0"),
                &ImageOpts::oci(1).layers(3, 16 * 1024),
            ),
            hub: fx.image("library/redis", Some("7"), &ImageOpts::oci(2)),
            oci_index: fx.oci_index("multi/oci-index", "v1", 3),
            docker_list: fx.docker_list("multi/docker-list", "v1", 4),
            shared: fx.shared_base(&[("shared/one", "1"), ("shared/two", "1")], 5),
            digest_only: fx.digest_only("digest/only", 6),
            big: with_big.then(|| fx.big_layer_image("big/layer", "1", BIG_LAYER_SIZE, 7)),
            non_canonical: fx.non_canonical("odd/json", "v1", 8),
        }
    }

    /// Every image, in a fixed order.
    pub fn all(&self) -> Vec<&Image> {
        let mut v = vec![&self.single, &self.hub, &self.oci_index, &self.docker_list];
        v.extend(self.shared.iter());
        v.push(&self.digest_only);
        if let Some(b) = &self.big {
            v.push(b);
        }
        v.push(&self.non_canonical);
        v
    }

    /// The normalised source reference of an image as the bundle should record it: the hub
    /// image as `docker.io/library/redis:7`, the others under the source registry's host.
    pub fn source_ref(&self, img: &Image, host: &str) -> String {
        if img.repo == self.hub.repo {
            format!("docker.io/{}:{}", img.repo, img.tag.as_deref().unwrap())
        } else {
            img.reference(host)
        }
    }

    /// The spec reference written in airgap.yaml for an image.
    pub fn spec_ref(&self, img: &Image, host: &str) -> String {
        if img.repo == self.hub.repo {
            "redis:7".to_string()
        } else {
            img.reference(host)
        }
    }
}
