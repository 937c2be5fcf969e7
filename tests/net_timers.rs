//! Timers, idle timeouts, stopping and waking the loop.

mod net_common;

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use net_common::{codec, run_until, Recorder};
use tcpshm::net::{Behaviour, ConnectOptions, Ctx, EventLoop, Handler, ListenOptions, Origin, Repeat, Session, Target};

const MS: Duration = Duration::from_millis(1);

#[test]
fn timers_fire_in_deadline_order_then_in_the_order_added() {
    let mut el = EventLoop::new().unwrap();
    let fired = Rc::new(RefCell::new(vec![]));
    for (delay, label) in [(30, 'a'), (10, 'b'), (20, 'c'), (10, 'd'), (0, 'e')] {
        let fired = fired.clone();
        el.ctx().add_timer(delay * MS, MS, Repeat::Times(1), move |_, _| fired.borrow_mut().push(label));
    }
    run_until(&mut el, "five timers", |_| fired.borrow().len() == 5);
    assert_eq!(*fired.borrow(), ['e', 'b', 'd', 'c', 'a']);
}

#[test]
fn a_timer_repeats_as_often_as_asked_and_no_more() {
    let mut el = EventLoop::new().unwrap();
    let count = Rc::new(RefCell::new(0));
    let c = count.clone();
    el.ctx().add_timer(MS, 2 * MS, Repeat::Times(3), move |_, _| *c.borrow_mut() += 1);
    // A sentinel well after the third firing.
    let sentinel = Rc::new(RefCell::new(false));
    let s = sentinel.clone();
    el.ctx().add_timer(60 * MS, MS, Repeat::Times(1), move |_, _| *s.borrow_mut() = true);
    run_until(&mut el, "the sentinel", |_| *sentinel.borrow());
    assert_eq!(*count.borrow(), 3);
}

#[test]
fn cancelled_timers_never_fire_again() {
    let mut el = EventLoop::new().unwrap();
    let count = Rc::new(RefCell::new(0));
    // Forever, cancelled from its own callback at the fifth firing.
    let c = count.clone();
    el.ctx().add_timer(MS, MS, Repeat::Forever, move |cx: &mut Ctx<'_>, id| {
        *c.borrow_mut() += 1;
        if *c.borrow() == 5 {
            assert!(cx.cancel_timer(id));
            assert!(!cx.cancel_timer(id), "a second cancel finds nothing");
        }
    });
    // Cancelled before it is due.
    let early = Rc::new(RefCell::new(false));
    let e = early.clone();
    let never = el.ctx().add_timer(10 * MS, MS, Repeat::Times(1), move |_, _| *e.borrow_mut() = true);
    assert!(el.ctx().cancel_timer(never));
    let sentinel = Rc::new(RefCell::new(false));
    let s = sentinel.clone();
    el.ctx().add_timer(60 * MS, MS, Repeat::Times(1), move |_, _| *s.borrow_mut() = true);
    run_until(&mut el, "the sentinel", |_| *sentinel.borrow());
    assert_eq!(*count.borrow(), 5);
    assert!(!*early.borrow());
}

#[test]
fn run_returns_when_a_callback_stops_it() {
    let mut el = EventLoop::new().unwrap();
    el.ctx().add_timer(5 * MS, MS, Repeat::Times(1), |cx, _| cx.stop());
    el.run().unwrap();
    assert!(el.ctx().now() >= 5 * MS);
}

#[test]
fn another_thread_wakes_and_stops_the_loop() {
    let mut el = EventLoop::new().unwrap();
    let woken = Rc::new(RefCell::new(0));
    let w = woken.clone();
    el.on_wakeup(move |_| *w.borrow_mut() += 1);
    let (pre, post) = (Rc::new(RefCell::new(0u64)), Rc::new(RefCell::new(0u64)));
    let (p, q) = (pre.clone(), post.clone());
    el.on_pre_iteration(move |_| *p.borrow_mut() += 1);
    el.on_post_iteration(move |cx| *q.borrow_mut() = cx.iteration() + 1);
    let handle = el.handle();
    let other = std::thread::spawn(move || {
        handle.wake();
        handle.stop();
    });
    el.run().unwrap();
    other.join().unwrap();
    // One waker event may carry both; if the stop came first, the hook is next.
    run_until(&mut el, "the wake hook", |_| *woken.borrow() >= 1);
    assert_eq!(*pre.borrow(), el.iteration());
    assert_eq!(*post.borrow(), el.iteration());
}

/// Sends a packet every 30 ms, `ticks` times, from the loop's timer, and
/// notes when each went.
struct Ticker {
    ticks: u32,
    sent_at: Rc<RefCell<Vec<Instant>>>,
}

impl Handler for Ticker {
    type Session = ();

    fn on_open(&mut self, s: &mut Session<'_>, _: Origin) {
        let (id, sent_at) = (s.id(), self.sent_at.clone());
        s.add_timer(30 * MS, 30 * MS, Repeat::Times(self.ticks), move |cx, _| {
            sent_at.borrow_mut().push(Instant::now());
            let _ = cx.send(id, b"tick");
        });
    }

    fn on_packet(&mut self, _: &mut Session<'_>, _: &mut (), _: &[u8]) {}
}

/// 15 ticks 30 ms apart to a server with a 300 ms idle timeout: the close
/// reason and the packets the server took first, or `None` if this thread
/// stalled between two ticks for half the timeout (then a tick and the
/// timeout come due together, and the run proves nothing).
fn ticks_then_idle() -> Option<(&'static str, usize)> {
    let mut el = EventLoop::new().unwrap();
    // It only receives: no send of its own keeps it busy.
    let rec = el.add_behaviour(Behaviour::new(Recorder::default()).codec(codec()).idle_timeout(300 * MS));
    let sent_at = Rc::new(RefCell::new(vec![]));
    let ticker = el.add_behaviour(Behaviour::new(Ticker { ticks: 15, sent_at: sent_at.clone() }).codec(codec()));
    let l = el.ctx().listen(rec, "127.0.0.1:0".parse().unwrap(), ListenOptions::default()).unwrap();
    let addr: SocketAddr = el.ctx().listener_addr(l).unwrap();
    el.ctx().connect(ticker, Target::Addr(addr), ConnectOptions::default()).unwrap();
    run_until(&mut el, "the idle timeout", |el| !el.handler_mut::<Recorder>(rec).unwrap().closed.is_empty());
    let stalled = sent_at.borrow().windows(2).any(|w| w[1] - w[0] >= 150 * MS);
    let h = el.handler_mut::<Recorder>(rec).unwrap();
    (!stalled).then(|| (h.closed[0].1, h.packets.len()))
}

#[test]
fn idle_sessions_time_out_and_traffic_resets_the_clock() {
    // A loaded machine may stall a run; one without a stall decides.
    let outcome = (0..5).find_map(|_| ticks_then_idle()).expect("five runs in a row stalled for 150 ms");
    // The 15 ticks span 450 ms, longer than the 300 ms timeout: only
    // traffic resetting the clock let all of them arrive first.
    assert_eq!(outcome, ("IdleTimeout", 15));
}
