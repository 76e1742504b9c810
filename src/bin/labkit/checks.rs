//! A lab's checks: which there are, running them with cargo, and reading the results.
//!
//! The checks of lab NN are the tests in `tests/labNN.rs`. Each test's name says what it
//! checks and its `///` line says it in a sentence; labkit shows both, so the test file is
//! the one place to write them. Running them is `cargo test --test labNN`, in two steps:
//! build first (so a compile error is reported as such, not as failing checks), then run
//! and read libtest's plain-text report.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::labs::Lab;

/// The longest a build may take before labkit gives up on it.
const BUILD_LIMIT: Duration = Duration::from_secs(30 * 60);
/// The longest a lab's checks may run. Every check bounds its own waits well below this;
/// the limit only catches a check that hangs after all.
const RUN_LIMIT: Duration = Duration::from_secs(5 * 60);

/// One check, as declared in the lab's test file.
#[derive(Debug, Clone)]
pub struct Check {
    /// The test function's name.
    pub name: String,
    /// Its doc comment: what it checks, in one sentence.
    pub story: String,
}

/// The checks in `tests/labNN.rs` under `root`, in file order. `None` if there is no file.
pub fn declared(root: &Path, lab: Lab) -> Option<Vec<Check>> {
    let text = std::fs::read_to_string(root.join(lab.test_file())).ok()?;
    Some(parse_declared(&text))
}

/// What `const REGION: &str = "…";` in the lab's test file says: where its failure
/// messages send the student. `None` if there is no such line.
pub fn region_named(root: &Path, lab: Lab) -> Option<String> {
    let text = std::fs::read_to_string(root.join(lab.test_file())).ok()?;
    text.lines().find_map(|line| {
        let rest = line.trim().strip_prefix("const REGION: &str = \"")?;
        Some(rest.strip_suffix("\";")?.to_string())
    })
}

/// Finds each `#[test]` function and the `///` lines above it.
pub fn parse_declared(text: &str) -> Vec<Check> {
    let mut checks = Vec::new();
    let mut doc: Vec<&str> = Vec::new();
    let mut is_test = false;
    for line in text.lines().map(str::trim) {
        if let Some(comment) = line.strip_prefix("///") {
            doc.push(comment.trim());
        } else if line == "#[test]" {
            is_test = true;
        } else if line.starts_with("#[") {
            // Other attributes may sit between the doc comment and the function.
        } else if let Some(name) = function_name(line) {
            if is_test {
                checks.push(Check {
                    name: name.to_string(),
                    story: doc.join(" "),
                });
            }
            doc.clear();
            is_test = false;
        } else {
            doc.clear();
            is_test = false;
        }
    }
    checks
}

fn function_name(line: &str) -> Option<&str> {
    let rest = line
        .strip_prefix("pub fn ")
        .or_else(|| line.strip_prefix("fn "))?;
    let end = rest.find(['(', '<'])?;
    Some(rest[..end].trim())
}

/// What a cargo command printed, and how it ended.
#[derive(Debug)]
pub struct Captured {
    /// Whether it exited with status 0.
    pub success: bool,
    /// Whether labkit stopped it for taking too long.
    pub timed_out: bool,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// One run of a lab's checks in one copy of the project.
#[derive(Debug)]
pub struct LabRun {
    /// The build step; if it failed, nothing ran.
    pub build: Captured,
    /// The run step, if the build succeeded.
    pub run: Option<Captured>,
    /// What libtest reported for each test, in the order it reported them.
    pub results: Vec<(String, bool)>,
    /// The captured output of each failed test.
    pub failures: HashMap<String, String>,
    /// What the test program printed when it aborted while running a check on its own
    /// (see [`rerun_lost`]), for each check that never reported because of that.
    pub aborted: HashMap<String, String>,
}

impl LabRun {
    /// Whether the build succeeded.
    pub fn built(&self) -> bool {
        self.build.success
    }

    /// `Some(true)` if the test passed, `Some(false)` if it failed, `None` if it never
    /// reported (not built, not found, or the test program crashed first).
    pub fn passed(&self, name: &str) -> Option<bool> {
        self.results
            .iter()
            .find(|(test, _)| test == name)
            .map(|(_, passed)| *passed)
    }
}

/// Whether a cargo command's progress (`Compiling clap v4.5.4`) is shown as it happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Printed to standard error, for a student waiting on a first build.
    Shown,
    /// Only captured.
    Hidden,
}

/// How many checks the test program runs at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// As many as the machine has cores, libtest's default: for code that may be right,
    /// whose checks (a flood, a benchmark) need the cores to pass.
    Cores,
    /// Every check at once: for a starter whose regions are all still `todo!()`. Each of
    /// its checks fails at the `todo!()` and then mostly waits, for a line that never
    /// comes, up to its time limit; two at a time on two cores, a lab of six checks would
    /// wait three times over.
    AllAtOnce,
}

/// Builds and runs the checks of `lab` in the project at `dir`. `target_dir`, if given,
/// is used as `CARGO_TARGET_DIR` so several copies of the project share their builds.
pub fn run_lab(
    dir: &Path,
    lab: Lab,
    target_dir: Option<&Path>,
    progress: Progress,
    pace: Pace,
) -> Result<LabRun, String> {
    let target = lab.test_target();
    let build = cargo(
        dir,
        &["test", "--test", &target, "--no-run"],
        target_dir,
        BUILD_LIMIT,
        progress,
    )?;
    if !build.success {
        return Ok(LabRun {
            build,
            run: None,
            results: Vec::new(),
            failures: HashMap::new(),
            aborted: HashMap::new(),
        });
    }
    if progress == Progress::Shown {
        eprintln!("Running the checks …");
    }
    let threads = declared(dir, lab).map_or(1, |checks| checks.len().max(1));
    let threads = threads.to_string();
    let mut args = vec!["test", "--test", &target];
    if pace == Pace::AllAtOnce {
        args.extend(["--", "--test-threads", &threads]);
    }
    let run = cargo(dir, &args, target_dir, RUN_LIMIT, Progress::Hidden)?;
    let (results, failures) = parse_report(&run.stdout);
    let mut lab_run = LabRun {
        build,
        run: Some(run),
        results,
        failures,
        aborted: HashMap::new(),
    };
    rerun_lost(dir, lab, target_dir, &mut lab_run)?;
    Ok(lab_run)
}

/// Whether a test program's report reached its end (`test result: …`). It does not when
/// the program aborted: a panic inside a `Drop` that runs while another panic unwinds
/// ("panic in a destructor during cleanup") ends the whole process at once, with every
/// check still running, and the output libtest had captured for the failed ones, lost.
fn finished(stdout: &str) -> bool {
    stdout.lines().any(|line| line.starts_with("test result: "))
}

/// After a test program aborted, runs each check that lost its result or its output to
/// the abort again, on its own, so that every other check still gets its own verdict and
/// message, and the check that aborts the program is known, with what it printed. A
/// `todo!()` in a function that `Drop` calls does that: the first call panics, and the
/// call from `Drop`, during the unwinding, panics again.
///
/// The lost checks run side by side, each in a test program of its own: a check of an
/// unfinished lab mostly waits (for a line that never comes, up to its time limit), so one
/// after the other they would take that wait once per check, and a starter's first check
/// would take half a minute instead of a few seconds.
fn rerun_lost(
    dir: &Path,
    lab: Lab,
    target_dir: Option<&Path>,
    lab_run: &mut LabRun,
) -> Result<(), String> {
    let Some(run) = &lab_run.run else {
        return Ok(());
    };
    if run.timed_out || finished(&run.stdout) {
        return Ok(());
    }
    let lost: Vec<String> = declared(dir, lab)
        .unwrap_or_default()
        .into_iter()
        .map(|check| check.name)
        .filter(|name| lab_run.passed(name) != Some(true) && !lab_run.failures.contains_key(name))
        .collect();
    let target = lab.test_target();
    let reruns: Vec<Result<Captured, String>> = thread::scope(|scope| {
        let running: Vec<_> = lost
            .iter()
            .map(|name| {
                let target = &target;
                scope.spawn(move || {
                    cargo(
                        dir,
                        &["test", "--test", target, "--", "--exact", name],
                        target_dir,
                        RUN_LIMIT,
                        Progress::Hidden,
                    )
                })
            })
            .collect();
        running
            .into_iter()
            .map(|rerun| {
                rerun
                    .join()
                    .unwrap_or_else(|_| Err("a rerun of a check panicked".to_string()))
            })
            .collect()
    });
    for (name, alone) in lost.into_iter().zip(reruns) {
        let alone = alone?;
        let (results, failures) = parse_report(&alone.stdout);
        lab_run.results.retain(|(test, _)| *test != name);
        match results.into_iter().find(|(test, _)| *test == name) {
            Some(result) if finished(&alone.stdout) => {
                lab_run.results.push(result);
                lab_run.failures.extend(failures);
            }
            _ => {
                lab_run
                    .aborted
                    .insert(name, format!("{}{}", alone.stdout, alone.stderr));
            }
        }
    }
    Ok(())
}

/// Why a test program aborted, in the words Rust printed, if it says.
pub fn abort_reason(output: &str) -> Option<&str> {
    let reasons = [
        "panic in a destructor during cleanup",
        "panic in a function that cannot unwind",
        "thread caused non-unwinding panic. aborting.",
    ];
    reasons.into_iter().find(|reason| output.contains(reason))
}

/// Runs cargo with `args` in `dir`, capturing its output, stopping it after `limit`.
pub fn cargo(
    dir: &Path,
    args: &[&str],
    target_dir: Option<&Path>,
    limit: Duration,
    progress: Progress,
) -> Result<Captured, String> {
    // Under `cargo run`, CARGO names the cargo that started us: use the same one.
    let program = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(&program);
    command
        .args(args)
        .arg("--color=never")
        .current_dir(dir)
        // Short panic messages: a student needs the message, not a backtrace.
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(target_dir) = target_dir {
        command.env("CARGO_TARGET_DIR", target_dir);
    }
    let mut child = command.spawn().map_err(|error| {
        format!(
            "cannot run {}: {error}; is Rust installed (https://rustup.rs)?",
            Path::new(&program).display()
        )
    })?;
    let stdout = drain(child.stdout.take(), Progress::Hidden);
    let stderr = drain(child.stderr.take(), progress);
    let started = Instant::now();
    let (status, timed_out) = loop {
        match child.try_wait() {
            Ok(Some(status)) => break (Some(status), false),
            Ok(None) if started.elapsed() > limit => {
                let _ = child.kill();
                break (child.wait().ok(), true);
            }
            Ok(None) => thread::sleep(Duration::from_millis(50)),
            Err(error) => return Err(format!("lost track of cargo: {error}")),
        }
    };
    Ok(Captured {
        success: status.is_some_and(|status| status.success()) && !timed_out,
        timed_out,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    })
}

/// Reads a child's pipe to the end on a thread of its own, so neither pipe can fill up
/// and stall the child while we wait on the other. With `Progress::Shown`, cargo's
/// `Compiling …` lines are also shown as they come, so a long first build is not silent.
fn drain(
    pipe: Option<impl Read + Send + 'static>,
    progress: Progress,
) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut text = String::new();
        let Some(pipe) = pipe else { return text };
        let mut reader = BufReader::new(pipe);
        let mut line = Vec::new();
        while reader.read_until(b'\n', &mut line).is_ok_and(|n| n > 0) {
            let piece = String::from_utf8_lossy(&line);
            if progress == Progress::Shown && piece.trim_start().starts_with("Compiling ") {
                eprint!("  {}", piece.trim_start());
            }
            text.push_str(&piece);
            line.clear();
        }
        text
    })
}

/// Reads libtest's report: `test NAME ... ok|FAILED` lines, and the `---- NAME stdout ----`
/// sections that hold each failed test's captured output.
pub fn parse_report(stdout: &str) -> (Vec<(String, bool)>, HashMap<String, String>) {
    let mut results = Vec::new();
    let mut failures = HashMap::new();
    let mut section: Option<(String, String)> = None;
    for line in stdout.lines() {
        if let Some(rest) = line.strip_prefix("---- ") {
            if let Some((name, text)) = section.take() {
                failures.insert(name, text);
            }
            if let Some(name) = rest.strip_suffix(" stdout ----") {
                section = Some((name.to_string(), String::new()));
            }
            continue;
        }
        if line == "failures:" || line == "successes:" {
            if let Some((name, text)) = section.take() {
                failures.insert(name, text);
            }
            continue;
        }
        if let Some((_, text)) = section.as_mut() {
            text.push_str(line);
            text.push('\n');
            continue;
        }
        if let Some((name, verdict)) = line
            .strip_prefix("test ")
            .and_then(|l| l.rsplit_once(" ... "))
        {
            match verdict {
                "ok" => results.push((name.to_string(), true)),
                "FAILED" => results.push((name.to_string(), false)),
                _ => {}
            }
        }
    }
    if let Some((name, text)) = section {
        failures.insert(name, text);
    }
    (results, failures)
}

/// One panic found in a failed test's output.
#[derive(Debug, PartialEq, Eq)]
pub struct Panic {
    /// The thread that panicked: the test's own, or one of the broker's (`client-3`).
    pub thread: String,
    /// Where, as `file:line:column`.
    pub location: String,
    /// The message, line by line.
    pub message: Vec<String>,
}

/// Every panic in a failed test's captured output, in order.
pub fn panics(output: &str) -> Vec<Panic> {
    let mut found: Vec<Panic> = Vec::new();
    let mut reading = false;
    for line in output.lines() {
        if let Some(rest) = line.strip_prefix("thread '") {
            if let Some((thread, after)) = rest.split_once("' ") {
                // Recent Rust versions put the thread id after the name: `'client-2' (77)`.
                let after = match after.strip_prefix('(') {
                    Some(id) => id.split_once(") ").map_or(after, |(_, rest)| rest),
                    None => after,
                };
                if let Some(location) = after
                    .strip_prefix("panicked at ")
                    .map(|l| l.trim_end_matches(':'))
                {
                    found.push(Panic {
                        thread: thread.to_string(),
                        location: location.to_string(),
                        message: Vec::new(),
                    });
                    reading = true;
                    continue;
                }
            }
        }
        if line.starts_with("note: ") {
            reading = false;
            continue;
        }
        if reading {
            if let Some(panic) = found.last_mut() {
                panic.message.push(line.to_string());
            }
        }
    }
    for panic in &mut found {
        while panic.message.last().is_some_and(|l| l.trim().is_empty()) {
            panic.message.pop();
        }
    }
    found
}
