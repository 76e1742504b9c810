//! HTTP/1.1 requests read and responses written by hand (RFC 9112), with the limits a
//! server facing the network needs.
//!
//! An HTTP/1.1 request is text up to a blank line, then an optional body:
//!
//! ```text
//! POST /publish HTTP/1.1\r\n                      request line: method, target, version
//! Host: 127.0.0.1:8080\r\n                        header fields, `name: value`
//! Content-Type: application/json\r\n
//! Content-Length: 45\r\n                          how many bytes of body follow
//! \r\n                                            blank line: end of the head
//! {"topic": "weather", "message": "Rainy day"}    the body, exactly 45 bytes
//! ```
//!
//! Like TCP lines, a request may arrive in pieces or several at once (*pipelining*: a
//! client may send its next request before the answer to the first). So [`parse`] looks at
//! the bytes read so far and says one of three things: here is a complete request and how
//! many bytes it took ([`Parse::Complete`]); not complete yet, read more
//! ([`Parse::Incomplete`], a value, not an error); or this is not HTTP the server will take
//! ([`HttpError`], which becomes a `4xx` response). The request borrows its text from the
//! buffer, as `Command` borrows from its line: parsing copies nothing.
//!
//! The limits, and the status each earns: a head longer than [`MAX_HEAD_BYTES`] or with more
//! than [`MAX_HEADERS`] fields gets `431`, a request line that alone is too long `414`,
//! a body longer than the broker's line limit `413` (the body of a publish carries one
//! message, which a line would carry too), and a body sent in chunks (`Transfer-Encoding:
//! chunked`) `411 Length Required`: every client that publishes sends a `Content-Length`,
//! and a server that takes only that has one way to find where a body ends, not two
//! (two is how *request smuggling* starts: front end and back end disagreeing on it).
//!
//! A response is the same shape in the other direction; [`Response`] writes one.
//! Production servers (nginx, hyper with httparse) do the same parsing with more care for
//! speed, and also speak HTTP/2, which frames everything in binary instead.

use std::fmt;

/// The longest request head (request line and header fields) accepted: what nginx
/// allows by default. A browser sends well under 2 KiB.
pub const MAX_HEAD_BYTES: usize = 8 * 1024;

/// The most header fields one request may have. A browser sends about fifteen.
pub const MAX_HEADERS: usize = 64;

/// The two versions of HTTP/1 a request may speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// `HTTP/1.0`: the connection closes after each response, unless the client asks to
    /// keep it alive.
    Http10,
    /// `HTTP/1.1`: the connection stays open for more requests unless one side says
    /// `Connection: close`.
    Http11,
}

/// One request, borrowing its text from the bytes it was parsed from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request<'a> {
    /// `GET`, `POST`, ...: case-sensitive, as HTTP says.
    pub method: &'a str,
    /// The path part of the target: `/publish`.
    pub path: &'a str,
    /// What follows `?` in the target, without it; empty if there is none.
    pub query: &'a str,
    /// The version the client speaks.
    pub version: Version,
    /// Every header field, in order, names as the client wrote them.
    pub headers: Vec<(&'a str, &'a str)>,
    /// The body: `Content-Length` bytes, or none.
    pub body: &'a [u8],
}

impl<'a> Request<'a> {
    /// The value of the first header field called `name`, in any letter case.
    pub fn header(&self, name: &str) -> Option<&'a str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|&(_, value)| value)
    }

    /// Whether a comma-separated header field (`Connection: keep-alive, Upgrade`) holds
    /// `token`, in any letter case.
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .flat_map(|(_, value)| value.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }

    /// Whether the connection stays open after the response: HTTP/1.1 unless the client
    /// says `Connection: close`; HTTP/1.0 only if it says `Connection: keep-alive`.
    pub fn keep_alive(&self) -> bool {
        match self.version {
            Version::Http11 => !self.has_token("connection", "close"),
            Version::Http10 => self.has_token("connection", "keep-alive"),
        }
    }

    /// The media type of the body, lower case, without parameters: `application/json`
    /// for `Content-Type: application/json; charset=utf-8`.
    pub fn media_type(&self) -> Option<String> {
        let value = self.header("content-type")?;
        let media = value.split(';').next().unwrap_or_default().trim();
        Some(media.to_ascii_lowercase())
    }
}

/// What [`parse`] found in the bytes read so far.
#[derive(Debug, PartialEq, Eq)]
pub enum Parse<T> {
    /// A whole request, head and body, that took the first `len` bytes.
    Complete {
        /// The request.
        request: T,
        /// How many bytes it took: the next request starts there.
        len: usize,
    },
    /// Not a whole request yet: read more bytes and ask again.
    Incomplete,
}

/// Why a request is refused. Each has its status ([`status`](Self::status)) and its
/// `Display` is the body of the response, which says what to do instead. After any of
/// them the server closes the connection: it can no longer tell where the next request
/// would start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpError {
    /// `400 Bad Request`: not HTTP as RFC 9112 writes it. Holds what was wrong.
    BadRequest(&'static str),
    /// `414 URI Too Long`: the request line alone is longer than the head may be.
    UriTooLong,
    /// `431 Request Header Fields Too Large`: more than [`MAX_HEAD_BYTES`] of head, or
    /// more than [`MAX_HEADERS`] fields.
    HeadTooLarge,
    /// `413 Content Too Large`: the body is longer than the limit.
    BodyTooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// `411 Length Required`: a body in chunks, or any `Transfer-Encoding`.
    LengthRequired,
    /// `505 HTTP Version Not Supported`: `HTTP/2.0` and the like, in a text request line.
    VersionNotSupported,
}

impl HttpError {
    /// The status code of the response.
    pub fn status(&self) -> u16 {
        match self {
            HttpError::BadRequest(_) => 400,
            HttpError::UriTooLong => 414,
            HttpError::HeadTooLarge => 431,
            HttpError::BodyTooLarge { .. } => 413,
            HttpError::LengthRequired => 411,
            HttpError::VersionNotSupported => 505,
        }
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpError::BadRequest(why) => write!(f, "bad request: {why}"),
            HttpError::UriTooLong => write!(
                f,
                "request line longer than {MAX_HEAD_BYTES} bytes: use a shorter address"
            ),
            HttpError::HeadTooLarge => write!(
                f,
                "request head larger than {MAX_HEAD_BYTES} bytes or {MAX_HEADERS} header \
                 fields: send fewer or shorter headers"
            ),
            HttpError::BodyTooLarge { limit } => write!(
                f,
                "request body longer than {limit} bytes: send shorter messages"
            ),
            HttpError::LengthRequired => write!(
                f,
                "send the body with a Content-Length: bodies in chunks \
                 (Transfer-Encoding) are not supported"
            ),
            HttpError::VersionNotSupported => {
                write!(f, "only HTTP/1.1 and HTTP/1.0 are spoken here")
            }
        }
    }
}

impl std::error::Error for HttpError {}

/// Looks for one whole request at the start of `bytes`; its body may be at most
/// `max_body` bytes. See the module docs for the three answers.
///
/// ```
/// use pubsub_lab::web::http::{parse, Parse};
/// let bytes = b"GET /topics?filter=news HTTP/1.1\r\nHost: x\r\n\r\nGET /st";
/// let Ok(Parse::Complete { request, len }) = parse(bytes, 1024) else { panic!() };
/// assert_eq!((request.method, request.path, request.query), ("GET", "/topics", "filter=news"));
/// assert_eq!(parse(&bytes[len..], 1024), Ok(Parse::Incomplete)); // the next one, half sent
/// ```
///
/// # Errors
/// An [`HttpError`] for a request the server will not take.
pub fn parse(bytes: &[u8], max_body: usize) -> Result<Parse<Request<'_>>, HttpError> {
    // A client may send empty lines between requests (after a body, say): skip them.
    let skipped = bytes
        .iter()
        .take_while(|&&b| b == b'\r' || b == b'\n')
        .count();
    let Some(head_len) = head_end(&bytes[skipped..]) else {
        let waiting = bytes.len() - skipped;
        if waiting > MAX_HEAD_BYTES {
            let has_line = bytes[skipped..skipped + MAX_HEAD_BYTES].contains(&b'\n');
            return Err(if has_line {
                HttpError::HeadTooLarge
            } else {
                HttpError::UriTooLong
            });
        }
        return Ok(Parse::Incomplete);
    };
    if head_len > MAX_HEAD_BYTES {
        return Err(HttpError::HeadTooLarge);
    }
    let head = std::str::from_utf8(&bytes[skipped..skipped + head_len])
        .map_err(|_| HttpError::BadRequest("the request head is not UTF-8 text"))?;
    let mut lines = head
        .split('\n')
        .map(|line| line.strip_suffix('\r').unwrap_or(line));
    let (method, path, query, version) = request_line(lines.next().unwrap_or_default())?;
    let mut headers = Vec::new();
    for line in lines.take_while(|line| !line.is_empty()) {
        if headers.len() == MAX_HEADERS {
            return Err(HttpError::HeadTooLarge);
        }
        headers.push(header_field(line)?);
    }
    let mut request = Request {
        method,
        path,
        query,
        version,
        headers,
        body: &[],
    };
    let body_len = body_length(&request, max_body)?;
    let start = skipped + head_len;
    if bytes.len() - start < body_len {
        return Ok(Parse::Incomplete);
    }
    request.body = &bytes[start..start + body_len];
    Ok(Parse::Complete {
        request,
        len: start + body_len,
    })
}

/// Where the head ends: just after its blank line (`\r\n\r\n`, or a bare `\n\n`, which RFC
/// 9112 lets a server accept). `None` if the blank line has not arrived.
fn head_end(bytes: &[u8]) -> Option<usize> {
    let mut at = 0;
    while let Some(offset) = bytes[at..].iter().position(|&b| b == b'\n') {
        let after = at + offset + 1;
        match &bytes[after..] {
            [b'\n', ..] => return Some(after + 1),
            [b'\r', b'\n', ..] => return Some(after + 2),
            _ => at = after,
        }
    }
    None
}

/// `METHOD /target HTTP/1.1`, single spaces between, as RFC 9112 writes it.
fn request_line(line: &str) -> Result<(&str, &str, &str, Version), HttpError> {
    const SHAPE: &str = "the request line must be METHOD /path HTTP/1.1";
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HttpError::BadRequest(SHAPE));
    };
    if method.is_empty() || !method.bytes().all(is_token_byte) {
        return Err(HttpError::BadRequest(SHAPE));
    }
    if !target.starts_with('/') || target.bytes().any(|b| b.is_ascii_control()) {
        return Err(HttpError::BadRequest(
            "the target must be a path starting with /",
        ));
    }
    let version = match version {
        "HTTP/1.1" => Version::Http11,
        "HTTP/1.0" => Version::Http10,
        v if v.len() == 8 && v.starts_with("HTTP/") && v.as_bytes()[6] == b'.' => {
            return Err(HttpError::VersionNotSupported)
        }
        _ => return Err(HttpError::BadRequest(SHAPE)),
    };
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    Ok((method, path, query, version))
}

/// `Name: value`: no space before the colon, optional spaces around the value.
fn header_field(line: &str) -> Result<(&str, &str), HttpError> {
    if line.starts_with([' ', '\t']) {
        // "Obsolete line folding": a header continued on the next line. RFC 9112 lets a
        // server refuse it, and nothing modern sends it.
        return Err(HttpError::BadRequest(
            "header fields may not be folded over lines",
        ));
    }
    let (name, value) = line
        .split_once(':')
        .ok_or(HttpError::BadRequest("a header field must be Name: value"))?;
    if name.is_empty() || !name.bytes().all(is_token_byte) {
        return Err(HttpError::BadRequest(
            "a header field name must be one word, right before its colon",
        ));
    }
    let value = value.trim_matches([' ', '\t']);
    if value.bytes().any(|b| b.is_ascii_control() && b != b'\t') {
        return Err(HttpError::BadRequest(
            "a header field value may not hold control characters",
        ));
    }
    Ok((name, value))
}

/// How long the body is: what `Content-Length` says, within `max_body`; 0 without one.
fn body_length(request: &Request<'_>, max_body: usize) -> Result<usize, HttpError> {
    if request.header("transfer-encoding").is_some() {
        if request.header("content-length").is_some() {
            // Two ways to find where the body ends, which may disagree: refuse outright.
            return Err(HttpError::BadRequest(
                "give Content-Length or Transfer-Encoding, not both",
            ));
        }
        return Err(HttpError::LengthRequired);
    }
    if request.version == Version::Http11 {
        let hosts = request
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("host"))
            .count();
        if hosts != 1 {
            return Err(HttpError::BadRequest(
                "an HTTP/1.1 request must have exactly one Host header field",
            ));
        }
    }
    let mut length = None;
    for (name, value) in &request.headers {
        if !name.eq_ignore_ascii_case("content-length") {
            continue;
        }
        if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
            return Err(HttpError::BadRequest(
                "Content-Length must be a number of bytes",
            ));
        }
        if length.is_some_and(|seen| seen != *value) {
            return Err(HttpError::BadRequest("two different Content-Length values"));
        }
        length = Some(*value);
    }
    let Some(length) = length else {
        return Ok(0);
    };
    match length.parse::<usize>() {
        Ok(length) if length <= max_body => Ok(length),
        _ => Err(HttpError::BodyTooLarge { limit: max_body }),
    }
}

/// The characters of a *token* (a method, a header name): letters, digits and
/// ``!#$%&'*+-.^_`|~``.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The values of every `name=value` pair called `name` in a query string or a form body
/// (`application/x-www-form-urlencoded`), decoded: `+` is a space, `%2F` the byte 0x2F.
///
/// ```
/// use pubsub_lab::web::http::form_values;
/// let query = "topic=weather&topic=news%2F%23&message=Rainy+day";
/// assert_eq!(form_values(query, "topic"), Ok(vec!["weather".to_string(), "news/#".to_string()]));
/// assert_eq!(form_values(query, "message"), Ok(vec!["Rainy day".to_string()]));
/// ```
///
/// # Errors
/// A [`HttpError::BadRequest`] for a broken `%` escape or text that is not UTF-8.
pub fn form_values(form: &str, name: &str) -> Result<Vec<String>, HttpError> {
    let mut values = Vec::new();
    for pair in form.split('&').filter(|pair| !pair.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if percent_decode(key)? == name {
            values.push(percent_decode(value)?);
        }
    }
    Ok(values)
}

/// The first value called `name` in a form, if there is one. See [`form_values`].
///
/// # Errors
/// As [`form_values`].
pub fn form_value(form: &str, name: &str) -> Result<Option<String>, HttpError> {
    Ok(form_values(form, name)?.into_iter().next())
}

fn percent_decode(text: &str) -> Result<String, HttpError> {
    const BROKEN: HttpError =
        HttpError::BadRequest("a % in a form or query must be %XX, two hex digits");
    let mut bytes = Vec::with_capacity(text.len());
    let mut rest = text.as_bytes();
    while let Some((&b, tail)) = rest.split_first() {
        rest = tail;
        match b {
            b'+' => bytes.push(b' '),
            b'%' => {
                let hex = rest.get(..2).ok_or(BROKEN)?;
                let hex = std::str::from_utf8(hex).map_err(|_| BROKEN)?;
                bytes.push(u8::from_str_radix(hex, 16).map_err(|_| BROKEN)?);
                rest = &rest[2..];
            }
            _ => bytes.push(b),
        }
    }
    String::from_utf8(bytes)
        .map_err(|_| HttpError::BadRequest("a form or query value is not UTF-8 text"))
}

/// The reason phrase that goes with a status code in a status line.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        426 => "Upgrade Required",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

/// The `Content-Type` of plain text, as every text answer here is sent.
pub const TEXT: &str = "text/plain; charset=utf-8";

/// The `Content-Type` of JSON.
pub const JSON: &str = "application/json";

/// The `Content-Type` of the live view.
pub const HTML: &str = "text/html; charset=utf-8";

/// Prometheus's text exposition format, version 0.0.4 (see `metrics.rs`).
pub const METRICS: &str = "text/plain; version=0.0.4; charset=utf-8";

/// One response: status, header fields and body, written by [`write`](Self::write).
///
/// ```
/// use pubsub_lab::web::http::{Response, TEXT};
/// let mut out = Vec::new();
/// Response::new(404, TEXT, "Topic 'x' does not exist").write(&mut out, false);
/// let text = String::from_utf8(out).unwrap();
/// assert!(text.starts_with("HTTP/1.1 404 Not Found\r\n"));
/// assert!(text.contains("\r\nContent-Length: 24\r\n"));
/// assert!(text.ends_with("\r\n\r\nTopic 'x' does not exist"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code: 200, 404, ...
    pub status: u16,
    /// Header fields besides `Content-Type`, `Content-Length`, `Date` and `Connection`.
    pub headers: Vec<(&'static str, String)>,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// The body.
    pub body: Vec<u8>,
    /// Whether the connection closes after this response (`Connection: close`).
    pub close: bool,
}

impl Response {
    /// A response with this status, type and body, keeping the connection open.
    pub fn new(status: u16, content_type: &'static str, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            headers: Vec::new(),
            content_type,
            body: body.into(),
            close: false,
        }
    }

    /// Adds a header field.
    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Response {
        self.headers.push((name, value.into()));
        self
    }

    /// The answer to a refused request: its status, its reason as the body, and the
    /// connection closed after it.
    pub fn refusal(error: &HttpError) -> Response {
        Response {
            close: true,
            ..Response::new(error.status(), TEXT, error.to_string())
        }
    }

    /// Appends the response as bytes. `head_only` leaves the body out (the answer to a
    /// `HEAD` request), keeping its `Content-Length`.
    pub fn write(&self, out: &mut Vec<u8>, head_only: bool) {
        use std::io::Write;
        // Writing into a Vec cannot fail.
        let _ = write!(
            out,
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nDate: {}\r\n",
            self.status,
            reason_phrase(self.status),
            self.content_type,
            self.body.len(),
            chrono::Utc::now().format("%a, %d %b %Y %H:%M:%S GMT"),
        );
        if self.close {
            out.extend_from_slice(b"Connection: close\r\n");
        }
        for (name, value) in &self.headers {
            let _ = write!(out, "{name}: {value}\r\n");
        }
        out.extend_from_slice(b"\r\n");
        if !head_only {
            out.extend_from_slice(&self.body);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(bytes: &[u8]) -> (Request<'_>, usize) {
        match parse(bytes, 1024) {
            Ok(Parse::Complete { request, len }) => (request, len),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_request_with_a_body_parses_once_all_of_it_is_there() {
        let bytes = b"POST /publish HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 5\r\n\r\nhello";
        for cut in 0..bytes.len() {
            assert_eq!(
                parse(&bytes[..cut], 1024),
                Ok(Parse::Incomplete),
                "cut at {cut}"
            );
        }
        let (request, len) = complete(bytes);
        assert_eq!(len, bytes.len());
        assert_eq!(request.method, "POST");
        assert_eq!(request.body, b"hello");
        assert_eq!(request.header("CONTENT-TYPE"), Some("application/json"));
        assert_eq!(request.media_type().as_deref(), Some("application/json"));
        assert!(request.keep_alive());
    }

    #[test]
    fn pipelined_requests_come_out_one_at_a_time_and_blank_lines_between_are_skipped() {
        let bytes = b"GET /a HTTP/1.1\nHost: x\n\n\r\nGET /b?x=1 HTTP/1.0\r\n\r\n";
        let (first, len) = complete(bytes);
        assert_eq!(first.path, "/a");
        let (second, _) = complete(&bytes[len..]);
        assert_eq!((second.path, second.query), ("/b", "x=1"));
        assert_eq!(second.version, Version::Http10);
        assert!(!second.keep_alive());
    }

    #[test]
    fn connection_tokens_decide_keep_alive() {
        let (close, _) = complete(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Close\r\n\r\n");
        assert!(!close.keep_alive());
        let (old, _) = complete(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        assert!(old.keep_alive());
        let (upgrade, _) =
            complete(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, Upgrade\r\n\r\n");
        assert!(upgrade.has_token("connection", "upgrade"));
    }

    #[test]
    fn each_kind_of_bad_request_gets_its_status() {
        let long_line = format!("GET /{} HTTP/1.1\r\n", "a".repeat(MAX_HEAD_BYTES));
        let many = format!(
            "GET / HTTP/1.1\r\nHost: x\r\n{}\r\n",
            "X-A: 1\r\n".repeat(MAX_HEADERS)
        );
        let big_head = format!("GET / HTTP/1.1\r\nHost: x\r\nX: {}\r\n", "a".repeat(9000));
        let cases: Vec<(Vec<u8>, u16)> = vec![
            (b"GET /\r\n\r\n".to_vec(), 400),
            (b"GET  / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), 400),
            (b"G(T / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), 400),
            (b"GET x HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), 400),
            (b"GET / HTTP/2.0\r\n\r\n".to_vec(), 505),
            (b"GET / HTTP/1.1\r\n\r\n".to_vec(), 400),
            (b"GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n".to_vec(), 400),
            (b"GET / HTTP/1.1\r\nHost : x\r\n\r\n".to_vec(), 400),
            (b"GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n".to_vec(), 400),
            (b"GET / HTTP/1.1\r\nHost: x\r\nNoColon\r\n\r\n".to_vec(), 400),
            (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1x\r\n\r\n".to_vec(), 400),
            (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n".to_vec(), 400),
            (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1025\r\n\r\n".to_vec(), 413),
            (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n".to_vec(), 413),
            (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec(), 411),
            (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n".to_vec(), 400),
            (b"GET / HTTP/1.1\r\nHost: \xff\r\n\r\n".to_vec(), 400),
            (long_line.into_bytes(), 414),
            (many.into_bytes(), 431),
            (big_head.into_bytes(), 431),
        ];
        for (bytes, status) in cases {
            let got = parse(&bytes, 1024).map(|_| ()).unwrap_err();
            assert_eq!(
                got.status(),
                status,
                "{:?}: {got}",
                String::from_utf8_lossy(&bytes)
            );
        }
    }

    #[test]
    fn a_head_still_arriving_within_the_limit_is_incomplete_not_an_error() {
        let partial = format!("GET / HTTP/1.1\r\nHost: x\r\nX: {}", "a".repeat(8000));
        assert_eq!(parse(partial.as_bytes(), 1024), Ok(Parse::Incomplete));
    }

    #[test]
    fn forms_decode_plus_and_percent_escapes() {
        assert_eq!(
            form_value("a=1&message=caf%C3%A9+au+lait", "message"),
            Ok(Some("café au lait".to_string()))
        );
        assert_eq!(form_value("flag&x=", "flag"), Ok(Some(String::new())));
        assert_eq!(form_value("x=1", "y"), Ok(None));
        for broken in ["m=%", "m=%4", "m=%zz", "m=%ff"] {
            assert!(form_value(broken, "m").is_err(), "{broken}");
        }
    }

    #[test]
    fn a_head_response_keeps_the_length_and_drops_the_body() {
        let mut out = Vec::new();
        let response = Response {
            close: true,
            ..Response::new(200, TEXT, "ok")
        }
        .header("Allow", "GET");
        response.write(&mut out, true);
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("Content-Length: 2\r\n"));
        assert!(text.contains("Connection: close\r\nAllow: GET\r\n\r\n"));
        assert!(text.ends_with("\r\n\r\n"));
    }
}
