//! Progress reporting, kept in one place: the pipeline calls a `Progress`, the CLI picks
//! bars on a terminal, plain lines otherwise, or nothing with `--quiet`.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

pub trait Progress: Send + Sync {
    /// A stage begins ("resolving 12 images").
    fn stage(&self, message: &str);
    /// A byte-counting stage begins with a known total.
    fn start_bytes(&self, label: &str, total: u64);
    fn add_bytes(&self, n: u64);
    /// One item done (an image resolved, a blob pushed): a line in plain mode.
    fn item(&self, message: &str);
    /// Something the user should know about; always shown, even with `--quiet`.
    fn warn(&self, message: &str);
    fn finish_bytes(&self);
}

/// Reports nothing (library callers and tests).
pub struct Silent;

impl Progress for Silent {
    fn stage(&self, _: &str) {}
    fn start_bytes(&self, _: &str, _: u64) {}
    fn add_bytes(&self, _: u64) {}
    fn item(&self, _: &str) {}
    fn warn(&self, _: &str) {}
    fn finish_bytes(&self) {}
}

/// What the CLI uses: a bar with bytes, rate and ETA on a terminal; otherwise plain lines on
/// stderr with a byte count every few seconds.
pub struct Reporter {
    quiet: bool,
    bar: Mutex<Option<ProgressBar>>,
    tty: bool,
    total: AtomicU64,
    done: AtomicU64,
    label: Mutex<String>,
    last_line: Mutex<Instant>,
}

impl Reporter {
    pub fn new(quiet: bool) -> Self {
        Reporter {
            quiet,
            bar: Mutex::new(None),
            tty: std::io::stderr().is_terminal(),
            total: AtomicU64::new(0),
            done: AtomicU64::new(0),
            label: Mutex::new(String::new()),
            last_line: Mutex::new(Instant::now()),
        }
    }

    fn line(&self, msg: &str) {
        let bar = self.bar.lock().expect("bar lock");
        match bar.as_ref() {
            Some(b) => b.println(msg),
            None => {
                let _ = writeln!(std::io::stderr(), "{msg}");
            }
        }
    }
}

impl Progress for Reporter {
    fn stage(&self, message: &str) {
        if !self.quiet {
            self.line(message);
        }
    }
    fn start_bytes(&self, label: &str, total: u64) {
        self.total.store(total, Ordering::Relaxed);
        self.done.store(0, Ordering::Relaxed);
        *self.label.lock().expect("label lock") = label.to_string();
        if self.quiet {
            return;
        }
        if self.tty {
            let b = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            b.set_style(
                // The bar takes the width the numbers leave: a fixed one wrapped onto a second
                // line in terminals narrower than ~80 columns.
                ProgressStyle::with_template(
                    "{msg} [{wide_bar}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            b.set_message(label.to_string());
            b.enable_steady_tick(Duration::from_millis(200));
            *self.bar.lock().expect("bar lock") = Some(b);
        } else {
            self.line(&format!("{label}: {} to transfer", human_bytes(total)));
        }
    }
    fn add_bytes(&self, n: u64) {
        let done = self.done.fetch_add(n, Ordering::Relaxed) + n;
        if self.quiet {
            return;
        }
        if let Some(b) = self.bar.lock().expect("bar lock").as_ref() {
            b.set_position(done);
            return;
        }
        let mut last = self.last_line.lock().expect("time lock");
        if last.elapsed() >= Duration::from_secs(5) {
            *last = Instant::now();
            let total = self.total.load(Ordering::Relaxed);
            let label = self.label.lock().expect("label lock").clone();
            let _ = writeln!(
                std::io::stderr(),
                "{label}: {} of {}",
                human_bytes(done),
                human_bytes(total)
            );
        }
    }
    fn item(&self, message: &str) {
        if self.quiet {
            return;
        }
        // On a terminal the bar shows progress; per-item lines are for logs.
        if !self.tty || self.bar.lock().expect("bar lock").is_none() {
            self.line(message);
        }
    }
    fn warn(&self, message: &str) {
        self.line(&format!("warning: {message}"));
    }
    fn finish_bytes(&self) {
        if let Some(b) = self.bar.lock().expect("bar lock").take() {
            b.finish_and_clear();
        }
    }
}

pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn human() {
        assert_eq!(super::human_bytes(12), "12 B");
        assert_eq!(super::human_bytes(1536), "1.5 KiB");
        assert_eq!(super::human_bytes(3 << 30), "3.0 GiB");
    }
}
