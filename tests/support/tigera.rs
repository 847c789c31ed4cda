//! The Tigera operator's image naming rule, as the judge of what airgap writes into an
//! `Installation`: written from Tigera's Installation API reference ("Image format:
//! `<registry><imagePath>/<imagePrefix><imageName>:<image-tag>`", `UseDefault`) and the
//! operator's `GetReference` (tigera/operator `pkg/components/references.go`). Plain Rust, no
//! dependencies, so both the library's unit tests (`#[path]`) and integration tests use it.
#![allow(dead_code)]

/// What an `Installation`'s `spec` says (empty for an absent field).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstallationImages {
    pub registry: String,
    pub image_path: String,
    pub image_prefix: String,
}

const USE_DEFAULT: &str = "UseDefault";

fn is_default(v: &str) -> bool {
    v.is_empty() || v == USE_DEFAULT
}

/// The operator's defaults for an image it deploys, by its original name: every one is
/// `quay.io/`, with the path `calico/` for Calico's components and `tigera/` for the operator.
fn defaults(image: &str) -> (&'static str, &str, &str) {
    let (path, name) = image.split_once('/').expect("calico/NAME or tigera/NAME");
    ("quay.io/", path, name)
}

/// Go's `path.Join`: the non-empty elements joined with `/`, then cleaned (repeated slashes,
/// `.` and trailing slashes dropped, `..` removing the element before it).
fn path_join(elems: &[&str]) -> String {
    let mut out: Vec<&str> = Vec::new();
    for part in elems.iter().flat_map(|e| e.split('/')) {
        match part {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            p => out.push(p),
        }
    }
    out.join("/")
}

/// The name without tag or digest the operator gives `image` (`calico/node`).
fn repository(spec: &InstallationImages, image: &str) -> String {
    let (default_registry, default_path, name) = defaults(image);
    let registry = if is_default(&spec.registry) {
        default_registry
    } else {
        spec.registry.as_str()
    };
    let path = if is_default(&spec.image_path) {
        default_path
    } else {
        spec.image_path.as_str()
    };
    let name = if is_default(&spec.image_prefix) {
        name.to_string()
    } else {
        format!("{}{name}", spec.image_prefix)
    };
    path_join(&[registry, path, &name])
}

/// The reference the operator pulls for `image` (`calico/node`) at `version` (its own
/// compiled-in version, the tag the image was published with).
pub fn operator_reference(spec: &InstallationImages, image: &str, version: &str) -> String {
    format!("{}:{version}", repository(spec, image))
}

/// The reference the operator pulls when an `ImageSet` lists `image` with `digest`.
pub fn operator_reference_by_digest(
    spec: &InstallationImages,
    image: &str,
    digest: &str,
) -> String {
    format!("{}@{digest}", repository(spec, image))
}

#[cfg(test)]
mod rule_tests {
    use super::*;

    fn spec(registry: &str, image_path: &str, image_prefix: &str) -> InstallationImages {
        InstallationImages {
            registry: registry.into(),
            image_path: image_path.into(),
            image_prefix: image_prefix.into(),
        }
    }

    /// The cases of the operator's own `images_test.go`, one per rule.
    #[test]
    fn tigera_naming_rules() {
        let r = |s: &InstallationImages, i| operator_reference(s, i, "v1");
        // No override, and UseDefault: quay.io/ and each image's own path.
        for s in [
            spec("", "", ""),
            spec(USE_DEFAULT, USE_DEFAULT, USE_DEFAULT),
        ] {
            assert_eq!(r(&s, "calico/node"), "quay.io/calico/node:v1");
            assert_eq!(r(&s, "tigera/operator"), "quay.io/tigera/operator:v1");
        }
        // Registry with or without the trailing slash; a registry may carry a path.
        for reg in ["reg:5000/", "reg:5000"] {
            assert_eq!(
                r(&spec(reg, "", ""), "calico/node"),
                "reg:5000/calico/node:v1"
            );
        }
        assert_eq!(
            r(&spec("reg/extra/", "", ""), "tigera/operator"),
            "reg/extra/tigera/operator:v1"
        );
        // imagePath replaces every image's default path, with or without slash.
        for p in ["userpath", "userpath/"] {
            assert_eq!(
                r(&spec("", p, ""), "calico/node"),
                "quay.io/userpath/node:v1"
            );
            assert_eq!(
                r(&spec("", p, ""), "tigera/operator"),
                "quay.io/userpath/operator:v1"
            );
        }
        assert_eq!(
            r(&spec("quay.io/extra/", "userpath", ""), "calico/node"),
            "quay.io/extra/userpath/node:v1"
        );
        // imagePrefix goes before the last component.
        assert_eq!(
            r(&spec("quay.io/", "", "prefix-"), "calico/node"),
            "quay.io/calico/prefix-node:v1"
        );
        // An ImageSet: the digest instead of the version.
        assert_eq!(
            operator_reference_by_digest(
                &spec("quay.io/extra/", "userpath", ""),
                "calico/node",
                "sha256:abc"
            ),
            "quay.io/extra/userpath/node@sha256:abc"
        );
    }
}
