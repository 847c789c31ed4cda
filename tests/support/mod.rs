//! Test harness shared by the integration tests: throw-away registries (`registry`), TLS
//! material (`tls`), image fixtures pushed over plain HTTP (`fixtures`), an independent
//! client to check what landed (`skopeo`), bundle reading and corruption (`bundle`) and
//! running the real `airgap` binary (`cli`).
//!
//! Every integration test file does `mod support;`, so each one compiles its own copy and
//! uses only part of it.
#![allow(dead_code)]

pub mod bundle;
pub mod cli;
pub mod containerd;
pub mod cosign;
pub mod fixtures;
pub mod forward_proxy;
pub mod proxy;
pub mod registry;
pub mod shaping;
pub mod skopeo;
pub mod storage;
pub mod tls;
pub mod token;

use std::path::{Path, PathBuf};

#[allow(unused_imports)]
pub use bundle::*;
#[allow(unused_imports)]
pub use cli::*;
#[allow(unused_imports)]
pub use fixtures::*;
#[allow(unused_imports)]
pub use registry::*;
#[allow(unused_imports)]
pub use skopeo::*;

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    use sha2::{Digest as _, Sha256};
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// The hex part of `sha256:<hex>`.
pub fn digest_hex(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap_or(digest)
}

/// A loopback port free a moment ago (the caller binds it next; another process could take it
/// first, which a caller starting a server should treat as a failed start).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a loopback port")
        .port()
}

/// `dir/users`, made by Apache's `htpasswd FLAG -b -c` (`-B`: bcrypt) for one user.
pub fn htpasswd_file(dir: &Path, flag: &str, user: &str, password: &str) -> PathBuf {
    let file = dir.join("users");
    let out = std::process::Command::new("htpasswd")
        .args([flag, "-b", "-c"])
        .arg(&file)
        .args([user, password])
        .output()
        .expect("htpasswd (apache2-utils) is installed by scripts/install-deps.sh");
    assert!(out.status.success(), "{out:?}");
    file
}

/// A fresh temporary directory, removed when dropped.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("airgap-test-")
        .tempdir()
        .expect("create a temporary directory")
}

/// Writes `text` to `dir/name` and returns the path.
pub fn write_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(&p, text).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
    p
}

/// Reads and parses a JSON file, panicking with the path and the text on error.
pub fn read_json(path: &Path) -> serde_json::Value {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not JSON ({e}):\n{text}", path.display()))
}

/// The names of the entries of `dir` (not recursive), sorted.
pub fn dir_names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read dir {}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Asserts that `path` does not exist (a failed pack must not leave a bundle behind).
pub fn assert_no_file(path: &Path) {
    assert!(
        !path.exists(),
        "{} exists but the command failed: nothing may be left at the output path",
        path.display()
    );
}

/// Builds an airgap.yaml spec.
#[derive(Default, Clone)]
pub struct Spec {
    images: Vec<String>,
    sources: Vec<String>,
    registries: Vec<(String, String)>,
    platforms: Vec<String>,
}

fn yaml_str(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

impl Spec {
    pub fn new() -> Self {
        Self::default()
    }
    /// `- image: REF`
    pub fn image(mut self, reference: &str) -> Self {
        self.images
            .push(format!("  - image: {}\n", yaml_str(reference)));
        self
    }
    /// `- source: S` / `name: N` / `tag: T`
    pub fn source_image(mut self, source: &str, name: &str, tag: &str) -> Self {
        self.images.push(format!(
            "  - source: {}\n    name: {}\n    tag: {}\n",
            yaml_str(source),
            yaml_str(name),
            yaml_str(tag)
        ));
        self
    }
    /// `sources: {NAME: {registry: R, auth: {usernameEnv: U, passwordEnv: P}}}`
    pub fn source(mut self, name: &str, registry: &str, auth_env: Option<(&str, &str)>) -> Self {
        let mut s = format!("  {name}:\n    registry: {}\n", yaml_str(registry));
        if let Some((u, p)) = auth_env {
            s.push_str(&format!(
                "    auth:\n      usernameEnv: {}\n      passwordEnv: {}\n",
                yaml_str(u),
                yaml_str(p)
            ));
        }
        self.sources.push(s);
        self
    }
    /// `registries: {HOST: URL}`
    pub fn registry(mut self, host: &str, url: &str) -> Self {
        self.registries.push((host.into(), url.into()));
        self
    }
    /// `platforms: [...]`
    pub fn platform(mut self, p: &str) -> Self {
        self.platforms.push(p.into());
        self
    }
    pub fn to_yaml(&self) -> String {
        let mut y = String::from("# written by the airgap test harness\nimages:\n");
        for i in &self.images {
            y.push_str(i);
        }
        if !self.sources.is_empty() {
            y.push_str("sources:\n");
            for s in &self.sources {
                y.push_str(s);
            }
        }
        if !self.registries.is_empty() {
            y.push_str("registries:\n");
            for (h, u) in &self.registries {
                y.push_str(&format!("  {}: {}\n", yaml_str(h), yaml_str(u)));
            }
        }
        if !self.platforms.is_empty() {
            let ps: Vec<String> = self.platforms.iter().map(|p| yaml_str(p)).collect();
            y.push_str(&format!("platforms: [{}]\n", ps.join(", ")));
        }
        y
    }
    /// Writes `DIR/airgap.yaml` and returns its path.
    pub fn write(&self, dir: &Path) -> PathBuf {
        write_file(dir, "airgap.yaml", &self.to_yaml())
    }
}

/// Turns a list of `&str`/`String`/paths into owned argument strings.
#[macro_export]
macro_rules! args {
    ($($a:expr),* $(,)?) => {{
        let mut v: Vec<String> = Vec::new();
        $( $crate::support::ExtendArgs::extend_args(&$a, &mut v); )*
        v
    }};
}

/// What [`args!`] accepts: strings, paths, and lists of strings (e.g. `reg.source_flags()`).
pub trait ExtendArgs {
    fn extend_args(&self, v: &mut Vec<String>);
}
impl ExtendArgs for str {
    fn extend_args(&self, v: &mut Vec<String>) {
        v.push(self.to_string());
    }
}
impl ExtendArgs for String {
    fn extend_args(&self, v: &mut Vec<String>) {
        v.push(self.clone());
    }
}
impl ExtendArgs for Path {
    fn extend_args(&self, v: &mut Vec<String>) {
        v.push(self.display().to_string());
    }
}
impl ExtendArgs for PathBuf {
    fn extend_args(&self, v: &mut Vec<String>) {
        v.push(self.display().to_string());
    }
}
impl ExtendArgs for [String] {
    fn extend_args(&self, v: &mut Vec<String>) {
        v.extend(self.iter().cloned());
    }
}
impl ExtendArgs for [&str] {
    fn extend_args(&self, v: &mut Vec<String>) {
        v.extend(self.iter().map(|s| s.to_string()));
    }
}
impl ExtendArgs for Vec<String> {
    fn extend_args(&self, v: &mut Vec<String>) {
        v.extend(self.iter().cloned());
    }
}
impl<T: ExtendArgs + ?Sized> ExtendArgs for &T {
    fn extend_args(&self, v: &mut Vec<String>) {
        (**self).extend_args(v);
    }
}

/// `--mirror HOST=URL` for the (plain-HTTP) source registry's own host and for each of
/// `extra` hosts (e.g. `docker.io`, `ghcr.io`), all pointing at that registry.
pub fn mirror_flags(src: &Registry, extra: &[&str]) -> Vec<String> {
    let mut v = src.source_flags();
    for h in extra {
        v.push("--mirror".into());
        v.push(format!("{h}={}", src.url()));
    }
    v
}

/// `airgap pack SPEC -o BUNDLE FLAGS...`, asserting success and that the bundle exists.
#[track_caller]
pub fn pack_ok(spec: &Path, bundle: &Path, flags: Vec<String>) -> std::process::Output {
    let mut a = vec![
        "pack".to_string(),
        spec.display().to_string(),
        "-o".to_string(),
        bundle.display().to_string(),
    ];
    a.extend(flags);
    let out = airgap(&a, &[]);
    assert_success(&out);
    assert!(
        bundle.is_file(),
        "pack succeeded but wrote no {}",
        bundle.display()
    );
    out
}
