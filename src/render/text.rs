//! Text for note panels, rasterized on the CPU into a texture: word wrapping, a header line
//! (author and time) and the body. Crisp at reading distance because it is drawn at about
//! 730 pixels per metre of panel.

use ab_glyph::{Font, FontArc, PxScale, ScaleFont};

/// The fonts the panels use (DejaVu Sans, shipped in `assets/fonts`). Cheap to clone
/// (shared), so panels can be drawn on worker threads.
#[derive(Clone)]
pub struct Fonts {
    pub regular: FontArc,
    pub bold: FontArc,
}

impl Fonts {
    pub fn load() -> Self {
        Fonts {
            regular: FontArc::try_from_slice(include_bytes!("../../assets/fonts/DejaVuSans.ttf"))
                .expect("bundled font parses"),
            bold: FontArc::try_from_slice(include_bytes!("../../assets/fonts/DejaVuSans-Bold.ttf"))
                .expect("bundled font parses"),
        }
    }
}

/// How a panel looks.
#[derive(Clone, Copy, Debug)]
pub struct PanelStyle {
    pub width_px: u32,
    pub padding_px: u32,
    pub body_px: f32,
    pub header_px: f32,
    pub max_lines: usize,
    pub background: [u8; 4],
    pub foreground: [u8; 4],
    pub header: [u8; 4],
}

impl PanelStyle {
    pub const NOTE: PanelStyle = PanelStyle {
        width_px: 512,
        padding_px: 22,
        body_px: 30.0,
        header_px: 22.0,
        max_lines: 7,
        background: [250, 247, 240, 235],
        foreground: [34, 34, 40, 255],
        header: [120, 110, 100, 255],
    };
    /// The header line's height in pixels.
    fn header_height(&self) -> f32 {
        self.header_px * 1.5
    }
    /// A body line's height in pixels.
    fn line_height(&self) -> f32 {
        self.body_px * 1.3
    }
    pub const EXPANDED: PanelStyle = PanelStyle { max_lines: 40, ..PanelStyle::NOTE };
    pub const PLACEHOLDER: PanelStyle = PanelStyle {
        background: [70, 72, 80, 220],
        foreground: [225, 225, 230, 255],
        header: [180, 180, 190, 255],
        ..PanelStyle::NOTE
    };
}

/// An RGBA image of a panel.
pub struct Raster {
    pub width: u32,
    pub height: u32,
    pub rgba: Vec<u8>,
}

fn line_width(font: &FontArc, px: f32, text: &str) -> f32 {
    let scaled = font.as_scaled(PxScale::from(px));
    let mut width = 0.0;
    let mut prev = None;
    for c in text.chars() {
        let id = scaled.glyph_id(c);
        if let Some(p) = prev {
            width += scaled.kern(p, id);
        }
        width += scaled.h_advance(id);
        prev = Some(id);
    }
    width
}

/// Breaks `text` into lines no wider than `max` pixels, at spaces where it can, inside
/// words where it must. Keeps explicit line breaks.
pub fn wrap(font: &FontArc, px: f32, text: &str, max: f32) -> Vec<String> {
    let mut lines = Vec::new();
    for paragraph in text.split('\n') {
        let mut line = String::new();
        for word in paragraph.split_whitespace() {
            let candidate =
                if line.is_empty() { word.to_owned() } else { format!("{line} {word}") };
            if line_width(font, px, &candidate) <= max {
                line = candidate;
                continue;
            }
            if !line.is_empty() {
                lines.push(std::mem::take(&mut line));
            }
            // A word wider than the line is split by characters.
            let mut piece = String::new();
            for c in word.chars() {
                piece.push(c);
                if line_width(font, px, &piece) > max && piece.chars().count() > 1 {
                    let last = piece.pop().expect("two or more chars");
                    lines.push(std::mem::take(&mut piece));
                    piece.push(last);
                }
            }
            line = piece;
        }
        lines.push(line);
    }
    while lines.len() > 1 && lines.last().is_some_and(String::is_empty) {
        lines.pop();
    }
    lines
}

fn blend(buf: &mut [u8], width: u32, height: u32, x: i32, y: i32, color: [u8; 4], coverage: f32) {
    if x < 0 || y < 0 || x >= width as i32 || y >= height as i32 {
        return;
    }
    let i = ((y as u32 * width + x as u32) * 4) as usize;
    let a = coverage.clamp(0.0, 1.0) * f32::from(color[3]) / 255.0;
    if a <= 0.0 {
        return;
    }
    for c in 0..3 {
        buf[i + c] = (f32::from(buf[i + c]) * (1.0 - a) + f32::from(color[c]) * a) as u8;
    }
    buf[i + 3] = buf[i + 3].max((a * 255.0) as u8);
}

fn draw_text(
    buf: &mut [u8],
    width: u32,
    height: u32,
    font: &FontArc,
    px: f32,
    x: f32,
    baseline: f32,
    text: &str,
    color: [u8; 4],
) {
    let scaled = font.as_scaled(PxScale::from(px));
    let mut caret = x;
    let mut prev = None;
    for c in text.chars() {
        let id = scaled.glyph_id(c);
        if let Some(p) = prev {
            caret += scaled.kern(p, id);
        }
        let glyph = id.with_scale_and_position(PxScale::from(px), ab_glyph::point(caret, baseline));
        caret += scaled.h_advance(id);
        prev = Some(id);
        if let Some(outline) = font.outline_glyph(glyph) {
            let b = outline.px_bounds();
            outline.draw(|gx, gy, cov| {
                blend(
                    buf,
                    width,
                    height,
                    b.min.x as i32 + gx as i32,
                    b.min.y as i32 + gy as i32,
                    color,
                    cov,
                );
            });
        }
    }
}

/// A panel laid out: its wrapped lines and its size in pixels, ready to be drawn.
#[derive(Clone, Debug)]
pub struct PanelLayout {
    pub width: u32,
    pub height: u32,
    header: String,
    lines: Vec<String>,
    style: PanelStyle,
}

/// Lays out a panel: a header line (bold, small) over the wrapped body. Bodies longer than
/// `style.max_lines` end with an ellipsis. Cheap next to drawing it.
pub fn layout_panel(fonts: &Fonts, header: &str, body: &str, style: &PanelStyle) -> PanelLayout {
    let inner = (style.width_px - 2 * style.padding_px) as f32;
    let mut lines = wrap(&fonts.regular, style.body_px, body, inner);
    if lines.len() > style.max_lines {
        lines.truncate(style.max_lines);
        let last = lines.last_mut().expect("max_lines > 0");
        while !last.is_empty()
            && line_width(&fonts.regular, style.body_px, &format!("{last}…")) > inner
        {
            last.pop();
        }
        last.push('…');
    }
    let height = (style.padding_px as f32 * 2.0
        + style.header_height()
        + style.line_height() * lines.len().max(1) as f32)
        .ceil() as u32;
    PanelLayout { width: style.width_px, height, header: header.to_owned(), lines, style: *style }
}

/// Draws a laid-out panel into pixels.
pub fn draw_panel(fonts: &Fonts, layout: &PanelLayout) -> Raster {
    let PanelLayout { width, height, ref header, ref lines, ref style } = *layout;
    let mut rgba = style.background.repeat((width * height) as usize);
    let pad = style.padding_px as f32;
    draw_text(
        &mut rgba,
        width,
        height,
        &fonts.bold,
        style.header_px,
        pad,
        pad + style.header_px,
        header,
        style.header,
    );
    for (i, line) in lines.iter().enumerate() {
        let baseline = pad + style.header_height() + style.line_height() * i as f32 + style.body_px;
        draw_text(
            &mut rgba,
            width,
            height,
            &fonts.regular,
            style.body_px,
            pad,
            baseline,
            line,
            style.foreground,
        );
    }
    Raster { width, height, rgba }
}

/// Lays out and draws a panel ([`layout_panel`], then [`draw_panel`]).
pub fn render_panel(fonts: &Fonts, header: &str, body: &str, style: &PanelStyle) -> Raster {
    draw_panel(fonts, &layout_panel(fonts, header, body, style))
}

/// A button to draw: its rectangle in pixels (left, top, width, height) and its label.
pub struct Button<'a> {
    pub rect: [f32; 4],
    pub label: &'a str,
}

/// Draws labelled buttons (keys of a keyboard) on a dark, see-through board: each a light
/// rectangle with its label centred in bold.
pub fn render_buttons(fonts: &Fonts, width: u32, height: u32, buttons: &[Button]) -> Raster {
    const BOARD: [u8; 4] = [28, 30, 36, 215];
    const KEY: [u8; 4] = [236, 233, 226, 255];
    const LABEL: [u8; 4] = [30, 30, 36, 255];
    let mut rgba = BOARD.repeat((width * height) as usize);
    for b in buttons {
        let [left, top, w, h] = b.rect;
        for y in top.max(0.0) as u32..((top + h) as u32).min(height) {
            for x in left.max(0.0) as u32..((left + w) as u32).min(width) {
                let i = ((y * width + x) * 4) as usize;
                rgba[i..i + 4].copy_from_slice(&KEY);
            }
        }
        let px = h * 0.5;
        let text_width = line_width(&fonts.bold, px, b.label);
        let x = left + (w - text_width) / 2.0;
        let baseline = top + h / 2.0 + px * 0.36;
        draw_text(&mut rgba, width, height, &fonts.bold, px, x, baseline, b.label, LABEL);
    }
    Raster { width, height, rgba }
}

/// "just now", "5 min ago", "3 h ago", "2 days ago".
pub fn age_label(created_at_ms: u64, now_ms: u64) -> String {
    let s = now_ms.saturating_sub(created_at_ms) / 1000;
    match s {
        0..=59 => "just now".into(),
        60..=3599 => format!("{} min ago", s / 60),
        3600..=86_399 => format!("{} h ago", s / 3600),
        _ => format!("{} days ago", s / 86_400),
    }
}
