//! A real containerd daemon (Debian's `containerd`, run as root) with its own root, state and
//! socket in a temporary directory and the CRI plugin disabled, driven with `ctr`. One daemon
//! per test binary ([`Containerd::shared`]); tests keep apart by namespace.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::registry::watchdog;

const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// A fetch through a mirror on loopback takes well under a second; this bounds a hang.
const CTR_TIMEOUT: Duration = Duration::from_secs(60);

pub struct Containerd {
    dir: PathBuf,
    socket: PathBuf,
    /// The daemon and its watchdog (kills the daemon if this process dies without dropping
    /// it, which a `static` never does: the pipe closes when the test process exits).
    _children: Mutex<(Child, Option<Child>)>,
}

impl Containerd {
    /// The daemon shared by every test of this binary, started on first use.
    pub fn shared() -> &'static Containerd {
        static D: OnceLock<Containerd> = OnceLock::new();
        D.get_or_init(Containerd::start)
    }

    pub fn start() -> Containerd {
        assert!(
            is_root(),
            "containerd needs root (the tests run as root on the CI machines)"
        );
        let dir = process_dir("containerd");
        let d = dir.as_path();
        let socket = d.join("c.sock");
        let config = d.join("config.toml");
        std::fs::write(
            &config,
            format!(
                "version = 2\nroot = {root:?}\nstate = {state:?}\n\
                 disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
                 [grpc]\n  address = {sock:?}\n\
                 [ttrpc]\n  address = {ttrpc:?}\n\
                 [debug]\n  address = \"\"\n\
                 [metrics]\n  address = \"\"\n\
                 [plugins.\"io.containerd.internal.v1.opt\"]\n  path = {opt:?}\n",
                root = d.join("root").display().to_string(),
                state = d.join("state").display().to_string(),
                sock = socket.display().to_string(),
                ttrpc = d.join("c.sock.ttrpc").display().to_string(),
                opt = d.join("opt").display().to_string(),
            ),
        )
        .unwrap();
        let log = std::fs::File::create(d.join("containerd.log")).unwrap();
        let child = Command::new("containerd")
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("run containerd (Debian package containerd; scripts/install-deps.sh)");
        let wd = watchdog(child.id());
        let c = Containerd {
            dir,
            socket,
            _children: Mutex::new((child, wd)),
        };
        let started = Instant::now();
        loop {
            if c.socket.exists() && c.ctr("default", &["version"]).status.success() {
                return c;
            }
            if started.elapsed() > READY_TIMEOUT {
                panic!(
                    "containerd did not answer within {READY_TIMEOUT:?}:\n{}",
                    c.log()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("containerd.log")).unwrap_or_default()
    }

    /// `ctr --address SOCK --namespace NS ARGS...`, killed after [`CTR_TIMEOUT`].
    pub fn ctr(&self, namespace: &str, args: &[&str]) -> Output {
        let mut child = Command::new("ctr")
            .arg("--address")
            .arg(&self.socket)
            .arg("--namespace")
            .arg(namespace)
            .args(args)
            .env_remove("HTTP_PROXY")
            .env_remove("HTTPS_PROXY")
            .env_remove("http_proxy")
            .env_remove("https_proxy")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run ctr");
        let started = Instant::now();
        while child.try_wait().unwrap().is_none() {
            if started.elapsed() > CTR_TIMEOUT {
                let _ = child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        child.wait_with_output().unwrap()
    }

    /// `ctr content fetch --hosts-dir HOSTS_DIR REFERENCE` (every platform), then the digest
    /// of the image record it created, as `ctr images ls` shows it.
    pub fn fetch_digest(
        &self,
        namespace: &str,
        hosts_dir: &Path,
        reference: &str,
    ) -> Result<String, String> {
        let hosts = hosts_dir.display().to_string();
        let out = self.ctr(
            namespace,
            &["content", "fetch", "--hosts-dir", &hosts, reference],
        );
        if !out.status.success() {
            return Err(format!(
                "ctr content fetch {reference} failed ({}):\n{}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let ls = self.ctr(namespace, &["images", "ls"]);
        let text = String::from_utf8_lossy(&ls.stdout).into_owned();
        text.lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .find(|cols| cols.first() == Some(&reference))
            .and_then(|cols| cols.get(2).map(|d| d.to_string()))
            .ok_or_else(|| format!("ctr images ls does not list {reference}:\n{text}"))
    }
}

/// `CARGO_TARGET_TMPDIR/NAME-PID`, fresh, for state a `static` holds (never dropped): the
/// directories of earlier test processes that are gone are removed first.
pub fn process_dir(name: &str) -> PathBuf {
    let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    if let Ok(entries) = std::fs::read_dir(&base) {
        for e in entries.flatten() {
            let file = e.file_name().to_string_lossy().into_owned();
            let pid = file.strip_prefix(name).and_then(|r| r.strip_prefix('-'));
            if let Some(pid) = pid.filter(|p| p.chars().all(|c| c.is_ascii_digit())) {
                if !Path::new("/proc").join(pid).exists() {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
    }
    let dir = base.join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create a per-process directory");
    dir
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}
