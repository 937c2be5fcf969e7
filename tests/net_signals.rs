//! Signals reach their subscribers on the loop's thread. A file of its own:
//! the signal is raised in this test process.

mod net_common;

use std::cell::RefCell;
use std::rc::Rc;

use net_common::run_until;
use nix::sys::signal::{raise, Signal};
use tcpshm::net::EventLoop;

#[test]
fn a_raised_signal_calls_its_subscribers_and_forbidden_ones_are_refused() {
    let mut el = EventLoop::new().unwrap();
    let got = Rc::new(RefCell::new(vec![]));
    for who in ["first", "second"] {
        let got = got.clone();
        el.on_signal(Signal::SIGHUP as i32, move |_, sig| got.borrow_mut().push((who, sig))).unwrap();
    }
    let g = got.clone();
    el.on_signal(Signal::SIGUSR2 as i32, move |_, sig| g.borrow_mut().push(("usr2", sig))).unwrap();
    raise(Signal::SIGHUP).unwrap();
    run_until(&mut el, "the SIGHUP subscribers", |_| got.borrow().len() == 2);
    assert_eq!(*got.borrow(), [("first", Signal::SIGHUP as i32), ("second", Signal::SIGHUP as i32)]);
    let err = el.on_signal(Signal::SIGKILL as i32, |_, _| {}).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
}
