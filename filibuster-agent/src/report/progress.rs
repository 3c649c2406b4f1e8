//! The terminal while a run goes on: a progress line (executions done,
//! scheduled, pruned, elapsed) that indicatif hides when stderr is not a
//! terminal, and a line per execution in both cases.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::explore::Progress;

pub struct Terminal {
    bar: ProgressBar,
}

impl Terminal {
    pub fn start() -> Self {
        let bar = ProgressBar::with_draw_target(Some(1), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} executions · {msg}",
            )
            .expect("a valid template"),
        );
        bar.enable_steady_tick(Duration::from_millis(100));
        Self { bar }
    }

    /// `progress` after an execution; the total is what is known so far.
    pub fn update(&self, progress: Progress) {
        self.bar.set_position(progress.executions as u64);
        self.bar
            .set_length((progress.executions + progress.scheduled) as u64);
        self.bar.set_message(format!(
            "{} scheduled, {} pruned",
            progress.scheduled, progress.pruned
        ));
    }

    /// Prints a line above the progress line (or plainly, without one).
    pub fn line(&self, text: &str) {
        self.bar.suspend(|| eprintln!("{text}"));
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}
