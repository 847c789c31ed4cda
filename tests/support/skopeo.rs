//! skopeo as an independent client: what did really land in a registry, and can other
//! tools read it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::registry::Registry;
use super::sha256_digest;

/// A signature policy accepting anything, so `skopeo copy` does not depend on the
/// machine's /etc/containers/policy.json.
fn policy_file() -> PathBuf {
    static P: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    P.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("skopeo-policy.json");
        let tmp = dir.join(format!("skopeo-policy.json.{}", std::process::id()));
        std::fs::write(&tmp, r#"{"default":[{"type":"insecureAcceptAnything"}]}"#).unwrap();
        std::fs::rename(&tmp, &p).unwrap();
        p
    })
    .clone()
}

/// Runs skopeo with the proxy and auth-file variables of the environment removed.
pub fn skopeo(args: &[String]) -> Output {
    let mut cmd = Command::new("skopeo");
    if args.first().map(String::as_str) == Some("copy") {
        cmd.arg("--policy").arg(policy_file());
    }
    for v in [
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
        "REGISTRY_AUTH_FILE",
        "DOCKER_CONFIG",
    ] {
        cmd.env_remove(v);
    }
    cmd.args(args)
        .output()
        .expect("run skopeo (scripts/test.sh installs it)")
}

/// Flags that make skopeo reach `reg`: `--PREFIXtls-verify=false` for plain HTTP (skopeo
/// then falls back to http), `--PREFIXcert-dir` for TLS, `--PREFIXcreds` with auth.
/// `prefix` is `""` for inspect, `"src-"` or `"dest-"` for copy.
pub fn skopeo_flags(reg: &Registry, prefix: &str) -> Vec<String> {
    let mut v = Vec::new();
    if reg.is_tls() {
        v.push(format!("--{prefix}cert-dir"));
        v.push(reg.cert_dir().display().to_string());
    } else {
        v.push(format!("--{prefix}tls-verify=false"));
    }
    if let Some((u, p)) = reg.creds() {
        v.push(format!("--{prefix}creds"));
        v.push(format!("{u}:{p}"));
    }
    v
}

fn docker_ref(reference: &str) -> String {
    if reference.starts_with("docker://") {
        reference.to_string()
    } else {
        format!("docker://{reference}")
    }
}

/// The raw manifest bytes skopeo reads for `reference` (`127.0.0.1:PORT/repo:tag` or
/// `…@sha256:…`), or skopeo's error text.
pub fn try_skopeo_raw(reference: &str, reg: &Registry) -> Result<Vec<u8>, String> {
    let mut args = vec!["inspect".to_string(), "--raw".to_string()];
    args.extend(skopeo_flags(reg, ""));
    args.push(docker_ref(reference));
    let out = skopeo(&args);
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// `skopeo inspect --raw | sha256`, or skopeo's error text.
pub fn try_skopeo_digest(reference: &str, reg: &Registry) -> Result<String, String> {
    try_skopeo_raw(reference, reg).map(|b| sha256_digest(&b))
}

/// `skopeo inspect --raw | sha256`; panics with skopeo's error when it fails.
pub fn skopeo_digest(reference: &str, reg: &Registry) -> String {
    try_skopeo_digest(reference, reg)
        .unwrap_or_else(|e| panic!("skopeo inspect {reference} failed: {e}"))
}

/// Asserts that `reference` exists in `reg` with exactly `digest`.
pub fn assert_skopeo_digest(reference: &str, reg: &Registry, digest: &str) {
    let got = skopeo_digest(reference, reg);
    assert_eq!(
        got, digest,
        "{reference}: skopeo reads a manifest of digest {got}, expected {digest}"
    );
}

/// Asserts that skopeo cannot find `reference` in `reg`.
pub fn assert_skopeo_absent(reference: &str, reg: &Registry) {
    if let Ok(d) = try_skopeo_digest(reference, reg) {
        panic!("{reference} exists in the registry (digest {d}) but should not");
    }
}

/// `skopeo copy [--all] [--preserve-digests] docker://REF oci:DIR:TAG`: proves that every
/// blob of the image can be read from the registry with the right digest.
pub fn skopeo_copy_to_oci(
    reference: &str,
    reg: &Registry,
    dest_dir: &Path,
    tag: &str,
    preserve_digests: bool,
) -> Result<(), String> {
    let mut args = vec!["copy".to_string(), "--all".to_string()];
    if preserve_digests {
        args.push("--preserve-digests".into());
    }
    args.extend(skopeo_flags(reg, "src-"));
    args.push(docker_ref(reference));
    args.push(format!("oci:{}:{tag}", dest_dir.display()));
    run_ok(&args)
}

/// `skopeo copy` between two transport references with extra flags.
pub fn skopeo_copy(extra: &[String], src: &str, dst: &str) -> Result<(), String> {
    let mut args = vec!["copy".to_string()];
    args.extend(extra.iter().cloned());
    args.push(src.to_string());
    args.push(dst.to_string());
    run_ok(&args)
}

fn run_ok(args: &[String]) -> Result<(), String> {
    let out = skopeo(args);
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "skopeo {} failed ({}):\n{}{}",
            redact(args),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// The command line with credentials replaced, for messages.
fn redact(args: &[String]) -> String {
    let mut out = Vec::new();
    let mut hide = false;
    for a in args {
        out.push(if hide { "<creds>" } else { a.as_str() });
        hide = a.ends_with("creds");
    }
    out.join(" ")
}
