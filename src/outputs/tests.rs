use base64::Engine as _;

use super::*;
use crate::digest::Digest;
use crate::reference::Reference;
use crate::rewrite::RewriteOptions;

fn placements() -> Vec<Placement> {
    vec![Placement {
        source: Reference::parse("redis:7").unwrap(),
        target: Reference::parse("reg:5000/library/redis:7").unwrap(),
        digest: Digest::of(b"x"),
        source_digest: None,
        media_type: crate::manifest::OCI_INDEX.into(),
        chart: None,
    }]
}

const POD: &str = "kind: Pod\nspec:\n  containers:\n  - image: redis:7\n";

#[test]
fn every_output_comes_from_the_same_placements() {
    let dir = tempfile::tempdir().unwrap();
    let opts = OutputOptions {
        image_map: Some(dir.path().join("images.json")),
        manifests_out: Some(dir.path().join("out")),
        rewrite: K8sOptions {
            rewrite: RewriteOptions {
                pin_digests: false,
                pull_secret: Some("regcred".into()),
                ..Default::default()
            },
            allow_missing: false,
        },
        mirror: Some(MirrorOptions {
            dir: dir.path().join("mirror"),
            ..Default::default()
        }),
    };
    let files = vec![("app/pod.yaml".to_string(), POD.as_bytes().to_vec())];
    let creds = Credentials::new("u", "pw");
    let mirror_dir = dir.path().join("mirror");
    let access = TargetAccess {
        target: Some(Target::parse("reg:5000").unwrap()),
        credentials: Some(creds),
        ..Default::default()
    };
    let planned = plan(&placements(), &files, &access, &opts).unwrap();
    // Nothing is written by planning.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    let w = planned.write().unwrap();
    let map = ImageMap::read(w.image_map.as_ref().unwrap()).unwrap();
    assert_eq!(map, image_map(&placements()));
    let pod = std::fs::read_to_string(dir.path().join("out/app/pod.yaml")).unwrap();
    assert!(pod.contains("image: reg:5000/library/redis:7"), "{pod}");
    let secret = dir.path().join("out/regcred-pull-secret.yaml");
    assert_eq!(w.manifests.len(), 2);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&secret).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    let text = std::fs::read_to_string(&secret).unwrap();
    let data = text
        .lines()
        .find_map(|l| l.trim().strip_prefix(".dockerconfigjson: "))
        .unwrap();
    let json = base64::engine::general_purpose::STANDARD
        .decode(data)
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(v["auths"]["reg:5000"]["password"], "pw");
    // The mirror files send docker.io's pulls to the same place.
    let hosts = std::fs::read_to_string(mirror_dir.join("containerd/certs.d/docker.io/hosts.toml"))
        .unwrap();
    assert!(hosts.contains("reg:5000"), "{hosts}");
    assert!(w.mirror_files.len() > 3, "{:?}", w.mirror_files);
}

#[test]
fn a_missing_image_fails_the_plan_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let opts = OutputOptions {
        image_map: Some(dir.path().join("images.json")),
        manifests_out: Some(dir.path().join("out")),
        ..Default::default()
    };
    let files = vec![(
        "pod.yaml".to_string(),
        b"kind: Pod\nspec:\n  containers:\n  - image: nginx:1\n".to_vec(),
    )];
    let access = TargetAccess {
        target: Some(Target::parse("reg:5000").unwrap()),
        ..Default::default()
    };
    let e = plan(&placements(), &files, &access, &opts).unwrap_err();
    assert!(e.to_string().contains("pod.yaml:4: nginx:1"), "{e}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn write_files_refuses_escaping_names_before_writing_any() {
    let dir = tempfile::tempdir().unwrap();
    let files = [
        OutputFile {
            name: "ok.yaml".into(),
            text: "a: 1\n".into(),
            secret: false,
        },
        OutputFile {
            name: "../x.yaml".into(),
            text: "a: 1\n".into(),
            secret: false,
        },
    ];
    let e = write_files(dir.path(), &files).unwrap_err();
    assert!(e.to_string().contains("outside"), "{e}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn image_sets_one_per_calico_version_only_the_operators_images() {
    let e = |s: &str| ImageMapEntry {
        source: Reference::parse(s).unwrap(),
        target: Reference::parse(&format!("reg:5000/{}", &s["quay.io/".len()..])).unwrap(),
        digest: Digest::of(s.as_bytes()),
        source_digest: None,
        chart: None,
    };
    let map = ImageMap::new(vec![
        e("quay.io/calico/node:v3.30.2"),
        e("quay.io/calico/cni:v3.30.2"),
        e("quay.io/calico/ctl:v3.30.2"),
        e("quay.io/tigera/operator:v1.38.3"),
        e("quay.io/calico/node:v3.31.0"),
    ]);
    let sets = calico::image_sets(&map);
    let names: Vec<_> = sets.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "imageset-calico-v3.30.2.yaml",
            "imageset-calico-v3.31.0.yaml"
        ]
    );
    let d = |s: &str| Digest::of(s.as_bytes()).to_string();
    assert!(sets[0].text.ends_with(&format!(
        "# Not listed (the operator does not deploy them and refuses an ImageSet naming them): calico/ctl\n\
         apiVersion: operator.tigera.io/v1\nkind: ImageSet\nmetadata:\n  name: \"calico-v3.30.2\"\nspec:\n  images:\n\
         \x20 - image: calico/cni\n    digest: {}\n  - image: calico/node\n    digest: {}\n",
        d("quay.io/calico/cni:v3.30.2"),
        d("quay.io/calico/node:v3.30.2")
    )), "{}", sets[0].text);
    assert!(calico::image_sets(&ImageMap::new(vec![e("quay.io/org/x:1")])).is_empty());
}
