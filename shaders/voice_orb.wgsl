// The voice orb: the note's waveform drawn as bars across the face the viewer sees, left to
// right, filled up to the playback progress, with a gentle breathing glow and a pulse while
// it plays. The horizontal position is 0.5 + asin(n · right) / pi, the same formula the app
// uses to turn a click on the orb into a seek (`audio::face_fraction`).
#import bevy_pbr::forward_io::VertexOutput
#import bevy_pbr::mesh_view_bindings::view

struct VoiceOrb {
    base: vec4<f32>,
    glow: vec4<f32>,
    // x: progress 0..1, y: pulse 0..1, z: time (s), w: highlight 0..1
    params: vec4<f32>,
    wave: array<vec4<f32>, 16>,
};

@group(#{MATERIAL_BIND_GROUP}) @binding(0) var<uniform> orb: VoiceOrb;

fn peak(i: u32) -> f32 {
    return orb.wave[i / 4u][i % 4u];
}

@fragment
fn fragment(in: VertexOutput) -> @location(0) vec4<f32> {
    let n = normalize(in.world_normal);
    let right = normalize(view.world_from_view[0].xyz);
    let u = clamp(0.5 + asin(clamp(dot(n, right), -1.0, 1.0)) / 3.14159265, 0.0, 0.9999);
    let bar = min(u32(u * 64.0), 63u);
    let within = fract(u * 64.0);
    let amp = peak(bar);
    // Height above or below the equator, 0 there and 1 at the poles.
    let lat = abs(n.y);
    let in_bar = lat < (0.05 + amp * 0.6) && within > 0.2 && within < 0.8;
    let played = u < orb.params.x;

    let to_eye = normalize(view.world_position - in.world_position.xyz);
    let rim = pow(1.0 - max(dot(n, to_eye), 0.0), 2.5);
    let breathe = 0.5 + 0.5 * sin(orb.params.z * 1.7);

    var color = orb.base.rgb * (0.6 + 0.4 * (1.0 - lat));
    if in_bar {
        color = select(orb.glow.rgb * 0.55, orb.glow.rgb * 1.8, played);
    }
    color += orb.glow.rgb * rim * (0.35 + 0.25 * breathe + 0.8 * orb.params.y + 0.5 * orb.params.w);
    return vec4<f32>(color, 1.0);
}
