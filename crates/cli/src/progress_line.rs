//! One progress line on stderr: redrawn in place on a terminal, a plain line every few
//! seconds otherwise (logs and pipes stay readable).

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

const TTY_INTERVAL: Duration = Duration::from_millis(100);
const PLAIN_INTERVAL: Duration = Duration::from_secs(5);

pub struct ProgressLine {
    tty: bool,
    last: Option<Instant>,
    drawn: bool,
}

impl ProgressLine {
    pub fn new() -> Self {
        Self {
            tty: std::io::stderr().is_terminal(),
            last: None,
            drawn: false,
        }
    }

    /// Shows `text` unless the previous update was too recent (`force` shows it anyway).
    pub fn update(&mut self, text: &str, force: bool) {
        let interval = if self.tty {
            TTY_INTERVAL
        } else {
            PLAIN_INTERVAL
        };
        let due = self.last.is_none_or(|last| last.elapsed() >= interval);
        if !due && !force {
            return;
        }
        self.last = Some(Instant::now());
        let mut err = std::io::stderr().lock();
        // A closed stderr is no reason to stop the work itself.
        let _ = if self.tty {
            self.drawn = true;
            write!(err, "\r\x1b[2K{text}").and_then(|()| err.flush())
        } else {
            writeln!(err, "{text}")
        };
    }

    /// Ends a redrawn line so the next output starts on a fresh one.
    pub fn finish(&mut self) {
        if self.tty && self.drawn {
            eprintln!();
            self.drawn = false;
        }
    }
}

pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

pub fn human_duration(duration: Duration) -> String {
    let secs = duration.as_secs();
    match secs {
        0..=59 => format!("{secs}s"),
        60..=3599 => format!("{}m{:02}s", secs / 60, secs % 60),
        _ => format!("{}h{:02}m", secs / 3600, (secs % 3600) / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations_read_naturally() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(3 * 1024 * 1024 / 2), "1.5 MiB");
        assert_eq!(human_duration(Duration::from_secs(75)), "1m15s");
        assert_eq!(human_duration(Duration::from_secs(7260)), "2h01m");
    }
}
