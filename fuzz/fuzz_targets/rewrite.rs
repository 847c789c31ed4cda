//! `rewrite` never panics; when it succeeds, running it again on its output changes no image
//! (idempotence), and the output is YAML whenever the input was.
#![no_main]

use std::sync::OnceLock;

use airgap::digest::Digest;
use airgap::image_map::{ImageMap, ImageMapEntry};
use airgap::reference::Reference;
use airgap::rewrite::{rewrite, ChangeKind, RewriteOptions};
use libfuzzer_sys::fuzz_target;
use saphyr::{LoadableYamlNode, Yaml};

fn digest(c: char) -> Digest {
    Digest::parse(&format!("sha256:{}", c.to_string().repeat(64))).unwrap()
}

fn entry(source: &str, target: &str, d: char) -> ImageMapEntry {
    ImageMapEntry {
        source: Reference::parse(source).unwrap(),
        target: Reference::parse(target).unwrap(),
        digest: digest(d),
        source_digest: None,
    }
}

fn map() -> &'static ImageMap {
    static MAP: OnceLock<ImageMap> = OnceLock::new();
    MAP.get_or_init(|| {
        let mut busybox = entry("busybox:1.36", "reg.local:5000/library/busybox:1.36", 'b');
        busybox.source_digest = Some(digest('e'));
        ImageMap::new(vec![
            entry("redis:7", "reg.local:5000/library/redis:7", 'a'),
            entry("nginx", "reg.local:5000/library/nginx:latest", 'c'),
            busybox,
            entry(
                &format!("quay.io/org/app@{}", digest('d')),
                "reg.local:5000/org/app",
                'd',
            ),
        ])
    })
}

fn is_yaml(text: &str) -> bool {
    Yaml::load_from_str(text).is_ok()
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let options = [
        RewriteOptions::default(),
        RewriteOptions {
            pin_digests: true,
            pull_secret: Some("regcred".to_string()),
        },
    ];
    let mut input_is_yaml = None;
    for opts in &options {
        let Ok(out) = rewrite(text, map(), opts) else {
            continue;
        };
        if out.changes.is_empty() {
            assert_eq!(out.text, text);
            continue;
        }
        if *input_is_yaml.get_or_insert_with(|| is_yaml(text)) {
            assert!(
                is_yaml(&out.text),
                "input {text:?} is YAML, output {:?} is not",
                out.text
            );
        }
        match rewrite(&out.text, map(), opts) {
            Ok(again) => {
                let images: Vec<_> = again
                    .changes
                    .iter()
                    .filter(|c| c.kind == ChangeKind::Image)
                    .collect();
                assert!(
                    images.is_empty(),
                    "not idempotent: {text:?} -> {:?} then {images:?}",
                    out.text
                );
            }
            Err(e) => panic!(
                "the output {:?} of {text:?} cannot be rewritten again: {e}",
                out.text
            ),
        }
    }
});
