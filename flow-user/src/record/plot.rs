//! `flow report --plot`: the bandwidth of the top talkers over the range, as PNG or SVG. Text is
//! drawn with the embedded DejaVu Sans, so the picture reads the same on a machine without
//! system fonts.

use std::{path::Path, sync::Once};

use anyhow::{anyhow, bail, Context, Result};
use jiff::tz::TimeZone;
use plotters::{
    coord::Shift,
    prelude::*,
    style::{register_font, FontStyle},
};

use super::time::axis_label;

/// Pixel size of every plot.
pub const WIDTH: u32 = 1200;
pub const HEIGHT: u32 = 600;

/// The bins a plot's range is cut into.
pub const BINS: usize = 600;

/// One line: a label and the rate (bytes/s) of each bin.
pub struct Line {
    pub label: String,
    pub rates: Vec<f64>,
}

fn fonts() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let font = dejavu::sans::regular();
        for family in ["sans-serif", "DejaVu Sans"] {
            // Cannot fail on the embedded font; a failure would only leave text undrawn.
            let _ = register_font(family, FontStyle::Normal, font);
        }
    });
}

/// Writes the plot to `path`: PNG or SVG by its extension.
pub fn write(
    path: &Path,
    title: &str,
    since: i64,
    until: i64,
    lines: &[Line],
    zone: &TimeZone,
) -> Result<()> {
    fonts();
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .map(|e| e.to_ascii_lowercase());
    match extension.as_deref() {
        Some("png") => {
            let mut pixels = vec![0u8; (WIDTH * HEIGHT * 3) as usize];
            {
                let root =
                    BitMapBackend::with_buffer(&mut pixels, (WIDTH, HEIGHT)).into_drawing_area();
                draw(&root, title, since, until, lines, zone)?;
                root.present()
                    .map_err(|e| anyhow!("drawing the plot: {e}"))?;
            }
            let file = std::fs::File::create(path)
                .with_context(|| format!("{}: cannot write the plot", path.display()))?;
            let mut encoder = png::Encoder::new(std::io::BufWriter::new(file), WIDTH, HEIGHT);
            encoder.set_color(png::ColorType::Rgb);
            encoder.set_depth(png::BitDepth::Eight);
            let mut writer = encoder
                .write_header()
                .with_context(|| format!("{}: cannot write the plot", path.display()))?;
            writer
                .write_image_data(&pixels)
                .with_context(|| format!("{}: cannot write the plot", path.display()))?;
            writer
                .finish()
                .with_context(|| format!("{}: cannot write the plot", path.display()))?;
        }
        Some("svg") => {
            let mut text = String::new();
            {
                let root = SVGBackend::with_string(&mut text, (WIDTH, HEIGHT)).into_drawing_area();
                draw(&root, title, since, until, lines, zone)?;
                root.present()
                    .map_err(|e| anyhow!("drawing the plot: {e}"))?;
            }
            std::fs::write(path, text)
                .with_context(|| format!("{}: cannot write the plot", path.display()))?;
        }
        _ => bail!(
            "{}: the plot's file name must end in .png or .svg",
            path.display()
        ),
    }
    Ok(())
}

/// The unit the axis is labelled in and its size in bytes/s.
fn unit(max: f64) -> (&'static str, f64) {
    const UNITS: [(&str, f64); 4] = [
        ("GiB/s", 1024.0 * 1024.0 * 1024.0),
        ("MiB/s", 1024.0 * 1024.0),
        ("KiB/s", 1024.0),
        ("B/s", 1.0),
    ];
    UNITS
        .into_iter()
        .find(|(_, size)| max >= *size * 2.0)
        .unwrap_or(("B/s", 1.0))
}

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    since: i64,
    until: i64,
    lines: &[Line],
    zone: &TimeZone,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let fail = |e: DrawingAreaErrorKind<DB::ErrorType>| anyhow!("drawing the plot: {e:?}");
    root.fill(&WHITE).map_err(fail)?;
    let max = lines
        .iter()
        .flat_map(|l| l.rates.iter().copied())
        .fold(0.0f64, f64::max);
    let (unit, size) = unit(max);
    let top = (max / size * 1.1).max(1.0);
    let span = (until - since).max(1);
    let with_date = span > 86_400_000;
    let with_seconds = span <= 600_000;
    let mut chart = ChartBuilder::on(root)
        .caption(title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(80)
        .build_cartesian_2d(since..until, 0f64..top)
        .map_err(fail)?;
    let timezone = zone.iana_name().unwrap_or("UTC").to_string();
    chart
        .configure_mesh()
        .x_labels(8)
        .y_labels(8)
        .x_label_formatter(&|ms| axis_label(*ms, zone, with_date, with_seconds))
        .y_label_formatter(&|v| format!("{v:.1}"))
        .x_desc(format!("time ({timezone})"))
        .y_desc(format!("bandwidth, {unit} (sent + received)"))
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 15))
        .draw()
        .map_err(fail)?;
    for (i, line) in lines.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let bins = line.rates.len().max(1);
        let width = span as f64 / bins as f64;
        let points = line
            .rates
            .iter()
            .enumerate()
            .map(|(b, rate)| (since + ((b as f64 + 0.5) * width) as i64, rate / size));
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))
            .map_err(fail)?
            .label(line.label.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(3))
            });
    }
    if !lines.is_empty() {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(("sans-serif", 14))
            .draw()
            .map_err(fail)?;
    }
    Ok(())
}
