//! Issue 21, "connect to secure ensembles": TLS with a client certificate, SASL
//! DIGEST-MD5, and what a bad certificate or password does (a clear message, nothing
//! mounted); a read-only server during a partition (`readonly_ok`). The servers and certificates come from `tests/common/secure.rs`.

mod common;
mod shell;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::secure::{sasl_server, tls_server, Pki, SASL_USERS};
use common::zookeeper::Extra;
use common::{four_letter, wait_until, Ensemble, Mount, Zk};
use serde_json::json;
use shell::{cat_json, q, sh, sh_ok};
use zookeeper_client::{Acl, AuthId, CreateMode, Permission};

const ZKFS: &str = env!("CARGO_BIN_EXE_zkfs");

/// Creates `path` (data `{"who": path}`) readable and writable only by `scheme:id`.
fn create_for(zk: &Zk, path: &str, scheme: &str, id: &str) {
    let acl = [Acl::new(Permission::ALL, AuthId::new(scheme, id))];
    let opts = CreateMode::Persistent.with_acls((&acl[..]).into());
    let data = json!({ "who": path }).to_string();
    let client = zk.client().clone();
    let path = path.to_string();
    zk.block_on(async move { client.create(&path, data.as_bytes(), &opts).await.expect("create with an ACL") });
}

/// `zkfs status MOUNTPOINT`.
fn status(mount: &Mount) -> String {
    let out = std::process::Command::new(ZKFS).arg("status").arg(mount.path()).output().expect("zkfs status");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `zkfs -f -o OPTS CONNECT DIR` and expects it to refuse: exit status 1 (2 for
/// a usage error), one line on stderr, nothing mounted. Returns that line.
fn refused(connect: &str, opts: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(ZKFS)
        .args(["-f", "-o", opts, connect])
        .arg(dir.path())
        .env("RUST_LOG", "off")
        .output()
        .expect("run zkfs");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(matches!(out.status.code(), Some(1 | 2)), "-o {opts}: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "-o {opts}: {stderr}");
    assert!(!common::is_mounted(dir.path()), "-o {opts} mounted something");
    eprintln!("refused as it should: {}", stderr.trim_end());
    stderr
}

/// Copies `from` to `to` with `mode`.
fn copy(from: &Path, to: &Path, mode: u32) {
    std::fs::copy(from, to).expect("copy");
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

fn tls_options(pki: &Pki, ca: &str, cert: &Path, key: &Path) -> String {
    format!("tls_ca={},tls_cert={},tls_key={}", pki.path(ca).display(), cert.display(), key.display())
}

#[test]
fn a_mount_over_tls_acts_as_its_certificate_and_uses_a_rotated_one_on_the_next_connection() {
    let pki = Pki::new();
    let (mut server, secure_port) = tls_server(&pki, "server-keystore.pem");
    let zk = Zk::connect(&server.connect_string());
    zk.create("/svc", br#"{"port": 80}"#);
    create_for(&zk, "/alice", "x509", "CN=alice");
    create_for(&zk, "/bob", "x509", "CN=bob");

    // The mount's own copies of alice's certificate and key, replaced below.
    let files = tempfile::tempdir().unwrap();
    let (cert, key) = (files.path().join("client.pem"), files.path().join("client.key"));
    copy(&pki.path("alice.pem"), &cert, 0o644);
    copy(&pki.path("alice.key"), &key, 0o600);
    let connect = format!("127.0.0.1:{secure_port}");
    let mount = Mount::with_options(&connect, &tls_options(&pki, "ca.pem", &cert, &key));

    assert_eq!(cat_json(&mount.join("svc/properties.json")), json!({"port": 80}));
    assert_eq!(cat_json(&mount.join("alice/properties.json")), json!({"who": "/alice"}));
    let r = sh(&format!("cat {}", q(&mount.join("bob/properties.json"))));
    assert!(!r.ok && r.stderr.contains("Permission denied"), "{}", r.stderr);
    sh_ok(&format!("touch {}", q(&mount.join("alice/10.0.0.1:80"))));
    let st = status(&mount);
    assert!(st.contains("identity: x509:CN=alice\n"), "{st}");
    assert!(st.contains("transport: tls (server name verified)\n"), "{st}");

    // Rotation: new files in place; the next connection (after the server's restart)
    // presents bob's certificate, without a remount.
    copy(&pki.path("bob.pem"), &cert, 0o644);
    copy(&pki.path("bob.key"), &key, 0o600);
    wait_until(Duration::from_secs(30), "zkfs notices the new certificate", || {
        mount.log().contains("TLS certificate files changed")
    });
    server.restart();
    wait_until(Duration::from_secs(20), "the mount reconnects as bob", || {
        status(&mount).contains("identity: x509:CN=bob\n")
    });
    assert_eq!(cat_json(&mount.join("bob/properties.json")), json!({"who": "/bob"}));

    // A CA file rotated to the wrong CA: the next connection fails, and status and the
    // log say why; rotated back, the mount reconnects by itself.
    let ca = files.path().join("ca.pem");
    copy(&pki.path("ca.pem"), &ca, 0o644);
    drop(mount);
    let opts = format!("tls_ca={},tls_cert={},tls_key={}", ca.display(), cert.display(), key.display());
    let mount = Mount::with_options(&connect, &opts);
    copy(&pki.path("wrong-ca.pem"), &ca, 0o644);
    wait_until(Duration::from_secs(30), "zkfs takes the new CA", || {
        mount.log().contains("TLS certificate files changed")
    });
    server.restart();
    wait_until(Duration::from_secs(30), "status says why the mount cannot reconnect", || {
        status(&mount).contains("last_error: TLS: the server's certificate is not signed by a CA in tls_ca=")
    });
    assert!(mount.log().contains("cannot reconnect to ZooKeeper over TLS: the server's certificate is not signed"));
    copy(&pki.path("ca.pem"), &ca, 0o644);
    wait_until(Duration::from_secs(30), "the mount reconnects with the right CA", || {
        status(&mount).contains("state: connected")
    });
    assert_eq!(cat_json(&mount.join("bob/properties.json")), json!({"who": "/bob"}));
}

#[test]
fn bad_certificates_and_key_files_are_refused_clearly_and_nothing_is_mounted() {
    let pki = Pki::new();
    let (server, secure_port) = tls_server(&pki, "server-keystore.pem");
    let connect = format!("127.0.0.1:{secure_port}");
    let (alice_pem, alice_key) = (pki.path("alice.pem"), pki.path("alice.key"));

    let e = refused(&connect, &tls_options(&pki, "wrong-ca.pem", &alice_pem, &alice_key));
    assert!(e.contains("not signed by a CA in tls_ca="), "{e}");
    let e = refused(&connect, &format!("tls_ca={}", pki.path("ca.pem").display()));
    assert!(e.contains("requires one (give tls_cert=FILE and tls_key=FILE)"), "{e}");
    let e = refused(&connect, &tls_options(&pki, "ca.pem", &pki.path("expired.pem"), &alice_key));
    assert!(e.contains("expired on"), "{e}");
    // TLS options with a plaintext port: no fallback to plaintext.
    let e = refused(&server.connect_string(), &tls_options(&pki, "ca.pem", &alice_pem, &alice_key));
    assert!(e.contains("over TLS") && e.contains("does not speak TLS on that port"), "{e}");

    // Key files others can read, or missing, are refused before connecting.
    let files = tempfile::tempdir().unwrap();
    let open_key = files.path().join("open.key");
    copy(&alice_key, &open_key, 0o640);
    let e = refused(&connect, &tls_options(&pki, "ca.pem", &alice_pem, &open_key));
    assert!(e.contains("can be read by others") && e.contains("chmod 600"), "{e}");
    let e = refused(&connect, &tls_options(&pki, "ca.pem", &alice_pem, &files.path().join("none.key")));
    assert!(e.contains("No such file"), "{e}");
    let e = refused(&connect, &tls_options(&pki, "ca.pem", &alice_pem, &pki.path("bob.key")));
    assert!(e.contains("is not the key of tls_cert"), "{e}");
    let e = refused(&connect, &tls_options(&pki, "ca.pem", &alice_pem, &pki.path("encrypted.key")));
    assert!(e.contains("the key is encrypted"), "{e}");
    let e = refused(&connect, &format!("tls_cert={},tls_key={}", alice_pem.display(), alice_key.display()));
    assert!(e.contains("need tls_ca=FILE"), "{e}");

    // A server whose certificate names another host: refused unless told otherwise.
    let (_other, other_port) = tls_server(&pki, "other-name-server-keystore.pem");
    let other = format!("127.0.0.1:{other_port}");
    let e = refused(&other, &tls_options(&pki, "ca.pem", &alice_pem, &alice_key));
    assert!(e.contains("does not name the host in the connection string"), "{e}");
    let opts = format!("{},tls_no_verify_hostname", tls_options(&pki, "ca.pem", &alice_pem, &alice_key));
    let mount = Mount::with_options(&other, &opts);
    assert!(mount.join("zookeeper").is_dir());
    assert!(status(&mount).contains("transport: tls (server name NOT verified"), "{}", status(&mount));
    drop(mount);

    // A server whose own certificate has expired.
    let (_expired, expired_port) = tls_server(&pki, "expired-server-keystore.pem");
    let e = refused(&format!("127.0.0.1:{expired_port}"), &tls_options(&pki, "ca.pem", &alice_pem, &alice_key));
    assert!(e.contains("the server's certificate has expired"), "{e}");
}

fn password_file(dir: &Path, password: &str, mode: u32) -> PathBuf {
    let p = dir.join(format!("password-{mode:o}-{}", password.len()));
    std::fs::write(&p, format!("{password}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    p
}

#[test]
fn sasl_digest_md5_mounts_as_its_user_sasl_acls_hold_and_a_bad_password_is_refused() {
    let server = sasl_server();
    let zk = Zk::connect(&server.connect_string());
    create_for(&zk, "/alice", "sasl", "alice");
    create_for(&zk, "/bob", "sasl", "bob");
    let dir = tempfile::tempdir().unwrap();
    let (user, password) = SASL_USERS[0];
    let good = password_file(dir.path(), password, 0o600);

    let opts = format!("sasl_user={user},sasl_password_file={}", good.display());
    let mount = Mount::with_options(&server.connect_string(), &opts);
    assert_eq!(cat_json(&mount.join("alice/properties.json")), json!({"who": "/alice"}));
    sh_ok(&format!(r#"echo '{{"threads": 2}}' >> {}"#, q(&mount.join("alice/properties.json"))));
    let r = sh(&format!("cat {}", q(&mount.join("bob/properties.json"))));
    assert!(!r.ok && r.stderr.contains("Permission denied"), "{}", r.stderr);
    let r = sh(&format!("touch {}", q(&mount.join("bob/10.0.0.1:80"))));
    assert!(!r.ok && r.stderr.contains("Permission denied"), "{}", r.stderr);
    assert!(status(&mount).contains("identity: sasl:alice\n"), "{}", status(&mount));
    assert!(!mount.log().contains(password), "the password is in the log");

    let wrong = password_file(dir.path(), "not-the-password", 0o600);
    let e = refused(&server.connect_string(), &format!("sasl_user={user},sasl_password_file={}", wrong.display()));
    assert!(e.contains("refused the credentials"), "{e}");
    let open = password_file(dir.path(), password, 0o644);
    let e = refused(&server.connect_string(), &format!("sasl_user={user},sasl_password_file={}", open.display()));
    assert!(e.contains("chmod 600"), "{e}");
    let e = refused(&server.connect_string(), &format!("sasl_user={user},sasl_password={password}"));
    assert!(e.contains("never given on the command line"), "{e}");
}

#[test]
fn with_readonly_ok_a_partitioned_mount_reads_from_a_read_only_server_then_returns_to_read_write() {
    // A read-only server serves only local sessions (zookeeper-client's own test sets it
    // up so); a local session makes a registration only if it may become global.
    let mut ensemble = Ensemble::with_extra(Extra {
        cfg: vec!["localSessionsEnabled=true".into(), "localSessionsUpgradingEnabled=true".into()],
        jvm: vec!["-Dreadonlymode.enabled=true".into()],
        classpath: Vec::new(),
    });
    // Written through member 0, which answers once it has applied the change itself.
    let zk = Zk::connect(&format!("127.0.0.1:{}", ensemble.port(0)));
    zk.create("/svc", br#"{"port": 80}"#);
    drop(zk);
    ensemble.stop(1);
    ensemble.stop(2);
    // `isro` says `ro` as soon as the read-only server exists; `srvr` shows its mode once
    // it serves.
    wait_until(Duration::from_secs(30), "member 0 serves read-only", || {
        four_letter(ensemble.port(0), "srvr").is_some_and(|s| s.contains("Mode: read-only"))
    });

    let mount = Mount::with_options(&ensemble.connect_string(), "readonly_ok");
    assert_eq!(cat_json(&mount.join("svc/properties.json")), json!({"port": 80}));
    let r = sh(&format!("touch {}", q(&mount.join("svc/10.0.0.1:80"))));
    assert!(!r.ok && r.stderr.contains("Read-only file system"), "{}", r.stderr);
    // /bin/echo: dash's own echo says "I/O error" whatever the errno.
    let r = sh(&format!(r#"/bin/echo '{{"port": 81}}' >> {}"#, q(&mount.join("svc/properties.json"))));
    assert!(!r.ok && r.stderr.contains("Read-only file system"), "{}", r.stderr);
    assert!(mount.log().contains("the ZooKeeper server is read-only"), "no log line:\n{}", mount.log());
    assert!(status(&mount).contains("server_mode: read-only"), "{}", status(&mount));

    // The partition heals: the mount goes back to a read-write session by itself.
    ensemble.start(1);
    ensemble.start(2);
    wait_until(Duration::from_secs(40), "the mount is read-write again", || {
        let st = status(&mount);
        st.contains("server_mode: read-write") && st.contains("state: connected")
    });
    let mut ok = false;
    for _ in 0..50 {
        ok = sh(&format!("touch {}", q(&mount.join("svc/10.0.0.1:80")))).ok;
        if ok {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(ok, "no registration after returning to read-write:\n{}", mount.log());
    let zk = Zk::connect(&ensemble.connect_string());
    assert!(zk.get("/svc/10.0.0.1:80").is_some());
    sh_ok(&format!("rm {}", q(&mount.join("svc/10.0.0.1:80"))));
}
