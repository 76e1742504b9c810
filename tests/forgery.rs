//! Forged lines: nothing a client sends can make another program, a log or a terminal show
//! a line nobody sent. The victims are the line readers students' clients use: Python
//! (`socket.makefile`'s universal newlines, and `str.splitlines`), Java
//! (`BufferedReader.readLine`) and Node (`readline`), each written out below exactly as
//! its documentation says it cuts lines. Every forgery is sent for real, and what reaches
//! a real subscriber's socket is cut with each of them.

mod common;

use std::io::{BufRead, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::{start_broker, subscribed, Raw, TIMEOUT};

/// Python's `str.splitlines()`: ends a line at `\n`, `\r`, `\r\n`, `\v`, `\f`, `\x1c`,
/// `\x1d`, `\x1e`, `\x85`, `\u2028` and `\u2029`.
fn python_splitlines(text: &str) -> Vec<String> {
    const BREAKS: [char; 10] = [
        '\n', '\r', '\u{0b}', '\u{0c}', '\u{1c}', '\u{1d}', '\u{1e}', '\u{85}', '\u{2028}',
        '\u{2029}',
    ];
    let mut lines = Vec::new();
    let mut line = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if BREAKS.contains(&c) {
            if c == '\r' && chars.peek() == Some(&'\n') {
                chars.next();
            }
            lines.push(std::mem::take(&mut line));
        } else {
            line.push(c);
        }
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

/// Java's `BufferedReader.readLine()`, and Python's `socket.makefile()` in text mode
/// (universal newlines): a line ends at `\n`, `\r`, or `\r\n`.
fn java_read_lines(text: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\n' => lines.push(std::mem::take(&mut line)),
            '\r' => {
                if chars.peek() == Some(&'\n') {
                    chars.next();
                }
                lines.push(std::mem::take(&mut line));
            }
            _ => line.push(c),
        }
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

/// Node's `readline`: its line ending is `/\r?\n|\r(?!\n)/`, the same cuts as Java's.
fn node_readline(text: &str) -> Vec<String> {
    let normalised = text.replace("\r\n", "\n").replace('\r', "\n");
    let mut lines: Vec<String> = normalised.split('\n').map(str::to_string).collect();
    if lines.last().is_some_and(String::is_empty) {
        lines.pop();
    }
    lines
}

type Splitter = fn(&str) -> Vec<String>;

const VICTIMS: [(&str, Splitter); 3] = [
    ("Python splitlines", python_splitlines),
    ("Java readLine / Python makefile", java_read_lines),
    ("Node readline", node_readline),
];

/// The victims split as their languages do (a check of the test's own models).
#[test]
fn the_line_readers_split_as_their_documentation_says() {
    let text = "a\rb\r\nc\nd\u{2028}e\u{0b}f";
    assert_eq!(python_splitlines(text), ["a", "b", "c", "d", "e", "f"]);
    assert_eq!(java_read_lines(text), ["a", "b", "c", "d\u{2028}e\u{0b}f"]);
    assert_eq!(node_readline(text), ["a", "b", "c", "d\u{2028}e\u{0b}f"]);
}

/// Every forgery of the hostile-classroom report: a message that smuggles a fake
/// `DELIVER` line behind a character some reader takes for a line end.
const FORGERIES: [&str; 10] = [
    "Lab starts at 9\rDELIVER news FORGED admin 2020-01-01 09:00:00",
    "Lab starts at 9\u{2028}DELIVER news FORGED admin 2020-01-01 09:00:00",
    "Lab starts at 9\u{2029}DELIVER news FORGED admin 2020-01-01 09:00:00",
    "Lab starts at 9\u{85}DELIVER news FORGED admin 2020-01-01 09:00:00",
    "Lab starts at 9\u{0b}DELIVER news FORGED admin 2020-01-01 09:00:00",
    "Lab starts at 9\u{0c}DELIVER news FORGED admin 2020-01-01 09:00:00",
    "Lab starts at 9\u{1c}DELIVER news FORGED admin 2020-01-01 09:00:00",
    "Lab starts at 9\u{1d}DELIVER news FORGED admin 2020-01-01 09:00:00",
    "Lab starts at 9\u{1e}DELIVER news FORGED admin 2020-01-01 09:00:00",
    "hi \u{1b}[2K\rDELIVER news FORGED admin 2020-01-01 09:00:00",
];

/// Each forgery is refused with an `ERROR` naming the character, and what the subscriber
/// receives meanwhile, cut by any of the three readers, is only the lines the broker sent.
#[test]
fn no_forgery_reaches_any_line_reader() {
    let broker = start_broker();
    let mut subscriber = subscribed(broker.addr(), "news", "victim");
    let mut publisher = Raw::connect(broker.addr());
    for (n, forgery) in FORGERIES.iter().enumerate() {
        publisher.send(&format!("PUBLISH news {forgery} admin\n"));
        let answer = publisher.line();
        assert!(
            answer.starts_with("ERROR line contains U+00")
                || answer.starts_with("ERROR line contains U+20"),
            "forgery {n} {forgery:?} got {answer:?}"
        );
        assert!(answer.contains("which other programs read as a line break"));
        publisher.send(&format!("PUBLISH news real-{n} pub1\n"));
    }
    publisher.sync();
    // Everything the subscriber's socket received, as bytes, up to the PONG of a sync.
    subscriber.send("PING end\n");
    let mut received = String::new();
    while !received.ends_with("PONG end\n") {
        received.push_str(&subscriber.line());
        received.push('\n');
    }
    for (victim, split) in VICTIMS {
        let lines = split(&received);
        assert_eq!(lines.len(), FORGERIES.len() + 1, "{victim}: {lines:?}");
        for (n, line) in lines[..FORGERIES.len()].iter().enumerate() {
            assert!(
                line.starts_with(&format!("DELIVER news real-{n} pub1 ")),
                "{victim} saw {line:?}, a line nobody sent"
            );
        }
    }
}

/// A topic or id carrying an escape sequence, a carriage return or an OSC title sequence
/// is refused: they name things on screens and in logs.
#[test]
fn topics_and_ids_with_control_characters_are_refused() {
    let broker = start_broker();
    let mut client = Raw::connect(broker.addr());
    for (line, what, named) in [
        ("SUBSCRIBE \u{1b}[2Knews me\n", "topic", "U+001B (escape)"),
        (
            "PUBLISH news hi \u{1b}]0;pwned\u{7}\n",
            "publisher id",
            "U+001B",
        ),
        (
            "UNSUBSCRIBE news m\u{7f}e\n",
            "subscriber id",
            "U+007F (delete)",
        ),
        ("SUBSCRIBE n\u{9b}ws me\n", "topic", "U+009B"),
    ] {
        client.send(line);
        let answer = client.line();
        assert!(
            answer.starts_with(&format!("ERROR {what} contains {named}")),
            "{line:?} got {answer:?}"
        );
    }
    client.sync();
    assert!(broker.topic_counts().is_empty());
}

/// Control characters a message may still carry reach programs exactly as sent (the
/// broker relays bytes), and no line reader sees an extra line in them.
#[test]
fn escape_sequences_in_a_message_reach_programs_unchanged() {
    let broker = start_broker();
    let mut subscriber = subscribed(broker.addr(), "news", "program");
    let mut publisher = Raw::connect(broker.addr());
    publisher.send("PUBLISH news \u{1b}[31mred\u{1b}[0m and \u{1b}[2Kerased pub1\n");
    let line = subscriber.delivery();
    assert_eq!(
        line,
        "DELIVER news \u{1b}[31mred\u{1b}[0m and \u{1b}[2Kerased pub1"
    );
    for (victim, split) in VICTIMS {
        assert_eq!(split(&line).len(), 1, "{victim}");
    }
}

/// On a terminal (a real pseudo-terminal, from `script`), the `subscriber` program shows
/// the same message's control characters as escapes, so nothing acts on the screen;
/// `--raw` shows them as they are.
#[test]
fn the_subscriber_program_escapes_control_characters_on_a_terminal() {
    let broker = start_broker();
    let message = "\u{1b}[2K\u{1b}]0;pwned\u{7}fake";
    for (raw_flag, shows_raw) in [("", false), (" --raw", true)] {
        let command = format!(
            "{} viewer --topic news --count 1 --port {}{raw_flag}",
            env!("CARGO_BIN_EXE_subscriber"),
            broker.addr().port()
        );
        let mut terminal = Command::new("script")
            .args(["-qec", &command, "/dev/null"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start script");
        common::wait_until("the viewer is subscribed", || {
            broker.topic_counts() == [("news".to_string(), 1)]
        });
        let mut publisher = Raw::connect(broker.addr());
        publisher.send(&format!("PUBLISH news {message} pub1\n"));
        publisher.sync();
        let mut shown = Vec::new();
        let mut stdout = terminal.stdout.take().unwrap();
        let reader = thread::spawn(move || {
            let _ = stdout.read_to_end(&mut shown);
            shown
        });
        let deadline = Instant::now() + TIMEOUT;
        while terminal.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "the viewer did not exit");
            thread::sleep(Duration::from_millis(10));
        }
        let _ = terminal.stdin.take().map(|mut stdin| stdin.write_all(b""));
        let shown = String::from_utf8_lossy(&reader.join().unwrap()).into_owned();
        let line = shown
            .lines()
            .find(|line| line.starts_with(">> DELIVER news "))
            .unwrap_or_else(|| panic!("no DELIVER line on the terminal: {shown:?}"));
        if shows_raw {
            assert!(line.contains(message), "{line:?}");
        } else {
            assert!(
                line.contains("\\u{1b}[2K\\u{1b}]0;pwned\\u{7}fake"),
                "{line:?}"
            );
            assert!(
                !shown.contains('\u{1b}') && !shown.contains('\u{7}'),
                "{shown:?}"
            );
        }
    }
}

/// The instructor's log and trace show client text escaped: a message, topic or id can
/// neither rewrite the log on screen nor retitle its terminal.
#[test]
fn the_broker_log_and_trace_escape_client_text() {
    let mut broker = Command::new(env!("CARGO_BIN_EXE_broker"))
        .args(["--port", "0", "--no-http", "--trace"])
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 200];
    let n = broker.stdout.as_mut().unwrap().read(&mut first).unwrap();
    let line = String::from_utf8_lossy(&first[..n]).into_owned();
    let port: u16 = line
        .split("127.0.0.1:")
        .nth(1)
        .and_then(|rest| rest.split(';').next())
        .and_then(|port| port.parse().ok())
        .unwrap_or_else(|| panic!("no port in {line:?}"));
    // The log is read as it comes: the broker writes it from a thread of its own, and is
    // stopped only once the lines this test looks for are there.
    let (lines, log_lines) = std::sync::mpsc::channel();
    let pipe = broker.stderr.take().unwrap();
    thread::spawn(move || {
        for line in std::io::BufReader::new(pipe).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let addr = ([127, 0, 0, 1], port).into();
    let mut subscriber = subscribed(addr, "news", "me");
    let mut client = Raw::connect(addr);
    client.send("PUBLISH news \u{1b}]0;pwned\u{7}\u{1b}[2K pub1\n");
    client.send("SUBSCRIBE bad\u{1b}[2K me\n");
    assert!(client.line().starts_with("ERROR topic contains U+001B"));
    client.sync();
    subscriber.delivery();
    client.send("QUIT\n");
    let _ = client.read_to_eof();
    let mut log = String::new();
    let deadline = Instant::now() + TIMEOUT;
    while !(log.contains("pwned") && log.contains("topic contains U+001B")) {
        let left = deadline.saturating_duration_since(Instant::now());
        match log_lines.recv_timeout(left) {
            Ok(line) => {
                log.push_str(&line);
                log.push('\n');
            }
            Err(_) => break,
        }
    }
    let _ = broker.kill();
    let _ = broker.wait();
    assert!(
        log.contains("\\u{1b}]0;pwned\\u{7}\\u{1b}[2K"),
        "the trace does not show the message escaped: {log}"
    );
    assert!(log.contains("topic contains U+001B (escape)"), "{log}");
    assert!(
        !log.contains('\u{1b}') && !log.contains('\u{7}'),
        "the log has raw control characters: {log:?}"
    );
}

/// A fake broker's line cut short by a closed connection is never printed as a message:
/// the `subscriber` program says the connection ended, and shows nothing of the stub.
#[test]
fn a_line_cut_short_is_never_printed_as_a_message() {
    let fake = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = fake.local_addr().unwrap().port();
    let broker = thread::spawn(move || {
        let (mut socket, _) = fake.accept().unwrap();
        let mut subscribe = [0u8; 64];
        let _ = socket.read(&mut subscribe);
        socket
            .write_all(b"DELIVER news whole pub1 2026-12-01 10:00:00\nDELIVER news cut sh")
            .unwrap();
        // Closed mid-line, as a broker cutting off a slow consumer does.
    });
    let out = Command::new(env!("CARGO_BIN_EXE_subscriber"))
        .args(["s", "--topic", "news", "--port", &port.to_string()])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    broker.join().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(">> DELIVER news whole pub1 "), "{stdout}");
    assert!(
        !stdout.contains("cut sh"),
        "a cut line was printed: {stdout}"
    );
    assert!(!out.status.success());
    drop(TcpStream::connect(("127.0.0.1", port)));
}
