use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use super::*;
use crate::digest::Digest;

const PART: u64 = 1000;

/// Deterministic, non-repeating bytes (so any two parts differ).
fn data(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Writes `bytes` in uneven chunks that straddle part boundaries.
fn write_set(base: &Path, part_size: u64, bytes: &[u8]) -> PartSet {
    let mut w = SplitWriter::create(base, part_size).unwrap();
    let sizes = [7usize, 333, 1000, 2500, 1, 999];
    let mut off = 0;
    let mut i = 0;
    while off < bytes.len() {
        let n = sizes[i % sizes.len()].min(bytes.len() - off);
        w.write_all(&bytes[off..off + n]).unwrap();
        off += n;
        i += 1;
    }
    w.finish().unwrap()
}

/// Reads through small, odd-sized buffers.
fn read_all(r: &mut MultiPartReader) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = [0u8; 77];
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            return Ok(out);
        }
        out.extend_from_slice(&buf[..n]);
    }
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

fn part(i: usize) -> String {
    format!("b.tar.zst.{i:03}")
}

/// A set of 11 parts (10 full, the last 500 bytes) in a fresh directory.
fn fixture() -> (tempfile::TempDir, PathBuf, Vec<u8>, PartSet) {
    let d = tempfile::tempdir().unwrap();
    let base = d.path().join("b.tar.zst");
    let bytes = data(10_500);
    let set = write_set(&base, PART, &bytes);
    (d, base, bytes, set)
}

/// Reads the set through `MultiPartReader`; returns the bytes read before the error, and
/// the error.
fn read_failure(set: PartSet) -> (usize, io::Error) {
    let mut r = MultiPartReader::new(set);
    let mut got = 0;
    let mut buf = [0u8; 77];
    loop {
        match r.read(&mut buf) {
            Ok(0) => panic!("read the whole set without an error"),
            Ok(n) => got += n,
            Err(e) => return (got, e),
        }
    }
}

fn problem_of(e: &io::Error) -> &PartProblem {
    match VolumeError::from_io(e) {
        Some(VolumeError::Part(p)) => p,
        other => panic!("not a part problem: {other:?} ({e})"),
    }
}

#[test]
fn round_trip_across_part_boundaries() {
    let (d, base, bytes, set) = fixture();
    let names: Vec<String> = (1..=11).map(part).collect();
    let mut expected_files = names.clone();
    expected_files.push("b.tar.zst.parts.json".into());
    assert_eq!(names_in(d.path()), expected_files);
    assert_eq!(set.parts.len(), 11);
    assert_eq!(set.part_count, 11);
    assert_eq!(set.total_size, 10_500);
    assert_eq!(set.part_size, PART);
    assert_eq!(set.sha256, Some(Digest::of(&bytes)));
    for (i, p) in set.parts.iter().enumerate() {
        let chunk = &bytes[i * 1000..((i + 1) * 1000).min(bytes.len())];
        assert_eq!(p.name, names[i]);
        assert_eq!(p.size, chunk.len() as u64);
        assert_eq!(p.sha256, Some(Digest::of(chunk)));
        assert_eq!(fs::read(set.part_path(i)).unwrap(), chunk);
    }
    assert_eq!(set.base_path(), base);
    let mut r = MultiPartReader::new(set.clone());
    assert_eq!(read_all(&mut r).unwrap(), bytes);
    assert_eq!(r.position(), 10_500);
    assert!(check_parts(&set).is_empty());
}

#[test]
fn sidecar_is_the_documented_json() {
    let (_d, base, bytes, set) = fixture();
    let text = fs::read_to_string(format!("{}.parts.json", base.display())).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["formatVersion"], 1);
    assert_eq!(v["base"], "b.tar.zst");
    assert_eq!(v["partSize"], 1000);
    assert_eq!(v["partCount"], 11);
    assert_eq!(v["totalSize"], 10_500);
    assert_eq!(v["sha256"], Digest::of(&bytes).as_str());
    assert_eq!(v["parts"][1]["name"], "b.tar.zst.002");
    assert_eq!(v["parts"][1]["size"], 1000);
    assert_eq!(
        v["parts"][1]["sha256"],
        Digest::of(&bytes[1000..2000]).as_str()
    );
    assert_eq!(v["parts"][10]["size"], 500);
    // No directory leaks into it.
    assert!(!text.contains(&*base.parent().unwrap().to_string_lossy()));
    assert_eq!(open_set(&base).unwrap(), set);
}

#[test]
fn exact_multiple_has_no_empty_trailing_part() {
    let d = tempfile::tempdir().unwrap();
    let base = d.path().join("b.tar.zst");
    let bytes = data(10_000);
    let set = write_set(&base, PART, &bytes);
    assert_eq!(set.parts.len(), 10);
    assert!(set.parts.iter().all(|p| p.size == PART));
    assert!(!d.path().join(part(11)).exists());
    assert_eq!(names_in(d.path()).len(), 11); // 10 parts and the sidecar
    let mut r = MultiPartReader::new(open_set(&base).unwrap());
    assert_eq!(read_all(&mut r).unwrap(), bytes);
}

#[test]
fn parts_are_hidden_until_finish_and_removed_on_drop() {
    let d = tempfile::tempdir().unwrap();
    let base = d.path().join("b.tar.zst");
    let mut w = SplitWriter::create(&base, PART).unwrap();
    w.write_all(&data(2500)).unwrap();
    w.flush().unwrap();
    assert_eq!(w.bytes_written(), 2500);
    // Written as it goes (three part files exist), but under temporary names only.
    let names = names_in(d.path());
    assert_eq!(names.len(), 1, "{names:?}");
    assert!(names[0].starts_with(".b.tar.zst.split-"), "{names:?}");
    assert_eq!(names_in(&d.path().join(&names[0])).len(), 3);
    drop(w);
    assert!(names_in(d.path()).is_empty());
}

#[test]
fn finishing_an_empty_stream_is_an_error_and_leaves_nothing() {
    let d = tempfile::tempdir().unwrap();
    let base = d.path().join("b.tar.zst");
    let w = SplitWriter::create(&base, PART).unwrap();
    let e = w.finish().unwrap_err();
    assert!(matches!(e, VolumeError::Empty { .. }), "{e}");
    assert!(e.to_string().contains("b.tar.zst"), "{e}");
    assert!(names_in(d.path()).is_empty());
    assert!(matches!(
        SplitWriter::create(&base, 0),
        Err(VolumeError::ZeroPartSize { .. })
    ));
}

#[test]
fn more_than_999_parts_widen_every_number() {
    let d = tempfile::tempdir().unwrap();
    let base = d.path().join("b");
    let bytes = data(1001);
    let set = write_set(&base, 1, &bytes);
    assert_eq!(set.parts.len(), 1001);
    assert_eq!(set.parts[0].name, "b.0001");
    assert_eq!(set.parts[1000].name, "b.1001");
    assert!(!d.path().join("b.001").exists());
    let again = open_set(&d.path().join("b.0500")).unwrap();
    assert_eq!(again, set);
    let mut r = MultiPartReader::new(again);
    assert_eq!(read_all(&mut r).unwrap(), bytes);
}

#[test]
fn finish_removes_leftover_parts_of_an_earlier_set() {
    let d = tempfile::tempdir().unwrap();
    let base = d.path().join("b.tar.zst");
    write_set(&base, PART, &data(4500));
    assert!(d.path().join(part(5)).exists());
    let bytes = data(2100);
    let set = write_set(&base, PART, &bytes);
    assert_eq!(set.parts.len(), 3);
    assert!(!d.path().join(part(4)).exists());
    assert!(!d.path().join(part(5)).exists());
    // Not the continuation of a run from 1: not an earlier set's part, kept.
    fs::write(d.path().join("b.tar.zst.2024"), b"mine").unwrap();
    write_set(&base, PART, &bytes);
    assert!(d.path().join("b.tar.zst.2024").exists());
    fs::remove_file(d.path().join("b.tar.zst.2024")).unwrap();
    fs::remove_file(set.sidecar_path()).unwrap();
    // Found by name alone: exactly the new three.
    let found = open_set(&base).unwrap();
    assert_eq!(found.parts.len(), 3);
    assert_eq!(read_all(&mut MultiPartReader::new(found)).unwrap(), bytes);
}

#[test]
fn missing_part() {
    let (_d, _base, _bytes, set) = fixture();
    fs::remove_file(set.part_path(3)).unwrap();
    assert_eq!(
        check_parts(&set),
        vec![PartProblem::Missing { name: part(4) }]
    );
    let (got, e) = read_failure(set);
    assert_eq!(got, 3000);
    assert_eq!(e.kind(), io::ErrorKind::NotFound);
    assert!(e.to_string().contains(&part(4)), "{e}");
    assert_eq!(problem_of(&e), &PartProblem::Missing { name: part(4) });
}

#[test]
fn truncated_part() {
    let (_d, _base, _bytes, set) = fixture();
    let f = fs::OpenOptions::new()
        .write(true)
        .open(set.part_path(4))
        .unwrap();
    f.set_len(600).unwrap();
    drop(f);
    let want = PartProblem::WrongSize {
        name: part(5),
        expected: 1000,
        actual: 600,
    };
    assert_eq!(check_parts(&set), vec![want.clone()]);
    let (got, e) = read_failure(set);
    assert!(got <= 4600, "{got}");
    assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
    assert!(e.to_string().contains(&part(5)), "{e}");
    assert!(e.to_string().contains("truncated"), "{e}");
    assert_eq!(problem_of(&e), &want);
}

#[test]
fn part_with_extra_bytes() {
    let (_d, _base, _bytes, set) = fixture();
    let mut f = fs::OpenOptions::new()
        .append(true)
        .open(set.part_path(1))
        .unwrap();
    f.write_all(b"x").unwrap();
    drop(f);
    let want = PartProblem::WrongSize {
        name: part(2),
        expected: 1000,
        actual: 1001,
    };
    assert_eq!(check_parts(&set), vec![want.clone()]);
    let (got, e) = read_failure(set);
    assert!(got < 2000, "{got}");
    assert_eq!(problem_of(&e), &want);
}

#[test]
fn flipped_byte_in_part_2() {
    let (_d, _base, _bytes, set) = fixture();
    let p = set.part_path(1);
    let mut b = fs::read(&p).unwrap();
    b[123] ^= 0x01;
    fs::write(&p, b).unwrap();
    let want = PartProblem::Corrupt { name: part(2) };
    assert_eq!(check_parts(&set), vec![want.clone()]);
    let (got, e) = read_failure(set);
    // Caught at the part's end, before its last bytes are handed out.
    assert!((1000..2000).contains(&got), "{got}");
    assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    assert!(e.to_string().contains(&part(2)), "{e}");
    assert_eq!(problem_of(&e), &want);
}

#[test]
fn two_parts_swapped() {
    let (_d, _base, _bytes, set) = fixture();
    let (p2, p3) = (set.part_path(1), set.part_path(2));
    let tmp = p2.with_extension("swap");
    fs::rename(&p2, &tmp).unwrap();
    fs::rename(&p3, &p2).unwrap();
    fs::rename(&tmp, &p3).unwrap();
    assert_eq!(
        check_parts(&set),
        vec![
            PartProblem::OutOfOrder {
                name: part(2),
                belongs_at: part(3)
            },
            PartProblem::OutOfOrder {
                name: part(3),
                belongs_at: part(2)
            },
        ]
    );
    let (got, e) = read_failure(set);
    assert!((1000..2000).contains(&got), "{got}");
    assert!(e.to_string().contains(&part(2)), "{e}");
    assert_eq!(
        problem_of(&e),
        &PartProblem::OutOfOrder {
            name: part(2),
            belongs_at: part(3)
        }
    );
}

#[test]
fn last_part_swapped_with_a_shorter_size_is_out_of_order() {
    let (_d, _base, _bytes, set) = fixture();
    let (p10, p11) = (set.part_path(9), set.part_path(10));
    let tmp = p10.with_extension("swap");
    fs::rename(&p10, &tmp).unwrap();
    fs::rename(&p11, &p10).unwrap();
    fs::rename(&tmp, &p11).unwrap();
    let problems = check_parts(&set);
    assert_eq!(
        problems,
        vec![
            PartProblem::OutOfOrder {
                name: part(10),
                belongs_at: part(11)
            },
            PartProblem::OutOfOrder {
                name: part(11),
                belongs_at: part(10)
            },
        ]
    );
}

#[test]
fn errors_stick_after_a_failure() {
    let (_d, _base, _bytes, set) = fixture();
    fs::remove_file(set.part_path(0)).unwrap();
    let mut r = MultiPartReader::new(set);
    let mut buf = [0u8; 10];
    let e1 = r.read(&mut buf).unwrap_err();
    let e2 = r.read(&mut buf).unwrap_err();
    assert_eq!(e1.to_string(), e2.to_string());
    assert!(e2.to_string().contains(&part(1)));
}

#[test]
fn open_set_from_any_name() {
    let (d, base, bytes, set) = fixture();
    let dir = d.path();
    for p in [
        dir.join(part(1)),
        dir.join(part(3)),
        dir.join("b.tar.zst.parts.json"),
        base.clone(),
        dir.join("b.tar.zst.*"),
    ] {
        let got = open_set(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        assert_eq!(got, set, "from {}", p.display());
        assert_eq!(got.sidecar.as_deref(), Some(&*set.sidecar_path()));
        assert!(is_split(&p), "{}", p.display());
        let mut r = MultiPartReader::open(&p).unwrap();
        assert_eq!(read_all(&mut r).unwrap(), bytes);
    }
}

#[test]
fn open_set_errors_name_the_path() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("nothing.tar.zst");
    let e = open_set(&p).unwrap_err();
    assert!(matches!(e, VolumeError::NotFound { .. }), "{e}");
    let msg = e.to_string();
    assert!(msg.contains("nothing.tar.zst.parts.json"), "{msg}");
    assert!(msg.contains("nothing.tar.zst.001"), "{msg}");
    assert!(!is_split(&p));
}

#[test]
fn is_split_tells_a_single_file_bundle() {
    let d = tempfile::tempdir().unwrap();
    let single = d.path().join("single.tar.zst");
    fs::write(&single, b"zstd").unwrap();
    assert!(!is_split(&single));
    // A single file whose name ends in digits is not a part of anything.
    let dated = d.path().join("bundle.2024");
    fs::write(&dated, b"zstd").unwrap();
    assert!(!is_split(&dated));
    // A set of the same base does not turn the single file into a set.
    write_set(&single, PART, &data(1500));
    assert!(!is_split(&single));
    assert!(is_split(&d.path().join("single.tar.zst.002")));
}

#[test]
fn without_sidecar_parts_are_found_by_name() {
    let (_d, base, bytes, set) = fixture();
    fs::remove_file(set.sidecar_path()).unwrap();
    let found = open_set(&base.parent().unwrap().join(part(1))).unwrap();
    assert_eq!(found.sidecar, None);
    assert_eq!(found.sha256, None);
    assert_eq!(found.part_size, PART);
    assert_eq!(found.total_size, 10_500);
    assert_eq!(found.parts.len(), 11);
    assert!(found.parts.iter().all(|p| p.sha256.is_none()));
    assert!(check_parts(&found).is_empty());
    assert_eq!(
        read_all(&mut MultiPartReader::new(found.clone())).unwrap(),
        bytes
    );

    // A truncated middle part is still caught by size.
    let f = fs::OpenOptions::new()
        .write(true)
        .open(set.part_path(1))
        .unwrap();
    f.set_len(10).unwrap();
    drop(f);
    let found = open_set(&base).unwrap();
    let want = PartProblem::WrongSize {
        name: part(2),
        expected: 1000,
        actual: 10,
    };
    assert_eq!(check_parts(&found), vec![want.clone()]);
    assert_eq!(problem_of(&read_failure(found).1), &want);

    // A gap is named.
    fs::remove_file(set.part_path(6)).unwrap();
    let e = open_set(&base).unwrap_err();
    assert!(
        matches!(&e, VolumeError::Part(PartProblem::Missing { name }) if *name == part(7)),
        "{e}"
    );
}

#[test]
fn mixed_widths_without_sidecar_are_refused() {
    let (d, base, _bytes, set) = fixture();
    fs::remove_file(set.sidecar_path()).unwrap();
    fs::write(d.path().join("b.tar.zst.0012"), b"x").unwrap();
    let e = open_set(&base).unwrap_err();
    assert!(matches!(e, VolumeError::Ambiguous { .. }), "{e}");
}

#[test]
fn a_set_renamed_as_a_whole_still_opens() {
    let (d, _base, bytes, set) = fixture();
    for i in 0..set.parts.len() {
        fs::rename(
            set.part_path(i),
            d.path().join(format!("new.tar.zst.{:03}", i + 1)),
        )
        .unwrap();
    }
    fs::rename(set.sidecar_path(), d.path().join("new.tar.zst.parts.json")).unwrap();
    let got = open_set(&d.path().join("new.tar.zst.001")).unwrap();
    assert_eq!(got.base, "new.tar.zst");
    assert_eq!(got.parts[0].name, "new.tar.zst.001");
    assert!(check_parts(&got).is_empty());
    assert_eq!(read_all(&mut MultiPartReader::new(got)).unwrap(), bytes);
}

#[test]
fn sidecar_is_validated() {
    let (_d, base, _bytes, set) = fixture();
    let path = set.sidecar_path();
    let original: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    type Edit = fn(&mut serde_json::Value);
    let cases: Vec<(&str, Edit)> = vec![
        ("is named", |v| {
            v["parts"][1]["name"] = "../../etc/passwd".into()
        }),
        ("partCount", |v| v["partCount"] = 12.into()),
        ("totalSize", |v| v["totalSize"] = 10_501.into()),
        ("listed as", |v| v["parts"][2]["size"] = 999.into()),
        ("no sha256", |v| {
            v["parts"][0].as_object_mut().unwrap().remove("sha256");
        }),
        ("sha256", |v| v["sha256"] = "md5:abc".into()),
        ("no part", |v| v["parts"] = serde_json::json!([])),
    ];
    for (needle, edit) in cases {
        let mut v = original.clone();
        edit(&mut v);
        fs::write(&path, serde_json::to_vec(&v).unwrap()).unwrap();
        let e = open_set(&base).unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, VolumeError::Sidecar { .. }), "{needle}: {msg}");
        assert!(msg.contains("b.tar.zst.parts.json"), "{msg}");
        assert!(msg.contains(needle), "{needle}: {msg}");
    }
    let mut v = original.clone();
    v["formatVersion"] = 2.into();
    fs::write(&path, serde_json::to_vec(&v).unwrap()).unwrap();
    assert!(matches!(
        open_set(&base),
        Err(VolumeError::FutureSidecar { found: 2, .. })
    ));
    // Unknown fields are ignored.
    let mut v = original;
    v["later"] = "field".into();
    fs::write(&path, serde_json::to_vec(&v).unwrap()).unwrap();
    assert_eq!(open_set(&base).unwrap(), set);
}

#[test]
fn parse_size_table() {
    const GIB: u64 = 1 << 30;
    let ok: &[(&str, u64)] = &[
        ("1", 1),
        ("1000", 1000),
        ("512B", 512),
        ("4K", 4096),
        ("4k", 4096),
        ("4KiB", 4096),
        ("4KB", 4000),
        ("4kb", 4000),
        ("512M", 512 << 20),
        ("512MiB", 512 << 20),
        ("512Mi", 512 << 20),
        ("500MB", 500_000_000),
        ("4G", 4 * GIB),
        ("4g", 4 * GIB),
        ("4Gi", 4 * GIB),
        ("4GiB", 4 * GIB),
        ("4 GiB", 4 * GIB),
        (" 4G ", 4 * GIB),
        ("4GB", 4_000_000_000),
        ("1T", 1 << 40),
        ("2TB", 2_000_000_000_000),
        ("1.5G", 3 * GIB / 2),
        ("0.5K", 512),
        ("fat32", FAT32_MAX_FILE),
        ("FAT32", 4 * GIB - 1),
        ("18446744073709551615", u64::MAX),
    ];
    for (input, want) in ok {
        match parse_size(input) {
            Ok(got) => assert_eq!(got, *want, "{input:?}"),
            Err(e) => panic!("{input:?}: {e}"),
        }
    }
    let bad: &[(&str, &str)] = &[
        ("", "expected a number"),
        ("0", "greater than zero"),
        ("0G", "greater than zero"),
        ("0.0", "greater than zero"),
        ("-1G", "expected a number"),
        ("G", "expected a number"),
        ("abc", "expected a number"),
        ("4X", "unknown unit"),
        ("4GG", "unknown unit"),
        ("4 G B", "unknown unit"),
        ("4Gb/s", "unknown unit"),
        ("1.2.3", "not a number"),
        ("4.", "not a number"),
        (".", "not a number"),
        ("0.1K", "whole number"),
        ("1.5", "whole number"),
        ("18446744073709551616", "too large"),
        ("20000000T", "too large"),
        ("99999999999999999999999999", "too large"),
    ];
    for (input, reason) in bad {
        match parse_size(input) {
            Ok(v) => panic!("{input:?} was accepted as {v}"),
            Err(e) => {
                let msg = e.to_string();
                assert!(matches!(e, VolumeError::InvalidSize { .. }), "{msg}");
                assert!(msg.contains(&format!("{input:?}")), "{msg}");
                assert!(msg.contains(reason), "{input:?}: {msg}");
            }
        }
    }
}

#[test]
fn writer_errors_name_the_part() {
    let d = tempfile::tempdir().unwrap();
    let base = d.path().join("b.tar.zst");
    let mut w = SplitWriter::create(&base, PART).unwrap();
    w.write_all(&data(1000)).unwrap();
    // Pull the temporary directory away: the next part cannot be created.
    let tmpdir = fs::read_dir(d.path()).unwrap().next().unwrap().unwrap();
    fs::remove_dir_all(tmpdir.path()).unwrap();
    let e = w.write_all(&data(1000)).unwrap_err();
    assert!(e.to_string().contains("b.tar.zst.002"), "{e}");
    assert!(matches!(
        VolumeError::from_io(&e),
        Some(VolumeError::File(_))
    ));
    // Once a write failed, the set cannot be finished.
    assert!(matches!(w.finish(), Err(VolumeError::Poisoned { .. })));
    assert!(!d.path().join(part(1)).exists());
}

#[test]
fn io_errors_name_action_and_path_and_keep_the_os_error_as_source() {
    use std::error::Error as _;
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("missing-dir");
    let e = open_set(&dir.join("b.tar.zst")).unwrap_err();
    assert_eq!(e.to_string(), format!("listing {}", dir.display()));
    let source = e.source().expect("the OS error").to_string();
    assert!(source.contains("No such file or directory"), "{source}");

    // A part that cannot be read (a directory): the reader's error spells out the OS error
    // once, with no source to repeat it.
    let (_d, _base, _bytes, set) = fixture();
    let p2 = set.part_path(1);
    fs::remove_file(&p2).unwrap();
    fs::create_dir(&p2).unwrap();
    let (got, e) = read_failure(set);
    assert_eq!(got, 1000);
    let want = format!("reading {}: ", p2.display());
    assert!(e.to_string().starts_with(&want), "{e}");
    assert!(e.to_string().contains("os error"), "{e}");
    assert!(e.source().is_none());
    let inner = VolumeError::from_io(&e).expect("carries the VolumeError");
    assert!(matches!(inner, VolumeError::File(_)), "{inner:?}");
    assert_eq!(inner.to_string(), format!("reading {}", p2.display()));
    assert!(inner.source().unwrap().to_string().contains("os error"));
}

#[test]
fn messages_hold_no_advice_and_hints_carry_it() {
    use std::error::Error as _;
    let e = VolumeError::FileTooLarge {
        path: PathBuf::from("/media/usb/b.tar.zst.001"),
        written: FAT32_MAX_FILE,
        source: io::Error::from(io::ErrorKind::FileTooLarge),
    };
    assert_eq!(
        e.to_string(),
        "writing /media/usb/b.tar.zst.001: the file system refused to grow the file past \
         4294967295 bytes"
    );
    assert!(e.source().is_some());
    assert!(e.hint().unwrap().contains("fat32"));

    let e = parse_size("4X").unwrap_err();
    assert_eq!(e.to_string(), r#"invalid size "4X": unknown unit "X""#);
    assert!(e.hint().unwrap().contains("KiB"));

    let (_d, base, _bytes, set) = fixture();
    let mut v: serde_json::Value =
        serde_json::from_slice(&fs::read(set.sidecar_path()).unwrap()).unwrap();
    v["formatVersion"] = 2.into();
    fs::write(set.sidecar_path(), serde_json::to_vec(&v).unwrap()).unwrap();
    let e = open_set(&base).unwrap_err();
    assert!(!e.to_string().contains("upgrade"), "{e}");
    assert!(e.hint().unwrap().contains("upgrade"));
    assert!(VolumeError::Part(PartProblem::Missing { name: part(1) })
        .hint()
        .is_none());
}
