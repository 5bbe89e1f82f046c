//! Progress of long work on stderr, so stdout stays clean JSON.

use std::io::Write;

/// Progress of long work on stderr: a bar on a terminal, a line every few seconds otherwise (logs
/// and CI), so stdout stays clean JSON.
pub(crate) struct Progress {
    what: &'static str,
    unit: &'static str,
    terminal: bool,
    started: std::time::Instant,
    shown_at: Option<std::time::Instant>,
    drew_bar: bool,
}

impl Progress {
    pub(crate) fn new(what: &'static str, unit: &'static str) -> Progress {
        use std::io::IsTerminal;
        Progress {
            what,
            unit,
            terminal: std::io::stderr().is_terminal(),
            started: std::time::Instant::now(),
            shown_at: None,
            drew_bar: false,
        }
    }

    pub(crate) fn update(&mut self, done: usize, total: usize) {
        let every = if self.terminal {
            std::time::Duration::from_millis(100)
        } else {
            std::time::Duration::from_secs(2)
        };
        let due = self
            .shown_at
            .map_or(self.started.elapsed() >= every, |at| at.elapsed() >= every);
        if !due || total == 0 {
            return;
        }
        self.shown_at = Some(std::time::Instant::now());
        let percent = done * 100 / total;
        let mut err = std::io::stderr().lock();
        if self.terminal {
            let filled = percent / 4;
            let bar = format!("{}{}", "#".repeat(filled), " ".repeat(25 - filled.min(25)));
            let _ = write!(
                err,
                "\r{} [{bar}] {done}/{total} {} ({percent}%)",
                self.what, self.unit
            );
            self.drew_bar = true;
        } else {
            let seconds = self.started.elapsed().as_secs_f64();
            let _ = writeln!(
                err,
                "{}: {done}/{total} {} ({percent}%) after {seconds:.1} s",
                self.what, self.unit
            );
        }
    }

    pub(crate) fn finish(&mut self) {
        if self.drew_bar {
            let _ = writeln!(std::io::stderr());
        }
    }
}
