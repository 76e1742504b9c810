//! `/ws` as a broadcast room (`--ws-broadcast TOPIC`): for pages that know nothing of our
//! line protocol, such as the Go WebSocket tutorial's chat page, which sends
//! `{"email": …, "content": …}` as a text frame and expects every connected page, itself
//! included, to get that same text back.
//!
//! The room is a topic, and a page is an ordinary client of the session core: it is
//! subscribed to the topic when it connects, each text frame it sends is a `PUBLISH` of
//! that frame to the topic, and each delivery goes out as its message alone, the raw frame
//! the sender sent:
//!
//! ```text
//!   page A ─frame {"email":"a@x","content":"hi"}─▶ PUBLISH chat {"email":"a@x","content":"hi"} ws-3
//!                                                    │ (the router, as for every publish)
//!   page A ◀─frame {"email":"a@x","content":"hi"}── DELIVER chat {…} ws-3 …   (the sender too)
//!   page B ◀─frame {"email":"a@x","content":"hi"}── DELIVER chat {…} ws-3 …
//! ```
//!
//! So line-protocol clients see the room too (`SUBSCRIBE chat` on port 9000 prints the
//! pages' frames, and a `PUBLISH chat …` there reaches every page), and the room's pages
//! are subscribers like any other, with the same limits and cut-off. What is lost: a page
//! can do nothing but talk in the room (no other topic, no `AUTH`: on a broker with access
//! control it is the anonymous user), and a frame the broker refuses as a message (more
//! than one line, too long) is answered with the `ERROR` line, as a frame. Without the
//! flag, `/ws` speaks the line protocol, unchanged. A production chat server would keep
//! rooms apart from the message broker; here a room *is* a topic, which is the point.

use std::sync::Arc;

use crate::connections::Slot;
use crate::hooks::{ClientInfo, Transport};
use crate::outbox::{Encoding, Outbox};
use crate::protocol::{Command, Delivery};
use crate::router::Router;
use crate::session::{Entry, Session, TcpLink};

/// How a page's outbox writes lines: a delivery as its message alone (the frame the sender
/// sent), anything else (an `ERROR`) as it is; one text frame each.
pub(crate) const ROOM_FRAMES: Encoding = Encoding::Framed(write_room_frame);

fn write_room_frame(line: &[u8], out: &mut Vec<u8>) {
    let text = String::from_utf8_lossy(line);
    match Delivery::parse(&text) {
        Some(delivery) => super::websocket::write_text_line(delivery.message.as_bytes(), out),
        None => super::websocket::write_text_line(line, out),
    }
}

/// The room a page is in: where its frames go, and who it is there.
pub(crate) struct Room {
    topic: String,
    id: String,
}

impl Room {
    /// A page joins the room on `topic`: its session, subscribed to the topic, and the
    /// room, for its frames.
    pub(crate) fn join(
        router: Arc<Router>,
        outbox: Arc<Outbox>,
        slot: Slot,
        topic: &str,
    ) -> (Session, Room) {
        outbox.set_encoding(ROOM_FRAMES);
        let id = format!("ws-{}", outbox.peer().conn());
        let client = ClientInfo::new(Transport::WebSocket, Some(outbox.peer().addr()));
        let link = Box::new(TcpLink::new(outbox, slot));
        // The hooks let this client in at its handshake; the access rules take it for the
        // anonymous user, as a page cannot log in.
        let mut session = Session::new(router, link, client, Entry::As(None));
        session.execute(&Command::Subscribe {
            topic,
            subscriber_id: &id,
        });
        session.flush();
        let room = Room {
            topic: topic.to_string(),
            id,
        };
        (session, room)
    }

    /// A text frame from the page: published to the room as it is.
    pub(crate) fn say(&self, session: &mut Session, text: &str) {
        session.execute(&Command::Publish {
            topic: &self.topic,
            message: text,
            publisher_id: &self.id,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delivery_goes_out_as_the_raw_frame() {
        let mut out = Vec::new();
        let line = br#"DELIVER chat {"email":"a@x","content":"hi there"} ws-3 2026-12-06 10:30:00"#;
        write_room_frame(line, &mut out);
        let mut expected = Vec::new();
        super::super::websocket::write_text_line(
            br#"{"email":"a@x","content":"hi there"}"#,
            &mut expected,
        );
        assert_eq!(out, expected);
    }
}
