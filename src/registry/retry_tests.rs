use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::{run, Attempt, Outcome};
use crate::registry::{Client, ConnectOptions, Endpoint, RegistryError};

/// No wait between attempts: a zero `Retry-After` replaces the backoff.
const NOW: Option<Duration> = Some(Duration::ZERO);

#[tokio::test]
async fn the_loop_stops_at_the_first_final_outcome_and_counts_attempts() {
    let mut seen = Vec::new();
    let (r, attempts) = run(3, |a| {
        seen.push(a);
        async move {
            if a.number < 3 {
                Outcome::Retry(a.number, NOW)
            } else {
                Outcome::Done(a.number * 10)
            }
        }
    })
    .await;
    assert_eq!((r, attempts), (30, 3));
    assert!(seen.iter().all(|a| !a.last), "{seen:?}");
}

#[tokio::test]
async fn the_loop_returns_the_last_transient_outcome_when_attempts_run_out() {
    let mut seen = Vec::new();
    let (r, attempts) = run(2, |a| {
        seen.push(a);
        async move { Outcome::Retry(a.number, NOW) }
    })
    .await;
    assert_eq!((r, attempts), (3, 3));
    let last: Vec<bool> = seen.iter().map(|a: &Attempt| a.last).collect();
    assert_eq!(last, [false, false, true]);
    // No retries: one attempt, which is the last.
    let (_, attempts) = run(0, |a| async move {
        assert!(a.last);
        Outcome::Retry((), NOW)
    })
    .await;
    assert_eq!(attempts, 1);
}

/// A registry on loopback answering `/v2/` with each status of `script` in turn (the last
/// one from then on), with `Retry-After: 0` so the test does not wait. Returns its host and
/// the number of requests it answered.
async fn scripted(script: &'static [u16]) -> (String, Arc<AtomicU32>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host = listener.local_addr().unwrap().to_string();
    let count = Arc::new(AtomicU32::new(0));
    let served = count.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                return;
            };
            let n = served.fetch_add(1, Ordering::SeqCst) as usize;
            let status = script[n.min(script.len() - 1)];
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                // A TLS hello (record type 0x16) gets the plain answer at once.
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.first() != Some(&0x16) {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(k) => head.extend_from_slice(&buf[..k]),
                    }
                }
                let body = r#"{"errors":[{"code":"UNAVAILABLE","message":"try later"}]}"#;
                let answer = format!(
                    "HTTP/1.1 {status} X\r\nRetry-After: 0\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(answer.as_bytes()).await;
                let _ = conn.shutdown().await;
            });
        }
    });
    (host, count)
}

fn client(host: &str, retries: u32) -> Client {
    let opts = ConnectOptions {
        retries,
        ..ConnectOptions::default()
    };
    Client::new(Endpoint::resolve(host, &BTreeMap::new(), true), None, &opts).unwrap()
}

#[tokio::test]
async fn a_503_then_200_succeeds_on_the_second_attempt() {
    let (host, count) = scripted(&[503, 200]).await;
    client(&host, 3).ping().await.unwrap();
    assert_eq!(count.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn an_error_after_retries_says_how_many_attempts_were_made() {
    let (host, count) = scripted(&[503]).await;
    let e = client(&host, 3).ping().await.unwrap_err();
    assert_eq!(count.load(Ordering::SeqCst), 4);
    assert!(
        matches!(
            e,
            RegistryError::Status {
                status: 503,
                attempts: 4,
                ..
            }
        ),
        "{e:?}"
    );
    let text = e.to_string();
    assert!(text.ends_with("(after 4 attempts)"), "{text}");
    assert!(text.contains("UNAVAILABLE try later"), "{text}");

    // A final answer at the first attempt says nothing about attempts.
    let (host, _) = scripted(&[404]).await;
    let e = client(&host, 3).ping().await.unwrap_err();
    assert!(!e.to_string().contains("attempt"), "{e}");
}

#[tokio::test]
async fn a_server_that_does_not_speak_tls_is_a_tls_failure_and_not_retried() {
    // Answers plain HTTP to the client's TLS hello: rustls refuses the answer.
    let (host, count) = scripted(&[200]).await;
    let c = Client::new(
        Endpoint::resolve(&host, &BTreeMap::new(), false),
        None,
        &ConnectOptions::default(),
    )
    .unwrap();
    let e = c.ping().await.unwrap_err();
    assert!(matches!(e, RegistryError::Tls { .. }), "{e:?}");
    assert!(e.hint().unwrap().contains("--plain-http"));
    assert_eq!(
        count.load(Ordering::SeqCst),
        1,
        "a TLS failure is not retried"
    );
}
