// Task metrics (eval/metrics.h): CTC decoding and CER, top-1 against labels,
// agreement with FP32, and the text detector's boxes after DB post-processing.
#include <gtest/gtest.h>

#include <fstream>

#include "duet/core/error.h"
#include "duet/eval/metrics.h"

using namespace duet;

namespace {

std::string source(const std::string& rel) { return std::string(DUET_SOURCE_DIR) + "/" + rel; }

Tensor scores(const std::vector<std::vector<float>>& rows) {
  Tensor t(DType::Float32, {1, static_cast<int64_t>(rows.size()), static_cast<int64_t>(rows[0].size())});
  float* p = t.data<float>();
  for (const auto& r : rows)
    for (float v : r) *p++ = v;
  return t;
}

// A probability map [1, 1, H, W] with `value` inside each rectangle (x, y, w, h), 0 elsewhere.
Tensor probability_map(int64_t H, int64_t W, const std::vector<eval::Box>& boxes, float value = 0.9f) {
  Tensor t = Tensor::zeros(DType::Float32, {1, 1, H, W});
  for (const auto& b : boxes)
    for (int64_t y = static_cast<int64_t>(b.y); y < static_cast<int64_t>(b.y + b.h); ++y)
      for (int64_t x = static_cast<int64_t>(b.x); x < static_cast<int64_t>(b.x + b.w); ++x) t.data<float>()[y * W + x] = value;
  return t;
}

}  // namespace

TEST(TaskMetrics, EditDistanceCountsCodePointsNotBytes) {
  EXPECT_EQ(eval::edit_distance("kitten", "sitting"), 3);
  EXPECT_EQ(eval::edit_distance("", "abc"), 3);
  EXPECT_EQ(eval::edit_distance("数据", "数掘"), 1);  // one Chinese character, three UTF-8 bytes
  EXPECT_EQ(eval::code_points("数据 ok"), 5);
}

TEST(TaskMetrics, CtcGreedyDecodeDropsRepeatsAndBlanks) {
  // Classes: blank, 'a', 'b', space (keys a, b).
  const std::vector<std::string> keys = {"a", "b"};
  const Tensor t = scores({{0, 1, 0, 0}, {0, 1, 0, 0}, {1, 0, 0, 0}, {0, 1, 0, 0}, {0, 0, 0, 1}, {0, 0, 1, 0}});
  EXPECT_EQ(eval::ctc_greedy_decode(t, keys), "aa b");
  EXPECT_THROW(eval::ctc_greedy_decode(t, {"a"}), Error);  // 4 classes need 2 keys
}

TEST(TaskMetrics, CerTop1AndAgreementAccumulateOverSamples) {
  const std::string keys_file = testing::TempDir() + "/keys.txt";
  std::ofstream(keys_file) << "a\nb\n";
  eval::Accumulator cer(eval::parse_metric("cer,keys=" + keys_file));
  cer.add({scores({{0, 1, 0, 0}, {0, 0, 1, 0}})}, {}, "ab");  // "ab": 0 edits of 2
  cer.add({scores({{0, 1, 0, 0}, {1, 0, 0, 0}})}, {}, "ab");  // "a": 1 edit of 2
  EXPECT_DOUBLE_EQ(cer.value(), 0.25);
  EXPECT_DOUBLE_EQ(cer.score(), 0.75);

  eval::Accumulator top1(eval::parse_metric("top1,labels=0,180"));
  Tensor up(DType::Float32, {1, 2});
  up.data<float>()[0] = 0.9f, up.data<float>()[1] = 0.1f;
  top1.add({up}, {}, "0");
  top1.add({up}, {}, "180");
  EXPECT_DOUBLE_EQ(top1.value(), 0.5);
  EXPECT_THROW(top1.add({up}, {}, "90"), Error);

  eval::Accumulator agree(eval::parse_metric("agreement"));
  Tensor down = up.clone();
  down.data<float>()[0] = 0.1f, down.data<float>()[1] = 0.9f;
  agree.add({up}, {up}, "");
  agree.add({down}, {up}, "");
  EXPECT_DOUBLE_EQ(agree.value(), 0.5);
}

TEST(TaskMetrics, ParseNamesWhatIsWrong) {
  auto message = [](const std::string& text) {
    try {
      eval::parse_metric(text);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message("wer").find("unknown metric 'wer'"), std::string::npos);
  EXPECT_NE(message("cer").find("needs keys=FILE"), std::string::npos);
  EXPECT_NE(message("cer,keys=/nonexistent").find("cannot read the keys file"), std::string::npos);
  EXPECT_NE(message("agreement,labels=1").find("unknown option"), std::string::npos);
  EXPECT_NE(message("top1,keys=x").find("unknown option"), std::string::npos);
  EXPECT_NE(message("boxes,iou=2").find("out of range"), std::string::npos);
  EXPECT_NE(message("boxes,threshold=x").find("must be a number"), std::string::npos);
  const std::string keys_file = testing::TempDir() + "/keys_parse.txt";
  std::ofstream(keys_file) << "a\n";
  EXPECT_NE(message("cer,keys=" + keys_file + ",spaces=drop").find("unknown option"), std::string::npos);
}

TEST(TaskMetrics, ReferenceTextSitsBesideTheSample) {
  EXPECT_EQ(eval::reference_text(source("data/samples/digits/digit_00_label5.npy")), "5");
  EXPECT_THROW(eval::reference_text(source("data/models/digits_cnn.onnx")), Error);
}

TEST(TaskMetrics, CerCanIgnoreSpacesTheRecognizerDropsOrAdds) {
  const std::string keys_file = testing::TempDir() + "/keys_spaces.txt";
  std::ofstream(keys_file) << "a\nb\n";
  // Decodes "ab" where the reference says "a b": one edit with spaces, none without.
  eval::Accumulator with(eval::parse_metric("cer,keys=" + keys_file));
  eval::Accumulator without(eval::parse_metric("cer,keys=" + keys_file + ",spaces=ignore"));
  for (auto* acc : {&with, &without}) acc->add({scores({{0, 1, 0, 0}, {0, 0, 1, 0}})}, {}, "a b");
  EXPECT_DOUBLE_EQ(with.value(), 1.0 / 3);
  EXPECT_DOUBLE_EQ(without.value(), 0.0);
}

TEST(TaskMetrics, BoxesAreTheMapsComponentsGrownBackAndMatchedOneToOne) {
  const eval::TaskMetric m = eval::parse_metric("boxes");
  // A DB map marks the shrunk text kernel: a 40x10 component grows by 40*10*1.5/(2*50) = 6 px on every side.
  auto found = eval::detect_boxes(probability_map(64, 96, {{20, 20, 40, 10}}), m);
  ASSERT_EQ(found.size(), 1u);
  EXPECT_DOUBLE_EQ(found[0].x, 14);
  EXPECT_DOUBLE_EQ(found[0].y, 14);
  EXPECT_DOUBLE_EQ(found[0].w, 52);
  EXPECT_DOUBLE_EQ(found[0].h, 22);
  // Below the box threshold (mean probability 0.5 < 0.6) or thinner than 3 px: no box.
  EXPECT_TRUE(eval::detect_boxes(probability_map(64, 96, {{20, 20, 40, 10}}, 0.5f), m).empty());
  EXPECT_TRUE(eval::detect_boxes(probability_map(64, 96, {{20, 20, 40, 2}}), m).empty());
  // Diagonal neighbours are one component (8-connectivity): its rectangle is half filled, so it passes a box
  // threshold of 0.4 (mean 0.45) and not the default 0.6.
  const Tensor joined = probability_map(64, 96, {{2, 2, 10, 5}, {12, 7, 10, 5}, {50, 40, 30, 8}});
  EXPECT_EQ(eval::detect_boxes(joined, eval::parse_metric("boxes,box_threshold=0.4")).size(), 2u);
  EXPECT_EQ(eval::detect_boxes(joined, m).size(), 1u);

  // F1 over samples: a page with both lines found, one with one of two found and one false box.
  eval::Accumulator acc(m);
  acc.add({probability_map(64, 96, {{20, 20, 40, 10}, {20, 45, 40, 10}})}, {}, "14 14 52 22 line one\n14 39 52 22 two\n");
  acc.add({probability_map(64, 96, {{20, 20, 40, 10}, {70, 50, 20, 8}})}, {}, "14 14 52 22 x\n0 40 10 10 y\n");
  EXPECT_EQ(acc.matched(), 3);
  EXPECT_EQ(acc.predicted(), 4);
  EXPECT_EQ(acc.references(), 4);
  EXPECT_DOUBLE_EQ(acc.value(), 2.0 * 3 / (4 + 4));
}

TEST(TaskMetrics, BoxMatchingIsOneToOneAtTheIouThreshold) {
  const std::vector<eval::Box> ref = {{0, 0, 10, 10}};
  EXPECT_EQ(eval::match_boxes({{0, 0, 10, 10}, {0, 0, 10, 10}}, ref, 0.5), 1);  // a duplicate is a false positive
  EXPECT_EQ(eval::match_boxes({{5, 0, 10, 10}}, ref, 0.5), 0);                 // IoU 1/3
  EXPECT_EQ(eval::match_boxes({{5, 0, 10, 10}}, ref, 0.3), 1);
  EXPECT_THROW(eval::parse_boxes("1 2 three 4"), Error);
  EXPECT_THROW(eval::parse_boxes("1 2 0 4 zero width"), Error);
  EXPECT_EQ(eval::parse_boxes("1 2 3 4 some text\n\n5 6 7 8\n").size(), 2u);
}

