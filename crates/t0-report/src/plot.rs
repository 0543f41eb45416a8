//! The report's plots: plotters drawing into an SVG string. Deterministic (no clock, no
//! randomness, fixed sizes); text is measured by plotters' naive font and drawn by the
//! browser, so no font file is needed.

use plotters::prelude::*;

const SIZE: (u32, u32) = (720, 320);

/// A series of (x, y) points with a legend name.
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

fn err(e: impl std::fmt::Display) -> t0_core::Error {
    t0_core::Error::internal("report plot", e)
}

/// The range of `values` widened by a margin; a single value gets a unit range.
fn range(values: impl Iterator<Item = f64>) -> std::ops::Range<f64> {
    let (lo, hi) =
        values.filter(|v| v.is_finite()).fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
    if !lo.is_finite() {
        return 0.0..1.0;
    }
    let pad = if hi > lo { (hi - lo) * 0.05 } else { 0.5 };
    (lo - pad)..(hi + pad)
}

/// Lines through each series' points (markers on the points), on shared axes.
pub fn lines(
    caption: &str,
    (x_label, y_label): (&str, &str),
    series: &[Series],
    step: bool,
) -> t0_core::Result<String> {
    let xs = range(series.iter().flat_map(|s| s.points.iter().map(|p| p.0)));
    let ys = range(series.iter().flat_map(|s| s.points.iter().map(|p| p.1)));
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(caption, ("sans-serif", 16))
            .margin(10)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .build_cartesian_2d(xs, ys)
            .map_err(err)?;
        chart.configure_mesh().x_desc(x_label).y_desc(y_label).draw().map_err(err)?;
        for (i, s) in series.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            let path: Vec<(f64, f64)> = if step { steps(&s.points) } else { s.points.clone() };
            chart
                .draw_series(LineSeries::new(path, color.stroke_width(2)))
                .map_err(err)?
                .label(s.name.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2)));
            chart.draw_series(s.points.iter().map(|p| Circle::new(*p, 3, color.filled()))).map_err(err)?;
        }
        if series.len() > 1 {
            chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw().map_err(err)?;
        }
        root.present().map_err(err)?;
    }
    Ok(svg)
}

/// Points held until the next one (a state over time).
fn steps(points: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let mut out = Vec::with_capacity(points.len() * 2);
    for (i, p) in points.iter().enumerate() {
        if i > 0 {
            out.push((p.0, points[i - 1].1));
        }
        out.push(*p);
    }
    out
}

/// Each series as points (a scatter), with an optional diagonal y = x.
pub fn scatter(
    caption: &str,
    (x_label, y_label): (&str, &str),
    series: &[Series],
    diagonal: bool,
) -> t0_core::Result<String> {
    let all = || series.iter().flat_map(|s| s.points.iter().flat_map(|p| [p.0, p.1]));
    let (xs, ys) = if diagonal {
        (range(all()), range(all()))
    } else {
        (
            range(series.iter().flat_map(|s| s.points.iter().map(|p| p.0))),
            range(series.iter().flat_map(|s| s.points.iter().map(|p| p.1))),
        )
    };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(caption, ("sans-serif", 16))
            .margin(10)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .build_cartesian_2d(xs.clone(), ys)
            .map_err(err)?;
        chart.configure_mesh().x_desc(x_label).y_desc(y_label).draw().map_err(err)?;
        if diagonal {
            chart
                .draw_series(LineSeries::new([(xs.start, xs.start), (xs.end, xs.end)], BLACK.mix(0.4)))
                .map_err(err)?;
        }
        for (i, s) in series.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            chart
                .draw_series(s.points.iter().map(|p| Circle::new(*p, 3, color.filled())))
                .map_err(err)?
                .label(s.name.clone())
                .legend(move |(x, y)| Circle::new((x + 8, y), 3, color.filled()));
        }
        if series.len() > 1 {
            chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw().map_err(err)?;
        }
        root.present().map_err(err)?;
    }
    Ok(svg)
}

/// One horizontal bar per (name, value), in the given order (highest first when sorted so).
pub fn bars(caption: &str, x_label: &str, bars: &[(String, f64)]) -> t0_core::Result<String> {
    let n = bars.len().max(1);
    let hi = bars.iter().map(|b| b.1).fold(0.0_f64, f64::max).max(1e-9) * 1.1;
    let height = (60 + 22 * n as u32).clamp(160, 900);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (SIZE.0, height)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(caption, ("sans-serif", 16))
            .margin(10)
            .x_label_area_size(36)
            .y_label_area_size(280)
            .build_cartesian_2d(0.0..hi, (0..n).into_segmented())
            .map_err(err)?;
        let names: Vec<String> = bars.iter().map(|b| b.0.clone()).collect();
        chart
            .configure_mesh()
            .x_desc(x_label)
            .y_labels(n)
            .y_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) => {
                    n.checked_sub(1 + i).and_then(|j| names.get(j)).cloned().unwrap_or_default()
                }
                _ => String::new(),
            })
            .draw()
            .map_err(err)?;
        let color = Palette99::pick(0).to_rgba();
        chart
            .draw_series(bars.iter().enumerate().map(|(i, b)| {
                let y = n - 1 - i;
                Rectangle::new([(0.0, SegmentValue::Exact(y)), (b.1, SegmentValue::Exact(y + 1))], color.filled())
            }))
            .map_err(err)?;
        root.present().map_err(err)?;
    }
    Ok(svg)
}
