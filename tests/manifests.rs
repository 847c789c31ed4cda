//! Kubernetes manifests carried in the bundle and rewritten on the isolated side:
//! `load --manifests-out`, `rewrite`, and pack's refusal to ship manifests that would fail.

mod support;

use std::path::Path;

use support::*;

/// What the vendor ships: a Deployment (quoted image, comments, `Always`), a CronJob, a
/// ConfigMap whose `image:` is data, and a ServiceAccount.
const APP_YAML: &str = r#"# Shipped with the release.
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web # the front end
spec:
  template:
    spec:
      containers:
      - name: web
        image: "redis:7"   # pinned by the vendor
        imagePullPolicy: Always
      - name: side
        image: SRC/app/web:1.0
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: nightly}
spec:
  jobTemplate:
    spec:
      template:
        spec:
          containers: [{name: job, image: 'SRC/app/web:1.0'}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings}
data:
  image: redis:7
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: runner
"#;

/// The same, rewritten by hand for `--registry TGT/site --pull-secret regcred`.
const EXPECTED_YAML: &str = r#"# Shipped with the release.
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web # the front end
spec:
  template:
    spec:
      containers:
      - name: web
        image: "TGT/site/library/redis:7"   # pinned by the vendor
        imagePullPolicy: IfNotPresent
      - name: side
        image: TGT/site/app/web:1.0
        imagePullPolicy: IfNotPresent
      imagePullSecrets:
      - name: regcred
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: nightly}
spec:
  jobTemplate:
    spec:
      template:
        spec:
          containers: [{name: job, image: 'TGT/site/app/web:1.0', imagePullPolicy: IfNotPresent}]
          imagePullSecrets:
          - name: regcred
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings}
data:
  image: redis:7
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: runner
imagePullSecrets:
- name: regcred
"#;

struct Setup {
    src: Registry,
    dir: tempfile::TempDir,
    spec: std::path::PathBuf,
    web_digest: String,
    redis_digest: String,
}

/// A source with `library/redis:7` (reached as Docker Hub through a mirror) and
/// `app/web:1.0`, and a spec carrying `k8s/` with APP_YAML (and `extra` as another file).
fn setup(extra: Option<&str>) -> Setup {
    let src = Registry::start(RegistryOpts::plain());
    let fx = Fixtures::new(&src);
    let redis = fx.image("library/redis", Some("7"), &ImageOpts::oci(71));
    let web = fx.oci_index("app/web", "1.0", 72);
    let dir = tempdir();
    let sh = src.host();
    write_file(dir.path(), "k8s/app.yaml", &APP_YAML.replace("SRC", &sh));
    if let Some(x) = extra {
        write_file(dir.path(), "k8s/more/extra.yaml", x);
    }
    let spec = write_file(
        dir.path(),
        "airgap.yaml",
        &format!(
            "images:\n- name: redis\n  tag: \"7\"\n- image: {sh}/app/web:1.0\nmanifests: [k8s/]\nregistries:\n  docker.io: {u}\n  {sh}: {u}\n",
            u = src.url()
        ),
    );
    Setup {
        src,
        dir,
        spec,
        web_digest: web.digest,
        redis_digest: redis.digest,
    }
}

fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(files_under(&p));
            } else {
                out.push(p.display().to_string());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn load_writes_manifests_rewritten_exactly_as_expected() {
    let s = setup(None);
    let bundle = s.dir.path().join("bundle.tar.zst");
    pack_ok(&s.spec, &bundle, vec![]);

    let tgt = Registry::start(RegistryOpts::auth("loader", "tgt-pass-7781"));
    let out_dir = s.dir.path().join("out");
    let map = s.dir.path().join("map.json");
    let reg = format!("{}/site", tgt.host());
    let out = airgap_stdin(
        args![
            "load",
            &bundle,
            "--registry",
            &reg,
            tgt.target_flags(),
            "-u",
            "loader",
            "--password-stdin",
            "--manifests-out",
            &out_dir,
            "--pull-secret",
            "regcred",
            "--image-map",
            &map
        ],
        &[],
        "tgt-pass-7781\n",
    );
    assert_success(&out);

    let got = std::fs::read_to_string(out_dir.join("k8s/app.yaml")).expect("rewritten app.yaml");
    assert_eq!(got, EXPECTED_YAML.replace("TGT", &tgt.host()));

    // The images the manifests now name are really there, with the source digests.
    assert_skopeo_digest(
        &format!("{}/site/library/redis:7", tgt.host()),
        &tgt,
        &s.redis_digest,
    );
    assert_skopeo_digest(
        &format!("{}/site/app/web:1.0", tgt.host()),
        &tgt,
        &s.web_digest,
    );

    // The pull secret: a dockerconfigjson Secret for the target, private to its owner.
    let secret_path = out_dir.join("regcred-pull-secret.yaml");
    let secret = std::fs::read_to_string(&secret_path).expect("pull secret written");
    assert!(secret.contains("kind: Secret"), "{secret}");
    assert!(
        secret.contains("type: kubernetes.io/dockerconfigjson"),
        "{secret}"
    );
    assert!(secret.contains("name: \"regcred\""), "{secret}");
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&secret_path)
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "pull secret mode");
    }
    // The Secret is the only place the password may appear, and there only encoded.
    grep_secrets(
        &[bundle.as_path(), map.as_path(), &out_dir.join("k8s")],
        &[&out],
        &["tgt-pass-7781"],
    );
    assert!(
        !secret.contains("tgt-pass-7781"),
        "password in clear in the Secret"
    );
    drop(s.src);
}

#[test]
fn rewrite_standalone_matches_what_load_would_write() {
    let s = setup(None);
    let bundle = s.dir.path().join("bundle.tar.zst");
    pack_ok(&s.spec, &bundle, vec![]);
    let app = s.dir.path().join("k8s/app.yaml");
    let expected = EXPECTED_YAML.replace("TGT", "10.10.254.254:8000");

    // From the bundle and a registry name, without pushing: a single input goes to stdout.
    let out = airgap(
        args![
            "rewrite",
            &app,
            "--bundle",
            &bundle,
            "--registry",
            "10.10.254.254:8000/site",
            "--pull-secret",
            "regcred"
        ],
        &[],
    );
    assert_success(&out);
    assert_eq!(stdout_of(&out), expected);

    // From an image map, on standard input (helm template ... | airgap rewrite -).
    let map = s.dir.path().join("map.json");
    let entries: Vec<serde_json::Value> = [
        ("docker.io/library/redis:7", "library/redis:7", &s.redis_digest),
        (
            &*format!("{}/app/web:1.0", s.src.host()),
            "app/web:1.0",
            &s.web_digest,
        ),
    ]
    .iter()
    .map(|(src, tgt, d)| {
        serde_json::json!({"source": src, "target": format!("10.10.254.254:8000/site/{tgt}"), "digest": d})
    })
    .collect();
    std::fs::write(
        &map,
        serde_json::to_vec(&serde_json::json!({"version": 1, "images": entries})).unwrap(),
    )
    .unwrap();
    let text = std::fs::read_to_string(&app).unwrap();
    let out = airgap_stdin(
        args![
            "rewrite",
            "-",
            "--image-map",
            &map,
            "--pull-secret",
            "regcred"
        ],
        &[],
        &text,
    );
    assert_success(&out);
    assert_eq!(stdout_of(&out), expected);

    // --pin-digests writes the pushed digest after the tag.
    let out = airgap(
        args!["rewrite", &app, "--image-map", &map, "--pin-digests"],
        &[],
    );
    assert_success(&out);
    let pinned = stdout_of(&out);
    assert!(
        pinned.contains(&format!(
            "image: \"10.10.254.254:8000/site/library/redis:7@{}\"",
            s.redis_digest
        )),
        "{pinned}"
    );
}

#[test]
fn pack_refuses_manifests_using_images_not_in_the_bundle() {
    let extra = "apiVersion: v1\nkind: Pod\nmetadata: {name: x}\nspec:\n  containers:\n  - name: x\n    image: nginx:1.27\n";
    let s = setup(Some(extra));
    let bundle = s.dir.path().join("bundle.tar.zst");
    let before = files_under(s.dir.path());
    let out = airgap(args!["pack", &s.spec, "-o", &bundle], &[]);
    assert_failure_contains(
        &out,
        &["k8s/more/extra.yaml:7", "nginx:1.27", "not in the bundle"],
    );
    assert_eq!(files_under(s.dir.path()), before, "pack left files behind");

    // --allow-missing ships it with a warning naming the file and line.
    let out = airgap(
        args!["pack", &s.spec, "-o", &bundle, "--allow-missing"],
        &[],
    );
    assert_success(&out);
    assert!(
        stderr_of(&out).contains("k8s/more/extra.yaml:7"),
        "{}",
        stderr_of(&out)
    );
}

#[test]
fn malformed_yaml_is_reported_with_file_and_line_and_nothing_is_written() {
    let s = setup(None);
    let bundle = s.dir.path().join("bundle.tar.zst");
    pack_ok(&s.spec, &bundle, vec![]);
    let bad_dir = s.dir.path().join("bad");
    write_file(
        &bad_dir,
        "a-good.yaml",
        "kind: Pod\nspec:\n  containers:\n  - image: redis:7\n",
    );
    write_file(
        &bad_dir,
        "b-broken.yaml",
        "kind: Pod\nspec:\n  containers: [\n    {image: redis:7\n",
    );
    let out_dir = s.dir.path().join("rewritten");
    let out = airgap(
        args![
            "rewrite",
            &bad_dir,
            "--bundle",
            &bundle,
            "--registry",
            "reg.local:5000",
            "-o",
            &out_dir
        ],
        &[],
    );
    assert_failure_contains(&out, &["b-broken.yaml:"]);
    assert!(
        files_under(&out_dir).is_empty(),
        "a failed rewrite wrote {:?}",
        files_under(&out_dir)
    );
}
