//! The table of open connections: how many slots are taken (`--max-clients`), how to close
//! each connection when the broker stops, and the threads to wait for.
//!
//! Every listener admits its connections here, whatever protocol they speak, so the limit
//! counts every client of the broker. A connection holds a [`Slot`] for as long as it
//! lives; dropping the slot (in the connection's cleanup, however its thread ends) gives it
//! back. When the broker stops, [`Connections::close_all_and_join`] closes every connection
//! that is still open, which wakes its thread, and waits for each thread to end.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;

use parking_lot::Mutex;

use crate::peer::ConnId;
use crate::stats::Stats;

/// Something the broker can close to make a connection's thread end.
pub trait Close: Send + Sync {
    /// Closes the connection; its thread wakes up and runs its cleanup.
    fn close(&self);
}

/// The connection table. See the module docs.
pub struct Connections {
    max: usize,
    stats: Arc<Stats>,
    table: Mutex<Table>,
}

#[derive(Default)]
struct Table {
    open: HashMap<ConnId, Arc<dyn Close>>,
    /// Every connection thread not yet known to have finished.
    threads: Vec<JoinHandle<()>>,
}

/// The broker was full: the connection must be told and closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full {
    /// The limit, `--max-clients`.
    pub max: usize,
}

/// A connection's place in the table; dropping it frees the place.
pub struct Slot {
    connections: Arc<Connections>,
    conn: ConnId,
}

impl Connections {
    /// An empty table admitting at most `max` connections at once.
    pub fn new(max: usize, stats: Arc<Stats>) -> Arc<Connections> {
        Arc::new(Connections {
            max,
            stats,
            table: Mutex::new(Table::default()),
        })
    }

    /// Takes a slot for connection `conn`, which `closer` can close.
    ///
    /// # Errors
    /// [`Full`] when every slot is taken.
    pub fn claim(self: &Arc<Self>, conn: ConnId, closer: Arc<dyn Close>) -> Result<Slot, Full> {
        let mut table = self.table.lock();
        if table.open.len() >= self.max {
            self.stats
                .connections_refused
                .fetch_add(1, Ordering::Relaxed);
            return Err(Full { max: self.max });
        }
        table.open.insert(conn, closer);
        self.stats
            .connections_current
            .fetch_add(1, Ordering::Relaxed);
        self.stats.connections_total.fetch_add(1, Ordering::Relaxed);
        Ok(Slot {
            connections: Arc::clone(self),
            conn,
        })
    }

    /// Keeps a connection's thread, to be joined when the broker stops. Threads already
    /// finished are let go of here (dropping a finished thread's handle is all it needs).
    pub fn adopt(&self, thread: JoinHandle<()>) {
        let mut table = self.table.lock();
        table.threads.retain(|thread| !thread.is_finished());
        table.threads.push(thread);
    }

    /// Closes every open connection, then waits for every connection thread to end.
    pub fn close_all_and_join(&self) {
        let (open, threads) = {
            let mut table = self.table.lock();
            let open: Vec<Arc<dyn Close>> = table.open.values().cloned().collect();
            (open, std::mem::take(&mut table.threads))
        };
        for connection in open {
            connection.close();
        }
        // Joined without the lock: each thread's cleanup takes it to free its slot.
        for thread in threads {
            if thread.join().is_err() {
                log::error!("a connection thread panicked");
            }
        }
    }

    fn free(&self, conn: ConnId) {
        if self.table.lock().open.remove(&conn).is_some() {
            self.stats
                .connections_current
                .fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.connections.free(self.conn);
    }
}
