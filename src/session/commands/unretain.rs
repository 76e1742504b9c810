//! `UNRETAIN <topic> <publisher_id>`: forget the message kept for a topic.

use crate::protocol::Reply;
use crate::session::Session;

impl Session {
    /// Removes `topic`'s retained message, if the client may publish there as
    /// `publisher_id` (forgetting is publishing nothing). Forgetting a topic that keeps
    /// none is not an error, as in MQTT, where an empty retained message clears the topic.
    #[inline(never)] // see `apply`
    pub(super) fn unretain(&mut self, topic: &str, publisher_id: &str) {
        let forgotten = self
            .check_publisher(topic, publisher_id)
            .and_then(|()| self.router.unretain(topic, publisher_id));
        match forgotten {
            Ok(_) if self.acknowledge() => self.reply(Reply::UnretainOk(topic)),
            Ok(_) => {}
            Err(error) => self.refuse(&error),
        }
    }
}
