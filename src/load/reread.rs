//! Big blobs of a seekable bundle read through the seek table for their uploads: any range,
//! as often as an upload asks (a retry, a resumed or re-sent chunked upload), each read
//! streaming through a bounded channel, so nothing is buffered whatever the chunk size.

use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use super::visitor::CHUNK;
use crate::bundle::seek::{read_range, send_chunks, ReadAt, SeekIndex};
use crate::bundle::{BlobRecord, BundleError};
use crate::progress::Progress;
use crate::registry::Reread;

/// One big blob of a seekable bundle, read through the seek table for an upload: any range,
/// as often as the upload asks (each read streams through a bounded channel; nothing is
/// buffered beyond it).
#[derive(Clone)]
pub(super) struct BundleRange {
    pub src: Arc<dyn ReadAt>,
    pub index: Arc<SeekIndex>,
    /// Where the blob starts in the tar stream.
    pub offset: u64,
    pub record: BlobRecord,
    pub damage: Arc<Mutex<Option<BundleError>>>,
    pub progress: Arc<dyn Progress>,
    /// Bytes counted in the progress so far: re-read bytes are not counted twice.
    pub reported: Arc<AtomicU64>,
}

impl Reread for BundleRange {
    fn range(&self, start: u64, len: u64) -> reqwest::Body {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
        let job = RangeJob {
            blob: self.clone(),
            start,
            len,
        };
        tokio::task::spawn_blocking(move || job.run(tx));
        reqwest::Body::wrap_stream(tokio_stream_from(rx))
    }
}

/// One read of `[start, start + len)` of a blob into an upload body.
struct RangeJob {
    blob: BundleRange,
    start: u64,
    len: u64,
}

impl RangeJob {
    fn run(self, tx: tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>) {
        let r = self.copy(&tx);
        if let Err(e) = r {
            let msg = e.to_string();
            self.blob
                .damage
                .lock()
                .expect("damage lock")
                .get_or_insert(e);
            // Failing the body makes the upload fail rather than complete.
            let _ = tx.blocking_send(Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                msg,
            )));
        }
    }

    /// The whole blob is verified as it goes, the last bytes waiting for the verdict (or
    /// the upload would complete before an error could reach it). A part (a chunk) is not:
    /// the registry checks the digest of the whole when the upload is closed.
    fn copy(
        &self,
        tx: &tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
    ) -> Result<(), BundleError> {
        let mut pos = self.start;
        let mut send = |b: Bytes| {
            pos += b.len() as u64;
            let before = self.blob.reported.fetch_max(pos, Ordering::Relaxed);
            if pos > before {
                self.blob.progress.add_bytes(pos - before);
            }
            tx.blocking_send(Ok(b)).is_ok()
        };
        if self.start == 0 && self.len == self.blob.record.size {
            return send_chunks(
                self.blob.src.clone(),
                &self.blob.index,
                self.blob.offset,
                self.blob.record.size,
                &self.blob.record.digest,
                true,
                CHUNK,
                send,
            );
        }
        let mut r = read_range(
            self.blob.src.clone(),
            &self.blob.index,
            self.blob.offset + self.start,
            self.len,
        )
        .map_err(|e| corrupt(&self.blob.record, e))?;
        let mut left = self.len;
        while left > 0 {
            let mut buf = vec![0u8; CHUNK.min(left as usize)];
            let n = r
                .read(&mut buf)
                .map_err(|e| corrupt(&self.blob.record, e))?;
            if n == 0 {
                return Err(BundleError::SizeMismatch {
                    digest: self.blob.record.digest.clone(),
                    expected: self.blob.record.size,
                    actual: self.start + self.len - left,
                });
            }
            buf.truncate(n);
            left -= n as u64;
            if !send(Bytes::from(buf)) {
                return Ok(());
            }
        }
        Ok(())
    }
}

pub(super) fn corrupt(record: &BlobRecord, e: std::io::Error) -> BundleError {
    BundleError::Corrupt {
        entry: crate::bundle::blob_entry_name(&record.digest),
        reason: e.to_string(),
    }
}

pub(super) fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}
