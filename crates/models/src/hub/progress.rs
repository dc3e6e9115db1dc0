//! One aggregated progress view over all parallel transfers.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Asking the hub for each file's size and checksum.
    Resolving,
    /// Transferring and verifying files.
    Downloading,
    /// Every file verified; moving the model into place.
    Installing,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Progress {
    pub phase: Phase,
    /// Bytes on disk so far, including parts kept from an earlier, interrupted download.
    pub bytes_done: u64,
    /// Total bytes of all files (known once resolving is done; 0 before).
    pub bytes_total: u64,
    pub files_done: usize,
    pub files_total: usize,
    /// Transfer speed over the last few seconds.
    pub bytes_per_second: f64,
    /// Time left at the current speed; `None` until there is a speed to go by.
    pub eta: Option<Duration>,
}

const SPEED_WINDOW: Duration = Duration::from_secs(5);

/// Turns byte counters sampled over time into speed and ETA.
pub(crate) struct SpeedMeter {
    samples: VecDeque<(Instant, u64)>,
}

impl SpeedMeter {
    pub(crate) fn new() -> Self {
        Self {
            samples: VecDeque::new(),
        }
    }

    /// `transferred` counts only bytes received in this session (resumed bytes excluded).
    pub(crate) fn sample(&mut self, now: Instant, transferred: u64) -> f64 {
        self.samples.push_back((now, transferred));
        while self
            .samples
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > SPEED_WINDOW)
            && self.samples.len() > 2
        {
            self.samples.pop_front();
        }
        match (self.samples.front(), self.samples.back()) {
            (Some((t0, b0)), Some((t1, b1))) if t1 > t0 => {
                (b1.saturating_sub(*b0)) as f64 / t1.duration_since(*t0).as_secs_f64()
            }
            _ => 0.0,
        }
    }
}

pub(crate) fn eta(remaining: u64, bytes_per_second: f64) -> Option<Duration> {
    (bytes_per_second > 0.0).then(|| Duration::from_secs_f64(remaining as f64 / bytes_per_second))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speed_is_bytes_over_time_in_window() {
        let mut meter = SpeedMeter::new();
        let start = Instant::now();
        assert_eq!(meter.sample(start, 0), 0.0);
        let speed = meter.sample(start + Duration::from_secs(2), 2_000_000);
        assert!((speed - 1_000_000.0).abs() < 1.0, "{speed}");
        assert_eq!(eta(3_000_000, speed).map(|d| d.as_secs()), Some(3));
        assert_eq!(eta(1, 0.0), None);
    }
}
