//! Self-tests of the test harness (tests/support): registries start, fixtures land with the
//! digests we computed, skopeo agrees, stop/restart keeps data, bundles can be read and
//! damaged, secrets are found. None of this runs the airgap binary.

mod support;

use std::collections::BTreeSet;

use support::*;

#[test]
fn plain_registry_holds_every_fixture_kind_as_skopeo_sees_it() {
    let reg = Registry::start(RegistryOpts::plain());
    assert_eq!(reg.url(), format!("http://{}", reg.host()));
    let fx = AllFixtures::push(&reg, false);
    let host = reg.host();

    for img in fx.all() {
        // What skopeo reads is byte for byte what we pushed.
        let raw = try_skopeo_raw(&img.reference(&host), &reg).unwrap();
        assert_eq!(raw, img.manifest, "{}", img.repo);
        assert_skopeo_digest(&img.by_digest(&host), &reg, &img.digest);
        // The registry's own view agrees, including the content type.
        let m = reg.client().get_manifest(&img.repo, &img.digest).unwrap();
        assert_eq!(m.content_type, img.media_type, "{}", img.repo);
        assert_eq!(m.digest_header.as_deref(), Some(img.digest.as_str()));
        for d in img.all_digests() {
            let is_manifest = d == img.digest || img.children.iter().any(|c| c.digest == d);
            if !is_manifest {
                assert!(reg.client().blob_exists(&img.repo, &d), "{} {d}", img.repo);
            }
        }
    }

    // Tags: one per tagged image, none for the digest-only one.
    let c = reg.client();
    assert_eq!(c.tags("app/single"), vec!["1.0"]);
    assert_eq!(c.tags("multi/oci-index"), vec!["v1"]);
    assert!(c.tags("digest/only").is_empty());
    assert_eq!(fx.digest_only.tag, None);
    let repos: BTreeSet<String> = fx.all().iter().map(|i| i.repo.clone()).collect();
    assert_eq!(c.catalog(), repos.into_iter().collect::<Vec<_>>());

    // (b) and (c): children by digest, with the platforms (variant included).
    let idx: serde_json::Value = serde_json::from_slice(&fx.oci_index.manifest).unwrap();
    assert_eq!(idx["mediaType"], OCI_INDEX);
    assert_eq!(fx.oci_index.platforms(), vec!["linux/amd64", "linux/arm64"]);
    let list: serde_json::Value = serde_json::from_slice(&fx.docker_list.manifest).unwrap();
    assert_eq!(list["mediaType"], DOCKER_LIST);
    assert_eq!(list["manifests"][1]["platform"]["variant"], "v7");
    assert_eq!(
        fx.docker_list.platforms(),
        vec!["linux/amd64", "linux/arm/v7"]
    );
    for child in fx.docker_list.children.iter() {
        assert_eq!(child.media_type, DOCKER_MANIFEST);
        assert_skopeo_digest(&child.by_digest(&host), &reg, &child.digest);
        // Docker layers are valid gzip: the config's diff_id is the sha256 of the tar.
        let layer = &child.layers()[0];
        assert_eq!(layer.media_type, DOCKER_LAYER);
    }

    // (d) the base layer is shared.
    let a: BTreeSet<_> = fx.shared[0]
        .layers()
        .into_iter()
        .map(|b| b.digest)
        .collect();
    let b: BTreeSet<_> = fx.shared[1]
        .layers()
        .into_iter()
        .map(|b| b.digest)
        .collect();
    assert_eq!(a.intersection(&b).count(), 1);

    // (g) the digest is that of the exact, non-canonical bytes.
    let text = String::from_utf8(fx.non_canonical.manifest.clone()).unwrap();
    assert!(text.ends_with("}\n\n") && text.contains('\t') && text.contains("\\u00e9"));
    let reserialised =
        serde_json::to_vec(&serde_json::from_str::<serde_json::Value>(&text).unwrap()).unwrap();
    assert_ne!(sha256_digest(&reserialised), fx.non_canonical.digest);

    // skopeo can copy a whole index (every blob readable, digests kept).
    let out = tempdir();
    skopeo_copy_to_oci(
        &fx.oci_index.reference(&host),
        &reg,
        &out.path().join("layout"),
        "v1",
        true,
    )
    .unwrap();
    let index = read_json(&out.path().join("layout/index.json"));
    assert_eq!(
        index["manifests"][0]["digest"],
        fx.oci_index.digest.as_str()
    );

    // A missing tag is reported as absent.
    assert_skopeo_absent(&format!("{host}/app/single:nope"), &reg);
    assert!(reg.client().get_manifest("app/single", "nope").is_none());
}

#[test]
fn stop_and_restart_keep_port_and_storage() {
    let reg = Registry::start(RegistryOpts::plain());
    let img = Fixtures::new(&reg).image("keep/me", Some("1"), &ImageOpts::oci(42));
    let port = reg.port();
    assert!(reg.is_running());
    reg.stop();
    assert!(!reg.is_running());
    assert!(
        reg.client().ping().is_err(),
        "stopped registry still answers"
    );
    assert!(try_skopeo_digest(&img.reference(&reg.host()), &reg).is_err());
    reg.restart();
    assert_eq!(reg.port(), port);
    assert!(reg.is_running());
    assert_skopeo_digest(&img.reference(&reg.host()), &reg, &img.digest);
}

#[test]
fn auth_and_tls_registry_needs_both() {
    let reg = Registry::start(RegistryOpts::auth_tls("alice", "harness-Pa55word"));
    assert!(reg.url().starts_with("https://127.0.0.1:"));
    assert!(reg.ca_file().exists());
    assert_eq!(
        reg.anonymous_client().ping().unwrap(),
        reqwest::StatusCode::UNAUTHORIZED
    );
    assert_eq!(reg.client().ping().unwrap(), reqwest::StatusCode::OK);

    let fx = Fixtures::new(&reg);
    let img = fx.image("vendor/app", Some("1"), &ImageOpts::oci(9));
    let idx = fx.docker_list("vendor/list", "2", 10);
    let host = reg.host();
    assert_skopeo_digest(&img.reference(&host), &reg, &img.digest);
    assert_skopeo_digest(&idx.reference(&host), &reg, &idx.digest);
    assert_eq!(reg.client().catalog(), vec!["vendor/app", "vendor/list"]);

    // skopeo without credentials: refused; without the CA: TLS error.
    let plain = Registry::start(RegistryOpts::plain());
    let noauth = skopeo(&[
        "inspect".into(),
        "--raw".into(),
        "--cert-dir".into(),
        reg.cert_dir().display().to_string(),
        format!("docker://{}", img.reference(&host)),
    ]);
    assert!(!noauth.status.success());
    let err = stderr_of(&noauth);
    assert!(
        err.contains("unauthorized") || err.contains("authentication required"),
        "{err}"
    );
    let nocert = skopeo(&[
        "inspect".into(),
        "--raw".into(),
        "--creds".into(),
        "alice:harness-Pa55word".into(),
        format!("docker://{}", img.reference(&host)),
    ]);
    assert!(!nocert.status.success());
    assert!(
        stderr_of(&nocert).contains("x509"),
        "{}",
        stderr_of(&nocert)
    );
    drop(plain);

    // The CA file also works for any rustls client (what airgap will use).
    let pem = std::fs::read(reg.ca_file()).unwrap();
    let client = reqwest::blocking::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .no_proxy()
        .build()
        .unwrap();
    for url in [
        format!("https://127.0.0.1:{}/v2/", reg.port()),
        format!("https://localhost:{}/v2/", reg.port()),
    ] {
        let st = client.get(&url).send().unwrap().status();
        assert_eq!(st, reqwest::StatusCode::UNAUTHORIZED, "{url}");
    }
}

#[test]
fn auth_without_tls_accepts_basic() {
    let reg = Registry::start(RegistryOpts::auth("bob", "plain-http-Pa55"));
    assert_eq!(
        reg.anonymous_client().ping().unwrap(),
        reqwest::StatusCode::UNAUTHORIZED
    );
    let img = Fixtures::new(&reg).image("a/b", Some("c"), &ImageOpts::docker(3));
    assert_skopeo_digest(&img.reference(&reg.host()), &reg, &img.digest);
}

#[test]
fn big_layer_is_streamed_and_deterministic() {
    let layer = TarLayer::new(99, BIG_LAYER_SIZE);
    assert!(layer.len() > 64 << 20);
    let d1 = layer.digest();
    assert_eq!(d1, TarLayer::new(99, BIG_LAYER_SIZE).digest());
    // Read sizes do not change the stream.
    let small = TarLayer::new(5, 100_003);
    let mut odd = Vec::new();
    let mut r = small.reader();
    let mut buf = [0u8; 13];
    loop {
        let n = std::io::Read::read(&mut r, &mut buf).unwrap();
        if n == 0 {
            break;
        }
        odd.extend_from_slice(&buf[..n]);
    }
    assert_eq!(odd, small.bytes());
    // It is a valid tar with the data as one file.
    let mut ar = tar::Archive::new(&odd[..]);
    let entries: Vec<_> = ar
        .entries()
        .unwrap()
        .map(|e| e.unwrap().header().size().unwrap())
        .collect();
    assert_eq!(entries, vec![100_003]);
    // Incompressible (only the tar header and padding shrink).
    let data = Prng::bytes(5, 1 << 20);
    let z = zstd::encode_all(&data[..], 3).unwrap();
    assert!(z.len() >= data.len(), "{} -> {}", data.len(), z.len());

    let reg = Registry::start(RegistryOpts::plain());
    let img = Fixtures::new(&reg).big_layer_image("big/layer", "1", BIG_LAYER_SIZE, 7);
    let big = img
        .layers()
        .into_iter()
        .find(|l| l.size > 64 << 20)
        .unwrap();
    assert_eq!(
        reg.client().blob_size("big/layer", &big.digest),
        Some(big.size)
    );
    let (served, n) = reg.client().blob_digest("big/layer", &big.digest);
    assert_eq!((served.as_str(), n), (big.digest.as_str(), big.size));
    assert_skopeo_digest(&img.reference(&reg.host()), &reg, &img.digest);
}

#[test]
fn gzip_stored_is_valid_gzip() {
    let data = Prng::bytes(1, 200_000);
    let gz = gzip_stored(&data);
    let dir = tempdir();
    let p = dir.path().join("x.gz");
    std::fs::write(&p, &gz).unwrap();
    let out = std::process::Command::new("gzip")
        .arg("-dc")
        .arg(&p)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(out.stdout, data);
}

#[test]
fn registries_start_in_parallel_on_distinct_ports() {
    let regs: Vec<Registry> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..4)
            .map(|i| {
                s.spawn(move || {
                    Registry::start(if i % 2 == 0 {
                        RegistryOpts::plain()
                    } else {
                        RegistryOpts::tls()
                    })
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let ports: BTreeSet<u16> = regs.iter().map(|r| r.port()).collect();
    assert_eq!(ports.len(), 4);
    for r in &regs {
        assert_eq!(r.client().ping().unwrap(), reqwest::StatusCode::OK);
    }
}

#[test]
fn bundle_reader_and_damage_helpers() {
    // Make an OCI layout with skopeo (digests preserved), tar+zstd it like a bundle.
    let reg = Registry::start(RegistryOpts::plain());
    let img = Fixtures::new(&reg).image("x/y", Some("1"), &ImageOpts::oci(77));
    let dir = tempdir();
    let layout = dir.path().join("layout");
    skopeo_copy_to_oci(&img.reference(&reg.host()), &reg, &layout, "1", true).unwrap();
    write_file(&layout, "airgap.json", "{}");
    let bundle = dir.path().join("b.tar.zst");
    tar_zst_dir(&layout, &bundle);

    let b = Bundle::open(&bundle);
    b.assert_well_formed();
    assert_eq!(b.ref_digest("1"), img.digest);
    assert_eq!(b.blob_digests(), img.all_digests());
    assert_eq!(b.blobs_size(), img.total_size());

    let layer = img.layers()[0].digest.clone();
    let flipped = dir.path().join("flipped.tar.zst");
    flip_byte_in_blob(&bundle, &flipped, &layer);
    let f = Bundle::open(&flipped);
    assert_ne!(f.blob(&layer).unwrap().sha256, layer);
    let r = std::panic::catch_unwind(|| f.assert_well_formed());
    assert!(r.is_err(), "a flipped byte must break the layout check");

    let removed = dir.path().join("removed.tar.zst");
    remove_blob(&bundle, &removed, &layer);
    assert!(Bundle::open(&removed).blob(&layer).is_none());

    let extra = dir.path().join("extra.tar.zst");
    add_entry(&bundle, &extra, "evil.txt", b"surprise");
    assert!(Bundle::open(&extra).get("evil.txt").is_some());

    let truncated = dir.path().join("truncated.tar.zst");
    let len = std::fs::metadata(&bundle).unwrap().len();
    truncate_copy(&bundle, &truncated, len / 2);
    assert_eq!(std::fs::metadata(&truncated).unwrap().len(), len / 2);

    let tarfile = dir.path().join("b.tar");
    zstd_decompress(&bundle, &tarfile);
    // skopeo reads the plain tar as an oci-archive.
    let copy = dir.path().join("copy");
    skopeo_copy(
        &["--preserve-digests".into()],
        &format!("oci-archive:{}:1", tarfile.display()),
        &format!("oci:{}:1", copy.display()),
    )
    .unwrap();
}

#[test]
fn grep_secrets_finds_plain_and_compressed_leaks() {
    let dir = tempdir();
    write_file(dir.path(), "clean.txt", "nothing to see");
    grep_secrets(&[dir.path()], &[], &["hunter2-secret"]);

    // Inside a zstd stream, and spanning a 1 MiB read boundary.
    let mut data = Prng::bytes(3, (1 << 20) - 5);
    data.extend_from_slice(b"hunter2-secret");
    data.extend_from_slice(&Prng::bytes(4, 1000));
    let z = zstd::encode_all(&data[..], 3).unwrap();
    let sub = dir.path().join("sub");
    std::fs::create_dir_all(&sub).unwrap();
    std::fs::write(sub.join("bundle.tar.zst"), z).unwrap();
    let r = std::panic::catch_unwind(|| grep_secrets(&[dir.path()], &[], &["hunter2-secret"]));
    assert!(r.is_err(), "a secret inside a zstd file must be found");

    // In captured output, also in its Basic-auth form.
    let forms = secret_forms("alice", "hunter2-secret");
    let out = std::process::Command::new("echo")
        .arg(format!("Authorization: Basic {}", forms[1]))
        .output()
        .unwrap();
    let clean = tempdir();
    let r = std::panic::catch_unwind(|| grep_secrets(&[clean.path()], &[&out], &forms));
    assert!(r.is_err(), "a leaked Basic header must be found");
}

#[test]
fn airgap_binary_is_built() {
    assert!(std::path::Path::new(AIRGAP).exists(), "{AIRGAP}");
}

#[test]
fn watchdog_kills_its_process_when_the_test_process_goes_away() {
    use std::os::unix::process::ExitStatusExt;
    let mut sleeper = std::process::Command::new("sleep")
        .arg("60")
        .spawn()
        .unwrap();
    let mut w = watchdog(sleeper.id()).unwrap();
    // What happens when the test process dies: its end of the pipe closes.
    drop(w.stdin.take());
    let status = sleeper.wait().unwrap();
    assert_eq!(status.signal(), Some(9), "{status}");
    w.wait().unwrap();
}
