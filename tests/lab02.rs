//! Lab 02 checks: fan-out. A `PUBLISH` hands the one formatted `DELIVER` line to every
//! subscriber of the topic, and says how many took it. `Publisher::fan_out` (the lab 02
//! region in src/router.rs) offers the batch of lines to each subscriber, and remembers
//! the subscribers it must flush before its thread next blocks. Real subscribers on real
//! sockets watch what arrives.

mod common;
mod labcheck;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use pubsub_lab::batch::Batch;
use pubsub_lab::hooks::{ClientInfo, Transport};
use pubsub_lab::router::{Publisher, Router};
use pubsub_lab::subscriber::{Offer, Subscriber, SubscriberId};
use pubsub_lab::Config;

use labcheck::Peer;

/// Where the work of this lab is; `labcheck`'s failure messages point there too.
const REGION: &str = "Publisher::fan_out in src/router.rs";

/// Every subscriber of the topic receives the message exactly once.
#[test]
fn every_subscriber_gets_the_message_once() {
    let broker = common::start_broker();
    let mut subs: Vec<Peer> = ["sub1", "sub2", "sub3"]
        .into_iter()
        .map(|name| Peer::subscribed(&broker, name, "weather"))
        .collect();
    let mut publisher = Peer::connect(&broker, "pub1");
    publisher.send("PUBLISH weather Rainy day pub1\n");
    for (index, sub) in subs.iter_mut().enumerate() {
        let line = sub.line(if index == 0 {
            "the DELIVER line of pub1's message (lines offered to a subscriber go out only \
             when it is flushed: does fan_out remember, in self.to_flush, each subscriber \
             whose offer said Offer::FlushNeeded?)"
        } else {
            "the DELIVER line of pub1's message, which the first subscriber got: fan_out \
             must offer the batch to every subscriber of weather, not only the first"
        });
        assert!(
            line.starts_with("DELIVER weather Rainy day pub1 "),
            "{} expected `DELIVER weather Rainy day pub1 <time>`, got {line:?}",
            sub.name
        );
        sub.expect_nothing_more("one DELIVER line per subscriber");
    }
}

/// With VERBOSE on, the publisher learns how many subscribers took the message, and STATS counts them.
#[test]
fn the_publisher_is_told_how_many_received_it() {
    let broker = common::start_broker();
    let _sub1 = Peer::subscribed(&broker, "sub1", "weather");
    let _sub2 = Peer::subscribed(&broker, "sub2", "weather");
    let mut publisher = Peer::connect(&broker, "pub1");
    publisher.send("VERBOSE on\n");
    assert_eq!(publisher.line("OK VERBOSE on"), "OK VERBOSE on");
    publisher.send("PUBLISH weather one pub1\nPUBLISH weather two pub1\n");
    for _ in 0..2 {
        let line = publisher.line("`OK PUBLISH weather 2`");
        assert_eq!(
            line, "OK PUBLISH weather 2",
            "two subscribers took the message, so fan_out must return 2; look at what \
             {REGION} counts"
        );
    }
    publisher.send("STATS\n");
    let deliveries = loop {
        let line = publisher.line("the STATS reply");
        assert_ne!(line, "END STATS", "STATS has no `deliveries` counter");
        if let Some(value) = line.strip_prefix("STATS deliveries ") {
            break value.to_string();
        }
    };
    assert_eq!(
        deliveries, "4",
        "two messages to two subscribers are four deliveries; STATS adds up what \
         {REGION} returns"
    );
}

/// A burst of publishes sent in one write reaches every subscriber complete and in order.
#[test]
fn a_burst_arrives_complete_and_in_order() {
    const BURST: usize = 200;
    let broker = common::start_broker();
    let mut subs = [
        Peer::subscribed(&broker, "sub1", "ticks"),
        Peer::subscribed(&broker, "sub2", "ticks"),
    ];
    let mut publisher = Peer::connect(&broker, "pub1");
    let burst: String = (0..BURST)
        .map(|n| format!("PUBLISH ticks tick-{n} pub1\n"))
        .collect();
    publisher.send(&burst);
    for sub in &mut subs {
        for n in 0..BURST {
            let line = sub.line(&format!(
                "message tick-{n} of {BURST} (lines offered to a subscriber only go out \
                 when that subscriber is flushed: does fan_out remember the subscribers \
                 whose offer said Offer::FlushNeeded, so they get flushed?)"
            ));
            assert!(
                line.starts_with(&format!("DELIVER ticks tick-{n} pub1 ")),
                "{} expected message tick-{n}, got {line:?}: every message must reach every \
                 subscriber once, in the order it was published",
                sub.name
            );
        }
    }
}

/// A publisher subscribed to its own topic receives its own message, like any subscriber.
#[test]
fn a_publisher_receives_its_own_message() {
    let broker = common::start_broker();
    let mut both = Peer::subscribed(&broker, "echo1", "chat");
    both.send("PUBLISH chat hello me echo1\n");
    let line = both.line("the DELIVER line of its own message");
    assert!(
        line.starts_with("DELIVER chat hello me echo1 "),
        "echo1 subscribed to chat and published to it, so it must receive its own message; \
         got {line:?}"
    );
}

/// Each of the three answers of `Offer` gets its own treatment: `FlushNeeded` is counted
/// and flushed once, `Queued` is counted (someone else flushes it), and `Closed` (a
/// subscriber that is gone) is not counted.
#[test]
fn each_answer_of_offer_is_handled_as_its_doc_says() {
    let router = Arc::new(Router::new(Config::default()));
    let fakes: Vec<Arc<Fake>> = [Offer::FlushNeeded, Offer::Queued, Offer::Closed]
        .into_iter()
        .map(Fake::answering)
        .collect();
    let client = ClientInfo::new(
        Transport::Line,
        Some(SocketAddr::from((Ipv4Addr::LOCALHOST, 1))),
    );
    for fake in &fakes {
        let subscriber: Arc<dyn Subscriber> = Arc::clone(fake) as Arc<dyn Subscriber>;
        router
            .subscribe(client, "weather", &subscriber)
            .expect("subscribe a subscriber of the check's own");
    }
    let mut publisher = Publisher::new(Arc::clone(&router));
    publisher
        .publish("weather", "Rainy day", "pub1")
        .expect("publish");
    let took = publisher.hand_out();
    let offers: Vec<usize> = fakes
        .iter()
        .map(|fake| fake.offers.load(Ordering::SeqCst))
        .collect();
    assert_eq!(
        offers,
        [1, 1, 1],
        "three subscribers of weather were each offered the batch {offers:?} times (in the \
         order FlushNeeded, Queued, Closed): {REGION} must offer it to every subscriber once"
    );
    assert_eq!(
        took, 2,
        "of three subscribers, one answered Offer::FlushNeeded, one Offer::Queued and one \
         Offer::Closed (it is gone: nothing was queued), so {REGION} must return 2: count \
         FlushNeeded and Queued, not Closed"
    );
    publisher.flush();
    let flushes: Vec<usize> = fakes
        .iter()
        .map(|fake| fake.flushes.load(Ordering::SeqCst))
        .collect();
    assert_eq!(
        flushes[0], 1,
        "the subscriber that answered Offer::FlushNeeded was flushed {} times after the \
         publisher's flush(), not once: {REGION} must remember it in self.to_flush",
        flushes[0]
    );
}

/// A subscriber of the check's own that gives one answer to every offer, and counts the
/// offers and flushes it gets.
#[derive(Debug)]
struct Fake {
    id: SubscriberId,
    answer: Offer,
    offers: AtomicUsize,
    flushes: AtomicUsize,
}

impl Fake {
    fn answering(answer: Offer) -> Arc<Fake> {
        Arc::new(Fake {
            id: SubscriberId::next(),
            answer,
            offers: AtomicUsize::new(0),
            flushes: AtomicUsize::new(0),
        })
    }
}

impl Subscriber for Fake {
    fn id(&self) -> SubscriberId {
        self.id
    }

    fn offer(&self, _batch: &Batch) -> Offer {
        self.offers.fetch_add(1, Ordering::SeqCst);
        self.answer
    }

    fn flush(&self) {
        self.flushes.fetch_add(1, Ordering::SeqCst);
    }
}
