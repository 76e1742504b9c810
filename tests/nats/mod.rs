//! Real `nats-server` processes for the bridge's tests: on loopback, on ports the server
//! picks itself (`-p -1`, read back from its log), killed when dropped.
//!
//! `nats-server` comes from Debian's package (`apt-get install nats-server`), which
//! `.ci/run` installs where it is missing. A test that needs one starts with
//! `if !nats::installed() { return; }`, so it is skipped, and says so, where there is none.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

use crate::common::{find_program, require_tool, Tool, TIMEOUT};

/// A running `nats-server`.
pub struct NatsServer {
    child: Child,
    /// Where clients connect.
    pub port: u16,
    /// Where other servers of its cluster connect, if it is in one.
    pub route_port: Option<u16>,
    /// Its HTTP monitoring port (`/connz`, `/subsz`).
    pub monitor_port: u16,
    /// Its log, line by line, read by a thread of its own (so the pipe never fills).
    log: Receiver<String>,
    name: String,
}

/// How a server is started.
#[derive(Default, Clone)]
pub struct Options {
    /// The client port; `None` lets the server pick one.
    pub port: Option<u16>,
    /// Join a cluster: `Some(routes)` listens for routes (on a port it picks) and connects
    /// to each of `routes` (route ports of servers already running).
    pub cluster: Option<Vec<u16>>,
    /// The route port to listen on, to restart a cluster node where it was.
    pub route_port: Option<u16>,
    /// The server's name in the logs and the cluster.
    pub name: String,
}

/// Whether `nats-server` is here; if not, the calling test is skipped (see
/// [`require_tool`]).
pub fn installed() -> bool {
    require_tool(Tool::Program("nats-server"), INSTALL)
}

const INSTALL: &str = "sudo apt-get install -y nats-server";

impl NatsServer {
    /// A server alone, on a port it picks.
    pub fn start() -> NatsServer {
        NatsServer::start_with(Options {
            name: "solo".to_string(),
            ..Options::default()
        })
    }

    /// A server started with `options`, once it says it is ready.
    pub fn start_with(options: Options) -> NatsServer {
        let port = options.port.map_or("-1".to_string(), |p| p.to_string());
        let mut args = vec![
            "-a".to_string(),
            "127.0.0.1".to_string(),
            "-p".to_string(),
            port,
            "-m".to_string(),
            "-1".to_string(),
            "-n".to_string(),
            options.name.clone(),
        ];
        if let Some(routes) = &options.cluster {
            let route_port = options
                .route_port
                .map_or("-1".to_string(), |p| p.to_string());
            args.extend([
                "--cluster".to_string(),
                format!("nats://127.0.0.1:{route_port}"),
                "--cluster_name".to_string(),
                "lab".to_string(),
            ]);
            if !routes.is_empty() {
                let urls: Vec<String> = routes
                    .iter()
                    .map(|p| format!("nats://127.0.0.1:{p}"))
                    .collect();
                args.extend(["--routes".to_string(), urls.join(",")]);
            }
        }
        let executable = find_program("nats-server")
            .unwrap_or_else(|| panic!("nats-server is not installed: {INSTALL}"));
        let mut child = Command::new(executable)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start nats-server: {error}"));
        let stderr = child.stderr.take().unwrap();
        let (sender, log) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { return };
                if sender.send(line).is_err() {
                    return;
                }
            }
        });
        let mut server = NatsServer {
            child,
            port: 0,
            route_port: None,
            monitor_port: 0,
            log,
            name: options.name.clone(),
        };
        let after = |line: &str, marker: &str| -> Option<u16> {
            let (_, rest) = line.split_once(marker)?;
            rest.trim().rsplit_once(':')?.1.parse().ok()
        };
        let wants_routes = options.cluster.is_some();
        let deadline = Instant::now() + TIMEOUT;
        while server.port == 0
            || server.monitor_port == 0
            || (wants_routes && server.route_port.is_none())
        {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = server.log.recv_timeout(left).unwrap_or_else(|_| {
                panic!(
                    "nats-server {} did not start within {TIMEOUT:?}",
                    options.name
                )
            });
            if let Some(port) = after(&line, "Listening for client connections on") {
                server.port = port;
            } else if let Some(port) = after(&line, "Listening for route connections on") {
                server.route_port = Some(port);
            } else if let Some(port) = after(&line, "Starting http monitor on") {
                server.monitor_port = port;
            }
        }
        server
    }

    /// Three servers joined by routes, each knowing the first.
    pub fn cluster(size: usize) -> Vec<NatsServer> {
        let first = NatsServer::start_with(Options {
            cluster: Some(Vec::new()),
            name: "node1".to_string(),
            ..Options::default()
        });
        let seed = first.route_port.unwrap();
        let mut nodes = vec![first];
        for n in 2..=size {
            nodes.push(NatsServer::start_with(Options {
                cluster: Some(vec![seed]),
                name: format!("node{n}"),
                ..Options::default()
            }));
        }
        for node in &nodes {
            node.wait_for_routes(size - 1);
        }
        nodes
    }

    /// `nats://127.0.0.1:<port>`
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Kills the server at once (SIGKILL: no goodbye to its clients, as in a crash) and
    /// waits for it to be gone.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// GET `path` from the monitoring port: its JSON body.
    pub fn monitor(&self, path: &str) -> String {
        let mut stream =
            TcpStream::connect(("127.0.0.1", self.monitor_port)).expect("monitor port");
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        response
            .split_once("\r\n\r\n")
            .map(|(_, body)| body.to_string())
            .unwrap_or_default()
    }

    /// Waits until the server has `count` routes to other servers.
    pub fn wait_for_routes(&self, count: usize) {
        let wanted = format!("\"num_routes\": {count}");
        crate::common::wait_until(&format!("{} has {count} routes", self.name), || {
            let body = self.monitor("/routez");
            thread::sleep(Duration::from_millis(20));
            body.contains(&wanted)
        });
    }

    /// The subjects this server's own clients are subscribed to, from `/connz?subs=1`,
    /// sorted (all connections together), the server's own `$SYS` ones left out.
    pub fn subscriptions(&self) -> Vec<String> {
        subjects_listed(&self.monitor("/connz?subs=1"))
    }

    /// The subjects the other servers of its cluster told it their clients want, from
    /// `/routez?subs=1`, sorted, `$SYS` ones left out.
    pub fn routed_subscriptions(&self) -> Vec<String> {
        subjects_listed(&self.monitor("/routez?subs=1"))
    }
}

/// Every subject in the `subscriptions_list` arrays of a monitoring page, sorted.
fn subjects_listed(body: &str) -> Vec<String> {
    let mut subjects = Vec::new();
    for list in body.split("\"subscriptions_list\": [").skip(1) {
        let list = list.split(']').next().unwrap_or("");
        for subject in list.split(',') {
            // Go's JSON writes > as \u003e.
            let subject = subject.trim().trim_matches('"').replace("\\u003e", ">");
            if !subject.is_empty() && !subject.starts_with('$') {
                subjects.push(subject);
            }
        }
    }
    subjects.sort();
    subjects
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A raw NATS client, as `nc` to port 4222 would be: for publishing from outside any
/// broker.
pub struct RawNats {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
}

impl RawNats {
    /// Connects, says CONNECT, and waits for the PONG to its PING.
    pub fn connect(server: &NatsServer) -> RawNats {
        let stream = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        let reader = BufReader::new(stream.try_clone().unwrap());
        let mut raw = RawNats { stream, reader };
        let info = raw.line();
        assert!(info.starts_with("INFO "), "{info}");
        raw.send(b"CONNECT {\"verbose\":false,\"headers\":true,\"protocol\":1}\r\n");
        raw.sync();
        raw
    }

    /// Writes raw bytes.
    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// One line, without `\r\n`.
    pub fn line(&mut self) -> String {
        let mut line = String::new();
        self.reader
            .read_line(&mut line)
            .expect("a line from nats-server");
        line.trim_end().to_string()
    }

    /// PING, and read up to the PONG (every line before was handled by the server).
    pub fn sync(&mut self) {
        self.send(b"PING\r\n");
        loop {
            match self.line().as_str() {
                "PONG" => return,
                "PING" => self.send(b"PONG\r\n"),
                other if other.starts_with("-ERR") => panic!("nats-server said {other}"),
                _ => {}
            }
        }
    }
}
