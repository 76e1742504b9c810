//! What `labkit check` prints: one line per check, and for a failed one what it checks,
//! what went wrong, and where the broker panicked if it did.

use crate::checks::{panics, Check, LabRun};
use crate::labs::Lab;

/// The most lines of one failure message shown; the rest is in `--verbose`.
const MESSAGE_LINES: usize = 8;

/// Prints the verdict of a run and returns whether every check passed.
pub fn print(lab: Lab, declared: &[Check], run: &LabRun) -> bool {
    if !run.built() {
        print_build_failure(lab, run);
        return false;
    }
    let checks = all_checks(declared, run);
    let mut passed = 0;
    for check in &checks {
        match run.passed(&check.name) {
            Some(true) => {
                passed += 1;
                println!("  ✓ {}", check.name);
            }
            outcome => {
                println!("  ✗ {}", check.name);
                print_failure(check, outcome.is_none(), run);
            }
        }
    }
    println!();
    summarise(lab, passed, checks.len(), run)
}

/// The checks in file order, plus any the run reported that the file scan missed.
fn all_checks(declared: &[Check], run: &LabRun) -> Vec<Check> {
    let mut checks = declared.to_vec();
    for (name, _) in &run.results {
        if !checks.iter().any(|check| &check.name == name) {
            checks.push(Check {
                name: name.clone(),
                story: String::new(),
            });
        }
    }
    checks
}

fn print_failure(check: &Check, never_reported: bool, run: &LabRun) {
    if !check.story.is_empty() {
        println!("      checks: {}", check.story);
    }
    if never_reported {
        println!("      did not finish: the test program stopped before this check reported");
        println!("      (run with --verbose to see everything it printed)");
        return;
    }
    let output = run.failures.get(&check.name).map_or("", String::as_str);
    let found = panics(output);
    let (own, broker): (Vec<_>, Vec<_>) = found
        .iter()
        .partition(|panic| panic.thread == check.name || check.name.ends_with(&panic.thread));
    for panic in own {
        let mut lines = panic.message.iter().take(MESSAGE_LINES);
        if let Some(first) = lines.next() {
            println!("      wrong:  {}", plain(first));
        }
        for line in lines {
            println!("              {line}");
        }
        if panic.message.len() > MESSAGE_LINES {
            println!("              … (--verbose shows the rest)");
        }
    }
    let mut seen = Vec::new();
    for panic in broker {
        let first = panic.message.first().map_or("", String::as_str);
        let place = (panic.location.as_str(), first);
        if !seen.contains(&place) {
            println!(
                "      broker thread `{}` panicked at {}: {}",
                panic.thread,
                panic.location,
                plain(first)
            );
            seen.push(place);
        }
    }
}

/// A `todo!()` panics with "not yet implemented: …"; say it the way the starter does.
fn plain(message: &str) -> String {
    match message.strip_prefix("not yet implemented: ") {
        Some(rest) => format!("still todo!(): {rest}"),
        None => message.to_string(),
    }
}

fn print_build_failure(lab: Lab, run: &LabRun) {
    let build = &run.build;
    if build.timed_out {
        println!(
            "✗ Building the checks of lab {} took too long; stopped.",
            lab.code()
        );
        return;
    }
    println!(
        "✗ The project does not compile yet, so no check of lab {} could run.",
        lab.code()
    );
    println!("  Fix these errors first (cargo's own words):");
    println!();
    // Cargo's progress lines say nothing about the errors.
    let progress = [
        "Compiling ",
        "Finished ",
        "Running ",
        "Blocking ",
        "Downloaded ",
        "Updating ",
    ];
    for line in build.stderr.lines() {
        let word = line.trim_start();
        if !progress.iter().any(|p| word.starts_with(p)) {
            println!("  {line}");
        }
    }
}

fn summarise(lab: Lab, passed: usize, total: usize, run: &LabRun) -> bool {
    let again = format!("cargo run --bin labkit -- check {}", lab.code());
    if total == 0 {
        println!(
            "No check of lab {} ran: is {} there?",
            lab.code(),
            lab.test_file()
        );
        return false;
    }
    if passed == total {
        println!("All {total} checks of lab {} pass. Well done!", lab.code());
        return true;
    }
    if run.run.as_ref().is_some_and(|r| r.timed_out) {
        println!("The checks were stopped for taking too long: something waits forever.");
    }
    println!(
        "{passed} of {total} checks of lab {} pass. Fix the first ✗, then run `{again}` again.",
        lab.code()
    );
    println!(
        "Stuck? Read {} again, or run with --verbose to see the full test output.",
        lab.sheet_path()
    );
    false
}
