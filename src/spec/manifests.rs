//! Expanding `manifests:` entries (files, directories, `*` / `?` / `**` globs) into YAML files.
//!
//! Rules (see SPEC.md): paths are relative to the spec file's directory; a directory means
//! every `.yaml` / `.yml` file below it; a glob selects the `.yaml` / `.yml` files it matches
//! and walks the directories it matches; a file named without wildcards is taken whatever its
//! extension. Names starting with `.` are skipped by walks and wildcards, and symbolic links
//! to directories are not followed by walks. An entry that selects no file is an error.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::{Location, ManifestSource, SpecError};
use crate::fsutil::{dir_entries, is_yaml, walk_yaml, FileError};

/// A manifest file selected by `manifests:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestFile {
    /// The name relative to the spec's directory (`k8s/app/deploy.yaml`): what the bundle keeps.
    pub relative: PathBuf,
    /// Where to read it: the spec's directory joined with `relative`.
    pub path: PathBuf,
    /// The line of the `manifests:` entry that selected it first.
    pub line: usize,
}

pub(super) fn expand_all(
    sources: &[ManifestSource],
    spec_path: &Path,
    base: &Path,
) -> Result<Vec<ManifestFile>, SpecError> {
    let mut files: BTreeMap<PathBuf, ManifestFile> = BTreeMap::new();
    for source in sources {
        for relative in source.expand_in(spec_path, base)? {
            files
                .entry(relative.clone())
                .or_insert_with(|| ManifestFile {
                    path: base.join(&relative),
                    relative,
                    line: source.line,
                });
        }
    }
    Ok(files.into_values().collect())
}

impl ManifestSource {
    /// The files this entry selects, relative to the directory of `spec_path`, sorted.
    pub fn expand(&self, spec_path: &Path) -> Result<Vec<PathBuf>, SpecError> {
        let base = match spec_path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        self.expand_in(spec_path, &base)
    }

    fn expand_in(&self, spec_path: &Path, base: &Path) -> Result<Vec<PathBuf>, SpecError> {
        let err = |message: String| SpecError::Manifests {
            at: Location {
                path: spec_path.to_path_buf(),
                line: self.line,
                column: self.column,
            },
            message,
        };
        let io_err = |e: FileError| {
            let cause = std::error::Error::source(&e)
                .map(|c| c.to_string())
                .unwrap_or_default();
            err(format!("manifests: {e}: {cause}"))
        };
        let components: Vec<&str> = self
            .pattern
            .split('/')
            .filter(|c| !c.is_empty() && *c != ".")
            .collect();
        let literal = components.iter().take_while(|c| !is_wild(c)).count();
        let mut prefix = PathBuf::new();
        for c in &components[..literal] {
            prefix.push(c);
        }
        let start = base.join(&prefix);
        let mut out = Vec::new();
        if literal == components.len() {
            match fs::metadata(&start) {
                Ok(m) if m.is_dir() => {
                    walk_yaml(&start, &prefix, &mut out).map_err(io_err)?;
                    if out.is_empty() {
                        return Err(err(format!(
                            "manifests: directory {:?} holds no .yaml or .yml file",
                            self.pattern
                        )));
                    }
                }
                Ok(_) => out.push(prefix),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Err(err(format!(
                        "manifests: {:?} does not exist (looked for {})",
                        self.pattern,
                        start.display()
                    )))
                }
                Err(e) => {
                    return Err(err(format!(
                        "manifests: cannot read {}: {e}",
                        start.display()
                    )))
                }
            }
        } else {
            if start.is_dir() {
                glob(&start, &prefix, &components[literal..], &mut out).map_err(io_err)?;
            }
            out.sort();
            out.dedup();
            if out.is_empty() {
                return Err(err(format!(
                    "manifests: {:?} matches no .yaml or .yml file (relative to {})",
                    self.pattern,
                    base.display()
                )));
            }
        }
        Ok(out)
    }
}

fn is_wild(component: &str) -> bool {
    component.contains(['*', '?'])
}

/// Matches the pattern components `pats` below `dir`.
fn glob(dir: &Path, rel: &Path, pats: &[&str], out: &mut Vec<PathBuf>) -> Result<(), FileError> {
    let Some((pat, rest)) = pats.split_first() else {
        return Ok(());
    };
    if *pat == "**" {
        if rest.is_empty() {
            return walk_yaml(dir, rel, out);
        }
        glob(dir, rel, rest, out)?;
        for (name, path) in dir_entries(dir)? {
            let meta = fs::symlink_metadata(&path).map_err(FileError::with("reading", &path))?;
            if meta.is_dir() {
                glob(&path, &rel.join(&name), pats, out)?;
            }
        }
        return Ok(());
    }
    for (name, path) in dir_entries(dir)? {
        if !wildcard(pat, &name) {
            continue;
        }
        let rel = rel.join(&name);
        if rest.is_empty() {
            if path.is_dir() {
                walk_yaml(&path, &rel, out)?;
            } else if is_yaml(&path) && path.is_file() {
                out.push(rel);
            }
        } else if path.is_dir() {
            glob(&path, &rel, rest, out)?;
        }
    }
    Ok(())
}

/// `*` matches any run of characters, `?` one character; everything else is literal.
fn wildcard(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let s: Vec<char> = name.chars().collect();
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == s[si]) {
            pi += 1;
            si += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, si));
            pi += 1;
        } else if let Some((sp, ss)) = star {
            pi = sp + 1;
            si = ss + 1;
            star = Some((sp, ss + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(wildcard("*.yaml", "a.yaml"));
        assert!(wildcard("*", "anything"));
        assert!(wildcard("a?c", "abc"));
        assert!(wildcard("*-*.yml", "x-y.yml"));
        assert!(!wildcard("*.yaml", "a.yml"));
        assert!(!wildcard("a?c", "ac"));
        assert!(!wildcard("deploy", "deploy2"));
        assert!(wildcard("**", "x"));
    }
}
