//! `--screenshot FILE`: render until every note is drawn and the pipelines had time to
//! compile, save a picture of the window, and exit.

use crate::render::RenderProgress;
use bevy::prelude::*;
use bevy::render::view::screenshot::{Screenshot, save_to_disk};
use std::path::PathBuf;

#[derive(Resource)]
struct Plan {
    path: PathBuf,
    stable_since: Option<f32>,
    taken_at: Option<f32>,
}

/// Seconds the scene must stay fully drawn before the capture (software Vulkan compiles
/// pipelines slowly).
const SETTLE_SECS: f32 = 4.0;
/// Give up waiting for notes after this and capture what there is.
const MAX_WAIT_SECS: f32 = 60.0;

pub fn plugin(path: PathBuf) -> impl Plugin {
    move |app: &mut App| {
        app.insert_resource(Plan { path: path.clone(), stable_since: None, taken_at: None })
            // Count notes drawn and waiting, so the capture waits for exactly that.
            .init_resource::<crate::render::TrackProgress>()
            .add_systems(Update, capture);
    }
}

fn capture(
    mut commands: Commands,
    time: Res<Time>,
    progress: Res<RenderProgress>,
    status: Res<crate::net::NetStatus>,
    mut plan: ResMut<Plan>,
    mut exit: MessageWriter<AppExit>,
) {
    let now = time.elapsed_secs();
    if let Some(at) = plan.taken_at {
        if plan.path.exists() || now - at > 10.0 {
            if plan.path.exists() {
                info!("screenshot saved to {}", plan.path.display());
            } else {
                error!("the screenshot was not written");
            }
            exit.write(if plan.path.exists() { AppExit::Success } else { AppExit::error() });
        }
        return;
    }
    let synced = matches!(
        status.state,
        cairn_client::ConnectionState::Online | cairn_client::ConnectionState::Offline { .. }
    );
    let ready = synced && progress.notes > 0 && progress.waiting_detail == 0;
    plan.stable_since = if ready { plan.stable_since.or(Some(now)) } else { None };
    let settled = plan.stable_since.is_some_and(|s| now - s >= SETTLE_SECS);
    if settled || now > MAX_WAIT_SECS {
        info!("capturing {} notes ({} drawn in detail)", progress.notes, progress.detailed);
        let _ = std::fs::remove_file(&plan.path);
        commands.spawn(Screenshot::primary_window()).observe(save_to_disk(plan.path.clone()));
        plan.taken_at = Some(now);
    }
}
