//! Signatures, attestations, SBOMs and OCI 1.1 referrers travel with their images: pack finds
//! them (cosign's `sha256-<hex>.sig`/`.att`/`.sbom` tags; the referrers API or its tag
//! schema), load pushes them after their subject and writes the tag-schema index where the
//! target has no referrers API, serve answers them. Fixtures are signed the way cosign signs
//! (Debian's skopeo has sigstore compiled out): a simple-signing payload as the layer, its
//! ECDSA P-256 signature (openssl) in the layer's annotation; verified again with openssl
//! from what the TARGET registry serves.
//!
//! distribution 2.8 has no referrers API (its referrers come from the tag schema);
//! ferro-oci-server has one (`GET /v2/<name>/referrers/<digest>`), so both paths run against
//! real servers.

mod support;

use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde_json::{json, Value};
use support::cosign::*;
use support::*;

/// A source registry with `app/signed:1`, signed, attested, with an SBOM and a referrer.
struct Signed {
    src: Registry,
    dir: tempfile::TempDir,
    key: Key,
    image: Image,
    att: Attached,
    spec: PathBuf,
}

fn signed(kind: Kind) -> Signed {
    let src = Registry::start(RegistryOpts::of(kind));
    let dir = tempdir();
    let key = keypair(dir.path());
    let fx = Fixtures::new(&src);
    let image = fx.image(
        "app/signed",
        Some("1"),
        &ImageOpts::oci(7101).layers(1, 64 * 1024),
    );
    let att = attach(
        &src,
        "app/signed",
        &image.digest,
        image.manifest_size(),
        &key,
        dir.path(),
        1,
    );
    let spec = Spec::new()
        .image(&format!("{}/app/signed:1", src.host()))
        .to_yaml();
    let spec = write_file(dir.path(), "airgap.yaml", &spec);
    Signed {
        src,
        dir,
        key,
        image,
        att,
        spec,
    }
}

/// `inspect --json`, checked against bundle-spec/schemas/inspect.schema.json.
fn inspect_json(bundle: &Path) -> Value {
    let out = airgap(args!["inspect", bundle, "--json"], &[]);
    assert_success(&out);
    let doc: Value = serde_json::from_str(&stdout_of(&out)).expect("inspect --json");
    let schema = read_json(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("bundle-spec/schemas/inspect.schema.json"),
    );
    let v = jsonschema::validator_for(&schema).expect("the schema compiles");
    let errs: Vec<String> = v.iter_errors(&doc).map(|e| e.to_string()).collect();
    assert!(errs.is_empty(), "inspect --json: {errs:?}\n{doc}");
    doc
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

/// Reads the `.sig` of `subject` from `reg` through the registry API, checks its signature
/// with openssl against the public key, and returns the digest its payload names.
fn verified_signature(s: &Signed, reg: &Registry, repo: &str, subject: &str) -> String {
    let raw = skopeo_raw_of(
        &format!("{}/{repo}:{}", reg.host(), tag_of(subject, "sig")),
        reg,
    );
    let m: Value = serde_json::from_slice(&raw).unwrap();
    let layer = &m["layers"][0];
    assert_eq!(layer["mediaType"], SIMPLESIGNING);
    let sig = base64::engine::general_purpose::STANDARD
        .decode(layer["annotations"][SIG_ANNOTATION].as_str().unwrap())
        .unwrap();
    let digest = layer["digest"].as_str().unwrap();
    let resp = reg
        .client()
        .request(reqwest::Method::GET, &format!("/v2/{repo}/blobs/{digest}"))
        .send()
        .unwrap();
    assert!(resp.status().is_success(), "GET payload: {}", resp.status());
    let payload = resp.bytes().unwrap().to_vec();
    assert_eq!(sha256_digest(&payload), digest);
    assert!(
        verifies(&s.key, &payload, &sig, s.dir.path()),
        "the signature read from {} does not verify",
        reg.host()
    );
    // The negative: one byte changed in the payload and openssl refuses it.
    let mut tampered = payload.clone();
    let at = tampered.iter().position(|b| *b == b'c').unwrap();
    tampered[at] = b'C';
    assert!(
        !verifies(&s.key, &tampered, &sig, s.dir.path()),
        "a tampered payload verified"
    );
    let p: Value = serde_json::from_slice(&payload).unwrap();
    p["critical"]["image"]["docker-manifest-digest"]
        .as_str()
        .unwrap()
        .to_string()
}

fn skopeo_raw_of(reference: &str, reg: &Registry) -> Vec<u8> {
    try_skopeo_raw(reference, reg).unwrap_or_else(|e| panic!("skopeo inspect {reference}: {e}"))
}

/// The referrers tag-schema index of `subject` at `reg`, if any.
fn schema_index(reg: &Registry, repo: &str, subject: &str) -> Option<Value> {
    reg.client()
        .get_manifest(repo, &schema_tag(subject))
        .map(|m| serde_json::from_slice(&m.bytes).unwrap())
}

fn listed(index: &Value) -> Vec<String> {
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["digest"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn signatures_and_referrers_travel_to_a_registry_without_the_referrers_api() {
    let s = signed(Kind::Distribution);
    let bundle = s.dir.path().join("b.tar.zst");
    pack_ok(&s.spec, &bundle, s.src.source_flags());
    assert_success(&airgap(args!["verify", &bundle], &[]));
    // Every blob once (the signatures share their config), referrers listed in index.json.
    let b = Bundle::open(&bundle);
    let entries: Vec<&str> = b
        .entries
        .iter()
        .filter(|e| e.path.starts_with("blobs/"))
        .map(|e| e.path.as_str())
        .collect();
    let unique: std::collections::BTreeSet<&str> = entries.iter().copied().collect();
    assert_eq!(entries.len(), unique.len(), "a blob stored twice");
    for d in [&s.att.sig, &s.att.att, &s.att.sbom, &s.att.referrer] {
        assert!(
            b.blob_digests().contains(d.as_str()),
            "{d} not in the bundle"
        );
    }

    // inspect names every referrer against its image, text and JSON.
    let j = inspect_json(&bundle);
    let refs = j["images"][0]["referrers"].as_array().expect("referrers");
    let mut by_tag: Vec<(Option<String>, String)> = refs
        .iter()
        .map(|r| {
            assert_eq!(r["subject"], s.image.digest.as_str());
            (
                r["tag"].as_str().map(str::to_string),
                r["digest"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    by_tag.sort();
    let img = &s.image.digest;
    let mut want = vec![
        (None, s.att.referrer.clone()),
        (Some(tag_of(img, "att")), s.att.att.clone()),
        (Some(tag_of(img, "sbom")), s.att.sbom.clone()),
        (Some(tag_of(img, "sig")), s.att.sig.clone()),
    ];
    want.sort();
    assert_eq!(by_tag, want);
    let r = refs.iter().find(|r| r["tag"].is_null()).unwrap();
    assert_eq!(r["artifactType"], SBOM_TYPE);
    let text = stdout_of(&airgap(args!["inspect", &bundle], &[]));
    assert!(
        text.contains(&format!("referrer  {} {}", tag_of(img, "sig"), s.att.sig)),
        "{text}"
    );

    // The target already has a referrers index for this digest, from some other tool: it
    // must be merged into, not replaced.
    let tgt = Registry::start(RegistryOpts::plain());
    let tc = tgt.client();
    let (other_d, other_bytes) = push_artifact(
        &tc,
        "app/signed",
        None,
        (EMPTY, b"{}"),
        ("application/vnd.other", b"other"),
        json!({}),
        json!({"artifactType": "application/vnd.other",
               "subject": {"mediaType": OCI_MANIFEST, "digest": img, "size": s.image.manifest_size()}}),
    );
    let other = json!({"mediaType": OCI_MANIFEST, "digest": other_d, "size": other_bytes.len(),
                       "artifactType": "application/vnd.other"});
    let theirs = serde_json::to_vec(
        &json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [other]}),
    )
    .unwrap();
    tc.push_manifest("app/signed", &schema_tag(img), OCI_INDEX, &theirs);

    let first = load_json(&bundle, &tgt);
    assert!(first["manifestsPushed"].as_u64().unwrap() >= 5, "{first}");
    // The subject landed before anything referring to it (the registry's own log).
    let log = tgt.log();
    let put = |uri: &str| {
        log.lines()
            .position(|l| {
                l.contains("http.request.method=PUT") && l.contains(&format!("uri={uri} "))
            })
            .unwrap_or_else(|| panic!("no PUT of {uri} in the target's log"))
    };
    let subject_at = put("/v2/app/signed/manifests/1");
    for t in ["sig", "att", "sbom"] {
        assert!(subject_at < put(&format!("/v2/app/signed/manifests/{}", tag_of(img, t))));
    }
    assert!(subject_at < put(&format!("\"/v2/app/signed/manifests/{}\"", s.att.referrer)));

    // Every tag and the referrer are at the target with their digests (skopeo judges).
    let th = tgt.host();
    assert_skopeo_digest(&format!("{th}/app/signed:1"), &tgt, img);
    for (suffix, d) in [
        ("sig", &s.att.sig),
        ("att", &s.att.att),
        ("sbom", &s.att.sbom),
    ] {
        assert_skopeo_digest(&format!("{th}/app/signed:{}", tag_of(img, suffix)), &tgt, d);
    }
    assert_skopeo_digest(
        &format!("{th}/app/signed@{}", s.att.referrer),
        &tgt,
        &s.att.referrer,
    );

    // The signature read back from the target verifies and names the target image's digest.
    let named = verified_signature(&s, &tgt, "app/signed", img);
    assert_eq!(named, skopeo_digest(&format!("{th}/app/signed:1"), &tgt));

    // The tag-schema index keeps the other tool's entry and adds ours with its artifactType.
    let index = schema_index(&tgt, "app/signed", img).expect("a referrers index at the target");
    assert_eq!(
        listed(&index),
        vec![other_d.clone(), s.att.referrer.clone()]
    );
    let ours = &index["manifests"][1];
    assert_eq!(ours["artifactType"], SBOM_TYPE);
    assert_eq!(
        ours["annotations"]["org.opencontainers.image.created"],
        "2026-01-01T00:00:00Z"
    );
    assert_eq!(ours["mediaType"], OCI_MANIFEST);

    // Loading again pushes nothing.
    let again = load_json(&bundle, &tgt);
    assert_eq!(again["manifestsPushed"], 0, "{again}");
    assert_eq!(again["blobsUploaded"], 0, "{again}");
    assert_eq!(schema_index(&tgt, "app/signed", img), Some(index.clone()));

    // Another tool rewrote the index without our entry (or a load stopped before writing
    // it): the referrer is there, but OCI 1.1 clients would not find it, so a load puts it
    // back, and only the index is written.
    tc.push_manifest("app/signed", &schema_tag(img), OCI_INDEX, &theirs);
    let repaired = load_json(&bundle, &tgt);
    assert_eq!(repaired["blobsUploaded"], 0, "{repaired}");
    assert_eq!(
        schema_index(&tgt, "app/signed", img).map(|i| listed(&i)),
        Some(vec![other_d.clone(), s.att.referrer.clone()])
    );
}

#[test]
fn no_referrers_leaves_signatures_out() {
    let s = signed(Kind::Distribution);
    let bundle = s.dir.path().join("plain.tar.zst");
    let mut flags = s.src.source_flags();
    flags.push("--no-referrers".into());
    pack_ok(&s.spec, &bundle, flags);
    let j = inspect_json(&bundle);
    assert!(j["images"][0].get("referrers").is_none(), "{j}");
    let tgt = Registry::start(RegistryOpts::plain());
    load_json(&bundle, &tgt);
    let th = tgt.host();
    let img = &s.image.digest;
    assert_skopeo_digest(&format!("{th}/app/signed:1"), &tgt, img);
    for suffix in ["sig", "att", "sbom"] {
        assert_skopeo_absent(&format!("{th}/app/signed:{}", tag_of(img, suffix)), &tgt);
    }
    assert_skopeo_absent(&format!("{th}/app/signed@{}", s.att.referrer), &tgt);
    assert!(schema_index(&tgt, "app/signed", img).is_none());
}

#[test]
fn referrers_api_source_and_target_ferro() {
    let s = signed(Kind::Ferro);
    let bundle = s.dir.path().join("b.tar.zst");
    pack_ok(&s.spec, &bundle, s.src.source_flags());
    let j = inspect_json(&bundle);
    let refs = j["images"][0]["referrers"].as_array().expect("referrers");
    assert_eq!(refs.len(), 4, "{j}");
    let img = &s.image.digest;

    let tgt = Registry::start(RegistryOpts::of(Kind::Ferro));
    load_json(&bundle, &tgt);
    let th = tgt.host();
    assert_skopeo_digest(
        &format!("{th}/app/signed:{}", tag_of(img, "sig")),
        &tgt,
        &s.att.sig,
    );
    let named = verified_signature(&s, &tgt, "app/signed", img);
    assert_eq!(named, *img);
    // The target's own referrers API lists the referrer; no tag-schema index was written.
    let resp = tgt
        .client()
        .request(
            reqwest::Method::GET,
            &format!("/v2/app/signed/referrers/{img}"),
        )
        .send()
        .unwrap();
    let index: Value = resp.json().unwrap();
    assert_eq!(listed(&index), vec![s.att.referrer.clone()]);
    assert!(schema_index(&tgt, "app/signed", img).is_none());
    let again = load_json(&bundle, &tgt);
    assert_eq!(again["manifestsPushed"], 0, "{again}");
}

/// `airgap serve` on a free port, killed when dropped.
struct Served {
    proc: Option<RunningAirgap>,
    port: u16,
}

impl Served {
    fn start(bundle: &Path) -> Served {
        for _ in 0..8 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let mut proc = AirgapCmd::new(args![
                "serve",
                bundle,
                "--listen",
                format!("127.0.0.1:{port}")
            ])
            .spawn();
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
            while std::time::Instant::now() < deadline {
                if proc.child.try_wait().unwrap().is_some() {
                    break;
                }
                if reqwest::blocking::get(format!("http://127.0.0.1:{port}/v2/"))
                    .is_ok_and(|r| r.status().is_success())
                {
                    return Served {
                        proc: Some(proc),
                        port,
                    };
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            proc.kill();
        }
        panic!("airgap serve did not start");
    }
    fn get(&self, path: &str) -> reqwest::blocking::Response {
        reqwest::blocking::get(format!("http://127.0.0.1:{}{path}", self.port)).unwrap()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill();
            let _ = p.wait();
        }
    }
}

#[test]
fn serve_answers_the_referrers_api_and_cosign_tags() {
    let s = signed(Kind::Distribution);
    let bundle = s.dir.path().join("b.tar.zst");
    pack_ok(&s.spec, &bundle, s.src.source_flags());
    let sv = Served::start(&bundle);
    let img = &s.image.digest;
    // The .sig tag, through skopeo (the server is plain HTTP; skopeo falls back to it).
    let out = skopeo(&args![
        "inspect",
        "--raw",
        "--tls-verify=false",
        format!(
            "docker://127.0.0.1:{}/app/signed:{}",
            sv.port,
            tag_of(img, "sig")
        )
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(sha256_digest(&out.stdout), s.att.sig);
    // The signature served verifies with openssl: its payload blob fetched from serve.
    let m: Value = serde_json::from_slice(&out.stdout).unwrap();
    let layer = &m["layers"][0];
    let sig = base64::engine::general_purpose::STANDARD
        .decode(layer["annotations"][SIG_ANNOTATION].as_str().unwrap())
        .unwrap();
    let payload = sv
        .get(&format!(
            "/v2/app/signed/blobs/{}",
            layer["digest"].as_str().unwrap()
        ))
        .bytes()
        .unwrap()
        .to_vec();
    assert_eq!(sha256_digest(&payload), layer["digest"].as_str().unwrap());
    assert!(
        verifies(&s.key, &payload, &sig, s.dir.path()),
        "the signature served does not verify"
    );
    let p: Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(
        p["critical"]["image"]["docker-manifest-digest"],
        img.as_str()
    );

    let r = sv.get(&format!("/v2/app/signed/referrers/{img}"));
    assert!(r.status().is_success());
    assert_eq!(r.headers()["content-type"], OCI_INDEX);
    let index: Value = r.json().unwrap();
    assert_eq!(listed(&index), vec![s.att.referrer.clone()]);
    assert_eq!(index["manifests"][0]["artifactType"], SBOM_TYPE);

    let r = sv.get(&format!(
        "/v2/app/signed/referrers/{img}?artifactType={}",
        SBOM_TYPE.replace('+', "%2B")
    ));
    assert_eq!(r.headers()["oci-filters-applied"], "artifactType");
    assert_eq!(listed(&r.json().unwrap()), vec![s.att.referrer.clone()]);
    let r = sv.get(&format!(
        "/v2/app/signed/referrers/{img}?artifactType=application/vnd.other"
    ));
    assert!(listed(&r.json().unwrap()).is_empty());
    // A subject nothing refers to: an empty index, not an error.
    let r = sv.get(&format!("/v2/app/signed/referrers/{}", s.att.sig));
    assert!(r.status().is_success());
    assert!(listed(&r.json().unwrap()).is_empty());
}

#[test]
fn platform_filter_keeps_the_kept_childs_signature_and_warns() {
    let src = Registry::start(RegistryOpts::plain());
    let dir = tempdir();
    let key = keypair(dir.path());
    let fx = Fixtures::new(&src);
    let index = fx.index_with(
        "multi/app",
        Some("1"),
        7301,
        false,
        &["linux/amd64", "linux/arm64"],
    );
    let amd = index.child("linux/amd64");
    let arm = index.child("linux/arm64");
    let on_index = attach(
        &src,
        "multi/app",
        &index.digest,
        index.manifest_size(),
        &key,
        dir.path(),
        2,
    );
    let on_amd = attach(
        &src,
        "multi/app",
        &amd.digest,
        amd.manifest_size(),
        &key,
        dir.path(),
        3,
    );
    let on_arm = attach(
        &src,
        "multi/app",
        &arm.digest,
        arm.manifest_size(),
        &key,
        dir.path(),
        4,
    );
    let spec = Spec::new()
        .image(&format!("{}/multi/app:1", src.host()))
        .to_yaml();
    let spec = write_file(dir.path(), "airgap.yaml", &spec);
    let bundle = dir.path().join("amd.tar.zst");
    let mut flags = src.source_flags();
    flags.extend(["--platform".to_string(), "linux/amd64".to_string()]);
    let out = pack_ok(&spec, &bundle, flags);
    let err = stderr_of(&out);
    assert!(
        err.contains("--platform made a new index") && err.contains(&index.digest),
        "{err}"
    );
    let j = inspect_json(&bundle);
    let refs = j["images"][0]["referrers"].as_array().unwrap();
    assert_eq!(refs.len(), 4, "{j}");
    assert!(
        refs.iter().all(|r| r["subject"] == amd.digest.as_str()),
        "{j}"
    );

    let tgt = Registry::start(RegistryOpts::plain());
    load_json(&bundle, &tgt);
    let th = tgt.host();
    assert_skopeo_digest(
        &format!("{th}/multi/app:{}", tag_of(&amd.digest, "sig")),
        &tgt,
        &on_amd.sig,
    );
    assert_skopeo_absent(
        &format!("{th}/multi/app:{}", tag_of(&arm.digest, "sig")),
        &tgt,
    );
    assert_skopeo_absent(
        &format!("{th}/multi/app:{}", tag_of(&index.digest, "sig")),
        &tgt,
    );
    assert_skopeo_absent(&format!("{th}/multi/app@{}", on_arm.referrer), &tgt);
    assert_skopeo_absent(&format!("{th}/multi/app@{}", on_index.sig), &tgt);
    let idx = schema_index(&tgt, "multi/app", &amd.digest).expect("index for the kept child");
    assert_eq!(listed(&idx), vec![on_amd.referrer.clone()]);

    // Unfiltered, the index keeps its own signature and both children theirs.
    let all = dir.path().join("all.tar.zst");
    let out = pack_ok(&spec, &all, src.source_flags());
    assert!(!stderr_of(&out).contains("--platform made a new index"));
    let j = inspect_json(&all);
    assert_eq!(
        j["images"][0]["referrers"].as_array().unwrap().len(),
        12,
        "{j}"
    );
}

#[test]
fn a_delta_carries_a_new_signature_of_an_unchanged_image() {
    let src = Registry::start(RegistryOpts::plain());
    let dir = tempdir();
    let key = keypair(dir.path());
    let fx = Fixtures::new(&src);
    let image = fx.image(
        "app/same",
        Some("1"),
        &ImageOpts::oci(7401).layers(1, 256 * 1024),
    );
    let spec = Spec::new()
        .image(&format!("{}/app/same:1", src.host()))
        .to_yaml();
    let spec = write_file(dir.path(), "airgap.yaml", &spec);
    let v1 = dir.path().join("v1.tar.zst");
    pack_ok(&spec, &v1, src.source_flags());
    assert!(inspect_json(&v1)["images"][0].get("referrers").is_none());

    // Signed after release 1 went out: the delta carries the signature, not the layers.
    let att = attach(
        &src,
        "app/same",
        &image.digest,
        image.manifest_size(),
        &key,
        dir.path(),
        5,
    );
    let v2 = dir.path().join("v2.tar.zst");
    let mut flags = src.source_flags();
    flags.extend(["--base".to_string(), v1.display().to_string()]);
    pack_ok(&spec, &v2, flags);
    let j = inspect_json(&v2);
    assert_eq!(
        j["images"][0]["referrers"].as_array().unwrap().len(),
        4,
        "{j}"
    );
    let layer = &image.layers()[0].digest;
    let carried = Bundle::open(&v2).blob_digests();
    assert!(
        !carried.contains(layer),
        "the delta carries the unchanged layer"
    );
    assert!(carried.contains(&att.sig));

    let tgt = Registry::start(RegistryOpts::plain());
    load_json(&v1, &tgt);
    let second = load_json(&v2, &tgt);
    assert_eq!(second["imagesUnchanged"], 1, "{second}");
    let th = tgt.host();
    assert_skopeo_digest(
        &format!("{th}/app/same:{}", tag_of(&image.digest, "sig")),
        &tgt,
        &att.sig,
    );
    assert_skopeo_digest(
        &format!("{th}/app/same@{}", att.referrer),
        &tgt,
        &att.referrer,
    );
}

#[test]
fn a_foreign_non_index_under_the_referrers_tag_is_refused_and_left_alone() {
    let s = signed(Kind::Distribution);
    let bundle = s.dir.path().join("b.tar.zst");
    pack_ok(&s.spec, &bundle, s.src.source_flags());
    let img = &s.image.digest;
    // Something that is no index already holds the tag the referrers index would take.
    let tgt = Registry::start(RegistryOpts::plain());
    let (squatter, _) = push_artifact(
        &tgt.client(),
        "app/signed",
        Some(&schema_tag(img)),
        (EMPTY, b"{}"),
        ("application/vnd.other", b"squatter"),
        json!({}),
        json!({}),
    );
    let out = airgap(
        args![
            "load",
            &bundle,
            "--registry",
            tgt.host(),
            tgt.target_flags()
        ],
        &[],
    );
    assert_failure_contains(
        &out,
        &[
            &format!("app/signed:{}", schema_tag(img)),
            "not the referrers index of",
            "left as it is",
        ],
    );
    let th = tgt.host();
    assert_skopeo_digest(
        &format!("{th}/app/signed:{}", schema_tag(img)),
        &tgt,
        &squatter,
    );
    // What could be pushed was: the image and its signature are there.
    assert_skopeo_digest(&format!("{th}/app/signed:1"), &tgt, img);
    assert_skopeo_digest(
        &format!("{th}/app/signed:{}", tag_of(img, "sig")),
        &tgt,
        &s.att.sig,
    );
}

#[test]
fn a_split_set_carries_the_signatures_too() {
    let s = signed(Kind::Distribution);
    let out_dir = s.dir.path().join("usb");
    std::fs::create_dir_all(&out_dir).unwrap();
    let bundle = out_dir.join("b.tar.zst");
    let mut flags = s.src.source_flags();
    flags.extend(["--split".to_string(), "32KiB".to_string()]);
    let out = airgap(args!["pack", &s.spec, "-o", &bundle, flags], &[]);
    assert_success(&out);
    let parts = dir_names(&out_dir);
    assert!(parts.len() >= 3, "expected parts and a sidecar: {parts:?}");
    let out = airgap(args!["verify", &bundle], &[]);
    assert_success(&out);
    let tgt = Registry::start(RegistryOpts::plain());
    load_json(&bundle, &tgt);
    let img = &s.image.digest;
    let named = verified_signature(&s, &tgt, "app/signed", img);
    assert_eq!(named, *img);
    assert_skopeo_digest(
        &format!("{}/app/signed@{}", tgt.host(), s.att.referrer),
        &tgt,
        &s.att.referrer,
    );
}

#[test]
fn an_exported_oci_layout_loads_with_its_cosign_tags() {
    let s = signed(Kind::Distribution);
    let bundle = s.dir.path().join("b.tar.zst");
    pack_ok(&s.spec, &bundle, s.src.source_flags());
    let oci = s.dir.path().join("oci");
    assert_success(&airgap(args!["export", &bundle, "--oci", &oci], &[]));
    let index = read_json(&oci.join("index.json"));
    assert!(listed(&index).contains(&s.att.referrer), "{index}");
    assert_success(&airgap(args!["verify", &oci], &[]));
    let tgt = Registry::start(RegistryOpts::plain());
    let out = airgap(
        args!["load", &oci, "--registry", tgt.host(), tgt.target_flags()],
        &[],
    );
    assert_success(&out);
    let img = &s.image.digest;
    let th = tgt.host();
    assert_skopeo_digest(&format!("{th}/app/signed:1"), &tgt, img);
    // A cosign attachment is named by its tag in the layout, so it loads as one.
    assert_skopeo_digest(
        &format!("{th}/app/signed:{}", tag_of(img, "sig")),
        &tgt,
        &s.att.sig,
    );
}

/// A source behind the fault proxy: spec naming the source's images, and the mirror flag
/// sending the requests through the proxy.
fn through(
    proxy: &support::proxy::FaultProxy,
    src: &Registry,
    images: &[&str],
    dir: &Path,
) -> (PathBuf, Vec<String>) {
    let mut spec = Spec::new();
    for i in images {
        spec = spec.image(&format!("{}/{i}", src.host()));
    }
    let spec = write_file(dir, "proxied.yaml", &spec.to_yaml());
    (
        spec,
        vec!["--mirror".into(), format!("{}={}", src.host(), proxy.url())],
    )
}

/// What a pack asked about referrers, counted at the proxy: tag lists, referrers API
/// requests, and manifest requests by a `sha256-<hex>…` tag.
fn discovery_requests(seen: &[support::proxy::Seen]) -> (usize, usize, usize) {
    let count = |f: &dyn Fn(&str) -> bool| seen.iter().filter(|s| f(&s.path)).count();
    (
        count(&|p| p.ends_with("/tags/list") || p.contains("/tags/list?")),
        count(&|p| p.contains("/referrers/")),
        count(&|p| p.contains("/manifests/sha256-")),
    )
}

#[test]
fn discovery_asks_one_tag_list_per_repository_and_the_referrers_api_once() {
    use support::proxy::{Fault, FaultProxy};
    // app/signed:1 signed, attested, with an SBOM and a tag-schema referrer; two more
    // unsigned tags beside it, and six unsigned images in three other repositories.
    let s = signed(Kind::Distribution);
    let fx = Fixtures::new(&s.src);
    let mut names = vec!["app/signed:1".to_string()];
    for t in ["2", "3"] {
        fx.image(
            "app/signed",
            Some(t),
            &ImageOpts::oci(7600 + t.parse::<u64>().unwrap()).layers(1, 4096),
        );
        names.push(format!("app/signed:{t}"));
    }
    for i in 0..6u64 {
        let repo = format!("plain/app{}", i % 3);
        let tag = format!("{}", i / 3 + 1);
        fx.image(&repo, Some(&tag), &ImageOpts::oci(7500 + i).layers(1, 4096));
        names.push(format!("{repo}:{tag}"));
    }
    let proxy = FaultProxy::start(&s.src.host(), Fault::None);
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let (spec, flags) = through(&proxy, &s.src, &refs, s.dir.path());
    let bundle = s.dir.path().join("b.tar.zst");
    pack_ok(&spec, &bundle, flags.clone());
    let (lists, api, by_tag) = discovery_requests(&proxy.seen());
    // One tag list per repository (4), the referrers API once for the registry
    // (distribution: 404), and tags asked about only where the lists name them: the signed
    // image's .sig, .att, .sbom and its tag-schema index (4), none for the 8 unsigned images
    // (which used to cost 4 each).
    assert_eq!(
        (lists, api, by_tag),
        (4, 1, 4),
        "tag lists, referrers requests, sha256- tag requests:\n{}",
        proxy.describe()
    );
    // And what they found is carried: every signature and referrer of app/signed:1, nothing
    // for the others.
    let j = inspect_json(&bundle);
    let images = j["images"].as_array().expect("images");
    assert_eq!(images.len(), names.len());
    let mut carried: Vec<String> = Vec::new();
    for i in images {
        let refs = i["referrers"].as_array().cloned().unwrap_or_default();
        if i["reference"]
            .as_str()
            .is_some_and(|r| r.ends_with("app/signed:1"))
        {
            carried.extend(
                refs.iter()
                    .map(|r| r["digest"].as_str().unwrap().to_string()),
            );
        } else {
            assert!(refs.is_empty(), "{}: {refs:?}", i["reference"]);
        }
    }
    carried.sort();
    let mut want = vec![
        s.att.sig.clone(),
        s.att.att.clone(),
        s.att.sbom.clone(),
        s.att.referrer.clone(),
    ];
    want.sort();
    assert_eq!(carried, want);

    // --no-referrers asks nothing of the kind.
    proxy.reset_counts();
    let plain = s.dir.path().join("plain.tar.zst");
    let mut no = flags;
    no.push("--no-referrers".into());
    pack_ok(&spec, &plain, no);
    assert_eq!(
        discovery_requests(&proxy.seen()),
        (0, 0, 0),
        "{}",
        proxy.describe()
    );
}

#[test]
fn a_refused_tag_list_falls_back_to_asking_each_tag() {
    use support::proxy::{Fault, FaultProxy};
    // A registry that refuses tag lists (some do, for pull-only tokens): each subject's
    // tags are asked about one by one, and the signatures are still found.
    let s = signed(Kind::Distribution);
    let proxy = FaultProxy::start(
        &s.src.host(),
        Fault::Canned {
            method: Some("GET".into()),
            path_contains: "/tags/list".into(),
            status: 403,
            content_type: "application/json".into(),
            headers: vec![],
            body: std::sync::Arc::new(
                br#"{"errors":[{"code":"DENIED","message":"no listing"}]}"#.to_vec(),
            ),
        },
    );
    let (spec, flags) = through(&proxy, &s.src, &["app/signed:1"], s.dir.path());
    let bundle = s.dir.path().join("b.tar.zst");
    pack_ok(&spec, &bundle, flags);
    let (lists, api, by_tag) = discovery_requests(&proxy.seen());
    assert_eq!(
        (lists, api, by_tag),
        (1, 1, 4),
        "tag lists, referrers requests, sha256- tag requests:\n{}",
        proxy.describe()
    );
    let b = Bundle::open(&bundle);
    for d in [&s.att.sig, &s.att.att, &s.att.sbom, &s.att.referrer] {
        assert!(
            b.blob_digests().contains(d.as_str()),
            "{d} not in the bundle"
        );
    }
}

#[test]
fn a_referrers_api_refusing_access_fails_the_pack_naming_the_image() {
    use support::proxy::{Fault, FaultProxy};
    let s = signed(Kind::Distribution);
    let proxy = FaultProxy::start(
        &s.src.host(),
        Fault::Canned {
            method: Some("GET".into()),
            path_contains: "/referrers/".into(),
            status: 403,
            content_type: "application/json".into(),
            headers: vec![],
            body: std::sync::Arc::new(
                br#"{"errors":[{"code":"DENIED","message":"referrers are for admins"}]}"#.to_vec(),
            ),
        },
    );
    let (spec, flags) = through(&proxy, &s.src, &["app/signed:1"], s.dir.path());
    let bundle = s.dir.path().join("refused.tar.zst");
    let out = airgap(args!["pack", &spec, "-o", &bundle, flags.clone()], &[]);
    assert_failure_contains(
        &out,
        &[
            &format!("{}/app/signed:1", s.src.host()),
            "GET referrers",
            "403",
            "referrers are for admins",
            "signatures and other referrers",
            "hint: pack with --no-referrers",
        ],
    );
    assert!(!bundle.exists(), "a failed pack left a bundle");
    assert!(
        dir_names(s.dir.path())
            .iter()
            .all(|n| !n.starts_with("refused")),
        "a failed pack left a temporary file: {:?}",
        dir_names(s.dir.path())
    );
    // The way out the hint names works.
    let mut no = flags;
    no.push("--no-referrers".into());
    pack_ok(&spec, &bundle, no);
}
