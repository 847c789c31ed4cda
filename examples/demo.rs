//! The end-to-end demo behind `scripts/demo.sh`: two real registries on loopback, sample
//! images of every kind in the source, then pack → verify → inspect → load with the real
//! binary, and a digest check of what landed, by skopeo.
//!
//! Reuses the test harness's registry and fixture code, so the demo and the tests agree.

use std::path::{Path, PathBuf};
use std::process::Command;

// The harness modules refer to each other as `super::…`, so they sit at this crate's root.
#[allow(dead_code)]
#[path = "../tests/support/fixtures.rs"]
mod fixtures;
#[allow(dead_code)]
#[path = "../tests/support/registry.rs"]
mod registry;
#[allow(dead_code)]
#[path = "../tests/support/tls.rs"]
mod tls;

fn sha256_digest(bytes: &[u8]) -> String {
    use sha2::{Digest as _, Sha256};
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

use fixtures::AllFixtures;
use registry::{Registry, RegistryOpts};

fn main() {
    let airgap = std::env::var_os("AIRGAP_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target/release/airgap"));
    let work = tempfile::Builder::new()
        .prefix("airgap-demo-")
        .tempdir()
        .expect("temporary directory");
    let dir = work.path();

    step("Starting a source registry (with a password) and an empty target registry on loopback");
    let source = Registry::start(RegistryOpts::auth("vendor", "s3cret-demo-pass"));
    let target = Registry::start(RegistryOpts::plain());
    println!("  source: {}   target: {}", source.url(), target.url());

    step("Seeding the source with sample images");
    let fx = AllFixtures::push(&source, false);
    let host = source.host();
    for img in fx.all() {
        println!("  {:<60} {}", fx.source_ref(img, &host), short(&img.digest));
    }

    step("Writing airgap.yaml");
    let mut spec = String::from("# Sample spec: the credentials are named, never written.\n");
    // Docker Hub is reached through the local mirror below, which wants the same password.
    spec.push_str(&format!(
        "sources:\n  vendor:\n    registry: {host}\n    auth: {{usernameEnv: VENDOR_USER, passwordEnv: VENDOR_PASS}}\n  hub:\n    registry: docker.io\n    auth: {{usernameEnv: VENDOR_USER, passwordEnv: VENDOR_PASS}}\n"
    ));
    spec.push_str("images:\n");
    for img in fx.all() {
        spec.push_str(&format!("- image: {}\n", fx.spec_ref(img, &host)));
    }
    spec.push_str(&format!(
        "registries:\n  docker.io: http://{host}\n  {host}: http://{host}\n"
    ));
    let spec_path = dir.join("airgap.yaml");
    std::fs::write(&spec_path, &spec).expect("write spec");
    print!("{}", indent(&spec));

    let bundle = dir.join("bundle.tar.zst");
    step("airgap pack airgap.yaml -o bundle.tar.zst");
    run(
        &airgap,
        &["pack", path(&spec_path), "-o", path(&bundle)],
        &[
            ("VENDOR_USER", "vendor"),
            ("VENDOR_PASS", "s3cret-demo-pass"),
        ],
        dir,
    );
    step("airgap verify bundle.tar.zst");
    run(&airgap, &["verify", path(&bundle)], &[], dir);
    step("airgap inspect bundle.tar.zst");
    run(&airgap, &["inspect", path(&bundle)], &[], dir);

    let map = dir.join("images.json");
    let reg = format!("{}/demo", target.host());
    step(&format!(
        "airgap load bundle.tar.zst --registry {reg} --plain-http --image-map images.json"
    ));
    run(
        &airgap,
        &[
            "load",
            path(&bundle),
            "--registry",
            &reg,
            "--plain-http",
            "--image-map",
            path(&map),
        ],
        &[],
        dir,
    );

    step("What landed, checked by skopeo (digest of the manifest bytes at the target)");
    let map: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&map).expect("image map")).expect("image map JSON");
    let mut bad = 0;
    for e in map["images"].as_array().expect("images") {
        let target_ref = e["target"].as_str().unwrap_or_default();
        let want = e["digest"].as_str().unwrap_or_default();
        if !check_digest(target_ref, want) {
            bad += 1;
        }
    }

    step("Loading again: nothing to do");
    run(
        &airgap,
        &["load", path(&bundle), "--registry", &reg, "--plain-http"],
        &[],
        dir,
    );
    step("airgap serve bundle.tar.zst --listen 127.0.0.1:0: pulling with no registry at all");
    bad += serve_and_check(&airgap, &bundle, &map);

    if bad > 0 {
        eprintln!("\n{bad} image(s) did not land with the right digest");
        std::process::exit(1);
    }
    println!("\nEvery image landed, and was served from the bundle, with its digest unchanged.");
}

/// Starts `airgap serve` on a free port, reads each image back from it with skopeo under the
/// names `load` gave (minus the host and the `demo` path), and stops it. Returns the misses.
fn serve_and_check(airgap: &Path, bundle: &Path, map: &serde_json::Value) -> usize {
    use std::io::BufRead;
    let mut child = Command::new(airgap)
        .args(["serve", path(bundle), "--listen", "127.0.0.1:0", "-q"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start airgap serve");
    let mut first = String::new();
    let stdout = child.stdout.take().expect("serve's stdout");
    std::io::BufReader::new(stdout)
        .read_line(&mut first)
        .expect("read serve's first line");
    let addr = first.trim().trim_start_matches("listening on ").to_string();
    println!("  {}", first.trim());
    let mut bad = 0;
    for e in map["images"].as_array().expect("images") {
        let target = e["target"].as_str().unwrap_or_default();
        let want = e["digest"].as_str().unwrap_or_default();
        // `load` put it at HOST/demo/NAME; serve (no --path) answers NAME.
        let name = target
            .split_once("/demo/")
            .map(|(_, n)| n)
            .unwrap_or(target);
        if !check_digest(&format!("{addr}/{name}"), want) {
            bad += 1;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    bad
}

/// Reads `reference`'s manifest with skopeo, prints whether its sha256 is `want`.
fn check_digest(reference: &str, want: &str) -> bool {
    let out = Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{reference}"))
        .output()
        .expect("run skopeo");
    let got = sha256_digest(&out.stdout);
    let ok = out.status.success() && got == want;
    println!(
        "  {} {:<62} {}",
        if ok { "ok  " } else { "BAD " },
        reference,
        short(&got)
    );
    ok
}

fn step(s: &str) {
    println!("\n==> {s}");
}

fn short(d: &str) -> &str {
    d.get(..19).unwrap_or(d)
}

fn indent(s: &str) -> String {
    s.lines().map(|l| format!("  {l}\n")).collect()
}

fn path(p: &Path) -> &str {
    p.to_str().expect("UTF-8 temporary path")
}

fn run(bin: &Path, args: &[&str], env: &[(&str, &str)], dir: &Path) {
    let status = Command::new(bin)
        .args(args)
        .envs(env.iter().copied())
        .current_dir(dir)
        .status()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
    if !status.success() {
        eprintln!("airgap {} failed ({status})", args.join(" "));
        std::process::exit(1);
    }
}
