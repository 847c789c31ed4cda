//! `airgap export`: a bundle written out as a plain OCI image layout (bundle-spec/FORMAT.md,
//! "Export"), a directory or an uncompressed tar (`oci-archive:`), for tools that want one.
//! Every blob is verified by digest as it streams; the result appears only when complete
//! (a temporary directory or file renamed into place).

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::bundle::{
    BlobContent, BlobRecord, BundleError, Flow, Head, Visitor, INDEX_NAME, LAYOUT_NAME,
    OCI_LAYOUT_CONTENT,
};
use crate::fsutil::{AtomicFile, FileError};

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("bundle {}", path.display())]
    Bundle {
        path: PathBuf,
        #[source]
        source: BundleError,
    },
    #[error(transparent)]
    File(#[from] FileError),
    #[error("{} is a delta bundle: the blobs it shares with its base are not in it, so it cannot be written as a complete layout", path.display())]
    Delta { path: PathBuf },
    #[error("{} already exists and is not an empty directory", path.display())]
    Exists { path: PathBuf },
}

impl ExportError {
    pub fn hint(&self) -> Option<String> {
        match self {
            ExportError::Delta { .. } => Some("export the full bundle it was made against".into()),
            _ => None,
        }
    }
}

/// What was written.
#[derive(Debug, Clone, Default)]
pub struct Exported {
    pub images: usize,
    pub blobs: usize,
    pub bytes: u64,
}

trait Sink {
    fn file(
        &mut self,
        name: &str,
        size: u64,
        data: &mut dyn std::io::Read,
    ) -> Result<(), FileError>;
}

struct DirSink(PathBuf);

impl Sink for DirSink {
    fn file(
        &mut self,
        name: &str,
        _size: u64,
        data: &mut dyn std::io::Read,
    ) -> Result<(), FileError> {
        let path = self.0.join(name);
        let mut f = std::fs::File::create(&path).map_err(FileError::with("creating", &path))?;
        std::io::copy(data, &mut f).map_err(FileError::with("writing", &path))?;
        Ok(())
    }
}

struct TarSink(tar::Builder<AtomicFile>, PathBuf);

impl Sink for TarSink {
    fn file(
        &mut self,
        name: &str,
        size: u64,
        data: &mut dyn std::io::Read,
    ) -> Result<(), FileError> {
        let mut h = tar::Header::new_ustar();
        h.set_size(size);
        h.set_mode(0o644);
        h.set_cksum();
        self.0
            .append_data(&mut h, name, data)
            .map_err(FileError::with("writing", &self.1))
    }
}

struct V<'a> {
    sink: &'a mut dyn Sink,
    failure: Option<FileError>,
    out: Exported,
}

impl Visitor for V<'_> {
    fn head(&mut self, head: &Head) -> Result<Flow, BundleError> {
        self.out.images = head.metadata.images.len();
        let r = self
            .sink
            .file(
                LAYOUT_NAME,
                OCI_LAYOUT_CONTENT.len() as u64,
                &mut &OCI_LAYOUT_CONTENT[..],
            )
            .and_then(|_| {
                self.sink
                    .file(INDEX_NAME, head.index.len() as u64, &mut &head.index[..])
            });
        self.fail(r)
    }
    fn blob(
        &mut self,
        record: &BlobRecord,
        content: &mut BlobContent<'_>,
    ) -> Result<Flow, BundleError> {
        self.out.blobs += 1;
        self.out.bytes += record.size;
        let name = crate::bundle::blob_entry_name(&record.digest);
        let mut reader = Tracking {
            inner: content,
            error: None,
        };
        let r = self.sink.file(&name, record.size, &mut reader);
        // A read error is damage in the bundle (e.g. a digest mismatch), not a write error.
        if let Some(reason) = reader.error {
            return Err(BundleError::Corrupt {
                entry: name,
                reason,
            });
        }
        self.fail(r)
    }
}

/// Remembers a read error, so it is not reported as the write that it broke.
struct Tracking<'a, 'b> {
    inner: &'a mut BlobContent<'b>,
    error: Option<String>,
}

impl std::io::Read for Tracking<'_, '_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.inner.read(buf).inspect_err(|e| {
            self.error = Some(e.to_string());
        })
    }
}

impl V<'_> {
    fn fail(&mut self, r: Result<(), FileError>) -> Result<Flow, BundleError> {
        match r {
            Ok(()) => Ok(Flow::Continue),
            Err(e) => {
                self.failure = Some(e);
                Err(BundleError::Visitor("writing the layout failed".into()))
            }
        }
    }
}

fn run(bundle: &Path, sink: &mut dyn Sink) -> Result<Exported, ExportError> {
    let berr = |source| ExportError::Bundle {
        path: bundle.to_path_buf(),
        source,
    };
    let input = crate::bundle::open_input(bundle).map_err(berr)?;
    let head =
        crate::bundle::inspect(crate::bundle::open_input(bundle).map_err(berr)?).map_err(berr)?;
    if head.metadata.base.is_some() {
        return Err(ExportError::Delta {
            path: bundle.to_path_buf(),
        });
    }
    let mut v = V {
        sink,
        failure: None,
        out: Exported::default(),
    };
    match crate::bundle::read_bundle(input, &mut v) {
        Ok(()) => Ok(v.out),
        Err(e) => Err(match v.failure.take() {
            Some(f) => f.into(),
            None => berr(e),
        }),
    }
}

/// Writes `bundle` as an OCI layout directory `dir` (created; it may exist only empty).
pub fn export_dir(bundle: &Path, dir: &Path) -> Result<Exported, ExportError> {
    if dir.exists() {
        let empty = std::fs::read_dir(dir)
            .map_err(FileError::with("reading", dir))?
            .next()
            .is_none();
        if !empty {
            return Err(ExportError::Exists {
                path: dir.to_path_buf(),
            });
        }
    }
    let parent = crate::fsutil::parent_dir(dir);
    let tmp = tempfile::Builder::new()
        .prefix(".airgap-export-")
        .tempdir_in(parent)
        .map_err(FileError::with("creating a temporary directory in", parent))?;
    let blobs = tmp.path().join(crate::bundle::BLOBS_DIR);
    std::fs::create_dir_all(&blobs).map_err(FileError::with("creating", &blobs))?;
    let out = run(bundle, &mut DirSink(tmp.path().to_path_buf()))?;
    if dir.exists() {
        std::fs::remove_dir(dir).map_err(FileError::with("replacing", dir))?;
    }
    let tmp = tmp.keep();
    std::fs::rename(&tmp, dir).map_err(|e| {
        let _ = std::fs::remove_dir_all(&tmp);
        FileError::new("renaming into place", dir, e)
    })?;
    Ok(out)
}

/// Writes `bundle` as an uncompressed tar of an OCI layout (`oci-archive:`).
pub fn export_tar(bundle: &Path, dest: &Path) -> Result<Exported, ExportError> {
    let file = AtomicFile::create(dest)?;
    let mut sink = TarSink(tar::Builder::new(file), dest.to_path_buf());
    let out = run(bundle, &mut sink)?;
    let mut file = sink
        .0
        .into_inner()
        .map_err(FileError::with("writing", dest))?;
    file.flush().map_err(FileError::with("writing", dest))?;
    file.commit(0o644, true)?;
    Ok(out)
}
