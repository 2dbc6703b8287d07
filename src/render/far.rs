//! The far field: every note beyond the detail distance, drawn as one mesh. A far note has
//! no parts of its own (no card, plate or detail entities), and the frame does no work for
//! it: its backplate and card are a few triangles here, coloured by its state, faded by its
//! distance and turned toward the viewer as the mesh is built. The field keeps a list of
//! what each far note looks like, changed as notes change (a note built far, gone near, its
//! plate's state, its removal); the mesh is rebuilt from that list when it changes and on
//! the distance passes (when the viewer has moved 25 cm). So ten thousand notes cost a few
//! hundred part entities and one draw, not thirty thousand entities for Bevy to propagate,
//! cull and draw each frame, nor a pass over every note when the viewer walks. Fading,
//! turning, sorting and building the mesh run on a worker thread, as panels are drawn, and
//! the new mesh replaces the old when it is ready.

use super::card::{Card, CardShape, PlateState};
use crate::notes::{
    FADED_OUT, FarPanelScale, KnownAnchors, Near, Note, NoteAt, Viewer, fade_alpha, far_pose,
    full_pass,
};
use bevy::asset::RenderAssetUsages;
use bevy::camera::visibility::NoFrustumCulling;
use bevy::light::NotShadowCaster;
use bevy::mesh::{Indices, PrimitiveTopology};
use bevy::prelude::*;
use bevy::tasks::futures::check_ready;
use bevy::tasks::{AsyncComputeTaskPool, Task};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Sorts the far field behind every other blended thing (see [`setup`]).
const FAR_FIELD_DEPTH_BIAS: f32 = -10_000.0;

/// Segments of a round (voice) backplate in the far field.
const DISC_SEGMENTS: u32 = 16;

/// The state of the far field: the far notes, whether the mesh must be rebuilt, and what
/// it drew last.
#[derive(Resource, Default)]
pub struct FarField {
    /// What each far note looks like, in no order; shared with the rebuild in flight.
    members: Arc<Vec<FarNote>>,
    /// Where each far note is in `members`.
    slot: HashMap<Entity, usize>,
    /// Changes made while a rebuild holds `members`, applied in order when it is done
    /// (instead of copying thousands of far notes for each change).
    waiting: Vec<Change>,
    /// Set when the far notes changed since the last rebuild.
    dirty: bool,
    /// A rebuild is due but waits for the one in flight.
    pending: bool,
    /// The rebuild in flight on a worker thread.
    job: Option<Task<Built>>,
    /// Notes drawn in the field at the last rebuild.
    pub notes: usize,
    /// Times the field was rebuilt.
    pub rebuilds: u64,
    /// Time spent rebuilding it, all told (on a worker thread).
    pub rebuild_time: Duration,
}

impl FarField {
    /// Whether the mesh shows the far notes as they are: no rebuild due or in flight.
    pub fn settled(&self) -> bool {
        !self.dirty && !self.pending && self.job.is_none()
    }

    /// The notes the field holds (drawn, or faded out of sight), changes waiting for the
    /// rebuild in flight included.
    pub fn len(&mut self) -> usize {
        self.members_now().len()
    }

    pub fn is_empty(&mut self) -> bool {
        self.len() == 0
    }

    /// Draws `note` in the field (or redraws it): it is far, standing at `at`.
    pub(crate) fn put(&mut self, note: Entity, at: Vec3, shape: CardShape, plate: PlateState) {
        self.change(Change::Put(FarNote { note, at, shape, plate }));
    }

    /// Shows a far note's plate in `plate`'s colour (nothing when the note is not far).
    pub(crate) fn set_plate(&mut self, note: Entity, plate: PlateState) {
        self.change(Change::Plate(note, plate));
    }

    /// Takes `note` out of the field (it came near, or is gone).
    pub(crate) fn forget(&mut self, note: Entity) {
        self.change(Change::Forget(note));
    }

    /// Moves every far note to where `place` says it stands now (anchors moved).
    fn follow(&mut self, place: impl Fn(Entity) -> Option<Vec3>) {
        for far in self.members_now() {
            if let Some(at) = place(far.note) {
                far.at = at;
            }
        }
        self.dirty = true;
    }

    /// Applies `change` now, or, while a rebuild holds the list, when it is done.
    fn change(&mut self, change: Change) {
        self.dirty = true;
        match Arc::get_mut(&mut self.members) {
            Some(members) if self.waiting.is_empty() => change.apply(members, &mut self.slot),
            _ => self.waiting.push(change),
        }
    }

    /// Applies the waiting changes when no rebuild holds the list any more.
    fn catch_up(&mut self) {
        if let Some(members) = Arc::get_mut(&mut self.members) {
            for change in self.waiting.drain(..) {
                change.apply(members, &mut self.slot);
            }
        }
    }

    /// The list as it is with every change applied, copied if a rebuild holds it (for the
    /// rare change to every note: anchors moving).
    fn members_now(&mut self) -> &mut Vec<FarNote> {
        let members = Arc::make_mut(&mut self.members);
        for change in self.waiting.drain(..) {
            change.apply(members, &mut self.slot);
        }
        members
    }
}

/// A change to the far field's list.
#[derive(Debug, Clone, Copy)]
enum Change {
    Put(FarNote),
    Plate(Entity, PlateState),
    Forget(Entity),
}

impl Change {
    fn apply(self, members: &mut Vec<FarNote>, slot: &mut HashMap<Entity, usize>) {
        match self {
            Change::Put(far) => match slot.get(&far.note) {
                Some(&i) => members[i] = far,
                None => {
                    slot.insert(far.note, members.len());
                    members.push(far);
                }
            },
            Change::Plate(note, plate) => {
                if let Some(&i) = slot.get(&note) {
                    members[i].plate = plate;
                }
            }
            Change::Forget(note) => {
                let Some(i) = slot.remove(&note) else { return };
                members.swap_remove(i);
                if let Some(moved) = members.get(i) {
                    slot.insert(moved.note, i);
                }
            }
        }
    }
}

/// What a far note looks like, kept as it changes; faded and turned for the viewer when the
/// mesh is built.
#[derive(Debug, Clone, Copy)]
struct FarNote {
    note: Entity,
    at: Vec3,
    shape: CardShape,
    plate: PlateState,
}

/// A rebuilt field.
struct Built {
    mesh: FarMesh,
    notes: usize,
    took: Duration,
}

/// Fades the far notes for the viewer's distance (leaving out those faded out), sorts them
/// farthest first, so that the blended cards overlap as they should, and builds their mesh,
/// each turned toward the viewer at the far panels' `scale`.
fn build(notes: &[FarNote], viewer: Vec3, scale: f32) -> Built {
    let started = Instant::now();
    // (whole centimetres from the viewer, alpha, note)
    let mut shown: Vec<(u32, f32, &FarNote)> = notes
        .iter()
        .filter_map(|n| {
            let d = n.at.distance(viewer);
            let alpha = fade_alpha(d);
            (alpha > FADED_OUT).then_some(((d * 100.0) as u32, alpha, n))
        })
        .collect();
    shown.sort_unstable_by_key(|(d, _, _)| std::cmp::Reverse(*d));
    let palette = Palette::new();
    // Sized once, not grown note by note.
    let (vertices, indices) = shown.iter().fold((0, 0), |(v, i), (_, _, n)| {
        let (pv, pi) = FarMesh::plate_size(&n.shape);
        let (cv, ci) = if n.shape.card.is_some() { (4, 6) } else { (0, 0) };
        (v + pv + cv, i + pi + ci)
    });
    let mut mesh = FarMesh::with_capacity(vertices, indices);
    for (_, alpha, n) in &shown {
        let card = n.shape.card.map(|c| palette.card(c));
        let pose = far_pose(n.at, viewer, scale);
        mesh.note(&pose, &n.shape, palette.plate(n.plate), card, *alpha);
    }
    Built { mesh, notes: shown.len(), took: started.elapsed() }
}

/// The entity that shows the far field's mesh.
#[derive(Component, Debug)]
pub struct FarFieldMesh;

pub(super) fn setup(
    mut commands: Commands,
    mut meshes: ResMut<Assets<Mesh>>,
    mut materials: ResMut<Assets<StandardMaterial>>,
) {
    commands.spawn((
        FarFieldMesh,
        Mesh3d(meshes.add(FarMesh::default().into_mesh())),
        // Vertex colours carry each note's colour and fade.
        MeshMaterial3d(materials.add(StandardMaterial {
            base_color: Color::WHITE,
            unlit: true,
            alpha_mode: AlphaMode::Blend,
            cull_mode: None,
            // Blended meshes write no depth, so they must be drawn back to front, and Bevy
            // sorts them by their centre: this mesh's centre is the world's origin, which
            // may be nearer than a near note's panel in front of far notes. A bias this large
            // sorts the field first, behind every near panel. On the GPU it shifts the
            // field's depth by about 0.1 % (a note 20 m away is tested as if 2 cm farther).
            depth_bias: FAR_FIELD_DEPTH_BIAS,
            ..default()
        })),
        Transform::IDENTITY,
        Visibility::Hidden,
        NotShadowCaster,
        // The field surrounds the viewer; its bounds would only ever say "in view".
        NoFrustumCulling,
    ));
}

/// The vertices and triangles of the far field, built on the CPU.
#[derive(Debug, Default)]
pub struct FarMesh {
    pub positions: Vec<[f32; 3]>,
    pub normals: Vec<[f32; 3]>,
    pub colours: Vec<[f32; 4]>,
    pub indices: Vec<u32>,
}

/// A note's frame, as the far field needs it: where its centre is, and its three axes
/// scaled by its scale.
struct Frame {
    centre: Vec3,
    right: Vec3,
    up: Vec3,
    forward: Vec3,
    normal: [f32; 3],
}

impl Frame {
    fn of(at: &Transform) -> Self {
        let forward = at.rotation * Vec3::Z;
        Frame {
            centre: at.translation,
            right: at.rotation * Vec3::X * at.scale.x,
            up: at.rotation * Vec3::Y * at.scale.y,
            forward: forward * at.scale.z,
            normal: forward.to_array(),
        }
    }
}

/// The unit circle at each segment's start, computed once.
fn circle() -> &'static [(f32, f32); DISC_SEGMENTS as usize] {
    static CIRCLE: std::sync::OnceLock<[(f32, f32); DISC_SEGMENTS as usize]> =
        std::sync::OnceLock::new();
    CIRCLE.get_or_init(|| {
        std::array::from_fn(|i| {
            let a = i as f32 / DISC_SEGMENTS as f32 * std::f32::consts::TAU;
            (a.cos(), a.sin())
        })
    })
}

impl FarMesh {
    fn with_capacity(vertices: usize, indices: usize) -> Self {
        FarMesh {
            positions: Vec::with_capacity(vertices),
            normals: Vec::with_capacity(vertices),
            colours: Vec::with_capacity(vertices),
            indices: Vec::with_capacity(indices),
        }
    }

    /// The vertices and indices of a note's backplate: a disc or a rectangle.
    fn plate_size(shape: &CardShape) -> (usize, usize) {
        if shape.round_plate {
            (1 + DISC_SEGMENTS as usize, 3 * DISC_SEGMENTS as usize)
        } else {
            (4, 6)
        }
    }

    /// A rectangle of `half` extents about `centre`, in the note's plane.
    fn quad(&mut self, f: &Frame, centre: Vec3, half: Vec2, colour: [f32; 4]) {
        let base = self.positions.len() as u32;
        let (r, u) = (f.right * half.x, f.up * half.y);
        for p in [centre - r - u, centre + r - u, centre + r + u, centre - r + u] {
            self.vertex(p, f.normal, colour);
        }
        self.indices.extend([base, base + 1, base + 2, base, base + 2, base + 3]);
    }

    /// A disc of `radius` about `centre`, in the note's plane.
    fn disc(&mut self, f: &Frame, centre: Vec3, radius: f32, colour: [f32; 4]) {
        let first = self.positions.len() as u32;
        self.vertex(centre, f.normal, colour);
        let (r, u) = (f.right * radius, f.up * radius);
        for (cos, sin) in circle() {
            self.vertex(centre + r * *cos + u * *sin, f.normal, colour);
        }
        for i in 0..DISC_SEGMENTS {
            let next = (i + 1) % DISC_SEGMENTS;
            self.indices.extend([first, first + 1 + i, first + 1 + next]);
        }
    }

    fn vertex(&mut self, p: Vec3, normal: [f32; 3], colour: [f32; 4]) {
        self.positions.push(p.to_array());
        self.normals.push(normal);
        self.colours.push(colour);
    }

    /// One note's backplate and card, as [`super::build_cards`] would give it parts (the
    /// plate as [`CardShape::plate_transform`] places it), in linear colours, faded by `alpha`.
    pub(crate) fn note(
        &mut self,
        at: &Transform,
        shape: &CardShape,
        plate: LinearRgba,
        card: Option<LinearRgba>,
        alpha: f32,
    ) {
        let f = Frame::of(at);
        let faded = |c: LinearRgba| [c.red, c.green, c.blue, c.alpha * alpha];
        let behind = f.centre - f.forward * 0.01;
        let plate_half = shape.size / 2.0 + Vec2::splat(0.02);
        if shape.round_plate {
            self.disc(&f, behind, plate_half.x, faded(plate));
        } else {
            self.quad(&f, behind, plate_half, faded(plate));
        }
        if let Some(card) = card {
            self.quad(&f, f.centre, shape.size / 2.0, faded(card));
        }
    }

    pub fn triangles(&self) -> usize {
        self.indices.len() / 3
    }

    pub fn into_mesh(mut self) -> Mesh {
        if self.indices.is_empty() {
            // No far notes: one triangle of no area, invisible. Bevy's mesh allocator has no
            // slot for a mesh without vertices and logs an error for each upload of one.
            self.positions = vec![[0.0; 3]; 3];
            self.normals = vec![[0.0, 0.0, 1.0]; 3];
            self.colours = vec![[0.0; 4]; 3];
            self.indices = vec![0, 1, 2];
        }
        let mut mesh = Mesh::new(PrimitiveTopology::TriangleList, RenderAssetUsages::default());
        mesh.insert_attribute(Mesh::ATTRIBUTE_POSITION, self.positions);
        mesh.insert_attribute(Mesh::ATTRIBUTE_NORMAL, self.normals);
        mesh.insert_attribute(Mesh::ATTRIBUTE_COLOR, self.colours);
        mesh.insert_indices(Indices::U32(self.indices));
        mesh
    }
}

/// The linear colours of the plates (by state) and cards (by kind), converted once per
/// rebuild rather than per note.
pub(crate) struct Palette {
    plates: [LinearRgba; 5],
    cards: [LinearRgba; 2],
}

impl Palette {
    pub(crate) fn new() -> Self {
        use PlateState::*;
        Palette {
            plates: [Normal, Unread, Hover, Focus, Pending].map(|s| s.colour().to_linear()),
            cards: [Card::Plain, Card::Placeholder].map(|c| c.colour().to_linear()),
        }
    }
    pub(crate) fn plate(&self, s: PlateState) -> LinearRgba {
        self.plates[s as usize]
    }
    pub(crate) fn card(&self, c: Card) -> LinearRgba {
        self.cards[c as usize]
    }
}

/// Rebuilds the far field's mesh when it is due (on a worker thread), and shows the
/// rebuilt mesh when it is ready.
#[allow(clippy::too_many_arguments)]
pub(super) fn draw(
    mut field: ResMut<FarField>,
    viewer: Res<Viewer>,
    scale: Res<FarPanelScale>,
    known: Res<KnownAnchors>,
    mut last: Local<Option<Vec3>>,
    mut removed: RemovedComponents<Note>,
    places: Query<&NoteAt, Without<Near>>,
    mut target: Query<(&Mesh3d, &mut Visibility), With<FarFieldMesh>>,
    mut meshes: ResMut<Assets<Mesh>>,
) {
    for e in removed.read() {
        field.forget(e);
    }
    if known.is_changed() && !field.is_empty() {
        // Anchored notes follow their anchors (`notes::anchors`), far ones too.
        field.follow(|e| places.get(e).ok().map(|at| at.0));
    }
    let passed = full_pass(&mut last, viewer.0);
    if field.dirty || passed || scale.is_changed() {
        field.dirty = false;
        field.pending = true;
    }
    let Ok((mesh, mut visibility)) = target.single_mut() else { return };
    if let Some(built) = field.job.as_mut().and_then(check_ready) {
        field.job = None;
        show(&mut field, built, mesh, &mut visibility, &mut meshes);
    }
    field.catch_up();
    if field.pending && field.job.is_none() {
        field.pending = false;
        let (notes, viewer, scale) = (Arc::clone(&field.members), viewer.0, scale.0);
        match AsyncComputeTaskPool::try_get() {
            Some(pool) => field.job = Some(pool.spawn(async move { build(&notes, viewer, scale) })),
            // No worker threads (a bare test app): build it here.
            None => {
                let built = build(&notes, viewer, scale);
                show(&mut field, built, mesh, &mut visibility, &mut meshes)
            }
        }
    }
}

fn show(
    field: &mut FarField,
    built: Built,
    mesh: &Mesh3d,
    visibility: &mut Visibility,
    meshes: &mut Assets<Mesh>,
) {
    field.notes = built.notes;
    field.rebuilds += 1;
    field.rebuild_time += built.took;
    let want = if built.notes == 0 { Visibility::Hidden } else { Visibility::Inherited };
    if *visibility != want {
        *visibility = want;
    }
    if built.notes > 0
        && let Err(e) = meshes.insert(mesh.id(), built.mesh.into_mesh())
    {
        warn!("the far field's mesh had nowhere to go: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::card::card_shape;
    use cairn_proto::NoteKind;

    #[test]
    fn an_empty_far_field_is_one_invisible_triangle_not_a_mesh_without_vertices() {
        use bevy::mesh::VertexAttributeValues;
        let mesh = FarMesh::default().into_mesh();
        let Some(VertexAttributeValues::Float32x3(p)) = mesh.attribute(Mesh::ATTRIBUTE_POSITION)
        else {
            panic!("positions")
        };
        assert_eq!(p.len(), 3);
        assert!(p.iter().all(|v| *v == p[0]), "no area");
        let Some(VertexAttributeValues::Float32x4(c)) = mesh.attribute(Mesh::ATTRIBUTE_COLOR)
        else {
            panic!("colours")
        };
        assert!(c.iter().all(|c| c[3] == 0.0), "and transparent");
        assert_eq!(mesh.indices().map(|i| i.len()), Some(3));
    }

    #[test]
    fn a_far_note_is_its_plate_behind_its_card_where_the_note_stands() {
        let at = Transform::from_xyz(3.0, 1.5, -20.0).with_rotation(Quat::from_rotation_y(0.5));
        let mut far = FarMesh::default();
        let palette = Palette::new();
        let (plate, card) = (palette.plate(PlateState::Unread), palette.card(Card::Plain));
        far.note(&at, &card_shape(Some(NoteKind::Text)), plate, Some(card), 0.5);
        assert_eq!(far.triangles(), 4, "two quads");
        assert_eq!(far.positions.len(), 8);
        // Every vertex lies within the plate's reach of the note's centre, on its plane.
        let back = at.rotation * Vec3::Z;
        for p in &far.positions {
            let p = Vec3::from_array(*p);
            assert!(p.distance(at.translation) < 0.45, "{p}");
            assert!((p - at.translation).dot(back).abs() <= 0.0101, "{p}");
        }
        // The plate comes first (drawn behind), in the unread colour, faded by half.
        let unread = PlateState::Unread.colour().to_linear();
        assert_eq!(far.colours[0], [unread.red, unread.green, unread.blue, unread.alpha * 0.5]);
        assert_eq!(far.colours[4][3], Card::Plain.colour().to_linear().alpha * 0.5);
        // The card's corner is the panel's corner.
        let corner = at.transform_point(Vec3::new(-0.35, -0.15, 0.0));
        assert!(Vec3::from_array(far.positions[4]).distance(corner) < 1e-4);
    }

    #[test]
    fn the_field_keeps_its_far_notes_as_they_change_and_draws_them_faded_and_farthest_first() {
        let mut world = World::new();
        let [a, b, c] = [(); 3].map(|_| world.spawn_empty().id());
        let text = card_shape(Some(NoteKind::Text));
        let mut field = FarField::default();
        field.put(a, Vec3::new(0.0, 1.5, -20.0), text, PlateState::Normal);
        field.put(b, Vec3::new(0.0, 1.5, -30.0), text, PlateState::Unread);
        field.put(c, Vec3::new(0.0, 1.5, -50.0), text, PlateState::Normal);
        // Taking out the first moves the last into its place; a second time does nothing.
        field.forget(a);
        field.forget(a);
        field.set_plate(c, PlateState::Hover);
        field.set_plate(a, PlateState::Focus);
        assert_eq!(field.len(), 2);
        let viewer = Vec3::new(0.0, 1.5, 0.0);
        let palette = Palette::new();
        let built = build(&field.members, viewer, 1.0);
        assert_eq!(built.notes, 1, "the note 50 m away has faded out");
        let unread = palette.plate(PlateState::Unread);
        let faded = unread.alpha * fade_alpha(30.0);
        assert_eq!(built.mesh.colours[0], [unread.red, unread.green, unread.blue, faded]);
        // It comes to 25 m, hovered: drawn after (in front of) the one at 30 m.
        field.put(c, Vec3::new(0.0, 1.5, -25.0), text, PlateState::Hover);
        let built = build(&field.members, viewer, 1.0);
        assert_eq!(built.notes, 2);
        assert_eq!(built.mesh.colours[8][..3], [1.0, 1.0, 1.0], "the hover colour, second");
        // XR's far panel size draws the cards three times as wide.
        let card_width = |mesh: &FarMesh| {
            Vec3::from_array(mesh.positions[5]).distance(Vec3::from_array(mesh.positions[4]))
        };
        let large = build(&field.members, viewer, 3.0);
        assert!((card_width(&large.mesh) - 3.0 * card_width(&built.mesh)).abs() < 1e-4);
        assert!((card_width(&built.mesh) - text.size.x).abs() < 1e-4);
        // While a rebuild holds the list, changes wait, untouched by it, and are applied in
        // order when it is done: a new note, recoloured, and one taken out.
        let d = world.spawn_empty().id();
        let in_flight = Arc::clone(&field.members);
        field.put(d, Vec3::new(0.0, 1.5, -15.0), text, PlateState::Normal);
        field.set_plate(d, PlateState::Focus);
        field.forget(b);
        field.catch_up();
        assert_eq!(in_flight.len(), 2);
        assert!(in_flight.iter().all(|n| n.note != d) && Arc::ptr_eq(&in_flight, &field.members));
        drop(in_flight);
        field.catch_up();
        assert!(field.waiting.is_empty());
        let notes: Vec<_> = field.members.iter().map(|n| (n.note, n.plate)).collect();
        assert_eq!(notes.len(), 2);
        assert!(notes.contains(&(c, PlateState::Hover)) && notes.contains(&(d, PlateState::Focus)));
        assert_eq!(field.slot.len(), 2);
        for (i, n) in field.members.iter().enumerate() {
            assert_eq!(field.slot[&n.note], i);
        }
    }

    #[test]
    fn a_far_voice_note_is_a_round_plate_without_a_card() {
        let mut far = FarMesh::default();
        let plate = Palette::new().plate(PlateState::Normal);
        far.note(&Transform::IDENTITY, &card_shape(Some(NoteKind::Voice)), plate, None, 1.0);
        assert_eq!(far.triangles(), DISC_SEGMENTS as usize);
        // The size a rebuild reserves for it is what it takes.
        let voice = card_shape(Some(NoteKind::Voice));
        assert_eq!(FarMesh::plate_size(&voice), (far.positions.len(), far.indices.len()));
        let radius = (0.4 + 0.04) / 2.0;
        for p in &far.positions[1..] {
            assert!((Vec3::from_array(*p).truncate().length() - radius).abs() < 1e-5);
        }
    }
}
