//! Property tests over hostile PPIO input, on stable Rust with proptest: the list-page decoder fed
//! arbitrary bytes and arbitrary JSON, the paging guards fed arbitrary page sequences, and the
//! redaction of the API key from everything server text reaches (errors, logs, the view's status,
//! mirrored records). Each also replays the inputs kept in `tests/fuzz-corpus/`.
//!
//! `products` does the same for the product list: hostile lists fail the read only, within
//! bounded memory and linear time.
//!
//! `memos` measures, with the same counting allocator, what listing memos really hold against what
//! their shared bound counts.
//!
//! `cargo test --test fuzz` runs a few hundred cases of each and the corpus in seconds. The
//! ignored `fuzz_*` tests (`FUZZ_SECONDS=600 make fuzz`) run cases until the time is up and write
//! any failing input, shrunk, into the corpus, so that `make test` replays it from then on.

mod alloc;
mod corpus;
mod decoder;
mod hostile_bodies;
mod leaks;
mod memos;
mod paging;
mod products;
mod time;

#[global_allocator]
static ALLOCATOR: alloc::Counting = alloc::Counting;
