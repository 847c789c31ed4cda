//! `charts:` entries: a Helm chart from an OCI registry (`oci:` + `version:`), from a classic
//! chart repository (`repo:` + `name:` + `version:`) or a local package (`path:`). Each
//! becomes an image entry; the name it gets in the bundle is `<host>/charts/NAME:VERSION`
//! (`+` written `_`, as Helm tags it), so `--mode replace` lands it at
//! `<target>/charts/NAME`, where `helm install oci://<target>/charts/NAME --version V`
//! finds it. An `oci:` chart keeps its own repository.

use std::path::PathBuf;

use saphyr::MarkedYaml;

use super::yaml::Doc;
use super::{ChartSource, ChartWhere, ErrorKind, ImageEntry, SpecError};
use crate::reference::Reference;

pub(super) const CHART_KEYS: &[&str] = &["oci", "repo", "name", "version", "path"];
/// [`ImageEntry::source`] of `charts:` entries.
pub const CHART_SOURCE: &str = "chart";
/// The registry part of the name of a chart packed from a local file.
pub const LOCAL_CHART_HOST: &str = "localhost";

/// The OCI tag of a chart version: SemVer build metadata's `+` is not allowed in a tag, and
/// Helm writes it as `_`.
pub fn chart_tag(version: &str) -> String {
    version.replace('+', "_")
}

pub(super) fn charts<'a>(
    doc: &Doc<'a>,
    node: &MarkedYaml<'a>,
) -> Result<Vec<ImageEntry>, SpecError> {
    let items = doc.sequence(node, "charts", "a list of charts")?;
    items.iter().map(|item| chart(doc, item)).collect()
}

fn chart<'a>(doc: &Doc<'a>, node: &MarkedYaml<'a>) -> Result<ImageEntry, SpecError> {
    let expected = "a mapping: {oci, version}, {repo, name, version} or {path}";
    let fields = doc.mapping(node, "charts", expected)?;
    doc.check_keys(&fields, CHART_KEYS, "a chart entry", None)?;
    let get = |k: &str| fields.iter().find(|(key, _, _)| *key == k).map(|e| e.2);
    let at = doc.at(node);
    let given: Vec<&str> = ["oci", "repo", "path"]
        .into_iter()
        .filter(|k| get(k).is_some())
        .collect();
    if given.len() != 1 {
        return Err(doc.invalid(
            node,
            if given.is_empty() {
                ErrorKind::Missing
            } else {
                ErrorKind::Conflict
            },
            format!("a chart entry needs exactly one of `oci:`, `repo:`, `path:` ({expected})"),
        ));
    }
    let version = |required: bool| -> Result<Option<String>, SpecError> {
        match get("version") {
            Some(v) => {
                let s = doc.string(v, "version")?;
                if s.is_empty() {
                    return Err(doc.invalid(v, ErrorKind::BadValue, "`version` is empty"));
                }
                Ok(Some(s))
            }
            None if required => Err(doc.invalid(
                node,
                ErrorKind::Missing,
                "this chart entry needs `version:` (the chart's exact SemVer version)",
            )),
            None => Ok(None),
        }
    };
    let reference = |host: &str, repo: &str, v: &str, n: &MarkedYaml| {
        Reference::parse(&format!("{host}/{repo}:{}", chart_tag(v)))
            .map_err(|e| doc.invalid(n, ErrorKind::BadReference, e.to_string()))
    };
    let (reference, chart) = match given[0] {
        "oci" => {
            let n = get("oci").expect("given");
            if get("name").is_some() {
                return Err(doc.invalid(
                    n,
                    ErrorKind::Conflict,
                    "`name:` goes with `repo:`; `oci:` names the chart itself",
                ));
            }
            let text = doc.string(n, "oci")?;
            let Some(rest) = text.strip_prefix("oci://") else {
                return Err(doc.invalid(
                    n,
                    ErrorKind::BadReference,
                    format!("`oci:` {text:?} must start with oci:// (oci://host/path/name)"),
                ));
            };
            let v = version(true)?.expect("required");
            let (host, repo) = rest.trim_end_matches('/').split_once('/').ok_or_else(|| {
                doc.invalid(
                    n,
                    ErrorKind::BadReference,
                    format!("`oci:` {text:?} needs a repository after the host"),
                )
            })?;
            (reference(host, repo, &v, n)?, Some(ChartWhere::Oci))
        }
        "repo" => {
            let n = get("repo").expect("given");
            let text = doc.string(n, "repo")?;
            let url = url::Url::parse(text.trim_end_matches('/'))
                .ok()
                .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
                .ok_or_else(|| {
                    doc.invalid(
                        n,
                        ErrorKind::BadValue,
                        format!("`repo:` {text:?} is not an http(s) URL of a chart repository"),
                    )
                })?;
            let Some(name_node) = get("name") else {
                return Err(doc.invalid(
                    node,
                    ErrorKind::Missing,
                    "a `repo:` chart entry needs `name:` (the chart's name in the repository)",
                ));
            };
            let name = doc.string(name_node, "name")?;
            let v = version(true)?.expect("required");
            let host = match url.port() {
                Some(p) => format!("{}:{p}", url.host_str().expect("checked")),
                None => url.host_str().expect("checked").to_string(),
            };
            let r = reference(&host, &format!("charts/{name}"), &v, name_node)?;
            (
                r,
                Some(ChartWhere::Repo {
                    url,
                    name,
                    version: v,
                }),
            )
        }
        _ => {
            let n = get("path").expect("given");
            let path = PathBuf::from(doc.string(n, "path")?);
            // The name and version are the package's own; until pack reads its Chart.yaml
            // they come from the file name `NAME-VERSION.tgz` that `helm package` writes, or
            // from `name:` / `version:`.
            let stem = path
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default();
            let stem = stem.strip_suffix(".tgz").unwrap_or(&stem).to_string();
            let split = stem
                .char_indices()
                .find(|(i, c)| {
                    *c == '-'
                        && stem[i + 1..]
                            .chars()
                            .next()
                            .is_some_and(|d| d.is_ascii_digit())
                })
                .map(|(i, _)| (stem[..i].to_string(), stem[i + 1..].to_string()));
            let name = match get("name") {
                Some(nn) => Some(doc.string(nn, "name")?),
                None => split.as_ref().map(|s| s.0.clone()),
            };
            let v = version(false)?.or(split.map(|s| s.1));
            let (Some(name), Some(v)) = (name, v) else {
                return Err(doc.invalid(
                    n,
                    ErrorKind::Missing,
                    format!(
                        "cannot tell the chart's name and version from {:?}; name the file \
                         NAME-VERSION.tgz (as `helm package` does) or add `name:` and `version:`",
                        path.display()
                    ),
                ));
            };
            let r = reference(LOCAL_CHART_HOST, &format!("charts/{name}"), &v, n)?;
            (
                r,
                Some(ChartWhere::Path {
                    path,
                    name,
                    version: v,
                }),
            )
        }
    };
    Ok(ImageEntry {
        reference,
        source: CHART_SOURCE.to_string(),
        archive: None,
        chart: chart.map(|w| ChartSource {
            at: at.clone(),
            source: w,
        }),
        credentials: None,
        credentials_source: None,
        line: at.line,
        column: at.column,
    })
}
