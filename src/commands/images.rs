//! The image list a pack works from: the spec's `images:`, plus (with `imagesFromManifests`)
//! every image the carried manifests use, each with where it came from. `pack --list-images`
//! prints it without downloading anything.

use std::path::PathBuf;

use super::{CommandError, CommandErrorKind};
use crate::fsutil::FileError;
use crate::pack::K8sFile;
use crate::reference::Reference;
use crate::rewrite::discover_images;
use crate::spec::{ImageEntry, Spec};

/// Where an image of the list comes from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Origin {
    /// An `images:` (or `charts:`) entry of the spec.
    Spec {
        file: PathBuf,
        line: usize,
        /// `images` or `charts`, for the text form (the JSON's `kind: spec` covers both).
        #[serde(skip)]
        key: &'static str,
    },
    /// Found in a carried manifest: its path (as carried), line, and the field.
    Manifest {
        file: String,
        line: usize,
        field: String,
    },
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Spec { file, line, key } => write!(f, "{}:{line} ({key}:)", file.display()),
            Origin::Manifest { file, line, field } => write!(f, "{file}:{line} ({field})"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ImageList {
    pub images: Vec<(ImageEntry, Origin)>,
    /// `file:line: …` notes from discovery (e.g. an Installation without ImageSet).
    pub notes: Vec<String>,
}

/// `pack --list-images`.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageListReport {
    /// [`REPORT_VERSION`](super::REPORT_VERSION).
    pub report_version: u32,
    pub images: Vec<ListedImage>,
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListedImage {
    pub reference: Reference,
    pub from: Origin,
}

impl ImageListReport {
    pub fn render(&self) -> String {
        let width = self
            .images
            .iter()
            .map(|i| i.reference.to_string().len())
            .max()
            .unwrap_or(0);
        let mut out: Vec<String> = self
            .images
            .iter()
            .map(|i| format!("{:width$}  {}", i.reference.to_string(), i.from))
            .collect();
        out.extend(self.notes.iter().map(|n| format!("note: {n}")));
        out.push(format!("{} image(s)", self.images.len()));
        out.join("\n")
    }
}

impl From<&ImageList> for ImageListReport {
    fn from(l: &ImageList) -> Self {
        ImageListReport {
            report_version: super::REPORT_VERSION,
            images: l
                .images
                .iter()
                .map(|(e, o)| ListedImage {
                    reference: e.reference.clone(),
                    from: o.clone(),
                })
                .collect(),
            notes: l.notes.clone(),
        }
    }
}

/// The spec's manifests, read.
pub fn manifest_files(spec: &Spec) -> Result<Vec<K8sFile>, CommandError> {
    let mut k8s = Vec::new();
    for f in spec.manifest_files()? {
        let content =
            std::fs::read(&f.path).map_err(FileError::with("reading manifest", &f.path))?;
        k8s.push(K8sFile {
            path: crate::fsutil::slash_path(&f.relative),
            content,
        });
    }
    Ok(k8s)
}

/// The images to pack: the spec's in file order, then (with `imagesFromManifests`) each image
/// the manifests use that no spec entry already names, in file and line order. `env` gives
/// the variables of the sources' `auth:`.
pub fn image_list(
    spec: &Spec,
    k8s: &[K8sFile],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<ImageList, CommandError> {
    let mut images: Vec<(ImageEntry, Origin)> = spec
        .images
        .iter()
        .map(|e| {
            let origin = Origin::Spec {
                file: spec.path.clone(),
                line: e.line,
                key: if e.chart.is_some() {
                    "charts"
                } else {
                    "images"
                },
            };
            (e.clone(), origin)
        })
        .collect();
    let mut notes = Vec::new();
    if spec.images_from_manifests.is_some() {
        let files: Vec<(String, Vec<u8>)> = k8s
            .iter()
            .map(|f| (f.path.clone(), f.content.clone()))
            .collect();
        let found = discover_images(&files, &spec.rules)?;
        notes = found.notes;
        let has_calico = images
            .iter()
            .any(|(e, _)| crate::rewrite::is_operator_image(e.reference.repository()));
        if !has_calico {
            for at in &found.installations_without_image_set {
                notes.push(format!(
                    "{at}: the Tigera operator computes the Calico image names of this \
                     Installation itself, so they cannot be found in the manifests: list them \
                     under images: (or carry the release's ImageSet)"
                ));
            }
        }
        for f in found.images {
            if images
                .iter()
                .any(|(e, _)| covers(&e.reference, &f.reference))
            {
                continue;
            }
            let entry = spec
                .found_image(f.reference, env)
                .map_err(CommandErrorKind::Spec)?;
            let origin = Origin::Manifest {
                file: f.file,
                line: f.line,
                field: f.kind.to_string(),
            };
            images.push((entry, origin));
        }
    }
    Ok(ImageList { images, notes })
}

/// Whether a listed image already gives what a manifest's reference asks for (as the image
/// map would match it at load: same name, and the same tag or digest).
fn covers(listed: &Reference, used: &Reference) -> bool {
    let used = used.with_default_tag();
    listed.name() == used.name()
        && match (used.digest(), used.tag()) {
            (Some(d), _) => listed.digest() == Some(d),
            (None, Some(t)) => listed.tag() == Some(t),
            (None, None) => false,
        }
}
