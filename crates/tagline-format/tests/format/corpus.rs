//! Replays the cargo-fuzz corpus (fuzz/corpus/*) as ordinary tests, so every
//! input the fuzzer ever kept is checked on every `cargo test`.

use std::path::PathBuf;

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let mut out: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            let b = std::fs::read(&p).unwrap();
            (p, b)
        })
        .collect();
    out.sort();
    out
}

#[test]
fn entry_decode_corpus_replays() {
    let inputs = corpus("entry_decode");
    assert!(inputs.len() >= 20, "corpus too small: {}", inputs.len());
    for (_, data) in inputs {
        tagline_format::fuzzing::entry_decode(&data);
    }
}

#[test]
fn import_corpus_replays() {
    let inputs = corpus("import");
    assert!(inputs.len() >= 5, "corpus too small: {}", inputs.len());
    for (_, data) in inputs {
        tagline_format::fuzzing::import(&data);
    }
}
