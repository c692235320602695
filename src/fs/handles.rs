//! Open files, and how what is written to them changes ZooKeeper.
//!
//! * Opened with `O_TRUNC` (`>`), or written without `O_APPEND`: the written object
//!   **sets** the properties; keys not written are removed.
//! * Opened with `O_APPEND` (`>>`): the written keys are **merged** into the existing
//!   properties in a read-modify-write that carries the znode version and retries on
//!   conflict, so concurrent writers anywhere lose nothing.
//! * A set is a compare-and-set against the version it replaces as the writer knew
//!   it: the version this thread last opened for reading (an editor's read, see
//!   [`Handles::note_read`]), else the one current at the write's open. If another
//!   writer came in between, the set is refused with ESTALE ([`Error::Conflict`])
//!   rather than overwrite that change; re-running the command applies it.
//! * A registration keeps its `pid` under both.
//! * A merge keeps every key not written byte for byte, and is refused (EINVAL) on
//!   data that is not UTF-8 (see [`crate::data::properties::merge_data`]).
//!
//! The change is made by the `write` that completes the object ([`crate::data::document`]),
//! which returns only once ZooKeeper has accepted it, or fails with the reason.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use log::{debug, warn};

use crate::data::document::{Document, Progress};
use crate::data::properties::{self, MAX_DATA_BYTES};
use crate::error::{Error, Result};
use crate::model::inodes::{Inode, InodeKind};
use crate::model::view::View;
use crate::sync::Recover;

/// How many times an update retries after losing a race with another writer.
const MAX_UPDATE_ATTEMPTS: usize = 1000;

/// How an open file will be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum OpenMode {
    /// Not written.
    Read,
    /// Written objects replace the properties (`>`).
    Set,
    /// Written objects are merged into the properties (`>>`).
    Update,
}

impl OpenMode {
    /// The mode of an `open(2)` with `flags`.
    pub fn from_flags(flags: i32) -> OpenMode {
        if flags & libc::O_ACCMODE == libc::O_RDONLY {
            OpenMode::Read
        } else if flags & libc::O_APPEND != 0 {
            OpenMode::Update
        } else {
            OpenMode::Set
        }
    }

    /// True unless read-only.
    pub fn writes(self) -> bool {
        self != OpenMode::Read
    }
}

/// One open file.
pub struct Handle {
    /// Its inode number.
    pub ino: u64,
    /// What it shows.
    pub inode: Inode,
    /// What it reads: the rendering at open time.
    pub snapshot: Arc<Vec<u8>>,
    mode: OpenMode,
    doc: Document,
    /// The version a set must replace (see the module docs); `None`: any.
    base: Option<i32>,
    /// The thread that opened it, whose remembered read its writes advance.
    opener: Option<u32>,
}

impl Handle {
    /// A handle on `inode` showing `snapshot`.
    pub fn new(ino: u64, inode: Inode, snapshot: Arc<Vec<u8>>, mode: OpenMode) -> Handle {
        Handle { ino, inode, snapshot, mode, doc: Document::new(), base: None, opener: None }
    }

    /// The same, opened by thread `opener`, whose sets replace only version `base`.
    pub fn based_on(self, base: Option<i32>, opener: Option<u32>) -> Handle {
        Handle { base, opener, ..self }
    }

    /// True if the handle was opened for writing.
    pub fn writes(&self) -> bool {
        self.mode.writes()
    }
}

/// An open file as handed over (see [`Handles::handed`]).
#[derive(serde::Serialize, serde::Deserialize)]
pub struct HandedHandle {
    fh: u64,
    ino: u64,
    path: String,
    kind: InodeKind,
    snapshot: Vec<u8>,
    mode: OpenMode,
    doc: crate::data::document::HandedDocument,
    base: Option<i32>,
    opener: Option<u32>,
}

/// How many editors' reads are remembered (see [`Handles::note_read`]); past it the
/// oldest are forgotten (their writes then compare against the version at open).
const MAX_READS: usize = 4096;

/// The table of open files.
pub struct Handles {
    view: Arc<View>,
    map: Mutex<HashMap<u64, Arc<Mutex<Handle>>>>,
    next: AtomicU64,
    /// (thread, path, is a registration) → the version of the data it last opened for
    /// reading. In-memory work only under the lock, never another lock: no deadlock.
    reads: Mutex<Reads>,
}

#[derive(Default)]
struct Reads {
    versions: HashMap<(u32, String, bool), i32>,
    order: std::collections::VecDeque<(u32, String, bool)>,
}

fn read_key(tid: u32, inode: &Inode) -> (u32, String, bool) {
    (tid, inode.path.clone(), inode.kind == InodeKind::Registration)
}

impl Handles {
    /// An empty table.
    pub fn new(view: Arc<View>) -> Handles {
        Handles { view, map: Mutex::default(), next: AtomicU64::new(1), reads: Mutex::default() }
    }

    /// Thread `tid` opened `inode` for reading at `version`: an editor (`sed -i`, vim,
    /// Python's read-then-`os.replace`) bases its next replacing write on it. Keyed by
    /// thread, not process: the kernel gives the thread at no cost, and editors read
    /// and write from one thread.
    pub fn note_read(&self, tid: u32, inode: &Inode, version: i32) {
        let key = read_key(tid, inode);
        let mut r = self.reads.locked();
        if r.versions.insert(key.clone(), version).is_none() {
            r.order.push_back(key);
            while r.order.len() > MAX_READS {
                if let Some(old) = r.order.pop_front() {
                    r.versions.remove(&old);
                }
            }
        }
    }

    /// The version thread `tid` last read of `inode`. Not forgotten as it is asked
    /// for: a request may be run twice (`Error::WouldWait`).
    pub fn read_version(&self, tid: u32, inode: &Inode) -> Option<i32> {
        self.reads.locked().versions.get(&read_key(tid, inode)).copied()
    }

    /// Thread `tid` wrote `inode`, making `version`: what it knows now, if it had read it
    /// (so that its next write is not refused for its own change).
    pub fn wrote(&self, tid: u32, inode: &Inode, version: i32) {
        if let Some(v) = self.reads.locked().versions.get_mut(&read_key(tid, inode)) {
            *v = version;
        }
    }

    /// Adds a handle; returns its number.
    pub fn insert(&self, handle: Handle) -> u64 {
        let fh = self.next.fetch_add(1, Ordering::Relaxed);
        self.map.locked().insert(fh, Arc::new(Mutex::new(handle)));
        fh
    }

    /// The handle `fh`.
    pub fn get(&self, fh: u64) -> Result<Arc<Mutex<Handle>>> {
        self.map.locked().get(&fh).cloned().ok_or(Error::Stale)
    }

    /// An open handle on inode `ino`, if any (`futimens` on a descriptor arrives without
    /// it: the kernel passes a file handle only to `ftruncate`).
    pub fn open_on(&self, ino: u64) -> Option<Arc<Mutex<Handle>>> {
        // The table's lock is not held while a handle's is taken (a write holds its
        // handle's lock across a ZooKeeper call).
        let all: Vec<_> = self.map.locked().values().cloned().collect();
        all.into_iter().find(|h| h.locked().ino == ino)
    }

    /// Adds written bytes; applies the object they complete.
    pub fn write(&self, fh: u64, offset: u64, data: &[u8]) -> Result<usize> {
        let handle = self.get(fh)?;
        let mut h = handle.locked();
        let offset = match h.mode {
            OpenMode::Read => return Err(Error::NotPermitted("file not open for writing".into())),
            OpenMode::Update => None,
            OpenMode::Set => Some(offset),
        };
        match h.doc.write(offset, data) {
            Err(e) => {
                warn!("refused write to {}: {e}; nothing was changed", shown(&h.inode));
                Err(e)
            }
            // Applied from the text as written, so strings and numbers keep their bytes.
            Ok(Progress::Complete(_)) => {
                let result = self.apply(&h.inode, h.mode, h.doc.text(), h.base);
                // A second object written to the same descriptor replaces this one.
                let result = result.map(|version| {
                    h.base = h.base.map(|_| version);
                    if let Some(tid) = h.opener {
                        self.wrote(tid, &h.inode, version);
                    }
                });
                h.doc.set_applied(&result);
                match &result {
                    Ok(()) => debug!("{} {:?} applied", shown(&h.inode), h.mode),
                    Err(e) => warn!("refused change to {}: {e}; nothing was changed", shown(&h.inode)),
                }
                result.map(|()| data.len())
            }
            Ok(Progress::Incomplete | Progress::Nothing) => Ok(data.len()),
        }
    }

    /// `O_TRUNC` arriving as a truncate: the handle sets.
    pub fn truncate(&self, fh: u64) -> Result<()> {
        let handle = self.get(fh)?;
        let mut h = handle.locked();
        if h.mode == OpenMode::Update {
            h.mode = OpenMode::Set;
        }
        Ok(())
    }

    /// A `close`: fails if the document is still incomplete.
    pub fn flush(&self, fh: u64) -> Result<()> {
        let handle = self.get(fh)?;
        let h = handle.locked();
        h.doc.finish().inspect_err(|e| warn!("close of {}: {e}", shown(&h.inode)))
    }

    /// The open files, for the next process image of the mount (`zkfs reload`): the
    /// next handle number, and each handle.
    pub fn handed(&self) -> (u64, Vec<HandedHandle>) {
        let map = self.map.locked();
        let handles = map
            .iter()
            .map(|(fh, h)| {
                let h = h.locked();
                HandedHandle {
                    fh: *fh,
                    ino: h.ino,
                    path: h.inode.path.clone(),
                    kind: h.inode.kind,
                    snapshot: h.snapshot.to_vec(),
                    mode: h.mode,
                    doc: h.doc.handed(),
                    base: h.base,
                    opener: h.opener,
                }
            })
            .collect();
        (self.next.load(Ordering::SeqCst), handles)
    }

    /// Takes over the open files [`Handles::handed`] gave.
    pub fn take_over(&self, next: u64, handles: Vec<HandedHandle>) {
        let mut map = self.map.locked();
        let mut top = next;
        for h in handles {
            top = top.max(h.fh + 1);
            let inode = Inode { path: h.path, kind: h.kind };
            let handle = Handle {
                ino: h.ino,
                inode,
                snapshot: Arc::new(h.snapshot),
                mode: h.mode,
                doc: Document::restored(h.doc),
                base: h.base,
                opener: h.opener,
            };
            map.insert(h.fh, Arc::new(Mutex::new(handle)));
        }
        self.next.store(top, Ordering::SeqCst);
    }

    /// The last close: the handle goes.
    pub fn release(&self, fh: u64) {
        let Some(handle) = self.map.locked().remove(&fh) else { return };
        let h = handle.locked();
        if h.doc.is_pending() {
            warn!("{}: an incomplete JSON object was discarded at close; nothing was changed", shown(&h.inode));
        }
    }

    /// Applies a complete object to ZooKeeper; returns the data's new version.
    /// `text` is what was written: the object's bytes as the program wrote them. A set
    /// with a `base` replaces only that version (else [`Error::Conflict`]).
    pub(crate) fn apply(&self, inode: &Inode, mode: OpenMode, text: &[u8], base: Option<i32>) -> Result<i32> {
        let base = if mode == OpenMode::Set { base } else { None };
        let session = self.view.session();
        let path = inode.path.as_str();
        let registration = inode.kind == InodeKind::Registration;
        // The writer's own syscalls give its watchers their events: no echo.
        let _local = self.view.local(path);
        if mode == OpenMode::Set && !registration {
            let data = sized(properties::set_data(text), path)?;
            let stat = match base {
                Some(v) => session.set_if_version(path, &data, v)?.ok_or_else(|| conflict(inode, v))?,
                None => {
                    let (p, d) = (path.to_string(), data.clone());
                    session.call(path, |c| async move { c.set_data(&p, &d, None).await })?
                }
            };
            let version = stat.version;
            self.view.local_data(path, data, stat);
            return Ok(version);
        }
        for _ in 0..MAX_UPDATE_ATTEMPTS {
            let p = path.to_string();
            let (old, stat) = session.call(path, |c| async move { c.get_data(&p).await })?;
            if registration && stat.ephemeral_owner != session.session_id() {
                return Err(Error::NotPermitted(format!("{path} is a registration of another ZooKeeper session")));
            }
            if let Some(v) = base.filter(|v| *v != stat.version) {
                return Err(conflict(inode, v));
            }
            let new = match mode {
                OpenMode::Set => properties::set_keeping(&old, "pid", text)?,
                // Spliced into the stored bytes: the keys not written keep theirs.
                _ => properties::merge_data(&old, text).inspect_err(|e| warn!("{path}: `>>` refused: {e}"))?,
            };
            let data = sized(new, path)?;
            let outcome = session.set_if_version(path, &data, stat.version)?;
            if let Some(stat) = outcome {
                if registration {
                    session.remember_registration(path, &data);
                }
                let version = stat.version;
                self.view.local_data(path, data, stat);
                return Ok(version);
            }
            if let Some(v) = base {
                return Err(conflict(inode, v));
            }
            debug!("{path} changed under an update; retrying");
        }
        Err(Error::Unavailable(format!("{path}: too many concurrent writers; update not applied")))
    }
}

fn conflict(inode: &Inode, base: i32) -> Error {
    Error::Conflict(format!(
        "{} was changed by another writer after version {base}, which this change was based on; \
         nothing was changed: run the command again",
        shown(inode)
    ))
}

fn sized(data: Vec<u8>, path: &str) -> Result<Vec<u8>> {
    if data.len() > MAX_DATA_BYTES {
        return Err(Error::TooLarge(format!(
            "{path}: {} bytes is more than the {MAX_DATA_BYTES} bytes ZooKeeper accepts for a node",
            data.len()
        )));
    }
    Ok(data)
}

fn shown(inode: &Inode) -> String {
    match inode.kind {
        InodeKind::Properties if inode.path == "/" => "/properties.json".into(),
        InodeKind::Properties => format!("{}/properties.json", inode.path),
        _ => inode.path.clone(),
    }
}
