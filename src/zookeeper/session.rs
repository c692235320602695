//! The ZooKeeper session of a mount, and the registrations it holds.
//!
//! A ZooKeeper session can be lost for good (expired), while a mount must last: this
//! module keeps one live [`zk::Client`] at a time (a real one, or the fake's), replaces it when its
//! session expires, re-creates the mount's registrations on the new session, and tells
//! the view (through [`SessionEvent`]) when it must re-arm its watches and re-read
//! what it shows. The states, and which are terminal:
//!
//! ```text
//!   Connected ──connection lost──▶ Disconnected ──reconnected──▶ Connected
//!       │                              │
//!       └──────── session expired ─────┴──▶ Expired ──new session──▶ Connected
//!   any ──close()──▶ Closed   (terminal)
//! ```
//!
//! Calls made from FUSE threads block on the runtime with a deadline of one session
//! timeout, so a change never hangs while no server can be reached.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use log::{debug, error, info, warn};
use tokio::runtime::Handle;
use tokio::sync::mpsc;

use crate::error::{Error, Result};
use crate::sync::{Recover, RecoverRw};
use crate::zookeeper::saved::{Saved, StateFile};
use crate::zookeeper::secure::{self, Security};
use crate::zookeeper::{self as zk, Acl, Client, Connector, Mode, SessionState as ZkState};

/// How long the first connection is retried before the mount gives up.
const STARTUP_RETRY: Duration = Duration::from_secs(2);

/// What the session layer tells the view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionEvent {
    /// The connection came back after a loss: watches may have been lost with it.
    Reconnected,
    /// A new session replaced an expired one: every watch is gone.
    NewSession,
}

/// A session handed from one process image of a mount to the next (`zkfs reload`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct HandedSession {
    /// The session id.
    pub id: i64,
    /// Its password.
    pub password: Vec<u8>,
    /// The registrations: path, data, the session that holds it.
    pub registrations: Vec<(String, Vec<u8>, i64)>,
    /// Registrations a flock holds: path, holder pid, its start time.
    pub lock_holders: Vec<(String, u32, u64)>,
    /// Every session id the mount has had.
    pub past_sessions: Vec<i64>,
}

/// A registration the mount holds.
#[derive(Debug, Clone)]
struct Registration {
    data: Vec<u8>,
    owner: i64,
}

/// The state of the mount's ZooKeeper session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// A server answers; changes go through.
    Connected,
    /// No server reached since `since`; reads come from the view, changes fail after a
    /// session timeout. The client reconnects by itself.
    Disconnected,
    /// The session expired; a new one is being opened.
    Expired,
    /// The mount closed the session. Terminal.
    Closed,
}

/// Counters for operators and tests.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// Times the connection came back.
    pub reconnects: u64,
    /// Sessions opened after an expiry.
    pub new_sessions: u64,
    /// The last error seen by the session layer.
    pub last_error: Option<String>,
}

/// The mount's ZooKeeper session.
pub struct Session {
    rt: Handle,
    connect: String,
    /// How sessions are opened (the first and those after an expiry).
    connector: Connector,
    /// True if the mount has credentials (ZooKeeper's digest scheme, SASL or a TLS
    /// client certificate).
    authenticated: bool,
    /// TLS, SASL and read-only settings (for status and certificate rotation).
    security: Arc<Security>,
    /// Who the server says the session is (`x509:CN=alice`, `sasl:alice`), learnt after
    /// each connection. Held only to read or replace the string: cannot deadlock.
    identity: Mutex<String>,
    /// True while the session is on a read-only server.
    read_only_server: AtomicBool,
    timeout: Duration,
    client: RwLock<Option<Client>>,
    state: Mutex<(State, Stats)>,
    /// The state again, for callers that wait for `Connected`.
    connected: tokio::sync::watch::Sender<State>,
    /// Registrations made by this mount: path → latest data and the session that
    /// holds it. Re-created after expiry.
    registrations: Mutex<BTreeMap<String, Registration>>,
    /// Every session id this mount has had, to recognise its own leftover nodes.
    past_sessions: Mutex<Vec<i64>>,
    /// Held through [`Session::close`], so that a second caller (the main thread after
    /// the unmount watcher, say) returns only once the close is confirmed and never
    /// shuts the runtime down under it. Taken first and alone: cannot deadlock.
    closing: Mutex<()>,
    /// When a call last failed for want of a server; cleared by the next success or
    /// reconnection. See [`Session::call_async`]. Held only to read or set the instant,
    /// never with another lock or across an await.
    outage: Mutex<Option<Instant>>,
    /// The requests programs wait for, to which background work yields (see
    /// `background.rs`).
    pub(crate) foreground: crate::zookeeper::background::Foreground,
    /// Where the session is saved for a successor (see `saved.rs`); `None` without.
    /// Held only to read or replace it, never with another lock.
    state_file: Mutex<Option<StateFile>>,
    /// True if the session was taken back from an earlier zkfs (see `saved.rs`).
    resumed: std::sync::atomic::AtomicBool,
    /// Registrations a flock holds: path → (holder pid, its start time), saved with the
    /// session so that a successor follows the holders. Held only to read or change
    /// the map (and copy it out to save), never with another lock.
    lock_holders: Mutex<BTreeMap<String, (u32, u64)>>,
    /// Numbers the saves of the state file, which land in order (see `saved.rs`).
    saves: std::sync::atomic::AtomicU64,
}

impl Session {
    /// Opens the first session. Fails at once when no server of `connect` answers or its
    /// chroot does not exist: the mount must not start then.
    ///
    /// With a state file (see `saved.rs`), the session an earlier zkfs of this mount
    /// left there is taken back if the server still has it: its registrations never
    /// left ZooKeeper, and the mount holds them again. Otherwise a new session.
    pub async fn open(
        rt: Handle,
        connect: &str,
        timeout: Duration,
        auth: Option<Vec<u8>>,
        security: Arc<Security>,
        state: Option<StateFile>,
    ) -> std::result::Result<Arc<Session>, String> {
        Session::open_or_take_over(rt, connect, timeout, auth, security, state, None).await
    }

    /// [`Session::open`], or, with `handed` (from the process image that handed this
    /// mount over, see `kernel/handover.rs`), that session, its registrations and
    /// their lock holders taken over as they were: nothing is re-read or re-created.
    pub async fn open_or_take_over(
        rt: Handle,
        connect: &str,
        timeout: Duration,
        auth: Option<Vec<u8>>,
        security: Arc<Security>,
        state: Option<StateFile>,
        handed: Option<HandedSession>,
    ) -> std::result::Result<Arc<Session>, String> {
        let authenticated = auth.is_some() || security.authenticates();
        let connector = Connector::Real { connect: connect.to_string(), auth, security };
        if let Some(handed) = handed {
            // The predecessor checked that a server answered; one may still fail over
            // meanwhile: try for as long as the session lives.
            let started = Instant::now();
            let client = loop {
                match connector.resume(timeout, handed.id, handed.password.clone()).await {
                    Ok(client) => break client,
                    Err(e) if started.elapsed() > timeout => {
                        return Err(format!("cannot take over session {:#x}: {e}", handed.id))
                    }
                    Err(e) => {
                        debug!("taking over session {:#x}: {e}; retrying", handed.id);
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            };
            let session = Session::open_from(rt, connector, connect, timeout, authenticated, Some(client)).await?;
            session.resumed.store(true, std::sync::atomic::Ordering::Relaxed);
            *session.registrations.locked() = handed
                .registrations
                .into_iter()
                .map(|(path, data, owner)| (path, Registration { data, owner }))
                .collect();
            *session.lock_holders.locked() =
                handed.lock_holders.into_iter().map(|(path, pid, started)| (path, (pid, started))).collect();
            session.past_sessions.locked().extend(handed.past_sessions);
            *session.state_file.locked() = state;
            session.save_state();
            return Ok(session);
        }
        let mut resumed = None;
        let mut locked = Vec::new();
        if let Some(saved) = state.as_ref().and_then(StateFile::load) {
            match connector.resume(timeout, saved.id, saved.password).await {
                Ok(client) => {
                    info!("resumed session {:#x} of an earlier zkfs of this mount: its registrations stay", saved.id);
                    resumed = Some(client);
                    locked = saved.locked;
                }
                Err(e) => info!("the session {:#x} of an earlier zkfs is gone ({e}); opening a new one", saved.id),
            }
        }
        let was_resumed = resumed.is_some();
        let session = Session::open_from(rt, connector, connect, timeout, authenticated, resumed).await?;
        session.resumed.store(was_resumed, std::sync::atomic::Ordering::Relaxed);
        *session.state_file.locked() = state;
        session.save_state();
        if was_resumed {
            session.adopt_registrations(locked).await;
        }
        Ok(session)
    }

    /// [`Session::open`] through any connector (the fake's, for tests); `connect` names
    /// the ensemble in messages.
    pub async fn open_with(
        rt: Handle,
        connector: Connector,
        connect: &str,
        timeout: Duration,
        authenticated: bool,
    ) -> std::result::Result<Arc<Session>, String> {
        Session::open_from(rt, connector, connect, timeout, authenticated, None).await
    }

    /// [`Session::open_with`], on `resumed` if given.
    async fn open_from(
        rt: Handle,
        connector: Connector,
        connect: &str,
        timeout: Duration,
        authenticated: bool,
        resumed: Option<Client>,
    ) -> std::result::Result<Arc<Session>, String> {
        // A server that has just started accepts connections before it serves sessions;
        // retry briefly so that a mount racing its server's start works, while an
        // unreachable ensemble still fails within about two seconds.
        let started = Instant::now();
        let security = connector.security();
        secure::connecting(true);
        let mut resumed = resumed;
        let client = loop {
            if let Some(client) = resumed.take() {
                break client;
            }
            secure::clear_failure();
            match connector.connect(timeout, true).await {
                Ok(client) => break client,
                Err(zk::Error::AuthFailed) => {
                    return Err(format!("ZooKeeper at {connect} {}", security.refusal()));
                }
                Err(e) if security.setup_failure(&e.to_string()).is_some() => {
                    let why = security.setup_failure(&e.to_string()).unwrap_or_default();
                    return Err(format!("cannot connect to ZooKeeper at {connect} over TLS: {why}"));
                }
                Err(e) if started.elapsed() > STARTUP_RETRY || security.failure_is_final() => {
                    let why = security.last_failure().unwrap_or_else(|| e.to_string());
                    let over = if security.tls() { " over TLS" } else { "" };
                    return Err(format!("cannot connect to ZooKeeper at {connect}{over}: {why}"));
                }
                Err(e) => {
                    debug!("connecting to {connect}: {e}; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        };
        secure::connecting(false);
        secure::clear_failure();
        match tokio::time::timeout(timeout, client.check_stat("/")).await {
            Ok(Err(zk::Error::NoAuth)) if security.authenticates() => {
                return Err(format!("ZooKeeper at {connect}: the mount's identity may not read the root of the mount"))
            }
            Ok(Ok(Some(_))) => {}
            Ok(Ok(None)) => {
                return Err(format!("the chroot of {connect} does not exist in ZooKeeper; create it first"))
            }
            Ok(Err(e)) => return Err(format!("cannot read ZooKeeper at {connect}: {e}")),
            Err(_) => return Err(format!("ZooKeeper at {connect} did not answer within {timeout:?}")),
        }
        info!(
            "connected to ZooKeeper at {connect}, session {:#x}, timeout {:?}",
            client.session_id(),
            client.session_timeout()
        );
        let identity = who_am_i(&client).await;
        info!("ZooKeeper knows this mount as {identity}");
        let session = Session {
            rt,
            connect: connect.to_string(),
            read_only_server: AtomicBool::new(client.on_read_only_server()),
            connector,
            authenticated,
            security,
            identity: Mutex::new(identity),
            timeout: client.session_timeout(),
            past_sessions: Mutex::new(vec![client.session_id()]),
            client: RwLock::new(Some(client)),
            state: Mutex::new((State::Connected, Stats::default())),
            connected: tokio::sync::watch::Sender::new(State::Connected),
            registrations: Mutex::new(BTreeMap::new()),
            closing: Mutex::new(()),
            outage: Mutex::new(None),
            foreground: Default::default(),
            state_file: Mutex::new(None),
            resumed: Default::default(),
            lock_holders: Mutex::default(),
            saves: std::sync::atomic::AtomicU64::new(1),
        };
        Ok(Arc::new(session))
    }

    /// Starts the task that follows the session's state, reconnects after expiry and
    /// reports to `events`. Ends when the session is closed.
    pub fn supervise(self: &Arc<Self>, events: mpsc::UnboundedSender<SessionEvent>) -> tokio::task::JoinHandle<()> {
        let this = Arc::clone(self);
        // Watched from now, not from the task's first poll: a state change in between
        // would go unseen (a watcher reports only later changes).
        let watcher = self.current().map(|c| c.state_watcher());
        if self.security.tls() {
            let this = Arc::clone(self);
            self.rt.spawn(async move {
                let mut reported = None;
                while !this.is_closed() {
                    tokio::time::sleep(secure::REFRESH_EVERY).await;
                    this.security.refresh();
                    this.report_tls_failure(&mut reported);
                }
            });
        }
        self.rt.spawn(async move { this.supervisor(watcher, events).await })
    }

    /// While the mount cannot reconnect, says why the TLS connections fail (the client
    /// says so only at debug level): in the log, once per reason, and as `last_error`.
    fn report_tls_failure(&self, reported: &mut Option<String>) {
        if matches!(self.state().0, State::Connected | State::Closed) {
            *reported = None;
            return;
        }
        let Some(why) = self.security.last_failure() else { return };
        if reported.as_deref() != Some(why.as_str()) {
            warn!("cannot reconnect to ZooKeeper over TLS: {why}");
            let state = self.state().0;
            self.set_state(state, Some(format!("TLS: {why}")));
            *reported = Some(why);
        }
    }

    /// Learns again who the server knows the session as, and whether it is read-only.
    fn learn_identity(self: &Arc<Self>, read_only: bool) {
        let was = self.read_only_server.swap(read_only, Ordering::Relaxed);
        if read_only && !was {
            warn!("connected to a read-only ZooKeeper server: changes fail with EROFS until a read-write server is reachable");
        } else if was && !read_only {
            info!("connected to a read-write ZooKeeper server again");
        }
        let Some(client) = self.current() else { return };
        let this = Arc::clone(self);
        self.rt.spawn(async move {
            let identity = who_am_i(&client).await;
            *this.identity.locked() = identity;
        });
    }

    async fn supervisor(
        self: Arc<Self>,
        watcher: Option<zk::StateWatcher>,
        events: mpsc::UnboundedSender<SessionEvent>,
    ) {
        let Some(mut watcher) = watcher else { return };
        loop {
            let mut was_disconnected = false;
            let terminal = loop {
                let state = watcher.changed().await;
                debug!("ZooKeeper session state: {state:?}");
                match state {
                    ZkState::Disconnected => {
                        warn!("lost the connection to ZooKeeper; reconnecting (reads are answered from the view)");
                        self.security.refresh();
                        secure::connecting(true);
                        was_disconnected = true;
                        self.set_state(State::Disconnected, None);
                    }
                    // A read-only session cannot move to a read-write server: the client
                    // opens a new session there, whose id its `Client` does not know
                    // (it would take the mount's own registrations for another's). So
                    // zkfs opens a new session itself, as after an expiry.
                    ZkState::SyncConnected if self.on_read_only_server() => {
                        info!("a read-write ZooKeeper server is reachable again: leaving the read-only session");
                        break ZkState::Expired;
                    }
                    ZkState::SyncConnected | ZkState::ConnectedReadOnly => {
                        secure::connecting(false);
                        secure::clear_failure();
                        self.set_outage(false);
                        self.set_state(State::Connected, None);
                        self.learn_identity(state == ZkState::ConnectedReadOnly);
                        if was_disconnected {
                            info!("reconnected to ZooKeeper");
                            self.state.locked().1.reconnects += 1;
                            let _ = events.send(SessionEvent::Reconnected);
                        }
                        was_disconnected = false;
                    }
                    other => break other,
                }
            };
            if terminal == ZkState::Closed || self.is_closed() {
                self.set_state(State::Closed, None);
                return;
            }
            let why = if self.on_read_only_server() {
                info!("opening a read-write session");
                "left the read-only session for a read-write one".to_string()
            } else {
                error!("ZooKeeper session ended ({terminal:?}); opening a new session");
                format!("session {terminal:?}")
            };
            self.set_state(State::Expired, Some(why));
            // Watched from before the new session is in use: an expiry of it meanwhile
            // would otherwise go unseen (the watcher reports only later changes).
            let Some(next) = self.reopen().await else { return };
            watcher = next;
            self.recreate_registrations().await;
            self.learn_identity(self.current().is_some_and(|c| c.on_read_only_server()));
            let _ = events.send(SessionEvent::NewSession);
        }
    }

    /// Opens sessions until one works or the mount closes; the new session's state
    /// watcher. `None` when closed.
    async fn reopen(&self) -> Option<zk::StateWatcher> {
        let mut backoff = Duration::from_millis(100);
        loop {
            if self.is_closed() {
                return None;
            }
            secure::connecting(true);
            let attempt = self.connector.connect(self.timeout, false).await;
            secure::connecting(false);
            match attempt {
                Ok(client) => {
                    info!("new ZooKeeper session {:#x}", client.session_id());
                    self.past_sessions.locked().push(client.session_id());
                    let watcher = client.state_watcher();
                    let mut slot = self.client.write_locked();
                    if slot.is_none() {
                        return None; // closed meanwhile; dropping `client` closes it
                    }
                    *slot = Some(client);
                    drop(slot);
                    self.state.locked().1.new_sessions += 1;
                    self.set_outage(false);
                    self.set_state(State::Connected, None);
                    self.save_state();
                    return Some(watcher);
                }
                Err(e) => {
                    warn!("cannot open a new ZooKeeper session yet: {e}");
                    self.set_state(State::Expired, Some(e.to_string()));
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    async fn recreate_registrations(&self) {
        let regs: Vec<(String, Vec<u8>)> =
            self.registrations.locked().iter().map(|(k, v)| (k.clone(), v.data.clone())).collect();
        for (path, data) in regs {
            if let Err(e) = self.register_again(&path, &data).await {
                if let Error::NotFound(_) | Error::Exists(_) = e {
                    // Its directory was removed (nothing to hold it in any more), or
                    // another session holds the name now: the address is theirs.
                    self.forget_registration(&path);
                }
                error!("cannot re-create registration {path}: {e}");
                self.set_state(State::Connected, Some(format!("re-creating {path}: {e}")));
            } else {
                info!("re-created registration {path}");
                self.remember_registration(&path, &data);
            }
        }
    }

    /// Creates `path` again on the current session. A leftover node of one of this
    /// mount's earlier sessions is replaced; another session's node is left alone.
    async fn register_again(&self, path: &str, data: &[u8]) -> Result<()> {
        for _ in 0..10 {
            let client = self.client()?;
            let acl = self.registration_acl();
            match client.create(path, data, Mode::Ephemeral, &acl).await {
                Ok(_) => return Ok(()),
                Err(zk::Error::NodeExists) => {
                    let Some(stat) = client.check_stat(path).await.map_err(|e| crate::zookeeper::error_at(e, path))?
                    else {
                        continue;
                    };
                    if stat.ephemeral_owner == client.session_id() {
                        return Ok(());
                    }
                    if !self.was_ours(stat.ephemeral_owner) {
                        return Err(Error::Exists(format!("{path} is held by session {:#x}", stat.ephemeral_owner)));
                    }
                    match client.delete(path, Some(stat.version)).await {
                        Ok(()) | Err(zk::Error::NoNode) | Err(zk::Error::BadVersion) => {}
                        Err(e) => return Err(crate::zookeeper::error_at(e, path)),
                    }
                }
                Err(zk::Error::NoNode) => {
                    return Err(Error::NotFound(format!("{path}: its parent no longer exists")));
                }
                Err(e) => return Err(crate::zookeeper::error_at(e, path)),
            }
        }
        Err(Error::Unavailable(format!("{path}: could not be re-created")))
    }

    fn was_ours(&self, owner: i64) -> bool {
        self.past_sessions.locked().contains(&owner)
    }

    fn set_state(&self, state: State, err: Option<String>) {
        let mut s = self.state.locked();
        if s.0 != State::Closed {
            s.0 = state;
            self.connected.send_replace(state);
        }
        if err.is_some() {
            s.1.last_error = err;
        }
    }

    /// Saves the current session in the state file, if the mount has one.
    /// In the background: no request waits for the file (a lock's reply least of all).
    fn save_state(&self) {
        let Some(file) = self.state_file.locked().clone() else { return };
        let Some((id, password)) = self.client().ok().and_then(|c| c.session_parts()) else { return };
        let locked = self.lock_holders.locked().iter().map(|(p, (pid, st))| (p.clone(), *pid, *st)).collect();
        let seq = self.saves.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        drop(self.rt.spawn_blocking(move || file.save_in_order(seq, &Saved { id, password, locked })));
    }

    /// What a successor process image needs to go on with this session as it is (see
    /// `kernel/handover.rs`); `None` without a live real session.
    pub fn handed_over(&self) -> Option<HandedSession> {
        let (id, password) = self.client().ok().and_then(|c| c.session_parts())?;
        let registrations =
            self.registrations.locked().iter().map(|(p, r)| (p.clone(), r.data.clone(), r.owner)).collect();
        let lock_holders = self.lock_holders.locked().iter().map(|(p, (pid, st))| (p.clone(), *pid, *st)).collect();
        let past_sessions = self.past_sessions.locked().clone();
        Some(HandedSession { id, password, registrations, lock_holders, past_sessions })
    }

    /// The registration at `path` is held by a flock of process `pid`: saved, so that a
    /// successor after a crash keeps it exactly as long as that process lives.
    pub fn held_by_lock(&self, path: &str, pid: u32) {
        let Some(started) = crate::zookeeper::saved::start_time(pid) else { return };
        self.lock_holders.locked().insert(path.to_string(), (pid, started));
        self.save_state();
    }

    /// After a resumed session: the ephemerals it holds are the earlier zkfs's
    /// registrations, which this mount holds now (re-created after an expiry, removed
    /// by `rm` and at the unmount, as any). Those a flock held (`locked`) stay as long
    /// as their holder process lives, followed by pidfd, and go when it exits; those
    /// whose holder exited while no zkfs ran go now.
    async fn adopt_registrations(self: &Arc<Self>, locked: Vec<(String, u32, u64)>) {
        let Ok(client) = self.client() else { return };
        let paths = match client.list_ephemerals().await {
            Ok(p) => p,
            Err(e) => {
                warn!("cannot list the resumed session's registrations: {e}");
                return;
            }
        };
        for path in paths {
            let (data, stat) = match client.get_data(&path).await {
                Ok((data, stat)) if stat.ephemeral_owner == client.session_id() => (data, stat),
                Ok(_) | Err(zk::Error::NoNode) => continue,
                Err(e) => {
                    warn!("cannot read the resumed registration {path}: {e}");
                    continue;
                }
            };
            let holder = locked.iter().find(|(p, _, _)| *p == path).map(|(_, pid, st)| (*pid, *st));
            let Some((pid, started)) = holder else {
                info!("holding {path} again (a registration of the resumed session)");
                self.remember_registration(&path, &data);
                continue;
            };
            let mut holders: Vec<(u32, u64, crate::zookeeper::holder::Holder)> =
                crate::zookeeper::holder::Holder::find(pid, started).map(|h| (pid, started, h)).into_iter().collect();
            if holders.is_empty() {
                // The process that locked is gone (flock(1) of `exec 9>>FILE; flock 9`
                // exits at once); those sharing its open file hold the lock as much.
                let mountpoint = self.state_file.locked().as_ref().map(|f| f.mountpoint().to_string());
                if let Some(mountpoint) = mountpoint {
                    let file = std::path::Path::new(&mountpoint).join(path.trim_start_matches('/'));
                    holders = crate::zookeeper::holder::Holder::with_open(&file, std::path::Path::new(&path));
                }
            }
            if holders.is_empty() {
                info!("{path}: its holder pid {pid} exited while no zkfs ran; unregistering it");
                self.remove_registration(&path, stat.czxid).await;
                continue;
            }
            let pids: Vec<u32> = holders.iter().map(|(p, _, _)| *p).collect();
            info!("holding {path} again for as long as pid {pids:?} lives (its lock was lost in the crash)");
            self.remember_registration(&path, &data);
            let (first, first_started) = (holders[0].0, holders[0].1);
            self.lock_holders.locked().insert(path.clone(), (first, first_started));
            let this = Arc::clone(self);
            self.rt.spawn(async move {
                for (_, _, process) in holders {
                    process.exited().await;
                }
                info!("pid {pids:?}, which held {path}, exited: unregistering it");
                this.remove_registration(&path, stat.czxid).await;
            });
        }
        self.save_state();
    }

    /// Deletes the registration at `path` if it is still node `czxid` of this session,
    /// and forgets it.
    async fn remove_registration(&self, path: &str, czxid: i64) {
        self.forget_registration(path);
        let p = path.to_string();
        let stat = self.call_async(path, |c| async move { c.check_stat(&p).await }).await;
        if let Ok(Some(stat)) = stat {
            if stat.czxid == czxid && stat.ephemeral_owner == self.session_id() {
                let p = path.to_string();
                if let Err(e) = self.call_async(path, |c| async move { c.delete(&p, Some(stat.version)).await }).await {
                    warn!("cannot unregister {path}: {e}");
                }
            }
        }
    }

    /// The current state and counters.
    pub fn state(&self) -> (State, Stats) {
        self.state.locked().clone()
    }

    fn is_closed(&self) -> bool {
        self.client.read_locked().is_none()
    }

    fn current(&self) -> Option<Client> {
        self.client.read_locked().clone()
    }

    /// The live client.
    ///
    /// # Notable errors
    /// [`Error::Unavailable`] once the session is closed.
    pub fn client(&self) -> Result<Client> {
        self.current().ok_or_else(|| Error::Unavailable("the mount is closing".into()))
    }

    /// The id of the current session (the owner of this mount's registrations).
    pub fn session_id(&self) -> i64 {
        self.current().map(|c| c.session_id()).unwrap_or(0)
    }

    /// True if the mount authenticated with credentials.
    pub fn authenticated(&self) -> bool {
        self.authenticated
    }

    /// Who the server knows the session as (`x509:CN=alice`, `sasl:alice`,
    /// `digest:alice`), or `anonymous`.
    pub fn identity(&self) -> String {
        self.identity.locked().clone()
    }

    /// True while the session is on a read-only server (`readonly_ok`).
    pub fn on_read_only_server(&self) -> bool {
        self.read_only_server.load(Ordering::Relaxed)
    }

    /// The mount's TLS, SASL and read-only settings.
    pub fn security(&self) -> &Security {
        &self.security
    }

    /// The ACL for a registration this mount creates (see `auth.rs`).
    pub fn registration_acl(&self) -> Vec<Acl> {
        if self.authenticated() {
            crate::zookeeper::auth::registration_acl()
        } else {
            crate::zookeeper::auth::anyone_all()
        }
    }

    /// The connection string the mount was given.
    pub fn connect_string(&self) -> &str {
        &self.connect
    }

    /// The negotiated session timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The runtime the ZooKeeper client runs on.
    pub fn runtime(&self) -> &Handle {
        &self.rt
    }

    /// Runs a ZooKeeper call from a FUSE thread: blocks until it answers or one session
    /// timeout has passed, and maps its error for `path`.
    ///
    /// # Notable errors
    /// [`Error::WouldWait`] on a thread that may not wait (see `wait.rs`): nothing was sent.
    pub fn call<T, F, Fut>(&self, path: &str, f: F) -> Result<T>
    where
        F: FnOnce(Client) -> Fut,
        Fut: Future<Output = std::result::Result<T, zk::Error>>,
    {
        crate::zookeeper::wait::may_wait()?;
        self.rt.block_on(self.call_async(path, f))
    }

    /// Sets the data of `path` if its version is still `version` (a read-modify-write's
    /// second half): `Ok(None)` when another writer got there first, to retry.
    pub fn set_if_version(&self, path: &str, data: &[u8], version: i32) -> Result<Option<zk::Stat>> {
        let (p, d) = (path.to_string(), data.to_vec());
        self.call(path, |c| async move {
            match c.set_data(&p, &d, Some(version)).await {
                Ok(stat) => Ok(Some(stat)),
                Err(zk::Error::BadVersion) => Ok(None),
                Err(e) => Err(e),
            }
        })
    }

    /// [`Session::call`] for async callers.
    ///
    /// # Notable behaviours
    /// Bounded by one session timeout from its start. Once a call has failed for want
    /// of a server, later calls fail at once until the connection is back (or, while
    /// the client still believes it is connected, for one session timeout): requests
    /// the kernel queues behind one another (writes to one file, creations in one
    /// directory) then each fail within a session timeout of their own start, instead
    /// of one timeout after another.
    pub async fn call_async<T, F, Fut>(&self, path: &str, f: F) -> Result<T>
    where
        F: FnOnce(Client) -> Fut,
        Fut: Future<Output = std::result::Result<T, zk::Error>>,
    {
        let started = Instant::now();
        let _busy = self.foreground.busy();
        if self.in_outage() {
            return Err(Error::Unavailable(format!("{path}: no ZooKeeper server answers")));
        }
        let mut sent_on = None;
        let result = self.call_once(path, f, started, &mut sent_on).await;
        match &result {
            Ok(_) => self.set_outage(false),
            // The failure of a session since replaced (expired while the request was
            // out) says nothing of the new one, which must not be taken as out.
            Err(Error::Unavailable(_)) if sent_on.is_some_and(|id| id != self.session_id()) => {}
            Err(Error::Unavailable(_)) => self.set_outage(true),
            Err(_) => {}
        }
        result
    }

    /// `sent_on`: the session the request went out on, if it went out.
    async fn call_once<T, F, Fut>(&self, path: &str, f: F, started: Instant, sent_on: &mut Option<i64>) -> Result<T>
    where
        F: FnOnce(Client) -> Fut,
        Fut: Future<Output = std::result::Result<T, zk::Error>>,
    {
        // The request is sent only once the session is connected: zookeeper-client
        // keeps a request made while disconnected and sends it after reconnecting, so
        // a write that had already failed (EIO) for its program could be applied later.
        let unavailable =
            || Error::Unavailable(format!("{path}: no ZooKeeper server answered within {:?}", started.elapsed()));
        let deadline = tokio::time::Instant::now() + self.timeout;
        let mut state = self.connected.subscribe();
        let connected = state.wait_for(|s| matches!(s, State::Connected | State::Closed));
        match tokio::time::timeout_at(deadline, connected).await {
            Ok(Ok(s)) if *s == State::Connected => {}
            Ok(_) => return Err(Error::Unavailable("the mount is closing".into())),
            Err(_) => return Err(unavailable()),
        }
        let client = self.client()?;
        *sent_on = Some(client.session_id());
        match tokio::time::timeout_at(deadline, f(client)).await {
            Ok(result) => result.map_err(|e| crate::zookeeper::error_at(e, path)),
            Err(_) => Err(unavailable()),
        }
    }

    /// True while calls should fail at once (see [`Session::call_async`]).
    fn in_outage(&self) -> bool {
        let Some(since) = *self.outage.locked() else { return false };
        *self.connected.borrow() != State::Connected || since.elapsed() < self.timeout
    }

    fn set_outage(&self, on: bool) {
        let mut o = self.outage.locked();
        match (on, o.is_some()) {
            (true, false) => *o = Some(Instant::now()),
            (false, true) => *o = None,
            _ => {}
        }
    }

    /// Records a registration made (or changed) by this mount, held by the current
    /// session.
    pub fn remember_registration(&self, path: &str, data: &[u8]) {
        let owner = self.session_id();
        self.registrations.locked().insert(path.to_string(), Registration { data: data.to_vec(), owner });
    }

    /// True if this mount holds a registration at `path`.
    pub fn holds(&self, path: &str) -> bool {
        self.registrations.locked().contains_key(path)
    }

    /// The data of `path`, held by session `owner`, is now `data` (changed by this
    /// mount or by another client): a registration of this mount is re-created with it
    /// after an expiry, its latest data.
    pub fn registration_changed(&self, path: &str, data: &[u8], owner: i64) {
        if let Some(r) = self.registrations.locked().get_mut(path).filter(|r| r.owner == owner) {
            r.data = data.to_vec();
        }
    }

    /// Forgets a registration removed by this mount.
    pub fn forget_registration(&self, path: &str) {
        self.registrations.locked().remove(path);
        if self.lock_holders.locked().remove(path).is_some() {
            self.save_state();
        }
    }

    /// A watch saw the node of a registration go. That is also how the end of an
    /// expired session looks (the server deletes its nodes and may still tell the dying
    /// connection), so the registration is forgotten only if, once connected, the
    /// session that holds it is still the current one and the node is really gone;
    /// otherwise it stays, to be re-created.
    pub fn registration_gone(self: &Arc<Self>, path: &str) {
        let Some(owner) = self.registrations.locked().get(path).map(|r| r.owner) else { return };
        let this = Arc::clone(self);
        let path = path.to_string();
        self.rt.spawn(async move {
            let p = path.clone();
            let exists = this.call_async(&path, |c| async move { c.check_stat(&p).await }).await;
            if matches!(exists, Ok(None)) && this.session_id() == owner {
                // Final within this session (README, "the lifetime rules"): its holders
                // keep their descriptors and locks on a node that is gone.
                warn!("registration {path} was removed by another ZooKeeper client: not re-created (a removal is final within a session)");
                this.forget_registration(&path);
            }
        });
    }

    /// The registrations this mount holds.
    pub fn registrations(&self) -> Vec<String> {
        self.registrations.locked().keys().cloned().collect()
    }

    /// The mount could not start: closes the session, unless it was taken back from an
    /// earlier zkfs — its registrations are the host's, and stay for the next start to
    /// take back (or until it expires), as if this start had not happened.
    pub fn give_up(&self) {
        if !self.resumed.load(std::sync::atomic::Ordering::Relaxed) {
            return self.close();
        }
        warn!("leaving the resumed session {:#x} open for the next start", self.session_id());
        if let Some(client) = self.client.write_locked().take() {
            // Dropping the last client would close the session: the process ends instead.
            std::mem::forget(client);
        }
        self.set_state(State::Closed, None);
    }

    /// Closes the session so that its registrations vanish at once, and waits (up to
    /// two seconds) until the server has confirmed.
    pub fn close(&self) {
        let _closing = self.closing.locked();
        let Some(client) = self.client.write_locked().take() else { return };
        // Closed: nothing left for a successor to resume.
        if let Some(file) = self.state_file.locked().take() {
            file.remove();
        }
        let mut watcher = client.state_watcher();
        drop(client);
        // zookeeper-client has no awaitable close(): the session closes in the background
        // once the last Client is dropped, so wait for Closed before the process exits.
        let closed = self.rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(2), async {
                loop {
                    if watcher.changed().await.is_terminated() {
                        break;
                    }
                }
            })
            .await
        });
        self.set_state(State::Closed, None);
        match closed {
            Ok(()) => info!("ZooKeeper session closed"),
            Err(_) => warn!("ZooKeeper did not confirm the session close within 2s"),
        }
    }
}

/// Who the server knows `client`'s session as, leaving out the `ip:` entry every
/// session has; `anonymous` when nothing else, `unknown` if the server cannot say
/// (ZooKeeper before 3.7 has no whoAmI).
async fn who_am_i(client: &Client) -> String {
    match client.who_am_i().await {
        Ok(ids) => {
            let named: Vec<String> = ids.into_iter().filter(|i| !i.starts_with("ip:")).collect();
            if named.is_empty() {
                "anonymous".into()
            } else {
                named.join(", ")
            }
        }
        Err(e) => {
            debug!("whoAmI: {e}");
            "unknown (the server cannot say)".into()
        }
    }
}
