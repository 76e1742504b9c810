//! Matching one line of real output against the line a lab promises.
//!
//! A lab shows output the way a student sees it, but some parts change from run to run:
//! timestamps, ports, process ids, counts. The lab writes those parts as placeholders, and
//! this module matches them loosely:
//!
//! | in the lab | matches |
//! |---|---|
//! | `<date>` | `2025-03-14` |
//! | `<time>` | `10:30:00`, or `10:30:00.123` in a log line |
//! | `<n>`, `<port>`, `<pid>`, `<ms>` | a number such as `42` or `0.137` |
//! | any other `<name>` | one word (no spaces), so `<topic>` also matches itself |
//! | `...` | anything at all, including nothing |
//! | two or more spaces | one or more spaces |
//!
//! Two or more spaces in a row match any run of spaces, so a table whose column widths
//! depend on the figures still matches. Everything else must match exactly, except
//! trailing spaces. What a `<name>` matched can be kept ([`captures`]): a session id the
//! lab's next command types back (lab 12's `sid=<sid>`).

/// One piece of an expected line.
#[derive(Debug, Clone, PartialEq)]
enum Piece {
    Literal(char),
    Date,
    Time,
    Number,
    /// One word, and the placeholder's name, for [`captures`].
    Word(String),
    Anything,
    /// Two or more spaces in the lab: a table's column gap, whose width depends on values.
    Gap,
}

/// Whether `actual` is what `expected` promises, placeholders matched loosely.
pub fn matches(expected: &str, actual: &str) -> bool {
    captures(expected, actual).is_some()
}

/// What each word placeholder (`<sid>`, `<topic>`) of `expected` matched in `actual`, as
/// (name, word); `None` if `actual` is not what `expected` promises.
pub fn captures(expected: &str, actual: &str) -> Option<Vec<(String, String)>> {
    let pieces = pieces(expected.trim_end());
    let actual: Vec<char> = actual.trim_end().chars().collect();
    let mut words = Vec::new();
    match_from(&pieces, &actual, &mut words).then_some(words)
}

fn pieces(expected: &str) -> Vec<Piece> {
    let chars: Vec<char> = expected.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i..].starts_with(&['.', '.', '.']) {
            out.push(Piece::Anything);
            i += 3;
            continue;
        }
        if chars[i..].starts_with(&[' ', ' ']) {
            while chars.get(i) == Some(&' ') {
                i += 1;
            }
            out.push(Piece::Gap);
            continue;
        }
        if chars[i] == '<' {
            if let Some(len) = chars[i + 1..].iter().position(|&c| c == '>') {
                let name: String = chars[i + 1..i + 1 + len].iter().collect();
                let is_name = !name.is_empty()
                    && name.chars().all(|c| {
                        c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-'
                    });
                if is_name {
                    out.push(match name.as_str() {
                        "date" => Piece::Date,
                        "time" => Piece::Time,
                        "n" | "port" | "pid" | "ms" => Piece::Number,
                        _ => Piece::Word(name),
                    });
                    i += len + 2;
                    continue;
                }
            }
        }
        out.push(Piece::Literal(chars[i]));
        i += 1;
    }
    out
}

fn match_from(pieces: &[Piece], actual: &[char], words: &mut Vec<(String, String)>) -> bool {
    let Some((first, rest)) = pieces.split_first() else {
        return actual.is_empty();
    };
    match first {
        Piece::Literal(c) => actual.first() == Some(c) && match_from(rest, &actual[1..], words),
        Piece::Anything => (0..=actual.len()).any(|n| match_from(rest, &actual[n..], words)),
        Piece::Gap => {
            let spaces = actual.iter().take_while(|c| **c == ' ').count();
            (1..=spaces).any(|n| match_from(rest, &actual[n..], words))
        }
        Piece::Date => fits(actual, "dddd-dd-dd") && match_from(rest, &actual[10..], words),
        Piece::Time => {
            if !fits(actual, "dd:dd:dd") {
                return false;
            }
            // Log lines add milliseconds (`10:30:00.123`); DELIVER lines do not. Either the
            // fraction belongs to the time, or a '.' after it is the lab's own text.
            let fraction = match actual.get(8) {
                Some('.') => actual[9..]
                    .iter()
                    .take_while(|c| c.is_ascii_digit())
                    .count(),
                _ => 0,
            };
            (fraction > 0 && match_from(rest, &actual[9 + fraction..], words))
                || match_from(rest, &actual[8..], words)
        }
        Piece::Number => {
            let len = actual
                .iter()
                .take_while(|c| c.is_ascii_digit() || **c == '.')
                .count();
            actual.first().is_some_and(|c| c.is_ascii_digit())
                && (1..=len).any(|n| match_from(rest, &actual[n..], words))
        }
        Piece::Word(name) => {
            let len = actual.iter().take_while(|c| !c.is_whitespace()).count();
            (1..=len).any(|n| {
                words.push((name.clone(), actual[..n].iter().collect()));
                let matched = match_from(rest, &actual[n..], words);
                if !matched {
                    words.pop();
                }
                matched
            })
        }
    }
}

/// Whether `actual` starts with characters of the shape `d` (a digit) and literals.
fn fits(actual: &[char], shape: &str) -> bool {
    actual.len() >= shape.len()
        && shape.chars().zip(actual).all(|(want, got)| match want {
            'd' => got.is_ascii_digit(),
            literal => literal == *got,
        })
}
