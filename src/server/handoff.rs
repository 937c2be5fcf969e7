//! Ownership handoff of a connection slot between the control part and a
//! group part of a server, which may run on two threads.
//!
//! Each slot's value is owned by exactly one side at a time, and only the
//! owner ever writes the state word, with a release store that publishes
//! everything it did to the value; the other side reads the state with an
//! acquire load before touching the value. No read-modify-write is needed,
//! and a group's poll reads one word per slot only when the control part has
//! signalled a change (see `Signal`).
//!
//! ```text
//!   CTL_IDLE --(ctl: login done)--> GRP_LIVE --(group: closed)--> CTL_CLOSED
//!      ^                                                              |
//!      +-------------------(ctl: disconnect reported)----------------+
//! ```

#[cfg(tcpshm_loom)]
use loom::cell::UnsafeCell;
#[cfg(tcpshm_loom)]
use loom::sync::atomic::{AtomicBool, AtomicU32, AtomicU8};
#[cfg(not(tcpshm_loom))]
use std::cell::UnsafeCell;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
#[cfg(not(tcpshm_loom))]
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU8};

/// Who owns a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Owner {
    /// The control part; nothing to report.
    CtlIdle,
    /// A group; the connection is live.
    Group,
    /// The control part, after the group handed the slot back; the
    /// disconnect is still to be reported.
    CtlClosed,
}

const CTL_IDLE: u8 = 0;
const GROUP: u8 = 1;
const CTL_CLOSED: u8 = 2;

/// A value handed between the control side and one group side.
pub(crate) struct HandoffCell<T> {
    state: AtomicU8,
    /// Set by the control side while the group owns the slot: give it back.
    close_request: AtomicBool,
    value: UnsafeCell<T>,
}

// SAFETY: the value is only reached through `ctl_with` and `group_with`,
// whose contracts let exactly one side (one thread at a time) reach it, the
// side the state word names; the release store that passes ownership and the
// acquire load that checks it order every access of the old owner before
// every access of the new one. So sharing the cell is sound when T may be
// sent between threads.
unsafe impl<T: Send> Sync for HandoffCell<T> {}

impl<T> HandoffCell<T> {
    pub(crate) fn new(value: T) -> Self {
        HandoffCell {
            state: AtomicU8::new(CTL_IDLE),
            close_request: AtomicBool::new(false),
            value: UnsafeCell::new(value),
        }
    }

    /// The current owner, as the control side sees it.
    pub(crate) fn owner(&self) -> Owner {
        match self.state.load(Acquire) {
            GROUP => Owner::Group,
            CTL_CLOSED => Owner::CtlClosed,
            _ => Owner::CtlIdle,
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        #[cfg(tcpshm_loom)]
        // SAFETY: callers hold ownership per the state word (see the contracts).
        return self.value.with_mut(|p| f(unsafe { &mut *p }));
        #[cfg(not(tcpshm_loom))]
        // SAFETY: callers hold ownership per the state word (see the contracts).
        f(unsafe { &mut *self.value.get() })
    }

    /// Runs `f` on the value if the control side owns it.
    ///
    /// # Safety
    /// Only the control side calls this, from one thread at a time.
    pub(crate) unsafe fn ctl_with<R>(&self, f: impl FnOnce(&mut T, Owner) -> R) -> Option<R> {
        let owner = self.owner();
        (owner != Owner::Group).then(|| self.with(|v| f(v, owner)))
    }

    /// Control side: the disconnect was reported; the slot is idle.
    ///
    /// # Safety
    /// Only the control side calls this, while it owns the slot.
    pub(crate) unsafe fn ctl_set_idle(&self) {
        self.close_request.store(false, Relaxed);
        self.state.store(CTL_IDLE, Relaxed);
    }

    /// Control side: hands the value to the group.
    ///
    /// # Safety
    /// Only the control side calls this, while it owns the slot.
    pub(crate) unsafe fn hand_to_group(&self) {
        self.close_request.store(false, Relaxed);
        self.state.store(GROUP, Release);
    }

    /// Control side: asks the group to close the connection and hand it back.
    pub(crate) fn request_close(&self) {
        self.close_request.store(true, Release);
    }

    /// Runs `f` on the value if the group owns it; `f` also learns whether
    /// the control side asked for it back.
    ///
    /// # Safety
    /// Only the slot's group side calls this, from one thread at a time.
    pub(crate) unsafe fn group_with<R>(&self, f: impl FnOnce(&mut T, bool) -> R) -> Option<R> {
        (self.state.load(Acquire) == GROUP).then(|| {
            let close_request = self.close_request.load(Acquire);
            self.with(|v| f(v, close_request))
        })
    }

    /// Group side: hands the value back after the connection closed.
    ///
    /// # Safety
    /// Only the slot's group side calls this, while it owns the slot.
    pub(crate) unsafe fn hand_to_ctl(&self) {
        self.state.store(CTL_CLOSED, Release);
    }
}

/// A change counter one side bumps after handing over slots, so the other
/// side rescans only then. Each signal has a single writer (load + store,
/// no read-modify-write); the reader compares with the last value it saw.
pub(crate) struct Signal(AtomicU32);

impl Signal {
    pub(crate) fn new() -> Self {
        Signal(AtomicU32::new(0))
    }

    /// Writer side: something changed.
    pub(crate) fn raise(&self) {
        self.0.store(self.0.load(Relaxed).wrapping_add(1), Release);
    }

    /// Reader side: whether it changed since `seen` (which is updated).
    #[inline]
    pub(crate) fn changed(&self, seen: &mut u32) -> bool {
        let now = self.0.load(Acquire);
        let changed = now != *seen;
        *seen = now;
        changed
    }
}

#[cfg(all(test, tcpshm_loom))]
mod loom_tests {
    use super::*;
    use loom::sync::Arc;
    use loom::thread;

    /// The control side logs a connection in, the group polls it, closes it
    /// and hands it back; the control side then reports and reuses the slot.
    /// Every access to the value must be ordered (loom checks the cell).
    #[test]
    fn ctl_group_handoff_round_trip() {
        loom::model(|| {
            let cell = Arc::new(HandoffCell::new(0u32));
            let signal = Arc::new(Signal::new());
            let back = Arc::new(Signal::new());
            // SAFETY: this thread is the only control side.
            unsafe {
                cell.ctl_with(|v, _| *v = 1).unwrap();
                cell.hand_to_group();
            }
            signal.raise();
            let group = {
                let (cell, signal, back) = (cell.clone(), signal.clone(), back.clone());
                thread::spawn(move || {
                    let mut seen = 0;
                    // Poll until the handoff is visible, then work and hand back.
                    loop {
                        if signal.changed(&mut seen) {
                            // SAFETY: this thread is the only group side.
                            let done = unsafe { cell.group_with(|v, _| *v += 1) };
                            if done.is_some() {
                                // SAFETY: as above, and the group owns the slot.
                                unsafe { cell.hand_to_ctl() };
                                back.raise();
                                return;
                            }
                        }
                        thread::yield_now();
                    }
                })
            };
            let mut seen = 0;
            loop {
                if back.changed(&mut seen) {
                    // SAFETY: this thread is the only control side.
                    let v = unsafe { cell.ctl_with(|v, owner| (*v, owner)) };
                    if let Some((v, owner)) = v {
                        assert_eq!((v, owner), (2, Owner::CtlClosed));
                        // SAFETY: as above; the control side owns the slot.
                        unsafe { cell.ctl_set_idle() };
                        break;
                    }
                }
                thread::yield_now();
            }
            group.join().unwrap();
        });
    }

    /// The control side asks a live slot back while the group polls it.
    #[test]
    fn close_request_reaches_the_group() {
        loom::model(|| {
            let cell = Arc::new(HandoffCell::new(5u32));
            // SAFETY: this thread is the only control side.
            unsafe { cell.hand_to_group() };
            let group = {
                let cell = cell.clone();
                thread::spawn(move || loop {
                    // SAFETY: this thread is the only group side.
                    let asked = unsafe { cell.group_with(|v, asked| (*v += 1, asked).1) };
                    if asked == Some(true) {
                        // SAFETY: as above; the group owns the slot.
                        unsafe { cell.hand_to_ctl() };
                        return;
                    }
                    thread::yield_now();
                })
            };
            cell.request_close();
            loop {
                // SAFETY: this thread is the only control side.
                if let Some(v) = unsafe { cell.ctl_with(|v, _| *v) } {
                    assert!(v >= 6);
                    break;
                }
                thread::yield_now();
            }
            group.join().unwrap();
        });
    }
}
