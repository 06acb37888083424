//! The baseline for `cargo xtask bench`: drop everything, touch nothing.
#![no_std]
#![no_main]

use aya_ebpf::{bindings::xdp_action::XDP_DROP, macros::xdp, programs::XdpContext};

#[xdp]
pub fn bench_drop(_ctx: XdpContext) -> u32 {
    XDP_DROP
}

geoblock_ebpf::object_boilerplate!();
