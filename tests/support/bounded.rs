//! Measuring one call of a parser on untrusted input: on a thread with the
//! 2 MiB stack of a tokio worker, its CPU time, wall time and the peak of
//! the bytes it holds (counted by a global allocator, per thread), each
//! checked against a bound. A test binary that includes this module (with
//! `#[path]`) gets the counting allocator as its own.
//!
//! The bounds are properties of the code (the work is bounded), not
//! benchmarks: a debug build answers each input in milliseconds, and the
//! bounds are a hundred times that. Time is the thread's CPU time, so a
//! loaded machine does not fail a test.

#![allow(dead_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The stack of a tokio worker thread.
pub const WORKER_STACK: usize = 2 * 1024 * 1024;
/// Most CPU time one parse may take.
pub const MAX_CPU: Duration = Duration::from_secs(1);
/// Most bytes one parse may hold at once, beyond what it was given.
pub const MAX_PEAK_BYTES: i64 = 64 * 1024 * 1024;
/// Most wall time one parse may take, however loaded the machine: a check
/// that holds even where the CPU time cannot be read.
pub const MAX_WALL: Duration = Duration::from_secs(10);
/// After this long a parse has hung.
pub const HANG: Duration = Duration::from_secs(60);

/// Counts, per thread, the bytes allocated and not yet freed, and their peak.
struct Counting;

thread_local! {
    static LIVE: Cell<i64> = const { Cell::new(0) };
    static PEAK: Cell<i64> = const { Cell::new(0) };
}

fn grew(bytes: usize) {
    let _ = LIVE.try_with(|live| {
        let now = live.get() + bytes as i64;
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

fn shrank(bytes: usize) {
    let _ = LIVE.try_with(|live| live.set(live.get() - bytes as i64));
}

// SAFETY: every call is passed to the system allocator unchanged; the
// counters are thread-local cells with no destructor, so counting neither
// allocates nor locks.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        unsafe { System.dealloc(p, layout) };
        shrank(layout.size());
    }

    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let q = unsafe { System.realloc(p, layout, new_size) };
        if !q.is_null() {
            shrank(layout.size());
            grew(new_size);
        }
        q
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// This thread's CPU time, from Linux's scheduler statistics; `None` where
/// they cannot be read (the bound then holds for wall time).
fn thread_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns = stat.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(ns))
}

/// What one call cost.
#[derive(Debug)]
struct Cost {
    cpu: Duration,
    wall: Duration,
    peak_bytes: i64,
}

/// Run `f` on a thread with a worker's stack, and check that it neither
/// overflowed it, nor took more than [`MAX_CPU`], nor held more than
/// [`MAX_PEAK_BYTES`]. Whatever `f` builds is dropped on that thread too,
/// inside the measure: dropping a deep tree recurses as deeply as building it.
pub fn bounded<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    let worker = std::thread::Builder::new()
        .name(what.to_string())
        .stack_size(WORKER_STACK)
        .spawn(move || {
            let (wall, cpu) = (Instant::now(), thread_cpu());
            let start = LIVE.with(Cell::get);
            PEAK.with(|p| p.set(start));
            let out = f();
            let cost = Cost {
                cpu: match (cpu, thread_cpu()) {
                    (Some(a), Some(b)) => b.saturating_sub(a),
                    _ => wall.elapsed(),
                },
                wall: wall.elapsed(),
                peak_bytes: PEAK.with(Cell::get) - start,
            };
            let _ = tx.send((out, cost));
        })
        .expect("spawn a worker-sized thread");
    let (out, cost) = match rx.recv_timeout(HANG) {
        Ok(done) => done,
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("{what}: no answer after {HANG:?}"),
        Err(mpsc::RecvTimeoutError::Disconnected) => match worker.join() {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(()) => unreachable!("the worker sends before it ends"),
        },
    };
    // Shown with `--nocapture`: the figures behind the bounds.
    eprintln!("{what}: {cost:?}");
    assert!(cost.cpu < MAX_CPU, "{what}: {cost:?}");
    assert!(cost.wall < MAX_WALL, "{what}: {cost:?}");
    assert!(cost.peak_bytes < MAX_PEAK_BYTES, "{what}: {cost:?}");
    out
}
