//! A standard suite beside our own: pjdfstest (the Rust rewrite of the POSIX
//! filesystem test suite, `cargo install pjdfstest --version 0.2.2`, which
//! `scripts/install-deps` does) run, stock, in a directory of a real zkfs mount.
//!
//! Its results are compared with `tests/data/pjdfstest-expected.txt`: every case zkfs
//! is known to fail, each with the section of `docs/semantics.md` that says why
//! (fifos, hard links, fixed modes, ...). A case that fails and is not listed, or one
//! listed that passes (or is no longer run), fails this test with the list of them:
//! either zkfs broke something or the list (and the document) must follow.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{semantics, Mount, ZkServer};

/// The version the expected failures were taken with: another one runs other cases.
const VERSION: &str = "0.2.2";
/// The whole suite takes a few seconds here; this only stops a hung run.
const RUN_TIMEOUT: Duration = Duration::from_secs(300);

/// What pjdfstest said of one case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Passed,
    Failed,
    Skipped,
}

/// The pjdfstest binary: `$PJDFSTEST`, else cargo's bin directory, else `PATH`.
fn binary() -> PathBuf {
    if let Some(p) = std::env::var_os("PJDFSTEST") {
        return PathBuf::from(p);
    }
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")));
    let candidates = cargo_home
        .map(|h| h.join("bin"))
        .into_iter()
        .chain(std::env::var_os("PATH").map(|p| std::env::split_paths(&p).collect::<Vec<_>>()).unwrap_or_default());
    for dir in candidates {
        if dir.join("pjdfstest").is_file() {
            return dir.join("pjdfstest");
        }
    }
    panic!("pjdfstest {VERSION} is not installed; `scripts/install-deps` installs it (cargo install pjdfstest)");
}

/// The cases of pjdfstest's output and what became of each. Its lines are
/// `NAME<padding>ok|FAILED|skipped` (reasons and backtraces indented below).
fn parse(output: &str) -> (BTreeMap<String, Outcome>, BTreeMap<String, String>) {
    let mut cases = BTreeMap::new();
    let mut reasons = BTreeMap::new();
    let mut last_failed: Option<String> = None;
    for line in output.lines().map(strip_colours) {
        if line.starts_with(char::is_whitespace) {
            if let Some(name) = last_failed.take() {
                reasons.insert(name, line.trim().to_string());
            }
            continue;
        }
        let Some((name, status)) = line.split_once(char::is_whitespace) else { continue };
        let outcome = match status.trim() {
            "ok" | "PASSED UNEXPECTEDLY" => Outcome::Passed,
            "FAILED" | "failed as expected" => Outcome::Failed,
            "skipped" => Outcome::Skipped,
            _ => continue,
        };
        last_failed = (outcome == Outcome::Failed).then(|| name.to_string());
        cases.insert(name.to_string(), outcome);
    }
    (cases, reasons)
}

/// `line` without terminal colour codes (pjdfstest colours only a terminal, but a
/// `CLICOLOR_FORCE` in the environment would bring them).
fn strip_colours(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The expected failures: case → the `docs/semantics.md#anchor` that explains it.
fn expected() -> BTreeMap<String, String> {
    let path = semantics::root().join("tests/data/pjdfstest-expected.txt");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut out = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut words = line.split_whitespace();
        let (Some(case), Some(why), None) = (words.next(), words.next(), words.next()) else {
            panic!("{}:{}: not `CASE docs/semantics.md#ANCHOR`: {line}", path.display(), i + 1);
        };
        if out.insert(case.to_string(), why.to_string()).is_some() {
            panic!("{}:{}: {case} is listed twice", path.display(), i + 1);
        }
    }
    out
}

#[test]
fn every_expected_failure_points_to_a_section_of_the_semantics() {
    let anchors: BTreeSet<String> = semantics::anchors(&semantics::text()).into_iter().collect();
    let mut wrong = Vec::new();
    for (case, why) in expected() {
        match why.strip_prefix("docs/semantics.md#") {
            Some(anchor) if anchors.contains(anchor) => {}
            _ => wrong.push(format!("{case}: {why}")),
        }
    }
    assert!(wrong.is_empty(), "these point to no heading of docs/semantics.md:\n{}", wrong.join("\n"));
}

#[test]
fn pjdfstest_fails_only_where_the_semantics_say_why() {
    let pjdfstest = binary();
    let version = Command::new(&pjdfstest).arg("--version").output().expect("run pjdfstest --version");
    let version = String::from_utf8_lossy(&version.stdout).trim().to_string();
    assert_eq!(
        version,
        format!("pjdfstest {VERSION}"),
        "{}: the expected failures are {VERSION}'s",
        pjdfstest.display()
    );

    let server = ZkServer::start();
    let mount = Mount::new(&server.connect_string());
    let dir = mount.join("pjdfstest");
    std::fs::create_dir(&dir).expect("mkdir in the mount");
    let config = semantics::root().join("tests/data/pjdfstest.toml");
    let mut child = Command::new(&pjdfstest)
        .arg("-c")
        .arg(&config)
        .arg("-p")
        .arg(&dir)
        .current_dir(&dir)
        .env("NO_COLOR", "1")
        .env_remove("CLICOLOR_FORCE")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn pjdfstest");
    let guard = Killer(child.id());
    let mut stdout = child.stdout.take().expect("pjdfstest's stdout");
    let reader = std::thread::spawn(move || {
        let mut out = String::new();
        let _ = stdout.read_to_string(&mut out);
        out
    });
    let started = Instant::now();
    while child.try_wait().expect("wait for pjdfstest").is_none() {
        assert!(started.elapsed() < RUN_TIMEOUT, "pjdfstest did not finish within {RUN_TIMEOUT:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::mem::forget(guard);
    let output = reader.join().expect("read pjdfstest's output");

    let (cases, reasons) = parse(&output);
    let count = |o| cases.values().filter(|&&c| c == o).count();
    let (passed, failed, skipped) = (count(Outcome::Passed), count(Outcome::Failed), count(Outcome::Skipped));
    eprintln!("pjdfstest on zkfs: {passed} passed, {failed} failed, {skipped} skipped, {} in all", cases.len());
    let summary = output.lines().map(strip_colours).find(|l| l.starts_with("Summary:"));
    let summary = summary.unwrap_or_else(|| panic!("pjdfstest printed no summary; its output:\n{output}"));
    assert!(summary.ends_with(&format!("{} total", cases.len())), "read {} cases, but {summary}", cases.len());

    let expected = expected();
    let mut new_failures = Vec::new();
    for (case, outcome) in &cases {
        if *outcome == Outcome::Failed && !expected.contains_key(case) {
            let why = reasons.get(case).map(String::as_str).unwrap_or("");
            new_failures.push(format!("  {case}: {why}"));
        }
    }
    let mut unexpected = Vec::new();
    for (case, why) in &expected {
        match cases.get(case) {
            Some(Outcome::Failed) => {}
            Some(Outcome::Passed) => unexpected.push(format!("  {case} passed (listed for {why})")),
            Some(Outcome::Skipped) => unexpected.push(format!("  {case} was skipped (listed for {why})")),
            None => unexpected.push(format!("  {case} was not run (listed for {why})")),
        }
    }
    let mut message = String::new();
    if !new_failures.is_empty() {
        message += &format!(
            "{} case(s) failed that tests/data/pjdfstest-expected.txt does not list: fix zkfs, or list each \
             with the section of docs/semantics.md that explains it\n{}\n",
            new_failures.len(),
            new_failures.join("\n")
        );
    }
    if !unexpected.is_empty() {
        message += &format!(
            "{} listed case(s) did not fail: remove them from tests/data/pjdfstest-expected.txt (and say so in \
             docs/semantics.md)\n{}\n",
            unexpected.len(),
            unexpected.join("\n")
        );
    }
    assert!(message.is_empty(), "{message}");
}

/// Kills pjdfstest (by its pid) if the test panics while it runs.
struct Killer(u32);

impl Drop for Killer {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.0 as i32), nix::sys::signal::Signal::SIGKILL);
    }
}

#[test]
fn the_output_of_pjdfstest_is_read_as_it_prints_it() {
    let output = "chmod::a                                ok\n\
                  \u{1b}[34mchmod::b\u{1b}[0m             \u{1b}[31mFAILED\u{1b}[0m\n\
                  \tassertion failed: x\n\
                  Backtrace:\n   0: main\n\
                  rename::c   skipped\n\trequires features: x\n\
                  rename::d          failed as expected\n\
                  rename::e     PASSED UNEXPECTEDLY\n\
                  \nSummary: 2 failed, 1 skipped, 2 passed, 0 expected failures, 5 total\n";
    let (cases, reasons) = parse(output);
    let got: Vec<(&str, Outcome)> = cases.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    assert_eq!(
        got,
        [
            ("chmod::a", Outcome::Passed),
            ("chmod::b", Outcome::Failed),
            ("rename::c", Outcome::Skipped),
            ("rename::d", Outcome::Failed),
            ("rename::e", Outcome::Passed)
        ]
    );
    assert_eq!(reasons.get("chmod::b").map(String::as_str), Some("assertion failed: x"));
}
