//! geoblock, live: two throwaway network namespaces joined by a veth pair,
//! `geoblock run` on the receiving end blocking a few countries, and real
//! UDP datagrams from addresses of several countries (IPv4 and IPv6) sent
//! from the other end. Prints what arrived and geoblock's own counters,
//! then removes everything (also on Ctrl-C or a failure).
//!
//!     cargo xtask demo
//!     cargo run --release -p geoblock-tests --bin demo   (needs root and a built geoblock)

use std::{
    collections::BTreeMap,
    process::ExitCode,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use geoblock_tests::{
    geoblock::{self, Daemon},
    netns::{self, Pair},
    sources,
    traffic::{Receiver, Sender},
};

const BLOCKED: &[&str] = &["CN", "RU", "KP"];
const PER_SOURCE: usize = 25;

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

struct Interrupted;

fn check() -> Result<(), Interrupted> {
    match INTERRUPTED.load(Ordering::SeqCst) {
        true => Err(Interrupted),
        false => Ok(()),
    }
}

fn main() -> ExitCode {
    // Ctrl-C only raises a flag: the demo stops at the next step and its
    // guards remove the daemon and the namespaces.
    // SAFETY: the handler only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t);
    }
    // SAFETY: trivial syscall.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("demo: needs root (network namespaces, XDP): sudo -E cargo xtask demo");
        return ExitCode::FAILURE;
    }
    match demo() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(Interrupted) => {
            println!("\ninterrupted: cleaning up");
            ExitCode::from(130)
        }
    }
}

/// Whether everything went as the policy says.
fn demo() -> Result<bool, Interrupted> {
    let bin = geoblock::binary();
    println!("geoblock demo ({})\n", bin.display());

    let pair = Pair::create();
    println!(
        "  namespaces  {} (sender, {} {})\n              <-veth->    {} (receiver, {} {})",
        pair.sender.name(),
        pair.sender_v4,
        pair.sender_v6,
        pair.receiver.name(),
        pair.receiver_v4,
        pair.receiver_v6,
    );
    check()?;

    // Which country each demo source is in, according to geoblock's own data.
    let sources = sources::all();
    check()?;

    let blocked = BLOCKED.join(",");
    print!("  starting    geoblock run --iface {} --block {blocked} ... ", pair.receiver_if);
    flush();
    let started = Instant::now();
    let daemon = Daemon::spawn(&pair.receiver, &geoblock::run_args(&pair, &["--block", &blocked]));
    if !daemon.wait_attached_unless(|| INTERRUPTED.load(Ordering::SeqCst)) {
        return Err(Interrupted);
    }
    println!("attached (native XDP) in {:.1} s", started.elapsed().as_secs_f64());
    for line in daemon.log().lines() {
        if let Some(msg) = line.split_once("] ").map(|(_, m)| m) {
            println!("              {msg}");
        }
    }
    check()?;

    let receiver = Receiver::new(&pair);
    let sender = Sender::new(&pair);
    println!(
        "\n  sending     {PER_SOURCE} UDP datagrams from each address below to port {} on the receiver\n",
        geoblock_tests::traffic::PORT
    );
    let mut lens = BTreeMap::new();
    for &(_, src) in sources {
        lens.insert(src, sender.send(src, PER_SOURCE));
    }
    let got = receiver.collect(Duration::from_millis(300));
    check()?;

    println!("  {:<16} {:<26} {:>6} {:>8}   verdict", "country", "source", "sent", "arrived");
    for &(cc, src) in sources {
        let arrived = got.get(&src).copied().unwrap_or(0);
        let verdict = match (BLOCKED.contains(&cc), arrived) {
            (true, 0) => "blocked",
            (false, n) if n == PER_SOURCE => "delivered",
            (true, _) => "LEAKED (expected blocked)",
            (false, _) => "LOST (expected delivered)",
        };
        println!("  {:<16} {:<26} {PER_SOURCE:>6} {arrived:>8}   {verdict}", name(cc), src.to_string());
    }
    let ok = sources.iter().all(|&(cc, src)| {
        let arrived = got.get(&src).copied().unwrap_or(0);
        arrived == if BLOCKED.contains(&cc) { 0 } else { PER_SOURCE }
    });

    println!("\n  geoblock stats --state-dir {}\n", daemon.state_dir.display());
    for line in geoblock::stats_table(&daemon.state_dir).lines() {
        println!("    {line}");
    }
    check()?;

    let state_dir = daemon.state_dir.clone();
    let status = daemon.stop();
    let kept = pair.receiver_has_xdp();
    println!(
        "\n  stopped     geoblock run ({status}); XDP on {}: {}",
        pair.receiver_if,
        if kept { "still attached, as it should be" } else { "DETACHED" }
    );
    let detached = geoblock::detach(&state_dir).status.success() && !pair.receiver_has_xdp();
    println!(
        "  detached    geoblock detach --state-dir {}: {}",
        state_dir.display(),
        if detached { "program, link and pins removed" } else { "FAILED" }
    );
    let names = (pair.sender.name().to_string(), pair.receiver.name().to_string());
    drop(pair);
    println!("  removed     {} and {}", names.0, names.1);
    netns::sweep_stale();
    let ok = ok && status.success() && kept && detached;
    match ok {
        true => println!("\nevery blocked country was dropped in XDP; everything else arrived."),
        false => println!("\nUNEXPECTED RESULT: see above."),
    }
    Ok(ok)
}

fn name(cc: &str) -> String {
    let country = match cc {
        "CN" => "China",
        "RU" => "Russia",
        "KP" => "North Korea",
        "DE" => "Germany",
        "US" => "United States",
        "FR" => "France",
        _ => "",
    };
    format!("{cc} {country}")
}

fn flush() {
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
}
