//! What a run prints and writes: the table, `--json`, `--hgrm` and the SVG.

use std::fmt::Write as _;
use std::path::Path;

use hdrhistogram::Histogram;

/// Latency figures of one case, in ns.
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    pub count: u64,
    pub avg: f64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

impl Summary {
    pub fn of(h: &Histogram<u64>) -> Self {
        Summary {
            count: h.len(),
            avg: h.mean(),
            p50: h.value_at_quantile(0.5),
            p90: h.value_at_quantile(0.9),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
        }
    }
}

/// One latency case's result.
pub struct Latency {
    /// `tcpshm`, `floor`, or the peer's name.
    pub case: String,
    /// `shm`, `tcp`, `cache-line`, ...
    pub mode: String,
    /// The message shape's name.
    pub size: String,
    pub summary: Summary,
    pub hist: Histogram<u64>,
    /// The floor it is compared with (its row's `case/mode/size`), if any.
    pub floor: Option<(String, Summary)>,
    /// The Rust peer it is compared with, if it ran (`peer-iceoryx2`).
    pub peer: Option<(String, Summary)>,
    /// Heap allocations per measured round trip.
    pub allocs_per_msg: f64,
}

/// One streaming case's result.
pub struct Throughput {
    pub case: String,
    pub mode: String,
    pub size: String,
    pub count: u64,
    pub msgs_per_s: f64,
    pub mb_per_s: f64,
    /// The raw baseline's name and messages/s.
    pub floor: Option<(String, f64)>,
    pub allocs_per_msg: Option<f64>,
}

fn us(ns: f64) -> String {
    if ns >= 10_000.0 {
        format!("{:.1}us", ns / 1000.0)
    } else {
        format!("{ns:.0}")
    }
}

/// The latency table: one row per case, ratios to its floor.
pub fn latency_table(rows: &[Latency]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<28} {:>9} {:>7} {:>7} {:>7} {:>7} {:>8} {:>9}  {:<22} {:>6} {:>6} {:>6} {:>7}",
        "round trip (ns)",
        "count",
        "avg",
        "p50",
        "p90",
        "p99",
        "p99.9",
        "max",
        "floor",
        "p50/f",
        "avg/f",
        "avg/pe",
        "alloc/m"
    );
    for r in rows {
        let m = &r.summary;
        let (floor, p50r, avgr) = match &r.floor {
            Some((name, f)) => {
                (name.clone(), format!("{:.2}", m.p50 as f64 / f.p50 as f64), format!("{:.2}", m.avg / f.avg))
            }
            None => (String::new(), String::new(), String::new()),
        };
        let peer = r.peer.as_ref().map(|(_, p)| format!("{:.2}", m.avg / p.avg)).unwrap_or_default();
        let _ = writeln!(
            s,
            "{:<28} {:>9} {:>7} {:>7} {:>7} {:>7} {:>8} {:>9}  {:<22} {:>6} {:>6} {:>6} {:>7.2}",
            format!("{} {} {}", r.case, r.mode, r.size),
            m.count,
            us(m.avg),
            us(m.p50 as f64),
            us(m.p90 as f64),
            us(m.p99 as f64),
            us(m.p999 as f64),
            us(m.max as f64),
            floor,
            p50r,
            avgr,
            peer,
            r.allocs_per_msg
        );
    }
    s
}

/// The throughput table: messages/s and MB/s, the ratio to the raw baseline.
pub fn throughput_table(rows: &[Throughput]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<28} {:>9} {:>12} {:>9}  {:<22} {:>7} {:>7}",
        "one-way streaming", "count", "msgs/s", "MB/s", "baseline", "ratio", "alloc/m"
    );
    for r in rows {
        let (floor, ratio) = match &r.floor {
            Some((name, f)) => (name.clone(), format!("{:.2}", r.msgs_per_s / f)),
            None => (String::new(), String::new()),
        };
        let allocs = r.allocs_per_msg.map(|a| format!("{a:.2}")).unwrap_or_default();
        let _ = writeln!(
            s,
            "{:<28} {:>9} {:>12.0} {:>9.1}  {:<22} {:>7} {:>7}",
            format!("{} {} {}", r.case, r.mode, r.size),
            r.count,
            r.msgs_per_s,
            r.mb_per_s,
            floor,
            ratio,
            allocs
        );
    }
    s
}

/// Every figure, for scripts.
pub fn json(lat: &[Latency], thr: &[Throughput], machine: &str) -> serde_json::Value {
    let summary = |m: &Summary| {
        serde_json::json!({
            "count": m.count, "avg_ns": m.avg, "p50_ns": m.p50, "p90_ns": m.p90,
            "p99_ns": m.p99, "p999_ns": m.p999, "max_ns": m.max,
        })
    };
    let latency: Vec<_> = lat
        .iter()
        .map(|r| {
            let mut v = serde_json::json!({
                "case": r.case, "mode": r.mode, "size": r.size,
                "allocs_per_msg": r.allocs_per_msg,
            });
            v["figures"] = summary(&r.summary);
            if let Some((name, f)) = &r.floor {
                v["floor"] = serde_json::json!({ "name": name, "figures": summary(f) });
                v["ratio_p50"] = (r.summary.p50 as f64 / f.p50 as f64).into();
                v["ratio_avg"] = (r.summary.avg / f.avg).into();
            }
            if let Some((name, p)) = &r.peer {
                v["peer"] = serde_json::json!({ "name": name, "figures": summary(p) });
                v["ratio_peer_p50"] = (r.summary.p50 as f64 / p.p50 as f64).into();
                v["ratio_peer_avg"] = (r.summary.avg / p.avg).into();
            }
            v
        })
        .collect();
    let throughput: Vec<_> = thr
        .iter()
        .map(|r| {
            let mut v = serde_json::json!({
                "case": r.case, "mode": r.mode, "size": r.size, "count": r.count,
                "msgs_per_s": r.msgs_per_s, "mb_per_s": r.mb_per_s, "allocs_per_msg": r.allocs_per_msg,
            });
            if let Some((name, f)) = &r.floor {
                v["floor"] = serde_json::json!({ "name": name, "msgs_per_s": f });
                v["ratio"] = (r.msgs_per_s / f).into();
            }
            v
        })
        .collect();
    serde_json::json!({ "machine": machine, "latency": latency, "throughput": throughput })
}

/// A histogram's percentile distribution in HdrHistogram's `.hgrm` text
/// format (values in ns, as `outputPercentileDistribution` with a unit
/// ratio of 1 prints it).
pub fn hgrm(h: &Histogram<u64>) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "{:>12} {:>14} {:>10} {:>14}\n", "Value", "Percentile", "TotalCount", "1/(1-Percentile)");
    for v in h.iter_quantiles(5) {
        let q = v.quantile_iterated_to();
        let inv = if q < 1.0 { format!("{:>14.2}", 1.0 / (1.0 - q)) } else { String::new() };
        let (value, count) = (v.value_iterated_to() as f64, v.count_since_last_iteration());
        let _ = writeln!(s, "{value:>12.3} {q:.12} {count:>10} {inv}");
    }
    let _ = writeln!(s, "#[Mean    = {:>12.3}, StdDeviation   = {:>12.3}]", h.mean(), h.stdev());
    let _ = writeln!(s, "#[Max     = {:>12.3}, Total count    = {:>12}]", h.max() as f64, h.len());
    // HdrHistogram's sub-bucket count: 2^ceil(log2(2 * 10^significant figures)).
    let sub_buckets = (2.0 * 10f64.powi(h.sigfig() as i32)).log2().ceil().exp2();
    let _ = writeln!(s, "#[Buckets = {:>12}, SubBuckets     = {:>12}]", h.buckets(), sub_buckets);
    s
}

/// Writes `<dir>/<case>_<mode>_<size>.hgrm` for every latency case.
pub fn write_hgrm(dir: &Path, rows: &[Latency]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for r in rows {
        let name = format!("{}_{}_{}.hgrm", r.case, r.mode, r.size).replace(['/', ' '], "-");
        std::fs::write(dir.join(name), hgrm(&r.hist))?;
    }
    Ok(())
}
