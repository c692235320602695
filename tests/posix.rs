//! What POSIX says and pjdfstest checks (tests/pjdfstest.rs), one test per defect it
//! found, against a real ZooKeeper and a real mount: names over NAME_MAX, links as
//! directory entries (rmdir, rename, a failed `ln -s`), the three times of a
//! temporary file, a directory's mtime after a local write, and chmod/chown that
//! change nothing. The refusals zkfs keeps are in docs/semantics.md.

mod common;
mod shell;

use std::fs;
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{lchown, symlink, DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::Path;
use std::thread;
use std::time::Duration;

use common::{Mount, Zk, ZkServer};
use shell::{ls, q, sh_ok};

fn setup(dirs: &[&str]) -> (ZkServer, Zk, Mount) {
    let server = ZkServer::start();
    let zk = Zk::connect(&server.connect_string());
    for d in dirs {
        zk.mkdir_p(d);
    }
    let mount = Mount::new(&server.connect_string());
    (server, zk, mount)
}

/// `text` parsed, numbers as written (`1.10`).
fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap()
}

/// The errno of a failed call, with what was tried in the panic message otherwise.
fn errno<T: std::fmt::Debug>(what: &str, r: std::io::Result<T>) -> i32 {
    match r {
        Ok(v) => panic!("{what} succeeded ({v:?}); it should have failed"),
        Err(e) => e.raw_os_error().unwrap_or_else(|| panic!("{what}: {e} has no errno")),
    }
}

#[test]
fn names_longer_than_255_bytes_are_refused_with_enametoolong_by_every_operation() {
    let (_server, zk, mount) = setup(&["/svc/sub"]);
    let dir = mount.join("svc");
    fs::write(dir.join("tmp"), "x").unwrap();
    symlink("sub", dir.join("link")).unwrap();
    let before = zk.get("/svc").unwrap();
    // 256 bytes, and one over the kernel's own FUSE limit of 1,024.
    for len in [256, 1100] {
        let long = dir.join("n".repeat(len));
        let tooling = |what: &str, r: i32| assert_eq!(r, libc::ENAMETOOLONG, "{what} of a {len}-byte name");
        tooling("mkdir", errno("mkdir", fs::create_dir(&long)));
        tooling("create", errno("create", fs::File::create(&long)));
        tooling("create of HOST:PORT", errno("create", fs::File::create(dir.join(format!("{}:80", "h".repeat(len))))));
        tooling("stat", errno("stat", fs::symlink_metadata(&long)));
        tooling("open", errno("open", fs::File::open(&long)));
        tooling("unlink", errno("unlink", fs::remove_file(&long)));
        tooling("rmdir", errno("rmdir", fs::remove_dir(&long)));
        tooling("rename from", errno("rename", fs::rename(&long, dir.join("tmp2"))));
        tooling("rename to", errno("rename", fs::rename(dir.join("tmp"), &long)));
        tooling("rename of a link to", errno("rename", fs::rename(dir.join("link"), &long)));
        tooling("ln -s", errno("symlink", symlink("sub", &long)));
        tooling("a path through it", errno("stat", fs::metadata(long.join("properties.json"))));
    }
    // Nothing was made or changed, and the files that were there are still there.
    assert_eq!(zk.children("/svc"), vec!["sub"]);
    assert_eq!(zk.get("/svc").unwrap(), before);
    assert_eq!(fs::read_to_string(dir.join("tmp")).unwrap(), "x");
    // 255 bytes is a name like any other; statfs says so.
    let longest = "n".repeat(255);
    fs::create_dir(dir.join(&longest)).unwrap();
    assert!(zk.exists(&format!("/svc/{longest}")));
    let st = nix::sys::statvfs::statvfs(mount.path()).unwrap();
    assert_eq!(st.name_max(), 255);
}

#[test]
fn a_link_that_cannot_be_made_stores_nothing() {
    let (_server, zk, mount) = setup(&["/svc/target"]);
    zk.set("/svc", br#"{"keep": 1}"#);
    let dir = mount.join("svc");
    let long = "l".repeat(256);
    assert_eq!(errno("ln -s", symlink("target", dir.join(&long))), libc::ENAMETOOLONG);
    assert_eq!(zk.get("/svc").unwrap(), br#"{"keep": 1}"#, "no key was written for the link");
    assert_eq!(ls(&dir), vec!["properties.json", "target"]);
    // One of 255 bytes is made, shown and removed again.
    let ok = "l".repeat(255);
    symlink("target", dir.join(&ok)).unwrap();
    assert_eq!(fs::read_link(dir.join(&ok)).unwrap(), Path::new("target"));
    assert_eq!(zk.get_json("/svc")[format!("{ok} ->")], "/svc/target");
    fs::remove_file(dir.join(&ok)).unwrap();
    assert_eq!(zk.get_json("/svc"), serde_json::json!({"keep": 1}));
}

#[test]
fn rmdir_of_a_directory_that_holds_only_a_link_is_enotempty() {
    let (_server, zk, mount) = setup(&["/d"]);
    let r = mount.join("d/r");
    fs::create_dir(&r).unwrap();
    symlink("../r", r.join("l")).unwrap();
    assert_eq!(errno("rmdir", fs::remove_dir(&r)), libc::ENOTEMPTY);
    assert!(zk.exists("/d/r"));
    assert_eq!(zk.get_json("/d/r")["l ->"], "/d/r");
    assert_eq!(fs::read_link(r.join("l")).unwrap(), Path::new("."));
    // Emptied, it goes; `rm -r` does both.
    fs::remove_file(r.join("l")).unwrap();
    fs::remove_dir(&r).unwrap();
    assert!(!zk.exists("/d/r"));
    fs::create_dir(&r).unwrap();
    symlink("../r", r.join("l")).unwrap();
    sh_ok(&format!("rm -r {}", q(&r)));
    assert!(!zk.exists("/d/r"));
}

#[test]
fn a_temporary_file_keeps_its_access_modification_and_change_times_apart() {
    let (_server, _zk, mount) = setup(&["/svc"]);
    let f = mount.join("svc/tmp.json");
    fs::write(&f, "{}").unwrap();
    let times = |f: &Path| {
        let m = fs::metadata(f).unwrap();
        (m.atime(), m.mtime(), m.ctime_nsec() as i128 + m.ctime() as i128 * 1_000_000_000)
    };
    // utimensat sets each time as asked (Python's os.utime(f, (1e9, 2e9))).
    sh_ok(&format!("python3 -c 'import os,sys; os.utime(sys.argv[1], (1e9, 2e9))' {}", q(&f)));
    let (a, m, c0) = times(&f);
    assert_eq!((a, m), (1_000_000_000, 2_000_000_000));
    // One time only: the other stays (touch -a, touch -m).
    sh_ok(&format!("touch -a -d @1500000000 {}", q(&f)));
    assert_eq!((times(&f).0, times(&f).1), (1_500_000_000, 2_000_000_000));
    sh_ok(&format!("touch -m -d @1700000000 {}", q(&f)));
    assert_eq!((times(&f).0, times(&f).1), (1_500_000_000, 1_700_000_000));
    // chmod changes ctime only.
    thread::sleep(Duration::from_millis(10)); // a later clock reading than c0
    fs::set_permissions(&f, fs::Permissions::from_mode(0o600)).unwrap();
    let (a, m, c1) = times(&f);
    assert_eq!((a, m), (1_500_000_000, 1_700_000_000));
    assert!(c1 > c0, "chmod marks ctime");
    // A truncating open marks mtime and ctime, not atime.
    thread::sleep(Duration::from_millis(10));
    let mut w = fs::OpenOptions::new().write(true).truncate(true).open(&f).unwrap();
    let (a, m, c2) = times(&f);
    assert_eq!(a, 1_500_000_000);
    assert!(m > 1_700_000_000 && c2 > c1, "O_TRUNC marks mtime and ctime");
    w.write_all(b"{}").unwrap();
    drop(w);
    fs::remove_file(&f).unwrap();
}

#[test]
fn a_link_is_renamed_in_its_directory_and_copied_by_mv_into_another() {
    let (_server, zk, mount) = setup(&["/svc/target", "/other"]);
    zk.set("/svc", br#"{"keep": 1.10}"#);
    let dir = mount.join("svc");
    symlink("target", dir.join("a")).unwrap();
    fs::rename(dir.join("a"), dir.join("b")).unwrap();
    assert_eq!(fs::read_link(dir.join("b")).unwrap(), Path::new("target"));
    assert_eq!(fs::symlink_metadata(dir.join("a")).unwrap_err().kind(), ErrorKind::NotFound);
    assert_eq!(zk.get_json("/svc"), json(r#"{"keep": 1.10, "b ->": "/svc/target"}"#));
    assert!(zk.get_string("/svc").unwrap().contains("1.10"), "other keys keep their bytes");
    // Onto another link: replaced, as rename(2) does.
    symlink("../other", dir.join("c")).unwrap();
    fs::rename(dir.join("b"), dir.join("c")).unwrap();
    assert_eq!(fs::read_link(dir.join("c")).unwrap(), Path::new("target"));
    assert_eq!(zk.get_json("/svc"), json(r#"{"keep": 1.10, "c ->": "/svc/target"}"#));
    // Onto a real child or properties.json: refused, nothing changed.
    assert_eq!(errno("rename", fs::rename(dir.join("c"), dir.join("target"))), libc::EISDIR);
    assert_eq!(errno("rename", fs::rename(dir.join("c"), dir.join("properties.json"))), libc::EEXIST);
    // Into another directory: EXDEV, which `mv` answers by copying the link as it
    // reads (a relative target stays relative, as on any filesystem).
    assert_eq!(errno("rename", fs::rename(dir.join("c"), mount.join("other/c"))), libc::EXDEV);
    sh_ok(&format!("mv {} {}", q(&dir.join("c")), q(&mount.join("other/"))));
    assert_eq!(zk.get_json("/svc"), json(r#"{"keep": 1.10}"#));
    assert_eq!(zk.get_json("/other"), serde_json::json!({"c ->": "/other/target"}));
    assert_eq!(fs::read_link(mount.join("other/c")).unwrap(), Path::new("target"));
}

#[test]
fn a_directory_renamed_onto_a_non_empty_one_is_enotempty() {
    let (_server, zk, mount) = setup(&["/a", "/full/child", "/empty", "/linked"]);
    zk.set("/linked", br#"{"l ->": "/a"}"#);
    let a = mount.join("a");
    assert_eq!(errno("rename", fs::rename(&a, mount.join("full"))), libc::ENOTEMPTY);
    assert_eq!(errno("rename", fs::rename(&a, mount.join("linked"))), libc::ENOTEMPTY);
    fs::write(mount.join("empty/tmp"), "x").unwrap();
    assert_eq!(errno("rename", fs::rename(&a, mount.join("empty"))), libc::ENOTEMPTY);
    fs::remove_file(mount.join("empty/tmp")).unwrap();
    // Onto an empty one or a new name it is still impossible: ZooKeeper has no rename.
    assert_eq!(errno("rename", fs::rename(&a, mount.join("empty"))), libc::ENOTSUP);
    assert_eq!(errno("rename", fs::rename(&a, mount.join("b"))), libc::ENOTSUP);
    assert!(zk.exists("/a") && zk.exists("/full/child") && zk.exists("/empty") && !zk.exists("/b"));
}

#[test]
fn a_directorys_mtime_follows_a_write_of_its_properties_on_the_writing_mount() {
    let (_server, zk, mount) = setup(&["/svc"]);
    let dir = mount.join("svc");
    let before = fs::metadata(&dir).unwrap().mtime(); // the kernel now holds it
    thread::sleep(Duration::from_millis(20)); // a later millisecond for ZooKeeper's mtime
    let shown_ms = || {
        let m = fs::metadata(&dir).unwrap();
        m.mtime() * 1000 + m.mtime_nsec() / 1_000_000
    };
    fs::write(dir.join("properties.json"), r#"{"a": 1}"#).unwrap();
    let mtime_ms = zk.stat("/svc").unwrap().mtime;
    assert!(mtime_ms > before * 1000);
    // The kernel is told to drop what it holds right after the write (never from
    // inside the request: NOTES.md), so the next stat or the one after shows it.
    common::wait_until(Duration::from_secs(10), "the directory shows its node's new mtime", || shown_ms() == mtime_ms);
    // The same after `ln -s`, which also writes the node's data.
    thread::sleep(Duration::from_millis(20));
    symlink(".", dir.join("self")).unwrap();
    let mtime_ms = zk.stat("/svc").unwrap().mtime;
    common::wait_until(Duration::from_secs(10), "the directory shows the mtime of ln -s", || shown_ms() == mtime_ms);
}

#[test]
fn chmod_and_chown_that_change_nothing_succeed_and_others_are_refused() {
    let (_server, zk, mount) = setup(&["/svc/target"]);
    let dir = mount.join("svc");
    let shown = fs::metadata(&dir).unwrap();
    assert_eq!(shown.permissions().mode() & 0o7777, 0o755);
    // What pjdfstest does before each test, and `chmod -R u+w`, `chown -R $USER`.
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::chown(&dir, Some(shown.uid()), Some(shown.gid())).unwrap();
    sh_ok(&format!("chmod u+w {}", q(&dir)));
    assert_eq!(errno("chmod", fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))), libc::EPERM);
    assert_eq!(errno("chown", std::os::unix::fs::chown(&dir, Some(shown.uid() + 1), None)), libc::EPERM);
    // A link: lchown to its owner succeeds, to anyone else is refused; the key stays.
    symlink("target", dir.join("l")).unwrap();
    let l = fs::symlink_metadata(dir.join("l")).unwrap();
    lchown(dir.join("l"), Some(l.uid()), Some(l.gid())).unwrap();
    assert_eq!(errno("lchown", lchown(dir.join("l"), Some(l.uid() + 1), None)), libc::EPERM);
    assert_eq!(errno("lchown", lchown(dir.join("l"), None, Some(l.gid() + 1))), libc::EPERM);
    assert_eq!(fs::symlink_metadata(dir.join("l")).unwrap().uid(), l.uid());
    assert_eq!(zk.get_json("/svc")["l ->"], "/svc/target");
    assert_eq!(fs::metadata(&dir).unwrap().permissions().mode() & 0o7777, 0o755);
}

#[test]
fn each_refusal_gives_its_errno_and_changes_nothing() {
    let (_server, zk, mount) = setup(&["/svc/sub"]);
    zk.set("/svc", br#"{"v": 1}"#);
    zk.create_ephemeral("/svc/other:80", br#"{"pid": 1}"#);
    let dir = mount.join("svc");
    fs::write(dir.join("mine:80"), "").unwrap(); // a registration of this mount
    let props = dir.join("properties.json");
    let e = |what: &str, r: std::io::Result<()>| errno(what, r);
    assert_eq!(e("stat", fs::metadata(dir.join("nosuch")).map(drop)), libc::ENOENT);
    assert_eq!(e("unlink of a directory", fs::remove_file(dir.join("sub"))), libc::EISDIR);
    assert_eq!(e("rmdir of a registration", fs::remove_dir(dir.join("mine:80"))), libc::ENOTDIR);
    assert_eq!(e("mkdir properties.json", fs::create_dir(&props)), libc::EEXIST);
    assert_eq!(e("mkdir of a registration", fs::create_dir(dir.join("mine:80"))), libc::EEXIST);
    assert_eq!(e("mkdir under a registration", fs::create_dir(dir.join("mine:80/x"))), libc::ENOTDIR);
    let truncate = fs::OpenOptions::new().write(true).open(&props).and_then(|f| f.set_len(5));
    assert_eq!(e("truncate to 5", truncate), libc::EINVAL);
    let open_other = fs::OpenOptions::new().append(true).open(dir.join("other:80")).map(drop);
    assert_eq!(e("writing another session's registration", open_other), libc::EPERM);
    assert_eq!(e("rm of another session's registration", fs::remove_file(dir.join("other:80"))), libc::EPERM);
    assert_eq!(e("a hard link", fs::hard_link(&props, dir.join("l"))), libc::ENOTSUP);
    let fifo = nix::unistd::mkfifo(&dir.join("f"), nix::sys::stat::Mode::from_bits_truncate(0o644));
    assert_eq!(fifo.map_err(|e| e as i32), Err(libc::ENOTSUP), "mkfifo");
    assert_eq!(e("rename of a data file onto another", fs::rename(&props, dir.join("mine:80"))), libc::ENOTSUP);
    assert_eq!(e("rename properties.json away", fs::rename(&props, dir.join("backup"))), libc::EXDEV);
    assert_eq!(setxattr(&props, "user.x"), Err(libc::ENOTSUP), "setfattr");
    assert_eq!(getxattr(&props, "user.nosuch"), Err(libc::ENODATA));
    assert_eq!(getxattr(&props, "security.selinux"), Err(libc::ENOTSUP));
    assert!(getxattr(&props, "user.zk.version").is_ok());
    // Nothing changed in ZooKeeper.
    assert_eq!(zk.get_json("/svc"), serde_json::json!({"v": 1}));
    let mut children = zk.children("/svc");
    children.sort();
    assert_eq!(children, vec!["mine:80", "other:80", "sub"]);
}

/// `setxattr(path, name, "1")`, or its errno.
fn setxattr(path: &Path, name: &str) -> Result<(), i32> {
    use std::os::unix::ffi::OsStrExt;
    let p = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    let n = std::ffi::CString::new(name).unwrap();
    // SAFETY: both strings are NUL-terminated and the value is one byte long.
    let r = unsafe { libc::setxattr(p.as_ptr(), n.as_ptr(), b"1".as_ptr().cast(), 1, 0) };
    if r < 0 {
        return Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0));
    }
    Ok(())
}

/// `getxattr(path, name)`'s value, or its errno.
fn getxattr(path: &Path, name: &str) -> Result<Vec<u8>, i32> {
    use std::os::unix::ffi::OsStrExt;
    let p = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    let n = std::ffi::CString::new(name).unwrap();
    let mut buf = vec![0u8; 4096];
    // SAFETY: both strings are NUL-terminated and `buf` is as long as said.
    let len = unsafe { libc::getxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if len < 0 {
        return Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0));
    }
    buf.truncate(len as usize);
    Ok(buf)
}

#[test]
fn rmdir_drops_the_temporary_files_of_its_directory() {
    let (_server, zk, mount) = setup(&["/svc/d"]);
    let d = mount.join("svc/d");
    fs::write(d.join("tmp"), "x").unwrap();
    assert_eq!(ls(&d), vec!["properties.json"], "a temporary file is not listed");
    fs::remove_dir(&d).unwrap();
    assert!(!zk.exists("/svc/d"));
    zk.create("/svc/d", b"");
    assert_eq!(
        fs::metadata(d.join("tmp")).unwrap_err().raw_os_error(),
        Some(libc::ENOENT),
        "it went with its directory"
    );
}

#[test]
fn without_allow_other_only_the_mounting_user_reaches_the_mount() {
    let (_server, _zk, mount) = setup(&["/svc"]);
    let nobody = |cmd: String| {
        shell::sh(&format!("setpriv --reuid=nobody --regid=nogroup --clear-groups sh -c {}", q(Path::new(&cmd))))
    };
    let r = nobody(format!("stat {}", q(&mount.join("svc"))));
    assert!(!r.ok && r.stderr.contains("Permission denied"), "{}", r.stderr);
    let r = nobody(format!("ls {}", q(mount.path())));
    assert!(!r.ok && r.stderr.contains("Permission denied"), "{}", r.stderr);
    assert!(mount.join("svc").is_dir(), "the mounting user still does");
}

#[test]
fn a_nodes_times_are_its_znodes_whatever_else_is_done_to_it() {
    let (_server, zk, mount) = setup(&["/svc/target"]);
    let dir = mount.join("svc");
    symlink("target", dir.join("l")).unwrap();
    let ms = |p: &Path, ctime: bool| {
        let m = fs::symlink_metadata(p).unwrap();
        if ctime {
            m.ctime() * 1000 + m.ctime_nsec() / 1_000_000
        } else {
            m.mtime() * 1000 + m.mtime_nsec() / 1_000_000
        }
    };
    let znode = || zk.stat("/svc").unwrap().mtime;
    common::wait_until(Duration::from_secs(10), "the directory shows the mtime of ln -s", || {
        ms(&dir, false) == znode()
    });
    let mtime = znode();
    assert_eq!(ms(&dir, true), mtime, "ctime is the znode's mtime too");
    // A child made or removed is no change of the node's data: its times stay.
    thread::sleep(Duration::from_millis(20));
    fs::create_dir(dir.join("child")).unwrap();
    fs::write(dir.join("h:80"), "").unwrap();
    fs::remove_file(dir.join("h:80")).unwrap();
    assert_eq!((ms(&dir, false), znode()), (mtime, mtime));
    // Setting times (touch, utimensat of a directory, of properties.json, of a link
    // without following it) succeeds and changes nothing.
    for p in [dir.clone(), dir.join("properties.json")] {
        sh_ok(&format!("touch -d @1000000000 {}", q(&p)));
        assert_eq!(ms(&p, false), mtime, "{}", p.display());
    }
    sh_ok(&format!("touch -h -d @1000000000 {}", q(&dir.join("l"))));
    assert_eq!(ms(&dir.join("l"), false), mtime, "a link's times are its node's");
    assert_eq!(znode(), mtime);
    // The mode given to mkdir is not kept: a directory is 0755 like every other.
    fs::DirBuilder::new().mode(0o700).create(dir.join("new")).unwrap();
    assert_eq!(fs::metadata(dir.join("new")).unwrap().permissions().mode() & 0o7777, 0o755);
}

/// `rmdir r; mkdir r` faster than the mount hears the first deletion: the event of
/// the old node's deletion never takes the new one away (seen once under load by the
/// test above as `rm -r` failing with ENOENT).
#[test]
fn a_directory_removed_and_made_again_at_once_stays() {
    let (_server, zk, mount) = setup(&["/d"]);
    let r = mount.join("d/r");
    let script = format!(
        "for i in $(seq 1 40); do mkdir {r} && rmdir {r} && mkdir {r} && ln -s ../r {r}/l && test -d {r} && rm -r {r} \
         || {{ echo \"round $i\"; exit 1; }}; done",
        r = q(&r)
    );
    sh_ok(&script);
    assert!(!zk.exists("/d/r"));
    fs::create_dir(&r).unwrap();
    fs::remove_dir(&r).unwrap();
    fs::create_dir(&r).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(r.is_dir(), "the directory made again is still shown once the deletion's event is heard");
    assert!(zk.exists("/d/r"));
}
