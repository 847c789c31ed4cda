//! Running the real `airgap` binary, checking its outcome, and making sure no secret leaks.

use std::ffi::{OsStr, OsString};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The binary under test.
pub const AIRGAP: &str = env!("CARGO_BIN_EXE_airgap");

/// How long one airgap run may take before the test kills it and fails
/// (`AIRGAP_TEST_TIMEOUT_SECS` overrides).
pub fn default_timeout() -> Duration {
    let secs = std::env::var("AIRGAP_TEST_TIMEOUT_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    Duration::from_secs(secs)
}

/// Variables passed through from the test's environment; everything else is cleared so that
/// no credential, proxy or config of the machine changes what airgap does.
const PASS_THROUGH: &[&str] = &[
    "PATH",
    "RUST_BACKTRACE",
    "RUST_LOG",
    "TMPDIR",
    "LLVM_PROFILE_FILE",
];

/// One airgap invocation: arguments, extra environment, stdin, a wrapper command.
pub struct AirgapCmd {
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    stdin: Option<Vec<u8>>,
    cwd: Option<PathBuf>,
    timeout: Duration,
    wrapper: Vec<OsString>,
}

impl AirgapCmd {
    pub fn new<I, S>(args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        AirgapCmd {
            args: args.into_iter().map(|a| a.as_ref().to_owned()).collect(),
            env: Vec::new(),
            stdin: None,
            cwd: None,
            timeout: default_timeout(),
            wrapper: Vec::new(),
        }
    }
    pub fn env(mut self, k: impl AsRef<OsStr>, v: impl AsRef<OsStr>) -> Self {
        self.env
            .push((k.as_ref().to_owned(), v.as_ref().to_owned()));
        self
    }
    pub fn envs(mut self, env: &[(&str, &str)]) -> Self {
        for (k, v) in env {
            self = self.env(k, v);
        }
        self
    }
    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(bytes.into());
        self
    }
    pub fn current_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cwd = Some(dir.into());
        self
    }
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }
    /// Runs airgap under another program, e.g. `["/usr/bin/time", "-v"]`.
    pub fn wrap(mut self, prefix: &[&str]) -> Self {
        self.wrapper = prefix.iter().map(OsString::from).collect();
        self
    }

    fn describe(&self) -> String {
        let mut s = String::from("airgap");
        for a in &self.args {
            s.push(' ');
            s.push_str(&a.to_string_lossy());
        }
        s
    }

    /// Starts airgap without waiting (for fault tests that act while it runs).
    pub fn spawn(self) -> RunningAirgap {
        let home = tempfile::Builder::new()
            .prefix("airgap-home-")
            .tempdir()
            .unwrap();
        let mut cmd = if self.wrapper.is_empty() {
            Command::new(AIRGAP)
        } else {
            let mut c = Command::new(&self.wrapper[0]);
            c.args(&self.wrapper[1..]).arg(AIRGAP);
            c
        };
        cmd.args(&self.args);
        cmd.env_clear();
        for k in PASS_THROUGH {
            if let Some(v) = std::env::var_os(k) {
                cmd.env(k, v);
            }
        }
        cmd.env("HOME", home.path())
            .env("NO_PROXY", "127.0.0.1,localhost")
            .env("no_proxy", "127.0.0.1,localhost");
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        if let Some(d) = &self.cwd {
            cmd.current_dir(d);
        }
        cmd.stdin(if self.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let description = self.describe();
        eprintln!("$ {description}");
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {AIRGAP}: {e}"));
        if let Some(bytes) = self.stdin {
            let mut w = child.stdin.take().unwrap();
            std::thread::spawn(move || {
                let _ = w.write_all(&bytes);
            });
        }
        let pipe = |r: Option<Box<dyn Read + Send>>| {
            std::thread::spawn(move || {
                let mut v = Vec::new();
                if let Some(mut r) = r {
                    let _ = r.read_to_end(&mut v);
                }
                v
            })
        };
        let out = pipe(
            child
                .stdout
                .take()
                .map(|r| Box::new(r) as Box<dyn Read + Send>),
        );
        let err = pipe(
            child
                .stderr
                .take()
                .map(|r| Box::new(r) as Box<dyn Read + Send>),
        );
        RunningAirgap {
            child,
            out: Some(out),
            err: Some(err),
            description,
            timeout: self.timeout,
            _home: home,
        }
    }

    /// Runs airgap to completion (killed and failed after the timeout).
    pub fn run(self) -> Output {
        self.spawn().wait()
    }
}

type Reader = std::thread::JoinHandle<Vec<u8>>;

/// A started airgap process.
pub struct RunningAirgap {
    pub child: Child,
    out: Option<Reader>,
    err: Option<Reader>,
    description: String,
    timeout: Duration,
    _home: tempfile::TempDir,
}

impl RunningAirgap {
    pub fn id(&self) -> u32 {
        self.child.id()
    }
    /// Sends SIGKILL.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
    }
    /// Waits for the end (killing it after the timeout, then panicking) and collects output.
    pub fn wait(mut self) -> Output {
        let deadline = Instant::now() + self.timeout;
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                let out = self.out.take().unwrap().join().unwrap_or_default();
                let err = self.err.take().unwrap().join().unwrap_or_default();
                panic!(
                    "`{}` did not finish within {:?}; killed.\n--- stdout ---\n{}\n--- stderr ---\n{}",
                    self.description,
                    self.timeout,
                    String::from_utf8_lossy(&out),
                    String::from_utf8_lossy(&err)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        Output {
            status,
            stdout: self.out.take().unwrap().join().unwrap_or_default(),
            stderr: self.err.take().unwrap().join().unwrap_or_default(),
        }
    }
}

impl Drop for RunningAirgap {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs `airgap ARGS` with `env` added to a clean environment.
pub fn airgap<I, S>(args: I, env: &[(&str, &str)]) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    AirgapCmd::new(args).envs(env).run()
}

/// Runs `airgap ARGS` with `stdin` fed to it (e.g. `--password-stdin`).
pub fn airgap_stdin<I, S>(args: I, env: &[(&str, &str)], stdin: &str) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    AirgapCmd::new(args)
        .envs(env)
        .stdin(stdin.as_bytes().to_vec())
        .run()
}

pub fn stdout_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}
pub fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}
/// stdout and stderr together.
pub fn text_of(out: &Output) -> String {
    format!("{}{}", stdout_of(out), stderr_of(out))
}

fn show(out: &Output) -> String {
    format!(
        "exit status: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        stdout_of(out),
        stderr_of(out)
    )
}

/// Asserts exit status 0, printing both streams otherwise.
#[track_caller]
pub fn assert_success(out: &Output) {
    assert!(out.status.success(), "airgap failed:\n{}", show(out));
}

/// Asserts a non-zero exit status (and no crash by signal or panic).
#[track_caller]
pub fn assert_failure(out: &Output) {
    assert!(
        !out.status.success(),
        "airgap succeeded but should have failed:\n{}",
        show(out)
    );
    assert!(
        out.status.code().is_some(),
        "airgap was killed by a signal:\n{}",
        show(out)
    );
    assert!(
        !stderr_of(out).contains("panicked at"),
        "airgap panicked instead of reporting an error:\n{}",
        show(out)
    );
    assert!(
        !text_of(out).trim().is_empty(),
        "airgap failed without saying why:\n{}",
        show(out)
    );
}

/// Asserts a non-zero exit whose output (stdout + stderr) contains every needle,
/// ignoring case.
#[track_caller]
pub fn assert_failure_contains(out: &Output, needles: &[&str]) {
    assert_failure(out);
    let text = text_of(out).to_lowercase();
    for n in needles {
        assert!(
            text.contains(&n.to_lowercase()),
            "airgap's error does not mention {n:?}:\n{}",
            show(out)
        );
    }
}

/// Asserts that the output contains at least one of `needles` (ignoring case).
#[track_caller]
pub fn assert_output_mentions_any(out: &Output, needles: &[&str]) {
    let text = text_of(out).to_lowercase();
    assert!(
        needles.iter().any(|n| text.contains(&n.to_lowercase())),
        "airgap's output mentions none of {needles:?}:\n{}",
        show(out)
    );
}

// ---------------------------------------------------------------------------------------
// Secrets

const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// The forms a password can leak in: itself and inside a Basic `Authorization` value.
pub fn secret_forms(user: &str, pass: &str) -> Vec<String> {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
    vec![pass.to_string(), b64]
}

/// Finds which secret (index) occurs in the stream, reading it in chunks with an overlap.
fn scan<R: Read>(mut r: R, secrets: &[&[u8]]) -> std::io::Result<Option<usize>> {
    let keep = secrets.iter().map(|s| s.len()).max().unwrap_or(1).max(1) - 1;
    let mut buf: Vec<u8> = Vec::with_capacity(1 << 20);
    let mut chunk = vec![0u8; 1 << 20];
    loop {
        let n = r.read(&mut chunk)?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
        for (i, s) in secrets.iter().enumerate() {
            if buf.windows(s.len()).any(|w| w == *s) {
                return Ok(Some(i));
            }
        }
        let cut = buf.len().saturating_sub(keep);
        buf.drain(..cut);
    }
}

fn scan_file(path: &Path, secrets: &[&[u8]], hits: &mut Vec<String>) {
    let open =
        || std::fs::File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    if let Some(i) = scan(std::io::BufReader::new(open()), secrets).unwrap() {
        hits.push(format!("{} contains secret #{i}", path.display()));
    }
    let mut magic = [0u8; 4];
    let is_zstd = open().read_exact(&mut magic).is_ok() && magic == ZSTD_MAGIC;
    if is_zstd {
        // Like `zstd -dc FILE | grep`: the decompressed bundle (tar headers and every blob).
        // A corrupt bundle made on purpose fails to decode part-way: what could be read
        // was scanned.
        if let Ok(dec) = zstd::stream::read::Decoder::new(open()) {
            if let Ok(Some(i)) = scan(dec, secrets) {
                hits.push(format!(
                    "{} (decompressed) contains secret #{i}",
                    path.display()
                ));
            }
        }
    }
}

fn walk(path: &Path, secrets: &[&[u8]], hits: &mut Vec<String>) {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(_) => return,
    };
    if meta.is_dir() {
        for e in std::fs::read_dir(path).unwrap() {
            walk(&e.unwrap().path(), secrets, hits);
        }
    } else if meta.is_file() {
        scan_file(path, secrets, hits);
    }
}

/// Asserts that no file under `paths` (recursively; zstd files also decompressed) and no
/// captured output contains any of `secrets`.
#[track_caller]
pub fn grep_secrets<P: AsRef<Path>, S: AsRef<str>>(
    paths: &[P],
    outputs: &[&Output],
    secrets: &[S],
) {
    let secrets: Vec<&[u8]> = secrets.iter().map(|s| s.as_ref().as_bytes()).collect();
    for s in &secrets {
        assert!(
            s.len() >= 6,
            "a secret shorter than 6 bytes would match by chance"
        );
    }
    let mut hits = Vec::new();
    for p in paths {
        walk(p.as_ref(), &secrets, &mut hits);
    }
    for (k, out) in outputs.iter().enumerate() {
        if let Some(i) = scan(&out.stdout[..], &secrets).unwrap() {
            hits.push(format!("stdout of output #{k} contains secret #{i}"));
        }
        if let Some(i) = scan(&out.stderr[..], &secrets).unwrap() {
            hits.push(format!("stderr of output #{k} contains secret #{i}"));
        }
    }
    assert!(hits.is_empty(), "secrets leaked:\n{}", hits.join("\n"));
}
