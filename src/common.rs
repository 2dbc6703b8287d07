//! The app's shared vocabulary: what any feature module may use. It uses none of them, so
//! that modules which only need to say something to the user, or to ask which view is on,
//! need not import the module that happens to set it.

use bevy::prelude::*;

/// A line to show the user: a problem (shown in red), or news of what is being done.
#[derive(Message, Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub text: String,
    pub problem: bool,
}

impl Notice {
    /// Something went wrong or cannot be done.
    pub fn problem(text: impl Into<String>) -> Self {
        Notice { text: text.into(), problem: true }
    }

    /// What is being done, or a setting that changed.
    pub fn info(text: impl Into<String>) -> Self {
        Notice { text: text.into(), problem: false }
    }
}

/// How the app shows the space, and why; shown in the sidebar and the log.
#[derive(Resource, Debug, Clone, PartialEq, Eq)]
pub enum DisplayMode {
    Xr { runtime: String, system: String },
    Desktop { reason: String },
}

impl DisplayMode {
    pub fn is_xr(&self) -> bool {
        matches!(self, DisplayMode::Xr { .. })
    }
    /// One line for a person.
    pub fn notice(&self) -> String {
        match self {
            DisplayMode::Xr { runtime, system } => format!("XR mode: {system} ({runtime})"),
            DisplayMode::Desktop { reason } => format!("Desktop mode: {reason}"),
        }
    }
}

/// Run condition: the desktop window is the view.
pub fn desktop_mode(mode: Option<Res<DisplayMode>>) -> bool {
    mode.is_none_or(|m| !m.is_xr())
}
