//! Running ordinary shell commands against a mount, as a user would.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

/// What a shell command did.
pub struct Ran {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
    pub pid: u32,
}

/// Runs `script` with `sh -c` and waits for it.
pub fn sh(script: &str) -> Ran {
    let child = Command::new("sh")
        .arg("-c")
        .arg(script)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn sh");
    let pid = child.id();
    let out: Output = child.wait_with_output().expect("wait sh");
    Ran {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        pid,
    }
}

/// Runs `script` and panics with its stderr unless it succeeds.
pub fn sh_ok(script: &str) -> String {
    let r = sh(script);
    assert!(r.ok, "`{script}` failed: {}", r.stderr);
    r.stdout
}

/// Single-quotes a path for a shell script.
pub fn q(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', "'\\''"))
}

/// The file's JSON content, read with `cat`.
pub fn cat_json(p: &Path) -> serde_json::Value {
    let text = sh_ok(&format!("cat {}", q(p)));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON ({e}): {text:?}", p.display()))
}

/// Sorted names `ls` prints for a directory.
pub fn ls(p: &Path) -> Vec<String> {
    let mut v: Vec<String> = sh_ok(&format!("ls -A {}", q(p))).lines().map(String::from).collect();
    v.sort();
    v
}
