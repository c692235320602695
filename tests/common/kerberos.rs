//! A Kerberos realm for the tests: [`Kdc`], an MIT KDC (`krb5kdc`) on a free loopback
//! port with its database, krb5.conf and keytabs in a temporary directory, and
//! [`kerberos_server`], a ZooKeeper that authenticates clients with SASL GSSAPI
//! against it as `zookeeper/localhost@ZKFS.TEST`.
//!
//! Nothing of the machine's own Kerberos setup is read or changed: every command runs
//! with `KRB5_CONFIG` and `KRB5_KDC_PROFILE` naming the temporary files, and so must
//! every zkfs the tests start ([`Kdc::env`]).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::procs::tail;
use super::zookeeper::{Extra, ZkServer};
use super::{free_port, require, Needs};

/// The test realm.
pub const REALM: &str = "ZKFS.TEST";
/// The servers' principal: ZooKeeper's default service name, for the host `localhost`.
pub const SERVICE_PRINCIPAL: &str = "zookeeper/localhost";

/// A running KDC of [`REALM`]. Dropping it kills the KDC (by its pid) and removes the
/// directory.
pub struct Kdc {
    // Field order: the process is killed before its directory is removed.
    child: Child,
    dir: TempDir,
}

impl Kdc {
    /// Creates the realm (its database, the service principal [`SERVICE_PRINCIPAL`]
    /// with a keytab `zookeeper.keytab`, and the users `alice` and `bob`) and starts
    /// the KDC; returns once it answers.
    pub fn start() -> Kdc {
        require(Needs::Kerberos);
        let dir = tempfile::Builder::new().prefix("zkfs-test-kdc-").tempdir().expect("temp dir for the KDC");
        let d = dir.path();
        let port = free_port();
        // TCP only (udp_preference_limit = 1): the port was checked free for TCP. One
        // enctype Java's and MIT's libraries share; no DNS, no reverse lookups.
        fs::write(
            d.join("krb5.conf"),
            format!(
                "[libdefaults]\n  default_realm = {REALM}\n  dns_lookup_realm = false\n  dns_lookup_kdc = false\n  \
                 rdns = false\n  dns_canonicalize_hostname = false\n  udp_preference_limit = 1\n  \
                 permitted_enctypes = aes256-cts-hmac-sha1-96\n\
                 [realms]\n  {REALM} = {{\n    kdc = 127.0.0.1:{port}\n  }}\n\
                 [domain_realm]\n  localhost = {REALM}\n"
            ),
        )
        .expect("write krb5.conf");
        fs::write(
            d.join("kdc.conf"),
            format!(
                "[kdcdefaults]\n  kdc_listen = 127.0.0.1:{port}\n  kdc_tcp_listen = 127.0.0.1:{port}\n\
                 [realms]\n  {REALM} = {{\n    database_name = {db}\n    key_stash_file = {stash}\n    \
                 acl_file = {acl}\n    supported_enctypes = aes256-cts-hmac-sha1-96:normal\n  }}\n\
                 [logging]\n  kdc = FILE:{log}\n",
                db = d.join("principal").display(),
                stash = d.join("stash").display(),
                acl = d.join("kadm5.acl").display(),
                log = d.join("kdc.log").display(),
            ),
        )
        .expect("write kdc.conf");
        fs::write(d.join("kadm5.acl"), "").expect("write kadm5.acl");
        run(d, "kdb5_util", &["create", "-s", "-r", REALM, "-P", "zkfs-test-master-key"]);
        let child = Command::new("krb5kdc")
            .args(["-n", "-r", REALM])
            .envs(env_of(d))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run krb5kdc (scripts/install-deps installs krb5-kdc): {e}"));
        let kdc = Kdc { child, dir };
        kdc.add_principal(SERVICE_PRINCIPAL);
        kdc.keytab(SERVICE_PRINCIPAL, "zookeeper.keytab");
        for user in ["alice", "bob"] {
            kdc.add_principal(user);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while !kdc.log().contains("commencing operation") {
            assert!(Instant::now() < deadline, "the KDC did not start; its log:\n{}", kdc.log());
            std::thread::sleep(Duration::from_millis(10));
        }
        kdc
    }

    /// The realm's krb5.conf (for `KRB5_CONFIG`, or Java's `java.security.krb5.conf`).
    pub fn krb5_conf(&self) -> PathBuf {
        self.dir.path().join("krb5.conf")
    }

    /// What a process using the realm needs in its environment.
    pub fn env(&self) -> Vec<(String, String)> {
        env_of(self.dir.path())
    }

    /// A file in the realm's directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Adds `principal` (`alice`, `zookeeper/localhost`) with a random key.
    pub fn add_principal(&self, principal: &str) {
        self.kadmin(&format!("addprinc -randkey {principal}"));
    }

    /// Writes the current key of `principal` to the keytab `name` (mode 600) and
    /// returns its path; the key stays valid (`-norandkey`).
    pub fn keytab(&self, principal: &str, name: &str) -> PathBuf {
        let path = self.path(name);
        self.kadmin(&format!("ktadd -norandkey -k {} {principal}", path.display()));
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).expect("chmod keytab");
        path
    }

    /// Gives `principal` a new random key: keytabs made before hold a key the KDC refuses.
    pub fn change_key(&self, principal: &str) {
        self.kadmin(&format!("cpw -randkey {principal}"));
    }

    /// Limits the lifetime of `principal`'s tickets (`"10 seconds"`).
    pub fn set_max_life(&self, principal: &str, life: &str) {
        self.kadmin(&format!("modprinc -maxlife \"{life}\" {principal}"));
    }

    /// Removes `principal` from the realm.
    pub fn delete_principal(&self, principal: &str) {
        self.kadmin(&format!("delprinc -force {principal}"));
    }

    /// The KDC's log.
    pub fn log(&self) -> String {
        fs::read_to_string(self.path("kdc.log")).unwrap_or_default()
    }

    fn kadmin(&self, query: &str) {
        run(self.dir.path(), "kadmin.local", &["-r", REALM, "-q", query]);
    }
}

impl Drop for Kdc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn env_of(dir: &Path) -> Vec<(String, String)> {
    vec![
        ("KRB5_CONFIG".into(), dir.join("krb5.conf").display().to_string()),
        ("KRB5_KDC_PROFILE".into(), dir.join("kdc.conf").display().to_string()),
    ]
}

/// Runs one of MIT's admin commands in the realm; panics with its output if it fails
/// (kadmin.local reports some failures on stderr only, with exit status 0).
fn run(dir: &Path, program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .envs(env_of(dir))
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program} (scripts/install-deps installs krb5-kdc): {e}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let failed = stderr.lines().any(|l| {
        !l.starts_with("Authenticating as principal") && !l.starts_with("No policy specified") && !l.trim().is_empty()
    });
    assert!(
        out.status.success() && !failed,
        "{program} {args:?}: {stderr}{}\nKDC log:\n{}",
        String::from_utf8_lossy(&out.stdout),
        tail(&dir.join("kdc.log"), 20)
    );
}

/// A ZooKeeper server that authenticates clients with SASL GSSAPI as
/// [`SERVICE_PRINCIPAL`] of `kdc`'s realm (the JAAS `Server` section reads its
/// keytab), on its plaintext port. A client is known as `sasl:alice@ZKFS.TEST`.
pub fn kerberos_server(kdc: &Kdc) -> ZkServer {
    let keytab = kdc.path("zookeeper.keytab");
    let krb5_conf = kdc.krb5_conf();
    ZkServer::start_with(|dir| {
        let jaas = dir.join("jaas.conf");
        fs::write(
            &jaas,
            format!(
                "Server {{\n  com.sun.security.auth.module.Krb5LoginModule required\n  useKeyTab=true\n  \
                 keyTab=\"{}\"\n  storeKey=true\n  useTicketCache=false\n  \
                 principal=\"{SERVICE_PRINCIPAL}@{REALM}\";\n}};\n",
                keytab.display()
            ),
        )
        .expect("write jaas.conf");
        Extra {
            cfg: vec!["authProvider.1=org.apache.zookeeper.server.auth.SASLAuthenticationProvider".into()],
            jvm: vec![
                format!("-Djava.security.auth.login.config={}", jaas.display()),
                format!("-Djava.security.krb5.conf={}", krb5_conf.display()),
            ],
            classpath: Vec::new(),
        }
    })
}
