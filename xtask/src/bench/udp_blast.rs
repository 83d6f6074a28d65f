//! The UDP load: a bounded blast on 127.0.0.1, one thread sending datagrams of one size as
//! fast as `send` goes on a connected socket, one thread receiving them, one datagram per
//! system call each way (the worst case per byte, as iperf3 `-l 64` is for TCP).
//!
//! Not iperf3 `-u`: iperf3 3.12 here sends ~100,000 datagrams/s of 64 B and its server loses
//! half of them. Its own work per datagram (timestamps, `select`) is ~10 µs, so the fraction of
//! a µs flow adds would vanish in it, and its delivered rate is its receiver's, not the path's.
//! On loopback both cgroup_skb programs run on the sender's CPU (the receive softirq runs when
//! `send` leaves its bh-disabled section), so the sender's rate is where flow's cost shows.
//! On a shared machine its wall-clock rate mostly follows what else runs; the sender thread's
//! own CPU time (softirq work done in its context included: this kernel has no
//! `CONFIG_IRQ_TIME_ACCOUNTING`) gives a rate per CPU second that other load barely moves.

use anyhow::{bail, Context, Result};
use std::{
    io::ErrorKind,
    net::UdpSocket,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread,
    time::{Duration, Instant},
};

/// How long the receiver waits for a datagram before it looks whether the sender is done.
const QUIET: Duration = Duration::from_millis(50);
/// Sends between two reads of the clock.
const BATCH: u64 = 256;

/// What one blast moved.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Blast {
    /// Datagrams `send` accepted.
    pub sent: u64,
    /// Datagrams the receiver read (those the socket dropped when full are missing).
    pub received: u64,
    /// `send` calls that failed (ENOBUFS and the like); not counted as sent.
    pub send_errors: u64,
    /// How long the sender sent.
    pub seconds: f64,
    /// CPU time of the sending thread meanwhile.
    pub sender_cpu_s: f64,
}

impl Blast {
    pub fn sent_per_s(&self) -> f64 {
        self.sent as f64 / self.seconds.max(1e-9)
    }

    /// Delivered datagrams per second of sending (what arrived after the sender stopped was
    /// sent while it ran).
    pub fn received_per_s(&self) -> f64 {
        self.received as f64 / self.seconds.max(1e-9)
    }

    /// Datagrams sent per second of the sender's own CPU time.
    pub fn sent_per_cpu_s(&self) -> f64 {
        self.sent as f64 / self.sender_cpu_s.max(1e-9)
    }

    /// Share of the sent datagrams that never reached the reader.
    pub fn loss(&self) -> f64 {
        if self.sent == 0 {
            return 0.0;
        }
        1.0 - self.received.min(self.sent) as f64 / self.sent as f64
    }
}

/// Sends datagrams of `len` payload bytes to a receiver on 127.0.0.1 for `duration`.
pub fn blast(len: usize, duration: Duration) -> Result<Blast> {
    let receiver = UdpSocket::bind("127.0.0.1:0").context("binding the UDP receiver")?;
    receiver.set_read_timeout(Some(QUIET))?;
    let to = receiver.local_addr()?;
    let sender = UdpSocket::bind("127.0.0.1:0").context("binding the UDP sender")?;
    sender.connect(to)?;
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let done = done.clone();
        // Bounded even if the flag were never set.
        let limit = duration + Duration::from_secs(10);
        thread::spawn(move || receive(&receiver, &done, limit))
    };
    let payload = vec![0x5au8; len];
    let (mut sent, mut send_errors) = (0u64, 0u64);
    let started = Instant::now();
    let cpu_started = thread_cpu_s()?;
    let mut first_error = None;
    while started.elapsed() < duration {
        for _ in 0..BATCH {
            match sender.send(&payload) {
                Ok(_) => sent += 1,
                Err(err) => {
                    send_errors += 1;
                    first_error.get_or_insert(err);
                }
            }
        }
    }
    let sender_cpu_s = thread_cpu_s()? - cpu_started;
    let seconds = started.elapsed().as_secs_f64();
    done.store(true, Ordering::Relaxed);
    let received = reader
        .join()
        .map_err(|_| anyhow::anyhow!("the UDP receiver panicked"))??;
    if sent == 0 {
        bail!(
            "no datagram sent: {}",
            first_error.map_or("no error".into(), |e| e.to_string())
        );
    }
    Ok(Blast {
        sent,
        received,
        send_errors,
        seconds,
        sender_cpu_s,
    })
}

/// CPU seconds of the calling thread (`CLOCK_THREAD_CPUTIME_ID`: the scheduler's runtime, not
/// tick samples).
fn thread_cpu_s() -> Result<f64> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write.
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } != 0 {
        bail!(
            "clock_gettime(CLOCK_THREAD_CPUTIME_ID): {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9)
}

/// Reads datagrams until the sender is done and the socket has been quiet for [`QUIET`].
fn receive(socket: &UdpSocket, done: &AtomicBool, limit: Duration) -> Result<u64> {
    let mut buf = vec![0u8; 65_536];
    let mut received = 0u64;
    let started = Instant::now();
    while started.elapsed() < limit {
        match socket.recv(&mut buf) {
            Ok(_) => received += 1,
            Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                if done.load(Ordering::Relaxed) {
                    break;
                }
            }
            Err(err) => return Err(err).context("receiving the UDP blast"),
        }
    }
    Ok(received)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_and_loss() {
        let b = Blast {
            sent: 1000,
            received: 900,
            send_errors: 0,
            seconds: 2.0,
            sender_cpu_s: 0.5,
        };
        assert_eq!((b.sent_per_s(), b.received_per_s()), (500.0, 450.0));
        assert_eq!(b.sent_per_cpu_s(), 2000.0);
        assert!((b.loss() - 0.1).abs() < 1e-12);
        assert_eq!(Blast::default().loss(), 0.0);
    }

    #[test]
    fn a_short_blast_moves_datagrams() {
        let b = blast(64, Duration::from_millis(50)).unwrap();
        assert!(
            b.sent > 0 && b.received > 0 && b.received <= b.sent,
            "{b:?}"
        );
    }
}
