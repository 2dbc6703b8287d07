//! What stands for a note before its detail is built, and for a far note instead of it:
//! its card and backplate, their shapes and colours. The near parts (`render`) and the far
//! field (`render::far`) both draw from here.

use crate::notes::NoteBounds;
use bevy::prelude::*;
use cairn_proto::NoteKind;

/// Panel width in metres.
pub const PANEL_WIDTH: f32 = 0.7;

/// Notes whose visual state to show this frame.
#[derive(Component, Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PlateState {
    Normal,
    Unread,
    Hover,
    Focus,
    Pending,
}

impl PlateState {
    /// The backplate's colour in this state (the near plates' materials and the far field's
    /// vertices both use it).
    pub(crate) fn colour(self) -> Color {
        match self {
            PlateState::Normal => Color::srgba(0.1, 0.1, 0.12, 0.35),
            PlateState::Unread => Color::srgba(1.0, 0.7, 0.25, 0.9),
            PlateState::Hover => Color::srgba(1.0, 1.0, 1.0, 0.9),
            PlateState::Focus => Color::srgba(0.3, 0.8, 1.0, 0.95),
            PlateState::Pending => Color::srgba(0.5, 0.55, 0.65, 0.5),
        }
    }
}

/// A note's card: plain, or the placeholder of a note this device cannot open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Card {
    Plain,
    Placeholder,
}

impl Card {
    pub(crate) fn colour(self) -> Color {
        match self {
            Card::Plain => Color::srgba(0.98, 0.96, 0.92, 0.85),
            Card::Placeholder => Color::srgba(0.3, 0.3, 0.34, 0.8),
        }
    }
}

/// What stands for a note before its detail is built, and for a far note instead of it: a
/// card (none for voice and reactions) of `size` metres, on a slightly larger backplate.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CardShape {
    pub size: Vec2,
    pub card: Option<Card>,
    /// A round backplate (voice) instead of a rectangle.
    pub round_plate: bool,
}

pub(crate) fn card_shape(kind: Option<NoteKind>) -> CardShape {
    let (size, card) = match kind {
        Some(NoteKind::Voice) => (Vec2::splat(0.4), None),
        Some(NoteKind::Reaction) => (Vec2::new(0.14, 0.14), None),
        Some(NoteKind::Image | NoteKind::Video) => {
            (Vec2::new(PANEL_WIDTH, PANEL_WIDTH * 0.75), Some(Card::Plain))
        }
        // (A place's record is not shown as a note; were one drawn, it would read as text.)
        Some(NoteKind::Text | NoteKind::Place) => (Vec2::new(PANEL_WIDTH, 0.3), Some(Card::Plain)),
        None => (Vec2::new(PANEL_WIDTH, 0.25), Some(Card::Placeholder)),
    };
    CardShape { size, card, round_plate: kind == Some(NoteKind::Voice) }
}

/// A backplate's place in the note's frame, behind a card of `size` metres: just behind it,
/// 2 cm wider each way.
pub(crate) fn plate_transform(size: Vec2) -> Transform {
    Transform::from_xyz(0.0, 0.0, -0.01).with_scale((size + Vec2::splat(0.04)).extend(1.0))
}

impl CardShape {
    /// The backplate's place in the note's frame (see [`plate_transform`]).
    pub(crate) fn plate_transform(&self) -> Transform {
        plate_transform(self.size)
    }
    /// The bounds a pointer can hit.
    pub(crate) fn bounds(&self) -> NoteBounds {
        NoteBounds((self.size / 2.0 + Vec2::splat(0.02)).extend(0.06))
    }
}
