//! CPU time per frame with 100, 1,000 and 10,000 notes in the space (and 10,000 around the
//! same 100 near ones as the 100-note case) — everything the app
//! does on the CPU for notes (network bridge, picking, layout, fading, card and detail
//! building, state plates, the far field's mesh) but the GPU — and the time to lay out one
//! text note.
//!
//! `cargo run --release --example frame_bench` (figures go into docs/BENCHMARKS.md).

use bevy::prelude::*;
use cairn::CairnLogicPlugin;
use cairn::interact::{PointerRay, PointerSource};
use cairn::net::{CurrentSpace, NoteUpdated};
use cairn::notes::Viewer;
use cairn::render::RenderProgress;
use cairn_client::LocalNote;
use cairn_crypto::{NoteBody, Pose};
use cairn_proto::{DeviceId, NoteId, SpaceId};
use std::time::{Duration, Instant};

const SPACE: SpaceId = SpaceId([1; 16]);
const TEXTS: [&str; 4] = [
    "The spare key is under the third stone.",
    "Water the basil on Sundays, please; the tomatoes can wait until Wednesday.",
    "Met a heron here at dawn.",
    "This door sticks in wet weather: lift it a little as you push, and it opens without a sound. The hinges were oiled in May.",
];

fn app(single_threaded: bool) -> App {
    let mut app = App::new();
    app.add_plugins((MinimalPlugins, TransformPlugin, AssetPlugin::default(), CairnLogicPlugin));
    if single_threaded {
        fn one_thread(app: &mut App, label: impl bevy::ecs::schedule::ScheduleLabel) {
            app.edit_schedule(label, |s| {
                s.set_executor(bevy::ecs::schedule::SingleThreadedExecutor::new());
            });
        }
        one_thread(&mut app, First);
        one_thread(&mut app, PreUpdate);
        one_thread(&mut app, Update);
        one_thread(&mut app, PostUpdate);
        one_thread(&mut app, Last);
    }
    app.add_plugins(cairn::render::without_gpu).init_resource::<cairn::render::TrackProgress>();
    app.insert_resource(CurrentSpace(Some(SPACE)));
    app.update();
    app
}

/// How the notes stand.
#[derive(Clone, Copy, PartialEq)]
enum Layout {
    /// At one density over a disc of radius 50 m: the more notes, the more stand near.
    Even,
    /// The first 100 as in `Even` (within 5 m), the rest from 16 to 50 m away, where the
    /// viewer's walk never brings them within the detail distance: the same near notes in
    /// a larger space.
    SameNear,
}

/// A deterministic scatter.
fn note(i: u32, layout: Layout) -> LocalNote {
    let golden = 2.399_963_2_f32;
    let r = if layout == Layout::SameNear && i >= 100 {
        (16.0f32.powi(2) + (50.0f32.powi(2) - 16.0f32.powi(2)) * (i as f32 + 0.5) / 10_000.0).sqrt()
    } else {
        50.0 * ((i as f32 + 0.5) / 10_000.0).sqrt()
    };
    let a = i as f32 * golden;
    let pose = Pose {
        position: [r * a.cos(), 1.2 + (i % 5) as f32 * 0.15, r * a.sin()],
        ..Pose::default()
    };
    let mut id = [0u8; 16];
    id[..4].copy_from_slice(&i.to_le_bytes());
    LocalNote {
        space: SPACE,
        note_id: NoteId(id),
        seq: Some(u64::from(i) + 1),
        sender: DeviceId([2; 32]),
        body: Some(NoteBody::text("alice", TEXTS[i as usize % TEXTS.len()], pose)),
        error: None,
        deleted: false,
        read: i.is_multiple_of(3),
        stored_at: 0,
    }
}

fn percentile(sorted: &[Duration], q: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * q) as usize].as_secs_f64() * 1000.0
}

/// One size of space: its app, warmed up, and what its rounds measured.
struct Case {
    n: u32,
    layout: Layout,
    app: App,
    progress: RenderProgress,
    warm_frames: usize,
    warm_up: Duration,
    rebuilds_before: u64,
    rebuild_time_before: Duration,
    /// Each round's mean, in order.
    round_means: Vec<f64>,
    /// The quietest round: its mean and its frames.
    best: Option<(f64, Vec<Duration>)>,
}

impl Case {
    /// Builds the space and lets every nearby note build its detail (text rasterization is
    /// budgeted per frame).
    fn warm(n: u32, layout: Layout, single_threaded: bool) -> Case {
        let mut app = app(single_threaded);
        for i in 0..n {
            app.world_mut().write_message(NoteUpdated(note(i, layout)));
        }
        let started = Instant::now();
        let mut warm_frames = 0;
        loop {
            app.update();
            warm_frames += 1;
            let p = *app.world().resource::<RenderProgress>();
            if p.notes == n as usize && p.waiting_detail == 0 {
                break;
            }
            // Panels are drawn on worker threads: on a busy machine that takes a while.
            if started.elapsed() > Duration::from_secs(30) {
                println!("(the nearby notes' details were not all built after 30 s: {p:?})");
                break;
            }
        }
        let warm_up = started.elapsed();
        let progress = *app.world().resource::<RenderProgress>();
        // The app counts progress only for screenshots: stop counting before measuring.
        app.world_mut().remove_resource::<cairn::render::TrackProgress>();
        let field = app.world().resource::<cairn::render::far::FarField>();
        let (rebuilds_before, rebuild_time_before) = (field.rebuilds, field.rebuild_time);
        Case {
            n,
            layout,
            app,
            progress,
            warm_frames,
            warm_up,
            rebuilds_before,
            rebuild_time_before,
            round_means: Vec::new(),
            best: None,
        }
    }

    /// 300 frames of walking and pointing; the quietest round counts (a VM's neighbours
    /// come and go). Never inlined, so that a profiler can count these frames alone
    /// (`valgrind --tool=callgrind --toggle-collect='frame_bench::Case::round'`).
    #[inline(never)]
    fn round(&mut self, round: usize) {
        let app = &mut self.app;
        let mut frames = Vec::with_capacity(300);
        for f in 0..300 {
            let t = (round * 300 + f) as f32 / 60.0;
            let eye = Vec3::new(3.0 * (t * 0.3).sin(), 1.6, 3.0 * (t * 0.3).cos());
            app.world_mut().resource_mut::<Viewer>().0 = eye;
            let dir = Dir3::new(Vec3::new((t * 0.7).sin(), -0.1, -(t * 0.7).cos())).unwrap();
            app.world_mut().write_message(PointerRay {
                source: PointerSource::Mouse,
                ray: Ray3d::new(eye, dir),
            });
            let s = Instant::now();
            app.update();
            frames.push(s.elapsed());
        }
        let mean = frames.iter().sum::<Duration>().as_secs_f64() * 1000.0 / frames.len() as f64;
        self.round_means.push(mean);
        if self.best.as_ref().is_none_or(|(m, _)| mean < *m) {
            self.best = Some((mean, frames));
        }
    }
}

fn main() {
    println!(
        "frame_bench: CPU per frame, notes scattered over a 50 m disc, viewer walking and pointing\n"
    );
    // `FRAME_BENCH_SIZES=10000` measures one size (for a profiler); the ratio needs all three.
    let sizes: Vec<u32> = std::env::var("FRAME_BENCH_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![100, 1_000, 10_000]);
    // And, unless sizes are given, 10,000 notes around the same 100 near ones: what the
    // space's size costs, apart from how many notes stand near.
    let mut cases: Vec<(u32, Layout)> = sizes.iter().map(|&n| (n, Layout::Even)).collect();
    if std::env::var("FRAME_BENCH_SIZES").is_err() {
        cases.push((10_000, Layout::SameNear));
    }
    // Seven rounds of each size by default; `FRAME_BENCH_ROUNDS=30` keeps measuring longer
    // (for a profiler).
    let rounds: usize =
        std::env::var("FRAME_BENCH_ROUNDS").ok().and_then(|s| s.parse().ok()).unwrap_or(7);
    // `FRAME_BENCH_EXECUTOR=single` runs each frame's systems one after another on one
    // thread: the CPU work alone, without the multi-threaded executor waking worker threads
    // (which, on a small VM, can cost more than the work).
    let single_threaded = std::env::var("FRAME_BENCH_EXECUTOR").is_ok_and(|e| e == "single");
    println!(
        "executor: {}\n",
        if single_threaded { "single-threaded" } else { "multi-threaded (as the app runs)" }
    );
    // Every case is built and warmed up first; then their rounds take turns (a round of
    // each, then the next), so that every size meets the same moments of a noisy VM and the
    // ratios compare like with like.
    let mut running: Vec<Case> =
        cases.iter().map(|&(n, layout)| Case::warm(n, layout, single_threaded)).collect();
    for round in 0..rounds {
        for case in &mut running {
            case.round(round);
        }
    }
    let mut means = Vec::new();
    let mut same_near = None;
    for case in &running {
        let (mean, mut frames) = case.best.clone().expect("at least one round");
        frames.sort();
        let field = case.app.world().resource::<cairn::render::far::FarField>();
        let label = if case.layout == Layout::SameNear { " (the same 100 near)" } else { "" };
        let p = case.progress;
        println!(
            "{:>6} notes{label}: {mean:.3} ms/frame mean, p50 {:.3} ms, p99 {:.3} ms ({} drawn in detail, {} in the far field, rebuilt {} times in {} frames, {:.3} ms each; warm-up {} frames, {:.1} s)",
            case.n,
            percentile(&frames, 0.5),
            percentile(&frames, 0.99),
            p.detailed,
            field.notes,
            field.rebuilds - case.rebuilds_before,
            rounds * 300,
            (field.rebuild_time - case.rebuild_time_before).as_secs_f64() * 1000.0
                / (field.rebuilds - case.rebuilds_before).max(1) as f64,
            case.warm_frames,
            case.warm_up.as_secs_f64()
        );
        match case.layout {
            Layout::Even => means.push((mean, &case.round_means)),
            Layout::SameNear => same_near = Some((mean, &case.round_means)),
        }
    }
    // The quietest rounds' ratio, and the median of the ratios round by round (both sizes
    // measured in the same stretch of time).
    let ratios = |a: &[f64], b: &[f64]| {
        let mut r: Vec<f64> = a.iter().zip(b).map(|(a, b)| a / b).collect();
        r.sort_by(f64::total_cmp);
        r[r.len() / 2]
    };
    if let [(first, first_rounds), .., (last, last_rounds)] = means[..] {
        println!(
            "\n{} notes cost {:.2}x the frame time of {} (quietest rounds; median of {} rounds side by side {:.2}x; target for 10,000 against 100: at most 2x)",
            sizes[sizes.len() - 1],
            last / first,
            sizes[0],
            rounds,
            ratios(last_rounds, first_rounds)
        );
        if let Some((same, same_rounds)) = same_near {
            println!(
                "10000 notes around the same 100 near ones cost {:.2}x the frame time of those 100 alone (median side by side {:.2}x)",
                same / first,
                ratios(same_rounds, first_rounds)
            );
        }
    }

    let fonts = cairn::render::text::Fonts::load();
    let style = cairn::render::text::PanelStyle::NOTE;
    let reps = 400;
    let per_note_ms = |work: &dyn Fn(&str)| {
        let s = Instant::now();
        for i in 0..reps {
            work(TEXTS[i % TEXTS.len()]);
        }
        s.elapsed().as_secs_f64() * 1000.0 / reps as f64
    };
    let header = "alice · 3 min ago";
    println!(
        "laying out and rasterizing one text note: {:.3} ms (target: under 1 ms)",
        per_note_ms(&|text| {
            std::hint::black_box(cairn::render::text::render_panel(&fonts, header, text, &style));
        })
    );
    // The part the frame does itself when a note comes near (the pixels are drawn on a
    // worker thread).
    println!(
        "  of which laying it out (on the frame): {:.3} ms",
        per_note_ms(&|text| {
            std::hint::black_box(cairn::render::text::layout_panel(&fonts, header, text, &style));
        })
    );
}
