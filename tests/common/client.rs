//! [`Zk`]: a synchronous ZooKeeper client for tests, independent of any mount, to
//! arrange and check what ZooKeeper holds.

use std::time::Duration;

use zookeeper_client as zk;

/// A synchronous ZooKeeper client for tests, independent of any mount.
///
/// Methods panic with the path and the error unless they return a `Result`.
/// Dropping it closes its session and waits (≤2 s) until the close is done, so
/// its ephemeral nodes are gone at once. It owns its own runtime: use it from
/// plain `#[test]` functions, not from inside an async runtime.
pub struct Zk {
    client: Option<zk::Client>,
    rt: tokio::runtime::Runtime,
}

impl Zk {
    /// Connects with the client's default session timeout (6 s).
    pub fn connect(connect: &str) -> Zk {
        Zk::connect_with(connect, zk::Client::connector())
    }

    /// Connects with the given session timeout.
    pub fn connect_with_timeout(connect: &str, session_timeout: Duration) -> Zk {
        Zk::connect_with(connect, zk::Client::connector().with_session_timeout(session_timeout))
    }

    fn connect_with(connect: &str, connector: zk::Connector) -> Zk {
        let rt =
            tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("tokio runtime");
        let client = rt
            .block_on(async { tokio::time::timeout(Duration::from_secs(20), connector.connect(connect)).await })
            .unwrap_or_else(|_| panic!("connect to ZooKeeper {connect}: timed out after 20 s"))
            .unwrap_or_else(|e| panic!("connect to ZooKeeper {connect}: {e}"));
        Zk { client: Some(client), rt }
    }

    /// The underlying async client, for what this wrapper lacks; drive its
    /// futures with [`Zk::block_on`].
    pub fn client(&self) -> &zk::Client {
        self.client.as_ref().expect("client")
    }

    /// Runs a future on this client's runtime.
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    /// The session id.
    pub fn session_id(&self) -> i64 {
        self.client().session_id().0
    }

    /// Creates a persistent node; `Err` as ZooKeeper says (NodeExists, NoNode…).
    pub fn try_create(&self, path: &str, data: &[u8]) -> Result<zk::Stat, zk::Error> {
        let opts = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
        self.block_on(self.client().create(path, data, &opts)).map(|(stat, _)| stat)
    }

    /// Creates a persistent node.
    pub fn create(&self, path: &str, data: &[u8]) {
        self.try_create(path, data).unwrap_or_else(|e| panic!("create {path}: {e}"));
    }

    /// Creates an ephemeral node held by this client's session.
    pub fn create_ephemeral(&self, path: &str, data: &[u8]) {
        let opts = zk::CreateMode::Ephemeral.with_acls(zk::Acls::anyone_all());
        self.block_on(self.client().create(path, data, &opts))
            .unwrap_or_else(|e| panic!("create ephemeral {path}: {e}"));
    }

    /// Creates `path` and its missing ancestors as persistent nodes (`mkdir -p`).
    pub fn mkdir_p(&self, path: &str) {
        if path == "/" {
            return;
        }
        let opts = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
        self.block_on(self.client().mkdir(path, &opts)).unwrap_or_else(|e| panic!("mkdir -p {path}: {e}"));
    }

    /// The node's data and stat; `Err(NoNode)` if it does not exist.
    pub fn try_get(&self, path: &str) -> Result<(Vec<u8>, zk::Stat), zk::Error> {
        self.block_on(self.client().get_data(path))
    }

    /// The node's data, `None` if it does not exist.
    pub fn get(&self, path: &str) -> Option<Vec<u8>> {
        match self.try_get(path) {
            Ok((data, _)) => Some(data),
            Err(zk::Error::NoNode) => None,
            Err(e) => panic!("get {path}: {e}"),
        }
    }

    /// The node's data as UTF-8 text, `None` if it does not exist.
    pub fn get_string(&self, path: &str) -> Option<String> {
        self.get(path).map(|d| String::from_utf8(d).unwrap_or_else(|e| panic!("data of {path} is not UTF-8: {e}")))
    }

    /// The node's data parsed as JSON; panics if the node is missing or its data
    /// is not JSON.
    pub fn get_json(&self, path: &str) -> serde_json::Value {
        let data = self.get(path).unwrap_or_else(|| panic!("get_json {path}: no such node"));
        serde_json::from_slice(&data)
            .unwrap_or_else(|e| panic!("data of {path} is not JSON ({e}): {:?}", String::from_utf8_lossy(&data)))
    }

    /// The node's stat, `None` if it does not exist.
    pub fn stat(&self, path: &str) -> Option<zk::Stat> {
        self.block_on(self.client().check_stat(path)).unwrap_or_else(|e| panic!("stat {path}: {e}"))
    }

    /// Whether the node exists.
    pub fn exists(&self, path: &str) -> bool {
        self.stat(path).is_some()
    }

    /// Sets the node's data (any version); `Err` as ZooKeeper says.
    pub fn try_set(&self, path: &str, data: &[u8]) -> Result<zk::Stat, zk::Error> {
        self.block_on(self.client().set_data(path, data, None))
    }

    /// Sets the node's data (any version).
    pub fn set(&self, path: &str, data: &[u8]) {
        self.try_set(path, data).unwrap_or_else(|e| panic!("set {path}: {e}"));
    }

    /// Deletes the node (any version); `Err` as ZooKeeper says (NoNode, NotEmpty…).
    pub fn try_delete(&self, path: &str) -> Result<(), zk::Error> {
        self.block_on(self.client().delete(path, None))
    }

    /// Deletes the node (any version).
    pub fn delete(&self, path: &str) {
        self.try_delete(path).unwrap_or_else(|e| panic!("delete {path}: {e}"));
    }

    /// Deletes the node and everything below it; a missing node is fine. For `/`,
    /// deletes everything but `/zookeeper`.
    pub fn delete_all(&self, path: &str) {
        for child in self.try_children(path).unwrap_or_default() {
            let child_path = if path == "/" {
                if child == "zookeeper" {
                    continue;
                }
                format!("/{child}")
            } else {
                format!("{path}/{child}")
            };
            self.delete_all(&child_path);
        }
        if path == "/" {
            return;
        }
        match self.try_delete(path) {
            Ok(()) | Err(zk::Error::NoNode) => {}
            Err(e) => panic!("delete_all {path}: {e}"),
        }
    }

    /// The node's children; `Err(NoNode)` if it does not exist.
    pub fn try_children(&self, path: &str) -> Result<Vec<String>, zk::Error> {
        let mut children = self.block_on(self.client().list_children(path))?;
        children.sort();
        Ok(children)
    }

    /// The node's children, sorted.
    pub fn children(&self, path: &str) -> Vec<String> {
        self.try_children(path).unwrap_or_else(|e| panic!("children of {path}: {e}"))
    }
}

impl Drop for Zk {
    fn drop(&mut self) {
        let Some(client) = self.client.take() else {
            return;
        };
        let mut watcher = client.state_watcher();
        // The session closes in the background once the last Client is gone.
        drop(client);
        self.rt.block_on(async {
            let _ = tokio::time::timeout(Duration::from_secs(2), async {
                while !watcher.peek_state().is_terminated() {
                    watcher.changed().await;
                }
            })
            .await;
        });
    }
}
