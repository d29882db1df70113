//! What the templates render: plain data with every number already formatted, and the plots
//! drawn so far (their files collect in [`Plots`]).

use std::collections::BTreeMap;

use anyhow::Result;
use serde::Serialize;

use super::plot::Plot;

/// One experiment's part of the report.
#[derive(Serialize)]
pub struct Section {
    /// `e2`: the experiment id, also the HTML anchor.
    pub id: String,
    pub title: String,
    /// The short name in the contents (`E0c`), filled in by `report::render`.
    pub nav: String,
    /// What the experiment tests, in a sentence.
    pub question: String,
    /// What the numbers are read against.
    pub null: String,
    /// A plain reading of this audit's numbers.
    pub reading: String,
    pub tables: Vec<TableView>,
    pub plots: Vec<PlotView>,
}

#[derive(Serialize)]
pub struct TableView {
    pub caption: String,
    pub columns: Vec<String>,
    pub rows: Vec<Vec<String>>,
    /// Set when rows were left out: where the full table is.
    pub more: Option<String>,
}

/// Rows a report table shows; the CSVs under `data/` hold every row.
const MAX_TABLE_ROWS: usize = 40;

/// One column of a report table: its header beside the cell it shows for an item, so a header
/// cannot drift from its cells.
pub type Column<'a, T> = (&'a str, &'a dyn Fn(&T) -> String);

impl TableView {
    /// A table of one row per item, its columns as listed.
    pub fn of<'i, T: 'i>(
        caption: &str,
        csv: &str,
        items: impl IntoIterator<Item = &'i T>,
        columns: &[Column<'_, T>],
    ) -> Self {
        let rows = items
            .into_iter()
            .map(|x| columns.iter().map(|(_, cell)| cell(x)).collect())
            .collect();
        let headers: Vec<&str> = columns.iter().map(|(h, _)| *h).collect();
        TableView::new(caption, &headers, rows, csv)
    }

    pub fn new(caption: &str, columns: &[&str], mut rows: Vec<Vec<String>>, csv: &str) -> Self {
        let more = (rows.len() > MAX_TABLE_ROWS).then(|| {
            format!(
                "{} more rows in data/{csv}.csv",
                rows.len() - MAX_TABLE_ROWS
            )
        });
        rows.truncate(MAX_TABLE_ROWS);
        TableView {
            caption: caption.into(),
            columns: columns.iter().map(|c| c.to_string()).collect(),
            rows,
            more,
        }
    }
}

#[derive(Serialize)]
pub struct PlotView {
    pub caption: String,
    /// `plots/<name>.svg` and `.png`, as written beside the report.
    pub svg_file: String,
    pub png_file: String,
    /// The SVG itself, inlined in report.html.
    pub svg: String,
    /// Heatmaps sit side by side on wide screens; charts take the full width.
    pub heatmap: bool,
}

/// The plot files drawn for a report, by file name.
#[derive(Default)]
pub struct Plots {
    pub files: BTreeMap<String, Vec<u8>>,
}

impl Plots {
    /// Draws `plot` as `plots/<name>.svg` and `.png`. Names must be unique in a report.
    pub fn add(&mut self, name: &str, caption: &str, plot: &Plot) -> Result<PlotView> {
        let r = plot.render()?;
        let (svg_file, png_file) = (format!("plots/{name}.svg"), format!("plots/{name}.png"));
        anyhow::ensure!(
            !self.files.contains_key(&svg_file),
            "plot {name} drawn twice"
        );
        self.files
            .insert(svg_file.clone(), r.svg.clone().into_bytes());
        self.files.insert(png_file.clone(), r.png);
        Ok(PlotView {
            caption: caption.into(),
            svg_file,
            png_file,
            svg: r.svg,
            heatmap: matches!(plot, Plot::Heatmap(_)),
        })
    }
}
