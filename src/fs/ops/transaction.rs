//! Several changes in one ZooKeeper transaction, through the mount: `zkfs import`
//! sets the extended attribute `user.zkfs.transaction` of a directory to a list of
//! changes below it, and the mount applies them in one `multi`, all or none, on its
//! own session, with its rules (its ACLs, `ro`, `/zookeeper`, names, sizes).
//!
//! The value (at most 64 KiB, the kernel's limit for an extended attribute):
//!
//! ```json
//! {"ops": [{"op": "create", "path": "a/b", "data": "{\"x\": 1}"},
//!          {"op": "set", "path": "a", "data": "{}", "version": 3},
//!          {"op": "delete", "path": "a/c", "version": 0}]}
//! ```
//!
//! Paths are relative to the directory (`""` is the directory itself); `data` is a
//! node's stored text, one JSON object (absent or null: no data); `version` is the version the change was made
//! against, so a change made meanwhile by anyone fails the whole transaction with
//! `ESTALE` (re-read and run again). Nothing is marked as this mount's own: the
//! mount hears of the changes through its watch, as of another client's, so its
//! inotify watchers get their events.

use log::info;

use crate::data::names;
use crate::data::properties::MAX_DATA_BYTES;
use crate::error::{Error, Result};
use crate::fs::ops::Fs;
use crate::model::inodes::{child_path, split_path};
use crate::zookeeper::{error_at, Acl, Op};

/// The attribute's name.
pub const TRANSACTION_XATTR: &str = "user.zkfs.transaction";

/// At most this many changes in one transaction (ZooKeeper's request limit, 1 MiB,
/// is the other bound; 64 KiB of attribute stay well below it).
pub const MAX_OPS: usize = 1000;

impl Fs {
    /// Applies the transaction `value` below directory `ino` (see the module head).
    pub fn transaction(&self, ino: u64, value: &[u8]) -> Result<()> {
        let dir = self.dir_path(ino)?;
        self.writable()?;
        let bad = |why: String| Error::InvalidDocument(format!("{dir}: {TRANSACTION_XATTR}: {why}"));
        let doc: serde_json::Value = serde_json::from_slice(value).map_err(|e| bad(format!("not JSON: {e}")))?;
        let ops = doc.get("ops").and_then(|o| o.as_array()).ok_or_else(|| bad("no \"ops\" list".into()))?;
        if ops.len() > MAX_OPS {
            return Err(bad(format!("{} changes, more than {MAX_OPS}", ops.len())));
        }
        // ACLs of the parents made before this transaction, read once each.
        let mut acls: Vec<(String, Vec<Acl>)> = Vec::new();
        let mut parsed = Vec::with_capacity(ops.len());
        for (i, op) in ops.iter().enumerate() {
            let field = |name: &str| op.get(name);
            let kind = field("op").and_then(|v| v.as_str()).unwrap_or_default();
            let rel = field("path").and_then(|v| v.as_str()).ok_or_else(|| bad(format!("change {i}: no path")))?;
            let mut path = dir.clone();
            for name in rel.split('/').filter(|n| !n.is_empty()) {
                names::check_node_name(name)?;
                path = child_path(&path, name);
            }
            self.changeable(&path)?;
            let version = || -> Result<i32> {
                field("version")
                    .and_then(|v| v.as_i64())
                    .and_then(|v| i32::try_from(v).ok())
                    .ok_or_else(|| bad(format!("change {i} ({path}): no version")))
            };
            let data = || -> Result<Vec<u8>> {
                let text = match field("data") {
                    None | Some(serde_json::Value::Null) => return Ok(Vec::new()), // a node with no data
                    Some(v) => v.as_str().ok_or_else(|| bad(format!("change {i} ({path}): data is not a string")))?,
                };
                if text.len() > MAX_DATA_BYTES {
                    return Err(Error::TooLarge(format!(
                        "{path}: {} bytes is more than the {MAX_DATA_BYTES} bytes ZooKeeper accepts for a node",
                        text.len()
                    )));
                }
                match serde_json::from_str::<serde_json::Value>(text) {
                    Ok(serde_json::Value::Object(_)) => Ok(text.as_bytes().to_vec()),
                    _ => Err(bad(format!("change {i} ({path}): data is not one JSON object"))),
                }
            };
            parsed.push(match kind {
                "create" => {
                    let acl = self.acl_for(&path, &parsed, &mut acls)?;
                    Op::Create { data: data()?, acl, path }
                }
                "set" => Op::Set { data: data()?, version: version()?, path },
                "delete" => Op::Delete { version: version()?, path },
                other => return Err(bad(format!("change {i}: {other:?} is not create, set or delete"))),
            });
        }
        let n = parsed.len();
        let ops = parsed.clone();
        let outcome = self.session.call(&dir, |c| async move { c.multi(&ops).await })?;
        match outcome {
            Ok(()) => {
                info!("{dir}: a transaction of {n} changes applied");
                Ok(())
            }
            Err((index, e)) => {
                let path = parsed.get(index).map_or(dir.as_str(), |op| op.path());
                Err(match e {
                    crate::zookeeper::Error::BadVersion => Error::Conflict(format!(
                        "{path}: changed by another client since it was read; nothing of the transaction was applied"
                    )),
                    e => error_at(e, path),
                })
            }
        }
    }

    /// The ACL a node created at `path` takes: its parent's (as `mkdir` gives it),
    /// the parent made earlier in this transaction or read from ZooKeeper.
    fn acl_for(&self, path: &str, earlier: &[Op], read: &mut Vec<(String, Vec<Acl>)>) -> Result<Vec<Acl>> {
        if !self.session.authenticated() {
            return Ok(crate::zookeeper::auth::anyone_all());
        }
        let parent = split_path(path).map_or("/", |(p, _)| p).to_string();
        let made = earlier.iter().find_map(|op| match op {
            Op::Create { path, acl, .. } if *path == parent => Some(acl.clone()),
            _ => None,
        });
        if let Some(acl) = made {
            return Ok(acl);
        }
        if let Some((_, acl)) = read.iter().find(|(p, _)| *p == parent) {
            return Ok(acl.clone());
        }
        let p = parent.clone();
        let acl = self.session.call(&parent, |c| c.get_acl(&p))?;
        read.push((parent, acl.clone()));
        Ok(acl)
    }
}
