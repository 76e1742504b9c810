//! Proving the kit: every check must fail on its lab's starter and pass on the reference.
//!
//! A check that passes on the starter cannot tell a finished lab from an unstarted one,
//! so it checks nothing; a check that fails on the reference is wrong or flaky. For each
//! lab this writes the starter into `<target>/labkit-proof/starter`, builds and runs the
//! lab's checks there and in the project itself, and prints one row per check.
//!
//! All starters share one target folder, so the dependencies are built once. They also
//! share one source folder, rewritten for each lab, and that is not just tidiness: cargo
//! names a package's build output after its path *relative to its workspace*, so starters
//! in different folders would produce the same file names in the shared target folder,
//! and cargo could take one lab's library, still fresh by its timestamps, for another's.
//! In one folder, each lab's starter differs from the previous one in the files it
//! rewrites, and those new timestamps make cargo rebuild exactly what changed.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::checks::{self, LabRun};
use crate::labs::Lab;
use crate::markers::Region;
use crate::starter;

/// Runs the proof for `labs` in the project at `root`. Returns whether it holds.
pub fn prove(
    root: &Path,
    files: &[PathBuf],
    regions: &[Region],
    labs: &[Lab],
) -> Result<bool, String> {
    let started = Instant::now();
    let proof_dir = proof_dir(root);
    let shared_target = proof_dir.join("target");
    let mut rows: Vec<Row> = Vec::new();
    let mut problems: Vec<String> = Vec::new();
    for &lab in labs {
        let code = lab.code();
        let Some(declared) = checks::declared(root, lab).filter(|c| !c.is_empty()) else {
            problems.push(format!("lab {code}: no checks in {}", lab.test_file()));
            continue;
        };
        eprintln!("lab {code}: running the checks on the reference …");
        let clock = Instant::now();
        let reference = checks::run_lab(root, lab, None)?;
        let reference_time = clock.elapsed();
        if !reference.built() {
            problems.push(format!(
                "lab {code}: the reference does not build:\n{}",
                reference.build.stderr
            ));
        }
        let out = proof_dir.join("starter");
        starter::write(root, files, regions, lab, &out, true)?;
        eprintln!("lab {code}: building the starter in {} …", out.display());
        let clock = Instant::now();
        let starter = checks::run_lab(&out, lab, Some(&shared_target))?;
        let starter_time = clock.elapsed();
        if !starter.built() {
            problems.push(format!(
                "lab {code}: the starter does not build, so students cannot start:\n{}",
                starter.build.stderr
            ));
        }
        eprintln!(
            "lab {code}: reference {}, starter {}",
            seconds(reference_time),
            seconds(starter_time)
        );
        for check in declared {
            rows.push(Row::new(lab, check.name, &reference, &starter));
        }
    }
    print_table(&rows);
    let holds = problems.is_empty() && rows.iter().all(|row| row.verdict() == Verdict::Proven);
    for problem in &problems {
        println!("✗ {problem}");
    }
    let elapsed = seconds(started.elapsed());
    if holds {
        println!(
            "The kit holds: all {} checks fail on their starter and pass on the reference ({elapsed}).",
            rows.len()
        );
    } else {
        let bad = rows
            .iter()
            .filter(|r| r.verdict() != Verdict::Proven)
            .count();
        println!("The kit does NOT hold: {bad} of {} checks are wrong (see the table), {} other problem(s) ({elapsed}).", rows.len(), problems.len());
    }
    Ok(holds)
}

/// `<target>/labkit-proof`, where `<target>` is `CARGO_TARGET_DIR` or the project's
/// `target/`: scratch space that git ignores and `cargo clean` removes.
fn proof_dir(root: &Path) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let target = if target.is_absolute() {
        target
    } else {
        root.join(target)
    };
    target.join("labkit-proof")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// Fails on the starter, passes on the reference: the check works.
    Proven,
    /// Passes on the starter: it cannot tell a finished lab from an unstarted one.
    CannotFail,
    /// Fails (or never reports) on the reference.
    ReferenceFails,
}

struct Row {
    lab: Lab,
    check: String,
    reference: Option<bool>,
    starter: Option<bool>,
}

impl Row {
    fn new(lab: Lab, check: String, reference: &LabRun, starter: &LabRun) -> Row {
        Row {
            lab,
            reference: reference.passed(&check),
            starter: starter.passed(&check),
            check,
        }
    }

    fn verdict(&self) -> Verdict {
        match (self.reference, self.starter) {
            (Some(true), Some(true)) => Verdict::CannotFail,
            (Some(true), _) => Verdict::Proven,
            _ => Verdict::ReferenceFails,
        }
    }
}

fn print_table(rows: &[Row]) {
    let width = rows
        .iter()
        .map(|row| row.check.len())
        .max()
        .unwrap_or(5)
        .max(5);
    println!();
    println!("lab  {:width$}  reference  starter     verdict", "check");
    for row in rows {
        let verdict = match row.verdict() {
            Verdict::Proven => "✓ proven",
            Verdict::CannotFail => "✗ CANNOT FAIL",
            Verdict::ReferenceFails => "✗ REFERENCE FAILS",
        };
        println!(
            "{}   {:width$}  {:9}  {:10}  {verdict}",
            row.lab.code(),
            row.check,
            outcome(row.reference),
            outcome(row.starter),
        );
    }
    println!();
}

fn outcome(passed: Option<bool>) -> &'static str {
    match passed {
        Some(true) => "pass",
        Some(false) => "fail",
        None => "no result",
    }
}

fn seconds(duration: Duration) -> String {
    format!("{:.0}s", duration.as_secs_f64())
}
