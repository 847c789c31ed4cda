//! The first pass: find `index.json`, keep the small JSON blobs, walk the image graph and
//! make the head a bundle would have (`airgap.json`'s metadata, an `index.json` naming each
//! image by its full reference).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Read;

use super::{normal, open_tar, Container, Foreign, Kind};
use crate::bundle::{
    BlobKind, BlobRecord, BundleError, Head, ImageRecord, Metadata, FORMAT_VERSION, MAX_INDEX_SIZE,
    OCI_LAYOUT_CONTENT, REF_NAME_ANNOTATION,
};
use crate::digest::Digest;
use crate::manifest::{is_index, Descriptor, ManifestView, MAX_MANIFEST_SIZE, OCI_INDEX};
use crate::platform::Platform;
use crate::reference::Reference;

/// Docker 25+ `docker save` and Hauler put the full name here.
pub const CONTAINERD_NAME: &str = "io.containerd.image.name";
/// Zarf (through crane) puts the full name here.
pub const BASE_NAME: &str = "org.opencontainers.image.base.name";
/// Hauler marks what each `index.json` entry is (pkg/consts in hauler-dev/hauler).
pub const HAULER_KIND: &str = "kind";
/// Small JSON blobs kept from a tar's first pass, at most this many bytes in all.
const MAX_EARLY_TOTAL: u64 = 512 * 1024 * 1024;

/// What the first pass found.
#[derive(Default)]
struct Found {
    index: HashMap<String, Vec<u8>>,
    /// Blob entry sizes, by prefix and digest.
    sizes: HashMap<(String, Digest), u64>,
    /// Small blobs starting with `{`: their content and what it hashes to.
    json: HashMap<(String, Digest), (Vec<u8>, Digest)>,
    docker_manifest: bool,
    zarf_yaml: bool,
    /// Where each blob's data starts in an uncompressed tar, so it can be read by seeking.
    offsets: HashMap<Digest, u64>,
}

const PREFIXES: [&str; 2] = ["", "images/"];

fn blob_name(name: &str) -> Option<(String, Digest)> {
    PREFIXES.iter().find_map(|p| {
        let hex = name.strip_prefix(p)?.strip_prefix("blobs/sha256/")?;
        let d = Digest::parse(&format!("sha256:{hex}")).ok()?;
        Some((p.to_string(), d))
    })
}

fn corrupt(entry: &str, e: impl ToString) -> BundleError {
    BundleError::Corrupt {
        entry: entry.to_string(),
        reason: e.to_string(),
    }
}

fn scan_tar(c: &Container) -> Result<Found, BundleError> {
    let mut found = Found::default();
    let mut early_total = 0u64;
    let mut archive = tar::Archive::new(open_tar(c)?);
    for entry in archive
        .entries()
        .map_err(|e| corrupt("the first entry", e))?
    {
        let mut entry = entry.map_err(|e| corrupt("an entry header", e))?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = normal(
            &entry
                .path()
                .map_err(|e| corrupt("an entry name", e))?
                .to_string_lossy(),
        );
        let size = entry.size();
        match name.as_str() {
            "index.json" | "images/index.json" => {
                if size > MAX_INDEX_SIZE {
                    return Err(BundleError::TooLarge {
                        entry: name,
                        limit: MAX_INDEX_SIZE,
                    });
                }
                let mut buf = Vec::new();
                entry.read_to_end(&mut buf).map_err(|e| corrupt(&name, e))?;
                found.index.insert(name, buf);
            }
            "manifest.json" => found.docker_manifest = true,
            "zarf.yaml" => found.zarf_yaml = true,
            _ => {
                let Some(key) = blob_name(&name) else {
                    continue;
                };
                if c.is_plain_tar() {
                    found
                        .offsets
                        .insert(key.1.clone(), entry.raw_file_position());
                }
                found.sizes.insert(key.clone(), size);
                if size == 0 || size > MAX_MANIFEST_SIZE {
                    continue;
                }
                let mut first = [0u8; 1];
                entry
                    .read_exact(&mut first)
                    .map_err(|e| corrupt(&name, e))?;
                if first[0] != b'{' {
                    continue;
                }
                early_total += size;
                if early_total > MAX_EARLY_TOTAL {
                    return Err(BundleError::TooLarge {
                        entry: "the archive's JSON blobs (manifests and configs)".into(),
                        limit: MAX_EARLY_TOTAL,
                    });
                }
                let mut buf = first.to_vec();
                entry.read_to_end(&mut buf).map_err(|e| corrupt(&name, e))?;
                let actual = Digest::of(&buf);
                found.json.insert(key, (buf, actual));
            }
        }
    }
    Ok(found)
}

/// Reads `c`'s index and graph; for a tar this is a whole pass over it.
pub fn scan(c: Container, repository: Option<&str>) -> Result<Foreign, BundleError> {
    let (found, dir) = match &c {
        Container::Tar(..) => (scan_tar(&c)?, None),
        Container::Dir(d) => {
            let mut f = Found::default();
            for p in PREFIXES {
                let path = d.join(p).join("index.json");
                if path.is_file() {
                    let buf =
                        std::fs::read(&path).map_err(|source| BundleError::Io { path, source })?;
                    f.index.insert(format!("{p}index.json"), buf);
                }
            }
            f.docker_manifest = d.join("manifest.json").is_file();
            f.zarf_yaml = d.join("zarf.yaml").is_file();
            (f, Some(d.clone()))
        }
    };
    let prefix = if found.index.contains_key("index.json") {
        ""
    } else if found.index.contains_key("images/index.json") {
        "images/"
    } else {
        return Err(BundleError::NotABundle(
            "neither an airgap bundle nor an OCI image layout (no index.json, nor images/index.json as in a Zarf package)".into(),
        ));
    };
    let index_entry = format!("{prefix}index.json");
    let view: ManifestView =
        serde_json::from_slice(&found.index[&index_entry]).map_err(|e| BundleError::Invalid {
            entry: index_entry.clone(),
            reason: format!("not valid JSON: {e}"),
        })?;
    let mut g = Graph {
        prefix: prefix.to_string(),
        dir,
        found: &found,
        records: BTreeMap::new(),
        early: HashMap::new(),
    };
    let mut kind = if !prefix.is_empty() || found.zarf_yaml {
        Kind::Zarf
    } else if found.docker_manifest {
        Kind::DockerSave
    } else {
        Kind::OciLayout
    };
    let mut images = Vec::new();
    let mut seen = HashSet::new();
    for d in &view.manifests {
        let ann = |k: &str| {
            d.annotations
                .as_ref()
                .and_then(|a| a.get(k))
                .and_then(|v| v.as_str())
        };
        if let Some(k) = ann(HAULER_KIND) {
            kind = Kind::Hauler;
            // Signatures, attestations and SBOMs ride along with their image in Hauler; only
            // images and indexes are loaded.
            if !k.ends_with("/image") && !k.ends_with("/imageIndex") {
                continue;
            }
        }
        // An OCI 1.1 referrer listed without a name (`airgap export` of a bundle with
        // referrers, oras): no image of its own; its blobs stay in the layout.
        if ann(REF_NAME_ANNOTATION).is_none()
            && ann(CONTAINERD_NAME).is_none()
            && g.small(&d.digest)?
                .is_some_and(|b| crate::referrers::facts(&b).subject.is_some())
        {
            continue;
        }
        let reference = name(d, &index_entry, prefix == "images/", repository)?;
        if !seen.insert(reference.clone()) {
            return Err(BundleError::Invalid {
                entry: index_entry,
                reason: format!("two entries are named {reference}"),
            });
        }
        let mut platforms = Vec::new();
        let media_type = g.walk(d, 0, &mut platforms)?;
        let mut mine = HashSet::new();
        g.closure(&d.digest, &mut mine);
        images.push(ImageRecord {
            reference,
            source: "archive".into(),
            digest: d.digest.clone(),
            source_digest: None,
            media_type,
            size: d.size,
            platforms,
            total_size: mine.iter().map(|x| g.records[x].0.size).sum(),
            referrers: Vec::new(),
            artifact_type: None,
            chart: None,
        });
    }
    if images.is_empty() {
        return Err(BundleError::Invalid {
            entry: index_entry,
            reason: "it names no image".into(),
        });
    }
    let mut blobs: Vec<BlobRecord> = g.records.values().map(|(r, _)| r.clone()).collect();
    blobs.sort_by_key(|r| r.kind);
    let metadata = Metadata {
        format_version: FORMAT_VERSION,
        tool: format!(
            "{} (read by airgap {})",
            kind.describe(),
            env!("CARGO_PKG_VERSION")
        ),
        spec: None,
        platforms: Vec::new(),
        total_size: blobs.iter().map(|b| b.size).sum(),
        images,
        blobs,
        manifests: Vec::new(),
        image_rules: Default::default(),
        base: None,
    };
    let index = bundle_index(&metadata);
    let metadata_raw = serde_json::to_vec(&metadata).expect("metadata serialises");
    Ok(Foreign {
        container: c,
        kind,
        prefix: prefix.to_string(),
        head: Head {
            metadata,
            metadata_raw,
            index,
            layout: OCI_LAYOUT_CONTENT.to_vec(),
            k8s: Vec::new(),
        },
        early: g.early,
        offsets: found.offsets,
    })
}

/// The `index.json` a bundle of these images would have.
fn bundle_index(m: &Metadata) -> Vec<u8> {
    let manifests: Vec<serde_json::Value> = m
        .images
        .iter()
        .map(|i| {
            serde_json::json!({
                "mediaType": i.media_type,
                "digest": i.digest,
                "size": i.size,
                "annotations": { REF_NAME_ANNOTATION: i.reference.to_string() },
            })
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": manifests,
    }))
    .expect("index serialises")
}

/// The full reference of an `index.json` entry, from the annotations the producers write.
fn name(
    d: &Descriptor,
    entry: &str,
    zarf: bool,
    repository: Option<&str>,
) -> Result<Reference, BundleError> {
    let ann = |k: &str| {
        d.annotations
            .as_ref()
            .and_then(|a| a.get(k))
            .and_then(|v| v.as_str())
    };
    let parse = |s: &str| {
        Reference::parse(s).map_err(|e| BundleError::Invalid {
            entry: entry.to_string(),
            reason: format!("entry {}: {e}", d.digest),
        })
    };
    if let Some(n) = ann(CONTAINERD_NAME) {
        return parse(n);
    }
    let ref_name = ann(REF_NAME_ANNOTATION);
    // A tag holds neither `/` nor `:`; anything that does is a full reference.
    if let Some(r) = ref_name.filter(|r| r.contains(['/', ':', '@'])) {
        return parse(r);
    }
    if let Some(b) = ann(BASE_NAME).filter(|_| zarf) {
        return parse(b);
    }
    match (ref_name, repository) {
        (Some(tag), Some(repo)) => parse(&format!("{repo}:{tag}")),
        _ => Err(BundleError::Unnamed {
            entry: entry.to_string(),
            manifest: d.digest.clone(),
            annotation: REF_NAME_ANNOTATION.into(),
            value: ref_name.map_or("absent".into(), |t| format!("{t:?}")),
        }),
    }
}

struct Graph<'a> {
    prefix: String,
    dir: Option<std::path::PathBuf>,
    found: &'a Found,
    /// Every blob, with the children of manifests.
    records: BTreeMap<Digest, (BlobRecord, Vec<Digest>)>,
    early: HashMap<Digest, Vec<u8>>,
}

impl Graph<'_> {
    fn entry(&self, d: &Digest) -> String {
        format!("{}blobs/sha256/{}", self.prefix, d.hex())
    }

    /// The blob's size in the archive, `None` when it is absent.
    fn size(&self, d: &Digest) -> Result<Option<u64>, BundleError> {
        match &self.dir {
            Some(dir) => match std::fs::metadata(dir.join(self.entry(d))) {
                Ok(m) => Ok(Some(m.len())),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(source) => Err(BundleError::Io {
                    path: dir.join(self.entry(d)),
                    source,
                }),
            },
            None => Ok(self
                .found
                .sizes
                .get(&(self.prefix.clone(), d.clone()))
                .copied()),
        }
    }

    /// A small blob's verified content, `None` when the tar's first pass did not keep it.
    fn small(&self, d: &Digest) -> Result<Option<Vec<u8>>, BundleError> {
        let (buf, actual) = match &self.dir {
            Some(dir) => {
                let path = dir.join(self.entry(d));
                let buf =
                    std::fs::read(&path).map_err(|source| BundleError::Io { path, source })?;
                let actual = Digest::of(&buf);
                (buf, actual)
            }
            None => match self.found.json.get(&(self.prefix.clone(), d.clone())) {
                Some((b, a)) => (b.clone(), a.clone()),
                None => return Ok(None),
            },
        };
        if &actual != d {
            return Err(BundleError::DigestMismatch {
                digest: d.clone(),
                actual,
            });
        }
        Ok(Some(buf))
    }

    /// Records `d` and what it needs; returns its media type.
    fn walk(
        &mut self,
        d: &Descriptor,
        depth: u32,
        platforms: &mut Vec<Platform>,
    ) -> Result<String, BundleError> {
        if depth > 4 {
            return Err(BundleError::Invalid {
                entry: self.entry(&d.digest),
                reason: "indexes nested too deep".into(),
            });
        }
        let size = self
            .size(&d.digest)?
            .ok_or_else(|| BundleError::MissingBlob {
                digest: d.digest.clone(),
            })?;
        if size != d.size {
            return Err(BundleError::SizeMismatch {
                digest: d.digest.clone(),
                expected: d.size,
                actual: size,
            });
        }
        if size > MAX_MANIFEST_SIZE {
            return Err(BundleError::TooLarge {
                entry: self.entry(&d.digest),
                limit: MAX_MANIFEST_SIZE,
            });
        }
        let bytes = self.small(&d.digest)?.ok_or_else(|| BundleError::Invalid {
            entry: self.entry(&d.digest),
            reason: "a manifest that is not JSON".into(),
        })?;
        let (view, media_type) =
            ManifestView::parse(&bytes, &d.media_type, &d.digest).map_err(|e| {
                BundleError::Invalid {
                    entry: self.entry(&d.digest),
                    reason: e.to_string(),
                }
            })?;
        let kind = if is_index(&media_type) {
            BlobKind::Index
        } else {
            BlobKind::Manifest
        };
        let mut children = Vec::new();
        if kind == BlobKind::Index {
            for c in &view.manifests {
                if let Some(p) = &c.platform {
                    platforms.push(p.platform());
                }
                self.walk(c, depth + 1, &mut Vec::new())?;
                children.push(c.digest.clone());
            }
        } else {
            for (i, b) in view.blobs().enumerate() {
                let is_config = i == 0 && view.config.is_some();
                self.leaf(
                    b,
                    if is_config {
                        BlobKind::Config
                    } else {
                        BlobKind::Layer
                    },
                )?;
                if is_config && depth == 0 {
                    if let Some(p) = self.early.get(&b.digest).and_then(|c| config_platform(c)) {
                        platforms.push(p);
                    }
                }
                children.push(b.digest.clone());
            }
        }
        self.early.insert(d.digest.clone(), bytes);
        let record = BlobRecord {
            digest: d.digest.clone(),
            size,
            kind,
            media_type: media_type.clone(),
        };
        self.records
            .entry(d.digest.clone())
            .or_insert((record, children));
        Ok(media_type)
    }

    fn leaf(&mut self, b: &Descriptor, kind: BlobKind) -> Result<(), BundleError> {
        if self.records.contains_key(&b.digest) {
            return Ok(());
        }
        let size = self
            .size(&b.digest)?
            .ok_or_else(|| BundleError::MissingBlob {
                digest: b.digest.clone(),
            })?;
        if size != b.size {
            return Err(BundleError::SizeMismatch {
                digest: b.digest.clone(),
                expected: b.size,
                actual: size,
            });
        }
        // Configs are small: they go before the layers when the archive lets us keep them.
        if kind == BlobKind::Config && size <= MAX_MANIFEST_SIZE {
            if let Some(c) = self.small(&b.digest)? {
                self.early.insert(b.digest.clone(), c);
            }
        }
        let record = BlobRecord {
            digest: b.digest.clone(),
            size,
            kind,
            media_type: b.media_type.clone(),
        };
        self.records.insert(b.digest.clone(), (record, Vec::new()));
        Ok(())
    }

    fn closure(&self, d: &Digest, out: &mut HashSet<Digest>) {
        if out.insert(d.clone()) {
            if let Some((_, children)) = self.records.get(d) {
                for c in children {
                    self.closure(c, out);
                }
            }
        }
    }
}

fn config_platform(config: &[u8]) -> Option<Platform> {
    #[derive(serde::Deserialize)]
    struct C {
        os: Option<String>,
        architecture: Option<String>,
        variant: Option<String>,
    }
    let c: C = serde_json::from_slice(config).ok()?;
    Some(Platform {
        os: c.os?,
        architecture: c.architecture?,
        variant: c.variant,
    })
}
