//! `PUBLISH <topic> <message> <publisher_id>`: hand a message to the router for every
//! subscriber of the topic. `check_publisher`, the access rules for anything that
//! publishes, is here too: `RETAIN` and `UNRETAIN` use it.

use crate::protocol::{HeldReply, ProtocolError, Reply};
use crate::session::Session;
use crate::text::escaped;

impl Session {
    /// Hands the message to this connection's `Publisher` (see `router.rs`), which batches
    /// it with the publishes around it. A confirm (`VERBOSE on`, or a JSON line that asks)
    /// counts the connections it went to; with `--data-dir` it waits for the log.
    #[inline(never)] // see `apply`
    pub(super) fn publish(&mut self, topic: &str, message: &str, publisher_id: &str) {
        if let Err(error) = self.check_publisher(topic, publisher_id) {
            return self.refuse(&error);
        }
        let published = if self.parsed_line {
            self.publisher()
                .publish_parsed(topic, message, publisher_id)
        } else {
            self.publisher().publish(topic, message, publisher_id)
        };
        let receivers = match published {
            Ok(receivers) => receivers,
            Err(error) => return self.refuse(&error),
        };
        self.burst.messages += 1;
        log::debug!(
            "{} {} published to {} ({receivers} subscribers)",
            self.peer().tag(),
            escaped(publisher_id),
            escaped(topic)
        );
        if self.acknowledge() {
            let deliveries = self.hand_out();
            if self.router.durables().on_disk() {
                // Confirmed only once the log is committed: see `flush`.
                self.after_commit.push(HeldReply::Confirm {
                    topic: topic.into(),
                    deliveries,
                });
            } else {
                self.reply(Reply::PublishOk { topic, deliveries });
            }
        }
    }

    /// Whether this connection's user may publish to `topic` as `publisher_id` (see
    /// `Router::check_publish_rules`). The last topic and id allowed are remembered, so a
    /// burst to one topic is checked once. Inlined, with the rules apart, so that a broker
    /// without an auth file pays one test per publish for them and not a call.
    #[inline]
    pub(super) fn check_publisher(
        &mut self,
        topic: &str,
        publisher_id: &str,
    ) -> Result<(), ProtocolError> {
        if self.router.access().is_none() {
            return Ok(());
        }
        self.check_publisher_rules(topic, publisher_id)
    }

    /// [`check_publisher`](Self::check_publisher) on a broker with an auth file.
    fn check_publisher_rules(
        &mut self,
        topic: &str,
        publisher_id: &str,
    ) -> Result<(), ProtocolError> {
        if let Some((allowed_topic, allowed_id)) = &self.allowed_publish {
            if **allowed_topic == *topic && **allowed_id == *publisher_id {
                return Ok(());
            }
        }
        self.router
            .check_publish_rules(self.user.as_deref(), topic, publisher_id)?;
        self.allowed_publish = Some((topic.into(), publisher_id.into()));
        Ok(())
    }
}
