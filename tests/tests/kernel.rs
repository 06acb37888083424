//! The XDP program in the kernel, through BPF_PROG_TEST_RUN: crafted frames
//! in, verdicts and counters out. Needs root.

use std::net::IpAddr;

use aya::programs::{TestRun as _, TestRunOptions};
use geoblock::{
    policy::{Mode, Policy},
    prefix::Table,
    program::Geoblock,
};
use geoblock_common::{country_id, Backend};
use geoblock_tests::frames::Udp;

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;

fn run(g: &mut Geoblock, frame: &[u8]) -> u32 {
    let prog = g.program().expect("program");
    let mut opts = TestRunOptions::new();
    opts.data_in = Some(frame);
    prog.test_run(opts).expect("BPF_PROG_TEST_RUN (are you root?)").return_value
}

#[test]
fn smoke_v4_and_v6() {
    for backend in [Backend::Trie, Backend::Lpm] {
        smoke(backend);
    }
}

fn smoke(backend: Backend) {
    let cn = country_id(*b"CN").unwrap();
    let de = country_id(*b"DE").unwrap();
    let table = Table {
        v4: vec![("1.0.0.0/8".parse().unwrap(), cn), ("2.0.0.0/8".parse().unwrap(), de)],
        v6: vec![("2001:db8::/32".parse().unwrap(), cn)],
    };
    let policy = Policy {
        mode: Mode::Deny,
        countries: [cn].into(),
        monitor: false,
        block_unknown: false,
        exceptions: vec![],
    };
    let mut g = Geoblock::load(backend).expect("load (are you root?)");
    g.load_table(&table).unwrap();
    g.apply_policy(&policy).unwrap();
    let frame = |src: &str, dst: &str| {
        Udp { src: src.parse::<IpAddr>().unwrap(), dst: dst.parse().unwrap(), ..Udp::default() }.build()
    };
    assert_eq!(run(&mut g, &frame("1.2.3.4", "9.9.9.9")), XDP_DROP);
    assert_eq!(run(&mut g, &frame("2.2.3.4", "9.9.9.9")), XDP_PASS);
    assert_eq!(run(&mut g, &frame("2001:db8::1", "2001:db9::1")), XDP_DROP);
    assert_eq!(run(&mut g, &frame("2001:db9::1", "2001:db9::1")), XDP_PASS);
    let stats = g.stats().unwrap();
    assert_eq!(stats.countries["CN"].dropped_packets, 2);
    assert_eq!(stats.countries["DE"].passed_packets, 1);
}
