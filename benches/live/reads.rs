//! (b) of the live benchmark: warm reads. `read_dir`/`read` in-process and `ls`/`cat`
//! as commands, on the mount and on tmpfs, and the native round trips they stand in
//! for.

use std::fs;
use std::hint::black_box;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::Duration;

use super::common::{wait_until, Mount, Zk};
use super::support::{fmt_dur, print_table, ratio, read, time_iters, time_pair, verdict};
use super::{bench_data, MANY_CHILDREN};

/// Warm-up and measured iterations of in-process reads and native round trips.
const READ_WARMUP: usize = 100;
const READ_ITERS: usize = 2000;
/// Warm-up and measured runs of `ls` and `cat` as commands.
const CMD_WARMUP: usize = 10;
const CMD_RUNS: usize = 200;
/// Target: mount ≤ this × tmpfs.
const READ_TARGET: f64 = 2.0;

/// Lists `dir` fully (≈ `ls`); the number of entries.
fn list(dir: &Path) -> usize {
    let mut n = 0;
    for entry in fs::read_dir(dir).unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display())) {
        entry.unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()));
        n += 1;
    }
    n
}

/// `PROG ARG >/dev/null` as a child process; panics unless it succeeds.
fn run_command(prog: &str, arg: &Path) {
    let status = Command::new(prog)
        .arg(arg)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .unwrap_or_else(|e| panic!("run {prog}: {e}"));
    assert!(status.success(), "{prog} {} failed: {status}", arg.display());
}

/// Runs (b), prints its table; returns (targets met, targets).
pub fn reads_section(admin: &Zk, mount: &Mount) -> (usize, usize) {
    eprintln!("  (b) warm reads ...");
    let data = bench_data(0);
    admin.set("/bench", &data);
    let want: serde_json::Value = serde_json::from_slice(&data).expect("bench data is JSON");
    let mnt_file = mount.join("/bench/properties.json");
    let mnt_dir = mount.join("/bench/many");
    wait_until(Duration::from_secs(10), "the mount shows /bench's data", || {
        fs::read(&mnt_file).ok().and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            == Some(want.clone())
    });
    // Warm means at rest: for a second after a change of its data, a file's attributes
    // are not cached by the kernel (see `zkfs::model::view::SETTLE`).
    thread::sleep(zkfs::model::view::SETTLE + Duration::from_millis(100));

    // tmpfs mirror: the same bytes, the same number of entries.
    let shm = tempfile::Builder::new().prefix("zkfs-bench-").tempdir_in("/dev/shm").expect("temp dir in /dev/shm");
    let shm_file = shm.path().join("properties.json");
    let shm_dir = shm.path().join("many");
    let shown = read(&mnt_file);
    fs::write(&shm_file, &shown).expect("write tmpfs properties.json");
    fs::create_dir(&shm_dir).expect("mkdir tmpfs many");
    for i in 0..MANY_CHILDREN {
        fs::create_dir(shm_dir.join(format!("node-{i:03}"))).expect("mkdir tmpfs child");
    }
    fs::write(shm_dir.join("properties.json"), read(&mnt_dir.join("properties.json"))).expect("write tmpfs file");
    let (n_mnt, n_shm) = (list(&mnt_dir), list(&shm_dir));
    assert_eq!(n_mnt, n_shm, "the mount and tmpfs directories differ in size");

    let (ls_mnt, ls_shm) = time_pair(
        READ_WARMUP,
        READ_ITERS,
        || {
            black_box(list(&mnt_dir));
        },
        || {
            black_box(list(&shm_dir));
        },
    );
    let (cat_mnt, cat_shm) = time_pair(
        READ_WARMUP,
        READ_ITERS,
        || {
            black_box(read(&mnt_file));
        },
        || {
            black_box(read(&shm_file));
        },
    );
    let (ls_cmd_mnt, ls_cmd_shm) =
        time_pair(CMD_WARMUP, CMD_RUNS, || run_command("ls", &mnt_dir), || run_command("ls", &shm_dir));
    let (cat_cmd_mnt, cat_cmd_shm) =
        time_pair(CMD_WARMUP, CMD_RUNS, || run_command("cat", &mnt_file), || run_command("cat", &shm_file));
    let client = admin.client();
    let children = time_iters(READ_WARMUP, READ_ITERS, || {
        black_box(admin.block_on(client.get_children("/bench/many")).expect("get_children /bench/many"));
    });
    let get = time_iters(READ_WARMUP, READ_ITERS, || {
        black_box(admin.block_on(client.get_data("/bench")).expect("get_data /bench"));
    });

    println!(
        "(b) warm reads: DIR = /bench/many ({n_mnt} entries: {MANY_CHILDREN} children + properties.json), \
         FILE = /bench/properties.json ({} bytes)",
        shown.len()
    );
    println!(
        "    in-process: {READ_ITERS} iterations after {READ_WARMUP} warm-up; commands: {CMD_RUNS} runs after \
         {CMD_WARMUP} warm-up; zkfs and tmpfs (the same tree in /dev/shm) interleaved"
    );
    let mut rows = vec![vec![
        "operation".to_string(),
        "zkfs median".into(),
        "p99".into(),
        "tmpfs median".into(),
        "p99".into(),
        "zkfs/tmpfs".into(),
        format!("target <={READ_TARGET}x"),
        "native round trip".into(),
        "median".into(),
        "p99".into(),
        "zkfs/native".into(),
    ]];
    let mut met = 0;
    let cases = [
        ("read_dir(DIR), all entries", &ls_mnt, &ls_shm, Some(("get_children /bench/many", &children))),
        ("fs::read(FILE)", &cat_mnt, &cat_shm, Some(("get_data /bench", &get))),
        ("`ls DIR >/dev/null`", &ls_cmd_mnt, &ls_cmd_shm, None),
        ("`cat FILE >/dev/null`", &cat_cmd_mnt, &cat_cmd_shm, None),
    ];
    for (label, m, t, native) in cases {
        let r = ratio(m.median(), t.median());
        if r <= READ_TARGET {
            met += 1;
        }
        let mut row = vec![
            label.to_string(),
            fmt_dur(m.median()),
            fmt_dur(m.p99()),
            fmt_dur(t.median()),
            fmt_dur(t.p99()),
            format!("{r:.2}x"),
            verdict(r, READ_TARGET).into(),
        ];
        match native {
            Some((op, n)) => row.extend([
                op.to_string(),
                fmt_dur(n.median()),
                fmt_dur(n.p99()),
                format!("{:.2}x", ratio(m.median(), n.median())),
            ]),
            None => row.extend(["-".to_string(), "".into(), "".into(), "".into()]),
        }
        rows.push(row);
    }
    print_table(&rows, 1, &[]);
    (met, cases.len())
}
