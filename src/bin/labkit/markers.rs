//! Finding the solution regions: the marker comments in `src/`.
//!
//! A region is the student's work for one lab, written in the reference like this:
//!
//! ```text
//! fn fan_out(&mut self, subscribers: &[Arc<Outbox>]) -> usize {
//!     // lab:begin 02 fan-out
//!     ...the reference solution...
//!     // lab:end 02
//! }
//! ```
//!
//! The markers are plain comments, so the reference builds and reads as normal code. A
//! region is always the whole body of one function, which is what lets the starter
//! replace it with a `todo!()` that still compiles. A lab may have several regions if each
//! has its own title.
//!
//! A marker is a line whose first non-blank characters are `//` followed by `lab:`.
//! Doc comments (`///`, `//!`) never count, so documentation may quote markers freely.
//! Every mistake (a region left open, one inside another, an `end` for the wrong lab, an
//! unknown lab, the same region twice) is reported with its file and line, all of them
//! at once, so they can be fixed in one go.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::labs::{Lab, LABS};

/// One solution region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Region {
    /// The lab it belongs to.
    pub lab: Lab,
    /// The short title after the lab number in the `begin` marker.
    pub title: String,
    /// The file, relative to the project root.
    pub file: PathBuf,
    /// Line number (from 1) of the `begin` marker.
    pub begin: usize,
    /// Line number (from 1) of the `end` marker.
    pub end: usize,
    /// The blanks before the `begin` marker: the indentation of the region's body.
    pub indent: String,
}

/// A marker mistake, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarkerError {
    /// The file, relative to the project root.
    pub file: PathBuf,
    /// Line number, from 1.
    pub line: usize,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl fmt::Display for MarkerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file.display(), self.line, self.message)
    }
}

/// What one marker line says.
enum Marker {
    Begin { number: String, title: String },
    End { number: String },
}

/// Finds every region in the Rust files of `src/` among `files` (paths relative to
/// `root`). Returns every mistake found if there is any.
pub fn scan(root: &Path, files: &[PathBuf]) -> Result<Vec<Region>, Vec<MarkerError>> {
    let mut regions = Vec::new();
    let mut errors = Vec::new();
    let sources = files
        .iter()
        .filter(|file| file.starts_with("src") && file.extension().is_some_and(|ext| ext == "rs"));
    for file in sources {
        match std::fs::read_to_string(root.join(file)) {
            Ok(text) => scan_text(file, &text, &mut regions, &mut errors),
            Err(error) => errors.push(MarkerError {
                file: file.clone(),
                line: 0,
                message: format!("cannot read the file: {error}"),
            }),
        }
    }
    find_duplicates(&regions, &mut errors);
    if errors.is_empty() {
        Ok(regions)
    } else {
        Err(errors)
    }
}

/// Scans one file's text, adding what it finds to `regions` and `errors`.
pub fn scan_text(
    file: &Path,
    text: &str,
    regions: &mut Vec<Region>,
    errors: &mut Vec<MarkerError>,
) {
    // The regions opened and not yet closed. Only one may be open at a time; a stack lets
    // a mistake be reported once, without making every later marker look wrong too.
    let mut open: Vec<Opened> = Vec::new();
    let mut error = |line: usize, message: String| {
        errors.push(MarkerError {
            file: file.to_path_buf(),
            line,
            message,
        })
    };
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        match parse_marker(line) {
            None => {}
            Some(Err(message)) => error(number, message),
            Some(Ok(Marker::Begin {
                number: lab_text,
                title,
            })) => {
                if let Some(opened) = open.last() {
                    error(
                        number,
                        format!(
                            "regions cannot nest: the region opened on line {} is not \
                             closed yet; add its end marker before this line",
                            opened.line
                        ),
                    );
                }
                if title.is_empty() {
                    error(
                        number,
                        format!(
                            "a begin marker needs a title: `// lab:begin {lab_text} <short title>`"
                        ),
                    );
                }
                let lab = known_lab(&lab_text);
                if lab.is_none() {
                    error(number, unknown_lab_message(&lab_text));
                }
                open.push(Opened {
                    lab_text,
                    lab,
                    title,
                    line: number,
                    indent: line.chars().take_while(|c| c.is_whitespace()).collect(),
                });
            }
            Some(Ok(Marker::End { number: lab_text })) => match open.pop() {
                None => error(
                    number,
                    format!("`lab:end {lab_text}` without a `lab:begin {lab_text}` before it"),
                ),
                Some(opened) if opened.lab_text != lab_text => error(
                    number,
                    format!(
                        "`lab:end {lab_text}` closes the region of lab {} opened on line \
                         {}; the numbers must match",
                        opened.lab_text, opened.line
                    ),
                ),
                Some(Opened {
                    lab: Some(lab),
                    title,
                    line,
                    indent,
                    ..
                }) => regions.push(Region {
                    lab,
                    title,
                    file: file.to_path_buf(),
                    begin: line,
                    end: number,
                    indent,
                }),
                // An unknown lab: already reported at its begin marker.
                Some(Opened { lab: None, .. }) => {}
            },
        }
    }
    for opened in open {
        error(
            opened.line,
            format!(
                "this region is never closed: add `// lab:end {}` after its last line",
                opened.lab_text
            ),
        );
    }
}

/// A `begin` marker whose `end` has not been seen yet.
struct Opened {
    /// The lab number as written, for messages.
    lab_text: String,
    /// The lab, if the number names one.
    lab: Option<Lab>,
    title: String,
    /// Its line number, from 1.
    line: usize,
    indent: String,
}

/// Reads a line as a marker: `None` if it is not one, an error if it is one but malformed.
fn parse_marker(line: &str) -> Option<Result<Marker, String>> {
    let comment = line.trim_start().strip_prefix("//")?;
    // `///` and `//!` are documentation, which may talk about markers.
    if comment.starts_with('/') || comment.starts_with('!') {
        return None;
    }
    let rest = comment.trim_start().strip_prefix("lab:")?;
    let mut words = rest.split_whitespace();
    let marker = match (words.next(), words.next()) {
        (Some("begin"), Some(number)) => Marker::Begin {
            number: number.to_string(),
            title: words.collect::<Vec<_>>().join(" "),
        },
        (Some("end"), Some(number)) => {
            if words.next().is_some() {
                return Some(Err(format!(
                    "an end marker is only `// lab:end {number}`; put nothing after the number"
                )));
            }
            Marker::End {
                number: number.to_string(),
            }
        }
        _ => {
            return Some(Err(
                "not a marker: write `// lab:begin NN <title>` or `// lab:end NN`".to_string(),
            ))
        }
    };
    Some(Ok(marker))
}

/// The lab a marker names, if its number is written `NN` and the lab exists.
fn known_lab(text: &str) -> Option<Lab> {
    if text.len() != 2 || !text.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    text.parse().ok().and_then(Lab::find)
}

fn unknown_lab_message(text: &str) -> String {
    let codes: Vec<String> = LABS.iter().map(|lab| lab.code()).collect();
    format!(
        "unknown lab `{text}`: markers name a lab by two digits, one of {}",
        codes.join(", ")
    )
}

/// Two regions of the same lab with the same title are one region pasted twice.
fn find_duplicates(regions: &[Region], errors: &mut Vec<MarkerError>) {
    for (index, region) in regions.iter().enumerate() {
        let first = regions[..index]
            .iter()
            .find(|earlier| earlier.lab == region.lab && earlier.title == region.title);
        if let Some(first) = first {
            errors.push(MarkerError {
                file: region.file.clone(),
                line: region.begin,
                message: format!(
                    "duplicate region: lab {} \"{}\" is already marked at {}:{}; give each \
                     region of a lab its own title, or remove one",
                    region.lab.code(),
                    region.title,
                    first.file.display(),
                    first.begin
                ),
            });
        }
    }
}
