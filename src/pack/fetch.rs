//! Fetching one blob for the bundle writer: from the registry (resumed when the body breaks
//! off, see `Client::stream_blob_resume`), and with `--cache` from or into the blob cache.
//!
//! Without a cache nothing touches the disk. With one, a fresh download is teed: each chunk
//! is appended to the cache's partial file and handed to the writer, and the verified
//! partial becomes the entry. A download continuing an earlier run's partial file completes
//! that file first and is then read into the writer: the old bytes are only known good once
//! the whole digest is, and the writer must never get bytes that turn out wrong.

use std::io::Read;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::mpsc::Sender;

use super::{BlobSource, Origin, PackError, STREAM_PIECE};
use crate::cache::{Cache, Lookup, Partial};
use crate::progress::Progress;
use crate::registry::RegistryError;

fn blob_error(b: &BlobSource, source: RegistryError) -> PackError {
    PackError::Blob {
        digest: b.record.digest.clone(),
        image: b.image.clone(),
        source: Box::new(source),
    }
}

fn cache_error(e: impl Into<crate::cache::CacheError>) -> PackError {
    PackError::Cache(e.into())
}

/// A small blob (at most `IN_MEMORY_BLOB`), in memory.
pub(super) async fn small(
    b: &BlobSource,
    cache: Option<&Cache>,
    progress: &dyn Progress,
) -> Result<Bytes, PackError> {
    let (d, size) = (&b.record.digest, b.record.size);
    if let Some(bytes) = &b.cached {
        if let Some(c) = cache {
            store(c, d, bytes.clone()).await?;
        }
        progress.add_bytes(size);
        return Ok(bytes.clone());
    }
    if let Some(c) = cache {
        match c.lookup_bytes(d, size) {
            Ok(Some(bytes)) => {
                progress.add_bytes(size);
                return Ok(Bytes::from(bytes));
            }
            Ok(None) => {}
            Err(warning) => progress.warn(&warning),
        }
    }
    let mut buf = Vec::with_capacity(size as usize);
    let client = match &b.origin {
        Origin::Registry(c) => c,
        // An archive or a chart is local (or in memory) already: nothing to cache.
        Origin::Archive(_) | Origin::Chart(_) => {
            b.origin
                .stream_blob(&b.image, &b.repo, d, size, |chunk| {
                    progress.add_bytes(chunk.len() as u64);
                    buf.extend_from_slice(chunk);
                    Ok(())
                })
                .await?;
            return Ok(Bytes::from(buf));
        }
    };
    client
        .stream_blob(&b.repo, d, size, |chunk| {
            progress.add_bytes(chunk.len() as u64);
            buf.extend_from_slice(chunk);
            Ok(())
        })
        .await
        .map_err(|e| blob_error(b, e))?;
    let buf = Bytes::from(buf);
    if let Some(c) = cache {
        store(c, d, buf.clone()).await?;
    }
    Ok(buf)
}

/// Puts a verified small blob into the cache, off the async workers (it syncs).
async fn store(c: &Cache, d: &crate::digest::Digest, bytes: Bytes) -> Result<(), PackError> {
    let (c, d) = (c.clone(), d.clone());
    tokio::task::spawn_blocking(move || c.put_bytes(&d, &bytes))
        .await
        .map_err(|e| PackError::Task(e.to_string()))?
        .map_err(cache_error)
}

/// Hands `chunk` to the writer in pieces of at most STREAM_PIECE bytes.
async fn send_pieces(
    ctx: &Sender<std::io::Result<Bytes>>,
    mut chunk: Bytes,
) -> std::io::Result<()> {
    while !chunk.is_empty() {
        let piece = chunk.split_to(chunk.len().min(STREAM_PIECE));
        ctx.send(Ok(piece))
            .await
            .map_err(|_| std::io::Error::other("the bundle writer stopped"))?;
    }
    Ok(())
}

/// A big blob, streamed into `ctx` (the writer's channel for it) as it arrives.
pub(super) async fn large(
    b: &BlobSource,
    cache: Option<&Cache>,
    progress: Arc<dyn Progress>,
    ctx: &Sender<std::io::Result<Bytes>>,
) -> Result<(), PackError> {
    let (d, size) = (&b.record.digest, b.record.size);
    let client = match &b.origin {
        Origin::Registry(c) => c,
        // An archive or a chart is local (or in memory) already: nothing to cache.
        Origin::Archive(_) | Origin::Chart(_) => {
            return b
                .origin
                .stream_blob_async(&b.image, &b.repo, d, size, |chunk| {
                    progress.add_bytes(chunk.len() as u64);
                    send_pieces(ctx, chunk)
                })
                .await;
        }
    };
    let Some(cache) = cache else {
        return client
            .stream_blob_async(&b.repo, d, size, |chunk| {
                progress.add_bytes(chunk.len() as u64);
                send_pieces(ctx, chunk)
            })
            .await
            .map_err(|e| blob_error(b, e));
    };
    let c = cache.clone();
    let digest = d.clone();
    let found = tokio::task::spawn_blocking(move || c.lookup(&digest, size))
        .await
        .map_err(|e| PackError::Task(e.to_string()))?
        .map_err(cache_error)?;
    match found {
        Lookup::Hit(path) => {
            progress.add_bytes(size);
            return read_into(path, ctx).await;
        }
        Lookup::Corrupt(warning) => progress.warn(&warning),
        Lookup::Miss => {}
    }
    let Some(mut partial) = cache.partial(d).map_err(cache_error)? else {
        // Another pack holds this download: do without the cache for it.
        return Box::pin(large(b, None, progress, ctx)).await;
    };
    if partial.len() > size {
        partial.truncate().map_err(cache_error)?;
    }
    if !partial.is_empty() {
        match continue_partial(b, &mut partial, progress.as_ref()).await {
            Ok(()) => {
                let path = partial.commit().map_err(cache_error)?;
                return read_into(path, ctx).await;
            }
            // The kept bytes were not the blob's start: start over, teeing.
            Err(PackError::Blob { source, .. })
                if matches!(*source, RegistryError::DigestMismatch { .. }) =>
            {
                progress.warn(&format!(
                    "partial download {} did not make blob {d}; downloading it again",
                    partial.path().display()
                ));
                partial.truncate().map_err(cache_error)?;
            }
            Err(e) => return Err(e),
        }
    }
    // Fresh: tee into the partial file and the writer.
    let partial = Mutex::new(partial);
    let result = client
        .stream_blob_async(&b.repo, d, size, |chunk| {
            progress.add_bytes(chunk.len() as u64);
            let r = partial.lock().expect("partial lock").append(&chunk);
            async move {
                r?;
                send_pieces(ctx, chunk).await
            }
        })
        .await;
    let partial = partial.into_inner().expect("partial lock");
    match result {
        Ok(()) => {
            partial.commit().map_err(cache_error)?;
            Ok(())
        }
        Err(e) => {
            // Wrong bytes are dropped; a prefix cut off by the network is kept to continue.
            if matches!(
                e,
                RegistryError::DigestMismatch { .. } | RegistryError::SizeMismatch { .. }
            ) {
                partial.discard();
            }
            Err(blob_error(b, e))
        }
    }
}

/// Downloads the rest of a blob after the bytes `partial` holds, into `partial` only.
async fn continue_partial(
    b: &BlobSource,
    partial: &mut Partial,
    progress: &dyn Progress,
) -> Result<(), PackError> {
    let Origin::Registry(client) = &b.origin else {
        unreachable!("archive and chart blobs are never cached")
    };
    let hasher = partial.hasher().map_err(cache_error)?;
    progress.add_bytes(hasher.len());
    let result = client
        .stream_blob_resume(&b.repo, &b.record.digest, b.record.size, hasher, |chunk| {
            progress.add_bytes(chunk.len() as u64);
            let r = partial.append(&chunk);
            async move { r }
        })
        .await;
    result.map_err(|e| blob_error(b, e))
}

/// Streams a verified cache file into the writer's channel.
async fn read_into(
    path: std::path::PathBuf,
    ctx: &Sender<std::io::Result<Bytes>>,
) -> Result<(), PackError> {
    let ctx = ctx.clone();
    tokio::task::spawn_blocking(move || -> Result<(), PackError> {
        let mut f = std::fs::File::open(&path)
            .map_err(|e| cache_error(crate::fsutil::FileError::new("reading", &path, e)))?;
        loop {
            let mut buf = vec![0u8; STREAM_PIECE];
            let n = f
                .read(&mut buf)
                .map_err(|e| cache_error(crate::fsutil::FileError::new("reading", &path, e)))?;
            if n == 0 {
                return Ok(());
            }
            buf.truncate(n);
            if ctx.blocking_send(Ok(Bytes::from(buf))).is_err() {
                return Ok(()); // the writer stopped; its error is reported
            }
        }
    })
    .await
    .map_err(|e| PackError::Task(e.to_string()))?
}
