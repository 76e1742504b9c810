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

/// What [`write()`] did.
#[derive(Debug)]
pub struct Written {
    /// How many files the starter holds.
    pub files: usize,
    /// The regions replaced by `todo!()`.
    pub replaced: Vec<Region>,
}

/// Writes the starter of `lab` into `out`. `files` are the project's files relative to
/// `root`, `regions` every region found in them.
///
/// Refuses a non-empty `out` unless `force` is set; with `force`, files are written over
/// and files already there that the project does not have are left alone. A file whose
/// content is already right is not touched, so cargo need not rebuild it.
pub fn write(
    root: &Path,
    files: &[PathBuf],
    regions: &[Region],
    lab: Lab,
    out: &Path,
    force: bool,
) -> Result<Written, String> {
    let replaced: Vec<Region> = regions
        .iter()
        .filter(|region| region.lab == lab)
        .cloned()
        .collect();
    if replaced.is_empty() {
        return Err(format!(
            "lab {} has no region in src/: mark the student's part with \
             `// lab:begin {} <title>` and `// lab:end {}`",
            lab.code(),
            lab.code(),
            lab.code()
        ));
    }
    check_destination(root, out, force)?;
    let mut count = 0;
    for file in files.iter().filter(|file| !file.starts_with(LEFT_OUT)) {
        let source = root.join(file);
        let bytes = fs::read(&source)
            .map_err(|error| format!("cannot read {}: {error}", source.display()))?;
        let in_file: Vec<&Region> = replaced.iter().filter(|r| &r.file == file).collect();
        let bytes = if in_file.is_empty() {
            bytes
        } else {
            let text = String::from_utf8(bytes)
                .map_err(|_| format!("{} is not UTF-8 text", file.display()))?;
            stub_out(&text, &in_file).into_bytes()
        };
        let target = out.join(file);
        write_if_changed(&target, &bytes)
            .and_then(|()| copy_permissions(&source, &target))
            .map_err(|error| format!("cannot write {}: {error}", target.display()))?;
        count += 1;
    }
    Ok(Written {
        files: count,
        replaced,
    })
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

/// `text` with the lines between each region's markers replaced by its stub line.
fn stub_out(text: &str, regions: &[&Region]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut lines = text.split_inclusive('\n').enumerate();
    while let Some((index, line)) = lines.next() {
        out.push_str(line);
        let Some(region) = regions.iter().find(|region| region.begin == index + 1) else {
            continue;
        };
        let indent: String = line.chars().take_while(|c| c.is_whitespace()).collect();
        let ending = if line.ends_with("\r\n") { "\r\n" } else { "\n" };
        out.push_str(&format!("{indent}{}{ending}", stub_line(region)));
        // Skip the solution, keep the end marker.
        for (index, line) in lines.by_ref() {
            if index + 1 == region.end {
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
