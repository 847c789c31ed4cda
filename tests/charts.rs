//! Helm charts and other OCI artifacts (spec `charts:`): a local chart package, one from a
//! classic chart repository (`index.yaml` + `.tgz`, served here by `python3 -m http.server`)
//! and one already in an OCI registry land at the target as the artifact `helm push` writes;
//! a WASM-style artifact with `artifactType` goes through unchanged. Judged by skopeo at the
//! target, by digest.
//!
//! The expected bytes are written out here by hand from Helm's Go code (helm v4 main at
//! e9b85e4, the same code as v3.18-v3.21: `pkg/registry/client.go` Push and `chart.go`,
//! `pkg/chart/v2/metadata.go` for the config's field order, `pkg/pusher/ocipusher.go` for
//! `created` = the package's mtime), not by the code under test. Deliberate difference,
//! pinned below: `created` is written in UTC, and for a repository chart it is the index
//! entry's `created` (to the second), not the download time.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::*;

const CONFIG_MT: &str = "application/vnd.cncf.helm.config.v1+json";
const CHART_MT: &str = "application/vnd.cncf.helm.chart.content.v1.tar+gzip";
const PROV_MT: &str = "application/vnd.cncf.helm.chart.provenance.v1.prov";

/// `NAME/Chart.yaml` (+ values, a template) packed with the system tar and gzip, as
/// `helm package` lays it out; mtime set so `created` is known.
fn package(dir: &Path, file: &str, name: &str, chart_yaml: &str) -> PathBuf {
    let src = dir.join(format!("src-{file}"));
    std::fs::create_dir_all(src.join(name).join("templates")).unwrap();
    std::fs::write(src.join(name).join("Chart.yaml"), chart_yaml).unwrap();
    std::fs::write(src.join(name).join("values.yaml"), "image: nginx:1.25\n").unwrap();
    std::fs::write(
        src.join(name).join("templates/pod.yaml"),
        "apiVersion: v1\nkind: Pod\n",
    )
    .unwrap();
    let out = dir.join(file);
    let st = Command::new("tar")
        .args(["--mtime=@1700000000", "--owner=0", "--group=0", "-czf"])
        .arg(&out)
        .arg("-C")
        .arg(&src)
        .arg(name)
        .status()
        .unwrap();
    assert!(st.success());
    // created = 2024-01-02T03:04:05Z
    let st = Command::new("touch")
        .args(["-d", "@1704164645"])
        .arg(&out)
        .status()
        .unwrap();
    assert!(st.success());
    out
}

fn descriptor(mt: &str, bytes: &[u8]) -> String {
    format!(
        r#"{{"mediaType":"{mt}","digest":"{}","size":{}}}"#,
        sha256_digest(bytes),
        bytes.len()
    )
}

/// What `helm push` writes for a chart: layers sorted by digest, annotations sorted by key.
fn helm_manifest(config: &str, layers: &[(&str, &[u8])], annotations: &[(&str, &str)]) -> String {
    let mut ls: Vec<(String, String)> = layers
        .iter()
        .map(|(mt, b)| (sha256_digest(b), descriptor(mt, b)))
        .collect();
    ls.sort();
    let mut a: Vec<&(&str, &str)> = annotations.iter().collect();
    a.sort();
    let a: Vec<String> = a.iter().map(|(k, v)| format!(r#""{k}":"{v}""#)).collect();
    format!(
        r#"{{"schemaVersion":2,"config":{},"layers":[{}],"annotations":{{{}}}}}"#,
        descriptor(CONFIG_MT, config.as_bytes()),
        ls.into_iter().map(|(_, d)| d).collect::<Vec<_>>().join(","),
        a.join(",")
    )
}

/// `python3 -m http.server` serving `dir` on a port it picks itself (port 0, read back from
/// its first line: a port found free beforehand can be taken by another test's server before
/// python binds it, and a connect check would then succeed against that other server);
/// killed when dropped.
struct Http {
    child: Child,
    port: u16,
    _stdout: std::io::BufReader<std::process::ChildStdout>,
}

impl Http {
    fn start(dir: &Path) -> Http {
        use std::io::BufRead;
        let mut child = Command::new("python3")
            .args(["-u", "-m", "http.server", "--bind", "127.0.0.1", "0"])
            .current_dir(dir)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        // "Serving HTTP on 127.0.0.1 port 40123 (http://127.0.0.1:40123/) ..."
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let port = line
            .split_whitespace()
            .skip_while(|w| *w != "port")
            .nth(1)
            .and_then(|p| p.parse::<u16>().ok())
            .unwrap_or_else(|| {
                let _ = child.kill();
                panic!("python3 -m http.server did not start: {line:?}")
            });
        Http {
            child,
            port,
            _stdout: stdout,
        }
    }
    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Http {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn load_json(bundle: &Path, tgt: &Registry) -> Value {
    let out = airgap(
        args![
            "load",
            bundle,
            "--registry",
            tgt.host(),
            tgt.target_flags(),
            "--json"
        ],
        &[],
    );
    assert_success(&out);
    serde_json::from_str(&stdout_of(&out)).expect("load --json")
}

/// `doc` keeps to `bundle-spec/schemas/NAME.schema.json`.
fn assert_schema(name: &str, doc: &Value) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(format!("bundle-spec/schemas/{name}.schema.json"));
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let v = jsonschema::validator_for(&schema).expect("the schema compiles");
    let errors: Vec<String> = v.iter_errors(doc).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{name}: {errors:?}");
}

fn raw(reference: &str, reg: &Registry) -> String {
    String::from_utf8(try_skopeo_raw(reference, reg).unwrap_or_else(|e| panic!("{e}"))).unwrap()
}

struct Fixture {
    dir: tempfile::TempDir,
    src: Registry,
    http: Http,
    spec: PathBuf,
    /// (target reference below the registry, expected manifest bytes, package bytes)
    charts: Vec<(String, String, Vec<u8>)>,
    wasm: (String, String),
    prov: Vec<u8>,
    /// The repository chart's provenance file.
    web_prov: Vec<u8>,
}

fn fixture() -> Fixture {
    let dir = tempdir();
    let d = dir.path();
    let src = Registry::start(RegistryOpts::plain());

    // 1. A local package with a provenance file beside it; `+` in the version.
    let demo_yaml = "apiVersion: v2\nname: demo\nversion: 1.2.3+build.1\n\
                     description: Demo <chart> & more\nappVersion: \"1.25\"\ntype: application\n\
                     home: https://example.com/demo\nsources:\n  - https://git.example.com/demo\n\
                     maintainers:\n  - name: Ann\n    email: ann@example.com\n";
    let demo = package(d, "demo-1.2.3+build.1.tgz", "demo", demo_yaml);
    let prov = b"-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n\nfake\n".to_vec();
    std::fs::write(d.join("demo-1.2.3+build.1.tgz.prov"), &prov).unwrap();
    let demo_tgz = std::fs::read(&demo).unwrap();
    let demo_config = r#"{"name":"demo","home":"https://example.com/demo","sources":["https://git.example.com/demo"],"version":"1.2.3+build.1","description":"Demo \u003cchart\u003e \u0026 more","maintainers":[{"name":"Ann","email":"ann@example.com"}],"apiVersion":"v2","appVersion":"1.25","type":"application"}"#;
    let demo_manifest = helm_manifest(
        demo_config,
        &[(CHART_MT, &demo_tgz), (PROV_MT, &prov)],
        &[
            ("org.opencontainers.image.authors", "Ann (ann@example.com)"),
            ("org.opencontainers.image.created", "2024-01-02T03:04:05Z"),
            (
                "org.opencontainers.image.description",
                r"Demo \u003cchart\u003e \u0026 more",
            ),
            (
                "org.opencontainers.image.source",
                "https://git.example.com/demo",
            ),
            ("org.opencontainers.image.title", "demo"),
            ("org.opencontainers.image.url", "https://example.com/demo"),
            ("org.opencontainers.image.version", "1.2.3+build.1"),
        ],
    );

    // 2. A chart repository: index.yaml naming a package under charts/.
    let repo = d.join("repo");
    std::fs::create_dir_all(repo.join("charts")).unwrap();
    let web = package(
        &repo.join("charts"),
        "web-0.4.0.tgz",
        "web",
        "apiVersion: v2\nname: web\nversion: 0.4.0\nkeywords: [http]\n",
    );
    let web_tgz = std::fs::read(&web).unwrap();
    // Its provenance file beside it, where `helm pull --verify` looks for it.
    let web_prov = b"-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n\nweb\n".to_vec();
    std::fs::write(repo.join("charts/web-0.4.0.tgz.prov"), &web_prov).unwrap();
    std::fs::write(
        repo.join("index.yaml"),
        format!(
            "apiVersion: v1\nentries:\n  web:\n    - name: web\n      version: 0.5.0\n      urls: [charts/web-0.5.0.tgz]\n\
             \x20   - name: web\n      version: 0.4.0\n      created: \"2024-02-03T04:05:06.789012345Z\"\n\
             \x20     digest: {}\n      urls: [charts/web-0.4.0.tgz]\n",
            digest_hex(&sha256_digest(&web_tgz))
        ),
    )
    .unwrap();
    let http = Http::start(&repo);
    let web_config = r#"{"name":"web","version":"0.4.0","keywords":["http"],"apiVersion":"v2"}"#;
    let web_manifest = helm_manifest(
        web_config,
        &[(CHART_MT, &web_tgz), (PROV_MT, &web_prov)],
        &[
            ("org.opencontainers.image.created", "2024-02-03T04:05:06Z"),
            ("org.opencontainers.image.title", "web"),
            ("org.opencontainers.image.version", "0.4.0"),
        ],
    );

    // 3. A chart already in an OCI registry (pushed by hand as helm push would).
    let oci_tgz = {
        let p = package(
            d,
            "oci-2.0.0.tgz",
            "ocichart",
            "apiVersion: v2\nname: ocichart\nversion: 2.0.0\n",
        );
        std::fs::read(p).unwrap()
    };
    let oci_config = r#"{"name":"ocichart","version":"2.0.0","apiVersion":"v2"}"#;
    let oci_manifest = helm_manifest(
        oci_config,
        &[(CHART_MT, &oci_tgz)],
        &[
            ("org.opencontainers.image.created", "2023-05-06T07:08:09Z"),
            ("org.opencontainers.image.title", "ocichart"),
            ("org.opencontainers.image.version", "2.0.0"),
        ],
    );
    let c = src.client();
    c.push_blob("charts/ocichart", oci_config.as_bytes());
    c.push_blob("charts/ocichart", &oci_tgz);
    c.push_manifest(
        "charts/ocichart",
        "2.0.0",
        "application/vnd.oci.image.manifest.v1+json",
        oci_manifest.as_bytes(),
    );

    // 4. Another OCI artifact: a WASM module with artifactType and the empty config.
    let wasm = b"\0asm\x01\0\0\0".to_vec();
    c.push_blob("wasm/filter", b"{}");
    c.push_blob("wasm/filter", &wasm);
    let wasm_manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":"application/vnd.wasm.module.v1+wasm","config":{},"layers":[{}]}}"#,
        descriptor("application/vnd.oci.empty.v1+json", b"{}"),
        descriptor("application/wasm", &wasm)
    );
    c.push_manifest(
        "wasm/filter",
        "v1",
        "application/vnd.oci.image.manifest.v1+json",
        wasm_manifest.as_bytes(),
    );

    let spec = write_file(
        d,
        "airgap.yaml",
        &format!(
            "charts:\n  - path: demo-1.2.3+build.1.tgz\n  - repo: {}\n    name: web\n    version: 0.4.0\n\
             \x20 - oci: oci://{}/charts/ocichart\n    version: 2.0.0\n\
             images:\n  - image: {}/wasm/filter:v1\n",
            http.url(),
            src.host(),
            src.host()
        ),
    );
    Fixture {
        charts: vec![
            ("charts/demo:1.2.3_build.1".into(), demo_manifest, demo_tgz),
            ("charts/web:0.4.0".into(), web_manifest, web_tgz),
            ("charts/ocichart:2.0.0".into(), oci_manifest, oci_tgz),
        ],
        wasm: ("wasm/filter:v1".into(), wasm_manifest),
        prov,
        web_prov,
        dir,
        src,
        http,
        spec,
    }
}

fn assert_at_target(f: &Fixture, tgt: &Registry) {
    for (name, manifest, tgz) in &f.charts {
        let r = format!("{}/{name}", tgt.host());
        assert_eq!(raw(&r, tgt), *manifest, "{r}: not helm push's manifest");
        assert_skopeo_digest(&r, tgt, &sha256_digest(manifest.as_bytes()));
        let repo = name.split(':').next().unwrap();
        assert_eq!(
            tgt.client().blob_digest(repo, &sha256_digest(tgz)),
            (sha256_digest(tgz), tgz.len() as u64),
            "{r}: the chart layer"
        );
    }
    let prov = sha256_digest(&f.prov);
    assert_eq!(
        tgt.client().blob_digest("charts/demo", &prov),
        (prov.clone(), f.prov.len() as u64),
        "the provenance layer"
    );
    let web_prov = sha256_digest(&f.web_prov);
    assert_eq!(
        tgt.client().blob_digest("charts/web", &web_prov),
        (web_prov.clone(), f.web_prov.len() as u64),
        "the repository chart's provenance layer"
    );
    let r = format!("{}/{}", tgt.host(), f.wasm.0);
    assert_eq!(raw(&r, tgt), f.wasm.1, "the WASM artifact changed");
}

#[test]
fn charts_and_artifacts_land_as_helm_push_writes_them_and_reload_is_a_no_op() {
    let f = fixture();
    let bundle = f.dir.path().join("b.tar.zst");
    pack_ok(&f.spec, &bundle, f.src.source_flags());
    let out = airgap(args!["verify", &bundle], &[]);
    assert_success(&out);
    let out = airgap(args!["inspect", &bundle], &[]);
    assert_success(&out);
    let text = stdout_of(&out);
    assert!(
        text.contains("chart demo 1.2.3+build.1"),
        "inspect:\n{text}"
    );
    assert!(text.contains("chart web 0.4.0"), "inspect:\n{text}");

    // inspect --json names them as charts and artifacts, and keeps to its schema.
    let out = airgap(args!["inspect", &bundle, "--json"], &[]);
    assert_success(&out);
    let report: Value = serde_json::from_str(&stdout_of(&out)).unwrap();
    assert_schema("inspect", &report);
    let by_ref = |r: &str| {
        report["images"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["reference"] == r)
            .unwrap_or_else(|| panic!("{r} not in {report:#}"))
            .clone()
    };
    let demo = by_ref("localhost/charts/demo:1.2.3_build.1");
    assert_eq!(demo["chart"]["version"], "1.2.3+build.1");
    assert_eq!(demo["artifactType"], CONFIG_MT);
    assert_eq!(demo["platforms"], serde_json::json!([]));
    let wasm = by_ref(&format!("{}/wasm/filter:v1", f.src.host()));
    assert_eq!(wasm["artifactType"], "application/vnd.wasm.module.v1+wasm");
    assert!(wasm.get("chart").is_none());

    let tgt = Registry::start(RegistryOpts::plain());
    let first = load_json(&bundle, &tgt);
    assert_eq!(first["images"], 4, "{first:#}");
    assert_schema("load", &first);
    let entry = first["imageMap"]["images"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["source"] == "localhost/charts/demo:1.2.3_build.1")
        .unwrap_or_else(|| panic!("no demo in {first:#}"))
        .clone();
    assert_eq!(
        entry["target"],
        format!("{}/charts/demo:1.2.3_build.1", tgt.host())
    );
    assert_eq!(entry["chart"]["name"], "demo");
    assert_at_target(&f, &tgt);
    let again = load_json(&bundle, &tgt);
    assert_eq!(again["imagesUnchanged"], 4, "{again:#}");
    assert_eq!(again["blobsUploaded"], 0, "{again:#}");
    assert_eq!(again["manifestsPushed"], 0, "{again:#}");

    // `serve` answers them under the names load gives them.
    let port = free_port();
    let mut served = AirgapCmd::new(args![
        "serve",
        &bundle,
        "--listen",
        format!("127.0.0.1:{port}")
    ])
    .spawn();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "airgap serve did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    for (name, manifest, _) in &f.charts {
        let out = skopeo(&args![
            "inspect",
            "--raw",
            "--tls-verify=false",
            format!("docker://127.0.0.1:{port}/{name}")
        ]);
        assert!(out.status.success(), "serve {name}: {}", text_of(&out));
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            *manifest,
            "serve {name}"
        );
    }
    served.kill();
    let _ = served.wait();

    // A delta on top of the bundle leaves the chart packages to the base and still loads.
    let delta = f.dir.path().join("delta.tar.zst");
    let mut flags = f.src.source_flags();
    flags.extend(["--base".to_string(), bundle.display().to_string()]);
    pack_ok(&f.spec, &delta, flags);
    let out = airgap(args!["inspect", &delta, "--json"], &[]);
    assert_success(&out);
    let di: Value = serde_json::from_str(&stdout_of(&out)).unwrap();
    // Configs and layers: demo 3 and web 3 (each with its .prov), ocichart 2, wasm 2; only
    // the four manifests travel in the delta.
    assert_eq!(di["base"]["blobs"], 10, "{di:#}");
    assert_eq!(di["totals"]["blobs"], 4, "{di:#}");
    let tgt3 = Registry::start(RegistryOpts::plain());
    load_json(&bundle, &tgt3);
    let d = load_json(&delta, &tgt3);
    assert_eq!(d["blobsUploaded"], 0, "{d:#}");
    assert_at_target(&f, &tgt3);

    // Split volumes carry them too.
    let parts = f.dir.path().join("parts");
    std::fs::create_dir_all(&parts).unwrap();
    let split = parts.join("s.tar.zst");
    let mut flags = f.src.source_flags();
    flags.extend(["--split".to_string(), "2k".to_string()]);
    let out = airgap(args!["pack", &f.spec, "-o", &split, flags], &[]);
    assert_success(&out);
    let names = dir_names(&parts);
    assert!(names.len() >= 3, "expected parts and a sidecar: {names:?}");
    let tgt2 = Registry::start(RegistryOpts::plain());
    load_json(&split, &tgt2);
    assert_at_target(&f, &tgt2);
}

fn pack_fails(f: &Fixture, spec_text: &str, needles: &[&str]) {
    let spec = write_file(f.dir.path(), "bad.yaml", spec_text);
    let bundle = f.dir.path().join("bad.tar.zst");
    let out = airgap(
        args!["pack", &spec, "-o", &bundle, f.src.source_flags()],
        &[],
    );
    assert_failure_contains(&out, needles);
    assert!(!bundle.exists(), "a failed pack left a bundle");
}

#[test]
fn bad_charts_fail_naming_the_spec_line_and_write_nothing() {
    let f = fixture();
    // A version the repository's index does not have.
    pack_fails(
        &f,
        &format!(
            "charts:\n  - repo: {}\n    name: web\n    version: 9.9.9\n",
            f.http.url()
        ),
        &[
            "bad.yaml:2:5",
            "no version 9.9.9 of chart web",
            "0.5.0, 0.4.0",
        ],
    );
    // A .tgz that is no chart.
    let d = f.dir.path().join("nochart");
    std::fs::create_dir_all(d.join("x")).unwrap();
    std::fs::write(d.join("x/values.yaml"), "a: 1\n").unwrap();
    let st = Command::new("tar")
        .arg("-czf")
        .arg(f.dir.path().join("x-1.0.0.tgz"))
        .arg("-C")
        .arg(&d)
        .arg("x")
        .status()
        .unwrap();
    assert!(st.success());
    pack_fails(
        &f,
        "charts:\n  - path: x-1.0.0.tgz\n",
        &["bad.yaml:2:5", "x-1.0.0.tgz", "no Chart.yaml"],
    );
    // A repository nobody answers at.
    let port = free_port();
    pack_fails(
        &f,
        &format!("charts:\n  - repo: http://127.0.0.1:{port}\n    name: web\n    version: 0.4.0\n"),
        &[
            "bad.yaml:2:5",
            &format!("GET http://127.0.0.1:{port}/index.yaml"),
        ],
    );
    // A package whose Chart.yaml is not the name/version its file name says.
    std::fs::copy(
        f.dir.path().join("demo-1.2.3+build.1.tgz"),
        f.dir.path().join("demo-9.0.0.tgz"),
    )
    .unwrap();
    pack_fails(
        &f,
        "charts:\n  - path: demo-9.0.0.tgz\n",
        &[
            "bad.yaml:2:5",
            "holds chart demo 1.2.3+build.1, not demo 9.0.0",
        ],
    );
}
