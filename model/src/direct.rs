//! The served forward pass of the small CNN: direct 3x3 convolutions on zero-bordered HWC
//! activations, with every layer's weights packed once at load time, run under the widest
//! SIMD instruction set the CPU has (AVX-512 or AVX2+FMA on x86-64, NEON on aarch64, picked at
//! run time by `pulp`, which keeps this crate free of `unsafe`).
//!
//! Why not the training path's im2col + sgemm: at batch 1 and 64x64 input the matrices are
//! small, and profiling showed the sgemm repacking both operands on every call (about a third of
//! the forward pass) and im2col (another quarter) costing more than the multiply-adds. Here the
//! constant weights are packed once, and the HWC layout makes each 3x3 patch three contiguous
//! runs of `3 * cin` values, so no patch matrix is built. The results equal
//! [`Network::forward`](crate::nn::Network::forward) up to float summation order (tested).

// Index loops mirror the tensor maths (tile position r, lane l) and keep shapes explicit.
#![allow(clippy::needless_range_loop)]

use std::sync::atomic::{AtomicU64, Ordering};

use crate::nn::{Network, NnError, KERNEL};

static NEXT_ID: AtomicU64 = AtomicU64::new(0);

/// Output channels are padded with zero weights to a multiple of this (the widest vector,
/// AVX-512's 16 floats), so any width works and every instruction set's vectors fit whole.
const LANES: usize = 16;

/// One convolution, packed for one vector width: weights as `[group][k][group_len]`, where
/// k = `ky * 3 * cin_p + kx * cin_p + ci` runs over the 3x3 patch in HWC order and a group is
/// the one or two vectors of output channels a tile computes together, so the tile reads its
/// weights as one contiguous stream.
#[derive(Debug, Clone)]
struct PackedConv {
    stride: usize,
    /// Input channels as stored (the previous layer's padded count).
    cin_p: usize,
    /// Output channels rounded up to a multiple of LANES.
    cout_p: usize,
    w: usize,
    ho: usize,
    wo: usize,
    /// Output channels per group: 16 or 32.
    group_len: usize,
    weights: Vec<f32>,
    bias: Vec<f32>,
}

/// The network's convolutions packed for [`PackedCnn::forward`], plus its head.
#[derive(Debug, Clone)]
pub struct PackedCnn {
    /// Unique per packing, so per-thread buffers are never reused for another network.
    id: u64,
    simd: pulp::Arch,
    /// `f32`s per vector of `simd`, which the packing is laid out for.
    lanes: usize,
    input_size: usize,
    in_channels: usize,
    convs: Vec<PackedConv>,
    /// Real (unpadded) channels of the last convolution, the head's input.
    features: usize,
    fc_weight: Vec<f32>,
    fc_bias: Vec<f32>,
    classes: usize,
}

/// Per-thread buffers: every layer's input and output, zero-bordered HWC. The borders are
/// never written, so they stay the convolution's zero padding.
#[derive(Debug)]
pub struct DirectWorkspace {
    acts: Vec<Vec<f32>>,
    pooled: Vec<f32>,
    logits: Vec<f32>,
}

fn round_up(n: usize) -> usize {
    n.div_ceil(LANES) * LANES
}

impl PackedCnn {
    /// Packs `net`'s weights for this CPU, or `None` where it has no fused multiply-add
    /// (x86 before AVX2), where the scalar fallback would be slower than the sgemm path.
    pub fn new(net: &Network) -> Option<Self> {
        let simd = pulp::Arch::new();
        if !has_fma(simd) {
            return None;
        }
        Some(Self::pack(net, simd))
    }

    /// Packs for a given instruction set (tests run every one this CPU has).
    fn pack(net: &Network, simd: pulp::Arch) -> Self {
        let lanes = simd.dispatch(Lanes);
        let arch = &net.arch;
        let shapes = arch.shapes();
        let mut convs = Vec::with_capacity(arch.convs.len());
        let mut cin_p = arch.in_channels;
        for (i, spec) in arch.convs.iter().enumerate() {
            let (cin, _, w) = shapes[i];
            let (cout, ho, wo) = shapes[i + 1];
            let cout_p = round_up(cout);
            // 32 channels a group where they split evenly (two AVX-512 vectors), else 16.
            let group_len = if cout_p.is_multiple_of(2 * LANES) {
                2 * LANES
            } else {
                LANES
            };
            let k_len = KERNEL * KERNEL * cin_p;
            let src = &net.params[2 * i];
            let mut weights = vec![0.0; cout_p * k_len];
            for o in 0..cout {
                let (group, lane) = (o / group_len, o % group_len);
                for ci in 0..cin {
                    for ky in 0..KERNEL {
                        for kx in 0..KERNEL {
                            let k = (ky * KERNEL + kx) * cin_p + ci;
                            let at = (group * k_len + k) * group_len + lane;
                            weights[at] = src[((o * cin + ci) * KERNEL + ky) * KERNEL + kx];
                        }
                    }
                }
            }
            let mut bias = vec![0.0; cout_p];
            bias[..cout].copy_from_slice(&net.params[2 * i + 1]);
            convs.push(PackedConv {
                stride: spec.stride,
                cin_p,
                cout_p,
                w,
                ho,
                wo,
                group_len,
                weights,
                bias,
            });
            cin_p = cout_p;
        }
        let n = net.params.len();
        Self {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            simd,
            lanes,
            input_size: arch.input_size,
            in_channels: arch.in_channels,
            convs,
            features: shapes.last().map_or(0, |s| s.0),
            fc_weight: net.params[n - 2].clone(),
            fc_bias: net.params[n - 1].clone(),
            classes: arch.classes,
        }
    }

    /// The instruction set the kernel runs with, e.g. "AVX-512 (16 lanes)".
    pub fn instruction_set(&self) -> String {
        let name = format!("{:?}", self.simd);
        let name = match name.split('(').next().unwrap_or("") {
            "V4" => "AVX-512",
            "V3" => "AVX2+FMA",
            "Neon" => "NEON",
            other => other,
        }
        .to_string();
        format!("{name} ({} lanes)", self.lanes)
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn workspace(&self) -> DirectWorkspace {
        let mut acts = vec![vec![
            0.0;
            (self.input_size + 2)
                * (self.input_size + 2)
                * self.in_channels
        ]];
        for c in &self.convs {
            acts.push(vec![0.0; (c.ho + 2) * (c.wo + 2) * c.cout_p]);
        }
        DirectWorkspace {
            acts,
            pooled: vec![0.0; self.features],
            logits: vec![0.0; self.classes],
        }
    }

    /// Logits of one normalised CHW image (the layout `prepare` makes).
    pub fn forward<'w>(
        &self,
        input: &[f32],
        ws: &'w mut DirectWorkspace,
    ) -> Result<&'w [f32], NnError> {
        let (c, s) = (self.in_channels, self.input_size);
        if input.len() != c * s * s {
            return Err(NnError::Input {
                got: input.len(),
                want: c * s * s,
                size: s,
            });
        }
        self.simd.dispatch(Convolve {
            net: self,
            input,
            acts: &mut ws.acts,
        });
        // acts holds the input and one buffer per convolution; the last is the features.
        let last = &ws.acts[self.convs.len()];
        let (ho, wo, cp) = self
            .convs
            .last()
            .map_or((s, s, c), |l| (l.ho, l.wo, l.cout_p));
        let pooled = &mut ws.pooled;
        pooled.fill(0.0);
        for y in 0..ho {
            let row = &last[(y + 1) * (wo + 2) * cp..(y + 2) * (wo + 2) * cp];
            for x in 0..wo {
                let px = &row[(x + 1) * cp..(x + 1) * cp + self.features];
                for (p, v) in pooled.iter_mut().zip(px) {
                    *p += v;
                }
            }
        }
        let inv = 1.0 / (ho * wo) as f32;
        let f = self.features;
        for (k, logit) in ws.logits.iter_mut().enumerate() {
            *logit = self.fc_bias[k]
                + self.fc_weight[k * f..(k + 1) * f]
                    .iter()
                    .zip(pooled.iter())
                    .map(|(a, b)| a * b * inv)
                    .sum::<f32>();
        }
        Ok(&ws.logits)
    }
}

/// The convolutions as a `pulp` operation: `with_simd` is compiled once per instruction set and
/// everything it calls is `#[inline(always)]`, so the whole loop nest gets that set's FMA and
/// vector width (a plain closure is not inlined there, and `mul_add` became a libm call).
struct Convolve<'a> {
    net: &'a PackedCnn,
    input: &'a [f32],
    acts: &'a mut [Vec<f32>],
}

impl pulp::WithSimd for Convolve<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, simd: S) {
        // The packing is laid out for one vector width; `pack` dispatched on the same Arch.
        debug_assert_eq!(S::F32_LANES, self.net.lanes);
        let (c, s) = (self.net.in_channels, self.net.input_size);
        let row = (s + 2) * c;
        let first = &mut self.acts[0];
        if c == 3 {
            // RGB, the usual case: each pixel's three values written together (vectorises).
            let (r, rest) = self.input.split_at(s * s);
            let (g, b) = rest.split_at(s * s);
            for y in 0..s {
                let dst = &mut first[(y + 1) * row + c..(y + 2) * row - c];
                let (px, _) = dst.as_chunks_mut::<3>();
                let src = y * s..(y + 1) * s;
                for (((p, r), g), b) in px
                    .iter_mut()
                    .zip(&r[src.clone()])
                    .zip(&g[src.clone()])
                    .zip(&b[src])
                {
                    *p = [*r, *g, *b];
                }
            }
        } else {
            for ci in 0..c {
                let plane = &self.input[ci * s * s..(ci + 1) * s * s];
                for y in 0..s {
                    let dst = &mut first[(y + 1) * row + c..(y + 2) * row - c];
                    for (x, v) in plane[y * s..(y + 1) * s].iter().enumerate() {
                        dst[x * c + ci] = *v;
                    }
                }
            }
        }
        for (i, conv) in self.net.convs.iter().enumerate() {
            let (before, after) = self.acts.split_at_mut(i + 1);
            conv_layer(simd, conv, &before[i], &mut after[0]);
        }
    }
}

/// The vector width of an instruction set, in `f32`s.
struct Lanes;

impl pulp::WithSimd for Lanes {
    type Output = usize;

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) -> usize {
        S::F32_LANES
    }
}

fn has_fma(simd: pulp::Arch) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        // pulp's V3 (AVX2 + FMA) and V4 (AVX-512) both have FMA; its scalar fallback does not.
        !matches!(simd, pulp::Arch::Scalar)
    }
    #[cfg(target_arch = "aarch64")]
    {
        let _ = simd;
        true
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        let _ = simd;
        false
    }
}

/// Output positions of the widest tile.
const MAX_TILE: usize = 8;

/// One convolution + bias + ReLU, zero-bordered HWC in and out, cut into tiles of R output
/// positions x one group of output channels. R and the vectors per group are chosen so the
/// R x V accumulators fit in the registers (AVX-512 and NEON have 32, AVX2 16).
#[inline(always)]
fn conv_layer<S: pulp::Simd>(simd: S, l: &PackedConv, input: &[f32], output: &mut [f32]) {
    match (l.group_len, S::F32_LANES) {
        (32, 16) => layer::<S, 8, 2, 32>(simd, l, input, output),
        (16, 16) => layer::<S, 8, 1, 16>(simd, l, input, output),
        (32, 8) => layer::<S, 3, 4, 32>(simd, l, input, output),
        (16, 8) => layer::<S, 6, 2, 16>(simd, l, input, output),
        (32, 4) => layer::<S, 3, 8, 32>(simd, l, input, output),
        (16, 4) => layer::<S, 6, 4, 16>(simd, l, input, output),
        _ => layer_plain(l, input, output),
    }
}

/// An unaligned vector load (packed rows are `f32`-aligned only).
#[inline(always)]
fn load<S: pulp::Simd>(v: &[f32]) -> S::f32s {
    bytemuck::pod_read_unaligned(bytemuck::cast_slice(&v[..S::F32_LANES]))
}

#[inline(always)]
fn layer<S: pulp::Simd, const R: usize, const V: usize, const G: usize>(
    simd: S,
    l: &PackedConv,
    input: &[f32],
    output: &mut [f32],
) {
    // Constant per instantiation; every arm of `conv_layer` is instantiated for every
    // instruction set, and the ones that do not fit it go the plain way (never taken there).
    if R > MAX_TILE || V * S::F32_LANES != G {
        return layer_plain(l, input, output);
    }
    let row_in = (l.w + 2) * l.cin_p;
    let row_out = (l.wo + 2) * l.cout_p;
    for oy in 0..l.ho {
        let rows = &input[oy * l.stride * row_in..(oy * l.stride + KERNEL) * row_in];
        let out = &mut output[(oy + 1) * row_out..(oy + 2) * row_out];
        let mut ox = 0;
        while ox + R <= l.wo {
            tile::<S, R, V, G>(simd, l, rows, out, ox);
            ox += R;
        }
        // Tails (and rows narrower than R, like the last layer's 4 at 64 px input).
        while R > 4 && ox + 4 <= l.wo {
            tile::<S, 4, V, G>(simd, l, rows, out, ox);
            ox += 4;
        }
        while R > 2 && ox + 2 <= l.wo {
            tile::<S, 2, V, G>(simd, l, rows, out, ox);
            ox += 2;
        }
        while ox < l.wo {
            tile::<S, 1, V, G>(simd, l, rows, out, ox);
            ox += 1;
        }
    }
}

/// R adjacent output positions x every group of output channels (G = V vectors): per patch
/// value, R broadcasts, V weight loads from the group's packed row (a fixed-size array, so no bounds
/// checks) and R x V fused multiply-adds. Each position's patch row is read where it lies in
/// the HWC input (`3 * cin` contiguous values per kernel row); copying the patches into a
/// panel first was measured slower (123 vs 82 µs p50, both before the narrow-row tails): the
/// copy costs more than the bounds checks it removes.
#[inline(always)]
fn tile<S: pulp::Simd, const R: usize, const V: usize, const G: usize>(
    simd: S,
    l: &PackedConv,
    rows: &[f32],
    out: &mut [f32],
    ox: usize,
) {
    let lanes = S::F32_LANES;
    let seg = KERNEL * l.cin_p;
    let k_len = KERNEL * seg;
    let row_in = rows.len() / KERNEL;
    let step = l.stride * l.cin_p;
    let zero = simd.splat_f32s(0.0);
    let groups = l
        .weights
        .chunks_exact(k_len * G)
        .zip(l.bias.chunks_exact(G));
    for (g, (wg, bg)) in groups.enumerate() {
        let mut acc: [[S::f32s; V]; R] = [std::array::from_fn(|v| load::<S>(&bg[v * lanes..])); R];
        for (ky, wk) in wg.chunks_exact(seg * G).enumerate() {
            let xr: [&[f32]; R] = std::array::from_fn(|r| {
                let at = ky * row_in + (ox + r) * step;
                &rows[at..at + seg]
            });
            let (wrows, _) = wk.as_chunks::<G>();
            for (j, wj) in wrows.iter().enumerate() {
                let w: [S::f32s; V] = std::array::from_fn(|v| load::<S>(&wj[v * lanes..]));
                for r in 0..R {
                    let x = simd.splat_f32s(xr[r][j]);
                    for v in 0..V {
                        acc[r][v] = simd.mul_add_f32s(x, w[v], acc[r][v]);
                    }
                }
            }
        }
        for r in 0..R {
            for v in 0..V {
                let at = (ox + r + 1) * l.cout_p + g * G + v * lanes;
                let relu = simd.max_f32s(acc[r][v], zero);
                bytemuck::cast_slice_mut::<f32, u8>(&mut out[at..at + lanes])
                    .copy_from_slice(bytemuck::bytes_of(&relu));
            }
        }
    }
}

/// The same layer in plain scalar code, for vector widths without a tuned tile (none of the
/// instruction sets pulp dispatches to here; kept so a new one is correct, if slow).
fn layer_plain(l: &PackedConv, input: &[f32], output: &mut [f32]) {
    let row_in = (l.w + 2) * l.cin_p;
    let row_out = (l.wo + 2) * l.cout_p;
    let seg = KERNEL * l.cin_p;
    let k_len = KERNEL * seg;
    let g_len = l.group_len;
    for oy in 0..l.ho {
        for ox in 0..l.wo {
            for o in 0..l.cout_p {
                let (g, lane) = (o / g_len, o % g_len);
                let mut acc = l.bias[o];
                for ky in 0..KERNEL {
                    let at = (oy * l.stride + ky) * row_in + ox * l.stride * l.cin_p;
                    for j in 0..seg {
                        let k = ky * seg + j;
                        acc += input[at + j] * l.weights[(g * k_len + k) * g_len + lane];
                    }
                }
                output[(oy + 1) * row_out + (ox + 1) * l.cout_p + o] = acc.max(0.0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::{Arch, ConvSpec, Workspace};
    use crate::rng::Rng;

    fn check(arch: Arch, seed: u64) {
        let mut rng = Rng::new(seed);
        let mut net = Network::new_random(arch, &mut rng).expect("valid arch");
        // Non-zero biases, so their packing is exercised too.
        for (i, p) in net.params.iter_mut().enumerate() {
            if i % 2 == 1 {
                p.iter_mut().for_each(|v| *v = rng.normal() * 0.1);
            }
        }
        let mut ws = Workspace::new(&net.arch);
        // Every instruction set this CPU runs, not only the one `new` picks: the AVX2 path is
        // what SageMaker hosts without AVX-512 run, and the scalar one exercises `layer_plain`.
        for simd in instruction_sets() {
            let packed = PackedCnn::pack(&net, simd);
            let mut dws = packed.workspace();
            for _ in 0..3 {
                let x: Vec<f32> = (0..net.input_len()).map(|_| rng.normal()).collect();
                let want = net.forward(&x, &mut ws).expect("forward").to_vec();
                let got = packed.forward(&x, &mut dws).expect("direct forward");
                for (g, w) in got.iter().zip(&want) {
                    assert!(
                        (g - w).abs() <= 1e-4 * (1.0 + w.abs()),
                        "{simd:?}: direct {got:?} vs sgemm {want:?}"
                    );
                }
            }
        }
    }

    fn instruction_sets() -> Vec<pulp::Arch> {
        #[allow(unused_mut)]
        let mut sets = vec![pulp::Arch::new()];
        #[cfg(target_arch = "x86_64")]
        {
            sets.extend(pulp::x86::V3::try_new().map(pulp::Arch::V3));
            sets.push(pulp::Arch::Scalar);
        }
        sets
    }

    #[test]
    fn this_x86_cpu_gets_a_vector_path() {
        // The served path exists wherever AVX2+FMA does (every current EC2/SageMaker x86 host).
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            let mut rng = Rng::new(1);
            let net = Network::new_random(Arch::default_for(64, 16), &mut rng).expect("arch");
            let packed = PackedCnn::new(&net).expect("a vector path on an AVX2+FMA CPU");
            assert!(packed.lanes >= 8, "{:?}", packed.simd);
        }
    }

    #[test]
    fn equals_the_sgemm_forward_pass_for_the_default_network() {
        check(Arch::default_for(64, 16), 7);
        check(Arch::default_for(96, 16), 8);
    }

    #[test]
    fn equals_the_sgemm_forward_pass_for_widths_and_sizes_that_need_padding_and_tails() {
        // 12 channels (padded to 16), 37 px (odd sizes, tiles of 4 and 1), a stride-1 first layer.
        let mut arch = Arch::default_for(37, 12);
        arch.convs.insert(
            0,
            ConvSpec {
                out_channels: 5,
                stride: 1,
            },
        );
        check(arch, 9);
    }

    #[test]
    fn rejects_an_input_of_the_wrong_size() {
        let mut rng = Rng::new(1);
        let net = Network::new_random(Arch::default_for(64, 16), &mut rng).expect("valid arch");
        if let Some(packed) = PackedCnn::new(&net) {
            let mut ws = packed.workspace();
            assert!(matches!(
                packed.forward(&[0.0; 10], &mut ws),
                Err(NnError::Input { got: 10, .. })
            ));
        }
    }
}
