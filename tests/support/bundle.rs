//! Reading a `bundle.tar.zst` (an OCI image layout in a zstd tar) independently of airgap,
//! checking its shape, and damaging copies of it for the error tests.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::Path;

use sha2::{Digest as _, Sha256};

/// Entries up to this size keep their bytes in memory.
const KEEP_BYTES: u64 = 4 << 20;

#[derive(Debug, Clone)]
pub struct BundleEntry {
    /// The path in the tar, without a leading `./`.
    pub path: String,
    pub entry_type: tar::EntryType,
    pub size: u64,
    /// `sha256:<hex>` of the entry's content.
    pub sha256: String,
    /// The content, for entries of at most 4 MiB.
    pub data: Option<Vec<u8>>,
}

/// What a bundle contains, read by streaming through it once.
#[derive(Debug, Clone)]
pub struct Bundle {
    pub entries: Vec<BundleEntry>,
}

fn clean(path: &str) -> String {
    path.trim_start_matches("./").to_string()
}

impl Bundle {
    /// Reads every entry; panics when the file is not a zstd tar.
    pub fn open(path: &Path) -> Bundle {
        let f = std::fs::File::open(path)
            .unwrap_or_else(|e| panic!("open bundle {}: {e}", path.display()));
        let dec = zstd::stream::read::Decoder::new(f).expect("zstd decoder");
        let mut ar = tar::Archive::new(dec);
        let mut entries = Vec::new();
        for e in ar
            .entries()
            .unwrap_or_else(|e| panic!("{} is not a tar: {e}", path.display()))
        {
            let mut e = e.unwrap_or_else(|e| panic!("bad tar entry in {}: {e}", path.display()));
            let p = clean(&e.path().unwrap().to_string_lossy());
            let size = e.header().size().unwrap();
            let entry_type = e.header().entry_type();
            let mut h = Sha256::new();
            let mut data = (size <= KEEP_BYTES).then(Vec::new);
            let mut buf = vec![0u8; 1 << 20];
            let mut n_total = 0u64;
            loop {
                let n = e
                    .read(&mut buf)
                    .unwrap_or_else(|err| panic!("read {p} in {}: {err}", path.display()));
                if n == 0 {
                    break;
                }
                h.update(&buf[..n]);
                if let Some(d) = data.as_mut() {
                    d.extend_from_slice(&buf[..n]);
                }
                n_total += n as u64;
            }
            assert_eq!(n_total, size, "{p}: short entry");
            entries.push(BundleEntry {
                path: p,
                entry_type,
                size,
                sha256: format!("sha256:{}", hex::encode(h.finalize())),
                data,
            });
        }
        Bundle { entries }
    }

    pub fn get(&self, path: &str) -> Option<&BundleEntry> {
        self.entries.iter().find(|e| e.path == path)
    }

    /// The content of a (small) entry.
    pub fn bytes(&self, path: &str) -> &[u8] {
        self.get(path)
            .unwrap_or_else(|| panic!("the bundle has no entry {path}"))
            .data
            .as_deref()
            .unwrap_or_else(|| panic!("{path} is too big to be kept in memory"))
    }

    pub fn json(&self, path: &str) -> serde_json::Value {
        serde_json::from_slice(self.bytes(path))
            .unwrap_or_else(|e| panic!("{path} in the bundle is not JSON: {e}"))
    }

    /// The layout's `index.json`.
    pub fn index(&self) -> serde_json::Value {
        self.json("index.json")
    }

    pub fn blob(&self, digest: &str) -> Option<&BundleEntry> {
        self.get(&format!("blobs/sha256/{}", super::digest_hex(digest)))
    }

    pub fn blob_bytes(&self, digest: &str) -> &[u8] {
        self.bytes(&format!("blobs/sha256/{}", super::digest_hex(digest)))
    }

    /// Every `sha256:<hex>` stored under `blobs/sha256/`.
    pub fn blob_digests(&self) -> BTreeSet<String> {
        self.entries
            .iter()
            .filter(|e| e.entry_type.is_file())
            .filter_map(|e| e.path.strip_prefix("blobs/sha256/"))
            .map(|h| format!("sha256:{h}"))
            .collect()
    }

    /// The sum of the sizes of the blobs.
    pub fn blobs_size(&self) -> u64 {
        self.entries
            .iter()
            .filter(|e| e.entry_type.is_file() && e.path.starts_with("blobs/sha256/"))
            .map(|e| e.size)
            .sum()
    }

    /// `org.opencontainers.image.ref.name` → the descriptor of index.json.
    pub fn refs(&self) -> BTreeMap<String, serde_json::Value> {
        let idx = self.index();
        let mut m = BTreeMap::new();
        for d in idx["manifests"]
            .as_array()
            .expect("index.json has manifests")
        {
            let name = d["annotations"]["org.opencontainers.image.ref.name"]
                .as_str()
                .unwrap_or_else(|| panic!("index.json entry without a ref.name: {d}"))
                .to_string();
            assert!(
                m.insert(name.clone(), d.clone()).is_none(),
                "index.json names {name} twice"
            );
        }
        m
    }

    /// The digest index.json records for `reference`.
    pub fn ref_digest(&self, reference: &str) -> String {
        let refs = self.refs();
        let d = refs.get(reference).unwrap_or_else(|| {
            panic!(
                "index.json has no {reference}; it has {:?}",
                refs.keys().collect::<Vec<_>>()
            )
        });
        d["digest"].as_str().unwrap().to_string()
    }

    /// Checks the layout's shape: `oci-layout`, `index.json`, `airgap.json`, blobs named by
    /// their sha256, nothing else but `manifests/` and directories, no duplicate entry,
    /// every index.json descriptor present with its size.
    #[track_caller]
    pub fn assert_well_formed(&self) {
        let mut seen = BTreeSet::new();
        for e in &self.entries {
            assert!(seen.insert(e.path.clone()), "duplicate entry {}", e.path);
            if e.entry_type.is_dir() {
                continue;
            }
            assert!(
                e.entry_type.is_file(),
                "{} is a {:?}, not a regular file",
                e.path,
                e.entry_type
            );
            let p = e.path.as_str();
            if let Some(hex) = p.strip_prefix("blobs/sha256/") {
                assert_eq!(
                    e.sha256,
                    format!("sha256:{hex}"),
                    "blob {p} does not hash to its name"
                );
            } else {
                assert!(
                    matches!(p, "oci-layout" | "index.json" | "airgap.json")
                        || p.starts_with("manifests/"),
                    "unexpected entry {p}"
                );
            }
        }
        let layout = self.json("oci-layout");
        assert_eq!(
            layout["imageLayoutVersion"], "1.0.0",
            "oci-layout: {layout}"
        );
        self.json("airgap.json");
        let idx = self.index();
        assert_eq!(idx["schemaVersion"], 2, "index.json: {idx}");
        for d in idx["manifests"].as_array().unwrap() {
            let digest = d["digest"].as_str().unwrap();
            let blob = self
                .blob(digest)
                .unwrap_or_else(|| panic!("index.json names {digest}, not in the bundle"));
            assert_eq!(Some(blob.size), d["size"].as_u64(), "size of {digest}");
        }
    }
}

// ---------------------------------------------------------------------------------------
// Damaging copies of a bundle

/// One entry of a bundle held in memory for rewriting.
pub struct RawEntry {
    pub header: tar::Header,
    pub path: String,
    pub data: Vec<u8>,
}

/// Every entry of a (small) bundle, in memory.
fn read_entries(src: &Path) -> Vec<RawEntry> {
    let f = std::fs::File::open(src).unwrap();
    let mut ar = tar::Archive::new(zstd::stream::read::Decoder::new(f).unwrap());
    let mut entries = Vec::new();
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let path = clean(&e.path().unwrap().to_string_lossy());
        let header = e.header().clone();
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        entries.push(RawEntry { header, path, data });
    }
    entries
}

/// Reads a (small) bundle into memory, lets `edit` change the entries, and writes the result
/// as a new zstd tar at `dst`.
pub fn rewrite_bundle(src: &Path, dst: &Path, edit: impl FnOnce(&mut Vec<RawEntry>)) {
    let mut entries = read_entries(src);
    edit(&mut entries);
    let out = std::fs::File::create(dst).unwrap();
    let enc = zstd::stream::write::Encoder::new(out, 3).unwrap();
    let mut b = tar::Builder::new(enc);
    for mut e in entries {
        e.header.set_size(e.data.len() as u64);
        e.header.set_cksum();
        b.append_data(&mut e.header, &e.path, &e.data[..]).unwrap();
    }
    b.into_inner().unwrap().finish().unwrap();
}

/// A copy of `src` with one byte flipped in the middle of blob `digest`.
pub fn flip_byte_in_blob(src: &Path, dst: &Path, digest: &str) {
    let want = format!("blobs/sha256/{}", super::digest_hex(digest));
    rewrite_bundle(src, dst, |entries| {
        let e = entries
            .iter_mut()
            .find(|e| e.path == want)
            .unwrap_or_else(|| panic!("the bundle has no {want}"));
        let i = e.data.len() / 2;
        e.data[i] ^= 0x01;
    });
}

/// A copy of `src` without blob `digest`.
pub fn remove_blob(src: &Path, dst: &Path, digest: &str) {
    let want = format!("blobs/sha256/{}", super::digest_hex(digest));
    rewrite_bundle(src, dst, |entries| {
        let before = entries.len();
        entries.retain(|e| e.path != want);
        assert_eq!(entries.len() + 1, before, "the bundle has no {want}");
    });
}

/// A copy of `src` with one more file entry.
pub fn add_entry(src: &Path, dst: &Path, path: &str, data: &[u8]) {
    let (path, data) = (path.to_string(), data.to_vec());
    rewrite_bundle(src, dst, |entries| {
        let mut header = tar::Header::new_ustar();
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        entries.push(RawEntry { header, path, data });
    });
}

/// A copy of the first `len` bytes of `src`.
pub fn truncate_copy(src: &Path, dst: &Path, len: u64) {
    let mut data = Vec::new();
    std::fs::File::open(src)
        .unwrap()
        .take(len)
        .read_to_end(&mut data)
        .unwrap();
    std::fs::write(dst, data).unwrap();
}

/// `zstd -d -o DST SRC`: the bundle as a plain tar, with the standard tool.
pub fn zstd_decompress(src: &Path, dst: &Path) {
    let out = std::process::Command::new("zstd")
        .args(["-d", "-q", "-f", "-o"])
        .arg(dst)
        .arg(src)
        .output()
        .expect("run zstd (scripts/test.sh installs it)");
    assert!(
        out.status.success(),
        "zstd -d {} failed: {}",
        src.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Packs an OCI layout directory (e.g. made by `skopeo copy … oci:DIR`) into a tar.zst,
/// the way a bundle is laid out; for testing the harness's bundle readers.
pub fn tar_zst_dir(dir: &Path, dst: &Path) {
    let out = std::fs::File::create(dst).unwrap();
    let enc = zstd::stream::write::Encoder::new(out, 3).unwrap();
    let mut b = tar::Builder::new(enc);
    b.follow_symlinks(false);
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    for n in names {
        let p = dir.join(&n);
        if p.is_dir() {
            b.append_dir_all(&n, &p).unwrap();
        } else {
            b.append_path_with_name(&p, &n).unwrap();
        }
    }
    b.into_inner().unwrap().finish().unwrap();
}

/// Like [`rewrite_bundle`], but writes the result with airgap's own writer, so it keeps the
/// seekable layout (frames, entry index, seek table) and valid zstd checksums: only what
/// `edit` changed is wrong. Blob digests are not checked while writing.
pub fn rewrite_bundle_seekable(src: &Path, dst: &Path, edit: impl FnOnce(&mut Vec<RawEntry>)) {
    let mut entries = read_entries(src);
    edit(&mut entries);
    let out = std::fs::File::create(dst).unwrap();
    let mut w = airgap::bundle::BundleWriter::new(out, 3, 2).unwrap();
    for e in &entries {
        match e.path.strip_prefix("blobs/sha256/") {
            Some(hex) => {
                let d = airgap::digest::Digest::parse(&format!("sha256:{hex}")).unwrap();
                w.add_blob(&d, e.data.len() as u64, &e.data[..], false)
                    .unwrap();
            }
            None => w.add_file(&e.path, &e.data).unwrap(),
        }
    }
    w.finish().unwrap();
}
