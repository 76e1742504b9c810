//! Handing a new starter the dependencies that the project has built already.
//!
//! A starter is a copy of the project in a folder of its own, so its first build would
//! compile every dependency again: about seventy crates (clap, chrono and what they use),
//! most of a minute on two cores and half a gigabyte of disk, before the student sees a
//! single check. The project the starter was made from has built them already, with the
//! same versions, features and compiler, and cargo names a dependency's build output by a
//! hash of exactly those things (`libclap-0a1b…rlib`), so the same files are valid in both
//! places. This module puts them into the starter's `target/debug`.
//!
//! Only dependencies are shared: the packages of `Cargo.lock` other than the project
//! itself. The project's own build output is never shared, so a starter always compiles
//! its own code, the code the student writes, and two starters can never run each other's.
//! The big compiled libraries (`deps/`) are hard links, which cost no disk; cargo replaces
//! such a file rather than writing into it, so a rebuild in one folder cannot change the
//! other. The small records cargo does rewrite in place (`.fingerprint/`, and build script
//! results in `build/`) are copied, keeping their modification times, which cargo compares
//! to decide what to rebuild. If anything goes wrong the starter is simply left to build
//! its dependencies itself: sharing is a shortcut, never a requirement.
//!
//! Tools such as sccache go further and share any compiler output by a hash of its inputs,
//! across projects and machines; a course needs only this one case, without a daemon.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::path::Path;

/// The folders of a cargo profile's output that hold a dependency's build, and whether
/// their files are linked (compiled libraries) or copied (records cargo rewrites).
const FOLDERS: [(&str, Share); 3] = [
    ("deps", Share::Link),
    ("build", Share::Copy),
    (".fingerprint", Share::Copy),
];

#[derive(Debug, Clone, Copy)]
enum Share {
    Link,
    Copy,
}

/// Gives the build folder `to` the dependencies built in the debug profile of the project
/// at `root`, whose build folder is `from`. Returns how many build outputs (one per crate
/// and kind) it shared; nothing is shared if `root` has built nothing yet, or if `to`
/// already has builds of its own.
pub fn share(root: &Path, from: &Path, to: &Path) -> Result<usize, String> {
    let from = from.join("debug");
    let to = to.join("debug");
    if !from.join("deps").is_dir() || to.join("deps").exists() {
        return Ok(0);
    }
    let dependencies = dependencies(root)?;
    let mut shared = 0;
    for (folder, how) in FOLDERS {
        let Ok(entries) = fs::read_dir(from.join(folder)) else {
            continue;
        };
        for entry in entries.filter_map(Result::ok) {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if !dependencies.contains(&crate_of(name)) {
                continue;
            }
            let target = to.join(folder).join(name);
            share_path(&entry.path(), &target, how)
                .map_err(|error| format!("cannot share {}: {error}", target.display()))?;
            shared += 1;
        }
    }
    Ok(shared)
}

/// The crate names of every package in `root`'s `Cargo.lock` except the project itself,
/// written the way build output names them (`env_logger`, not `env-logger`).
fn dependencies(root: &Path) -> Result<HashSet<String>, String> {
    let read = |file: &str| {
        fs::read_to_string(root.join(file)).map_err(|error| format!("cannot read {file}: {error}"))
    };
    let own = read("Cargo.toml")?
        .lines()
        .find_map(name_in)
        .map(str::to_string)
        .ok_or("Cargo.toml has no package name")?;
    let lock = read("Cargo.lock")?;
    Ok(lock
        .lines()
        .filter_map(name_in)
        .filter(|name| *name != own)
        .map(|name| name.replace('-', "_"))
        .collect())
}

/// The value of a `name = "..."` line.
fn name_in(line: &str) -> Option<&str> {
    line.strip_prefix("name = \"")?.strip_suffix('"')
}

/// The crate a build output belongs to: `libclap_builder-0a1b2c3d4e5f6a7b.rlib`,
/// `clap_builder-0a1b2c3d4e5f6a7b.d` and the folder `clap_builder-0a1b2c3d4e5f6a7b` are all
/// `clap_builder`'s. Anything not named that way (the project's `broker`, `lab02-…`) gives
/// a name no dependency has.
fn crate_of(name: &str) -> String {
    let stem = name.split('.').next().unwrap_or(name);
    let Some((head, hash)) = stem.rsplit_once('-') else {
        return String::new();
    };
    if hash.len() != 16 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return String::new();
    }
    let head = head.replace('-', "_");
    match head.strip_prefix("lib") {
        // `lib` starts a compiled library's file name, unless the crate's name starts
        // with it too (`libc` is the folder `libc-…` and the file `liblibc-….rlib`).
        Some(rest)
            if name.ends_with(".rlib") || name.ends_with(".rmeta") || name.ends_with(".so") =>
        {
            rest.to_string()
        }
        _ => head,
    }
}

/// Links or copies `from` (a file or a folder, recursively) to `to`.
fn share_path(from: &Path, to: &Path, how: Share) -> io::Result<()> {
    if from.is_dir() {
        fs::create_dir_all(to)?;
        for entry in fs::read_dir(from)? {
            let entry = entry?;
            share_path(&entry.path(), &to.join(entry.file_name()), how)?;
        }
        return Ok(());
    }
    if let Some(parent) = to.parent() {
        fs::create_dir_all(parent)?;
    }
    match how {
        Share::Link => fs::hard_link(from, to),
        Share::Copy => copy_with_time(from, to),
    }
}

/// Copies `from` to `to` and gives the copy the original's modification time.
///
/// Cargo decides what to rebuild partly by comparing times: a crate whose build is older
/// than one of its dependencies' is built again. A plain copy is stamped with the time of
/// copying, so a build script's recorded result in `build/` would look newer than the
/// library compiled from it, which is linked and keeps its old time: cargo then reports
/// `Dirty proc-macro2 … was rebuilt` and compiles that crate and everything above it
/// again. Keeping the times keeps the order cargo saw when it built them.
fn copy_with_time(from: &Path, to: &Path) -> io::Result<()> {
    let modified = fs::metadata(from)?.modified()?;
    fs::copy(from, to)?;
    fs::File::options()
        .write(true)
        .open(to)?
        .set_modified(modified)
}

#[cfg(test)]
mod tests {
    use super::{crate_of, share};
    use std::fs;
    use std::time::{Duration, SystemTime};

    /// The records are copied with the times cargo saw, not the time of copying: a build
    /// script's result newer than the library built after it makes cargo rebuild the
    /// library and everything that uses it.
    #[test]
    fn shared_records_keep_their_modification_times() {
        let dir = std::env::temp_dir().join(format!("labkit-prebuilt-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let (root, from, to) = (dir.join("project"), dir.join("from"), dir.join("to"));
        let files = [
            "debug/deps/libdep-0a1b2c3d4e5f6a7b.rlib",
            "debug/build/dep-0a1b2c3d4e5f6a7b/output",
            "debug/.fingerprint/dep-0a1b2c3d4e5f6a7b/lib-dep",
        ];
        let built = SystemTime::now() - Duration::from_secs(3600);
        for file in files {
            let path = from.join(file);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(&path, file).unwrap();
            fs::File::options()
                .write(true)
                .open(&path)
                .unwrap()
                .set_modified(built)
                .unwrap();
        }
        fs::create_dir_all(&root).unwrap();
        fs::write(root.join("Cargo.toml"), "[package]\nname = \"project\"\n").unwrap();
        fs::write(
            root.join("Cargo.lock"),
            "[[package]]\nname = \"dep\"\n\n[[package]]\nname = \"project\"\n",
        )
        .unwrap();
        assert_eq!(share(&root, &from, &to), Ok(3));
        for file in files {
            let modified = fs::metadata(to.join(file)).unwrap().modified().unwrap();
            assert_eq!(modified, built, "{file} keeps the time it was built");
        }
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn build_outputs_are_told_apart_by_the_crate_they_belong_to() {
        for (name, expected) in [
            ("libclap_builder-0a1b2c3d4e5f6a7b.rlib", "clap_builder"),
            ("libclap_builder-0a1b2c3d4e5f6a7b.rmeta", "clap_builder"),
            ("clap_builder-0a1b2c3d4e5f6a7b.d", "clap_builder"),
            ("env_logger-0a1b2c3d4e5f6a7b", "env_logger"),
            ("libclap_derive-0a1b2c3d4e5f6a7b.so", "clap_derive"),
            // `libc` itself: its folder and its library file.
            ("libc-0a1b2c3d4e5f6a7b", "libc"),
            ("liblibc-0a1b2c3d4e5f6a7b.rlib", "libc"),
            // The project's own outputs name no dependency.
            ("broker", ""),
            ("lab02-0a1b2c3d", ""),
            ("labkit.d", ""),
        ] {
            assert_eq!(crate_of(name), expected, "{name}");
        }
    }
}
