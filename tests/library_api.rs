//! A complete load with carried manifests, the image map and the pull secret, driven through
//! the library's command API alone (no binary): what another Rust program embedding airgap
//! would do. Judged with skopeo, by digest.

mod support;

use std::sync::Arc;

use airgap::commands::load::{LoadCommand, Login};
use airgap::commands::pack::PackCommand;
use airgap::naming::{Mode, Target};
use airgap::outputs::{MirrorOptions, OutputOptions};
use airgap::progress::Silent;
use airgap::registry::credentials::Credentials;
use airgap::registry::ConnectOptions;
use airgap::rewrite::{K8sOptions, RewriteOptions};
use support::*;

const APP: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  template:\n    spec:\n      containers:\n      - name: web\n        image: SRC/app/web:1.0\n        imagePullPolicy: Always\n";

#[test]
fn pack_then_load_with_every_output_through_the_library() {
    let src = Registry::start(RegistryOpts::plain());
    let web = Fixtures::new(&src).oci_index("app/web", "1.0", 91);
    let dir = tempdir();
    let sh = src.host();
    write_file(dir.path(), "k8s/app.yaml", &APP.replace("SRC", &sh));
    let spec = write_file(
        dir.path(),
        "airgap.yaml",
        &format!("images:\n- image: {sh}/app/web:1.0\nmanifests: [k8s/]\n"),
    );
    let bundle = dir.path().join("bundle.tar.zst");
    let tgt = Registry::start(RegistryOpts::auth("loader", "lib-pass-5521"));
    let target = Target::parse(&format!("{}/site", tgt.host())).unwrap();
    let out_dir = dir.path().join("out");
    let map_path = dir.path().join("images.json");

    let rt = tokio::runtime::Runtime::new().unwrap();
    let (packed, loaded) = rt.block_on(async {
        let pack = PackCommand {
            spec: spec.clone(),
            output: bundle.clone(),
            mirrors: vec![airgap::registry::parse_mirror(&format!("{sh}={}", src.url())).unwrap()],
            platforms: vec![],
            connect: ConnectOptions::default(),
            concurrency: 4,
            level: 3,
            threads: Some(1),
            allow_missing: false,
            no_referrers: false,
            split: None,
            base: None,
            sign_keys: vec![],
            cache: None,
        };
        let packed = airgap::commands::pack::pack(&pack, Arc::new(Silent))
            .await
            .expect("pack");
        let load = LoadCommand {
            bundle: bundle.clone(),
            target: target.clone(),
            mode: Mode::Replace,
            plain_http: true,
            connect: ConnectOptions::default(),
            login: Login::Given(Credentials::new("loader", "lib-pass-5521")),
            concurrency: 4,
            chunk_size: None,
            state_dir: None,
            keys: vec![],
            repository: None,
            outputs: OutputOptions {
                image_map: Some(map_path.clone()),
                manifests_out: Some(out_dir.clone()),
                rewrite: K8sOptions {
                    rewrite: RewriteOptions {
                        pin_digests: true,
                        pull_secret: Some("regcred".into()),
                        ..Default::default()
                    },
                    allow_missing: false,
                },
                mirror: Some(MirrorOptions {
                    dir: dir.path().join("mirror"),
                    ..Default::default()
                }),
            },
        };
        let loaded = airgap::commands::load::load(&load, Arc::new(Silent))
            .await
            .expect("load");
        (packed, loaded)
    });
    assert_eq!(packed.images, 1);
    assert_eq!(loaded.images, 1);
    assert!(loaded.blobs_uploaded > 0, "{loaded:?}");

    let name = format!("{}/site/app/web:1.0", tgt.host());
    assert_skopeo_digest(&name, &tgt, &web.digest);

    // The image map names the same place and digest.
    let map: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&map_path).unwrap()).unwrap();
    assert_eq!(map["images"][0]["target"], name);
    assert_eq!(map["images"][0]["digest"], web.digest);
    assert_eq!(loaded.image_map.images[0].target.to_string(), name);

    // The manifest points at it, pinned, with the pull secret and policy.
    let app = std::fs::read_to_string(out_dir.join("k8s/app.yaml")).unwrap();
    assert!(
        app.contains(&format!("image: {name}@{}", web.digest)),
        "{app}"
    );
    assert!(app.contains("imagePullPolicy: IfNotPresent"), "{app}");
    assert!(app.contains("- name: regcred"), "{app}");
    let secret = std::fs::read_to_string(out_dir.join("regcred-pull-secret.yaml")).unwrap();
    assert!(
        secret.contains("kubernetes.io/dockerconfigjson"),
        "{secret}"
    );
    assert_eq!(loaded.written.manifests.len(), 2, "{:?}", loaded.written);

    // The nodes' containerd is told where the source registry's images went.
    let hosts = std::fs::read_to_string(
        dir.path()
            .join(format!("mirror/containerd/certs.d/{sh}/hosts.toml")),
    )
    .unwrap();
    assert!(
        hosts.contains(&format!("[host.\"http://{}/v2/site\"]", tgt.host())),
        "{hosts}"
    );
}
