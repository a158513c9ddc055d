//! The build's progress on stderr: a live spinner on a terminal, plain lines elsewhere.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use wasmbuild_builder::Reporter;

use crate::cli::{GlobalArgs, Progress};

pub enum Terminal {
    /// `--quiet`: nothing but errors.
    Quiet,
    /// One line per step; toolchain output as it comes.
    Plain,
    /// A spinner naming the current step; toolchain output scrolls above it.
    Live(ProgressBar),
}

impl Terminal {
    pub fn new(global: &GlobalArgs) -> Terminal {
        if global.quiet {
            return Terminal::Quiet;
        }
        let live = match global.progress {
            Progress::Plain => false,
            Progress::Tty => true,
            Progress::Auto => std::io::stderr().is_terminal() && std::env::var_os("CI").is_none(),
        };
        if !live {
            return Terminal::Plain;
        }
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{spinner:.cyan} {prefix:.bold} {wide_msg} {elapsed:>4}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.enable_steady_tick(Duration::from_millis(100));
        Terminal::Live(bar)
    }

    /// A line for the user (not data): above the spinner, or plainly on stderr.
    pub fn say(&self, line: &str) {
        match self {
            Terminal::Quiet => {}
            Terminal::Plain => eprintln!("{line}"),
            Terminal::Live(bar) => bar.suspend(|| eprintln!("{line}")),
        }
    }

    pub fn finish(&self) {
        if let Terminal::Live(bar) = self {
            bar.finish_and_clear();
        }
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        self.finish();
    }
}

impl Reporter for Terminal {
    fn step(&self, name: &str, detail: &str) {
        match self {
            Terminal::Quiet => {}
            Terminal::Plain => eprintln!("=> {name}: {detail}"),
            Terminal::Live(bar) => {
                bar.set_prefix(name.to_owned());
                bar.set_message(detail.to_owned());
            }
        }
    }

    fn output(&self, line: &str) {
        match self {
            Terminal::Quiet => {}
            Terminal::Plain => eprintln!("   {line}"),
            Terminal::Live(bar) => bar.println(format!("   {line}")),
        }
    }

    fn warn(&self, message: &str) {
        // Warnings show even with --quiet: they may explain a surprise later.
        match self {
            Terminal::Live(bar) => bar.suspend(|| eprintln!("warning: {message}")),
            _ => eprintln!("warning: {message}"),
        }
    }
}
