//! Bounded fuzzing on stable Rust, run by `cargo test` (test builds only).
//!
//! Each target replays its fixed corpus (`testdata/fuzz/<target>/*`, and every earlier crash
//! under `testdata/fuzz/<target>/regressions/`), then checks a seeded run of mutated inputs
//! ([`mutate`]): byte flips, splices between corpus entries, dictionary tokens, and
//! structure-aware JSON edits. A target's check asserts its properties (no panic, errors are
//! errors, round-trips where they exist); an input that panics, or runs longer than
//! [`HANG_LIMIT`], is saved under `regressions/` (so it is replayed from then on) and fails the
//! test with its path.
//!
//! `COURIER_FUZZ_ITERS` sets the number of mutated inputs per target (default
//! [`DEFAULT_ITERS`], a second or two per target in a debug build); `COURIER_FUZZ_SEED` changes
//! the seed (default: fixed per target, so a run is reproducible).

mod mutate;
mod targets;

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

/// Mutated inputs per target when `COURIER_FUZZ_ITERS` is unset.
pub(crate) const DEFAULT_ITERS: usize = 1000;
/// An input still running after this long is a hang.
pub(crate) const HANG_LIMIT: Duration = Duration::from_secs(20);

/// A check over one input, built on the fuzzing thread (engines are not `Send`).
type Check = Box<dyn FnMut(&[u8])>;

/// The corpus folder of `target`.
fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/fuzz")
        .join(target)
}

/// Every file of `dir` (not recursive), sorted by name.
fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<(PathBuf, Vec<u8>)> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .filter_map(|p| std::fs::read(&p).ok().map(|b| (p, b)))
        .collect();
    out.sort();
    out
}

fn env_number(name: &str) -> Option<u64> {
    std::env::var(name).ok()?.trim().parse().ok()
}

/// A stable 64-bit hash (FNV-1a): seeds per target and names of saved crashes.
fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Replays `target`'s corpus and regressions plus `extra_seeds`, then a seeded run of mutated
/// inputs, each checked by the check `make` builds. `dict` holds tokens the mutator inserts.
pub(crate) fn run(
    target: &str,
    dict: &'static [&'static str],
    extra_seeds: Vec<Vec<u8>>,
    make: impl FnOnce() -> Check + Send + 'static,
) {
    let dir = corpus_dir(target);
    let mut corpus: Vec<Vec<u8>> = files(&dir).into_iter().map(|(_, b)| b).collect();
    let regressions: Vec<Vec<u8>> = files(&dir.join("regressions"))
        .into_iter()
        .map(|(_, b)| b)
        .collect();
    corpus.extend(extra_seeds);
    assert!(
        !corpus.is_empty(),
        "no corpus for {target} in {}",
        dir.display()
    );
    let iters = env_number("COURIER_FUZZ_ITERS").map_or(DEFAULT_ITERS, |n| n as usize);
    let seed = env_number("COURIER_FUZZ_SEED").unwrap_or_else(|| fnv(target.as_bytes()));

    // The checks run on their own thread so a hang is seen (and reported) instead of stalling
    // the test run; the inputs go over a channel, one at a time.
    let (to_worker, inputs) = mpsc::channel::<Vec<u8>>();
    let (to_driver, results) = mpsc::channel::<Result<(), String>>();
    std::thread::Builder::new()
        .name(format!("fuzz-{target}"))
        .stack_size(64 * 1024 * 1024)
        .spawn(move || {
            let mut check = make();
            for input in inputs {
                let outcome =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(&input)))
                        .map_err(|p| panic_text(p.as_ref()));
                if to_driver.send(outcome).is_err() {
                    return;
                }
            }
        })
        .expect("spawn the fuzzing thread");
    let try_one = |input: Vec<u8>, origin: &str| {
        to_worker
            .send(input.clone())
            .expect("the fuzzing thread is alive");
        let failure = match results.recv_timeout(HANG_LIMIT) {
            Ok(Ok(())) => return,
            Ok(Err(panic)) => panic,
            Err(_) => format!("no result within {HANG_LIMIT:?} (a hang)"),
        };
        let saved = save(&dir, &input);
        panic!(
            "fuzz target {target}: {origin} input failed: {failure}\n  input saved as {}\n  input: {:?}",
            saved.display(),
            String::from_utf8_lossy(&input)
        );
    };
    for input in corpus.iter().chain(&regressions) {
        try_one(input.clone(), "corpus");
    }
    let mut rng = fastrand::Rng::with_seed(seed);
    for _ in 0..iters {
        let input = mutate::mutate(&mut rng, &corpus, dict);
        try_one(input, &format!("mutated (seed {seed})"));
    }
}

/// Saves a failing input under `regressions/`, named by its hash.
fn save(dir: &Path, input: &[u8]) -> PathBuf {
    let dir = dir.join("regressions");
    let path = dir.join(format!("{:016x}", fnv(input)));
    let _ = std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&path, input));
    path
}

fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "a panic".to_owned())
}
