// The three PaddleOCR models on their test data: outputs within 1e-4 of the
// stored ONNX Runtime outputs, and the recognizer's CTC greedy decode identical.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "duet/eval/metrics.h"
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

std::vector<std::string> keys() {
  std::vector<std::string> k;
  std::ifstream f(fs::path(testutil::shared_dir()) / "models/paddleocr/ppocr_keys_v1.txt");
  for (std::string line; std::getline(f, line);) k.push_back(line);
  return k;
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
  const std::vector<std::string> k = keys();
  for (auto& r : run_testdata("ch_PP-OCRv4_rec_infer.onnx", "rec", GetParam())) {
    EXPECT_LE(max_abs_diff(r.expected, r.actual), 1e-4);
    EXPECT_EQ(eval::ctc_greedy_decode(r.actual, k), eval::ctc_greedy_decode(r.expected, k));
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
  const std::vector<std::string> k = keys();
  const auto runs = run_testdata("ch_PP-OCRv4_rec_infer.onnx", "rec", "cpu", 2, "bf16");
  ASSERT_FALSE(runs.empty());
  double worst = 0;
  for (auto& r : runs) {
    EXPECT_EQ(eval::ctc_greedy_decode(r.actual, k), eval::ctc_greedy_decode(r.expected, k));
    worst = std::max(worst, max_abs_diff(r.expected, r.actual));
  }
  EXPECT_GT(worst, 1e-6) << "the BF16 rounding happened";
  EXPECT_LT(worst, 0.1);
}

// Batch sizes beyond the test data's 1: each model's graph is batch-agnostic
// (its batch dimension is symbolic), so the four test inputs stacked into one
// batch give each sample's own output — what a batch sweep of the simulator
// and a batched benchmark assume.
TEST_P(PaddleOCR, AStackedBatchGivesEachSamplesOwnOutput) {
  DUET_REQUIRE_SHARED();
  const fs::path root = fs::path(testutil::shared_dir()) / "models/paddleocr";
  for (const auto& [file, testdata] : std::vector<std::pair<std::string, std::string>>{
           {"ch_ppocr_mobile_v2.0_cls_infer.onnx", "cls"}, {"ch_PP-OCRv4_rec_infer.onnx", "rec"},
           {"ch_PP-OCRv4_det_infer.onnx", "det"}}) {
    std::shared_ptr<ir::Model> model = onnx_io::load_model((root / file).string());
    runtime::SessionOptions options;
    options.threads = 2;
    options.backend = GetParam();
    runtime::prepare_model(*model, options);
    runtime::Session session(model, options);
    std::vector<Tensor> inputs, singles;
    for (int i = 0; i < 4; ++i) {
      inputs.push_back(onnx_io::load_tensor_pb((root / "testdata" / testdata / ("test_data_set_" + std::to_string(i)) / "input_0.pb").string()));
      singles.push_back(session.run({{"x", inputs.back()}}).at(0).tensor);
    }
    Dims stacked_dims = inputs[0].dims();
    stacked_dims[0] = 4;
    Tensor stacked(DType::Float32, stacked_dims);
    for (int i = 0; i < 4; ++i)
      std::copy_n(inputs[i].data<float>(), inputs[i].numel(), stacked.data<float>() + i * inputs[i].numel());
    const Tensor batched = session.run({{"x", stacked}}).at(0).tensor;
    ASSERT_EQ(batched.dims()[0], 4) << file;
    for (int i = 0; i < 4; ++i) {
      const int64_t n = singles[i].numel();
      ASSERT_EQ(batched.numel(), 4 * n) << file;
      double worst = 0, scale = 0;
      for (int64_t k = 0; k < n; ++k) {
        worst = std::max(worst, std::fabs(static_cast<double>(batched.data<float>()[i * n + k]) - singles[i].data<float>()[k]));
        scale = std::max(scale, std::fabs(static_cast<double>(singles[i].data<float>()[k])));
      }
      EXPECT_LE(worst, 1e-5 * std::max(1.0, scale)) << file << " sample " << i;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Backends, PaddleOCR, ::testing::Values("reference", "cpu"),
                         [](const auto& info) { return info.param; });
