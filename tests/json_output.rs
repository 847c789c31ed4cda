//! `pack --json`, `load --json`, `verify --json` and `inspect --json` against a real registry:
//! standard output is exactly one JSON document, it validates against its schema in
//! bundle-spec/schemas/ (with the `jsonschema` crate), and what it says agrees with the bundle,
//! the registry and the image map.

mod support;

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;
use support::*;

fn schema(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("bundle-spec/schemas")
        .join(format!("{name}.schema.json"));
    read_json(&path)
}

/// The schema's errors for `doc`, one line each (empty: valid).
fn errors(schema: &Value, doc: &Value) -> Vec<String> {
    let v = jsonschema::validator_for(schema).expect("the schema compiles");
    v.iter_errors(doc)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

#[track_caller]
fn assert_valid(name: &str, doc: &Value) {
    let errs = errors(&schema(name), doc);
    assert!(
        errs.is_empty(),
        "{name} --json does not match bundle-spec/schemas/{name}.schema.json:\n{}\n{}",
        errs.join("\n"),
        serde_json::to_string_pretty(doc).unwrap()
    );
}

/// Standard output as one JSON document: parsing it whole fails on anything printed beside it.
#[track_caller]
fn json_stdout(out: &std::process::Output) -> Value {
    assert_success(out);
    let text = stdout_of(out);
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}):\n{text}"))
}

#[test]
fn json_outputs_validate_against_their_schemas() {
    let src = Registry::start(RegistryOpts::plain());
    let tgt = Registry::start(RegistryOpts::plain());
    let fx = AllFixtures::push(&src, false);
    let sh = src.host();
    let dir = tempdir();
    let mut spec = Spec::new();
    for img in fx.all() {
        spec = spec.image(&fx.spec_ref(img, &sh));
    }
    let spec = spec.write(dir.path());
    let bundle = dir.path().join("bundle.tar.zst");

    // pack: the report only on stdout; progress went to stderr.
    let out = pack_ok(
        &spec,
        &bundle,
        args![mirror_flags(&src, &["docker.io"]), "--json"],
    );
    let pack = json_stdout(&out);
    assert_valid("pack", &pack);
    assert!(
        stderr_of(&out).contains("resolving"),
        "progress is not on stderr:\n{}",
        stderr_of(&out)
    );
    let b = Bundle::open(&bundle);
    let packed: BTreeMap<String, String> = pack["imageList"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            let r = i["reference"].as_str().unwrap().to_string();
            (r, i["digest"].as_str().unwrap().to_string())
        })
        .collect();
    let in_bundle: BTreeMap<String, String> = b
        .refs()
        .keys()
        .map(|r| (r.clone(), b.ref_digest(r)))
        .collect();
    assert_eq!(
        packed, in_bundle,
        "pack --json images vs the bundle's index.json"
    );
    assert_eq!(pack["images"], fx.all().len());
    assert_eq!(pack["blobs"], b.blob_digests().len());
    assert_eq!(pack["bytes"], b.blobs_size());
    assert_eq!(
        pack["compressed"],
        std::fs::metadata(&bundle).unwrap().len()
    );
    assert_eq!(pack["id"], sha256_digest(b.bytes("airgap.json")));

    // inspect and verify name the same bundle and images.
    let inspect = json_stdout(&airgap(args!["inspect", &bundle, "--json"], &[]));
    assert_valid("inspect", &inspect);
    assert_eq!(inspect["id"], pack["id"]);
    assert_eq!(inspect["images"], pack["imageList"]);
    let out = airgap(args!["verify", &bundle, "--json"], &[]);
    let verify = json_stdout(&out);
    assert_valid("verify", &verify);
    assert_eq!(verify["id"], pack["id"]);
    assert_eq!(verify["imageList"], pack["imageList"]);
    assert_eq!(verify["blobs"], pack["blobs"]);
    assert_eq!(verify["parts"], Value::Null);
    // --quiet silences progress, never the document asked for.
    let quiet = json_stdout(&airgap(args!["verify", &bundle, "--json", "-q"], &[]));
    assert_eq!(quiet["id"], pack["id"]);

    // load: the image map in the report is the one written, and the digests are at the target.
    let th = tgt.host();
    let map_path = dir.path().join("images.json");
    let load_args = args![
        "load",
        &bundle,
        "--registry",
        &th,
        tgt.target_flags(),
        "--image-map",
        &map_path,
        "--json"
    ];
    let out = airgap(&load_args, &[]);
    let load = json_stdout(&out);
    assert_valid("load", &load);
    assert_eq!(load["imageMap"], read_json(&map_path));
    assert_eq!(load["written"]["imageMap"], map_path.display().to_string());
    assert_eq!(load["registry"], th);
    assert_eq!(load["images"], fx.all().len());
    assert_eq!(load["imagesUnchanged"], 0);
    assert!(load["blobsUploaded"].as_u64().unwrap() > 0);
    let statuses = |r: &serde_json::Value| -> Vec<(String, String, String)> {
        r["imageList"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                let s = |k: &str| e[k].as_str().unwrap().to_string();
                (s("target"), s("digest"), s("status"))
            })
            .collect()
    };
    let first = statuses(&load);
    assert_eq!(first.len(), fx.all().len());
    for (target, digest, status) in &first {
        assert_eq!(status, "pushed", "{target}");
        assert_skopeo_digest(target, &tgt, digest);
    }
    // Every digest the report names is what skopeo reads at the target.
    for e in load["imageMap"]["images"].as_array().unwrap() {
        assert_skopeo_digest(
            e["target"].as_str().unwrap(),
            &tgt,
            e["digest"].as_str().unwrap(),
        );
    }
    // A second load changes nothing, and says so.
    let again = json_stdout(&airgap(&load_args, &[]));
    assert_valid("load", &again);
    assert_eq!(again["imagesUnchanged"], fx.all().len());
    let second = statuses(&again);
    assert_eq!(second.len(), first.len());
    for ((t1, d1, _), (t2, d2, status)) in first.iter().zip(&second) {
        assert_eq!((t1, d1, status.as_str()), (t2, d2, "unchanged"));
    }
    assert_eq!(again["blobsUploaded"], 0);
    assert_eq!(again["manifestsPushed"], 0);
}

#[test]
fn a_failed_command_prints_no_json() {
    let dir = tempdir();
    let out = airgap(
        args!["verify", dir.path().join("missing.tar.zst"), "--json"],
        &[],
    );
    assert_failure(&out);
    assert_eq!(stdout_of(&out), "");
}

/// The schemas are strict enough to catch drift: a missing or unknown field, a wrong type.
#[test]
fn schemas_reject_what_airgap_does_not_print() {
    let digest = format!("sha256:{}", "a".repeat(64));
    let image = serde_json::json!({
        "reference": "docker.io/library/redis:7", "digest": digest,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "platforms": ["linux/amd64"], "size": 10, "source": "public"
    });
    let good = serde_json::json!({
        "reportVersion": 1, "output": "b.tar.zst", "split": null, "id": digest,
        "imageList": [image], "images": 1, "blobs": 3, "bytes": 10, "compressed": 9,
        "seconds": 0.5
    });
    let s = schema("pack");
    assert!(errors(&s, &good).is_empty(), "{:?}", errors(&s, &good));
    let mut missing = good.clone();
    missing.as_object_mut().unwrap().remove("id");
    assert!(!errors(&s, &missing).is_empty());
    let mut unknown = good.clone();
    unknown["extra"] = 1.into();
    assert!(!errors(&s, &unknown).is_empty());
    let mut bad_digest = good.clone();
    bad_digest["imageList"][0]["digest"] = "redis".into();
    assert!(!errors(&s, &bad_digest).is_empty());
    let mut version = good;
    version["reportVersion"] = 2.into();
    assert!(!errors(&s, &version).is_empty());
}

/// Each schema repeats the shared `$defs` (so a consumer needs no resolver); they must agree.
#[test]
fn shared_definitions_agree_across_schemas() {
    let mut seen: BTreeMap<String, (String, Value)> = BTreeMap::new();
    for name in ["pack", "load", "verify", "inspect"] {
        let s = schema(name);
        assert_eq!(s["$schema"], "https://json-schema.org/draft/2020-12/schema");
        assert!(s["$id"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/schemas/{name}.schema.json")));
        assert_eq!(s["properties"]["reportVersion"]["const"], 1, "{name}");
        for (k, v) in s["$defs"].as_object().unwrap() {
            if let Some((first, earlier)) = seen.get(k) {
                assert_eq!(v, earlier, "$defs/{k} differs between {first} and {name}");
            } else {
                seen.insert(k.clone(), (name.to_string(), v.clone()));
            }
        }
    }
}
