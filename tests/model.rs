//! A reference-model test against the real thing: random operations through a mount
//! and through an independent ZooKeeper client (standing for another host), and after
//! each one, what `ls` and `cat` show through the mount must converge on a tiny model
//! of the tree. The operations are drawn by proptest: a failure is shrunk (each try on
//! a fresh server and mount) to a short sequence, printed with the zkfs log, and its
//! seed kept in `model.proptest-regressions`; `PROPTEST_RNG_SEED=N` runs another
//! sequence.

mod common;
mod shell;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{Mount, Zk, ZkServer};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use serde_json::{json, Map, Value};
use shell::{q, sh};

/// A node of the model: a directory (persistent) or a registration (ephemeral), with
/// the properties `cat` must show.
#[derive(Debug, Clone, PartialEq)]
struct Node {
    dir: bool,
    mine: bool,
    props: Map<String, Value>,
}

/// One candidate operation: which directory, key, value, operation and registration,
/// and (for removals) whether from here or elsewhere. Candidates that do not apply to
/// the model as it is are skipped.
#[derive(Debug, Clone)]
struct Choice {
    dir: usize,
    key: usize,
    val: usize,
    op: usize,
    reg: usize,
    here: bool,
}

fn choice() -> impl Strategy<Value = Choice> {
    (0..3usize, 0..3usize, 0..100usize, 0..10usize, 0..2usize, any::<bool>())
        .prop_map(|(dir, key, val, op, reg, here)| Choice { dir, key, val, op, reg, here })
}

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => unreachable!(),
    }
}

/// What the mount shows, read with ls and cat, as the model would hold it.
fn shown(mount: &Mount, model: &BTreeMap<String, Node>) -> Result<(), String> {
    let mut dirs = vec!["".to_string()];
    dirs.extend(model.iter().filter(|(_, n)| n.dir).map(|(p, _)| p.clone()));
    for dir in dirs {
        let listed = sh(&format!("ls -A {}", q(&mount.join(&dir))));
        if !listed.ok {
            return Err(format!("ls {dir}: {}", listed.stderr));
        }
        let mut got: Vec<String> =
            listed.stdout.lines().filter(|l| *l != "properties.json").map(String::from).collect();
        got.retain(|n| !(dir.is_empty() && n == "zookeeper"));
        got.sort();
        let prefix = if dir.is_empty() { String::new() } else { format!("{dir}/") };
        let mut want: Vec<String> = model
            .keys()
            .filter_map(|p| p.strip_prefix(&prefix).filter(|rest| !rest.contains('/')).map(String::from))
            .collect();
        want.sort();
        if got != want {
            return Err(format!("ls {dir}: shows {got:?}, model {want:?}"));
        }
    }
    for (path, node) in model {
        let file = if node.dir { format!("{path}/properties.json") } else { path.clone() };
        let text = sh(&format!("cat {}", q(&mount.join(&file))));
        let got: Value = serde_json::from_str(&text.stdout).map_err(|e| format!("cat {file}: {e}: {}", text.stderr))?;
        if got != Value::Object(node.props.clone()) {
            return Err(format!("cat {file}: shows {got}, model {}", Value::Object(node.props.clone())));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        // One sequence a run (each costs a server and a mount); shrinking is bounded.
        cases: 1,
        max_shrink_iters: 64,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct("tests/model.proptest-regressions"))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_operations_here_and_elsewhere_converge_on_the_model(
        choices in prop::collection::vec(choice(), 400..600),
    ) {
        // No minimum count of operations here: a shrunk sequence runs fewer, and must
        // still fail for the reason the first one did (a fresh one runs about 100).
        let ran = run(&choices);
        eprintln!("{ran} operations");
    }
}

/// Runs up to 100 of the operations `choices` give; how many ran.
fn run(choices: &[Choice]) -> usize {
    let server = ZkServer::start();
    let elsewhere = Zk::connect(&server.connect_string());
    let mount = Mount::new(&server.connect_string());
    let mut model: BTreeMap<String, Node> = BTreeMap::new();
    let mut log = Vec::new();
    let dirs = ["a", "b", "a/c"];
    let regs = ["10.0.0.1:80", "10.0.0.2:80"];
    for (step, c) in choices.iter().enumerate() {
        if log.len() == 100 {
            break;
        }
        let dir = dirs[c.dir];
        let parent_ok = |m: &BTreeMap<String, Node>, p: &str| match p.rsplit_once('/') {
            Some((parent, _)) => m.get(parent).is_some_and(|n| n.dir),
            None => true,
        };
        let key = format!("k{}", c.key);
        let val = c.val;
        let op = c.op;
        let reg = format!("{dir}/{}", regs[c.reg]);
        let what = match op {
            0 if !model.contains_key(dir) && parent_ok(&model, dir) => {
                let r = sh(&format!("mkdir {}", q(&mount.join(dir))));
                assert!(r.ok, "mkdir {dir}: {}", r.stderr);
                model.insert(dir.into(), Node { dir: true, mine: true, props: Map::new() });
                format!("mkdir {dir}")
            }
            1 if !model.contains_key(dir) && parent_ok(&model, dir) => {
                elsewhere.create(&format!("/{dir}"), br#"{"from": "elsewhere"}"#);
                model.insert(dir.into(), Node { dir: true, mine: false, props: obj(json!({"from": "elsewhere"})) });
                format!("elsewhere: create /{dir}")
            }
            2 if model.get(dir).is_some_and(|n| n.dir) => {
                let r = sh(&format!(
                    r#"echo '{{"{key}": {val}}}' >> {}"#,
                    q(&mount.join(format!("{dir}/properties.json")))
                ));
                assert!(r.ok, "{}", r.stderr);
                model.get_mut(dir).unwrap().props.insert(key.clone(), json!(val));
                format!("{dir}/properties.json >> {key}={val}")
            }
            3 if model.get(dir).is_some_and(|n| n.dir) => {
                let r =
                    sh(&format!(r#"echo '{{"{key}": {val}}}' > {}"#, q(&mount.join(format!("{dir}/properties.json")))));
                assert!(r.ok, "{}", r.stderr);
                model.get_mut(dir).unwrap().props = obj(json!({key.clone(): val}));
                format!("{dir}/properties.json > {key}={val}")
            }
            4 if model.get(dir).is_some_and(|n| n.dir) => {
                let data = json!({ key.clone(): val }).to_string();
                elsewhere.set(&format!("/{dir}"), data.as_bytes());
                model.get_mut(dir).unwrap().props = obj(json!({key.clone(): val}));
                format!("elsewhere: set /{dir} {key}={val}")
            }
            5 if model.get(dir).is_some_and(|n| n.dir) && !model.contains_key(&reg) => {
                let r = sh(&format!("touch {}", q(&mount.join(&reg))));
                assert!(r.ok, "touch {reg}: {}", r.stderr);
                let pid = elsewhere.get_json(&format!("/{reg}"))["pid"].clone();
                model.insert(reg.clone(), Node { dir: false, mine: true, props: obj(json!({"pid": pid})) });
                format!("touch {reg}")
            }
            6 if model.get(dir).is_some_and(|n| n.dir) && !model.contains_key(&reg) => {
                elsewhere.create_ephemeral(&format!("/{reg}"), br#"{"host": "other"}"#);
                model.insert(reg.clone(), Node { dir: false, mine: false, props: obj(json!({"host": "other"})) });
                format!("elsewhere: register /{reg}")
            }
            7 if model.get(&reg).is_some_and(|n| n.mine) => {
                let r = sh(&format!("rm {}", q(&mount.join(&reg))));
                assert!(r.ok, "rm {reg}: {}", r.stderr);
                model.remove(&reg);
                format!("rm {reg}")
            }
            8 if model.get(&reg).is_some_and(|n| !n.mine) => {
                elsewhere.delete(&format!("/{reg}"));
                model.remove(&reg);
                format!("elsewhere: delete /{reg}")
            }
            9 if model.get(dir).is_some_and(|n| n.dir) && !model.keys().any(|p| p.starts_with(&format!("{dir}/"))) => {
                if c.here {
                    let r = sh(&format!("rmdir {}", q(&mount.join(dir))));
                    assert!(r.ok, "rmdir {dir}: {}", r.stderr);
                } else {
                    elsewhere.delete(&format!("/{dir}"));
                }
                model.remove(dir);
                format!("remove {dir}")
            }
            _ => continue,
        };
        log.push(what);
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            match shown(&mount, &model) {
                Ok(()) => break,
                Err(e) if Instant::now() > deadline => {
                    panic!("step {step}: {e}\noperations:\n{}\nzkfs log:\n{}", log.join("\n"), mount.log())
                }
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    }
    log.len()
}
