//! The drop events the XDP program samples into its ring buffer, and the
//! token bucket that limits them.
//!
//! The daemon is the ring buffer's only reader: a BPF
//! ring buffer has one consumer position, so two readers would steal each
//! other's events, and with none it would fill up and count every later
//! sample as lost.

use std::os::fd::{AsRawFd, RawFd};

use aya::maps::{MapData, RingBuf};
use geoblock_common::{DropEvent, EventConfig};
use serde::{Deserialize, Serialize};

const NS_PER_SEC: u64 = 1_000_000_000;

/// The token bucket for `rate` events per second in total on `cpus` CPUs
/// (the kernel's possible CPUs): each CPU refills at `rate / cpus`, and
/// holds at most `max(rate, cpus) / cpus` events (at least one), so all of
/// them together emit at most `rate` per second after a burst of at most
/// `max(rate, cpus)`. Rate 0: events off.
pub fn bucket(rate: u32, cpus: u32) -> EventConfig {
    let rate = u64::from(rate);
    let cpus = u64::from(cpus.max(1));
    let burst = rate.max(cpus) * NS_PER_SEC;
    EventConfig { rate, cost: cpus * NS_PER_SEC, burst, fill_ns: burst.div_ceil(rate.max(1)) }
}

/// Events emitted, suppressed (token bucket empty) and lost (ring buffer
/// full), summed over CPUs; in `geoblock status`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventCounts {
    pub emitted: u64,
    pub suppressed: u64,
    pub lost: u64,
}

/// The events ring buffer, taken from the loaded program.
pub struct EventRing(pub(super) RingBuf<MapData>);

impl EventRing {
    /// Hands every record waiting in the ring to `each`, in order.
    pub fn drain(&mut self, mut each: impl FnMut(&DropEvent)) {
        while let Some(item) = self.0.next() {
            if item.len() < std::mem::size_of::<DropEvent>() {
                continue;
            }
            // SAFETY: the record is a DropEvent the program wrote, checked
            // for size above; read unaligned.
            let event: DropEvent = unsafe { std::ptr::read_unaligned(item.as_ptr().cast()) };
            each(&event);
        }
    }
}

/// Readable when records wait: for the daemon's event loop.
impl AsRawFd for EventRing {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_divides_the_rate_among_cpus() {
        let b = bucket(100, 4);
        // Per CPU: 25 events per second, up to 25 in a burst.
        assert_eq!(NS_PER_SEC * b.rate / b.cost, 25);
        assert_eq!(b.burst / b.cost, 25);
        assert!(b.fill_ns * b.rate >= b.burst);
        // Fewer events than CPUs: each CPU still holds one.
        assert_eq!(bucket(2, 8).burst / bucket(2, 8).cost, 1);
        assert_eq!(bucket(0, 2).rate, 0, "off");
    }
}
