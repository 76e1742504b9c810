//! `RETAIN <topic> <message> <publisher_id>`: publish, and keep the message for later
//! subscribers (MQTT's retained messages).

use crate::protocol::Reply;
use crate::session::Session;

impl Session {
    /// Publishes as `PUBLISH` does, and keeps the message as the topic's retained one.
    #[inline(never)] // see `apply`
    pub(super) fn retain(&mut self, topic: &str, message: &str, publisher_id: &str) {
        if let Err(error) = self.check_publisher(topic, publisher_id) {
            return self.refuse(&error);
        }
        let user = self.user.clone();
        let retained = self
            .publisher()
            .retain(topic, message, publisher_id, user.as_deref());
        if retained.is_ok() {
            self.burst.messages += 1;
        }
        match retained {
            Ok(deliveries) if self.acknowledge() => {
                self.reply(Reply::RetainOk { topic, deliveries })
            }
            Ok(_) => {}
            Err(error) => self.refuse(&error),
        }
    }
}
