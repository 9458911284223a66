//! `simulate --plot`: a timeline (Gantt) of bus, reconstruction engine and MMU per tile,
//! or a sweep as curves. SVG, or PNG when the name ends in `.png`.

use plotters::coord::Shift;
use plotters::prelude::*;
use sparsewire_accel::sim::{SimReport, Timeline};
use std::path::Path;

/// DejaVu Sans Mono (Bitstream Vera licence, assets/fonts/DejaVu-LICENSE.txt).
const FONT: &[u8] = include_bytes!("../../../assets/fonts/DejaVuSansMono.ttf");

/// At most this many spans per lane are drawn (the first ones: the pipeline's start).
const MAX_SPANS: usize = 600;

type Result<T> = std::result::Result<T, String>;

fn font() -> Result<()> {
    plotters::style::register_font("sans-serif", FontStyle::Normal, FONT)
        .map_err(|_| "the compiled-in font does not load".to_string())
}

/// The Gantt chart of a simulated workload.
pub fn timeline(out: &Path, title: &str, tl: &Timeline) -> Result<()> {
    font()?;
    let png = out.extension().is_some_and(|e| e == "png");
    if png {
        gantt(
            BitMapBackend::new(out, (1200, 420)).into_drawing_area(),
            title,
            tl,
        )
    } else {
        gantt(
            SVGBackend::new(out, (1200, 420)).into_drawing_area(),
            title,
            tl,
        )
    }
    .map_err(|e| format!("{}: {e}", out.display()))
}

fn gantt<DB: DrawingBackend>(area: DrawingArea<DB, Shift>, title: &str, tl: &Timeline) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let e = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    area.fill(&WHITE).map_err(e)?;
    let lanes = [
        ("bus", &tl.transfers),
        ("rebuild", &tl.rebuilds),
        ("MMU", &tl.multiplies),
    ];
    let end = lanes
        .iter()
        .flat_map(|(_, s)| s.iter().take(MAX_SPANS))
        .map(|s| s.end)
        .fold(0f64, f64::max)
        * 1e3;
    let mut c = ChartBuilder::on(&area)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(80)
        .build_cartesian_2d(0f64..end.max(1e-9), 0f64..3.0)
        .map_err(e)?;
    c.configure_mesh()
        .x_desc("milliseconds")
        .y_labels(0)
        .disable_y_mesh()
        .label_style(("sans-serif", 13))
        .draw()
        .map_err(e)?;
    let colors = [
        RGBColor(214, 39, 40),
        RGBColor(31, 119, 180),
        RGBColor(44, 160, 44),
    ];
    for (lane, (name, spans)) in lanes.iter().enumerate() {
        let y = (2 - lane) as f64;
        let color = colors[lane].to_rgba();
        c.draw_series(std::iter::once(Text::new(
            name.to_string(),
            (0.0, y + 0.92),
            ("sans-serif", 13).into_font(),
        )))
        .map_err(e)?;
        c.draw_series(spans.iter().take(MAX_SPANS).enumerate().map(|(i, s)| {
            let shade = if i % 2 == 0 {
                color.filled()
            } else {
                color.mix(0.6).filled()
            };
            Rectangle::new([(s.start * 1e3, y + 0.15), (s.end * 1e3, y + 0.85)], shade)
        }))
        .map_err(e)?;
    }
    area.present().map_err(e)?;
    Ok(())
}

/// A sweep: total time and the dense baseline's against the swept value.
pub fn sweep(out: &Path, param: &str, points: &[(f64, SimReport)]) -> Result<()> {
    font()?;
    let png = out.extension().is_some_and(|e| e == "png");
    if png {
        curves(
            BitMapBackend::new(out, (900, 560)).into_drawing_area(),
            param,
            points,
        )
    } else {
        curves(
            SVGBackend::new(out, (900, 560)).into_drawing_area(),
            param,
            points,
        )
    }
    .map_err(|e| format!("{}: {e}", out.display()))
}

fn curves<DB: DrawingBackend>(
    area: DrawingArea<DB, Shift>,
    param: &str,
    points: &[(f64, SimReport)],
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let e = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    area.fill(&WHITE).map_err(e)?;
    let x0 = points.iter().map(|p| p.0).fold(f64::INFINITY, f64::min);
    let x1 = points.iter().map(|p| p.0).fold(f64::NEG_INFINITY, f64::max);
    let y1 = points
        .iter()
        .map(|p| p.1.total_seconds.max(p.1.dense_total_seconds) * 1e3)
        .fold(0f64, f64::max);
    let mut c = ChartBuilder::on(&area)
        .caption(format!("sweep of {param}"), ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(60)
        .build_cartesian_2d(x0..x1.max(x0 + 1e-9), 0f64..y1 * 1.05 + 1e-9)
        .map_err(e)?;
    c.configure_mesh()
        .x_desc(param)
        .y_desc("milliseconds")
        .label_style(("sans-serif", 13))
        .draw()
        .map_err(e)?;
    for (i, (name, get)) in [
        (
            "sparsewire",
            (|r: &SimReport| r.total_seconds) as fn(&SimReport) -> f64,
        ),
        ("dense weights", |r: &SimReport| r.dense_total_seconds),
    ]
    .into_iter()
    .enumerate()
    {
        let color = Palette99::pick(i).to_rgba();
        let pts: Vec<(f64, f64)> = points.iter().map(|(x, r)| (*x, get(r) * 1e3)).collect();
        c.draw_series(LineSeries::new(pts.iter().copied(), color.stroke_width(2)))
            .map_err(e)?
            .label(name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
            });
        c.draw_series(pts.iter().map(|&p| Circle::new(p, 3, color.filled())))
            .map_err(e)?;
    }
    c.configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 12))
        .draw()
        .map_err(e)?;
    area.present().map_err(e)?;
    Ok(())
}

/// `run --plot`: per pass, the measured link rate, the mean sparsity sent and the time
/// spent waiting for tiles (missed deadlines in red), against the run's clock.
pub fn link_timeline(out: &Path, r: &sparsewire_link::run::RunReport) -> Result<()> {
    font()?;
    let png = out.extension().is_some_and(|e| e == "png");
    if png {
        link_panels(BitMapBackend::new(out, (1200, 720)).into_drawing_area(), r)
    } else {
        link_panels(SVGBackend::new(out, (1200, 720)).into_drawing_area(), r)
    }
    .map_err(|e| format!("{}: {e}", out.display()))
}

fn link_panels<DB: DrawingBackend>(
    area: DrawingArea<DB, Shift>,
    r: &sparsewire_link::run::RunReport,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let e = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    area.fill(&WHITE).map_err(e)?;
    let passes = &r.pass_reports;
    let t1 = passes.last().map_or(1.0, |p| p.end).max(1e-3);
    let panels = area.split_evenly((3, 1));
    type Get = fn(&sparsewire_link::run::PassReport) -> f64;
    let series: [(&str, &str, Get); 3] = [
        ("link rate measured by the client", "GB/s", |p| {
            p.bandwidth_gbps.unwrap_or(0.0)
        }),
        ("mean sparsity sent", "sparsity", |p| {
            p.levels.iter().map(|l| f64::from(*l)).sum::<f64>() / p.levels.len().max(1) as f64
        }),
        ("waiting for tiles (red: deadline missed)", "ms", |p| {
            p.stall_seconds * 1e3
        }),
    ];
    for (i, (panel, (name, unit, get))) in panels.iter().zip(series).enumerate() {
        let y1 = passes
            .iter()
            .map(get)
            .fold(0f64, f64::max)
            .max(if i == 1 { 1.0 } else { 1e-6 });
        let title = if i == 0 {
            format!("sparsewire run: {} ({} passes)", r.policy, r.passes)
        } else {
            String::new()
        };
        let mut c = ChartBuilder::on(panel)
            .caption(title, ("sans-serif", 16))
            .margin(8)
            .x_label_area_size(28)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..t1, 0f64..y1 * 1.08)
            .map_err(e)?;
        c.configure_mesh()
            .x_desc(if i == 2 { "seconds" } else { "" })
            .y_desc(unit)
            .label_style(("sans-serif", 12))
            .draw()
            .map_err(e)?;
        let color = Palette99::pick(i).to_rgba();
        c.draw_series(LineSeries::new(
            passes.iter().map(|p| (p.start, get(p))),
            color.stroke_width(2),
        ))
        .map_err(e)?
        .label(name)
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
        if i == 2 {
            c.draw_series(
                passes
                    .iter()
                    .filter(|p| p.hit == Some(false))
                    .map(|p| Circle::new((p.start, get(p)), 3, RED.filled())),
            )
            .map_err(e)?;
        }
        c.configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(("sans-serif", 12))
            .draw()
            .map_err(e)?;
    }
    area.present().map_err(e)?;
    Ok(())
}
