//! One connection's history, stored compactly: only the samples in which it moved something.
//! The polls in which it was alive and idle are zeros, filled in when the history is read, so
//! 100,000 idle connections cost no sample each per poll.

use std::{collections::VecDeque, time::Duration};

use crate::model::BandwidthSample;

/// Samples of one connection; `at` is measured from the tracker's start.
#[derive(Clone, Debug, Default)]
pub struct History {
    /// Non-zero samples, oldest first.
    samples: VecDeque<BandwidthSample>,
    /// The first poll the connection was tracked at: zeros are filled from here.
    pub first_at: Duration,
    /// The last poll it was alive at, once it closed or vanished (`None`: alive).
    pub ended_at: Option<Duration>,
}

impl History {
    pub fn new(first_at: Duration) -> History {
        History {
            first_at,
            ..History::default()
        }
    }

    pub fn stored(&self) -> usize {
        self.samples.len()
    }

    pub fn push(&mut self, sample: BandwidthSample) {
        self.samples.push_back(sample);
    }

    /// Removes the oldest stored sample; whether there was one. What it covered is not shown
    /// as zeros either: the history starts after it.
    pub fn pop_oldest(&mut self) -> bool {
        match self.samples.pop_front() {
            Some(sample) => {
                self.first_at = self.first_at.max(sample.at + Duration::from_nanos(1));
                true
            }
            None => false,
        }
    }

    /// Drops stored samples before `oldest` (and zeros before it); how many were stored.
    pub fn forget_before(&mut self, oldest: Duration) -> usize {
        let mut removed = 0;
        while self.samples.front().is_some_and(|s| s.at < oldest) {
            self.samples.pop_front();
            removed += 1;
        }
        self.first_at = self.first_at.max(oldest);
        removed
    }

    /// Whether nothing of it is left to show at or after `oldest`.
    pub fn is_over(&self, oldest: Duration) -> bool {
        self.samples.is_empty() && self.ended_at.is_some_and(|end| end < oldest)
    }

    /// The samples at each of `polls` (oldest first) after `from`, within its life: the stored
    /// ones, zeros between them; at most the last `limit`.
    pub fn expand(
        &self,
        polls: &VecDeque<Duration>,
        from: Duration,
        limit: usize,
    ) -> Vec<BandwidthSample> {
        let start = self.first_at.max(from);
        let end = self.ended_at.unwrap_or(Duration::MAX);
        let mut stored = self.samples.iter().skip_while(|s| s.at <= from).peekable();
        let mut out: Vec<BandwidthSample> = Vec::new();
        for &at in polls
            .iter()
            .filter(|&&at| at >= start && at > from && at <= end)
        {
            while stored.peek().is_some_and(|s| s.at < at) {
                // A sample between polls (not expected): keep it.
                out.push(*stored.next().expect("peeked"));
            }
            match stored.peek() {
                Some(s) if s.at == at => out.push(*stored.next().expect("peeked")),
                _ => out.push(BandwidthSample {
                    at,
                    tx_bytes_per_second: 0,
                    rx_bytes_per_second: 0,
                    packets_per_second: 0,
                }),
            }
        }
        out.extend(stored);
        if out.len() > limit {
            out.drain(..out.len() - limit);
        }
        out
    }
}
