//! The bundle reader and verifier against bad input: truncation, flipped bytes, hostile tar
//! entries, lying size claims, and the `BlobContent` contract with visitors.
//!
//! Valid bundles are made with `BundleWriter`; malformed archives the writer refuses to make
//! are built with `tar` and `zstd` directly (`RawTar`), writing header bytes by hand where the
//! `tar` crate would refuse the path.

use std::io::{Read, Write};

use super::*;
use crate::digest::Digest;
use crate::manifest::{MAX_MANIFEST_SIZE, OCI_INDEX, OCI_MANIFEST};
use crate::platform::Platform;
use crate::reference::Reference;

const REFERENCE: &str = "docker.io/library/app:1";
const K8S_PATH: &str = "k8s/app.yaml";
const CONFIG_TYPE: &str = "application/vnd.oci.image.config.v1+json";
const LAYER_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const HUGE: u64 = 100 << 30;
/// Layer sizes: large enough that the bundle spans several zstd blocks (128 KiB each), so
/// truncation points land in different entries.
const L0: usize = 640 * 1024;
const L1: usize = 384 * 1024;

// ---------------------------------------------------------------------------------------------
// Fixture: one OCI image (manifest, config, two layers), index.json and one Kubernetes file.
// ---------------------------------------------------------------------------------------------

/// Incompressible bytes, so offsets in the compressed file land where we expect.
pub(super) fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

pub(super) fn descriptor(media_type: &str, bytes: &[u8]) -> serde_json::Value {
    serde_json::json!({
        "mediaType": media_type,
        "digest": Digest::of(bytes).to_string(),
        "size": bytes.len(),
    })
}

pub(super) fn manifest_json(config: serde_json::Value, layers: Vec<serde_json::Value>) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config,
        "layers": layers,
    }))
    .unwrap()
}

#[derive(Clone)]
pub(super) struct Fixture {
    pub(super) config: Vec<u8>,
    pub(super) layers: Vec<Vec<u8>>,
    pub(super) manifest: Vec<u8>,
    pub(super) k8s: Vec<u8>,
    pub(super) metadata: Metadata,
    pub(super) index: Vec<u8>,
}

impl Fixture {
    pub(super) fn new() -> Self {
        let config =
            br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#
                .to_vec();
        let layers = vec![noise(1, L0), noise(2, L1)];
        let manifest = manifest_json(
            descriptor(CONFIG_TYPE, &config),
            layers.iter().map(|l| descriptor(LAYER_TYPE, l)).collect(),
        );
        Self::assemble(config, layers, manifest)
    }

    /// Derives airgap.json and index.json from the blobs.
    pub(super) fn assemble(config: Vec<u8>, layers: Vec<Vec<u8>>, manifest: Vec<u8>) -> Self {
        let k8s = b"apiVersion: v1\nkind: Pod\nmetadata:\n  name: app\nspec:\n  containers:\n  - name: app\n    image: app:1\n".to_vec();
        let platform = Platform::parse("linux/amd64").unwrap();
        let mut blobs = vec![BlobRecord {
            digest: Digest::of(&manifest),
            size: manifest.len() as u64,
            kind: BlobKind::Manifest,
            media_type: OCI_MANIFEST.into(),
        }];
        blobs.push(BlobRecord {
            digest: Digest::of(&config),
            size: config.len() as u64,
            kind: BlobKind::Config,
            media_type: CONFIG_TYPE.into(),
        });
        for l in &layers {
            blobs.push(BlobRecord {
                digest: Digest::of(l),
                size: l.len() as u64,
                kind: BlobKind::Layer,
                media_type: LAYER_TYPE.into(),
            });
        }
        let total: u64 = blobs.iter().map(|b| b.size).sum();
        let metadata = Metadata {
            format_version: FORMAT_VERSION,
            tool: "airgap test".into(),
            spec: Some("airgap.yaml".into()),
            platforms: vec![platform.clone()],
            images: vec![ImageRecord {
                reference: Reference::parse(REFERENCE).unwrap(),
                source: "public".into(),
                digest: Digest::of(&manifest),
                source_digest: None,
                media_type: OCI_MANIFEST.into(),
                size: manifest.len() as u64,
                platforms: vec![platform],
                total_size: total,
                referrers: Vec::new(),
                artifact_type: None,
                chart: None,
            }],
            blobs,
            manifests: vec![FileRecord {
                path: K8S_PATH.into(),
                size: k8s.len() as u64,
                digest: Digest::of(&k8s),
            }],
            total_size: total,
            image_rules: Default::default(),
            base: None,
        };
        let mut top = descriptor(OCI_MANIFEST, &manifest);
        top["annotations"] = serde_json::json!({ REF_NAME_ANNOTATION: REFERENCE });
        let index = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [top],
        }))
        .unwrap();
        Fixture {
            config,
            layers,
            manifest,
            k8s,
            metadata,
            index,
        }
    }

    fn metadata_json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(&self.metadata).unwrap()
    }

    fn manifest_digest(&self) -> Digest {
        Digest::of(&self.manifest)
    }

    fn layer_digest(&self, i: usize) -> Digest {
        Digest::of(&self.layers[i])
    }

    /// Every entry of a valid bundle, in stream order.
    pub(super) fn entries(&self) -> Vec<(String, Vec<u8>)> {
        let mut e = vec![
            (METADATA_NAME.to_string(), self.metadata_json()),
            (LAYOUT_NAME.to_string(), OCI_LAYOUT_CONTENT.to_vec()),
            (INDEX_NAME.to_string(), self.index.clone()),
            (format!("{MANIFESTS_DIR}{K8S_PATH}"), self.k8s.clone()),
        ];
        for blob in [&self.manifest, &self.config]
            .into_iter()
            .chain(self.layers.iter())
        {
            e.push((blob_entry_name(&Digest::of(blob)), blob.clone()));
        }
        e
    }

    /// A valid bundle, as `BundleWriter` writes it.
    pub(super) fn bundle(&self) -> Vec<u8> {
        write_bundle(&self.entries())
    }

    /// The uncompressed tar of a valid bundle.
    pub(super) fn tar(&self) -> Vec<u8> {
        decompress(&self.bundle())
    }
}

/// Writes entries with `BundleWriter`: names under `blobs/` go through `add_blob`.
pub(super) fn write_bundle(entries: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut w = BundleWriter::new(Vec::new(), 3, 0).unwrap();
    for (name, data) in entries {
        match name.strip_prefix(BLOBS_DIR) {
            Some(hex) => {
                let d = Digest::parse(&format!("sha256:{hex}")).unwrap();
                w.add_blob(&d, data.len() as u64, &data[..], true).unwrap();
            }
            None => w.add_file(name, data).unwrap(),
        }
    }
    w.finish().unwrap()
}

// ---------------------------------------------------------------------------------------------
// Raw builder: tar headers written byte by byte, so nothing is refused or normalised.
// ---------------------------------------------------------------------------------------------

fn raw_header(name: &[u8], kind: tar::EntryType, size: u64, link: &[u8]) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    {
        let old = h.as_old_mut();
        assert!(name.len() <= old.name.len() && link.len() <= old.linkname.len());
        old.name[..name.len()].copy_from_slice(name);
        old.linkname[..link.len()].copy_from_slice(link);
    }
    h.set_size(size);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_entry_type(kind);
    h.set_cksum();
    h
}

struct RawTar(tar::Builder<Vec<u8>>);

impl RawTar {
    fn new() -> Self {
        RawTar(tar::Builder::new(Vec::new()))
    }

    /// A header claiming `size` bytes followed by `data` (which may be shorter).
    fn entry(
        &mut self,
        name: &str,
        kind: tar::EntryType,
        size: u64,
        data: &[u8],
        link: &str,
    ) -> &mut Self {
        let h = raw_header(name.as_bytes(), kind, size, link.as_bytes());
        self.0.append(&h, data).unwrap();
        self
    }

    fn file(&mut self, name: &str, data: &[u8]) -> &mut Self {
        self.entry(name, tar::EntryType::Regular, data.len() as u64, data, "")
    }

    fn files(&mut self, entries: &[(String, Vec<u8>)]) -> &mut Self {
        for (n, d) in entries {
            self.file(n, d);
        }
        self
    }

    /// A PAX extended header applying `records` to the next entry.
    fn pax(&mut self, records: &[(&str, &str)]) -> &mut Self {
        let mut data = Vec::new();
        for (k, v) in records {
            let body = format!(" {k}={v}\n");
            let mut len = body.len() + 1;
            while format!("{len}{body}").len() != len {
                len += 1;
            }
            data.extend_from_slice(format!("{len}{body}").as_bytes());
        }
        self.entry(
            "PaxHeaders/x",
            tar::EntryType::XHeader,
            data.len() as u64,
            &data,
            "",
        )
    }

    /// The tar, with its end-of-archive blocks.
    fn tar(&mut self) -> Vec<u8> {
        std::mem::replace(&mut self.0, tar::Builder::new(Vec::new()))
            .into_inner()
            .unwrap()
    }

    fn bundle(&mut self) -> Vec<u8> {
        compress(&self.tar())
    }
}

pub(super) fn raw_bundle(entries: &[(String, Vec<u8>)]) -> Vec<u8> {
    RawTar::new().files(entries).bundle()
}

/// One zstd frame with a content checksum, like the writer's.
pub(super) fn compress(tar: &[u8]) -> Vec<u8> {
    let mut enc = zstd::stream::Encoder::new(Vec::new(), 3).unwrap();
    enc.include_checksum(true).unwrap();
    enc.write_all(tar).unwrap();
    enc.finish().unwrap()
}

pub(super) fn decompress(bundle: &[u8]) -> Vec<u8> {
    zstd::decode_all(bundle).unwrap()
}

/// Where an entry's header and data sit in an uncompressed tar.
struct Span {
    header: usize,
    data: usize,
    size: usize,
}

fn span(tar: &[u8], name: &str) -> Span {
    let mut a = tar::Archive::new(tar);
    for e in a.entries().unwrap() {
        let e = e.unwrap();
        if &*e.path_bytes() == name.as_bytes() {
            return Span {
                header: e.raw_header_position() as usize,
                data: e.raw_file_position() as usize,
                size: e.size() as usize,
            };
        }
    }
    panic!("no entry {name} in the tar")
}

/// Replaces byte `at` of the first occurrence of `needle` in entry `name`'s data with `new`
/// (one byte changed, header untouched), and recompresses.
fn replace_byte(tar: &[u8], name: &str, needle: &[u8], at: usize, new: u8) -> Vec<u8> {
    let s = span(tar, name);
    let data = &tar[s.data..s.data + s.size];
    let pos = data
        .windows(needle.len())
        .position(|w| w == needle)
        .unwrap_or_else(|| panic!("{:?} not in {name}", String::from_utf8_lossy(needle)));
    let mut t = tar.to_vec();
    assert_ne!(t[s.data + pos + at], new);
    t[s.data + pos + at] = new;
    compress(&t)
}

/// Replaces the first byte of the first occurrence of `needle` in entry `name`'s data.
fn flip(tar: &[u8], name: &str, needle: &[u8], new: u8) -> Vec<u8> {
    replace_byte(tar, name, needle, 0, new)
}

/// XORs one byte at `offset` within entry `name`'s data, and recompresses.
fn flip_at(tar: &[u8], name: &str, offset: usize) -> Vec<u8> {
    let s = span(tar, name);
    assert!(offset < s.size);
    let mut t = tar.to_vec();
    t[s.data + offset] ^= 0x01;
    compress(&t)
}

/// Asserts the error's message names `needle` (an entry, a digest, a version).
fn names(err: &BundleError, needle: impl AsRef<str>) {
    let (msg, needle) = (err.to_string(), needle.as_ref());
    assert!(
        msg.contains(needle),
        "message {msg:?} does not name {needle:?}"
    );
}

/// Asserts `res` is an error matching the pattern whose message names every needle.
macro_rules! assert_err {
    ($res:expr, $pat:pat $(if $guard:expr)? $(, $needle:expr)* $(,)?) => {{
        let err = match $res {
            Ok(v) => panic!("expected an error, got Ok({v:?})"),
            Err(e) => e,
        };
        assert!(matches!(&err, $pat $(if $guard)?), "wrong error: {err:?}");
        $( names(&err, $needle); )*
        err
    }};
}

// ---------------------------------------------------------------------------------------------
// Valid bundles, inspect
// ---------------------------------------------------------------------------------------------

#[test]
fn valid_bundle_verifies_with_counts() {
    let fx = Fixture::new();
    let r = verify(&fx.bundle()[..]).unwrap();
    assert_eq!(r.images, 1);
    assert_eq!(r.blobs, 4);
    assert_eq!(r.k8s_files, 1);
    assert_eq!(r.bytes, fx.metadata.total_size);
    let expected = (fx.manifest.len() + fx.config.len() + L0 + L1) as u64;
    assert_eq!(r.bytes, expected);
    // The raw builder makes the same kind of archive: it is a fair base for malformed ones.
    verify(&raw_bundle(&fx.entries())[..]).unwrap();
}

#[test]
fn inspect_returns_the_metadata() {
    let fx = Fixture::new();
    let i = inspect(&fx.bundle()[..]).unwrap();
    assert_eq!(i.metadata, fx.metadata);
    assert_eq!(i.k8s_files, vec![K8S_PATH.to_string()]);
}

#[test]
fn inspect_reads_only_the_head() {
    let fx = Fixture::new();
    let tar = fx.tar();
    // Cut the uncompressed tar right before the first blob's header: a valid zstd stream of
    // a tar that holds the head and nothing else.
    let cut = span(&tar, &blob_entry_name(&fx.manifest_digest())).header;
    let head_only = compress(&tar[..cut]);
    let i = inspect(&head_only[..]).unwrap();
    assert_eq!(i.metadata, fx.metadata);
    assert_eq!(i.k8s_files, vec![K8S_PATH.to_string()]);
    // verify reads on and notices every blob is gone.
    assert_err!(
        verify(&head_only[..]),
        BundleError::MissingBlob { digest } if *digest == fx.manifest_digest(),
        fx.manifest_digest().to_string()
    );

    // A corrupted layer is past the head: inspect does not see it, verify does.
    let bad = flip_at(&tar, &blob_entry_name(&fx.layer_digest(1)), 100);
    assert_eq!(inspect(&bad[..]).unwrap().metadata, fx.metadata);
    assert_err!(verify(&bad[..]), BundleError::DigestMismatch { .. });

    // Nor does inspect read to the (compressed) end: half the file is enough.
    let b = fx.bundle();
    let half = &b[..b.len() / 2];
    assert_eq!(inspect(half).unwrap().metadata, fx.metadata);
    assert!(verify(half).is_err());
}

#[test]
fn inspect_still_checks_the_head() {
    let fx = Fixture::new();
    let mut e = fx.entries();
    e[0].1 = br#"{"formatVersion":99}"#.to_vec();
    assert_err!(
        inspect(&raw_bundle(&e)[..]),
        BundleError::FutureVersion { found: 99 }
    );
    let mut e = fx.entries();
    e[3].1.push(b'\n');
    assert_err!(
        inspect(&raw_bundle(&e)[..]),
        BundleError::DigestMismatch { digest, .. } if *digest == fx.metadata.manifests[0].digest
    );
}

// ---------------------------------------------------------------------------------------------
// Truncation
// ---------------------------------------------------------------------------------------------

/// How many bytes of tar a (possibly truncated) compressed prefix still decodes to.
fn decodable(prefix: &[u8]) -> usize {
    let mut d = zstd::stream::Decoder::new(prefix).unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0;
    while let Ok(n) = d.read(&mut buf) {
        if n == 0 {
            break;
        }
        total += n;
    }
    total
}

#[test]
fn truncated_bundle_never_verifies() {
    let fx = Fixture::new();
    let b = fx.bundle();
    let tar = fx.tar();
    let n = b.len();
    let names: Vec<String> = fx.entries().into_iter().map(|(n, _)| n).collect();
    let spans: Vec<(&str, Span)> = names.iter().map(|n| (n.as_str(), span(&tar, n))).collect();
    let tar_end = spans.last().map(|(_, s)| s.data + s.size).unwrap();
    let mut in_blob = 0;
    for cut in [
        1,
        4,
        20,
        n / 10,
        n / 4,
        n / 2,
        n * 3 / 4,
        n * 9 / 10,
        n - 8,
        n - 4,
        n - 1,
    ] {
        let err = match verify(&b[..cut]) {
            Ok(r) => panic!("bundle cut at {cut} of {n} bytes verified: {r:?}"),
            Err(e) => e,
        };
        // zstd hands out whole blocks: the reader sees the tar up to `pos`, then an error.
        let pos = decodable(&b[..cut]);
        let within = spans
            .iter()
            .find(|(_, s)| (s.data..s.data + s.size).contains(&pos));
        match (&err, within) {
            // Not even the first header: nothing says this was a bundle.
            (BundleError::NotABundle(m), _) if cut < 4 => {
                assert!(m.contains("not zstd"), "cut at {cut}: {m}")
            }
            // The magic is there, so a cut before the first header is truncation.
            (BundleError::Corrupt { entry, reason }, None) if pos < 512 => {
                assert_eq!(entry, "the first entry", "cut at {cut}");
                assert!(reason.contains("truncated"), "cut at {cut}: {reason}")
            }
            // Inside an entry's data: that entry is named.
            (BundleError::Corrupt { entry, reason }, Some((name, _))) => {
                assert_eq!(entry, name, "cut at {cut} (tar offset {pos})");
                assert!(reason.contains("incomplete frame"), "{reason}");
                if let Some(hex) = name.strip_prefix(BLOBS_DIR) {
                    assert!(err.to_string().contains(hex));
                    in_blob += 1;
                }
            }
            // The whole tar decodes but the frame's epilogue (its checksum) is cut.
            (BundleError::Corrupt { entry, .. }, None) if pos >= tar_end => {
                assert_eq!(entry, "the end of the bundle", "cut at {cut}")
            }
            // In a header or padding between entries.
            (BundleError::Corrupt { .. }, None) => {}
            (e, _) => panic!("cut at {cut} of {n} (tar offset {pos}): unexpected {e:?}"),
        }
    }
    // The cuts exercised what they meant to: blobs cut short, and the end.
    assert!(in_blob >= 4, "only {in_blob} cuts landed in a blob");
    assert!(decodable(&b[..n - 1]) >= tar_end);
}

#[test]
fn truncated_tar_in_a_valid_zstd_stream_never_verifies() {
    // The tar itself cut short but recompressed: zstd sees a whole frame, so only the tar
    // layer and the blob checks can tell.
    let fx = Fixture::new();
    let tar = fx.tar();
    let layer0 = blob_entry_name(&fx.layer_digest(0));
    let layer1 = blob_entry_name(&fx.layer_digest(1));
    let s0 = span(&tar, &layer0);
    let s1 = span(&tar, &layer1);

    // In the middle of a layer: its content ends early.
    let mid = compress(&tar[..s0.data + s0.size / 2]);
    assert_err!(
        verify(&mid[..]),
        BundleError::SizeMismatch { digest, expected, actual }
            if *digest == fx.layer_digest(0) && *expected == s0.size as u64 && *actual == (s0.size / 2) as u64,
        fx.layer_digest(0).to_string()
    );
    // Between two blobs (a clean tar boundary): the rest is missing.
    let boundary = compress(&tar[..s1.header]);
    assert_err!(
        verify(&boundary[..]),
        BundleError::MissingBlob { digest } if *digest == fx.layer_digest(1),
        fx.layer_digest(1).to_string()
    );
    // Inside a header.
    let in_header = compress(&tar[..s1.header + 100]);
    assert_err!(verify(&in_header[..]), BundleError::Corrupt { .. });
}

// ---------------------------------------------------------------------------------------------
// Flipped bytes (in the uncompressed tar, recompressed, so zstd's checksum does not mask them)
// ---------------------------------------------------------------------------------------------

#[test]
fn flipped_layer_byte_is_a_digest_mismatch() {
    let fx = Fixture::new();
    let tar = fx.tar();
    for (i, offset) in [(0, 0), (0, L0 / 2 + 7), (1, L1 - 1)] {
        let bad = flip_at(&tar, &blob_entry_name(&fx.layer_digest(i)), offset);
        assert_err!(
            verify(&bad[..]),
            BundleError::DigestMismatch { digest, actual }
                if *digest == fx.layer_digest(i) && *actual != fx.layer_digest(i),
            fx.layer_digest(i).to_string()
        );
    }
}

#[test]
fn flipped_manifest_and_config_bytes_are_digest_mismatches() {
    let fx = Fixture::new();
    let tar = fx.tar();
    let name = blob_entry_name(&fx.manifest_digest());
    // A change that keeps the JSON valid (a layer digest now names another blob) and one
    // that breaks it: either way the stored bytes are not the manifest.
    let layer_hex = fx.layer_digest(0).hex()[..8].to_string();
    for (needle, new) in [
        (layer_hex.as_bytes(), b'x'),
        (&b"schemaVersion"[..], b'S'),
        (&b"}"[..], b']'),
    ] {
        let bad = flip(&tar, &name, needle, new);
        assert_err!(
            verify(&bad[..]),
            BundleError::DigestMismatch { digest, .. } if *digest == fx.manifest_digest(),
            fx.manifest_digest().to_string()
        );
    }
    let config = Digest::of(&fx.config);
    let bad = flip(&tar, &blob_entry_name(&config), b"amd64", b'A');
    assert_err!(
        verify(&bad[..]),
        BundleError::DigestMismatch { digest, .. } if *digest == config,
        config.to_string()
    );
}

#[test]
fn flipped_index_json_byte_is_invalid() {
    let fx = Fixture::new();
    let tar = fx.tar();
    let digest_hex = fx.manifest_digest().hex()[..16].to_string();
    let new = if digest_hex.as_bytes()[0] == b'0' {
        b'1'
    } else {
        b'0'
    };
    // The image's digest, its reference annotation, and the JSON itself.
    for (needle, new) in [
        (digest_hex.as_bytes(), new),
        (&b"library/app:1"[..], b'L'),
        (&b"\"manifests\""[..], b'['),
        (&b"ref.name"[..], b'R'),
    ] {
        let bad = flip(&tar, INDEX_NAME, needle, new);
        assert_err!(
            verify(&bad[..]),
            BundleError::Invalid { entry, .. } if entry == INDEX_NAME,
            INDEX_NAME
        );
    }
}

#[test]
fn flipped_size_in_index_json_is_a_mismatch() {
    // index.json has no digest of its own: its descriptor's size must still agree with the
    // manifest it names, or OCI tools reading the layout refuse it.
    let fx = Fixture::new();
    let tar = fx.tar();
    let size = format!("\"size\":{}", fx.manifest.len());
    let last = size.len() - 1;
    let new = if size.as_bytes()[last] == b'0' {
        b'1'
    } else {
        b'0'
    };
    let bad = replace_byte(&tar, INDEX_NAME, size.as_bytes(), last, new);
    assert_err!(
        verify(&bad[..]),
        BundleError::SizeMismatch { digest, actual, .. }
            if *digest == fx.manifest_digest() && *actual == fx.manifest.len() as u64,
        fx.manifest_digest().to_string()
    );
}

#[test]
fn flipped_airgap_json_byte_is_caught() {
    let fx = Fixture::new();
    let tar = fx.tar();
    // Syntax: the JSON no longer parses.
    for (needle, new) in [(&b"{"[..], b'['), (&b"\"blobs\""[..], b'\'')] {
        let bad = flip(&tar, METADATA_NAME, needle, new);
        assert_err!(
            verify(&bad[..]),
            BundleError::Invalid { entry, .. } if entry == METADATA_NAME,
            METADATA_NAME
        );
    }
    // A digest no longer a digest.
    let hex = fx.layer_digest(0).hex()[..8].to_string();
    let bad = flip(&tar, METADATA_NAME, hex.as_bytes(), b'G');
    assert_err!(
        verify(&bad[..]),
        BundleError::Invalid { entry, .. } if entry == METADATA_NAME,
        METADATA_NAME
    );
    // The version: 1 → 9 is a future format, 1 → 0 does not exist.
    let bad = replace_byte(&tar, METADATA_NAME, b"\"formatVersion\": 1", 17, b'9');
    assert_err!(
        verify(&bad[..]),
        BundleError::FutureVersion { found: 9 },
        "9"
    );
    let bad = replace_byte(&tar, METADATA_NAME, b"\"formatVersion\": 1", 17, b'0');
    assert_err!(
        verify(&bad[..]),
        BundleError::Invalid { entry, .. } if entry == METADATA_NAME,
        METADATA_NAME
    );
    // A blob's size: the tar entry no longer matches its record.
    let bad = replace_byte(&tar, METADATA_NAME, b"\"size\": 655360", 8, b'7');
    assert_err!(
        verify(&bad[..]),
        BundleError::SizeMismatch { digest, expected, actual }
            if *digest == fx.layer_digest(0) && *expected == 755_360 && *actual == L0 as u64,
        fx.layer_digest(0).to_string()
    );
    // A Kubernetes file's digest: the file no longer matches it.
    let k8s = fx.metadata.manifests[0].digest.hex()[..8].to_string();
    let new = if k8s.as_bytes()[0] == b'a' {
        b'b'
    } else {
        b'a'
    };
    let bad = flip(&tar, METADATA_NAME, k8s.as_bytes(), new);
    assert_err!(
        verify(&bad[..]),
        BundleError::DigestMismatch { actual, .. } if *actual == fx.metadata.manifests[0].digest
    );
}

#[test]
fn flipped_kubernetes_file_byte_is_a_digest_mismatch() {
    let fx = Fixture::new();
    let bad = flip(&fx.tar(), "manifests/k8s/app.yaml", b"Pod", b'p');
    let d = &fx.metadata.manifests[0].digest;
    assert_err!(
        verify(&bad[..]),
        BundleError::DigestMismatch { digest, .. } if digest == d,
        d.to_string()
    );
}

#[test]
fn flipped_oci_layout_byte_is_invalid() {
    let fx = Fixture::new();
    let tar = fx.tar();
    for (needle, new) in [(&b"1.0.0"[..], b'2'), (&b"{"[..], b'[')] {
        let bad = flip(&tar, LAYOUT_NAME, needle, new);
        assert_err!(
            verify(&bad[..]),
            BundleError::Invalid { entry, .. } if entry == LAYOUT_NAME,
            LAYOUT_NAME
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Hostile entries
// ---------------------------------------------------------------------------------------------

/// The valid entries with `name` inserted after the head (before the first blob), and the
/// Kubernetes file recorded under `record_path` so only the path check can refuse it.
fn with_k8s_entry(fx: &Fixture, name: &str, record_path: Option<&str>) -> Vec<u8> {
    let mut fx = fx.clone();
    if let Some(p) = record_path {
        fx.metadata.manifests.push(FileRecord {
            path: p.into(),
            size: fx.k8s.len() as u64,
            digest: Digest::of(&fx.k8s),
        });
    }
    let mut e = fx.entries();
    e.insert(4, (name.to_string(), fx.k8s.clone()));
    raw_bundle(&e)
}

#[test]
fn dot_dot_paths_are_unexpected_entries() {
    let fx = Fixture::new();
    // Under manifests/, listed in airgap.json: without the path check it would be accepted.
    for (name, record) in [
        ("manifests/../../etc/cron.d/x", "../../etc/cron.d/x"),
        ("manifests/k8s/../../../x.yaml", "k8s/../../../x.yaml"),
        ("manifests/./k8s/x.yaml", "./k8s/x.yaml"),
        ("manifests/k8s//x.yaml", "k8s//x.yaml"),
        ("manifests/..", ".."),
    ] {
        assert_err!(
            verify(&with_k8s_entry(&fx, name, Some(record))[..]),
            BundleError::UnexpectedEntry { entry, .. } if entry == name,
            name
        );
    }
    // Elsewhere.
    for name in ["../airgap.json", "blobs/../index.json", "./index.json"] {
        assert_err!(
            verify(&with_k8s_entry(&fx, name, None)[..]),
            BundleError::UnexpectedEntry { entry, .. } if entry == name,
            name
        );
    }
    // A blob name that is not a digest.
    let name = format!("blobs/sha256/../../{}", &fx.layer_digest(0).hex()[..58]);
    assert_eq!(name.len(), "blobs/sha256/".len() + 64);
    assert_err!(
        verify(&with_k8s_entry(&fx, &name, None)[..]),
        BundleError::UnexpectedEntry { entry, .. } if *entry == name,
        &name
    );
}

#[test]
fn absolute_paths_are_unexpected_entries() {
    let fx = Fixture::new();
    for (name, record) in [
        ("manifests//etc/passwd", Some("/etc/passwd")),
        ("/etc/passwd", None),
        ("/airgap.json", None),
        ("/manifests/k8s/x.yaml", None),
    ] {
        assert_err!(
            verify(&with_k8s_entry(&fx, name, record)[..]),
            BundleError::UnexpectedEntry { entry, .. } if entry == name,
            name
        );
    }
}

#[test]
fn link_device_and_directory_entries_are_unexpected() {
    use tar::EntryType as T;
    let fx = Fixture::new();
    let k8s_name = format!("{MANIFESTS_DIR}{K8S_PATH}");
    let layer = blob_entry_name(&fx.layer_digest(0));
    // Each replaces a legitimate entry of the same name: only the type check can refuse it.
    for (name, kind, link, what) in [
        (
            k8s_name.as_str(),
            T::Symlink,
            "/etc/passwd",
            "symbolic link",
        ),
        (
            layer.as_str(),
            T::Symlink,
            "../../etc/passwd",
            "symbolic link",
        ),
        (layer.as_str(), T::Link, "airgap.json", "hard link"),
        (k8s_name.as_str(), T::Link, "/etc/shadow", "hard link"),
        (k8s_name.as_str(), T::Char, "", "character device"),
        (k8s_name.as_str(), T::Block, "", "block device"),
        (k8s_name.as_str(), T::Fifo, "", "FIFO"),
        ("manifests/k8s/", T::Directory, "", "directory"),
        (INDEX_NAME, T::Directory, "", "directory"),
    ] {
        let entries = fx.entries();
        let replaces = entries.iter().any(|(n, _)| n == name);
        let mut raw = RawTar::new();
        for (i, (n, d)) in entries.iter().enumerate() {
            if !replaces && i == 4 {
                // Not a replacement: insert after the head.
                raw.entry(name, kind, 0, &[], link);
            }
            if n == name {
                raw.entry(name, kind, 0, &[], link);
            } else {
                raw.file(n, d);
            }
        }
        let err = assert_err!(
            verify(&raw.bundle()[..]),
            BundleError::UnexpectedEntry { entry, .. } if entry == name,
            name
        );
        assert!(err.to_string().contains(what), "{err} does not say {what}");
    }
}

#[test]
fn pax_path_is_the_name_checked() {
    // A PAX header renames the next entry: the reader must judge the name it will use.
    let fx = Fixture::new();
    let mut raw = RawTar::new();
    for (i, (n, d)) in fx.entries().into_iter().enumerate() {
        if i == 3 {
            raw.pax(&[("path", "manifests/../../etc/passwd")]);
        }
        raw.file(&n, &d);
    }
    assert_err!(
        verify(&raw.bundle()[..]),
        BundleError::UnexpectedEntry { entry, .. } if entry == "manifests/../../etc/passwd",
        "manifests/../../etc/passwd"
    );
}

#[test]
fn duplicate_entries_are_refused() {
    let fx = Fixture::new();
    let entries = fx.entries();
    // Each entry appears twice in a row (the second copy is byte-identical, so only the
    // duplicate check can refuse it).
    for (i, (name, _)) in entries.iter().enumerate() {
        let mut e = entries.clone();
        e.insert(i + 1, e[i].clone());
        assert_err!(
            verify(&raw_bundle(&e)[..]),
            BundleError::Duplicate { entry } if entry == name,
            name
        );
    }
    // A blob repeated at the end, after all others.
    let mut e = entries.clone();
    e.push(e[5].clone());
    assert_err!(
        verify(&raw_bundle(&e)[..]),
        BundleError::Duplicate { entry } if *entry == e[5].0,
        &e[5].0
    );
    // airgap.json again, later.
    let mut e = entries.clone();
    e.insert(2, e[0].clone());
    assert_err!(
        verify(&raw_bundle(&e)[..]),
        BundleError::Duplicate { entry } if entry == METADATA_NAME,
        METADATA_NAME
    );
}

#[test]
fn blob_listed_twice_in_airgap_json_is_invalid() {
    let mut fx = Fixture::new();
    let again = fx.metadata.blobs[2].clone();
    fx.metadata.blobs.push(again);
    assert_err!(
        verify(&raw_bundle(&fx.entries())[..]),
        BundleError::Invalid { entry, reason } if entry == METADATA_NAME && reason.contains(fx.metadata.blobs[2].digest.as_str()),
        METADATA_NAME
    );
}

#[test]
fn blob_size_differing_from_its_record_is_a_size_mismatch() {
    let fx = Fixture::new();
    let layer = blob_entry_name(&fx.layer_digest(1));
    for delta in [1i64, -1, 512] {
        let mut e = fx.entries();
        let (_, data) = e.iter_mut().find(|(n, _)| *n == layer).unwrap();
        if delta > 0 {
            data.extend(std::iter::repeat_n(0u8, delta as usize));
        } else {
            data.truncate(data.len() - 1);
        }
        let actual = data.len() as u64;
        let b = raw_bundle(&e);
        assert_err!(
            verify(&b[..]),
            BundleError::SizeMismatch { digest, expected, actual: a }
                if *digest == fx.layer_digest(1) && *expected == L1 as u64 && *a == actual,
            fx.layer_digest(1).to_string()
        );
        // Checked from the header, even for a blob the visitor skips.
        let mut v = Probe::new(Mode::SkipAll);
        assert_err!(
            read_bundle(&b[..], &mut v),
            BundleError::SizeMismatch { digest, .. } if *digest == fx.layer_digest(1)
        );
    }
}

#[test]
fn pax_size_is_the_size_checked() {
    // A PAX `size` overrides the header's: the header can agree with airgap.json while the
    // entry really holds something else. The reader must judge the size tar will read.
    let fx = Fixture::new();
    let name = blob_entry_name(&fx.manifest_digest());
    let mut padded = fx.manifest.clone();
    padded.extend(std::iter::repeat_n(b' ', 1 << 20));
    let mut raw = RawTar::new();
    for (n, d) in fx.entries() {
        if n == name {
            raw.pax(&[("size", &padded.len().to_string())]);
            // The header claims the recorded size; the data is 1 MiB longer.
            raw.entry(
                &n,
                tar::EntryType::Regular,
                fx.manifest.len() as u64,
                &padded,
                "",
            );
        } else {
            raw.file(&n, &d);
        }
    }
    let b = raw.bundle();
    let mut v = Probe::new(Mode::ReadAll(fx.manifest_digest()));
    assert_err!(
        read_bundle(&b[..], &mut v),
        BundleError::SizeMismatch { digest, actual, .. }
            if *digest == fx.manifest_digest() && *actual == padded.len() as u64,
        fx.manifest_digest().to_string()
    );
    // Refused before any of it reached the visitor.
    assert!(v.seen.is_empty(), "visitor saw {:?}", v.seen);
    assert_eq!(v.bytes_read, 0);
}

#[test]
fn blob_missing_from_the_bundle_is_a_missing_blob() {
    let fx = Fixture::new();
    for i in [4usize, 5, 6, 7] {
        let mut e = fx.entries();
        let (name, _) = e.remove(i);
        let d = Digest::parse(&format!("sha256:{}", &name[BLOBS_DIR.len()..])).unwrap();
        assert_err!(
            verify(&raw_bundle(&e)[..]),
            BundleError::MissingBlob { digest } if *digest == d,
            d.to_string()
        );
    }
}

#[test]
fn blob_absent_everywhere_but_referenced_is_missing() {
    // The manifest names a third layer that is neither in the bundle nor in airgap.json.
    let fx = Fixture::new();
    let ghost = noise(3, 1000);
    let ghost_digest = Digest::of(&ghost);
    let mut layers: Vec<_> = fx
        .layers
        .iter()
        .map(|l| descriptor(LAYER_TYPE, l))
        .collect();
    layers.push(descriptor(LAYER_TYPE, &ghost));
    let manifest = manifest_json(descriptor(CONFIG_TYPE, &fx.config), layers);
    let fx = Fixture::assemble(fx.config, fx.layers, manifest);
    assert_err!(
        verify(&fx.bundle()[..]),
        BundleError::Missing { what } if what.contains(ghost_digest.as_str()),
        ghost_digest.to_string(),
        fx.manifest_digest().to_string()
    );

    // index.json naming a manifest that is not in the bundle either.
    let mut fx2 = Fixture::new();
    let other = Digest::of(b"another manifest");
    fx2.index = String::from_utf8(fx2.index)
        .unwrap()
        .replacen(
            "]",
            &format!(r#",{{"mediaType":"{OCI_MANIFEST}","digest":"{other}","size":16}}]"#),
            1,
        )
        .into_bytes();
    assert_err!(
        verify(&fx2.bundle()[..]),
        BundleError::Missing { what } if what.contains(other.as_str()),
        other.to_string()
    );
}

#[test]
fn descriptor_size_differing_from_the_record_is_a_size_mismatch() {
    // The manifest says layer 0 is one byte longer than the (consistent) record and entry.
    let fx = Fixture::new();
    let mut layers: Vec<_> = fx
        .layers
        .iter()
        .map(|l| descriptor(LAYER_TYPE, l))
        .collect();
    layers[0]["size"] = serde_json::json!(L0 + 1);
    let manifest = manifest_json(descriptor(CONFIG_TYPE, &fx.config), layers);
    let fx = Fixture::assemble(fx.config, fx.layers, manifest);
    assert_err!(
        verify(&fx.bundle()[..]),
        BundleError::SizeMismatch { digest, expected, actual }
            if *digest == fx.layer_digest(0) && *expected == L0 as u64 + 1 && *actual == L0 as u64,
        fx.layer_digest(0).to_string()
    );
}

#[test]
fn unlisted_blob_is_an_unexpected_entry() {
    let fx = Fixture::new();
    let extra = noise(4, 700);
    let name = blob_entry_name(&Digest::of(&extra));
    let mut e = fx.entries();
    e.insert(6, (name.clone(), extra));
    assert_err!(
        verify(&raw_bundle(&e)[..]),
        BundleError::UnexpectedEntry { entry, .. } if *entry == name,
        &name
    );
    // Not a digest at all.
    for name in [
        "blobs/sha256/0123".to_string(),
        format!("blobs/sha256/{}", fx.layer_digest(0).hex().to_uppercase()),
        format!("blobs/sha512/{}", fx.layer_digest(0).hex()),
    ] {
        let mut e = fx.entries();
        e.insert(6, (name.clone(), b"x".to_vec()));
        assert_err!(
            verify(&raw_bundle(&e)[..]),
            BundleError::UnexpectedEntry { entry, .. } if *entry == name,
            &name
        );
    }
}

#[test]
fn blob_no_manifest_refers_to_is_an_unexpected_entry() {
    // Listed and present, consistent, but an orphan.
    let mut fx = Fixture::new();
    let extra = noise(5, 700);
    let d = Digest::of(&extra);
    fx.metadata.blobs.push(BlobRecord {
        digest: d.clone(),
        size: 700,
        kind: BlobKind::Layer,
        media_type: LAYER_TYPE.into(),
    });
    let mut e = fx.entries();
    e.push((blob_entry_name(&d), extra));
    assert_err!(
        verify(&write_bundle(&e)[..]),
        BundleError::UnexpectedEntry { entry, .. } if *entry == blob_entry_name(&d),
        d.hex()
    );
}

#[test]
fn head_entries_after_the_first_blob_are_unexpected() {
    // airgap.json does not list the Kubernetes file, so the head is complete without it:
    // only the ordering rule can refuse it once blobs have begun.
    let mut fx = Fixture::new();
    fx.metadata.manifests.clear();
    let mut e = fx.entries();
    let k8s = e.remove(3);
    e.insert(5, k8s);
    assert_err!(
        verify(&raw_bundle(&e)[..]),
        BundleError::UnexpectedEntry { entry, reason }
            if *entry == format!("{MANIFESTS_DIR}{K8S_PATH}") && reason.contains("before the first blob"),
        "manifests/k8s/app.yaml"
    );
}

#[test]
fn missing_and_unlisted_head_entries() {
    let fx = Fixture::new();
    for (i, what) in [
        (1usize, LAYOUT_NAME),
        (2, INDEX_NAME),
        (3, "manifests/k8s/app.yaml"),
    ] {
        let mut e = fx.entries();
        e.remove(i);
        assert_err!(
            verify(&raw_bundle(&e)[..]),
            BundleError::Missing { what: w } if w == what,
            what
        );
    }
    // A Kubernetes file airgap.json does not list.
    let name = "manifests/k8s/other.yaml";
    assert_err!(
        verify(&with_k8s_entry(&fx, name, None)[..]),
        BundleError::UnexpectedEntry { entry, .. } if entry == name,
        name
    );
}

// ---------------------------------------------------------------------------------------------
// Stream-level damage
// ---------------------------------------------------------------------------------------------

#[test]
fn data_after_the_end_is_corrupt() {
    let fx = Fixture::new();
    let b = fx.bundle();
    let end = |e: &BundleError| matches!(e, BundleError::Corrupt { entry, .. } if entry == "the end of the bundle");

    // Garbage after the zstd frame, short and long.
    for tail in [&b"x"[..], b"garbage!", &[0u8; 4], &noise(6, 4096)] {
        let mut t = b.clone();
        t.extend_from_slice(tail);
        let err = verify(&t[..]).unwrap_err();
        assert!(end(&err), "tail {} bytes: {err:?}", tail.len());
        assert!(err.to_string().contains("the end of the bundle"));
    }
    // A second zstd frame holding a tar entry: valid zstd, but data after the archive.
    let mut t = b.clone();
    t.extend(compress(&RawTar::new().file("evil", b"x").tar()));
    let err = verify(&t[..]).unwrap_err();
    assert!(end(&err), "{err:?}");
    // Inside the frame, after the tar's end blocks.
    let mut tar = fx.tar();
    tar.extend_from_slice(b"appended");
    let err = verify(&compress(&tar)[..]).unwrap_err();
    assert!(end(&err), "{err:?}");
    // Zero padding after the end blocks (tar's record padding) is fine.
    let mut tar = fx.tar();
    tar.extend(std::iter::repeat_n(0u8, 10240));
    verify(&compress(&tar)[..]).unwrap();
}

#[test]
fn future_format_version_is_refused() {
    let fx = Fixture::new();
    let mut md = serde_json::to_value(&fx.metadata).unwrap();
    md["formatVersion"] = serde_json::json!(99);
    let mut e = fx.entries();
    e[0].1 = serde_json::to_vec(&md).unwrap();
    assert_err!(
        verify(&write_bundle(&e)[..]),
        BundleError::FutureVersion { found: 99 },
        "99"
    );
    // Even when the rest of airgap.json is in a shape this version cannot read.
    e[0].1 = br#"{"formatVersion":99,"images":{"new":"shape"}}"#.to_vec();
    assert_err!(
        verify(&write_bundle(&e)[..]),
        BundleError::FutureVersion { found: 99 }
    );
}

#[test]
fn not_a_bundle() {
    let fx = Fixture::new();
    assert_err!(verify(&b""[..]), BundleError::NotABundle(_));
    assert_err!(inspect(&b""[..]), BundleError::NotABundle(_));
    assert_err!(
        verify(&b"apiVersion: v1\nkind: Pod\n"[..]),
        BundleError::NotABundle(_)
    );
    let gzip = [
        0x1f, 0x8b, 0x08, 0x00, 0, 0, 0, 0, 0, 0x03, 0x03, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    assert_err!(verify(&gzip[..]), BundleError::NotABundle(_));
    // The uncompressed tar of a real bundle.
    assert_err!(verify(&fx.tar()[..]), BundleError::NotABundle(_));
    // A zstd stream of an empty tar.
    assert_err!(
        verify(&compress(&RawTar::new().tar())[..]),
        BundleError::NotABundle(m) if m.contains("empty")
    );
    // airgap.json not first.
    let mut e = fx.entries();
    e.swap(0, 1);
    assert_err!(
        verify(&raw_bundle(&e)[..]),
        BundleError::NotABundle(m) if m.contains(LAYOUT_NAME) && m.contains(METADATA_NAME)
    );
    let mut e = fx.entries();
    e.remove(0);
    assert_err!(
        inspect(&raw_bundle(&e)[..]),
        BundleError::NotABundle(m) if m.contains(LAYOUT_NAME)
    );
}

// ---------------------------------------------------------------------------------------------
// Size claims are never trusted for allocation
// ---------------------------------------------------------------------------------------------

#[test]
fn huge_size_claims_are_refused_without_allocating() {
    // Each header claims 100 GiB but little data follows. Allocating for the claim would
    // abort the test process.
    let fx = Fixture::new();
    let entries = fx.entries();
    for (i, limit) in [
        (0usize, MAX_METADATA_SIZE),
        (1, 4096),
        (2, MAX_INDEX_SIZE),
        (3, MAX_K8S_FILE_SIZE),
    ] {
        let mut raw = RawTar::new();
        for (n, d) in &entries[..i] {
            raw.file(n, d);
        }
        let (name, data) = &entries[i];
        raw.entry(name, tar::EntryType::Regular, HUGE, data, "");
        let b = raw.bundle();
        assert_err!(
            verify(&b[..]),
            BundleError::TooLarge { entry, limit: l } if entry == name && *l == limit,
            name
        );
        assert_err!(inspect(&b[..]), BundleError::TooLarge { .. });
    }
}

#[test]
fn huge_manifest_blob_is_refused_without_allocating() {
    // airgap.json and the header agree on 100 GiB for a manifest: verify would read it into
    // memory, so the reader must refuse it first.
    let mut fx = Fixture::new();
    fx.metadata.blobs[0].size = HUGE;
    let name = blob_entry_name(&fx.manifest_digest());
    let mut raw = RawTar::new();
    for (n, d) in fx.entries() {
        if n == name {
            raw.entry(&n, tar::EntryType::Regular, HUGE, &d, "");
            break;
        }
        raw.file(&n, &d);
    }
    assert_err!(
        verify(&raw.bundle()[..]),
        BundleError::TooLarge { entry, limit } if *entry == name && *limit == MAX_MANIFEST_SIZE,
        &name
    );
    // Just over the limit, with the data really there.
    let mut fx = Fixture::new();
    let big = MAX_MANIFEST_SIZE + 1;
    fx.metadata.blobs[0].size = big;
    let mut raw = RawTar::new();
    for (n, d) in fx.entries() {
        if n == name {
            let mut d = d.clone();
            d.resize(big as usize, b' ');
            raw.file(&n, &d);
            break;
        }
        raw.file(&n, &d);
    }
    assert_err!(
        verify(&raw.bundle()[..]),
        BundleError::TooLarge { entry, .. } if *entry == name
    );
}

#[test]
fn huge_layer_claim_is_an_error_not_an_allocation() {
    // Layers stream, so a 100 GiB claim is allowed until the data runs out.
    let mut fx = Fixture::new();
    fx.metadata.blobs[2].size = HUGE;
    let name = blob_entry_name(&fx.layer_digest(0));
    let mut raw = RawTar::new();
    for (n, d) in fx.entries() {
        if n == name {
            raw.entry(&n, tar::EntryType::Regular, HUGE, &d, "");
            break;
        }
        raw.file(&n, &d);
    }
    assert_err!(
        verify(&raw.bundle()[..]),
        BundleError::SizeMismatch { digest, expected: HUGE, .. } if *digest == fx.layer_digest(0),
        fx.layer_digest(0).to_string()
    );
}

// ---------------------------------------------------------------------------------------------
// BlobContent and visitors
// ---------------------------------------------------------------------------------------------

enum Mode {
    /// Read half of this blob, leave the rest.
    ReadHalf(Digest),
    /// Skip this blob.
    Skip(Digest),
    /// Read all of this blob, recording the read's outcome.
    ReadAll(Digest),
    /// Skip every blob.
    SkipAll,
    /// Stop after the first blob.
    StopAtFirst,
}

struct Probe {
    mode: Mode,
    heads: usize,
    seen: Vec<Digest>,
    bytes_read: usize,
    read_error: Option<std::io::Error>,
}

impl Probe {
    fn new(mode: Mode) -> Self {
        Probe {
            mode,
            heads: 0,
            seen: Vec::new(),
            bytes_read: 0,
            read_error: None,
        }
    }
}

impl Visitor for Probe {
    fn head(&mut self, _: &Head) -> Result<Flow, BundleError> {
        self.heads += 1;
        Ok(Flow::Continue)
    }

    fn blob(
        &mut self,
        record: &BlobRecord,
        content: &mut BlobContent<'_>,
    ) -> Result<Flow, BundleError> {
        assert_eq!(content.record(), record);
        self.seen.push(record.digest.clone());
        match &self.mode {
            Mode::ReadHalf(d) if *d == record.digest => {
                let mut half = vec![0u8; record.size as usize / 2];
                content.read_exact(&mut half).unwrap();
                self.bytes_read += half.len();
            }
            Mode::Skip(d) if *d == record.digest => content.skip(),
            Mode::ReadAll(d) if *d == record.digest => {
                let mut all = Vec::new();
                let r = content.read_to_end(&mut all);
                self.bytes_read += all.len();
                self.read_error = r.err();
            }
            Mode::SkipAll => content.skip(),
            Mode::StopAtFirst => return Ok(Flow::Stop),
            _ => {}
        }
        Ok(Flow::Continue)
    }
}

/// A bundle whose layer 1 has one byte flipped in its second half.
fn corrupted_layer(fx: &Fixture) -> Vec<u8> {
    flip_at(&fx.tar(), &blob_entry_name(&fx.layer_digest(1)), L1 * 3 / 4)
}

#[test]
fn visitor_reading_half_a_corrupted_blob_still_gets_the_error() {
    let fx = Fixture::new();
    let b = corrupted_layer(&fx);
    let mut v = Probe::new(Mode::ReadHalf(fx.layer_digest(1)));
    assert_err!(
        read_bundle(&b[..], &mut v),
        BundleError::DigestMismatch { digest, .. } if *digest == fx.layer_digest(1),
        fx.layer_digest(1).to_string()
    );
    assert_eq!(v.bytes_read, L1 / 2);
    assert_eq!(v.heads, 1);
    // Reading nothing at all: the leftover is drained and verified too.
    let mut v = Probe::new(Mode::ReadHalf(fx.layer_digest(0)));
    assert_err!(
        read_bundle(&b[..], &mut v),
        BundleError::DigestMismatch { digest, .. } if *digest == fx.layer_digest(1)
    );
}

#[test]
fn visitor_reading_a_corrupted_blob_gets_a_read_error() {
    // An upload fed from the content must fail, not complete with bad bytes.
    let fx = Fixture::new();
    let b = corrupted_layer(&fx);
    let mut v = Probe::new(Mode::ReadAll(fx.layer_digest(1)));
    assert_err!(
        read_bundle(&b[..], &mut v),
        BundleError::DigestMismatch { digest, .. } if *digest == fx.layer_digest(1)
    );
    let e = v
        .read_error
        .expect("reading the corrupted blob to its end succeeded");
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
    assert!(e.to_string().contains(fx.layer_digest(1).as_str()), "{e}");
    // A sound blob reads cleanly.
    let mut v = Probe::new(Mode::ReadAll(fx.layer_digest(1)));
    read_bundle(&fx.bundle()[..], &mut v).unwrap();
    assert!(v.read_error.is_none());
    assert_eq!(v.bytes_read, L1);
}

#[test]
fn visitor_skipping_a_corrupted_blob_gets_no_error_for_it() {
    let fx = Fixture::new();
    let b = corrupted_layer(&fx);
    let mut v = Probe::new(Mode::Skip(fx.layer_digest(1)));
    read_bundle(&b[..], &mut v).unwrap();
    assert_eq!(v.heads, 1);
    assert_eq!(v.seen.len(), 4);
    // Skipping another blob does not excuse this one.
    let mut v = Probe::new(Mode::Skip(fx.layer_digest(0)));
    assert_err!(
        read_bundle(&b[..], &mut v),
        BundleError::DigestMismatch { digest, .. } if *digest == fx.layer_digest(1)
    );
    // And skipping does not excuse a missing blob or trailing data.
    let mut tar = fx.tar();
    tar.extend_from_slice(b"appended");
    let mut v = Probe::new(Mode::SkipAll);
    assert_err!(
        read_bundle(&compress(&tar)[..], &mut v),
        BundleError::Corrupt { .. }
    );
}

#[test]
fn visitor_stopping_early_ends_the_read() {
    let fx = Fixture::new();
    let b = corrupted_layer(&fx);
    let mut v = Probe::new(Mode::StopAtFirst);
    read_bundle(&b[..], &mut v).unwrap();
    assert_eq!(v.seen, vec![fx.manifest_digest()]);
}
