//! The README's "Use cases" are the semantics users read: every command there is run
//! here, in order, against a real mount, and what the README shows under a command
//! (its `# ...` lines) must be what the command prints.

mod common;
mod shell;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Mount, Zk, ZkServer};
use shell::{q, sh_ok};

/// One command of the README and the output shown under it.
struct Example {
    command: String,
    shown: Vec<String>,
}

/// The `sh` blocks of the README section "Use cases", as examples.
fn use_cases() -> Vec<Vec<Example>> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = readme.split("\n## Use cases\n").nth(1).expect("a Use cases section");
    let section = section.split("\n## ").next().unwrap();
    let mut blocks = Vec::new();
    for block in section.split("```sh\n").skip(1) {
        let body = block.split("```").next().unwrap();
        let mut examples: Vec<Example> = Vec::new();
        for line in body.lines() {
            match (line.strip_prefix("# ").or(if line == "#" { Some("") } else { None }), examples.last_mut()) {
                (Some(out), Some(last)) => last.shown.push(out.to_string()),
                _ => examples.push(Example { command: line.to_string(), shown: Vec::new() }),
            }
        }
        blocks.push(examples);
    }
    assert!(blocks.len() >= 5, "the README's use cases were not found");
    blocks
}

/// Output compared word by word (`ls` prints columns on a terminal, lines in a pipe),
/// with bash's "line 1: " of non-interactive shells dropped.
fn words(text: &str) -> Vec<String> {
    text.replace("bash: line 1: ", "bash: ").split_whitespace().map(String::from).collect()
}

fn bash(command: &str) -> String {
    let out = Command::new("bash").arg("-c").arg(command).output().expect("run bash");
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[test]
fn every_use_case_in_the_readme_does_what_the_readme_shows() {
    let server = ZkServer::start();
    let zk = Zk::connect(&server.connect_string());
    let mount = Mount::new(&server.connect_string());
    let other_host = Mount::new(&server.connect_string());
    let here = |text: &str| text.replace("/mnt/zk", mount.path().to_str().unwrap());
    let mut ran = 0;
    for block in use_cases() {
        for example in block {
            let command = here(&example.command);
            if command.starts_with("inotifywait") {
                // Follow the providers while a server registers on another host and
                // one unregisters here, as the README tells.
                let watcher = Command::new("bash")
                    .arg("-c")
                    .arg(format!("timeout 3 {command}"))
                    .stdout(Stdio::piped())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap();
                std::thread::sleep(Duration::from_millis(500));
                sh_ok(&format!("touch {}", q(&other_host.join("fooservice/providers/10.0.0.7:8080"))));
                // The other host's registration reaches this mount through ZooKeeper, a
                // moment after its `touch` returns: as in the README, the rm comes after.
                let arrived = mount.join("fooservice/providers/10.0.0.7:8080");
                common::wait_until(Duration::from_secs(2), "the registration shows here", || arrived.exists());
                sh_ok(&format!("rm {}", q(&mount.join("fooservice/providers/10.0.0.6:8080"))));
                let out = watcher.wait_with_output().unwrap();
                let printed = String::from_utf8_lossy(&out.stdout).into_owned();
                assert_eq!(words(&printed), words(&here(&example.shown.join("\n"))), "{command}");
            } else {
                let printed = bash(&command);
                if example.shown.is_empty() {
                    assert!(printed.is_empty(), "`{command}` printed {printed:?}; the README shows nothing");
                } else {
                    assert_eq!(words(&printed), words(&here(&example.shown.join("\n"))), "{command}");
                }
            }
            ran += 1;
        }
    }
    assert!(ran >= 10, "only {ran} README commands ran");
    // And ZooKeeper agrees with what the README says happened.
    assert_eq!(zk.get_json("/fooservice"), serde_json::json!({"threads": 3}));
    assert_eq!(zk.children("/fooservice/providers"), vec!["10.0.0.7:8080".to_string()]);
}
