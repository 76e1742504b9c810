//! The durable log against a model: random sequences of publishes, `DURABLE`, `ACK`,
//! `CANCEL`, plain restarts and crashes, each checked against a few lines of in-memory
//! bookkeeping of what must come back.
//!
//! The promise: after any sequence of restarts and crashes, the broker holds exactly what
//! it held before, no less (nothing confirmed is lost) and no more (nothing acknowledged
//! or cancelled comes back). The model is a map from subscription to the texts it holds,
//! in order; every step compares the broker with it through the protocol.
//!
//! A crash is a `kill -9` as the files see it: the data directory is copied while the
//! broker runs (what the operating system has at that moment is exactly what a killed
//! process leaves), sometimes with half a record appended to its newest segment (a write
//! the kill interrupted), and a new broker starts from the copy.
//!
//! `PUBSUB_MODEL_SEEDS` (default 16) runs more sequences; a failure names its seed and the
//! steps that led to it, and `PUBSUB_MODEL_SEED=<n>` runs that one alone.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{start_broker_with, stat, Raw};
use pubsub_lab::config::FsyncPolicy;
use pubsub_lab::durable::log::Record;
use pubsub_lab::{BrokerHandle, Config};

/// Steps in one sequence.
const STEPS: usize = 60;

const IDS: [&str; 3] = ["s0", "s1", "s2"];
const FILTERS: [&str; 3] = ["a", "b", "#"];
const TOPICS: [&str; 2] = ["a", "b"];

/// xorshift64*: a small, well-known generator, so that a seed gives the same sequence on
/// every machine and no crate is needed for it.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[self.below(from.len())]
    }
}

/// What must come back: each subscription's texts, oldest first.
type Model = BTreeMap<(String, String), Vec<String>>;

fn matches(filter: &str, topic: &str) -> bool {
    filter == "#" || filter == topic
}

/// One run: a broker on a data directory of the run's own, and how many directories it
/// has used (a crash moves to a copy).
struct Run {
    base: PathBuf,
    dirs: usize,
    policy: FsyncPolicy,
    broker: Option<BrokerHandle>,
    /// The steps so far, for the failure message.
    steps: Vec<String>,
}

impl Run {
    fn dir(&self) -> PathBuf {
        self.base.join(self.dirs.to_string())
    }

    fn config(&self) -> Config {
        Config {
            data_dir: Some(self.dir()),
            fsync: self.policy,
            // Small segments, so that sequences roll over and delete segments.
            segment_bytes: 4096,
            max_inflight: 1000,
            max_queued: 1_000_000,
            ack_timeout: Duration::from_secs(600),
            sys_interval: Duration::ZERO,
            ..Config::default()
        }
    }

    fn broker(&self) -> &BrokerHandle {
        self.broker.as_ref().unwrap()
    }

    fn connect(&self) -> Raw {
        Raw::connect(self.broker().addr())
    }

    fn start(&mut self) {
        self.broker = Some(start_broker_with(self.config()));
    }

    fn restart(&mut self) {
        self.broker.take().unwrap().stop();
        self.start();
    }

    /// A `kill -9`: the files as they are now go on in a new directory; with `torn`, the
    /// newest segment ends in part of a record that was being written.
    fn crash(&mut self, torn: Option<usize>) {
        let from = self.dir();
        self.dirs += 1;
        let to = self.dir();
        fs::create_dir_all(&to).unwrap();
        let mut newest = None;
        for entry in fs::read_dir(&from).unwrap() {
            let entry = entry.unwrap();
            fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
            newest = newest.max(Some(entry.file_name()));
        }
        self.broker.take().unwrap().stop();
        if let (Some(cut), Some(newest)) = (torn, newest) {
            let mut record = Vec::new();
            Record::Ack { seq: 1 }.write_framed(&mut record);
            let mut bytes = fs::read(to.join(&newest)).unwrap();
            bytes.extend_from_slice(&record[..cut % record.len()]);
            fs::write(to.join(&newest), bytes).unwrap();
        }
        self.start();
    }
}

/// `DURABLE`: the broker must say it holds what the model holds, and send it in order;
/// then some of it, anywhere in the list, is acknowledged.
fn take_and_ack(run: &Run, model: &mut Model, rng: &mut Rng, id: &str, filter: &str) {
    let held = model.entry((id.into(), filter.into())).or_default();
    let mut holder = run.connect();
    holder.send(&format!("DURABLE {filter} {id}\n"));
    holder.expect(&format!("OK DURABLE {filter} {}", held.len()));
    let mut seqs = Vec::new();
    for text in held.iter() {
        let line = holder.line();
        let words: Vec<&str> = line.split(' ').collect();
        assert_eq!(words[0], "MESSAGE", "{line}");
        assert_eq!(words[3], text, "{line}: out of order, or not what was held");
        seqs.push(words[1].to_string());
    }
    let mut kept = Vec::new();
    for (text, seq) in held.drain(..).zip(seqs) {
        if rng.below(2) == 0 {
            holder.send(&format!("ACK {seq}\n"));
        } else {
            kept.push(text);
        }
    }
    *held = kept;
    holder.sync();
}

fn run_seed(seed: u64) {
    let mut rng = Rng::new(seed);
    let policies = [
        FsyncPolicy::Always,
        FsyncPolicy::Interval,
        FsyncPolicy::Never,
    ];
    let base = std::env::temp_dir().join(format!("pubsub-lab-model-{seed}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&base);
    let mut run = Run {
        base,
        dirs: 0,
        policy: policies[rng.below(3)],
        broker: None,
        steps: Vec::new(),
    };
    run.start();
    let mut model = Model::new();
    let mut publisher = run.connect();
    publisher.send("VERBOSE on\n");
    publisher.expect("OK VERBOSE on");
    for step in 0..STEPS {
        let id = rng.pick(&IDS);
        let filter = rng.pick(&FILTERS);
        let roll = rng.below(100);
        let what = match roll {
            0..=39 => {
                let topic = rng.pick(&TOPICS);
                // Up to ~400 bytes: a few dozen fill a 4 KiB segment.
                let text = format!("m{step}-{}", "x".repeat(rng.below(400)));
                publisher.send(&format!("PUBLISH {topic} {text} p\n"));
                let mut owed = 0;
                for ((_, subscribed), held) in model.iter_mut() {
                    if matches(subscribed, topic) {
                        held.push(text.clone());
                        owed += 1;
                    }
                }
                publisher.expect(&format!("OK PUBLISH {topic} {owed}"));
                format!("publish {topic} m{step}")
            }
            40..=69 => {
                take_and_ack(&run, &mut model, &mut rng, id, filter);
                format!("durable+ack {id} {filter}")
            }
            70..=77 => {
                let dropped = model
                    .remove(&(id.to_string(), filter.to_string()))
                    .map_or(0, |held| held.len());
                let mut canceller = run.connect();
                canceller.send(&format!("CANCEL {filter} {id}\n"));
                canceller.expect(&format!("OK CANCEL {filter} {dropped}"));
                format!("cancel {id} {filter}")
            }
            78..=88 => {
                run.restart();
                "restart".to_string()
            }
            _ => {
                let torn = (rng.below(2) == 0).then(|| 1 + rng.below(64));
                run.crash(torn);
                format!("kill -9 (torn {torn:?})")
            }
        };
        run.steps.push(what);
        if roll >= 78 {
            publisher = run.connect();
            publisher.send("VERBOSE on\n");
            publisher.expect("OK VERBOSE on");
            let held: usize = model.values().map(Vec::len).sum();
            let trail = run.steps.join(", ");
            assert_eq!(
                stat(run.broker(), "durable_subscriptions"),
                model.len() as u64,
                "seed {seed} ({}): subscriptions after {trail}",
                run.policy
            );
            assert_eq!(
                stat(run.broker(), "durable_held"),
                held as u64,
                "seed {seed} ({}): messages held after {trail}",
                run.policy
            );
        }
    }
    // At the end, every subscription once more, message by message.
    run.restart();
    let keys: Vec<(String, String)> = model.keys().cloned().collect();
    for (id, filter) in keys {
        take_and_ack(&run, &mut model, &mut rng, &id, &filter);
    }
    run.broker.take().unwrap().stop();
    assert_only_segments_left(&run.dir());
    fs::remove_dir_all(&run.base).unwrap();
}

/// Nothing but the log's own files: no segment was left behind by mistake under another
/// name.
fn assert_only_segments_left(dir: &Path) {
    for entry in fs::read_dir(dir).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        let stem = name.strip_suffix(".log").unwrap_or("");
        assert!(
            stem.len() >= 8 && stem.bytes().all(|b| b.is_ascii_digit()),
            "{name} in {}",
            dir.display()
        );
    }
}

#[test]
fn the_log_after_random_restarts_and_crashes_holds_exactly_what_the_model_holds() {
    let seeds: Vec<u64> = match std::env::var("PUBSUB_MODEL_SEED") {
        Ok(one) => vec![one.parse().expect("PUBSUB_MODEL_SEED is a number")],
        Err(_) => {
            let count = std::env::var("PUBSUB_MODEL_SEEDS")
                .ok()
                .and_then(|n| n.parse().ok())
                .unwrap_or(16);
            (1..=count).collect()
        }
    };
    for seed in seeds {
        run_seed(seed);
    }
}
