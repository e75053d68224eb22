//! Replays every committed fuzz input (the seed corpus and every regression) through the fuzz
//! checks, without libFuzzer, and runs each aggregation check on seeded pseudo-random inputs.
#![allow(clippy::unwrap_used, clippy::expect_used)] // Test helpers fail loudly by design.

use std::path::Path;

type Check = fn(&[u8]);

const TARGETS: [(&str, Check); 8] = [
    (
        "agg_differential",
        quiver_kernels::fuzz::check_agg_differential,
    ),
    ("agg_merge", quiver_kernels::fuzz::check_agg_merge),
    ("ingest_csv", quiver_ingest::fuzz::check_csv),
    ("ingest_json", quiver_ingest::fuzz::check_json_lines),
    ("ingest_1brc", quiver_ingest::fuzz::check_1brc),
    ("sql_parse", quiver_sql::check_sql_parse),
    (
        "window_differential",
        quiver_exec::fuzz::check_window_differential,
    ),
    ("expr_eval", quiver_kernels::fuzz::check_expr_eval),
];

fn replay(kind: &str) -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz")
        .join(kind);
    let mut replayed = 0;
    for (target, check) in TARGETS {
        let dir = root.join(target);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
            {
                continue;
            }
            let data = match std::fs::read(&path) {
                Ok(data) => data,
                // A fuzzer running on this corpus replaces inputs as it reduces them.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => panic!("{}: {e}", path.display()),
            };
            let outcome = std::panic::catch_unwind(|| check(&data));
            assert!(outcome.is_ok(), "{target} fails on {}", path.display());
            replayed += 1;
        }
    }
    replayed
}

#[test]
fn seed_corpus_passes_every_check() {
    assert!(replay("corpus") >= 50, "the seed corpus is missing");
}

#[test]
fn every_regression_still_passes() {
    replay("regressions");
}

/// A few thousand pseudo-random inputs per aggregation check: a fuzzer's first minute, in CI.
#[test]
fn pseudo_random_inputs_pass_the_aggregation_checks() {
    let mut state = 0x5eed_u64;
    let mut next = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) as u8
    };
    for round in 0..1500 {
        let len = [4, 32, 128, 700][round % 4];
        let data: Vec<u8> = (0..len).map(|_| next()).collect();
        for (target, check) in &TARGETS[..2] {
            let outcome = std::panic::catch_unwind(|| check(&data));
            assert!(outcome.is_ok(), "{target} fails on {data:?}");
        }
    }
}
