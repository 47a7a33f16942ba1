//! PNG bar charts of the benchmark results (bench/results.json): one chart per
//! scenario (and mode), one bar per system at its median, a whisker from the
//! slowest to the fastest run, the value above each bar, and our proxy
//! (`spectrum-xdp`, `spectrum-tc`, `spectrum-auto`) in its own colour.
//!
//! Text is drawn by plotters' `ab_glyph` backend (pure Rust) with DejaVu Sans
//! loaded at run time from Debian's `fonts-dejavu-core`, which
//! `cargo xtask setup` installs: no fontconfig or freetype.
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{Context, bail};
use plotters::prelude::*;
use plotters::style::FontStyle;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use serde_json::Value;

/// The font every chart's text is drawn with (Debian's fonts-dejavu-core).
pub const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";
/// Titles, when present (same package); the regular face otherwise.
const BOLD_FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf";
/// The family name the fonts are registered under with plotters.
const FAMILY: &str = "sans-serif";

/// Chart size in pixels: wide enough for eight systems' names side by side.
pub const WIDTH: u32 = 1000;
pub const HEIGHT: u32 = 450;

/// The systems whose bars get their own colour: this proxy, one system per
/// datapath (`spectrum-xdp`, ...).
pub const OURS_PREFIX: &str = "spectrum-";
/// One of them.
#[cfg(test)]
pub const OURS: &str = "spectrum-xdp";
pub const OURS_COLOUR: RGBColor = RGBColor(230, 85, 13);
pub const OTHER_COLOUR: RGBColor = RGBColor(107, 142, 190);
/// Not a grey, so that anti-aliased black text never produces it exactly.
pub const WHISKER_COLOUR: RGBColor = RGBColor(20, 30, 60);
const CAPTION_COLOUR: RGBColor = RGBColor(90, 90, 90);
const NOT_SUPPORTED: &str = "not supported";

/// One PNG bar chart per scenario in `dir` (created if missing), named
/// `<scenario>.png` (with `-<mode>` appended when rows carry a non-empty
/// "mode"), plus nothing else; returns the paths written.
///
/// A system whose row has no median (`null` or missing: it does not support
/// the scenario) keeps its slot, labelled "not supported", without a bar.
/// Systems keep the order in which they first appear in `results`.
pub fn write_charts(results: &Value, dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let rows = results
        .get("results")
        .and_then(Value::as_array)
        .context("benchmark results: no \"results\" array")?;
    let charts = group(rows)?;
    register_fonts()?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let caption = caption(results);
    let mut written = Vec::with_capacity(charts.len());
    for chart in &charts {
        let path = dir.join(chart.file_name());
        draw(chart, &caption, &path).with_context(|| format!("drawing {}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

/// One chart: the rows of one scenario and mode.
#[derive(Debug)]
struct Chart {
    scenario: String,
    mode: String,
    unit: String,
    /// From the rows' `"lower_is_better"`: said in the title.
    lower_is_better: bool,
    bars: Vec<Bar>,
}

#[derive(Debug)]
struct Bar {
    system: String,
    /// None: the system does not support the scenario.
    median: Option<f64>,
    runs: Vec<f64>,
    /// What a bar without a median says: the row's `"support"`, else
    /// "not supported".
    note: String,
}

impl Chart {
    fn file_name(&self) -> String {
        if self.mode.is_empty() {
            format!("{}.png", file_safe(&self.scenario))
        } else {
            format!(
                "{}-{}.png",
                file_safe(&self.scenario),
                file_safe(&self.mode)
            )
        }
    }

    /// (min, max) of the runs of a bar that has at least two.
    fn whisker(bar: &Bar) -> Option<(f64, f64)> {
        if bar.median.is_none() || bar.runs.len() < 2 {
            return None;
        }
        Some(super::report::spread(&bar.runs))
    }

    /// The y range: from 0 (or below, for a negative value) to the highest
    /// median or run, with head room for the value labels.
    fn y_range(&self) -> (f64, f64) {
        let values = self.bars.iter().flat_map(|bar| {
            let whisker = Self::whisker(bar);
            bar.median
                .into_iter()
                .chain(whisker.map(|w| w.0))
                .chain(whisker.map(|w| w.1))
        });
        let (low, high) = values.fold((0.0f64, 0.0f64), |(low, high), v| (low.min(v), high.max(v)));
        let high = if high > 0.0 { high * 1.15 } else { 1.0 };
        let low = if low < 0.0 { low * 1.15 } else { 0.0 };
        (low, high)
    }
}

/// Scenario and mode names come from the bench; keep a path component.
fn file_safe(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect::<String>()
        .trim_start_matches('.')
        .to_string()
}

/// Rows grouped by (scenario, mode) in order of first appearance; within a
/// chart, systems in the order they first appear in the whole result list.
/// A repeated (scenario, mode, system) row: the first one counts.
fn group(rows: &[Value]) -> anyhow::Result<Vec<Chart>> {
    let mut system_order: Vec<String> = Vec::new();
    let mut charts: Vec<Chart> = Vec::new();
    for (index, row) in rows.iter().enumerate() {
        let text = |key: &str| row.get(key).and_then(Value::as_str);
        let Some(scenario) = text("scenario").filter(|s| !s.is_empty()) else {
            bail!("benchmark results: row {index} has no \"scenario\"");
        };
        let Some(system) = text("system").filter(|s| !s.is_empty()) else {
            bail!("benchmark results: row {index} has no \"system\"");
        };
        let mode = text("mode").unwrap_or("");
        if !system_order.iter().any(|s| s == system) {
            system_order.push(system.to_string());
        }
        let at = match charts
            .iter()
            .position(|c| c.scenario == scenario && c.mode == mode)
        {
            Some(at) => at,
            None => {
                charts.push(Chart {
                    scenario: scenario.to_string(),
                    mode: mode.to_string(),
                    unit: String::new(),
                    lower_is_better: false,
                    bars: Vec::new(),
                });
                charts.len() - 1
            }
        };
        let chart = &mut charts[at];
        if chart.unit.is_empty() {
            chart.unit = text("unit").unwrap_or("").to_string();
        }
        chart.lower_is_better |= row
            .get("lower_is_better")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        if chart.bars.iter().any(|b| b.system == system) {
            continue;
        }
        let median = row
            .get("median")
            .and_then(Value::as_f64)
            .filter(|v| v.is_finite());
        let runs = row
            .get("runs")
            .and_then(Value::as_array)
            .map(|runs| {
                runs.iter()
                    .filter_map(Value::as_f64)
                    .filter(|v| v.is_finite())
                    .collect()
            })
            .unwrap_or_default();
        let note = text("support").unwrap_or(NOT_SUPPORTED).to_string();
        chart.bars.push(Bar {
            system: system.to_string(),
            median,
            runs,
            note,
        });
    }
    for chart in &mut charts {
        chart.bars.sort_by_key(|bar| {
            system_order
                .iter()
                .position(|s| *s == bar.system)
                .unwrap_or(usize::MAX)
        });
    }
    Ok(charts)
}

/// "<date> · commit <commit> · <machine>", from what the results carry.
fn caption(results: &Value) -> String {
    let text = |key: &str| {
        results
            .get(key)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    let mut parts = Vec::new();
    if let Some(date) = text("date") {
        parts.push(date.to_string());
    }
    if let Some(commit) = text("commit") {
        parts.push(format!("commit {commit}"));
    }
    if let Some(machine) = text("machine") {
        parts.push(machine.to_string());
    }
    parts.join("  ·  ")
}

/// A figure with three significant digits or so: 9.96, 419.0, 20052.
fn format_value(value: f64) -> String {
    let magnitude = value.abs();
    if magnitude >= 1000.0 {
        format!("{value:.0}")
    } else if magnitude >= 100.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    }
}

/// An axis tick: no trailing zeros (0, 2.5, 400).
fn format_tick(value: f64) -> String {
    let text = format!("{value:.3}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text == "-0" {
        "0".to_string()
    } else {
        text.to_string()
    }
}

/// The font file's bytes, for the life of the process (plotters' ab_glyph
/// backend keeps `&'static` font data).
fn load_font(path: &Path) -> anyhow::Result<&'static [u8]> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Box::leak(bytes.into_boxed_slice())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "font {} not found (Debian package fonts-dejavu-core): run `cargo xtask setup`",
            path.display()
        ),
        Err(e) => Err(e).with_context(|| format!("reading font {}", path.display())),
    }
}

/// Registers the chart font with plotters, once per process.
fn register_fonts() -> anyhow::Result<()> {
    static REGISTERED: OnceLock<Result<(), String>> = OnceLock::new();
    let registered = REGISTERED.get_or_init(|| {
        let register = |path: &Path, style: FontStyle| -> anyhow::Result<()> {
            let bytes = load_font(path)?;
            plotters::style::register_font(FAMILY, style, bytes)
                .map_err(|_| anyhow::anyhow!("{}: not a TrueType font", path.display()))
        };
        register(Path::new(FONT), FontStyle::Normal).map_err(|e| format!("{e:#}"))?;
        // Bold titles when the face is there; the regular face otherwise.
        let _ = register(Path::new(BOLD_FONT), FontStyle::Bold);
        Ok(())
    });
    registered.clone().map_err(anyhow::Error::msg)
}

fn draw(chart: &Chart, caption: &str, path: &Path) -> anyhow::Result<()> {
    let root = BitMapBackend::new(path, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE)?;

    let mut title = if chart.unit.is_empty() {
        chart.scenario.clone()
    } else {
        format!("{} ({})", chart.scenario, chart.unit)
    };
    if chart.lower_is_better {
        title.push_str(", lower is better");
    }
    let caption = if chart.mode.is_empty() {
        caption.to_string()
    } else if caption.is_empty() {
        format!("mode {}", chart.mode)
    } else {
        format!("mode {}  ·  {caption}", chart.mode)
    };

    // Slot i spans x in [i, i + 1]; its bar the middle 60%.
    let slots = chart.bars.len().max(1) as f64;
    let (low, high) = chart.y_range();
    let mut plot = ChartBuilder::on(&root)
        // Not `.style(Bold)`: plotters 0.3.7 keeps the regular face with it.
        .caption(&title, (FAMILY, 22, FontStyle::Bold).into_font())
        .margin_top(12)
        .margin_left(12)
        .margin_right(20)
        .margin_bottom(28)
        .x_label_area_size(32)
        .y_label_area_size(64)
        .build_cartesian_2d(0.0..slots, low..high)?;
    plot.configure_mesh()
        .disable_x_mesh()
        // System names are drawn below, under each slot's centre.
        .x_labels(0)
        .light_line_style(WHITE.mix(0.0))
        .bold_line_style(BLACK.mix(0.12))
        .y_labels(6)
        .y_label_formatter(&|v| format_tick(*v))
        .y_desc(chart.unit.as_str())
        .label_style((FAMILY, 14))
        .axis_desc_style((FAMILY, 14))
        .draw()?;

    let system_font = (FAMILY, 14)
        .into_font()
        .color(&BLACK)
        .pos(Pos::new(HPos::Center, VPos::Top));
    let value_font = (FAMILY, 14)
        .into_font()
        .color(&BLACK)
        .pos(Pos::new(HPos::Center, VPos::Bottom));
    let note_font = (FAMILY, 13)
        .into_font()
        .color(&CAPTION_COLOUR)
        .pos(Pos::new(HPos::Center, VPos::Bottom));
    let whisker = ShapeStyle::from(&WHISKER_COLOUR).stroke_width(2);
    let baseline = 0.0f64.max(low);
    for (i, bar) in chart.bars.iter().enumerate() {
        let centre = i as f64 + 0.5;
        // The system's name under the axis, on the root area (the plotting
        // area's own text would be placed relative to it all the same, but
        // this keeps it out of the bars' way whatever the range).
        let (x, y) = plot.backend_coord(&(centre, low));
        root.draw(&Text::new(
            bar.system.as_str(),
            (x, y + 8),
            system_font.clone(),
        ))?;
        let Some(median) = bar.median else {
            plot.draw_series(std::iter::once(
                EmptyElement::at((centre, baseline))
                    + Text::new(bar.note.clone(), (0, -6), note_font.clone()),
            ))?;
            continue;
        };
        let colour = if bar.system.starts_with(OURS_PREFIX) {
            OURS_COLOUR
        } else {
            OTHER_COLOUR
        };
        plot.draw_series(std::iter::once(Rectangle::new(
            [(i as f64 + 0.2, 0.0), (i as f64 + 0.8, median)],
            colour.filled(),
        )))?;
        let mut label_at = median.max(0.0);
        if let Some((min, max)) = Chart::whisker(bar) {
            plot.draw_series(std::iter::once(PathElement::new(
                vec![(centre, min), (centre, max)],
                whisker,
            )))?;
            for end in [min, max] {
                plot.draw_series(std::iter::once(
                    EmptyElement::at((centre, end))
                        + PathElement::new(vec![(-7, 0), (7, 0)], whisker),
                ))?;
            }
            label_at = label_at.max(max);
        }
        plot.draw_series(std::iter::once(
            EmptyElement::at((centre, label_at))
                + Text::new(format_value(median), (0, -5), value_font.clone()),
        ))?;
    }

    root.draw(&Text::new(
        caption,
        (WIDTH as i32 - 14, HEIGHT as i32 - 8),
        (FAMILY, 12)
            .into_font()
            .color(&CAPTION_COLOUR)
            .pos(Pos::new(HPos::Right, VPos::Bottom)),
    ))?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{GenericImageView, Rgba, RgbaImage};
    use serde_json::json;

    const PNG_MAGIC: &[u8] = b"\x89PNG\r\n\x1a\n";

    /// A fresh directory under the system's temp dir, removed on drop.
    struct TempDir(PathBuf);
    impl TempDir {
        fn new(name: &str) -> Self {
            let path = std::env::temp_dir()
                .join(format!("xtask-bench-plot-{}-{name}", std::process::id()));
            let _ = std::fs::remove_dir_all(&path);
            Self(path)
        }
    }
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn results(rows: Vec<Value>) -> Value {
        json!({
            "date": "2026-11-26 03:45 UTC",
            "commit": "abc1234",
            "machine": "test machine",
            "results": rows,
        })
    }

    fn row(scenario: &str, system: &str, median: Option<f64>, runs: &[f64]) -> Value {
        json!({
            "scenario": scenario,
            "system": system,
            "unit": "Gbit/s",
            "median": median,
            "runs": runs,
        })
    }

    fn decode(path: &Path) -> RgbaImage {
        let bytes = std::fs::read(path).unwrap();
        assert!(
            bytes.starts_with(PNG_MAGIC),
            "{} is not a PNG",
            path.display()
        );
        let image = image::load_from_memory_with_format(&bytes, image::ImageFormat::Png)
            .unwrap_or_else(|e| panic!("decoding {}: {e}", path.display()));
        assert_eq!(image.dimensions(), (WIDTH, HEIGHT), "{}", path.display());
        image.to_rgba8()
    }

    /// Bounding box (x0, y0, x1, y1), inclusive, of the pixels of `colour`,
    /// and how many there are.
    fn extent(image: &RgbaImage, colour: RGBColor) -> Option<((u32, u32, u32, u32), usize)> {
        let want = Rgba([colour.0, colour.1, colour.2, 255]);
        let mut found: Option<(u32, u32, u32, u32)> = None;
        let mut count = 0;
        for (x, y, pixel) in image.enumerate_pixels() {
            if *pixel != want {
                continue;
            }
            count += 1;
            found = Some(match found {
                None => (x, y, x, y),
                Some((x0, y0, x1, y1)) => (x0.min(x), y0.min(y), x1.max(x), y1.max(y)),
            });
        }
        found.map(|b| (b, count))
    }

    fn height(bounds: (u32, u32, u32, u32)) -> f64 {
        f64::from(bounds.3 - bounds.1 + 1)
    }

    /// Dark (text) pixels in rows `ys`.
    fn dark_pixels(image: &RgbaImage, ys: std::ops::Range<u32>) -> usize {
        image
            .enumerate_pixels()
            .filter(|(_, y, p)| ys.contains(y) && p.0[0] < 128 && p.0[1] < 128 && p.0[2] < 128)
            .count()
    }

    #[test]
    fn one_png_per_scenario_and_mode_and_nothing_else() {
        let dir = TempDir::new("files");
        let mut wire = row("udp_64b", "direct", Some(300.0), &[290.0, 300.0, 310.0]);
        wire["mode"] = json!("wire");
        let mut empty_mode = row("tcp_8_streams", OURS, Some(5.7), &[5.5, 5.7, 5.8]);
        empty_mode["mode"] = json!("");
        let results = results(vec![
            row("tcp_1_stream", "direct", Some(9.96), &[9.2, 9.96, 10.3]),
            row("tcp_1_stream", OURS, Some(6.0), &[5.9, 6.0, 6.1]),
            wire,
            empty_mode,
        ]);
        // The directory is created, nested.
        let out = dir.0.join("charts");
        let written = write_charts(&results, &out).unwrap();
        let expected: Vec<PathBuf> = ["tcp_1_stream.png", "udp_64b-wire.png", "tcp_8_streams.png"]
            .iter()
            .map(|name| out.join(name))
            .collect();
        assert_eq!(written, expected);
        let mut listed: Vec<PathBuf> = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        listed.sort();
        let mut sorted = expected.clone();
        sorted.sort();
        assert_eq!(listed, sorted, "only the charts are written");
        for path in &expected {
            let image = decode(path);
            // Title at the top, caption at the bottom.
            assert!(
                dark_pixels(&image, 0..40) > 50,
                "{}: no title",
                path.display()
            );
            let caption = image
                .enumerate_pixels()
                .filter(|(_, y, p)| *y >= HEIGHT - 24 && p.0 != [255, 255, 255, 255])
                .count();
            assert!(caption > 50, "{}: no caption", path.display());
        }
    }

    #[test]
    fn ours_has_its_own_colour_and_bar_height_is_the_median() {
        let dir = TempDir::new("height");
        // One run each: no whiskers over the bars.
        let results = results(vec![
            row("tcp_1_stream", "direct", Some(5.0), &[5.0]),
            row("tcp_1_stream", OURS, Some(10.0), &[10.0]),
        ]);
        let written = write_charts(&results, &dir.0).unwrap();
        let image = decode(&written[0]);
        let (ours, ours_count) = extent(&image, OURS_COLOUR).expect("our bar is drawn");
        let (other, other_count) = extent(&image, OTHER_COLOUR).expect("the other bar is drawn");
        assert!(
            ours_count > 2000 && other_count > 1000,
            "{ours_count} {other_count}"
        );
        // Both stand on the same baseline, in system order, ours twice as tall.
        assert!(ours.3.abs_diff(other.3) <= 1, "{ours:?} {other:?}");
        assert!(other.2 < ours.0, "direct comes first: {other:?} {ours:?}");
        // Two slots fill the plot: the last bar ends near the right edge (an
        // empty third slot would end it before the middle of the right half).
        assert!(ours.2 > WIDTH * 3 / 4, "{ours:?}");
        let ratio = height(ours) / height(other);
        assert!((ratio - 2.0).abs() < 0.05, "height ratio {ratio}");
        // Single runs: no whisker.
        assert!(extent(&image, WHISKER_COLOUR).is_none());
    }

    #[test]
    fn whisker_spans_min_to_max_of_runs() {
        let dir = TempDir::new("whisker");
        let results = results(vec![row(
            "tcp_1_stream",
            OURS,
            Some(10.0),
            &[5.0, 10.0, 15.0],
        )]);
        let written = write_charts(&results, &dir.0).unwrap();
        let image = decode(&written[0]);
        let (bar, _) = extent(&image, OURS_COLOUR).unwrap();
        let (whisker, _) = extent(&image, WHISKER_COLOUR).expect("whisker drawn");
        // The whisker's vertical extent covers runs 5..15: as tall as the bar
        // (median 10), its caps a couple of pixels thick.
        let ratio = height(whisker) / height(bar);
        assert!((ratio - 1.0).abs() < 0.05, "whisker/bar {ratio}");
        // Centred on the bar, narrower than it.
        let centre = |b: (u32, u32, u32, u32)| f64::from(b.0 + b.2) / 2.0;
        assert!((centre(whisker) - centre(bar)).abs() <= 2.0);
        assert!(whisker.2 - whisker.0 < bar.2 - bar.0);
        // Its top is above the bar (15 > 10), its bottom inside it (5 > 0).
        assert!(whisker.1 < bar.1 && whisker.3 < bar.3);
    }

    #[test]
    fn unsupported_system_gets_no_bar() {
        let dir = TempDir::new("unsupported");
        let mut missing = json!({"scenario": "udp_64b", "system": "nginx", "unit": "kpps"});
        missing["mode"] = json!("wire");
        let mut ours = row("udp_64b", OURS, Some(419.0), &[413.5, 419.0, 425.5]);
        ours["mode"] = json!("wire");
        let mut haproxy = row("udp_64b", "haproxy", None, &[]);
        haproxy["mode"] = json!("wire");
        let results = results(vec![haproxy, ours, missing]);
        let written = write_charts(&results, &dir.0).unwrap();
        assert_eq!(written, vec![dir.0.join("udp_64b-wire.png")]);
        let image = decode(&written[0]);
        assert!(extent(&image, OURS_COLOUR).is_some());
        assert!(
            extent(&image, OTHER_COLOUR).is_none(),
            "no bar for null medians"
        );
    }

    #[test]
    fn nothing_but_unsupported_still_draws() {
        let dir = TempDir::new("all-null");
        let results = results(vec![row("tcp_1_stream", "haproxy", None, &[])]);
        let written = write_charts(&results, &dir.0).unwrap();
        decode(&written[0]);
    }

    /// Every system of ours in its colour, and eight systems' names fit
    /// under their bars without running into each other.
    #[test]
    fn eight_systems_each_ours_in_its_colour_names_apart() {
        let dir = TempDir::new("eight");
        let systems = [
            "direct",
            "xdp-router",
            "tc-router",
            "haproxy",
            "nginx",
            "spectrum-xdp",
            "spectrum-tc",
            "spectrum-auto",
        ];
        let rows = systems
            .iter()
            .map(|s| row("tcp_4_streams", s, Some(10.0), &[10.0]))
            .collect();
        let written = write_charts(&results(rows), &dir.0).unwrap();
        let image = decode(&written[0]);
        let (ours, _) = extent(&image, OURS_COLOUR).unwrap();
        // Bars' columns, one row above the baseline: eight runs, the last
        // three ours.
        let y = ours.3 - 1;
        let colour_at = |x: u32| {
            let p = image.get_pixel(x, y).0;
            [OURS_COLOUR, OTHER_COLOUR]
                .into_iter()
                .position(|c| p == [c.0, c.1, c.2, 255])
        };
        let mut bars: Vec<(u32, u32, usize)> = Vec::new();
        for x in 0..WIDTH {
            match (colour_at(x), bars.last_mut()) {
                (Some(c), Some(last)) if last.1 + 1 == x && last.2 == c => last.1 = x,
                (Some(c), _) => bars.push((x, x, c)),
                (None, _) => {}
            }
        }
        let kinds: Vec<usize> = bars.iter().map(|b| b.2).collect();
        assert_eq!(kinds, [1, 1, 1, 1, 1, 0, 0, 0], "{bars:?}");
        // Below the axis, between two neighbours' centres, a column free of
        // text: the names do not touch.
        let band = ours.3 + 4..ours.3 + 32;
        let centres: Vec<u32> = bars.iter().map(|b| (b.0 + b.1) / 2).collect();
        for pair in centres.windows(2) {
            let gap = (pair[0]..pair[1]).any(|x| {
                band.clone().all(|y| {
                    let p = image.get_pixel(x, y).0;
                    !(p[0] < 128 && p[1] < 128 && p[2] < 128)
                })
            });
            assert!(gap, "names under {pair:?} run together");
        }
        assert!(dark_pixels(&image, band) > 500, "names are drawn");
    }

    #[test]
    fn systems_keep_first_appearance_order() {
        let rows = vec![
            row("a", "direct", Some(1.0), &[]),
            row("a", "nginx", Some(1.0), &[]),
            row("b", "nginx", Some(1.0), &[]),
            row("b", OURS, Some(1.0), &[]),
            row("b", "direct", Some(1.0), &[]),
        ];
        let charts = group(&rows).unwrap();
        let systems = |c: &Chart| c.bars.iter().map(|b| b.system.clone()).collect::<Vec<_>>();
        assert_eq!(charts.len(), 2);
        assert_eq!(systems(&charts[0]), ["direct", "nginx"]);
        assert_eq!(systems(&charts[1]), ["direct", "nginx", OURS]);
    }

    #[test]
    fn a_bar_without_a_median_says_why() {
        let mut na = row("tls", "direct", None, &[]);
        na["support"] = json!("n/a");
        let rows = vec![na, row("tls", "haproxy", None, &[])];
        let charts = group(&rows).unwrap();
        let notes: Vec<&str> = charts[0].bars.iter().map(|b| b.note.as_str()).collect();
        assert_eq!(notes, ["n/a", NOT_SUPPORTED]);
    }

    #[test]
    fn malformed_results_are_errors() {
        let dir = TempDir::new("malformed");
        assert!(write_charts(&json!({"date": "x"}), &dir.0).is_err());
        let no_scenario = results(vec![json!({"system": "direct", "median": 1.0})]);
        let err = write_charts(&no_scenario, &dir.0).unwrap_err();
        assert!(format!("{err:#}").contains("scenario"), "{err:#}");
        assert!(!dir.0.exists(), "nothing written for bad input");
    }

    #[test]
    fn missing_font_says_run_setup() {
        let err = load_font(Path::new("/nonexistent/DejaVuSans.ttf")).unwrap_err();
        assert!(format!("{err:#}").contains("cargo xtask setup"), "{err:#}");
    }

    #[test]
    fn values_are_formatted_to_about_three_digits() {
        assert_eq!(format_value(9.961544), "9.96");
        assert_eq!(format_value(419.0208), "419.0");
        assert_eq!(format_value(20051.8), "20052");
        assert_eq!(format_tick(0.0), "0");
        assert_eq!(format_tick(2.5), "2.5");
        assert_eq!(format_tick(400.0), "400");
        assert_eq!(file_safe("../udp 64b"), "_udp_64b");
    }
}
