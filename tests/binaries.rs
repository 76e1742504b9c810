//! The three programs a student starts in three terminals, run for real: the `broker`
//! binary, `subscriber` printing `>> DELIVER ...`, and `publisher` fed through stdin or
//! flags. Each child is killed when its guard is dropped, and its output is shown when a
//! test fails.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::process::{Child, ChildStdout, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use common::{wait_until, Raw, TIMEOUT};

/// A running binary, killed on drop.
struct Running {
    child: Child,
}

impl Running {
    /// Waits for the program to exit by itself, failing the test after [`TIMEOUT`].
    fn exit_status(&mut self, what: &str) -> ExitStatus {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "{what}");
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Everything the program wrote to stderr, once it has closed it (by exiting).
    fn stderr_to_end(&mut self) -> String {
        let mut text = String::new();
        self.child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        text
    }
}

/// The real subscriber binary with `args`, talking to the broker at `addr`, with its
/// stdin, stdout and stderr piped to the test.
fn subscriber(addr: SocketAddr, args: &[&str]) -> Running {
    let child = Command::new(env!("CARGO_BIN_EXE_subscriber"))
        .args(args)
        .args(port_args(addr))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start subscriber");
    Running { child }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The real broker binary on a free port.
fn broker() -> (Running, SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_broker"))
        .args(["--port", "0", "--no-http"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start broker");
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(
        first.starts_with("pubsub-lab broker listening on 127.0.0.1:"),
        "{first}"
    );
    assert!(first.contains("connect with: nc 127.0.0.1 "), "{first}");
    assert!(
        !first.contains("live view"),
        "--no-http serves no web: {first}"
    );
    let port: u16 = first
        .split("127.0.0.1:")
        .nth(1)
        .and_then(|rest| rest.split(';').next())
        .and_then(|port| port.parse().ok())
        .unwrap_or_else(|| panic!("no port in {first:?}"));
    (Running { child }, SocketAddr::from(([127, 0, 0, 1], port)))
}

/// Lines of a child's stdout, arriving on a channel so reads can time out.
fn lines_of(stdout: ChildStdout) -> mpsc::Receiver<String> {
    let (send, receive) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if send.send(line).is_err() {
                break;
            }
        }
    });
    receive
}

/// Runs a program to its end with `stdin` as input, failing the test if it runs too long.
fn run_to_end(program: &str, args: &[String], stdin: &str) -> Output {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start program");
    // A program may end without reading its input (a publisher that refuses its id
    // before it reads a line): then the pipe is closed, and that is not the test's failure.
    let written = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    if let Err(error) = written {
        assert_eq!(error.kind(), std::io::ErrorKind::BrokenPipe, "{error}");
    }
    let deadline = Instant::now() + TIMEOUT;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{program} {args:?} did not finish within {TIMEOUT:?}");
        }
        thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().unwrap()
}

fn port_args(addr: SocketAddr) -> Vec<String> {
    vec!["--port".into(), addr.port().to_string()]
}

/// Polls the broker with TOPICS until `topic` has `count` subscribers.
fn wait_for_subscribers(addr: SocketAddr, topic: &str, count: usize) {
    let mut probe = Raw::connect(addr);
    wait_until(&format!("{topic} has {count} subscriber(s)"), || {
        probe.send("TOPICS\n");
        let mut found = 0;
        loop {
            let line = probe.line();
            if line == "END TOPICS" {
                return found == count;
            }
            if let Some(n) = line.strip_prefix(&format!("TOPICS {topic} ")) {
                found = n.parse().unwrap();
            }
        }
    });
}

#[test]
fn three_terminals_publisher_to_subscriber() {
    let (_broker, addr) = broker();
    let mut sub = subscriber(addr, &["sub1", "--topic", "weather", "--count", "2"]);
    let lines = lines_of(sub.child.stdout.take().unwrap());
    wait_for_subscribers(addr, "weather", 1);

    let mut args = vec!["pub1".to_string()];
    args.extend(port_args(addr));
    let out = run_to_end(
        env!("CARGO_BIN_EXE_publisher"),
        &args,
        "weather Rainy day ahead!\nweather  two  spaces\n",
    );
    assert!(
        out.status.success(),
        "publisher failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    for expected in ["Rainy day ahead!", "two  spaces"] {
        let line = lines
            .recv_timeout(TIMEOUT)
            .expect("the subscriber printed a delivery");
        let prefix = format!(">> DELIVER weather {expected} pub1 ");
        assert!(
            line.starts_with(&prefix),
            "{line:?} does not start with {prefix:?}"
        );
    }
    // --count 2: the subscriber exits by itself, successfully.
    let status = sub.exit_status("subscriber did not exit after --count");
    assert!(status.success());
}

#[test]
fn one_shot_publisher_and_typed_subscriber_commands() {
    let (_broker, addr) = broker();
    let mut sub = subscriber(addr, &["sub1"]);
    let mut typed = sub.child.stdin.take().unwrap();
    let lines = lines_of(sub.child.stdout.take().unwrap());
    typed.write_all(b"subscribe news\nping\n").unwrap();
    let pong = lines.recv_timeout(TIMEOUT).unwrap();
    assert!(
        pong.starts_with(">> PONG") && pong.contains("round trip"),
        "{pong}"
    );

    let mut args = vec!["pub1".to_string(), "--topic".into(), "news".into()];
    args.extend(port_args(addr));
    args.extend(["Big".to_string(), "news!".to_string()]);
    let out = run_to_end(env!("CARGO_BIN_EXE_publisher"), &args, "");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = lines.recv_timeout(TIMEOUT).unwrap();
    assert!(
        line.starts_with(">> DELIVER news Big news! pub1 "),
        "{line}"
    );

    typed.write_all(b"topics\n").unwrap();
    assert_eq!(lines.recv_timeout(TIMEOUT).unwrap(), ">> TOPICS news 1");
    assert_eq!(lines.recv_timeout(TIMEOUT).unwrap(), ">> END TOPICS");

    // A wrong command gets a usage hint on stderr and the subscriber carries on.
    typed.write_all(b"subscrbe oops\nquit\n").unwrap();
    let errors = sub.stderr_to_end();
    assert!(
        errors.contains("commands: subscribe <topic> | unsubscribe <topic>"),
        "{errors}"
    );
}

#[test]
fn ticker_publishes_every_interval_until_its_count() {
    let (_broker, addr) = broker();
    let mut sub = Raw::connect(addr);
    sub.send("SUBSCRIBE clock s\n");
    sub.sync();
    let mut args: Vec<String> = [
        "pub1", "--topic", "clock", "--every", "10ms", "--count", "3",
    ]
    .map(String::from)
    .to_vec();
    args.extend(port_args(addr));
    let out = run_to_end(env!("CARGO_BIN_EXE_publisher"), &args, "");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for _ in 0..3 {
        let line = sub.delivery();
        assert!(line.starts_with("DELIVER clock Event at "), "{line}");
    }
}

#[test]
fn a_client_with_no_broker_says_how_to_start_one() {
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    for program in [
        env!("CARGO_BIN_EXE_publisher"),
        env!("CARGO_BIN_EXE_subscriber"),
    ] {
        let mut args = vec!["me".to_string()];
        args.extend(port_args(free));
        let out = run_to_end(program, &args, "");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(
            stderr.contains(&format!("could not connect to {free}: connection refused. Is the broker running? Start it with: cargo run --bin broker -- --port {}", free.port())),
            "{stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[test]
fn a_second_broker_on_a_taken_port_explains_itself() {
    let (_broker, addr) = broker();
    let mut args = port_args(addr);
    args.push("--no-http".into());
    let out = run_to_end(env!("CARGO_BIN_EXE_broker"), &args, "");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("address already in use") && stderr.contains("--port"),
        "{stderr}"
    );
}

#[test]
fn bad_flags_get_clap_errors_not_a_panic() {
    let out = run_to_end(
        env!("CARGO_BIN_EXE_broker"),
        &["--port".into(), "ninety".into()],
        "",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("invalid value 'ninety' for '--port <PORT>'"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn the_subscriber_exits_non_zero_when_the_broker_goes_away() {
    let (broker, addr) = broker();
    let mut sub = subscriber(addr, &["sub1", "--topic", "t"]);
    wait_for_subscribers(addr, "t", 1);
    drop(broker);
    let status = sub.exit_status("the subscriber kept running without a broker");
    let stderr = sub.stderr_to_end();
    assert!(!status.success());
    assert!(stderr.contains("the broker went away"), "{stderr}");
}

#[test]
fn the_subscriber_ends_quietly_when_its_reader_goes_away() {
    let (_broker, addr) = broker();
    let mut sub = subscriber(addr, &["sub1", "--topic", "t"]);
    wait_for_subscribers(addr, "t", 1);
    // Like `subscriber | head -1`: read one line, then close the pipe.
    let mut stdout = BufReader::new(sub.child.stdout.take().unwrap());
    let mut publisher = Raw::connect(addr);
    publisher.send("PUBLISH t first p\n");
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    assert!(first.starts_with(">> DELIVER t first p "), "{first}");
    drop(stdout);
    publisher.send("PUBLISH t second p\nPUBLISH t third p\n");
    let status = sub.exit_status("the subscriber kept running with no reader");
    let stderr = sub.stderr_to_end();
    assert!(status.success(), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// The port goes first: after `--topic T`, every word is the message's.
fn publisher_args(addr: SocketAddr, args: &[&str]) -> Vec<String> {
    let mut all = port_args(addr);
    all.extend(args.iter().map(|a| a.to_string()));
    all
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// An id with a space can never be sent: the publisher says so before sending anything,
/// counts nothing as published, and fails.
#[test]
fn a_publisher_id_with_a_space_is_refused_before_anything_is_sent() {
    let (_broker, addr) = broker();
    let publisher = env!("CARGO_BIN_EXE_publisher");
    let out = run_to_end(
        publisher,
        &publisher_args(addr, &["two words"]),
        "weather hi\n",
    );
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("a publisher id must be one word, with no spaces or line breaks"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("published"),
        "nothing was published: {stderr}"
    );
    // With --every, the same mistake ends the run at once instead of repeating for ever.
    let args = publisher_args(addr, &["two words", "--topic", "clock", "--every", "10ms"]);
    let out = run_to_end(publisher, &args, "");
    assert!(!out.status.success(), "{}", text(&out.stderr));
}

/// A line that cannot be sent is reported and not counted, the others go, and the exit
/// status says that not everything was sent.
#[test]
fn lines_that_cannot_be_sent_are_not_counted_and_fail_the_run() {
    let (_broker, addr) = broker();
    let out = run_to_end(
        env!("CARGO_BIN_EXE_publisher"),
        &publisher_args(addr, &["pub1"]),
        "weather\nweather fine\n",
    );
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("not sent: write <topic> <message>"),
        "{stderr}"
    );
    assert!(stderr.contains("published 1 message(s)"), "{stderr}");
    assert!(stderr.contains("1 line(s) not sent"), "{stderr}");
}

/// Durations too large to represent, and settings that cannot work, are refused with a
/// message naming the flag, never a panic.
#[test]
fn impossible_durations_and_settings_are_refused_with_the_flag_named() {
    let cases: [(&str, &[&str], &str); 4] = [
        (
            env!("CARGO_BIN_EXE_publisher"),
            &["p", "--topic", "t", "--every", "1e30s"],
            "too long a duration",
        ),
        (
            env!("CARGO_BIN_EXE_publisher"),
            &["p", "--topic", "t", "--every", "0s"],
            "--every must be at least 1ms",
        ),
        (
            env!("CARGO_BIN_EXE_broker"),
            &["--port", "0", "--write-timeout", "1e30s"],
            "too long a duration",
        ),
        (
            env!("CARGO_BIN_EXE_broker"),
            &["--port", "0", "--write-timeout", "0"],
            "--write-timeout 0ms: must be at least 1ms",
        ),
    ];
    for (program, args, said) in cases {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let out = run_to_end(program, &args, "");
        let stderr = text(&out.stderr);
        assert!(!out.status.success(), "{args:?}: {stderr}");
        assert!(stderr.contains(said), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
    let out = run_to_end(
        env!("CARGO_BIN_EXE_broker"),
        &[
            "--port".into(),
            "0".into(),
            "--max-clients".into(),
            "0".into(),
        ],
        "",
    );
    assert!(text(&out.stderr).contains("--max-clients 0: must be at least 1"));
}

/// On a terminal, the publisher says what it waits for; fed from a pipe it stays quiet, so
/// scripts see only its results. The terminal is a real pseudo-terminal, made by
/// `script` (util-linux, on every Debian system).
#[test]
fn the_publisher_says_what_to_type_on_a_terminal_only() {
    let (_broker, addr) = broker();
    let publisher = env!("CARGO_BIN_EXE_publisher");
    let prompt = "type <topic> <message> lines; Ctrl-D to finish";
    let command = format!("{publisher} pub1 --port {}", addr.port());
    let on_terminal = run_to_end(
        "script",
        &["-qec".into(), command, "/dev/null".into()],
        "weather hi\n",
    );
    let shown = text(&on_terminal.stdout);
    assert!(shown.contains(&format!("as pub1; {prompt}")), "{shown}");
    assert!(shown.contains("published 1 message(s)"), "{shown}");
    let piped = run_to_end(publisher, &publisher_args(addr, &["pub1"]), "weather hi\n");
    assert!(
        !text(&piped.stderr).contains(prompt),
        "{}",
        text(&piped.stderr)
    );
}

/// `subscriber --topic 'home/#'` takes a filter, and `publisher --retain` leaves a message
/// that a subscriber started afterwards receives at once, with the original publisher.
#[test]
fn a_wildcard_subscriber_and_a_retained_publish() {
    let (_broker, addr) = broker();
    let out = run_to_end(
        env!("CARGO_BIN_EXE_publisher"),
        &publisher_args(
            addr,
            &[
                "sensor",
                "--topic",
                "home/kitchen/temp",
                "--retain",
                "21.5C",
            ],
        ),
        "",
    );
    assert!(
        out.status.success(),
        "publisher failed: {}",
        text(&out.stderr)
    );
    let mut sub = subscriber(addr, &["sub1", "--topic", "home/#", "--count", "2"]);
    let lines = lines_of(sub.child.stdout.take().unwrap());
    let kept = lines.recv_timeout(TIMEOUT).expect("the retained message");
    assert!(
        kept.starts_with(">> DELIVER home/kitchen/temp 21.5C sensor "),
        "{kept:?}"
    );
    wait_for_subscribers(addr, "home/#", 1);
    let out = run_to_end(
        env!("CARGO_BIN_EXE_publisher"),
        &publisher_args(addr, &["sensor", "--topic", "home/hall/light", "on"]),
        "",
    );
    assert!(
        out.status.success(),
        "publisher failed: {}",
        text(&out.stderr)
    );
    let live = lines.recv_timeout(TIMEOUT).expect("the live message");
    assert!(
        live.starts_with(">> DELIVER home/hall/light on sensor "),
        "{live:?}"
    );
    assert!(sub
        .exit_status("subscriber did not exit after --count")
        .success());
}

/// `subscriber --udp` and `publisher --udp`, as the UDP lab runs them: the subscriber
/// subscribes its address, the publisher's datagrams reach it (and a TCP subscriber), and
/// a publisher aimed at a port where nothing listens says so and fails.
#[test]
fn the_udp_publisher_reaches_the_udp_subscriber() {
    let broker = common::start_udp_broker(pubsub_lab::Config::default());
    let udp_port = broker.udp_addr().unwrap().port().to_string();
    let mut tcp = common::subscribed(broker.addr(), "news", "tcp");
    let mut sub = Running {
        child: Command::new(env!("CARGO_BIN_EXE_subscriber"))
            .args([
                "ear", "--udp", "--port", &udp_port, "--topic", "news", "--count", "2",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    };
    wait_until("the UDP subscriber holds its lease", || {
        broker.topic_counts() == [("news".to_string(), 2)]
    });
    let args: Vec<String> = [
        "pub1", "--udp", "--port", &udp_port, "--topic", "news", "--every", "10ms", "--count", "2",
        "over", "udp",
    ]
    .map(String::from)
    .to_vec();
    let out = run_to_end(env!("CARGO_BIN_EXE_publisher"), &args, "");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("published 2 message(s) as datagrams to 127.0.0.1:"),
        "{stderr}"
    );
    assert_eq!(tcp.delivery(), "DELIVER news over udp pub1");
    assert!(sub
        .exit_status("the UDP subscriber exits after 2 deliveries")
        .success());
    let mut printed = String::new();
    sub.child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut printed)
        .unwrap();
    assert_eq!(
        printed.matches(">> DELIVER news over udp pub1 ").count(),
        2,
        "{printed}"
    );
    assert!(sub.stderr_to_end().contains("subscribed to news over UDP"));

    // A UDP socket of ours that is closed: nothing listens on its port.
    let closed = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port().to_string();
    drop(closed);
    let args: Vec<String> = ["pub1", "--udp", "--port", &port, "--topic", "news", "hello"]
        .map(String::from)
        .to_vec();
    let out = run_to_end(env!("CARGO_BIN_EXE_publisher"), &args, "");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("connection refused"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// `--http-port 0` serves the web on a free port and the start line says where the live
/// view is; `--no-http` serves none; an `--http-port` that is taken is an error, not a
/// warning (only the default port is allowed to be taken).
#[test]
fn the_web_listener_follows_its_flags() {
    let child = Command::new(env!("CARGO_BIN_EXE_broker"))
        .args(["--port", "0", "--http-port", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start broker");
    let mut running = Running { child };
    let mut first = String::new();
    BufReader::new(running.child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let url = first
        .split("; live view: open ")
        .nth(1)
        .unwrap_or_else(|| panic!("no live view in {first:?}"))
        .trim_end();
    assert!(
        url.starts_with("http://127.0.0.1:") && url.ends_with('/'),
        "{url}"
    );
    let web: SocketAddr = url["http://".len()..url.len() - 1].parse().unwrap();
    let mut stream = std::net::TcpStream::connect(web).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    stream.write_all(b"GET /healthz HTTP/1.0\r\n\r\n").unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 200 OK") && answer.ends_with("\r\n\r\nok"),
        "{answer}"
    );

    let taken = web.port().to_string();
    let out = run_to_end(
        env!("CARGO_BIN_EXE_broker"),
        &[
            "--port".into(),
            "0".into(),
            "--http-port".into(),
            taken.clone(),
        ],
        "",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "could not listen on 127.0.0.1:{taken} for the web"
        )) && stderr.contains("--http-port"),
        "{stderr}"
    );
}

/// With every listener on, the start line names each once, in the order tools read it (the
/// TCP address up to the first `;`, the UDP port next, the live view last), and `--help`
/// lists every flag of the web and of UDP once.
#[test]
fn the_start_line_and_help_name_every_listener_once() {
    let child = Command::new(env!("CARGO_BIN_EXE_broker"))
        .args(["--port", "0", "--udp-port", "0", "--http-port", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start broker");
    let mut running = Running { child };
    let mut first = String::new();
    BufReader::new(running.child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let parts: Vec<&str> = first.trim_end().split("; ").collect();
    assert_eq!(parts.len(), 4, "{first}");
    assert!(
        parts[0].starts_with("pubsub-lab broker listening on 127.0.0.1:"),
        "{first}"
    );
    assert!(parts[1].starts_with("UDP on 127.0.0.1:"), "{first}");
    assert!(
        parts[2].starts_with("connect with: nc 127.0.0.1 "),
        "{first}"
    );
    assert!(
        parts[3].starts_with("live view: open http://127.0.0.1:"),
        "{first}"
    );
    for once in ["UDP on", "live view", "connect with"] {
        assert_eq!(first.matches(once).count(), 1, "{once} in {first}");
    }

    let out = run_to_end(env!("CARGO_BIN_EXE_broker"), &["--help".to_string()], "");
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{help}");
    for flag in [
        "--http-port",
        "--no-http",
        "--http-timeout",
        "--udp-port",
        "--udp-topic",
        "--udp-lease",
        "--udp-max-subscribers",
    ] {
        let listed = help
            .lines()
            .filter(|line| line.trim_start().starts_with(flag))
            .count();
        assert_eq!(listed, 1, "{flag} in --help:\n{help}");
    }
}

/// A paused terminal (here, a stderr pipe nobody reads, with `RUST_LOG=debug` so that
/// every command logs) holds up no client: far more log than the pipe can take is written
/// meanwhile, and a new client's `PING` is still answered at once. The records that did
/// not fit are dropped and counted (see `cli/logging.rs`).
#[test]
fn a_terminal_that_stops_reading_delays_no_client() {
    let child = Command::new(env!("CARGO_BIN_EXE_broker"))
        .args(["--port", "0", "--no-http"])
        .env("RUST_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped()) // never read
        .spawn()
        .expect("start broker");
    let mut running = Running { child };
    let mut first = String::new();
    BufReader::new(running.child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let port: u16 = first
        .split("127.0.0.1:")
        .nth(1)
        .and_then(|rest| rest.split(';').next())
        .and_then(|port| port.parse().ok())
        .unwrap_or_else(|| panic!("no port in {first:?}"));
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    // Each line logs at debug: 5,000 lines are some 400 KB of log, six times what a pipe
    // holds.
    let mut chatty = Raw::connect(addr);
    chatty.send(&"PUBLISH lab/news a-message-to-log pub1\n".repeat(5_000));
    chatty.sync();
    let mut newcomer = Raw::connect(addr);
    newcomer.sync();
}
