//! `ACK <seq>`: a durable subscription's message was received; it is not sent again.

use crate::protocol::{ProtocolError, Reply};
use crate::session::Session;
use crate::text::escaped;

impl Session {
    /// `ACK <seq>`: finds the durable subscription of this connection that has that
    /// message in flight.
    #[inline(never)] // see `apply`
    pub(super) fn ack(&mut self, seq: &str) {
        let Ok(seq) = seq.parse::<u64>() else {
            let shown: String = seq.chars().take(32).collect();
            return self.refuse(&ProtocolError::BadSeq(escaped(&shown).to_string()));
        };
        let me = self.subscriber.id();
        if self.durables.iter().any(|durable| durable.ack(seq, me)) {
            self.acked = true;
            if self.acknowledge() {
                self.reply(Reply::AckOk(seq));
            }
        } else {
            self.refuse(&ProtocolError::UnknownSeq(seq));
        }
    }
}
