//! One pass of a foreign archive through a visitor: the head, the blobs kept from the first
//! pass (manifests first, as in a bundle), then the layers as the tar or directory holds them.

use std::collections::HashSet;
use std::io::Cursor;

use super::{normal, open_tar, Container, Foreign};
use crate::bundle::{BlobContent, BlobRecord, BundleError, Flow, Visitor};
use crate::digest::Digest;

fn give(
    visitor: &mut dyn Visitor,
    record: &BlobRecord,
    r: &mut dyn std::io::Read,
) -> Result<Flow, BundleError> {
    let mut content = BlobContent::new(r, record);
    let flow = visitor.blob(record, &mut content)?;
    content.finish()?;
    Ok(flow)
}

pub fn read(f: &Foreign, visitor: &mut dyn Visitor) -> Result<(), BundleError> {
    if visitor.head(&f.head)? == Flow::Stop {
        return Ok(());
    }
    let records = &f.head.metadata.blobs;
    for r in records.iter().filter(|r| f.early.contains_key(&r.digest)) {
        if give(visitor, r, &mut Cursor::new(&f.early[&r.digest]))? == Flow::Stop {
            return Ok(());
        }
    }
    let rest: Vec<&BlobRecord> = records
        .iter()
        .filter(|r| !f.early.contains_key(&r.digest))
        .collect();
    match &f.container {
        Container::Dir(dir) => {
            for r in rest {
                let path = dir.join(format!("{}blobs/sha256/{}", f.prefix, r.digest.hex()));
                let file = std::fs::File::open(&path).map_err(|source| BundleError::Io {
                    path: path.clone(),
                    source,
                })?;
                let mut file = std::io::BufReader::with_capacity(1 << 20, file);
                if give(visitor, r, &mut file)? == Flow::Stop {
                    return Ok(());
                }
            }
            Ok(())
        }
        Container::Tar(..) => {
            let wanted: std::collections::HashMap<&Digest, &BlobRecord> =
                rest.iter().map(|r| (&r.digest, *r)).collect();
            let mut done: HashSet<Digest> = HashSet::new();
            let blobs = format!("{}blobs/sha256/", f.prefix);
            let corrupt = |entry: &str, e: std::io::Error| BundleError::Corrupt {
                entry: entry.to_string(),
                reason: e.to_string(),
            };
            let mut archive = tar::Archive::new(open_tar(&f.container)?);
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
                let Some(hex) = name.strip_prefix(&blobs) else {
                    continue;
                };
                let Ok(d) = Digest::parse(&format!("sha256:{hex}")) else {
                    continue;
                };
                let Some(r) = wanted.get(&d) else { continue };
                if !done.insert(d.clone()) {
                    continue;
                }
                if give(visitor, r, &mut entry)? == Flow::Stop {
                    return Ok(());
                }
            }
            // The first pass saw every blob, so only a file changed since can get here.
            if let Some(r) = rest.iter().find(|r| !done.contains(&r.digest)) {
                return Err(BundleError::MissingBlob {
                    digest: r.digest.clone(),
                });
            }
            Ok(())
        }
    }
}

/// One blob of `f`, verified as it streams (see [`Foreign::read_blob`]).
pub fn read_blob(
    f: &Foreign,
    digest: &Digest,
    sink: &mut dyn FnMut(&[u8]) -> std::io::Result<()>,
) -> Result<(), BundleError> {
    let record = f
        .head
        .metadata
        .blobs
        .iter()
        .find(|r| &r.digest == digest)
        .ok_or_else(|| BundleError::MissingBlob {
            digest: digest.clone(),
        })?;
    // An uncompressed tar's reader runs on past the blob: stop at its size.
    with_range(f, digest, 0, &mut |r| {
        pump(
            f.path(),
            &mut std::io::Read::take(r, record.size),
            record,
            sink,
        )
    })
}

/// Copies `r` to `sink` through a verifying reader.
fn pump(
    path: &std::path::Path,
    r: &mut dyn std::io::Read,
    record: &BlobRecord,
    sink: &mut dyn FnMut(&[u8]) -> std::io::Result<()>,
) -> Result<(), BundleError> {
    let mut content = BlobContent::new(r, record);
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        match std::io::Read::read(&mut content, &mut buf) {
            Ok(0) => break,
            Ok(n) => sink(&buf[..n]).map_err(|source| BundleError::Io {
                path: path.to_path_buf(),
                source,
            })?,
            // `finish` reports it, a digest mismatch as such.
            Err(_) => break,
        }
    }
    content.finish()
}

/// Hands `reader` positioned at byte `start` of blob `digest` to `f`, for serving a range.
pub fn with_range(
    f: &Foreign,
    digest: &Digest,
    start: u64,
    reader: &mut dyn FnMut(&mut dyn std::io::Read) -> Result<(), BundleError>,
) -> Result<(), BundleError> {
    use std::io::{Read, Seek};
    if let Some(b) = f.early.get(digest) {
        let mut c = Cursor::new(&b[..]);
        c.set_position(start);
        return reader(&mut c);
    }
    let io = |path: &std::path::Path| {
        let path = path.to_path_buf();
        move |source| BundleError::Io { path, source }
    };
    let at = |path: &std::path::Path, offset: u64| -> Result<std::fs::File, BundleError> {
        let mut file = std::fs::File::open(path).map_err(io(path))?;
        file.seek(std::io::SeekFrom::Start(offset))
            .map_err(io(path))?;
        Ok(file)
    };
    match &f.container {
        Container::Dir(dir) => {
            let path = dir.join(format!("{}blobs/sha256/{}", f.prefix, digest.hex()));
            reader(&mut at(&path, start)?)
        }
        Container::Tar(path, _) if f.offsets.contains_key(digest) => {
            reader(&mut at(path, f.offsets[digest] + start)?)
        }
        Container::Tar(..) => {
            let name = format!("{}blobs/sha256/{}", f.prefix, digest.hex());
            let mut archive = tar::Archive::new(open_tar(&f.container)?);
            let corrupt = |e: std::io::Error| BundleError::Corrupt {
                entry: name.clone(),
                reason: e.to_string(),
            };
            for entry in archive.entries().map_err(corrupt)? {
                let mut entry = entry.map_err(corrupt)?;
                let found = entry.header().entry_type().is_file()
                    && entry
                        .path()
                        .is_ok_and(|p| normal(&p.to_string_lossy()) == name);
                if found {
                    let skipped =
                        std::io::copy(&mut (&mut entry).take(start), &mut std::io::sink())
                            .map_err(corrupt)?;
                    if skipped != start {
                        return Err(BundleError::Corrupt {
                            entry: name.clone(),
                            reason: format!("ends before byte {start}"),
                        });
                    }
                    return reader(&mut entry);
                }
            }
            Err(BundleError::MissingBlob {
                digest: digest.clone(),
            })
        }
    }
}
