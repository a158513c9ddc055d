//! Progress on stderr: a live spinner on a terminal, one line per step with its duration
//! elsewhere (`--progress plain`), or one JSON object per event (`--progress json`).

use std::io::{IsTerminal, Write as _};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use wasmbuild_builder::Reporter;

use crate::cli::{GlobalArgs, Progress};

pub enum Terminal {
    /// `--quiet`: nothing but warnings and errors.
    Quiet,
    /// One line per step, with its duration, written when the step ends; toolchain output
    /// as it comes.
    Plain(Steps),
    /// One JSON object per line for each event, as it happens.
    Json(Instant),
    /// A spinner naming the current step; toolchain output scrolls above it.
    Live(ProgressBar),
}

impl Terminal {
    pub fn new(global: &GlobalArgs) -> Terminal {
        if global.quiet {
            return Terminal::Quiet;
        }
        let mode = resolve(global.progress, std::io::stderr().is_terminal(), |name| {
            let value = std::env::var_os(name);
            match name {
                "GITHUB_ACTIONS" => value.is_some_and(|value| value == "true"),
                _ => value.is_some(),
            }
        });
        match mode {
            Progress::Plain | Progress::Auto => Terminal::Plain(Steps::new()),
            Progress::Json => Terminal::Json(Instant::now()),
            Progress::Tty => {
                let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
                bar.set_style(
                    ProgressStyle::with_template(template(no_color()))
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                bar.enable_steady_tick(Duration::from_millis(100));
                Terminal::Live(bar)
            }
        }
    }

    /// A line for the user (not data): above the spinner, or plainly on stderr. It ends
    /// the step before it.
    pub fn say(&self, line: &str) {
        match self {
            Terminal::Quiet => {}
            Terminal::Plain(steps) => {
                let mut state = steps.lock();
                state.end(Instant::now());
                write_line(line);
            }
            Terminal::Json(began) => event(began, "info", &[("message", line)]),
            Terminal::Live(bar) => bar.suspend(|| write_line(line)),
        }
    }

    /// Ends the current step (clears the spinner); more steps may follow.
    pub fn finish(&self) {
        match self {
            Terminal::Plain(steps) => steps.lock().end(Instant::now()),
            Terminal::Live(bar) => bar.finish_and_clear(),
            Terminal::Quiet | Terminal::Json(_) => {}
        }
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        match self {
            // Left with a step under way: most likely on an error, which follows. Its line
            // says which step it was, but not "done" and not how long it took.
            Terminal::Plain(steps) => steps.lock().abandon(),
            Terminal::Json(began) => event(began, "done", &[]),
            Terminal::Live(bar) => bar.finish_and_clear(),
            Terminal::Quiet => {}
        }
    }
}

impl Reporter for Terminal {
    fn step(&self, name: &str, detail: &str) {
        match self {
            Terminal::Quiet => {}
            Terminal::Plain(steps) => steps.lock().begin(name, detail, Instant::now()),
            Terminal::Json(began) => event(began, "step", &[("name", name), ("detail", detail)]),
            Terminal::Live(bar) => {
                bar.set_prefix(name.to_owned());
                bar.set_message(detail.to_owned());
            }
        }
    }

    fn output(&self, line: &str) {
        match self {
            Terminal::Quiet => {}
            Terminal::Plain(steps) => {
                let mut state = steps.lock();
                state.show();
                write_line(&format!("   {line}"));
            }
            Terminal::Json(began) => event(began, "output", &[("line", line)]),
            Terminal::Live(bar) => bar.println(format!("   {line}")),
        }
    }

    fn warn(&self, message: &str) {
        // Warnings show even with --quiet: they may explain a surprise later.
        let line = format!("warning: {message}");
        match self {
            Terminal::Quiet => write_line(&line),
            Terminal::Plain(steps) => {
                let mut state = steps.lock();
                state.show();
                write_line(&line);
            }
            Terminal::Json(began) => event(began, "warning", &[("message", message)]),
            Terminal::Live(bar) => bar.suspend(|| write_line(&line)),
        }
    }
}

/// Which display `--progress` asks for, with `auto` decided: live only on a terminal and
/// outside CI (`CI`, or `GITHUB_ACTIONS=true`), where a spinner's redraws would fill the log.
fn resolve(progress: Progress, stderr_is_terminal: bool, set: impl Fn(&str) -> bool) -> Progress {
    match progress {
        Progress::Auto if stderr_is_terminal && !set("CI") && !set("GITHUB_ACTIONS") => {
            Progress::Tty
        }
        Progress::Auto => Progress::Plain,
        chosen => chosen,
    }
}

/// `NO_COLOR` with any value but an empty one, as no-color.org asks.
fn no_color() -> bool {
    std::env::var_os("NO_COLOR").is_some_and(|value| !value.is_empty())
}

/// The spinner's line, with or without colours.
fn template(no_color: bool) -> &'static str {
    if no_color {
        "{spinner} {prefix} {wide_msg} {elapsed:>4}"
    } else {
        "{spinner:.cyan} {prefix:.bold} {wide_msg} {elapsed:>4}"
    }
}

/// The plain display's memory: the step under way, and when the one before it ended.
pub struct Steps(Mutex<State>);

struct State {
    current: Option<Step>,
    /// When the last step ended (or the display began): where the next one starts, so the
    /// time between steps (a transfer before its first line) is counted.
    mark: Instant,
}

struct Step {
    name: String,
    detail: String,
    started: Instant,
    /// Its line is already on stderr (output or a warning came during the step).
    shown: bool,
}

impl Steps {
    fn new() -> Steps {
        Steps(Mutex::new(State {
            current: None,
            mark: Instant::now(),
        }))
    }

    /// The state, locked while a line is written so that lines from threads do not mix.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl State {
    /// A step begins. The same name again goes on with the same step: the line before is
    /// written as it was, and the last one of the step gets the duration.
    fn begin(&mut self, name: &str, detail: &str, now: Instant) {
        let started = match &self.current {
            Some(step) if step.name == name => {
                self.show();
                self.current.as_ref().map_or(now, |step| step.started)
            }
            Some(_) => {
                self.end(now);
                now
            }
            None => self.mark,
        };
        self.current = Some(Step {
            name: name.to_owned(),
            detail: detail.to_owned(),
            started,
            shown: false,
        });
    }

    /// Writes the current step's line now, without a duration, so that the output or
    /// warning that follows has its context.
    fn show(&mut self) {
        if let Some(step) = &mut self.current
            && !step.shown
        {
            write_line(&format!("=> {}: {}", step.name, step.detail));
            step.shown = true;
        }
    }

    /// The current step did not end as steps do: its line, if not yet written, without a
    /// duration.
    fn abandon(&mut self) {
        self.show();
        self.current = None;
    }

    /// The current step is over: its line with the duration (`done` when the line was
    /// already written).
    fn end(&mut self, now: Instant) {
        if let Some(step) = self.current.take() {
            let took = seconds(now.saturating_duration_since(step.started));
            let detail = if step.shown { "done" } else { &step.detail };
            write_line(&format!("=> {}: {detail} {took}", step.name));
        }
        self.mark = now;
    }
}

/// `1.2s`.
fn seconds(duration: Duration) -> String {
    format!("{:.1}s", duration.as_secs_f64())
}

/// `{"event":"step","name":"compile","detail":"…","elapsed_ms":12}`: `elapsed_ms` counts
/// from the start of the display, so a step lasts until the next event's.
fn event(began: &Instant, kind: &str, fields: &[(&str, &str)]) {
    let mut object = serde_json::Map::new();
    object.insert("event".to_owned(), kind.into());
    for (key, value) in fields {
        object.insert((*key).to_owned(), (*value).into());
    }
    let elapsed = u64::try_from(began.elapsed().as_millis()).unwrap_or(u64::MAX);
    object.insert("elapsed_ms".to_owned(), elapsed.into());
    write_line(&serde_json::Value::Object(object).to_string());
}

/// Progress is not data: a stderr that cannot be written is no reason to stop the work.
fn write_line(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_is_live_only_on_a_terminal_outside_ci() {
        let none = |_: &str| false;
        assert_eq!(resolve(Progress::Auto, true, none), Progress::Tty);
        assert_eq!(resolve(Progress::Auto, false, none), Progress::Plain);
        assert_eq!(
            resolve(Progress::Auto, true, |n| n == "CI"),
            Progress::Plain
        );
        assert_eq!(
            resolve(Progress::Auto, true, |n| n == "GITHUB_ACTIONS"),
            Progress::Plain
        );
        assert_eq!(resolve(Progress::Tty, false, none), Progress::Tty);
        assert_eq!(resolve(Progress::Json, true, none), Progress::Json);
    }

    #[test]
    fn without_colour_the_spinner_has_no_styles() {
        assert!(template(false).contains(".cyan"));
        assert!(!template(true).contains('.'));
        assert!(ProgressStyle::with_template(template(false)).is_ok());
        assert!(ProgressStyle::with_template(template(true)).is_ok());
    }

    #[test]
    fn durations_read_in_tenths_of_a_second() {
        assert_eq!(seconds(Duration::from_millis(1234)), "1.2s");
        assert_eq!(seconds(Duration::ZERO), "0.0s");
    }
}
