//! Tampering with a registry's filesystem storage behind its back: distribution serves a
//! blob's `data` file as it finds it, so a changed byte there makes the registry answer
//! content that does not match the digest it names.

use std::path::PathBuf;

use super::Registry;

/// `<storage>/docker/registry/v2/blobs/sha256/<2 hex>/<hex>/data` of `digest`.
pub fn blob_data_path(reg: &Registry, digest: &str) -> PathBuf {
    let hex = super::digest_hex(digest);
    reg.storage_dir()
        .join("docker/registry/v2/blobs/sha256")
        .join(&hex[..2])
        .join(hex)
        .join("data")
}

/// Flips every bit of the byte at `offset` of the stored blob `digest` (size unchanged).
pub fn flip_blob_byte(reg: &Registry, digest: &str, offset: usize) {
    let p = blob_data_path(reg, digest);
    let mut bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()));
    assert!(offset < bytes.len(), "{} is too short", p.display());
    bytes[offset] ^= 0xff;
    std::fs::write(&p, &bytes).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
}

/// Replaces the first occurrence of `from` by `to` (same length) in the stored blob
/// `digest`, so that JSON stays JSON but the bytes no longer hash to `digest`.
pub fn replace_in_blob(reg: &Registry, digest: &str, from: &[u8], to: &[u8]) {
    assert_eq!(from.len(), to.len(), "the replacement must keep the size");
    let p = blob_data_path(reg, digest);
    let mut bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()));
    let i = bytes
        .windows(from.len())
        .position(|w| w == from)
        .unwrap_or_else(|| {
            panic!(
                "{:?} not found in {}",
                String::from_utf8_lossy(from),
                p.display()
            )
        });
    bytes[i..i + to.len()].copy_from_slice(to);
    std::fs::write(&p, &bytes).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
}
