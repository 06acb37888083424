//! Line rate between two namespaces: an XDP sender on one core, the
//! receiver's threaded NAPI on the other, and what each packet cost there.

use std::{
    collections::BTreeMap,
    net::IpAddr,
    sync::atomic::{AtomicU32, Ordering::Relaxed},
    time::{Duration, Instant},
};

use aya::{
    maps::Array,
    programs::{TestRun as _, TestRunAttrs, TestRunOptions, Xdp},
    Ebpf,
};

use super::workload::Family;
use crate::{
    frames::Udp,
    netns::{Netns, Pair},
};

/// CPUs of the two sides.
pub const SENDER_CPU: usize = 0;
pub const RECEIVER_CPU: usize = 1;
/// Slots of the sender's source array (`BENCH_SOURCES` in bench_sender.rs).
const SOURCE_SLOTS: u32 = 1 << 16;
/// The bytes of a frame `bench_sender` restores (its `FRAME_BYTES`).
const FRAME_BYTES: usize = 128;
/// How long each BPF_PROG_TEST_RUN call of the sender should send. Every
/// call waits for an RCU grace period (the program enters and leaves the
/// XDP dispatcher), about 20 ms here: calls of 16k packets kept the sender
/// waiting 85 % of the time, and the receiver, idle in between, saw 0.6
/// Mpps with cold caches. Calls of 0.2 s send 90 % of the time.
const CALL: Duration = Duration::from_millis(200);
/// Packets in the first call, and the bounds of the later ones.
const CALL_PACKETS: (u32, u32) = (1 << 16, 1 << 23);
/// Packets per live-frame batch.
const BATCH: u32 = 256;
/// Nobody listens there: passed packets end in the receiver's UDP layer.
const DISCARD_PORT: u16 = 9;

/// The traffic generator: `bench_sender` run with live frames on the sender
/// veth, each packet XDP_TX'd to the receiver with a random source.
pub struct Sender {
    ebpf: Ebpf,
    ifindex: u32,
    frames: [Vec<u8>; 2],
    /// Packets per call, sized from the last call's rate to last [`CALL`].
    call_packets: AtomicU32,
}

impl Sender {
    pub fn load(pair: &Pair) -> Sender {
        let mut ebpf = Ebpf::load(crate::programs::BENCH_SENDER).expect("loading bench-sender");
        let program: &mut Xdp =
            ebpf.program_mut("bench_sender").expect("bench_sender").try_into().expect("an XDP program");
        program.load().expect("loading bench_sender into the kernel");
        let frame = |src: IpAddr| {
            Udp {
                src,
                dst: pair.receiver_ip(src),
                src_mac: pair.sender_mac,
                dst_mac: pair.receiver_mac,
                dst_port: DISCARD_PORT,
                ..Udp::default()
            }
            .build()
        };
        Sender {
            ebpf,
            ifindex: pair.sender.ifindex(&pair.sender_if),
            frames: [frame(pair.sender_v4.into()), frame(pair.sender_v6.into())],
            call_packets: AtomicU32::new(CALL_PACKETS.0),
        }
    }

    /// The frame sent for `family`, whose source each packet rewrites.
    pub fn frame(&self, family: Family) -> &[u8] {
        &self.frames[family as usize]
    }

    /// Sends `frame` for `family` from now on.
    pub fn set_frame(&mut self, family: Family, frame: Vec<u8>) {
        let mut bytes = [0u8; FRAME_BYTES];
        let n = frame.len().min(FRAME_BYTES);
        bytes[..n].copy_from_slice(&frame[..n]);
        let mut frames: Array<_, [u8; FRAME_BYTES]> =
            Array::try_from(self.ebpf.map_mut("BENCH_FRAMES").expect("BENCH_FRAMES")).expect("an array");
        frames.set(family as u32, bytes, 0).expect("writing a frame");
        self.frames[family as usize] = frame;
    }

    /// Whether every packet is written back from its frame before it is
    /// sent: needed when the receiver answers, whose answer would otherwise
    /// come back as the next packets (see bench-ebpf's `bench_sender`).
    pub fn restore_frames(&mut self, on: bool) {
        let mut restore: Array<_, u32> =
            Array::try_from(self.ebpf.map_mut("BENCH_RESTORE").expect("BENCH_RESTORE")).expect("an array");
        restore.set(0, u32::from(on), 0).expect("writing the restore flag");
    }

    /// Fills the source array with `sources`, repeated to fill every slot.
    pub fn set_sources(&mut self, sources: &[IpAddr]) {
        let mut array: Array<_, [u8; 16]> =
            Array::try_from(self.ebpf.map_mut("BENCH_SOURCES").expect("BENCH_SOURCES")).expect("an array");
        for (slot, src) in (0..SOURCE_SLOTS).zip(sources.iter().cycle()) {
            let mut bytes = [0u8; 16];
            match src {
                IpAddr::V4(a) => bytes[..4].copy_from_slice(&a.octets()),
                IpAddr::V6(a) => bytes.copy_from_slice(&a.octets()),
            }
            array.set(slot, bytes, 0).expect("writing a source");
        }
    }

    /// Sends `family` frames for at least `time` from the sender namespace,
    /// pinned to [`SENDER_CPU`]; returns the packets the program ran on.
    pub fn send(&self, ns: &Netns, family: Family, time: Duration) -> u64 {
        let program: &Xdp = self.ebpf.program("bench_sender").unwrap().try_into().unwrap();
        let frame = &self.frames[family as usize];
        let ctx = xdp_md(frame.len() as u32, self.ifindex);
        ns.run(|| {
            pin_to_cpu(0, SENDER_CPU);
            let start = Instant::now();
            let mut sent = 0;
            while start.elapsed() < time {
                let packets = self.call_packets.load(Relaxed);
                let opts = TestRunOptions {
                    data_in: Some(frame),
                    ctx_in: Some(&ctx),
                    repeat: packets,
                    attrs: TestRunAttrs::new().xdp_live_frames(BATCH),
                    ..TestRunOptions::new()
                };
                let call = Instant::now();
                program.test_run(opts).expect("BPF_PROG_TEST_RUN of the sender (live frames)");
                let rate = f64::from(packets) / call.elapsed().as_secs_f64();
                let next = (rate * CALL.as_secs_f64()) as u32;
                self.call_packets.store(next.clamp(CALL_PACKETS.0, CALL_PACKETS.1), Relaxed);
                sent += u64::from(packets);
            }
            sent
        })
    }
}

/// A `struct xdp_md` for a frame of `len` bytes received on `ifindex`.
fn xdp_md(len: u32, ifindex: u32) -> Vec<u8> {
    // data, data_end, data_meta, ingress_ifindex, rx_queue_index, egress_ifindex
    [0, len, 0, ifindex, 0, 0].iter().flat_map(|v: &u32| v.to_ne_bytes()).collect()
}

/// Pins thread `tid` (0: the caller) to `cpu`.
pub fn pin_to_cpu(tid: i32, cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is valid; the syscall reads it.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    assert!(rc == 0, "pinning {tid} to CPU {cpu}: {}", std::io::Error::last_os_error());
}

/// The receiving veth's NAPI, made a kernel thread of its own pinned to
/// [`RECEIVER_CPU`]: all the receive work shows in that thread's run time.
pub struct Napi {
    pid: i32,
}

impl Napi {
    /// Turns threaded NAPI on for `dev` in `ns`: do it after attaching an
    /// XDP program, which (re)creates veth's NAPI.
    pub fn threaded(ns: &Netns, dev: &str) -> Napi {
        ns.set_device_attr(dev, "threaded", "1");
        let pid = napi_thread(dev);
        pin_to_cpu(pid, RECEIVER_CPU);
        Napi { pid }
    }

    /// The thread's CPU time so far, in ns (`/proc/PID/schedstat`).
    pub fn cpu_ns(&self) -> u64 {
        let path = format!("/proc/{}/schedstat", self.pid);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        text.split_whitespace().next().and_then(|v| v.parse().ok()).expect("schedstat run time")
    }
}

/// The pid of the kernel thread `napi/DEV-ID` (comm cut at 15 bytes).
fn napi_thread(dev: &str) -> i32 {
    let name = format!("napi/{dev}-");
    let name = &name[..name.len().min(15)];
    for _ in 0..50 {
        let found: Vec<i32> = std::fs::read_dir("/proc")
            .expect("/proc")
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
            .filter(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.starts_with(name)))
            .collect();
        match found[..] {
            [pid] => return pid,
            [] => std::thread::sleep(Duration::from_millis(20)),
            _ => panic!("several {name}* threads: {found:?}"),
        }
    }
    panic!("no {name}* kernel thread after turning threaded NAPI on")
}

/// Packets the receiving veth's NAPI handled (`ethtool -S`: rx_queue_0_xdp_packets).
pub fn rx_packets(ns: &Netns, dev: &str) -> u64 {
    veth_stat(ns, dev, "rx_queue_0_xdp_packets")
}

/// One of veth's own counters (`ethtool -S`): `rx_queue_0_xdp_drops`...
pub fn veth_stat(ns: &Netns, dev: &str, name: &str) -> u64 {
    let out = ns.exec("ethtool", &["-S", dev], None);
    out.lines()
        .find_map(|l| l.trim().strip_prefix(name)?.strip_prefix(':'))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in `ethtool -S {dev}`:\n{out}"))
}

/// The receiver's IPv4/IPv6 header, UDP checksum and no-port counters
/// (`/proc/net/snmp` and `/proc/net/snmp6` of its namespace).
pub fn snmp(ns: &Netns) -> BTreeMap<String, u64> {
    const WANTED: [&str; 8] = [
        "Ip:InHdrErrors",
        "Ip:InReceives",
        "Udp:NoPorts",
        "Udp:InCsumErrors",
        "Ip6InHdrErrors",
        "Ip6InReceives",
        "Udp6NoPorts",
        "Udp6InCsumErrors",
    ];
    let mut found = BTreeMap::new();
    // snmp: a line of names, then a line of values, per protocol.
    let v4 = ns.exec("cat", &["/proc/net/snmp"], None);
    let lines: Vec<&str> = v4.lines().collect();
    for pair in lines.chunks(2) {
        let [names, values] = pair else { continue };
        let proto = names.split(':').next().unwrap_or("");
        for (n, v) in names.split_whitespace().skip(1).zip(values.split_whitespace().skip(1)) {
            found.insert(format!("{proto}:{n}"), v.parse().unwrap_or(0));
        }
    }
    for line in ns.exec("cat", &["/proc/net/snmp6"], None).lines() {
        if let [n, v] = line.split_whitespace().collect::<Vec<_>>()[..] {
            found.insert(n.to_string(), v.parse().unwrap_or(0));
        }
    }
    found.retain(|k, _| WANTED.contains(&k.as_str()));
    found
}
