//! Proving the kit: every check must fail on its lab's starter and pass on the reference,
//! and every known wrong answer must fail at least one check.
//!
//! A check that passes on the starter cannot tell a finished lab from an unstarted one,
//! so it checks nothing; a check that fails on the reference is wrong or flaky. But the
//! starter is `todo!()`, which any check that reaches it fails; so each region also has
//! mutants (see [`mutants`](mod@crate::mutants)), plausible mistakes that a student could hand in, and
//! the proof requires each one to be caught, reporting which check caught it and what it
//! told the student. For each lab this runs the checks in the project itself, then writes
//! the starter and each mutant in turn into a copy of the project and runs them there.
//! A few labs are proven at once ([`WORKERS`]), each worker with a copy of its own in
//! `<target>/labkit-proof/copy-<n>`.
//!
//! The starters and mutants of one worker share one target folder, so the dependencies are
//! built once (or not at all: they are shared from the project's own build, see
//! [`crate::prebuilt`]), and a mutant, which differs from the copy before it in one
//! function, rebuilds in seconds. They also share one source folder, rewritten for each
//! copy, and that is not just tidiness: cargo names a package's build output after its path *relative to its
//! workspace*, so copies in different folders would produce the same file names in the
//! shared target folder, and cargo could take one copy's library, still fresh by its
//! timestamps, for another's. In one folder, each copy differs from the previous one in
//! the files it rewrites, and those new timestamps make cargo rebuild exactly what changed.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::checks::{self, panics, LabRun, Pace, Progress};
use crate::labs::Lab;
use crate::markers::Region;
use crate::mutants::{self, Mutant};
use crate::starter::{self, Fill};
use crate::{prebuilt, project};

/// The longest line of a failure message the mutant report quotes.
const QUOTE_CHARS: usize = 110;

/// How many labs are proven at once, each in a copy of its own. A check of a wrong answer
/// mostly waits (for a line that never comes, until its timeout), so even on two cores
/// three copies at a time take well under half the time of one.
const WORKERS: usize = 3;

/// What the proof found for one lab.
#[derive(Default)]
struct LabProof<'a> {
    rows: Vec<Row>,
    caught: Vec<Caught<'a>>,
    problems: Vec<String>,
}

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
    let next = AtomicUsize::new(0);
    let proofs: Mutex<Vec<(usize, Result<LabProof, String>)>> = Mutex::new(Vec::new());
    thread::scope(|scope| {
        for worker in 0..WORKERS.min(labs.len()) {
            let copy = ProofCopy::new(root, &proof_dir, worker);
            let (next, proofs) = (&next, &proofs);
            scope.spawn(move || loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                let Some(&lab) = labs.get(index) else { break };
                let proof = prove_lab(root, files, regions, mutants, lab, &copy);
                proofs.lock().push((index, proof));
            });
        }
    });
    let mut proofs = proofs.into_inner();
    proofs.sort_by_key(|(index, _)| *index);
    let mut all = LabProof::default();
    for (_, proof) in proofs {
        let proof = proof?;
        all.rows.extend(proof.rows);
        all.caught.extend(proof.caught);
        all.problems.extend(proof.problems);
    }
    let LabProof {
        rows,
        caught,
        mut problems,
    } = all;
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

/// One worker's copy of the project: a source folder its starters and mutants are written
/// into in turn, and a target folder of its own (see the module docs for why the two go
/// together).
struct ProofCopy {
    source: PathBuf,
    target: PathBuf,
}

impl ProofCopy {
    fn new(root: &Path, proof_dir: &Path, worker: usize) -> ProofCopy {
        let dir = proof_dir.join(format!("copy-{worker}"));
        let copy = ProofCopy {
            source: dir.join("starter"),
            target: dir.join("target"),
        };
        if let Err(problem) = prebuilt::share(root, &project::target_dir(root), &copy.target) {
            eprintln!("note: the proof builds its own dependencies: {problem}");
        }
        copy
    }
}

/// Proves one lab: its checks on the reference, then on the starter and on each mutant,
/// written in turn into `copy`.
fn prove_lab<'a>(
    root: &Path,
    files: &[PathBuf],
    regions: &[Region],
    mutants: &'a [Mutant],
    lab: Lab,
    copy: &ProofCopy,
) -> Result<LabProof<'a>, String> {
    let mut proof = LabProof::default();
    let code = lab.code();
    let Some(declared) = checks::declared(root, lab).filter(|c| !c.is_empty()) else {
        proof
            .problems
            .push(format!("lab {code}: no checks in {}", lab.test_file()));
        return Ok(proof);
    };
    proof.problems.extend(region_mismatch(root, lab, regions));
    eprintln!("lab {code}: running the checks on the reference …");
    let clock = Instant::now();
    let reference = checks::run_lab(root, lab, None, Progress::Hidden, Pace::Cores)?;
    let reference_time = clock.elapsed();
    if !reference.built() {
        proof.problems.push(format!(
            "lab {code}: the reference does not build:\n{}",
            reference.build.stderr
        ));
    }
    starter::write(
        root,
        files,
        &starter::stubs(regions, lab)?,
        &copy.source,
        true,
    )?;
    eprintln!(
        "lab {code}: building the starter in {} …",
        copy.source.display()
    );
    let clock = Instant::now();
    let starter = checks::run_lab(
        &copy.source,
        lab,
        Some(&copy.target),
        Progress::Hidden,
        Pace::AllAtOnce,
    )?;
    let starter_time = clock.elapsed();
    if !starter.built() {
        proof.problems.push(format!(
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
        proof
            .rows
            .push(Row::new(lab, check.name, &reference, &starter));
    }
    let of_lab = mutants::of_lab(mutants, lab);
    if of_lab.is_empty() {
        proof.problems.push(format!(
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
        starter::write(root, files, &[fill], &copy.source, true)?;
        let clock = Instant::now();
        let run = checks::run_lab(
            &copy.source,
            lab,
            Some(&copy.target),
            Progress::Hidden,
            Pace::Cores,
        )?;
        eprintln!(
            "lab {code}: mutant {} ({})",
            mutant.name,
            seconds(clock.elapsed())
        );
        proof.caught.push(Caught::new(mutant, &run));
    }
    Ok(proof)
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
