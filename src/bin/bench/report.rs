//! What a run found, and how it is shown: a table for people, JSON lines for scripts, a
//! progress line on stderr while a run takes more than a second.
//!
//! The JSON is written by hand (one object per line, strings escaped as JSON requires):
//! it is a dozen fields, not worth a dependency.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use crate::measure::Percentiles;

/// The memory side of a `conns` run.
#[derive(Debug, Clone)]
pub struct Memory {
    /// Idle connections held while `after_kib` was read.
    pub conns: usize,
    /// Target's resident memory before any connection (KiB), if it could be read.
    pub before_kib: Option<u64>,
    /// Target's resident memory with every connection open (KiB).
    pub after_kib: Option<u64>,
    /// Target's thread count with every connection open.
    pub threads: Option<u64>,
}

impl Memory {
    /// What each idle connection added to the target's resident memory, in KiB.
    pub fn per_conn_kib(&self) -> Option<f64> {
        let (before, after) = (self.before_kib?, self.after_kib?);
        (self.conns > 0).then(|| after.saturating_sub(before) as f64 / self.conns as f64)
    }
}

/// The result of one run of one workload against one target.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// `fanout`, `fanin`, `pairs`, `latency` or `conns`.
    pub workload: &'static str,
    /// The parameters, in words.
    pub setup: String,
    /// `broker`, `relay` or an address.
    pub target: String,
    /// Messages the publishers wrote.
    pub published: u64,
    /// Deliveries that should have arrived (every message times its subscribers).
    pub expected: u64,
    /// Deliveries that did arrive.
    pub delivered: u64,
    /// Deliveries that broke their publisher's order (gaps, duplicates, reorderings).
    pub disorder: u64,
    /// From the start of publishing to the last arrival (for `conns`: the time to open
    /// and subscribe every connection).
    pub seconds: f64,
    /// Deliveries per second, where that means something.
    pub rate: Option<f64>,
    /// Latency from (intended) send time to arrival.
    pub latency: Option<Percentiles>,
    /// For `conns`: the target's memory.
    pub memory: Option<Memory>,
    /// Whether the run hit `--timeout`.
    pub timed_out: bool,
    /// Anything the reader should know about this run.
    pub notes: Vec<String>,
    /// Loss is what the run measures (UDP), not a failure: the run is clean if it ended
    /// in time.
    pub lossy: bool,
}

impl Outcome {
    /// Deliveries that never arrived.
    pub fn lost(&self) -> u64 {
        self.expected.saturating_sub(self.delivered)
    }

    /// No loss, no disorder, no timeout (only no timeout, for a lossy run).
    pub fn is_clean(&self) -> bool {
        (self.lossy || (self.lost() == 0 && self.disorder == 0)) && !self.timed_out
    }
}

/// Which way a figure is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Better {
    /// Throughput.
    Higher,
    /// Latency, memory.
    Lower,
}

/// One figure of one workload, medians over several runs on each of two targets.
#[derive(Debug, Clone)]
pub struct Comparison {
    /// The workload's name.
    pub workload: &'static str,
    /// The figure's name, such as `deliveries/s`.
    pub figure: &'static str,
    /// Which way is better.
    pub better: Better,
    /// Name and median of the measured target.
    pub a: (String, Option<f64>),
    /// Name and median of the relay.
    pub b: (String, Option<f64>),
    /// How many runs on each side.
    pub runs: usize,
    /// Deliveries lost over all runs, on each side.
    pub lost: (u64, u64),
}

impl Comparison {
    /// The first target's median over the second's.
    pub fn ratio(&self) -> Option<f64> {
        match (self.a.1, self.b.1) {
            (Some(a), Some(b)) if b > 0.0 => Some(a / b),
            _ => None,
        }
    }
}

/// The figures that are compared between targets, read from an outcome.
fn figures(outcome: &Outcome) -> [(&'static str, Better, Option<f64>); 4] {
    let micros = |pick: fn(&Percentiles) -> Duration| {
        outcome
            .latency
            .as_ref()
            .map(|p| pick(p).as_secs_f64() * 1e6)
    };
    [
        ("deliveries/s", Better::Higher, outcome.rate),
        ("p50 µs", Better::Lower, micros(|p| p.p50)),
        ("p99 µs", Better::Lower, micros(|p| p.p99)),
        (
            "KiB/conn",
            Better::Lower,
            outcome.memory.as_ref().and_then(Memory::per_conn_kib),
        ),
    ]
}

/// Compares runs of one workload on two targets, figure by figure, with medians.
pub fn compare(a: &[Outcome], b: &[Outcome]) -> Vec<Comparison> {
    let (Some(first_a), Some(first_b)) = (a.first(), b.first()) else {
        return Vec::new();
    };
    let median_of = |runs: &[Outcome], index: usize| {
        let values: Vec<f64> = runs.iter().filter_map(|o| figures(o)[index].2).collect();
        median(values)
    };
    let lost = |runs: &[Outcome]| runs.iter().map(Outcome::lost).sum();
    let mut comparisons = Vec::new();
    for (index, (figure, better, _)) in figures(first_a).into_iter().enumerate() {
        let (median_a, median_b) = (median_of(a, index), median_of(b, index));
        if median_a.is_none() && median_b.is_none() {
            continue;
        }
        // Latencies of unpaced runs are mostly queueing behind the publisher, so only
        // the paced workload and the conns probes compare them.
        if figure.starts_with('p') && !matches!(first_a.workload, "latency" | "conns") {
            continue;
        }
        comparisons.push(Comparison {
            workload: first_a.workload,
            figure,
            better,
            a: (first_a.target.clone(), median_a),
            b: (first_b.target.clone(), median_b),
            runs: a.len().min(b.len()),
            lost: (lost(a), lost(b)),
        });
    }
    comparisons
}

fn median(mut values: Vec<f64>) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    Some(if values.len() % 2 == 1 {
        values[middle]
    } else {
        (values[middle - 1] + values[middle]) / 2.0
    })
}

/// Prints results as they come, as a table or as JSON lines.
#[derive(Debug)]
pub struct Printer {
    json: bool,
    header_printed: bool,
}

impl Printer {
    /// A printer for tables, or for JSON lines with `json`.
    pub fn new(json: bool) -> Printer {
        Printer {
            json,
            header_printed: false,
        }
    }

    /// One line about the machine, so figures are read with the load in mind.
    pub fn machine(&self) {
        let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
        let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        let load: Vec<&str> = load.split_whitespace().take(3).collect();
        if self.json {
            println!(
                "{{\"kind\":\"machine\",\"cpus\":{cpus},\"load_average\":{}}}",
                json_string(&load.join(" "))
            );
        } else {
            println!(
                "# {cpus} CPUs, load average {} (1, 5, 15 min)",
                load.join(" ")
            );
        }
    }

    /// Prints one run.
    pub fn outcome(&mut self, outcome: &Outcome) {
        if self.json {
            println!("{}", outcome_json(outcome));
        } else {
            if !self.header_printed {
                println!(
                    "{:<8} {:<34} {:<8} {:>12} {:>10} {:>6} {:>8} {:>8} {:>8} {:>8} {:>9}",
                    "workload",
                    "setup",
                    "target",
                    "deliveries/s",
                    "arrived",
                    "lost",
                    "disorder",
                    "p50",
                    "p99",
                    "max",
                    "KiB/conn"
                );
                self.header_printed = true;
            }
            let latency = |pick: fn(&Percentiles) -> Duration| {
                outcome
                    .latency
                    .as_ref()
                    .map_or_else(|| "-".to_string(), |p| format_latency(pick(p)))
            };
            println!(
                "{:<8} {:<34} {:<8} {:>12} {:>10} {:>6} {:>8} {:>8} {:>8} {:>8} {:>9}",
                outcome.workload,
                outcome.setup,
                outcome.target,
                outcome.rate.map_or_else(|| "-".to_string(), format_count),
                outcome.delivered,
                outcome.lost(),
                outcome.disorder,
                latency(|p| p.p50),
                latency(|p| p.p99),
                latency(|p| p.max),
                outcome
                    .memory
                    .as_ref()
                    .and_then(Memory::per_conn_kib)
                    .map_or_else(|| "n/a".to_string(), |kib| format!("{kib:.1}")),
            );
            for note in memory_notes(outcome).iter().chain(&outcome.notes) {
                println!("         {note}");
            }
        }
        let _ = std::io::stdout().flush();
    }

    /// Prints the comparison of two targets.
    pub fn comparisons(&mut self, comparisons: &[Comparison]) {
        if self.json {
            for comparison in comparisons {
                println!("{}", comparison_json(comparison));
            }
            return;
        }
        let Some(first) = comparisons.first() else {
            return;
        };
        println!();
        println!(
            "medians of {} runs each, alternating {} and {}:",
            first.runs, first.a.0, first.b.0
        );
        println!(
            "{:<8} {:<13} {:>12} {:>12} {:>9} {:>7} {:>11}",
            "workload", "figure", first.a.0, first.b.0, "ratio", "better", "lost (all)"
        );
        for c in comparisons {
            let show = |value: Option<f64>| match (value, c.figure) {
                (None, _) => "-".to_string(),
                (Some(v), "deliveries/s") => format_count(v),
                (Some(v), "KiB/conn") => format!("{v:.1}"),
                (Some(v), _) => format!("{v:.0}"),
            };
            println!(
                "{:<8} {:<13} {:>12} {:>12} {:>9} {:>7} {:>11}",
                c.workload,
                c.figure,
                show(c.a.1),
                show(c.b.1),
                c.ratio()
                    .map_or_else(|| "-".to_string(), |r| format!("{r:.2}")),
                match c.better {
                    Better::Higher => "higher",
                    Better::Lower => "lower",
                },
                format!("{}/{}", c.lost.0, c.lost.1),
            );
        }
    }
}

/// How far apart two identical builds' medians can be on a shared two-core machine: a
/// ratio within this of 1.0 says nothing.
pub const NOISE: f64 = 0.10;

/// `bench guard`'s last lines: for each throughput ratio, whether it is past [`NOISE`].
/// Read by a person in a CI log, so it says what to do rather than failing the run: a
/// real slowdown shows up as the same warning in the next runs too, noise does not.
pub fn guard_verdicts(comparisons: &[Comparison]) {
    println!();
    for c in comparisons.iter().filter(|c| c.figure == "deliveries/s") {
        let Some(ratio) = c.ratio() else {
            println!("guard: {}: no ratio (a side delivered nothing)", c.workload);
            continue;
        };
        let verdict = if ratio < 1.0 - NOISE {
            format!(
                "SLOWER than the base by {:.0}%, more than this machine's noise ({:.0}%): \
                 look at what this change added to every publish (lab 6: callgrind)",
                (1.0 - ratio) * 100.0,
                NOISE * 100.0
            )
        } else if ratio > 1.0 + NOISE {
            "faster than the base, past the noise".to_string()
        } else {
            format!("within the noise ({:.0}%)", NOISE * 100.0)
        };
        println!("guard: {} {ratio:.2}x the base: {verdict}", c.workload);
    }
}

fn memory_notes(outcome: &Outcome) -> Vec<String> {
    let Some(memory) = &outcome.memory else {
        return Vec::new();
    };
    match (memory.before_kib, memory.after_kib) {
        (Some(before), Some(after)) => vec![format!(
            "RSS {before} KiB before, {after} KiB with {} connections ({} threads)",
            memory.conns,
            memory
                .threads
                .map_or_else(|| "?".to_string(), |t| t.to_string())
        )],
        _ => vec!["RSS n/a: the target is not a process the bench started".to_string()],
    }
}

/// `2.31M`, `850k`, `412`.
fn format_count(value: f64) -> String {
    if value >= 1e6 {
        format!("{:.2}M", value / 1e6)
    } else if value >= 1e3 {
        format!("{:.0}k", value / 1e3)
    } else {
        format!("{value:.0}")
    }
}

/// `87µs`, `1.52ms`, `2.1s`.
fn format_latency(duration: Duration) -> String {
    let micros = duration.as_secs_f64() * 1e6;
    if micros < 1000.0 {
        format!("{micros:.0}µs")
    } else if micros < 1e6 {
        format!("{:.2}ms", micros / 1000.0)
    } else {
        format!("{:.1}s", micros / 1e6)
    }
}

fn outcome_json(o: &Outcome) -> String {
    let latency = o.latency.as_ref().map_or_else(
        || "null".to_string(),
        |p| {
            let us = |d: Duration| json_number(Some(d.as_secs_f64() * 1e6));
            format!(
                "{{\"p50\":{},\"p90\":{},\"p99\":{},\"max\":{}}}",
                us(p.p50),
                us(p.p90),
                us(p.p99),
                us(p.max)
            )
        },
    );
    let memory = o.memory.as_ref();
    let kib = |v: Option<u64>| v.map_or_else(|| "null".to_string(), |v| v.to_string());
    let notes: Vec<String> = o.notes.iter().map(|n| json_string(n)).collect();
    format!(
        "{{\"kind\":\"run\",\"workload\":{},\"setup\":{},\"target\":{},\"published\":{},\
         \"expected\":{},\"delivered\":{},\"lost\":{},\"disorder\":{},\"seconds\":{},\
         \"deliveries_per_second\":{},\"latency_us\":{latency},\"conns\":{},\
         \"rss_kib_before\":{},\"rss_kib_after\":{},\"rss_kib_per_conn\":{},\"threads\":{},\
         \"timed_out\":{},\"notes\":[{}]}}",
        json_string(o.workload),
        json_string(&o.setup),
        json_string(&o.target),
        o.published,
        o.expected,
        o.delivered,
        o.lost(),
        o.disorder,
        json_number(Some(o.seconds)),
        json_number(o.rate),
        kib(memory.map(|m| m.conns as u64)),
        kib(memory.and_then(|m| m.before_kib)),
        kib(memory.and_then(|m| m.after_kib)),
        json_number(memory.and_then(Memory::per_conn_kib)),
        kib(memory.and_then(|m| m.threads)),
        o.timed_out,
        notes.join(",")
    )
}

fn comparison_json(c: &Comparison) -> String {
    format!(
        "{{\"kind\":\"compare\",\"workload\":{},\"figure\":{},\"better\":{},\"target_a\":{},\
         \"median_a\":{},\"target_b\":{},\"median_b\":{},\"ratio\":{},\"runs\":{},\
         \"lost_a\":{},\"lost_b\":{}}}",
        json_string(c.workload),
        json_string(c.figure),
        json_string(match c.better {
            Better::Higher => "higher",
            Better::Lower => "lower",
        }),
        json_string(&c.a.0),
        json_number(c.a.1),
        json_string(&c.b.0),
        json_number(c.b.1),
        json_number(c.ratio()),
        c.runs,
        c.lost.0,
        c.lost.1
    )
}

/// A JSON number, or `null` for none (JSON has no NaN or infinity either).
fn json_number(value: Option<f64>) -> String {
    match value {
        Some(v) if v.is_finite() => format!("{}", (v * 1000.0).round() / 1000.0),
        _ => "null".to_string(),
    }
}

/// A JSON string literal: quotes, backslashes and control characters escaped.
fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A progress line on stderr, shown only once a run has taken more than a second, and
/// rewritten in place when stderr is a terminal.
#[derive(Debug)]
pub struct Progress {
    label: String,
    start: Instant,
    last_shown: Option<Instant>,
    terminal: bool,
}

/// Runs shorter than this show no progress at all.
const QUIET_FOR: Duration = Duration::from_secs(1);

impl Progress {
    /// Progress of a run that started at `start`.
    pub fn new(label: &str, start: Instant) -> Progress {
        Progress {
            label: label.to_string(),
            start,
            last_shown: None,
            terminal: std::io::stderr().is_terminal(),
        }
    }

    /// Shows `done of total what`, at most once a second (four times on a terminal).
    pub fn update(&mut self, done: u64, total: u64, what: &str) {
        let elapsed = self.start.elapsed();
        let every = if self.terminal {
            Duration::from_millis(250)
        } else {
            QUIET_FOR
        };
        if elapsed < QUIET_FOR || self.last_shown.is_some_and(|at| at.elapsed() < every) {
            return;
        }
        self.last_shown = Some(Instant::now());
        let percent = (done * 100).checked_div(total).unwrap_or(0);
        let text = format!(
            "{}: {} of {} {what} ({percent}%), {:.1}s",
            self.label,
            format_count(done as f64),
            format_count(total as f64),
            elapsed.as_secs_f64()
        );
        if self.terminal {
            eprint!("\r\x1b[K{text}");
        } else {
            eprintln!("{text}");
        }
    }

    /// Clears the progress line, if one is showing.
    pub fn finish(&mut self) {
        if self.terminal && self.last_shown.take().is_some() {
            eprint!("\r\x1b[K");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(
            json_string("a \"b\"\\\n\u{1}"),
            "\"a \\\"b\\\"\\\\\\n\\u0001\""
        );
    }

    #[test]
    fn the_median_of_an_even_count_is_the_mean_of_the_middle_two() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(Vec::new()), None);
    }
}
