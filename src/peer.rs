//! How the broker names a client: the number of its connection, the id it gave last, and
//! its address. Every log line and the trace view name clients through [`Peer`], so they
//! all read the same way, `#3 sub1 (127.0.0.1:53422)`, and the id is shown escaped
//! ([`crate::text::escaped`]), whatever the client sent.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::text::escaped;

/// Whether limits per address apply to clients at `ip`: not to this machine itself, so a
/// whole lab can run on one laptop (`--max-clients-per-ip`, and the durable subscriptions
/// of anonymous clients). A limit that must hold on one machine too, as UDP's leases per
/// address, does not ask.
pub fn counts_per_address(ip: IpAddr) -> bool {
    !ip.is_loopback()
}

/// The number the broker gives each connection, in the order they arrived (`#1`, `#2`, …).
pub type ConnId = u64;

/// One connected client, as logs name it. Shared between the connection's own thread
/// (which learns the client's id from its commands) and whoever writes to it.
#[derive(Debug)]
pub struct Peer {
    /// The connection's number; 0 for a UDP address, which has no connection.
    conn: ConnId,
    addr: SocketAddr,
    /// The id the client gave in its latest command, `None` before its first. Behind a
    /// lock because a publisher's thread reads it when it logs a delivery to this client.
    /// Shared (`Arc<str>`) with the connection's own thread, which keeps it to notice a
    /// change without taking the lock.
    client_id: Mutex<Option<Arc<str>>>,
}

impl Peer {
    /// A client that has not said who it is yet.
    pub fn new(conn: ConnId, addr: SocketAddr) -> Peer {
        Peer {
            conn,
            addr,
            client_id: Mutex::new(None),
        }
    }

    /// A UDP client: an address, with no connection and so no number.
    pub fn datagrams(addr: SocketAddr) -> Peer {
        Peer::new(0, addr)
    }

    /// The connection's number (0 for a UDP address).
    pub fn conn(&self) -> ConnId {
        self.conn
    }

    /// How a log line names the client in few words: `#3` for connection 3,
    /// `udp 127.0.0.1:5000` for datagrams from that address.
    pub fn tag(&self) -> Tag<'_> {
        Tag(self)
    }

    /// The client's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Remembers the id the client gave in its latest command.
    pub fn set_client_id(&self, id: Arc<str>) {
        // parking_lot's lock() returns the guard itself: its mutexes are not poisoned when
        // a thread panics while holding one, so there is no Result to unwrap anywhere in
        // this crate.
        *self.client_id.lock() = Some(id);
    }

    /// The id the client gave last, or `-` before it gave one.
    pub fn client_id(&self) -> Arc<str> {
        self.client_id
            .lock()
            .clone()
            .unwrap_or_else(|| Arc::from("-"))
    }
}

impl fmt::Display for Peer {
    /// `#3 sub1 (127.0.0.1:53422)`; `udp ticker (127.0.0.1:53422)` for datagrams.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let client_id = self.client_id.lock();
        let id = escaped(client_id.as_deref().unwrap_or("-"));
        match self.conn {
            0 => write!(f, "udp {id} ({})", self.addr),
            conn => write!(f, "#{conn} {id} ({})", self.addr),
        }
    }
}

/// A client named in few words: see [`Peer::tag`].
pub struct Tag<'a>(&'a Peer);

impl fmt::Display for Tag<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.conn {
            0 => write!(f, "udp {}", self.0.addr),
            conn => write!(f, "#{conn}"),
        }
    }
}
