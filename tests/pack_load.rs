//! pack → verify → inspect → load round trips against real registries, checked by digest
//! with skopeo: every fixture kind, platform filtering, naming modes, OCI interoperability.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::Value;
use support::*;

/// Where replace mode (the default) puts an image: the source host dropped.
fn replace_target(target_host: &str, img: &Image) -> String {
    img.reference(target_host)
}

/// Parses an image map and returns its entries by source reference.
fn image_map(path: &Path) -> BTreeMap<String, Value> {
    let v = read_json(path);
    assert_eq!(v["version"], 1, "image map version: {v}");
    let mut m = BTreeMap::new();
    for e in v["images"].as_array().expect("image map has images") {
        let src = e["source"]
            .as_str()
            .expect("entry has a source")
            .to_string();
        assert!(m.insert(src.clone(), e.clone()).is_none(), "{src} twice");
    }
    m
}

/// Asserts one image-map entry.
fn assert_map_entry(
    map: &BTreeMap<String, Value>,
    source: &str,
    target: &str,
    digest: &str,
    source_digest: Option<&str>,
) {
    let e = map
        .get(source)
        .unwrap_or_else(|| panic!("image map has no {source}: {map:#?}"));
    assert_eq!(e["target"], target, "target of {source}");
    assert_eq!(e["digest"], digest, "digest of {source}");
    match source_digest {
        Some(sd) => assert_eq!(e["sourceDigest"], sd, "sourceDigest of {source}"),
        None => assert!(
            e.get("sourceDigest").is_none() || e["sourceDigest"] == digest,
            "{source} was not filtered, yet has a different sourceDigest: {e}"
        ),
    }
}

/// Asserts that an image is complete at the target under `repo`: the manifest by digest,
/// every child manifest by digest with identical bytes, every blob with its size.
fn assert_complete_at(tgt: &Registry, repo: &str, img: &Image) {
    let c = tgt.client();
    let m = c
        .get_manifest(repo, &img.digest)
        .unwrap_or_else(|| panic!("{repo}@{} missing at the target", img.digest));
    assert_eq!(m.bytes, img.manifest, "{repo}@{}: bytes differ", img.digest);
    assert_eq!(m.content_type, img.media_type, "{repo}@{}", img.digest);
    for b in &img.blobs {
        assert_eq!(
            c.blob_size(repo, &b.digest),
            Some(b.size),
            "blob {} of {repo} at the target",
            b.digest
        );
    }
    for child in &img.children {
        assert_complete_at(tgt, repo, child);
    }
}

#[test]
fn round_trip_of_every_fixture_kind_keeps_every_digest() {
    let src = Registry::start(RegistryOpts::plain());
    let fx = AllFixtures::push(&src, true);
    let sh = src.host();
    let dir = tempdir();
    let mut spec = Spec::new();
    for img in fx.all() {
        spec = spec.image(&fx.spec_ref(img, &sh));
    }
    let spec = spec.write(dir.path());
    let bundle = dir.path().join("out/bundle.tar.zst");
    std::fs::create_dir_all(bundle.parent().unwrap()).unwrap();
    pack_ok(
        &spec,
        &bundle,
        args![
            mirror_flags(&src, &["docker.io"]),
            "--concurrency",
            "4",
            "--level",
            "3"
        ],
    );

    // The bundle, read independently: one index.json entry per image, named by its full
    // normalised reference, with the source digest; exactly the blobs the images need.
    let b = Bundle::open(&bundle);
    b.assert_well_formed();
    let refs = b.refs();
    let want: BTreeSet<String> = fx.all().iter().map(|i| fx.source_ref(i, &sh)).collect();
    assert_eq!(refs.keys().cloned().collect::<BTreeSet<_>>(), want);
    assert!(refs.contains_key("docker.io/library/redis:7"));
    let mut needed = BTreeSet::new();
    for img in fx.all() {
        let r = fx.source_ref(img, &sh);
        assert_eq!(refs[&r]["digest"], img.digest.as_str(), "{r}");
        assert_eq!(refs[&r]["mediaType"], img.media_type.as_str(), "{r}");
        assert_eq!(b.blob_bytes(&img.digest), &img.manifest[..], "{r}");
        needed.extend(img.all_digests());
    }
    assert_eq!(b.blob_digests(), needed, "blobs in the bundle");

    let out = airgap(args!["verify", &bundle], &[]);
    assert_success(&out);

    // Load into an empty registry (replace mode: the source host is dropped).
    let tgt = Registry::start(RegistryOpts::plain());
    let th = tgt.host();
    let map_path = dir.path().join("image-map.json");
    let load_args = |map: &Path| {
        args![
            "load",
            &bundle,
            "--registry",
            &th,
            tgt.target_flags(),
            "--image-map",
            map,
            "--concurrency",
            "4"
        ]
    };
    let out = airgap(load_args(&map_path), &[]);
    assert_success(&out);
    // The summary counts every manifest stored, tagged top manifests (stored by their tag
    // PUT) included.
    fn manifests_of(img: &Image) -> Vec<String> {
        let mut v = vec![img.digest.clone()];
        v.extend(img.children.iter().flat_map(manifests_of));
        v
    }
    let stored: BTreeSet<(String, String)> = fx
        .all()
        .iter()
        .flat_map(|i| manifests_of(i).into_iter().map(|d| (i.repo.clone(), d)))
        .collect();
    let summary = format!(" {} manifest(s) pushed", stored.len());
    assert!(
        stdout_of(&out).contains(&summary),
        "expected \"{summary}\" in:\n{}",
        stdout_of(&out)
    );

    let check_target = || {
        for img in fx.all() {
            let target = replace_target(&th, img);
            assert_skopeo_digest(&target, &tgt, &img.digest);
            assert_complete_at(&tgt, &img.repo, img);
            let tags = tgt.client().tags(&img.repo);
            match &img.tag {
                Some(t) => assert_eq!(tags, vec![t.clone()], "tags of {}", img.repo),
                None => assert!(
                    tags.is_empty(),
                    "digest-only {} got tags {tags:?}",
                    img.repo
                ),
            }
        }
        // The manifest list and the index, children included, can be copied out whole.
        let out = tempdir();
        skopeo_copy_to_oci(
            &replace_target(&th, &fx.oci_index),
            &tgt,
            &out.path().join("oci"),
            "v1",
            true,
        )
        .unwrap();
        skopeo_copy_to_oci(
            &replace_target(&th, &fx.docker_list),
            &tgt,
            &out.path().join("docker"),
            "v1",
            false,
        )
        .unwrap();
        tgt.client().catalog()
    };
    let catalog = check_target();
    let want_repos: BTreeSet<String> = fx.all().iter().map(|i| i.repo.clone()).collect();
    assert_eq!(catalog.into_iter().collect::<BTreeSet<_>>(), want_repos);

    // The image map: one entry per image, target in the target registry, same digest.
    let map = image_map(&map_path);
    assert_eq!(map.len(), fx.all().len(), "{map:#?}");
    for img in fx.all() {
        assert_map_entry(
            &map,
            &fx.source_ref(img, &sh),
            &replace_target(&th, img),
            &img.digest,
            None,
        );
    }

    // A second load succeeds and changes nothing.
    let map2_path = dir.path().join("image-map-2.json");
    let out = airgap(load_args(&map2_path), &[]);
    assert_success(&out);
    let catalog2 = check_target();
    assert_eq!(catalog2.into_iter().collect::<BTreeSet<_>>(), want_repos);
    assert_eq!(read_json(&map_path), read_json(&map2_path));
}

#[test]
fn inspect_json_describes_every_image() {
    let src = Registry::start(RegistryOpts::plain());
    let fx = AllFixtures::push(&src, false);
    let sh = src.host();
    let dir = tempdir();
    let mut spec = Spec::new();
    for img in fx.all() {
        spec = spec.image(&fx.spec_ref(img, &sh));
    }
    let spec = spec.write(dir.path());
    let bundle = dir.path().join("bundle.tar.zst");
    pack_ok(
        &spec,
        &bundle,
        args![mirror_flags(&src, &["docker.io"]), "--quiet"],
    );
    let b = Bundle::open(&bundle);

    let out = airgap(args!["inspect", &bundle, "--json"], &[]);
    assert_success(&out);
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("inspect --json printed no JSON ({e}):\n{}", stdout_of(&out)));
    assert_eq!(v["formatVersion"], 1, "{v:#}");
    let images = v["images"].as_array().expect("images");
    assert_eq!(images.len(), fx.all().len(), "{v:#}");
    let by_ref: BTreeMap<&str, &Value> = images
        .iter()
        .map(|i| (i["reference"].as_str().expect("reference"), i))
        .collect();
    for img in fx.all() {
        let r = fx.source_ref(img, &sh);
        let i = by_ref
            .get(r.as_str())
            .unwrap_or_else(|| panic!("inspect does not list {r}: {v:#}"));
        assert_eq!(i["digest"], img.digest.as_str(), "{r}");
        assert!(
            i.get("sourceDigest").is_none() || i["sourceDigest"] == img.digest.as_str(),
            "{r}: unfiltered image with another sourceDigest: {i}"
        );
        assert_eq!(i["mediaType"], img.media_type.as_str(), "{r}");
        let mut platforms: Vec<String> = i["platforms"]
            .as_array()
            .unwrap_or_else(|| panic!("{r}: no platforms array: {i}"))
            .iter()
            .map(|p| p.as_str().unwrap().to_string())
            .collect();
        platforms.sort();
        let mut want = img.platforms();
        want.sort();
        if img.is_index() {
            assert_eq!(platforms, want, "{r}");
        } else {
            assert!(
                platforms.is_empty() || platforms == want,
                "{r}: platforms {platforms:?}, expected {want:?} or none"
            );
        }
        let size = i["size"].as_u64().unwrap_or_else(|| panic!("{r}: no size"));
        let layers: u64 = img.layers().iter().map(|l| l.size).sum();
        assert!(
            size >= layers && size <= img.total_size(),
            "{r}: size {size} not between the layers' {layers} and all blobs' {}",
            img.total_size()
        );
    }
    assert_eq!(v["totals"]["images"], fx.all().len() as u64, "{v:#}");
    assert_eq!(v["totals"]["blobs"], b.blob_digests().len() as u64, "{v:#}");
    assert_eq!(v["totals"]["size"], b.blobs_size(), "{v:#}");

    // The human form names every image too.
    let out = airgap(args!["inspect", &bundle], &[]);
    assert_success(&out);
    let text = stdout_of(&out);
    for img in fx.all() {
        let r = fx.source_ref(img, &sh);
        assert!(text.contains(&r), "inspect does not mention {r}:\n{text}");
    }
}

#[test]
fn pack_reads_airgap_yaml_from_the_current_directory_by_default() {
    let src = Registry::start(RegistryOpts::plain());
    let img = Fixtures::new(&src).image("default/spec", Some("1"), &ImageOpts::oci(11));
    let dir = tempdir();
    Spec::new()
        .image(&img.reference(&src.host()))
        .write(dir.path());
    let out = AirgapCmd::new(args!["pack", "-o", "b.tar.zst", src.source_flags()])
        .current_dir(dir.path())
        .run();
    assert_success(&out);
    let b = Bundle::open(&dir.path().join("b.tar.zst"));
    assert_eq!(b.ref_digest(&img.reference(&src.host())), img.digest);
}

/// Platform filtering of an OCI index (CLI flag) and of a Docker manifest list down to a
/// variant (spec `platforms:`): a new index with only the chosen child, the source digest
/// kept alongside, and the filtered index is what load pushes.
#[test]
fn platform_filter_writes_a_new_index_and_records_the_source_digest() {
    let src = Registry::start(RegistryOpts::plain());
    let sh = src.host();
    let fx = Fixtures::new(&src);
    let oci = fx.oci_index("multi/oci", "v1", 21);
    let docker = fx.docker_list("multi/docker", "v1", 22);
    let tgt = Registry::start(RegistryOpts::plain());
    let th = tgt.host();

    let cases: Vec<(&Image, &str, bool)> = vec![
        (&oci, "linux/amd64", true),
        (&docker, "linux/arm/v7", false),
    ];
    for (img, platform, by_flag) in cases {
        let dir = tempdir();
        let mut spec = Spec::new().image(&img.reference(&sh));
        let mut flags = src.source_flags();
        if by_flag {
            flags.extend(["--platform".to_string(), platform.to_string()]);
        } else {
            spec = spec.platform(platform);
        }
        let spec = spec.write(dir.path());
        let bundle = dir.path().join("bundle.tar.zst");
        pack_ok(&spec, &bundle, flags);
        let r = img.reference(&sh);

        let b = Bundle::open(&bundle);
        b.assert_well_formed();
        let new_digest = b.ref_digest(&r);
        assert_ne!(
            new_digest, img.digest,
            "{r}: filtering must change the index"
        );
        let new_index: Value = serde_json::from_slice(b.blob_bytes(&new_digest)).unwrap();
        assert_eq!(
            new_index["mediaType"],
            img.media_type.as_str(),
            "{new_index:#}"
        );
        let kept = new_index["manifests"].as_array().unwrap();
        assert_eq!(kept.len(), 1, "{r} filtered to {platform}: {new_index:#}");
        let child = img.child(platform);
        assert_eq!(kept[0]["digest"], child.digest.as_str());
        assert_eq!(kept[0]["size"], child.manifest_size());
        let mut want_blobs = child.all_digests();
        want_blobs.insert(new_digest.clone());
        assert_eq!(
            b.blob_digests(),
            want_blobs,
            "{r}: other platforms' blobs must be left out"
        );
        assert_success(&airgap(args!["verify", &bundle], &[]));

        let out = airgap(args!["inspect", &bundle, "--json"], &[]);
        assert_success(&out);
        let v: Value = serde_json::from_slice(&out.stdout).expect("inspect --json");
        let i = &v["images"][0];
        assert_eq!(i["reference"], r.as_str());
        assert_eq!(i["digest"], new_digest.as_str());
        assert_eq!(i["sourceDigest"], img.digest.as_str());
        assert_eq!(i["platforms"], serde_json::json!([platform]));

        let map_path = dir.path().join("map.json");
        let out = airgap(
            args![
                "load",
                &bundle,
                "--registry",
                &th,
                tgt.target_flags(),
                "--image-map",
                &map_path
            ],
            &[],
        );
        assert_success(&out);
        let target = replace_target(&th, img);
        assert_skopeo_digest(&target, &tgt, &new_digest);
        assert_skopeo_digest(&child.by_digest(&th), &tgt, &child.digest);
        assert_complete_at(&tgt, &img.repo, child);
        assert_map_entry(
            &image_map(&map_path),
            &r,
            &target,
            &new_digest,
            Some(&img.digest),
        );
    }
}

/// Asking for every platform an index has keeps it byte for byte.
#[test]
fn platform_filter_selecting_every_child_keeps_the_index_digest() {
    let src = Registry::start(RegistryOpts::plain());
    let img = Fixtures::new(&src).oci_index("multi/all", "v1", 23);
    let dir = tempdir();
    let spec = Spec::new()
        .image(&img.reference(&src.host()))
        .write(dir.path());
    let bundle = dir.path().join("bundle.tar.zst");
    pack_ok(
        &spec,
        &bundle,
        args![
            src.source_flags(),
            "--platform",
            "linux/amd64",
            "--platform",
            "linux/arm64"
        ],
    );
    let b = Bundle::open(&bundle);
    assert_eq!(b.ref_digest(&img.reference(&src.host())), img.digest);
    assert_eq!(b.blob_digests(), img.all_digests());
}

/// Pushes `library/redis:7` and `acme/tool:1` to `src`; the spec names them `redis:7` and
/// `ghcr.io/acme/tool:1`, reached through mirrors.
fn two_registry_bundle(src: &Registry, dir: &Path) -> (PathBuf, Image, Image) {
    let fx = Fixtures::new(src);
    let redis = fx.image("library/redis", Some("7"), &ImageOpts::oci(31));
    let tool = fx.image("acme/tool", Some("1"), &ImageOpts::docker(32));
    let spec = Spec::new()
        .image("redis:7")
        .image("ghcr.io/acme/tool:1")
        .write(dir);
    let bundle = dir.join("bundle.tar.zst");
    pack_ok(&spec, &bundle, mirror_flags(src, &["docker.io", "ghcr.io"]));
    (bundle, redis, tool)
}

#[test]
fn load_modes_replace_prefix_and_flatten_under_a_registry_path() {
    let src = Registry::start(RegistryOpts::plain());
    let dir = tempdir();
    let (bundle, redis, tool) = two_registry_bundle(&src, dir.path());
    let b = Bundle::open(&bundle);
    assert_eq!(b.ref_digest("docker.io/library/redis:7"), redis.digest);
    assert_eq!(b.ref_digest("ghcr.io/acme/tool:1"), tool.digest);

    let tgt = Registry::start(RegistryOpts::plain());
    let th = tgt.host();
    let cases: Vec<(Option<&str>, &str, [&str; 2])> = vec![
        (None, "default", ["library/redis:7", "acme/tool:1"]),
        (
            Some("replace"),
            "team/mirror",
            ["library/redis:7", "acme/tool:1"],
        ),
        (
            Some("prefix"),
            "pfx",
            ["docker.io/library/redis:7", "ghcr.io/acme/tool:1"],
        ),
        (Some("flatten"), "flat", ["redis:7", "tool:1"]),
    ];
    let mut want_repos = BTreeSet::new();
    for (mode, path, [redis_at, tool_at]) in cases {
        let map_path = dir
            .path()
            .join(format!("map-{path}.json").replace('/', "-"));
        let mut a = args![
            "load",
            &bundle,
            "--registry",
            format!("{th}/{path}"),
            tgt.target_flags(),
            "--image-map",
            &map_path
        ];
        if let Some(m) = mode {
            a.extend(["--mode".to_string(), m.to_string()]);
        }
        assert_success(&airgap(&a, &[]));
        let redis_target = format!("{th}/{path}/{redis_at}");
        let tool_target = format!("{th}/{path}/{tool_at}");
        assert_skopeo_digest(&redis_target, &tgt, &redis.digest);
        assert_skopeo_digest(&tool_target, &tgt, &tool.digest);
        let map = image_map(&map_path);
        assert_eq!(map.len(), 2, "{map:#?}");
        assert_map_entry(
            &map,
            "docker.io/library/redis:7",
            &redis_target,
            &redis.digest,
            None,
        );
        assert_map_entry(
            &map,
            "ghcr.io/acme/tool:1",
            &tool_target,
            &tool.digest,
            None,
        );
        for t in [redis_at, tool_at] {
            want_repos.insert(format!("{path}/{}", t.rsplit_once(':').unwrap().0));
        }
        // Nothing else was pushed anywhere.
        let catalog: BTreeSet<String> = tgt.client().catalog().into_iter().collect();
        assert_eq!(catalog, want_repos, "after mode {mode:?}");
    }
}

#[test]
fn flatten_collision_is_an_error_and_pushes_nothing() {
    let src = Registry::start(RegistryOpts::plain());
    let fx = Fixtures::new(&src);
    fx.image("acme/tool", Some("1"), &ImageOpts::oci(41));
    fx.image("other/tool", Some("1"), &ImageOpts::oci(42));
    let dir = tempdir();
    let spec = Spec::new()
        .image("ghcr.io/acme/tool:1")
        .image("docker.io/other/tool:1")
        .write(dir.path());
    let bundle = dir.path().join("bundle.tar.zst");
    pack_ok(
        &spec,
        &bundle,
        mirror_flags(&src, &["docker.io", "ghcr.io"]),
    );

    let tgt = Registry::start(RegistryOpts::plain());
    let map_path = dir.path().join("map.json");
    let out = airgap(
        args![
            "load",
            &bundle,
            "--registry",
            format!("{}/flat", tgt.host()),
            "--mode",
            "flatten",
            tgt.target_flags(),
            "--image-map",
            &map_path
        ],
        &[],
    );
    assert_failure_contains(&out, &["ghcr.io/acme/tool:1", "docker.io/other/tool:1"]);
    assert!(
        tgt.client().catalog().is_empty(),
        "a refused flatten pushed {:?}",
        tgt.client().catalog()
    );
    assert_no_file(&map_path);
}

/// The bundle is a standard OCI layout: after `zstd -d`, skopeo reads images out of the tar
/// by their ref.name and pushes them with the digests kept.
#[test]
fn decompressed_bundle_is_an_oci_archive_skopeo_can_read() {
    let src = Registry::start(RegistryOpts::plain());
    let fx = Fixtures::new(&src);
    let single = fx.image(
        "interop/single",
        Some("1"),
        &ImageOpts::oci(51).layers(2, 10_000),
    );
    let index = fx.oci_index("interop/index", "2", 52);
    let sh = src.host();
    let dir = tempdir();
    let spec = Spec::new()
        .image(&single.reference(&sh))
        .image(&index.reference(&sh))
        .write(dir.path());
    let bundle = dir.path().join("bundle.tar.zst");
    pack_ok(&spec, &bundle, src.source_flags());
    let tar = dir.path().join("bundle.tar");
    zstd_decompress(&bundle, &tar);

    let tgt = Registry::start(RegistryOpts::plain());
    let th = tgt.host();
    for (img, all) in [(&single, false), (&index, true)] {
        let mut flags = vec!["--preserve-digests".to_string()];
        if all {
            flags.push("--all".into());
        }
        flags.extend(skopeo_flags(&tgt, "dest-"));
        skopeo_copy(
            &flags,
            &format!("oci-archive:{}:{}", tar.display(), img.reference(&sh)),
            &format!("docker://{}", img.reference(&th)),
        )
        .unwrap();
        assert_skopeo_digest(&img.reference(&th), &tgt, &img.digest);
    }
    let d = dir.path().join("dir-copy");
    skopeo_copy(
        &[],
        &format!("oci-archive:{}:{}", tar.display(), single.reference(&sh)),
        &format!("dir:{}", d.display()),
    )
    .unwrap();
    assert!(d.join("manifest.json").exists());
}
