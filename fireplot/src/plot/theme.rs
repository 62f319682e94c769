//! The fireplot's palettes: the original's on black, and the same hues on white.

use plotters::style::RGBColor;

use super::Category;

/// Colour scheme.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Theme {
    /// The original fireplot: black background.
    Dark,
    /// White background, the same hues made readable.
    Light,
}

impl Theme {
    pub fn background(self) -> RGBColor {
        match self {
            Theme::Dark => RGBColor(0, 0, 0),
            Theme::Light => RGBColor(255, 255, 255),
        }
    }

    pub fn foreground(self) -> RGBColor {
        match self {
            Theme::Dark => RGBColor(200, 200, 200),
            Theme::Light => RGBColor(30, 30, 30),
        }
    }

    pub fn grid(self) -> RGBColor {
        match self {
            Theme::Dark => RGBColor(45, 45, 45),
            Theme::Light => RGBColor(225, 225, 225),
        }
    }

    /// The colour of a category at full density. TCP and UDP are the
    /// original's (DESIGN §6); the other protocols with ports are cyan,
    /// a hue none of the others is near on either background.
    pub fn color(self, c: Category) -> RGBColor {
        match (self, c) {
            (Theme::Dark, Category::V4Tcp) => RGBColor(0x00, 0xff, 0x00),
            (Theme::Dark, Category::V4Udp) => RGBColor(0xb0, 0xb0, 0xff),
            (Theme::Dark, Category::V6Tcp) => RGBColor(0xff, 0x00, 0x00),
            (Theme::Dark, Category::V6Udp) => RGBColor(0xff, 0xff, 0xff),
            (Theme::Dark, Category::PortOther) => RGBColor(0x00, 0xd8, 0xd8),
            (Theme::Dark, Category::Icmp) => RGBColor(0xff, 0xa5, 0x00),
            (Theme::Dark, Category::Icmp6) => RGBColor(0xff, 0x40, 0xff),
            (Theme::Dark, Category::Other) => RGBColor(0xff, 0xff, 0x00),
            (Theme::Light, Category::V4Tcp) => RGBColor(0x00, 0x99, 0x00),
            (Theme::Light, Category::V4Udp) => RGBColor(0x40, 0x40, 0xd0),
            (Theme::Light, Category::V6Tcp) => RGBColor(0xd0, 0x00, 0x00),
            (Theme::Light, Category::V6Udp) => RGBColor(0x55, 0x55, 0x55),
            (Theme::Light, Category::PortOther) => RGBColor(0x00, 0x80, 0x80),
            (Theme::Light, Category::Icmp) => RGBColor(0xd0, 0x70, 0x00),
            (Theme::Light, Category::Icmp6) => RGBColor(0xa0, 0x00, 0xa0),
            (Theme::Light, Category::Other) => RGBColor(0x90, 0x90, 0x00),
        }
    }

    /// A category's colour at `intensity` (0..=1) over the background.
    pub fn shade(self, c: Category, intensity: f64) -> [u8; 3] {
        self.mix(self.color(c), intensity)
    }

    /// A colour at `intensity` (0..=1) over the background.
    pub fn mix(self, fg: RGBColor, intensity: f64) -> [u8; 3] {
        let bg = self.background();
        let mix = |f: u8, b: u8| (b as f64 + (f as f64 - b as f64) * intensity).round() as u8;
        [mix(fg.0, bg.0), mix(fg.1, bg.1), mix(fg.2, bg.2)]
    }
}
