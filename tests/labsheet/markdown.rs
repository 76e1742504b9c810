//! Reading a lab: its text, and the code blocks marked for replay.
//!
//! A replayed block is an ordinary fenced code block with an HTML comment on the line
//! before it, which a markdown viewer does not show:
//!
//! ```text
//! <!-- replay -->                                   a block on its own, with its own broker
//! <!-- replay group=demo terminal=sub1 -->          one terminal of a multi-terminal step
//! ```
//!
//! Blocks with the same `group` share one broker and are replayed together, in the order
//! they appear; a later block with the same `terminal` continues that terminal. Inside a
//! block, `$ ` starts a command, `> ` is a line the student types, `^C` and `^D` are the
//! keys, a line `...` stands for lines the lab does not show, and every other non-empty line
//! is output the student should see.

use std::fs;
use std::path::Path;

/// One lab file.
pub struct Lab {
    /// The path shown in failure messages, such as `labsheet/01-first-contact.md`.
    pub name: String,
    pub text: String,
    pub blocks: Vec<Block>,
}

/// A code block marked for replay.
#[derive(Debug, Clone)]
pub struct Block {
    /// 1-based line of the opening fence.
    pub line: usize,
    pub group: Option<String>,
    pub terminal: Option<String>,
    /// The lines inside the fence, with their 1-based line numbers.
    pub lines: Vec<(usize, String)>,
}

impl Lab {
    /// Reads and parses `labsheet/<file>` from the crate root.
    pub fn load(file: &str) -> Lab {
        Lab::load_from_root(&format!("labsheet/{file}"))
    }

    /// Reads and parses a markdown file given by its path from the crate root, such as
    /// `README.md`, whose quick start is marked for replay like a lab.
    pub fn load_from_root(relative: &str) -> Lab {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(relative);
        let text = fs::read_to_string(&path)
            .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()));
        Lab::parse(relative, &text).unwrap_or_else(|error| panic!("{error}"))
    }

    /// Parses a lab's text; `name` is used in error messages.
    pub fn parse(name: &str, text: &str) -> Result<Lab, String> {
        let lines: Vec<&str> = text.lines().collect();
        let mut blocks = Vec::new();
        let mut i = 0;
        while i < lines.len() {
            let Some(attributes) = marker(lines[i]) else {
                i += 1;
                continue;
            };
            let marker_line = i + 1;
            let (group, terminal) = parse_attributes(attributes)
                .map_err(|why| format!("{name}:{marker_line}: {why}"))?;
            let fence = i + 1;
            if !lines
                .get(fence)
                .is_some_and(|l| l.trim_start().starts_with("```"))
            {
                return Err(format!(
                    "{name}:{marker_line}: a replay marker must be followed by a fenced code block"
                ));
            }
            let mut body = Vec::new();
            let mut end = fence + 1;
            while end < lines.len() && !lines[end].trim_start().starts_with("```") {
                body.push((end + 1, lines[end].to_string()));
                end += 1;
            }
            if end == lines.len() {
                return Err(format!("{name}:{}: code block never closed", fence + 1));
            }
            blocks.push(Block {
                line: fence + 1,
                group,
                terminal,
                lines: body,
            });
            i = end + 1;
        }
        Ok(Lab {
            name: name.to_string(),
            text: text.to_string(),
            blocks,
        })
    }

    /// The lab's lines outside fenced code blocks, with 1-based line numbers.
    pub fn prose(&self) -> Vec<(usize, &str)> {
        let mut inside = false;
        let mut out = Vec::new();
        for (n, line) in self.text.lines().enumerate() {
            if line.trim_start().starts_with("```") {
                inside = !inside;
            } else if !inside {
                out.push((n + 1, line));
            }
        }
        out
    }
}

/// The attribute text of a `<!-- replay ... -->` line.
fn marker(line: &str) -> Option<&str> {
    let inner = line
        .trim()
        .strip_prefix("<!--")?
        .strip_suffix("-->")?
        .trim();
    let rest = inner.strip_prefix("replay")?;
    (rest.is_empty() || rest.starts_with(' ')).then_some(rest.trim())
}

type Attributes = (Option<String>, Option<String>);

fn parse_attributes(text: &str) -> Result<Attributes, String> {
    let (mut group, mut terminal) = (None, None);
    for word in text.split_whitespace() {
        match word.split_once('=') {
            Some(("group", value)) if !value.is_empty() => group = Some(value.to_string()),
            Some(("terminal", value)) if !value.is_empty() => terminal = Some(value.to_string()),
            _ => {
                return Err(format!(
                    "unknown replay attribute `{word}` (known: group=NAME terminal=NAME)"
                ))
            }
        }
    }
    if terminal.is_some() && group.is_none() {
        return Err("terminal= needs group= (terminals belong to a group)".into());
    }
    Ok((group, terminal))
}
