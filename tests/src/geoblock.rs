//! The real `geoblock` binary: a daemon guard that runs `geoblock run` in a
//! namespace and always stops it, plus `stats --json` and `lookup`.

use std::{
    io::{BufRead as _, BufReader},
    net::IpAddr,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Output, Stdio},
    sync::{mpsc, Arc, Mutex},
    time::{Duration, Instant},
};

use geoblock::kernel::state::{self, BPFFS_ROOT};
use geoblock_common::{maps, Counter, CountryCounters, FlowKey};
use serde::{de::DeserializeOwned, Deserialize as _};
use serde_json::Value;

use crate::{
    cgroup::Cgroup,
    netns::{stale_names, unique_tag, Netns, Pair},
    traffic::{Receiver, Sender},
};

/// Prefix of the per-test state directories: `geoblock-test-<pid>-<n>`.
const STATE_PREFIX: &str = "geoblock-test-";

/// `geoblock run` arguments for the pair's receiving end in native mode, then `policy`.
pub fn run_args<'a>(pair: &'a Pair, policy: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["--iface", pair.receiver_if.as_str(), "--xdp-mode", "native"];
    args.extend_from_slice(policy);
    args
}

/// How long `geoblock run` may take to load the world table and attach
/// (a debug build with the full embedded data on a slow CI box).
pub const READY_TIMEOUT: Duration = Duration::from_secs(300);

/// The `geoblock` binary: `$GEOBLOCK_BIN`, else the one cargo built next to
/// this executable (`target/<profile>/geoblock`).
pub fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("GEOBLOCK_BIN") {
        let path = PathBuf::from(path);
        assert!(path.is_file(), "GEOBLOCK_BIN={} does not exist", path.display());
        return path;
    }
    let exe = std::env::current_exe().expect("current_exe");
    // target/<profile>/deps/<test> or target/<profile>/<bin>
    let mut dir = exe.parent().expect("exe dir").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let path = dir.join("geoblock");
    assert!(
        path.is_file(),
        "no geoblock binary at {}: build it first: cargo build -p geoblock-user --bin geoblock \
         (cargo xtask test does this), or set GEOBLOCK_BIN",
        path.display()
    );
    path
}

/// A fresh, unique `--state-dir` on bpffs (not created: the daemon does).
pub fn state_dir() -> PathBuf {
    state::ensure_bpffs_mounted().unwrap_or_else(|e| panic!("mounting bpffs at {BPFFS_ROOT}: {e}"));
    sweep_stale_state();
    Path::new(BPFFS_ROOT).join(format!("{STATE_PREFIX}{}", unique_tag()))
}

/// A control socket path of its own for the daemon of `state_dir`, so that
/// tests never use (or collide on) the default one.
pub fn control_socket(state_dir: &Path) -> PathBuf {
    let name = state_dir.file_name().expect("state dir name").to_string_lossy();
    std::env::temp_dir().join(format!("{name}.sock"))
}

/// Removes state directories of test processes that died without cleanup.
fn sweep_stale_state() {
    for name in stale_names(Path::new(BPFFS_ROOT), STATE_PREFIX) {
        let _ = std::fs::remove_dir_all(Path::new(BPFFS_ROOT).join(name));
    }
}

/// A running `geoblock run`, stopped on drop, which also removes its state
/// directory: with the daemon gone, removing the pins detaches the program.
pub struct Daemon {
    child: Option<Child>,
    /// The cgroup its socket hooks attach to: one of the test's own (see
    /// [`crate::cgroup`]), unless the test gave `--cgroup`.
    pub cgroup: Option<Cgroup>,
    pub state_dir: PathBuf,
    pub control_socket: PathBuf,
    /// Set by [`Daemon::stop`] and [`Daemon::crash`]: the state outlives
    /// this daemon, for [`detach`] or the next daemon.
    keep_state: bool,
    log: Arc<Mutex<Vec<String>>>,
    lines: mpsc::Receiver<String>,
}

impl Daemon {
    /// Starts `geoblock run ARGS --state-dir DIR` in `ns` (network namespace
    /// only) and waits for its `attached to` log line.
    pub fn start(ns: &Netns, args: &[&str]) -> Daemon {
        let daemon = Daemon::spawn(ns, args);
        daemon.wait_attached();
        daemon
    }

    /// Starts it without waiting (see [`Daemon::wait_attached`]).
    pub fn spawn(ns: &Netns, args: &[&str]) -> Daemon {
        Daemon::spawn_in(ns, args, state_dir(), &[])
    }

    /// [`Daemon::start`] with extra environment variables.
    pub fn start_with_env(ns: &Netns, args: &[&str], env: &[(&str, &str)]) -> Daemon {
        let daemon = Daemon::spawn_in(ns, args, state_dir(), env);
        daemon.wait_attached();
        daemon
    }

    /// Starts `geoblock run` on an existing state directory (one a previous
    /// daemon left) and waits for its `attached to` line.
    pub fn start_in(ns: &Netns, args: &[&str], state_dir: PathBuf) -> Daemon {
        let daemon = Daemon::spawn_in(ns, args, state_dir, &[]);
        daemon.wait_attached();
        daemon
    }

    fn spawn_in(ns: &Netns, args: &[&str], state_dir: PathBuf, env: &[(&str, &str)]) -> Daemon {
        let mut cmd = Command::new(binary());
        let control_socket = control_socket(&state_dir);
        // No --config: not the machine's /etc/geoblock/geoblock.toml either.
        let config = if args.contains(&"--config") { &[][..] } else { &["--config", "/dev/null"][..] };
        // Never the machine's root cgroup: one of the test's own.
        let cgroup = (!args.contains(&"--cgroup")).then(Cgroup::new);
        cmd.arg("run")
            .args(config)
            .args(args)
            .args(cgroup.iter().flat_map(|c| ["--cgroup", c.arg()]))
            .arg("--state-dir")
            .arg(&state_dir)
            .arg("--control-socket")
            .arg(&control_socket)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        ns.command(&mut cmd);
        {
            use std::os::unix::process::CommandExt as _;
            // SAFETY: prctl is async-signal-safe. If we die without running
            // Drop, the daemon gets SIGTERM (its pins are swept by the next
            // test run, its veth goes with the namespace).
            unsafe {
                cmd.pre_exec(|| {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                    // Its own process group: a terminal's Ctrl-C reaches us,
                    // and our guard stops the daemon in order.
                    libc::setpgid(0, 0);
                    Ok(())
                });
            }
        }
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("starting {}: {e}", binary().display()));
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, lines) = mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if std::env::var_os("GEOBLOCK_TEST_LOG").is_some() {
                    eprintln!("[geoblock] {line}");
                }
                sink.lock().unwrap().push(line.clone());
                let _ = tx.send(line);
            }
        });
        Daemon { child: Some(child), cgroup, state_dir, control_socket, keep_state: false, log, lines }
    }

    /// Waits (bounded) for the next log line containing `text` and returns
    /// it; panics with the log if the daemon exits or the time runs out.
    pub fn wait_line(&self, text: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            match self.lines.recv_timeout(Duration::from_millis(100)) {
                Ok(line) if line.contains(text) => return line,
                Ok(_) => continue,
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    panic!("geoblock run exited before logging {text:?}:\n{}", self.log())
                }
                Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() < deadline => continue,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!("geoblock run did not log {text:?} within {timeout:?}:\n{}", self.log())
                }
            }
        }
    }

    /// `geoblock ARGS --control-socket <this daemon's>`, from the root
    /// namespace.
    pub fn control(&self, args: &[&str]) -> Output {
        self.control_with(args, |_| {})
    }

    /// [`Daemon::control`] with the command set up by `setup` (environment...).
    pub fn control_with(&self, args: &[&str], setup: impl FnOnce(&mut Command)) -> Output {
        let mut all = args.to_vec();
        all.extend_from_slice(&["--control-socket", self.control_socket.to_str().unwrap()]);
        run_to_end(None, &all, setup)
    }

    /// Sends `sig` (e.g. SIGHUP) to the daemon.
    pub fn signal(&self, sig: libc::c_int) {
        signal(self.child.as_ref().unwrap(), sig);
    }

    /// SIGKILL, as a crash: nothing of the daemon's runs. Its state
    /// directory stays for the next daemon (see [`Daemon::start_in`]).
    pub fn crash(mut self) -> PathBuf {
        let mut child = self.child.take().unwrap();
        let _ = child.kill();
        let _ = child.wait();
        self.keep_state = true;
        self.state_dir.clone()
    }

    /// Waits (bounded) for the `attached to` line; panics with the daemon's
    /// output if it exits or times out first.
    pub fn wait_attached(&self) {
        self.wait_attached_unless(|| false);
    }

    /// Like [`Daemon::wait_attached`], but gives up (returning false) as
    /// soon as `stop()` says so (checked every 100 ms): for Ctrl-C.
    pub fn wait_attached_unless(&self, stop: impl Fn() -> bool) -> bool {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if stop() {
                return false;
            }
            match self.lines.recv_timeout(Duration::from_millis(100)) {
                Ok(line) if line.contains("attached to") => return true,
                Ok(_) => continue,
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    panic!("geoblock run exited before attaching:\n{}", self.log())
                }
                Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() < deadline => continue,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!("geoblock run did not attach within {READY_TIMEOUT:?}:\n{}", self.log())
                }
            }
        }
    }

    /// Everything the daemon logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// Sets how many files the daemon may have open, as `prlimit
    /// --nofile=N:N` does (a service manager's limit: systemd's is 1,024).
    pub fn limit_open_files(&self, n: u64) {
        let limit = libc::rlimit { rlim_cur: n, rlim_max: n };
        // SAFETY: prlimit of our own child (not yet reaped), from a valid
        // struct, without asking for the old one.
        let done =
            unsafe { libc::prlimit(self.pid() as libc::pid_t, libc::RLIMIT_NOFILE, &limit, std::ptr::null_mut()) };
        assert_eq!(done, 0, "prlimit of geoblock run: {}", std::io::Error::last_os_error());
    }

    /// How many files (sockets, maps...) the daemon has open.
    pub fn open_files(&self) -> usize {
        let dir = format!("/proc/{}/fd", self.pid());
        std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{dir}: {e}")).count()
    }

    /// `geoblock stats --json` against this daemon, from the root namespace.
    pub fn stats(&self) -> Stats {
        stats(&self.state_dir)
    }

    /// Sends SIGTERM and waits (bounded) for the exit; returns its status.
    /// What the daemon leaves in place stays: remove it with [`detach`] (or
    /// hand it to the next daemon, see [`Daemon::start_in`]).
    pub fn stop(mut self) -> ExitStatus {
        self.keep_state = true;
        let mut child = self.child.take().unwrap();
        signal(&child, libc::SIGTERM);
        let status = wait_timeout(&mut child, Duration::from_secs(30)).unwrap_or_else(|| {
            let _ = child.kill();
            let _ = child.wait();
            panic!("geoblock run did not exit within 30 s of SIGTERM:\n{}", self.log())
        });
        // The reader thread ends with the pipe; give it the last lines.
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            match self.lines.recv_timeout(Duration::from_millis(100)) {
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                _ => continue,
            }
        }
        status
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(&child, libc::SIGTERM);
            if wait_timeout(&mut child, Duration::from_secs(10)).is_none() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        if !self.keep_state {
            let _ = std::fs::remove_dir_all(&self.state_dir);
            let _ = std::fs::remove_file(&self.control_socket);
        }
    }
}

/// A config file for `geoblock run --config`, removed on drop.
pub struct ConfigFile {
    pub path: PathBuf,
}

impl ConfigFile {
    pub fn new(text: &str) -> ConfigFile {
        let path = std::env::temp_dir().join(format!("geoblock-test-{}.toml", unique_tag()));
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        ConfigFile { path }
    }

    pub fn arg(&self) -> &str {
        self.path.to_str().expect("a UTF-8 temporary path")
    }
}

impl Drop for ConfigFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Which of `sources` get through now (each all or nothing).
pub fn passing(pair: &Pair, daemon: &Daemon, sources: &[&str]) -> Vec<String> {
    let (receiver, sender) = (Receiver::new(pair), Sender::new(pair));
    let ips: Vec<IpAddr> = sources.iter().map(|s| s.parse().unwrap()).collect();
    for &src in &ips {
        sender.send(src, 4);
    }
    let got = receiver.collect(Duration::from_millis(300));
    let mut through = Vec::new();
    for (src, text) in ips.iter().zip(sources) {
        match got.get(src).copied().unwrap_or(0) {
            0 => {}
            4 => through.push(text.to_string()),
            n => panic!("{text}: {n} of 4 delivered\ndaemon log:\n{}", daemon.log()),
        }
    }
    through
}

/// Data files in a directory of their own, removed on drop.
pub struct Scratch(pub PathBuf);

impl Scratch {
    /// A new directory, `tag` in its name.
    pub fn new(tag: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("geoblock-{tag}-{}", unique_tag()));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    /// Writes `name` in it: its path.
    pub fn file(&self, name: &str, contents: &str) -> String {
        let path = self.0.join(name);
        std::fs::write(&path, contents).unwrap();
        path.to_str().unwrap().to_string()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `geoblock detach --state-dir DIR`, from the root namespace.
pub fn detach(state_dir: &Path) -> Output {
    run_to_end(None, &["detach", "--state-dir", state_dir.to_str().unwrap()], |_| {})
}

/// SIGTERM: exit 0, enforcement left in place (program, link and maps
/// pinned); then `geoblock detach` removes all of it.
pub fn stop_and_detach(pair: &Pair, daemon: Daemon) {
    let state_dir = daemon.state_dir.clone();
    let log = daemon.log();
    let status = daemon.stop();
    assert!(status.success(), "geoblock run exited with {status} on SIGTERM:\n{log}");
    assert!(pair.receiver_has_xdp(), "SIGTERM detached {}: enforcement must outlive the daemon", pair.receiver_if);
    let link = format!("link-{}", pair.receiver_if);
    for pin in ["program", "ABI", "COUNTRY_STATS", "POLICY", "TABLES", link.as_str()] {
        assert!(state_dir.join(pin).exists(), "{pin} not pinned in {} after SIGTERM", state_dir.display());
    }
    detach_all(pair, &state_dir);
}

/// `geoblock detach`: exit 0, nothing attached to the pair's receiver, no
/// pins left.
pub fn detach_all(pair: &Pair, state_dir: &Path) {
    let out = detach(state_dir);
    assert!(out.status.success(), "geoblock detach: {}", String::from_utf8_lossy(&out.stderr));
    assert!(!pair.receiver_has_xdp(), "XDP still attached to {} after geoblock detach", pair.receiver_if);
    assert!(!state_dir.exists(), "pins left in {} after geoblock detach", state_dir.display());
}

fn signal(child: &Child, sig: libc::c_int) {
    // SAFETY: plain kill on our own child's pid (not yet reaped).
    unsafe { libc::kill(child.id() as libc::pid_t, sig) };
}

fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("waitpid") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `geoblock ARGS` to completion (bounded), in `ns` if given.
pub fn run_to_end(ns: Option<&Netns>, args: &[&str], setup: impl FnOnce(&mut Command)) -> Output {
    let mut cmd = Command::new(binary());
    cmd.args(args).env("RUST_LOG", "info").stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    if let Some(ns) = ns {
        ns.command(&mut cmd);
    }
    setup(&mut cmd);
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("starting {}: {e}", binary().display()));
    // Outputs are small; read them after the exit.
    let Some(_) = wait_timeout(&mut child, READY_TIMEOUT) else {
        let _ = child.kill();
        let out = child.wait_with_output().unwrap();
        panic!(
            "geoblock {} did not finish within {READY_TIMEOUT:?}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    child.wait_with_output().expect("collecting output")
}

/// `geoblock run --config /dev/null ARGS --state-dir DIR --control-socket
/// SOCKET` in `ns`, to its end: a run that is to be refused.
pub fn run_refused(
    ns: &Netns,
    args: &[&str],
    state_dir: &Path,
    socket: &Path,
    setup: impl FnOnce(&mut Command),
) -> Output {
    let (dir, socket) = (state_dir.to_str().unwrap(), socket.to_str().unwrap());
    // Never the machine's root cgroup, should the run get that far.
    let cgroup = Cgroup::new();
    let own = ["--state-dir", dir, "--control-socket", socket, "--cgroup", cgroup.arg()];
    let all = [&["run", "--config", "/dev/null"][..], args, &own].concat();
    run_to_end(Some(ns), &all, setup)
}

/// Per-country counters, as `geoblock stats --json` prints them.
#[derive(Clone, Debug)]
pub struct Stats(pub Value);

impl Stats {
    /// The outbound counters (the top level counts inbound packets).
    pub fn outbound(&self) -> Stats {
        Stats(self.0["outbound"].clone())
    }

    /// A rule's counters, both families together (all zero when absent).
    pub fn rule(&self, name: &str) -> CountryCounters {
        let rules = self.0["rules"].as_array().cloned().unwrap_or_default();
        let Some(rule) = rules.iter().find(|r| r["name"] == name) else {
            return CountryCounters::default();
        };
        let family = |f: &str| CountryCounters::deserialize(&rule[f]).expect("rule counters");
        family("ipv4") + family("ipv6")
    }

    /// A country's counters (all zero when it is absent).
    pub fn country(&self, cc: &str) -> CountryCounters {
        self.field(&["countries", cc])
    }

    pub fn unknown(&self) -> CountryCounters {
        self.field(&["unknown"])
    }

    /// Codes of the countries with any traffic.
    pub fn countries(&self) -> Vec<String> {
        self.0["countries"].as_object().map(|m| m.keys().cloned().collect()).unwrap_or_default()
    }

    /// A total: dropped, passed, would_drop, exception, non_ip, unparsed.
    pub fn total(&self, name: &str) -> Counter {
        assert!(self.0["totals"][name].is_object(), "stats JSON has no totals.{name}: {}", self.0);
        self.field(&["totals", name])
    }

    /// The counters at `path`, in the daemon's own types (all zero when absent).
    fn field<T: DeserializeOwned + Default>(&self, path: &[&str]) -> T {
        let value = path.iter().fold(&self.0, |v, key| &v[key]);
        if value.is_null() {
            return T::default();
        }
        T::deserialize(value).unwrap_or_else(|e| panic!("stats JSON at {}: {e}: {value}", path.join(".")))
    }
}

/// `geoblock stats --json --state-dir DIR`, from the root namespace.
pub fn stats(state_dir: &Path) -> Stats {
    let dir = state_dir.to_str().unwrap();
    let out = run_to_end(None, &["stats", "--json", "--state-dir", dir], |_| {});
    assert!(out.status.success(), "geoblock stats --json failed: {}", String::from_utf8_lossy(&out.stderr));
    let json = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("geoblock stats --json is not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout))
    });
    Stats(json)
}

/// The flow table a daemon pinned in its state directory.
#[derive(Debug)]
pub struct PinnedFlows {
    /// The map's id: the same map across daemons, or a new one.
    pub id: u32,
    pub max_entries: u32,
    /// Flow → when the host last sent on it (CLOCK_MONOTONIC_COARSE, ns).
    pub entries: Vec<(FlowKey, u64)>,
}

/// Reads the `FLOWS` map pinned in `state_dir`. Read it while nothing
/// records flows: the kernel restarts a walk whose last key was evicted
/// meanwhile, which would list some flows twice.
pub fn pinned_flows(state_dir: &Path) -> PinnedFlows {
    use aya::maps::{HashMap, Map, MapData};
    let path = state_dir.join(maps::FLOWS);
    let data = MapData::from_pin(&path).unwrap_or_else(|e| panic!("opening the pinned {}: {e}", path.display()));
    let info = data.info().expect("the flow table's info");
    let map = Map::LruHashMap(data);
    let flows: HashMap<_, FlowKey, u64> = HashMap::try_from(&map).expect("the flow table is an LRU hash of flows");
    let entries = flows.iter().collect::<Result<_, _>>().expect("walking the flow table");
    PinnedFlows { id: info.id(), max_entries: info.max_entries(), entries }
}

/// `geoblock stats` (the table), for the demo.
pub fn stats_table(state_dir: &Path) -> String {
    let out = run_to_end(None, &["stats", "--state-dir", state_dir.to_str().unwrap()], |_| {});
    assert!(out.status.success(), "geoblock stats failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `geoblock lookup ADDRS...`: the country code of each (`None` for `-`)
/// in the embedded data.
pub fn lookup(addrs: &[IpAddr]) -> Vec<Option<String>> {
    lookup_in(&[], addrs)
}

/// [`lookup`] in the `data` files (`--data`), as `geoblock run` loads them.
pub fn lookup_in(data: &[&Path], addrs: &[IpAddr]) -> Vec<Option<String>> {
    let data = data.iter().flat_map(|path| ["--data".to_string(), path.display().to_string()]);
    let args: Vec<String> =
        ["lookup".to_string()].into_iter().chain(data).chain(addrs.iter().map(|a| a.to_string())).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run_to_end(None, &args, |_| {});
    assert!(out.status.success(), "geoblock lookup failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), addrs.len(), "geoblock lookup: one line per address expected:\n{text}");
    addrs
        .iter()
        .zip(lines)
        .map(|(addr, line)| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            assert!(
                fields.len() == 3 && fields[0].parse::<IpAddr>().ok() == Some(*addr),
                "geoblock lookup: unexpected line for {addr}: {line:?}"
            );
            (fields[1] != "-").then(|| fields[1].to_string())
        })
        .collect()
}

/// A running `geoblock events ARGS` subscribed to a daemon; killed on drop.
pub struct EventsTail {
    child: Option<Child>,
    stdout: Option<std::thread::JoinHandle<String>>,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl Daemon {
    /// Starts `geoblock events ARGS` against this daemon (from the root
    /// namespace) and waits until it is subscribed.
    pub fn events(&self, args: &[&str]) -> EventsTail {
        let mut child = Command::new(binary())
            .arg("events")
            .args(args)
            .arg("--control-socket")
            .arg(&self.control_socket)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting geoblock events: {e}"));
        let mut stdout = child.stdout.take().unwrap();
        let stdout = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = std::io::Read::read_to_string(&mut stdout, &mut text);
            text
        });
        let (stderr, subscribed) = (Arc::new(Mutex::new(Vec::new())), mpsc::channel());
        let (sink, pipe) = (stderr.clone(), child.stderr.take().unwrap());
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                if line.contains("streaming drop events") {
                    let _ = subscribed.0.send(());
                }
                sink.lock().unwrap().push(line);
            }
        });
        let tail = EventsTail { child: Some(child), stdout: Some(stdout), stderr };
        if subscribed.1.recv_timeout(Duration::from_secs(10)).is_err() {
            panic!("geoblock events did not subscribe: {}", tail.stderr.lock().unwrap().join("\n"));
        }
        tail
    }
}

impl EventsTail {
    /// Sends `sig` (SIGINT, SIGTERM) and waits (bounded) for the exit:
    /// returns the exit status, stdout and stderr.
    pub fn stop(mut self, sig: libc::c_int) -> (ExitStatus, String, String) {
        let mut child = self.child.take().unwrap();
        signal(&child, sig);
        let status = wait_timeout(&mut child, Duration::from_secs(10)).unwrap_or_else(|| {
            let _ = child.kill();
            panic!("geoblock events did not exit within 10 s of signal {sig}")
        });
        let stdout = self.stdout.take().unwrap().join().unwrap();
        // The stderr thread ends with the pipe, right after the exit.
        std::thread::sleep(Duration::from_millis(100));
        let stderr = self.stderr.lock().unwrap().join("\n");
        (status, stdout, stderr)
    }
}

impl Drop for EventsTail {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
