//! `--limit-rate`: one token bucket shared by every request of the process (every registry,
//! every connection), as curl's `--limit-rate` and rsync's `--bwlimit`. Bodies are paced
//! chunk by chunk as they pass, in both directions (pack reads, load sends), so nothing more
//! is held than the one chunk already in hand.
//!
//! The bucket may go into debt: a chunk larger than what the bucket holds passes once the
//! debt it leaves is paid off, so chunk sizes do not matter, only bytes over time. Idle time
//! earns at most [`BURST`] of credit, so a pause is not followed by a burst above the rate.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

/// Credit saved up while idle, in seconds of the rate (and at least 16 KiB).
pub const BURST: f64 = 0.05;

/// A shared bytes-per-second budget.
pub struct RateLimit {
    rate: u64,
    burst: f64,
    /// Tokens (bytes; negative: debt) and when they were last counted.
    state: Mutex<(f64, Instant)>,
}

impl std::fmt::Debug for RateLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RateLimit({} B/s)", self.rate)
    }
}

impl RateLimit {
    /// A budget of `bytes_per_sec` (at least 1).
    pub fn new(bytes_per_sec: u64) -> Arc<RateLimit> {
        let rate = bytes_per_sec.max(1);
        let burst = (rate as f64 * BURST).max(16.0 * 1024.0);
        Arc::new(RateLimit {
            rate,
            burst,
            state: Mutex::new((0.0, Instant::now())),
        })
    }

    pub fn bytes_per_sec(&self) -> u64 {
        self.rate
    }

    /// Spends `n` bytes; returns how long the caller must wait before they may pass.
    pub fn charge(&self, n: usize) -> Duration {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let earned = now.duration_since(s.1).as_secs_f64() * self.rate as f64;
        s.0 = (s.0 + earned).min(self.burst) - n as f64;
        s.1 = now;
        if s.0 >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-s.0 / self.rate as f64)
        }
    }

    /// Spends `n` bytes and waits until they may pass.
    pub async fn take(&self, n: usize) {
        let wait = self.charge(n);
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

/// A body whose data frames are paced by a [`RateLimit`]: each frame is charged when it
/// arrives and handed on once its bytes may pass.
pub struct Limited<B> {
    inner: B,
    limit: Arc<RateLimit>,
    held: Option<Frame<Bytes>>,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<B> Limited<B> {
    pub fn new(inner: B, limit: Arc<RateLimit>) -> Self {
        Limited {
            inner,
            limit,
            held: None,
            sleep: None,
        }
    }
}

impl<B> Body for Limited<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.get_mut();
        if let Some(sleep) = &mut this.sleep {
            ready!(sleep.as_mut().poll(cx));
            this.sleep = None;
            return Poll::Ready(this.held.take().map(Ok));
        }
        let frame = match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
            Some(Ok(frame)) => frame,
            other => return Poll::Ready(other),
        };
        let wait = frame
            .data_ref()
            .map_or(Duration::ZERO, |d| this.limit.charge(d.len()));
        if wait.is_zero() {
            return Poll::Ready(Some(Ok(frame)));
        }
        let mut sleep = Box::pin(tokio::time::sleep(wait));
        if sleep.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Ok(frame)));
        }
        this.held = Some(frame);
        this.sleep = Some(sleep);
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.held.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let held = self
            .held
            .as_ref()
            .and_then(|f| f.data_ref())
            .map_or(0, |d| d.len() as u64);
        let inner = self.inner.size_hint();
        let mut hint = SizeHint::new();
        hint.set_lower(inner.lower() + held);
        if let Some(upper) = inner.upper() {
            hint.set_upper(upper + held);
        }
        hint
    }
}

/// `body`, paced by `limit`.
pub(super) fn limit_body(body: reqwest::Body, limit: &Arc<RateLimit>) -> reqwest::Body {
    reqwest::Body::wrap(Limited::new(body, limit.clone()))
}

/// `resp` with its body paced by `limit` (status, headers and extensions kept).
pub(super) fn limit_response(resp: reqwest::Response, limit: &Arc<RateLimit>) -> reqwest::Response {
    let resp: hyper::Response<reqwest::Body> = resp.into();
    reqwest::Response::from(resp.map(|b| limit_body(b, limit)))
}

/// Parses `--limit-rate`: bytes per second, with the units of the other size flags (`500K`,
/// `10M`, `1.5M`, `2MB`; binary unless the unit ends in `B` after a decimal prefix), an
/// optional `/s`. Bits (`100Mbit`) are refused with their value in bytes.
pub fn parse_rate(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let t = t
        .strip_suffix("/s")
        .or_else(|| t.strip_suffix("/S"))
        .unwrap_or(t);
    let lower = t.to_ascii_lowercase();
    if lower.ends_with("bit") || lower.ends_with("bps") {
        return Err(format!(
            "invalid rate {s:?}: RATE is in bytes per second, not bits (100Mbit/s is 12.5MB, about 11.9M)"
        ));
    }
    if lower == "fat32" {
        return Err(format!(
            "invalid rate {s:?}: expected bytes per second, e.g. 10M or 500K"
        ));
    }
    let num: String = t
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    if num.contains(|c: char| c.is_ascii_digit()) && num.chars().all(|c| c == '0' || c == '.') {
        return Err(format!(
            "invalid rate {s:?}: must be at least 1 byte per second"
        ));
    }
    match crate::bundle::volume::parse_size(t) {
        Ok(0) => Err(format!(
            "invalid rate {s:?}: must be at least 1 byte per second"
        )),
        Ok(n) => Ok(n),
        Err(e) => Err(format!(
            "invalid rate {s:?}: {e} (bytes per second, e.g. 10M, 500K, 1.5M, 2MB)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates() {
        assert_eq!(parse_rate("10M"), Ok(10 << 20));
        assert_eq!(parse_rate("500K"), Ok(500 << 10));
        assert_eq!(parse_rate("1.5M"), Ok(3 << 19));
        assert_eq!(parse_rate("2MB/s"), Ok(2_000_000));
        assert_eq!(parse_rate("4096"), Ok(4096));
        for bad in [
            "0", "", "fast", "10Q", "-1M", "100Mbit", "8mbps", "fat32", "0.1K",
        ] {
            let e = parse_rate(bad).unwrap_err();
            assert!(e.contains(&format!("{bad:?}")), "{bad}: {e}");
        }
        assert!(parse_rate("100Mbit")
            .unwrap_err()
            .contains("bytes per second, not bits"));
    }

    #[test]
    fn debt_is_paid_in_time() {
        let l = RateLimit::new(1 << 20);
        // The first 16 KiB-ish burst aside, 1 MiB costs a second.
        let w = l.charge(1 << 20);
        assert!(
            w > Duration::from_millis(900) && w <= Duration::from_secs(1),
            "{w:?}"
        );
        // Another caller waits behind the first one's debt.
        let w2 = l.charge(512 << 10);
        assert!(w2 > Duration::from_millis(1400), "{w2:?}");
    }
}
