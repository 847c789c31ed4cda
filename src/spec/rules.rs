//! `imageFields:`, `relatedImageEnv:` and `imagesFromManifests:`: where the carried manifests
//! hold images besides pod specs, and whether pack takes its image list from them.

use saphyr::{MarkedYaml, Scalar, YamlData};

use super::yaml::Doc;
use super::{ErrorKind, SpecError};
use crate::image_rules::{ImageField, ImageRules};

pub(super) const FIELD_KEYS: &[&str] =
    &["kind", "group", "path", "tag", "pullPolicy", "pullSecrets"];

pub(super) fn image_fields<'a>(
    doc: &Doc<'a>,
    node: &MarkedYaml<'a>,
) -> Result<Vec<ImageField>, SpecError> {
    let items = doc.sequence(
        node,
        "imageFields",
        "a list of {kind, group, path} such as {kind: Prometheus, path: spec.image}",
    )?;
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let entries = doc.mapping(item, "imageFields entry", "a mapping {kind, group, path}")?;
        doc.check_keys(&entries, FIELD_KEYS, "an imageFields entry", None)?;
        let get = |k: &str| -> Result<Option<String>, SpecError> {
            match entries.iter().find(|(key, _, _)| *key == k) {
                Some((_, _, v)) => doc.string(v, &format!("imageFields: {k}")).map(Some),
                None => Ok(None),
            }
        };
        let required = |k: &str| -> Result<String, SpecError> {
            get(k)?.ok_or_else(|| {
                doc.invalid(
                    item,
                    ErrorKind::Missing,
                    format!("imageFields: the entry has no `{k}:`"),
                )
            })
        };
        let field = ImageField {
            kind: required("kind")?,
            group: get("group")?,
            path: required("path")?,
            tag: get("tag")?,
            pull_policy: get("pullPolicy")?,
            pull_secrets: get("pullSecrets")?,
        };
        field
            .validate()
            .map_err(|m| doc.invalid(item, ErrorKind::BadValue, format!("imageFields: {m}")))?;
        out.push(field);
    }
    Ok(out)
}

pub(super) fn related_env<'a>(
    doc: &Doc<'a>,
    node: &MarkedYaml<'a>,
) -> Result<Vec<String>, SpecError> {
    let items = doc.sequence(
        node,
        "relatedImageEnv",
        "a list of env variable name patterns such as [RELATED_IMAGE_*]",
    )?;
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let p = doc.string(item, "relatedImageEnv")?;
        if p.is_empty() || p.chars().any(char::is_whitespace) || p == "*" {
            return Err(doc.invalid(
                item,
                ErrorKind::BadValue,
                format!(
                    "relatedImageEnv: {p:?} is not a variable name pattern (letters, digits, _ and *; \
                     `*` alone would take every variable)"
                ),
            ));
        }
        out.push(p);
    }
    Ok(out)
}

pub(super) fn boolean<'a>(
    doc: &Doc<'a>,
    node: &MarkedYaml<'a>,
    what: &str,
) -> Result<bool, SpecError> {
    match &node.data {
        YamlData::Value(Scalar::Boolean(b)) => Ok(*b),
        _ => Err(doc.invalid(
            node,
            ErrorKind::WrongType,
            format!(
                "{what}: expected true or false, found {}",
                doc.describe(node)
            ),
        )),
    }
}

/// The rules a spec gives (defaults for what it leaves out).
pub(super) fn rules(fields: Vec<ImageField>, env: Option<Vec<String>>) -> ImageRules {
    let mut rules = ImageRules::default().with_fields(&fields);
    if let Some(env) = env {
        rules.related_image_env = env;
    }
    rules
}
