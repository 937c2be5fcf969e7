//! The ping-pongs of one latency case, taking turns: tcpshm, its floor
//! and, over shared memory with `peer-iceoryx2`, the Rust peer; on two
//! threads of this process, or (`--processes`) with the servers in a child
//! process, which is this binary again with `--serve`.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::floor::{self, CacheLines, SharedLines};
use crate::ours::{self, Ours, OursServer};
use crate::run::{pin, Measured, PingClient, PingServer, Pins, RoundTrips, StartServer};
use crate::shape::Shape;

/// The Rust peer's server end, if it runs in this case.
fn peer_server<'a>(_tag: u32, _shape: Shape, use_shm: bool) -> Option<Box<dyn PingServer + 'a>> {
    #[cfg(feature = "peer-iceoryx2")]
    if use_shm {
        return Some(Box::new(crate::peer::server(_tag, _shape)));
    }
    let _ = use_shm;
    None
}

/// The Rust peer's client end, if it runs in this case.
fn peer_client<'a>(_tag: u32, _shape: Shape, use_shm: bool) -> Option<Box<dyn PingClient + 'a>> {
    #[cfg(feature = "peer-iceoryx2")]
    if use_shm {
        return Some(Box::new(crate::peer::client(_tag, _shape)));
    }
    let _ = use_shm;
    None
}

/// Runs the case's ping-pongs; their measurements in the order tcpshm,
/// floor, peer (if it ran).
pub fn ping_pongs(use_shm: bool, shape: Shape, rt: RoundTrips, pins: Pins, processes: bool) -> Vec<Measured> {
    if processes {
        return in_processes(use_shm, shape, rt, pins);
    }
    let tag = std::process::id();
    let (ours, server) = Ours::echo(use_shm);
    let lines = CacheLines::default();
    let mut servers: Vec<StartServer> = vec![Box::new(move || Box::new(server) as _)];
    let floor_client: Box<dyn PingClient> = if use_shm {
        let (client, server) = lines.ends();
        servers.push(Box::new(move || Box::new(server) as _));
        Box::new(client)
    } else {
        let (client, server) = floor::tcp_ends(shape);
        servers.push(Box::new(move || Box::new(server) as _));
        Box::new(client)
    };
    #[cfg(feature = "peer-iceoryx2")]
    if use_shm {
        servers.push(Box::new(move || Box::new(crate::peer::server(tag, shape)) as _));
    }
    rt.interleave(pins, servers, || {
        let mut clients = vec![Box::new(ours.ping_client(shape)) as Box<dyn PingClient>, floor_client];
        clients.extend(peer_client(tag, shape, use_shm));
        clients
    })
}

/// The floor's shm file of the bench process `tag`.
fn lines_path(tag: u32) -> PathBuf {
    PathBuf::from(format!("/dev/shm/tcpshm-bench-{tag}-floor"))
}

/// `--processes`: starts the child, waits for its servers, runs the clients here.
fn in_processes(use_shm: bool, shape: Shape, rt: RoundTrips, pins: Pins) -> Vec<Measured> {
    let tag = std::process::id();
    let (server_name, client_name) = ours::names();
    let lines = use_shm.then(|| SharedLines::create(lines_path(tag)));
    let raw = TcpListener::bind("127.0.0.1:0").expect("bind the raw TCP floor");
    let raw_port = raw.local_addr().expect("raw TCP floor address").port();
    let cpu = pins.server.map_or("-".to_string(), |c| c.to_string());
    let exe = std::env::current_exe().expect("this bench's executable");
    let mut child = Command::new(exe)
        .arg("--serve")
        .args([if use_shm { "shm" } else { "tcp" }, &shape.name(), &cpu, &server_name, &raw_port.to_string()])
        .args([rt.warmup, rt.count, rt.segment, tag as u64].map(|n| n.to_string()))
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the server process");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("child stdout")).read_line(&mut line).expect("read the child's address");
    let addr: SocketAddr = line.trim().parse().unwrap_or_else(|_| panic!("the server process said {line:?}"));
    pin(pins.client);
    let ours = Ours::new(addr, server_name, client_name, use_shm);
    let floor_client: Box<dyn PingClient> = match &lines {
        Some(lines) => Box::new(lines.lines().ends().0),
        None => Box::new(floor::TcpClient::new(raw.accept().expect("accept the raw TCP floor").0, shape)),
    };
    let mut clients = vec![Box::new(ours.ping_client(shape)) as Box<dyn PingClient>, floor_client];
    clients.extend(peer_client(tag, shape, use_shm));
    let measured = rt.client_turns(clients);
    let status = child.wait().expect("wait for the server process");
    assert!(status.success(), "the server process failed: {status}");
    measured
}

/// The child's side (`--serve MODE SHAPE CPU NAME RAW_PORT WARMUP COUNT
/// SEGMENT TAG`): starts the servers, prints the tcpshm server's address,
/// serves every round trip and exits.
pub fn serve_child(args: &[String]) -> ! {
    let bad = || -> ! {
        eprintln!("latency --serve: bad arguments {args:?}");
        std::process::exit(2)
    };
    let [mode, shape, cpu, name, raw_port, warmup, count, segment, tag] = args else { bad() };
    let num = |s: &String| s.parse::<u64>().unwrap_or_else(|_| bad());
    let use_shm = mode == "shm";
    let shape = Shape::parse(shape).unwrap_or_else(|| bad());
    let rt = RoundTrips { warmup: num(warmup), count: num(count), segment: num(segment) };
    let tag = num(tag) as u32;
    pin(cpu.parse().ok());
    let server = OursServer::echo(name, use_shm);
    let lines = use_shm.then(|| SharedLines::open(lines_path(tag)));
    let floor_server: Box<dyn PingServer> = match &lines {
        Some(lines) => Box::new(lines.lines().ends().1),
        None => {
            let sock = TcpStream::connect(("127.0.0.1", num(raw_port) as u16)).expect("connect the raw TCP floor");
            Box::new(floor::TcpServer::new(sock, shape))
        }
    };
    let mut stdout = std::io::stdout();
    writeln!(stdout, "{}", server.addr()).and_then(|()| stdout.flush()).expect("tell the parent");
    let mut servers = vec![Box::new(server) as Box<dyn PingServer>, floor_server];
    servers.extend(peer_server(tag, shape, use_shm));
    rt.serve_turns(servers);
    std::process::exit(0)
}
