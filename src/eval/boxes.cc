// The text detector's metric: DB post-processing of the probability map into
// boxes, and their one-to-one match against the reference boxes (metrics.h).
#include <algorithm>
#include <cmath>
#include <sstream>

#include "duet/core/error.h"
#include "duet/eval/metrics.h"

namespace duet::eval {

double iou(const Box& a, const Box& b) {
  const double x0 = std::max(a.x, b.x), y0 = std::max(a.y, b.y);
  const double x1 = std::min(a.x + a.w, b.x + b.w), y1 = std::min(a.y + a.h, b.y + b.h);
  const double inter = std::max(0.0, x1 - x0) * std::max(0.0, y1 - y0);
  const double uni = a.w * a.h + b.w * b.h - inter;
  return uni > 0 ? inter / uni : 0;
}

std::vector<Box> detect_boxes(const Tensor& probability, const TaskMetric& metric) {
  const Dims& d = probability.dims();
  const bool shaped = d.size() == 2 || (d.size() == 3 && d[0] == 1) || (d.size() == 4 && d[0] == 1 && d[1] == 1);
  DUET_CHECK(probability.dtype() == DType::Float32 && shaped,
             "metric boxes expects one float32 probability map [1, 1, H, W], got ", probability.describe());
  const int64_t H = d[d.size() - 2], W = d.back();
  const float* p = probability.data<float>();
  // 8-connected components of the thresholded map, by an explicit stack.
  std::vector<int32_t> label(static_cast<size_t>(H * W), -1);
  std::vector<int64_t> stack;
  std::vector<Box> boxes;
  int32_t next = 0;
  for (int64_t start = 0; start < H * W; ++start) {
    if (label[start] >= 0 || !(p[start] > metric.threshold)) continue;
    int64_t x0 = W, y0 = H, x1 = -1, y1 = -1;
    label[start] = next;
    stack.assign(1, start);
    while (!stack.empty()) {
      const int64_t at = stack.back();
      stack.pop_back();
      const int64_t y = at / W, x = at % W;
      x0 = std::min(x0, x), x1 = std::max(x1, x), y0 = std::min(y0, y), y1 = std::max(y1, y);
      for (int64_t dy = -1; dy <= 1; ++dy)
        for (int64_t dx = -1; dx <= 1; ++dx) {
          const int64_t ny = y + dy, nx = x + dx;
          if (ny < 0 || ny >= H || nx < 0 || nx >= W) continue;
          const int64_t n = ny * W + nx;
          if (label[n] < 0 && p[n] > metric.threshold) label[n] = next, stack.push_back(n);
        }
    }
    ++next;
    // The box's score: mean probability over its rectangle (PaddleOCR's fast score).
    const double w = static_cast<double>(x1 - x0 + 1), h = static_cast<double>(y1 - y0 + 1);
    if (std::min(w, h) < 3) continue;
    double sum = 0;
    for (int64_t y = y0; y <= y1; ++y)
      for (int64_t x = x0; x <= x1; ++x) sum += p[y * W + x];
    if (sum / (w * h) < metric.box_threshold) continue;
    // Unclip: the shrunk kernel grown back by area x ratio / perimeter on every side.
    const double grow = w * h * metric.unclip_ratio / (2 * (w + h));
    Box b{static_cast<double>(x0) - grow, static_cast<double>(y0) - grow, w + 2 * grow, h + 2 * grow};
    if (std::min(b.w, b.h) < 3 + 2) continue;
    const double bx1 = std::min<double>(static_cast<double>(W), b.x + b.w), by1 = std::min<double>(static_cast<double>(H), b.y + b.h);
    b.x = std::max(0.0, b.x), b.y = std::max(0.0, b.y);
    b.w = bx1 - b.x, b.h = by1 - b.y;
    boxes.push_back(b);
  }
  return boxes;
}

std::vector<Box> parse_boxes(const std::string& text) {
  std::vector<Box> out;
  std::istringstream in(text);
  std::string line;
  int row = 0;
  while (std::getline(in, line)) {
    ++row;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    std::istringstream fields(line);
    Box b;
    DUET_CHECK(static_cast<bool>(fields >> b.x >> b.y >> b.w >> b.h) && b.w > 0 && b.h > 0 && std::isfinite(b.x + b.y + b.w + b.h),
               "metric boxes: reference line ", row, " is not 'x y w h [text]' with a positive width and height: '", line, "'");
    out.push_back(b);
  }
  return out;
}

int64_t match_boxes(const std::vector<Box>& predicted, const std::vector<Box>& reference, double threshold) {
  struct Pair {
    double iou;
    size_t p, r;
  };
  std::vector<Pair> pairs;
  for (size_t i = 0; i < predicted.size(); ++i)
    for (size_t j = 0; j < reference.size(); ++j)
      if (const double v = iou(predicted[i], reference[j]); v >= threshold) pairs.push_back({v, i, j});
  std::sort(pairs.begin(), pairs.end(), [](const Pair& a, const Pair& b) { return a.iou > b.iou; });
  std::vector<bool> used_p(predicted.size()), used_r(reference.size());
  int64_t matched = 0;
  for (const Pair& pr : pairs) {
    if (used_p[pr.p] || used_r[pr.r]) continue;
    used_p[pr.p] = used_r[pr.r] = true;
    ++matched;
  }
  return matched;
}

}  // namespace duet::eval
