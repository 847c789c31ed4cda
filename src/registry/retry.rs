//! The retry policy, in one place: which failures are transient, how long to wait before
//! the next attempt, and the one loop every retried request goes through.

use std::future::Future;
use std::time::Duration;

use reqwest::{header, Response};

use super::error::RegistryError;

/// Statuses worth another attempt: the server is busy or a proxy hiccuped.
pub(crate) fn is_transient_status(status: u16) -> bool {
    matches!(status, 429 | 500 | 502 | 503 | 504)
}

impl RegistryError {
    /// Worth another attempt: the network or the server hiccuped. A TLS failure is not:
    /// the same certificate comes back every time.
    pub fn is_transient(&self) -> bool {
        match self {
            RegistryError::Connect { .. } => true,
            RegistryError::Status { status, .. } => is_transient_status(*status),
            _ => false,
        }
    }
}

/// The server's `Retry-After` in seconds (capped at a minute), if it sent one.
pub(crate) fn retry_after(resp: &Response) -> Option<Duration> {
    resp.headers()
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.trim().parse::<u64>().ok())
        .map(|s| Duration::from_secs(s.min(60)))
}

/// Exponential backoff with jitter: 200 ms, 400 ms, 800 ms … capped at 10 s, or the
/// server's `Retry-After`. `attempt` is the number of the attempt that just failed (from 1).
pub(crate) fn backoff(attempt: u32, server: Option<Duration>) -> Duration {
    if let Some(d) = server {
        return d;
    }
    let base = 200u64.saturating_mul(1 << attempt.min(6)).min(10_000);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or(0);
    Duration::from_millis(base / 2 + nanos % (base / 2 + 1))
}

/// Which attempt the loop is making.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Attempt {
    /// From 1.
    pub number: u32,
    /// No attempt follows this one, whatever it comes to.
    pub last: bool,
}

/// What one attempt came to.
pub(crate) enum Outcome<R> {
    /// Final: the loop returns it.
    Done(R),
    /// Transient: the loop waits (the backoff, or the server's delay when given) and tries
    /// again, or returns it when that was the last attempt.
    Retry(R, Option<Duration>),
}

/// Runs `attempt` up to `1 + retries` times, until it is [`Outcome::Done`] or the attempts
/// run out. Returns the last outcome's value and how many attempts were made.
pub(crate) async fn run<R, F, Fut>(retries: u32, mut attempt: F) -> (R, u32)
where
    F: FnMut(Attempt) -> Fut,
    Fut: Future<Output = Outcome<R>>,
{
    let max = retries.saturating_add(1);
    let mut number = 1;
    loop {
        let this = Attempt {
            number,
            last: number >= max,
        };
        match attempt(this).await {
            Outcome::Done(r) => return (r, number),
            Outcome::Retry(r, _) if this.last => return (r, number),
            Outcome::Retry(r, server) => {
                drop(r);
                tokio::time::sleep(backoff(number, server)).await;
                number += 1;
            }
        }
    }
}

/// How many attempts a response took, kept in its extensions by `Client::send` so that an
/// error made from the response later can say so.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Attempts(pub u32);

/// The attempts `resp` took (1 when it was not sent through the loop).
pub(crate) fn attempts_of(resp: &Response) -> u32 {
    resp.extensions().get::<Attempts>().map_or(1, |a| a.0)
}

#[cfg(test)]
#[path = "retry_tests.rs"]
mod tests;
