//! An in-memory ZooKeeper behind the seam of `zk.rs`, for tests that run the whole
//! filesystem without a server: a tree of znodes with versions, zxids and ephemeral
//! owners, sessions with their states, and persistent recursive watches on the root.
//!
//! It can misbehave the ways a real ensemble does, on a test's command:
//! [`Server::disconnect`] (the session's calls fail with `ConnectionLoss`, it is
//! `Disconnected`, and events meanwhile are lost to it, as with ZOOKEEPER-4698), [`Server::expire`]
//! (the session's ephemerals go, its watchers get a terminal event), [`Server::stall`]
//! (calls hang until [`Server::release`] or their caller's deadline), and
//! [`Server::hold_events`] (events are delivered only at [`Server::release_events`], so a
//! reply can overtake the event of its own change — the reordering ZooKeeper forbids).
//!
//! What it leaves out: chroots, sequential and TTL nodes, multi-writes, ACL
//! enforcement, and the timing of a real session timeout (a session expires only when
//! told to).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, watch};

use super::{Acl, Error, EventType, Mode, Op, Read, ReadListed, Reply, SessionState, Stat, TreeWatcher, WatchedEvent};
use crate::sync::Recover;

/// One znode.
#[derive(Debug, Clone)]
struct Znode {
    data: Vec<u8>,
    stat: Stat,
    acl: Vec<Acl>,
}

/// One session of the fake.
struct Sess {
    state: watch::Sender<SessionState>,
    /// Its watches: `None` a recursive one on the root, `Some((path, false))` a
    /// persistent one on that node, `Some((path, true))` a recursive one on it.
    watchers: Vec<(Option<(String, bool)>, Watcher)>,
}

/// Where a watch's events go.
type Watcher = mpsc::UnboundedSender<WatchedEvent>;

impl Sess {
    fn live(&self) -> bool {
        !self.state.borrow().is_terminated()
    }
}

/// Everything the server knows.
struct State {
    nodes: BTreeMap<String, Znode>,
    zxid: i64,
    sessions: HashMap<i64, Sess>,
    next_session: i64,
    /// Sessions cut off from the server (see [`Server::disconnect`]).
    cut: HashSet<i64>,
    /// While true, events wait in `held` (see [`Server::hold_events`]).
    holding: bool,
    held: Vec<(i64, WatchedEvent)>,
}

struct Inner {
    /// The tree and the sessions. Never held across an await, nor while a `Client` is
    /// dropped (a drop takes it to close its session): cannot deadlock.
    state: Mutex<State>,
    /// True while calls stall (see [`Server::stall`]).
    stalled: watch::Sender<bool>,
}

/// The fake ensemble. Cheap to clone; clones are the same server.
#[derive(Clone)]
pub struct Server(Arc<Inner>);

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

fn parent_of(path: &str) -> Option<&str> {
    if path == "/" {
        return None;
    }
    let i = path.rfind('/')?;
    Some(if i == 0 { "/" } else { &path[..i] })
}

fn valid(path: &str) -> Result<(), Error> {
    let ok = path.starts_with('/')
        && (path == "/" || !path.ends_with('/'))
        && !path.contains("//")
        && !path.split('/').any(|c| c == "." || c == "..")
        && !path.contains('\0');
    if ok {
        Ok(())
    } else {
        Err(Error::BadArguments(&"invalid path"))
    }
}

impl Default for Server {
    fn default() -> Self {
        Server::new()
    }
}

impl Server {
    /// A server holding only the root.
    pub fn new() -> Server {
        let stat = Stat {
            czxid: 0,
            mzxid: 0,
            pzxid: 0,
            ctime: 0,
            mtime: 0,
            version: 0,
            cversion: 0,
            aversion: 0,
            ephemeral_owner: 0,
            data_length: 0,
            num_children: 0,
        };
        let root = Znode { data: Vec::new(), stat, acl: Vec::new() };
        let state = State {
            nodes: BTreeMap::from([("/".to_string(), root)]),
            zxid: 0,
            sessions: HashMap::new(),
            next_session: 0x1000,
            cut: HashSet::new(),
            holding: false,
            held: Vec::new(),
        };
        Server(Arc::new(Inner { state: Mutex::new(state), stalled: watch::Sender::new(false) }))
    }

    /// Opens a session, as a connector does.
    pub fn connect(&self, timeout: Duration) -> Result<Client, Error> {
        let mut s = self.0.state.locked();
        s.next_session += 1;
        let id = s.next_session;
        let sess = Sess { state: watch::Sender::new(SessionState::SyncConnected), watchers: Vec::new() };
        s.sessions.insert(id, sess);
        Ok(Client(Arc::new(ClientInner { server: self.clone(), id, timeout })))
    }

    /// Every path in the tree with its data, for tests to compare against.
    pub fn dump(&self) -> BTreeMap<String, (Vec<u8>, Stat)> {
        self.0.state.locked().nodes.iter().map(|(p, n)| (p.clone(), (n.data.clone(), n.stat))).collect()
    }

    /// Session `id` loses its connection: its calls fail with `ConnectionLoss`, it is
    /// `Disconnected`, and events until [`Server::reconnect`] are lost to it. Other
    /// sessions go on changing the tree.
    pub fn disconnect(&self, id: i64) {
        let mut s = self.0.state.locked();
        if let Some(sess) = s.sessions.get(&id).filter(|x| x.live()) {
            sess.state.send_replace(SessionState::Disconnected);
            s.cut.insert(id);
        }
    }

    /// Session `id` is connected again (`SyncConnected`).
    pub fn reconnect(&self, id: i64) {
        let mut s = self.0.state.locked();
        if s.cut.remove(&id) {
            if let Some(sess) = s.sessions.get(&id).filter(|x| x.live()) {
                sess.state.send_replace(SessionState::SyncConnected);
            }
        }
    }

    /// Expires session `id`: its ephemeral nodes are deleted (others hear of it), its
    /// watchers get a terminal event, its calls fail with `SessionExpired`.
    pub fn expire(&self, id: i64) {
        self.end(id, SessionState::Expired);
    }

    fn end(&self, id: i64, how: SessionState) {
        let mut s = self.0.state.locked();
        let Some(sess) = s.sessions.get_mut(&id) else { return };
        if !sess.live() {
            return;
        }
        sess.state.send_replace(how);
        let event = WatchedEvent { event_type: EventType::Session, session_state: how, path: String::new() };
        for (_, w) in sess.watchers.drain(..) {
            let _ = w.send(event.clone());
        }
        let owned: Vec<String> =
            s.nodes.iter().filter(|(_, n)| n.stat.ephemeral_owner == id).map(|(p, _)| p.clone()).collect();
        for path in owned {
            s.remove(&path);
        }
    }

    /// Calls stall (neither answered nor applied) until [`Server::release`].
    pub fn stall(&self) {
        self.0.stalled.send_replace(true);
    }

    /// Stalled calls go through, in no particular order.
    pub fn release(&self) {
        self.0.stalled.send_replace(false);
    }

    /// Watch events wait until [`Server::release_events`]: replies overtake them.
    pub fn hold_events(&self) {
        self.0.state.locked().holding = true;
    }

    /// Delivers the held events, in order, and stops holding.
    pub fn release_events(&self) {
        let mut s = self.0.state.locked();
        s.holding = false;
        let held = std::mem::take(&mut s.held);
        for (id, e) in held {
            s.deliver(id, e);
        }
    }

    /// Runs `op` for session `id` now, or once calls are released.
    fn request<T: Send + 'static>(
        &self,
        id: i64,
        op: impl FnOnce(&mut State, i64) -> Result<T, Error> + Send + 'static,
    ) -> Reply<T> {
        let apply = {
            let server = self.clone();
            move || {
                let mut s = server.0.state.locked();
                match s.sessions.get(&id) {
                    Some(sess) if sess.live() => {}
                    _ => return Err(Error::SessionExpired),
                }
                if s.cut.contains(&id) {
                    return Err(Error::ConnectionLoss);
                }
                op(&mut s, id)
            }
        };
        if !*self.0.stalled.borrow() {
            let result = apply();
            return Box::pin(async move { result });
        }
        let mut stalled = self.0.stalled.subscribe();
        Box::pin(async move {
            // The sender lives in the server, which `apply` keeps alive.
            let _ = stalled.wait_for(|s| !s).await;
            apply()
        })
    }
}

impl State {
    fn node(&self, path: &str) -> Result<&Znode, Error> {
        valid(path)?;
        self.nodes.get(path).ok_or(Error::NoNode)
    }

    fn emit(&mut self, event_type: EventType, path: &str) {
        let ids: Vec<i64> = self.sessions.keys().copied().collect();
        for id in ids {
            let e = WatchedEvent { event_type, session_state: SessionState::SyncConnected, path: path.to_string() };
            if self.holding {
                self.held.push((id, e));
            } else {
                self.deliver(id, e);
            }
        }
    }

    /// Gives `e` to the watchers of session `id`, unless it is disconnected or over:
    /// as with a real server, a session does not hear what happened meanwhile.
    fn deliver(&mut self, id: i64, e: WatchedEvent) {
        let connected = !self.cut.contains(&id);
        if let Some(sess) = self.sessions.get_mut(&id).filter(|s| s.live() && connected) {
            // A node's watch hears its own events, and a child's creation or deletion
            // as `NodeChildrenChanged` on it, as a real server's persistent watch does.
            let parent = match e.event_type {
                EventType::NodeCreated | EventType::NodeDeleted => {
                    e.path.rsplit_once('/').map(|(p, _)| if p.is_empty() { "/".to_string() } else { p.to_string() })
                }
                _ => None,
            };
            let below = |p: &str| e.path.starts_with(p) && (p == "/" || e.path[p.len()..].starts_with('/'));
            sess.watchers.retain(|(on, w)| match on {
                None => w.send(e.clone()).is_ok(),
                Some((p, _)) if *p == e.path => w.send(e.clone()).is_ok(),
                Some((p, true)) if below(p) => w.send(e.clone()).is_ok(),
                Some((_, true)) => !w.is_closed(),
                Some((p, false)) if Some(p) == parent.as_ref() && e.path != "/" => w
                    .send(WatchedEvent {
                        event_type: EventType::NodeChildrenChanged,
                        session_state: e.session_state,
                        path: p.clone(),
                    })
                    .is_ok(),
                Some(_) => !w.is_closed(),
            });
        }
    }

    /// Deletes `path` (which exists and has no children) and tells the watchers.
    fn remove(&mut self, path: &str) {
        self.zxid += 1;
        let zxid = self.zxid;
        self.nodes.remove(path);
        if let Some(parent) = parent_of(path).and_then(|p| self.nodes.get_mut(p)) {
            parent.stat.num_children -= 1;
            parent.stat.cversion += 1;
            parent.stat.pzxid = zxid;
        }
        self.emit(EventType::NodeDeleted, path);
    }

    fn create(&mut self, path: &str, data: Vec<u8>, mode: Mode, acl: Vec<Acl>, id: i64) -> Result<Stat, Error> {
        valid(path)?;
        if path == "/" {
            return Err(Error::NodeExists);
        }
        let parent = parent_of(path).ok_or(Error::NoNode)?;
        let parent_stat = self.nodes.get(parent).ok_or(Error::NoNode)?.stat;
        if parent_stat.ephemeral_owner != 0 {
            return Err(Error::NoChildrenForEphemerals);
        }
        if self.nodes.contains_key(path) {
            return Err(Error::NodeExists);
        }
        if acl.is_empty() {
            return Err(Error::InvalidAcl);
        }
        self.zxid += 1;
        let (zxid, now) = (self.zxid, now_ms());
        let stat = Stat {
            czxid: zxid,
            mzxid: zxid,
            pzxid: zxid,
            ctime: now,
            mtime: now,
            version: 0,
            cversion: 0,
            aversion: 0,
            ephemeral_owner: if mode == Mode::Ephemeral { id } else { 0 },
            data_length: data.len() as i32,
            num_children: 0,
        };
        self.nodes.insert(path.to_string(), Znode { data, stat, acl });
        if let Some(p) = self.nodes.get_mut(parent) {
            p.stat.num_children += 1;
            p.stat.cversion += 1;
            p.stat.pzxid = zxid;
        }
        self.emit(EventType::NodeCreated, path);
        Ok(stat)
    }

    fn set(&mut self, path: &str, data: Vec<u8>, version: Option<i32>) -> Result<Stat, Error> {
        let current = self.node(path)?.stat.version;
        if version.is_some_and(|v| v != current) {
            return Err(Error::BadVersion);
        }
        self.zxid += 1;
        let zxid = self.zxid;
        let Some(node) = self.nodes.get_mut(path) else { return Err(Error::NoNode) };
        node.stat.version += 1;
        node.stat.mzxid = zxid;
        node.stat.mtime = now_ms();
        node.stat.data_length = data.len() as i32;
        node.data = data;
        let stat = node.stat;
        self.emit(EventType::NodeDataChanged, path);
        Ok(stat)
    }

    /// Whether `ops` would all succeed, in order, on this state; the index and error of
    /// the first that would not. Nothing changes.
    fn check_multi(&self, ops: &[Op]) -> Result<(), (usize, Error)> {
        // What the transaction did so far: a node's (version, children), or gone.
        let mut seen: HashMap<&str, Option<(i32, i32)>> = HashMap::new();
        let now = |seen: &HashMap<&str, Option<(i32, i32)>>, p: &str| match seen.get(p) {
            Some(s) => *s,
            None => self.nodes.get(p).map(|n| (n.stat.version, n.stat.num_children)),
        };
        for (i, op) in ops.iter().enumerate() {
            let path = op.path();
            valid(path).map_err(|e| (i, e))?;
            let fail = |e| Err((i, e));
            match op {
                Op::Create { acl, .. } => {
                    if acl.is_empty() {
                        return fail(Error::InvalidAcl);
                    }
                    let Some(parent) = parent_of(path) else { return fail(Error::NodeExists) };
                    let Some((pv, pn)) = now(&seen, parent) else { return fail(Error::NoNode) };
                    if now(&seen, path).is_some() || path == "/" {
                        return fail(Error::NodeExists);
                    }
                    if self.nodes.get(parent).is_some_and(|n| n.stat.ephemeral_owner != 0) {
                        return fail(Error::NoChildrenForEphemerals);
                    }
                    seen.insert(parent, Some((pv, pn + 1)));
                    seen.insert(path, Some((0, 0)));
                }
                Op::Set { version, .. } => match now(&seen, path) {
                    None => return fail(Error::NoNode),
                    Some((v, _)) if v != *version => return fail(Error::BadVersion),
                    Some((v, n)) => {
                        seen.insert(path, Some((v + 1, n)));
                    }
                },
                Op::Delete { version, .. } => match now(&seen, path) {
                    None => return fail(Error::NoNode),
                    Some((v, _)) if v != *version => return fail(Error::BadVersion),
                    Some((_, n)) if n > 0 => return fail(Error::NotEmpty),
                    Some(_) => {
                        let parent = parent_of(path).unwrap_or("/");
                        if let Some((pv, pn)) = now(&seen, parent) {
                            seen.insert(parent, Some((pv, pn - 1)));
                        }
                        seen.insert(path, None);
                    }
                },
            }
        }
        Ok(())
    }

    fn delete(&mut self, path: &str, version: Option<i32>) -> Result<(), Error> {
        let stat = self.node(path)?.stat;
        if path == "/" {
            return Err(Error::BadArguments(&"cannot delete the root"));
        }
        if version.is_some_and(|v| v != stat.version) {
            return Err(Error::BadVersion);
        }
        if stat.num_children > 0 {
            return Err(Error::NotEmpty);
        }
        self.remove(path);
        Ok(())
    }
}

struct ClientInner {
    server: Server,
    id: i64,
    timeout: Duration,
}

impl Drop for ClientInner {
    /// As with the real client, dropping the last handle closes the session.
    fn drop(&mut self) {
        self.server.end(self.id, SessionState::Closed);
    }
}

/// A session of the fake. Cheap to clone; the session closes when the last clone goes.
#[derive(Clone)]
pub struct Client(Arc<ClientInner>);

impl Client {
    /// The server this session is on.
    pub fn server(&self) -> &Server {
        &self.0.server
    }

    pub(crate) fn session_id(&self) -> i64 {
        self.0.id
    }

    pub(crate) fn session_timeout(&self) -> Duration {
        self.0.timeout
    }

    pub(crate) fn state_watcher(&self) -> watch::Receiver<SessionState> {
        let s = self.0.server.0.state.locked();
        match s.sessions.get(&self.0.id) {
            Some(sess) => {
                let mut rx = sess.state.subscribe();
                rx.mark_unchanged();
                rx
            }
            // Not reachable: a client's session stays in the map.
            None => watch::Sender::new(SessionState::Closed).subscribe(),
        }
    }

    pub(crate) fn get_data(&self, path: &str) -> Reply<(Vec<u8>, Stat)> {
        let path = path.to_string();
        self.0.server.request(self.0.id, move |s, _| s.node(&path).map(|n| (n.data.clone(), n.stat)))
    }

    pub(crate) fn check_stat(&self, path: &str) -> Reply<Option<Stat>> {
        let path = path.to_string();
        self.0.server.request(self.0.id, move |s, _| match s.node(&path) {
            Ok(n) => Ok(Some(n.stat)),
            Err(Error::NoNode) => Ok(None),
            Err(e) => Err(e),
        })
    }

    pub(crate) fn get_data_many(&self, paths: &[String]) -> Reply<Vec<Read>> {
        let paths = paths.to_vec();
        self.0.server.request(self.0.id, move |s, _| {
            Ok(paths.iter().map(|p| s.node(p).map(|n| (n.data.clone(), n.stat))).collect())
        })
    }

    pub(crate) fn list_children(&self, path: &str) -> Reply<Vec<String>> {
        let path = path.to_string();
        self.0.server.request(self.0.id, move |s, _| children_of(s, &path))
    }

    pub(crate) fn read_and_list_many(&self, paths: &[String]) -> Reply<Vec<ReadListed>> {
        let paths = paths.to_vec();
        self.0.server.request(self.0.id, move |s, _| {
            Ok(paths
                .iter()
                .map(|p| {
                    let (data, stat) = s.node(p).map(|n| (n.data.clone(), n.stat))?;
                    Ok((data, stat, children_of(s, p)?))
                })
                .collect())
        })
    }

    pub(crate) fn get_acl(&self, path: &str) -> Reply<Vec<Acl>> {
        let path = path.to_string();
        self.0.server.request(self.0.id, move |s, _| s.node(&path).map(|n| n.acl.clone()))
    }

    /// Creates a node (also for tests making changes "elsewhere").
    pub fn create(&self, path: &str, data: &[u8], mode: Mode, acl: &[Acl]) -> Reply<Stat> {
        let (path, data, acl) = (path.to_string(), data.to_vec(), acl.to_vec());
        self.0.server.request(self.0.id, move |s, id| s.create(&path, data, mode, acl, id))
    }

    /// Sets a node's data (also for tests).
    pub fn set_data(&self, path: &str, data: &[u8], version: Option<i32>) -> Reply<Stat> {
        let (path, data) = (path.to_string(), data.to_vec());
        self.0.server.request(self.0.id, move |s, _| s.set(&path, data, version))
    }

    /// Applies `ops` all or none, as a real server's `multi` does.
    pub fn multi(&self, ops: &[Op]) -> Reply<Result<(), (usize, Error)>> {
        let ops = ops.to_vec();
        self.0.server.request(self.0.id, move |s, id| {
            if let Err(failed) = s.check_multi(&ops) {
                return Ok(Err(failed));
            }
            for (i, op) in ops.iter().enumerate() {
                let done = match op {
                    Op::Create { path, data, acl } => {
                        s.create(path, data.clone(), Mode::Persistent, acl.clone(), id).map(drop)
                    }
                    Op::Set { path, data, version } => s.set(path, data.clone(), Some(*version)).map(drop),
                    Op::Delete { path, version } => s.delete(path, Some(*version)),
                };
                // Checked above: cannot fail (but say which if it does).
                done.map_err(|e| (i, e)).expect("a checked transaction applies");
            }
            Ok(Ok(()))
        })
    }

    /// Deletes a node (also for tests).
    pub fn delete(&self, path: &str, version: Option<i32>) -> Reply<()> {
        let path = path.to_string();
        self.0.server.request(self.0.id, move |s, _| s.delete(&path, version))
    }

    pub(crate) fn watch_tree(&self) -> Reply<TreeWatcher> {
        self.0.server.request(self.0.id, move |s, id| {
            let (tx, rx) = mpsc::unbounded_channel();
            if let Some(sess) = s.sessions.get_mut(&id) {
                sess.watchers.push((None, tx));
            }
            Ok(TreeWatcher::Fake(rx))
        })
    }

    pub(crate) fn watch_node(&self, path: &str, recursive: bool) -> Reply<TreeWatcher> {
        let path = path.to_string();
        self.0.server.request(self.0.id, move |s, id| {
            valid(&path)?;
            let (tx, rx) = mpsc::unbounded_channel();
            if let Some(sess) = s.sessions.get_mut(&id) {
                sess.watchers.push((Some((path, recursive)), tx));
            }
            Ok(TreeWatcher::Fake(rx))
        })
    }

    /// How many node watches session `id` holds (for tests).
    pub fn node_watches(&self) -> usize {
        let s = self.0.server.0.state.locked();
        s.sessions
            .get(&self.0.id)
            .map_or(0, |sess| sess.watchers.iter().filter(|(p, w)| p.is_some() && !w.is_closed()).count())
    }
}

/// The names of the children of the node at `path`.
fn children_of(s: &State, path: &str) -> Result<Vec<String>, Error> {
    s.node(path)?;
    let prefix = if path == "/" { "/".to_string() } else { format!("{path}/") };
    Ok(s.nodes
        .range(prefix.clone()..)
        .take_while(|(p, _)| p.starts_with(&prefix))
        .filter_map(|(p, _)| p.get(prefix.len()..).filter(|rest| !rest.is_empty() && !rest.contains('/')))
        .map(str::to_string)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl() -> Vec<Acl> {
        zookeeper_client::Acls::anyone_all().to_vec()
    }

    fn run<T>(f: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime").block_on(f)
    }

    #[test]
    fn nodes_keep_versions_zxids_and_owners() {
        run(async {
            let server = Server::new();
            let c = server.connect(Duration::from_secs(1)).expect("connect");
            let a = c.create("/a", b"1", Mode::Persistent, &acl()).await.expect("create");
            assert_eq!(c.create("/a", b"", Mode::Persistent, &acl()).await, Err(Error::NodeExists));
            assert_eq!(c.create("/x/y", b"", Mode::Persistent, &acl()).await, Err(Error::NoNode));
            let r = c.create("/a/r", b"", Mode::Ephemeral, &acl()).await.expect("ephemeral");
            assert_eq!(r.ephemeral_owner, c.session_id());
            assert!(r.czxid > a.czxid);
            assert_eq!(c.create("/a/r/z", b"", Mode::Persistent, &acl()).await, Err(Error::NoChildrenForEphemerals));
            assert_eq!(c.set_data("/a", b"2", Some(1)).await, Err(Error::BadVersion));
            assert_eq!(c.set_data("/a", b"2", Some(0)).await.map(|s| s.version), Ok(1));
            assert_eq!(c.delete("/a", None).await, Err(Error::NotEmpty));
            assert_eq!(c.list_children("/a").await, Ok(vec!["r".to_string()]));
            assert_eq!(c.list_children("/").await, Ok(vec!["a".to_string()]));
        })
    }

    #[test]
    fn expiry_removes_ephemerals_and_ends_the_session() {
        run(async {
            let server = Server::new();
            let mine = server.connect(Duration::from_secs(1)).expect("connect");
            let other = server.connect(Duration::from_secs(1)).expect("connect");
            let Ok(TreeWatcher::Fake(mut events)) = other.watch_tree().await else { panic!("no watcher") };
            let mut state = mine.state_watcher();
            mine.create("/r", b"", Mode::Ephemeral, &acl()).await.expect("create");
            server.expire(mine.session_id());
            assert_eq!(other.check_stat("/r").await, Ok(None));
            assert_eq!(mine.check_stat("/").await, Err(Error::SessionExpired));
            assert!(state.changed().await.is_ok());
            assert_eq!(*state.borrow(), SessionState::Expired);
            let kinds: Vec<_> = std::iter::from_fn(|| events.try_recv().ok()).map(|e| e.event_type).collect();
            assert_eq!(kinds, vec![EventType::NodeCreated, EventType::NodeDeleted]);
        })
    }

    #[test]
    fn disconnection_fails_calls_and_loses_events() {
        run(async {
            let server = Server::new();
            let c = server.connect(Duration::from_secs(1)).expect("connect");
            let Ok(TreeWatcher::Fake(mut events)) = c.watch_tree().await else { panic!("no watcher") };
            let other = server.connect(Duration::from_secs(1)).expect("connect");
            let mut state = c.state_watcher();
            server.disconnect(c.session_id());
            assert_eq!(c.check_stat("/").await, Err(Error::ConnectionLoss));
            assert!(state.changed().await.is_ok());
            assert_eq!(*state.borrow(), SessionState::Disconnected);
            other.create("/lost", b"", Mode::Persistent, &acl()).await.expect("create");
            server.reconnect(c.session_id());
            assert_eq!(c.check_stat("/lost").await.map(|s| s.is_some()), Ok(true));
            other.create("/heard", b"", Mode::Persistent, &acl()).await.expect("create");
            let paths: Vec<_> = std::iter::from_fn(|| events.try_recv().ok()).map(|e| e.path).collect();
            assert_eq!(paths, vec!["/heard".to_string()]);
        })
    }

    #[test]
    fn stalled_calls_wait_for_release_and_held_events_follow_replies() {
        run(async {
            let server = Server::new();
            let c = server.connect(Duration::from_secs(1)).expect("connect");
            server.stall();
            let pending = c.create("/s", b"", Mode::Persistent, &acl());
            let timed_out = tokio::time::timeout(Duration::from_millis(50), pending).await;
            assert!(timed_out.is_err(), "a stalled call answered");
            assert!(!server.dump().contains_key("/s"));
            let pending = c.create("/s", b"", Mode::Persistent, &acl());
            server.release();
            assert!(pending.await.is_ok());

            let Ok(TreeWatcher::Fake(mut events)) = c.watch_tree().await else { panic!("no watcher") };
            server.hold_events();
            c.set_data("/s", b"x", None).await.expect("set");
            assert!(events.try_recv().is_err(), "the event came before release");
            server.release_events();
            assert_eq!(events.try_recv().map(|e| e.event_type), Ok(EventType::NodeDataChanged));
        })
    }

    #[test]
    fn dropping_the_last_client_closes_the_session() {
        run(async {
            let server = Server::new();
            let c = server.connect(Duration::from_secs(1)).expect("connect");
            c.create("/r", b"", Mode::Ephemeral, &acl()).await.expect("create");
            let mut state = c.state_watcher();
            drop(c);
            assert!(state.changed().await.is_ok());
            assert_eq!(*state.borrow(), SessionState::Closed);
            assert!(!server.dump().contains_key("/r"));
        })
    }
}
