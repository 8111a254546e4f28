//! The fuzz targets on the stable toolchain, so that a regression fails CI without nightly: each
//! input of `fuzz/corpus/<target>/` (the seeds, what fuzzing kept, every input that once crashed)
//! and then a bounded number of random and mutated inputs go through the same entry point as
//! `cargo fuzz run <target>`, [`canopy::fuzzing`]. A panic fails the test as it stops the fuzzer.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

/// Random and mutated inputs per target: a few seconds each.
const CASES: u32 = 512;

fn entry_point(target: &str) -> canopy::fuzzing::Target {
    canopy::fuzzing::TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .map(|(_, run)| *run)
        .expect("a target of canopy::fuzzing")
}

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("a corpus entry").path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} has no inputs", dir.display());
    files
        .into_iter()
        .map(|path| {
            let bytes = std::fs::read(&path).expect("a corpus file");
            (path, bytes)
        })
        .collect()
}

/// One edit of a corpus input: overwrite, insert or remove a byte.
#[derive(Debug, Clone)]
enum Edit {
    Set(Index, u8),
    Insert(Index, u8),
    Remove(Index),
}

fn mutate(base: &[u8], edits: &[Edit]) -> Vec<u8> {
    let mut out = base.to_vec();
    for edit in edits {
        match *edit {
            Edit::Set(at, b) if !out.is_empty() => {
                let i = at.index(out.len());
                out[i] = b;
            }
            Edit::Insert(at, b) => out.insert(at.index(out.len() + 1), b),
            Edit::Remove(at) if !out.is_empty() => {
                out.remove(at.index(out.len()));
            }
            _ => {}
        }
    }
    out
}

/// Bytes half the time printable, so that the text targets get past UTF-8.
fn byte() -> impl Strategy<Value = u8> {
    prop_oneof![any::<u8>(), 0x20u8..0x7f]
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<Index>(), byte()).prop_map(|(at, b)| Edit::Set(at, b)),
        (any::<Index>(), byte()).prop_map(|(at, b)| Edit::Insert(at, b)),
        any::<Index>().prop_map(Edit::Remove),
    ]
}

/// Replays `target`'s corpus, then runs [`CASES`] inputs: random bytes, or a corpus input with
/// a few edits.
fn replay_and_explore(target: &str) {
    let run = entry_point(target);
    let corpus = corpus(target);
    for (path, bytes) in &corpus {
        if catch_unwind(|| run(bytes)).is_err() {
            panic!("{target}: {} panics", path.display());
        }
    }

    let inputs = prop_oneof![
        proptest::collection::vec(byte(), 0..256),
        (
            any::<Index>(),
            proptest::collection::vec(edit(), 1..8),
            any::<Index>()
        )
            .prop_map(|(pick, edits, cut)| {
                let base = &corpus[pick.index(corpus.len())].1;
                let mut input = mutate(base, &edits);
                // A quarter of the inputs cut short, as a truncated body or file is.
                if cut.index(4) == 0 {
                    input.truncate(cut.index(input.len() + 1));
                }
                input
            }),
    ];
    let mut runner = TestRunner::new(Config {
        cases: CASES,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&inputs, |input| {
        catch_unwind(AssertUnwindSafe(|| run(&input)))
            .map_err(|_| TestCaseError::fail(format!("{target} panics")))
    });
    if let Err(e) = result {
        panic!("{target}: {e}");
    }
}

#[test]
fn remote_write_bodies_never_panic() {
    replay_and_explore("remote_write");
}

#[test]
fn kserve_v1_bodies_never_panic() {
    replay_and_explore("kserve_v1");
}

#[test]
fn kserve_v2_bodies_never_panic() {
    replay_and_explore("kserve_v2");
}

#[test]
fn checkpoint_payloads_never_panic() {
    replay_and_explore("checkpoint");
}

#[test]
fn csv_texts_never_panic() {
    replay_and_explore("csv");
}

#[test]
fn config_files_never_panic() {
    replay_and_explore("config");
}

#[test]
fn promql_expressions_never_panic() {
    replay_and_explore("promql");
}
