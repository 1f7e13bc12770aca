//! A counting global allocator: the largest single allocation made inside [`bounded`], so a
//! target can check that no length read from its input sizes an allocation beyond the input.
//!
//! The bound is `FACTOR * input_len + SLACK_BYTES`. Decoding legitimately allocates more than
//! its input: a vector reserves up to 6 bytes of memory per byte its elements need on the wire
//! (`Vec<String>`: 24 per 4; `jute::Vec<T>::get` refuses a count the input cannot hold, finding
//! F1), and a multi's operations grow a vector of 136-byte `Request`s from as little as 17 bytes
//! each, doubling as it grows (16x). Anything beyond that is a length trusted too far.
#![allow(dead_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Small fixed allocations (error strings, a few empty vectors) independent of the input.
pub const SLACK_BYTES: usize = 4096;

struct Counting;

static ARMED: AtomicBool = AtomicBool::new(false);
static LARGEST: AtomicUsize = AtomicUsize::new(0);
static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn note(size: usize) {
    let live = LIVE.fetch_add(size, Ordering::Relaxed) + size;
    if ARMED.load(Ordering::Relaxed) {
        LARGEST.fetch_max(size, Ordering::Relaxed);
        PEAK.fetch_max(live, Ordering::Relaxed);
    }
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        System.alloc_zeroed(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        note(new_size);
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Memory per input byte that decoding may reach at once (see the module comment).
pub const FACTOR: usize = 16;

/// What [`measure`] saw.
pub struct Measured {
    /// The largest single allocation (or reallocation) requested.
    pub largest: usize,
    /// The most bytes live at once, above what was live when measuring started.
    pub peak_growth: usize,
}

/// Runs `f`, recording its allocations.
pub fn measure<T>(f: impl FnOnce() -> T) -> (T, Measured) {
    let base = LIVE.load(Ordering::Relaxed);
    LARGEST.store(0, Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    ARMED.store(true, Ordering::Relaxed);
    let value = f();
    ARMED.store(false, Ordering::Relaxed);
    let measured = Measured {
        largest: LARGEST.load(Ordering::Relaxed),
        peak_growth: PEAK.load(Ordering::Relaxed).saturating_sub(base),
    };
    (value, measured)
}

/// Runs `f` and panics if it made a single allocation above `FACTOR * input_len + slack`.
pub fn bounded_with_slack<T>(input_len: usize, slack: usize, f: impl FnOnce() -> T) -> T {
    let (value, m) = measure(f);
    let limit = FACTOR * input_len + slack;
    assert!(
        m.largest <= limit,
        "an allocation of {} bytes while decoding {} input bytes (limit {limit})",
        m.largest,
        input_len
    );
    value
}

pub fn bounded<T>(input_len: usize, f: impl FnOnce() -> T) -> T {
    bounded_with_slack(input_len, SLACK_BYTES, f)
}
