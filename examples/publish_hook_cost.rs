//! A broker with one publish hook that allows every message: what the hook mechanism
//! itself costs a publish, which `bench` cannot measure (hooks are code, not a flag). The
//! README's performance section runs it under callgrind beside the plain broker:
//!
//! ```text
//!   cargo build --release --example publish_hook_cost
//!   valgrind --tool=callgrind target/release/examples/publish_hook_cost 9100 &
//!   cargo run --release --bin bench -- fanin --pubs 10 --msgs 2000 --addr 127.0.0.1:9100
//! ```
//!
//! It listens on localhost only, on the port given (9000 if none).

use pubsub_lab::hooks::{ClientInfo, Hooks, Publish, PublishVerdict};
use pubsub_lab::Broker;

/// Says yes to everything: the cheapest hook there is, so what is measured is the asking.
struct AllowAll;

impl Hooks for AllowAll {
    fn on_publish(&self, _client: ClientInfo<'_>, _publish: &Publish<'_>) -> PublishVerdict {
        PublishVerdict::Allow
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port: u16 = match std::env::args().nth(1) {
        Some(port) => port.parse()?,
        None => 9000,
    };
    let broker = Broker::builder()
        .line(("127.0.0.1", port))
        .hooks(AllowAll)
        .bind()?;
    println!("hooked broker listening on {}", broker.local_addr());
    broker.run()?;
    Ok(())
}
