//! Finding the images a set of manifests uses, for `pack` with `imagesFromManifests` and
//! `pack --list-images`: pod specs, related-image variables, declared fields, and the Calico
//! images a Tigera `ImageSet` pins (named as the operator computes them from the
//! `Installation`). Reads only; nothing is resolved here.

use super::locate::{self, Site};
use super::plan::image_uses;
use super::tigera::{operator_image, USE_DEFAULT};
use super::tree::{NodeId, Tree};
use super::{parse, UseKind};
use crate::image_rules::ImageRules;
use crate::reference::Reference;
use crate::rewrite::files::{from_rewrite, utf8, K8sError, NamedFile};

/// An image a manifest uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundImage {
    pub file: String,
    pub line: usize,
    /// As written (for an ImageSet entry: the reference the operator computes).
    pub text: String,
    pub reference: Reference,
    pub kind: UseKind,
}

#[derive(Debug, Clone, Default)]
pub struct Discovery {
    /// In file order, then line order; each reference once (the first use).
    pub images: Vec<FoundImage>,
    /// Things the user should know (`file:line: …`).
    pub notes: Vec<String>,
    /// `file:line` of each Tigera `Installation` when no `ImageSet` names its images: the
    /// operator computes them, so they cannot be found here.
    pub installations_without_image_set: Vec<String>,
}

/// What an Installation's `spec` says about image names (empty: absent).
#[derive(Debug, Clone, Default)]
struct Naming {
    registry: String,
    image_path: String,
    image_prefix: String,
}

struct ImageSetEntry {
    file: String,
    line: usize,
    set: String,
    image: String,
    digest: String,
}

pub fn discover_images(files: &[NamedFile], rules: &ImageRules) -> Result<Discovery, K8sError> {
    let mut out = Discovery::default();
    let mut installations: Vec<(String, usize, Naming)> = Vec::new();
    let mut sets: Vec<ImageSetEntry> = Vec::new();
    for (name, bytes) in files {
        let text = utf8(name, bytes)?;
        let tree = parse(text).map_err(|e| from_rewrite(name, e))?;
        for u in image_uses(&tree, rules, true).map_err(|e| from_rewrite(name, e))? {
            out.images.push(FoundImage {
                file: name.clone(),
                line: u.line,
                text: u.text,
                reference: u.reference,
                kind: u.kind,
            });
        }
        for site in locate::sites(&tree, rules) {
            match site {
                Site::Installation(obj) => {
                    installations.push((name.clone(), tree.line_of(obj), naming(&tree, obj)))
                }
                Site::ImageSet(obj) => sets.extend(image_set(&tree, obj, name)),
                _ => {}
            }
        }
    }
    let naming = installations
        .first()
        .map(|(_, _, n)| n.clone())
        .unwrap_or_default();
    for e in sets {
        let Some((default_path, short)) = operator_image(&e.image) else {
            out.notes.push(format!(
                "{}:{}: ImageSet {}: {} is not an image the operator deploys; left out",
                e.file, e.line, e.set, e.image
            ));
            continue;
        };
        let text = operator_reference(&naming, default_path, short, &e.set, &e.digest);
        let reference = Reference::parse(&text).map_err(|err| K8sError::BadReference {
            file: e.file.clone(),
            line: e.line,
            reference: text.clone(),
            reason: err.reason,
        })?;
        out.images.push(FoundImage {
            file: e.file,
            line: e.line,
            text,
            reference,
            kind: UseKind::ImageSet(e.set),
        });
    }
    if out
        .images
        .iter()
        .all(|i| !matches!(i.kind, UseKind::ImageSet(_)))
    {
        for (file, line, _) in &installations {
            out.installations_without_image_set
                .push(format!("{file}:{line}"));
        }
    }
    let mut seen = std::collections::HashSet::new();
    out.images.retain(|i| seen.insert(i.reference.to_string()));
    Ok(out)
}

fn scalar_at(tree: &Tree, obj: NodeId, path: &[&str]) -> Option<String> {
    let mut node = obj;
    for key in path {
        node = tree.resolve(locate::get(tree, node, key)?.value);
    }
    tree.str(node).map(str::to_string)
}

fn naming(tree: &Tree, obj: NodeId) -> Naming {
    let get = |k| scalar_at(tree, obj, &["spec", k]).unwrap_or_default();
    Naming {
        registry: get("registry"),
        image_path: get("imagePath"),
        image_prefix: get("imagePrefix"),
    }
}

fn image_set(tree: &Tree, obj: NodeId, file: &str) -> Vec<ImageSetEntry> {
    let set = scalar_at(tree, obj, &["metadata", "name"]).unwrap_or_default();
    let Some(images) =
        locate::get(tree, obj, "spec").and_then(|s| locate::get(tree, s.value, "images"))
    else {
        return Vec::new();
    };
    locate::items_of(tree, images.value)
        .iter()
        .filter_map(|&item| {
            let image = locate::get(tree, item, "image")?;
            Some(ImageSetEntry {
                file: file.to_string(),
                line: tree.line_of(image.value),
                set: set.clone(),
                image: tree.str(image.value)?.to_string(),
                digest: scalar_at(tree, item, &["digest"])?,
            })
        })
        .collect()
}

/// Tigera's rule (`GetReference`): `join(registry, imagePath, imagePrefix + name)`, defaults
/// `quay.io/` and the image's own path; by digest, with the release (the ImageSet's name
/// `calico-VERSION`) as tag so the target keeps a readable name.
fn operator_reference(
    n: &Naming,
    default_path: &str,
    name: &str,
    set: &str,
    digest: &str,
) -> String {
    let or = |v: &str, d: &str| {
        if v.is_empty() || v == USE_DEFAULT {
            d.to_string()
        } else {
            v.to_string()
        }
    };
    let registry = or(&n.registry, "quay.io/");
    let path = or(&n.image_path, default_path);
    let prefix = or(&n.image_prefix, "");
    let joined = path_join(&[&registry, &path, &format!("{prefix}{name}")]);
    match set.strip_prefix("calico-") {
        Some(version) if !version.is_empty() && default_path == "calico" => {
            format!("{joined}:{version}@{digest}")
        }
        _ => format!("{joined}@{digest}"),
    }
}

/// Go's `path.Join`, as the operator uses it.
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
