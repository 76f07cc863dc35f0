//! `metrics.png`: four panels (reward, response length, searches per rollout, KL) drawn from
//! `metrics.jsonl` — training steps in blue, validations in orange. A small rasteriser with a 3×5
//! pixel font, so no font files or C libraries are needed.

use std::path::Path;

use crate::error::{io_err, GrpoError, Result};
use crate::trainer::StepMetrics;

const W: usize = 960;
const H: usize = 640;
const BLUE: [u8; 3] = [31, 119, 180];
const ORANGE: [u8; 3] = [255, 127, 14];
const GREY: [u8; 3] = [150, 150, 150];
const BLACK: [u8; 3] = [20, 20, 20];

struct Canvas {
    px: Vec<u8>,
}

impl Canvas {
    fn new() -> Self {
        Self {
            px: vec![255; W * H * 3],
        }
    }

    fn set(&mut self, x: i64, y: i64, c: [u8; 3]) {
        if x >= 0 && y >= 0 && (x as usize) < W && (y as usize) < H {
            let i = (y as usize * W + x as usize) * 3;
            self.px[i..i + 3].copy_from_slice(&c);
        }
    }

    fn line(&mut self, (x0, y0): (i64, i64), (x1, y1): (i64, i64), c: [u8; 3]) {
        let (dx, dy) = ((x1 - x0).abs(), -(y1 - y0).abs());
        let (sx, sy) = (if x0 < x1 { 1 } else { -1 }, if y0 < y1 { 1 } else { -1 });
        let (mut x, mut y, mut err) = (x0, y0, dx + dy);
        loop {
            self.set(x, y, c);
            self.set(x, y + 1, c);
            if x == x1 && y == y1 {
                break;
            }
            let e2 = 2 * err;
            if e2 >= dy {
                err += dy;
                x += sx;
            }
            if e2 <= dx {
                err += dx;
                y += sy;
            }
        }
    }

    fn rect(&mut self, x0: i64, y0: i64, x1: i64, y1: i64, c: [u8; 3]) {
        self.line((x0, y0), (x1, y0), c);
        self.line((x0, y1), (x1, y1), c);
        self.line((x0, y0), (x0, y1), c);
        self.line((x1, y0), (x1, y1), c);
    }

    /// Text at `(x, y)` (top left), glyphs 3×5 scaled by 2.
    fn text(&mut self, x: i64, y: i64, s: &str, c: [u8; 3]) {
        for (k, ch) in s.chars().enumerate() {
            let g = glyph(ch);
            for (row, bits) in g.iter().enumerate() {
                for col in 0..3 {
                    if bits >> (2 - col) & 1 == 1 {
                        for (ox, oy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
                            self.set(x + k as i64 * 8 + col as i64 * 2 + ox, y + row as i64 * 2 + oy, c);
                        }
                    }
                }
            }
        }
    }
}

fn glyph(c: char) -> [u8; 5] {
    match c.to_ascii_lowercase() {
        '0' => [7, 5, 5, 5, 7],
        '1' => [2, 6, 2, 2, 7],
        '2' => [7, 1, 7, 4, 7],
        '3' => [7, 1, 7, 1, 7],
        '4' => [5, 5, 7, 1, 1],
        '5' => [7, 4, 7, 1, 7],
        '6' => [7, 4, 7, 5, 7],
        '7' => [7, 1, 1, 1, 1],
        '8' => [7, 5, 7, 5, 7],
        '9' => [7, 5, 7, 1, 7],
        'a' => [2, 5, 7, 5, 5],
        'b' => [6, 5, 6, 5, 6],
        'c' => [3, 4, 4, 4, 3],
        'd' => [6, 5, 5, 5, 6],
        'e' => [7, 4, 6, 4, 7],
        'f' => [7, 4, 6, 4, 4],
        'g' => [3, 4, 5, 5, 3],
        'h' => [5, 5, 7, 5, 5],
        'i' => [7, 2, 2, 2, 7],
        'j' => [1, 1, 1, 5, 2],
        'k' => [5, 5, 6, 5, 5],
        'l' => [4, 4, 4, 4, 7],
        'm' => [5, 7, 7, 5, 5],
        'n' => [6, 5, 5, 5, 5],
        'o' => [2, 5, 5, 5, 2],
        'p' => [6, 5, 6, 4, 4],
        'q' => [2, 5, 5, 6, 3],
        'r' => [6, 5, 6, 5, 5],
        's' => [3, 4, 2, 1, 6],
        't' => [7, 2, 2, 2, 2],
        'u' => [5, 5, 5, 5, 7],
        'v' => [5, 5, 5, 5, 2],
        'w' => [5, 5, 7, 7, 5],
        'x' => [5, 5, 2, 5, 5],
        'y' => [5, 5, 2, 2, 2],
        'z' => [7, 1, 2, 4, 7],
        '.' => [0, 0, 0, 0, 2],
        '-' => [0, 0, 7, 0, 0],
        '+' => [0, 2, 7, 2, 0],
        ':' => [0, 2, 0, 2, 0],
        '(' => [1, 2, 2, 2, 1],
        ')' => [4, 2, 2, 2, 4],
        '/' => [1, 1, 2, 4, 4],
        _ => [0; 5],
    }
}

fn label(v: f64) -> String {
    if v == 0.0 || (1e-2..1e4).contains(&v.abs()) {
        format!("{v:.3}")
    } else {
        format!("{v:.2e}")
    }
}

type Series = Vec<(f64, f64)>;

fn panel(c: &mut Canvas, x0: i64, y0: i64, w: i64, h: i64, title: &str, series: &[(Series, [u8; 3])]) {
    let (px0, py0, px1, py1) = (x0 + 70, y0 + 30, x0 + w - 20, y0 + h - 30);
    c.text(x0 + 70, y0 + 8, title, BLACK);
    c.rect(px0, py0, px1, py1, GREY);
    let pts: Vec<&(f64, f64)> = series.iter().flat_map(|(s, _)| s.iter()).collect();
    if pts.is_empty() {
        c.text(px0 + 10, py0 + 10, "no data yet", GREY);
        return;
    }
    let (mut xmin, mut xmax) = (f64::MAX, f64::MIN);
    let (mut ymin, mut ymax) = (f64::MAX, f64::MIN);
    for &&(x, y) in &pts {
        xmin = xmin.min(x);
        xmax = xmax.max(x);
        ymin = ymin.min(y);
        ymax = ymax.max(y);
    }
    if xmax <= xmin {
        xmax = xmin + 1.0;
    }
    if ymax <= ymin {
        ymax = ymin + 1.0;
    }
    c.text(x0 + 4, py0, &label(ymax), BLACK);
    c.text(x0 + 4, py1 - 10, &label(ymin), BLACK);
    c.text(px0, py1 + 8, &format!("step {}", xmin as i64), BLACK);
    let last = format!("{}", xmax as i64);
    c.text(px1 - 8 * last.len() as i64, py1 + 8, &last, BLACK);
    let map = |x: f64, y: f64| -> (i64, i64) {
        let fx = (x - xmin) / (xmax - xmin);
        let fy = (y - ymin) / (ymax - ymin);
        (
            px0 + 2 + (fx * (px1 - px0 - 4) as f64) as i64,
            py1 - 2 - (fy * (py1 - py0 - 4) as f64) as i64,
        )
    };
    for (s, color) in series {
        let mut prev: Option<(i64, i64)> = None;
        for &(x, y) in s {
            let p = map(x, y);
            match prev {
                Some(q) => c.line(q, p, *color),
                None => c.line(p, p, *color),
            }
            for (dx, dy) in [(-1, -1), (1, -1), (-1, 1), (1, 1)] {
                c.set(p.0 + dx, p.1 + dy, *color);
            }
            prev = Some(p);
        }
    }
}

/// Draws the chart of `metrics` (a `metrics.jsonl`) into `png` (written via a temporary file).
pub fn render_metrics(metrics: &Path, png: &Path) -> Result<()> {
    let mut records: Vec<StepMetrics> = Vec::new();
    if metrics.exists() {
        let text = std::fs::read_to_string(metrics).map_err(io_err(metrics))?;
        for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            records.push(serde_json::from_str(line).map_err(|e| GrpoError::Io {
                path: metrics.to_path_buf(),
                message: format!("line {}: {e}", i + 1),
            })?);
        }
    }
    let pick = |kind: &str, f: &dyn Fn(&StepMetrics) -> Option<f64>| -> Series {
        records
            .iter()
            .filter(|m| m.kind == kind)
            .filter_map(|m| f(m).map(|v| (m.step as f64, v)))
            .filter(|(_, v)| v.is_finite())
            .collect()
    };
    let mut c = Canvas::new();
    let (pw, ph) = ((W / 2) as i64, (H / 2) as i64);
    let both = |f: &dyn Fn(&StepMetrics) -> Option<f64>| vec![(pick("train", f), BLUE), (pick("val", f), ORANGE)];
    panel(
        &mut c,
        0,
        0,
        pw,
        ph,
        "reward (train blue, val orange)",
        &both(&|m| Some(m.reward_mean)),
    );
    panel(
        &mut c,
        pw,
        0,
        pw,
        ph,
        "response length (tokens)",
        &both(&|m| Some(m.response_len)),
    );
    panel(
        &mut c,
        0,
        ph,
        pw,
        ph,
        "searches per rollout",
        &both(&|m| Some(m.searches)),
    );
    panel(
        &mut c,
        pw,
        ph,
        pw,
        ph,
        "kl to reference",
        &[(pick("train", &|m| m.update.map(|u| u.kl)), BLUE)],
    );
    let tmp = png.with_extension("png.partial");
    let file = std::fs::File::create(&tmp).map_err(io_err(&tmp))?;
    let mut enc = png::Encoder::new(std::io::BufWriter::new(file), W as u32, H as u32);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let err = |e: png::EncodingError| GrpoError::Io {
        path: tmp.clone(),
        message: e.to_string(),
    };
    let mut w = enc.write_header().map_err(err)?;
    w.write_image_data(&c.px).map_err(err)?;
    w.finish().map_err(err)?;
    std::fs::rename(&tmp, png).map_err(io_err(png))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_each_series_in_its_panel() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = dir.path().join("metrics.jsonl");
        let mut lines = String::new();
        for s in 0..5u64 {
            let m = StepMetrics {
                step: s,
                kind: if s % 2 == 0 { "val" } else { "train" }.into(),
                reward_mean: s as f64 * 0.1,
                response_len: 100.0 + s as f64,
                searches: 1.0 + s as f64 * 0.5,
                ..Default::default()
            };
            lines += &(serde_json::to_string(&m).unwrap() + "\n");
        }
        std::fs::write(&metrics, lines).unwrap();
        let png_path = dir.path().join("metrics.png");
        render_metrics(&metrics, &png_path).unwrap();
        let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&png_path).unwrap()));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!((info.width, info.height), (W as u32, H as u32));
        let count = |x0: usize, y0: usize, c: [u8; 3]| {
            let mut n = 0;
            for y in y0..y0 + H / 2 {
                for x in x0..x0 + W / 2 {
                    let i = (y * W + x) * 3;
                    n += (buf[i..i + 3] == c) as usize;
                }
            }
            n
        };
        // Reward, length and searches panels carry both series; the KL panel has no update data.
        for (x, y) in [(0, 0), (W / 2, 0), (0, H / 2)] {
            assert!(count(x, y, BLUE) > 20 && count(x, y, ORANGE) > 20, "panel at {x},{y}");
        }
        assert_eq!(count(W / 2, H / 2, BLUE), 0);
    }
}
