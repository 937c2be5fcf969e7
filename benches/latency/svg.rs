//! The latency percentile plot: one panel per transport, each case's round
//! trip against percentile (the HdrHistogram plot: the x axis is
//! 1/(1-percentile), log scale), ours beside the floor, log-scale ns.
//! A few dozen lines of SVG instead of a plotting dependency.

use std::fmt::Write as _;

use crate::report::Latency;

const PANEL_W: f64 = 460.0;
const PANEL_H: f64 = 320.0;
const MARGIN: f64 = 60.0;
/// Percentiles on the x axis: 0, 90, 99, 99.9, 99.99, 99.999.
const NINES: usize = 5;
const COLORS: [&str; 6] = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"];

/// An SVG of the latency cases, one panel per group of `(title, rows)`.
pub fn plot(panels: &[(&str, Vec<&Latency>)], caption: &str) -> String {
    let width = MARGIN + panels.len() as f64 * (PANEL_W + MARGIN);
    let height = PANEL_H + 2.5 * MARGIN;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(s, r#"<text x="{MARGIN}" y="{}" font-size="11">{}</text>"#, height - 10.0, escape(caption));
    for (i, (title, rows)) in panels.iter().enumerate() {
        let x0 = MARGIN + i as f64 * (PANEL_W + MARGIN);
        panel(&mut s, x0, MARGIN, title, rows);
    }
    s.push_str("</svg>\n");
    s
}

fn escape(t: &str) -> String {
    t.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// One panel at (`x0`, `y0`): axes, grid, a curve and a legend line per row.
fn panel(s: &mut String, x0: f64, y0: f64, title: &str, rows: &[&Latency]) {
    let values = rows.iter().flat_map(|r| [r.summary.p50.max(1), r.summary.max.max(1)]);
    let lo = values.clone().min().unwrap_or(1) as f64;
    let hi = values.max().unwrap_or(10) as f64;
    let (dec_lo, dec_hi) = (lo.log10().floor(), hi.log10().ceil().max(lo.log10().floor() + 1.0));
    let x = |q: f64| x0 + (-(1.0 - q).max(1e-9).log10() / NINES as f64).min(1.0) * PANEL_W;
    let y = |ns: f64| y0 + PANEL_H - (ns.max(1.0).log10() - dec_lo) / (dec_hi - dec_lo) * PANEL_H;
    let _ = writeln!(s, r#"<text x="{x0}" y="{}" font-size="14">{}</text>"#, y0 - 12.0, escape(title));
    let _ =
        writeln!(s, r##"<rect x="{x0}" y="{y0}" width="{PANEL_W}" height="{PANEL_H}" fill="none" stroke="#333"/>"##);
    for n in 0..=NINES {
        let q = 1.0 - 10f64.powi(-(n as i32));
        let label = ["0%", "90%", "99%", "99.9%", "99.99%", "99.999%"][n];
        let gx = x(q);
        let _ = writeln!(s, r##"<line x1="{gx}" y1="{y0}" x2="{gx}" y2="{}" stroke="#ddd"/>"##, y0 + PANEL_H);
        let _ = writeln!(s, r#"<text x="{gx}" y="{}" text-anchor="middle">{label}</text>"#, y0 + PANEL_H + 16.0);
    }
    let mut d = dec_lo;
    while d <= dec_hi {
        let gy = y(10f64.powf(d));
        let label = match 10f64.powf(d) {
            v if v >= 1e6 => format!("{}ms", v / 1e6),
            v if v >= 1e3 => format!("{}us", v / 1e3),
            v => format!("{v}ns"),
        };
        let _ = writeln!(s, r##"<line x1="{x0}" y1="{gy}" x2="{}" y2="{gy}" stroke="#ddd"/>"##, x0 + PANEL_W);
        let _ = writeln!(s, r#"<text x="{}" y="{}" text-anchor="end">{label}</text>"#, x0 - 4.0, gy + 4.0);
        d += 1.0;
    }
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">percentile</text>"#,
        x0 + PANEL_W / 2.0,
        y0 + PANEL_H + 32.0
    );
    for (i, r) in rows.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let dash = if r.case == "floor" { r#" stroke-dasharray="6 3""# } else { "" };
        let mut points = String::new();
        for v in r.hist.iter_quantiles(5) {
            let q = v.quantile_iterated_to();
            let _ = write!(points, "{:.1},{:.1} ", x(q), y(v.value_iterated_to() as f64));
        }
        let _ = writeln!(s, r#"<polyline points="{points}" fill="none" stroke="{color}" stroke-width="1.5"{dash}/>"#);
        let ly = y0 + 16.0 + i as f64 * 16.0;
        let _ = writeln!(
            s,
            r#"<line x1="{}" y1="{ly}" x2="{}" y2="{ly}" stroke="{color}" stroke-width="2"{dash}/><text x="{}" y="{}">{} {} {}</text>"#,
            x0 + 8.0,
            x0 + 30.0,
            x0 + 36.0,
            ly + 4.0,
            escape(&r.case),
            escape(&r.mode),
            escape(&r.size)
        );
    }
}
