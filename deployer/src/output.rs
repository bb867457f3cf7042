//! What the user sees: data on stdout (a table or JSON, chosen by `--output`), progress and
//! logs on stderr. Colour only on a terminal and never when `NO_COLOR` is set; the progress
//! spinner only on a terminal.

use std::io::IsTerminal;
use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

/// `--output`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum Format {
    #[default]
    Table,
    Json,
}

/// Progress and log lines on stderr.
#[derive(Debug)]
pub struct Reporter {
    silent: bool,
    color: bool,
    spinner: Mutex<Option<ProgressBar>>,
    interactive: bool,
}

impl Default for Reporter {
    fn default() -> Self {
        Self::new()
    }
}

impl Reporter {
    pub fn new() -> Self {
        let tty = std::io::stderr().is_terminal();
        Reporter {
            silent: false,
            color: tty && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
            spinner: Mutex::new(None),
            interactive: tty,
        }
    }

    /// A reporter that prints nothing (tests).
    pub fn quiet() -> Self {
        Reporter {
            silent: true,
            color: false,
            spinner: Mutex::new(None),
            interactive: false,
        }
    }

    fn paint(&self, code: &str, s: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }

    fn println(&self, line: &str) {
        if self.silent {
            return;
        }
        let guard = self.spinner.lock().ok();
        match guard.as_ref().and_then(|g| g.as_ref()) {
            Some(pb) => pb.println(line),
            None => eprintln!("{line}"),
        }
    }

    pub fn info(&self, msg: &str) {
        self.println(&format!("{} {msg}", self.paint("36", "•")));
    }

    pub fn warn(&self, msg: &str) {
        self.println(&format!("{} {msg}", self.paint("33", "warning:")));
    }

    /// One stack event line.
    pub fn event(&self, epoch_secs: i64, status: &str, logical_id: &str, ty: &str, reason: &str) {
        let time = time::OffsetDateTime::from_unix_timestamp(epoch_secs)
            .ok()
            .and_then(|t| {
                t.format(&time::macros::format_description!(
                    "[hour]:[minute]:[second]"
                ))
                .ok()
            })
            .unwrap_or_default();
        let colored = if status.ends_with("_FAILED") || status.contains("ROLLBACK") {
            self.paint("31", status)
        } else if status.ends_with("_COMPLETE") {
            self.paint("32", status)
        } else {
            status.to_string()
        };
        let reason = if reason.is_empty() {
            String::new()
        } else {
            format!("  {reason}")
        };
        self.println(&format!(
            "  {time}  {colored:<28} {logical_id:<32} {ty}{reason}"
        ));
    }

    /// Updates the spinner line (terminals only).
    pub fn progress(&self, msg: &str) {
        if !self.interactive {
            return;
        }
        if let Ok(mut g) = self.spinner.lock() {
            let pb = g.get_or_insert_with(|| {
                let pb = ProgressBar::new_spinner();
                pb.set_style(
                    ProgressStyle::with_template("{spinner} {elapsed} {msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                pb.enable_steady_tick(std::time::Duration::from_millis(120));
                pb
            });
            pb.set_message(msg.to_string());
        }
    }

    pub fn progress_done(&self) {
        if let Ok(mut g) = self.spinner.lock() {
            if let Some(pb) = g.take() {
                pb.finish_and_clear();
            }
        }
    }
}

/// A plain-text table: a header row and left-aligned columns.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  ", w = widths[i]));
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(headers.to_vec());
    out.push_str(&line(
        widths
            .iter()
            .map(|w| "-".repeat(*w))
            .collect::<Vec<_>>()
            .iter()
            .map(String::as_str)
            .collect(),
    ));
    for r in rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    out
}

/// Prints data in the chosen format: `json` serializes `value`, `table` prints `text`.
pub fn emit<T: Serialize>(format: Format, value: &T, text: impl FnOnce() -> String) {
    match format {
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(value)
                .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
        ),
        Format::Table => print!("{}", text()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns() {
        let t = table(
            &["ACTION", "ID"],
            &[
                vec!["Add".into(), "Bucket".into()],
                vec!["Modify".into(), "X".into()],
            ],
        );
        assert_eq!(t, "ACTION  ID\n------  ------\nAdd     Bucket\nModify  X\n");
    }
}
