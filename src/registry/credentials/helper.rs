//! Running `docker-credential-NAME get`, as docker does.

use std::io::{self, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;

use super::config::{entry_err, Lookup};
use super::{Credentials, DockerConfigError};

impl Lookup<'_> {
    pub(super) fn helper(
        &self,
        path: &Path,
        name: &str,
        origin: &'static str,
        host: &str,
        server: &str,
    ) -> Result<HelperResult, DockerConfigError> {
        let fail = |message: String| DockerConfigError::Helper {
            path: path.to_path_buf(),
            helper: name.to_string(),
            origin,
            host: host.to_string(),
            message,
        };
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(entry_err(
                path,
                origin,
                &format!("{name:?} is not a credential helper name"),
            ));
        }
        let mut cmd = Command::new(format!("docker-credential-{name}"));
        cmd.arg("get")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(p) = (self.env)("PATH") {
            cmd.env("PATH", p);
        }
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(HelperResult::Missing),
            Err(e) => return Err(fail(format!("cannot run it: {e}"))),
        };
        if let Some(mut stdin) = child.stdin.take() {
            // A helper that exits without reading closes the pipe: its exit status tells.
            let _ = stdin.write_all(server.as_bytes());
        }
        let out = child
            .wait_with_output()
            .map_err(|e| fail(format!("cannot run it: {e}")))?;
        if !out.status.success() {
            let text = format!(
                "{} {}",
                String::from_utf8_lossy(&out.stdout).trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
            let text = text.trim();
            if text.to_ascii_lowercase().contains("credentials not found") {
                return Ok(HelperResult::NotFound);
            }
            let mut message: String = text.chars().take(300).collect();
            if message.is_empty() {
                message = format!("it exited with {}", out.status);
            }
            return Err(fail(message));
        }
        let reply: Value = serde_json::from_slice(&out.stdout)
            .map_err(|_| fail("its answer is not the expected JSON".into()))?;
        let field = |k: &str| {
            reply
                .get(k)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        let (user, secret) = (field("Username"), field("Secret"));
        if secret.is_empty() {
            return Ok(HelperResult::NotFound);
        }
        // Username `<token>`: the secret is an identity token, which is what
        // `Credentials::identity_token` holds, the same way.
        Ok(HelperResult::Found(Credentials::new(user, secret)))
    }
}

pub(super) enum HelperResult {
    Found(Credentials),
    NotFound,
    /// The helper program does not exist.
    Missing,
}
