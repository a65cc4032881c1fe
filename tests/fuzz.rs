//! A short run of every fuzz target (fuzz/run, 18 s each unless
//! NFTSENTRY_FUZZ_SECONDS says otherwise): a crash, a failed invariant or a
//! target that does not build fails the suite. The long runs (fuzz/run with
//! no argument: 10 minutes per target) are scheduled by hand.
use std::process::Command;

#[test]
fn every_fuzz_target_runs_without_a_crash() {
    let secs = std::env::var("NFTSENTRY_FUZZ_SECONDS").unwrap_or_else(|_| "18".into());
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new(format!("{root}/fuzz/run"))
        .arg(&secs)
        .output()
        .expect("cannot start fuzz/run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The table of executions per target, for whoever runs with --nocapture.
    eprintln!("{stdout}");
    assert!(
        out.status.success(),
        "fuzz/run {secs} failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    let targets = std::fs::read_to_string(format!("{root}/fuzz/Cargo.toml")).unwrap();
    let names: Vec<&str> = targets
        .lines()
        .filter_map(|l| l.strip_prefix("name = \""))
        .filter_map(|l| l.strip_suffix('"'))
        .filter(|n| *n != "nftsentry-fuzz")
        .collect();
    assert!(names.len() >= 6, "{targets}");
    for n in names {
        let row = stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(n))
            .unwrap_or_else(|| panic!("fuzz target {n} did not run:\n{stdout}"));
        let execs: u64 = row
            .split_whitespace()
            .nth(1)
            .and_then(|e| e.parse().ok())
            .unwrap_or_else(|| panic!("no execution count for {n}: {row}"));
        // Even the slowest target (config) runs thousands of inputs a second.
        assert!(execs > 1000, "{n} ran only {execs} inputs: {row}");
        assert!(row.contains(" ok "), "{row}");
    }
}
