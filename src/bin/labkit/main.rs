//! `labkit`: the exercise kit. Makes a lab's starter code from the reference, and runs a
//! lab's checks with a friendly verdict.
//!
//! The student's part of each lab is marked in `src/` (see `markers.rs`); the checks of lab
//! NN are the tests in `tests/labNN.rs`.
//!
//! ```text
//! cargo run --bin labkit -- list                          # labs, regions, checks
//! cargo run --bin labkit -- starter 02 --out ../lab02     # the starter of lab 02
//! cargo run --bin labkit -- check 02                      # in a starter: how far am I?
//! cargo run --bin labkit -- prove                         # maintainers: do the checks work?
//! ```
//!
//! labkit reads files and runs cargo; it does not use the broker library at all, so it
//! builds and runs in a starter whatever is missing there.

mod checks;
mod labs;
mod markers;
mod mutants;
mod prebuilt;
mod project;
mod prove;
mod starter;
mod verdict;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::checks::{Pace, Progress};
use crate::labs::{Lab, LABS};
use crate::markers::Region;
use crate::mutants::Mutant;
use crate::starter::Fill;

/// The pubsub-lab exercise kit: starters for students, checks with a verdict.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    #[command(subcommand)]
    command: Action,
}

#[derive(Subcommand, Debug)]
enum Action {
    /// Show every lab with its regions (file and lines) and its checks.
    List,
    /// Write a copy of the project with lab NN's regions replaced by todo!().
    Starter {
        /// The lab: 01 to 12 (`labkit list` shows each with its regions).
        #[arg(value_parser = labs::parse)]
        lab: Lab,
        /// The folder to write the starter into; it must be empty or new.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Write into DIR even if it is not empty (files there are overwritten).
        #[arg(long)]
        force: bool,
    },
    /// Build and run lab NN's checks here, and say which pass.
    Check {
        /// The lab: 01 to 12 (`labkit list` shows each with its regions).
        #[arg(value_parser = labs::parse)]
        lab: Lab,
        /// Also print cargo's full output.
        #[arg(long)]
        verbose: bool,
    },
    /// Maintainers: prove that each check fails on its starter and passes on the reference,
    /// and that the known wrong answers in labsheet/instructor/mutants/ are all caught.
    Prove {
        /// The labs to prove (all if none given).
        #[arg(value_parser = labs::parse)]
        labs: Vec<Lab>,
    },
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(message) => {
            eprintln!("labkit: {message}");
            ExitCode::from(2)
        }
    }
}

/// Runs one command. `Ok(false)` means "ran fine, but checks failed" (exit code 1); an
/// error means the command could not do its job (exit code 2).
fn run(args: Args) -> Result<bool, String> {
    let root = project::find_root()?;
    match args.command {
        Action::List => {
            let (_, regions) = regions(&root)?;
            let mutants = mutants(&root, &regions)?;
            list(&root, &regions, &mutants);
            Ok(true)
        }
        Action::Starter { lab, out, force } => {
            let (files, regions) = regions(&root)?;
            let fills = starter::stubs(&regions, lab)?;
            let count = starter::write(&root, &files, &fills, &out, force)?;
            report_starter(lab, &out, count, &fills);
            share_dependencies(&root, &out);
            Ok(true)
        }
        Action::Check { lab, verbose } => check(&root, lab, verbose),
        Action::Prove { labs } => {
            let labs = if labs.is_empty() { LABS.to_vec() } else { labs };
            let (files, regions) = regions(&root)?;
            let mutants = mutants(&root, &regions)?;
            prove::prove(&root, &files, &regions, &mutants, &labs)
        }
    }
}

/// The project's files and its regions, or every marker mistake with file and line.
fn regions(root: &Path) -> Result<(Vec<PathBuf>, Vec<Region>), String> {
    let files = project::files(root)?;
    match markers::scan(root, &files) {
        Ok(regions) => Ok((files, regions)),
        Err(errors) => {
            let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
            Err(format!(
                "the lab markers in src/ have {} mistake(s):\n{}",
                errors.len(),
                lines.join("\n")
            ))
        }
    }
}

/// The known wrong answers, or every mistake in their files.
fn mutants(root: &Path, regions: &[Region]) -> Result<Vec<Mutant>, String> {
    mutants::load(root, regions).map_err(|problems| {
        format!(
            "the known wrong answers have {} mistake(s):\n{}",
            problems.len(),
            problems.join("\n")
        )
    })
}

fn list(root: &Path, regions: &[Region], mutants: &[Mutant]) {
    for &lab in LABS {
        println!("lab {}  {}", lab.code(), lab.sheet_path());
        let mine: Vec<&Region> = regions.iter().filter(|r| r.lab == lab).collect();
        if mine.is_empty() {
            println!("  region  (none marked yet)");
        }
        for region in mine {
            println!(
                "  region  {}:{}-{}  {}",
                region.file.display(),
                region.begin,
                region.end,
                region.title
            );
        }
        match checks::declared(root, lab) {
            None => println!("  checks  ({} not written yet)", lab.test_file()),
            Some(found) => {
                println!(
                    "  checks  cargo test --test {}  ({} in {})",
                    lab.test_target(),
                    found.len(),
                    lab.test_file()
                );
                for check in found {
                    println!("          {}", check.name);
                }
            }
        }
        for mutant in mutants::of_lab(mutants, lab) {
            println!("  mutant  {}  {}", mutant.name, mutant.mistake);
        }
        println!();
    }
}

fn report_starter(lab: Lab, out: &Path, files: usize, fills: &[Fill]) {
    println!(
        "Wrote the starter of lab {} to {}: {files} files, without {}/.",
        lab.code(),
        out.display(),
        starter::LEFT_OUT
    );
    for fill in fills {
        let region = &fill.region;
        let (begin, end) = fill.lines_in_copy();
        println!(
            "  {}:{}-{}  \"{}\" is now {}",
            region.file.display(),
            begin,
            end,
            region.title,
            starter::stub_line(region)
        );
    }
    println!();
    println!("Next:");
    println!("  cd {}", out.display());
    println!(
        "  read {} and replace each todo!() between the lab markers",
        lab.sheet_path()
    );
    println!(
        "  cargo run --bin labkit -- check {}    # until every check is ✓",
        lab.code()
    );
}

/// Gives a new starter this project's build of the dependencies, so that its first check
/// compiles only the project's own code.
fn share_dependencies(root: &Path, out: &Path) {
    match prebuilt::share(root, &project::target_dir(root), &out.join("target")) {
        Ok(0) => {}
        Ok(shared) => println!(
            "The starter uses this project's build of its dependencies ({shared} outputs, \
             linked, not copied), so its first check compiles only the starter's own code."
        ),
        Err(problem) => println!(
            "note: the starter will build its dependencies itself (a minute or so, once): \
             {problem}"
        ),
    }
}

fn check(root: &Path, lab: Lab, verbose: bool) -> Result<bool, String> {
    let declared = checks::declared(root, lab).ok_or_else(|| {
        format!(
            "{} is missing in {}: are you in the right folder?",
            lab.test_file(),
            root.display()
        )
    })?;
    eprintln!(
        "Building and running the checks of lab {} (cargo test --test {}) …",
        lab.code(),
        lab.test_target()
    );
    if std::env::var_os("CARGO_TARGET_DIR").is_some() {
        // Cargo names build output by the package's path relative to its workspace, so
        // two copies of the project sharing a target folder can pick up each other's build.
        eprintln!(
            "note: CARGO_TARGET_DIR is set; if other copies of the project (other students' \
             work) use the same folder, cargo may run their code. Unset it when grading."
        );
    }
    // A student may have moved a marker by mistake: the checks run all the same.
    let untouched = regions(root).is_ok_and(|(_, regions)| starter::untouched(root, &regions, lab));
    let pace = if untouched {
        Pace::AllAtOnce
    } else {
        Pace::Cores
    };
    let run = checks::run_lab(root, lab, None, Progress::Shown, pace)?;
    if verbose {
        print!("{}", run.build.stderr);
        if let Some(output) = &run.run {
            print!("{}", without_backtraces(&output.stdout, lab));
            print!("{}", without_backtraces(&output.stderr, lab));
        }
        println!();
    }
    println!("Lab {}: {}", lab.code(), lab.sheet_path());
    let region = checks::region_named(root, lab);
    Ok(verdict::print(lab, &declared, &run, region.as_deref()))
}

/// `text` with the frames of each `stack backtrace:` left out. Rust prints one however
/// `RUST_BACKTRACE` is set when a panic comes while another unwinds (a `todo!()` that
/// `Drop` calls), a hundred lines of the standard library's insides that say nothing about
/// the student's code.
fn without_backtraces(text: &str, lab: Lab) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_backtrace = false;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim_start();
        if in_backtrace {
            let frame = trimmed.starts_with("at ")
                || trimmed.split_once(": ").is_some_and(|(number, _)| {
                    !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit())
                });
            if frame {
                continue;
            }
            in_backtrace = false;
        }
        if trimmed.starts_with("stack backtrace:") {
            in_backtrace = true;
            out.push_str(&format!(
                "stack backtrace: (left out; `cargo test --test {}` shows it)\n",
                lab.test_target()
            ));
            continue;
        }
        out.push_str(line);
    }
    out
}
