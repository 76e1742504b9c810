//! Where the project is, and which of its files make up a copy of it.

use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The project root: the nearest folder, from the current one upwards, with a `Cargo.toml`.
pub fn find_root() -> Result<PathBuf, String> {
    let here = std::env::current_dir()
        .map_err(|error| format!("cannot tell the current folder: {error}"))?;
    here.ancestors()
        .find(|folder| folder.join("Cargo.toml").is_file())
        .map(Path::to_path_buf)
        .ok_or_else(|| {
            format!(
                "no Cargo.toml in {} or above it: run labkit inside the project",
                here.display()
            )
        })
}

/// The project's build folder: `CARGO_TARGET_DIR` if it is set (relative to `root` if it
/// is relative), else `target/` in the project.
pub fn target_dir(root: &Path) -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from) {
        Some(target) if target.is_absolute() => target,
        Some(target) => root.join(target),
        None => root.join("target"),
    }
}

/// The project's files, relative to `root`, sorted: the ones git tracks plus new ones it
/// does not ignore, so work not yet committed is included. Without git (a starter handed
/// out as a zip, say) it is every file except `target/` and `.git/`.
pub fn files(root: &Path) -> Result<Vec<PathBuf>, String> {
    let mut files = match git_files(root) {
        Some(files) if !files.is_empty() => files,
        _ => {
            let mut files = Vec::new();
            walk(root, Path::new(""), &mut files)
                .map_err(|error| format!("cannot list {}: {error}", root.display()))?;
            files
        }
    };
    files.sort();
    files.dedup();
    Ok(files)
}

/// `git ls-files`, or `None` if git is missing or this is not a repository.
fn git_files(root: &Path) -> Option<Vec<PathBuf>> {
    let output = Command::new("git")
        .arg("-C")
        .arg(root)
        .args([
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
        ])
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    let listed = String::from_utf8(output.stdout).ok()?;
    Some(
        listed
            .split('\0')
            .filter(|name| !name.is_empty())
            .map(PathBuf::from)
            // A file deleted but not yet committed is still in git's index.
            .filter(|name| root.join(name).is_file())
            .collect(),
    )
}

fn walk(root: &Path, relative: &Path, files: &mut Vec<PathBuf>) -> io::Result<()> {
    for entry in std::fs::read_dir(root.join(relative))? {
        let entry = entry?;
        let name = relative.join(entry.file_name());
        let kind = entry.file_type()?;
        let skipped = name == Path::new("target") || entry.file_name() == ".git";
        if skipped {
            continue;
        }
        if kind.is_dir() {
            walk(root, &name, files)?;
        } else if kind.is_file() {
            files.push(name);
        }
    }
    Ok(())
}
