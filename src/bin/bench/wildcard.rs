//! `wildcard`: fan-out through a wildcard filter, and what other filters cost it.
//!
//! `--subs` subscribers hold `room/+/temp`; one publisher sends to `room/0/temp`,
//! `room/1/temp`, … in turn (see [`workloads::ROOMS`]), so every message is a new batch and
//! a lookup of its own, as in a sensor network. `--filters N` is how many distinct wildcard
//! filters the broker holds in all: besides `room/+/temp`, N − 1 filters
//! `room/+/t<k>`, held by idle connections, that share the first two levels of the walk but
//! never match. In a tree of levels they cost a publish nothing but memory: the walk looks
//! up the next level by name instead of trying every filter, which is what this measures.
//! (The relay has no wildcards, so `wildcard` runs against brokers only.)

use std::time::{Duration, Instant};

use crate::hostile::crowd;
use crate::report::Outcome;
use crate::target::Target;
use crate::workloads::{self, Flow};

/// Wildcard filters each idle connection subscribes to: the broker's default limit per
/// connection (`--max-wildcards`), so that many filters take many connections.
pub const FILTERS_PER_CONN: usize = pubsub_lab::config::DEFAULT_MAX_WILDCARDS;

/// Runs `flow` (a [`workloads::Workload::Wildcard`]) with `filters` distinct wildcard
/// filters subscribed in all.
pub fn run_wildcard(
    target: &Target,
    flow: &Flow,
    filters: usize,
    timeout: Duration,
) -> Result<Outcome, String> {
    let wanted = filters.saturating_sub(1);
    let conns = wanted.div_ceil(FILTERS_PER_CONN);
    // As many on each connection, within the broker's limit per connection.
    let each = if conns == 0 {
        0
    } else {
        wanted.div_ceil(conns)
    };
    // The last connection may repeat a few of the first filters: `wanted` distinct ones.
    let others = wanted;
    let opened = Instant::now();
    let filter = |conn: usize, index: usize| format!("room/+/t{}", (conn * each + index) % wanted);
    let holders = crowd(target.addr, conns, each, filter, timeout)?;
    let held_in = opened.elapsed();
    let mut outcome = workloads::run_flow(target, flow, timeout)?;
    outcome.setup = format!("{}, {} filters", outcome.setup, others + 1);
    if conns > 0 {
        outcome.notes.push(format!(
            "{others} other filters on {conns} idle connections, subscribed in {:.1}s",
            held_in.as_secs_f64()
        ));
    }
    drop(holders);
    Ok(outcome)
}
