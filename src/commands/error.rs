use std::path::PathBuf;

use crate::bundle::BundleError;
use crate::fsutil::FileError;
use crate::image_map::ImageMapError;
use crate::load::LoadError;
use crate::naming::NamingError;
use crate::outputs::OutputError;
use crate::pack::PackError;
use crate::registry::credentials::DockerConfigError;
use crate::rewrite::K8sError;
use crate::serve::ServeError;
use crate::sign::SignError;
use crate::spec::SpecError;

/// Why a command failed (boxed: errors travel far and are rare).
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct CommandError(Box<CommandErrorKind>);

impl<E> From<E> for CommandError
where
    CommandErrorKind: From<E>,
{
    fn from(e: E) -> Self {
        CommandError(Box::new(CommandErrorKind::from(e)))
    }
}

impl CommandError {
    pub fn kind(&self) -> &CommandErrorKind {
        &self.0
    }

    pub(crate) fn bundle(path: &std::path::Path) -> impl FnOnce(BundleError) -> CommandError {
        let path = path.to_path_buf();
        move |source| CommandErrorKind::Bundle { path, source }.into()
    }

    pub(crate) fn invalid(message: impl Into<String>) -> CommandError {
        CommandErrorKind::Invalid(message.into()).into()
    }

    /// Advice from the stage error this wraps (transparent wrappers hide it from the chain).
    pub fn hint(&self) -> Option<String> {
        use CommandErrorKind as K;
        match self.kind() {
            K::Pack(e)
            | K::FoundImage { source: e, .. }
            | K::ArchiveImage { source: e, .. }
            | K::ChartEntry { source: e, .. } => e.hint(),
            K::Load(e) => e.hint(),
            K::Manifests(e) => e.hint(),
            K::Naming(e) => e.hint(),
            K::Sign(e) => e.hint(),
            K::Export(e) => e.hint(),
            _ => None,
        }
    }
}

/// Stage errors pass through unchanged; the binary prints the chain.
#[derive(Debug, thiserror::Error)]
pub enum CommandErrorKind {
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error(transparent)]
    Pack(#[from] PackError),
    /// A pack error about an image `imagesFromManifests` found: where it was found.
    #[error("{origin}: the image found there")]
    FoundImage {
        origin: String,
        #[source]
        source: PackError,
    },
    /// A pack error about an image of an `archive:` entry: where the entry is.
    #[error("{at}: the image of this `archive:` entry")]
    ArchiveImage {
        at: crate::spec::Location,
        #[source]
        source: PackError,
    },
    /// A pack error about a `charts:` entry: where the entry is.
    #[error("{at}: the chart of this `charts:` entry")]
    ChartEntry {
        at: crate::spec::Location,
        #[source]
        source: PackError,
    },
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error("bundle {}", path.display())]
    Bundle {
        path: PathBuf,
        #[source]
        source: BundleError,
    },
    #[error("bundle {} failed verification", path.display())]
    Verify {
        path: PathBuf,
        #[source]
        source: BundleError,
    },
    #[error("base {}", path.display())]
    Base {
        path: PathBuf,
        #[source]
        source: BundleError,
    },
    #[error(transparent)]
    Manifests(#[from] K8sError),
    #[error(transparent)]
    Output(#[from] OutputError),
    #[error(transparent)]
    File(#[from] FileError),
    #[error(transparent)]
    Naming(#[from] NamingError),
    #[error(transparent)]
    ImageMap(#[from] ImageMapError),
    #[error(transparent)]
    Serve(#[from] ServeError),
    #[error(transparent)]
    Sign(#[from] SignError),
    #[error(transparent)]
    Export(#[from] crate::archive::export::ExportError),
    #[error("credentials for {image} ({}:{line})", spec.display())]
    SpecCredentials {
        image: String,
        spec: PathBuf,
        line: usize,
        #[source]
        source: DockerConfigError,
    },
    #[error("reading docker credentials for {registry}")]
    DockerConfig {
        registry: String,
        #[source]
        source: DockerConfigError,
    },
    #[error("split bundle {} failed verification:\n  {}", path.display(), problems.join("\n  "))]
    Parts {
        path: PathBuf,
        problems: Vec<String>,
    },
    /// Options that parse but do not fit together.
    #[error("{0}")]
    Invalid(String),
}
