//! The server: the listeners a broker runs, each on an accept thread of its own, and what
//! they share.
//!
//! A [`Listener`] is one way in: a socket bound to an address, and the loop that accepts
//! from it and gives each connection a thread. The TCP line protocol on port 9000 is the
//! first ([`LineListener`]); the web (`web::WebListener`: HTTP and WebSocket) is another,
//! and others (UDP) are more types implementing the same trait,
//! so adding one never touches the accept loop of another. The broker starts each listener
//! on a thread named `accept-<name>` and, when it stops, sets the [`Server`]'s stop flag,
//! wakes every listener (a blocked `accept` does not look at flags), joins them, and then
//! closes every connection and joins their threads.
//!
//! Thread-per-connection is the simplest design there is: each thread's code reads top to
//! bottom, blocking where it waits. Its cost is a thread per client (a stack and a kernel
//! task), which is why `--max-clients` exists: without a limit, enough connections exhaust
//! the machine. Event-loop brokers (Redis, Mosquitto) and brokers on a runtime (NATS, on
//! Go's scheduler) serve many clients per thread instead; `bench conns` measures what our
//! choice costs.

use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crate::connections::{Close, Connections};
use crate::outbox::{Outbox, Rules};
use crate::peer::{ConnId, Peer};
use crate::router::Router;
use crate::session;

/// Stack for each client thread. Rust's default is 2 MiB. A session never recurses and
/// keeps its buffers on the heap: the deepest call measured on a connection's thread is a
/// publisher's, about 10 KiB below the top of its stack. A quarter of a megabyte leaves
/// room twenty-five times over for the paths nobody measured (a hook's own code, a panic's
/// backtrace), and ten thousand threads then reserve 2.5 GB of address space instead of
/// 20 GB.
///
/// Only the pages a thread touches cost memory, and a page touched once stays: an idle
/// connection costs the deepest call that ever ran on its thread. For the common idle
/// client (`SUBSCRIBE`, `PING`, then nothing) that call is the registry's insert of its
/// new topic and the `malloc` in it: 7,870 bytes below the top for most connections and
/// 8,070 for the deepest in a hundred, of which 4,608 are glibc's thread descriptor and
/// thread-local storage. That is inside two 4 KiB pages, with a margin for `malloc`
/// itself, which goes 250 bytes deeper when its arena must grow during that insert.
///
/// It took work to get there. The path was 9,200 bytes, three pages, and `bench conns
/// --conns 2000` measured 14.9 KiB per idle connection. What brought it in: the command
/// handlers, the JSON dialect, the subscribe hooks and other rare work are calls of their
/// own (`#[inline(never)]`: an inlined function's locals widen its caller's stack frame),
/// the session's `Publisher` is boxed, the read buffer kept in the reader is 64 bytes, and
/// the `connected from` line is logged by the accepting thread. It was then 8,040 bytes,
/// with so little margin that one connection in forty (those whose `malloc` grew its arena
/// just then) still reached a third page; the registry's topics are boxed now (see
/// `Inner::topics` in `registry.rs`), and three in five thousand do. `bench conns`
/// measures 10.5 KiB per idle connection. A change that deepens that path by a couple of
/// hundred bytes shows up there as 4 KiB more per connection. (Measured by reading each thread's
/// stack through `/proc/<pid>/mem` for its lowest written byte, finding the code that
/// wrote it with a gdb watchpoint, and each frame's size along that path from gdb's
/// `frame apply all p $sp` at a breakpoint on `malloc`.)
pub(crate) const CLIENT_STACK_SIZE: usize = 256 * 1024;

/// How long the accept loop pauses after `accept` fails (for example when the process is
/// out of file descriptors), so it neither spins at full speed nor gives up.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// What every thread of one broker shares.
pub(crate) struct Server {
    pub(crate) router: Arc<Router>,
    pub(crate) connections: Arc<Connections>,
    /// What every TCP subscriber's outbox shares: the write timeout and the backlog limit.
    pub(crate) outbox_rules: Arc<Rules>,
    stopping: AtomicBool,
    /// The number of the next connection, for every listener: `#1`, `#2`, … in the logs.
    next_conn: AtomicU64,
}

impl Server {
    pub(crate) fn new(router: Arc<Router>) -> Server {
        let config = router.config();
        let connections = Connections::new(
            config.max_clients,
            config.max_clients_per_ip,
            Arc::clone(router.stats()),
        );
        let outbox_rules = Arc::new(Rules {
            write_timeout: config.write_timeout,
            max_pending_bytes: config.max_pending_bytes,
            stats: Arc::clone(router.stats()),
        });
        Server {
            router,
            connections,
            outbox_rules,
            stopping: AtomicBool::new(false),
            next_conn: AtomicU64::new(1),
        }
    }

    /// Whether the broker is stopping: accept loops end when they see it.
    pub(crate) fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    pub(crate) fn set_stopping(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    pub(crate) fn next_conn(&self) -> ConnId {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }
}

/// One way into the broker. See the module docs.
pub(crate) trait Listener: Send + 'static {
    /// A short name for its accept thread (`accept-line`) and the logs.
    fn name(&self) -> &'static str;

    /// The name of the thread [`serve`](Self::serve) runs on: `accept-<name>` unless the
    /// listener accepts nothing (a UDP port has no connections to accept).
    fn thread_name(&self) -> String {
        format!("accept-{}", self.name())
    }

    /// A function that wakes [`serve`](Self::serve) if it is blocked waiting, so that it
    /// sees the stop flag. Taken before the listener moves to its thread.
    fn waker(&self) -> io::Result<Box<dyn Fn() + Send>>;

    /// Accepts connections until the server is stopping.
    fn serve(self: Box<Self>, server: Arc<Server>);
}

/// A listener running on its accept thread.
pub(crate) struct Running {
    wake: Box<dyn Fn() + Send>,
    thread: JoinHandle<()>,
}

impl Running {
    /// Starts `listener` on a thread named `accept-<name>`.
    pub(crate) fn start(listener: Box<dyn Listener>, server: &Arc<Server>) -> io::Result<Running> {
        let wake = listener.waker()?;
        let server = Arc::clone(server);
        let thread = thread::Builder::new()
            .name(listener.thread_name())
            .spawn(move || listener.serve(server))?;
        Ok(Running { wake, thread })
    }

    /// Wakes the listener (the stop flag must be set already) and waits for it to end.
    pub(crate) fn stop(self) {
        (self.wake)();
        if self.thread.join().is_err() {
            log::error!("an accept thread panicked");
        }
    }

    /// Waits for the listener to end, which happens only when the broker stops.
    pub(crate) fn wait(self) {
        if self.thread.join().is_err() {
            log::error!("an accept thread panicked");
        }
    }
}

/// The TCP listener of the line protocol: one thread per connection, running `session.rs`.
pub(crate) struct LineListener {
    listener: TcpListener,
}

impl LineListener {
    pub(crate) fn new(listener: TcpListener) -> LineListener {
        LineListener { listener }
    }
}

impl Listener for LineListener {
    fn name(&self) -> &'static str {
        "line"
    }

    fn waker(&self) -> io::Result<Box<dyn Fn() + Send>> {
        // The accept loop is blocked in accept(): a connection of our own wakes it up so it
        // can see the flag. If that fails, the listener is already broken and its loop has
        // ended.
        let addr = reachable(self.listener.local_addr()?);
        Ok(Box::new(move || {
            let _ = TcpStream::connect(addr);
        }))
    }

    fn serve(self: Box<Self>, server: Arc<Server>) {
        for incoming in self.listener.incoming() {
            if server.is_stopping() {
                break;
            }
            match incoming {
                Ok(stream) => admit(&server, stream),
                Err(error) => back_off(&error),
            }
        }
    }
}

/// Gives a new line-protocol connection a slot and a thread, or tells it the broker is
/// full.
fn admit(server: &Arc<Server>, stream: TcpStream) {
    let conn = server.next_conn();
    let peer = match stream.peer_addr() {
        Ok(addr) => Peer::new(conn, addr),
        Err(error) => {
            log::debug!("#{conn} left before it could be served: {error}");
            return;
        }
    };
    let router = &server.router;
    let outbox = match Outbox::new(peer, stream, Arc::clone(&server.outbox_rules)) {
        Ok(outbox) => outbox,
        Err(error) => {
            log::debug!("#{conn} left before it could be served: {error}");
            return;
        }
    };
    let ip = outbox.peer().addr().ip();
    let closer = Arc::clone(&outbox) as Arc<dyn Close>;
    let slot = match server.connections.claim(conn, ip, closer) {
        Ok(slot) => slot,
        Err(refusal) => {
            server.connections.log_event(
                log::Level::Warn,
                format_args!("#{conn} from {ip} refused: {refusal}; {}", refusal.remedy()),
            );
            refuse(outbox.socket(), &format!("ERROR {refusal}\n"));
            return;
        }
    };
    // Logged here, not on the connection's thread: formatting an address runs deep, and
    // that thread's stack pages are what an idle connection costs (`CLIENT_STACK_SIZE`).
    server.connections.log_event(
        log::Level::Info,
        format_args!("#{conn} connected from {}", outbox.peer().addr()),
    );
    let thread_router = Arc::clone(router);
    let thread_outbox = Arc::clone(&outbox);
    let spawned = thread::Builder::new()
        .name(format!("client-{conn}"))
        .stack_size(CLIENT_STACK_SIZE)
        .spawn(move || session::serve(thread_router, thread_outbox, slot));
    match spawned {
        Ok(thread) => server.connections.adopt(thread),
        Err(error) => {
            // The closure, and the slot in it, were dropped: the slot is free again.
            log::error!("#{conn} could not get a thread: {error}; lower --max-clients");
            outbox.close();
        }
    }
}

/// Writes one line (or any short answer) to a connection that will not be served, and
/// closes it.
pub(crate) fn refuse(mut stream: &TcpStream, line: &str) {
    // A client that does not read must not block the accept loop: one short line fits in
    // any socket buffer, and this timeout covers the rest.
    let _ = stream.set_write_timeout(Some(Duration::from_millis(200)));
    let _ = stream.write_all(line.as_bytes());
    let _ = stream.shutdown(Shutdown::Write);
}

/// A wildcard listening address (`0.0.0.0`) cannot be connected to; its loopback can.
pub(crate) fn reachable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => (Ipv4Addr::LOCALHOST, addr.port()).into(),
        IpAddr::V6(ip) if ip.is_unspecified() => (Ipv6Addr::LOCALHOST, addr.port()).into(),
        _ => addr,
    }
}

/// After `accept` fails: say why and what to do, then pause briefly.
pub(crate) fn back_off(error: &io::Error) {
    // EMFILE (24) and ENFILE (23): the process or the system is out of file descriptors.
    // Every connection takes one, so this is how "too many clients" usually shows first.
    const EMFILE: i32 = 24;
    const ENFILE: i32 = 23;
    if matches!(error.raw_os_error(), Some(EMFILE) | Some(ENFILE)) {
        log::warn!(
            "cannot accept a connection: {error}. Raise the limit with `ulimit -n` \
             (or lower --max-clients); retrying in {} ms",
            ACCEPT_BACKOFF.as_millis()
        );
    } else {
        log::warn!(
            "cannot accept a connection: {error}; retrying in {} ms",
            ACCEPT_BACKOFF.as_millis()
        );
    }
    thread::sleep(ACCEPT_BACKOFF);
}
