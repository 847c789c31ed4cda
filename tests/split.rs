//! Split bundles (`pack --split`): parts written as pack goes, each checked on its own, read
//! back as one stream by load, verify and inspect.

mod support;

use std::path::{Path, PathBuf};

use support::*;

const PART: u64 = 1 << 20;

struct Packed {
    _src: Registry,
    dir: tempfile::TempDir,
    images: Vec<Image>,
}

impl Packed {
    fn part(&self, n: usize) -> PathBuf {
        self.dir.path().join(format!("out/b.tar.zst.{n:03}"))
    }
    fn out(&self) -> PathBuf {
        self.dir.path().join("out")
    }
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Two images with about 3.5 MiB of incompressible layers, packed in 1 MiB parts.
fn packed() -> Packed {
    let src = Registry::start(RegistryOpts::plain());
    let fx = Fixtures::new(&src);
    let images = vec![
        fx.image(
            "app/a",
            Some("1"),
            &ImageOpts::oci(501).layers(2, 1024 * 1024),
        ),
        fx.oci_index("app/b", "1", 502),
        fx.big_layer_image("app/c", "1", 1536 * 1024, 503),
    ];
    let dir = tempdir();
    let mut spec = Spec::new();
    for i in &images {
        spec = spec.image(&i.reference(&src.host()));
    }
    let spec = spec.write(dir.path());
    std::fs::create_dir(dir.path().join("out")).unwrap();
    let out = airgap(
        args![
            "pack",
            &spec,
            "-o",
            dir.path().join("out/b.tar.zst"),
            "--split",
            "1MiB",
            src.source_flags()
        ],
        &[],
    );
    assert_success(&out);
    Packed {
        _src: src,
        dir,
        images,
    }
}

#[test]
fn split_bundle_round_trip_from_any_part() {
    let p = packed();
    let files = names(&p.out());
    let parts: Vec<&String> = files.iter().filter(|n| !n.ends_with(".json")).collect();
    assert!(parts.len() >= 3, "expected several parts: {files:?}");
    assert!(
        files.contains(&"b.tar.zst.parts.json".to_string()),
        "{files:?}"
    );
    assert!(
        !files.contains(&"b.tar.zst".to_string()),
        "a whole bundle was written too"
    );
    for (i, name) in parts.iter().enumerate() {
        assert_eq!(name.as_str(), format!("b.tar.zst.{:03}", i + 1));
        let len = std::fs::metadata(p.out().join(name)).unwrap().len();
        assert!(len <= PART, "{name} is {len} bytes");
        if i + 1 < parts.len() {
            assert_eq!(len, PART, "{name}: only the last part may be short");
        }
    }
    // verify and inspect from a middle part, load from the sidecar.
    let out = airgap(args!["verify", p.part(2)], &[]);
    assert_success(&out);
    let out = airgap(args!["inspect", p.part(1), "--json"], &[]);
    assert_success(&out);
    let tgt = Registry::start(RegistryOpts::plain());
    let out = airgap(
        args![
            "load",
            p.out().join("b.tar.zst.parts.json"),
            "--registry",
            tgt.host(),
            tgt.target_flags()
        ],
        &[],
    );
    assert_success(&out);
    for img in &p.images {
        assert_skopeo_digest(&img.reference(&tgt.host()), &tgt, &img.digest);
    }
}

#[test]
fn verify_names_the_bad_part() {
    let p = packed();
    // A flipped byte in part 2.
    let mut bytes = std::fs::read(p.part(2)).unwrap();
    bytes[1000] ^= 0x55;
    std::fs::write(p.part(2), &bytes).unwrap();
    let out = airgap(args!["verify", p.part(1)], &[]);
    assert_failure_contains(&out, &["b.tar.zst.002", "corrupt"]);
    bytes[1000] ^= 0x55;
    std::fs::write(p.part(2), &bytes).unwrap();
    assert_success(&airgap(args!["verify", p.part(1)], &[]));

    // Parts 1 and 2 swapped.
    let tmp = p.out().join("swap");
    std::fs::rename(p.part(1), &tmp).unwrap();
    std::fs::rename(p.part(2), p.part(1)).unwrap();
    std::fs::rename(&tmp, p.part(2)).unwrap();
    let out = airgap(args!["verify", p.part(1)], &[]);
    assert_failure_contains(&out, &["b.tar.zst.001", "out of order"]);
    std::fs::rename(p.part(1), &tmp).unwrap();
    std::fs::rename(p.part(2), p.part(1)).unwrap();
    std::fs::rename(&tmp, p.part(2)).unwrap();

    // Part 3 missing: verify names it; load fails and tags nothing.
    let kept = p.dir.path().join("part3");
    std::fs::rename(p.part(3), &kept).unwrap();
    let out = airgap(args!["verify", p.part(1)], &[]);
    assert_failure_contains(&out, &["b.tar.zst.003", "missing"]);
    let tgt = Registry::start(RegistryOpts::plain());
    let out = airgap(
        args![
            "load",
            p.part(1),
            "--registry",
            tgt.host(),
            tgt.target_flags()
        ],
        &[],
    );
    assert_failure_contains(&out, &["b.tar.zst.003"]);
    for img in &p.images {
        assert_skopeo_absent(&img.reference(&tgt.host()), &tgt);
    }
}

#[test]
fn failed_split_pack_leaves_no_parts() {
    let src = Registry::start(RegistryOpts::plain());
    let fx = Fixtures::new(&src);
    let img = fx.image(
        "app/a",
        Some("1"),
        &ImageOpts::oci(511).layers(2, 1024 * 1024),
    );
    let dir = tempdir();
    let spec = Spec::new()
        .image(&img.reference(&src.host()))
        .image(&format!("{}/app/nope:1", src.host()))
        .write(dir.path());
    let out_dir = dir.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let out = airgap(
        args![
            "pack",
            &spec,
            "-o",
            out_dir.join("b.tar.zst"),
            "--split",
            "512KiB",
            src.source_flags()
        ],
        &[],
    );
    assert_failure_contains(&out, &["app/nope:1"]);
    assert!(
        names(&out_dir).is_empty(),
        "left behind: {:?}",
        names(&out_dir)
    );
    let out = airgap(
        args![
            "pack",
            &spec,
            "-o",
            out_dir.join("b.tar.zst"),
            "--split",
            "0"
        ],
        &[],
    );
    assert_failure_contains(&out, &["--split", "0"]);
}
