//! `--screenshot FILE`: render until every note is drawn and the pipelines had time to
//! compile, save a picture of the window, and exit. With `--screenshots N`, N pictures a
//! second apart (FILE, then FILE-2.png, …), and before exiting the app waits (up to 30 s)
//! for a video that plays to end, so a test sees a clip move on and stop. While a video
//! plays, "a second apart" is a second of the clip: the frame on its picture has moved on
//! by a second (however slowly a loaded machine renders, or decodes); otherwise a second
//! after the last picture was saved.

use crate::render::RenderProgress;
use bevy::prelude::*;
use bevy::render::view::screenshot::{Screenshot, save_to_disk};
use std::path::PathBuf;

#[derive(Resource)]
struct Plan {
    path: PathBuf,
    stable_since: Option<f32>,
    taken_at: Option<f32>,
    /// Pictures to take, and taken so far.
    count: u32,
    taken: u32,
    /// When the last picture asked for was found saved.
    saved_at: Option<f32>,
    /// Where the playing clip's frame stood when the last picture was asked for.
    clip_ms_at: Option<u32>,
}

impl Plan {
    /// The file of picture `i` (0 is the one asked for).
    fn file(&self, i: u32) -> PathBuf {
        if i == 0 {
            return self.path.clone();
        }
        let stem = self.path.file_stem().unwrap_or_default().to_string_lossy();
        self.path.with_file_name(format!("{stem}-{}.png", i + 1))
    }
}

/// Seconds between the pictures of a series.
const SERIES_INTERVAL_SECS: f32 = 1.0;
/// The longest a series waits for a playing clip to move on by a second.
const SERIES_STALL_SECS: f32 = 20.0;
/// The longest the app waits for a playing video to end before exiting.
const VIDEO_WAIT_SECS: f32 = 30.0;

/// Seconds the scene must stay fully drawn before the capture (software Vulkan compiles
/// pipelines slowly).
const SETTLE_SECS: f32 = 4.0;
/// Give up waiting for notes after this and capture what there is.
const MAX_WAIT_SECS: f32 = 60.0;

pub fn plugin(path: PathBuf, count: u32) -> impl Plugin {
    move |app: &mut App| {
        app.insert_resource(Plan {
            path: path.clone(),
            stable_since: None,
            taken_at: None,
            count: count.max(1),
            taken: 0,
            saved_at: None,
            clip_ms_at: None,
        })
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
    videos: Option<Res<crate::video::Videos>>,
    mut exit: MessageWriter<AppExit>,
) {
    let now = time.elapsed_secs();
    if let Some(at) = plan.taken_at {
        let clip_ms =
            videos.as_ref().filter(|v| v.any_playing()).and_then(|v| v.furthest_shown_ms());
        // While a clip plays, the next picture is asked for once the clip has moved on by a
        // second from where it stood at the last one, saved or not: saving takes seconds
        // with software rendering, and the clip plays on meanwhile.
        if plan.taken + 1 < plan.count
            && let (Some(then), Some(shown)) = (plan.clip_ms_at, clip_ms)
        {
            if shown >= then + (SERIES_INTERVAL_SECS * 1000.0) as u32
                || now - at >= SERIES_STALL_SECS
            {
                ask_next(&mut commands, &mut plan, now, clip_ms);
            }
            return;
        }
        let file = plan.file(plan.taken);
        if !file.exists() && now - at <= 10.0 {
            return;
        }
        if !file.exists() {
            error!("the screenshot {} was not written", file.display());
            exit.write(AppExit::error());
            return;
        }
        // Otherwise the next picture a second after this one was saved (counting from the
        // request would bunch them up).
        let saved_at = *plan.saved_at.get_or_insert(now);
        if plan.taken + 1 < plan.count {
            if now - saved_at >= SERIES_INTERVAL_SECS {
                ask_next(&mut commands, &mut plan, now, clip_ms);
            }
            return;
        }
        let playing = videos.is_some_and(|v| v.any_playing());
        let all_saved = (0..plan.count).all(|i| plan.file(i).exists());
        if (playing || !all_saved) && now - at < VIDEO_WAIT_SECS {
            return;
        }
        info!("screenshot saved to {}", file.display());
        exit.write(AppExit::Success);
        return;
    }
    let synced = matches!(
        status.state,
        cairn_client::ConnectionState::Online | cairn_client::ConnectionState::Offline { .. }
    );
    // A clip that is to play shows its first frame before the first picture.
    let clip_coming =
        videos.as_ref().is_some_and(|v| v.any_playing() && v.furthest_shown_ms().is_none());
    let ready = synced && progress.notes > 0 && progress.waiting_detail == 0 && !clip_coming;
    plan.stable_since = if ready { plan.stable_since.or(Some(now)) } else { None };
    let settled = plan.stable_since.is_some_and(|s| now - s >= SETTLE_SECS);
    if settled || now > MAX_WAIT_SECS {
        info!("capturing {} notes ({} drawn in detail)", progress.notes, progress.detailed);
        let _ = std::fs::remove_file(&plan.path);
        commands.spawn(Screenshot::primary_window()).observe(save_to_disk(plan.path.clone()));
        plan.taken_at = Some(now);
        plan.clip_ms_at = videos.as_ref().and_then(|v| v.furthest_shown_ms());
    }
}

/// Asks for the series' next picture.
fn ask_next(commands: &mut Commands, plan: &mut Plan, now: f32, clip_ms: Option<u32>) {
    plan.clip_ms_at = clip_ms;
    plan.saved_at = None;
    plan.taken += 1;
    let next = plan.file(plan.taken);
    let _ = std::fs::remove_file(&next);
    commands.spawn(Screenshot::primary_window()).observe(save_to_disk(next));
    plan.taken_at = Some(now);
}
