//! Making a lab's starter: a copy of the project with that lab's regions cut out.
//!
//! Everything is copied except `labsheet/instructor/` (the answers). In the files that
//! hold a region of the lab, the lines between the markers become one `todo!()` naming
//! the lab and its labsheet; the markers stay, so the student sees exactly where to work.
//! A region is the whole body of a function, and `todo!()` has every type, so the starter
//! compiles; it panics only when a test reaches the missing code. The other labs' regions
//! stay solved, so each lab can be done on its own.

use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

use crate::labs::Lab;
use crate::markers::Region;

/// The folder of instructor material, never copied into a starter.
pub const LEFT_OUT: &str = "labsheet/instructor";

/// What goes between one region's markers in a copy of the project.
#[derive(Debug, Clone)]
pub struct Fill {
    /// The region.
    pub region: Region,
    /// Its new body: whole lines, each ending in `\n`.
    pub body: String,
    /// Whether the body is a starter's `todo!()`, which leaves what the region would use
    /// unused (see [`QUIET`]).
    pub stub: bool,
}

/// Lines a starter adds below the module docs of each file with a `todo!()` in it. The
/// `todo!()` uses none of the function's arguments, nor the imports, helpers and fields
/// that only the missing code needs, so the compiler would warn about each of them, and a
/// student's first build would be a wall of warnings about code that is not theirs. They
/// are told to delete the lines once their code is in, to get those warnings back.
pub const QUIET: &str = "\
// labkit: until the todo!() in this file is written, what it will use looks unused to the
// compiler; delete these three lines when your code is in.
#![allow(unused_variables, unused_imports, dead_code)]
";

impl Fill {
    /// Where the region's markers are in the written copy, whose [`QUIET`] lines, if any,
    /// push every line of the file down.
    pub fn lines_in_copy(&self) -> (usize, usize) {
        let shift = if self.stub { QUIET.lines().count() } else { 0 };
        (self.region.begin + shift, self.region.end + shift)
    }
}

/// The fills that make the starter of `lab`: each of its regions becomes one `todo!()`.
pub fn stubs(regions: &[Region], lab: Lab) -> Result<Vec<Fill>, String> {
    let fills: Vec<Fill> = regions
        .iter()
        .filter(|region| region.lab == lab)
        .map(|region| Fill {
            region: region.clone(),
            body: format!("{}{}\n", region.indent, stub_line(region)),
            stub: true,
        })
        .collect();
    if fills.is_empty() {
        return Err(format!(
            "lab {} has no region in src/: mark the student's part with \
             `// lab:begin {} <title>` and `// lab:end {}`",
            lab.code(),
            lab.code(),
            lab.code()
        ));
    }
    Ok(fills)
}

/// Whether every region of `lab` in the project at `root` still holds just the starter's
/// `todo!()`: nothing of the student's yet. A region whose file cannot be read counts as
/// written (the checks then say what is wrong).
pub fn untouched(root: &Path, regions: &[Region], lab: Lab) -> bool {
    let mut mine = regions.iter().filter(|region| region.lab == lab).peekable();
    mine.peek().is_some()
        && mine.all(|region| {
            let Ok(text) = fs::read_to_string(root.join(&region.file)) else {
                return false;
            };
            // The lines between the markers; `begin` and `end` count from 1.
            let body: Vec<&str> = text
                .lines()
                .skip(region.begin)
                .take(region.end - region.begin - 1)
                .map(str::trim)
                .collect();
            body == [stub_line(region)]
        })
}

/// Writes a copy of the project at `root` into `out`, with each region of `fills` given
/// its new body; `files` are the project's files relative to `root`. Returns how many
/// files the copy holds.
///
/// Refuses a non-empty `out` unless `force` is set; with `force`, files are written over
/// and files already there that the project does not have are left alone. A file whose
/// content is already right is not touched, so cargo need not rebuild it.
pub fn write(
    root: &Path,
    files: &[PathBuf],
    fills: &[Fill],
    out: &Path,
    force: bool,
) -> Result<usize, String> {
    check_destination(root, out, force)?;
    let mut count = 0;
    for file in files.iter().filter(|file| !file.starts_with(LEFT_OUT)) {
        let source = root.join(file);
        let bytes = fs::read(&source)
            .map_err(|error| format!("cannot read {}: {error}", source.display()))?;
        let in_file: Vec<&Fill> = fills.iter().filter(|f| &f.region.file == file).collect();
        let bytes = if in_file.is_empty() {
            bytes
        } else {
            let text = String::from_utf8(bytes)
                .map_err(|_| format!("{} is not UTF-8 text", file.display()))?;
            fill_in(&text, &in_file).into_bytes()
        };
        let target = out.join(file);
        write_if_changed(&target, &bytes)
            .and_then(|()| copy_permissions(&source, &target))
            .map_err(|error| format!("cannot write {}: {error}", target.display()))?;
        count += 1;
    }
    Ok(count)
}

/// The `todo!()` that replaces a region: it says which lab and where to read about it.
pub fn stub_line(region: &Region) -> String {
    let message = format!(
        "lab {}: {} - see {}",
        region.lab.code(),
        region.title,
        region.lab.sheet_path()
    );
    // `{:?}` writes the message as a Rust string literal, quotes escaped.
    format!("todo!({message:?})")
}

/// `text` with the lines between each region's markers replaced by its fill's body, and
/// [`QUIET`] after the module docs if a body is a stub.
fn fill_in(text: &str, fills: &[&Fill]) -> String {
    let mut out = String::with_capacity(text.len() + QUIET.len());
    let mut quiet = fills.iter().any(|fill| fill.stub);
    let mut lines = text.split_inclusive('\n').enumerate();
    while let Some((index, line)) = lines.next() {
        if quiet && !line.starts_with("//!") {
            out.push_str(QUIET);
            quiet = false;
        }
        out.push_str(line);
        let Some(fill) = fills.iter().find(|fill| fill.region.begin == index + 1) else {
            continue;
        };
        // A checkout with Windows line ends keeps them.
        if line.ends_with("\r\n") {
            out.push_str(&fill.body.replace('\n', "\r\n"));
        } else {
            out.push_str(&fill.body);
        }
        // Skip the solution, keep the end marker.
        for (index, line) in lines.by_ref() {
            if index + 1 == fill.region.end {
                out.push_str(line);
                break;
            }
        }
    }
    out
}

/// A starter inside the project would be copied into the next starter, and so on; only
/// `target/` (which git ignores) is safe.
fn check_destination(root: &Path, out: &Path, force: bool) -> Result<(), String> {
    let absolute = absolute(out)?;
    let root = root
        .canonicalize()
        .map_err(|error| format!("cannot resolve {}: {error}", root.display()))?;
    if absolute.starts_with(&root) && !absolute.starts_with(root.join("target")) {
        return Err(format!(
            "{} is inside the project; choose a folder outside it, for example ../starter",
            out.display()
        ));
    }
    if out.exists() {
        if !out.is_dir() {
            return Err(format!("{} exists and is not a folder", out.display()));
        }
        let empty = fs::read_dir(out)
            .map_err(|error| format!("cannot read {}: {error}", out.display()))?
            .next()
            .is_none();
        if !empty && !force {
            return Err(format!(
                "{} is not empty; choose another folder, or add --force to write over it",
                out.display()
            ));
        }
    }
    Ok(())
}

/// `path` made absolute with symbolic links resolved, even if it does not exist yet.
fn absolute(path: &Path) -> Result<PathBuf, String> {
    let cwd =
        std::env::current_dir().map_err(|e| format!("cannot tell the current folder: {e}"))?;
    let mut missing = Vec::new();
    let mut existing = cwd.join(path);
    loop {
        if let Ok(resolved) = existing.canonicalize() {
            let mut full = resolved;
            for part in missing.iter().rev() {
                full.push(part);
            }
            return Ok(full);
        }
        match (existing.file_name(), existing.parent()) {
            (Some(name), Some(parent)) => {
                missing.push(name.to_os_string());
                existing = parent.to_path_buf();
            }
            // Only `..` or a root is left: resolve lexically.
            _ => {
                return Ok(existing
                    .components()
                    .filter(|c| !matches!(c, Component::CurDir))
                    .collect())
            }
        }
    }
}

fn write_if_changed(target: &Path, bytes: &[u8]) -> io::Result<()> {
    if fs::read(target).is_ok_and(|old| old == bytes) {
        return Ok(());
    }
    if let Some(parent) = target.parent() {
        fs::create_dir_all(parent)?;
    }
    fs::write(target, bytes)
}

/// Keeps scripts such as `.ci/run` executable.
fn copy_permissions(source: &Path, target: &Path) -> io::Result<()> {
    let permissions = fs::metadata(source)?.permissions();
    fs::set_permissions(target, permissions)
}
