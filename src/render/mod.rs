//! Note visuals and the scene. A note near the viewer gets parts of its own: a
//! shared-material card and backplate at once, and its detail (a text texture, a picture, a
//! voice orb) a few per frame. Notes farther away have no parts: the [`far`] field draws
//! them all as one mesh, so thousands of notes stay cheap. State (unread glow, hover, focus,
//! pending) swaps a shared backplate material, or a colour in the far field; nothing per note
//! is rebuilt for it.

pub mod card;
pub mod far;
pub mod text;

use crate::CairnSet;
use crate::interact::Pointer;
use crate::net::{MediaReady, NetCommand};
use crate::notes::{Focused, Near, NeedsVisual, Note, NoteAt, NoteBounds, ReplyLink, Viewer};
use bevy::asset::RenderAssetUsages;
use bevy::light::NotShadowCaster;
use bevy::prelude::*;
use bevy::render::render_resource::{
    AsBindGroup, Extent3d, ShaderType, TextureDimension, TextureFormat,
};
use bevy::shader::ShaderRef;
use bevy::tasks::futures::check_ready;
use bevy::tasks::{AsyncComputeTaskPool, Task};
use cairn_client::ClientCommand;
use cairn_proto::{MediaHash, NoteKind};
pub use card::PANEL_WIDTH;
use card::{Card, PlateState, card_shape, plate_transform};
use std::collections::HashMap;
use std::time::Instant;
use text::{Fonts, PanelStyle, age_label, layout_panel};

/// Detail building allowed per frame (spawning parts, starting their panels and pictures on
/// workers); the rest waits for the next.
const DETAIL_BUDGET_MS: f64 = 6.0;
/// Panels drawn on worker threads at once; more wait for the next frame, so a crowd of notes
/// coming into view does not flood the workers that the frame itself runs on.
const MAX_PANEL_JOBS: usize = 8;

/// The voice orb: a sphere whose surface draws the note's waveform, pulsing and filling
/// with progress while it plays (`shaders/voice_orb.wgsl`).
#[derive(Asset, TypePath, AsBindGroup, Debug, Clone)]
pub struct VoiceOrbMaterial {
    #[uniform(0)]
    pub data: VoiceOrbUniform,
}

#[derive(ShaderType, Debug, Clone, Copy)]
pub struct VoiceOrbUniform {
    pub base: LinearRgba,
    pub glow: LinearRgba,
    /// x: progress 0..1, y: pulse 0..1, z: time in seconds, w: highlight 0..1.
    pub params: Vec4,
    /// 64 peaks, 0..1, four to a vector.
    pub wave: [Vec4; 16],
}

impl Material for VoiceOrbMaterial {
    fn fragment_shader() -> ShaderRef {
        "shaders://voice_orb.wgsl".into()
    }
}

impl VoiceOrbUniform {
    pub fn new(peaks: &[u8]) -> Self {
        let mut wave = [Vec4::ZERO; 16];
        for i in 0..64 {
            // Resample whatever length was sent to 64 bars.
            let v =
                if peaks.is_empty() { 0.3 } else { f32::from(peaks[i * peaks.len() / 64]) / 255.0 };
            wave[i / 4][i % 4] = v;
        }
        VoiceOrbUniform {
            base: LinearRgba::rgb(0.05, 0.18, 0.22),
            glow: LinearRgba::rgb(0.25, 0.85, 0.8),
            params: Vec4::ZERO,
            wave,
        }
    }
}

/// Meshes and materials every note shares.
#[derive(Resource)]
pub struct NoteAssets {
    pub fonts: Fonts,
    pub quad: Handle<Mesh>,
    pub orb: Handle<Mesh>,
    pub frame: Handle<Mesh>,
    pub disc: Handle<Mesh>,
    pub card: Handle<StandardMaterial>,
    pub card_placeholder: Handle<StandardMaterial>,
    pub frame_wood: Handle<StandardMaterial>,
    pub plate: Handle<StandardMaterial>,
    pub plate_unread: Handle<StandardMaterial>,
    pub plate_hover: Handle<StandardMaterial>,
    pub plate_focus: Handle<StandardMaterial>,
    pub plate_pending: Handle<StandardMaterial>,
}

/// The parts of a note's visual.
#[derive(Component, Debug, Default)]
pub struct NoteVisual {
    pub card: Option<Entity>,
    pub plate: Option<Entity>,
    pub detail: Option<Entity>,
    /// The material of the detail (text or picture), for fading.
    pub detail_material: Option<Handle<StandardMaterial>>,
    pub orb_material: Option<Handle<VoiceOrbMaterial>>,
    /// Whether the full-size image was asked for / applied.
    pub full_image: FullImage,
    pub expanded: bool,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum FullImage {
    #[default]
    No,
    Requested,
    Shown,
}

/// Marks notes that show a voice orb (so only they are animated each frame).
#[derive(Component, Debug)]
pub struct HasOrb;

/// Marks notes that show a picture (so only they are looked at for their full picture).
#[derive(Component, Debug)]
pub struct HasPicture;

/// Marks notes that show a video's poster (so only they are looked at for autoplay: playing
/// is `video`'s).
#[derive(Component, Debug)]
pub struct HasVideo;

/// Parts of the scene that stand for a place (sky, floor, landmark, sun shadows): hidden
/// when the headset shows the real room (`xr::runtime`).
#[derive(Component, Debug, Default)]
pub struct VirtualEnvironment;

/// A picture's (or a video's) size in the scene: [`PANEL_WIDTH`] wide, the shape of its
/// thumbnail's `w`×`h` (4:3 when the thumbnail cannot be read).
pub fn picture_size(shape: Option<(u32, u32)>) -> Vec2 {
    let (w, h) = shape.map_or((4.0, 3.0), |(w, h)| (w as f32, h as f32));
    Vec2::new(PANEL_WIDTH, PANEL_WIDTH * h / w.max(1.0))
}

/// A picture this near the viewer (metres) shows its full image, not its thumbnail.
pub const FULL_PICTURE_DISTANCE: f32 = 3.0;

/// Marks notes whose detail must be (re)built.
#[derive(Component, Debug)]
pub struct NeedsDetail;

/// Panels being laid out and drawn, and pictures' thumbnails decoded, on worker threads, so
/// neither stalls a frame. Each one's part is spawned, and its material already points at
/// the texture it will fill; until then it is not drawn. A panel's size follows its text,
/// so it is set when it is done.
#[derive(Resource, Default)]
pub struct PanelJobs(Vec<PanelJob>);

struct PanelJob {
    image: Handle<Image>,
    material: Handle<StandardMaterial>,
    part: Entity,
    /// How the part is sized once its picture is known (`None`: it already is).
    fit: Option<PanelFit>,
    /// The detail this panel takes the place of (a text note expanded or folded): shown
    /// until this one is ready.
    replaces: Option<Entity>,
    /// The picture, or `None` when it could not be decoded.
    task: Task<Option<Image>>,
}

/// A picture that cannot be shown: a grey card in its place.
pub(crate) const BROKEN_PICTURE: Color = Color::srgb(0.4, 0.4, 0.45);

/// Puts a decoded picture where its material looks for it, or, when it could not be
/// decoded, shows the material as a grey card.
fn show_decoded(
    picture: Option<Image>,
    texture: &Handle<Image>,
    material: &Handle<StandardMaterial>,
    images: &mut Assets<Image>,
    materials: &mut Assets<StandardMaterial>,
) {
    match picture {
        Some(picture) => {
            if let Err(e) = images.insert(texture.id(), picture) {
                warn!("a decoded picture had nowhere to go: {e}");
            }
        }
        None => {
            warn!("a picture could not be decoded; it shows as a grey card");
            if let Some(mut m) = materials.get_mut(material) {
                m.base_color_texture = None;
                m.base_color = BROKEN_PICTURE;
            }
        }
    }
}

/// What a panel says and how it looks, to be laid out and drawn on a worker.
struct PanelText {
    header: String,
    body: String,
    style: PanelStyle,
}

/// How a panel is sized and placed once it is laid out (its height follows its text).
#[derive(Debug, Clone, Copy)]
enum PanelFit {
    /// A text note's panel, [`PANEL_WIDTH`] wide: the note's card and plate take its size,
    /// and the note its bounds for pointing.
    Note { note: Entity, card: Option<Entity>, plate: Option<Entity> },
    /// A caption, [`PANEL_WIDTH`] wide, `below` metres under the centre of its parent part,
    /// which is scaled by `within` (a picture is its quad scaled to the picture's size).
    Caption { below: f32, within: Vec2 },
    /// A reaction's emoji, [`EMOJI_WIDTH`] wide.
    Emoji,
}

/// A reaction's width in metres.
const EMOJI_WIDTH: f32 = 0.14;

impl PanelFit {
    /// The panel's own transform, for a panel `aspect` (height over width) tall.
    fn part_transform(self, aspect: f32) -> Transform {
        match self {
            PanelFit::Note { .. } => {
                Transform::from_scale(Vec3::new(PANEL_WIDTH, PANEL_WIDTH * aspect, 1.0))
            }
            PanelFit::Caption { below, within } => {
                let h = PANEL_WIDTH * aspect;
                Transform::from_xyz(0.0, (-below - h / 2.0) / within.y, 0.0).with_scale(Vec3::new(
                    PANEL_WIDTH / within.x,
                    h / within.y,
                    1.0,
                ))
            }
            PanelFit::Emoji => {
                Transform::from_scale(Vec3::new(EMOJI_WIDTH, EMOJI_WIDTH * aspect, 1.0))
            }
        }
    }

    /// Sizes the panel, and for a note's panel the note's card, plate and bounds, to a
    /// panel of `width` by `height` pixels.
    fn apply(self, commands: &mut Commands, part: Entity, width: u32, height: u32) {
        let aspect = height as f32 / width.max(1) as f32;
        commands.entity(part).try_insert(self.part_transform(aspect));
        if let PanelFit::Note { note, card, plate } = self {
            let size = Vec2::new(PANEL_WIDTH, PANEL_WIDTH * aspect);
            commands
                .entity(note)
                .try_insert(NoteBounds((size / 2.0 + Vec2::splat(0.02)).extend(0.05)));
            if let Some(card) = card {
                commands
                    .entity(card)
                    .try_insert(Transform::from_xyz(0.0, 0.0, -0.002).with_scale(size.extend(1.0)));
            }
            if let Some(plate) = plate {
                commands.entity(plate).try_insert(plate_transform(size));
            }
        }
    }
}

/// Which notes wait on which media download.
#[derive(Resource, Default)]
pub struct AwaitingMedia(HashMap<MediaHash, Vec<Entity>>);

/// Full pictures being read and decoded on a worker thread, and the notes that show them.
#[derive(Resource, Default)]
pub struct DecodingPictures(Vec<(Vec<Entity>, Task<Option<Image>>)>);

/// Insert to have [`RenderProgress`] counted each frame (the screenshot and the frame
/// benchmark do; the app otherwise does not pay for it).
#[derive(Resource, Default)]
pub struct TrackProgress;

/// Counts for the screenshot and the status: notes shown with their detail.
#[derive(Resource, Default, Debug, Clone, Copy)]
pub struct RenderProgress {
    pub notes: usize,
    pub detailed: usize,
    pub waiting_detail: usize,
}

/// Note visuals: the GPU side (the orb material, reply lines) and [`cpu_plugin`].
pub fn plugin(app: &mut App) {
    app.add_plugins(MaterialPlugin::<VoiceOrbMaterial>::default())
        .add_plugins(cpu_plugin)
        .add_systems(Update, draw_reply_lines.in_set(CairnSet::Layout).after(count_progress));
}

/// [`cpu_plugin`] with the asset storage it needs (meshes, materials, images), for a run
/// without a GPU or a window: the frame benchmark and the headless tests.
pub fn without_gpu(app: &mut App) {
    app.init_asset::<Mesh>()
        .init_asset::<StandardMaterial>()
        .init_asset::<Image>()
        .init_asset::<VoiceOrbMaterial>()
        .add_plugins(cpu_plugin);
}

/// Everything the renderer needs the CPU for: building cards and details (text
/// rasterization), state plates, fading, orb animation, full pictures. Runs without a GPU
/// given asset storage for meshes, materials and images (the frame benchmark does so).
pub fn cpu_plugin(app: &mut App) {
    app.init_resource::<AwaitingMedia>()
        .init_resource::<DecodingPictures>()
        .init_resource::<RenderProgress>()
        .init_resource::<PanelJobs>()
        .init_resource::<far::FarField>()
        .add_systems(Startup, (setup_assets, setup_scene, far::setup))
        .add_systems(
            Update,
            (
                expand_on_activate,
                follow_near,
                build_cards,
                build_details,
                update_plates,
                animate_orbs,
                show_full_images,
                finish_panels,
                far::draw,
                count_progress.run_if(resource_exists::<TrackProgress>),
            )
                .chain()
                .in_set(CairnSet::Layout)
                .after(crate::notes::face_viewer)
                .after(crate::notes::link_replies),
        );
}

fn setup_assets(
    mut commands: Commands,
    mut meshes: ResMut<Assets<Mesh>>,
    mut materials: ResMut<Assets<StandardMaterial>>,
) {
    let unlit = |c: Color, mats: &mut Assets<StandardMaterial>| {
        mats.add(StandardMaterial {
            base_color: c,
            unlit: true,
            alpha_mode: AlphaMode::Blend,
            cull_mode: None,
            ..default()
        })
    };
    let glow = |c: Color, e: LinearRgba, mats: &mut Assets<StandardMaterial>| {
        mats.add(StandardMaterial {
            base_color: c,
            emissive: e,
            alpha_mode: AlphaMode::Blend,
            cull_mode: None,
            ..default()
        })
    };
    let card = unlit(Card::Plain.colour(), &mut materials);
    let card_placeholder = unlit(Card::Placeholder.colour(), &mut materials);
    commands.insert_resource(NoteAssets {
        fonts: Fonts::load(),
        quad: meshes.add(Rectangle::new(1.0, 1.0)),
        orb: meshes.add(Sphere::new(0.18).mesh().uv(48, 24)),
        frame: meshes.add(Cuboid::new(1.0, 1.0, 0.04)),
        disc: meshes.add(Circle::new(0.5)),
        card,
        card_placeholder,
        frame_wood: materials.add(StandardMaterial {
            base_color: Color::srgb(0.36, 0.25, 0.16),
            perceptual_roughness: 0.8,
            ..default()
        }),
        plate: unlit(PlateState::Normal.colour(), &mut materials),
        plate_unread: glow(
            PlateState::Unread.colour(),
            LinearRgba::rgb(3.0, 1.8, 0.4),
            &mut materials,
        ),
        plate_hover: glow(
            PlateState::Hover.colour(),
            LinearRgba::rgb(1.5, 1.5, 1.5),
            &mut materials,
        ),
        plate_focus: glow(
            PlateState::Focus.colour(),
            LinearRgba::rgb(0.6, 2.0, 3.0),
            &mut materials,
        ),
        plate_pending: unlit(PlateState::Pending.colour(), &mut materials),
    });
}

fn setup_scene(
    mut commands: Commands,
    mut meshes: ResMut<Assets<Mesh>>,
    mut materials: ResMut<Assets<StandardMaterial>>,
) {
    commands.insert_resource(ClearColor(Color::srgb(0.72, 0.82, 0.92)));
    commands.insert_resource(GlobalAmbientLight {
        color: Color::srgb(0.9, 0.93, 1.0),
        brightness: 600.0,
        ..default()
    });
    commands.spawn((
        VirtualEnvironment,
        DirectionalLight { illuminance: 2200.0, shadow_maps_enabled: true, ..default() },
        Transform::from_xyz(4.0, 10.0, 6.0).looking_at(Vec3::ZERO, Vec3::Y),
    ));
    // The floor: a wide meadow-coloured disc.
    commands.spawn((
        VirtualEnvironment,
        Mesh3d(meshes.add(Circle::new(60.0))),
        MeshMaterial3d(materials.add(StandardMaterial {
            base_color: Color::srgb(0.55, 0.62, 0.45),
            perceptual_roughness: 0.95,
            ..default()
        })),
        Transform::from_rotation(Quat::from_rotation_x(-std::f32::consts::FRAC_PI_2)),
    ));
    // A cairn of stones at the centre, to give the place a landmark and a sense of scale.
    let stone = materials.add(StandardMaterial {
        base_color: Color::srgb(0.55, 0.54, 0.52),
        perceptual_roughness: 0.9,
        ..default()
    });
    let stone_mesh = meshes.add(Sphere::new(0.5).mesh().ico(3).expect("valid subdivisions"));
    for (i, (r, y)) in [(0.42, 0.18), (0.34, 0.48), (0.27, 0.73), (0.2, 0.93), (0.13, 1.08)]
        .into_iter()
        .enumerate()
    {
        commands.spawn((
            VirtualEnvironment,
            Mesh3d(stone_mesh.clone()),
            MeshMaterial3d(stone.clone()),
            Transform::from_xyz(0.05 * (i as f32).sin(), y, -6.0).with_scale(Vec3::new(
                r * 2.0,
                r * 1.1,
                r * 1.8,
            )),
        ));
    }
}

fn plate_state(note: &Note, e: Entity, pointer: &Pointer, focused: &Focused) -> PlateState {
    if focused.0 == Some(e) {
        PlateState::Focus
    } else if pointer.hovered == Some(e) {
        PlateState::Hover
    } else if note.pending() {
        PlateState::Pending
    } else if note.unread {
        PlateState::Unread
    } else {
        PlateState::Normal
    }
}

/// A note coming near has its parts built; one going far has them taken down (the [`far`]
/// field draws it then).
fn follow_near(
    mut commands: Commands,
    came: Query<Entity, (Added<Near>, With<NoteVisual>)>,
    mut went: RemovedComponents<Near>,
    shown: Query<(), (With<NoteVisual>, Without<Near>)>,
) {
    for e in &came {
        commands.entity(e).insert(NeedsVisual);
    }
    for e in went.read() {
        if shown.contains(e) {
            commands.entity(e).try_insert(NeedsVisual);
        }
    }
}

/// (Re)builds the visual of every new or changed note. A near note gets its parts: a
/// shared-material card and backplate now, its detail when [`build_details`] comes to it. A
/// far note gets no parts; the far field draws it.
fn build_cards(
    mut commands: Commands,
    assets: Option<Res<NoteAssets>>,
    mut field: ResMut<far::FarField>,
    mut q: Query<(Entity, &Note, &NoteAt, Option<&mut NoteVisual>, Has<Near>), With<NeedsVisual>>,
) {
    let Some(assets) = assets else { return };
    for (e, note, at, visual, near) in &mut q {
        let expanded = visual.as_ref().is_some_and(|v| v.expanded);
        if let Some(v) = visual {
            for child in [v.card, v.plate, v.detail].into_iter().flatten() {
                commands.entity(child).despawn();
            }
        }
        let shape = card_shape(note.kind());
        // The plate's state is shown afresh (by `update_plates`) on the new parts.
        commands.entity(e).remove::<(NeedsVisual, HasOrb, HasPicture, PlateState)>();
        if !near {
            // Drawn in the far field, in the normal colour until `update_plates` says.
            field.put(e, at.0, shape, PlateState::Normal);
            commands
                .entity(e)
                .insert((NoteVisual { expanded, ..default() }, shape.bounds()))
                .remove::<NeedsDetail>();
            continue;
        }
        field.forget(e);
        let card_mat = shape.card.map(|c| match c {
            Card::Plain => assets.card.clone(),
            Card::Placeholder => assets.card_placeholder.clone(),
        });
        let card = card_mat.map(|m| {
            spawn_part(
                &mut commands,
                assets.quad.clone(),
                m,
                Transform::from_scale(shape.size.extend(1.0)),
                e,
            )
        });
        let plate_mesh = if shape.round_plate { assets.disc.clone() } else { assets.quad.clone() };
        let plate =
            spawn_part(&mut commands, plate_mesh, assets.plate.clone(), shape.plate_transform(), e);
        commands.entity(e).insert((
            NoteVisual { card, plate: Some(plate), expanded, ..default() },
            shape.bounds(),
            NeedsDetail,
        ));
    }
}

/// A part of a note's visual: a mesh with a material, a child of the note, casting no
/// shadow (floating panels would throw slabs onto the floor).
fn spawn_part<M: Material>(
    commands: &mut Commands,
    mesh: Handle<Mesh>,
    material: Handle<M>,
    transform: Transform,
    parent: Entity,
) -> Entity {
    commands
        .spawn((
            Mesh3d(mesh),
            MeshMaterial3d(material),
            transform,
            NotShadowCaster,
            ChildOf(parent),
        ))
        .id()
}

/// An unlit, double-sided, alpha-blended material showing a panel's texture.
fn panel_texture_material(
    materials: &mut Assets<StandardMaterial>,
    image: Handle<Image>,
) -> Handle<StandardMaterial> {
    materials.add(StandardMaterial {
        base_color_texture: Some(image),
        unlit: true,
        alpha_mode: AlphaMode::Blend,
        cull_mode: None,
        ..default()
    })
}

/// The material of a rasterized panel.
pub(crate) fn panel_material(
    materials: &mut Assets<StandardMaterial>,
    images: &mut Assets<Image>,
    raster: text::Raster,
) -> Handle<StandardMaterial> {
    panel_texture_material(materials, images.add(image_from_raster(raster)))
}

/// Spawns a panel part under `parent`, to be laid out and drawn on a worker thread (here and
/// now when there is no task pool, as in a bare test app) and sized by `fit` when it is
/// done. Returns the part and its material.
fn spawn_panel(
    parts: &mut Parts,
    parent: Entity,
    text: PanelText,
    fit: PanelFit,
    replaces: Option<Entity>,
) -> (Entity, Handle<StandardMaterial>) {
    let Parts { commands, assets, materials, images, jobs, .. } = parts;
    let draw = |fonts: &Fonts, text: &PanelText| {
        text::draw_panel(fonts, &layout_panel(fonts, &text.header, &text.body, &text.style))
    };
    let Some(pool) = AsyncComputeTaskPool::try_get() else {
        let raster = draw(&assets.fonts, &text);
        let (w, h) = (raster.width, raster.height);
        let material = panel_material(materials, images, raster);
        let part = spawn_part(
            commands,
            assets.quad.clone(),
            material.clone(),
            Transform::IDENTITY,
            parent,
        );
        fit.apply(commands, part, w, h);
        if let Some(old) = replaces {
            commands.entity(old).try_despawn();
        }
        return (part, material);
    };
    let image = images.reserve_handle();
    let material = panel_texture_material(materials, image.clone());
    // Where it stands until it is laid out: not drawn before then, so any size will do.
    let provisional = fit.part_transform(0.25);
    let part = spawn_part(commands, assets.quad.clone(), material.clone(), provisional, parent);
    let fonts = assets.fonts.clone();
    let task = pool.spawn(async move { Some(image_from_raster(draw(&fonts, &text))) });
    jobs.0.push(PanelJob {
        image,
        material: material.clone(),
        part,
        fit: Some(fit),
        replaces,
        task,
    });
    (part, material)
}

/// Panels drawn and pictures decoded on worker threads become textures, and panels take
/// their size.
fn finish_panels(
    mut commands: Commands,
    mut jobs: ResMut<PanelJobs>,
    mut images: ResMut<Assets<Image>>,
    mut materials: ResMut<Assets<StandardMaterial>>,
    parts: Query<(), With<ChildOf>>,
) {
    jobs.0.retain_mut(|job| {
        let Some(picture) = check_ready(&mut job.task) else { return true };
        if let Some(old) = job.replaces {
            commands.entity(old).try_despawn();
        }
        // A part taken down meanwhile (its note went far, or was rebuilt) needs nothing.
        if parts.contains(job.part) {
            if let (Some(fit), Some(p)) = (job.fit, &picture) {
                fit.apply(&mut commands, job.part, p.width(), p.height());
            }
            show_decoded(picture, &job.image, &job.material, &mut images, &mut materials);
        }
        false
    });
}

pub(crate) fn image_from_raster(raster: text::Raster) -> Image {
    Image::new(
        Extent3d { width: raster.width, height: raster.height, depth_or_array_layers: 1 },
        TextureDimension::D2,
        raster.rgba,
        TextureFormat::Rgba8UnormSrgb,
        RenderAssetUsages::RENDER_WORLD,
    )
}

/// Decodes an image note's picture (thumbnail or full) into a texture.
pub fn image_from_bytes(bytes: &[u8]) -> Option<Image> {
    let rgba = cairn_client::image::decode_rgba(bytes).ok()?;
    let (w, h) = rgba.dimensions();
    Some(Image::new(
        Extent3d { width: w, height: h, depth_or_array_layers: 1 },
        TextureDimension::D2,
        rgba.into_raw(),
        TextureFormat::Rgba8UnormSrgb,
        RenderAssetUsages::RENDER_WORLD,
    ))
}

/// The header of a panel: author and age, and a state when it matters. A note left
/// against a spatial anchor this device does not locate stands at its stage pose, so its
/// place is marked as approximate.
pub fn header_line(note: &Note, now_ms: u64) -> String {
    match &note.body {
        Some(b) => {
            let state = if note.pending() { " · sending…" } else { "" };
            let place = if note.approximate { " · ≈ place approximate" } else { "" };
            format!("{} · {}{state}{place}", b.author, age_label(b.created_at, now_ms))
        }
        None if note.unverifiable() => "⚠ unverifiable: not shown".into(),
        None => "🔒 could not be opened".into(),
    }
}

/// What a note that could not be opened says in place of its text.
pub fn unopened_text(note: &Note) -> String {
    if note.unverifiable() {
        "This note's signature does not verify, so nothing shows who left it; what it says \
         is not shown."
            .into()
    } else {
        format!(
            "This note was left here, but this device cannot read it ({}).",
            note.error.clone().unwrap_or_default()
        )
    }
}

/// What a note's parts are made with: the commands, the shared meshes and fonts, the
/// textures and materials, and the panels being drawn on workers.
#[derive(bevy::ecs::system::SystemParam)]
struct DetailParts<'w, 's> {
    commands: Commands<'w, 's>,
    assets: Option<Res<'w, NoteAssets>>,
    images: ResMut<'w, Assets<Image>>,
    materials: ResMut<'w, Assets<StandardMaterial>>,
    orbs: ResMut<'w, Assets<VoiceOrbMaterial>>,
    jobs: ResMut<'w, PanelJobs>,
}

/// [`DetailParts`] while a frame's details are built (its assets known to be there).
struct Parts<'a, 'w, 's> {
    commands: &'a mut Commands<'w, 's>,
    assets: &'a NoteAssets,
    images: &'a mut Assets<Image>,
    materials: &'a mut Assets<StandardMaterial>,
    orbs: &'a mut Assets<VoiceOrbMaterial>,
    jobs: &'a mut PanelJobs,
}

/// The near notes' details, a few each frame (within a time budget): one builder per kind.
fn build_details(
    mut parts: DetailParts,
    mut q: Query<(Entity, &Note, &mut NoteVisual), (With<NeedsDetail>, With<Near>)>,
) {
    let DetailParts { commands, assets, images, materials, orbs, jobs } = &mut parts;
    let Some(assets) = assets.as_deref() else { return };
    let mut parts = Parts { commands, assets, images, materials, orbs, jobs };
    let started = Instant::now();
    let now = cairn_proto::now_ms();
    for (e, note, mut visual) in &mut q {
        if started.elapsed().as_secs_f64() * 1000.0 > DETAIL_BUDGET_MS
            || parts.jobs.0.len() >= MAX_PANEL_JOBS
        {
            break;
        }
        // A text panel being rebuilt (expanded or folded) shows until its successor is
        // ready; any other detail goes at once.
        let mut old = visual.detail.take();
        if note.kind() != Some(NoteKind::Text)
            && let Some(d) = old.take()
        {
            parts.commands.entity(d).despawn();
        }
        let header = header_line(note, now);
        let detail = match note.body.as_ref() {
            Some(body) if body.kind == NoteKind::Voice => {
                voice_detail(&mut parts, e, body, &mut visual, &header)
            }
            Some(body) if matches!(body.kind, NoteKind::Image | NoteKind::Video) => {
                picture_detail(&mut parts, e, body, &mut visual, &header)
            }
            Some(body) if body.kind == NoteKind::Reaction => {
                reaction_detail(&mut parts, e, body, &mut visual)
            }
            _ => text_detail(&mut parts, e, note, &mut visual, header, old),
        };
        visual.detail = Some(detail);
        parts.commands.entity(e).remove::<NeedsDetail>();
    }
}

/// A voice note: its orb (the waveform's shader), with its length or text beneath.
fn voice_detail(
    parts: &mut Parts,
    e: Entity,
    body: &cairn_crypto::NoteBody,
    visual: &mut NoteVisual,
    header: &str,
) -> Entity {
    let mat = parts.orbs.add(VoiceOrbMaterial { data: VoiceOrbUniform::new(&body.waveform) });
    visual.orb_material = Some(mat.clone());
    parts.commands.entity(e).insert(HasOrb);
    let orb = spawn_part(parts.commands, parts.assets.orb.clone(), mat, Transform::default(), e);
    let label = if body.text.is_empty() {
        format!("{:.0} s", f64::from(body.duration_ms) / 1000.0)
    } else {
        body.text.clone()
    };
    spawn_caption(parts, orb, Vec2::ONE, header, &label, 0.22);
    orb
}

/// A picture, or a video's poster (playing it is `video`'s), framed in place of the card,
/// with its caption (a video's length first) beneath.
fn picture_detail(
    parts: &mut Parts,
    e: Entity,
    body: &cairn_crypto::NoteBody,
    visual: &mut NoteVisual,
    header: &str,
) -> Entity {
    let video = body.kind == NoteKind::Video;
    if video {
        parts.commands.entity(e).insert(HasVideo);
    } else {
        parts.commands.entity(e).insert(HasPicture);
    }
    // The header gives the picture's shape now; its pixels are decoded on a worker (a
    // broken picture shows as a grey card).
    let shape = cairn_client::image::dimensions(&body.thumbnail).ok();
    let size = picture_size(shape);
    let texture = shape.map(|_| parts.images.reserve_handle());
    let mat = parts.materials.add(StandardMaterial {
        base_color: if shape.is_some() { Color::WHITE } else { BROKEN_PICTURE },
        base_color_texture: texture.clone(),
        unlit: true,
        alpha_mode: AlphaMode::Blend,
        cull_mode: None,
        ..default()
    });
    visual.detail_material = Some(mat.clone());
    if let Some(card) = visual.card {
        // The frame replaces the card.
        parts.commands.entity(card).insert((
            Mesh3d(parts.assets.frame.clone()),
            MeshMaterial3d(parts.assets.frame_wood.clone()),
            Transform::from_xyz(0.0, 0.0, -0.025)
                .with_scale((size + Vec2::splat(0.06)).extend(1.0)),
        ));
    }
    parts.commands.entity(e).insert(NoteBounds((size / 2.0 + Vec2::splat(0.03)).extend(0.05)));
    let picture = spawn_part(
        parts.commands,
        parts.assets.quad.clone(),
        mat.clone(),
        Transform::from_scale(size.extend(1.0)),
        e,
    );
    if let Some(texture) = texture {
        let bytes = body.thumbnail.clone();
        let decode = move || image_from_bytes(&bytes);
        match AsyncComputeTaskPool::try_get() {
            Some(pool) => parts.jobs.0.push(PanelJob {
                image: texture,
                material: mat,
                part: picture,
                fit: None,
                replaces: None,
                task: pool.spawn(async move { decode() }),
            }),
            None => show_decoded(decode(), &texture, &mat, parts.images, parts.materials),
        }
    }
    let caption = if video {
        let seconds = f64::from(body.duration_ms) / 1000.0;
        let length = format!("video, {:.0}:{:02.0}", (seconds / 60.0).floor(), seconds % 60.0);
        if body.text.is_empty() { length } else { format!("{length} — {}", body.text) }
    } else {
        body.text.clone()
    };
    if !caption.is_empty() {
        spawn_caption(parts, picture, size, header, &caption, size.y / 2.0 + 0.04);
    }
    picture
}

/// A reaction: its emoji, alone on a small round-cornered panel.
fn reaction_detail(
    parts: &mut Parts,
    e: Entity,
    body: &cairn_crypto::NoteBody,
    visual: &mut NoteVisual,
) -> Entity {
    let text = PanelText {
        header: String::new(),
        body: body.reaction.clone().unwrap_or_default(),
        style: PanelStyle {
            width_px: 96,
            padding_px: 8,
            body_px: 56.0,
            header_px: 1.0,
            max_lines: 1,
            background: [255, 255, 255, 230],
            ..PanelStyle::NOTE
        },
    };
    let (part, mat) = spawn_panel(parts, e, text, PanelFit::Emoji, None);
    visual.detail_material = Some(mat);
    part
}

/// A text note or a place (expanded when read), or a note that could not be opened (saying
/// why): its panel, which replaces `old` once drawn.
fn text_detail(
    parts: &mut Parts,
    e: Entity,
    note: &Note,
    visual: &mut NoteVisual,
    header: String,
    old: Option<Entity>,
) -> Entity {
    let (body, style) = match &note.body {
        Some(b) => {
            debug_assert!(matches!(b.kind, NoteKind::Text | NoteKind::Place));
            (b.text.clone(), if visual.expanded { PanelStyle::EXPANDED } else { PanelStyle::NOTE })
        }
        None => (unopened_text(note), PanelStyle::PLACEHOLDER),
    };
    let fit = PanelFit::Note { note: e, card: visual.card, plate: visual.plate };
    let (part, mat) = spawn_panel(parts, e, PanelText { header, body, style }, fit, old);
    visual.detail_material = Some(mat);
    part
}

/// A two-line caption (author, age, text) under a picture or an orb, `below` metres down,
/// a child of the part it belongs to (`parent`, scaled by `within`), so it goes with it.
fn spawn_caption(
    parts: &mut Parts,
    parent: Entity,
    within: Vec2,
    header: &str,
    text: &str,
    below: f32,
) {
    let text = PanelText {
        header: header.to_owned(),
        body: text.to_owned(),
        style: PanelStyle { max_lines: 2, ..PanelStyle::NOTE },
    };
    spawn_panel(parts, parent, text, PanelFit::Caption { below, within }, None);
}

fn update_plates(
    assets: Option<Res<NoteAssets>>,
    pointer: Res<Pointer>,
    focused: Res<Focused>,
    mut field: ResMut<far::FarField>,
    notes: Query<(Entity, &Note, &NoteVisual, Option<&PlateState>)>,
    fresh: Query<Entity, (With<NoteVisual>, Without<PlateState>)>,
    mut last: Local<(Option<Entity>, Option<Entity>)>,
    mut commands: Commands,
) {
    let Some(assets) = assets else { return };
    // Only notes whose state can have changed: those built or rebuilt (every change to a
    // note rebuilds it, and a rebuild takes its plate state), and those that gained or lost
    // the hover or the focus (reading a note focuses it).
    let mut candidates: Vec<Entity> = fresh.iter().collect();
    candidates.extend([last.0, last.1, pointer.hovered, focused.0].into_iter().flatten());
    *last = (pointer.hovered, focused.0);
    for (e, note, visual, current) in candidates.into_iter().filter_map(|e| notes.get(e).ok()) {
        let state = plate_state(note, e, &pointer, &focused);
        if current == Some(&state) {
            continue;
        }
        if let Some(plate) = visual.plate {
            let mat = match state {
                PlateState::Normal => assets.plate.clone(),
                PlateState::Unread => assets.plate_unread.clone(),
                PlateState::Hover => assets.plate_hover.clone(),
                PlateState::Focus => assets.plate_focus.clone(),
                PlateState::Pending => assets.plate_pending.clone(),
            };
            commands.entity(plate).insert(MeshMaterial3d(mat));
        } else {
            // A far note: its plate is in the far field.
            field.set_plate(e, state);
        }
        commands.entity(e).insert(state);
    }
}

/// Orbs breathe gently; a playing orb pulses and shows its progress (set by the audio plugin).
fn animate_orbs(
    time: Res<Time>,
    pointer: Res<Pointer>,
    mut orbs: ResMut<Assets<VoiceOrbMaterial>>,
    q: Query<(Entity, &NoteVisual), With<HasOrb>>,
) {
    for (e, v) in &q {
        if let Some(mut m) = v.orb_material.as_ref().and_then(|h| orbs.get_mut(h)) {
            m.data.params.z = time.elapsed_secs();
            m.data.params.w = if pointer.hovered == Some(e) { 1.0 } else { 0.0 };
        }
    }
}

/// A picture that is focused, or within [`FULL_PICTURE_DISTANCE`] of the viewer, asks for
/// its full image; when it arrives, it replaces the thumbnail. (A picture that goes far
/// again is rebuilt from its thumbnail, and lets the full image go.)
#[allow(clippy::too_many_arguments)]
fn show_full_images(
    focused: Res<Focused>,
    viewer: Res<Viewer>,
    mut awaiting: ResMut<AwaitingMedia>,
    mut decoding: ResMut<DecodingPictures>,
    mut ready: MessageReader<MediaReady>,
    mut net: MessageWriter<NetCommand>,
    mut images: ResMut<Assets<Image>>,
    mut materials: ResMut<Assets<StandardMaterial>>,
    mut notes: ParamSet<(
        Query<(Entity, &Note, &NoteAt, &mut NoteVisual), (With<HasPicture>, With<Near>)>,
        Query<(&Note, &mut NoteVisual)>,
    )>,
) {
    for (e, note, at, mut v) in &mut notes.p0() {
        if v.full_image == FullImage::No
            && (focused.0 == Some(e) || at.0.distance(viewer.0) <= FULL_PICTURE_DISTANCE)
            && let Some(m) = note.body.as_ref().and_then(|b| b.media.first())
        {
            v.full_image = FullImage::Requested;
            awaiting.0.entry(m.hash).or_default().push(e);
            net.write(NetCommand(ClientCommand::FetchMedia { media: m.clone() }));
        }
    }
    // Read and decoded on a worker (here and now without a task pool): a full picture can
    // take longer than a frame.
    for r in ready.read() {
        let Some(entities) = awaiting.0.remove(&r.hash) else { continue };
        let path = r.path.clone();
        let decode = move || std::fs::read(&path).ok().and_then(|bytes| image_from_bytes(&bytes));
        match AsyncComputeTaskPool::try_get() {
            Some(pool) => decoding.0.push((entities, pool.spawn(async move { decode() }))),
            None => {
                show_full_picture(decode(), &entities, &mut images, &mut materials, &mut notes.p1())
            }
        }
    }
    decoding.0.retain_mut(|(entities, task)| match check_ready(task) {
        Some(decoded) => {
            show_full_picture(decoded, entities, &mut images, &mut materials, &mut notes.p1());
            false
        }
        None => true,
    });
}

/// A decoded full picture replaces the thumbnail of the notes that show it.
fn show_full_picture(
    picture: Option<Image>,
    entities: &[Entity],
    images: &mut Assets<Image>,
    materials: &mut Assets<StandardMaterial>,
    notes: &mut Query<(&Note, &mut NoteVisual)>,
) {
    let Some(picture) = picture else {
        warn!("a full picture could not be read or decoded; the thumbnail stays");
        return;
    };
    let handle = images.add(picture);
    for &e in entities {
        if let Ok((_, mut v)) = notes.get_mut(e)
            && let Some(mut m) = v.detail_material.as_ref().and_then(|h| materials.get_mut(h))
        {
            m.base_color_texture = Some(handle.clone());
            v.full_image = FullImage::Shown;
        }
    }
}

/// Replies are joined to their parents by a thin line.
fn draw_reply_lines(
    mut gizmos: Gizmos,
    viewer: Res<Viewer>,
    links: Query<(&NoteAt, &ReplyLink)>,
    parents: Query<&NoteAt>,
) {
    for (at, link) in &links {
        if let Ok(p) = parents.get(link.0)
            && at.0.distance(viewer.0) < crate::notes::FADE_END
        {
            gizmos.line(at.0, p.0, Color::srgba(0.95, 0.95, 1.0, 0.7));
        }
    }
}

fn count_progress(
    mut progress: ResMut<RenderProgress>,
    jobs: Res<PanelJobs>,
    notes: Query<(Has<Near>, Option<&NeedsDetail>, Option<&NeedsVisual>), With<Note>>,
) {
    // Panels still being drawn count as waiting (their notes show no text yet).
    let mut p = RenderProgress { waiting_detail: jobs.0.len(), ..default() };
    for (near, needs_detail, needs_visual) in &notes {
        p.notes += 1;
        if needs_visual.is_some() || (needs_detail.is_some() && near) {
            p.waiting_detail += 1;
        } else if near {
            p.detailed += 1;
        }
    }
    *progress = p;
}

/// Marks a text note expanded (or not) and rebuilds its panel.
pub fn set_expanded(commands: &mut Commands, e: Entity, visual: &mut NoteVisual, expanded: bool) {
    if visual.expanded != expanded {
        visual.expanded = expanded;
        commands.entity(e).insert(NeedsDetail);
    }
}

/// The welcome image: a cairn against a dusk sky, drawn here so the app needs no download.
pub fn welcome_picture() -> Vec<u8> {
    let (w, h) = (640u32, 480u32);
    let mut img = image::RgbImage::new(w, h);
    for (x, y, px) in img.enumerate_pixels_mut() {
        let t = y as f32 / h as f32;
        let sky = [(40.0 + 180.0 * t) as u8, (60.0 + 110.0 * t) as u8, (120.0 + 40.0 * t) as u8];
        let ground = y > h * 3 / 4;
        *px = image::Rgb(if ground { [70, 90, 60] } else { sky });
        // Stones: stacked ellipses.
        for (cy, rx, ry) in [
            (330.0, 120.0, 40.0),
            (270.0, 95.0, 34.0),
            (218.0, 72.0, 28.0),
            (175.0, 50.0, 22.0),
            (142.0, 30.0, 16.0),
        ] {
            let dx = (x as f32 - w as f32 / 2.0) / rx;
            let dy = (y as f32 - cy) / ry;
            if dx * dx + dy * dy <= 1.0 {
                let shade = (150.0 - 40.0 * dy) as u8;
                *px = image::Rgb([shade, shade.saturating_sub(6), shade.saturating_sub(14)]);
            }
        }
        let _ = x;
    }
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).expect("encoding a PNG in memory");
    out.into_inner()
}

/// Activating a text note expands it (or folds it back).
fn expand_on_activate(
    mut commands: Commands,
    mut activated: MessageReader<crate::interact::NoteActivated>,
    mut notes: Query<(&Note, &mut NoteVisual)>,
) {
    for a in activated.read() {
        if let Ok((n, mut v)) = notes.get_mut(a.entity)
            && n.kind() == Some(NoteKind::Text)
        {
            let expanded = !v.expanded;
            set_expanded(&mut commands, a.entity, &mut v, expanded);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_proto::{DeviceId, NoteId, SpaceId};

    /// A note whose signature failed says so plainly, and shows nothing of itself; any
    /// other unopened note keeps its reason.
    #[test]
    fn an_unverifiable_note_is_marked_as_such_and_shows_nothing() {
        let note = |error: &str| Note {
            space: SpaceId([1; 16]),
            id: NoteId([2; 16]),
            seq: Some(1),
            sender: DeviceId([3; 32]),
            body: None,
            error: Some(error.into()),
            unread: true,
            approximate: false,
        };
        let bad = note(cairn_client::client::UNVERIFIABLE);
        assert!(bad.unverifiable());
        assert!(header_line(&bad, 0).contains("unverifiable"));
        assert!(unopened_text(&bad).contains("signature does not verify"));
        let keyless = note("no key for epoch 3 yet");
        assert!(!keyless.unverifiable());
        assert!(header_line(&keyless, 0).contains("could not be opened"));
        assert!(unopened_text(&keyless).contains("no key for epoch 3 yet"));
    }
}
