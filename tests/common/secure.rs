//! Secure ZooKeeper servers for the tests: [`Pki`], a self-made certificate authority
//! and the certificates the tests need (made with `openssl`), and the [`Extra`]
//! configuration of a server with a TLS port ([`tls_server`]) or SASL DIGEST-MD5
//! ([`sasl_server`]).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use tempfile::TempDir;

use super::free_port;
use super::zookeeper::{Extra, ZkServer};

/// The jars the server's Netty connection factory needs beyond zookeeper.jar's manifest
/// (its TLS handler is in netty-codec). All in Debian's libnetty-java.
pub const NETTY_JARS: &[&str] = &[
    "/usr/share/java/netty-codec.jar",
    "/usr/share/java/netty-resolver.jar",
    "/usr/share/java/netty-transport-native-unix-common.jar",
];

/// A temporary directory of PEM files: a CA (`ca.pem`), a server certificate for
/// 127.0.0.1 and localhost (`server-keystore.pem`: key and certificate, as ZooKeeper's
/// PEM key store wants), client certificates `alice.pem`/`alice.key` and
/// `bob.pem`/`bob.key` (subjects `CN=alice`, `CN=bob`), an expired client certificate
/// `expired.pem` (alice's key), an expired server certificate
/// (`expired-server-keystore.pem`), one for the name `zk.invalid` only
/// (`other-name-server-keystore.pem`), another CA (`wrong-ca.pem`) and a key encrypted
/// with a passphrase (`encrypted.key`). Keys are mode 600.
pub struct Pki {
    dir: TempDir,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run openssl (scripts/install-deps installs it): {e}"));
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

impl Pki {
    /// Makes every file (EC P-256 keys: fast to make).
    pub fn new() -> Pki {
        let dir = tempfile::Builder::new().prefix("zkfs-test-pki-").tempdir().expect("temp dir for certificates");
        let d = dir.path();
        let key = |name: &str| {
            openssl(d, &["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", name]);
            fs::set_permissions(d.join(name), fs::Permissions::from_mode(0o600)).expect("chmod key");
        };
        let ca = |name: &str, cn: &str| {
            key(&format!("{name}.key"));
            openssl(
                d,
                &[
                    "req",
                    "-x509",
                    "-new",
                    "-key",
                    &format!("{name}.key"),
                    "-out",
                    &format!("{name}.pem"),
                    "-days",
                    "2",
                    "-subj",
                    &format!("/CN={cn}"),
                    "-addext",
                    "basicConstraints=critical,CA:TRUE",
                    "-addext",
                    "keyUsage=critical,keyCertSign,cRLSign",
                ],
            );
        };
        ca("ca", "zkfs-test-ca");
        ca("wrong-ca", "zkfs-test-other-ca");
        fs::write(
            d.join("server.ext"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n\
             basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n",
        )
        .expect("write server.ext");
        fs::write(
            d.join("other-name.ext"),
            "subjectAltName=DNS:zk.invalid\nextendedKeyUsage=serverAuth,clientAuth\n\
             basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n",
        )
        .expect("write other-name.ext");
        fs::write(
            d.join("client.ext"),
            "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n\
             keyUsage=digitalSignature\n",
        )
        .expect("write client.ext");
        // `-days -1`: valid from now to yesterday, i.e. expired.
        let sign = |csr_key: &str, cn: &str, ext: &str, days: &str, out: &str| {
            openssl(d, &["req", "-new", "-key", csr_key, "-subj", &format!("/CN={cn}"), "-out", "req.csr"]);
            openssl(
                d,
                &[
                    "x509",
                    "-req",
                    "-in",
                    "req.csr",
                    "-CA",
                    "ca.pem",
                    "-CAkey",
                    "ca.key",
                    "-CAcreateserial",
                    "-days",
                    days,
                    "-extfile",
                    ext,
                    "-out",
                    out,
                ],
            );
        };
        key("server.key");
        sign("server.key", "zkfs-test-server", "server.ext", "2", "server.pem");
        sign("server.key", "zkfs-test-server", "server.ext", "-1", "expired-server.pem");
        sign("server.key", "zk.invalid", "other-name.ext", "2", "other-name-server.pem");
        for (keystore, cert) in [
            ("server-keystore.pem", "server.pem"),
            ("expired-server-keystore.pem", "expired-server.pem"),
            ("other-name-server-keystore.pem", "other-name-server.pem"),
        ] {
            let text = fs::read_to_string(d.join("server.key")).unwrap() + &fs::read_to_string(d.join(cert)).unwrap();
            fs::write(d.join(keystore), text).expect("write key store");
            fs::set_permissions(d.join(keystore), fs::Permissions::from_mode(0o600)).expect("chmod key store");
        }
        for user in ["alice", "bob"] {
            key(&format!("{user}.key"));
            sign(&format!("{user}.key"), user, "client.ext", "2", &format!("{user}.pem"));
        }
        sign("alice.key", "alice", "client.ext", "-1", "expired.pem");
        openssl(
            d,
            &[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-aes256",
                "-pass",
                "pass:x",
                "-out",
                "encrypted.key",
            ],
        );
        fs::set_permissions(d.join("encrypted.key"), fs::Permissions::from_mode(0o600)).expect("chmod key");
        Pki { dir }
    }

    /// One of the files.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// The zoo.cfg lines, flags and jars of a server with a TLS port on 127.0.0.1 beside
/// its plaintext one (used by the tests to arrange data and to ask `ruok`), requiring a
/// client certificate signed by `pki`'s CA. `keystore`: the server's key and
/// certificate file in `pki`.
pub fn tls_extra(pki: &Pki, keystore: &str, secure_port: u16) -> Extra {
    Extra {
        cfg: vec![
            format!("secureClientPort={secure_port}"),
            "secureClientPortAddress=127.0.0.1".into(),
            "serverCnxnFactory=org.apache.zookeeper.server.NettyServerCnxnFactory".into(),
            format!("ssl.keyStore.location={}", pki.path(keystore).display()),
            "ssl.keyStore.type=PEM".into(),
            format!("ssl.trustStore.location={}", pki.path("ca.pem").display()),
            "ssl.trustStore.type=PEM".into(),
            "ssl.clientAuth=need".into(),
        ],
        jvm: Vec::new(),
        classpath: NETTY_JARS.iter().map(|j| j.to_string()).collect(),
    }
}

/// A server with a TLS port (see [`tls_extra`]); its `secureClientPort` is returned beside it.
pub fn tls_server(pki: &Pki, keystore: &str) -> (ZkServer, u16) {
    let secure_port = free_port();
    let server = ZkServer::start_with(|_| tls_extra(pki, keystore, secure_port));
    (server, secure_port)
}

/// Users of [`sasl_server`] and their passwords.
pub const SASL_USERS: &[(&str, &str)] = &[("alice", "alice-secret"), ("bob", "bob-secret")];

/// A server authenticating clients with SASL DIGEST-MD5 (the JAAS `Server` section
/// lists [`SASL_USERS`]), on its plaintext port.
pub fn sasl_server() -> ZkServer {
    ZkServer::start_with(|dir| {
        let users: String = SASL_USERS.iter().map(|(u, p)| format!("\n  user_{u}=\"{p}\"")).collect();
        let jaas = dir.join("jaas.conf");
        fs::write(
            &jaas,
            format!("Server {{\n  org.apache.zookeeper.server.auth.DigestLoginModule required{users};\n}};\n"),
        )
        .expect("write jaas.conf");
        Extra {
            cfg: vec!["authProvider.1=org.apache.zookeeper.server.auth.SASLAuthenticationProvider".into()],
            jvm: vec![format!("-Djava.security.auth.login.config={}", jaas.display())],
            classpath: Vec::new(),
        }
    })
}
