//! Proving the kit: every check must fail on its lab's starter and pass on the reference,
//! and every known wrong answer must fail at least one check.
//!
//! A check that passes on the starter cannot tell a finished lab from an unstarted one,
//! so it checks nothing; a check that fails on the reference is wrong or flaky. But the
//! starter is `todo!()`, which any check that reaches it fails; so each region also has
//! mutants (see [`mutants`](mod@crate::mutants)), plausible mistakes that a student could hand in, and
//! the proof requires each one to be caught, reporting which check caught it and what it
//! told the student. For each lab this runs the checks in the project itself, then writes
//! the starter and each mutant in turn into `<target>/labkit-proof/starter` and runs them
//! there.
//!
//! All the copies share one target folder, so the dependencies are built once (or not at
//! all: they are shared from the project's own build, see [`crate::prebuilt`]), and a
//! mutant, which differs from the copy before it in one function, rebuilds in seconds.
//! They also share one source folder, rewritten for each copy, and that is not just
//! tidiness: cargo names a package's build output after its path *relative to its
//! workspace*, so copies in different folders would produce the same file names in the
//! shared target folder, and cargo could take one copy's library, still fresh by its
//! timestamps, for another's. In one folder, each copy differs from the previous one in
//! the files it rewrites, and those new timestamps make cargo rebuild exactly what changed.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::checks::{self, panics, LabRun, Progress};
use crate::labs::Lab;
use crate::markers::Region;
use crate::mutants::{self, Mutant};
use crate::starter::{self, Fill};
use crate::{prebuilt, project};

/// The longest line of a failure message the mutant report quotes.
const QUOTE_CHARS: usize = 110;

/// Runs the proof for `labs` in the project at `root`. Returns whether it holds.
pub fn prove(
    root: &Path,
    files: &[PathBuf],
    regions: &[Region],
    mutants: &[Mutant],
    labs: &[Lab],
) -> Result<bool, String> {
    let started = Instant::now();
    let proof_dir = project::target_dir(root).join("labkit-proof");
    let shared_target = proof_dir.join("target");
    let out = proof_dir.join("starter");
    if let Err(problem) = prebuilt::share(root, &project::target_dir(root), &shared_target) {
        eprintln!("note: the proof builds its own dependencies: {problem}");
    }
    let mut rows: Vec<Row> = Vec::new();
    let mut caught: Vec<Caught> = Vec::new();
    let mut problems: Vec<String> = Vec::new();
    for &lab in labs {
        let code = lab.code();
        let Some(declared) = checks::declared(root, lab).filter(|c| !c.is_empty()) else {
            problems.push(format!("lab {code}: no checks in {}", lab.test_file()));
            continue;
        };
        problems.extend(region_mismatch(root, lab, regions));
        eprintln!("lab {code}: running the checks on the reference …");
        let clock = Instant::now();
        let reference = checks::run_lab(root, lab, None, Progress::Hidden)?;
        let reference_time = clock.elapsed();
        if !reference.built() {
            problems.push(format!(
                "lab {code}: the reference does not build:\n{}",
                reference.build.stderr
            ));
        }
        starter::write(root, files, &starter::stubs(regions, lab)?, &out, true)?;
        eprintln!("lab {code}: building the starter in {} …", out.display());
        let clock = Instant::now();
        let starter = checks::run_lab(&out, lab, Some(&shared_target), Progress::Hidden)?;
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
        let of_lab = mutants::of_lab(mutants, lab);
        if of_lab.is_empty() {
            problems.push(format!(
                "lab {code}: no known wrong answers in {}/{code}-*.rs, so nothing shows that \
                 its checks can tell a wrong answer from a right one",
                mutants::FOLDER
            ));
        }
        for mutant in of_lab {
            let fill = Fill {
                region: mutant.region.clone(),
                body: mutant.body.clone(),
                stub: false,
            };
            starter::write(root, files, &[fill], &out, true)?;
            let clock = Instant::now();
            let run = checks::run_lab(&out, lab, Some(&shared_target), Progress::Hidden)?;
            eprintln!(
                "lab {code}: mutant {} ({})",
                mutant.name,
                seconds(clock.elapsed())
            );
            caught.push(Caught::new(mutant, &run));
        }
    }
    print_table(&rows);
    print_mutants(&caught);
    for case in &caught {
        problems.extend(case.problem());
    }
    let holds = problems.is_empty() && rows.iter().all(|row| row.verdict() == Verdict::Proven);
    for problem in &problems {
        println!("✗ {problem}");
    }
    let elapsed = seconds(started.elapsed());
    if holds {
        println!(
            "The kit holds: all {} checks fail on their starter and pass on the reference, \
             and all {} known wrong answers are caught ({elapsed}).",
            rows.len(),
            caught.len()
        );
    } else {
        let bad = rows
            .iter()
            .filter(|r| r.verdict() != Verdict::Proven)
            .count();
        println!(
            "The kit does NOT hold: {bad} of {} checks are wrong (see the table), {} other \
             problem(s) ({elapsed}).",
            rows.len(),
            problems.len()
        );
    }
    Ok(holds)
}

/// The checks' failure messages name the file to work in (`const REGION`); when a region
/// moves, they must move with it, or they send students to the wrong place.
fn region_mismatch(root: &Path, lab: Lab, regions: &[Region]) -> Option<String> {
    let file = lab.test_file();
    let Some(named) = checks::region_named(root, lab) else {
        return Some(format!(
            "{file} has no `const REGION: &str = \"<function> in <file>\";` for its \
             failure messages to point to"
        ));
    };
    let missing: Vec<String> = regions
        .iter()
        .filter(|region| region.lab == lab)
        .map(|region| region.file.display().to_string())
        .filter(|region_file| !named.contains(region_file.as_str()))
        .collect();
    (!missing.is_empty()).then(|| {
        format!(
            "{file}: REGION says \"{named}\", but the region is in {}",
            missing.join(" and ")
        )
    })
}

/// What the checks made of one mutant.
struct Caught<'a> {
    mutant: &'a Mutant,
    /// Whether the mutant compiled; one that does not proves nothing.
    built: bool,
    /// The checks that failed on it (or never reported), each with the first line of what
    /// it told the student.
    by: Vec<(String, String)>,
    /// Whether a catching check's output contains the mutant's hint, if it has one.
    hinted: bool,
}

impl<'a> Caught<'a> {
    fn new(mutant: &'a Mutant, run: &LabRun) -> Caught<'a> {
        let failed: Vec<&String> = run
            .results
            .iter()
            .filter(|(_, passed)| !passed)
            .map(|(name, _)| name)
            .collect();
        let by = failed
            .iter()
            .map(|name| {
                let output = run.failures.get(*name).map_or("", String::as_str);
                (name.to_string(), first_message(output))
            })
            .collect();
        let hinted = mutant.hint.as_ref().map_or(true, |hint| {
            failed.iter().any(|name| {
                run.failures
                    .get(*name)
                    .is_some_and(|output| output.contains(hint.as_str()))
            })
        });
        Caught {
            mutant,
            built: run.built(),
            by,
            hinted,
        }
    }

    /// Why this mutant breaks the proof, if it does.
    fn problem(&self) -> Option<String> {
        let name = &self.mutant.name;
        if !self.built {
            Some(format!(
                "mutant {name} does not compile; a known wrong answer must build, or it \
                 proves nothing about the checks"
            ))
        } else if self.by.is_empty() {
            Some(format!(
                "mutant {name} is not caught: every check of lab {} passes on it ({})",
                self.mutant.region.lab.code(),
                self.mutant.mistake
            ))
        } else if !self.hinted {
            Some(format!(
                "mutant {name} is caught, but no failure message contains its hint \"{}\"",
                self.mutant.hint.as_deref().unwrap_or_default()
            ))
        } else {
            None
        }
    }
}

/// The first line of the first panic in a failed check's output: what it told the student.
fn first_message(output: &str) -> String {
    let line = panics(output)
        .into_iter()
        .find_map(|panic| panic.message.into_iter().next())
        .unwrap_or_else(|| "(no message)".to_string());
    let line = match line.strip_prefix("assertion `left == right` failed: ") {
        Some(rest) => rest.to_string(),
        None => line,
    };
    if line.chars().count() > QUOTE_CHARS {
        let cut: String = line.chars().take(QUOTE_CHARS).collect();
        format!("{cut}…")
    } else {
        line
    }
}

fn print_mutants(caught: &[Caught]) {
    let mut lab = None;
    for case in caught {
        let mutant = case.mutant;
        if lab != Some(mutant.region.lab) {
            lab = Some(mutant.region.lab);
            println!(
                "lab {}  known wrong answers in {}",
                mutant.region.lab.code(),
                mutants::FOLDER
            );
        }
        let mark = if case.problem().is_none() {
            "✓"
        } else {
            "✗"
        };
        println!("  {mark} {}: {}", mutant.name, mutant.mistake);
        if !case.built {
            println!("      does not compile");
        } else if case.by.is_empty() {
            println!("      NOT CAUGHT: every check passes");
        }
        for (check, message) in &case.by {
            println!("      caught by {check}: {message}");
        }
    }
    if !caught.is_empty() {
        println!();
    }
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
