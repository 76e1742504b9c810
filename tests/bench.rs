//! The benchmark cannot rot: every workload runs here at a tiny size through the real
//! `bench` binary, against the broker it starts, the relay, and a broker at an address.
//! The tests check that every message arrived in order and that the output has its shape;
//! they never check a speed, because this machine's speed is not ours to promise.

mod common;

use std::io::Read;
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// The longest one bench invocation may take here before the test fails.
const RUN_LIMIT: Duration = Duration::from_secs(90);

/// Runs `bench args...` to its end (killing it after [`RUN_LIMIT`]).
fn bench(args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_bench"))
        .args(args)
        .args(["--timeout", "20s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start bench");
    // Read both pipes on threads so a chatty child never blocks on a full pipe.
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = thread::spawn(move || {
        let mut text = Vec::new();
        let _ = stdout.read_to_end(&mut text);
        text
    });
    let err = thread::spawn(move || {
        let mut text = Vec::new();
        let _ = stderr.read_to_end(&mut text);
        text
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for bench") {
            break status;
        }
        if started.elapsed() > RUN_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("bench {args:?} ran longer than {RUN_LIMIT:?}");
        }
        thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

/// Runs bench with `--json`, requires success, and returns its `"kind":"run"` lines after
/// checking each is clean: nothing lost, nothing out of order, no timeout.
fn clean_runs(args: &[&str]) -> Vec<String> {
    let mut all = args.to_vec();
    all.push("--json");
    let output = bench(&all);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "bench {args:?} failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let runs: Vec<String> = stdout
        .lines()
        .filter(|line| line.starts_with("{\"kind\":\"run\""))
        .map(str::to_string)
        .collect();
    for run in &runs {
        assert!(run.ends_with('}'), "not one JSON object: {run}");
        for field in ["\"lost\":0,", "\"disorder\":0,", "\"timed_out\":false"] {
            assert!(run.contains(field), "{field} missing in {run}");
        }
    }
    runs
}

/// The value of a numeric field in a JSON line, or `None` if it is `null`.
fn number(line: &str, field: &str) -> Option<f64> {
    let key = format!("\"{field}\":");
    let start = line
        .find(&key)
        .unwrap_or_else(|| panic!("{field} in {line}"))
        + key.len();
    let value: String = line[start..]
        .chars()
        .take_while(|c| !matches!(c, ',' | '}'))
        .collect();
    value.parse().ok()
}

#[test]
fn fanout_delivers_every_message_to_every_subscriber() {
    let runs = clean_runs(&["fanout", "--subs", "3", "--msgs", "50"]);
    assert_eq!(runs.len(), 1);
    assert_eq!(number(&runs[0], "expected"), Some(150.0));
    assert_eq!(number(&runs[0], "delivered"), Some(150.0));
    assert!(number(&runs[0], "deliveries_per_second").is_some());
}

#[test]
fn fanin_keeps_each_publishers_order() {
    let runs = clean_runs(&["fanin", "--pubs", "3", "--msgs", "40"]);
    assert_eq!(number(&runs[0], "delivered"), Some(120.0));
}

#[test]
fn pairs_keep_their_topics_apart() {
    let runs = clean_runs(&["pairs", "--pairs", "3", "--msgs", "40", "--size", "200"]);
    assert_eq!(number(&runs[0], "delivered"), Some(120.0));
}

/// Every message to `room/<n>/temp` reaches every subscriber of `room/+/temp`, however many
/// other filters the broker holds; the relay, which has no wildcards, is refused.
#[test]
fn wildcard_delivers_through_the_filter_beside_other_filters() {
    let runs = clean_runs(&[
        "wildcard",
        "--subs",
        "3",
        "--msgs",
        "50",
        "--filters",
        "300",
    ]);
    assert_eq!(number(&runs[0], "delivered"), Some(150.0));
    assert!(runs[0].contains("300 filters"), "{}", runs[0]);
    let output = bench(&["wildcard", "--relay"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("the relay has no wildcards"), "{stderr}");
}

#[test]
fn latency_reports_percentiles_for_a_paced_run() {
    let runs = clean_runs(&["latency", "--subs", "2", "--rate", "400", "--msgs", "20"]);
    let run = &runs[0];
    assert_eq!(number(run, "delivered"), Some(40.0));
    let p50 = number(run, "p50").expect("a p50");
    let max = number(run, "max").expect("a max");
    assert!(p50 <= max, "{run}");
}

#[test]
fn conns_reads_the_brokers_memory_and_every_probe_arrives() {
    let runs = clean_runs(&["conns", "--conns", "30"]);
    let run = &runs[0];
    assert_eq!(number(run, "conns"), Some(30.0));
    assert_eq!(number(run, "delivered"), Some(100.0), "100 probes: {run}");
    assert!(number(run, "rss_kib_after").is_some(), "{run}");
}

/// HTTP publishes, one keep-alive connection, all answered 200 and all delivered.
#[test]
fn http_publishes_reach_their_subscriber() {
    let runs = clean_runs(&["http", "--msgs", "50"]);
    assert_eq!(number(&runs[0], "delivered"), Some(50.0));
    assert!(number(&runs[0], "deliveries_per_second").is_some());
}

/// WebSocket subscribers receive every message, in order.
#[test]
fn wsfanout_delivers_to_every_websocket_subscriber() {
    let runs = clean_runs(&["wsfanout", "--subs", "3", "--msgs", "50"]);
    assert_eq!(number(&runs[0], "delivered"), Some(150.0));
}

#[test]
fn the_relay_serves_every_workload_shape() {
    let runs = clean_runs(&[
        "suite", "--relay", "--msgs", "30", "--subs", "3", "--pubs", "2", "--pairs", "2", "--rate",
        "1000", "--conns", "10",
    ]);
    let workloads: Vec<&str> = ["fanout", "fanin", "pairs", "latency", "conns"]
        .into_iter()
        .filter(|w| {
            runs.iter()
                .any(|r| r.contains(&format!("\"workload\":\"{w}\"")))
        })
        .collect();
    assert_eq!(workloads.len(), 5, "{runs:?}");
    assert!(runs.iter().all(|r| r.contains("\"target\":\"relay\"")));
}

#[test]
fn compare_alternates_broker_and_relay_and_gives_ratios() {
    let output = bench(&[
        "fanin",
        "--compare",
        "--pubs",
        "2",
        "--msgs",
        "30",
        "--json",
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let targets: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("{\"kind\":\"run\""))
        .map(|l| {
            if l.contains("\"target\":\"relay\"") {
                "relay"
            } else {
                "broker"
            }
        })
        .collect();
    assert_eq!(
        targets,
        ["broker", "relay", "broker", "relay", "broker", "relay"]
    );
    let compare = stdout
        .lines()
        .find(|l| l.contains("\"kind\":\"compare\"") && l.contains("deliveries/s"))
        .expect("a comparison of deliveries/s");
    assert!(
        number(compare, "ratio").is_some_and(|r| r > 0.0),
        "{compare}"
    );
}

#[test]
fn a_broker_at_an_address_is_measured_without_memory_figures() {
    let broker = common::start_broker();
    let addr = broker.addr().to_string();
    let runs = clean_runs(&["fanout", "--addr", &addr, "--subs", "2", "--msgs", "20"]);
    assert_eq!(number(&runs[0], "delivered"), Some(40.0));
    let runs = clean_runs(&["conns", "--addr", &addr, "--conns", "5"]);
    assert_eq!(number(&runs[0], "rss_kib_per_conn"), None);
    broker.stop();
}

#[test]
fn the_table_has_a_header_and_a_row_per_run() {
    let output = bench(&["fanout", "--subs", "2", "--msgs", "10"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    let mut lines = stdout.lines().filter(|l| !l.starts_with('#'));
    let header = lines.next().expect("a header");
    for column in [
        "workload",
        "deliveries/s",
        "lost",
        "disorder",
        "p99",
        "KiB/conn",
    ] {
        assert!(header.contains(column), "{column} in {header}");
    }
    assert!(
        lines.next().is_some_and(|row| row.starts_with("fanout")),
        "{stdout}"
    );
}

/// CI's guard: fan-in and pairs alternately against another build (here the same one),
/// each ending in a verdict line that names the ratio; it needs the other build.
#[test]
fn guard_gives_a_verdict_per_workload_against_the_base() {
    let broker = env!("CARGO_BIN_EXE_broker");
    let output = bench(&[
        "guard",
        "--against",
        broker,
        "--rounds",
        "1",
        "--msgs",
        "200",
        "--pubs",
        "2",
        "--pairs",
        "2",
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for workload in ["fanin", "pairs"] {
        let verdict = stdout
            .lines()
            .find(|l| l.starts_with(&format!("guard: {workload} ")))
            .unwrap_or_else(|| panic!("no verdict for {workload} in:\n{stdout}"));
        assert!(verdict.contains("x the base: "), "{verdict}");
    }
    let alone = bench(&["guard"]);
    let stderr = String::from_utf8_lossy(&alone.stderr);
    assert!(!alone.status.success());
    assert!(stderr.contains("give --against"), "{stderr}");
}

#[test]
fn impossible_requests_get_a_clear_message_not_a_panic() {
    let output = bench(&["fanout", "--relay", "--addr", "127.0.0.1:1"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("--addr and --relay"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// After an edit to the library, `cargo run --bin bench` rebuilds the bench but not the
/// broker beside it: the bench must refuse to measure that old build, and say how to
/// rebuild it, rather than report the old code's figures. Here a bench sits beside a
/// "broker" whose dep-info names a source written after it.
#[test]
fn a_broker_older_than_its_sources_is_refused_with_the_command_to_rebuild_it() {
    use std::fs;
    use std::path::Path;
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("stale-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(dir.join("src")).unwrap();
    let bench = dir.join("bench");
    if fs::hard_link(env!("CARGO_BIN_EXE_bench"), &bench).is_err() {
        fs::copy(env!("CARGO_BIN_EXE_bench"), &bench).unwrap();
    }
    let broker = dir.join("broker");
    fs::write(
        &broker,
        "not a program: the bench must not get as far as starting it",
    )
    .unwrap();
    let source = dir.join("src/clock.rs");
    fs::write(
        dir.join("broker.d"),
        format!("{}: {}\n", broker.display(), source.display()),
    )
    .unwrap();
    let built = fs::metadata(&broker).unwrap().modified().unwrap();
    // File times tick coarsely (a few milliseconds): write until the source is newer.
    common::wait_until("the edited source is newer than the broker", || {
        fs::write(&source, "// edited after the build\n").unwrap();
        fs::metadata(&source).unwrap().modified().unwrap() > built
    });

    let output = Command::new(&bench)
        .args(["fanout", "--quick"])
        .output()
        .expect("run the copied bench");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let _ = fs::remove_dir_all(&dir);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("was built before your latest change to")
            && stderr.contains("src/clock.rs"),
        "the bench did not refuse the old broker, naming the newer source: {stderr}"
    );
    assert!(stderr.contains("`cargo build --bins`"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
