use super::*;

fn put(c: &Cache, content: &[u8]) -> Digest {
    let d = Digest::of(content);
    c.put_bytes(&d, content).unwrap();
    d
}

#[test]
fn entries_verify_on_reuse_and_a_flipped_byte_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    let c = Cache::open(dir.path()).unwrap();
    let d = put(&c, b"hello cache");
    assert!(matches!(c.lookup(&d, 11).unwrap(), Lookup::Hit(_)));
    std::fs::write(c.blob_path(&d), b"hellO cache").unwrap();
    assert!(matches!(c.lookup(&d, 11).unwrap(), Lookup::Corrupt(_)));
    assert!(!c.blob_path(&d).exists());
    assert!(matches!(c.lookup(&d, 11).unwrap(), Lookup::Miss));
}

#[test]
fn a_partial_keeps_its_prefix_and_commits_into_an_entry() {
    let dir = tempfile::tempdir().unwrap();
    let c = Cache::open(dir.path()).unwrap();
    let d = Digest::of(b"abcdef");
    let mut p = c.partial(&d).unwrap().unwrap();
    p.append(b"abc").unwrap();
    drop(p);
    let mut p = c.partial(&d).unwrap().unwrap();
    assert_eq!(p.len(), 3);
    let mut h = p.hasher().unwrap();
    h.update(b"def");
    assert_eq!(h.finish().0, d);
    p.append(b"def").unwrap();
    p.commit().unwrap();
    assert!(matches!(c.lookup(&d, 6).unwrap(), Lookup::Hit(_)));
    assert_eq!(c.info().unwrap().partials, 0);
}

#[test]
fn prune_removes_least_recently_used_first() {
    let dir = tempfile::tempdir().unwrap();
    let c = Cache::open(dir.path()).unwrap();
    let old = put(&c, &[1u8; 100]);
    let mid = put(&c, &[2u8; 100]);
    let new = put(&c, &[3u8; 100]);
    let t = |d: &Digest, secs: u64| {
        let f = File::options().append(true).open(c.blob_path(d)).unwrap();
        let when = SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
        f.set_times(std::fs::FileTimes::new().set_modified(when))
            .unwrap();
    };
    t(&old, 1_000);
    t(&mid, 2_000);
    t(&new, 3_000);
    // Reusing `old` makes it the most recent.
    assert!(matches!(c.lookup(&old, 100).unwrap(), Lookup::Hit(_)));
    let r = c.prune(250).unwrap();
    assert_eq!((r.removed, r.freed, r.kept_bytes), (1, 100, 200));
    assert!(!c.blob_path(&mid).exists());
    assert!(c.blob_path(&old).exists() && c.blob_path(&new).exists());
    assert_eq!(c.info().unwrap().bytes, 200);
}

#[test]
fn a_newer_layout_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(MARKER), b"{\"layout\": 99}").unwrap();
    let e = Cache::open(dir.path()).unwrap_err();
    assert!(e.to_string().contains("layout version 99"), "{e}");
}
