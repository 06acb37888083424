//! The per-CPU token bucket that bounds what the program sends of its own:
//! sampled drop events (`events`) and answers to rejected packets
//! (`reject`). Each CPU refills its own bucket at its share of the rate
//! (userspace computes the numbers, see [`EventConfig`]).

use aya_ebpf::helpers::bpf_ktime_get_coarse_ns;
use geoblock_common::EventConfig;

/// Refills a CPU's bucket (`tokens`, last refilled at `last_ns`) for the
/// time since, and takes a token from it: whether there was one.
#[inline(always)]
pub fn take(config: &EventConfig, tokens: &mut u64, last_ns: &mut u64) -> bool {
    // The coarse clock (a jiffy's resolution, plenty for a rate per
    // second) is a memory read; the precise one costs a clock read on
    // every packet of a flood.
    // SAFETY: a helper without arguments.
    let now = unsafe { bpf_ktime_get_coarse_ns() };
    let elapsed = now.saturating_sub(*last_ns).min(config.fill_ns);
    *last_ns = now;
    *tokens = (*tokens + elapsed * config.rate).min(config.burst);
    if *tokens < config.cost {
        return false;
    }
    *tokens -= config.cost;
    true
}
