//! Plots from plain data, each drawn twice by the same code: as SVG (inlined in report.html)
//! and as PNG. Text is laid out with one embedded font registered from bytes, so the PNG does
//! not depend on the fonts of the machine, and the PNG encoder writes pixels only (no time,
//! no text chunks): the same data gives the same bytes.
//!
//! Every plot degrades to an explicit "no data" panel when it has nothing finite to show, and
//! sizes are capped, because results.json may come from a bundle a stranger made.

mod common;
mod heatmap;
mod intervals;
mod lines;
mod spec;

use std::sync::OnceLock;

use anyhow::{Result, bail};
use plotters::coord::Shift;
use plotters::prelude::*;

pub use common::PALETTE;
use common::{FONT, MAX_ROWS, MAX_SERIES, err};
pub use spec::{Heatmap, IntervalRow, Intervals, Lines, Plot, Rendered, Series};

const FONT_BYTES: &[u8] = include_bytes!("../../../assets/fonts/DejaVuSans.ttf");

fn register_font() -> Result<()> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| {
        plotters::style::register_font(FONT, FontStyle::Normal, FONT_BYTES).is_ok()
    });
    if !ok {
        bail!("the embedded plot font could not be loaded");
    }
    Ok(())
}

impl Plot {
    fn size(&self) -> (u32, u32) {
        match self {
            Plot::Heatmap(_) => (620, 540),
            Plot::Lines(p) => (720, 420 + 18 * (p.series.len().min(MAX_SERIES) as u32 / 3)),
            Plot::Intervals(p) => (720, 130 + 26 * p.rows.len().clamp(1, MAX_ROWS) as u32),
        }
    }

    /// Draws the plot as SVG and PNG; the same plot gives the same bytes.
    pub fn render(&self) -> Result<Rendered> {
        register_font()?;
        let (w, h) = self.size();
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, (w, h)).into_drawing_area();
            self.draw(&root)?;
            root.present().map_err(err)?;
        }
        let mut rgb = vec![0u8; w as usize * h as usize * 3];
        {
            let root = BitMapBackend::with_buffer(&mut rgb, (w, h)).into_drawing_area();
            self.draw(&root)?;
            root.present().map_err(err)?;
        }
        Ok(Rendered {
            svg,
            png: encode_png(&rgb, w, h)?,
        })
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()> {
        root.fill(&WHITE).map_err(err)?;
        match self {
            Plot::Heatmap(p) => heatmap::draw_heatmap(p, root),
            Plot::Lines(p) => lines::draw_lines(p, root),
            Plot::Intervals(p) => intervals::draw_intervals(p, root),
        }
    }
}

/// RGB pixels to PNG: only the IHDR, IDAT and IEND chunks, so no timestamp or text.
pub fn encode_png(rgb: &[u8], w: u32, h: u32) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, w, h);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        enc.set_compression(png::Compression::Best);
        let mut writer = enc.write_header()?;
        writer.write_image_data(rgb)?;
        writer.finish()?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
