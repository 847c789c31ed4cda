//! The seekable layout: every entry readable on its own through the seek table, old
//! single-frame bundles still served (by one indexing pass), and a damaged table refused.

use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use super::seek::{open_indexed, read_range, read_trailer, FRAME_SIZE};
use super::tests::{compress, decompress, descriptor, manifest_json, noise, Fixture};
use super::*;

const CONFIG_TYPE: &str = "application/vnd.oci.image.config.v1+json";
const LAYER_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// A bundle whose first layer spans several frames and whose second is small.
fn big_fixture() -> Fixture {
    let config = br#"{"architecture":"amd64","os":"linux"}"#.to_vec();
    let layers = vec![noise(7, 3 * FRAME_SIZE + 12345), noise(8, 5000)];
    let manifest = manifest_json(
        descriptor(CONFIG_TYPE, &config),
        layers.iter().map(|l| descriptor(LAYER_TYPE, l)).collect(),
    );
    Fixture::assemble(config, layers, manifest)
}

fn write(entries: &[(String, Vec<u8>)], threads: u32) -> Vec<u8> {
    let mut w = BundleWriter::new(Vec::new(), 3, threads).unwrap();
    for (name, data) in entries {
        match name.strip_prefix(BLOBS_DIR) {
            Some(hex) => {
                let d = Digest::parse(&format!("sha256:{hex}")).unwrap();
                // Exercise both levels: the big layer as pre-compressed content.
                if data.len() > FRAME_SIZE {
                    w.add_compressed_blob(&d, data.len() as u64, &data[..], true)
                        .unwrap();
                } else {
                    w.add_blob(&d, data.len() as u64, &data[..], true).unwrap();
                }
            }
            None => w.add_file(name, data).unwrap(),
        }
    }
    w.finish().unwrap()
}

fn to_file(dir: &Path, bytes: &[u8]) -> std::path::PathBuf {
    let p = dir.join("b.tar.zst");
    std::fs::write(&p, bytes).unwrap();
    p
}

fn read_all(r: impl Read) -> Vec<u8> {
    let mut out = Vec::new();
    let mut r = r;
    r.read_to_end(&mut out).unwrap();
    out
}

#[test]
fn every_entry_reads_back_through_the_seek_table() {
    let fx = big_fixture();
    let entries = fx.entries();
    let dir = tempfile::tempdir().unwrap();
    let path = to_file(dir.path(), &write(&entries, 2));
    let (src, index) = open_indexed(&path).unwrap();
    assert!(index.seekable);
    assert!(
        index.frames.len() >= 5,
        "a 3 MiB layer spans several frames: {}",
        index.frames.len()
    );
    assert!(index.frames.iter().all(|f| f.d_size <= FRAME_SIZE as u64));
    let names: Vec<&str> = index.entries.iter().map(|e| e.name.as_str()).collect();
    let expected: Vec<&str> = entries.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, expected);
    for (name, data) in &entries {
        let loc = index.entry(name).unwrap();
        assert_eq!(loc.size, data.len() as u64, "{name}");
        let got = read_all(read_range(src.clone(), &index, loc.offset, loc.size).unwrap());
        assert!(got == *data, "{name} reads back as stored");
    }
    // A range in the middle of the big layer, crossing a frame boundary.
    let layer = &fx.layers[0];
    let loc = index.entry(&blob_entry_name(&Digest::of(layer))).unwrap();
    let (from, len) = (FRAME_SIZE as u64 - 100, 1000u64);
    let got = read_all(read_range(src.clone(), &index, loc.offset + from, len).unwrap());
    assert_eq!(got, layer[from as usize..(from + len) as usize]);
}

#[test]
fn plain_zstd_and_the_stream_reader_see_only_the_tar() {
    let fx = big_fixture();
    let bundle = write(&fx.entries(), 2);
    let tar = decompress(&bundle);
    let mut archive = tar::Archive::new(&tar[..]);
    let n = archive.entries().unwrap().count();
    assert_eq!(n, fx.entries().len());
    let r = verify(&bundle[..]).unwrap();
    assert_eq!(r.blobs, 4);
}

#[test]
fn output_does_not_depend_on_the_thread_count() {
    // Stored layers between compressed entries: a stored frame waits for the compressed
    // ones still in the pool before it.
    for fx in [big_fixture(), two_big_layers()] {
        let a = write(&fx.entries(), 0);
        for threads in [1, 3] {
            let b = write(&fx.entries(), threads);
            assert!(a == b, "same input, same bytes, whatever the parallelism");
        }
        assert!(decompress(&a) == fx.tar(), "the stream is exactly the tar");
    }
}

#[test]
fn verify_path_checks_the_table_against_the_stream() {
    let fx = big_fixture();
    let dir = tempfile::tempdir().unwrap();
    let path = to_file(dir.path(), &write(&fx.entries(), 2));
    let r = verify_path(&path).unwrap();
    assert!(r.seekable);
}

#[test]
fn a_bundle_without_a_seek_table_is_still_read_and_served() {
    let fx = big_fixture();
    // What an older airgap wrote (one frame) or `zstd -d | zstd` makes of a bundle.
    let old = compress(&decompress(&write(&fx.entries(), 0)));
    let dir = tempfile::tempdir().unwrap();
    let path = to_file(dir.path(), &old);
    let r = verify_path(&path).unwrap();
    assert!(!r.seekable);
    let (src, index) = open_indexed(&path).unwrap();
    assert!(!index.seekable);
    for (name, data) in fx.entries() {
        let loc = index.entry(&name).unwrap();
        let got = read_all(read_range(src.clone(), &index, loc.offset, loc.size).unwrap());
        assert!(got == data, "{name}");
    }
}

/// Offset of the last occurrence of `needle` in `hay`.
fn rfind(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len())
        .rposition(|w| w == needle)
        .unwrap()
}

#[test]
fn a_moved_entry_in_the_index_fails_verify() {
    let fx = big_fixture();
    let mut bundle = write(&fx.entries(), 0);
    // Change one digit of an offset: valid JSON, wrong place.
    let at = rfind(&bundle, b"\"offset\":") + b"\"offset\":".len();
    bundle[at] = if bundle[at] == b'1' { b'2' } else { b'1' };
    let dir = tempfile::tempdir().unwrap();
    let path = to_file(dir.path(), &bundle);
    let e = verify_path(&path).unwrap_err().to_string();
    assert!(
        e.contains("seek table") && (e.contains("disagrees") || e.contains("beyond")),
        "{e}"
    );
}

#[test]
fn a_damaged_seek_table_is_refused_not_ignored() {
    let fx = big_fixture();
    let bundle = write(&fx.entries(), 0);
    let dir = tempfile::tempdir().unwrap();
    // The first frame's compressed size, in the table's first entry (8 bytes after its
    // skippable-frame header, found by the table magic).
    let table = rfind(&bundle, &0x184D_2A5Eu32.to_le_bytes());
    let mut bad = bundle.clone();
    bad[table + 8] ^= 0x01;
    let path = to_file(dir.path(), &bad);
    let src = super::seek::open_read_at(&path).unwrap();
    // The frames no longer end where the entry index starts.
    let e = read_trailer(src.as_ref()).unwrap_err().to_string();
    assert!(e.contains("seek table") && e.contains("entry index"), "{e}");
    assert!(verify_path(&path).is_err());
    assert!(open_indexed(&path).is_err());

    // The entry index frame's JSON broken.
    let mut bad = bundle.clone();
    let at = rfind(&bad, b"airgapEntryIndex");
    bad[at] = b'{';
    let path = to_file(dir.path(), &bad);
    let e = open_indexed(&path).err().unwrap().to_string();
    assert!(e.contains("entry index is not valid"), "{e}");
    assert!(verify_path(&path).is_err());
}

#[test]
fn a_cut_trailer_fails_verify() {
    let fx = big_fixture();
    let bundle = write(&fx.entries(), 0);
    let dir = tempfile::tempdir().unwrap();
    for cut in [1usize, 9, 20] {
        let path = to_file(dir.path(), &bundle[..bundle.len() - cut]);
        let e = verify_path(&path).unwrap_err().to_string();
        assert!(
            e.contains("truncated") || e.contains("end of the bundle"),
            "cut {cut}: {e}"
        );
    }
}

/// Footer bytes: frame count, descriptor, seekable magic.
fn footer(n: u32) -> Vec<u8> {
    let mut f = n.to_le_bytes().to_vec();
    f.push(0);
    f.extend_from_slice(&0x8F92_EAB1u32.to_le_bytes());
    f
}

#[test]
fn a_trailer_claiming_absurd_frame_counts_is_refused_before_allocating() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = compress(b"x");
    bytes.extend_from_slice(&footer(u32::MAX));
    let path = to_file(dir.path(), &bytes);
    let src = super::seek::open_read_at(&path).unwrap();
    let e = read_trailer(src.as_ref()).unwrap_err().to_string();
    assert!(e.contains("implausible"), "{e}");
}

#[test]
fn a_seekable_file_from_another_tool_reads_as_a_plain_bundle() {
    // Frames and a seek table, but no entry index of ours: what a seekable zstd recompression
    // of a bundle looks like.
    let fx = big_fixture();
    let tar = decompress(&write(&fx.entries(), 0));
    let mut out = Vec::new();
    let mut sizes = Vec::new();
    for chunk in tar.chunks(FRAME_SIZE) {
        let z = zstd::bulk::compress(chunk, 3).unwrap();
        sizes.push((z.len() as u32, chunk.len() as u32));
        out.extend_from_slice(&z);
    }
    out.extend_from_slice(&0x184D_2A5Eu32.to_le_bytes());
    out.extend_from_slice(&((sizes.len() * 8 + 9) as u32).to_le_bytes());
    for (c, d) in &sizes {
        out.extend_from_slice(&c.to_le_bytes());
        out.extend_from_slice(&d.to_le_bytes());
    }
    out.extend_from_slice(&footer(sizes.len() as u32));
    let dir = tempfile::tempdir().unwrap();
    let path = to_file(dir.path(), &out);
    let src = super::seek::open_read_at(&path).unwrap();
    assert!(read_trailer(src.as_ref()).unwrap().is_none());
    let r = verify_path(&path).unwrap();
    assert!(!r.seekable);
    let (src, index) = open_indexed(&path).unwrap();
    let layer = &fx.layers[1];
    let loc = index.entry(&blob_entry_name(&Digest::of(layer))).unwrap();
    let got = read_all(read_range(src, &index, loc.offset, loc.size).unwrap());
    assert!(got == *layer);
}

/// A bundle in memory that counts the bytes read from it.
struct Counted {
    bytes: Vec<u8>,
    read: std::sync::atomic::AtomicU64,
}

impl super::seek::ReadAt for Counted {
    fn len(&self) -> u64 {
        self.bytes.len() as u64
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
        let start = (offset as usize).min(self.bytes.len());
        let n = buf.len().min(self.bytes.len() - start);
        buf[..n].copy_from_slice(&self.bytes[start..start + n]);
        self.read
            .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(n)
    }
}

/// Records what a reader hands it; reads every blob, or skips those over 1 MiB.
#[derive(Default)]
struct Recorder {
    skip_big: bool,
    entries: Vec<super::seek::EntryLoc>,
    blobs: Vec<(Digest, Option<Vec<u8>>)>,
}

impl Visitor for Recorder {
    fn head(&mut self, _: &Head) -> Result<Flow, BundleError> {
        Ok(Flow::Continue)
    }
    fn blob(
        &mut self,
        record: &BlobRecord,
        content: &mut BlobContent<'_>,
    ) -> Result<Flow, BundleError> {
        if self.skip_big && record.size > FRAME_SIZE as u64 {
            content.skip();
            self.blobs.push((record.digest.clone(), None));
        } else {
            let mut all = Vec::new();
            content
                .read_to_end(&mut all)
                .map_err(|e| BundleError::Visitor(e.to_string()))?;
            self.blobs.push((record.digest.clone(), Some(all)));
        }
        Ok(Flow::Continue)
    }
    fn entry(&mut self, location: &super::seek::EntryLoc) {
        self.entries.push(location.clone());
    }
}

fn indexed(bytes: Vec<u8>) -> (Arc<Counted>, Arc<super::seek::SeekIndex>) {
    let src = Arc::new(Counted {
        bytes,
        read: Default::default(),
    });
    let index = read_trailer(src.as_ref()).unwrap().expect("a seek table");
    (src, Arc::new(index))
}

/// Two big layers (several frames each) between small blobs, so that skips land in the
/// middle of frames as well as on later ones.
fn two_big_layers() -> Fixture {
    let config = br#"{"architecture":"arm64","os":"linux"}"#.to_vec();
    let layers = vec![
        noise(21, 4000),
        noise(22, 3 * FRAME_SIZE + 777),
        noise(23, 9000),
        noise(24, 2 * FRAME_SIZE + 5),
        noise(25, 100),
        // Header and content end exactly at a frame's end: a skip lands on the boundary.
        noise(26, 2 * FRAME_SIZE - 512),
        noise(27, 700),
    ];
    let manifest = manifest_json(
        descriptor(CONFIG_TYPE, &config),
        layers.iter().map(|l| descriptor(LAYER_TYPE, l)).collect(),
    );
    Fixture::assemble(config, layers, manifest)
}

#[test]
fn the_indexed_reader_jumps_over_skipped_blobs_and_hands_on_the_rest_unchanged() {
    let bundle = write(&two_big_layers().entries(), 2);
    let mut plain = Recorder::default();
    read_bundle(&bundle[..], &mut plain).unwrap();

    // Everything read: the same entries, positions and bytes as the plain stream.
    let (src, index) = indexed(bundle.clone());
    let mut all = Recorder::default();
    read_bundle_indexed(src.clone(), index.clone(), &mut all).unwrap();
    assert_eq!(all.entries, plain.entries);
    assert!(all.blobs == plain.blobs);

    // Big blobs skipped: the small ones still come, verified, and the big ones' frames are
    // not read (only the frame where each skip lands, partly).
    let (src, index) = indexed(bundle.clone());
    let mut skipping = Recorder {
        skip_big: true,
        ..Recorder::default()
    };
    read_bundle_indexed(src.clone(), index, &mut skipping).unwrap();
    assert_eq!(skipping.entries, plain.entries);
    let big: usize = plain
        .blobs
        .iter()
        .filter_map(|(_, b)| b.as_ref())
        .filter(|b| b.len() > FRAME_SIZE)
        .map(Vec::len)
        .sum();
    assert!(big >= 7 * FRAME_SIZE - 512);
    let read = src.read.load(std::sync::atomic::Ordering::Relaxed) as usize;
    // At most the frame where each of the three skips lands is read, partly.
    assert!(
        read < bundle.len() - big + 3 * FRAME_SIZE + 64 * 1024,
        "{read} of {} bytes read, {big} of them in skipped blobs",
        bundle.len()
    );
    for ((d, got), (pd, want)) in skipping.blobs.iter().zip(&plain.blobs) {
        assert_eq!(d, pd);
        match got {
            None => assert!(want.as_ref().unwrap().len() > FRAME_SIZE),
            Some(g) => assert!(Some(g) == want.as_ref(), "{d}"),
        }
    }
}

#[test]
fn the_indexed_reader_still_fails_on_damage_where_it_reads() {
    let fx = two_big_layers();
    let bundle = write(&fx.entries(), 2);
    let (_, index) = indexed(bundle.clone());
    // A byte in the frame holding the first (small) layer: its content or the tar around it.
    let victim = index.frames[0];
    let mut bad = bundle.clone();
    bad[(victim.c_off + victim.c_size / 2) as usize] ^= 0x55;
    let (src, index) = indexed(bad);
    let mut v = Recorder {
        skip_big: true,
        ..Recorder::default()
    };
    let e = read_bundle_indexed(src, index, &mut v).unwrap_err();
    assert!(
        matches!(
            e,
            BundleError::DigestMismatch { .. } | BundleError::Corrupt { .. }
        ),
        "{e:?}"
    );

    // Cut short: an error, not a short success.
    let (_, index) = indexed(bundle.clone());
    let table_start = index.data_end as usize;
    let mut cut = bundle[..table_start / 2].to_vec();
    cut.extend_from_slice(&bundle[table_start..]);
    let src = Arc::new(Counted {
        bytes: cut,
        read: Default::default(),
    });
    let e = read_bundle_indexed(src, index, &mut Recorder::default()).unwrap_err();
    assert!(
        matches!(&e, BundleError::Corrupt { reason, .. } if reason.contains("shorter than its seek table")),
        "{e:?}"
    );
}

#[test]
fn a_raw_frame_is_a_zstd_frame_of_its_bytes() {
    for len in [0, 1, 511, 128 << 10, (128 << 10) + 1, FRAME_SIZE] {
        let data = noise(len as u64, len);
        let mut frame = Vec::new();
        let n = super::frames::write_raw_frame(&mut frame, &data).unwrap();
        assert_eq!(n, frame.len());
        assert!(
            matches!(
                zstd::zstd_safe::get_frame_content_size(&frame[..frame.len().min(18)]),
                Ok(Some(n)) if n == len as u64
            ),
            "{len}"
        );
        assert!(zstd::decode_all(&frame[..]).unwrap() == data, "{len}");
        // Frame header and one 3-byte header per block of at most 128 KiB, nothing else.
        assert_eq!(frame.len(), 9 + len + 3 * len.div_ceil(128 << 10).max(1));
    }
}

/// Content added as already compressed is stored in raw blocks when zstd gains nothing on
/// it (noise), and still compressed when it does (a mislabelled, compressible layer); both
/// read back and verify.
#[test]
fn precompressed_content_is_stored_only_when_compressing_gains_nothing() {
    let noisy = noise(31, 3 * FRAME_SIZE);
    let text: Vec<u8> = (0..3 * FRAME_SIZE)
        .map(|i| b"layer.tar of config files\n"[i % 26])
        .collect();
    for (what, data, stored) in [("noise", noisy, true), ("text", text, false)] {
        let config = br#"{"architecture":"amd64","os":"linux"}"#.to_vec();
        let layers = vec![data.clone()];
        let manifest = manifest_json(
            descriptor(CONFIG_TYPE, &config),
            layers.iter().map(|l| descriptor(LAYER_TYPE, l)).collect(),
        );
        let fx = Fixture::assemble(config, layers, manifest);
        let dir = tempfile::tempdir().unwrap();
        let path = to_file(dir.path(), &write(&fx.entries(), 2));
        let (src, index) = open_indexed(&path).unwrap();
        let name = blob_entry_name(&Digest::of(&data));
        let loc = index.entry(&name).unwrap().clone();
        let got = read_all(read_range(src.clone(), &index, loc.offset, loc.size).unwrap());
        assert!(got == data, "{what} reads back");
        // The frames wholly inside the layer.
        let inner: Vec<_> = index
            .frames
            .iter()
            .filter(|f| f.d_off >= loc.offset && f.d_off + f.d_size <= loc.offset + loc.size)
            .collect();
        assert!(inner.len() >= 2, "{what}: {inner:?}");
        for f in inner {
            let raw_size = 9 + f.d_size + 3 * f.d_size.div_ceil(128 << 10);
            if stored {
                assert_eq!(f.c_size, raw_size, "{what}: {f:?}");
            } else {
                assert!(f.c_size < f.d_size / 10, "{what}: {f:?}");
            }
        }
        super::seek::check_frames(src.as_ref(), &index).unwrap();
        assert!(verify_path(&path).unwrap().seekable, "{what}");
    }
}

/// Blob entries are written by hand (header, content, padding) rather than by `tar`: the
/// stream must be exactly what `tar::Builder` makes of the same entries.
#[test]
fn the_stream_is_the_tar_that_tar_builder_writes() {
    for fx in [big_fixture(), two_big_layers()] {
        let entries = fx.entries();
        let mut expected = tar::Builder::new(Vec::new());
        for (name, data) in &entries {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_mtime(0);
            h.set_uid(0);
            h.set_gid(0);
            h.set_entry_type(tar::EntryType::Regular);
            expected.append_data(&mut h, name, &data[..]).unwrap();
        }
        let expected = expected.into_inner().unwrap();
        for threads in [0, 2] {
            assert!(
                decompress(&write(&entries, threads)) == expected,
                "{threads} threads"
            );
        }
    }
}

/// A stored section ends with the layer that was sampled: what follows and is not known to be
/// compressed is compressed again, even at the same level.
#[test]
fn a_stored_layer_does_not_leave_what_follows_stored() {
    let layer = noise(41, 2 * FRAME_SIZE);
    let text: Vec<u8> = (0..20_000).map(|i| b"key: value\n"[i % 11]).collect();
    let (dl, dt) = (Digest::of(&layer), Digest::of(&text));
    let mut w = BundleWriter::new(Vec::new(), 1, 0).unwrap();
    w.add_file(LAYOUT_NAME, b"{}").unwrap();
    w.add_compressed_blob(&dl, layer.len() as u64, &layer[..], true)
        .unwrap();
    w.add_blob(&dt, text.len() as u64, &text[..], true).unwrap();
    let bytes = w.finish().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (_, index) = open_indexed(&to_file(dir.path(), &bytes)).unwrap();
    let loc = index.entry(&blob_entry_name(&dt)).unwrap();
    let frame = index
        .frames
        .iter()
        .find(|f| f.d_off <= loc.offset && loc.offset < f.d_off + f.d_size)
        .unwrap();
    assert!(frame.c_size < frame.d_size / 4, "{frame:?}");
}
