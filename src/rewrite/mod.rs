//! Kubernetes manifest rewriting: text and an image map in, text out. No I/O.
//!
//! Every pod spec of every YAML document is found by the object's `kind` (Pod, Deployment,
//! StatefulSet, DaemonSet, ReplicaSet, ReplicationController, Job, CronJob, PodTemplate, and
//! the items of `List`s, in any apiVersion); the `image` of each of its `containers`,
//! `initContainers` and `ephemeralContainers` that the image map knows is replaced by its
//! target name. Other kinds are data and are left alone, except two places that hold images
//! outside `image`: container `env` values named `RELATED_IMAGE_*` that are exact references
//! to bundle images, and the Tigera operator's `Installation` (`operator.tigera.io`), whose
//! `spec.registry`/`imagePath`/`imagePrefix` are set so that the names the operator computes
//! are the target names (`tigera`).
//!
//! The output is the input with a few spans replaced or inserted: comments, key
//! order, quoting style, document markers, white space and line endings stay as they were.
//! No YAML emitter keeps comments, so nothing is ever re-emitted.
//!
//! Choices worth knowing:
//! - **Aliases.** `image: *img` rewrites the anchored scalar (`&img redis:7`) in place, once,
//!   however many times it is referenced; the alias stays an alias. Structural aliases
//!   (`containers: *ctrs`) and merge keys (`<<: *base`) are followed the same way. The anchored
//!   text is what changes, so a non-image use of the same anchor sees the new name too.
//! - **Flow style.** In `{name: a, image: b}` the policy is inserted right after the image
//!   value (`image: b, imagePullPolicy: IfNotPresent`), which stays valid with trailing commas,
//!   comments and line breaks; new pull secrets go after the last item (`[{name: a}, {name: s}]`).
//! - **Block style.** New keys are whole new lines, indented like their siblings, after the
//!   line where the previous value ends (after its comment); the file's line ending is used.
//! - **Digests.** The pushed digest is written when `pin_digests` is set, when the manifest
//!   pinned a digest itself, and when the target has no tag. `name@digest` stays digest-only
//!   (`target-name@digest`); `name:tag@digest` becomes `target-name:tag@digest`.
//! - **Running twice** changes nothing: a reference that already names a target is neither
//!   missing nor rewritten, and its pod spec still gets `imagePullPolicy: IfNotPresent`.
//! - A container without `image` gets no policy. `imagePullPolicy` of a pod spec none of whose
//!   images the map matched is left alone; `pull_secret` goes to every pod spec.

mod discover;
mod fields;
mod files;
mod locate;
mod plan;
mod splice;
mod tigera;
mod tree;

#[cfg(test)]
mod fields_tests;
#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tigera_tests;

pub use discover::{discover_images, Discovery, FoundImage};

/// Whether a repository (`calico/node`, `tigera/operator`) is one the Tigera operator deploys.
pub fn is_operator_image(repository: &str) -> bool {
    tigera::operator_image(repository).is_some()
}
pub use files::{
    missing_images, rewrite_all, K8sError, K8sOptions, MissingImage, NamedFile, RewrittenSet,
};

use crate::image_map::ImageMap;
use crate::image_rules::ImageRules;
use crate::reference::Reference;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RewriteOptions {
    /// Declared image fields and related-image variable names.
    pub rules: ImageRules,
    /// Write `target:tag@sha256:…` with the pushed digest.
    pub pin_digests: bool,
    /// Add `{name: NAME}` to the `imagePullSecrets` of every pod spec and ServiceAccount.
    pub pull_secret: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewritten {
    pub text: String,
    /// What changed, in order of line.
    pub changes: Vec<Change>,
    /// Images the manifests use that the image map does not have, in order of line. They are
    /// left as they are; the caller decides whether that is an error.
    pub missing: Vec<Missing>,
    /// What was deliberately left alone, and why.
    pub notes: Vec<Note>,
    /// Lines of the Tigera operator `Installation`s (`operator.tigera.io`) found.
    pub installations: Vec<usize>,
}

/// Something the rewriter decided not to change, for the user to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub line: usize,
    pub text: String,
}

impl Rewritten {
    pub fn images_rewritten(&self) -> usize {
        self.changes
            .iter()
            .filter(|c| c.kind == ChangeKind::Image)
            .count()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// An image reference replaced.
    Image,
    /// `imagePullPolicy` set to `IfNotPresent` (`from` is empty when the key was added).
    PullPolicy,
    /// A pull secret added (`to` is its name).
    PullSecret,
    /// A Tigera `Installation`'s `spec.registry` set (or its `spec` added).
    Registry,
    /// A Tigera `Installation`'s `spec.imagePath` set.
    ImagePath,
    /// A Tigera `Installation`'s `spec.imagePrefix` set to `UseDefault` (no prefix).
    ImagePrefix,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// 1-based line of the changed text (of the anchored scalar when reached by an alias).
    pub line: usize,
    pub kind: ChangeKind,
    pub from: String,
    pub to: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing {
    /// 1-based line of the `image` value (of the alias when it is one).
    pub line: usize,
    /// The reference as written.
    pub reference: String,
}

/// A container image a manifest uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageUse {
    /// 1-based line of the `image` value.
    pub line: usize,
    /// The reference as written.
    pub text: String,
    /// The reference normalised.
    pub reference: Reference,
    /// Where it was found.
    pub kind: UseKind,
}

/// The place an image reference was found in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UseKind {
    /// A container's `image` in a pod spec.
    Container,
    /// A related-image `env` variable (its name).
    RelatedEnv(String),
    /// A declared field (`Kind.group path`).
    Declared(String),
    /// An entry of a Tigera `ImageSet` (its name).
    ImageSet(String),
}

impl std::fmt::Display for UseKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UseKind::Container => f.write_str("container image"),
            UseKind::RelatedEnv(name) => write!(f, "env {name}"),
            UseKind::Declared(field) => write!(f, "field {field}"),
            UseKind::ImageSet(name) => write!(f, "ImageSet {name}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RewriteError {
    /// `col` is 1-based.
    #[error("line {line}, column {col}: invalid YAML: {message}")]
    Yaml {
        line: usize,
        col: usize,
        message: String,
    },
    #[error("line {line}: invalid image reference {reference:?}: {reason}")]
    BadReference {
        line: usize,
        reference: String,
        reason: String,
    },
    /// An `Installation` the operator would compute wrong names from.
    #[error("line {line}: Tigera Installation: {reason}")]
    Operator { line: usize, reason: String },
    /// The spliced text failed to parse again: a bug; the input is not rewritten.
    #[error("internal error: the rewritten manifests would not be valid YAML ({message}); please report this")]
    Internal { message: String },
}

/// Rewrites the image references of every pod spec in `text` (a stream of YAML documents).
pub fn rewrite(
    text: &str,
    map: &ImageMap,
    opts: &RewriteOptions,
) -> Result<Rewritten, RewriteError> {
    let tree = parse(text)?;
    let mut planner = plan::Planner::new(&tree, map, opts);
    planner.plan()?;
    let mut changes = std::mem::take(&mut planner.changes);
    let mut missing = std::mem::take(&mut planner.missing);
    let notes = std::mem::take(&mut planner.notes);
    let installations = std::mem::take(&mut planner.installations);
    let edits = std::mem::take(&mut planner.edits);
    let text = if edits.is_empty() {
        text.to_string()
    } else {
        let out = splice::apply(text, edits);
        match tree::Tree::parse(&out) {
            Ok(t) if t.documents.len() == tree.documents.len() => {}
            Ok(_) => {
                return Err(RewriteError::Internal {
                    message: "the number of documents changed".to_string(),
                })
            }
            Err(e) => {
                return Err(RewriteError::Internal {
                    message: e.to_string(),
                })
            }
        }
        out
    };
    changes.sort_by_key(|c| c.line);
    missing.sort_by_key(|m| m.line);
    Ok(Rewritten {
        text,
        changes,
        missing,
        notes,
        installations,
    })
}

/// Every image reference of every pod spec and declared field in `text`, in order of line
/// (pack checks that the bundle has them all). An invalid reference is an error.
pub fn image_references(text: &str, rules: &ImageRules) -> Result<Vec<ImageUse>, RewriteError> {
    plan::image_uses(&parse(text)?, rules, false)
}

fn parse(text: &str) -> Result<tree::Tree<'_>, RewriteError> {
    tree::Tree::parse(text).map_err(|e| RewriteError::Yaml {
        line: e.marker().line(),
        col: e.marker().col() + 1,
        message: e.info().to_string(),
    })
}
