//! `latency.svg`: every operation of a history as a point (when it was
//! invoked, how long it took, log scale), coloured by outcome, over the
//! fault windows shaded by kind. What to look for: the gaps and the
//! towers of slow operations should sit inside the shaded windows, and
//! the points should come back down when a window closes.

use std::path::Path;

use anyhow::{anyhow, Result};
use plotters::prelude::*;

use floe_history::{Line, Type};

/// What a point stands for; each class gets a colour and a legend entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Class {
    /// A commit that landed.
    CommitOk,
    /// A commit refused (conflict, out of date).
    CommitFail,
    /// Any operation whose outcome is unknown.
    Indeterminate,
    /// A read of a branch tip.
    Read,
    /// A worker's task completion.
    Task,
    /// Branch and tag creation, duplicate deliveries, anything else.
    Other,
}

impl Class {
    const ALL: [Class; 6] = [
        Class::CommitOk,
        Class::CommitFail,
        Class::Indeterminate,
        Class::Read,
        Class::Task,
        Class::Other,
    ];

    fn colour(self) -> RGBColor {
        match self {
            Class::CommitOk => RGBColor(46, 139, 87),
            Class::CommitFail => RGBColor(230, 140, 20),
            Class::Indeterminate => RGBColor(200, 30, 30),
            Class::Read => RGBColor(40, 90, 200),
            Class::Task => RGBColor(160, 110, 60),
            Class::Other => RGBColor(120, 120, 120),
        }
    }

    fn label(self) -> &'static str {
        match self {
            Class::CommitOk => "commit ok",
            Class::CommitFail => "commit refused",
            Class::Indeterminate => "indeterminate",
            Class::Read => "read",
            Class::Task => "task completion",
            Class::Other => "branch / tag / resend",
        }
    }
}

/// One operation: invoked at `at_s` (seconds from the history's start),
/// took `ms`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Point {
    /// Invocation time, seconds.
    pub at_s: f64,
    /// Latency, milliseconds (to the end of the history when it never
    /// completed).
    pub ms: f64,
    /// Its class.
    pub class: Class,
}

/// A fault from its injection to its heal.
#[derive(Clone, Debug, PartialEq)]
pub struct Window {
    /// Start, seconds.
    pub from_s: f64,
    /// End, seconds (the history's end if never healed).
    pub to_s: f64,
    /// The fault's kind (`kill`, `pause`, ...).
    pub kind: String,
}

/// The operations of a history as points. A worker's `claim` is left
/// out: it is written when the grant arrives, so it has no latency.
pub fn points(lines: &[Line]) -> Vec<Point> {
    let start = lines.first().map_or(0, |l| l.time);
    let end = lines.iter().map(|l| l.time).max().unwrap_or(start);
    let (ops, _) = floe_history::operations(lines);
    ops.iter()
        .filter(|op| op.invoke.f != "claim")
        .map(|op| {
            let done = op.end.map_or(end, |e| e.time);
            let class = match (op.invoke.f.as_str(), op.outcome()) {
                (_, Type::Info) => Class::Indeterminate,
                ("commit", Type::Ok) => Class::CommitOk,
                ("commit", _) => Class::CommitFail,
                ("read", _) => Class::Read,
                ("complete", _) => Class::Task,
                _ => Class::Other,
            };
            Point {
                at_s: seconds(op.invoke.time.saturating_sub(start)),
                ms: (done.saturating_sub(op.invoke.time) as f64 / 1e6).max(0.01),
                class,
            }
        })
        .collect()
}

/// At most about `budget` of `points`, evenly thinned, keeping every
/// indeterminate and every slow one (the slowest 5%): a 300 s run has
/// 100,000 operations, more than a browser wants to draw.
pub fn thin(points: Vec<Point>, budget: usize) -> Vec<Point> {
    if points.len() <= budget {
        return points;
    }
    let mut ms: Vec<f64> = points.iter().map(|p| p.ms).collect();
    ms.sort_by(f64::total_cmp);
    let slow = ms[ms.len() * 95 / 100];
    let every = points.len().div_ceil(budget);
    points
        .into_iter()
        .enumerate()
        .filter(|(i, p)| p.class == Class::Indeterminate || p.ms >= slow || i % every == 0)
        .map(|(_, p)| p)
        .collect()
}

/// The nemesis's fault windows: each fault line to the `heal` after it.
pub fn windows(lines: &[Line]) -> Vec<Window> {
    let start = lines.first().map_or(0, |l| l.time);
    let end = lines.iter().map(|l| l.time).max().unwrap_or(start);
    let mut out: Vec<Window> = Vec::new();
    let mut open: Option<(u64, String)> = None;
    for line in lines.iter().filter(|l| l.process == "nemesis") {
        if line.f == "heal" {
            if let Some((from, kind)) = open.take() {
                out.push(window(start, from, line.time, kind));
            }
        } else {
            open = Some((line.time, line.f.clone()));
        }
    }
    if let Some((from, kind)) = open {
        out.push(window(start, from, end, kind));
    }
    out
}

fn window(start: u64, from: u64, to: u64, kind: String) -> Window {
    Window {
        from_s: seconds(from.saturating_sub(start)),
        to_s: seconds(to.saturating_sub(start)),
        kind,
    }
}

fn seconds(ns: u64) -> f64 {
    ns as f64 / 1e9
}

fn fault_colour(kind: &str) -> RGBColor {
    match kind {
        "kill" => RGBColor(220, 60, 60),
        "pause" => RGBColor(150, 80, 200),
        "partition" => RGBColor(240, 170, 40),
        "member" => RGBColor(40, 160, 160),
        _ => RGBColor(128, 128, 128),
    }
}

/// Draws the picture of `lines` into `path` (SVG).
pub fn draw(lines: &[Line], path: &Path, title: &str) -> Result<()> {
    let all = points(lines);
    let counts: Vec<(Class, usize)> = Class::ALL
        .iter()
        .map(|c| (*c, all.iter().filter(|p| p.class == *c).count()))
        .collect();
    let pts = thin(all, 20_000);
    let wins = windows(lines);
    let max_s = pts
        .iter()
        .map(|p| p.at_s)
        .chain(wins.iter().map(|w| w.to_s))
        .fold(1.0, f64::max);
    let max_ms = pts.iter().map(|p| p.ms).fold(10.0, f64::max) * 1.5;
    let root = SVGBackend::new(path, (1600, 720)).into_drawing_area();
    let fail = |e: &dyn std::fmt::Display| anyhow!("cannot draw {}: {e}", path.display());
    root.fill(&WHITE).map_err(|e| fail(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 28))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..max_s * 1.01, (0.05..max_ms).log_scale())
        .map_err(|e| fail(&e))?;
    chart
        .configure_mesh()
        .x_desc("time since the start (s)")
        .y_desc("latency (ms, log scale)")
        .y_label_formatter(&|v| ms_label(*v))
        .label_style(("sans-serif", 15))
        .draw()
        .map_err(|e| fail(&e))?;
    for w in &wins {
        let band = [(w.from_s, 0.05), (w.to_s, max_ms)];
        let colour = fault_colour(&w.kind).mix(0.15).filled();
        chart
            .draw_series([Rectangle::new(band, colour)])
            .map_err(|e| fail(&e))?;
    }
    for (class, count) in counts {
        let colour = class.colour();
        let mine = pts.iter().filter(|p| p.class == class);
        chart
            .draw_series(mine.map(|p| Circle::new((p.at_s, p.ms), 2, colour.mix(0.6).filled())))
            .map_err(|e| fail(&e))?
            .label(format!("{} ({count})", class.label()))
            .legend(move |(x, y)| Circle::new((x + 8, y), 4, colour.filled()));
    }
    // The fault kinds join the legend as shaded swatches, with counts.
    for kind in ["kill", "pause", "partition", "member"] {
        let n = wins.iter().filter(|w| w.kind == kind).count();
        if n == 0 {
            continue;
        }
        let colour = fault_colour(kind);
        chart
            .draw_series(std::iter::empty::<Circle<(f64, f64), i32>>())
            .map_err(|e| fail(&e))?
            .label(format!("fault: {kind} ({n})"))
            .legend(move |(x, y)| {
                Rectangle::new([(x, y - 5), (x + 16, y + 5)], colour.mix(0.3).filled())
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()
        .map_err(|e| fail(&e))?;
    root.present().map_err(|e| fail(&e))?;
    Ok(())
}

/// `0.1`, `1`, `10`, `1000` rather than `1000.0`.
fn ms_label(ms: f64) -> String {
    if ms >= 1.0 {
        format!("{ms:.0}")
    } else {
        format!("{ms}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history(text: &str) -> Vec<Line> {
        floe_history::parse(text).expect("parses")
    }

    const H: &str = r#"
{"process":0,"type":"invoke","f":"commit","value":{},"time":0}
{"process":"nemesis","type":"info","f":"kill","value":{},"time":1000000000}
{"process":0,"type":"ok","f":"commit","value":{},"time":1500000000}
{"process":1,"type":"invoke","f":"read","value":{},"time":2000000000}
{"process":"nemesis","type":"info","f":"heal","value":{},"time":3000000000}
{"process":1,"type":"info","f":"read","value":{},"time":3000000000}
{"process":2,"type":"invoke","f":"commit","value":{},"time":3500000000}
"#;

    #[test]
    fn claims_have_no_latency_and_are_left_out() {
        let claim = r#"
{"process":"w1/0","type":"invoke","f":"claim","value":{},"time":0}
{"process":"w1/0","type":"ok","f":"claim","value":{},"time":0}
{"process":"w1/0","type":"invoke","f":"complete","value":{},"time":0}
{"process":"w1/0","type":"ok","f":"complete","value":{},"time":3000000}
"#;
        let pts = points(&history(claim));
        assert_eq!(pts.len(), 1);
        assert_eq!((pts[0].class, pts[0].ms), (Class::Task, 3.0));
    }

    #[test]
    fn points_are_latencies_by_outcome() {
        let pts = points(&history(H));
        assert_eq!(pts.len(), 3);
        assert_eq!((pts[0].class, pts[0].ms), (Class::CommitOk, 1500.0));
        assert_eq!((pts[1].class, pts[1].at_s), (Class::Indeterminate, 2.0));
        // Never completed: indeterminate, up to the end of the history.
        assert_eq!((pts[2].class, pts[2].ms), (Class::Indeterminate, 0.01));
    }

    #[test]
    fn thinning_keeps_the_slow_and_the_unknown() {
        let p = |ms: f64, class| Point {
            at_s: 0.0,
            ms,
            class,
        };
        let mut pts: Vec<Point> = (0..1000)
            .map(|i| p(1.0 + i as f64 / 1000.0, Class::Read))
            .collect();
        pts.push(p(5000.0, Class::CommitOk));
        pts.push(p(0.5, Class::Indeterminate));
        let kept = thin(pts.clone(), 100);
        assert!(kept.len() < 200, "{}", kept.len());
        assert!(kept.iter().any(|x| x.ms == 5000.0));
        assert!(kept.iter().any(|x| x.class == Class::Indeterminate));
        assert_eq!(thin(pts[..50].to_vec(), 100).len(), 50);
    }

    #[test]
    fn windows_run_from_fault_to_heal() {
        let w = windows(&history(H));
        assert_eq!(
            w,
            vec![Window {
                from_s: 1.0,
                to_s: 3.0,
                kind: "kill".into()
            }]
        );
    }

    #[test]
    fn draws_an_svg() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("latency.svg");
        draw(&history(H), &path, "test").expect("draws");
        let svg = std::fs::read_to_string(&path).expect("written");
        assert!(
            svg.starts_with("<svg") && svg.contains("commit ok (1)"),
            "{svg}"
        );
    }
}
