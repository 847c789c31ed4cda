//! Each command's workflow, as a library function: options in, a summary out (serde types,
//! so `--json` is a struct), progress through a [`Progress`](crate::progress::Progress). The
//! binary only parses arguments, calls one of these and renders what it returns.

pub mod cache;
mod error;
pub mod export;
pub mod images;
pub mod inspect;
pub mod load;
pub mod pack;
pub mod rewrite;
pub mod serve;
pub mod sign;
pub mod verify;

pub use error::{CommandError, CommandErrorKind};

/// `reportVersion` of every `--json` document (`pack`, `load`, `verify`, `inspect`), the
/// version of their schemas in `bundle-spec/schemas/`. Adding a field keeps it; removing,
/// renaming or changing the meaning of one raises it.
pub const REPORT_VERSION: u32 = 1;

use crate::progress::Progress;
use crate::registry::ConnectOptions;

/// Says what the user should know about the connection options before anything starts.
fn warn_connect(c: &ConnectOptions, progress: &dyn Progress) {
    if c.insecure_skip_tls_verify {
        progress.warn("TLS certificate verification is disabled (--insecure-skip-tls-verify)");
    }
}
