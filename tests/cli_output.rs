//! What a person sees, pinned by snapshots (tests/snapshots/): every error printed once with
//! its cause and, apart, the advice; `inspect` and `verify` output; `--help`. Ports,
//! temporary paths, digests and timings are filtered out, so a snapshot changes only when
//! the wording does.

mod support;

use std::path::{Path, PathBuf};
use std::process::Output;

use support::*;

/// stdout and stderr of a run, as a person reads them, with the varying parts filtered.
fn shown(out: &Output) -> String {
    let mut s = String::new();
    let (o, e) = (stdout_of(out), stderr_of(out));
    if !o.is_empty() {
        s.push_str("--- stdout\n");
        s.push_str(&o);
    }
    if !e.is_empty() {
        s.push_str("--- stderr\n");
        s.push_str(&e);
    }
    s.push_str(&format!("--- exit {}\n", out.status.code().unwrap_or(-1)));
    s
}

macro_rules! snapshot {
    ($name:expr, $value:expr) => {
        insta::with_settings!({
            filters => vec![
                (r"127\.0\.0\.1:\d+", "127.0.0.1:[PORT]"),
                (r"localhost:\d+", "localhost:[PORT]"),
                (r"/tmp/airgap-test-[A-Za-z0-9]+", "[TMP]"),
                (r"sha256:[0-9a-f]{64}", "sha256:[DIGEST]"),
                (r"\b[0-9a-f]{64}\b", "[HEX]"),
                (r"in \d+\.\ds", "in [T]s"),
                (r"airgap \d+\.\d+\.\d+", "airgap [VERSION]"),
            ],
            prepend_module_to_snapshot => false,
        }, {
            insta::assert_snapshot!($name, $value);
        });
    };
}

/// A source registry with one small OCI image, `app:1`, and a bundle of it.
fn small_bundle(dir: &Path) -> (PathBuf, Registry) {
    let src = Registry::start(RegistryOpts::plain());
    Fixtures::new(&src).image("app", Some("1"), &ImageOpts::oci(301).layers(2, 50_000));
    let spec = Spec::new()
        .image(&format!("{}/app:1", src.host()))
        .write(dir);
    let bundle = dir.join("bundle.tar.zst");
    pack_ok(&spec, &bundle, src.source_flags());
    (bundle, src)
}

#[test]
fn help_texts() {
    for cmd in [
        "",
        "pack",
        "load",
        "inspect",
        "verify",
        "rewrite",
        "serve",
        "completions",
        "man",
    ] {
        let args: Vec<&str> = if cmd.is_empty() {
            vec!["--help"]
        } else {
            vec![cmd, "--help"]
        };
        let out = airgap(args, &[]);
        assert_success(&out);
        let name = if cmd.is_empty() { "help" } else { cmd };
        snapshot!(format!("help_{name}"), stdout_of(&out));
    }
}

#[test]
fn inspect_verify_and_the_errors_of_a_damaged_bundle() {
    let dir = tempdir();
    let (bundle, _src) = small_bundle(dir.path());
    let out = airgap(args!["inspect", &bundle], &[]);
    assert_success(&out);
    snapshot!("inspect_text", shown(&out));
    let out = airgap(args!["inspect", &bundle, "--json"], &[]);
    assert_success(&out);
    snapshot!("inspect_json", shown(&out));
    let out = airgap(args!["verify", &bundle], &[]);
    assert_success(&out);
    snapshot!("verify_ok", shown(&out));

    // A flipped byte in a layer: verify and load both name the blob, once each.
    let b = Bundle::open(&bundle);
    let layer = b
        .blob_digests()
        .into_iter()
        .max_by_key(|d| b.blob(d).map(|e| e.size).unwrap_or(0))
        .unwrap();
    let bad = dir.path().join("bad.tar.zst");
    flip_byte_in_blob(&bundle, &bad, &layer);
    let out = airgap(args!["verify", &bad], &[]);
    assert_failure(&out);
    snapshot!("error_digest_mismatch_verify", shown(&out));
    let tgt = Registry::start(RegistryOpts::plain());
    let out = airgap(
        args!["load", &bad, "--registry", tgt.host(), "--plain-http", "-q"],
        &[],
    );
    assert_failure(&out);
    snapshot!("error_digest_mismatch_load", shown(&out));
    assert!(
        tgt.client().tags("app").is_empty(),
        "an image whose layer failed verification was tagged"
    );
}

#[test]
fn a_missing_image() {
    let dir = tempdir();
    let src = Registry::start(RegistryOpts::plain());
    let spec = Spec::new()
        .image(&format!("{}/app:2", src.host()))
        .write(dir.path());
    let bundle = dir.path().join("b.tar.zst");
    let out = airgap(
        args!["pack", &spec, "-o", &bundle, "-q", src.source_flags()],
        &[],
    );
    assert_failure(&out);
    snapshot!("error_missing_image", shown(&out));
    assert!(!bundle.exists());
}

#[test]
fn wrong_password_and_untrusted_certificate() {
    let dir = tempdir();
    let (bundle, _src) = small_bundle(dir.path());
    let tgt = Registry::start(RegistryOpts::auth("loader", "right-pass-1"));
    let out = airgap_stdin(
        args![
            "load",
            &bundle,
            "--registry",
            tgt.host(),
            "--plain-http",
            "-q",
            "-u",
            "loader",
            "--password-stdin"
        ],
        &[],
        "wrong-pass-2\n",
    );
    assert_failure(&out);
    assert!(!text_of(&out).contains("wrong-pass-2"));
    snapshot!("error_401", shown(&out));

    let tls = Registry::start(RegistryOpts::tls());
    let out = airgap(args!["load", &bundle, "--registry", tls.host(), "-q"], &[]);
    assert_failure(&out);
    snapshot!("error_tls", shown(&out));
}

/// A 1 MiB tmpfs, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: PathBuf) -> Tmpfs {
        std::fs::create_dir_all(&at).unwrap();
        let st = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
            .arg(&at)
            .status()
            .expect("run mount");
        assert!(
            st.success(),
            "this test mounts a 1 MiB tmpfs to fill a disk for real, which needs root (CI runs as root)"
        );
        Tmpfs(at)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_names_the_path_and_the_os_error() {
    let dir = tempdir();
    let src = Registry::start(RegistryOpts::plain());
    Fixtures::new(&src).image("big", Some("1"), &ImageOpts::oci(302).layers(1, 3 << 20));
    let spec = Spec::new()
        .image(&format!("{}/big:1", src.host()))
        .write(dir.path());
    let full = Tmpfs::mount(dir.path().join("usb"));
    let bundle = full.0.join("bundle.tar.zst");
    let out = airgap(
        args!["pack", &spec, "-o", &bundle, "-q", src.source_flags()],
        &[],
    );
    assert_failure(&out);
    snapshot!("error_full_disk", shown(&out));
    // Nothing is left behind on the full medium.
    assert_eq!(dir_names(&full.0), Vec::<String>::new());
}
