// Winograd F(2x2, 3x3) float32 convolution (see duet/backends/cpu/winograd.h).
//
// Output channels come in panels of 16 (the last one 8 wide when the count
// is 8 mod 16). Work is split into items of (a block of up to kMaxBlock
// output tiles, a group of panels). An item transforms its block's input
// patches for every input channel into V[16][ic/8][block][8], then for each
// panel and each of the 16 positions multiplies V by U in register tiles of
// up to 6 output tiles x 16 channels (12 accumulators, the same shape as
// oneDNN's AVX2 direct kernel), keeps M[16][block][16] in cache and
// transforms it into 2x2 output tiles.
#include "duet/backends/cpu/winograd.h"

#include <immintrin.h>

#include <algorithm>

#include "duet/runtime/peaks.h"
#include "omp_team.h"

namespace duet::backends::cpu {
namespace {

constexpr int64_t kRegisterTiles = 6;  // output tiles per register block
constexpr int64_t kMaxBlock = 24;      // output tiles per work item

#define DUET_AVX2_FMA __attribute__((target("avx2,fma")))

// M[xi][t][0:8V] for tiles t0..t0+R of one position xi and one panel of 8V
// output channels: sum over input channels of V[xi][icb][t][c] * U[panel][xi][icb*8+c][0:8V].
template <int R, int V>
DUET_AVX2_FMA void multiply(const float* v, const float* u, int64_t in_blocks, int64_t block, float* m) {
  // Every loop over r and the vectors is unrolled (pragmas: -O2 does not
  // unroll them itself, and the accumulators would live in memory — measured
  // 3x slower).
  __m256 acc[R][V];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 2
    for (int j = 0; j < V; ++j) acc[r][j] = _mm256_setzero_ps();
  for (int64_t icb = 0; icb < in_blocks; ++icb) {
    const float* vp = v + icb * block * 8;
    const float* up = u + icb * 8 * 8 * V;
#pragma GCC unroll 8
    for (int c = 0; c < 8; ++c) {
      __m256 w[V];
#pragma GCC unroll 2
      for (int j = 0; j < V; ++j) w[j] = _mm256_loadu_ps(up + (c * V + j) * 8);
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) {
        const __m256 x = _mm256_broadcast_ss(vp + r * 8 + c);
#pragma GCC unroll 2
        for (int j = 0; j < V; ++j) acc[r][j] = _mm256_fmadd_ps(x, w[j], acc[r][j]);
      }
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 2
    for (int j = 0; j < V; ++j) _mm256_storeu_ps(m + r * 16 + j * 8, acc[r][j]);
}

using MultiplyFn = void (*)(const float*, const float*, int64_t, int64_t, float*);
template <int V>
constexpr MultiplyFn kMultiply[kRegisterTiles + 1] = {nullptr,        multiply<1, V>, multiply<2, V>, multiply<3, V>,
                                                      multiply<4, V>, multiply<5, V>, multiply<6, V>};

// V = B^T d B for one 4x4 patch of 8 channels; rows of B^T: (1,0,-1,0),
// (0,1,1,0), (0,-1,1,0), (0,1,0,-1). Out-of-image pixels are zeros (padding).
DUET_AVX2_FMA void transform_input(const float* plane, int64_t height, int64_t width, int64_t y0, int64_t x0, float* v,
                                   size_t position_stride) {
  __m256 d[4][4];
#pragma GCC unroll 4
  for (int i = 0; i < 4; ++i)
#pragma GCC unroll 4
    for (int j = 0; j < 4; ++j) {
      const int64_t y = y0 + i, x = x0 + j;
      d[i][j] = (y >= 0 && y < height && x >= 0 && x < width) ? _mm256_loadu_ps(plane + (y * width + x) * 8)
                                                              : _mm256_setzero_ps();
    }
  __m256 t[4][4];
#pragma GCC unroll 4
  for (int j = 0; j < 4; ++j) {
    t[0][j] = _mm256_sub_ps(d[0][j], d[2][j]);
    t[1][j] = _mm256_add_ps(d[1][j], d[2][j]);
    t[2][j] = _mm256_sub_ps(d[2][j], d[1][j]);
    t[3][j] = _mm256_sub_ps(d[1][j], d[3][j]);
  }
#pragma GCC unroll 4
  for (int i = 0; i < 4; ++i) {
    float* row = v + static_cast<size_t>(i * 4) * position_stride;
    _mm256_storeu_ps(row, _mm256_sub_ps(t[i][0], t[i][2]));
    _mm256_storeu_ps(row + position_stride, _mm256_add_ps(t[i][1], t[i][2]));
    _mm256_storeu_ps(row + 2 * position_stride, _mm256_sub_ps(t[i][2], t[i][1]));
    _mm256_storeu_ps(row + 3 * position_stride, _mm256_sub_ps(t[i][1], t[i][3]));
  }
}

// Y = A^T M A for one tile and 8 output channels; rows of A^T: (1,1,1,0),
// (0,1,-1,-1). Then bias, the residual already in dst, ReLU; stores the
// pixels inside the output.
DUET_AVX2_FMA void transform_output(const float* m, size_t position_stride, const float* bias, bool accumulate,
                                    bool relu, float* plane, int64_t out_height, int64_t out_width, int64_t y0,
                                    int64_t x0) {
  __m256 s[2][4];
#pragma GCC unroll 4
  for (int j = 0; j < 4; ++j) {
    const __m256 m0 = _mm256_loadu_ps(m + (0 * 4 + j) * position_stride);
    const __m256 m1 = _mm256_loadu_ps(m + (1 * 4 + j) * position_stride);
    const __m256 m2 = _mm256_loadu_ps(m + (2 * 4 + j) * position_stride);
    const __m256 m3 = _mm256_loadu_ps(m + (3 * 4 + j) * position_stride);
    s[0][j] = _mm256_add_ps(_mm256_add_ps(m0, m1), m2);
    s[1][j] = _mm256_sub_ps(_mm256_sub_ps(m1, m2), m3);
  }
  const __m256 b = _mm256_loadu_ps(bias);
#pragma GCC unroll 2
  for (int i = 0; i < 2; ++i) {
    const int64_t y = y0 + i;
    if (y >= out_height) break;
    const __m256 y_0 = _mm256_add_ps(_mm256_add_ps(s[i][0], s[i][1]), s[i][2]);
    const __m256 y_1 = _mm256_sub_ps(_mm256_sub_ps(s[i][1], s[i][2]), s[i][3]);
    const __m256 out[2] = {y_0, y_1};
#pragma GCC unroll 2
    for (int j = 0; j < 2; ++j) {
      const int64_t x = x0 + j;
      if (x >= out_width) break;
      float* p = plane + (y * out_width + x) * 8;
      __m256 r = _mm256_add_ps(out[j], b);
      if (accumulate) r = _mm256_add_ps(r, _mm256_loadu_ps(p));
      if (relu) r = _mm256_max_ps(r, _mm256_setzero_ps());
      _mm256_storeu_ps(p, r);
    }
  }
}

}  // namespace

bool WinogradConv3x3::available() { return runtime::cpu_features().avx2_fma; }

bool WinogradConv3x3::suits(const WinogradShape& s) {
  return s.in_channels % kChannelMultiple == 0 && s.out_channels % kChannelMultiple == 0 &&
         s.out_height >= kMinOutputSize && s.out_width >= kMinOutputSize && s.in_channels >= kMinInputChannels;
}

WinogradConv3x3::WinogradConv3x3(const WinogradShape& shape, const float* weights, const float* bias, bool accumulate,
                                 bool relu)
    : s_(shape), accumulate_(accumulate), relu_(relu) {
  const int64_t ic = s_.in_channels, oc = s_.out_channels;
  // U[panel][xi][c][o] = (G g G^T)[xi] for output channel panel*16+o, input
  // channel c (a panel is 16 channels wide, the last one perhaps 8);
  // rows of G: (1,0,0), (1/2,1/2,1/2), (1/2,-1/2,1/2), (0,0,1).
  u_.assign(static_cast<size_t>(16 * ic * oc), 0.0f);
  for (int64_t o = 0; o < oc; ++o)
    for (int64_t c = 0; c < ic; ++c) {
      const float* g = weights + (o * ic + c) * 9;
      float gg[4][3];  // G g
      for (int k = 0; k < 3; ++k) {
        gg[0][k] = g[0 * 3 + k];
        gg[1][k] = 0.5f * (g[0 * 3 + k] + g[1 * 3 + k] + g[2 * 3 + k]);
        gg[2][k] = 0.5f * (g[0 * 3 + k] - g[1 * 3 + k] + g[2 * 3 + k]);
        gg[3][k] = g[2 * 3 + k];
      }
      for (int i = 0; i < 4; ++i) {
        const float row[4] = {gg[i][0], 0.5f * (gg[i][0] + gg[i][1] + gg[i][2]), 0.5f * (gg[i][0] - gg[i][1] + gg[i][2]),
                              gg[i][2]};
        for (int j = 0; j < 4; ++j)
          u_[static_cast<size_t>((o / 16) * 16 * ic * 16 + ((i * 4 + j) * ic + c) * panel_width(o / 16) + o % 16)] =
              row[j];
      }
    }
  bias_.assign(static_cast<size_t>(oc), 0.0f);
  if (bias) std::copy(bias, bias + oc, bias_.begin());

  tiles_y_ = (s_.out_height + 1) / 2;
  tiles_x_ = (s_.out_width + 1) / 2;
  tiles_ = s_.batch * tiles_y_ * tiles_x_;
  // Enough items for every thread to get several (the last one may be short),
  // blocks as large as that allows (more reuse of each weight load).
  const int64_t threads = std::max(1, omp_get_max_threads());
  block_ = kMaxBlock;
  while (block_ > kRegisterTiles && (tiles_ + block_ - 1) / block_ < 4 * threads) block_ -= kRegisterTiles;
  blocks_ = (tiles_ + block_ - 1) / block_;
  groups_ = 1;
  while (blocks_ * groups_ < 4 * threads && groups_ < panels()) groups_ *= 2;
  groups_ = std::min(groups_, panels());
  scratch_floats_ = static_cast<size_t>(16 * ic * block_ + 16 * block_ * 16);
}

void WinogradConv3x3::run_item(int64_t item, const float* src, float* dst) const {
  float* scratch = thread_scratch(scratch_floats_);
  const int64_t ic = s_.in_channels, in_blocks = ic / 8;
  const int64_t first = (item / groups_) * block_, count = std::min(block_, tiles_ - first);
  const int64_t group = item % groups_;
  const int64_t panel_begin = group * panels() / groups_, panel_end = (group + 1) * panels() / groups_;
  float* v = scratch;                                            // [16][in_blocks][block][8]
  float* m = scratch + static_cast<size_t>(16 * ic * block_);   // [16][block][16]
  const size_t v_position = static_cast<size_t>(in_blocks * block_ * 8);
  const int64_t plane_in = s_.height * s_.width * 8, plane_out = s_.out_height * s_.out_width * 8;

  auto tile_origin = [&](int64_t t, int64_t& image, int64_t& ty, int64_t& tx) {
    image = t / (tiles_y_ * tiles_x_);
    const int64_t r = t % (tiles_y_ * tiles_x_);
    ty = r / tiles_x_;
    tx = r % tiles_x_;
  };
  for (int64_t k = 0; k < count; ++k) {
    int64_t image, ty, tx;
    tile_origin(first + k, image, ty, tx);
    for (int64_t icb = 0; icb < in_blocks; ++icb) {
      const float* plane = src + (image * in_blocks + icb) * plane_in;
      transform_input(plane, s_.height, s_.width, 2 * ty - s_.pad_top, 2 * tx - s_.pad_left,
                      v + (icb * block_ + k) * 8, v_position);
    }
  }
  const size_t m_position = static_cast<size_t>(block_ * 16);
  for (int64_t p = panel_begin; p < panel_end; ++p) {
    const int64_t width = panel_width(p);
    const float* u = u_.data() + static_cast<size_t>(p * 16 * ic * 16);
    for (int xi = 0; xi < 16; ++xi)
      for (int64_t k = 0; k < count; k += kRegisterTiles) {
        const int64_t r = std::min(kRegisterTiles, count - k);
        (width == 16 ? kMultiply<2> : kMultiply<1>)[r](v + xi * v_position + k * 8,
                                                      u + static_cast<size_t>(xi * ic * width), in_blocks, block_,
                                                      m + xi * m_position + k * 16);
      }
    for (int64_t k = 0; k < count; ++k) {
      int64_t image, ty, tx;
      tile_origin(first + k, image, ty, tx);
      for (int64_t h = 0; h < width / 8; ++h) {
        const int64_t ocb = p * 2 + h;
        float* plane = dst + (image * (s_.out_channels / 8) + ocb) * plane_out;
        transform_output(m + k * 16 + h * 8, m_position, bias_.data() + ocb * 8, accumulate_, relu_, plane,
                         s_.out_height, s_.out_width, 2 * ty, 2 * tx);
      }
    }
  }
}

void WinogradConv3x3::run(const float* src, float* dst) const {
  run_items(blocks_ * groups_, omp_get_max_threads(), [&](int64_t item, int) { run_item(item, src, dst); });
}

}  // namespace duet::backends::cpu
