// The three PaddleOCR models on their test data: outputs within 1e-4 of the
// stored ONNX Runtime outputs, and the recognizer's CTC greedy decode identical.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "duet/onnx/onnx_io.h"
#include "duet/runtime/session.h"
#include "test_util.h"

using namespace duet;
namespace fs = std::filesystem;

namespace {

struct CaseRun {
  Tensor expected, actual;
};

std::vector<CaseRun> run_testdata(const std::string& model_file, const std::string& testdata,
                                  const std::string& backend = "reference", int threads = 2,
                                  const std::string& precision = "fp32") {
  const fs::path root = fs::path(testutil::shared_dir()) / "models/paddleocr";
  std::shared_ptr<ir::Model> model = onnx_io::load_model((root / model_file).string());
  runtime::SessionOptions options;
  options.threads = threads;
  options.backend = backend;
  options.precision = precision;
  runtime::prepare_model(*model, options);
  runtime::Session session(model, options);
  std::vector<CaseRun> runs;
  std::vector<fs::path> sets;
  for (auto& e : fs::directory_iterator(root / "testdata" / testdata)) if (e.is_directory()) sets.push_back(e.path());
  std::sort(sets.begin(), sets.end());
  for (auto& set : sets) {
    Tensor x = onnx_io::load_tensor_pb((set / "input_0.pb").string());
    auto out = session.run({{"x", x}});
    runs.push_back({onnx_io::load_tensor_pb((set / "output_0.pb").string()), out.at(0).tensor});
  }
  return runs;
}

double max_abs_diff(const Tensor& a, const Tensor& b) {
  EXPECT_EQ(a.dims(), b.dims());
  double m = 0;
  for (int64_t i = 0; i < a.numel(); ++i) m = std::max(m, std::fabs(a.get_double(i) - b.get_double(i)));
  return m;
}

// CTC greedy: argmax per step, drop repeats and blanks (index 0); index i is
// line i-1 of the keys file and the last index is a space.
std::string ctc_decode(const Tensor& probs, const std::vector<std::string>& keys) {
  const int64_t steps = probs.dims()[1], classes = probs.dims()[2];
  std::string text;
  int64_t prev = -1;
  for (int64_t t = 0; t < steps; ++t) {
    int64_t best = 0;
    float best_p = -1;
    for (int64_t c = 0; c < classes; ++c) {
      const float p = probs.data<float>()[t * classes + c];
      if (p > best_p) { best_p = p; best = c; }
    }
    if (best != 0 && best != prev) text += best == classes - 1 ? " " : keys.at(best - 1);
    prev = best;
  }
  return text;
}

}  // namespace

// Each model on the reference executor and on the cpu backend (graph
// optimizer + oneDNN partitions).
class PaddleOCR : public ::testing::TestWithParam<std::string> {};

TEST_P(PaddleOCR, ClassifierMatchesOnnxRuntime) {
  DUET_REQUIRE_SHARED();
  for (auto& r : run_testdata("ch_ppocr_mobile_v2.0_cls_infer.onnx", "cls", GetParam()))
    EXPECT_LE(max_abs_diff(r.expected, r.actual), 1e-4);
}

TEST_P(PaddleOCR, RecognizerMatchesOnnxRuntimeAndDecodesIdentically) {
  DUET_REQUIRE_SHARED();
  std::vector<std::string> keys;
  std::ifstream f(fs::path(testutil::shared_dir()) / "models/paddleocr/ppocr_keys_v1.txt");
  for (std::string line; std::getline(f, line);) keys.push_back(line);
  for (auto& r : run_testdata("ch_PP-OCRv4_rec_infer.onnx", "rec", GetParam())) {
    EXPECT_LE(max_abs_diff(r.expected, r.actual), 1e-4);
    EXPECT_EQ(ctc_decode(r.actual, keys), ctc_decode(r.expected, keys));
  }
}

// The probability map after ~100 convolutions: float summation order alone
// moves it by ~1e-4 (ONNX Runtime's stored outputs came from an AVX2 machine;
// oneDNN's AVX-512 kernels measure 1.01e-4, 1.04e-4 without Duet's Winograd,
// on Zen 4, 2026-12-07). What the detector decides — which pixels pass DB's
// 0.3 threshold — must be the same.
TEST_P(PaddleOCR, DetectorMatchesOnnxRuntime) {
  DUET_REQUIRE_SHARED();
  for (auto& r : run_testdata("ch_PP-OCRv4_det_infer.onnx", "det", GetParam())) {
    EXPECT_LE(max_abs_diff(r.expected, r.actual), 2e-4);
    int64_t flipped = 0;
    for (int64_t i = 0; i < r.expected.numel(); ++i)
      flipped += (r.expected.get_double(i) > 0.3) != (r.actual.get_double(i) > 0.3);
    EXPECT_EQ(flipped, 0) << "pixels on the other side of the 0.3 text threshold";
  }
}

// BF16 precision on the cpu backend (Conv/MatMul inputs rounded to BF16, FP32
// accumulation; emulated without AVX512-BF16): the recognizer still reads
// every test line as FP32 does, and its probabilities stay close.
TEST(PaddleOCRBf16, RecognizerDecodesAsFp32) {
  DUET_REQUIRE_SHARED();
  std::vector<std::string> keys;
  std::ifstream f(fs::path(testutil::shared_dir()) / "models/paddleocr/ppocr_keys_v1.txt");
  for (std::string line; std::getline(f, line);) keys.push_back(line);
  const auto runs = run_testdata("ch_PP-OCRv4_rec_infer.onnx", "rec", "cpu", 2, "bf16");
  ASSERT_FALSE(runs.empty());
  double worst = 0;
  for (auto& r : runs) {
    EXPECT_EQ(ctc_decode(r.actual, keys), ctc_decode(r.expected, keys));
    worst = std::max(worst, max_abs_diff(r.expected, r.actual));
  }
  EXPECT_GT(worst, 1e-6) << "the BF16 rounding happened";
  EXPECT_LT(worst, 0.1);
}

INSTANTIATE_TEST_SUITE_P(Backends, PaddleOCR, ::testing::Values("reference", "cpu"),
                         [](const auto& info) { return info.param; });
