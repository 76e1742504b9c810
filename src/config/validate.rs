//! The check of every setting, before anything binds: a value that would misbehave later
//! becomes one clear error now, naming the flag (see the module docs of `config.rs`).

use std::fmt;

use super::*;

/// A setting that cannot work, named by its flag, with what would.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The flag, as the `broker` binary spells it (`--write-timeout`), or the field for
    /// settings only a program embedding the broker can make.
    pub flag: &'static str,
    /// The value given, as the user would write it.
    pub value: String,
    /// What the value must be instead.
    pub rule: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.flag, self.value, self.rule)
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Checks every setting; the first one that cannot work is the error.
    ///
    /// ```
    /// use std::time::Duration;
    /// let config = pubsub_lab::Config { write_timeout: Duration::ZERO, ..Default::default() };
    /// assert_eq!(
    ///     config.validate().unwrap_err().to_string(),
    ///     "--write-timeout 0ms: must be at least 1ms (a zero timeout would cut off every subscriber at its first write)"
    /// );
    /// ```
    ///
    /// # Errors
    /// A [`ConfigError`] naming the flag, the value and the rule.
    pub fn validate(&self) -> Result<(), ConfigError> {
        at_least_one("--max-clients", self.max_clients, "no client could connect")?;
        at_least_one(
            "--max-clients-per-ip",
            self.max_clients_per_ip,
            "no other machine could connect",
        )?;
        at_least_one(
            "--max-line-bytes",
            self.max_line_bytes,
            "every line would be refused",
        )?;
        at_most(
            "--max-line-bytes",
            self.max_line_bytes,
            MAX_LINE_BYTES_LIMIT,
            "each client may make the broker buffer one whole line",
        )?;
        at_least(
            "--max-pending-bytes",
            self.max_pending_bytes,
            MIN_PENDING_BYTES,
            "a subscriber must be able to fall behind by one chunk of writes",
        )?;
        at_least_one(
            "--max-topic-bytes",
            self.max_topic_bytes,
            "every topic would be refused",
        )?;
        at_least_one(
            "--max-id-bytes",
            self.max_id_bytes,
            "every id would be refused",
        )?;
        at_least_one(
            "--max-subscriptions",
            self.max_subscriptions,
            "no client could subscribe",
        )?;
        at_least_one(
            "--max-topics-listed",
            self.max_topics_listed,
            "TOPICS could list nothing",
        )?;
        at_least_one(
            "Config::mailbox_messages",
            self.mailbox_messages,
            "every in-process subscriber would be cut off at its first message",
        )?;
        at_least_one(
            "--max-topic-levels",
            self.max_topic_levels,
            "every topic would be refused",
        )?;
        if self.sys_interval != Duration::ZERO && self.sys_interval < Duration::from_millis(100) {
            return Err(ConfigError {
                flag: "--sys-interval",
                value: format_duration(self.sys_interval),
                rule: "must be 0 (off) or at least 100ms (the $SYS figures would flood \
                       every subscriber of $SYS/#)"
                    .to_string(),
            });
        }
        at_least_one(
            "--udp-max-subscribers",
            self.udp_max_subscribers,
            "no UDP client could subscribe",
        )?;
        let topic = &self.udp_topic;
        if topic.is_empty() || topic.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(ConfigError {
                flag: "--udp-topic",
                value: format!("{topic:?}"),
                rule: "must be one word of printable text (every datagram that is not a \
                       command is published to it)"
                    .to_string(),
            });
        }
        at_most(
            "--udp-topic",
            topic.len(),
            self.max_topic_bytes,
            "it must be a topic the broker accepts: see --max-topic-bytes",
        )?;
        if self.udp_lease < MIN_UDP_LEASE || self.udp_lease > MAX_UDP_LEASE {
            return Err(ConfigError {
                flag: "--udp-lease",
                value: format_duration(self.udp_lease),
                rule: format!(
                    "must be from {} to {} (a lease is how long a UDP subscription lasts \
                     without a renewal)",
                    format_duration(MIN_UDP_LEASE),
                    format_duration(MAX_UDP_LEASE)
                ),
            });
        }
        if let Some(topic) = &self.ws_broadcast {
            // Every page subscribes and publishes to it: a name the grammar refuses would
            // make every frame an `ERROR`, so it is refused here, once.
            let limits = crate::protocol::grammar::Limits {
                topic_bytes: self.max_topic_bytes,
                id_bytes: self.max_id_bytes,
                topic_levels: self.max_topic_levels,
            };
            if let Err(error) = crate::protocol::grammar::check_topic(topic, &limits) {
                return Err(ConfigError {
                    flag: "--ws-broadcast",
                    value: topic.clone(),
                    rule: format!("must be a topic a client may publish to: {error}"),
                });
            }
        }
        for (flag, value) in [
            ("--socketio-ping-interval", self.socketio_ping_interval),
            ("--socketio-ping-timeout", self.socketio_ping_timeout),
        ] {
            if value < Duration::from_millis(1) || value > MAX_WRITE_TIMEOUT {
                return Err(ConfigError {
                    flag,
                    value: format_duration(value),
                    rule: format!(
                        "must be between 1ms and {} (zero would ping without pause)",
                        format_duration(MAX_WRITE_TIMEOUT)
                    ),
                });
            }
        }
        if self.http_timeout < Duration::from_millis(1) || self.http_timeout > MAX_WRITE_TIMEOUT {
            return Err(ConfigError {
                flag: "--http-timeout",
                value: format_duration(self.http_timeout),
                rule: format!(
                    "must be between 1ms and {} (zero would refuse every request)",
                    format_duration(MAX_WRITE_TIMEOUT)
                ),
            });
        }
        at_least_one(
            "--max-inflight",
            self.max_inflight,
            "no durable subscription could receive anything",
        )?;
        at_least_one(
            "--max-queued",
            self.max_queued,
            "every durable subscription would drop every message",
        )?;
        at_least_one(
            "--max-durable",
            self.max_durable,
            "no client could start a durable subscription",
        )?;
        at_least_one(
            "--max-queued-bytes",
            self.max_queued_bytes,
            "every durable subscription would drop every message",
        )?;
        at_least_one(
            "--max-durable-per-client",
            self.max_durable_per_client,
            "no client could start a durable subscription",
        )?;
        at_least_one(
            "--max-durable-per-user",
            self.max_durable_per_user,
            "no user could start a durable subscription",
        )?;
        at_least_one(
            "--max-wildcards",
            self.max_wildcards,
            "no client could subscribe with + or #",
        )?;
        at_least_one(
            "--max-wildcards-per-user",
            self.max_wildcards_per_user,
            "no user could subscribe with + or #",
        )?;
        if self.segment_bytes < 4096 {
            return Err(ConfigError {
                flag: "Config::segment_bytes",
                value: self.segment_bytes.to_string(),
                rule: "must be at least 4096 (a new file for every few records)".to_string(),
            });
        }
        if self.ack_timeout < Duration::from_millis(10) || self.ack_timeout > MAX_WRITE_TIMEOUT {
            return Err(ConfigError {
                flag: "--ack-timeout",
                value: format_duration(self.ack_timeout),
                rule: format!(
                    "must be from 10ms to {} (shorter sends every message again before \
                     a subscriber can answer)",
                    format_duration(MAX_WRITE_TIMEOUT)
                ),
            });
        }
        for url in &self.nats {
            parse_nats_url(url).map_err(|rule| ConfigError {
                flag: "--nats",
                value: url.clone(),
                rule,
            })?;
        }
        check_nats_prefix(&self.nats_prefix).map_err(|rule| ConfigError {
            flag: "--nats-prefix",
            value: self.nats_prefix.clone(),
            rule,
        })?;
        if self.auth_timeout < Duration::from_millis(1) || self.auth_timeout > MAX_WRITE_TIMEOUT {
            return Err(ConfigError {
                flag: "--auth-timeout",
                value: format_duration(self.auth_timeout),
                rule: format!(
                    "must be from 1ms to {} (the time a client has to send AUTH)",
                    format_duration(MAX_WRITE_TIMEOUT)
                ),
            });
        }
        if self.write_timeout < Duration::from_millis(1) {
            return Err(ConfigError {
                flag: "--write-timeout",
                value: format_duration(self.write_timeout),
                rule: "must be at least 1ms (a zero timeout would cut off every subscriber \
                       at its first write)"
                    .to_string(),
            });
        }
        if self.write_timeout > MAX_WRITE_TIMEOUT {
            return Err(ConfigError {
                flag: "--write-timeout",
                value: format_duration(self.write_timeout),
                rule: format!(
                    "must be at most {} (longer lets one stalled subscriber hold its \
                     resources for hours)",
                    format_duration(MAX_WRITE_TIMEOUT)
                ),
            });
        }
        Ok(())
    }
}

/// Reads a NATS server's address as `--nats` takes it: `nats://host:port`, or without
/// the scheme, or without the port (4222).
///
/// ```
/// use pubsub_lab::config::parse_nats_url;
/// assert_eq!(parse_nats_url("nats://127.0.0.1:4223"), Ok(("127.0.0.1".to_string(), 4223)));
/// assert_eq!(parse_nats_url("localhost"), Ok(("localhost".to_string(), 4222)));
/// assert!(parse_nats_url("http://x:1").is_err());
/// ```
///
/// # Errors
/// A sentence saying how to write it.
pub fn parse_nats_url(url: &str) -> Result<(String, u16), String> {
    const HOW: &str = "write it as nats://host:port, like nats://127.0.0.1:4222";
    let rest = match url.split_once("://") {
        Some(("nats", rest)) => rest,
        Some(_) => return Err(format!("only nats:// is spoken ({HOW})")),
        None => url,
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let (host, port) = match rest.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(':') => {
            let port = port.parse::<u16>().ok().filter(|&p| p > 0);
            (
                host,
                port.ok_or_else(|| format!("the port must be 1 to 65535 ({HOW})"))?,
            )
        }
        _ => (rest, DEFAULT_NATS_PORT),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || host.contains(['/', '@', ' ']) {
        return Err(format!("no host name in it ({HOW})"));
    }
    Ok((host.to_string(), port))
}

/// Checks a `--nats-prefix`: tokens separated by single dots, none a wildcard, nothing a
/// NATS subject cannot hold.
fn check_nats_prefix(prefix: &str) -> Result<(), String> {
    let bad_token = |token: &str| token.is_empty() || token == "*" || token == ">";
    if prefix.split('.').any(bad_token)
        || prefix.contains(|c: char| c.is_whitespace() || c.is_control())
    {
        return Err(
            "must be words separated by single dots, with no spaces and no * or > \
                    word (like pubsub-lab or campus.lab1)"
                .to_string(),
        );
    }
    Ok(())
}

fn at_least_one(flag: &'static str, value: usize, otherwise: &str) -> Result<(), ConfigError> {
    if value == 0 {
        return Err(ConfigError {
            flag,
            value: "0".to_string(),
            rule: format!("must be at least 1 ({otherwise})"),
        });
    }
    Ok(())
}

fn at_least(flag: &'static str, value: usize, least: usize, why: &str) -> Result<(), ConfigError> {
    if value < least {
        return Err(ConfigError {
            flag,
            value: value.to_string(),
            rule: format!("must be at least {least} ({why})"),
        });
    }
    Ok(())
}

fn at_most(flag: &'static str, value: usize, limit: usize, why: &str) -> Result<(), ConfigError> {
    if value > limit {
        return Err(ConfigError {
            flag,
            value: value.to_string(),
            rule: format!("must be at most {limit} ({why})"),
        });
    }
    Ok(())
}
