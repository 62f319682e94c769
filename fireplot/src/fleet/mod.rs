//! The fleet (DESIGN §8): sensors publish to NATS JetStream, collectors
//! keep PostgreSQL, every reading command can read it.
//!
//! ```text
//! fireplot run --publish nats://… --sensor NAME ──► JetStream stream FIREPLOT
//!     (spool on disk while the broker is away)          subjects fireplot.NAME.{events,alerts,counters}
//!                                                        │ durable pull consumer, ack after commit
//!                                   fireplot collect (1..n) ──► PostgreSQL (events by day, idempotent
//!                                                                on (sensor, seq))
//! ```

pub mod collect;
pub mod nats;
pub mod pg;
pub mod pgstore;
pub mod publish;
mod sender;
pub mod spool;
pub mod wire;
