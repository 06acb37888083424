//! Sampled drop events: a per-CPU token bucket decides, then the event goes
//! into a ring buffer for the daemon.
//!
//! Only the drop and would-drop paths come here, and the bucket is checked
//! before anything is reserved: under a flood, all but a few packets cost
//! two array lookups, a coarse clock read and a few arithmetic instructions
//! more (about 15 ns, see BENCHMARKS.md), and userspace sees at most the
//! configured rate.

use aya_ebpf::{
    helpers::bpf_ktime_get_ns,
    macros::map,
    maps::{Array, PerCpuArray, RingBuf},
};
use geoblock_common::{DropEvent, EventBucket, EventConfig, EVENT_RING_BYTES, EVENT_SNAPLEN, RULE_BANK};

use crate::{bucket, frame::Frame, Judged};

#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(EVENT_RING_BYTES, 0);
#[map]
static EVENT_CONFIG: Array<EventConfig> = Array::with_max_entries(1, 0);
#[map]
static EVENT_BUCKET: PerCpuArray<EventBucket> = PerCpuArray::with_max_entries(1, 0);

/// Samples the packet in `frame`, going `direction`, which the judged
/// rule's `action` dropped (or would have), decided by `selector` if one did.
#[inline(always)]
pub fn sample(frame: &impl Frame, judged: Judged, action: u8, selector: u16, direction: u8) {
    let Some(bucket) = take_token() else {
        return;
    };
    let Some(mut entry) = EVENTS.reserve::<DropEvent>(0) else {
        bucket.lost += 1;
        return;
    };
    let event = entry.as_mut_ptr();
    let len = frame.len() as usize;
    // SAFETY: `event` points to a reserved record of DropEvent's size.
    unsafe {
        (*event).timestamp_ns = bpf_ktime_get_ns();
        (*event).frame_len = len as u32;
        (*event).ifindex = frame.ifindex();
        (*event).country = judged.country;
        (*event).action = action;
        (*event).rule = judged.rule % RULE_BANK;
        (*event).direction = direction;
        (*event).selector = selector;
        (*event).captured = capture(frame, &mut (*event).frame, len);
    }
    entry.submit(0);
    bucket.emitted += 1;
}

/// Copies the first bytes of the frame (at most [`EVENT_SNAPLEN`]) into
/// `frame`; returns how many. The copy is one helper call, whose length the
/// verifier must see between 1 and the buffer's size: a `min` alone loses
/// the lower bound in the compiled code, the mask keeps both. (A sampled
/// frame was parsed, so it is never empty.)
#[inline(always)]
fn capture(frame: &impl Frame, into: &mut [u8; EVENT_SNAPLEN], len: usize) -> u8 {
    const MASK: u32 = EVENT_SNAPLEN as u32 - 1;
    const _: () = assert!(EVENT_SNAPLEN.is_power_of_two());
    let n = ((len.min(EVENT_SNAPLEN) as u32).wrapping_sub(1) & MASK) + 1;
    if frame.copy(into, n) {
        n as u8
    } else {
        0
    }
}

/// One token from this CPU's bucket, refilled for the time since it was
/// last used: the bucket, to count what becomes of the sample. Counts the
/// drop as suppressed when there is none; with events off (rate 0) nothing
/// is counted.
#[inline(always)]
fn take_token() -> Option<&'static mut EventBucket> {
    let config = EVENT_CONFIG.get(0)?;
    let bucket = EVENT_BUCKET.get_ptr_mut(0)?;
    if config.rate == 0 {
        return None;
    }
    // SAFETY: a per-CPU slot; XDP runs with preemption off, so no other writer.
    let bucket = unsafe { &mut *bucket };
    if !bucket::take(config, &mut bucket.tokens, &mut bucket.last_ns) {
        bucket.suppressed += 1;
        return None;
    }
    Some(bucket)
}
