//! The systemd unit and the Kubernetes manifest in `examples/` are what an operator copies.
//! Their `airgap serve` command lines run as written, with only the paths and the port
//! swapped for the test's, and skopeo pulls through them with the htpasswd user's
//! credentials (refused without). The manifest's probes, ports, mounts, scrape annotations
//! and grace periods must agree with its own serve arguments.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use saphyr::{LoadableYamlNode, Yaml};
use support::cli::{AirgapCmd, RunningAirgap};
use support::skopeo::skopeo;
use support::*;

const PASSWORD: &str = "deploy-example-pw";

fn example(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// One image, packed; an htpasswd file for user `site`.
struct Site {
    _src: Registry,
    dir: tempfile::TempDir,
    bundle: PathBuf,
    users: PathBuf,
    digest: String,
}

fn site() -> Site {
    let src = Registry::start(RegistryOpts::plain());
    let image = Fixtures::new(&src).big_layer_image("site/app", "1.0", 1024 * 1024, 5);
    let dir = tempdir();
    let spec = Spec::new()
        .image(&image.reference(&src.host()))
        .write(dir.path());
    let bundle = dir.path().join("bundle.tar.zst");
    pack_ok(&spec, &bundle, args![src.source_flags(), "-q"]);
    let users = htpasswd_file(dir.path(), "-B", "site", PASSWORD);
    Site {
        digest: image.digest.clone(),
        _src: src,
        dir,
        bundle,
        users,
    }
}

/// The value after `flag` in `args`.
fn flag<'a>(args: &'a [String], flag: &str) -> &'a str {
    let i = args
        .iter()
        .position(|a| a == flag)
        .unwrap_or_else(|| panic!("no {flag} in {args:?}"));
    args.get(i + 1)
        .unwrap_or_else(|| panic!("{flag} without a value in {args:?}"))
}

/// `args` with each documented path replaced by the test's and `--listen` moved to a free
/// loopback port; every documented path must be one the caller knows.
fn localised(args: &[String], paths: &BTreeMap<&str, PathBuf>, port: u16) -> Vec<String> {
    args.iter()
        .map(|a| {
            if a.starts_with('/') {
                let p = paths.get(a.as_str()).unwrap_or_else(|| {
                    panic!("the example names {a}, which this test does not map")
                });
                p.display().to_string()
            } else if a.starts_with("0.0.0.0:") {
                format!("127.0.0.1:{port}")
            } else {
                a.clone()
            }
        })
        .collect()
}

/// Runs `airgap ARGS` until `/healthz` answers 200 over `scheme`.
fn start(args: &[String], port: u16, scheme: &str, ca: Option<&Path>) -> RunningAirgap {
    let mut proc = AirgapCmd::new(args).spawn();
    let mut client = reqwest::blocking::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10));
    if let Some(ca) = ca {
        let pem = std::fs::read(ca).unwrap();
        client = client.add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap());
    }
    let client = client.build().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(s) = proc.child.try_wait().unwrap() {
            panic!(
                "serve with the example's arguments exited ({s}):\n{}",
                text_of(&proc.wait())
            );
        }
        let ok = client
            .get(format!("{scheme}://127.0.0.1:{port}/healthz"))
            .send()
            .is_ok_and(|r| r.status() == 200);
        if ok {
            return proc;
        }
        assert!(Instant::now() < deadline, "serve did not start: {args:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// skopeo gets the image by its digest with the user's credentials, and is refused without.
fn assert_pulls_only_with_credentials(port: u16, s: &Site, tls: &[String]) {
    let reference = format!("docker://127.0.0.1:{port}/site/app:1.0");
    let mut with = args!["inspect", "--raw", "--creds", format!("site:{PASSWORD}")];
    with.extend(tls.iter().cloned());
    with.push(reference.clone());
    let out = skopeo(&with);
    assert!(out.status.success(), "{}", text_of(&out));
    assert_eq!(sha256_digest(&out.stdout), s.digest);
    let mut without = args!["inspect", "--raw"];
    without.extend(tls.iter().cloned());
    without.push(reference);
    let out = skopeo(&without);
    assert!(!out.status.success(), "pulled without credentials");
    assert!(text_of(&out).contains("unauthorized"), "{}", text_of(&out));
}

#[test]
fn the_systemd_unit_runs_as_written() {
    let unit = example("airgap-serve.service");
    // ExecStart, its continuation lines joined.
    let joined = unit.replace("\\\n", " ");
    let exec = joined
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("an ExecStart line");
    let words: Vec<String> = exec.split_whitespace().map(str::to_string).collect();
    assert!(words[0].ends_with("/airgap"), "{exec}");
    let args = words[1..].to_vec();
    assert_eq!(args[0], "serve");
    assert_eq!(flag(&args, "--listen"), "0.0.0.0:5000");

    // systemd must wait longer than serve lets responses in flight finish.
    let stop: u64 = joined
        .lines()
        .find_map(|l| l.strip_prefix("TimeoutStopSec="))
        .expect("TimeoutStopSec")
        .parse()
        .unwrap();
    let grace: u64 = flag(&args, "--shutdown-timeout").parse().unwrap();
    assert!(
        stop > grace,
        "TimeoutStopSec {stop} <= --shutdown-timeout {grace}"
    );
    // The unit reads only what it declares read-only.
    let ro = joined
        .lines()
        .find_map(|l| l.strip_prefix("ReadOnlyPaths="))
        .expect("ReadOnlyPaths");
    for a in args.iter().filter(|a| a.starts_with('/')) {
        assert!(
            ro.split_whitespace()
                .any(|d| a.starts_with(&format!("{d}/"))),
            "{a} is outside ReadOnlyPaths={ro}"
        );
    }

    let s = site();
    let tls = support::tls::generate(&s.dir.path().join("tls"));
    let paths = BTreeMap::from([
        ("/srv/airgap/bundle.tar.zst", s.bundle.clone()),
        ("/etc/airgap/users", s.users.clone()),
        ("/etc/airgap/tls.crt", tls.server_cert.clone()),
        ("/etc/airgap/tls.key", tls.server_key.clone()),
    ]);
    let port = free_port();
    let run = localised(&args, &paths, port);
    let proc = start(&run, port, "https", Some(&tls.ca_cert));
    let cert_dir = format!("--cert-dir={}", tls.cert_dir.display());
    assert_pulls_only_with_credentials(port, &s, &args![cert_dir]);
    drop(proc);
}

fn str_of<'a>(y: &'a Yaml<'a>, what: &str) -> &'a str {
    y.as_str()
        .unwrap_or_else(|| panic!("{what} is not a string: {y:?}"))
}

fn int_of(y: &Yaml<'_>, what: &str) -> i64 {
    y.as_integer()
        .or_else(|| y.as_str().and_then(|s| s.parse().ok()))
        .unwrap_or_else(|| panic!("{what} is not a number: {y:?}"))
}

#[test]
fn the_kubernetes_manifest_agrees_with_itself_and_runs_as_written() {
    let text = example("airgap-serve-kubernetes.yaml");
    let docs = Yaml::load_from_str(&text).unwrap_or_else(|e| panic!("{e}"));
    let kind = |k: &str| {
        docs.iter()
            .find(|d| d["kind"].as_str() == Some(k))
            .unwrap_or_else(|| panic!("no {k} in the manifest"))
    };
    let deploy = kind("Deployment");
    let service = kind("Service");
    let pod = &deploy["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let args: Vec<String> = container["args"]
        .as_sequence()
        .expect("container args")
        .iter()
        .map(|a| str_of(a, "an arg").to_string())
        .collect();
    assert_eq!(args[0], "serve");
    let listen = flag(&args, "--listen");
    let port: i64 = listen.rsplit_once(':').unwrap().1.parse().unwrap();

    // Probes, the container port and the scrape annotations point at what serve listens on.
    for probe in ["readinessProbe", "livenessProbe"] {
        let get = &container[probe]["httpGet"];
        assert_eq!(str_of(&get["path"], probe), "/healthz");
        assert_eq!(int_of(&get["port"], probe), port, "{probe}");
    }
    assert_eq!(
        int_of(&container["ports"][0]["containerPort"], "containerPort"),
        port
    );
    let notes = &service["metadata"]["annotations"];
    assert_eq!(
        str_of(&notes["prometheus.io/path"], "scrape path"),
        "/metrics"
    );
    assert_eq!(int_of(&notes["prometheus.io/port"], "scrape port"), port);
    assert_eq!(
        int_of(&service["spec"]["ports"][0]["targetPort"], "targetPort"),
        port
    );
    // The selector finds the pods.
    let app = str_of(
        &deploy["spec"]["template"]["metadata"]["labels"]["app"],
        "app label",
    );
    assert_eq!(str_of(&service["spec"]["selector"]["app"], "selector"), app);
    // Kubernetes waits longer than serve lets responses in flight finish.
    let grace = int_of(&pod["terminationGracePeriodSeconds"], "grace period");
    let shutdown: i64 = flag(&args, "--shutdown-timeout").parse().unwrap();
    assert!(
        grace > shutdown,
        "grace {grace} <= --shutdown-timeout {shutdown}"
    );

    // Every path serve is given lies in a read-only mount: the bundle from the node's disk
    // (hostPath), the users file from a Secret.
    let volumes = pod["volumes"].as_sequence().expect("volumes");
    let mounts = container["volumeMounts"]
        .as_sequence()
        .expect("volumeMounts");
    let source_of = |path: &str| {
        let m = mounts
            .iter()
            .find(|m| path.starts_with(&format!("{}/", str_of(&m["mountPath"], "mountPath"))))
            .unwrap_or_else(|| panic!("{path} is in no volumeMount"));
        assert_eq!(
            m["readOnly"].as_bool(),
            Some(true),
            "{path}'s mount is writable"
        );
        let name = str_of(&m["name"], "mount name");
        volumes
            .iter()
            .find(|v| v["name"].as_str() == Some(name))
            .unwrap_or_else(|| panic!("no volume {name}"))
    };
    let bundle_path = &args[1];
    assert!(
        !source_of(bundle_path)["hostPath"]["path"].is_badvalue(),
        "the bundle is not a hostPath"
    );
    let users_path = flag(&args, "--htpasswd");
    assert!(
        !source_of(users_path)["secret"]["secretName"].is_badvalue(),
        "the users file is not a Secret"
    );

    let s = site();
    let paths = BTreeMap::from([
        (bundle_path.as_str(), s.bundle.clone()),
        (users_path, s.users.clone()),
    ]);
    let local = free_port();
    let run = localised(&args, &paths, local);
    let proc = start(&run, local, "http", None);
    assert_pulls_only_with_credentials(local, &s, &args!["--tls-verify=false"]);
    drop(proc);
}
