//! Archives from other tools, read as if they were bundles (bundle-spec/FORMAT.md, "Foreign
//! archives"): an OCI image layout as a directory or a tar (plain, gzip, zstd), which covers
//! skopeo `oci:`/`oci-archive:`, buildah, `docker save` of Docker 25+, Hauler's `haul.tar.zst`
//! and the `images/` layout inside a Zarf package.
//!
//! [`Source::read`] drives the same [`Visitor`] a bundle does, so `load`, `verify` and
//! `inspect` work unchanged. A tar's entries come in any order, so [`open`] reads it once
//! first and keeps only what must come before the layers (`index.json`, manifests, configs:
//! small JSON blobs); each read then streams the tar again for the layers, verifying every
//! blob by digest. Nothing is extracted; no layer is held in memory.

pub mod export;
mod layout;
mod stream;

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::bundle::{BundleError, Head, Visitor};
use crate::digest::Digest;

/// What kind of archive a path holds, as `inspect` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    OciLayout,
    DockerSave,
    Hauler,
    Zarf,
}

impl Kind {
    pub fn describe(self) -> &'static str {
        match self {
            Kind::OciLayout => "OCI image layout",
            Kind::DockerSave => "docker save (OCI layout with manifest.json)",
            Kind::Hauler => "Hauler store (OCI layout)",
            Kind::Zarf => "Zarf package (images/ OCI layout)",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

/// Where the layout's files are.
#[derive(Debug, Clone)]
pub enum Container {
    Dir(PathBuf),
    Tar(PathBuf, Compression),
}

impl Container {
    fn is_plain_tar(&self) -> bool {
        matches!(self, Container::Tar(_, Compression::None))
    }
    pub fn describe(&self) -> &'static str {
        match self {
            Container::Dir(_) => "directory",
            Container::Tar(_, Compression::None) => "tar",
            Container::Tar(_, Compression::Gzip) => "tar.gz",
            Container::Tar(_, Compression::Zstd) => "tar.zst",
        }
    }
}

/// A foreign archive after its first pass: the plan, and the small blobs it needs first.
#[derive(Debug)]
pub struct Foreign {
    pub container: Container,
    pub kind: Kind,
    /// `""`, or `images/` in a Zarf package.
    prefix: String,
    pub head: Head,
    /// Manifests and configs, verified, emitted before the layers.
    early: HashMap<Digest, Vec<u8>>,
    /// Data offsets of the blobs of an uncompressed tar (empty otherwise).
    offsets: HashMap<Digest, u64>,
}

impl Foreign {
    /// One pass through the visitor: the head, the early blobs, then the rest.
    pub fn read(&self, visitor: &mut dyn Visitor) -> Result<(), BundleError> {
        stream::read(self, visitor)
    }
    pub fn describe(&self) -> String {
        format!("{} ({})", self.kind.describe(), self.container.describe())
    }
    /// The path of the directory or tar.
    pub fn path(&self) -> &Path {
        match &self.container {
            Container::Dir(p) | Container::Tar(p, _) => p,
        }
    }
    /// A manifest or config kept (and verified) by the first pass.
    pub fn early_blob(&self, digest: &Digest) -> Option<&[u8]> {
        self.early.get(digest).map(|v| &v[..])
    }
    /// Streams one blob to `sink` in pieces, verifying its size and digest against the
    /// archive's record of it: the last piece is handed over before the digest is known, so
    /// the output is unverified until this returns Ok. A directory or uncompressed tar is read
    /// in place (a seek); a compressed tar is decompressed up to the blob.
    pub fn read_blob(
        &self,
        digest: &Digest,
        sink: &mut dyn FnMut(&[u8]) -> std::io::Result<()>,
    ) -> Result<(), BundleError> {
        stream::read_blob(self, digest, sink)
    }
    /// Hands a reader at byte `start` of blob `digest` to `reader` (for a range request).
    /// Unverified: the caller hashes a whole-blob read.
    pub fn with_range(
        &self,
        digest: &Digest,
        start: u64,
        reader: &mut dyn FnMut(&mut dyn Read) -> Result<(), BundleError>,
    ) -> Result<(), BundleError> {
        stream::with_range(self, digest, start, reader)
    }
    /// Whether a blob can be read without decompressing the archive up to it.
    pub fn random_access(&self) -> bool {
        matches!(
            self.container,
            Container::Dir(_) | Container::Tar(_, Compression::None)
        )
    }
}

/// An airgap bundle, or a foreign archive read as one.
#[derive(Debug, Clone)]
pub enum Source {
    Bundle(PathBuf),
    Foreign(Arc<Foreign>),
}

impl Source {
    /// One streaming pass over the source.
    pub fn read(&self, visitor: &mut dyn Visitor) -> Result<(), BundleError> {
        match self {
            Source::Bundle(p) => crate::bundle::read_bundle(crate::bundle::open_input(p)?, visitor),
            Source::Foreign(f) => f.read(visitor),
        }
    }
    pub fn foreign_arc(&self) -> Option<Arc<Foreign>> {
        match self {
            Source::Foreign(f) => Some(f.clone()),
            Source::Bundle(_) => None,
        }
    }
    pub fn foreign(&self) -> Option<&Foreign> {
        match self {
            Source::Foreign(f) => Some(f),
            Source::Bundle(_) => None,
        }
    }
}

/// Opens `path`: a bundle (or split set) as it is; a foreign archive after its first pass.
/// `repository` names images that the archive names only by a bare tag.
pub fn open(path: &Path, repository: Option<&str>) -> Result<Source, BundleError> {
    match detect(path)? {
        None => Ok(Source::Bundle(path.to_path_buf())),
        Some(c) => Ok(Source::Foreign(Arc::new(layout::scan(c, repository)?))),
    }
}

/// Whether `path` is an archive from another tool rather than an airgap bundle (reads a few
/// bytes, or for a zstd tar its first entry's name).
pub fn is_foreign(path: &Path) -> bool {
    matches!(detect(path), Ok(Some(_)))
}

/// Where a foreign archive's layout is, or None for a bundle (or something the bundle reader
/// will explain is neither).
fn detect(path: &Path) -> Result<Option<Container>, BundleError> {
    let io = |source| BundleError::Io {
        path: path.to_path_buf(),
        source,
    };
    if path.is_dir() {
        return Ok(Some(Container::Dir(path.to_path_buf())));
    }
    if crate::bundle::volume::is_split(path) {
        return Ok(None);
    }
    let mut magic = [0u8; 4];
    let n = read_up_to(&mut std::fs::File::open(path).map_err(io)?, &mut magic).map_err(io)?;
    let compression = match &magic[..n] {
        [0x28, 0xb5, 0x2f, 0xfd] => Compression::Zstd,
        [0x1f, 0x8b, ..] => Compression::Gzip,
        _ if is_tar(path).map_err(io)? => Compression::None,
        // Not an archive we know: the bundle reader says why.
        _ => return Ok(None),
    };
    if compression == Compression::Zstd && first_entry(path)?.as_deref() == Some("airgap.json") {
        return Ok(None);
    }
    Ok(Some(Container::Tar(path.to_path_buf(), compression)))
}

fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// A plain tar has `ustar` at offset 257 of its first header.
fn is_tar(path: &Path) -> std::io::Result<bool> {
    let mut h = [0u8; 262];
    let n = read_up_to(&mut std::fs::File::open(path)?, &mut h)?;
    Ok(n == 262 && &h[257..262] == b"ustar")
}

/// The first entry's name of a zstd tar: `airgap.json` for a bundle.
fn first_entry(path: &Path) -> Result<Option<String>, BundleError> {
    let mut a = tar::Archive::new(open_tar(&Container::Tar(
        path.to_path_buf(),
        Compression::Zstd,
    ))?);
    let first = a
        .entries()
        .ok()
        .and_then(|mut e| e.next())
        .and_then(|e| e.ok());
    Ok(first.and_then(|e| e.path().ok().map(|p| normal(&p.to_string_lossy()))))
}

/// The decompressed tar stream of a tar container.
fn open_tar(c: &Container) -> Result<Box<dyn Read + Send>, BundleError> {
    let Container::Tar(path, compression) = c else {
        unreachable!("open_tar on a directory")
    };
    let f = std::fs::File::open(path).map_err(|source| BundleError::Io {
        path: path.clone(),
        source,
    })?;
    let f = std::io::BufReader::with_capacity(1 << 20, f);
    Ok(match compression {
        Compression::None => Box::new(f),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(f)),
        Compression::Zstd => {
            Box::new(
                zstd::stream::Decoder::with_buffer(f).map_err(|e| BundleError::Corrupt {
                    entry: "the start of the archive".into(),
                    reason: e.to_string(),
                })?,
            )
        }
    })
}

/// An entry name without a leading `./` (tar writers differ).
fn normal(name: &str) -> String {
    name.trim_start_matches("./").to_string()
}
