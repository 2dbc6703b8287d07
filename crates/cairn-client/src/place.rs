//! Places: a physical frame of reference shared by every device in a room, and the
//! alignment of one device's stage with it.
//!
//! A place's maker marks two or three physical points that others can find (two corners of
//! a door frame, the ends of a counter); [`frame_from_marks`] turns them into the place's
//! frame (origin on the floor below the first mark, x level and toward the second, y up) and
//! the marks' positions in it, which travel sealed in the place's record. Every other device
//! marks the same points, in the same order, in its own stage; [`align`] finds the yaw and
//! translation that carry the place's marks onto them by least squares. Gravity and the floor
//! come from each runtime's stage, so nothing else can differ between two stages.

use cairn_crypto::note::PLACE_MARK_SEPARATION;
use cairn_crypto::{PlaceMark, PlaceRecord, Pose};
use cairn_proto::NoteId;
use serde::{Deserialize, Serialize};

/// The marks must lie at least this far apart on the level (metres), between the two
/// farthest: closer, a few millimetres of error in marking turn the place visibly.
pub const MIN_SPREAD: f32 = 0.3;
/// An alignment whose marks miss the place's by more than this (root mean square, metres)
/// is refused: the points were marked in another order, or are not the place's.
pub const MAX_RESIDUAL: f32 = 0.10;

/// How a place's frame sits in a device's stage: turned `yaw` radians about the vertical,
/// then moved by `translation` (stage = R_y(yaw)·place + translation).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Alignment {
    pub yaw: f32,
    pub translation: [f32; 3],
    /// The root-mean-square distance between the points marked and where the place's marks
    /// fall under this alignment (metres): 0 for the place's maker.
    pub residual: f32,
}

/// Why points could not be aligned; each message says what to do.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum AlignError {
    #[error("mark all {expected} points of the place, in order ({names}); {got} marked")]
    WrongCount { expected: usize, got: usize, names: String },
    #[error("a place needs at least two reference marks")]
    TooFew,
    #[error("point {0} is not a position")]
    NotAPosition(usize),
    #[error(
        "points {first} and {second} are one point marked twice: mark point {second} at its own spot"
    )]
    MarkedTwice { first: usize, second: usize },
    #[error(
        "the points are too close together ({spread:.2} m apart on the level): choose marks at least {MIN_SPREAD} m apart"
    )]
    TooClose { spread: f32 },
    #[error(
        "the points marked are {:.0} cm off the place's marks: check the order ({names}) and mark them again",
        residual * 100.0
    )]
    DoesNotFit { residual: f32, names: String },
}

fn sub(a: [f32; 3], b: [f32; 3]) -> [f32; 3] {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
}

fn distance(a: [f32; 3], b: [f32; 3]) -> f32 {
    let d = sub(a, b);
    (d[0] * d[0] + d[1] * d[1] + d[2] * d[2]).sqrt()
}

fn level_distance(a: [f32; 3], b: [f32; 3]) -> f32 {
    (a[0] - b[0]).hypot(a[2] - b[2])
}

/// Hamilton product of quaternions given as (x, y, z, w).
fn qmul(a: [f32; 4], b: [f32; 4]) -> [f32; 4] {
    let [ax, ay, az, aw] = a;
    let [bx, by, bz, bw] = b;
    [
        aw * bx + ax * bw + ay * bz - az * by,
        aw * by - ax * bz + ay * bw + az * bx,
        aw * bz + ax * by - ay * bx + az * bw,
        aw * bw - ax * bx - ay * by - az * bz,
    ]
}

fn yaw_quat(yaw: f32) -> [f32; 4] {
    let (s, c) = (yaw / 2.0).sin_cos();
    [0.0, s, 0.0, c]
}

/// Turns `p` by `yaw` about the vertical (the same turn as `Quat::from_rotation_y(yaw)`).
fn turn(yaw: f32, p: [f32; 3]) -> [f32; 3] {
    let (s, c) = yaw.sin_cos();
    [c * p[0] + s * p[2], p[1], -s * p[0] + c * p[2]]
}

impl Alignment {
    /// The alignment of a frame with itself.
    pub const IDENTITY: Alignment = Alignment { yaw: 0.0, translation: [0.0; 3], residual: 0.0 };

    /// A point of the place, in the stage.
    pub fn to_stage(&self, p: [f32; 3]) -> [f32; 3] {
        let r = turn(self.yaw, p);
        [r[0] + self.translation[0], r[1] + self.translation[1], r[2] + self.translation[2]]
    }

    /// A point of the stage, in the place.
    pub fn to_place(&self, p: [f32; 3]) -> [f32; 3] {
        turn(-self.yaw, sub(p, self.translation))
    }

    /// A pose in the place, in the stage.
    pub fn pose_to_stage(&self, pose: &Pose) -> Pose {
        Pose {
            position: self.to_stage(pose.position),
            rotation: qmul(yaw_quat(self.yaw), pose.rotation),
        }
    }

    /// A pose in the stage, in the place.
    pub fn pose_to_place(&self, pose: &Pose) -> Pose {
        Pose {
            position: self.to_place(pose.position),
            rotation: qmul(yaw_quat(-self.yaw), pose.rotation),
        }
    }
}

/// Checks points marked for a place: finite, no point marked twice, spread on the level.
fn check_points(points: &[[f32; 3]]) -> Result<(), AlignError> {
    if points.len() < 2 {
        return Err(AlignError::TooFew);
    }
    for (i, p) in points.iter().enumerate() {
        if !p.iter().all(|v| v.is_finite() && v.abs() <= cairn_crypto::note::PLACE_REACH) {
            return Err(AlignError::NotAPosition(i + 1));
        }
        if let Some(j) = points[..i].iter().position(|q| distance(*p, *q) < PLACE_MARK_SEPARATION) {
            return Err(AlignError::MarkedTwice { first: j + 1, second: i + 1 });
        }
    }
    let spread = points
        .iter()
        .enumerate()
        .flat_map(|(i, a)| points[i + 1..].iter().map(move |b| level_distance(*a, *b)))
        .fold(0.0f32, f32::max);
    if spread < MIN_SPREAD {
        return Err(AlignError::TooClose { spread });
    }
    Ok(())
}

/// The frame a place's maker defines by marking `stage` points: its origin on the floor
/// below the first, its x axis level and toward the second. Returns the marks' positions in
/// that frame (what the place's record carries) and the maker's own alignment with it.
pub fn frame_from_marks(stage: &[[f32; 3]]) -> Result<(Vec<[f32; 3]>, Alignment), AlignError> {
    check_points(stage)?;
    let (first, second) = (stage[0], stage[1]);
    let mut dir = [second[0] - first[0], second[2] - first[2]];
    if dir[0].hypot(dir[1]) < 1e-3 {
        // The second mark straight above the first: take the farthest on the level instead
        // (there is one: the points are spread).
        let far = stage
            .iter()
            .max_by(|a, b| level_distance(**a, first).total_cmp(&level_distance(**b, first)))
            .expect("at least two points");
        dir = [far[0] - first[0], far[2] - first[2]];
    }
    // R_y(yaw) carries x = (1, 0, 0) to (cos yaw, 0, -sin yaw): along `dir`.
    let yaw = f32::atan2(-dir[1], dir[0]);
    let alignment = Alignment { yaw, translation: [first[0], 0.0, first[2]], residual: 0.0 };
    Ok((stage.iter().map(|p| alignment.to_place(*p)).collect(), alignment))
}

/// The mark names in order, for messages ("left corner, then right corner").
pub fn mark_names(marks: &[PlaceMark]) -> String {
    marks.iter().map(|m| m.name.as_str()).collect::<Vec<_>>().join(", then ")
}

/// Aligns a device's stage with a place: `marked` are the place's `marks`, marked in this
/// device's stage in the same order. The yaw and translation minimise the squared distances
/// between the marks carried into the stage and the points marked (a two-dimensional
/// Procrustes problem on the level, the height from the means).
pub fn align(marks: &[PlaceMark], marked: &[[f32; 3]]) -> Result<Alignment, AlignError> {
    if marked.len() != marks.len() {
        return Err(AlignError::WrongCount {
            expected: marks.len(),
            got: marked.len(),
            names: mark_names(marks),
        });
    }
    check_points(marked)?;
    let place: Vec<[f32; 3]> = marks.iter().map(|m| m.position).collect();
    check_points(&place)?;
    let n = marked.len() as f64;
    let mean = |ps: &[[f32; 3]]| {
        let mut m = [0f64; 3];
        for p in ps {
            for k in 0..3 {
                m[k] += f64::from(p[k]) / n;
            }
        }
        m
    };
    let (cp, cm) = (mean(&place), mean(marked));
    // Maximise Σ m'·R(yaw)p' over the centred points: cos·C + sin·S.
    let (mut c, mut s) = (0f64, 0f64);
    for (p, m) in place.iter().zip(marked) {
        let (px, pz) = (f64::from(p[0]) - cp[0], f64::from(p[2]) - cp[2]);
        let (mx, mz) = (f64::from(m[0]) - cm[0], f64::from(m[2]) - cm[2]);
        c += mx * px + mz * pz;
        s += mx * pz - mz * px;
    }
    let yaw = s.atan2(c) as f32;
    let turned = turn(yaw, [cp[0] as f32, cp[1] as f32, cp[2] as f32]);
    let translation = [
        (cm[0] - f64::from(turned[0])) as f32,
        (cm[1] - f64::from(turned[1])) as f32,
        (cm[2] - f64::from(turned[2])) as f32,
    ];
    let mut alignment = Alignment { yaw, translation, residual: 0.0 };
    let squared: f32 =
        place.iter().zip(marked).map(|(p, m)| distance(alignment.to_stage(*p), *m).powi(2)).sum();
    alignment.residual = (squared / marked.len() as f32).sqrt();
    if alignment.residual > MAX_RESIDUAL {
        return Err(AlignError::DoesNotFit {
            residual: alignment.residual,
            names: mark_names(marks),
        });
    }
    Ok(alignment)
}

/// "aligned to within 1.5 cm" (or millimetres, when it is that good).
pub fn describe_residual(residual: f32) -> String {
    if residual < 0.01 {
        format!("aligned to within {:.0} mm", (residual * 1000.0).max(1.0))
    } else {
        format!("aligned to within {:.1} cm", residual * 100.0)
    }
}

/// A place of a space: the id of the note carrying its record, who made it, the record.
#[derive(Clone, Debug, PartialEq)]
pub struct Place {
    pub id: NoteId,
    pub author: String,
    pub record: PlaceRecord,
    /// Its position in the space's sequence (`None` while it waits in the outbox).
    pub seq: Option<u64>,
}

impl Place {
    /// The places among a space's notes, in the order they were made.
    pub fn all_in(notes: &[crate::LocalNote]) -> Vec<Place> {
        let mut places: Vec<Place> = notes
            .iter()
            .filter(|n| !n.deleted)
            .filter_map(|n| {
                let body = n.body.as_ref()?;
                Some(Place {
                    id: n.note_id,
                    author: body.author.clone(),
                    record: body.place_record.clone()?,
                    seq: n.seq,
                })
            })
            .collect();
        places.sort_by_key(|p| p.seq.unwrap_or(u64::MAX));
        places
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn marks(points: &[[f32; 3]]) -> Vec<PlaceMark> {
        points
            .iter()
            .enumerate()
            .map(|(i, p)| PlaceMark { name: format!("mark {}", i + 1), position: *p })
            .collect()
    }

    /// A door's two top corners and the end of a counter, in the maker's stage.
    const MAKER: [[f32; 3]; 3] = [[1.0, 2.0, -3.0], [1.9, 2.0, -3.2], [3.0, 0.9, -1.0]];

    /// Another device's stage: turned 2.1 rad and 4 m away from the maker's.
    fn other_stage(p: [f32; 3]) -> [f32; 3] {
        Alignment { yaw: 2.1, translation: [4.0, 0.0, -1.5], residual: 0.0 }.to_stage(p)
    }

    #[test]
    fn the_makers_marks_define_the_frame_and_exact_points_give_the_transform_back() {
        let (place, maker) = frame_from_marks(&MAKER).unwrap();
        // The first mark above the origin, the second along x, level.
        assert!(place[0][0].abs() < 1e-5 && place[0][2].abs() < 1e-5 && place[0][1] == 2.0);
        assert!(place[1][0] > 0.9 && place[1][2].abs() < 1e-5, "{:?}", place[1]);
        for (p, s) in place.iter().zip(MAKER) {
            assert!(distance(maker.to_stage(*p), s) < 1e-5);
        }
        // Bob marks the same physical points in his stage: the transform comes back exactly.
        let marked: Vec<_> = MAKER.iter().map(|p| other_stage(*p)).collect();
        let bob = align(&marks(&place), &marked).unwrap();
        assert!(bob.residual < 1e-4, "{}", bob.residual);
        for (p, s) in place.iter().zip(&MAKER) {
            assert!(distance(bob.to_stage(*p), other_stage(*s)) < 1e-4);
        }
        // A pose survives the round trip, and a pose left by the maker lands for Bob where
        // the maker left it, physically.
        let pose = Pose { position: [0.3, 1.2, 0.5], rotation: yaw_quat(0.4) };
        let back = bob.pose_to_place(&bob.pose_to_stage(&pose));
        assert!(distance(back.position, pose.position) < 1e-5);
        assert!((0..4).all(|k| (back.rotation[k] - pose.rotation[k]).abs() < 1e-5));
        let left = Pose { position: [2.2, 1.0, -2.4], rotation: yaw_quat(1.0) };
        let seen = bob.pose_to_stage(&maker.pose_to_place(&left));
        assert!(distance(seen.position, other_stage(left.position)) < 1e-4);
        let want = yaw_quat(1.0 + 2.1);
        let dot: f32 = (0..4).map(|k| seen.rotation[k] * want[k]).sum();
        assert!(dot.abs() > 1.0 - 1e-6, "{:?} vs {want:?}", seen.rotation);
    }

    /// With up to 5 mm of error on every coordinate of every point marked, the alignment is
    /// within 0.6 degrees and puts every mark within 1 cm of where it is, and the residual
    /// says about how far off it is.
    #[test]
    fn five_millimetres_of_noise_give_the_transform_within_a_centimetre() {
        let (place, maker) = frame_from_marks(&MAKER).unwrap();
        let noise = [[0.005, -0.004, 0.005], [-0.005, 0.005, 0.003], [0.004, 0.002, -0.005]];
        for flip in [1.0f32, -1.0] {
            let marked: Vec<_> = MAKER
                .iter()
                .zip(noise)
                .map(|(p, n)| {
                    let s = other_stage(*p);
                    [s[0] + flip * n[0], s[1] + n[1], s[2] - flip * n[2]]
                })
                .collect();
            let a = align(&marks(&place), &marked).unwrap();
            // The place's frame is turned `maker.yaw` in the maker's stage, which is turned
            // 2.1 rad in Bob's.
            let truth = 2.1 + maker.yaw;
            assert!((a.yaw - truth).abs() < 0.01, "yaw {} vs {truth}", a.yaw);
            for (p, s) in place.iter().zip(&MAKER) {
                let off = distance(a.to_stage(*p), other_stage(*s));
                assert!(off < 0.01, "{off} m");
            }
            assert!(a.residual > 0.0005 && a.residual < 0.01, "{}", a.residual);
        }
    }

    #[test]
    fn degenerate_points_are_refused_with_what_to_do() {
        let (place, _) = frame_from_marks(&MAKER).unwrap();
        let m = marks(&place);
        let bob: Vec<_> = MAKER.iter().map(|p| other_stage(*p)).collect();
        let e = align(&m, &bob[..2]).unwrap_err();
        assert!(matches!(e, AlignError::WrongCount { expected: 3, got: 2, .. }), "{e}");
        assert!(e.to_string().contains("mark 1, then mark 2, then mark 3"), "{e}");
        let twice = [bob[0], bob[1], [bob[1][0] + 0.01, bob[1][1], bob[1][2]]];
        let e = align(&m, &twice).unwrap_err();
        assert_eq!(e, AlignError::MarkedTwice { first: 2, second: 3 });
        assert!(e.to_string().contains("marked twice"));
        let close = [[0.0, 1.0, 0.0], [0.1, 1.0, 0.0], [0.0, 1.5, 0.1]];
        let e = align(&m, &close).unwrap_err();
        assert!(matches!(e, AlignError::TooClose { .. }), "{e}");
        assert!(e.to_string().contains("too close together"));
        let e = frame_from_marks(&close).unwrap_err();
        assert!(matches!(e, AlignError::TooClose { .. }), "{e}");
        let e = align(&m, &[bob[0], bob[1], [f32::NAN, 0.0, 0.0]]).unwrap_err();
        assert_eq!(e, AlignError::NotAPosition(3));
        // The right points in the wrong order do not fit the place.
        let e = align(&m, &[bob[1], bob[0], bob[2]]).unwrap_err();
        assert!(matches!(e, AlignError::DoesNotFit { .. }), "{e}");
        assert!(e.to_string().contains("check the order"), "{e}");
        assert!(frame_from_marks(&[MAKER[0]]).is_err());
    }

    #[test]
    fn a_second_mark_straight_above_the_first_still_gives_a_level_frame() {
        let stage = [[1.0, 1.0, 1.0], [1.0, 2.0, 1.0], [2.0, 1.0, 1.0]];
        let (place, maker) = frame_from_marks(&stage).unwrap();
        assert!(place[2][2].abs() < 1e-5 && place[2][0] > 0.99, "{:?}", place[2]);
        assert!(place.iter().zip(&stage).all(|(p, s)| distance(maker.to_stage(*p), *s) < 1e-5));
    }

    #[test]
    fn residuals_read_as_people_say_them() {
        assert_eq!(describe_residual(0.015), "aligned to within 1.5 cm");
        assert_eq!(describe_residual(0.004), "aligned to within 4 mm");
        assert_eq!(describe_residual(0.0), "aligned to within 1 mm");
    }
}
