//! HTTP requests as commands of the session core: `POST /publish` is a `PUBLISH`, `GET
//! /topics` a `TOPICS`, `GET /clients` a `CLIENTS`, `GET /stats` a `STATS`, each run by a session of one command (see
//! `session.rs`) whose one reply becomes the response. So a request is held to every rule
//! a TCP client is: the grammar, the auth file's rules, the hooks, the confirm after the
//! log.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use super::{json_response, HttpConnection, DEFAULT_PUBLISHER};
use crate::connections::Connections;
use crate::hooks::{ClientInfo, Transport};
use crate::json::{self, ObjectWriter, Value};
use crate::outbox::Outbox;
use crate::peer::Peer;
use crate::protocol::{self, Command, ProtocolError, Reply};
use crate::session::{Entry, Link, Session};
use crate::subscriber::Subscriber;
use crate::text::escaped;
use crate::web::http::{self, Request, Response, TEXT};

impl HttpConnection {
    /// `POST /publish`: the Flask labsheet's answers, `200 Message published to topic
    /// '<t>'` when at least one subscriber took it and `404 Topic '<t>' does not exist`
    /// when none did; `400` with the line protocol's reason for what it would refuse, and
    /// `403` with the reason for what the program's hooks or the auth file's rules refuse.
    /// `user` is who the request proved it is, on a broker with access control: the
    /// publisher id is then its name unless the request gives one, and is held to the
    /// same rules as over TCP.
    pub(super) fn publish(&mut self, request: &Request<'_>, user: Option<&str>) -> Response {
        let (topic, message, publisher_id) = match publish_fields(request) {
            Ok(fields) => fields,
            Err(refusal) => return refusal,
        };
        let publisher_id = publisher_id
            .or_else(|| user.map(str::to_string))
            .unwrap_or_else(|| DEFAULT_PUBLISHER.to_string());
        self.through_the_core(
            user,
            Command::Publish {
                topic: &topic,
                message: &message,
                publisher_id: &publisher_id,
            },
        )
    }

    /// Runs one command through the session core (`session.rs`), as the user the request
    /// proved it is (or anonymous), and turns the core's reply into the response (see
    /// [`HttpLink`]). A request is a session of one command: its checks, its access rules,
    /// its hooks and its confirm (after the log, with `--data-dir`) are every other
    /// client's.
    fn through_the_core(&mut self, user: Option<&str>, command: Command<'_>) -> Response {
        let answer = Rc::new(RefCell::new(None));
        let link = HttpLink {
            outbox: Arc::clone(&self.outbox),
            connections: Arc::clone(&self.connections),
            user: user.is_some(),
            answer: Rc::clone(&answer),
        };
        let client = ClientInfo::new(Transport::Http, Some(self.outbox.peer().addr()));
        let entry = Entry::As(user.map(Arc::from));
        let mut session = Session::new(Arc::clone(&self.router), Box::new(link), client, entry);
        session.execute_acknowledged(&command);
        session.flush();
        drop(session);
        let answered = answer.borrow_mut().take();
        self.counted = answered
            .as_ref()
            .is_some_and(|response| response.status >= 400 && response.status != 404);
        answered.unwrap_or_else(|| {
            Response::new(500, TEXT, "the broker gave no answer to this request")
        })
    }

    /// `GET /topics[?filter=news/%23]`: `{"topics": [{"topic": ..., "subscribers": n}],
    /// "more": m}`, what `TOPICS` lists.
    pub(super) fn topics(&mut self, request: &Request<'_>, user: Option<&str>) -> Response {
        let filter = match http::form_value(request.query, "filter") {
            Ok(filter) => filter,
            Err(error) => return Response::new(400, TEXT, error.to_string()),
        };
        let filter = filter.as_deref().filter(|f| !f.is_empty());
        self.through_the_core(user, Command::Topics { filter })
    }

    /// `GET /clients[?filter=behind]`: `{"clients": [{"number": 3, "way": "line", ...}],
    /// "more": m}`, what `CLIENTS` lists for the request's user.
    pub(super) fn clients(&mut self, request: &Request<'_>, user: Option<&str>) -> Response {
        let filter = match http::form_value(request.query, "filter") {
            Ok(filter) => filter,
            Err(error) => return Response::new(400, TEXT, error.to_string()),
        };
        let filter = filter.as_deref().filter(|f| !f.is_empty());
        self.through_the_core(user, Command::Clients { filter })
    }

    /// `GET /stats`: every `STATS` counter as a member of one object.
    pub(super) fn stats(&mut self, user: Option<&str>) -> Response {
        self.through_the_core(user, Command::Stats)
    }
}

/// An HTTP request, as the session core sees it: the core's one reply to it becomes the
/// response. `POST /publish` is a `PUBLISH` with an acknowledgement: `OK PUBLISH` with its
/// count of deliveries becomes the Flask labsheet's `200` (someone took it) or `404`
/// (nobody did), an `ERROR` a `400`, `401` or `403` (see [`refusal`]). `GET /topics` and
/// `GET /stats` are `TOPICS` and `STATS`, written as JSON.
struct HttpLink {
    outbox: Arc<Outbox>,
    connections: Arc<Connections>,
    /// Whether the request gave credentials (a refusal then is a `403`, not a `401`).
    user: bool,
    /// The response, once the core replied.
    answer: Rc<RefCell<Option<Response>>>,
}

impl Link for HttpLink {
    fn peer(&self) -> &Peer {
        self.outbox.peer()
    }

    fn subscriber(&self) -> Arc<dyn Subscriber> {
        Arc::clone(&self.outbox) as Arc<dyn Subscriber>
    }

    fn carries(&self, command: &Command<'_>) -> Result<(), ProtocolError> {
        match command {
            Command::Publish { .. }
            | Command::Topics { .. }
            | Command::Clients { .. }
            | Command::Stats => Ok(()),
            // Nothing else is sent by this module.
            other => Err(ProtocolError::WrongArguments(other.spec())),
        }
    }

    fn reply(&self, reply: &Reply<'_>) {
        let response = match reply {
            Reply::PublishOk {
                topic,
                deliveries: 0,
            } => Response::new(404, TEXT, format!("Topic '{topic}' does not exist")),
            Reply::PublishOk { topic, .. } => {
                Response::new(200, TEXT, format!("Message published to topic '{topic}'"))
            }
            Reply::Topics { topics, more } => {
                let listed: Vec<String> = topics.iter().map(protocol::listed_json).collect();
                let mut body = ObjectWriter::new();
                body.raw("topics", &format!("[{}]", listed.join(",")))
                    .number("more", *more as f64);
                json_response(body.finish())
            }
            Reply::Clients { clients, more } => {
                let listed: Vec<String> = clients.iter().map(protocol::client_json).collect();
                let mut body = ObjectWriter::new();
                body.raw("clients", &format!("[{}]", listed.join(",")))
                    .number("more", *more as f64);
                json_response(body.finish())
            }
            Reply::Stats(counters) => {
                let mut body = ObjectWriter::new();
                for (name, value) in counters.iter() {
                    body.number(name, *value as f64);
                }
                json_response(body.finish())
            }
            Reply::Error(error) => refusal(error, self.user),
            other => {
                let mut line = Vec::new();
                other.write_lines(&mut line);
                Response::new(200, TEXT, String::from_utf8_lossy(&line).into_owned())
            }
        };
        *self.answer.borrow_mut() = Some(response);
    }

    fn encode(&self, reply: &Reply<'_>, out: &mut Vec<u8>) {
        reply.write_lines(out);
    }

    fn send(&self, _bytes: &[u8]) {
        // Only replies queued behind a confirm come here; a request has one command, so
        // its one reply is the confirm itself, which comes through `reply`.
    }

    fn flush(&self) {}

    fn warn(&self, level: log::Level, event: std::fmt::Arguments<'_>) {
        self.connections.log_event(level, event);
    }

    fn close(&self) {}
}

/// What a request without credentials is told on a broker with access control.
pub(super) const AUTH_REQUIRED: &str = "authentication required: send your user and secret in an \
                             Authorization: Basic header (curl -u user:secret)";

/// A `401` with the challenge that makes a browser ask for a user and a secret.
pub(super) fn challenge(body: &str) -> Response {
    Response::new(401, TEXT, body.to_string())
        .header("WWW-Authenticate", "Basic realm=\"pubsub-lab\"")
}

/// The HTTP answer to a refused publish: `400` for what the grammar refuses; `403` for
/// what the program's hooks or the auth file's rules refuse (as for a client the hooks do
/// not let in), but `401` when the rules refuse a request that gave no credentials, so
/// that a browser asks for them.
fn refusal(error: &ProtocolError, user: bool) -> Response {
    match error {
        ProtocolError::NotAllowed { .. } if !user => challenge(AUTH_REQUIRED),
        ProtocolError::Refused(_) | ProtocolError::NotAllowed { .. } => {
            Response::new(403, TEXT, error.to_string())
        }
        _ => Response::new(400, TEXT, error.to_string()),
    }
}

/// The topic, message and publisher id (if it gives one) of a publish, from its body as
/// its `Content-Type` says; the refusal (`400` or `415`) otherwise.
pub(super) fn publish_fields(
    request: &Request<'_>,
) -> Result<(String, String, Option<String>), Response> {
    let bad = |reason: String| Response::new(400, TEXT, reason);
    let query = |name: &str| http::form_value(request.query, name).map_err(|e| bad(e.to_string()));
    let text = || {
        std::str::from_utf8(request.body).map_err(|_| bad("the body is not UTF-8 text".to_string()))
    };
    let missing = |field: &str| {
        bad(format!(
            "missing \"{field}\": publish with {{\"topic\": \"...\", \"message\": \"...\", \
             \"publisher\": \"...\"}} (publisher optional), a form topic=...&message=..., \
             or text/plain with ?topic=..."
        ))
    };
    let (topic, message, publisher) = match request.media_type().as_deref() {
        Some("application/json") => {
            let value = json::parse(text()?).map_err(|error| bad(error.to_string()))?;
            if !matches!(value, Value::Object(_)) {
                return Err(bad(format!(
                    "the body must be a JSON object, not {}",
                    value.kind()
                )));
            }
            let field = |name: &str| match value.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(text)) => Ok(Some(text.clone())),
                Some(other) => Err(bad(format!(
                    "\"{name}\" must be a string, not {}",
                    other.kind()
                ))),
            };
            (field("topic")?, field("message")?, field("publisher")?)
        }
        Some("application/x-www-form-urlencoded") => {
            let form = text()?;
            let field = |name: &str| http::form_value(form, name).map_err(|e| bad(e.to_string()));
            let topic = field("topic")?.or(query("topic")?);
            let publisher = field("publisher")?.or(query("publisher")?);
            (topic, field("message")?, publisher)
        }
        Some("text/plain") => {
            let body = text()?;
            // `echo hi | curl --data-binary @-` sends the line's end too: it is not part of
            // the message.
            let body = body.strip_suffix('\n').unwrap_or(body);
            let body = body.strip_suffix('\r').unwrap_or(body);
            (query("topic")?, Some(body.to_string()), query("publisher")?)
        }
        other => {
            let body = format!(
                "{}: publish with Content-Type application/json ({{\"topic\": \"...\", \
                 \"message\": \"...\"}}), application/x-www-form-urlencoded, or text/plain \
                 with ?topic=...",
                match other {
                    Some(media) => format!("Content-Type {} is not understood", escaped(media)),
                    None => "no Content-Type".to_string(),
                }
            );
            return Err(Response::new(415, TEXT, body));
        }
    };
    let topic = topic.ok_or_else(|| missing("topic"))?;
    let message = message.ok_or_else(|| missing("message"))?;
    Ok((topic, message, publisher))
}
