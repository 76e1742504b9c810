//! Replies held for the durable log: a connection's confirms (`OK PUBLISH`), which may go
//! out only once the log has stored the messages they confirm, and every reply queued
//! behind them, which must not overtake them.
//!
//! A confirm stays a value until the log has answered, because the answer decides what it
//! becomes: `OK PUBLISH <topic> <deliveries>`, or the `ERROR` that says the message was not
//! stored and why; and it is written then in the connection's own dialect (a JSON client
//! gets `{"ok": "publish", ...}` or `{"error": ...}`). The replies behind it are written
//! at once, in that dialect, since nothing about them can change. So no code ever has to
//! look for the bytes `OK PUBLISH ` in what a connection was sent to find its confirms.

use super::{Dialect, ProtocolError, Reply};

/// One reply held for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeldReply {
    /// The confirm of a publish to `topic`, which reached `deliveries` subscribers.
    Confirm {
        /// The topic published to.
        topic: Box<str>,
        /// How many subscribers took the message.
        deliveries: usize,
    },
    /// Any other reply, as the connection's dialect wrote it.
    Written(Vec<u8>),
}

/// A connection's held replies, in order, and the dialect to write the confirms in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    /// How the connection speaks.
    pub dialect: Dialect,
    /// The replies, oldest first.
    pub replies: Vec<HeldReply>,
}

impl Held {
    /// Nothing held: what a flush that confirms nothing hands the log.
    pub fn nothing() -> Held {
        Held {
            dialect: Dialect::Line,
            replies: Vec::new(),
        }
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.replies.is_empty()
    }

    /// How many of the replies are confirms.
    pub fn confirms(&self) -> usize {
        self.replies
            .iter()
            .filter(|reply| matches!(reply, HeldReply::Confirm { .. }))
            .count()
    }

    /// Writes every reply into `out`: each confirm as `OK PUBLISH`, or, if the log could
    /// not store the messages (`not_stored` says why), as the `ERROR` that says so.
    pub fn write(&self, not_stored: Option<&str>, out: &mut Vec<u8>) {
        let error = not_stored.map(|why| ProtocolError::NotStored(why.to_string()));
        for reply in &self.replies {
            match (reply, &error) {
                (HeldReply::Confirm { topic, deliveries }, None) => {
                    let reply = Reply::PublishOk {
                        topic,
                        deliveries: *deliveries,
                    };
                    self.dialect.write_reply(&reply, out);
                }
                (HeldReply::Confirm { .. }, Some(error)) => {
                    self.dialect.write_reply(&Reply::Error(error), out);
                }
                (HeldReply::Written(bytes), _) => out.extend_from_slice(bytes),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(dialect: Dialect) -> Held {
        Held {
            dialect,
            replies: vec![
                HeldReply::Confirm {
                    topic: "t".into(),
                    deliveries: 2,
                },
                HeldReply::Written(b"PONG x\n".to_vec()),
            ],
        }
    }

    #[test]
    fn a_confirm_becomes_ok_or_the_error_in_the_connections_dialect() {
        let mut out = Vec::new();
        held(Dialect::Line).write(None, &mut out);
        assert_eq!(out, b"OK PUBLISH t 2\nPONG x\n");
        out.clear();
        held(Dialect::Line).write(Some("the disk is full"), &mut out);
        assert_eq!(
            String::from_utf8(out.clone()).unwrap(),
            "ERROR message not stored, not confirmed (the disk is full): the operator must \
             look at the broker\nPONG x\n"
        );
        out.clear();
        held(Dialect::Json).write(Some("the disk is full"), &mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with("{\"error\":\"message not stored, not confirmed (the disk is full)"),
            "{text}"
        );
        assert_eq!(held(Dialect::Json).confirms(), 1);
    }
}
