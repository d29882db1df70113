//! Progress on stderr while a run fetches and computes: one bar over the run's steps
//! (each model's batch fetch, then each experiment). indicatif draws nothing when stderr is
//! not a terminal, so logs and CI output stay clean; results never depend on it.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// What a run is doing now.
pub enum Step<'a> {
    /// About to read one model's planned samples in one batch.
    Fetching {
        /// The model's label (`A`, `B`, `C1`, …).
        label: &'a str,
        /// Bytes to read.
        bytes: u64,
    },
    /// About to compute one experiment.
    Running {
        /// The experiment's id.
        id: &'a str,
    },
    /// The step announced last has finished.
    Done,
}

/// Receives a run's steps as they happen (a progress bar, or nothing).
pub trait Progress: Sync {
    /// Called at the start and end of each step.
    fn step(&self, step: Step);
}

/// Reports nothing (tests, library callers, `compare`).
pub struct Silent;

impl Progress for Silent {
    fn step(&self, _: Step) {}
}

/// A bar on stderr, hidden when stderr is not a terminal.
pub struct Console {
    bar: ProgressBar,
    /// With `WEIGHT_AUDIT_TIMINGS=1`: each step's wall time on stderr (never in results).
    timings: Option<std::sync::Mutex<(String, std::time::Instant)>>,
}

impl Console {
    /// A bar over `steps` steps (models fetched + experiments run).
    pub fn new(steps: u64) -> Console {
        let bar = ProgressBar::with_draw_target(Some(steps), ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template("{elapsed:>4} [{bar:30}] {pos}/{len} {msg}")
        {
            bar.set_style(style.progress_chars("=> "));
        }
        let timings = std::env::var_os("WEIGHT_AUDIT_TIMINGS")
            .filter(|v| v == "1")
            .map(|_| std::sync::Mutex::new((String::new(), std::time::Instant::now())));
        Console { bar, timings }
    }

    fn time(&self, step: Option<String>) {
        let Some(t) = &self.timings else { return };
        let mut t = t.lock().unwrap_or_else(|e| e.into_inner());
        match step {
            Some(name) => *t = (name, std::time::Instant::now()),
            None => {
                let line = format!("{:>8.2} s  {}", t.1.elapsed().as_secs_f64(), t.0);
                if self.bar.is_hidden() {
                    eprintln!("{line}");
                } else {
                    self.bar.println(line);
                }
            }
        }
    }

    /// Removes the bar.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl Progress for Console {
    fn step(&self, step: Step) {
        match step {
            Step::Fetching { label, bytes } => {
                let msg = format!("fetching {label}: {}", crate::source::human_bytes(bytes));
                self.time(Some(msg.clone()));
                self.bar.set_message(msg);
            }
            Step::Running { id } => {
                self.time(Some(format!("running {id}")));
                self.bar.set_message(format!("running {id}"));
            }
            Step::Done => {
                self.time(None);
                self.bar.inc(1);
            }
        }
    }
}
