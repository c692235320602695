//! Issue 21, SASL GSSAPI (Kerberos): a mount with a keytab, or with the ticket cache,
//! is its principal to ZooKeeper (`sasl:` ACLs hold, `zkfs status` says who it is),
//! reconnects as it; a keytab others can read, a key the KDC refuses, a principal or
//! a service the KDC does not know are refused at mount time with a clear message and
//! nothing mounted. The KDC and the server come from `tests/common/kerberos.rs`.

mod common;
mod shell;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::kerberos::{kerberos_server, Kdc, REALM};
use common::{wait_until, Mount, Zk};
use serde_json::json;
use shell::{cat_json, q, sh, sh_ok};
use zookeeper_client::{Acl, AuthId, CreateMode, Permission};

const ZKFS: &str = env!("CARGO_BIN_EXE_zkfs");

/// Creates `path` (data `{"who": path}`) readable and writable only by `sasl:PRINCIPAL`.
fn create_for(zk: &Zk, path: &str, principal: &str) {
    let acl = [Acl::new(Permission::ALL, AuthId::new("sasl", principal))];
    let opts = CreateMode::Persistent.with_acls((&acl[..]).into());
    let data = json!({ "who": path }).to_string();
    let client = zk.client().clone();
    let path = path.to_string();
    zk.block_on(async move { client.create(&path, data.as_bytes(), &opts).await.expect("create with an ACL") });
}

/// `zkfs status MOUNTPOINT`.
fn status(mount: &Mount) -> String {
    let out = Command::new(ZKFS).arg("status").arg(mount.path()).output().expect("zkfs status");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `zkfs -f -o OPTS CONNECT DIR` with `env` and expects it to refuse: exit status
/// 1 (2 for a usage error), one line on stderr, nothing mounted. Returns that line.
fn refused(connect: &str, opts: &str, env: &[(String, String)]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(ZKFS)
        .args(["-f", "-o", opts, connect])
        .arg(dir.path())
        .envs(env.iter().cloned())
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

/// `kinit -k -t KEYTAB PRINCIPAL` into a ticket cache of its own; returns its
/// `KRB5CCNAME`.
fn kinit(kdc: &Kdc, keytab: &Path, principal: &str) -> String {
    let cache = format!("FILE:{}", kdc.path(&format!("{principal}.ccache")).display());
    let out = Command::new("kinit")
        .args(["-k", "-t"])
        .arg(keytab)
        .arg(principal)
        .envs(kdc.env())
        .env("KRB5CCNAME", &cache)
        .output()
        .expect("run kinit (krb5-user; scripts/install-deps installs it)");
    assert!(out.status.success(), "kinit: {}", String::from_utf8_lossy(&out.stderr));
    cache
}

fn keytab_option(keytab: &Path, principal: &str) -> String {
    format!("sasl_kerberos_keytab={},sasl_kerberos_principal={principal}", keytab.display())
}

#[test]
fn a_mount_with_a_keytab_is_its_principal_sasl_acls_hold_and_it_reconnects_as_it() {
    let kdc = Kdc::start();
    let mut server = kerberos_server(&kdc);
    let zk = Zk::connect(&server.connect_string());
    let (alice, bob) = (format!("alice@{REALM}"), format!("bob@{REALM}"));
    create_for(&zk, "/alice", &alice);
    create_for(&zk, "/bob", &bob);
    let keytab = kdc.keytab("alice", "alice.keytab");

    // localhost: the servers' principal is zookeeper/HOST, HOST as written in CONNECT.
    let connect = format!("localhost:{}", server.port());
    let mount = Mount::with_env(&connect, &keytab_option(&keytab, "alice"), &kdc.env());
    assert_eq!(cat_json(&mount.join("alice/properties.json")), json!({"who": "/alice"}));
    sh_ok(&format!(r#"echo '{{"threads": 2}}' >> {}"#, q(&mount.join("alice/properties.json"))));
    sh_ok(&format!("touch {}", q(&mount.join("alice/10.0.0.1:80"))));
    let r = sh(&format!("cat {}", q(&mount.join("bob/properties.json"))));
    assert!(!r.ok && r.stderr.contains("Permission denied"), "{}", r.stderr);
    let r = sh(&format!("touch {}", q(&mount.join("bob/10.0.0.1:80"))));
    assert!(!r.ok && r.stderr.contains("Permission denied"), "{}", r.stderr);
    let st = status(&mount);
    assert!(st.contains(&format!("identity: sasl:{alice}\n")), "{st}");
    assert!(mount.log().contains(&format!("Kerberos credentials of {alice}")), "{}", mount.log());

    // A new connection authenticates again, from the mount's own ticket cache.
    server.restart();
    wait_until(Duration::from_secs(30), "the mount reconnects as alice", || {
        let st = status(&mount);
        st.contains("state: connected") && st.contains("reconnects: 1") && st.contains(&format!("sasl:{alice}\n"))
    });
    // A change only alice may make, through the new connection.
    sh_ok(&format!(r#"echo '{{"port": 81}}' >> {}"#, q(&mount.join("alice/properties.json"))));
    assert_eq!(cat_json(&mount.join("alice/properties.json")), json!({"who": "/alice", "threads": 2, "port": 81}));
    drop(mount);

    // The ticket cache instead of a keytab: bob's tickets (kinit), the servers'
    // host named by sasl_kerberos_host since CONNECT names them by address.
    let mut env = kdc.env();
    env.push(("KRB5CCNAME".into(), kinit(&kdc, &kdc.keytab("bob", "bob.keytab"), "bob")));
    let mount = Mount::with_env(&server.connect_string(), "sasl_kerberos,sasl_kerberos_host=localhost", &env);
    assert_eq!(cat_json(&mount.join("bob/properties.json")), json!({"who": "/bob"}));
    let r = sh(&format!("cat {}", q(&mount.join("alice/properties.json"))));
    assert!(!r.ok && r.stderr.contains("Permission denied"), "{}", r.stderr);
    assert!(status(&mount).contains(&format!("identity: sasl:{bob}\n")), "{}", status(&mount));
}

#[test]
fn a_keytab_mount_gets_new_tickets_from_its_keytab_when_they_run_out_and_an_old_cache_is_refused() {
    let kdc = Kdc::start();
    // Tickets of alice live 10 seconds: a reconnection after that needs new ones.
    kdc.set_max_life("alice", "10 seconds");
    let mut server = kerberos_server(&kdc);
    let zk = Zk::connect(&server.connect_string());
    let alice = format!("alice@{REALM}");
    create_for(&zk, "/alice", &alice);
    let keytab = kdc.keytab("alice", "alice.keytab");
    let connect = format!("localhost:{}", server.port());
    let mount = Mount::with_env(&connect, &keytab_option(&keytab, "alice"), &kdc.env());
    // A ticket cache of alice's, which nothing renews.
    let mut cache_env = kdc.env();
    cache_env.push(("KRB5CCNAME".into(), kinit(&kdc, &keytab, "alice")));
    let requests = || kdc.log().matches("AS_REQ").count();
    let before = requests();
    std::thread::sleep(Duration::from_secs(11));
    let e = refused(&connect, "sasl_kerberos", &cache_env);
    assert!(e.contains("have expired: run kinit"), "{e}");
    server.restart();
    wait_until(Duration::from_secs(30), "the mount reconnects as alice", || {
        let st = status(&mount);
        st.contains("state: connected") && st.contains("reconnects: 1") && st.contains(&format!("sasl:{alice}\n"))
    });
    sh_ok(&format!(r#"echo '{{"port": 81}}' >> {}"#, q(&mount.join("alice/properties.json"))));
    assert!(requests() > before, "no new ticket-granting ticket was asked for:\n{}", kdc.log());
}

#[test]
fn bad_keytabs_unknown_principals_and_services_are_refused_clearly_and_nothing_is_mounted() {
    let kdc = Kdc::start();
    let server = kerberos_server(&kdc);
    let env = kdc.env();
    let connect = format!("localhost:{}", server.port());
    let alice = kdc.keytab("alice", "alice.keytab");

    // Keytab files: others may read it, it belongs to another user, it is missing.
    let open = kdc.path("open.keytab");
    std::fs::copy(&alice, &open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o640)).unwrap();
    let e = refused(&connect, &keytab_option(&open, "alice"), &env);
    assert!(e.contains("can be read by others") && e.contains("chmod 600"), "{e}");
    let theirs = kdc.path("theirs.keytab");
    std::fs::copy(&alice, &theirs).unwrap();
    std::os::unix::fs::chown(&theirs, Some(65534), None).unwrap();
    let e = refused(&connect, &keytab_option(&theirs, "alice"), &env);
    assert!(e.contains("belongs to uid 65534, not to you or root"), "{e}");
    let e = refused(&connect, &keytab_option(&kdc.path("none.keytab"), "alice"), &env);
    assert!(e.contains("sasl_kerberos_keytab") && e.contains("No such file"), "{e}");
    let text = kdc.path("text.keytab");
    std::fs::write(&text, "not a keytab\n").unwrap();
    std::fs::set_permissions(&text, std::fs::Permissions::from_mode(0o600)).unwrap();
    let e = refused(&connect, &keytab_option(&text, "alice"), &env);
    assert!(e.contains("not a keytab"), "{e}");

    // What the KDC says: no key of that principal in the keytab, a key changed since
    // the keytab was made, a principal it does not know, a service it does not know.
    let e = refused(&connect, &keytab_option(&alice, "bob"), &env);
    assert!(e.contains(&format!("the keytab {} has no key of bob", alice.display())), "{e}");
    let old = kdc.keytab("bob", "bob-old.keytab");
    kdc.change_key("bob");
    let e = refused(&connect, &keytab_option(&old, "bob"), &env);
    assert!(e.contains("the KDC refused the key of bob") && e.contains("make a new keytab"), "{e}");
    kdc.add_principal("carol");
    let gone = kdc.keytab("carol", "carol.keytab");
    kdc.delete_principal("carol");
    let e = refused(&connect, &format!("sasl_kerberos_keytab={}", gone.display()), &env);
    assert!(e.contains("the KDC does not know the keytab's first principal"), "{e}");
    let e = refused(&connect, &format!("{},sasl_kerberos_service=zk", keytab_option(&alice, "alice")), &env);
    assert!(e.contains("the KDC knows no service principal zk/localhost"), "{e}");
    let e = refused(&server.connect_string(), &keytab_option(&alice, "alice"), &env);
    assert!(e.contains("no service principal zookeeper/127.0.0.1") && e.contains("sasl_kerberos_host"), "{e}");

    // The ticket cache: empty, or another principal's.
    let mut cache_env = env.clone();
    cache_env.push(("KRB5CCNAME".into(), format!("FILE:{}", kdc.path("empty.ccache").display())));
    let e = refused(&connect, "sasl_kerberos", &cache_env);
    assert!(e.contains("no tickets in the ticket cache") && e.contains("run kinit"), "{e}");
    let bob = kdc.keytab("bob", "bob.keytab");
    cache_env.last_mut().unwrap().1 = kinit(&kdc, &bob, "bob");
    let e = refused(&connect, "sasl_kerberos_principal=alice", &cache_env);
    assert!(e.contains("no tickets of alice in the ticket cache"), "{e}");

    // DIGEST-MD5 and GSSAPI at once; a password on the command line.
    let e =
        refused(&connect, &format!("sasl_user=alice,sasl_password_file=/p,{}", keytab_option(&alice, "alice")), &env);
    assert!(e.contains("two SASL mechanisms"), "{e}");
    let e = refused(&connect, "sasl_kerberos_principal=alice,sasl_kerberos_password=x", &env);
    assert!(e.contains("never given on the command line"), "{e}");

    // The server's own key changed at the KDC since it started: the KDC gives the mount
    // a ticket the server cannot read, and the server refuses the mount.
    kdc.change_key(common::kerberos::SERVICE_PRINCIPAL);
    let e = refused(&connect, &keytab_option(&alice, "alice"), &env);
    assert!(e.contains("refused the Kerberos authentication") && e.contains("the servers' keytab"), "{e}");
}
