//! Deciding the edits: new image names, `imagePullPolicy`, `imagePullSecrets`.

use std::collections::HashSet;

use saphyr_parser::ScalarStyle;

use super::locate::{self, Container, Entry, PodSpec, Site};
use super::splice::{insert_lines, line_ending, yaml_string, Edit};
use super::tree::{Kind, NodeId, Tree};
use super::{Change, ChangeKind, ImageUse, Missing, Note, RewriteError, RewriteOptions, UseKind};
use crate::image_map::{ImageMap, ImageMapEntry};
use crate::image_rules::ImageRules;
use crate::reference::Reference;

const IF_NOT_PRESENT: &str = "IfNotPresent";

pub(crate) struct Planner<'a, 't> {
    pub(super) tree: &'a Tree<'t>,
    pub(super) map: &'a ImageMap,
    pub(super) opts: &'a RewriteOptions,
    pub(super) eol: &'static str,
    /// How far block sequences are indented under their key in this file (0 or 2, usually).
    seq_indent: usize,
    pub edits: Vec<Edit>,
    pub changes: Vec<Change>,
    pub missing: Vec<Missing>,
    pub notes: Vec<Note>,
    /// Lines of the Tigera `Installation`s seen.
    pub installations: Vec<usize>,
    /// Nodes already handled, so that a node reached again through an alias is changed once:
    /// scalars replaced, containers given a policy, secret holders and lists extended.
    done: HashSet<NodeId>,
    /// Mappings already given the pull secret (apart from `done`: a declared field's mapping
    /// may get both a policy and a secret).
    secrets_done: HashSet<NodeId>,
    /// Image nodes already reported missing.
    reported: HashSet<NodeId>,
}

impl<'a, 't> Planner<'a, 't> {
    pub fn new(tree: &'a Tree<'t>, map: &'a ImageMap, opts: &'a RewriteOptions) -> Self {
        Planner {
            tree,
            map,
            opts,
            eol: line_ending(tree.text),
            seq_indent: seq_indent(tree).unwrap_or(0),
            edits: Vec::new(),
            changes: Vec::new(),
            missing: Vec::new(),
            notes: Vec::new(),
            installations: Vec::new(),
            done: HashSet::new(),
            secrets_done: HashSet::new(),
            reported: HashSet::new(),
        }
    }

    pub fn plan(&mut self) -> Result<(), RewriteError> {
        for site in locate::sites(self.tree, &self.opts.rules) {
            match site {
                Site::PodSpec(spec) => self.pod_spec(&spec)?,
                Site::ServiceAccount(mapping) => {
                    if let Some(name) = &self.opts.pull_secret {
                        self.pull_secret(mapping, name);
                    }
                }
                Site::Installation(obj) => self.installation(obj)?,
                // Digests are kept, so an ImageSet stays true as it is.
                Site::ImageSet(_) => {}
                Site::Declared { object, field } => self.declared(object, field)?,
            }
        }
        Ok(())
    }

    fn pod_spec(&mut self, spec: &PodSpec) -> Result<(), RewriteError> {
        let mut rewritten = false;
        for c in &spec.containers {
            let Some(image) = c.image else { continue };
            let used = image_use(self.tree, image, UseKind::Container)?;
            if let Some(entry) = self.map.lookup(&used.reference) {
                rewritten = true;
                let new = new_name(entry, &used.reference, self.opts.pin_digests).to_string();
                if new != used.text {
                    self.replace(image.value, &new, ChangeKind::Image)?;
                }
            } else if is_target(self.map, &used.reference) {
                // Rewritten before (running twice changes nothing).
                rewritten = true;
            } else {
                self.missing(image.value, &used);
            }
        }
        if rewritten {
            for c in &spec.containers {
                self.pull_policy(c)?;
            }
        }
        for c in &spec.containers {
            self.related_images(c)?;
        }
        if let Some(name) = &self.opts.pull_secret {
            self.pull_secret(spec.mapping, name);
        }
        Ok(())
    }

    /// Reports an image the map lacks, once per node.
    pub(super) fn missing(&mut self, node: NodeId, used: &ImageUse) {
        if self.reported.insert(node) {
            self.missing.push(Missing {
                line: used.line,
                reference: used.text.clone(),
            });
        }
    }

    /// `env` values named `RELATED_IMAGE_*` (the operator convention for the images an
    /// operator deploys) that are exact references to bundle images get their target names.
    /// Anything else there is free text: never reported missing, never changed.
    fn related_images(&mut self, c: &Container) -> Result<(), RewriteError> {
        let tree = self.tree;
        for (value, _) in related_values(tree, &self.opts.rules, c) {
            let Some(text) = tree.str(value.value) else {
                continue;
            };
            let Ok(reference) = Reference::parse(text) else {
                continue;
            };
            if let Some(entry) = self.map.lookup(&reference) {
                let new = new_name(entry, &reference, self.opts.pin_digests).to_string();
                if new != text {
                    self.replace(value.value, &new, ChangeKind::Image)?;
                }
            }
        }
        Ok(())
    }

    /// `imagePullPolicy`: absent, empty or `Always` becomes `IfNotPresent`.
    fn pull_policy(&mut self, c: &Container) -> Result<(), RewriteError> {
        self.pull_policy_key(c, "imagePullPolicy")
    }

    /// The policy under `key` (a container's `imagePullPolicy`, or a declared field's
    /// sibling): absent, empty or `Always` becomes `IfNotPresent`.
    pub(super) fn pull_policy_key(&mut self, c: &Container, key: &str) -> Result<(), RewriteError> {
        let Some(image) = c.image else {
            return Ok(());
        };
        if !self.done.insert(c.mapping) {
            return Ok(());
        }
        let tree = self.tree;
        match c.policy {
            Some(p) if tree.is_null(p.value) => {
                self.set_null(p, IF_NOT_PRESENT, ChangeKind::PullPolicy);
            }
            Some(p) if tree.str(p.value) == Some("Always") => {
                self.replace(p.value, IF_NOT_PRESENT, ChangeKind::PullPolicy)?;
            }
            Some(_) => {}
            None => {
                let after = tree.node(image.local_value).end;
                let edit = if is_flow(tree, c.mapping) {
                    Edit::insert(after, format!(", {key}: {IF_NOT_PRESENT}"))
                } else {
                    let indent = " ".repeat(tree.col(tree.node(image.local_key).start));
                    let line = format!("{indent}{key}: {IF_NOT_PRESENT}");
                    insert_lines(tree.text, after, &[line], self.eol)
                };
                self.edits.push(edit);
                self.change(
                    image.local_value,
                    ChangeKind::PullPolicy,
                    "",
                    IF_NOT_PRESENT,
                );
            }
        }
        Ok(())
    }

    /// Adds `{name: NAME}` to the `imagePullSecrets` of a pod spec or ServiceAccount.
    pub(super) fn pull_secret(&mut self, mapping: NodeId, name: &str) {
        self.pull_secret_at(mapping, "imagePullSecrets", name)
    }

    /// Adds `{name: NAME}` to the list under `key` of `mapping`, making the key if needed.
    pub(super) fn pull_secret_at(&mut self, mapping: NodeId, key: &str, name: &str) {
        let tree = self.tree;
        let mapping = tree.resolve(mapping);
        if !self.secrets_done.insert(mapping) {
            return;
        }
        let item = format!("{{name: {}}}", yaml_string(name));
        let Some(secrets) = locate::get(tree, mapping, key) else {
            return self.add_secrets_key(mapping, key, &item, name);
        };
        if tree.is_null(secrets.value) {
            return self.set_null(secrets, &format!("[{item}]"), ChangeKind::PullSecret);
        }
        let list = tree.resolve(secrets.value);
        let Kind::Sequence { items, flow } = &tree.node(list).kind else {
            return; // Not a list: not ours to repair.
        };
        let present = items
            .iter()
            .any(|&i| locate::get(tree, i, "name").and_then(|e| tree.str(e.value)) == Some(name));
        if present || !self.done.insert(list) {
            return;
        }
        let edit = match (items.last(), flow) {
            (None, _) => Edit::insert(tree.node(list).start + 1, item),
            (Some(&last), true) => {
                if is_empty_scalar(tree, last) {
                    return;
                }
                Edit::insert(tree.node(last).end, format!(", {item}"))
            }
            (Some(&first), false) => {
                let dash = dash_col(tree, first)
                    .unwrap_or_else(|| tree.col(tree.node(first).start).saturating_sub(2));
                let line = format!("{}- name: {}", " ".repeat(dash), yaml_string(name));
                insert_lines(tree.text, tree.node(list).end, &[line], self.eol)
            }
        };
        self.edits.push(edit);
        self.change(list, ChangeKind::PullSecret, "", name);
    }

    /// A new `key` (`imagePullSecrets`) at the end of `mapping`.
    fn add_secrets_key(&mut self, mapping: NodeId, key: &str, item: &str, name: &str) {
        let tree = self.tree;
        let node = tree.node(mapping);
        let Kind::Mapping { entries, flow } = &node.kind else {
            return;
        };
        let edit = match (entries.last(), flow) {
            (None, _) => Edit::insert(node.start + 1, format!("{key}: [{item}]")),
            (Some(&(k, v)), true) => {
                let Some((at, prefix)) = after_flow_entry(tree, k, v) else {
                    return;
                };
                Edit::insert(at, format!("{prefix}, {key}: [{item}]"))
            }
            (Some(&(first, _)), false) => {
                let indent = " ".repeat(tree.col(tree.node(first).start));
                let lines = [
                    format!("{indent}{key}:"),
                    format!(
                        "{indent}{}- name: {}",
                        " ".repeat(self.seq_indent),
                        yaml_string(name)
                    ),
                ];
                insert_lines(tree.text, node.end, &lines, self.eol)
            }
        };
        self.edits.push(edit);
        self.change(mapping, ChangeKind::PullSecret, "", name);
    }

    /// Gives a null value (`key:`, `key: ~`, `key: null`) a value.
    pub(super) fn set_null(&mut self, entry: Entry, text: &str, kind: ChangeKind) {
        let tree = self.tree;
        let value = tree.resolve(entry.value);
        let node = tree.node(value);
        let edit = if is_empty_scalar(tree, entry.value) {
            let Some(colon) = colon_after(tree, entry.key) else {
                return;
            };
            // Only white space or a comment may follow: no tag to keep.
            let rest = tree.text[colon + 1..]
                .split(['\n', ',', '}'])
                .next()
                .unwrap_or("");
            if !rest.trim_start().is_empty() && !rest.trim_start().starts_with('#') {
                return;
            }
            Edit::insert(colon + 1, format!(" {text}"))
        } else {
            if !self.done.insert(value) {
                return;
            }
            Edit {
                start: node.start,
                end: node.end,
                with: text.to_string(),
            }
        };
        let from = tree.str(value).unwrap_or("").to_string();
        self.edits.push(edit);
        self.change(value, kind, &from, text);
    }

    /// Replaces a scalar's value, keeping its style. Through an alias, the anchored scalar is
    /// replaced, once.
    pub(super) fn replace(
        &mut self,
        id: NodeId,
        new: &str,
        kind: ChangeKind,
    ) -> Result<(), RewriteError> {
        let tree = self.tree;
        let target = tree.resolve(id);
        if !self.done.insert(target) {
            return Ok(());
        }
        let edit = scalar_edit(tree, target, new)?;
        let from = tree.str(target).unwrap_or("").to_string();
        self.edits.push(edit);
        self.change(target, kind, &from, new);
        Ok(())
    }

    pub(super) fn note(&mut self, line: usize, text: &str) {
        self.notes.push(Note {
            line,
            text: text.to_string(),
        });
    }

    pub(super) fn change(&mut self, at: NodeId, kind: ChangeKind, from: &str, to: &str) {
        self.changes.push(Change {
            line: self.tree.line_of(at),
            kind,
            from: from.to_string(),
            to: to.to_string(),
        });
    }
}

/// Every image reference of pod specs and declared fields (and, with `related`, of related-
/// image variables), in order of line; a node reached again through an alias is listed once.
/// An invalid reference is an error, except in a related-image variable (free text there).
pub(crate) fn image_uses(
    tree: &Tree,
    rules: &ImageRules,
    related: bool,
) -> Result<Vec<ImageUse>, RewriteError> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for site in locate::sites(tree, rules) {
        match site {
            Site::PodSpec(spec) => {
                for image in spec.containers.iter().filter_map(|c| c.image) {
                    if seen.insert(image.value) {
                        out.push(image_use(tree, image, UseKind::Container)?);
                    }
                }
                if related {
                    for c in &spec.containers {
                        for (value, name) in related_values(tree, rules, c) {
                            if seen.insert(value.value) {
                                if let Ok(u) = image_use(tree, value, UseKind::RelatedEnv(name)) {
                                    out.push(u);
                                }
                            }
                        }
                    }
                }
            }
            Site::Declared { object, field } => {
                for v in super::fields::values(tree, object, &rules.fields[field])? {
                    if seen.insert(v.image.value) {
                        out.push(v.used);
                    }
                }
            }
            _ => {}
        }
    }
    out.sort_by_key(|u| u.line);
    Ok(out)
}

/// The `value` entries of a container's related-image `env` variables, with their names.
fn related_values(tree: &Tree, rules: &ImageRules, c: &Container) -> Vec<(Entry, String)> {
    let Some(env) = locate::get(tree, c.mapping, "env") else {
        return Vec::new();
    };
    locate::items_of(tree, env.value)
        .iter()
        .filter_map(|&var| {
            let name = locate::get(tree, var, "name").and_then(|e| tree.str(e.value))?;
            if !rules.is_related_image_env(name) {
                return None;
            }
            Some((locate::get(tree, var, "value")?, name.to_string()))
        })
        .collect()
}

pub(super) fn image_use(
    tree: &Tree,
    image: Entry,
    kind: UseKind,
) -> Result<ImageUse, RewriteError> {
    let line = tree.line_of(image.value);
    let Some(text) = tree.str(image.value) else {
        let node = tree.node(tree.resolve(image.value));
        let written: String = tree.text[node.start..node.end].chars().take(80).collect();
        return Err(RewriteError::BadReference {
            line,
            reference: written,
            reason: "it is not a string".to_string(),
        });
    };
    let reference = Reference::parse(text).map_err(|e| RewriteError::BadReference {
        line,
        reference: text.to_string(),
        reason: e.reason,
    })?;
    Ok(ImageUse {
        line,
        text: text.to_string(),
        reference,
        kind,
    })
}

/// The name the manifest gets. The pushed digest is kept when asked for, when the manifest
/// pinned a digest itself (dropping it would unpin the workload), and when the target has no
/// tag (a bare name would mean `latest`). A reference written by digest alone stays so.
pub(super) fn new_name(entry: &ImageMapEntry, written: &Reference, pin: bool) -> Reference {
    match written.digest() {
        Some(_) if written.tag().is_none() => entry
            .target
            .with_tag(None)
            .with_digest(Some(entry.digest.clone())),
        Some(_) => entry.target.with_digest(Some(entry.digest.clone())),
        None if pin || entry.target.tag().is_none() => {
            entry.target.with_digest(Some(entry.digest.clone()))
        }
        None => entry.target.clone(),
    }
}

/// True when `r` already names an image map target (the manifest was rewritten before).
pub(super) fn is_target(map: &ImageMap, r: &Reference) -> bool {
    map.images.iter().any(|e| {
        e.target.name() == r.name()
            && match r.digest() {
                Some(d) => d == &e.digest || e.target.digest() == Some(d),
                None => r.tag().is_some() && r.tag() == e.target.tag(),
            }
    })
}

/// The edit writing `new` in place of a scalar, in the scalar's own style. Checks that the
/// extent found for the scalar really holds it, so that a wrong offset can never corrupt text.
fn scalar_edit(tree: &Tree, id: NodeId, new: &str) -> Result<Edit, RewriteError> {
    let node = tree.node(id);
    let Kind::Scalar { value, style } = &node.kind else {
        return Err(internal(tree, id, "not a scalar"));
    };
    let written = &tree.text[node.start..node.end];
    let quoted = |q: char| written.len() >= 2 && written.starts_with(q) && written.ends_with(q);
    let (start, end, with) = match style {
        ScalarStyle::Plain if written == value => (node.start, node.end, new.to_string()),
        ScalarStyle::SingleQuoted if quoted('\'') => (node.start, node.end, format!("'{new}'")),
        ScalarStyle::DoubleQuoted if quoted('"') => (node.start, node.end, format!("\"{new}\"")),
        ScalarStyle::Literal | ScalarStyle::Folded => {
            // A one-line block scalar (`|-` then `  redis:7`): replace the content only.
            // The parser's span starts at the content, past the `|` line.
            let content = value.trim_end_matches('\n');
            let at = written.len() - written.trim_start().len();
            if content.is_empty() || content.contains('\n') || !written[at..].starts_with(content) {
                return Err(internal(tree, id, "block scalar not understood"));
            }
            let start = node.start + at;
            (start, start + content.len(), new.to_string())
        }
        _ => return Err(internal(tree, id, "scalar extent not found")),
    };
    Ok(Edit { start, end, with })
}

fn internal(tree: &Tree, id: NodeId, what: &str) -> RewriteError {
    RewriteError::Internal {
        message: format!("line {}: {what}", tree.line_of(id)),
    }
}

fn is_flow(tree: &Tree, id: NodeId) -> bool {
    matches!(
        tree.node(tree.resolve(id)).kind,
        Kind::Mapping { flow: true, .. } | Kind::Sequence { flow: true, .. }
    )
}

fn is_empty_scalar(tree: &Tree, id: NodeId) -> bool {
    matches!(&tree.node(id).kind, Kind::Scalar { value, style: ScalarStyle::Plain } if value.is_empty())
}

/// The `:` after a key, on the same line.
fn colon_after(tree: &Tree, key: NodeId) -> Option<usize> {
    let from = tree.node(key).end;
    let skip = tree.text[from..].find(|c| c != ' ' && c != '\t')?;
    (tree.text.as_bytes()[from + skip] == b':').then_some(from + skip)
}

/// Where a new entry can follow the last entry of a flow mapping, and what must come first
/// (`{a: }` needs an explicit `null` before the comma).
pub(super) fn after_flow_entry(
    tree: &Tree,
    key: NodeId,
    value: NodeId,
) -> Option<(usize, &'static str)> {
    if !is_empty_scalar(tree, value) {
        return Some((tree.node(value).end, ""));
    }
    match colon_after(tree, key) {
        None => Some((tree.node(key).end, "")),
        Some(colon) => {
            let rest = tree.text[colon + 1..].trim_start();
            (rest.starts_with([',', '}'])).then_some((colon + 1, " null"))
        }
    }
}

/// The column of the `-` before a block sequence's first item.
fn dash_col(tree: &Tree, first_item: NodeId) -> Option<usize> {
    let before = &tree.text[..tree.node(first_item).raw_start];
    let dash = before.trim_end_matches([' ', '\t', '\r', '\n']);
    dash.ends_with('-').then(|| tree.col(dash.len() - 1))
}

/// How this file indents block sequences under a mapping key: the first such sequence's
/// dash column minus its key's column.
fn seq_indent(tree: &Tree) -> Option<usize> {
    tree.nodes.iter().find_map(|n| match &n.kind {
        Kind::Mapping {
            entries,
            flow: false,
        } => entries.iter().find_map(|&(k, v)| match &tree.node(v).kind {
            Kind::Sequence { items, flow: false } => {
                let dash = dash_col(tree, *items.first()?)?;
                dash.checked_sub(tree.col(tree.node(k).start))
            }
            _ => None,
        }),
        _ => None,
    })
}
