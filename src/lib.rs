//! Cairn, the app: spatial notes — text, voice and images — standing where they were left,
//! in a desktop window or an OpenXR headset. One plugin per feature, composed here.
//!
//! The logic (notes, pointer, compose) runs without a renderer, so tests drive it with
//! `MinimalPlugins` and injected pointer rays; the renderer, the window and the network are
//! added on top by [`run`].

pub mod audio;
pub mod common;
pub mod compose;
pub mod desktop;
pub mod interact;
#[cfg(test)]
mod layers;
pub mod net;
pub mod notes;
pub mod places;
pub mod render;
pub mod report;
pub mod screenshot;
pub mod startup;
pub mod ui;
pub mod video;
pub mod xr;

use bevy::prelude::*;
use clap::Parser;
use std::path::PathBuf;

/// Command-line flags of the app.
#[derive(Parser, Debug, Clone, Default)]
#[command(name = "cairn", version, about = "Spatial notes: leave text, voice and images in places")]
pub struct Args {
    /// Profile directory (device keys, cache), shared with cairn-cli. Default: $CAIRN_HOME,
    /// else the platform's data directory.
    #[arg(long, env = "CAIRN_HOME")]
    pub home: Option<PathBuf>,
    /// Server to use (ws:// or wss://). Without it, an embedded server runs in-process on
    /// SQLite in the profile directory.
    #[arg(long, env = "CAIRN_SERVER")]
    pub server: Option<String>,
    /// A certificate authority (PEM) to trust for a `wss://` server besides the public ones.
    #[arg(long, env = "CAIRN_CA_FILE")]
    pub ca: Option<PathBuf>,
    /// Your handle on first run (default: your login name).
    #[arg(long)]
    pub handle: Option<cairn_proto::Handle>,
    /// The space to open (name or id); default: the first one.
    #[arg(long)]
    pub space: Option<String>,
    /// Render, save a picture of the window to FILE once every note is drawn, and exit.
    #[arg(long)]
    pub screenshot: Option<PathBuf>,
    /// With --screenshot: this many pictures, a second apart (FILE, FILE-2.png, …).
    #[arg(long, default_value_t = 1, requires = "screenshot")]
    pub screenshots: u32,
    /// Force the desktop window even when an OpenXR runtime is present.
    #[arg(long, conflicts_with = "xr")]
    pub flat: bool,
    /// Demand XR: exit with an error, saying why, when no OpenXR runtime and headset are found.
    #[arg(long)]
    pub xr: bool,
    /// Treat the headset's view as the real room even where it is not see-through (a VR
    /// headset in a room where places were made): places are aligned by marking their
    /// reference points, as in AR, rather than shown as areas of a virtual scene.
    #[arg(long)]
    pub room: bool,
    /// Append JSON lines about what the app shows to FILE (for tests).
    #[arg(long, hide = true)]
    pub report: Option<PathBuf>,
}

/// The frame, in order: what the network brought, what the user did, applying it to the
/// notes, laying them out, and what goes back to the network.
#[derive(SystemSet, Debug, Clone, PartialEq, Eq, Hash)]
pub enum CairnSet {
    NetReceive,
    Input,
    Apply,
    Layout,
    NetSend,
}

/// The logic of the app, renderer-free: notes, the pointer, composing. Headless tests add
/// this to `MinimalPlugins`.
pub struct CairnLogicPlugin;

impl Plugin for CairnLogicPlugin {
    fn build(&self, app: &mut App) {
        app.configure_sets(
            Update,
            (
                CairnSet::NetReceive,
                CairnSet::Input,
                CairnSet::Apply,
                CairnSet::Layout,
                CairnSet::NetSend,
            )
                .chain(),
        );
        app.add_plugins((
            net::messages,
            notes::plugin,
            places::plugin,
            interact::plugin,
            compose::plugin,
        ));
    }
}

/// Everything a person sees and hears: the scene, note visuals, audio, desktop controls and
/// the sidebar. Needs `DefaultPlugins`.
pub struct CairnPresentationPlugin;

impl Plugin for CairnPresentationPlugin {
    fn build(&self, app: &mut App) {
        app.add_plugins((
            render::plugin,
            desktop::plugin,
            ui::plugin,
            audio::plugin,
            video::plugin,
        ));
    }
}

/// The desktop window needs a display server; without one winit panics deep in Bevy's
/// plugin setup, so say plainly what is missing first.
fn desktop_display_reachable(mode: &common::DisplayMode) -> Result<(), String> {
    if !matches!(mode, common::DisplayMode::Desktop { .. }) || !cfg!(target_os = "linux") {
        return Ok(());
    }
    let set = |name| std::env::var_os(name).is_some_and(|v| !v.is_empty());
    if set("DISPLAY") || set("WAYLAND_DISPLAY") {
        Ok(())
    } else {
        Err("no display to open a window on: neither DISPLAY nor WAYLAND_DISPLAY is set \
             (run it in a desktop session, or under Xvfb: xvfb-run -a ./dev run)"
            .into())
    }
}

/// Starts the app: the profile (and on first run the identity, a first space and welcome
/// notes), the embedded server unless `--server` is given, then the window.
pub fn run(args: Args) -> AppExit {
    let (mode, runtime) = if args.flat {
        (common::DisplayMode::Desktop { reason: "asked for with --flat".into() }, None)
    } else {
        match xr::runtime::probe() {
            Ok(info) => (
                common::DisplayMode::Xr {
                    runtime: info.runtime.clone(),
                    system: info.system.clone(),
                },
                Some(info),
            ),
            Err(reason) if args.xr => {
                eprintln!("cairn: --xr: {reason}");
                return AppExit::error();
            }
            Err(reason) => (common::DisplayMode::Desktop { reason }, None),
        }
    };
    eprintln!("cairn: {}", mode.notice());
    if let Err(e) = desktop_display_reachable(&mode) {
        eprintln!("cairn: {e}");
        return AppExit::error();
    }
    let boot = match startup::boot(&args) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("cairn: {e:#}");
            return AppExit::error();
        }
    };
    let mut app = App::new();
    app.register_asset_source(
        "shaders",
        bevy::asset::io::AssetSourceBuilder::platform_default(&startup::shaders_dir(), None),
    );
    let window = WindowPlugin {
        primary_window: Some(Window {
            title: "Cairn".into(),
            resolution: bevy::window::WindowResolution::new(1280, 800),
            ..default()
        }),
        ..default()
    };
    let assets = AssetPlugin { file_path: startup::assets_dir(), ..default() };
    match &runtime {
        Some(info) => {
            let mut init = bevy_mod_openxr::init::OxrInitPlugin::default();
            if info.fb_passthrough {
                init.exts.enable_fb_passthrough();
            }
            if info.msft_spatial_anchors {
                let exts = init.exts.raw_mut();
                exts.msft_spatial_anchor = true;
                exts.msft_spatial_anchor_persistence = true;
            }
            if info.fb_spatial_anchors {
                let exts = init.exts.raw_mut();
                exts.fb_spatial_entity = true;
                exts.fb_spatial_entity_storage = true;
                exts.fb_spatial_entity_query = true;
            }
            init.app_info.name = "Cairn".into();
            app.add_plugins(
                bevy_mod_openxr::add_xr_plugins(DefaultPlugins.set(assets)).set(window).set(init),
            );
            if info.fb_passthrough {
                app.add_plugins(bevy_mod_openxr::features::fb_passthrough::OxrFbPassthroughPlugin);
            }
            app.add_plugins((xr::logic_plugin, xr::openxr_plugin));
            xr::runtime::exit_cleanly_when_the_runtime_is_lost(args.report.clone());
        }
        None => {
            app.add_plugins(DefaultPlugins.set(window).set(assets));
        }
    }
    app.insert_resource(mode);
    app.add_plugins((CairnLogicPlugin, CairnPresentationPlugin));
    // This device's alignments with places: about its own stage, kept with its profile.
    let home = args.home.clone().unwrap_or_else(cairn_client::profile::default_home);
    app.insert_resource(places::AlignmentStore::load(home.join("alignments.json")));
    if args.room {
        app.insert_resource(places::PlaceView::Room);
    }
    app.add_plugins(net::plugin(boot.handle, boot.space));
    if let Some(server) = boot.embedded {
        app.insert_resource(server);
    }
    if let Some(path) = args.report.clone() {
        app.add_plugins(report::plugin(path));
    }
    if let Some(path) = args.screenshot.clone() {
        app.add_plugins(screenshot::plugin(path, args.screenshots));
    }
    app.run()
}
