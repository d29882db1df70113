//! What every plot shares: the caps, colours and font name, axis ticks, the legend strip and
//! the "no data" panel.

use anyhow::{Result, anyhow};
use plotters::coord::Shift;
use plotters::coord::ranged1d::Ranged;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

/// The family name the embedded font is registered under. SVG text names it too, so a browser
/// draws SVG text with its own sans-serif face.
pub(super) const FONT: &str = "sans-serif";

/// Caps on what one plot draws (a hostile results.json must not make rendering slow).
pub(super) const MAX_SIDE: usize = 128;
pub(super) const MAX_SERIES: usize = 12;
pub(super) const MAX_POINTS: usize = 4096;
pub(super) const MAX_ROWS: usize = 48;

/// Series colours, chosen to stay distinct in print and for common colour blindness.
pub const PALETTE: [RGBColor; 12] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
    RGBColor(140, 86, 75),
    RGBColor(127, 127, 127),
    RGBColor(23, 190, 207),
    RGBColor(188, 189, 34),
    RGBColor(227, 119, 194),
    RGBColor(40, 40, 40),
    RGBColor(90, 90, 200),
];
pub(super) const NAN_GREY: RGBColor = RGBColor(200, 200, 200);
pub(super) const BAND: RGBColor = RGBColor(190, 190, 190);
/// Individual values of a reference population in an interval plot.
pub(super) const REFERENCE_DOT: RGBColor = RGBColor(90, 90, 90);

pub(super) fn err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("drawing a plot: {e:?}")
}

pub(super) fn text_style(size: u32) -> TextStyle<'static> {
    (FONT, size).into_font().color(&BLACK)
}

/// An explicit panel saying there is nothing to plot, with the plot's title.
pub(super) fn no_data<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    why: &str,
) -> Result<()> {
    let (w, h) = root.dim_in_pixel();
    let (w, h) = (w as i32, h as i32);
    root.draw(&Rectangle::new(
        [(4, 4), (w - 4, h - 4)],
        NAN_GREY.stroke_width(2),
    ))
    .map_err(err)?;
    let centre = |s: u32| {
        text_style(s).pos(plotters::style::text_anchor::Pos::new(
            plotters::style::text_anchor::HPos::Center,
            plotters::style::text_anchor::VPos::Center,
        ))
    };
    root.draw(&Text::new(
        title.to_string(),
        (w / 2, h / 2 - 16),
        centre(17),
    ))
    .map_err(err)?;
    root.draw(&Text::new(
        format!("no data: {why}"),
        (w / 2, h / 2 + 14),
        centre(14),
    ))
    .map_err(err)?;
    Ok(())
}

/// A range padded so constant data still spans something.
pub(super) fn padded(lo: f64, hi: f64) -> Option<(f64, f64)> {
    if !(lo.is_finite() && hi.is_finite()) || hi < lo || !(hi - lo).is_finite() {
        return None;
    }
    let span = hi - lo;
    let pad = if span > 0.0 {
        span * 0.06
    } else {
        (lo.abs() * 0.1).max(0.5)
    };
    let (a, b) = (lo - pad, hi + pad);
    (a.is_finite() && b.is_finite()).then_some((a, b))
}

pub(super) fn finite_bounds(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    values
        .filter(|v| v.is_finite())
        .fold(None, |acc, v| match acc {
            None => Some((v, v)),
            Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
        })
}

/// An f64 axis whose ticks sit at given values (plotters' `with_key_points` over f64 has no
/// label formatter): cell centres for heatmaps, rows for interval plots.
pub(super) struct Ticked {
    inner: RangedCoordf64,
    ticks: Vec<f64>,
}

impl Ticked {
    pub(super) fn new(lo: f64, hi: f64, ticks: Vec<f64>) -> Ticked {
        Ticked {
            inner: (lo..hi).into(),
            ticks,
        }
    }
}

impl Ranged for Ticked {
    type FormatOption = plotters::coord::ranged1d::DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        self.inner.map(value, limit)
    }

    fn key_points<Hint: plotters::coord::ranged1d::KeyPointHint>(&self, _: Hint) -> Vec<f64> {
        self.ticks.clone()
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.inner.range()
    }
}

/// How a legend entry is drawn.
#[derive(Clone, Copy)]
pub(super) enum Mark {
    Line(RGBColor, bool),
    Dot(RGBColor),
    Bar(RGBColor),
    Tick,
}

pub(super) const LEGEND_ROW: i32 = 18;

/// Legend entries laid out left to right, wrapping, in a strip under the plot (so the legend
/// never hides data). Returns the strip height needed for `width`.
pub(super) fn legend_height(entries: &[(String, Mark)], width: u32) -> u32 {
    if entries.is_empty() {
        return 0;
    }
    let rows = legend_layout(entries, width as i32)
        .last()
        .map_or(1, |p| p.1 + 1);
    rows as u32 * LEGEND_ROW as u32 + 8
}

/// (x, row) of each entry.
pub(super) fn legend_layout(entries: &[(String, Mark)], width: i32) -> Vec<(i32, i32)> {
    let (mut x, mut row) = (12, 0);
    entries
        .iter()
        .map(|(label, _)| {
            let w = 30 + 7 * label.chars().count().min(60) as i32;
            if x + w > width - 8 && x > 12 {
                x = 12;
                row += 1;
            }
            let at = (x, row);
            x += w + 10;
            at
        })
        .collect()
}

pub(super) fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    entries: &[(String, Mark)],
) -> Result<()> {
    let (w, _) = area.dim_in_pixel();
    for ((label, mark), (x, row)) in entries.iter().zip(legend_layout(entries, w as i32)) {
        let y = row * LEGEND_ROW + LEGEND_ROW / 2 + 2;
        match *mark {
            Mark::Line(c, dashed) => {
                let style = c.stroke_width(2);
                if dashed {
                    for k in 0..3 {
                        area.draw(&PathElement::new(
                            vec![(x + k * 8, y), (x + k * 8 + 5, y)],
                            style,
                        ))
                        .map_err(err)?;
                    }
                } else {
                    area.draw(&PathElement::new(vec![(x, y), (x + 20, y)], style))
                        .map_err(err)?;
                }
            }
            Mark::Dot(c) => area
                .draw(&Circle::new((x + 10, y), 5, c.filled()))
                .map_err(err)?,
            Mark::Bar(c) => area
                .draw(&Rectangle::new([(x, y - 5), (x + 20, y + 5)], c.filled()))
                .map_err(err)?,
            Mark::Tick => area
                .draw(&PathElement::new(
                    vec![(x + 10, y - 7), (x + 10, y + 7)],
                    BLACK.stroke_width(2),
                ))
                .map_err(err)?,
        }
        let style = text_style(12).pos(plotters::style::text_anchor::Pos::new(
            plotters::style::text_anchor::HPos::Left,
            plotters::style::text_anchor::VPos::Center,
        ));
        let text: String = label.chars().take(60).collect();
        area.draw(&Text::new(text, (x + 26, y), style))
            .map_err(err)?;
    }
    Ok(())
}

/// Splits off a legend strip at the bottom and draws the legend in it.
pub(super) fn with_legend<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    entries: &[(String, Mark)],
) -> Result<DrawingArea<DB, Shift>> {
    let (w, h) = root.dim_in_pixel();
    let lh = legend_height(entries, w).min(h / 2);
    if lh == 0 {
        return Ok(root.clone());
    }
    let (main, strip) = root.split_vertically(h as i32 - lh as i32);
    draw_legend(&strip, entries)?;
    Ok(main)
}

/// Integer tick positions `0..n`, thinned to at most about `max` labels.
pub(super) fn ticks(n: usize, max: usize) -> Vec<f64> {
    let step = n.div_ceil(max.max(1)).max(1);
    (0..n).step_by(step).map(|i| i as f64).collect()
}

/// Runs of finite points of one series.
pub(super) type Segments = Vec<Vec<(f64, f64)>>;

/// Tick labels short enough for an axis.
pub(super) fn short(v: f64) -> String {
    let a = v.abs();
    if a != 0.0 && !(1e-3..1e5).contains(&a) {
        format!("{v:.1e}")
    } else if a >= 100.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}
