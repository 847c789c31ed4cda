//! Finding what the rewriter may change: the pod specs of workload objects (by `kind`, in
//! any apiVersion), their containers, and ServiceAccounts. Reads the tree, changes nothing.

use super::tree::{Kind, NodeId, Tree};
use crate::image_rules::{ImageRules, Step};
use saphyr_parser::ScalarStyle;

/// How deep `List`s may nest and merge keys may chain; deeper input is left alone.
const MAX_DEPTH: usize = 32;

/// The pod-spec fields that hold containers.
const CONTAINER_FIELDS: [&str; 3] = ["containers", "initContainers", "ephemeralContainers"];

/// A key found in a mapping, directly or through a merge key (`<<: *base`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Entry {
    /// The key and value where the text is (in the merged mapping when merged).
    pub key: NodeId,
    pub value: NodeId,
    /// The entry of the searched mapping: the same entry, or the `<<` entry it came through.
    /// New keys go after this one.
    pub local_key: NodeId,
    pub local_value: NodeId,
}

#[derive(Debug)]
pub(crate) struct Container {
    pub mapping: NodeId,
    pub image: Option<Entry>,
    pub policy: Option<Entry>,
}

#[derive(Debug)]
pub(crate) struct PodSpec {
    pub mapping: NodeId,
    pub containers: Vec<Container>,
}

#[derive(Debug)]
pub(crate) enum Site {
    PodSpec(PodSpec),
    /// The ServiceAccount object's mapping.
    ServiceAccount(NodeId),
    /// A Tigera operator `Installation` (`operator.tigera.io/*`): the object's mapping.
    Installation(NodeId),
    /// A Tigera operator `ImageSet`: the object's mapping.
    ImageSet(NodeId),
    /// An object with a declared image field: its mapping and the index of the field in
    /// [`ImageRules::fields`].
    Declared {
        object: NodeId,
        field: usize,
    },
}

/// Every pod spec, ServiceAccount, Tigera object and object with a declared field of every
/// document, in document order.
pub(crate) fn sites(tree: &Tree, rules: &ImageRules) -> Vec<Site> {
    let mut out = Vec::new();
    for &doc in &tree.documents {
        object(tree, rules, doc, 0, &mut out);
    }
    out
}

fn object(tree: &Tree, rules: &ImageRules, id: NodeId, depth: usize, out: &mut Vec<Site>) {
    let id = tree.resolve(id);
    let Some(kind) = get(tree, id, "kind").and_then(|e| tree.str(e.value)) else {
        return;
    };
    let api_version = get(tree, id, "apiVersion").and_then(|e| tree.str(e.value));
    for (field, f) in rules.fields.iter().enumerate() {
        if f.applies_to(kind, api_version) {
            out.push(Site::Declared { object: id, field });
        }
    }
    let path: &[&str] = match kind {
        "Pod" => &["spec"],
        "Deployment"
        | "StatefulSet"
        | "DaemonSet"
        | "ReplicaSet"
        | "ReplicationController"
        | "Job" => &["spec", "template", "spec"],
        "CronJob" => &["spec", "jobTemplate", "spec", "template", "spec"],
        "PodTemplate" => &["template", "spec"],
        "ServiceAccount" => {
            out.push(Site::ServiceAccount(id));
            return;
        }
        "Installation" if is_tigera(tree, id) => {
            out.push(Site::Installation(id));
            return;
        }
        "ImageSet" if is_tigera(tree, id) => {
            out.push(Site::ImageSet(id));
            return;
        }
        // `List` and the typed lists (`PodList`, `DeploymentList`, ...) kubectl accepts.
        k if k.ends_with("List") && depth < MAX_DEPTH => {
            if let Some(items) = get(tree, id, "items") {
                for &item in items_of(tree, items.value) {
                    object(tree, rules, item, depth + 1, out);
                }
            }
            return;
        }
        _ => return,
    };
    let mut node = id;
    for key in path {
        match get(tree, node, key) {
            Some(e) => node = tree.resolve(e.value),
            None => return,
        }
    }
    if is_mapping(tree, node) {
        out.push(Site::PodSpec(pod_spec(tree, node)));
    }
}

/// True for an object of the Tigera operator's API group (`operator.tigera.io/v1`).
fn is_tigera(tree: &Tree, id: NodeId) -> bool {
    get(tree, id, "apiVersion")
        .and_then(|e| tree.str(e.value))
        .is_some_and(|v| v.split('/').next() == Some("operator.tigera.io"))
}

fn pod_spec(tree: &Tree, mapping: NodeId) -> PodSpec {
    let mut containers = Vec::new();
    for field in CONTAINER_FIELDS {
        let Some(list) = get(tree, mapping, field) else {
            continue;
        };
        for &item in items_of(tree, list.value) {
            let c = tree.resolve(item);
            if is_mapping(tree, c) {
                containers.push(Container {
                    mapping: c,
                    image: get(tree, c, "image"),
                    policy: get(tree, c, "imagePullPolicy"),
                });
            }
        }
    }
    PodSpec {
        mapping,
        containers,
    }
}

pub(crate) fn is_mapping(tree: &Tree, id: NodeId) -> bool {
    matches!(tree.node(tree.resolve(id)).kind, Kind::Mapping { .. })
}

/// The items of a sequence (through an alias); nothing for anything else.
pub(crate) fn items_of<'a>(tree: &'a Tree, id: NodeId) -> &'a [NodeId] {
    match &tree.node(tree.resolve(id)).kind {
        Kind::Sequence { items, .. } => items,
        _ => &[],
    }
}

/// The entries of a mapping (through an alias); nothing for anything else.
pub(crate) fn entries_of<'a>(tree: &'a Tree, id: NodeId) -> &'a [(NodeId, NodeId)] {
    match &tree.node(tree.resolve(id)).kind {
        Kind::Mapping { entries, .. } => entries,
        _ => &[],
    }
}

/// The entry for `key` in a mapping: its own first, then the merge keys' mappings in order,
/// as YAML 1.1 merge keys (which Kubernetes' YAML decoder honours) define it.
pub(crate) fn get(tree: &Tree, mapping: NodeId, key: &str) -> Option<Entry> {
    get_at(tree, mapping, key, 0)
}

fn get_at(tree: &Tree, mapping: NodeId, key: &str, depth: usize) -> Option<Entry> {
    let entries = entries_of(tree, mapping);
    if let Some(&(k, v)) = entries.iter().find(|&&(k, _)| tree.str(k) == Some(key)) {
        return Some(Entry {
            key: k,
            value: v,
            local_key: k,
            local_value: v,
        });
    }
    if depth >= MAX_DEPTH {
        return None;
    }
    for &(k, v) in entries {
        if tree.scalar(k) != Some(("<<", ScalarStyle::Plain)) {
            continue;
        }
        let sources = match &tree.node(tree.resolve(v)).kind {
            Kind::Mapping { .. } => std::slice::from_ref(&v),
            Kind::Sequence { items, .. } => items.as_slice(),
            _ => &[],
        };
        for &source in sources {
            if let Some(found) = get_at(tree, source, key, depth + 1) {
                return Some(Entry {
                    local_key: k,
                    local_value: v,
                    ..found
                });
            }
        }
    }
    None
}

/// The entries at the end of `steps` from `mapping`, each with the mapping holding it: every
/// item of a list at `Each`; a missing key or a value of the wrong shape ends that branch.
pub(crate) fn at_path(tree: &Tree, mapping: NodeId, steps: &[Step]) -> Vec<(NodeId, Entry)> {
    let mut out = Vec::new();
    walk(tree, tree.resolve(mapping), steps, &mut out);
    out
}

fn walk(tree: &Tree, node: NodeId, steps: &[Step], out: &mut Vec<(NodeId, Entry)>) {
    match steps {
        [] => {}
        [Step::Key(k)] => {
            if let Some(e) = get(tree, node, k) {
                out.push((node, e));
            }
        }
        [Step::Key(k), Step::Each, rest @ ..] => {
            if let Some(e) = get(tree, node, k) {
                for &item in items_of(tree, e.value) {
                    walk(tree, tree.resolve(item), rest, out);
                }
            }
        }
        [Step::Key(k), rest @ ..] => {
            if let Some(e) = get(tree, node, k) {
                walk(tree, tree.resolve(e.value), rest, out);
            }
        }
        [Step::Each, ..] => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod_specs(text: &str) -> Vec<(usize, Vec<String>)> {
        let tree = Tree::parse(text).unwrap();
        sites(&tree, &ImageRules::default())
            .into_iter()
            .map(|s| match s {
                Site::PodSpec(p) => (
                    tree.line_of(p.mapping),
                    p.containers
                        .iter()
                        .map(|c| tree.str(c.image.unwrap().value).unwrap().to_string())
                        .collect(),
                ),
                Site::ServiceAccount(m) => (tree.line_of(m), vec!["SA".to_string()]),
                Site::Installation(m) => (tree.line_of(m), vec!["Installation".to_string()]),
                Site::ImageSet(m) => (tree.line_of(m), vec!["ImageSet".to_string()]),
                Site::Declared { object, field } => {
                    (tree.line_of(object), vec![format!("field {field}")])
                }
            })
            .collect()
    }

    #[test]
    fn finds_pod_specs_by_kind() {
        let text = "\
kind: List
items:
- kind: CronJob
  spec:
    jobTemplate:
      spec:
        template:
          spec:
            containers: [{image: a}]
- {kind: PodTemplate, template: {spec: {initContainers: [{image: b}]}}}
- kind: ConfigMap
  data: {image: c}
- kind: PodList
  items:
  - kind: Pod
    spec: {ephemeralContainers: [{image: d}], containers: [{image: e}]}
---
kind: ServiceAccount
---
{apiVersion: operator.tigera.io/v1, kind: Installation, spec: {}}
---
{apiVersion: example.com/v1, kind: Installation, spec: {}}
";
        assert_eq!(
            pod_specs(text),
            [
                (9, vec!["a".to_string()]),
                (10, vec!["b".to_string()]),
                (16, vec!["e".to_string(), "d".to_string()]),
                (18, vec!["SA".to_string()]),
                (20, vec!["Installation".to_string()]),
            ]
        );
    }

    #[test]
    fn merge_keys_and_aliases() {
        let text = "\
base: &b {image: x, imagePullPolicy: Always}
kind: Pod
spec:
  containers:
  - <<: *b
    name: one
  - <<: [{name: n}, *b]
    image: y
";
        let tree = Tree::parse(text).unwrap();
        let sites = sites(&tree, &ImageRules::default());
        let [Site::PodSpec(p)] = sites.as_slice() else {
            panic!("one pod spec expected");
        };
        let imgs: Vec<_> = p
            .containers
            .iter()
            .map(|c| tree.str(c.image.unwrap().value).unwrap())
            .collect();
        assert_eq!(imgs, ["x", "y"]);
        let merged = p.containers[0].policy.unwrap();
        assert_eq!(tree.line_of(merged.value), 1);
        assert_eq!(tree.line_of(merged.local_key), 5);
    }
}
