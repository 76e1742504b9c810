//! Known wrong answers: plausible student mistakes, kept with each region, that the lab's
//! checks must catch.
//!
//! A starter is `todo!()`, so any check that reaches the region fails on it; that proves a
//! check reaches the missing code, not that it can tell a wrong answer from a right one.
//! So each region also has *mutants*: the reference body with one realistic mistake (an
//! off-by-one, a set never cleared, the wrong log text). `labkit prove` builds each one and
//! requires at least one check to fail on it. Mutation testing tools (cargo-mutants,
//! PIT) make such mistakes mechanically, by flipping operators; these are written by hand,
//! because the mistakes worth catching are the ones students actually make.
//!
//! Each mutant is one file in `labsheet/instructor/mutants/` (never copied into a starter),
//! named `NN-<short-name>.rs` after its lab, and starts with comment lines that say which
//! region it replaces and what is wrong with it:
//!
//! ```text
//! // region: cleanup on disconnect
//! // mistake: leaves the session's own list of subscriptions full
//! // hint: still holds
//!     let topics = self.subscriptions.iter().map(|(topic, ())| topic);
//!     self.router.unsubscribe_all(topics, self.subscriber.id());
//! ```
//!
//! `region` is the title in the region's `lab:begin` marker; `mistake` is one sentence for
//! the proof's report; `hint` (optional) is words that the failure message of a check that
//! catches the mutant must contain, so the proof also shows that the student is told about
//! *this* mistake rather than just "expected X, got Y". The rest of the file is the body,
//! pasted between the region's markers as it is.

use std::fs;
use std::path::{Path, PathBuf};

use crate::labs::Lab;
use crate::markers::Region;

/// The folder of mutants, inside the instructor folder that starters leave out.
pub const FOLDER: &str = "labsheet/instructor/mutants";

/// One known wrong answer.
#[derive(Debug, Clone)]
pub struct Mutant {
    /// The file name without `.rs`, such as `04-no-clear`.
    pub name: String,
    /// The region it replaces.
    pub region: Region,
    /// What is wrong with it, in one sentence.
    pub mistake: String,
    /// Words a catching check's failure message must contain, if given.
    pub hint: Option<String>,
    /// The lines that go between the region's markers.
    pub body: String,
}

/// Every mutant in the project at `root`, sorted by name, matched to its region. Returns
/// every problem found (a bad name, a missing header, a region that does not exist) at once.
pub fn load(root: &Path, regions: &[Region]) -> Result<Vec<Mutant>, Vec<String>> {
    let folder = root.join(FOLDER);
    let Ok(entries) = fs::read_dir(&folder) else {
        return Ok(Vec::new());
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "rs"))
        .collect();
    paths.sort();
    let mut mutants = Vec::new();
    let mut problems = Vec::new();
    for path in paths {
        let shown = Path::new(FOLDER).join(path.file_name().unwrap_or_default());
        match fs::read_to_string(&path)
            .map_err(|error| format!("cannot read it: {error}"))
            .and_then(|text| parse(&path, &text, regions))
        {
            Ok(mutant) => mutants.push(mutant),
            Err(problem) => problems.push(format!("{}: {problem}", shown.display())),
        }
    }
    if problems.is_empty() {
        Ok(mutants)
    } else {
        Err(problems)
    }
}

/// The mutants of `lab`.
pub fn of_lab(mutants: &[Mutant], lab: Lab) -> Vec<&Mutant> {
    mutants.iter().filter(|m| m.region.lab == lab).collect()
}

/// Reads one mutant file: its lab from the name, its headers, then its body.
fn parse(path: &Path, text: &str, regions: &[Region]) -> Result<Mutant, String> {
    let name = path
        .file_stem()
        .and_then(|stem| stem.to_str())
        .unwrap_or_default()
        .to_string();
    let lab = lab_of(&name)?;
    let mut lines = text.lines().peekable();
    let mut header = |key: &str| -> Option<String> {
        let value = lines
            .peek()?
            .trim()
            .strip_prefix("//")?
            .trim()
            .strip_prefix(key)?
            .strip_prefix(':')?
            .trim()
            .to_string();
        lines.next();
        Some(value)
    };
    let title = header("region")
        .ok_or("the first line must be `// region: <title of the region's lab:begin marker>`")?;
    let mistake = header("mistake")
        .filter(|mistake| !mistake.is_empty())
        .ok_or("the second line must be `// mistake: <one sentence saying what is wrong>`")?;
    let hint = header("hint");
    let body: String = lines.map(|line| format!("{line}\n")).collect();
    let region = regions
        .iter()
        .find(|region| region.lab == lab && region.title == title)
        .cloned()
        .ok_or_else(|| {
            let titles: Vec<String> = regions
                .iter()
                .filter(|region| region.lab == lab)
                .map(|region| format!("\"{}\"", region.title))
                .collect();
            format!(
                "lab {} has no region \"{title}\"; its regions are {}",
                lab.code(),
                if titles.is_empty() {
                    "none".to_string()
                } else {
                    titles.join(", ")
                }
            )
        })?;
    Ok(Mutant {
        name,
        region,
        mistake,
        hint,
        body,
    })
}

/// The lab a mutant's file name starts with: `04-no-clear` is lab 04's.
fn lab_of(name: &str) -> Result<Lab, String> {
    name.split_once('-')
        .filter(|(number, rest)| number.len() == 2 && !rest.is_empty())
        .and_then(|(number, _)| number.parse().ok())
        .and_then(Lab::find)
        .ok_or_else(|| {
            "name a mutant `NN-<short-name>.rs`, NN being the number of a lab".to_string()
        })
}
