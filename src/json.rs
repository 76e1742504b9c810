//! JSON, read and written by hand: the format of kn-sock's clients, of `POST /publish`, and
//! of `GET /topics` and `GET /stats`.
//!
//! JSON (RFC 8259) is small enough to read in one sitting: six kinds of value (`null`,
//! `true`/`false`, numbers, strings, arrays, objects), whitespace between tokens, and
//! strings whose only subtlety is their escapes. [`parse`] reads one value with a
//! recursive descent, one function per kind, with two limits that a parser facing the
//! network needs: nesting at most [`MAX_DEPTH`] deep (each level is a call, and a
//! thousand `[` must not overflow the stack), and every error a value that says where and
//! what. [`write_string`] writes a string with the escapes JSON requires.
//!
//! The one tricky part is `\u` escapes. JSON's `\uXXXX` names a UTF-16 code unit, so a
//! character beyond the first 65,536 (an emoji) is written as two: a *surrogate pair*,
//! `\ud83d\ude00` for 😀. The parser joins the pair back into one character, and refuses
//! a half of a pair on its own, which is not a character at all.

use std::fmt;

/// How deeply arrays and objects may nest. Our messages are one object deep; 32 is room
/// to spare, and far from a stack overflow.
pub const MAX_DEPTH: usize = 32;

/// A JSON value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `null`
    Null,
    /// `true` or `false`
    Bool(bool),
    /// A number, as a 64-bit float (which is all JSON promises).
    Number(f64),
    /// A string, its escapes resolved.
    String(String),
    /// `[ ... ]`
    Array(Vec<Value>),
    /// `{ ... }`, its members in the order they came.
    Object(Vec<(String, Value)>),
}

impl Value {
    /// The member `key` of an object (the first, if it is there twice).
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Object(members) => members.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The text of a string value.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(text) => Some(text),
            _ => None,
        }
    }

    /// The value of a boolean.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(value) => Some(*value),
            _ => None,
        }
    }

    /// What kind of value this is, for error messages: `a string`, `an object`.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Number(_) => "a number",
            Value::String(_) => "a string",
            Value::Array(_) => "an array",
            Value::Object(_) => "an object",
        }
    }
}

/// Why some text is not JSON: what was wrong, and at which byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonError {
    /// Where in the text, counted in bytes from 0.
    pub at: usize,
    /// What was wrong there.
    pub reason: &'static str,
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid JSON at byte {}: {}", self.at, self.reason)
    }
}

impl std::error::Error for JsonError {}

/// Parses `text` as one JSON value, with nothing but whitespace after it.
///
/// ```
/// use pubsub_lab::json::{parse, Value};
/// let value = parse(r#"{"action": "publish", "topic": "news/tech", "n": [1, 2.5e3]}"#)?;
/// assert_eq!(value.get("topic").and_then(Value::as_str), Some("news/tech"));
/// assert_eq!(parse(r#""caf\u00e9 \ud83d\ude00""#)?, Value::String("café 😀".into()));
/// assert!(parse("{\"a\": }").is_err());
/// # Ok::<(), pubsub_lab::json::JsonError>(())
/// ```
///
/// # Errors
/// A [`JsonError`] naming the first place the text stops being JSON.
pub fn parse(text: &str) -> Result<Value, JsonError> {
    let mut parser = Parser {
        bytes: text.as_bytes(),
        at: 0,
    };
    let value = parser.value(0)?;
    parser.skip_whitespace();
    if parser.at < parser.bytes.len() {
        return Err(parser.error("unexpected text after the value"));
    }
    Ok(value)
}

struct Parser<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Parser<'_> {
    fn error(&self, reason: &'static str) -> JsonError {
        JsonError {
            at: self.at,
            reason,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn skip_whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    fn expect(&mut self, byte: u8, reason: &'static str) -> Result<(), JsonError> {
        self.skip_whitespace();
        if self.peek() != Some(byte) {
            return Err(self.error(reason));
        }
        self.at += 1;
        Ok(())
    }

    fn value(&mut self, depth: usize) -> Result<Value, JsonError> {
        self.skip_whitespace();
        match self.peek() {
            None => Err(self.error("expected a value, found the end")),
            Some(b'{') => self.object(depth + 1),
            Some(b'[') => self.array(depth + 1),
            Some(b'"') => self.string().map(Value::String),
            Some(b't') => self.word("true", Value::Bool(true)),
            Some(b'f') => self.word("false", Value::Bool(false)),
            Some(b'n') => self.word("null", Value::Null),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) => Err(self.error("expected a value")),
        }
    }

    fn word(&mut self, word: &'static str, value: Value) -> Result<Value, JsonError> {
        if !self.bytes[self.at..].starts_with(word.as_bytes()) {
            return Err(self.error("expected true, false or null"));
        }
        self.at += word.len();
        Ok(value)
    }

    fn object(&mut self, depth: usize) -> Result<Value, JsonError> {
        if depth > MAX_DEPTH {
            return Err(self.error("nested too deep"));
        }
        self.at += 1; // {
        let mut members = Vec::new();
        self.skip_whitespace();
        if self.peek() == Some(b'}') {
            self.at += 1;
            return Ok(Value::Object(members));
        }
        loop {
            self.skip_whitespace();
            if self.peek() != Some(b'"') {
                return Err(self.error("expected a member name in quotes"));
            }
            let key = self.string()?;
            self.expect(b':', "expected ':' after a member name")?;
            let value = self.value(depth)?;
            members.push((key, value));
            self.skip_whitespace();
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b'}') => {
                    self.at += 1;
                    return Ok(Value::Object(members));
                }
                _ => return Err(self.error("expected ',' or '}'")),
            }
        }
    }

    fn array(&mut self, depth: usize) -> Result<Value, JsonError> {
        if depth > MAX_DEPTH {
            return Err(self.error("nested too deep"));
        }
        self.at += 1; // [
        let mut items = Vec::new();
        self.skip_whitespace();
        if self.peek() == Some(b']') {
            self.at += 1;
            return Ok(Value::Array(items));
        }
        loop {
            items.push(self.value(depth)?);
            self.skip_whitespace();
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b']') => {
                    self.at += 1;
                    return Ok(Value::Array(items));
                }
                _ => return Err(self.error("expected ',' or ']'")),
            }
        }
    }

    /// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`, checked, then read by Rust.
    fn number(&mut self) -> Result<Value, JsonError> {
        let start = self.at;
        let digits = |parser: &mut Self| {
            let from = parser.at;
            while matches!(parser.peek(), Some(b'0'..=b'9')) {
                parser.at += 1;
            }
            parser.at > from
        };
        if self.peek() == Some(b'-') {
            self.at += 1;
        }
        if self.peek() == Some(b'0') {
            self.at += 1;
        } else if !digits(self) {
            return Err(self.error("expected a digit"));
        }
        if self.peek() == Some(b'.') {
            self.at += 1;
            if !digits(self) {
                return Err(self.error("expected a digit after '.'"));
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.at += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.at += 1;
            }
            if !digits(self) {
                return Err(self.error("expected a digit in the exponent"));
            }
        }
        let text = std::str::from_utf8(&self.bytes[start..self.at]).unwrap_or_default();
        text.parse()
            .map(Value::Number)
            .map_err(|_| self.error("not a number"))
    }

    /// A string, from its opening quote to its closing one, escapes resolved.
    fn string(&mut self) -> Result<String, JsonError> {
        self.at += 1; // "
        let mut text = String::new();
        loop {
            // Copy the run of plain characters up to the next quote, backslash or control
            // character in one go: the input is UTF-8 already, and these are ASCII.
            let run = self.bytes[self.at..]
                .iter()
                .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
                .ok_or_else(|| self.error("a string that never ends"))?;
            let plain = &self.bytes[self.at..self.at + run];
            text.push_str(std::str::from_utf8(plain).map_err(|_| self.error("not UTF-8"))?);
            self.at += run;
            match self.bytes[self.at] {
                b'"' => {
                    self.at += 1;
                    return Ok(text);
                }
                b'\\' => {
                    self.at += 1;
                    text.push(self.escape()?);
                }
                _ => return Err(self.error("a control character inside a string: escape it")),
            }
        }
    }

    /// The character after a backslash (which has been read).
    fn escape(&mut self) -> Result<char, JsonError> {
        let Some(byte) = self.peek() else {
            return Err(self.error("a string that never ends"));
        };
        self.at += 1;
        Ok(match byte {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => return self.unicode_escape(),
            _ => {
                self.at -= 1;
                return Err(self.error("an unknown escape"));
            }
        })
    }

    /// `\uXXXX`, or a surrogate pair `\uD8XX\uDCXX` for a character beyond U+FFFF.
    fn unicode_escape(&mut self) -> Result<char, JsonError> {
        let first = self.hex4()?;
        let code = match first {
            0xd800..=0xdbff => {
                if !self.bytes[self.at..].starts_with(b"\\u") {
                    return Err(self.error("half a surrogate pair"));
                }
                self.at += 2;
                let second = self.hex4()?;
                if !(0xdc00..=0xdfff).contains(&second) {
                    return Err(self.error("half a surrogate pair"));
                }
                0x10000 + ((first - 0xd800) << 10) + (second - 0xdc00)
            }
            0xdc00..=0xdfff => return Err(self.error("half a surrogate pair")),
            _ => first,
        };
        char::from_u32(code).ok_or_else(|| self.error("not a character"))
    }

    fn hex4(&mut self) -> Result<u32, JsonError> {
        let digits = self
            .bytes
            .get(self.at..self.at + 4)
            .and_then(|four| std::str::from_utf8(four).ok())
            .filter(|four| four.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or_else(|| self.error("expected four hex digits after \\u"))?;
        self.at += 4;
        Ok(u32::from_str_radix(digits, 16).unwrap_or_default())
    }
}

/// Appends `text` as a JSON string, quotes included. Quotes, backslashes and control
/// characters are escaped; so are U+2028 and U+2029, which JSON allows raw but JavaScript
/// before ES2019 did not, and a browser may still meet them in a page.
///
/// ```
/// let mut out = String::new();
/// pubsub_lab::json::write_string(&mut out, "say \"hi\"\n\u{1b}");
/// assert_eq!(out, r#""say \"hi\"\n\u001b""#);
/// ```
pub fn write_string(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{0}'..='\u{1f}' | '\u{2028}' | '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            _ => out.push(c),
        }
    }
    out.push('"');
}

/// Appends `value` as JSON text: what [`parse`] reads, written back (members in their
/// order, whole numbers without a fraction, as [`ObjectWriter::number`] writes them).
///
/// ```
/// use pubsub_lab::json::{parse, write_value};
/// let text = r#"["message",1,"2",{"3":[true,null]}]"#;
/// let mut out = String::new();
/// write_value(&mut out, &parse(text).unwrap());
/// assert_eq!(out, text);
/// ```
pub fn write_value(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => write_number(out, *n),
        Value::String(text) => write_string(out, text),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(out, item);
            }
            out.push(']');
        }
        Value::Object(members) => {
            out.push('{');
            for (i, (key, item)) in members.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(out, key);
                out.push(':');
                write_value(out, item);
            }
            out.push('}');
        }
    }
}

/// A number, without a fraction when it is a whole one (`2`, not `2.0`).
fn write_number(out: &mut String, value: f64) {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        out.push_str(&format!("{}", value as i64));
    } else {
        out.push_str(&format!("{value}"));
    }
}

/// An object written member by member: `{"a":1,"b":"x"}`.
///
/// ```
/// let mut object = pubsub_lab::json::ObjectWriter::new();
/// object.string("topic", "news").number("subscribers", 2.0);
/// assert_eq!(object.finish(), r#"{"topic":"news","subscribers":2}"#);
/// ```
#[derive(Debug, Default)]
pub struct ObjectWriter {
    out: String,
}

impl ObjectWriter {
    /// An empty object.
    pub fn new() -> ObjectWriter {
        ObjectWriter::default()
    }

    fn key(&mut self, key: &str) -> &mut String {
        self.out.push(if self.out.is_empty() { '{' } else { ',' });
        write_string(&mut self.out, key);
        self.out.push(':');
        &mut self.out
    }

    /// Adds a string member.
    pub fn string(&mut self, key: &str, value: &str) -> &mut Self {
        let out = self.key(key);
        write_string(out, value);
        self
    }

    /// Adds a number member (written without a fraction when it is a whole number).
    pub fn number(&mut self, key: &str, value: f64) -> &mut Self {
        write_number(self.key(key), value);
        self
    }

    /// Adds a member whose value is JSON already written (an array, another object).
    pub fn raw(&mut self, key: &str, json: &str) -> &mut Self {
        self.key(key).push_str(json);
        self
    }

    /// The object's text.
    pub fn finish(&mut self) -> String {
        if self.out.is_empty() {
            self.out.push('{');
        }
        self.out.push('}');
        std::mem::take(&mut self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_of_value_parses() {
        assert_eq!(parse(" null "), Ok(Value::Null));
        assert_eq!(parse("true"), Ok(Value::Bool(true)));
        assert_eq!(parse("-12.5e-1"), Ok(Value::Number(-1.25)));
        assert_eq!(parse("0"), Ok(Value::Number(0.0)));
        assert_eq!(
            parse(r#"[1, "a", [], {}]"#),
            Ok(Value::Array(vec![
                Value::Number(1.0),
                Value::String("a".into()),
                Value::Array(vec![]),
                Value::Object(vec![])
            ]))
        );
        let object = parse(r#"{"a": {"b": [true]}}"#).unwrap();
        assert_eq!(
            object.get("a").and_then(|a| a.get("b")),
            Some(&Value::Array(vec![Value::Bool(true)]))
        );
    }

    #[test]
    fn escapes_and_surrogate_pairs_are_resolved() {
        assert_eq!(
            parse(r#""a\"b\\c\/d\b\f\n\r\t""#),
            Ok(Value::String("a\"b\\c/d\u{8}\u{c}\n\r\t".into()))
        );
        assert_eq!(parse(r#""\u00e9\u4e2d""#), Ok(Value::String("é中".into())));
        assert_eq!(parse(r#""\ud83d\ude00""#), Ok(Value::String("😀".into())));
        assert_eq!(parse("\"raw é 😀\""), Ok(Value::String("raw é 😀".into())));
    }

    #[test]
    fn malformed_text_is_an_error_that_says_where() {
        let cases = [
            ("", 0, "expected a value, found the end"),
            ("{", 1, "expected a member name in quotes"),
            (r#"{"a" 1}"#, 5, "expected ':' after a member name"),
            (r#"{"a": 1,}"#, 8, "expected a member name in quotes"),
            ("[1 2]", 3, "expected ',' or ']'"),
            ("01", 1, "unexpected text after the value"),
            ("1.", 2, "expected a digit after '.'"),
            ("\"abc", 1, "a string that never ends"),
            (
                "\"a\nb\"",
                2,
                "a control character inside a string: escape it",
            ),
            (r#""\x""#, 2, "an unknown escape"),
            (r#""\u12""#, 3, "expected four hex digits after \\u"),
            (r#""\ud83d""#, 7, "half a surrogate pair"),
            (r#""\ude00""#, 7, "half a surrogate pair"),
            ("tru", 0, "expected true, false or null"),
            ("{} x", 3, "unexpected text after the value"),
        ];
        for (text, at, reason) in cases {
            assert_eq!(parse(text), Err(JsonError { at, reason }), "{text:?}");
        }
    }

    #[test]
    fn nesting_is_limited() {
        let deep = "[".repeat(MAX_DEPTH) + &"]".repeat(MAX_DEPTH);
        assert!(parse(&deep).is_ok());
        let deeper = "[".repeat(MAX_DEPTH + 1) + &"]".repeat(MAX_DEPTH + 1);
        assert_eq!(parse(&deeper).unwrap_err().reason, "nested too deep");
        let attack = "[".repeat(100_000);
        assert_eq!(parse(&attack).unwrap_err().reason, "nested too deep");
    }

    #[test]
    fn written_strings_parse_back_to_themselves() {
        for text in [
            "",
            "plain",
            "q\"b\\",
            "\u{0}\u{1f}\u{7f}",
            "é 😀 \u{2028}",
            "a\r\nb",
        ] {
            let mut out = String::new();
            write_string(&mut out, text);
            assert_eq!(parse(&out), Ok(Value::String(text.to_string())), "{out}");
        }
        let mut object = ObjectWriter::new();
        object.string("t", "x").number("n", 2.5).raw("a", "[1]");
        let written = object.finish();
        assert_eq!(written, r#"{"t":"x","n":2.5,"a":[1]}"#);
        assert!(parse(&written).is_ok());
        assert_eq!(ObjectWriter::new().finish(), "{}");
    }
}
