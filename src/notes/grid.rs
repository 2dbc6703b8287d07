//! Where the notes stand, bucketed by square cells of the floor plan, so that pointing asks
//! for the few notes near a ray instead of testing every note in the space.

use bevy::prelude::*;
use std::collections::HashMap;

/// The side of a cell (metres). About the size of a note with room to spare: a ray's
/// corridor is a few cells wide, and a cell holds a handful of notes even where they crowd.
pub const CELL: f32 = 2.0;

type Cell = (i32, i32);

/// The notes of the current space by the cell of the floor plan (x, z) their centre stands
/// in. Kept by the note systems: a note is placed when it is spawned or moved, and leaves
/// when it is despawned (a hook on [`super::Note`]).
#[derive(Resource, Debug)]
pub struct NoteGrid {
    cells: HashMap<Cell, Vec<Entity>>,
    cell_of: HashMap<Entity, Cell>,
    /// No note's bounds reach farther than this from its centre, at scale 1. Grows as notes
    /// get larger bounds; never shrinks, so it stays a true bound.
    radius: f32,
    /// The largest scale any note is given (by an animation, or by XR's comfort rule).
    scale: f32,
}

impl Default for NoteGrid {
    fn default() -> Self {
        NoteGrid { cells: HashMap::new(), cell_of: HashMap::new(), radius: 0.0, scale: 1.0 }
    }
}

/// The cell of a point of the floor plan (x, z).
fn cell_at(p: Vec2) -> Cell {
    // `as` saturates: a note a billion metres away lands in an edge cell, which is harmless.
    ((p.x / CELL).floor() as i32, (p.y / CELL).floor() as i32)
}

/// Distance from `p` to the segment `a`–`b` in the plane.
fn point_segment_distance(p: Vec2, a: Vec2, b: Vec2) -> f32 {
    let ab = b - a;
    let len2 = ab.length_squared();
    let t = if len2 > 0.0 { ((p - a).dot(ab) / len2).clamp(0.0, 1.0) } else { 0.0 };
    p.distance(a + ab * t)
}

impl NoteGrid {
    /// Puts `note` at `at` (or moves it there).
    pub fn place(&mut self, note: Entity, at: Vec3) {
        let cell = cell_at(at.xz());
        match self.cell_of.insert(note, cell) {
            Some(old) if old == cell => return,
            Some(old) => self.take_out(note, old),
            None => {}
        }
        self.cells.entry(cell).or_default().push(note);
    }

    pub fn remove(&mut self, note: Entity) {
        if let Some(old) = self.cell_of.remove(&note) {
            self.take_out(note, old);
        }
    }

    fn take_out(&mut self, note: Entity, cell: Cell) {
        if let Some(list) = self.cells.get_mut(&cell) {
            list.retain(|e| *e != note);
            if list.is_empty() {
                self.cells.remove(&cell);
            }
        }
    }

    /// Makes room for a note whose bounds reach this far from its centre (at scale 1).
    pub fn widen(&mut self, radius: f32) {
        if radius.is_finite() {
            self.radius = self.radius.max(radius);
        }
    }

    /// Makes room for notes scaled up to `scale` (a system that scales notes declares it).
    pub fn allow_scale(&mut self, scale: f32) {
        if scale.is_finite() {
            self.scale = self.scale.max(scale);
        }
    }

    /// How far from its centre any note can be hit.
    pub fn reach(&self) -> f32 {
        self.radius * self.scale
    }

    pub fn len(&self) -> usize {
        self.cell_of.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cell_of.is_empty()
    }

    /// Every note whose centre's floor-plan position may lie within `radius` of `at`'s (so
    /// every note within `radius` of `at` in space). Never leaves out such a note; may
    /// include some farther ones.
    pub fn near_point(&self, at: Vec3, radius: f32, out: &mut Vec<Entity>) {
        let c = at.xz();
        // A cell may hold such a centre when its own centre is within `radius` plus half its
        // diagonal.
        let within = radius + CELL * std::f32::consts::FRAC_1_SQRT_2;
        self.gather(c - Vec2::splat(radius), c + Vec2::splat(radius), out, |centre| {
            centre.distance(c) <= within
        });
    }

    /// Every note whose centre may lie within the reach of the ray's first `length` metres
    /// (from `reach` behind its origin to `reach` past the end): the candidates a ray of that
    /// length can hit. Never leaves out such a note; may include some farther ones.
    pub fn near_ray(&self, ray: Ray3d, length: f32, out: &mut Vec<Entity>) {
        let reach = self.reach();
        let start = ray.get_point(-reach);
        let end = ray.get_point(length + reach);
        let (a, b) = (start.xz(), end.xz());
        // A note's centre within `reach` of the segment in space is within `reach` of its
        // floor plan; a cell may hold such a centre when its own centre is within `reach`
        // plus half its diagonal.
        let within = reach + CELL * std::f32::consts::FRAC_1_SQRT_2;
        self.gather(a.min(b) - Vec2::splat(reach), a.max(b) + Vec2::splat(reach), out, |centre| {
            point_segment_distance(centre, a, b) <= within
        });
    }

    /// The notes of the cells between the floor-plan corners `lo` and `hi` whose centre
    /// `near` accepts, into `out`.
    fn gather(&self, lo: Vec2, hi: Vec2, out: &mut Vec<Entity>, near: impl Fn(Vec2) -> bool) {
        out.clear();
        let centre = |(x, z): Cell| Vec2::new((x as f32 + 0.5) * CELL, (z as f32 + 0.5) * CELL);
        let (lo, hi) = (cell_at(lo), cell_at(hi));
        let span =
            (i64::from(hi.0) - i64::from(lo.0) + 1) * (i64::from(hi.1) - i64::from(lo.1) + 1);
        if span > self.cells.len() as i64 {
            // Fewer occupied cells than cells in the area (a sparse space, or a huge reach):
            // test the occupied ones.
            for (cell, notes) in &self.cells {
                if near(centre(*cell)) {
                    out.extend_from_slice(notes);
                }
            }
            return;
        }
        for x in lo.0..=hi.0 {
            for z in lo.1..=hi.1 {
                if near(centre((x, z)))
                    && let Some(notes) = self.cells.get(&(x, z))
                {
                    out.extend_from_slice(notes);
                }
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A small deterministic generator, so the properties run the same cases every time.
    pub(crate) struct Lcg(pub(crate) u64);
    impl Lcg {
        /// Uniform in [-1, 1).
        pub(crate) fn next(&mut self) -> f32 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        }
        pub(crate) fn vec(&mut self, scale: f32) -> Vec3 {
            Vec3::new(self.next(), self.next(), self.next()) * scale
        }
    }

    /// The distance from `p` to the segment `a`–`b` in space.
    fn segment_distance(p: Vec3, a: Vec3, b: Vec3) -> f32 {
        let ab = b - a;
        let t = ((p - a).dot(ab) / ab.length_squared()).clamp(0.0, 1.0);
        p.distance(a + ab * t)
    }

    #[test]
    fn every_note_within_reach_of_the_ray_is_a_candidate_and_far_ones_mostly_are_not() {
        let mut rng = Lcg(11);
        let mut world = World::new();
        let mut grid = NoteGrid::default();
        grid.widen(0.5);
        let mut at = Vec::new();
        for _ in 0..5_000 {
            let p = Vec3::new(rng.next() * 50.0, 1.0 + rng.next(), rng.next() * 50.0);
            let e = world.spawn_empty().id();
            grid.place(e, p);
            at.push((e, p));
        }
        let (mut within, mut candidates, mut total) = (0, 0, 0);
        let mut out = Vec::new();
        for i in 0..300 {
            let origin = Vec3::new(rng.next() * 30.0, 1.6, rng.next() * 30.0);
            // Level rays, steep ones and one straight down.
            let dir = if i == 0 {
                Dir3::NEG_Y
            } else {
                Dir3::new(Vec3::new(rng.next(), rng.next() * 0.5, rng.next())).unwrap_or(Dir3::X)
            };
            let ray = Ray3d::new(origin, dir);
            grid.near_ray(ray, 60.0, &mut out);
            let set: std::collections::HashSet<Entity> = out.iter().copied().collect();
            let (a, b) = (ray.get_point(-0.5), ray.get_point(60.5));
            for (e, p) in &at {
                if segment_distance(*p, a, b) <= 0.5 {
                    within += 1;
                    assert!(set.contains(e), "ray {ray:?} left out the note at {p}");
                }
            }
            candidates += out.len();
            total += at.len();
        }
        assert!(within > 300, "the rays pass near notes: {within}");
        // The corridor of a 60 m ray holds a small share of a 100 m square.
        assert!(candidates * 5 < total, "{candidates} candidates of {total}");
    }

    #[test]
    fn every_note_within_the_radius_of_a_point_is_found_and_far_ones_mostly_are_not() {
        let mut rng = Lcg(5);
        let mut world = World::new();
        let mut grid = NoteGrid::default();
        let mut at = Vec::new();
        for _ in 0..4_000 {
            let p =
                Vec3::new(rng.next() * 100.0 - 50.0, 1.0 + rng.next(), rng.next() * 100.0 - 50.0);
            let e = world.spawn_empty().id();
            grid.place(e, p);
            at.push((e, p));
        }
        let mut out = Vec::new();
        let (mut within, mut found) = (0, 0);
        for _ in 0..100 {
            let centre = Vec3::new(rng.next() * 80.0 - 40.0, 1.6, rng.next() * 80.0 - 40.0);
            grid.near_point(centre, 12.0, &mut out);
            let set: std::collections::HashSet<Entity> = out.iter().copied().collect();
            for (e, p) in &at {
                if p.distance(centre) <= 12.0 {
                    within += 1;
                    assert!(set.contains(e), "the note at {p} was left out for {centre}");
                }
            }
            found += out.len();
        }
        assert!(within > 1_000, "the discs hold notes: {within}");
        // A 12 m disc's cells hold little more than the disc's notes, and far fewer than all.
        assert!(found < within * 2, "{found} found for {within} within");
        // A sparse grid is searched by its occupied cells, with the same answer.
        let mut sparse = NoteGrid::default();
        let (a, b) = (world.spawn_empty().id(), world.spawn_empty().id());
        sparse.place(a, Vec3::new(1e6, 0.0, 0.0));
        sparse.place(b, Vec3::new(3.0, 0.0, 4.0));
        sparse.near_point(Vec3::ZERO, 1e5, &mut out);
        assert_eq!(out, vec![b]);
    }

    #[test]
    fn a_moved_note_is_found_where_it_went_and_a_removed_one_nowhere() {
        let mut world = World::new();
        let mut grid = NoteGrid::default();
        grid.widen(0.4);
        let e = world.spawn_empty().id();
        grid.place(e, Vec3::new(0.0, 1.5, -5.0));
        let ahead = Ray3d::new(Vec3::new(0.0, 1.5, 0.0), Dir3::NEG_Z);
        let behind = Ray3d::new(Vec3::new(0.0, 1.5, 0.0), Dir3::Z);
        let mut out = Vec::new();
        grid.near_ray(ahead, 60.0, &mut out);
        assert_eq!(out, vec![e]);
        grid.place(e, Vec3::new(0.0, 1.5, 5.0));
        grid.near_ray(ahead, 60.0, &mut out);
        assert!(out.is_empty());
        grid.near_ray(behind, 60.0, &mut out);
        assert_eq!(out, vec![e]);
        assert_eq!(grid.len(), 1);
        grid.remove(e);
        grid.near_ray(behind, 60.0, &mut out);
        assert!(out.is_empty() && grid.is_empty() && grid.cells.is_empty());
    }

    #[test]
    fn a_wide_reach_still_finds_every_note_without_visiting_every_cell_under_it() {
        let mut world = World::new();
        let mut grid = NoteGrid::default();
        // A note a billion metres out, and a reach that makes the corridor thousands of cells.
        grid.widen(400.0);
        let far = world.spawn_empty().id();
        let near = world.spawn_empty().id();
        grid.place(far, Vec3::new(1e9, 0.0, 1e9));
        grid.place(near, Vec3::new(300.0, 1.0, 0.0));
        let mut out = Vec::new();
        grid.near_ray(Ray3d::new(Vec3::ZERO, Dir3::NEG_Z), 60.0, &mut out);
        assert_eq!(out, vec![near]);
    }
}
