//! The speed-of-light relay: the least a thread-per-connection server must do to move
//! these messages, so the benchmark can say how close the broker comes to it.
//!
//! It has the broker's shape (a thread per connection, blocking `std::net` sockets, one
//! mutex per subscriber socket so two publishers never interleave their bytes) and none
//! of its work: no command parsing beyond finding line ends, no `DELIVER` formatting, no
//! timestamps, no limits, no write timeouts, no statistics, no logging.
//!
//! How it learns who is who, with the fewest possible decisions:
//!
//! * A connection reads lines. `SUBSCRIBE <topic> ...` makes it a subscriber of that topic;
//!   `PING <token>` is answered `PONG <token>` (so the bench synchronises with the relay
//!   exactly as with the broker); anything else is ignored.
//! * The first `PUBLISH <topic> ...` line makes the connection a publisher *of that topic*
//!   for good. From then on it stops looking at lines altogether: each `read` gives a chunk
//!   of bytes, the chunk is cut after its last `\n`, and those complete lines (starting with
//!   that first `PUBLISH`) go to every subscriber of the topic with one `write` each. The
//!   cut-off tail waits for the next read. Subscribers so receive the `PUBLISH` lines
//!   exactly as sent.
//!
//! The only shared state is a map from topic to its subscribers' sockets, looked up once per
//! chunk (not per message) with the same copy-on-write list as the broker's registry.
//! The relay runs until its process is killed: the bench starts one per run and kills it
//! afterwards, so its threads are never joined and it has no shutdown path at all.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use parking_lot::Mutex;

/// Stack of each connection's thread: the broker's size, so `conns` compares like with like.
const STACK_SIZE: usize = 256 * 1024;

/// A connection reads commands into a small buffer; a publisher's grows to this, the most
/// Linux hands out per read on loopback.
const COMMAND_BUFFER: usize = 512;
const PUBLISH_BUFFER: usize = 64 * 1024;

/// One connection's socket: read by its own thread, written by any publisher's thread.
/// Both use the one socket through `&TcpStream` (no duplicate descriptor), so a
/// connection costs one file descriptor.
struct Subscriber {
    id: u64,
    socket: TcpStream,
    /// Held while writing, so two publishers never interleave their bytes.
    writing: Mutex<()>,
}

impl Subscriber {
    fn send(&self, bytes: &[u8]) -> io::Result<()> {
        let _writing = self.writing.lock();
        (&self.socket).write_all(bytes)
    }
}

/// The subscribers of one topic at one moment.
type Subscribers = Arc<Vec<Arc<Subscriber>>>;

/// Topic to subscribers; each list is replaced, never changed in place, so a publisher
/// can write to its snapshot without holding the lock.
#[derive(Default)]
struct Topics {
    map: Mutex<HashMap<Vec<u8>, Subscribers>>,
}

impl Topics {
    fn subscribe(&self, topic: &[u8], subscriber: &Arc<Subscriber>) {
        let mut map = self.map.lock();
        let list = map.entry(topic.to_vec()).or_default();
        let mut new_list = Vec::clone(list);
        new_list.push(Arc::clone(subscriber));
        *list = Arc::new(new_list);
    }

    fn unsubscribe_all(&self, topics: &[Vec<u8>], id: u64) {
        let mut map = self.map.lock();
        for topic in topics {
            if let Some(list) = map.get_mut(topic) {
                let kept: Vec<_> = list.iter().filter(|s| s.id != id).cloned().collect();
                *list = Arc::new(kept);
            }
        }
    }

    fn subscribers(&self, topic: &[u8]) -> Option<Subscribers> {
        self.map.lock().get(topic).cloned()
    }
}

/// Listens on 127.0.0.1:`port` and relays until the process is killed. The first stdout
/// line says where it listens, like the broker's.
pub fn run(port: u16) -> Result<(), String> {
    let listener = TcpListener::bind(("127.0.0.1", port))
        .map_err(|e| format!("the relay cannot listen on 127.0.0.1:{port}: {e}"))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("cannot read the relay's address: {e}"))?;
    println!("pubsub-lab relay listening on {addr}; measure it with: bench fanout --addr {addr}");
    let _ = io::stdout().flush();
    let topics = Arc::new(Topics::default());
    let next_id = AtomicU64::new(1);
    for stream in listener.incoming() {
        match stream {
            Ok(stream) => {
                let topics = Arc::clone(&topics);
                let id = next_id.fetch_add(1, Ordering::Relaxed);
                let spawned = thread::Builder::new()
                    .name(format!("relay-{id}"))
                    .stack_size(STACK_SIZE)
                    .spawn(move || serve(stream, id, &topics));
                if let Err(error) = spawned {
                    eprintln!("relay: no thread for connection {id}: {error}");
                }
            }
            Err(error) => {
                eprintln!("relay: accept failed: {error}");
                thread::sleep(Duration::from_millis(100));
            }
        }
    }
    Ok(())
}

/// One connection, until it closes. Errors only end the connection.
fn serve(stream: TcpStream, id: u64, topics: &Topics) {
    let _ = stream.set_nodelay(true);
    let me = Arc::new(Subscriber {
        id,
        socket: stream,
        writing: Mutex::new(()),
    });
    let mut subscribed: Vec<Vec<u8>> = Vec::new();
    let _ = read_commands(&me, &mut subscribed, topics);
    topics.unsubscribe_all(&subscribed, id);
}

/// Reads lines until the connection closes or its first `PUBLISH`, after which it relays.
fn read_commands(
    me: &Arc<Subscriber>,
    subscribed: &mut Vec<Vec<u8>>,
    topics: &Topics,
) -> io::Result<()> {
    let mut buffer = vec![0; COMMAND_BUFFER];
    let mut end = 0;
    loop {
        let mut start = 0;
        while let Some(newline) = buffer[start..end].iter().position(|&b| b == b'\n') {
            let line = &buffer[start..start + newline];
            if let Some(rest) = line.strip_prefix(b"PUBLISH ") {
                let topic = first_word(rest).to_vec();
                buffer.copy_within(start..end, 0);
                return relay(&me.socket, &topic, buffer, end - start, topics);
            } else if let Some(rest) = line.strip_prefix(b"SUBSCRIBE ") {
                let topic = first_word(rest).to_vec();
                topics.subscribe(&topic, me);
                subscribed.push(topic);
            } else if let Some(token) = line.strip_prefix(b"PING") {
                let mut pong = b"PONG".to_vec();
                pong.extend_from_slice(token);
                pong.push(b'\n');
                me.send(&pong)?;
            }
            start += newline + 1;
        }
        buffer.copy_within(start..end, 0);
        end -= start;
        if end == buffer.len() {
            buffer.resize(buffer.len() * 2, 0);
        }
        match (&me.socket).read(&mut buffer[end..])? {
            0 => return Ok(()),
            n => end += n,
        }
    }
}

/// The publisher's loop: forward every chunk of complete lines, one write per subscriber.
/// `buffer[..end]` holds bytes already read, starting with the first `PUBLISH` line.
fn relay(
    mut stream: &TcpStream,
    topic: &[u8],
    mut buffer: Vec<u8>,
    mut end: usize,
    topics: &Topics,
) -> io::Result<()> {
    if buffer.len() < PUBLISH_BUFFER {
        buffer.resize(PUBLISH_BUFFER, 0);
    }
    loop {
        // Search from the back: the last `\n` is near the end, so this looks at few bytes.
        if let Some(last) = buffer[..end].iter().rposition(|&b| b == b'\n') {
            let chunk = &buffer[..=last];
            if let Some(subscribers) = topics.subscribers(topic) {
                for subscriber in subscribers.iter() {
                    // A subscriber that is gone is simply skipped; its own thread removes it.
                    let _ = subscriber.send(chunk);
                }
            }
            buffer.copy_within(last + 1..end, 0);
            end -= last + 1;
        }
        if end == buffer.len() {
            buffer.resize(buffer.len() * 2, 0);
        }
        match stream.read(&mut buffer[end..])? {
            0 => return Ok(()),
            n => end += n,
        }
    }
}

fn first_word(text: &[u8]) -> &[u8] {
    let start = text
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(text.len());
    let text = &text[start..];
    let end = text
        .iter()
        .position(|b| b.is_ascii_whitespace())
        .unwrap_or(text.len());
    &text[..end]
}
