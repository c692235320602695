//! The view handed from one process image of a mount to the next (`zkfs reload`, see
//! `kernel/handover.rs`): the inode numbers the kernel holds keep meaning the same
//! paths, the kernel's lookup counts go on, and the cached nodes come along, so that a
//! change made elsewhere while the mount was handed over is told to the kernel (and
//! its inotify watchers) by the successor's re-read, as after an outage.

use serde::{Deserialize, Serialize};

use crate::model::inodes::{InodeKind, Inodes};
use crate::model::tree::{Child, Kind, Node, NodeView};
use crate::model::view::{Change, View};
use crate::zookeeper::Stat;

/// A view as handed over.
#[derive(Serialize, Deserialize)]
pub struct HandedView {
    /// The inode table: the next number, and each path's number and kind bits.
    next: u64,
    inodes: Vec<(u64, String, u64)>,
    /// The kernel's lookup count of each inode it holds.
    held: Vec<(u64, u64)>,
    nodes: Vec<HandedNode>,
    /// The latest change a read showed.
    seen: i64,
}

#[derive(Serialize, Deserialize)]
struct HandedNode {
    path: String,
    kind: Kind,
    data: Vec<u8>,
    stat: [i64; 11],
    children: Option<Vec<(String, Child)>>,
    unknown: Vec<String>,
    names_shown: bool,
}

fn stat_fields(s: &Stat) -> [i64; 11] {
    [
        s.czxid,
        s.mzxid,
        s.ctime,
        s.mtime,
        i64::from(s.version),
        i64::from(s.cversion),
        i64::from(s.aversion),
        s.ephemeral_owner,
        i64::from(s.data_length),
        i64::from(s.num_children),
        s.pzxid,
    ]
}

fn stat_of(f: [i64; 11]) -> Stat {
    let small = |v: i64| i32::try_from(v).unwrap_or(i32::MAX);
    Stat {
        czxid: f[0],
        mzxid: f[1],
        ctime: f[2],
        mtime: f[3],
        version: small(f[4]),
        cversion: small(f[5]),
        aversion: small(f[6]),
        ephemeral_owner: f[7],
        data_length: small(f[8]),
        num_children: small(f[9]),
        pzxid: f[10],
    }
}

impl View {
    /// The view as it is now, for the successor: every inode number, and the cached
    /// nodes the kernel holds (and the root, and the mount's registrations), which the
    /// successor watches again ([`View::rearm_handed`]). The others — read ahead, or
    /// forgotten by the kernel and in their grace — are not: unwatched there, they
    /// would not be trusted, and any use reads them afresh.
    pub fn handed_over(&self) -> HandedView {
        let registrations: std::collections::HashSet<String> = self.session().registrations().into_iter().collect();
        let tree = self.tree();
        let (next, inodes) = tree.inodes.saved();
        let held = tree.held.iter().map(|(ino, n)| (*ino, *n)).collect();
        let mut wanted: std::collections::HashSet<String> = registrations;
        wanted.insert("/".to_string());
        for ino in tree.held.keys() {
            if let Some(inode) = tree.inodes.get(*ino) {
                let path = match inode.kind {
                    // A link lives in its directory's data.
                    InodeKind::Link => crate::model::inodes::split_path(&inode.path)
                        .map(|(dir, _)| dir.to_string())
                        .unwrap_or_default(),
                    _ => inode.path,
                };
                wanted.insert(path);
            }
        }
        let nodes = tree
            .nodes
            .iter()
            .filter(|(path, _)| wanted.contains(&***path))
            .map(|(path, node)| HandedNode {
                path: path.to_string(),
                kind: node.view.kind,
                data: node.view.data.to_vec(),
                stat: stat_fields(&node.view.stat),
                children: node.children.as_ref().map(|c| c.iter().map(|(n, c)| (n.clone(), *c)).collect()),
                unknown: node.unknown.iter().cloned().collect(),
                names_shown: node.names_shown,
            })
            .collect();
        HandedView { next, inodes, held, nodes, seen: self.seen() }
    }

    /// Takes over what [`View::handed_over`] gave, before the kernel is served: the
    /// same inode numbers, lookup counts and cached nodes. [`View::rearm_handed`]
    /// then watches them again.
    pub fn take_over(&self, handed: HandedView) {
        let mut tree = self.tree();
        tree.inodes = Inodes::restored(handed.next, handed.inodes);
        tree.held = handed.held.into_iter().collect();
        for n in handed.nodes {
            let mut node = Node::new(NodeView::new(n.kind, n.data, stat_of(n.stat)));
            node.children = n.children.map(|c| Box::new(c.into_iter().collect()));
            node.unknown = n.unknown.into_iter().collect();
            node.names_shown = n.names_shown;
            tree.cache(&n.path, node);
        }
        drop(tree);
        self.saw(&Stat { mzxid: handed.seen, ..stat_of([0; 11]) });
    }

    /// Watches again what the kernel holds and the mount's registrations, and re-reads
    /// each held node that is cached: what changed while the mount was handed over is
    /// told to the kernel as any change made elsewhere.
    pub fn rearm_handed(&self) {
        self.watch("/");
        let paths: Vec<String> = {
            let tree = self.tree();
            tree.held
                .keys()
                .filter_map(|ino| tree.inodes.get(*ino))
                .filter(|i| i.kind != InodeKind::Link)
                .map(|i| i.path)
                .collect()
        };
        for path in paths.into_iter().chain(self.session().registrations()) {
            let cached = self.tree().nodes.contains_key(path.as_str());
            if self.watch(&path) && cached {
                self.queue(Change::Reload(path));
            }
        }
    }
}
