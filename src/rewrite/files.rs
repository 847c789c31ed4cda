//! Sets of manifest files around the text rewriter: whole files in, rewritten files out (all
//! or nothing, in memory), and pack's check that every image a carried manifest uses is in the
//! bundle. Writing them is `outputs`' job.

use crate::image_map::ImageMap;
use crate::image_rules::ImageRules;
use crate::rewrite::{self, RewriteError, RewriteOptions, Rewritten};

/// A manifest file: its relative name (`/` separators) and its bytes.
pub type NamedFile = (String, Vec<u8>);

#[derive(Debug, Clone, Default)]
pub struct K8sOptions {
    pub rewrite: RewriteOptions,
    /// Report images missing from the map as warnings instead of failing.
    pub allow_missing: bool,
}

/// One missing image: where it is used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingImage {
    pub file: String,
    pub line: usize,
    pub reference: String,
}

impl std::fmt::Display for MissingImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.reference)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum K8sError {
    #[error("{file}:{line}:{col}: invalid YAML: {message}")]
    Yaml {
        file: String,
        line: usize,
        col: usize,
        message: String,
    },
    #[error("{file}:{line}: invalid image reference {reference:?}: {reason}")]
    BadReference {
        file: String,
        line: usize,
        reference: String,
        reason: String,
    },
    #[error("{file}:{line}: Tigera Installation: {reason}")]
    Operator {
        file: String,
        line: usize,
        reason: String,
    },
    #[error("{file}: {message}")]
    Other { file: String, message: String },
    #[error("{} image(s) used by the manifests are not in the bundle:\n  {}", missing.len(), missing.iter().map(|m| m.to_string()).collect::<Vec<_>>().join("\n  "))]
    Missing { missing: Vec<MissingImage> },
}

impl K8sError {
    pub fn hint(&self) -> Option<String> {
        match self {
            K8sError::Missing { .. } => Some(
                "list every image in the spec's images: to carry it; --allow-missing makes this a warning"
                    .into(),
            ),
            K8sError::Operator { .. } => Some(
                "--mode replace and --mode prefix keep calico/NAME in every name, which the \
                 operator can compute (so does --mode flatten with --registry HOST/PATH)"
                    .into(),
            ),
            _ => None,
        }
    }
}

pub(super) fn from_rewrite(file: &str, e: RewriteError) -> K8sError {
    match e {
        RewriteError::Yaml { line, col, message } => K8sError::Yaml {
            file: file.to_string(),
            line,
            col,
            message,
        },
        RewriteError::BadReference {
            line,
            reference,
            reason,
        } => K8sError::BadReference {
            file: file.to_string(),
            line,
            reference,
            reason,
        },
        RewriteError::Operator { line, reason } => K8sError::Operator {
            file: file.to_string(),
            line,
            reason,
        },
        other => K8sError::Other {
            file: file.to_string(),
            message: other.to_string(),
        },
    }
}

pub(super) fn utf8<'a>(file: &str, bytes: &'a [u8]) -> Result<&'a str, K8sError> {
    std::str::from_utf8(bytes).map_err(|e| K8sError::Other {
        file: file.to_string(),
        message: format!("not UTF-8 text: {e}"),
    })
}

/// The outcome of rewriting a set of files in memory.
#[derive(Debug, Clone)]
pub struct RewrittenSet {
    /// (relative name, rewritten text, what changed)
    pub files: Vec<(String, Rewritten)>,
    /// Missing images, when allowed.
    pub missing: Vec<MissingImage>,
}

/// Rewrites every file in memory. Any YAML error, bad reference or (unless allowed) missing
/// image fails the whole set, so nothing is written half-way.
pub fn rewrite_all(
    files: &[NamedFile],
    map: &ImageMap,
    opts: &K8sOptions,
) -> Result<RewrittenSet, K8sError> {
    let mut out = Vec::with_capacity(files.len());
    let mut missing = Vec::new();
    for (name, bytes) in files {
        let text = utf8(name, bytes)?;
        let r = rewrite::rewrite(text, map, &opts.rewrite).map_err(|e| from_rewrite(name, e))?;
        missing.extend(r.missing.iter().map(|m| MissingImage {
            file: name.clone(),
            line: m.line,
            reference: m.reference.clone(),
        }));
        out.push((name.clone(), r));
    }
    if !missing.is_empty() && !opts.allow_missing {
        return Err(K8sError::Missing { missing });
    }
    Ok(RewrittenSet {
        files: out,
        missing,
    })
}

/// Every image the files use that `map` lacks (pack's check before shipping a bundle).
pub fn missing_images(
    files: &[NamedFile],
    map: &ImageMap,
    rules: &ImageRules,
) -> Result<Vec<MissingImage>, K8sError> {
    let mut missing = Vec::new();
    for (name, bytes) in files {
        let text = utf8(name, bytes)?;
        for u in rewrite::image_references(text, rules).map_err(|e| from_rewrite(name, e))? {
            if map.lookup(&u.reference).is_none() {
                missing.push(MissingImage {
                    file: name.clone(),
                    line: u.line,
                    reference: u.text.clone(),
                });
            }
        }
    }
    Ok(missing)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Digest;
    use crate::image_map::ImageMapEntry;
    use crate::reference::Reference;

    fn map() -> ImageMap {
        ImageMap::new(vec![ImageMapEntry {
            source: Reference::parse("redis:7").unwrap(),
            target: Reference::parse("reg:5000/library/redis:7").unwrap(),
            digest: Digest::of(b"x"),
            source_digest: None,
            chart: None,
        }])
    }

    const POD: &str = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - name: a\n    image: redis:7\n  - name: b\n    image: nginx:1\n";

    #[test]
    fn missing_is_an_error_naming_file_and_line_unless_allowed() {
        let files = vec![("k8s/pod.yaml".to_string(), POD.as_bytes().to_vec())];
        let e = rewrite_all(&files, &map(), &K8sOptions::default()).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("k8s/pod.yaml:9: nginx:1"), "{msg}");
        let ok = rewrite_all(
            &files,
            &map(),
            &K8sOptions {
                allow_missing: true,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(ok.missing.len(), 1);
        assert!(ok.files[0]
            .1
            .text
            .contains("image: reg:5000/library/redis:7"));
        let m = missing_images(&files, &map(), &Default::default()).unwrap();
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].line, 9);
    }

    #[test]
    fn filtered_index_pins_and_replaces_the_source_digest_by_the_pushed_one() {
        // Platform filtering made a new index (pushed) from the served one (not pushed): a
        // manifest naming the served digest must end up on the pushed one.
        let served = Digest::of(b"served index");
        let pushed = Digest::of(b"filtered index");
        let map = ImageMap::new(vec![ImageMapEntry {
            source: Reference::parse("redis:7").unwrap(),
            target: Reference::parse("reg:5000/library/redis:7").unwrap(),
            digest: pushed.clone(),
            source_digest: Some(served.clone()),
            chart: None,
        }]);
        let text = format!(
            "kind: Pod\nspec:\n  containers:\n  - image: redis@{served}\n  - image: redis:7\n"
        );
        let files = vec![("p.yaml".to_string(), text.into_bytes())];
        let opts = K8sOptions {
            rewrite: RewriteOptions {
                pin_digests: true,
                pull_secret: None,
                ..Default::default()
            },
            allow_missing: false,
        };
        let set = rewrite_all(&files, &map, &opts).unwrap();
        let out = &set.files[0].1.text;
        assert!(
            out.contains(&format!("image: reg:5000/library/redis@{pushed}\n")),
            "{out}"
        );
        assert!(
            out.contains(&format!("image: reg:5000/library/redis:7@{pushed}\n")),
            "{out}"
        );
        assert!(!out.contains(served.as_str()), "{out}");
    }

    #[test]
    fn yaml_error_names_file_and_line() {
        let files = vec![("bad.yaml".to_string(), b"kind: Pod\nspec: [\n".to_vec())];
        let e = rewrite_all(&files, &map(), &K8sOptions::default()).unwrap_err();
        assert!(e.to_string().starts_with("bad.yaml:"), "{e}");
    }
}
