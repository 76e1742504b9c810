//! The client table: every connected client and what it is doing, for the instructor's
//! view (`CLIENTS`, `GET /clients`, the class picture, `KICK`).
//!
//! `STATS` says how many clients there are; a class of sixty needs to know *which* one is
//! behind, what a student's client subscribed to, and who is flooding the room. So each
//! session (see `session.rs`) enters its client here when it starts and leaves when it
//! ends (a [`Registered`] handle whose `Drop` does it, as the session's own cleanup is in
//! `Drop`). What a listing shows comes from three places, each kept where it is cheapest:
//!
//! | figure | kept by | written when |
//! |---|---|---|
//! | number, address, way in, connected since | [`Client`] | once, at the start |
//! | user, ids, filters | [`Client`]'s `names` lock | on `AUTH`, a new id, a (un)subscribe |
//! | messages and bytes in, last command and when | [`Client`]'s atomics | once per burst of lines, when the session flushes |
//! | messages and bytes out, bytes pending, state | the outbox ([`Probe`]) | under the outbox's own lock, which every delivery takes anyway |
//!
//! So the hot path of a publish pays nothing new: no allocation, no lock, no atomic per
//! message. The session counts its lines in plain fields and adds them here once per
//! burst (one relaxed add each); an outbox counts its deliveries in fields its mutex
//! already guards. A listing costs the reader: it takes the table's lock to copy out the
//! list of clients, lets it go, then reads each client (its `names` lock, its outbox's
//! lock) one at a time.
//!
//! The table also keeps the one figure a quota needs over all of a user's connections:
//! how many filters with `+` or `#` each logged-in user holds (`--max-wildcards-per-user`;
//! the budget per connection, `--max-wildcards`, is the session's own). A user's sessions
//! take a place before they subscribe ([`Clients::take_wildcard`]) and give it back when they
//! unsubscribe or leave ([`Clients::give_back_wildcards`]). NATS keeps the same kind of
//! count on its *account*, with `max_subscriptions`; Mosquitto has none.
//!
//! A client cut off as a slow consumer is gone from the broker a moment later, which is
//! exactly when a student asks "why do I get nothing?". So its last line is kept for
//! [`CUT_OFF_KEPT_FOR`] and listed with `state=cut-off`.
//!
//! Redis keeps the same figures in its `client` struct and lists them with `CLIENT LIST`;
//! NATS serves them as JSON at `/connz`. Both update them on the hot path with plain
//! writes under the client's own lock, as here.
//!
//! # Locks
//!
//! `Clients::table` guards the list; nothing else is taken while it is held (a listing
//! copies the list out first). `Client::names` guards one client's names, and
//! `Clients::wildcards` the users' counts; nothing is taken after either.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::hooks::Transport;
use crate::keyed::push_small;
use crate::peer::ConnId;
use crate::protocol::{ClientState, CommandSpec, ListedClient, ProtocolError, AUTH, COMMANDS};
use crate::topic;

/// How many ids of one client are kept (the latest ones): a client uses one or two; a
/// script that invents a new id per line must not grow the table.
pub const IDS_KEPT: usize = 4;

/// How many of a client's filters a listing line shows (its `subs=` count is the whole
/// number): a line must stay readable on a projector.
pub const FILTERS_LISTED: usize = 8;

/// How long a client cut off as a slow consumer stays in the listing: long enough for the
/// student to say so and the instructor to look.
pub const CUT_OFF_KEPT_FOR: Duration = Duration::from_secs(60);

/// How many cut-off clients are kept at most: a flood of them must not grow the table.
pub const CUT_OFF_KEPT: usize = 32;

/// What a client's way in knows about what goes out to it: a connection's outbox (see
/// `outbox.rs`), a Socket.IO client's session (`web/socketio_session.rs`). A way in
/// without one (a datagram address) shows nothing out, and cannot be kicked.
pub trait Probe: Send + Sync {
    /// Its deliveries and bytes pending, read under the outbox's lock.
    fn outward(&self) -> Outward;
    /// Tells the client why (`ERROR <reason>`, in its dialect) and closes its connection.
    fn kick(&self, reason: &ProtocolError);
}

/// What is going out to one client. See [`Probe`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outward {
    /// Messages delivered to it.
    pub messages: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Bytes waiting to be written to it.
    pub pending: usize,
    /// How it keeps up.
    pub state: ClientState,
}

/// The table. See the module docs.
#[derive(Debug)]
pub struct Clients {
    /// When the broker started: every client's last-command time is counted from it.
    started: Instant,
    /// Gives each entry its key (UDP addresses share the connection number 0).
    next_key: AtomicU64,
    table: Mutex<Table>,
    /// How many filters with a wildcard each logged-in user holds, over all its
    /// connections; a user that holds none has no entry.
    wildcards: Mutex<BTreeMap<Arc<str>, usize>>,
}

#[derive(Debug, Default)]
struct Table {
    open: BTreeMap<u64, Arc<Client>>,
    /// Clients cut off lately, as they were last listed, with when.
    cut_off: VecDeque<(Instant, ListedClient)>,
}

/// One client's entry. See the module docs for who writes what.
pub struct Client {
    number: ConnId,
    addr: SocketAddr,
    since: Instant,
    names: Mutex<Names>,
    messages_in: AtomicU64,
    bytes_in: AtomicU64,
    /// The last command's place in [`COMMANDS`] (its length for `AUTH`), `usize::MAX`
    /// before the first.
    last_command: AtomicUsize,
    /// When the client last sent something, in milliseconds since the broker started.
    last_seen_ms: AtomicU64,
    probe: Option<Arc<dyn Probe>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("number", &self.number)
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
struct Names {
    way_in: Transport,
    user: Option<Arc<str>>,
    ids: Vec<Arc<str>>,
    filters: Vec<Arc<str>>,
}

/// A session's entry in the table, for as long as the session lives: dropping it takes
/// the client out (and keeps its last line a while if it was cut off).
#[derive(Debug)]
pub struct Registered {
    clients: Arc<Clients>,
    key: u64,
    client: Arc<Client>,
}

/// What a `CLIENTS` filter asks for: one word, read as a number (`#3` or `3`), a state
/// (`behind`), or else an id a client used, or failing that a topic a client receives
/// (`CLIENTS sub1` must not list everyone who subscribed to `#`, whose filter matches a
/// topic named `sub1` too).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wanted<'a> {
    /// Every client.
    All,
    /// The client with this number.
    Number(ConnId),
    /// The clients in this state.
    State(ClientState),
    /// The clients that used this id.
    Id(&'a str),
    /// The clients whose subscriptions match this topic (or are this filter).
    Topic(&'a str),
}

impl<'a> Wanted<'a> {
    /// Reads a `CLIENTS` argument (see the type's docs).
    pub fn parse(filter: Option<&'a str>) -> Wanted<'a> {
        let Some(word) = filter else {
            return Wanted::All;
        };
        if let Ok(number) = word.strip_prefix('#').unwrap_or(word).parse() {
            return Wanted::Number(number);
        }
        match ClientState::ALL.into_iter().find(|s| s.word() == word) {
            Some(state) => Wanted::State(state),
            None => Wanted::Id(word),
        }
    }

    /// Whether `client` is one of those asked for.
    pub fn matches(&self, client: &ListedClient) -> bool {
        match *self {
            Wanted::All => true,
            Wanted::Number(number) => client.number == number,
            Wanted::State(state) => client.state == state,
            Wanted::Id(id) => client.ids.iter().any(|used| used == id),
            Wanted::Topic(name) => client
                .filters
                .iter()
                .any(|filter| filter == name || topic::matches(filter, name)),
        }
    }
}

impl Default for Clients {
    fn default() -> Clients {
        Clients {
            started: Instant::now(),
            next_key: AtomicU64::new(1),
            table: Mutex::new(Table::default()),
            wildcards: Mutex::default(),
        }
    }
}

impl Clients {
    /// Enters a client: connection `number` from `addr`, come in by `way_in`, whose
    /// outbound side `probe` shows (if it has one).
    pub fn register(
        self: &Arc<Self>,
        number: ConnId,
        addr: SocketAddr,
        way_in: Transport,
        probe: Option<Arc<dyn Probe>>,
    ) -> Registered {
        let key = self.next_key.fetch_add(1, Ordering::Relaxed);
        let client = Arc::new(Client {
            number,
            addr,
            since: Instant::now(),
            names: Mutex::new(Names {
                way_in,
                user: None,
                ids: Vec::new(),
                filters: Vec::new(),
            }),
            messages_in: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            last_command: AtomicUsize::new(usize::MAX),
            last_seen_ms: AtomicU64::new(self.millis_since_start(Instant::now())),
            probe,
        });
        self.table.lock().open.insert(key, Arc::clone(&client));
        Registered {
            clients: Arc::clone(self),
            key,
            client,
        }
    }

    /// Takes one of `user`'s `limit` places for a filter with a wildcard, over all its
    /// connections: `false` if it holds `limit` already. Checked and taken under one lock,
    /// so that two connections of one user subscribing at once cannot both take the last.
    pub fn take_wildcard(&self, user: &Arc<str>, limit: usize) -> bool {
        let mut wildcards = self.wildcards.lock();
        let held = wildcards.get(&**user).copied().unwrap_or(0);
        if held >= limit {
            return false;
        }
        wildcards.insert(Arc::clone(user), held + 1);
        true
    }

    /// Gives `count` places of `user`'s back: its connection unsubscribed from filters it
    /// took them for, or left.
    pub fn give_back_wildcards(&self, user: &str, count: usize) {
        if count == 0 {
            return;
        }
        let mut wildcards = self.wildcards.lock();
        if let Some(held) = wildcards.get_mut(user) {
            *held = held.saturating_sub(count);
            if *held == 0 {
                wildcards.remove(user);
            }
        }
    }

    fn millis_since_start(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.started).as_millis() as u64
    }

    /// How many clients came in by each way in, for `/metrics`.
    pub fn per_way_in(&self) -> BTreeMap<String, u64> {
        let mut counts = BTreeMap::new();
        for client in self.snapshot() {
            let way_in = client.names.lock().way_in.to_string();
            *counts.entry(way_in).or_default() += 1;
        }
        counts
    }

    /// The clients `wanted` lets through, by number, at most `limit` of them, and how
    /// many more there were.
    pub fn listing(
        &self,
        wanted: impl Fn(&ListedClient) -> bool,
        limit: usize,
    ) -> (Vec<ListedClient>, usize) {
        let now = Instant::now();
        // Both lists under one lock: a client moving from one to the other meanwhile is
        // listed once, not missed.
        let (open, cut_off): (Vec<Arc<Client>>, Vec<ListedClient>) = {
            let mut table = self.table.lock();
            table
                .cut_off
                .retain(|(at, _)| now.duration_since(*at) < CUT_OFF_KEPT_FOR);
            let cut_off = table.cut_off.iter().map(|(_, row)| row.clone()).collect();
            (table.open.values().cloned().collect(), cut_off)
        };
        let open = open.into_iter().map(|c| self.listed(&c, now));
        let mut rows: Vec<ListedClient> = open.chain(cut_off).filter(|c| wanted(c)).collect();
        rows.sort_by_key(|row| row.number);
        let matched = rows.len();
        rows.truncate(limit);
        let more = matched - rows.len();
        (rows, more)
    }

    /// The open client numbered `number` (a UDP address has no number to find it by).
    pub fn find(&self, number: ConnId) -> Option<Arc<Client>> {
        if number == 0 {
            return None;
        }
        let table = self.table.lock();
        table.open.values().find(|c| c.number == number).cloned()
    }

    /// Every open client, copied out so the table's lock is held only for that.
    fn snapshot(&self) -> Vec<Arc<Client>> {
        self.table.lock().open.values().cloned().collect()
    }

    /// One client as a listing shows it.
    fn listed(&self, client: &Client, now: Instant) -> ListedClient {
        let outward = client.probe.as_ref().map_or(
            Outward {
                messages: 0,
                bytes: 0,
                pending: 0,
                state: ClientState::KeepingUp,
            },
            |probe| probe.outward(),
        );
        let names = client.names.lock();
        let last_seen = client.last_seen_ms.load(Ordering::Relaxed);
        let last_command = client.last_command.load(Ordering::Relaxed);
        ListedClient {
            number: client.number,
            way_in: names.way_in.word(),
            addr: client.addr.to_string(),
            user: names.user.as_deref().unwrap_or("").to_string(),
            ids: names.ids.iter().map(|id| id.to_string()).collect(),
            connected_seconds: now.duration_since(client.since).as_secs(),
            subscriptions: names.filters.len(),
            filters: (names.filters.iter().take(FILTERS_LISTED))
                .map(|f| f.to_string())
                .collect(),
            messages_in: client.messages_in.load(Ordering::Relaxed),
            bytes_in: client.bytes_in.load(Ordering::Relaxed),
            messages_out: outward.messages,
            bytes_out: outward.bytes,
            pending_bytes: outward.pending,
            state: outward.state,
            last_command: COMMANDS
                .into_iter()
                .chain([&AUTH])
                .nth(last_command)
                .map_or("-", |spec| spec.word),
            idle_seconds: self.millis_since_start(now).saturating_sub(last_seen) / 1000,
        }
    }
}

impl Client {
    /// The connection's number.
    pub fn number(&self) -> ConnId {
        self.number
    }

    /// Tells the client why and closes its connection; `false` if its way in has no
    /// connection to close (a UDP address).
    pub fn kick(&self, reason: &ProtocolError) -> bool {
        match &self.probe {
            Some(probe) => {
                probe.kick(reason);
                true
            }
            None => false,
        }
    }
}

impl Registered {
    /// The client came in by another way than first thought (a TCP connection whose
    /// first line is JSON).
    pub fn set_way_in(&self, way_in: Transport) {
        self.client.names.lock().way_in = way_in;
    }

    /// The client proved it is `user`.
    pub fn set_user(&self, user: Arc<str>) {
        self.client.names.lock().user = Some(user);
    }

    /// The client gave a new id (the session calls this only when the id changes).
    pub fn used_id(&self, id: Arc<str>) {
        let mut names = self.client.names.lock();
        names.ids.retain(|known| *known != id);
        if names.ids.len() == IDS_KEPT {
            names.ids.remove(0);
        }
        push_small(&mut names.ids, id);
    }

    /// The client subscribed to `filter`.
    pub fn subscribed(&self, filter: Arc<str>) {
        push_small(&mut self.client.names.lock().filters, filter);
    }

    /// The client unsubscribed from `filter`.
    pub fn unsubscribed(&self, filter: &str) {
        self.client.names.lock().filters.retain(|f| &**f != filter);
    }

    /// The client left every topic.
    pub fn unsubscribed_all(&self) {
        self.client.names.lock().filters.clear();
    }

    /// Adds a burst of lines: `messages` published in `bytes` of lines, the last command
    /// being `last`, seen `at`. Called once per burst (see the module docs).
    pub fn add_burst(&self, messages: u64, bytes: u64, last: Option<&CommandSpec>, at: Instant) {
        let client = &self.client;
        if messages > 0 {
            client.messages_in.fetch_add(messages, Ordering::Relaxed);
        }
        client.bytes_in.fetch_add(bytes, Ordering::Relaxed);
        if let Some(spec) = last {
            let index = COMMANDS
                .iter()
                .position(|s| std::ptr::eq(*s, spec))
                .unwrap_or(COMMANDS.len());
            client.last_command.store(index, Ordering::Relaxed);
        }
        let at = self.clients.millis_since_start(at);
        client.last_seen_ms.store(at, Ordering::Relaxed);
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        let now = Instant::now();
        let last = self.clients.listed(&self.client, now);
        let mut table = self.clients.table.lock();
        table.open.remove(&self.key);
        if last.state == ClientState::CutOff {
            if table.cut_off.len() == CUT_OFF_KEPT {
                table.cut_off.pop_front();
            }
            table.cut_off.push_back((now, last));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr() -> SocketAddr {
        "127.0.0.1:5000".parse().unwrap()
    }

    #[test]
    fn a_client_is_listed_while_registered_with_its_names_and_figures() {
        let clients = Arc::new(Clients::default());
        let entry = clients.register(7, addr(), Transport::Line, None);
        entry.used_id(Arc::from("sub1"));
        entry.subscribed(Arc::from("news/#"));
        entry.add_burst(2, 60, CommandSpec::find("PING"), Instant::now());
        let (rows, more) = clients.listing(|_| true, 10);
        assert_eq!((rows.len(), more), (1, 0));
        let row = &rows[0];
        assert_eq!((row.number, row.way_in), (7, "line"));
        assert_eq!((row.messages_in, row.bytes_in), (2, 60));
        assert_eq!(
            (row.ids.clone(), row.last_command),
            (vec!["sub1".into()], "PING")
        );
        assert!(Wanted::Topic("news/today").matches(row));
        assert!(Wanted::parse(Some("sub1")).matches(row));
        assert!(Wanted::parse(Some("#7")).matches(row));
        assert!(Wanted::parse(Some("keeping-up")).matches(row));
        assert!(!Wanted::parse(Some("behind")).matches(row));
        assert!(!Wanted::parse(Some("sport")).matches(row));
        drop(entry);
        assert!(clients.listing(|_| true, 10).0.is_empty());
    }

    #[test]
    fn a_user_takes_wildcard_places_up_to_its_limit_and_gives_them_back() {
        let clients = Clients::default();
        let (alice, bob): (Arc<str>, Arc<str>) = (Arc::from("alice"), Arc::from("bob"));
        assert!(clients.take_wildcard(&alice, 2));
        assert!(clients.take_wildcard(&alice, 2));
        assert!(!clients.take_wildcard(&alice, 2), "alice holds her two");
        assert!(clients.take_wildcard(&bob, 2), "bob's places are his own");
        clients.give_back_wildcards("alice", 1);
        assert!(clients.take_wildcard(&alice, 2));
        clients.give_back_wildcards("alice", 2);
        assert!(
            !clients.wildcards.lock().contains_key("alice"),
            "none held, none kept"
        );
        clients.give_back_wildcards("alice", 1);
        assert!(
            clients.take_wildcard(&alice, 1),
            "giving back more than held is harmless"
        );
    }

    #[test]
    fn only_the_latest_ids_are_kept() {
        let clients = Arc::new(Clients::default());
        let entry = clients.register(1, addr(), Transport::Line, None);
        for n in 0..10 {
            entry.used_id(Arc::from(format!("id{n}")));
        }
        let ids = &clients.listing(|_| true, 10).0[0].ids;
        assert_eq!(ids, &["id6", "id7", "id8", "id9"]);
    }

    #[test]
    fn a_listing_is_bounded_and_says_how_many_more() {
        let clients = Arc::new(Clients::default());
        let entries: Vec<_> = (1..=5)
            .map(|n| clients.register(n, addr(), Transport::Udp, None))
            .collect();
        let (rows, more) = clients.listing(|_| true, 2);
        assert_eq!((rows[0].number, rows[1].number, more), (1, 2, 3));
        drop(entries);
    }
}
