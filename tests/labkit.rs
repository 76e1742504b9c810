//! Tests of `labkit` itself, on small throwaway projects: that `list` shows regions and
//! checks, that every kind of marker mistake is reported with its file and line, and that
//! `starter` cuts out exactly the chosen lab's regions, leaves the instructor folder out,
//! and will not write over a folder by accident. The full proof (`labkit prove`), which
//! builds every starter, is run by CI, not here.

use std::fs;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

/// A lib.rs with a region for lab 01 and one for lab 02, at known lines.
const TWO_REGIONS: &str = "\
pub fn one() -> u32 {
    // lab:begin 01 the first one
    1
    // lab:end 01
}

pub fn two() -> u32 {
    // lab:begin 02 fan-out
    let two = 2;
    two
    // lab:end 02
}
";

/// `list` names each region by file and lines, and each check by its test name.
#[test]
fn list_shows_regions_and_checks() {
    let project = Project::new();
    project.write("src/lib.rs", TWO_REGIONS);
    project.write(
        "tests/lab02.rs",
        "/// Checks one thing.\n#[test]\nfn first_check() {}\n\n#[test]\nfn second_check() {}\n\nfn helper() {}\n",
    );
    let output = project.labkit(&["list"]);
    let stdout = success(&output);
    for expected in [
        "lab 01  labsheet/01-first-contact.md",
        "region  src/lib.rs:2-4  the first one",
        "region  src/lib.rs:8-11  fan-out",
        "cargo test --test lab02  (2 in tests/lab02.rs)",
        "first_check",
        "second_check",
        "tests/lab01.rs not written yet",
        "lab 06",
    ] {
        assert!(
            stdout.contains(expected),
            "`list` should show {expected:?}:\n{stdout}"
        );
    }
    assert!(
        !stdout.contains("helper"),
        "a function without #[test] is not a check:\n{stdout}"
    );
}

/// Each kind of marker mistake is reported with its file and line, all in one run.
#[test]
fn marker_mistakes_are_reported_with_file_and_line() {
    let project = Project::new();
    let cases = [
        ("src/open.rs", "fn a() {\n    // lab:begin 01 never closed\n}\n", "src/open.rs:2:", "never closed"),
        (
            "src/nested.rs",
            "fn a() {\n    // lab:begin 01 outer\n    // lab:begin 02 inner\n    // lab:end 02\n    // lab:end 01\n}\n",
            "src/nested.rs:3:",
            "cannot nest",
        ),
        ("src/stray.rs", "fn a() {\n    // lab:end 03\n}\n", "src/stray.rs:2:", "without a `lab:begin 03`"),
        (
            "src/mismatch.rs",
            "fn a() {\n    // lab:begin 04 four\n    x\n    // lab:end 05\n}\n",
            "src/mismatch.rs:4:",
            "must match",
        ),
        (
            "src/unknown.rs",
            "fn a() {\n    // lab:begin 42 no such lab\n    // lab:end 42\n}\n",
            "src/unknown.rs:2:",
            "unknown lab `42`",
        ),
        (
            "src/twice.rs",
            "fn a() {\n    // lab:begin 06 same\n    // lab:end 06\n}\nfn b() {\n    // lab:begin 06 same\n    // lab:end 06\n}\n",
            "src/twice.rs:6:",
            "duplicate region",
        ),
        ("src/untitled.rs", "fn a() {\n    // lab:begin 05\n    // lab:end 05\n}\n", "src/untitled.rs:2:", "needs a title"),
    ];
    for (file, text, _, _) in &cases {
        project.write(file, text);
    }
    // Documentation may quote markers: these lines are not markers.
    project.write(
        "src/lib.rs",
        "//! Write `// lab:begin NN title`.\n/// // lab:end 01\npub fn f() {}\n",
    );
    for command in [&["list"][..], &["starter", "01", "--out"][..]] {
        let mut args = command.to_vec();
        let out = project.scratch("out");
        let out = out.to_str().expect("a UTF-8 path");
        if command.len() > 1 {
            args.push(out);
        }
        let output = project.labkit(&args);
        assert_eq!(
            output.status.code(),
            Some(2),
            "`labkit {}` must fail",
            args.join(" ")
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        for (_, _, place, words) in &cases {
            let reported = stderr
                .lines()
                .any(|line| line.starts_with(place) && line.contains(words));
            assert!(
                reported,
                "`labkit {}` should report {place} {words:?}:\n{stderr}",
                args.join(" ")
            );
        }
        assert_eq!(
            stderr
                .lines()
                .filter(|line| line.starts_with("src/"))
                .count(),
            cases.len(),
            "exactly one report per mistake, none for doc comments:\n{stderr}"
        );
    }
}

/// The starter replaces the chosen lab's region with todo!(), keeps the markers and the
/// other labs' solutions, and copies everything but the instructor folder.
#[test]
fn starter_cuts_out_only_the_chosen_lab() {
    let project = Project::new();
    project.write("src/lib.rs", TWO_REGIONS);
    project.write("README.md", "read me\n");
    project.write("labsheet/02-inside-the-broker.md", "# Lab 02\n");
    project.write("labsheet/instructor/02-answers.md", "the answers\n");
    project.write("target/debug/junk", "build output\n");
    let out = project.scratch("starter");
    let output = project.labkit(&["starter", "02", "--out", out.to_str().unwrap()]);
    let stdout = success(&output);
    assert!(
        stdout.contains("cargo run --bin labkit -- check 02"),
        "it says what to do next:\n{stdout}"
    );
    let lib = fs::read_to_string(out.join("src/lib.rs")).expect("src/lib.rs in the starter");
    let expected = TWO_REGIONS.replace(
        "    let two = 2;\n    two\n",
        "    todo!(\"lab 02: fan-out - see labsheet/02-inside-the-broker.md\")\n",
    );
    let (quiet, rest) = lib.split_at(lib.find("pub fn one").unwrap_or(0));
    assert_eq!(
        rest, expected,
        "only lab 02's region is replaced, markers kept"
    );
    assert!(
        quiet.lines().count() == 3
            && quiet.contains("#![allow(unused_variables, unused_imports, dead_code)]")
            && quiet.contains("delete these three lines"),
        "a file with a todo!() starts with three lines that keep the compiler quiet about \
         what only the missing code uses, and say to delete them:\n{quiet}"
    );
    assert!(
        stdout.contains("src/lib.rs:11-14  \"fan-out\" is now todo!("),
        "the region's lines are given as they are in the starter:\n{stdout}"
    );
    assert!(out.join("README.md").is_file(), "other files are copied");
    assert!(
        out.join("labsheet/02-inside-the-broker.md").is_file(),
        "labsheets are copied"
    );
    assert!(
        !out.join("labsheet/instructor").exists(),
        "the instructor folder is left out"
    );
    assert!(!out.join("target").exists(), "build output is not copied");
}

/// `prove` requires a known wrong answer to fail a check, and names the check that caught it.
#[test]
fn prove_reports_who_caught_each_wrong_answer_and_fails_on_one_nobody_catches() {
    let project = Project::new();
    project.write(
        "src/lib.rs",
        "pub fn one() -> u32 {\n    // lab:begin 01 the first one\n    1\n    // lab:end 01\n}\n",
    );
    project.write(
        "tests/lab01.rs",
        "const REGION: &str = \"one in src/lib.rs\";\n\n\
         /// one() is one.\n#[test]\nfn one_is_one() {\n    \
         assert_eq!(tiny::one(), 1, \"{REGION} must return 1, not any other number\");\n}\n",
    );
    let mutant = |name: &str, body: &str| {
        project.write(
            &format!("labsheet/instructor/mutants/01-{name}.rs"),
            &format!("// region: the first one\n// mistake: returns {body}\n// hint: not any other\n    {body}\n"),
        );
    };
    mutant("two", "2");
    let output = project.labkit(&["prove", "01"]);
    let stdout = success(&output);
    assert!(
        stdout.contains("✓ 01-two: returns 2")
            && stdout.contains("caught by one_is_one: one in src/lib.rs must return 1"),
        "the report names the wrong answer and the check that caught it:\n{stdout}"
    );
    mutant("right-after-all", "1");
    let output = project.labkit(&["prove", "01"]);
    assert_eq!(
        output.status.code(),
        Some(1),
        "a wrong answer nobody catches fails the proof"
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("mutant 01-right-after-all is not caught"),
        "it says which wrong answer got through:\n{stdout}"
    );
}

/// `check` on a starter names the function that is still `todo!()`, even when the
/// `todo!()` is reached again from a `Drop` while the first panic unwinds, which aborts
/// the whole test program: the check that aborts it is run on its own, and said so.
#[test]
fn check_names_the_todo_even_when_the_test_program_aborts() {
    let project = Project::new();
    project.write(
        "src/lib.rs",
        "pub struct Guard;\n\nimpl Drop for Guard {\n    fn drop(&mut self) {\n        \
         cleanup();\n    }\n}\n\npub fn cleanup() {\n    // lab:begin 04 cleanup\n    \
         // lab:end 04\n}\n",
    );
    project.write(
        "tests/lab04.rs",
        "const REGION: &str = \"cleanup in src/lib.rs\";\n\n\
         /// Cleanup runs, also from Drop.\n#[test]\nfn cleanup_from_drop() {\n    \
         let _guard = tiny::Guard;\n    tiny::cleanup();\n}\n\n\
         /// Cleanup runs.\n#[test]\nfn cleanup_alone() {\n    tiny::cleanup();\n    \
         assert!(!REGION.is_empty());\n}\n",
    );
    let out = project.scratch("starter04");
    success(&project.labkit(&["starter", "04", "--out", out.to_str().unwrap()]));
    let output = Command::new(env!("CARGO_BIN_EXE_labkit"))
        .args(["check", "04"])
        .current_dir(&out)
        .output()
        .expect("run labkit");
    assert_eq!(
        output.status.code(),
        Some(1),
        "the checks fail on a starter"
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        stdout
            .matches("cleanup in src/lib.rs is still todo!()")
            .count(),
        2,
        "each check names the todo!() it reached:\n{stdout}"
    );
    assert!(
        stdout.contains("the test program aborted: \"panic in a destructor during cleanup\""),
        "the check that aborts the program says so:\n{stdout}"
    );
}

/// `check` on a starter whose region is still `todo!()` runs all its checks at once: each
/// of sixteen checks waits until all sixteen have started, then reaches the `todo!()`. Run
/// as many at a time as the machine has cores, they would wait in vain, each for ten
/// seconds, and never reach it.
#[test]
fn check_runs_every_check_of_an_untouched_starter_at_once() {
    const CHECKS: usize = 16;
    let project = Project::new();
    project.write(
        "src/lib.rs",
        "pub fn work() {\n    // lab:begin 03 work\n    // lab:end 03\n}\n",
    );
    let mut checks = String::from(
        "use std::sync::{Condvar, Mutex};\nuse std::time::Duration;\n\n\
         static STARTED: Mutex<usize> = Mutex::new(0);\nstatic ALL: Condvar = Condvar::new();\n\n\
         /// Waits until every check has started, for ten seconds at most.\n\
         fn all_started() {\n    let mut started = STARTED.lock().unwrap();\n    \
         *started += 1;\n    ALL.notify_all();\n    \
         let (started, wait) = ALL\n        .wait_timeout_while(started, Duration::from_secs(10), \
         |n| *n < CHECKS)\n        .unwrap();\n    \
         assert!(!wait.timed_out(), \"only {} checks ran at once\", *started);\n}\n\n",
    );
    checks.push_str(&format!("const CHECKS: usize = {CHECKS};\n\n"));
    for n in 0..CHECKS {
        checks.push_str(&format!(
            "/// Check {n}.\n#[test]\nfn check_{n}() {{\n    all_started();\n    tiny::work();\n}}\n\n"
        ));
    }
    project.write("tests/lab03.rs", &checks);
    let out = project.scratch("starter03");
    success(&project.labkit(&["starter", "03", "--out", out.to_str().unwrap()]));
    let output = Command::new(env!("CARGO_BIN_EXE_labkit"))
        .args(["check", "03"])
        .current_dir(&out)
        .output()
        .expect("run labkit");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        stdout.matches("is still todo!()").count(),
        CHECKS,
        "all {CHECKS} checks ran at once and reached the todo!():\n{stdout}"
    );
}

/// A known wrong answer for a region that does not exist is reported, not ignored.
#[test]
fn a_wrong_answer_for_no_region_is_reported() {
    let project = Project::new();
    project.write("src/lib.rs", TWO_REGIONS);
    project.write(
        "labsheet/instructor/mutants/02-lost.rs",
        "// region: fan out\n// mistake: a typo in the title\n    0\n",
    );
    project.write(
        "labsheet/instructor/mutants/7-bad-name.rs",
        "// region: x\n",
    );
    let output = project.labkit(&["list"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    for expected in [
        "02-lost.rs: lab 02 has no region \"fan out\"; its regions are \"fan-out\"",
        "7-bad-name.rs: name a mutant `NN-<short-name>.rs`",
    ] {
        assert!(stderr.contains(expected), "{expected:?} in:\n{stderr}");
    }
}

/// The starter will not write into a folder that has files, unless told to with --force.
#[test]
fn starter_refuses_a_non_empty_folder_without_force() {
    let project = Project::new();
    project.write("src/lib.rs", TWO_REGIONS);
    let out = project.scratch("busy");
    fs::create_dir_all(&out).unwrap();
    fs::write(out.join("student-work.rs"), "precious").unwrap();
    let out_arg = out.to_str().unwrap();
    let refused = project.labkit(&["starter", "01", "--out", out_arg]);
    assert_eq!(refused.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("not empty") && stderr.contains("--force"),
        "says why and how:\n{stderr}"
    );
    assert!(!out.join("src").exists(), "nothing was written");
    success(&project.labkit(&["starter", "01", "--out", out_arg, "--force"]));
    assert!(
        out.join("src/lib.rs").is_file(),
        "--force writes the starter"
    );
    assert!(
        out.join("student-work.rs").is_file(),
        "--force leaves other files alone"
    );
}

/// A starter inside the project would be copied into the next one: refused.
#[test]
fn starter_refuses_a_folder_inside_the_project() {
    let project = Project::new();
    project.write("src/lib.rs", TWO_REGIONS);
    let output = project.labkit(&["starter", "01", "--out", "starter01"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("inside the project"), "{stderr}");
}

/// A lab number that does not exist is a clear usage error, not a panic.
#[test]
fn an_unknown_lab_number_is_refused() {
    let project = Project::new();
    let output = project.labkit(&["check", "99"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("there is no lab 99"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// This project's own markers are valid, and every lab has a region and checks.
#[test]
fn this_project_has_a_region_and_checks_for_every_lab() {
    let output = Command::new(env!("CARGO_BIN_EXE_labkit"))
        .arg("list")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run labkit");
    let stdout = success(&output);
    for lab in 1..=6 {
        let section = stdout
            .split("\n\n")
            .find(|section| section.starts_with(&format!("lab {lab:02} ")))
            .unwrap_or_else(|| panic!("lab {lab:02} is not listed:\n{stdout}"));
        assert!(
            section.contains("region  src/"),
            "lab {lab:02} has no region:\n{section}"
        );
        assert!(
            section.contains("cargo test --test lab"),
            "lab {lab:02} has no checks:\n{section}"
        );
    }
}

/// A throwaway project in the system's temporary folder, removed when dropped.
struct Project {
    root: PathBuf,
}

impl Project {
    fn new() -> Project {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "labkit-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let root = std::env::temp_dir().join(name);
        let _ = fs::remove_dir_all(&root);
        let project = Project {
            root: root.join("project"),
        };
        project.write(
            "Cargo.toml",
            "[package]\nname = \"tiny\"\nversion = \"0.1.0\"\n",
        );
        project
    }

    fn write(&self, path: &str, text: &str) {
        let path = self.root.join(path);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }

    /// A path next to the project (not inside it), not yet created.
    fn scratch(&self, name: &str) -> PathBuf {
        self.root.parent().unwrap().join(name)
    }

    fn labkit(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_labkit"))
            .args(args)
            .current_dir(&self.root)
            .output()
            .expect("run labkit")
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        if let Some(parent) = self.root.parent() {
            let _ = fs::remove_dir_all(parent);
        }
    }
}

/// The stdout of a run that must have succeeded.
fn success(output: &Output) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "labkit failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}
