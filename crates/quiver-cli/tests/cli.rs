//! End-to-end tests of the `quiver` binary.
#![allow(clippy::unwrap_used, clippy::expect_used)] // Test helpers fail loudly by design.

use std::path::{Path, PathBuf};
use std::process::Command;

fn quiver() -> Command {
    Command::new(env!("CARGO_BIN_EXE_quiver"))
}

fn onebrc_samples() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/1brc");
    let mut samples: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "txt") && !p.ends_with("LICENSE.txt"))
        .collect();
    samples.sort();
    assert!(
        samples.len() >= 12,
        "1BRC samples missing from {}",
        dir.display()
    );
    samples
}

#[test]
fn onebrc_reproduces_every_official_sample_byte_for_byte() {
    for sample in onebrc_samples() {
        for threads in ["1", "2"] {
            let output = quiver()
                .args(["1brc", "--threads", threads])
                .arg(&sample)
                .output()
                .unwrap();
            assert!(
                output.status.success(),
                "{}: {}",
                sample.display(),
                String::from_utf8_lossy(&output.stderr)
            );
            let expected = std::fs::read(sample.with_extension("out")).unwrap();
            assert_eq!(
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&expected),
                "{} with {threads} threads",
                sample.display()
            );
        }
    }
}

#[test]
fn onebrc_reports_bad_lines_and_keeps_the_good_ones() {
    let dir = std::env::temp_dir().join(format!("quiver-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.txt");
    std::fs::write(&path, "Oslo;1.0\nbroken line\nOslo;3.0\nRome;12.345\n").unwrap();
    let output = quiver().arg("1brc").arg(&path).output().unwrap();
    assert!(output.status.success());
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "{Oslo=1.0/2.0/3.0}\n"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("2 of 4 lines rejected"), "{stderr}");
    assert!(
        stderr.contains("record 2") && stderr.contains("missing ';'"),
        "{stderr}"
    );
    assert!(stderr.contains("record 4"), "{stderr}");
}

#[test]
fn missing_file_is_one_clear_line_and_exit_code_1() {
    let output = quiver()
        .args(["1brc", "/no/such/file.txt"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.starts_with("error: /no/such/file.txt: "), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(!stderr.contains("panicked"));
}

#[test]
fn generated_1brc_data_round_trips_through_the_parser() {
    let dir = std::env::temp_dir().join(format!("quiver-gen-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("m.txt");
    let status = quiver()
        .args([
            "gen", "1brc", "--rows", "100000", "--keys", "50", "--seed", "7", "--quiet", "-o",
        ])
        .arg(&path)
        .status()
        .unwrap();
    assert!(status.success());
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.lines().count(), 100_000);
    let output = quiver().arg("1brc").arg(&path).output().unwrap();
    assert!(output.status.success());
    assert!(
        output.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stations = String::from_utf8_lossy(&output.stdout).matches('=').count();
    assert_eq!(stations, 50);
    // Same seed, same bytes.
    let again = dir.join("m2.txt");
    quiver()
        .args([
            "gen", "1brc", "--rows", "100000", "--keys", "50", "--seed", "7", "--quiet", "-o",
        ])
        .arg(&again)
        .status()
        .unwrap();
    assert_eq!(
        std::fs::read(&path).unwrap(),
        std::fs::read(&again).unwrap()
    );
}

#[test]
fn demo_runs_and_accounts_for_every_record() {
    let output = quiver()
        .args(["demo", "--rows", "20000", "--quiet"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("Every record accounted for: 20000 counted of 20000 generated."),
        "{stdout}"
    );
    assert!(stdout.contains("M records/s"));
}

#[test]
fn usage_error_exits_2() {
    let output = quiver().arg("no-such-command").output().unwrap();
    assert_eq!(output.status.code(), Some(2));
}
