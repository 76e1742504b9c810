//! `http`: publishes over HTTP, one request at a time on one keep-alive connection, as a
//! program using `requests.Session` or `curl` in a loop would; one TCP subscriber
//! receives them, checked for loss and order like every other run.
//!
//! Each publish is a whole round trip (request, the broker's handling, the `200`), so the
//! figure is the inverse of one round trip's time, not the broker's throughput: HTTP/1.1
//! without pipelining cannot have two publishes in flight on one connection. `bench
//! fanin` or a pipelining client would show more.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::AtomicU64;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use crate::measure::{nanos_since, write_publish};
use crate::report::{Outcome, Progress};
use crate::target::Target;
use crate::workloads::{open_subscribers, receive, spawn, topic_name, Via};

/// Runs `http`: `msgs` publishes of `size`-byte payloads, bounded by `timeout`.
pub fn run_http(
    target: &Target,
    msgs: u64,
    size: usize,
    timeout: Duration,
) -> Result<Outcome, String> {
    let web = target
        .web_addr
        .ok_or("the http workload needs a broker with the web")?;
    let base = Instant::now();
    let deadline = base + timeout;
    let mut progress = Progress::new(&format!("http on {}", target.label), base);
    let topic = topic_name(0);
    let reader = open_subscribers(
        target,
        std::slice::from_ref(&topic),
        Via::Lines,
        deadline,
        &mut progress,
    )
    .map_err(|(_, message)| message)?
    .pop()
    .ok_or("no subscriber")?;
    let arrived = Arc::new(AtomicU64::new(0));
    let (tally_tx, tally_rx) = mpsc::channel();
    let counter = Arc::clone(&arrived);
    let subscriber = spawn("bench-sub-0".to_string(), move || {
        let _ = tally_tx.send(receive(reader, 1, msgs, base, &counter));
    })?;

    let stream = TcpStream::connect(web).map_err(|e| format!("cannot connect to the web: {e}"))?;
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(timeout));
    let mut answers = BufReader::new(stream.try_clone().map_err(|e| e.to_string())?);
    let mut writer = stream;
    let start = Instant::now();
    let mut notes = Vec::new();
    let mut published = 0;
    let mut line = Vec::new();
    let mut request = Vec::new();
    while published < msgs {
        if Instant::now() >= deadline {
            notes.push("timed out: the figures are for what arrived".to_string());
            break;
        }
        // The payload is what the TCP workloads send, stamped for loss, order and latency.
        line.clear();
        write_publish(&mut line, &topic, 0, published, nanos_since(base), size);
        let payload = std::str::from_utf8(&line[8 + topic.len() + 1..line.len() - " pub0\n".len()])
            .expect("the stamp is ASCII");
        let body = format!(r#"{{"topic":"{topic}","message":"{payload}","publisher":"pub0"}}"#);
        request.clear();
        let _ = write!(
            request,
            "POST /publish HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        if let Err(error) = writer.write_all(&request) {
            notes.push(format!("the HTTP connection failed: {error}"));
            break;
        }
        match read_status(&mut answers) {
            Ok(200) => published += 1,
            Ok(status) => {
                notes.push(format!("publish {published} was answered {status}"));
                break;
            }
            Err(error) => {
                notes.push(format!("no answer to publish {published}: {error}"));
                break;
            }
        }
        if published % 1000 == 0 {
            progress.update(published, msgs, "publishes");
        }
    }
    let publishing = start.elapsed().as_secs_f64();
    progress.finish();
    let wait = deadline.saturating_duration_since(Instant::now());
    let tally = tally_rx.recv_timeout(wait);
    let timed_out = tally.is_err();
    if timed_out {
        let _ = writer.shutdown(std::net::Shutdown::Both);
    }
    let _ = subscriber.join();
    let tally = tally.unwrap_or_default();
    notes.push(format!(
        "{:.1} µs per publish, request to answer",
        publishing * 1e6 / published.max(1) as f64
    ));
    Ok(Outcome {
        workload: "http",
        setup: format!("1 keep-alive client, {msgs} JSON publishes, {size} B, 1 TCP sub"),
        target: target.label.clone(),
        published,
        expected: msgs,
        delivered: tally.received,
        disorder: tally.disorder,
        seconds: publishing,
        rate: (publishing > 0.0).then(|| published as f64 / publishing),
        latency: tally.latency.percentiles(),
        memory: None,
        timed_out,
        notes,
        lossy: false,
    })
}

/// Reads one response and returns its status, skipping its head and body.
fn read_status(answers: &mut BufReader<TcpStream>) -> io::Result<u16> {
    let mut line = String::new();
    answers.read_line(&mut line)?;
    let status = line
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("not HTTP: {line:?}")))?;
    let mut length = 0;
    loop {
        line.clear();
        if answers.read_line(&mut line)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let field = line.trim_end();
        if field.is_empty() {
            break;
        }
        if let Some(value) = field.strip_prefix("Content-Length: ") {
            length = value.parse().unwrap_or(0);
        }
    }
    let mut body = vec![0; length];
    answers.read_exact(&mut body)?;
    Ok(status)
}
