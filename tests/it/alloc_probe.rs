//! A global allocator that tracks, per thread, the bytes live and their peak, so a test can
//! measure what one call costs in memory without other tests' threads in the count.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicIsize, Ordering};

/// Bytes live in the whole process, and their peak since the last reset.
static GLOBAL_LIVE: AtomicIsize = AtomicIsize::new(0);
static GLOBAL_PEAK: AtomicIsize = AtomicIsize::new(0);

pub struct Probe;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn track(delta: isize) {
    let now = GLOBAL_LIVE.fetch_add(delta, Ordering::Relaxed) + delta;
    GLOBAL_PEAK.fetch_max(now, Ordering::Relaxed);
    let _ = LIVE.try_with(|live| {
        let v = live.get() + delta;
        live.set(v);
        let _ = PEAK.try_with(|p| {
            if v > p.get() {
                p.set(v)
            }
        });
    });
}

unsafe impl GlobalAlloc for Probe {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            track(layout.size() as isize);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        track(-(layout.size() as isize));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            track(new_size as isize - layout.size() as isize);
        }
        p
    }
}

/// Runs `f` and returns its result with the peak of extra bytes allocated on this thread.
pub fn peak_extra<R>(f: impl FnOnce() -> R) -> (R, usize) {
    let start = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(start));
    let r = f();
    let peak = PEAK.with(Cell::get);
    (r, (peak - start).max(0) as usize)
}

/// Starts measuring the process-wide allocation peak; returns the bytes live now.
pub fn reset_global_peak() -> isize {
    let live = GLOBAL_LIVE.load(Ordering::Relaxed);
    GLOBAL_PEAK.store(live, Ordering::Relaxed);
    live
}

/// The process-wide allocation peak since [`reset_global_peak`] (other tests' threads
/// included: use for bounds far above what they allocate).
pub fn global_peak() -> isize {
    GLOBAL_PEAK.load(Ordering::Relaxed)
}
