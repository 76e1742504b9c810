//! `GET /metrics`: the broker's figures in Prometheus's text exposition format, the
//! format every monitoring system reads (Prometheus itself, Grafana Agent, VictoriaMetrics,
//! OpenTelemetry's collector).
//!
//! The format is lines of text. Each metric has a `# HELP` line (what it means), a
//! `# TYPE` line (`counter`: only ever goes up, so a scraper can compute a rate;
//! `gauge`: goes up and down), then one sample per line, `name{label="value"} number`:
//!
//! ```text
//! # HELP pubsub_lab_messages_published_total Messages published (PUBLISH, RETAIN).
//! # TYPE pubsub_lab_messages_published_total counter
//! pubsub_lab_messages_published_total 1234
//! # HELP pubsub_lab_clients Clients connected now, by way in.
//! # TYPE pubsub_lab_clients gauge
//! pubsub_lab_clients{way_in="line"} 3
//! ```
//!
//! Names carry the `pubsub_lab_` prefix (the program's name, as Prometheus's naming
//! guide asks) and counters the `_total` suffix. The figures are those `STATS` lists
//! (the durable and NATS bridge ones too, when the broker has them), plus the clients
//! by way in from the client table (`clients.rs`). Nothing is kept for this page: each
//! scrape reads the counters as they are, as `STATS` does. (NATS serves the same from
//! `/varz` as JSON and leaves the format to an exporter; Redis has `INFO` and an
//! exporter too. One page in the standard format spares the lab the extra program.)

use std::fmt::Write;

use crate::router::Router;

/// What every metric's name starts with.
pub const PREFIX: &str = "pubsub_lab_";

/// The `STATS` figures that are gauges (a value now); every other one is a counter.
const GAUGES: [&str; 13] = [
    "uptime_seconds",
    "connections_current",
    "topics",
    "subscriptions",
    "subscribers_behind",
    "retained",
    "udp_subscribers",
    "durable_subscriptions",
    "durable_held",
    "nats_connected",
    "nats_cluster_size",
    "nats_subscriptions",
    "clients",
];

/// The page: every `STATS` figure, then the clients by way in.
pub fn page(router: &Router) -> String {
    let mut out = String::new();
    for (name, value) in router.counters() {
        write_metric(&mut out, name, help(name), &[(None, value)]);
    }
    let per_way_in = router.clients().per_way_in();
    let samples: Vec<(Option<&str>, u64)> = per_way_in
        .iter()
        .map(|(way_in, count)| (Some(way_in.as_str()), *count))
        .collect();
    write_metric(
        &mut out,
        "clients",
        "Clients connected now, by way in (as CLIENTS lists them).",
        &samples,
    );
    out
}

/// What a `STATS` figure means, for its `# HELP` line (the same words as `stats.rs`,
/// `durable/` and `nats/bridge.rs` give their counters).
fn help(name: &str) -> &'static str {
    match name {
        "uptime_seconds" => "Seconds since the broker started.",
        "connections_current" => "Connections open now, on every way in.",
        "connections_total" => "Connections accepted since the broker started.",
        "connections_refused" => "Connections refused because the broker was full.",
        "topics" => "Topics and wildcard filters with at least one subscriber.",
        "subscriptions" => "(topic or filter, subscriber) pairs.",
        "messages_published" => "Messages published (PUBLISH, RETAIN).",
        "deliveries" => "DELIVER lines handed to subscribers.",
        "errors" => "ERROR replies sent.",
        "slow_consumers_disconnected" => "Subscribers cut off as slow consumers.",
        "subscribers_behind" => "Subscribers with a writer thread of their own (behind).",
        "messages_dropped" => "Lines that never reached their subscriber.",
        "retained" => "Retained messages kept.",
        "udp_datagrams_in" => "Datagrams received on the UDP port.",
        "udp_datagrams_out" => "Datagrams sent from the UDP port.",
        "udp_datagrams_dropped" => "Datagrams the broker could not send.",
        "udp_subscribers" => "Addresses holding a UDP lease.",
        "auth_failures" => "AUTH commands with an unknown user or a wrong secret.",
        "durable_subscriptions" => "Durable subscriptions.",
        "durable_held" => "Messages durable subscriptions hold, not yet acknowledged.",
        "durable_dropped" => "Messages dropped from durable subscriptions over --max-queued.",
        "durable_fsyncs" => "fsync calls of the durable log.",
        "durable_retained_skipped" => {
            "Retained messages not copied into new durable subscriptions, over --max-durable-retained-bytes."
        }
        "nats_connected" => "1 while the NATS bridge is connected.",
        "nats_cluster_size" => "Servers of the NATS cluster the bridge knows.",
        "nats_reconnects" => "Times the NATS bridge connected again.",
        "nats_subscriptions" => "Subjects the NATS bridge subscribes to.",
        "nats_forwarded" => "Messages the bridge sent on to NATS.",
        "nats_unforwarded" => "Messages the bridge could not send on to NATS.",
        "nats_received" => "Messages the bridge received from NATS.",
        "nats_refused" => "Messages from NATS the broker refused.",
        _ => "A STATS figure (see STATS).",
    }
}

/// Appends one metric: its `# HELP` and `# TYPE` lines, then a sample for each
/// `(way_in label, value)` (no label for `None`).
fn write_metric(out: &mut String, name: &str, help: &str, samples: &[(Option<&str>, u64)]) {
    let gauge = GAUGES.contains(&name);
    let (kind, suffix) = match (gauge, name.ends_with("_total")) {
        (true, _) => ("gauge", ""),
        (false, true) => ("counter", ""),
        (false, false) => ("counter", "_total"),
    };
    let full = format!("{PREFIX}{name}{suffix}");
    // Writing to a String cannot fail.
    let _ = writeln!(out, "# HELP {full} {help}");
    let _ = writeln!(out, "# TYPE {full} {kind}");
    for (label, value) in samples {
        match label {
            // A way in's name is one of a few fixed words: nothing in it needs escaping.
            Some(way_in) => {
                let _ = writeln!(out, "{full}{{way_in=\"{way_in}\"}} {value}");
            }
            None => {
                let _ = writeln!(out, "{full} {value}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn every_metric_has_help_and_type_and_counters_end_in_total() {
        let router = Router::new(Config::default());
        let page = page(&router);
        assert!(page.contains(
            "# TYPE pubsub_lab_messages_published_total counter\n\
             pubsub_lab_messages_published_total 0\n"
        ));
        assert!(page.contains("# TYPE pubsub_lab_connections_current gauge\n"));
        assert!(page.contains("# TYPE pubsub_lab_clients gauge\n"));
        let helps = page.lines().filter(|l| l.starts_with("# HELP")).count();
        let types = page.lines().filter(|l| l.starts_with("# TYPE")).count();
        assert_eq!(helps, types);
        assert_eq!(helps, router.counters().len() + 1);
    }
}
