//! Latency and throughput of tcpshm against the hardware floor, in one run.
//!
//! ```text
//! cargo bench --bench latency -- [--quick] [--json FILE] [--hgrm DIR] [--svg FILE]
//!                                [--pin CLIENT,SERVER | --no-pin] [--only GROUP,..]
//!                                [--processes]
//! cargo bench --bench latency -- --instructions N   (for callgrind: see ours.rs)
//! ```
//!
//! Latency: ping-pong round trips between a client and a server thread,
//! pinned to two CPUs, over shared memory and over loopback TCP, with the C++
//! echo pair's message mix (1 to 4 i32 of a random type) and with fixed 64 B
//! and 1 KiB bodies; one clock read per round trip into an HDR histogram.
//! Each is printed beside its floor, measured by this binary with the same
//! pinning: a cache-line ping-pong for shm, a raw loopback TCP ping-pong of
//! the same frames for TCP (floor.rs).
//!
//! Throughput: one-way streaming of 16 B and 256 B messages (`push_more` for
//! a batch, then `push`), messages/s and MB/s of bodies, beside a raw
//! in-memory ring and raw TCP writes of the same frames, each case taking
//! turns with its floor.
//!
//! Heap allocations are counted by the global allocator (alloc.rs) and
//! printed per message: the steady state must make none.
//!
//! `--quick` (or `TCPSHM_BENCH_QUICK=1`) runs small counts, so CI keeps the
//! bench working; its figures mean little.

mod alloc;
mod cases;
mod floor;
mod ours;
#[cfg(feature = "peer-iceoryx2")]
mod peer;
mod report;
mod run;
mod shape;
mod svg;
#[path = "../../examples/common/sys.rs"]
mod sys;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use report::{Latency, Summary, Throughput};
use run::{Pins, RoundTrips, Stream};
use shape::Shape;

#[global_allocator]
static ALLOCATOR: alloc::Counting = alloc::Counting;

/// What the command line asked for.
struct Options {
    quick: bool,
    json: Option<PathBuf>,
    hgrm: Option<PathBuf>,
    svg: Option<PathBuf>,
    pins: Pins,
    /// The case groups to run (`--only`): shm, tcp (round trips), stream.
    groups: Vec<String>,
    /// Round trips between two processes instead of two threads.
    processes: bool,
}

/// Every case group, in the order they run.
const GROUPS: [&str; 3] = ["shm", "tcp", "stream"];

fn usage(msg: &str) -> ! {
    eprintln!("latency: {msg}");
    eprintln!("usage: cargo bench --bench latency -- [--quick] [--json FILE] [--hgrm DIR] [--svg FILE] [--pin C,S | --no-pin] [--only shm,tcp,stream] [--processes]");
    std::process::exit(2)
}

impl Options {
    fn parse() -> Options {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mut o = Options {
            quick: std::env::var_os("TCPSHM_BENCH_QUICK").is_some_and(|v| v != "0"),
            json: None,
            hgrm: None,
            svg: None,
            pins: if cpus >= 2 {
                Pins { client: Some(0), server: Some(1) }
            } else {
                Pins { client: None, server: None }
            },
            groups: GROUPS.map(String::from).to_vec(),
            processes: false,
        };
        let mut args = std::env::args().skip(1);
        while let Some(a) = args.next() {
            let mut path =
                |flag: &str| PathBuf::from(args.next().unwrap_or_else(|| usage(&format!("{flag} needs a value"))));
            match a.as_str() {
                "--quick" => o.quick = true,
                "--processes" => o.processes = true,
                "--json" => o.json = Some(path("--json")),
                "--hgrm" => o.hgrm = Some(path("--hgrm")),
                "--svg" => o.svg = Some(path("--svg")),
                "--no-pin" => o.pins = Pins { client: None, server: None },
                "--pin" => {
                    let v = args.next().unwrap_or_else(|| usage("--pin needs CLIENT,SERVER"));
                    let cpu = |s: Option<&str>| {
                        s.and_then(|s| s.parse().ok()).unwrap_or_else(|| usage("--pin CLIENT,SERVER"))
                    };
                    let mut it = v.split(',');
                    o.pins = Pins { client: Some(cpu(it.next())), server: Some(cpu(it.next())) };
                }
                "--only" => {
                    let v = args.next().unwrap_or_else(|| usage("--only needs GROUP,.."));
                    o.groups = v.split(',').map(String::from).collect();
                    if let Some(g) = o.groups.iter().find(|g| !GROUPS.contains(&g.as_str())) {
                        usage(&format!("unknown group {g} (groups: {})", GROUPS.join(",")));
                    }
                }
                // cargo bench passes --bench to every bench target.
                "--bench" => {}
                other => usage(&format!("unknown argument {other}")),
            }
        }
        o
    }

    /// Whether the case group `group` runs.
    fn runs(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }
}

/// The CPU model and count, for the report.
fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name").and_then(|r| r.split(':').nth(1)))
        .map_or("unknown CPU".to_string(), |m| m.trim().to_string());
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    format!("{model}, {cpus} CPUs")
}

/// Whether CPUs `a` and `b` are SMT siblings of one core or separate cores,
/// as the (possibly virtual) machine presents them.
fn placement(a: usize, b: usize) -> &'static str {
    let path = format!("/sys/devices/system/cpu/cpu{a}/topology/thread_siblings_list");
    let Ok(list) = std::fs::read_to_string(path) else { return "topology unknown" };
    let siblings = list.trim().split(',').any(|part| match part.split_once('-') {
        Some((lo, hi)) => lo.parse().is_ok_and(|lo: usize| hi.parse().is_ok_and(|hi: usize| (lo..=hi).contains(&b))),
        None => part.parse() == Ok(b),
    });
    if a == b {
        "the same CPU"
    } else if siblings {
        "SMT siblings"
    } else {
        "separate cores"
    }
}

const SHAPES: [Shape; 3] = [Shape::EchoMix, Shape::Fixed(64), Shape::Fixed(1024)];

fn latency_cases(o: &Options) -> Vec<Latency> {
    let scale = if o.quick { 100 } else { 1 };
    let shm = RoundTrips { warmup: 100_000 / scale, count: 1_000_000 / scale, segment: 10_000 / scale };
    let tcp = RoundTrips { warmup: 20_000 / scale, count: 200_000 / scale, segment: 2_000 / scale };
    let row = |case: &str, mode: &str, size: String, m: run::Measured, floor: Option<&Latency>| {
        eprintln!("  {case} {mode} {size}: p50 {} ns", m.hist.value_at_quantile(0.5));
        Latency {
            case: case.into(),
            mode: mode.into(),
            size,
            summary: Summary::of(&m.hist),
            allocs_per_msg: m.allocs as f64 / m.hist.len().max(1) as f64,
            hist: m.hist,
            floor: floor.map(|f| (format!("{} {} {}", f.case, f.mode, f.size), f.summary)),
            peer: None,
        }
    };
    let mut rows = vec![];
    let shapes = |group: &str| if o.runs(group) { &SHAPES[..] } else { &[] };
    let cases = shapes("shm").iter().map(|&s| (true, s)).chain(shapes("tcp").iter().map(|&s| (false, s)));
    for (use_shm, shape) in cases {
        let rt = if use_shm { shm } else { tcp };
        let mut m = cases::ping_pongs(use_shm, shape, rt, o.pins, o.processes).into_iter();
        let (ours, floor) = (m.next().expect("ours"), m.next().expect("floor"));
        let (mode, floor_mode) = if use_shm { ("shm", "cache-line") } else { ("tcp", "tcp") };
        let floor = row("floor", floor_mode, shape.name(), floor, None);
        let peer = m.next().map(|p| row("iceoryx2", mode, shape.name(), p, Some(&floor)));
        let mut ours = row("tcpshm", mode, shape.name(), ours, Some(&floor));
        ours.peer = peer.as_ref().map(|p| (format!("{} {} {}", p.case, p.mode, p.size), p.summary));
        rows.push(floor);
        rows.push(ours);
        rows.extend(peer);
    }
    rows
}

/// Turns each streaming case takes with its floor: one long run of each would
/// catch the VM's vCPU placement at two different moments.
const STREAM_TURNS: u64 = 5;

fn throughput_cases(o: &Options) -> Vec<Throughput> {
    let (scale, turns) = if o.quick { (100, 1) } else { (1, STREAM_TURNS) };
    let mut rows: Vec<Throughput> = vec![];
    let row =
        |case: &str, mode: &str, stream: Stream, time: Duration, allocs: Option<u64>, floor: Option<&Throughput>| {
            let count = stream.count * turns;
            let msgs_per_s = count as f64 / time.as_secs_f64().max(1e-9);
            eprintln!("  {case} {mode} {}: {msgs_per_s:.0} msgs/s", stream.shape.name());
            Throughput {
                case: case.into(),
                mode: mode.into(),
                size: stream.shape.name(),
                count,
                msgs_per_s,
                mb_per_s: msgs_per_s * stream.shape.max_body() as f64 / 1e6,
                floor: floor.map(|f| (format!("{} {} {}", f.case, f.mode, f.size), f.msgs_per_s)),
                allocs_per_msg: allocs.map(|a| a as f64 / count as f64),
            }
        };
    if !o.runs("stream") {
        return rows;
    }
    for (shape, count) in [(Shape::Fixed(16), 4_000_000), (Shape::Fixed(256), 1_000_000)] {
        let stream = Stream { shape, count: count / scale / turns, batch: 32 };
        // Time and allocations of: the memory ring, ours over shm, raw TCP, ours over TCP.
        let mut totals = [(Duration::ZERO, 0u64); 4];
        for _ in 0..turns {
            totals[0].0 += floor::memory_stream(stream, o.pins, 1 << 20);
            let (time, allocs) = ours::stream(stream, o.pins, true);
            totals[1] = (totals[1].0 + time, totals[1].1 + allocs);
            totals[2].0 += floor::tcp_stream(stream, o.pins);
            let (time, allocs) = ours::stream(stream, o.pins, false);
            totals[3] = (totals[3].0 + time, totals[3].1 + allocs);
        }
        let raw = row("floor", "memory", stream, totals[0].0, None, None);
        let ours = row("tcpshm", "shm", stream, totals[1].0, Some(totals[1].1), Some(&raw));
        rows.extend([raw, ours]);
        let raw = row("floor", "tcp", stream, totals[2].0, None, None);
        let ours = row("tcpshm", "tcp", stream, totals[3].0, Some(totals[3].1), Some(&raw));
        rows.extend([raw, ours]);
    }
    rows
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("--serve") => cases::serve_child(&args[2..]),
        Some("--instructions") => {
            let n = args.get(2).and_then(|n| n.parse().ok()).unwrap_or_else(|| usage("--instructions N"));
            return ours::instructions(n);
        }
        _ => {}
    }
    let o = Options::parse();
    let machine = machine();
    let pins = match (o.pins.client, o.pins.server) {
        (Some(c), Some(s)) => format!("client on CPU {c}, server on CPU {s} ({})", placement(c, s)),
        _ => "not pinned".into(),
    };
    let pins = format!("{pins}; round trips between two {}", if o.processes { "processes" } else { "threads" });
    println!("tcpshm latency bench{}: {machine}; {pins}", if o.quick { " (quick)" } else { "" });
    let started = Instant::now();
    eprintln!("latency:");
    let lat = latency_cases(&o);
    eprintln!("throughput:");
    let thr = throughput_cases(&o);
    println!("\n{}", report::latency_table(&lat));
    println!("{}", report::throughput_table(&thr));
    println!("(ns unless marked; ratios are ours / the floor; MB/s counts message bodies; alloc/m = heap allocations per message; {:.0} s)", started.elapsed().as_secs_f64());
    if let Some(path) = &o.json {
        let v = report::json(&lat, &thr, &machine);
        std::fs::write(path, serde_json::to_string_pretty(&v).expect("json")).expect("write --json file");
    }
    if let Some(dir) = &o.hgrm {
        report::write_hgrm(dir, &lat).expect("write --hgrm files");
    }
    if let Some(path) = &o.svg {
        let pick =
            |mode: &str| lat.iter().filter(|r| r.mode == mode || (mode == "shm" && r.mode == "cache-line")).collect();
        let panels = [("shared memory round trip", pick("shm")), ("TCP loopback round trip", pick("tcp"))];
        let caption = format!("{machine}; {pins}; dashed: the floor");
        std::fs::write(path, svg::plot(&panels, &caption)).expect("write --svg file");
    }
}
