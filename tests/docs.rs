//! `zkfs --help`, the man page zkfs(8), the README's tables and the bash completion
//! all come from the rows of `src/cli/options.rs`: these tests regenerate each and fail
//! when a committed copy differs (`scripts/gen-docs` rewrites them), check that the
//! man page renders without a warning, and run the completion in bash.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use zkfs::cli::options;

const ZKFS: &str = env!("CARGO_BIN_EXE_zkfs");

/// Single-quotes text for bash.
fn q(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\\''"))
}

fn source(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// Whether to rewrite the generated files rather than compare them.
fn updating() -> bool {
    std::env::var_os("ZKFS_UPDATE_DOCS").is_some_and(|v| v == "1")
}

/// Replaces the text between `<!-- BEGIN name... -->` and `<!-- END name -->`.
fn with_section(readme: &str, name: &str, body: &str) -> String {
    let begin = format!("<!-- BEGIN {name}:");
    let end = format!("<!-- END {name} -->");
    let start = readme.find(&begin).unwrap_or_else(|| panic!("README.md has no {begin} marker"));
    let start = start + readme[start..].find('\n').expect("a line after the marker") + 1;
    let stop = readme[start..].find(&end).unwrap_or_else(|| panic!("README.md has no {end} marker")) + start;
    format!("{}{body}{}", &readme[..start], &readme[stop..])
}

fn check_or_update(path: &Path, generated: &str) {
    let committed = fs::read_to_string(path).unwrap_or_default();
    if committed == generated {
        return;
    }
    if updating() {
        fs::write(path, generated).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        eprintln!("updated {}", path.display());
        return;
    }
    let first = committed.lines().zip(generated.lines()).position(|(a, b)| a != b);
    panic!(
        "{} is not what src/cli/options.rs generates (first difference at line {}); run scripts/gen-docs",
        path.display(),
        first.map_or_else(|| "the end".to_string(), |i| (i + 1).to_string()),
    );
}

#[test]
fn generated_files_are_what_the_table_generates() {
    check_or_update(&source("contrib/man/zkfs.8"), &options::man_page());
    check_or_update(&source("contrib/completion/zkfs"), &options::bash_completion());
    let readme_path = source("README.md");
    let readme = fs::read_to_string(&readme_path).expect("read README.md");
    let mut generated = with_section(&readme, "options", &options::readme_options());
    generated = with_section(&generated, "errors", &options::readme_errors());
    generated = with_section(&generated, "exit codes", &options::readme_exit_codes());
    check_or_update(&readme_path, &generated);
}

#[test]
fn help_is_generated_from_the_table() {
    let out = Command::new(ZKFS).arg("--help").output().expect("run zkfs --help");
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), options::help());
    let short = Command::new(ZKFS).arg("-h").output().expect("run zkfs -h");
    assert_eq!(short.stdout, out.stdout);
}

/// The man page as `man` shows it, 80 columns wide, and groff's warnings.
fn render_man_page(path: &Path) -> (String, String) {
    let out = Command::new("man")
        .args(["--warnings", "-l"])
        .arg(path)
        .env("MANWIDTH", "80")
        .env("MANPAGER", "cat")
        .env_remove("MAN_KEEP_FORMATTING")
        .output()
        .expect("run man (scripts/install-deps installs man-db)");
    assert!(out.status.success(), "man failed: {}", String::from_utf8_lossy(&out.stderr));
    (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn the_man_page_renders_every_option_errno_and_exit_status() {
    let (text, warnings) = render_man_page(&source("contrib/man/zkfs.8"));
    assert_eq!(warnings, "", "groff warns about the man page");
    // The page turns hyphenation off (.nh); a typographic hyphen would still break
    // copying an option from it.
    assert!(!text.contains('‐') && !text.contains('−'), "typographic hyphens in the man page");
    let words: Vec<&str> = text.split(|c: char| c.is_whitespace() || c == ',').collect();
    let has = |w: &str| words.contains(&w);
    for o in options::MOUNT_OPTIONS {
        assert!(has(o.name) || words.iter().any(|x| x.starts_with(&format!("{}=", o.name))), "{}", o.name);
    }
    for w in options::KERNEL_FLAGS.iter().chain(options::FSTAB_WORDS).chain(options::FSTAB_PATTERNS) {
        assert!(has(w), "{w}");
    }
    for (o, _) in options::UNSUPPORTED {
        assert!(has(o), "{o}");
    }
    for f in options::FLAGS {
        for n in f.names {
            assert!(has(n), "{n}");
        }
    }
    for (errno, _) in options::ERRNOS {
        assert!(has(errno), "{errno}");
    }
    for (code, _) in options::EXIT_CODES {
        assert!(has(&code.to_string()), "exit status {code}");
    }
    for section in ["SYNOPSIS", "OPTIONS", "ERRORS", "EXIT STATUS"] {
        assert!(text.contains(&format!("\n{section}\n")), "section {section}");
    }
}

/// Runs the completion function for the command line `line` (cursor at its end) in
/// `dir`, as bash would on TAB, and returns the replies.
fn complete(dir: &Path, line: &str) -> Vec<String> {
    let script = format!(
        "source {}\n\
         COMP_LINE={}; COMP_POINT=${{#COMP_LINE}}\n\
         read -r -a COMP_WORDS <<<\"$COMP_LINE\"; COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1))\n\
         _zkfs zkfs\n\
         printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        q(source("contrib/completion/zkfs").to_str().expect("utf-8 path")),
        q(line)
    );
    let out = Command::new("bash").arg("-c").arg(&script).current_dir(dir).output().expect("run bash");
    assert!(out.status.success(), "completion of {line:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "", "completion of {line:?} wrote to stderr");
    let mut replies: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(String::from).collect();
    replies.retain(|r| !r.is_empty());
    replies.sort();
    replies
}

#[test]
fn bash_completes_flags_options_and_their_values() {
    let script = source("contrib/completion/zkfs");
    let registered = Command::new("bash")
        .arg("-c")
        .arg(format!("source {} && complete -p zkfs", q(script.to_str().expect("utf-8 path"))))
        .output()
        .expect("run bash");
    assert_eq!(String::from_utf8_lossy(&registered.stdout).trim(), "complete -F _zkfs zkfs");

    let dir = tempfile::tempdir().expect("tempdir");
    fs::create_dir(dir.path().join("mnt")).expect("mkdir");
    fs::create_dir(dir.path().join("mnt2")).expect("mkdir");
    fs::write(dir.path().join("zk.secret"), "u:p\n").expect("write");

    let flags = complete(dir.path(), "zkfs -");
    for f in options::FLAGS {
        for n in f.names {
            assert!(flags.contains(&n.to_string()), "{n} not in {flags:?}");
        }
    }
    // Every option of the table, values announced by a trailing "=".
    let all = complete(dir.path(), "zkfs -o ");
    for o in options::MOUNT_OPTIONS {
        let want = if o.placeholder.is_some() { format!("{}=", o.name) } else { o.name.to_string() };
        assert!(all.contains(&want), "{want} not in {all:?}");
    }
    assert!(all.contains(&"nosuid".to_string()) && all.contains(&"_netdev".to_string()));
    assert_eq!(complete(dir.path(), "zkfs -o sess"), ["session_timeout="]);
    // After a comma: the whole word is replaced, the options before it kept.
    assert_eq!(complete(dir.path(), "zkfs -o ro,allow_r"), ["ro,allow_root"]);
    // A file option's value: bash replaces only what follows "=" (a word break).
    assert_eq!(complete(dir.path(), "zkfs -o ro,credentials=zk"), ["zk.secret"]);
    // The mountpoint is a directory; the connection string before it is not completed.
    assert_eq!(complete(dir.path(), "zkfs -f 127.0.0.1:2181 mn"), ["mnt/", "mnt2/"]);
    assert_eq!(complete(dir.path(), "zkfs 127.0.0.1:2181 -o ro mnt2"), ["mnt2/"]);
    assert_eq!(complete(dir.path(), "zkfs 127.0"), Vec::<String>::new());
    assert_eq!(complete(dir.path(), "zkfs st"), ["status"]);
    assert_eq!(complete(dir.path(), "zkfs status mnt"), ["mnt/", "mnt2/"]);
}
