//! The labsheet is part of the test suite: every command a lab marks for replay is run
//! against a real broker on a free port and every output it promises is checked (timestamps
//! and ports as placeholders), every lab keeps the sections a student relies on, every
//! checkpoint question has an answer, and every source file and function a lab names still
//! exists. So a change to the broker that would make a lab wrong fails `cargo test`, with
//! the lab file and line in the message. The README's quick start is replayed the same way. The marking convention is explained in
//! `labsheet/README.md` and in `tests/labsheet/markdown.rs`.

mod common;
#[path = "labsheet/markdown.rs"]
mod markdown;
#[path = "labsheet/pattern.rs"]
mod pattern;
#[path = "labsheet/replay.rs"]
mod replay;

use std::fs;
use std::path::Path;
use std::sync::Mutex;

use markdown::Lab;

/// The labs, by file name, in order; each file name starts with its lab's number.
const LABS: [&str; 12] = [
    "01-first-contact.md",
    "02-inside-the-broker.md",
    "03-tcp-is-a-stream.md",
    "04-subscriptions.md",
    "05-slow-consumers.md",
    "06-measure-it.md",
    "07-topic-trees.md",
    "08-nothing-lost.md",
    "09-the-web.md",
    "10-datagrams-and-dialects.md",
    "11-many-brokers.md",
    "12-layers-on-layers.md",
];

/// One replay at a time, as a student does one lab after another on one machine. Replays
/// side by side would share two cores between one lab's flood and another's benchmark,
/// and a healthy subscriber could fall behind for want of a core, which no lab promises.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// A lab's number as its file name starts: `01`, `10`.
fn number_of(file: &str) -> &str {
    &file[..2]
}

fn replay_lab(file: &str) {
    replay_file(&Lab::load(file));
}

fn replay_file(lab: &Lab) {
    // A replay that failed (panicked) leaves the lock poisoned; the next one may still run.
    let _turn = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    match replay::replay(lab) {
        Ok(count) => assert!(count > 0, "{}: no block is marked for replay", lab.name),
        Err(failure) => panic!("\nthe labsheet no longer matches the code:\n{failure}\n"),
    }
}

/// The README's quick start (broker, subscriber, publisher, then `nc` by hand while the
/// subscriber still runs) shows what a reader who follows it sees.
#[test]
fn readme_quick_start_replays() {
    replay_file(&Lab::load_from_root("README.md"));
}

/// Lab 1 (broker, subscribers and publishers, nc by hand) runs as written.
#[test]
fn lab_01_first_contact_replays() {
    replay_lab(LABS[0]);
}

/// Lab 2 (the path of one PUBLISH, logs and the trace view) runs as written.
#[test]
fn lab_02_inside_the_broker_replays() {
    replay_lab(LABS[1]);
}

/// Lab 3 (half commands, two commands in one write) runs as written.
#[test]
fn lab_03_tcp_is_a_stream_replays() {
    replay_lab(LABS[2]);
}

/// Lab 4 (unsubscribe, disconnect, duplicate ids) runs as written.
#[test]
fn lab_04_subscriptions_replays() {
    replay_lab(LABS[3]);
}

/// Lab 5 (a stalled subscriber cut off after the write timeout) runs as written.
#[test]
fn lab_05_slow_consumers_replays() {
    replay_lab(LABS[4]);
}

/// Lab 6 (counters and the benchmark) runs as written.
#[test]
fn lab_06_measure_it_replays() {
    replay_lab(LABS[5]);
}

/// Lab 7 (wildcards, retained messages, `$SYS`, a restart) runs as written.
#[test]
fn lab_07_topic_trees_replays() {
    replay_lab(LABS[6]);
}

/// Lab 8 (a durable subscription away and back, acknowledgements, a takeover) runs as
/// written.
#[test]
fn lab_08_nothing_lost_replays() {
    replay_lab(LABS[7]);
}

/// Lab 9 (publishing with curl, the WebSocket handshake) runs as written.
#[test]
fn lab_09_the_web_replays() {
    if !common::require_tool(
        common::Tool::Program("curl"),
        "sudo apt-get install -y curl",
    ) {
        return;
    }
    replay_lab(LABS[8]);
}

/// Lab 10 (a UDP ticker, leases, the embedded classroom broker) runs as written.
#[test]
fn lab_10_datagrams_and_dialects_replays() {
    replay_lab(LABS[9]);
}

/// Lab 11 (a three-node NATS cluster, three bridged brokers, a node that dies) runs as
/// written, against real nats-servers.
#[test]
fn lab_11_many_brokers_replays() {
    if !common::require_tool(
        common::Tool::Program("nats-server"),
        "sudo apt-get install -y nats-server",
    ) || !common::require_tool(
        common::Tool::Program("curl"),
        "sudo apt-get install -y curl",
    ) {
        return;
    }
    replay_lab(LABS[10]);
}

/// Lab 12 (an Engine.IO session by hand with curl: the handshake, Socket.IO on top, a poll
/// that waits for a delivery, the heartbeat) runs as written.
#[test]
fn lab_12_layers_on_layers_replays() {
    if !common::require_tool(
        common::Tool::Program("curl"),
        "sudo apt-get install -y curl",
    ) {
        return;
    }
    replay_lab(LABS[11]);
}

/// Every lab has the parts the labsheet promises a student: objectives, time, what you
/// need, numbered steps, checkpoints, an exercise with its starter and check commands, and
/// ideas for going further.
#[test]
fn every_lab_has_the_required_sections() {
    let mut problems = Vec::new();
    for file in LABS {
        let lab = Lab::load(file);
        let number = number_of(file);
        let has_heading = |title: &str| {
            lab.text
                .lines()
                .filter_map(|l| l.strip_prefix("## "))
                .any(|heading| heading == title || heading.starts_with(&format!("{title}:")))
        };
        for title in [
            "Objectives",
            "What you need",
            "Steps",
            "Exercise",
            "Going further",
        ] {
            if !has_heading(title) {
                problems.push(format!("{}: no `## {title}` section", lab.name));
            }
        }
        if !lab
            .text
            .lines()
            .any(|l| l.starts_with("**Time:**") && l.contains("minutes"))
        {
            problems.push(format!("{}: no `**Time:** NN minutes` line", lab.name));
        }
        if !lab.text.lines().any(|l| l.starts_with("### 1.")) {
            problems.push(format!("{}: steps are not numbered `### 1. ...`", lab.name));
        }
        if checkpoints(&lab.text).is_empty() {
            problems.push(format!("{}: no `**Checkpoint N.**` question", lab.name));
        }
        for command in [
            format!("cargo run --bin labkit -- starter {number} --out ../lab{number}"),
            format!("cargo run --bin labkit -- check {number}"),
        ] {
            if !lab.text.contains(&command) {
                problems.push(format!(
                    "{}: the exercise does not show `{command}`",
                    lab.name
                ));
            }
        }
    }
    assert!(problems.is_empty(), "\n{}\n", problems.join("\n"));
}

/// The numbers of the `**Checkpoint N.**` questions in a lab.
fn checkpoints(text: &str) -> Vec<String> {
    text.match_indices("**Checkpoint ")
        .filter_map(|(at, found)| {
            let rest = &text[at + found.len()..];
            let number = rest.split(".**").next()?;
            (!number.is_empty() && number.chars().all(|c| c.is_ascii_digit() || c == '.'))
                .then(|| number.to_string())
        })
        .collect()
}

/// Each checkpoint question has an answer under `## Checkpoint N` in the instructor's
/// file, and the answers mention no checkpoint the lab does not have. (Skipped in a copy
/// without `labsheet/instructor/`, such as a student's starter.)
#[test]
fn every_checkpoint_has_an_answer() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("labsheet/instructor");
    if !root.exists() {
        // A copy handed out to students (a labkit starter) has no answers: nothing to check.
        return;
    }
    let mut problems = Vec::new();
    for file in LABS {
        let lab = Lab::load(file);
        let answers_file = format!("{}-answers.md", number_of(file));
        let Ok(answers) = fs::read_to_string(root.join(&answers_file)) else {
            problems.push(format!("labsheet/instructor/{answers_file} is missing"));
            continue;
        };
        let asked = checkpoints(&lab.text);
        let answered: Vec<String> = answers
            .lines()
            .filter_map(|l| l.strip_prefix("## Checkpoint "))
            .map(|n| n.trim().to_string())
            .collect();
        for n in &asked {
            if !answered.contains(n) {
                problems.push(format!(
                    "{}: checkpoint {n} has no `## Checkpoint {n}` in {answers_file}",
                    lab.name
                ));
            }
        }
        for n in &answered {
            if !asked.contains(n) {
                problems.push(format!(
                    "{answers_file}: answers checkpoint {n}, which {} does not ask",
                    lab.name
                ));
            }
        }
    }
    assert!(problems.is_empty(), "\n{}\n", problems.join("\n"));
}

/// Every `src/...` file a lab names exists, and every function it names in backticks
/// (`Type::function`, `module::function` or `function()`) is defined there: in a file
/// named on the same line if there is one. Renaming a function a lab teaches breaks this.
#[test]
fn every_source_file_and_function_a_lab_names_exists() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let sources = source_files(&root.join("src"));
    let mut problems = Vec::new();
    let mut checked = 0;
    for file in LABS {
        let lab = Lab::load(file);
        for (line, text) in lab.prose() {
            let spans = backtick_spans(text);
            let paths: Vec<&str> = spans
                .iter()
                .copied()
                .filter(|s| s.starts_with("src/") && s.ends_with(".rs"))
                .collect();
            for path in &paths {
                checked += 1;
                if !root.join(path).is_file() {
                    problems.push(format!(
                        "{}:{line}: names `{path}`, which does not exist",
                        lab.name
                    ));
                }
            }
            for span in &spans {
                let Some((owner, function)) = function_name(span) else {
                    continue;
                };
                if owner.as_deref().is_some_and(|o| STD_TYPES.contains(&o)) {
                    continue;
                }
                checked += 1;
                let candidates: Vec<&(String, String)> = sources
                    .iter()
                    .filter(|(path, _)| paths.is_empty() || paths.contains(&path.as_str()))
                    .filter(|(path, body)| match &owner {
                        None => true,
                        Some(owner) if owner.starts_with(char::is_uppercase) => {
                            [
                                format!("struct {owner}"),
                                format!("enum {owner}"),
                                format!("impl {owner}"),
                            ]
                            .iter()
                            .any(|d| body.contains(d.as_str()))
                                || body.contains(&format!("> {owner}<"))
                        }
                        Some(module) => {
                            path == &format!("src/{module}.rs")
                                || path.starts_with(&format!("src/{module}/"))
                                || path.ends_with(&format!("/{module}.rs"))
                        }
                    })
                    .collect();
                let defined = candidates.iter().any(|(_, body)| {
                    body.contains(&format!("fn {function}("))
                        || body.contains(&format!("fn {function}<"))
                });
                if !defined {
                    let place = if paths.is_empty() {
                        "src/".to_string()
                    } else {
                        paths.join(", ")
                    };
                    problems.push(format!(
                        "{}:{line}: names `{span}`, which is not defined in {place}",
                        lab.name
                    ));
                }
            }
        }
    }
    assert!(
        checked > 10,
        "the labs name almost no source: {checked} names checked"
    );
    assert!(problems.is_empty(), "\n{}\n", problems.join("\n"));
}

/// Lab 2's `ps -T` list is what `ps` shows: the threads of a `broker` started as the lab
/// starts it (the web included), with one subscriber and one idle connection; and once the
/// idle one leaves, `client-2` is gone, as the lab says. Read from `/proc`, where `ps`
/// reads them. (Compared as sets: `ps` lists threads in the order they started, and the
/// broker's timers may start after a quick test's first connection, never after a
/// student's.) Breaking it: rename a thread, or add one the lab does not show.
#[cfg(target_os = "linux")]
#[test]
fn lab_2_s_thread_list_is_what_ps_shows() {
    use std::io::BufRead;
    use std::process::{Command, Stdio};

    let lab = Lab::load(LABS[1]);
    let shown = ps_block_threads(&lab.text);
    assert!(
        shown.len() > 3,
        "{}: no `$ ps -T -p ...` block with threads: {shown:?}",
        lab.name
    );
    let mut broker = Command::new(env!("CARGO_BIN_EXE_broker"))
        .args(["--port", "0", "--http-port", "0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the broker");
    let mut first = String::new();
    std::io::BufReader::new(broker.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let port: u16 = first
        .split_once("listening on 127.0.0.1:")
        .and_then(|(_, rest)| rest.split(';').next())
        .and_then(|port| port.parse().ok())
        .unwrap_or_else(|| panic!("no port in the broker's first line: {first:?}"));
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let _a = common::subscribed(addr, "weather", "sub1");
    let mut b = common::Raw::connect(addr);
    b.sync();
    let threads = || {
        let mut names = broker_threads(broker.id());
        names.sort();
        names
    };
    let mut shown = shown;
    shown.sort();
    // The timers start beside the listeners, and may still be starting: wait for them
    // (for at most the tests' timeout), as a student's `ps` seconds later would.
    let deadline = std::time::Instant::now() + common::TIMEOUT;
    let mut listed = threads();
    while listed != shown && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
        listed = threads();
    }
    drop(b);
    common::wait_until("client-2 is gone", || {
        !threads().iter().any(|name| name == "client-2")
    });
    let after = threads();
    let _ = broker.kill();
    let _ = broker.wait();
    assert_eq!(
        listed, shown,
        "{}: the broker's threads are not the ones the lab's `ps -T` shows",
        lab.name
    );
    shown.retain(|name| name != "client-2");
    assert_eq!(after, shown, "after B left, only client-2 should be gone");
}

/// The thread names (the `CMD` column) of the first `$ ps -T -p ...` block in `text`.
fn ps_block_threads(text: &str) -> Vec<String> {
    text.lines()
        .skip_while(|line| !line.starts_with("$ ps -T -p "))
        .skip(2) // the command and the header
        .take_while(|line| !line.starts_with("```"))
        .filter_map(|line| line.split_whitespace().last().map(str::to_string))
        .collect()
}

/// The names of the threads of process `pid`.
#[cfg(target_os = "linux")]
fn broker_threads(pid: u32) -> Vec<String> {
    fs::read_dir(format!("/proc/{pid}/task"))
        .expect("the broker's threads in /proc")
        .flatten()
        .filter_map(|task| fs::read_to_string(task.path().join("comm")).ok())
        .map(|name| name.trim_end().to_string())
        .collect()
}

/// Placeholders match what changes from run to run, and nothing else.
#[test]
fn placeholders_match_loosely_and_text_exactly() {
    use pattern::matches;
    assert!(matches(
        "DELIVER weather Rainy day ahead! pub1 <date> <time>",
        "DELIVER weather Rainy day ahead! pub1 2025-03-14 10:30:00"
    ));
    assert!(matches(
        "<time> INFO  #<n> connected from 127.0.0.1:<port>",
        "10:30:00.123 INFO  #12 connected from 127.0.0.1:51234"
    ));
    assert!(matches(
        "expected SUBSCRIBE <topic> <subscriber_id>",
        "expected SUBSCRIBE <topic> <subscriber_id>"
    ));
    assert!(matches(
        ">> PONG   (round trip <ms> ms)",
        ">> PONG   (round trip 0.137 ms)"
    ));
    assert!(matches(
        "STATS uptime_seconds ...",
        "STATS uptime_seconds 3"
    ));
    assert!(!matches(
        "DELIVER weather hi pub1 <date> <time>",
        "DELIVER weather hi pub2 2025-03-14 10:30:00"
    ));
    assert!(!matches("<time> INFO  hello", "10:30 INFO  hello"));
    assert!(!matches("PONG", "PONG extra"));
    assert!(matches(
        "fanout  <rate>  20000  0",
        "fanout   1.2M      20000      0"
    ));
    assert!(!matches("fanout  20000", "fanout20000"));
    assert_eq!(
        pattern::captures(
            r#"0{"sid":"<sid>","upgrades":[]}"#,
            r#"0{"sid":"ab12","upgrades":[]}"#
        ),
        Some(vec![("sid".to_string(), "ab12".to_string())]),
        "a word placeholder keeps what it matched, for `sid=<sid>`"
    );
}

/// The replay really fails when a lab's promise is wrong, naming the file and line.
#[test]
fn a_wrong_promise_fails_with_the_file_and_line() {
    let text =
        "# Lab\n\n<!-- replay -->\n```text\n$ nc 127.0.0.1 9000\n> PING hello\nPONG goodbye\n```\n";
    let lab = Lab::parse("labsheet/99-example.md", text).unwrap();
    let failure = replay::replay(&lab).expect_err("a wrong output must fail");
    assert!(
        failure.starts_with("labsheet/99-example.md:7:"),
        "{failure}"
    );
    assert!(failure.contains("PONG hello"), "{failure}");

    let text = "<!-- replay -->\n```text\n$ printf 'PING a\\nPING b\\nQUIT\\n' | nc 127.0.0.1 9000\nPONG a\nBYE\n```\n";
    let lab = Lab::parse("labsheet/98-example.md", text).unwrap();
    let failure = replay::replay(&lab).expect_err("a missing output line must fail");
    assert!(
        failure.starts_with("labsheet/98-example.md:5:"),
        "{failure}"
    );

    let text =
        "<!-- replay -->\n```text\n$ printf 'PING a\\nQUIT\\n' | nc 127.0.0.1 9000\nPONG a\n```\n";
    let lab = Lab::parse("labsheet/97-example.md", text).unwrap();
    let failure = replay::replay(&lab).expect_err("output the lab leaves out must fail");
    assert!(failure.contains("BYE"), "{failure}");
}

/// Every `.rs` file under `dir`, as (`src/...` path, text).
fn source_files(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let relative = path.strip_prefix(env!("CARGO_MANIFEST_DIR")).unwrap();
                out.push((
                    relative.to_string_lossy().replace('\\', "/"),
                    fs::read_to_string(&path).unwrap(),
                ));
            }
        }
    }
    out
}

/// Types from the standard library and dependencies that labs name (`SystemTime::now`):
/// not ours to check.
const STD_TYPES: [&str; 8] = [
    "SystemTime",
    "Instant",
    "Duration",
    "Arc",
    "Vec",
    "String",
    "TcpStream",
    "Local",
];

fn backtick_spans(line: &str) -> Vec<&str> {
    line.split('`').skip(1).step_by(2).collect()
}

/// `Type::function`, `module::function` or `function()` (with or without the parentheses
/// after a path): the owner, if any, and the function.
fn function_name(span: &str) -> Option<(Option<String>, String)> {
    let is_ident =
        |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    let span = span.strip_suffix("()").map_or((span, false), |s| (s, true));
    let (text, called) = span;
    match text.rsplit_once("::") {
        Some((owner, function))
            if is_ident(owner)
                && is_ident(function)
                && function.starts_with(|c: char| c.is_ascii_lowercase()) =>
        {
            Some((Some(owner.to_string()), function.to_string()))
        }
        None if called && is_ident(text) && text.starts_with(|c: char| c.is_ascii_lowercase()) => {
            Some((None, text.to_string()))
        }
        _ => None,
    }
}
