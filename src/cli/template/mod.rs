//! `zkfs template`: renders configuration files from a zkfs mount and reloads the
//! program that reads them — only when the output changed and its check passed, with
//! debounce, per-host splay, and rails a fleet needs.
//!
//! It is a client of a mounted zkfs, like `zkfs export`: it lists directories and
//! reads files through the mount, and learns of changes through inotify on the
//! directories the templates read. It costs ZooKeeper nothing beyond the mount's own
//! reads (which the mount caches and keeps up to date with its watches).
//!
//! One cycle per template (see [`State::cycle`]):
//!
//! 1. render ([`render`]); a failed read is an *outage*: the old output stays;
//!    a template error (with its line) also keeps the old output;
//! 2. the shrink guard ([`rails`]) may hold the render back;
//! 3. identical to the destination: nothing to do (no reload);
//! 4. a candidate is written beside the destination and checked ([`output`]);
//! 5. after the splay, it is renamed into place and the reload command runs.
//!
//! Design notes and fleet costs: docs/template.md.

pub mod output;
pub mod rails;
pub mod render;
pub mod timing;
pub mod watch;

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime};

use log::{error, info, warn};

use self::rails::{Guard, Shrink, Verdict};
use self::render::Rendered;
use self::timing::{Debounce, Wait};

/// How often a template whose reads failed is rendered again.
pub const RETRY: Duration = Duration::from_secs(1);

/// How often the watched paths are checked to still lead to what is watched.
const HEARTBEAT: Duration = Duration::from_secs(1);

/// One template: where it comes from, where it goes, what checks and reloads it.
#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    /// The template file.
    pub source: PathBuf,
    /// The output file.
    pub dest: PathBuf,
    /// Run on the candidate before it is put in place; `{}` is its path.
    pub check: Option<String>,
    /// Run after a new output is in place.
    pub reload: Option<String>,
}

/// `--snapshot DIR:OUTDIR[:RELOAD]`: a directory of a mount kept copied, as one
/// consistent state, into OUTDIR (see [`crate::cli::snapshot`]).
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotSpec {
    /// The subtree (relative paths are relative to `--root`).
    pub dir: PathBuf,
    /// Where its copies go.
    pub out: PathBuf,
    /// Run after a new copy is in place.
    pub reload: Option<String>,
}

/// `zkfs template ...`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct TemplateCommand {
    /// The templates, in the order given.
    pub templates: Vec<Spec>,
    /// The snapshots, in the order given.
    pub snapshots: Vec<SnapshotSpec>,
    /// Render once, apply, exit.
    pub once: bool,
    /// Debounce.
    pub wait: Wait,
    /// Random delay before each apply.
    pub splay: Duration,
    /// The shrink guard.
    pub shrink: Shrink,
    /// Relative paths in templates are relative to this directory.
    pub root: PathBuf,
    /// Where to write the status lines.
    pub status: Option<PathBuf>,
}

/// The usage line.
pub const USAGE: &str = "zkfs template [--once] [--wait MIN[:MAX]] [--splay D] [--shrink PCT] [--shrink-min N] \
     [--hold D] [--root DIR] [--status FILE] [-t] SRC:DEST[:RELOAD] [--check CMD] [--reload CMD]... \
     [--snapshot DIR:OUTDIR[:RELOAD]]...";

/// Parses the arguments after `template`. Flags may be written `--name VALUE`,
/// `--name=VALUE` or with one dash (`-once`, `-wait=1s:5s`), as consul-template's.
pub fn parse_args(args: Vec<String>) -> Result<TemplateCommand, String> {
    let mut cmd = TemplateCommand {
        templates: Vec::new(),
        snapshots: Vec::new(),
        once: false,
        wait: Wait::default(),
        splay: Duration::ZERO,
        shrink: Shrink::default(),
        root: PathBuf::from("."),
        status: None,
    };
    let usage = |msg: String| format!("{msg}\nusage: {USAGE}");
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let flag = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-'));
        let Some(flag) = flag.filter(|f| !f.is_empty()) else {
            // A bare SRC:DEST[:RELOAD] is a template, as after -t.
            cmd.templates.push(parse_spec(&arg).map_err(usage)?);
            continue;
        };
        let (name, inline) = match flag.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (flag, None),
        };
        if name == "once" {
            if inline.is_some() {
                return Err(usage("--once takes no value".into()));
            }
            cmd.once = true;
            continue;
        }
        let value = match inline.or_else(|| args.next()) {
            Some(v) => v,
            None => return Err(usage(format!("{arg} needs a value"))),
        };
        fn last<'a>(cmd: &'a mut TemplateCommand, arg: &str) -> Result<&'a mut Spec, String> {
            cmd.templates.last_mut().ok_or_else(|| format!("{arg} must follow the -t it is for\nusage: {USAGE}"))
        }
        match name {
            "t" | "template" => cmd.templates.push(parse_spec(&value).map_err(usage)?),
            "s" | "snapshot" => {
                let spec = parse_spec(&value).map_err(|e| usage(e.replace("-t ", "--snapshot ")))?;
                cmd.snapshots.push(SnapshotSpec { dir: spec.source, out: spec.dest, reload: spec.reload });
            }
            "c" | "check" => last(&mut cmd, &arg)?.check = Some(value),
            "r" | "reload" => last(&mut cmd, &arg)?.reload = Some(value),
            "wait" => cmd.wait = timing::parse_wait(&value).map_err(usage)?,
            "splay" => cmd.splay = timing::parse_duration(&value).map_err(usage)?,
            "hold" => cmd.shrink.hold = timing::parse_duration(&value).map_err(usage)?,
            "shrink" => {
                let pct: f64 = value
                    .trim_end_matches('%')
                    .parse()
                    .ok()
                    .filter(|p: &f64| (0.0..=100.0).contains(p))
                    .ok_or_else(|| usage(format!("--shrink {value}: expected a percentage from 0 to 100")))?;
                cmd.shrink.fraction = pct / 100.0;
            }
            "shrink-min" => {
                cmd.shrink.min =
                    value.parse().map_err(|_| usage(format!("--shrink-min {value}: expected a number of entries")))?;
            }
            "root" => cmd.root = PathBuf::from(value),
            "status" => cmd.status = Some(PathBuf::from(value)),
            _ => return Err(usage(format!("unknown flag {arg} for zkfs template"))),
        }
    }
    if cmd.templates.is_empty() && cmd.snapshots.is_empty() {
        return Err(usage("no template: give -t SRC:DEST[:RELOAD]".into()));
    }
    let mut dests = BTreeSet::new();
    let outputs = cmd.templates.iter().map(|s| &s.dest).chain(cmd.snapshots.iter().map(|s| &s.out));
    if let Some(dup) = outputs.into_iter().find(|d| !dests.insert(*d)) {
        return Err(usage(format!("two templates write {}", dup.display())));
    }
    Ok(cmd)
}

/// `SRC:DEST[:RELOAD]` (RELOAD may hold colons; SRC and DEST cannot).
fn parse_spec(s: &str) -> Result<Spec, String> {
    let mut parts = s.splitn(3, ':');
    let (Some(source), Some(dest)) = (parts.next(), parts.next()) else {
        return Err(format!("-t {s}: expected SRC:DEST[:RELOAD]"));
    };
    if source.is_empty() || dest.is_empty() {
        return Err(format!("-t {s}: expected SRC:DEST[:RELOAD]"));
    }
    let reload = parts.next().filter(|r| !r.is_empty()).map(String::from);
    Ok(Spec { source: source.into(), dest: dest.into(), check: None, reload })
}

/// Where a template stands, for the log and the status file.
#[derive(Debug, Clone, PartialEq)]
pub enum Status {
    /// Not rendered yet.
    Starting,
    /// The output is the latest render.
    Ok,
    /// A shrink is held back; the old output stays.
    Held(String),
    /// Reads failed; the old output stays.
    Outage(String),
    /// The template is wrong; the old output stays.
    TemplateError(String),
    /// The check refused the candidate; the old output stays.
    CheckFailed(String),
    /// The output could not be written; the old output stays.
    WriteFailed(String),
    /// The new output is in place but the reload command failed.
    ReloadFailed(String),
}

impl Status {
    fn line(&self) -> String {
        match self {
            Status::Starting => "starting".into(),
            Status::Ok => "ok".into(),
            Status::Held(w) => format!("HELD (shrink guard, old output kept): {w}"),
            Status::Outage(w) => format!("OUTAGE (old output kept): {w}"),
            Status::TemplateError(w) => format!("TEMPLATE ERROR (old output kept): {w}"),
            Status::CheckFailed(w) => format!("CHECK FAILED (old output kept): {w}"),
            Status::WriteFailed(w) => format!("WRITE FAILED (old output kept): {w}"),
            Status::ReloadFailed(w) => format!("RELOAD FAILED (new output in place): {w}"),
        }
    }
}

/// One template's state across cycles.
pub struct State {
    spec: Spec,
    guard: Guard,
    status: Status,
    since: SystemTime,
    /// Directories the last render read.
    dirs: BTreeSet<PathBuf>,
    /// Outputs put in place / reloads run, since the start.
    applied: u64,
    reloads: u64,
}

impl State {
    fn new(spec: Spec) -> State {
        State {
            spec,
            guard: Guard::default(),
            status: Status::Starting,
            since: SystemTime::now(),
            dirs: BTreeSet::new(),
            applied: 0,
            reloads: 0,
        }
    }

    fn set(&mut self, status: Status) {
        if status != self.status {
            let name = self.spec.dest.display();
            match &status {
                Status::Ok | Status::Starting => info!("{name}: {}", status.line()),
                Status::Held(_) => warn!("{name}: {}", status.line()),
                _ => error!("{name}: {}", status.line()),
            }
            self.status = status;
            self.since = SystemTime::now();
        }
    }

    /// Renders and applies; when to look again even without a change (a hold that
    /// ends, a retry after an outage).
    fn cycle(&mut self, cmd: &TemplateCommand, splay: bool) -> Option<Instant> {
        let now = Instant::now();
        let (text, reads) = match render::render(&self.spec.source, &cmd.root) {
            Rendered::Text(text, reads) => (text, reads),
            Rendered::Outage(why, reads) => {
                self.dirs = reads.dirs;
                self.set(Status::Outage(why));
                return Some(now + RETRY);
            }
            Rendered::Error(why) => {
                self.set(Status::TemplateError(why));
                return None;
            }
        };
        self.dirs = reads.dirs.clone();
        match self.guard.judge(&cmd.shrink, &reads.counts, now) {
            Verdict::Hold(losses, until) => {
                let left = until.saturating_duration_since(now);
                self.set(Status::Held(format!(
                    "{}; applied in {:.1}s if it lasts",
                    rails::describe(&losses),
                    left.as_secs_f64()
                )));
                return Some(until);
            }
            Verdict::ApplyAfterHold(losses) => {
                warn!(
                    "{}: the shrink lasted {:?}: applying it: {}",
                    self.spec.dest.display(),
                    cmd.shrink.hold,
                    rails::describe(&losses)
                );
            }
            Verdict::Apply => {}
        }
        if output::unchanged(&self.spec.dest, &text) {
            self.guard.applied(&reads.counts);
            self.set(Status::Ok);
            return None;
        }
        let candidate = match output::Candidate::write(&self.spec.dest, &text) {
            Ok(c) => c,
            Err(why) => {
                self.set(Status::WriteFailed(why));
                return None;
            }
        };
        if let Some(check) = &self.spec.check {
            if let Err(why) = output::run(check, Some(candidate.path())) {
                self.set(Status::CheckFailed(why));
                return None;
            }
        }
        if splay {
            let delay = timing::splay(cmd.splay);
            if !delay.is_zero() {
                info!("{}: splay: applying in {:.2}s", self.spec.dest.display(), delay.as_secs_f64());
                std::thread::sleep(delay);
            }
        }
        if let Err(why) = candidate.install() {
            self.set(Status::WriteFailed(why));
            return None;
        }
        self.applied += 1;
        self.guard.applied(&reads.counts);
        let counts: Vec<String> = reads.counts.iter().map(|(d, n)| format!("{n} in {}", d.display())).collect();
        info!("{}: new output in place ({})", self.spec.dest.display(), counts.join(", "));
        if let Some(reload) = &self.spec.reload {
            self.reloads += 1;
            if let Err(why) = output::run(reload, None) {
                self.set(Status::ReloadFailed(why));
                return None;
            }
            info!("{}: reloaded", self.spec.dest.display());
        }
        self.set(Status::Ok);
        None
    }
}

/// One snapshot's state across cycles: what [`State`] is for a template, without the
/// shrink guard and the check (a directory of files has no one output to check).
pub struct SnapState {
    spec: SnapshotSpec,
    status: Status,
    since: SystemTime,
    dirs: BTreeSet<PathBuf>,
    applied: u64,
    reloads: u64,
}

impl SnapState {
    fn new(spec: SnapshotSpec) -> SnapState {
        SnapState {
            spec,
            status: Status::Starting,
            since: SystemTime::now(),
            dirs: BTreeSet::new(),
            applied: 0,
            reloads: 0,
        }
    }

    fn set(&mut self, status: Status) {
        if status != self.status {
            let name = self.spec.out.display();
            match &status {
                Status::Ok | Status::Starting => info!("{name}: {}", status.line()),
                _ => error!("{name}: {}", status.line()),
            }
            self.status = status;
            self.since = SystemTime::now();
        }
    }

    /// Copies and swaps; when to look again (after a failed read).
    fn cycle(&mut self, cmd: &TemplateCommand, splay: bool) -> Option<Instant> {
        let dir = cmd.root.join(&self.spec.dir);
        let taken = match crate::cli::snapshot::take(&dir) {
            Ok(t) => t,
            Err(why) => {
                // The directory's parent stays watched so its return is heard.
                self.dirs = dir.parent().map(|p| BTreeSet::from([p.to_path_buf()])).unwrap_or_default();
                self.set(Status::Outage(why));
                return Some(Instant::now() + RETRY);
            }
        };
        self.dirs = taken.dirs;
        if crate::cli::snapshot::unchanged(&self.spec.out, &taken.tree) {
            self.set(Status::Ok);
            return None;
        }
        if splay {
            let delay = timing::splay(cmd.splay);
            if !delay.is_zero() {
                info!("{}: splay: applying in {:.2}s", self.spec.out.display(), delay.as_secs_f64());
                std::thread::sleep(delay);
            }
        }
        match crate::cli::snapshot::install(&self.spec.out, &taken.tree) {
            Ok(false) => {}
            Ok(true) => {
                self.applied += 1;
                info!("{}: new copy in place ({} entries)", self.spec.out.display(), taken.tree.len());
                if let Some(reload) = &self.spec.reload {
                    self.reloads += 1;
                    if let Err(why) = output::run(reload, None) {
                        self.set(Status::ReloadFailed(why));
                        return None;
                    }
                }
            }
            Err(why) => {
                self.set(Status::WriteFailed(why));
                return None;
            }
        }
        self.set(Status::Ok);
        None
    }
}

/// The status file's text: one line per template, then one per snapshot.
fn status_text(states: &[State], snaps: &[SnapState]) -> String {
    let mut out = String::new();
    for s in states {
        let since = s.since.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let _ = writeln!(
            out,
            "{}\tsince={since}\tapplied={}\treloads={}\t{}",
            s.spec.dest.display(),
            s.applied,
            s.reloads,
            s.status.line()
        );
    }
    for s in snaps {
        let since = s.since.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let _ = writeln!(
            out,
            "{}\tsince={since}\tapplied={}\treloads={}\t{}",
            s.spec.out.display(),
            s.applied,
            s.reloads,
            s.status.line()
        );
    }
    out
}

fn write_status(cmd: &TemplateCommand, states: &[State], snaps: &[SnapState]) {
    let Some(path) = &cmd.status else { return };
    let text = status_text(states, snaps);
    if output::unchanged(path, &text) {
        return;
    }
    if let Err(e) = output::Candidate::write(path, &text).and_then(output::Candidate::install) {
        warn!("status file: {e}");
    }
}

/// Runs `zkfs template`: once, or until killed.
pub fn run(cmd: &TemplateCommand) -> ExitCode {
    crate::cli::logging::init(crate::cli::logging::Sinks { stderr: true, syslog: None, file: None }, "info");
    let mut states: Vec<State> = cmd.templates.iter().cloned().map(State::new).collect();
    let mut snaps: Vec<SnapState> = cmd.snapshots.iter().cloned().map(SnapState::new).collect();
    if cmd.once {
        for s in &mut states {
            s.cycle(cmd, false);
        }
        for s in &mut snaps {
            s.cycle(cmd, false);
        }
        write_status(cmd, &states, &snaps);
        let ok = states.iter().all(|s| s.status == Status::Ok) && snaps.iter().all(|s| s.status == Status::Ok);
        return if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE };
    }
    let mut watch = match watch::Watch::new() {
        Ok(w) => w,
        Err(e) => {
            eprintln!("zkfs: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut debounce = Debounce::default();
    let mut look_again: Option<Instant> = None;
    let mut render_now = true;
    let mut checked = Instant::now();
    loop {
        if render_now {
            render_now = false;
            debounce.clear();
            look_again = None;
            let mut dirs = BTreeSet::new();
            for s in &mut states {
                let at = s.cycle(cmd, true);
                look_again = [look_again, at].into_iter().flatten().min();
                dirs.extend(s.dirs.iter().cloned());
            }
            for s in &mut snaps {
                let at = s.cycle(cmd, true);
                look_again = [look_again, at].into_iter().flatten().min();
                dirs.extend(s.dirs.iter().cloned());
            }
            write_status(cmd, &states, &snaps);
            let armed = watch.set(&dirs);
            if armed.added {
                // A change between a directory's read and its watch would go unheard.
                debounce.change(Instant::now());
            }
            if armed.missing {
                // Gone since it was read (the mount went meanwhile): nothing would
                // tell us, so look again.
                let retry = Instant::now() + RETRY;
                look_again = Some(look_again.map_or(retry, |t| t.min(retry)));
            }
        }
        let due = [debounce.due(&cmd.wait), look_again].into_iter().flatten().min();
        let timeout = due.map_or(HEARTBEAT, |d| d.saturating_duration_since(Instant::now()).min(HEARTBEAT));
        let heard = watch.wait(Some(timeout));
        if heard.change {
            debounce.change(Instant::now());
        }
        let moved = checked.elapsed() >= HEARTBEAT && {
            checked = Instant::now();
            watch.moved()
        };
        if heard.gone || moved {
            look_again = Some(look_again.map_or(Instant::now() + RETRY, |t| t.min(Instant::now() + RETRY)));
        }
        let due = [debounce.due(&cmd.wait), look_again].into_iter().flatten().min();
        if due.is_some_and(|d| d <= Instant::now()) {
            render_now = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &[&str]) -> Result<TemplateCommand, String> {
        parse_args(s.iter().map(|a| a.to_string()).collect())
    }

    #[test]
    fn specs_and_flags() {
        let cmd = args(&["-once", "-t", "a.tmpl:/etc/x.cfg:systemctl reload x", "--check", "x -c {}", "-wait=1s:5s"])
            .unwrap();
        assert!(cmd.once);
        assert_eq!(
            cmd.templates,
            vec![Spec {
                source: "a.tmpl".into(),
                dest: "/etc/x.cfg".into(),
                check: Some("x -c {}".into()),
                reload: Some("systemctl reload x".into())
            }]
        );
        assert_eq!(cmd.wait, Wait { min: Duration::from_secs(1), max: Duration::from_secs(5) });
        let cmd = args(&["-t", "a:b", "--splay", "5s", "--shrink", "80%", "--hold=3s", "--reload", "r"]).unwrap();
        assert_eq!(cmd.splay, Duration::from_secs(5));
        assert_eq!(cmd.shrink, Shrink { fraction: 0.8, min: 3, hold: Duration::from_secs(3) });
        assert_eq!(cmd.templates[0].reload.as_deref(), Some("r"));
    }

    #[test]
    fn bad_arguments_say_what_is_wrong() {
        for (a, want) in [
            (&["--once"][..], "no template"),
            (&["--check", "x", "-t", "a:b"], "must follow the -t"),
            (&["-t", "a"], "SRC:DEST"),
            (&["-t", "a:b", "--wait", "5s:1s"], "MAX must not be less"),
            (&["-t", "a:b", "--shrink", "150"], "percentage"),
            (&["-t", "a:b", "--bogus", "1"], "unknown flag --bogus"),
            (&["-t", "a:b", "-t", "c:b"], "two templates write b"),
            (&["-t", "a:b", "--splay"], "needs a value"),
        ] {
            let err = args(a).unwrap_err();
            assert!(err.contains(want) && err.contains("usage:"), "{a:?}: {err}");
        }
    }
}
