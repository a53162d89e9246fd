//! Charts as SVG drawn on the server: no script, no network, and every
//! label goes through maud's escaping like the rest of the page.

use maud::{Markup, html};

use crate::words;

const W: f64 = 560.0;
const H: f64 = 160.0;
const PAD: f64 = 28.0;

fn scale(v: f64, lo: f64, hi: f64, out_lo: f64, out_hi: f64) -> f64 {
    if hi > lo {
        out_lo + (v - lo) / (hi - lo) * (out_hi - out_lo)
    } else {
        (out_lo + out_hi) / 2.0
    }
}

/// A histogram of `counts` over `edges` with the operating threshold as a
/// red line; `overlay` draws a second series (e.g. one attack type) on top.
pub fn histogram(
    title: &str,
    edges: &[f64],
    counts: &[u64],
    threshold: f64,
    overlay: Option<&[u64]>,
) -> Markup {
    let (lo, hi) = match (edges.first(), edges.last()) {
        (Some(lo), Some(hi)) => (*lo, *hi),
        _ => return html! { p.muted { "No scores." } },
    };
    let max = counts.iter().copied().max().unwrap_or(0).max(1) as f64;
    // Square-root height, so a few flagged flows beside thousands of
    // ordinary ones still show.
    let height = |c: u64| ((c as f64).sqrt() / max.sqrt()) * (H - 2.0 * PAD);
    let bar_w = (W - 2.0 * PAD) / counts.len().max(1) as f64;
    let t_x = scale(threshold, lo, hi, PAD, W - PAD).clamp(PAD, W - PAD);
    html! {
        svg.chart viewBox={ "0 0 " (W) " " (H) } role="img" aria-label=(title) {
            title { (title) }
            @for (i, c) in counts.iter().enumerate() {
                rect x=(PAD + i as f64 * bar_w) y=(H - PAD - height(*c)) width=(bar_w - 1.0)
                    height=(height(*c)) fill="#7a9cc6" { title { (edges[i]) "–" (edges[i + 1]) ": " (c) " flows" } }
            }
            @if let Some(overlay) = overlay {
                @for (i, c) in overlay.iter().enumerate() {
                    rect x=(PAD + i as f64 * bar_w + bar_w * 0.25) y=(H - PAD - height(*c))
                        width=(bar_w * 0.5) height=(height(*c)) fill="#d9822b" {}
                }
            }
            line x1=(PAD) y1=(H - PAD) x2=(W - PAD) y2=(H - PAD) stroke="#555" {}
            @if threshold.is_finite() {
                line.threshold x1=(t_x) y1=(PAD / 2.0) x2=(t_x) y2=(H - PAD) stroke="#c0392b"
                    stroke-width="2" stroke-dasharray="4 3" {}
                text x=(t_x + 4.0) y=(PAD / 2.0 + 8.0) font-size="11" fill="#c0392b" {
                    "threshold " (words::number(threshold))
                }
            }
            text x=(PAD) y=(H - 8.0) font-size="11" fill="#555" { (words::number(lo)) }
            text x=(W - PAD) y=(H - 8.0) font-size="11" fill="#555" text-anchor="end" { (words::number(hi)) }
            text x=(W / 2.0) y=(H - 8.0) font-size="11" fill="#555" text-anchor="middle" { "score" }
        }
    }
}

/// Flows (grey) and flagged flows (red) per time bucket.
pub fn timeline(title: &str, flows: &[u32], flagged: &[u32], tall: bool) -> Markup {
    let h = if tall { 120.0 } else { 34.0 };
    let w = 360.0;
    let max = flows.iter().copied().max().unwrap_or(0).max(1) as f64;
    let bar_w = w / flows.len().max(1) as f64;
    let height = |c: u32| (c as f64 / max) * (h - 2.0);
    html! {
        svg.timeline viewBox={ "0 0 " (w) " " (h) } role="img" aria-label=(title) {
            title { (title) }
            @for (i, (f, x)) in flows.iter().zip(flagged).enumerate() {
                @if *f > 0 {
                    rect x=(i as f64 * bar_w) y=(h - height(*f)) width=(bar_w.max(1.0) - 0.3)
                        height=(height(*f)) fill="#b8c4d6" {}
                }
                @if *x > 0 {
                    rect x=(i as f64 * bar_w) y=(h - height(*x)) width=(bar_w.max(1.0) - 0.3)
                        height=(height(*x).max(2.0)) fill="#c0392b" {}
                }
            }
        }
    }
}

/// Lines over evaluations: one series per detector, values in [lo, hi].
pub fn lines(title: &str, labels: &[String], series: &[(String, Vec<Option<f64>>)]) -> Markup {
    const COLOURS: [&str; 6] = [
        "#2c7fb8", "#d95f02", "#1b9e77", "#7570b3", "#e7298a", "#666666",
    ];
    let n = labels.len();
    let x = |i: usize| scale(i as f64, 0.0, (n.max(2) - 1) as f64, PAD, W - PAD);
    let y = |v: f64| scale(v, 0.0, 1.0, H - PAD, PAD / 2.0 + 18.0);
    html! {
        svg.chart viewBox={ "0 0 " (W) " " (H) } role="img" aria-label=(title) {
            title { (title) }
            @for v in [0.0, 0.5, 1.0] {
                line x1=(PAD) y1=(y(v)) x2=(W - PAD) y2=(y(v)) stroke="#ddd" {}
                text x=(PAD - 4.0) y=(y(v) + 4.0) font-size="10" fill="#555" text-anchor="end" { (v) }
            }
            @for (k, (name, values)) in series.iter().enumerate() {
                @let colour = COLOURS[k % COLOURS.len()];
                @let points: Vec<String> = values.iter().enumerate()
                    .filter_map(|(i, v)| v.map(|v| format!("{:.1},{:.1}", x(i), y(v)))).collect();
                polyline points=(points.join(" ")) fill="none" stroke=(colour) stroke-width="2" {}
                @for (i, v) in values.iter().enumerate() {
                    @if let Some(v) = v {
                        circle cx=(x(i)) cy=(y(*v)) r="3" fill=(colour) {
                            title { (words::detector(name)) " " (labels[i]) ": " (words::number(*v)) }
                        }
                    }
                }
                // The legend, two to a column above the plot.
                text x=(PAD + 260.0 * (k / 2) as f64) y=(10.0 + 11.0 * (k % 2) as f64) font-size="10" fill=(colour) {
                    (words::detector(name))
                }
            }
        }
    }
}

/// Horizontal bars, e.g. drift (PSI) per feature, with marks at `marks`.
pub fn bars(title: &str, items: &[(String, f64)], marks: &[f64]) -> Markup {
    let row = 18.0;
    let label_w = 260.0;
    let h = row * items.len() as f64 + 20.0;
    let max = items
        .iter()
        .map(|(_, v)| *v)
        .chain(marks.iter().copied())
        .fold(0.0f64, f64::max)
        .max(1e-9);
    let x = |v: f64| label_w + (v.max(0.0) / max) * (W - label_w - PAD);
    html! {
        svg.chart viewBox={ "0 0 " (W) " " (h) } role="img" aria-label=(title) {
            title { (title) }
            @for (i, (name, v)) in items.iter().enumerate() {
                text x=(label_w - 6.0) y=(row * i as f64 + 13.0) font-size="11" fill="#333" text-anchor="end" { (name) }
                rect x=(label_w) y=(row * i as f64 + 3.0) width=(x(*v) - label_w) height=(row - 6.0)
                    fill=(if marks.last().is_some_and(|m| v >= m) { "#c0392b" } else if marks.first().is_some_and(|m| v >= m) { "#d9822b" } else { "#7a9cc6" }) {}
                text x=(x(*v) + 4.0) y=(row * i as f64 + 13.0) font-size="10" fill="#555" { (words::number(*v)) }
            }
            @for m in marks {
                line x1=(x(*m)) y1="0" x2=(x(*m)) y2=(h - 16.0) stroke="#999" stroke-dasharray="3 3" {}
                text x=(x(*m)) y=(h - 4.0) font-size="10" fill="#555" text-anchor="middle" { (words::number(*m)) }
            }
        }
    }
}

/// Where a value sits against a training distribution: the 25–75 %
/// band, the median, and the flow's value as a red mark.
pub fn against(value: f64, p25: f64, median: f64, p75: f64) -> Markup {
    let (w, h) = (220.0, 18.0);
    let lo = value.min(p25).min(median);
    let hi = value.max(p75).max(median);
    let pad = (hi - lo).abs() * 0.08 + 1e-9;
    let x = |v: f64| scale(v, lo - pad, hi + pad, 4.0, w - 4.0);
    html! {
        svg.against viewBox={ "0 0 " (w) " " (h) } role="img" aria-label="value against training" {
            line x1="4" y1=(h / 2.0) x2=(w - 4.0) y2=(h / 2.0) stroke="#ccc" {}
            rect x=(x(p25)) y="4" width=((x(p75) - x(p25)).max(1.0)) height=(h - 8.0) fill="#b8c4d6" {}
            line x1=(x(median)) y1="2" x2=(x(median)) y2=(h - 2.0) stroke="#2c3e50" stroke-width="2" {}
            @if value.is_finite() {
                circle cx=(x(value)) cy=(h / 2.0) r="4.5" fill="#c0392b" {}
            }
        }
    }
}
