//! WAN shaping for the harness proxy, in user space (this machine's kernel has no `netem`):
//! a one-way delay per direction and a bandwidth cap per direction shared by every connection
//! through one proxy (a WAN link is shared).
//!
//! Each direction of a connection is a reader and a writer thread joined by a bounded queue.
//! The reader takes a chunk, waits for the link to have "transmitted" it (a virtual clock per
//! direction: `next = max(now, next) + bytes / rate`), then queues it stamped with its arrival
//! time (`transmitted + delay`); the writer hands it on at that time. So the delay is latency,
//! not throughput: bytes keep flowing while earlier ones are in flight, and a request costs a
//! round trip however small it is. A new connection pays one round trip (the TCP handshake)
//! before its first byte goes up. The queue holds at most [`WINDOW`] bytes per direction and
//! connection (a TCP window: 4 MiB at 50 ms allows 80 MB/s per connection).

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::sync_channel;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Bytes in flight at most per direction of one connection.
pub const WINDOW: usize = 4 << 20;
const CHUNK: usize = 64 * 1024;

/// Delay and bandwidth of a link, per direction (`up`: client to upstream).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shape {
    pub up_delay: Duration,
    pub down_delay: Duration,
    /// Bytes per second; `None`: unlimited.
    pub up_rate: Option<u64>,
    pub down_rate: Option<u64>,
}

impl Shape {
    /// A symmetric link: `rtt` round trip (half each way), `bits_per_sec` each way.
    pub fn wan(rtt: Duration, bits_per_sec: u64) -> Shape {
        Shape {
            up_delay: rtt / 2,
            down_delay: rtt / 2,
            up_rate: Some(bits_per_sec / 8),
            down_rate: Some(bits_per_sec / 8),
        }
    }
    /// Delay only.
    pub fn latency(rtt: Duration) -> Shape {
        Shape {
            up_delay: rtt / 2,
            down_delay: rtt / 2,
            up_rate: None,
            down_rate: None,
        }
    }
    pub fn rtt(&self) -> Duration {
        self.up_delay + self.down_delay
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    Up,
    Down,
}

/// One direction's virtual transmit clock.
struct Bucket {
    rate: Option<u64>,
    next: Mutex<Instant>,
}

impl Bucket {
    /// Reserves the link for `n` bytes; returns when the last of them has left.
    fn transmit(&self, n: usize) -> Instant {
        let now = Instant::now();
        let Some(rate) = self.rate else { return now };
        let mut next = self.next.lock().unwrap();
        let start = (*next).max(now);
        *next = start + Duration::from_secs_f64(n as f64 / rate as f64);
        *next
    }
}

/// The shared state of one shaped proxy: its shape, both directions' clocks, byte counters.
pub struct Link {
    pub shape: Shape,
    up: Bucket,
    down: Bucket,
    bytes_up: AtomicU64,
    bytes_down: AtomicU64,
}

impl Link {
    pub fn new(shape: Shape) -> Arc<Link> {
        let now = Instant::now();
        Arc::new(Link {
            shape,
            up: Bucket {
                rate: shape.up_rate,
                next: Mutex::new(now),
            },
            down: Bucket {
                rate: shape.down_rate,
                next: Mutex::new(now),
            },
            bytes_up: AtomicU64::new(0),
            bytes_down: AtomicU64::new(0),
        })
    }
    /// Bytes carried so far in direction `dir`.
    pub fn bytes(&self, dir: Dir) -> u64 {
        match dir {
            Dir::Up => self.bytes_up.load(Ordering::SeqCst),
            Dir::Down => self.bytes_down.load(Ordering::SeqCst),
        }
    }
    fn parts(&self, dir: Dir) -> (&Bucket, Duration, &AtomicU64) {
        match dir {
            Dir::Up => (&self.up, self.shape.up_delay, &self.bytes_up),
            Dir::Down => (&self.down, self.shape.down_delay, &self.bytes_down),
        }
    }
}

fn sleep_until(t: Instant) {
    let now = Instant::now();
    if t > now {
        std::thread::sleep(t - now);
    }
}

/// Copies `from` to `to` through direction `dir` of `link` until `from` ends (or `idle`
/// passes without a byte), then shuts `to`'s write side. The first byte is delivered no
/// earlier than `not_before`. Blocks until everything queued was written.
pub fn pipe(
    mut from: TcpStream,
    mut to: TcpStream,
    link: Arc<Link>,
    dir: Dir,
    not_before: Instant,
    idle: Duration,
) {
    let (tx, rx) = sync_channel::<(Instant, Vec<u8>)>(WINDOW / CHUNK);
    let writer = std::thread::spawn(move || {
        while let Ok((at, data)) = rx.recv() {
            sleep_until(at.max(not_before));
            if to.write_all(&data).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
    let _ = from.set_read_timeout(Some(idle));
    let (bucket, delay, counter) = link.parts(dir);
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let sent = bucket.transmit(n);
        sleep_until(sent);
        counter.fetch_add(n as u64, Ordering::SeqCst);
        if tx.send((sent + delay, buf[..n].to_vec())).is_err() {
            break;
        }
    }
    drop(tx);
    let _ = writer.join();
    let _ = from.shutdown(Shutdown::Read);
}

/// Relays one accepted connection to `upstream` through `link`, both ways, until both sides
/// are done.
pub fn relay(client: TcpStream, upstream: TcpStream, link: Arc<Link>, idle: Duration) {
    let accepted = Instant::now();
    // The handshake's round trip, then the first bytes' own way up.
    let first_up = accepted + link.shape.rtt() + link.shape.up_delay;
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let (c2, u2) = match (client.try_clone(), upstream.try_clone()) {
        (Ok(c), Ok(u)) => (c, u),
        _ => return,
    };
    let down = {
        let link = link.clone();
        std::thread::spawn(move || pipe(u2, c2, link, Dir::Down, accepted, idle))
    };
    pipe(client, upstream, link, Dir::Up, first_up, idle);
    let _ = down.join();
}
