//! Files that appear whole or not at all: written under a temporary name beside their
//! destination and renamed into place only when complete, so a failure (or a full disk, or
//! Ctrl-C) never leaves a half-written file under the real name.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// A local file operation that failed: what was being done, to which path. The OS error
/// (`No space left on device`, …) is the source, printed after this by the error chain.
#[derive(Debug, thiserror::Error)]
#[error("{action} {}", path.display())]
pub struct FileError {
    pub action: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

impl FileError {
    pub fn new(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        FileError {
            action,
            path: path.into(),
            source,
        }
    }

    /// A closure for `map_err`: `fs::read(p).map_err(FileError::with("reading", p))`.
    pub fn with(action: &'static str, path: impl AsRef<Path>) -> impl FnOnce(io::Error) -> Self {
        let path = path.as_ref().to_path_buf();
        move |source| FileError::new(action, path, source)
    }
}

/// A file being written under a temporary name (`.NAME.partial-XXXXXX`) in its destination's
/// directory. Dropped without [`AtomicFile::commit`], the temporary file is removed.
pub struct AtomicFile {
    tmp: tempfile::NamedTempFile,
    dest: PathBuf,
}

/// The directory a path's file lives in (`.` for a bare name).
pub fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

impl AtomicFile {
    pub fn create(dest: &Path) -> Result<AtomicFile, FileError> {
        let dir = parent_dir(dest);
        let name = dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = tempfile::Builder::new()
            .prefix(&format!(".{name}.partial-"))
            .tempfile_in(dir)
            .map_err(FileError::with("creating a temporary file in", dir))?;
        Ok(AtomicFile {
            tmp,
            dest: dest.to_path_buf(),
        })
    }

    pub fn dest(&self) -> &Path {
        &self.dest
    }

    /// The temporary file's path (for reopening it, e.g. with `O_DIRECT`).
    pub fn temp_path(&self) -> &Path {
        self.tmp.path()
    }

    pub fn as_file(&self) -> &File {
        self.tmp.as_file()
    }

    pub fn as_file_mut(&mut self) -> &mut File {
        self.tmp.as_file_mut()
    }

    /// Sets the file's mode (`tempfile` creates 0600), syncs it when `durable`, renames it into
    /// place and syncs the directory, so the rename survives a crash too.
    pub fn commit(self, mode: u32, durable: bool) -> Result<PathBuf, FileError> {
        let AtomicFile { tmp, dest } = self;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(tmp.path(), fs::Permissions::from_mode(mode))
                .map_err(FileError::with("setting the mode of", &dest))?;
        }
        #[cfg(not(unix))]
        let _ = mode;
        if durable {
            tmp.as_file()
                .sync_all()
                .map_err(FileError::with("writing", &dest))?;
        }
        tmp.persist(&dest)
            .map_err(|e| FileError::new("renaming into place", &dest, e.error))?;
        if durable {
            sync_dir(parent_dir(&dest));
        }
        Ok(dest)
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.tmp.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.tmp.flush()
    }
}

/// Writes `bytes` to `dest` atomically with `mode` (0o644 for ordinary files, 0o600 for
/// anything holding a credential).
pub fn write_atomic(dest: &Path, bytes: &[u8], mode: u32) -> Result<PathBuf, FileError> {
    let mut f = AtomicFile::create(dest)?;
    f.write_all(bytes)
        .map_err(FileError::with("writing", dest))?;
    f.commit(mode, false)
}

/// Makes renames in `dir` durable (best effort; a no-op where directories cannot be opened).
pub fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    #[cfg(not(unix))]
    let _ = dir;
}

/// `.yaml` / `.yml`, in any case.
pub fn is_yaml(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("yaml") || e.eq_ignore_ascii_case("yml"))
}

/// The entries of `dir`, sorted by name, without hidden ones (names starting with `.`).
pub fn dir_entries(dir: &Path) -> Result<Vec<(String, PathBuf)>, FileError> {
    let wrap = FileError::with("reading directory", dir);
    let mut out = Vec::new();
    let rd = fs::read_dir(dir).map_err(wrap)?;
    for entry in rd {
        let entry = entry.map_err(FileError::with("reading directory", dir))?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if !name.starts_with('.') {
            out.push((name, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// Adds every YAML file below `dir` to `out` as `rel` joined with its path below `dir`,
/// without following symbolic links to directories. The one walker `pack`'s `manifests:`
/// and `rewrite DIR` share.
pub fn walk_yaml(dir: &Path, rel: &Path, out: &mut Vec<PathBuf>) -> Result<(), FileError> {
    for (name, path) in dir_entries(dir)? {
        let meta = fs::symlink_metadata(&path).map_err(FileError::with("reading", &path))?;
        if meta.is_dir() {
            walk_yaml(&path, &rel.join(&name), out)?;
        } else if is_yaml(&path) && path.is_file() {
            out.push(rel.join(&name));
        }
    }
    Ok(())
}

/// Every YAML file below `dir`, relative to it, sorted.
pub fn yaml_files_below(dir: &Path) -> Result<Vec<PathBuf>, FileError> {
    let mut out = Vec::new();
    walk_yaml(dir, Path::new(""), &mut out)?;
    Ok(out)
}

/// A relative path with `/` separators, as bundles and output directories name files.
pub fn slash_path(p: &Path) -> String {
    p.components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_appears_until_commit_and_nothing_stays_when_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("out.json");
        let mut f = AtomicFile::create(&dest).unwrap();
        f.write_all(b"{}").unwrap();
        assert!(!dest.exists());
        drop(f);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
        write_atomic(&dest, b"{}", 0o600).unwrap();
        assert_eq!(fs::read(&dest).unwrap(), b"{}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&dest).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn yaml_walk_takes_any_case_and_skips_hidden() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("a/.git")).unwrap();
        for f in [
            "a/x.YAML",
            "a/y.yml",
            "a/z.txt",
            "a/.h.yaml",
            "a/.git/c.yaml",
            "b.yaml",
        ] {
            fs::write(dir.path().join(f), "").unwrap();
        }
        let got: Vec<String> = yaml_files_below(dir.path())
            .unwrap()
            .iter()
            .map(|p| slash_path(p))
            .collect();
        assert_eq!(got, ["a/x.YAML", "a/y.yml", "b.yaml"]);
    }

    #[test]
    fn errors_name_the_path_and_keep_the_os_error_as_source() {
        let e = write_atomic(Path::new("/nonexistent-dir/x/y.json"), b"", 0o644).unwrap_err();
        assert_eq!(
            e.to_string(),
            "creating a temporary file in /nonexistent-dir/x"
        );
        let src = std::error::Error::source(&e).unwrap().to_string();
        assert!(src.contains("No such file or directory"), "{src}");
    }
}
