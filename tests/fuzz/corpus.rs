//! Running a property: a few hundred deterministic cases plus the saved corpus under `cargo test`,
//! or random cases until a deadline under `make fuzz`, saving the shrunk failing input.

use std::fmt::Debug;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use proptest::strategy::Strategy;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestError, TestRng, TestRunner};

/// Cases per property in a normal test run: enough to catch regressions, few enough for seconds.
const QUICK_CASES: u32 = 200;

/// Cases per round while fuzzing; rounds repeat until the time is up.
const FUZZ_ROUND_CASES: u32 = 2_000;

/// The corpus of one target: `tests/fuzz-corpus/<target>/`.
pub fn dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz-corpus")
        .join(target)
}

/// Runs `check` on every file of the target's corpus, read by `parse`; panics naming the first
/// file that fails.
pub fn replay<T>(
    target: &str,
    parse: impl Fn(&[u8]) -> T,
    check: impl Fn(T) -> Result<(), TestCaseError>,
) {
    let dir = dir(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read the corpus {}: {e}", dir.display()))
        .map(|entry| entry.expect("corpus entry").path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "the corpus {} is empty", dir.display());
    for file in files {
        let bytes = std::fs::read(&file).expect("corpus file");
        if let Err(error) = check(parse(&bytes)) {
            panic!("corpus input {} fails: {error}", file.display());
        }
    }
}

/// Checks `QUICK_CASES` cases drawn with a fixed seed, so `make test` is repeatable.
pub fn quick<S>(strategy: S, check: impl Fn(S::Value) -> Result<(), TestCaseError>)
where
    S: Strategy,
    S::Value: Debug,
{
    quick_cases(QUICK_CASES, strategy, check);
}

/// Checks `cases` cases drawn with a fixed seed: for properties whose cases take long.
pub fn quick_cases<S>(
    cases: u32,
    strategy: S,
    check: impl Fn(S::Value) -> Result<(), TestCaseError>,
) where
    S: Strategy,
    S::Value: Debug,
{
    let config = Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner =
        TestRunner::new_with_rng(config, TestRng::deterministic_rng(RngAlgorithm::ChaCha));
    if let Err(error) = runner.run(&strategy, check) {
        panic!("{error}");
    }
}

/// Checks random cases until `FUZZ_SECONDS` (default 60) have passed. A failing input is shrunk,
/// written by `save` into the target's corpus, and reported.
pub fn for_a_while<S>(
    target: &str,
    strategy: S,
    save: impl Fn(&S::Value) -> Vec<u8>,
    check: impl Fn(S::Value) -> Result<(), TestCaseError>,
) where
    S: Strategy,
    S::Value: Debug,
{
    for_a_while_in_rounds_of(target, FUZZ_ROUND_CASES, strategy, save, check);
}

/// [`for_a_while`], looking at the time every `round_cases` cases: fewer for properties whose
/// cases take long, so the run ends near its time.
pub fn for_a_while_in_rounds_of<S>(
    target: &str,
    round_cases: u32,
    strategy: S,
    save: impl Fn(&S::Value) -> Vec<u8>,
    check: impl Fn(S::Value) -> Result<(), TestCaseError>,
) where
    S: Strategy,
    S::Value: Debug,
{
    let seconds = std::env::var("FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut rounds = 0u64;
    while Instant::now() < deadline {
        let config = Config {
            cases: round_cases,
            failure_persistence: None,
            ..Config::default()
        };
        let mut runner = TestRunner::new(config);
        match runner.run(&strategy, &check) {
            Ok(()) => rounds += 1,
            Err(TestError::Fail(reason, input)) => {
                let bytes = save(&input);
                let name = format!("found-{:016x}", fnv1a(&bytes));
                let path = dir(target).join(name);
                std::fs::write(&path, bytes).expect("write the corpus");
                panic!(
                    "{target}: {reason}\nminimal input: {input:?}\nsaved to {}",
                    path.display()
                );
            }
            Err(TestError::Abort(reason)) => panic!("{target}: aborted: {reason}"),
        }
    }
    eprintln!(
        "{target}: {} cases in {seconds}s, no failure",
        rounds * u64::from(round_cases)
    );
}

/// A stable name for a saved input.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}
