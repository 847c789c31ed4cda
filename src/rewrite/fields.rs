//! Declared image fields (`imageFields:` in the spec, `--image-field`): places other than pod
//! specs that hold an image reference, by kind, API group and path. Only exact references
//! change; a value that is not a reference is an error, since the user said it is one.

use super::locate::{self, Container, Entry};
use super::plan::{image_use, is_target, new_name, Planner};
use super::tree::{NodeId, Tree};
use super::{ChangeKind, ImageUse, RewriteError, UseKind};
use crate::image_rules::{parse_path, ImageField, Step};

/// One value of a declared field.
pub(super) struct FieldValue {
    /// The mapping holding the field (and its `tag` / `pullPolicy` siblings).
    pub parent: NodeId,
    pub image: Entry,
    /// The sibling holding the tag, for a split reference.
    pub tag: Option<Entry>,
    pub used: ImageUse,
}

/// Every value of `field` in `object`; empty and null values (the operator's default) are
/// skipped.
pub(super) fn values(
    tree: &Tree,
    object: NodeId,
    field: &ImageField,
) -> Result<Vec<FieldValue>, RewriteError> {
    let mut out = Vec::new();
    let kind = UseKind::Declared(field.describe());
    for (parent, image) in locate::at_path(tree, object, &field.steps()) {
        if tree.is_null(image.value) || tree.str(image.value) == Some("") {
            continue;
        }
        let tag = field
            .tag
            .as_deref()
            .and_then(|k| locate::get(tree, parent, k))
            .filter(|t| !tree.is_null(t.value) && tree.str(t.value) != Some(""));
        let used = match tag {
            None => image_use(tree, image, kind.clone())?,
            Some(t) => split_use(tree, image, t, kind.clone())?,
        };
        out.push(FieldValue {
            parent,
            image,
            tag,
            used,
        });
    }
    Ok(out)
}

/// `image: quay.io/argoproj/argocd` + `version: v2.4.0` (or `sha256:…`) as one reference.
fn split_use(
    tree: &Tree,
    image: Entry,
    tag: Entry,
    kind: UseKind,
) -> Result<ImageUse, RewriteError> {
    let name = image_use(tree, image, kind.clone())?.text;
    let Some(t) = tree.str(tag.value) else {
        return Err(RewriteError::BadReference {
            line: tree.line_of(tag.value),
            reference: name,
            reason: "its tag field is not a string".to_string(),
        });
    };
    let joined = if t.starts_with("sha256:") {
        format!("{name}@{t}")
    } else {
        format!("{name}:{t}")
    };
    let reference =
        crate::reference::Reference::parse(&joined).map_err(|e| RewriteError::BadReference {
            line: tree.line_of(image.value),
            reference: joined.clone(),
            reason: e.reason,
        })?;
    Ok(ImageUse {
        line: tree.line_of(image.value),
        text: joined,
        reference,
        kind,
    })
}

impl Planner<'_, '_> {
    /// Rewrites the values of declared field `index` in `object`, sets its pull policy and
    /// adds the pull secret where the field says.
    pub(super) fn declared(&mut self, object: NodeId, index: usize) -> Result<(), RewriteError> {
        let tree = self.tree;
        let field = &self.opts.rules.fields[index];
        for v in values(tree, object, field)? {
            let rewritten = if let Some(entry) = self.map.lookup(&v.used.reference) {
                match v.tag {
                    None => {
                        let new = new_name(entry, &v.used.reference, self.opts.pin_digests);
                        let new = new.to_string();
                        if tree.str(v.image.value) != Some(new.as_str()) {
                            self.replace(v.image.value, &new, ChangeKind::Image)?;
                        }
                    }
                    Some(tag) => self.split(&v, tag, entry)?,
                }
                true
            } else if is_target(self.map, &v.used.reference) {
                true
            } else {
                self.missing(v.image.value, &v.used);
                false
            };
            if let (true, Some(key)) = (rewritten, &field.pull_policy) {
                let c = Container {
                    mapping: v.parent,
                    image: Some(v.image),
                    policy: locate::get(tree, v.parent, key),
                };
                self.pull_policy_key(&c, key)?;
            }
        }
        if let (Some(name), Some(path)) = (&self.opts.pull_secret, &field.pull_secrets) {
            let steps = parse_path(path).unwrap_or_default();
            if let Some((Step::Key(last), parents)) = steps.split_last() {
                let holders: Vec<NodeId> = if parents.is_empty() {
                    vec![object]
                } else {
                    locate::at_path(tree, object, parents)
                        .into_iter()
                        .map(|(_, e)| e.value)
                        .filter(|&m| locate::is_mapping(tree, m))
                        .collect()
                };
                for m in holders {
                    self.pull_secret_at(m, last, name);
                }
            }
        }
        Ok(())
    }

    /// A split reference: the image field gets the target name, the tag field the target's
    /// tag (a digest stays: digests are kept).
    fn split(
        &mut self,
        v: &FieldValue,
        tag: Entry,
        entry: &crate::image_map::ImageMapEntry,
    ) -> Result<(), RewriteError> {
        let tree = self.tree;
        let name = entry.target.name();
        if tree.str(v.image.value) != Some(name.as_str()) {
            self.replace(v.image.value, &name, ChangeKind::Image)?;
        }
        let written = tree.str(tag.value).unwrap_or("");
        if written.starts_with("sha256:") {
            return Ok(());
        }
        let new = match entry.target.tag() {
            Some(t) => t.to_string(),
            None => entry.digest.to_string(),
        };
        if new != written {
            self.replace(tag.value, &new, ChangeKind::Image)?;
        }
        Ok(())
    }
}
