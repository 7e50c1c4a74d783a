//! Hand-written SVG line charts (no plotting dependency).

use std::fmt::Write;

/// One line of a chart: a value per second.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Legend text.
    pub label: String,
    /// One value per second.
    pub values: Vec<f64>,
}

const COLORS: [&str; 8] = [
    "#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#17becf", "#7f7f7f",
];
const W: f64 = 900.0;
const H: f64 = 420.0;
const L: f64 = 70.0;
const R: f64 = 190.0;
const T: f64 = 40.0;
const B: f64 = 50.0;

fn nice_range(series: &[Series], marks: &[(f64, String)]) -> (f64, f64) {
    let all = series
        .iter()
        .flat_map(|s| s.values.iter().copied())
        .chain(marks.iter().map(|m| m.0));
    let (lo, hi) = all.fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if lo > hi {
        return (0.0, 1.0);
    }
    let pad = ((hi - lo) * 0.05).max(0.5);
    (lo - pad, hi + pad)
}

/// An SVG chart of `series` against time (s), with optional horizontal
/// reference lines `marks` (value, label) and a vertical line at `event_s`.
pub fn line_chart(
    title: &str,
    y_label: &str,
    series: &[Series],
    marks: &[(f64, String)],
    event_s: Option<u64>,
) -> String {
    let steps = series
        .iter()
        .map(|s| s.values.len())
        .max()
        .unwrap_or(1)
        .max(2);
    let (lo, hi) = nice_range(series, marks);
    let px = |t: f64| L + (W - L - R) * t / (steps - 1) as f64;
    let py = |v: f64| T + (H - T - B) * (1.0 - (v - lo) / (hi - lo));
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = write!(
        s,
        r#"<rect width="100%" height="100%" fill="white"/><text x="{}" y="22" font-size="15" text-anchor="middle">{title}</text>"#,
        (W - R + L) / 2.0
    );
    let _ = write!(
        s,
        r##"<rect x="{L}" y="{T}" width="{}" height="{}" fill="none" stroke="#333"/>"##,
        W - L - R,
        H - T - B
    );
    for k in 0..=5 {
        let v = lo + (hi - lo) * k as f64 / 5.0;
        let y = py(v);
        let _ = write!(
            s,
            r##"<line x1="{L}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#eee"/><text x="{}" y="{:.1}" text-anchor="end">{v:.1}</text>"##,
            W - R,
            L - 6.0,
            y + 4.0
        );
        let t = (steps - 1) as f64 * k as f64 / 5.0;
        let _ = write!(
            s,
            r#"<text x="{:.1}" y="{}" text-anchor="middle">{t:.0}</text>"#,
            px(t),
            H - B + 18.0
        );
    }
    let _ = write!(
        s,
        r#"<text x="{:.1}" y="{}" text-anchor="middle">time (s)</text>"#,
        (W - R + L) / 2.0,
        H - 10.0
    );
    let _ = write!(
        s,
        r#"<text x="16" y="{:.1}" transform="rotate(-90 16 {:.1})" text-anchor="middle">{y_label}</text>"#,
        H / 2.0,
        H / 2.0
    );
    if let Some(e) = event_s {
        let x = px(e as f64);
        let _ = write!(
            s,
            r##"<line x1="{x:.1}" x2="{x:.1}" y1="{T}" y2="{}" stroke="#999" stroke-dasharray="4 3"/><text x="{x:.1}" y="{}" fill="#666">event</text>"##,
            H - B,
            T - 4.0
        );
    }
    for (v, label) in marks {
        let y = py(*v);
        let _ = write!(
            s,
            r##"<line x1="{L}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#000" stroke-dasharray="2 4"/><text x="{}" y="{:.1}" fill="#444">{label}</text>"##,
            W - R,
            W - R + 4.0,
            y + 4.0
        );
    }
    for (i, ser) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let pts: Vec<String> = ser
            .values
            .iter()
            .enumerate()
            .map(|(t, &v)| format!("{:.1},{:.1}", px(t as f64), py(v)))
            .collect();
        let _ = write!(
            s,
            r#"<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{}"/>"#,
            pts.join(" ")
        );
        let ly = T + 14.0 + 18.0 * i as f64;
        let _ = write!(
            s,
            r#"<line x1="{}" x2="{}" y1="{ly}" y2="{ly}" stroke="{color}" stroke-width="3"/><text x="{}" y="{}">{}</text>"#,
            W - R + 10.0,
            W - R + 30.0,
            W - R + 36.0,
            ly + 4.0,
            escape(&ser.label)
        );
    }
    s.push_str("</svg>\n");
    s
}

fn escape(t: &str) -> String {
    t.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
