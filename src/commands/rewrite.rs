//! `airgap rewrite`: Kubernetes YAML in, the same YAML with target image names out, from an
//! image map or from a bundle and a target (computed the way `load` would, nothing pushed).

use std::io::Read;
use std::path::{Path, PathBuf};

use super::CommandError;
use crate::fsutil::FileError;
use crate::image_map::ImageMap;
use crate::image_rules::ImageRules;
use crate::naming::{Mode, Target};
use crate::outputs::{
    self, write_files, MirrorOptions, OutputFile, OutputOptions, TargetAccess, Written,
};
use crate::progress::Progress;
use crate::rewrite::{rewrite_all, K8sOptions, NamedFile};

/// Where the target names come from.
#[derive(Debug, Clone)]
pub enum Names {
    /// The JSON map `load --image-map` wrote.
    ImageMap(PathBuf),
    /// The placements a load of this bundle into `target` would make.
    Bundle {
        bundle: PathBuf,
        target: Target,
        mode: Mode,
    },
}

#[derive(Debug, Clone)]
pub struct RewriteCommand {
    /// Files, directories (every .yaml/.yml below) or `-` for standard input.
    pub paths: Vec<PathBuf>,
    pub names: Names,
    /// Output directory; `None`: the single input's result goes to [`RewriteReport::stdout`].
    pub output: Option<PathBuf>,
    pub rewrite: K8sOptions,
    /// Also write the runtime mirror configuration for these names.
    pub mirror: Option<MirrorOptions>,
    /// How the nodes reach the target (for the mirror files).
    pub plain_http: bool,
    pub ca_file: Option<PathBuf>,
}

#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RewriteReport {
    /// The rewritten text of a single input, when no output directory was given.
    #[serde(skip)]
    pub stdout: Option<String>,
    pub written: Vec<PathBuf>,
    pub output: Option<PathBuf>,
    pub changes: usize,
    /// The mirror files, when asked for.
    pub mirror: Written,
}

impl RewriteReport {
    /// Lines for standard error (standard output may carry the YAML).
    pub fn render(&self) -> Option<String> {
        let mut out = Vec::new();
        if let Some(dir) = &self.output {
            out.push(format!(
                "rewrote {} file(s) into {} ({} change(s))",
                self.written.len(),
                dir.display(),
                self.changes
            ));
        }
        if let Some(dir) = &self.mirror.mirror_dir {
            out.push(format!(
                "wrote {} runtime mirror file(s) to {} (see its README.md)",
                self.mirror.mirror_files.len(),
                dir.display()
            ));
            out.extend(
                self.mirror
                    .mirror_notes
                    .iter()
                    .map(|n| format!("  note: {n}")),
            );
        }
        (!out.is_empty()).then(|| out.join("\n"))
    }
}

impl Names {
    /// The target and mode, when the names are computed (an image map records neither).
    fn target(&self) -> (Option<Target>, Mode) {
        match self {
            Names::ImageMap(_) => (None, Mode::default()),
            Names::Bundle { target, mode, .. } => (Some(target.clone()), *mode),
        }
    }

    /// The names, and the image rules of the bundle (the defaults for an image map).
    fn image_map(&self) -> Result<(ImageMap, ImageRules), CommandError> {
        match self {
            Names::ImageMap(p) => Ok((ImageMap::read(p)?, ImageRules::default())),
            Names::Bundle {
                bundle,
                target,
                mode,
            } => {
                let input =
                    crate::bundle::open_input(bundle).map_err(CommandError::bundle(bundle))?;
                let i = crate::bundle::inspect(input).map_err(CommandError::bundle(bundle))?;
                let placements = crate::load::placements(&i.metadata, target, *mode)?;
                Ok((
                    crate::outputs::image_map(&placements),
                    i.metadata.image_rules.clone(),
                ))
            }
        }
    }
}

pub fn rewrite(
    cmd: &RewriteCommand,
    progress: &dyn Progress,
) -> Result<RewriteReport, CommandError> {
    let (map, bundle_rules) = cmd.names.image_map()?;
    let mut opts = cmd.rewrite.clone();
    opts.rewrite.rules = ImageRules::merged(&bundle_rules, &opts.rewrite.rules);
    // The mirror files first: computed from the names alone, checked before any file is read.
    let (target, mode) = cmd.names.target();
    let mirror = outputs::plan_from_map(
        map.clone(),
        &[],
        &TargetAccess {
            target,
            mode,
            plain_http: cmd.plain_http,
            ca_file: cmd.ca_file.clone(),
            ..Default::default()
        },
        &OutputOptions {
            mirror: cmd.mirror.clone(),
            ..Default::default()
        },
    )?;
    if cmd.paths.is_empty() {
        return Ok(RewriteReport {
            stdout: None,
            written: Vec::new(),
            output: None,
            changes: 0,
            mirror: mirror.write()?,
        });
    }
    let files = read_inputs(&cmd.paths)?;
    if cmd.output.is_none() && files.len() != 1 {
        return Err(CommandError::invalid(format!(
            "{} input files: give -o DIR to write them (standard output takes a single input)",
            files.len()
        )));
    }
    if cmd.output.is_some() && files.iter().any(|(n, _)| n == "-") {
        return Err(CommandError::invalid(
            "standard input cannot go to -o DIR; redirect standard output instead",
        ));
    }
    let set = rewrite_all(&files, &map, &opts)?;
    for m in &set.missing {
        progress.warn(&format!(
            "{m}: image is not in the image map; left as it is"
        ));
    }
    let changes = set.files.iter().map(|(_, r)| r.changes.len()).sum();
    let mut report = RewriteReport {
        stdout: None,
        written: Vec::new(),
        output: cmd.output.clone(),
        changes,
        mirror: Written::default(),
    };
    match &cmd.output {
        None => report.stdout = set.files.into_iter().next().map(|(_, r)| r.text),
        Some(dir) => {
            let out: Vec<OutputFile> = set
                .files
                .into_iter()
                .map(|(name, r)| OutputFile {
                    name,
                    text: r.text,
                    secret: false,
                })
                .collect();
            report.written = write_files(dir, &out)?;
        }
    }
    report.mirror = mirror.write()?;
    Ok(report)
}

/// Reads the inputs: files as named (under their file name), directories walked for YAML
/// files (under their names relative to the directory), `-` for standard input.
fn read_inputs(paths: &[PathBuf]) -> Result<Vec<NamedFile>, CommandError> {
    let mut out = Vec::new();
    for p in paths {
        if p.as_os_str() == "-" {
            let mut buf = Vec::new();
            std::io::stdin()
                .read_to_end(&mut buf)
                .map_err(FileError::with("reading", "standard input"))?;
            out.push(("-".to_string(), buf));
        } else if p.is_dir() {
            let found = crate::fsutil::yaml_files_below(p)?;
            if found.is_empty() {
                return Err(CommandError::invalid(format!(
                    "{}: no .yaml or .yml files in this directory",
                    p.display()
                )));
            }
            for rel in found {
                out.push((crate::fsutil::slash_path(&rel), read(&p.join(&rel))?));
            }
        } else {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| p.display().to_string());
            out.push((name, read(p)?));
        }
    }
    Ok(out)
}

fn read(p: &Path) -> Result<Vec<u8>, FileError> {
    std::fs::read(p).map_err(FileError::with("reading", p))
}
