// Winograd F(2x2, 3x3) float32 convolution on oneDNN's nChw8c layout
// (AVX2 + FMA). oneDNN 2.6 has Winograd kernels only for AVX-512; on AVX2 its
// direct 3x3 convolution already runs near the FMA peak, so the only way to
// go faster is to do fewer multiplications: a 2x2 output tile of a 3x3
// convolution takes 16 products per channel pair instead of 36 (2.25x fewer).
//
// The algorithm (Lavin & Gray, "Fast Algorithms for Convolutional Neural
// Networks", 2016): weights are transformed once, U = G g G^T (4x4 per
// channel pair); per 4x4 input patch V = B^T d B; the 16 positions of the
// transformed tile are 16 independent GEMMs over input channels,
// M[xi] = V[xi] U[xi]; the output tile is Y = A^T M A. Blocks of tiles are
// transformed into a per-thread buffer and multiplied while they are in cache,
// and the output transform applies bias, the residual sum and ReLU before
// the one store.
//
// Numerics: results equal a direct convolution up to float32 rounding of
// the transforms (the transform coefficients are 0, +-1 and 1/2, so the
// error is a few units in the last place of the products' magnitude).
#pragma once

#include <cstddef>
#include <algorithm>
#include <cstdint>
#include <vector>

namespace duet::backends::cpu {

struct WinogradShape {
  int64_t batch = 1, in_channels = 0, out_channels = 0;
  int64_t height = 0, width = 0;          // input
  int64_t out_height = 0, out_width = 0;  // output
  int64_t pad_top = 0, pad_left = 0;
};

class WinogradConv3x3 {
 public:
  // True where the kernels can run: AVX2 and FMA.
  static bool available();
  // Where the kernels apply: the numbers behind suits(), also written into
  // devices/host.toml by calibrate-host, so the host-CPU model knows which
  // convolutions run here and at which rate.
  static constexpr int64_t kChannelMultiple = 8, kMinInputChannels = 16, kMinOutputSize = 12;
  // Output channels are computed in panels this wide (a last one of 8 runs
  // at about half the rate: half the accumulators).
  static constexpr int64_t kPanelChannels = 16;
  // True where the shape fits the kernels (input channels a multiple of 8 and
  // at least 16, output channels a multiple of 8) and Winograd pays: outputs of at least 12x12
  // (smaller ones waste tile padding and stream 16/9 more weight bytes than
  // the direct convolution, for deep layers from DRAM).
  static bool suits(const WinogradShape& s);

  // weights: OIHW float32 [out][in][3][3]; bias (may be null): [out].
  // accumulate: the destination holds a residual that is added before ReLU.
  WinogradConv3x3(const WinogradShape& shape, const float* weights, const float* bias, bool accumulate, bool relu);

  // src: nChw8c [batch][in/8][height][width][8]; dst: nChw8c of the output.
  // Runs on the OpenMP threads oneDNN uses (omp_set_num_threads; the work
  // split was sized for the count when the object was made). Not reentrant
  // per thread team (neither is a Plan).
  void run(const float* src, float* dst) const;

 private:
  void run_item(int64_t item, const float* src, float* dst) const;
  int64_t panels() const { return (s_.out_channels + kPanelChannels - 1) / kPanelChannels; }
  int64_t panel_width(int64_t panel) const { return std::min<int64_t>(16, s_.out_channels - panel * 16); }

  WinogradShape s_;
  bool accumulate_, relu_;
  int64_t tiles_x_, tiles_y_, tiles_, block_, blocks_, groups_;
  std::vector<float> u_;     // transformed weights: per panel of 16 (last: 8) channels [16 positions][ic][width]
  std::vector<float> bias_;  // [oc], zeros without bias
  size_t scratch_floats_;    // per thread (thread_scratch): V block + M block
};

}  // namespace duet::backends::cpu
