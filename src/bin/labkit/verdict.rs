//! What `labkit check` prints: one line per check, and for a failed one what it checks,
//! what went wrong, and where the broker panicked if it did.

use crate::checks::{abort_reason, panics, Check, LabRun, Panic};
use crate::labs::Lab;

/// The most lines of one failure message shown; the rest is in `--verbose`.
const MESSAGE_LINES: usize = 8;

/// Prints the verdict of a run and returns whether every check passed. `region` is where
/// the lab's checks send the student (`Session::leave_all_topics in src/session.rs`), if
/// its test file says.
pub fn print(lab: Lab, declared: &[Check], run: &LabRun, region: Option<&str>) -> bool {
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
                print_failure(check, outcome.is_none(), run, region);
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

fn print_failure(check: &Check, never_reported: bool, run: &LabRun, region: Option<&str>) {
    if !check.story.is_empty() {
        println!("      checks: {}", check.story);
    }
    if never_reported {
        print_unreported(check, run, region);
        return;
    }
    let output = run.failures.get(&check.name).map_or("", String::as_str);
    let found = panics(output);
    // A `todo!()` reached is the reason, whatever the check then waited for in vain.
    let todo = print_todo(&found, region);
    let (own, broker): (Vec<_>, Vec<_>) = found
        .iter()
        .filter(|panic| !is_todo(panic))
        .partition(|panic| panic.thread == check.name || check.name.ends_with(&panic.thread));
    for panic in own {
        let mut lines = panic.message.iter().take(MESSAGE_LINES);
        if let Some(first) = lines.next() {
            let label = if todo { "then:  " } else { "wrong: " };
            println!("      {label} {first}");
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
                "      broker thread `{}` panicked at {}: {first}",
                panic.thread, panic.location,
            );
            seen.push(place);
        }
    }
}

/// A check with no result: the test program aborted while it ran (it was then run on its
/// own, see `checks::rerun_lost`), or stopped some other way.
fn print_unreported(check: &Check, run: &LabRun, region: Option<&str>) {
    let Some(output) = run.aborted.get(&check.name) else {
        println!("      did not finish: the test program stopped before this check reported");
        println!("      (run with --verbose to see everything it printed)");
        return;
    };
    print_todo(&panics(output), region);
    match abort_reason(output) {
        Some(reason) => {
            println!("      then:   the test program aborted: \"{reason}\"");
            println!("              (code that runs while a panic unwinds, a Drop, panicked");
            println!("              again, and Rust then stops the whole program)");
        }
        None => println!("      the test program stopped before this check reported"),
    }
}

/// Says, once for each, which `todo!()` the run reached; returns whether it reached one.
fn print_todo(found: &[Panic], region: Option<&str>) -> bool {
    let mut seen: Vec<&str> = Vec::new();
    for panic in found.iter().filter(|panic| is_todo(panic)) {
        let first = panic.message.first().map_or("", String::as_str);
        if seen.contains(&first) {
            continue;
        }
        seen.push(first);
        let what = first.strip_prefix(TODO).unwrap_or(first);
        let file = panic.location.split(':').next().unwrap_or_default();
        match region.filter(|region| !file.is_empty() && region.contains(file)) {
            Some(region) => println!("      wrong:  {region} is still todo!() ({what})"),
            None => println!(
                "      wrong:  the code at {} is still todo!() ({what})",
                panic.location
            ),
        }
    }
    !seen.is_empty()
}

/// How `todo!()` starts its panic message.
const TODO: &str = "not yet implemented: ";

fn is_todo(panic: &Panic) -> bool {
    panic
        .message
        .first()
        .is_some_and(|line| line.starts_with(TODO))
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
