use crate::digest::Digest;

/// Errors from talking to a registry. Every variant names the registry; none ever holds a
/// password or token.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("authentication failed at registry {registry}{} (HTTP {status}): {message}. Check the credentials for {registry} (spec usernameEnv/passwordEnv, --username/--password-stdin, or docker config.json)", in_repo(" for", .repository))]
    Auth {
        registry: String,
        repository: String,
        status: u16,
        message: String,
    },
    #[error("registry {registry} refused {action}{} (HTTP {status}: permission denied; the credentials were accepted but lack the right to do this): {message}", in_repo(" on", .repository))]
    Denied {
        registry: String,
        repository: String,
        action: String,
        /// 403, or 401 when a token was refused for lack of scope (`insufficient_scope`).
        status: u16,
        message: String,
    },
    #[error("{what} not found at registry {registry}{}: {message}", in_repo(" in", .repository))]
    NotFound {
        registry: String,
        repository: String,
        what: String,
        message: String,
    },
    #[error("registry {registry} answered HTTP {status} to {action}{}: {message}", in_repo(" on", .repository))]
    Status {
        registry: String,
        repository: String,
        action: String,
        status: u16,
        message: String,
    },
    #[error("cannot reach registry {registry} at {url}: {reason}")]
    Connect {
        registry: String,
        url: String,
        reason: String,
    },
    #[error("registry {registry} served {what} whose content does not match digest {expected} (got {actual})")]
    DigestMismatch {
        registry: String,
        what: String,
        expected: Digest,
        actual: Digest,
    },
    #[error("registry {registry} served {what} of {actual} bytes, expected {expected}")]
    SizeMismatch {
        registry: String,
        what: String,
        expected: u64,
        actual: u64,
    },
    #[error("registry {registry} served manifest {what} larger than the {limit}-byte limit")]
    ManifestTooLarge {
        registry: String,
        what: String,
        limit: u64,
    },
    #[error("registry {registry}: {message}")]
    Protocol { registry: String, message: String },
    #[error("TLS/client set-up failed: {0}")]
    Setup(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// `" for REPO"` (with `word`), or nothing for requests outside any repository (`/v2/`).
fn in_repo(word: &str, repository: &str) -> String {
    if repository.is_empty() {
        String::new()
    } else {
        format!("{word} {repository}")
    }
}

impl RegistryError {
    /// Worth another attempt: the network or the server hiccuped.
    pub fn is_transient(&self) -> bool {
        match self {
            RegistryError::Connect { .. } => true,
            RegistryError::Status { status, .. } => matches!(status, 429 | 500 | 502 | 503 | 504),
            _ => false,
        }
    }
}

/// Describes a reqwest error without its URL query (upload URLs can carry state tokens) and
/// with the underlying cause, which reqwest hides behind "error sending request".
pub(crate) fn describe(e: &reqwest::Error) -> String {
    use std::error::Error as _;
    let mut msg = if e.is_timeout() {
        "timed out".to_string()
    } else if e.is_connect() {
        "connection failed".to_string()
    } else {
        "request failed".to_string()
    };
    let mut src = e.source();
    let mut seen = Vec::new();
    while let Some(s) = src {
        let text = s.to_string();
        if !seen.contains(&text) {
            msg.push_str(": ");
            msg.push_str(&text);
            seen.push(text);
        }
        src = s.source();
    }
    msg
}

/// Pulls the human part out of a registry error body (`{"errors":[{"message":…}]}`), or a
/// short, single-line excerpt when it is HTML or something else.
pub(crate) fn body_message(body: &str) -> String {
    #[derive(serde::Deserialize)]
    struct Errors {
        errors: Vec<Item>,
    }
    #[derive(serde::Deserialize)]
    struct Item {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    if let Ok(e) = serde_json::from_str::<Errors>(body) {
        let parts: Vec<String> = e
            .errors
            .iter()
            .map(|i| format!("{} {}", i.code, i.message).trim().to_string())
            .collect();
        if !parts.is_empty() {
            return parts.join("; ");
        }
    }
    let trimmed = body.trim();
    if trimmed.is_empty() {
        return "no details".to_string();
    }
    if trimmed.starts_with('<') {
        return "the server returned an HTML page, not a registry API answer (is this URL a registry?)".into();
    }
    let one_line: String = trimmed.split_whitespace().collect::<Vec<_>>().join(" ");
    one_line.chars().take(200).collect()
}
