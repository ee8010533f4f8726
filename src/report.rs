//! Feedback: a progress bar on a terminal (plain log lines otherwise) and the end-of-run summary.

use std::fmt::Write;
use std::io::IsTerminal;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use crate::summary::{Counters, Summary};

/// Shows live progress on stderr when it is a terminal. Dropping it stops the display.
pub struct Progress {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Progress {
    /// Starts a spinner with the records and bytes read, their rates and the files written, from
    /// `counters` every 200 ms; shows nothing when not `enabled` or stderr is not a terminal.
    pub fn start(counters: Arc<Counters>, enabled: bool) -> Self {
        if !enabled || !std::io::stderr().is_terminal() {
            return Progress {
                stop: None,
                task: None,
            };
        }
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}")
                .expect("valid template"),
        );
        let (stop, mut stopped) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(200));
            let start = std::time::Instant::now();
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = &mut stopped => break,
                }
                let records = counters.records.load(Ordering::Relaxed);
                let bytes = counters.bytes_read.load(Ordering::Relaxed);
                let secs = start.elapsed().as_secs_f64().max(0.001);
                bar.set_message(format!(
                    "{} records, {} read ({:.0} records/s, {}/s), {} files written",
                    records,
                    human_bytes(bytes),
                    records as f64 / secs,
                    human_bytes((bytes as f64 / secs) as u64),
                    counters.files_written.load(Ordering::Relaxed),
                ));
                bar.tick();
            }
            bar.finish_and_clear();
        });
        Progress {
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Stops the display and waits until the bar is cleared.
    pub async fn finish(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

/// A byte count in binary units with one decimal (`1.5 MiB`); below 1 KiB, whole bytes (`512 B`).
pub fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// The summary as text.
pub fn render(s: &Summary) -> String {
    let mut o = String::new();
    let secs = s.elapsed_ms as f64 / 1000.0;
    let from = if s.input_files > 0 {
        format!(" from {} file(s)", s.input_files)
    } else {
        String::new()
    };
    let _ = writeln!(
        o,
        "{}records in: {}{from}, {}",
        if s.dry_run { "[dry run] " } else { "" },
        s.records_in,
        human_bytes(s.bytes_in)
    );
    let _ = writeln!(o, "rows out:   {}", s.rows_total());
    for (t, n) in &s.rows_out {
        let _ = writeln!(o, "  {t}: {n}");
    }
    let _ = writeln!(o, "errors:     {}", s.errors_total());
    for (r, n) in &s.errors {
        let _ = writeln!(o, "  {r}: {n}");
    }
    if !s.filtered.is_empty() {
        let _ = writeln!(o, "filtered:   {}", s.filtered.values().sum::<u64>());
        for (t, n) in &s.filtered {
            let _ = writeln!(o, "  {t}: {n}");
        }
    }
    if !s.type_mismatches.is_empty() {
        let _ = writeln!(o, "values kept in companion columns (type did not fit):");
        for (c, n) in &s.type_mismatches {
            let _ = writeln!(o, "  {c}: {n}");
        }
    }
    if !s.unmapped_rows.is_empty() {
        let _ = writeln!(o, "rows with values in cdc_unmapped:");
        for (t, n) in &s.unmapped_rows {
            let _ = writeln!(o, "  {t}: {n}");
        }
    }
    let _ = writeln!(
        o,
        "files {}: {} ({})",
        if s.dry_run {
            "that would be written"
        } else {
            "written"
        },
        s.files_written,
        human_bytes(s.bytes_written)
    );
    if s.dry_run {
        for obj in &s.objects {
            let _ = writeln!(
                o,
                "  {} ({} rows, {})",
                obj.path,
                obj.rows,
                human_bytes(obj.bytes)
            );
        }
    }
    if !s.flushes.is_empty() {
        let reasons: Vec<String> = s.flushes.iter().map(|(r, n)| format!("{r} {n}")).collect();
        let _ = writeln!(o, "flushes:    {}", reasons.join(", "));
    }
    let _ = writeln!(
        o,
        "elapsed:    {secs:.2} s ({:.0} records/s); peak buffered {}{}",
        s.records_in as f64 / secs.max(0.001),
        human_bytes(s.peak_buffered_bytes),
        s.peak_rss_bytes
            .map_or(String::new(), |r| format!(", peak RSS {}", human_bytes(r)))
    );
    if s.spilled_bytes > 0 {
        let _ = writeln!(
            o,
            "spilled:    {} of buffered rows to local disk (over the memory budget)",
            human_bytes(s.spilled_bytes)
        );
    }
    o
}
