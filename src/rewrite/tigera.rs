//! The Tigera operator's `Installation` (`operator.tigera.io/v1`): the operator does not take
//! Calico's image names from pod specs, it computes them, so the rewriter sets the fields it
//! computes them from.
//!
//! The operator's rule (tigera/operator `pkg/components/references.go`, `GetReference`):
//! `join(registry, imagePath, imagePrefix + name) + ":" + version`, where an empty (or
//! `UseDefault`) `registry` is `quay.io/`, an empty `imagePath` is the image's own default
//! (`calico/` for Calico's components, `tigera/` for the operator's own `tigera/operator`), and
//! `name` is the last component (`node`). Older operators (before v1.41) wrote the same names
//! by string surgery (`ReplaceImagePath`, `insertPrefix`) for every one-level name such as
//! `calico/node`, which are all the operator uses; so one layout serves both.
//!
//! From the image map alone, the layout that gives every Calico image the name it got in the
//! target registry is found: `registry` the part before `calico/NAME` when the default paths
//! survived (`replace` and `prefix`, with or without a target path), else `registry` the
//! target host and `imagePath` the rest (`flatten` with a target path). Without a path between
//! host and name (`flatten` without one) no layout exists: an error.

use std::collections::BTreeSet;

use super::locate::{self, Entry};
use super::plan::Planner;
use super::splice::{insert_lines, yaml_string, Edit};
use super::tree::{Kind, NodeId};
use super::{ChangeKind, RewriteError};
use crate::image_map::ImageMap;

/// The operator's "explicitly the default" value of `registry`, `imagePath`, `imagePrefix`.
pub(crate) const USE_DEFAULT: &str = "UseDefault";

/// What the Installation must say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Layout {
    /// `HOST[/PATH]/`, ending with a slash as Tigera's API reference asks.
    pub registry: String,
    /// `None`: the per-image defaults (`calico`, `tigera`).
    pub image_path: Option<String>,
    /// The registries the Calico images came from (an Installation naming one of them is ours
    /// to change).
    pub sources: BTreeSet<String>,
}

/// A Calico image of the map: (the operator's default path, its name, the target without tag).
fn calico_images(map: &ImageMap) -> Vec<(&'static str, String, String, String)> {
    map.images
        .iter()
        .filter_map(|e| {
            let (default_path, name) = operator_image(e.source.repository())?;
            let target = format!("{}/{}", e.target.registry(), e.target.repository());
            Some((
                default_path,
                name.to_string(),
                target,
                e.source.registry().to_string(),
            ))
        })
        .collect()
}

/// `calico/NAME` → (`calico`, NAME); `tigera/operator` → (`tigera`, `operator`): the images
/// the operator of Calico Open Source deploys, by their default path.
pub(crate) fn operator_image(repository: &str) -> Option<(&'static str, &str)> {
    match repository.split_once('/')? {
        ("calico", name) if !name.contains('/') => Some(("calico", name)),
        ("tigera", "operator") => Some(("tigera", "operator")),
        _ => None,
    }
}

/// The layout that makes the operator compute every Calico image's target name; `Ok(None)`
/// when the map has no Calico image; `Err(why)` when no layout can.
pub(crate) fn layout(map: &ImageMap) -> Result<Option<Layout>, String> {
    let images = calico_images(map);
    if images.is_empty() {
        return Ok(None);
    }
    let sources = images.iter().map(|i| i.3.clone()).collect();
    // Default paths kept: `REG[/PATH]/calico/node`.
    let kept: BTreeSet<Option<&str>> = images
        .iter()
        .map(|(path, name, target, _)| target.strip_suffix(&format!("/{path}/{name}")))
        .collect();
    if let [Some(registry)] = kept.iter().collect::<Vec<_>>().as_slice() {
        return Ok(Some(Layout {
            registry: format!("{registry}/"),
            image_path: None,
            sources,
        }));
    }
    // One path for all: `HOST/PATH/node`.
    let joined: BTreeSet<Option<(&str, &str)>> = images
        .iter()
        .map(|(_, name, target, _)| {
            let rest = target.strip_suffix(&format!("/{name}"))?;
            rest.split_once('/')
        })
        .collect();
    if let [Some((host, path))] = joined.iter().collect::<Vec<_>>().as_slice() {
        return Ok(Some(Layout {
            registry: format!("{host}/"),
            image_path: Some(path.to_string()),
            sources,
        }));
    }
    let names: Vec<String> = images
        .iter()
        .map(|(path, name, target, _)| format!("{path}/{name} is {target}"))
        .collect();
    let why = if images
        .iter()
        .any(|(_, name, target, _)| target.split_once('/').map(|x| x.1) == Some(name.as_str()))
    {
        "the operator always puts a path between the registry and the image name \
         (an empty imagePath means calico/ or tigera/)"
    } else {
        "no one registry and imagePath give them all"
    };
    Err(format!(
        "the Tigera operator computes its image names as REGISTRY/IMAGEPATH/NAME and cannot \
         compute these target names ({}): {why}",
        names.join(", ")
    ))
}

impl Planner<'_, '_> {
    /// Sets `spec.registry` (and `imagePath`, `imagePrefix`) of an Installation when its
    /// registry is absent, the default or a registry the bundle's Calico images came from;
    /// adds the pull secret to `spec.imagePullSecrets`.
    pub(super) fn installation(&mut self, obj: NodeId) -> Result<(), RewriteError> {
        let tree = self.tree;
        let line =
            locate::get(tree, obj, "kind").map_or(tree.line_of(obj), |e| tree.line_of(e.value));
        self.installations.push(line);
        let spec = locate::get(tree, obj, "spec");
        let spec_map = spec
            .map(|e| tree.resolve(e.value))
            .filter(|&v| locate::is_mapping(tree, v));
        let field = |key: &str| spec_map.and_then(|m| locate::get(tree, m, key));
        let str_of = |e: Option<Entry>| e.and_then(|e| tree.str(e.value)).unwrap_or("");

        let registry = field("registry");
        let current = str_of(registry).to_string();
        let mut wanted: Vec<(&str, String, ChangeKind)> = Vec::new();
        match layout(self.map) {
            Ok(None) => self.note(
                line,
                "Installation left alone: the image map has no Calico image (calico/*, tigera/operator)",
            ),
            Ok(Some(l)) => {
                let trimmed = current.trim_end_matches('/');
                let ours = current.is_empty()
                    || current == USE_DEFAULT
                    || l.sources.iter().any(|s| s == trimmed)
                    || trimmed == l.registry.trim_end_matches('/');
                if !ours {
                    self.note(
                        line,
                        &format!(
                            "Installation left alone: its registry {current:?} is none the bundle's \
                             Calico images came from ({})",
                            l.sources.iter().cloned().collect::<Vec<_>>().join(", ")
                        ),
                    );
                } else {
                    if trimmed != l.registry.trim_end_matches('/') {
                        wanted.push(("registry", l.registry.clone(), ChangeKind::Registry));
                    }
                    let path = str_of(field("imagePath"));
                    match &l.image_path {
                        None if !path.is_empty() && path != USE_DEFAULT => {
                            wanted.push(("imagePath", USE_DEFAULT.into(), ChangeKind::ImagePath));
                        }
                        Some(p) if path.trim_matches('/') != p => {
                            wanted.push(("imagePath", p.clone(), ChangeKind::ImagePath));
                        }
                        _ => {}
                    }
                    let prefix = str_of(field("imagePrefix"));
                    if !prefix.is_empty() && prefix != USE_DEFAULT {
                        wanted.push(("imagePrefix", USE_DEFAULT.into(), ChangeKind::ImagePrefix));
                    }
                }
            }
            Err(reason) => {
                let trimmed = current.trim_end_matches('/');
                let sources: BTreeSet<String> =
                    calico_images(self.map).into_iter().map(|i| i.3).collect();
                if current.is_empty() || current == USE_DEFAULT || sources.contains(trimmed) {
                    return Err(RewriteError::Operator { line, reason });
                }
                self.note(
                    line,
                    &format!("Installation left alone: its registry {current:?} is none the bundle's Calico images came from"),
                );
            }
        }
        let secret = self.opts.pull_secret.clone();
        let empty_flow = spec_map.filter(|&m| {
            matches!(&tree.node(m).kind, Kind::Mapping { entries, flow: true } if entries.is_empty())
        });
        match (spec, spec_map) {
            (_, Some(m)) if empty_flow.is_some() => {
                // `spec: {}`: written whole, as one flow mapping.
                let text = flow_spec(&wanted, secret.as_deref());
                if text != "{}" {
                    let node = tree.node(m);
                    self.edits.push(Edit {
                        start: node.start,
                        end: node.end,
                        with: text.clone(),
                    });
                    self.change(m, ChangeKind::Registry, "{}", &text);
                }
            }
            (_, Some(m)) => {
                for (key, value, kind) in wanted {
                    match field(key) {
                        Some(e) if tree.is_null(e.value) => {
                            self.set_null(e, &yaml_string(&value), kind)
                        }
                        Some(e) if tree.str(e.value).is_some() => {
                            self.replace(e.value, &value, kind)?
                        }
                        Some(e) => self.note(
                            tree.line_of(e.key),
                            &format!("Installation spec.{key} is not a string: left alone"),
                        ),
                        None => self.add_scalar_key(m, key, &value, kind),
                    }
                }
                if let Some(name) = &secret {
                    self.pull_secret(m, name);
                }
            }
            (Some(e), None) if tree.is_null(e.value) => {
                let text = flow_spec(&wanted, secret.as_deref());
                if text != "{}" {
                    self.set_null(e, &text, ChangeKind::Registry);
                }
            }
            (Some(_), None) => self.note(line, "Installation spec is not a mapping: left alone"),
            (None, None) => {
                let text = flow_spec(&wanted, secret.as_deref());
                if text != "{}" {
                    self.add_scalar_key(obj, "spec", &text, ChangeKind::Registry);
                }
            }
        }
        Ok(())
    }

    /// A new `key: value` (value already YAML when it starts with `{`) at the end of `mapping`.
    fn add_scalar_key(&mut self, mapping: NodeId, key: &str, value: &str, kind: ChangeKind) {
        let tree = self.tree;
        let node = tree.node(mapping);
        let Kind::Mapping { entries, flow } = &node.kind else {
            return;
        };
        let text = if value.starts_with('{') {
            value.to_string()
        } else {
            yaml_string(value)
        };
        let edit = match (entries.last(), flow) {
            (None, _) => Edit::insert(node.start + 1, format!("{key}: {text}")),
            (Some(&(k, v)), true) => {
                let Some((at, prefix)) = super::plan::after_flow_entry(tree, k, v) else {
                    return;
                };
                Edit::insert(at, format!("{prefix}, {key}: {text}"))
            }
            (Some(&(first, _)), false) => {
                let indent = " ".repeat(tree.col(tree.node(first).start));
                insert_lines(
                    tree.text,
                    node.end,
                    &[format!("{indent}{key}: {text}")],
                    self.eol,
                )
            }
        };
        self.edits.push(edit);
        self.change(mapping, kind, "", value);
    }
}

/// `{registry: …, imagePath: …, imagePullSecrets: [{name: …}]}` for an Installation without spec.
fn flow_spec(wanted: &[(&str, String, ChangeKind)], secret: Option<&str>) -> String {
    let mut parts: Vec<String> = wanted
        .iter()
        .map(|(k, v, _)| format!("{k}: {}", yaml_string(v)))
        .collect();
    if let Some(s) = secret {
        parts.push(format!("imagePullSecrets: [{{name: {}}}]", yaml_string(s)));
    }
    format!("{{{}}}", parts.join(", "))
}
