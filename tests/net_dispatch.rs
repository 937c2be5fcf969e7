//! Dispatch mode: packets served by worker threads, sends from them.

mod net_common;

use std::io::{Read, Write};

use net_common::{codec, frame, PATIENCE};
use tcpshm::net::{Dispatcher, Event, EventLoop, ListenOptions, SendError};

#[test]
fn workers_echo_through_the_dispatcher_and_a_closed_session_is_an_error() {
    let (tx, rx) = std::sync::mpsc::channel();
    let server = std::thread::spawn(move || {
        let mut el = EventLoop::new().unwrap();
        let (b, dispatcher) = el.add_dispatch(|b| b.codec(codec()));
        let l = el.ctx().listen(b, "127.0.0.1:0".parse().unwrap(), ListenOptions::default()).unwrap();
        tx.send((el.ctx().listener_addr(l).unwrap(), dispatcher, el.handle())).unwrap();
        el.run().unwrap();
    });
    let (addr, dispatcher, handle): (_, Dispatcher, _) = rx.recv().unwrap();
    let (closed_tx, closed_rx) = std::sync::mpsc::channel();
    let workers: Vec<_> = (0..2)
        .map(|_| {
            let (d, closed_tx) = (dispatcher.clone(), closed_tx.clone());
            std::thread::spawn(move || {
                while let Ok(event) = d.events().recv_timeout(PATIENCE) {
                    match event {
                        Event::Open(..) => {}
                        Event::Packet(id, bytes) => d.send(id, &bytes).unwrap(),
                        Event::Closed(id, why) => closed_tx.send((id, why)).unwrap(),
                    }
                }
            })
        })
        .collect();
    let mut c = std::net::TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(PATIENCE)).unwrap();
    let packets: Vec<Vec<u8>> = (0..200u32).map(|i| i.to_be_bytes().repeat(1 + i as usize % 9)).collect();
    for p in &packets {
        c.write_all(&frame(p)).unwrap();
    }
    // Two workers: echoes may come back in another order; each comes once.
    let mut back = Vec::new();
    for _ in &packets {
        let mut len = [0u8; 2];
        c.read_exact(&mut len).unwrap();
        let mut p = vec![0; u16::from_be_bytes(len) as usize];
        c.read_exact(&mut p).unwrap();
        back.push(p);
    }
    let (mut sent, mut got) = (packets.clone(), back);
    sent.sort();
    got.sort();
    assert_eq!(got, sent);
    drop(c);
    let (id, why) = closed_rx.recv_timeout(PATIENCE).expect("the close reaches a worker");
    assert!(!why.is_empty());
    assert_eq!(dispatcher.send(id, b"after the close"), Err(SendError::Closed));
    handle.stop();
    server.join().unwrap();
    drop(dispatcher);
    for w in workers {
        w.join().unwrap();
    }
}
