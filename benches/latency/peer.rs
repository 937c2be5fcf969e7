//! The Rust peer (`--features peer-iceoryx2`): iceoryx2 doing the same
//! ping-pong, in the shape of its own publish-subscribe benchmark: services
//! `a2b` and `b2a`, no history, a subscriber buffer of one, busy-wait
//! receive, loaned samples. Each message is written into its loan from the
//! same payload, and the server copies it into its reply's loan, as
//! tcpshm's echo server copies into its queue.

use iceoryx2::port::publisher::Publisher;
use iceoryx2::port::subscriber::Subscriber;
use iceoryx2::prelude::*;

use crate::run::{PingClient, PingServer};
use crate::shape::{Messages, Shape};

type Pub = Publisher<ipc::Service, [u8], ()>;
type Sub = Subscriber<ipc::Service, [u8], ()>;

/// One end's node and ports: it publishes on `send_to` and subscribes to
/// `recv_from`.
struct Ends {
    publisher: Pub,
    subscriber: Sub,
    // Declared last: the ports go before their node.
    _node: Node<ipc::Service>,
}

/// A service of the bench with this `tag`: `tcpshm-bench-<tag>-<case>-<dir>`.
fn service_name(tag: u32, case: &str, dir: &str) -> ServiceName {
    let name = format!("tcpshm-bench-{tag}-{case}-{dir}");
    ServiceName::new(&name).expect("iceoryx2 service name")
}

impl Ends {
    fn open(tag: u32, case: &str, send_to: &str, recv_from: &str, max_len: usize) -> Ends {
        set_log_level(LogLevel::Warn);
        let node = NodeBuilder::new().create::<ipc::Service>().expect("iceoryx2 node");
        let service = |dir: &str| {
            node.service_builder(&service_name(tag, case, dir))
                .publish_subscribe::<[u8]>()
                .history_size(0)
                .subscriber_max_buffer_size(1)
                .enable_safe_overflow(true)
                .open_or_create()
                .expect("iceoryx2 service")
        };
        let publisher =
            service(send_to).publisher_builder().initial_max_slice_len(max_len).create().expect("iceoryx2 publisher");
        let subscriber = service(recv_from).subscriber_builder().create().expect("iceoryx2 subscriber");
        Ends { publisher, subscriber, _node: node }
    }

    /// Loans a sample, writes `body` into it and sends it.
    #[inline]
    fn send(&self, body: &[u8]) {
        let sample = self.publisher.loan_slice_uninit(body.len()).expect("iceoryx2 loan");
        sample.write_from_slice(body).send().expect("iceoryx2 send");
    }
}

/// The client end: publishes on a2b, waits on b2a.
pub struct IceoryxClient {
    ends: Ends,
    msgs: Messages,
    payload: Vec<u8>,
}

/// The server end: waits on a2b, echoes on b2a.
pub struct IceoryxServer {
    ends: Ends,
}

/// Both ends of an iceoryx2 ping-pong of `shape`'s messages over the
/// services of `tag`, each to be made on its own thread (the ports of
/// `ipc::Service` stay on theirs) or process.
pub fn client(tag: u32, shape: Shape) -> IceoryxClient {
    let ends = Ends::open(tag, &shape.name(), "a2b", "b2a", shape.max_body());
    IceoryxClient { ends, msgs: Messages::new(shape), payload: vec![0x5a; shape.max_body()] }
}

/// See [`client`].
pub fn server(tag: u32, shape: Shape) -> IceoryxServer {
    IceoryxServer { ends: Ends::open(tag, &shape.name(), "b2a", "a2b", shape.max_body()) }
}

impl PingClient for IceoryxClient {
    #[inline]
    fn round_trip(&mut self) {
        let (_, len) = self.msgs.next_msg();
        self.ends.send(&self.payload[..len]);
        // Busy-wait without a pause, as iceoryx2's own benchmark does.
        while self.ends.subscriber.receive().expect("iceoryx2 receive").is_none() {}
    }
}

impl PingServer for IceoryxServer {
    fn serve(&mut self, count: u64) {
        for _ in 0..count {
            let msg = loop {
                if let Some(msg) = self.ends.subscriber.receive().expect("iceoryx2 receive") {
                    break msg;
                }
            };
            self.ends.send(msg.payload());
        }
    }
}
