//! The seam between zkfs and ZooKeeper: the few operations the filesystem uses, behind
//! one client type with two implementations — the real `zookeeper_client` and the
//! in-memory fake of `fake.rs`, on which the model tests run `Fs` without a server.
//!
//! Only this module (with `session.rs`, which opens sessions, and `auth.rs`, which
//! builds digest ACLs) names `zookeeper_client`. Its plain data types (`Stat`, `Acl`,
//! `Error`, `EventType`, `SessionState`) are re-exported as they are: they carry no
//! connection, and the fake builds them too. A watch event is zkfs's own
//! [`WatchedEvent`], since the client's cannot be built outside it.
//!
//! Every request is *sent when its method is called*: the returned [`Reply`] only waits
//! for the answer. Callers rely on it to pipeline (`view.rs` creates all the stat
//! requests of a listing before awaiting any).

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

pub use zookeeper_client::{Acl, Error, EventType, SessionState, Stat};

/// One node's data and stat, or why it could not be read.
pub type Read = Result<(Vec<u8>, Stat), Error>;

/// One node's data, stat and children's names, or why it could not be read.
pub type ReadListed = Result<(Vec<u8>, Stat, Vec<String>), Error>;

/// The answer to a request already sent.
pub type Reply<T> = Pin<Box<dyn Future<Output = Result<T, Error>> + Send + 'static>>;

/// The kinds of node zkfs creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A directory: outlives the session.
    Persistent,
    /// A registration: goes with the session that created it.
    Ephemeral,
}

/// One change of a transaction ([`Client::multi`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Create a persistent node with `data` and `acl`.
    Create {
        /// The node.
        path: String,
        /// Its data.
        data: Vec<u8>,
        /// Its ACL.
        acl: Vec<Acl>,
    },
    /// Replace the data of a node still at `version`.
    Set {
        /// The node.
        path: String,
        /// The new data.
        data: Vec<u8>,
        /// The version the change was made against.
        version: i32,
    },
    /// Delete a node (without children) still at `version`.
    Delete {
        /// The node.
        path: String,
        /// The version the change was made against.
        version: i32,
    },
}

impl Op {
    /// The node the change is about.
    pub fn path(&self) -> &str {
        match self {
            Op::Create { path, .. } | Op::Set { path, .. } | Op::Delete { path, .. } => path,
        }
    }
}

/// A change below the watched root, or a change of the session (`Session`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchedEvent {
    /// What happened.
    pub event_type: EventType,
    /// The session's state, for `Session` events.
    pub session_state: SessionState,
    /// The node, from the mount's root; empty for `Session` events.
    pub path: String,
}

/// A client of one ZooKeeper session. Cheap to clone; clones share the session.
#[derive(Clone)]
pub enum Client {
    /// A real ZooKeeper ensemble.
    Real(zookeeper_client::Client),
    /// The in-memory fake.
    Fake(super::fake::Client),
}

impl Client {
    /// The session's id (the owner of its ephemeral nodes).
    pub fn session_id(&self) -> i64 {
        match self {
            Client::Real(c) => c.session_id().0,
            Client::Fake(c) => c.session_id(),
        }
    }

    /// The session's id and password, for a successor to resume it (`None` for the
    /// fake, whose sessions die with the process anyway).
    pub fn session_parts(&self) -> Option<(i64, Vec<u8>)> {
        match self {
            Client::Real(c) => Some((c.session_id().0, c.session().password().to_vec())),
            Client::Fake(_) => None,
        }
    }

    /// The ephemeral nodes of this session (under the chroot), as absolute paths.
    pub fn list_ephemerals(&self) -> Reply<Vec<String>> {
        match self {
            Client::Real(c) => {
                let c = c.clone();
                Box::pin(async move { c.list_ephemerals("/").await })
            }
            Client::Fake(_) => Box::pin(async { Ok(Vec::new()) }),
        }
    }

    /// The negotiated session timeout.
    pub fn session_timeout(&self) -> Duration {
        match self {
            Client::Real(c) => c.session_timeout(),
            Client::Fake(c) => c.session_timeout(),
        }
    }

    /// Follows the session's state.
    pub fn state_watcher(&self) -> StateWatcher {
        match self {
            Client::Real(c) => StateWatcher::Real(c.state_watcher()),
            Client::Fake(c) => StateWatcher::Fake(c.state_watcher()),
        }
    }

    /// The identities the server knows this session by (`scheme:id`, e.g.
    /// `x509:CN=alice`, `sasl:alice`, `ip:127.0.0.1`).
    pub fn who_am_i(&self) -> Reply<Vec<String>> {
        match self {
            Client::Real(c) => {
                let reply = c.list_auth_users();
                Box::pin(async move {
                    reply.await.map(|users| users.into_iter().map(|u| format!("{}:{}", u.scheme(), u.user())).collect())
                })
            }
            Client::Fake(_) => Box::pin(async { Ok(Vec::new()) }),
        }
    }

    /// True while the session is on a read-only server.
    pub fn on_read_only_server(&self) -> bool {
        match self {
            Client::Real(c) => c.state() == SessionState::ConnectedReadOnly,
            Client::Fake(_) => false,
        }
    }

    /// The node's data and stat.
    pub fn get_data(&self, path: &str) -> Reply<(Vec<u8>, Stat)> {
        match self {
            Client::Real(c) => Box::pin(c.get_data(path)),
            Client::Fake(c) => c.get_data(path),
        }
    }

    /// The node's stat, `None` if there is no such node.
    pub fn check_stat(&self, path: &str) -> Reply<Option<Stat>> {
        match self {
            Client::Real(c) => Box::pin(c.check_stat(path)),
            Client::Fake(c) => c.check_stat(path),
        }
    }

    /// Reads many nodes in one request (a multi-read): for each, its data and stat or
    /// its error. The answers come in the order of `paths`.
    pub fn get_data_many(&self, paths: &[String]) -> Reply<Vec<Read>> {
        match self {
            Client::Real(c) => {
                let (c, paths) = (c.clone(), paths.to_vec());
                let read = async move {
                    let mut reader = c.new_multi_reader();
                    for path in &paths {
                        reader.add_get_data(path)?;
                    }
                    let results = reader.commit().await?;
                    Ok(results
                        .into_iter()
                        .map(|r| match r {
                            zookeeper_client::MultiReadResult::Data { data, stat } => Ok((data, stat)),
                            zookeeper_client::MultiReadResult::Error { err } => Err(err),
                            // Only data was asked for.
                            _ => Err(Error::UnexpectedError("a multi-read answered amiss".into())),
                        })
                        .collect())
                };
                // The reader's future borrows the client, so it is made inside `read`.
                sent_now(Box::pin(read))
            }
            Client::Fake(c) => c.get_data_many(paths),
        }
    }

    /// Reads and lists many nodes in one request (a multi-read of a `getData` and a
    /// `getChildren` per node): for each, its data, stat and children's names, or its
    /// error. The answers come in the order of `paths`. Sent before this returns, as
    /// [`Client::get_data_many`].
    pub fn read_and_list_many(&self, paths: &[String]) -> Reply<Vec<ReadListed>> {
        match self {
            Client::Real(c) => {
                let (c, paths) = (c.clone(), paths.to_vec());
                let read = async move {
                    let mut reader = c.new_multi_reader();
                    for path in &paths {
                        reader.add_get_data(path)?;
                        reader.add_get_children(path)?;
                    }
                    let results = reader.commit().await?;
                    if results.len() != 2 * paths.len() {
                        return Err(Error::UnexpectedError("a multi-read answered amiss".into()));
                    }
                    let mut results = results.into_iter();
                    let mut out = Vec::with_capacity(paths.len());
                    while let (Some(read), Some(listed)) = (results.next(), results.next()) {
                        use zookeeper_client::MultiReadResult as R;
                        out.push(match (read, listed) {
                            (R::Data { data, stat }, R::Children { children }) => Ok((data, stat, children)),
                            (R::Error { err }, _) | (_, R::Error { err }) => Err(err),
                            _ => Err(Error::UnexpectedError("a multi-read answered amiss".into())),
                        });
                    }
                    Ok(out)
                };
                sent_now(Box::pin(read))
            }
            Client::Fake(c) => c.read_and_list_many(paths),
        }
    }

    /// The names of the node's children.
    pub fn list_children(&self, path: &str) -> Reply<Vec<String>> {
        match self {
            Client::Real(c) => {
                // The client's future borrows it; a clone shares its session.
                let (c, path) = (c.clone(), path.to_string());
                Box::pin(async move { c.list_children(&path).await })
            }
            Client::Fake(c) => c.list_children(path),
        }
    }

    /// The node's ACL.
    pub fn get_acl(&self, path: &str) -> Reply<Vec<Acl>> {
        match self {
            Client::Real(c) => {
                let (c, path) = (c.clone(), path.to_string());
                Box::pin(async move { c.get_acl(&path).await.map(|(acl, _)| acl) })
            }
            Client::Fake(c) => c.get_acl(path),
        }
    }

    /// Creates a node with `acl`; its stat.
    pub fn create(&self, path: &str, data: &[u8], mode: Mode, acl: &[Acl]) -> Reply<Stat> {
        match self {
            Client::Real(c) => {
                let (c, path, data, acl) = (c.clone(), path.to_string(), data.to_vec(), acl.to_vec());
                Box::pin(async move {
                    let mode = match mode {
                        Mode::Persistent => zookeeper_client::CreateMode::Persistent,
                        Mode::Ephemeral => zookeeper_client::CreateMode::Ephemeral,
                    };
                    let options = mode.with_acls(zookeeper_client::Acls::new(&acl));
                    c.create(&path, &data, &options).await.map(|(stat, _)| stat)
                })
            }
            Client::Fake(c) => c.create(path, data, mode, acl),
        }
    }

    /// Replaces the node's data if its version is `version` (any version if `None`).
    pub fn set_data(&self, path: &str, data: &[u8], version: Option<i32>) -> Reply<Stat> {
        match self {
            Client::Real(c) => Box::pin(c.set_data(path, data, version)),
            Client::Fake(c) => c.set_data(path, data, version),
        }
    }

    /// Deletes the node if its version is `version` (any version if `None`).
    pub fn delete(&self, path: &str, version: Option<i32>) -> Reply<()> {
        match self {
            Client::Real(c) => Box::pin(c.delete(path, version)),
            Client::Fake(c) => c.delete(path, version),
        }
    }

    /// Applies `ops` in one ZooKeeper transaction: all or none. A failure is that of
    /// the first operation that failed, with its index.
    pub fn multi(&self, ops: &[Op]) -> Reply<std::result::Result<(), (usize, Error)>> {
        match self {
            Client::Real(c) => {
                let (c, ops) = (c.clone(), ops.to_vec());
                Box::pin(async move {
                    let mut writer = c.new_multi_writer();
                    for op in &ops {
                        match op {
                            Op::Create { path, data, acl } => {
                                let acls = zookeeper_client::Acls::new(acl);
                                let options = zookeeper_client::CreateMode::Persistent.with_acls(acls);
                                writer.add_create(path, data, &options)?
                            }
                            Op::Set { path, data, version } => writer.add_set_data(path, data, Some(*version))?,
                            Op::Delete { path, version } => writer.add_delete(path, Some(*version))?,
                        }
                    }
                    match writer.commit().await {
                        Ok(_) => Ok(Ok(())),
                        Err(zookeeper_client::MultiWriteError::OperationFailed { index, source }) => {
                            Ok(Err((index, source)))
                        }
                        Err(zookeeper_client::MultiWriteError::RequestFailed { source }) => Err(source),
                    }
                })
            }
            Client::Fake(c) => c.multi(ops),
        }
    }

    /// Sets a persistent recursive watch on the root; its events until dropped.
    pub fn watch_tree(&self) -> Reply<TreeWatcher> {
        match self {
            Client::Real(c) => {
                let c = c.clone();
                Box::pin(async move {
                    c.watch("/", zookeeper_client::AddWatchMode::PersistentRecursive).await.map(TreeWatcher::Real)
                })
            }
            Client::Fake(c) => c.watch_tree(),
        }
    }

    /// Sets a persistent (non-recursive) watch on `path`: its creation, data changes
    /// and deletion, and `NodeChildrenChanged` when a child is added or removed; its
    /// events until dropped (dropping it removes the watch from the server). The request
    /// is out when this returns, so a read sent after it is answered after the watch is
    /// set.
    ///
    /// `recursive`: a persistent recursive watch on `path` instead — creations,
    /// deletions and data changes of it and every node below it, no
    /// `NodeChildrenChanged` (zkfs sets one on a directory of registrations, which
    /// cannot have children of their own, to hear their data changes).
    pub fn watch_node(&self, path: &str, recursive: bool) -> Reply<TreeWatcher> {
        match self {
            Client::Real(c) => {
                let (c, path) = (c.clone(), path.to_string());
                let mode = if recursive {
                    zookeeper_client::AddWatchMode::PersistentRecursive
                } else {
                    zookeeper_client::AddWatchMode::Persistent
                };
                let watch = async move { c.watch(&path, mode).await.map(TreeWatcher::Real) };
                // As in `get_data_many`: polled once here, the request goes out now.
                let mut watch: Reply<TreeWatcher> = Box::pin(watch);
                let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
                match watch.as_mut().poll(&mut cx) {
                    std::task::Poll::Ready(r) => Box::pin(std::future::ready(r)),
                    std::task::Poll::Pending => watch,
                }
            }
            Client::Fake(c) => c.watch_node(path, recursive),
        }
    }
}

/// The session's states as they change.
pub enum StateWatcher {
    /// A real client's.
    Real(zookeeper_client::StateWatcher),
    /// The fake's.
    Fake(tokio::sync::watch::Receiver<SessionState>),
}

impl StateWatcher {
    /// The next state. After a terminal one, never returns.
    pub async fn changed(&mut self) -> SessionState {
        match self {
            StateWatcher::Real(w) => w.changed().await,
            StateWatcher::Fake(rx) => match rx.changed().await {
                Ok(()) => *rx.borrow_and_update(),
                // The fake session is gone with its server: as the real client does
                // after a terminal state, wait forever.
                Err(_) => std::future::pending().await,
            },
        }
    }
}

/// The events of a persistent watch, recursive ([`Client::watch_tree`]) or not
/// ([`Client::watch_node`]).
pub enum TreeWatcher {
    /// A real client's.
    Real(zookeeper_client::PersistentWatcher),
    /// The fake's.
    Fake(tokio::sync::mpsc::UnboundedReceiver<WatchedEvent>),
}

impl TreeWatcher {
    /// The next event. Must not be called again after a terminal `Session` event.
    pub async fn changed(&mut self) -> WatchedEvent {
        match self {
            TreeWatcher::Real(w) => {
                let e = w.changed().await;
                WatchedEvent { event_type: e.event_type, session_state: e.session_state, path: e.path }
            }
            TreeWatcher::Fake(rx) => match rx.recv().await {
                Some(e) => e,
                None => WatchedEvent {
                    event_type: EventType::Session,
                    session_state: SessionState::Closed,
                    path: String::new(),
                },
            },
        }
    }
}

/// How new sessions are opened: the first, and those that replace an expired one.
#[derive(Clone)]
pub enum Connector {
    /// A real ensemble, with digest credentials if any.
    Real {
        /// `host:port,...[/chroot]`.
        connect: String,
        /// `user:password`.
        auth: Option<Vec<u8>>,
        /// TLS, SASL and read-only settings.
        security: std::sync::Arc<super::secure::Security>,
    },
    /// A session of the fake server.
    Fake(super::fake::Server),
}

impl Connector {
    /// The TLS, SASL and read-only settings sessions are opened with.
    pub fn security(&self) -> std::sync::Arc<super::secure::Security> {
        match self {
            Connector::Real { security, .. } => std::sync::Arc::clone(security),
            Connector::Fake(_) => std::sync::Arc::new(super::secure::Security::none()),
        }
    }

    /// Opens a session asking for `timeout`. `fail_eagerly`: give up at the first
    /// unreachable server instead of retrying.
    pub async fn connect(&self, timeout: Duration, fail_eagerly: bool) -> Result<Client, Error> {
        match self {
            Connector::Real { connect, auth, security } => {
                let mut connector = security.apply(zookeeper_client::Client::connector().with_session_timeout(timeout));
                if let Some(auth) = auth {
                    connector = connector.with_auth("digest", auth);
                }
                if fail_eagerly {
                    connector = connector.with_fail_eagerly();
                }
                // With TLS every server of the string is reached over TLS (the string
                // takes no tcp:// prefix): there is no plaintext fallback.
                let client = if security.tls() {
                    connector.secure_connect(connect).await
                } else {
                    connector.connect(connect).await
                };
                client.map(Client::Real)
            }
            Connector::Fake(server) => server.connect(timeout).map(Client::Fake),
        }
    }

    /// Takes the session `id` (with its `password`) back, as an earlier process left
    /// it: its ephemerals stay. `SessionExpired` when the server no longer has it.
    pub async fn resume(&self, timeout: Duration, id: i64, password: Vec<u8>) -> Result<Client, Error> {
        match self {
            Connector::Real { connect, auth, security } => {
                let session = zookeeper_client::SessionInfo::from_parts(id, password);
                let mut connector = security
                    .apply(zookeeper_client::Client::connector().with_session_timeout(timeout))
                    .with_session(session)
                    .with_fail_eagerly();
                if let Some(auth) = auth {
                    connector = connector.with_auth("digest", auth);
                }
                let client = if security.tls() {
                    connector.secure_connect(connect).await
                } else {
                    connector.connect(connect).await
                };
                client.map(Client::Real)
            }
            Connector::Fake(_) => Err(Error::SessionExpired),
        }
    }
}

/// Maps a ZooKeeper client error met while operating on `path`.
pub fn error_at(err: Error, path: &str) -> crate::error::Error {
    use crate::error::Error as E;
    use Error as Zk;
    match err {
        Zk::NoNode => E::NotFound(path.to_string()),
        Zk::NodeExists => E::Exists(path.to_string()),
        Zk::NotEmpty => E::NotEmpty(path.to_string()),
        Zk::NoAuth => E::AccessDenied(path.to_string()),
        Zk::NoChildrenForEphemerals => E::NotDir(path.to_string()),
        Zk::BadArguments(why) => E::InvalidName(format!("{path}: {why}")),
        Zk::InvalidAcl => E::AccessDenied(path.to_string()),
        Zk::NotReadOnly => E::ReadOnlyServer(path.to_string()),
        // EPHEMERALONLOCALSESSION: a registration on a local session (servers with
        // localSessionsEnabled and not localSessionsUpgradingEnabled).
        Zk::UnexpectedErrorCode(-120) => E::NotPermitted(format!(
            "{path}: ZooKeeper refuses ephemeral nodes on this local session (the servers need \
             localSessionsUpgradingEnabled=true)"
        )),
        Zk::QuotaExceeded => E::TooLarge(format!("{path}: ZooKeeper quota exceeded")),
        other => E::Unavailable(format!("{path}: {other}")),
    }
}

/// `read` polled once, so that its request goes out before this returns, on any
/// thread (the client sends it in `commit`, a channel send that needs no runtime):
/// callers pipeline several, and know it is out (see `View::learn_shown_soon`). The
/// caller's polls then wait for the answer.
fn sent_now<T: Send + 'static>(mut read: Reply<T>) -> Reply<T> {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match read.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(r) => Box::pin(std::future::ready(r)),
        std::task::Poll::Pending => read,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zookeeper_errors_map_to_the_errno_a_shell_user_expects() {
        let e = |z| error_at(z, "/a").errno();
        assert_eq!(e(Error::NoNode), libc::ENOENT);
        assert_eq!(e(Error::NodeExists), libc::EEXIST);
        assert_eq!(e(Error::NotEmpty), libc::ENOTEMPTY);
        assert_eq!(e(Error::NoAuth), libc::EACCES);
        assert_eq!(e(Error::ConnectionLoss), libc::EIO);
        assert_eq!(e(Error::SessionExpired), libc::EIO);
    }
}
