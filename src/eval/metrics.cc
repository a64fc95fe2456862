#include "duet/eval/metrics.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "duet/core/error.h"

namespace duet::eval {

namespace fs = std::filesystem;

namespace {

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string item;
  std::istringstream in(s);
  while (std::getline(in, item, sep)) out.push_back(item);
  return out;
}

std::string trim(const std::string& s) {
  const size_t a = s.find_first_not_of(" \t\r\n"), b = s.find_last_not_of(" \t\r\n");
  return a == std::string::npos ? "" : s.substr(a, b - a + 1);
}

std::vector<std::string> read_keys(const std::string& path) {
  std::ifstream f(path);
  DUET_CHECK(f.good(), "metric cer: cannot read the keys file ", path);
  std::vector<std::string> keys;
  std::string line;
  while (std::getline(f, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    keys.push_back(line);
  }
  DUET_CHECK(!keys.empty(), "metric cer: the keys file ", path, " is empty");
  return keys;
}

// Bytes of the UTF-8 sequence a lead byte starts (1 for a stray continuation byte).
size_t utf8_length(unsigned char c) { return c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 1; }

// Index of the largest of n values.
int64_t argmax(const float* v, int64_t n) {
  return static_cast<int64_t>(std::max_element(v, v + n) - v);
}

}  // namespace

std::string TaskMetric::name() const {
  return kind == MetricKind::Top1 ? "top1" : kind == MetricKind::Cer ? "cer" : kind == MetricKind::Boxes ? "boxes" : "agreement";
}

std::string TaskMetric::description() const {
  return kind == MetricKind::Top1  ? "top-1 accuracy against the labels"
         : kind == MetricKind::Cer ? (ignore_spaces ? "character error rate against the reference text (spaces ignored)"
                                                    : "character error rate against the reference text")
         : kind == MetricKind::Boxes ? "box F1 against the reference boxes"
                                   : "agreement with FP32";
}

TaskMetric parse_metric(const std::string& text) {
  const auto parts = split(text, ',');
  DUET_CHECK(!parts.empty(), "empty metric: agreement, top1[,labels=A,B,...] or cer,keys=FILE");
  TaskMetric m;
  const std::string kind = trim(parts[0]);
  if (kind == "agreement") m.kind = MetricKind::Agreement;
  else if (kind == "top1") m.kind = MetricKind::Top1;
  else if (kind == "cer") m.kind = MetricKind::Cer;
  else if (kind == "boxes") m.kind = MetricKind::Boxes;
  else fail("unknown metric '", kind, "': agreement, top1[,labels=A,B,...], cer,keys=FILE or boxes");
  for (size_t i = 1; i < parts.size(); ++i) {
    const std::string p = trim(parts[i]);
    if (m.kind == MetricKind::Top1 && p.rfind("labels=", 0) == 0) {
      m.labels = {p.substr(7)};
      // The labels are the rest of the list: labels=0,180 arrives split at the comma.
      for (++i; i < parts.size(); ++i) m.labels.push_back(trim(parts[i]));
    } else if (m.kind == MetricKind::Cer && p.rfind("keys=", 0) == 0) {
      m.keys_path = p.substr(5);
      m.labels = read_keys(m.keys_path);
    } else if (m.kind == MetricKind::Cer && (p == "spaces=ignore" || p == "spaces=keep")) {
      m.ignore_spaces = p == "spaces=ignore";
    } else if (m.kind == MetricKind::Boxes && p.find('=') != std::string::npos) {
      const std::string key = p.substr(0, p.find('=')), text = p.substr(p.find('=') + 1);
      char* end = nullptr;
      const double v = std::strtod(text.c_str(), &end);
      DUET_CHECK(!text.empty() && end && *end == '\0' && std::isfinite(v) && v >= 0, "metric boxes: ", key,
                 " must be a number >= 0, got '", text, "'");
      if (key == "threshold" && v <= 1) m.threshold = v;
      else if (key == "box_threshold" && v <= 1) m.box_threshold = v;
      else if (key == "unclip") m.unclip_ratio = v;
      else if (key == "iou" && v > 0 && v <= 1) m.iou = v;
      else fail("metric boxes: unknown option or value out of range '", p, "' (threshold, box_threshold, iou in [0, 1]; unclip)");
    } else {
      fail("metric ", kind, ": unknown option '", p, "'",
           kind == "top1"    ? " (labels=A,B,...)"
           : kind == "cer"   ? " (keys=FILE, spaces=ignore|keep)"
           : kind == "boxes" ? " (threshold=, box_threshold=, unclip=, iou=)"
                             : " (it takes none)");
    }
  }
  DUET_CHECK(m.kind != MetricKind::Cer || !m.labels.empty(), "metric cer needs keys=FILE (the recognizer's character list)");
  return m;
}

std::string reference_text(const std::string& sample_path) {
  const fs::path p(sample_path);
  std::vector<fs::path> candidates;
  if (fs::is_directory(p)) candidates = {p / "text.txt", p / "label.txt"};
  else candidates = {fs::path(p).replace_extension(".txt")};
  for (const auto& c : candidates) {
    std::ifstream f(c);
    if (!f.good()) continue;
    std::stringstream s;
    s << f.rdbuf();
    std::string t = s.str();
    while (!t.empty() && (t.back() == '\n' || t.back() == '\r')) t.pop_back();
    return t;
  }
  fail("sample ", sample_path, " has no reference (expected ", candidates[0].string(),
       "): task metrics need the label or text beside each sample; use --metric agreement to compare with FP32");
}

std::string ctc_greedy_decode(const Tensor& scores, const std::vector<std::string>& keys) {
  const Dims& d = scores.dims();
  DUET_CHECK(scores.dtype() == DType::Float32 && (d.size() == 3 ? d[0] == 1 : d.size() == 2),
             "CTC decode expects float32 scores [1, T, C] or [T, C], got ", scores.describe());
  const int64_t steps = d[d.size() - 2], classes = d.back();
  DUET_CHECK(classes == static_cast<int64_t>(keys.size()) + 2, "the recognizer has ", classes,
             " classes; the keys file gives ", keys.size(), " characters + blank + space = ", keys.size() + 2);
  std::string text;
  for (int64_t c : ctc_greedy_path(scores.data<float>(), steps, classes)) text += c == classes - 1 ? " " : keys[c - 1];
  return text;
}

std::vector<int64_t> ctc_greedy_path(const float* scores, int64_t steps, int64_t classes) {
  std::vector<int64_t> path;
  int64_t prev = -1;
  for (int64_t t = 0; t < steps; ++t) {
    const int64_t best = argmax(scores + t * classes, classes);
    if (best != 0 && best != prev) path.push_back(best);
    prev = best;
  }
  return path;
}

std::vector<std::string> utf8_characters(const std::string& s) {
  std::vector<std::string> out;
  for (size_t i = 0; i < s.size();) {
    const size_t len = utf8_length(static_cast<unsigned char>(s[i]));
    out.push_back(s.substr(i, len));
    i += len;
  }
  return out;
}

namespace {

std::vector<int64_t> decode_utf8(const std::string& s) {
  std::vector<int64_t> cps;
  for (size_t i = 0; i < s.size();) {
    const unsigned char c = s[i];
    const int len = static_cast<int>(utf8_length(c));
    uint32_t cp = len == 1 ? c : c & (0x7f >> len);
    for (int k = 1; k < len && i + k < s.size(); ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3f);
    cps.push_back(cp);
    i += len;
  }
  return cps;
}

}  // namespace

int64_t code_points(const std::string& s) { return static_cast<int64_t>(decode_utf8(s).size()); }

int64_t edit_distance(const std::string& a, const std::string& b) { return edit_distance(decode_utf8(a), decode_utf8(b)); }

int64_t edit_distance(const std::vector<int64_t>& x, const std::vector<int64_t>& y) {
  std::vector<int64_t> row(y.size() + 1);
  for (size_t j = 0; j <= y.size(); ++j) row[j] = static_cast<int64_t>(j);
  for (size_t i = 1; i <= x.size(); ++i) {
    int64_t diag = row[0];
    row[0] = static_cast<int64_t>(i);
    for (size_t j = 1; j <= y.size(); ++j) {
      const int64_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (x[i - 1] != y[j - 1])});
      diag = up;
    }
  }
  return row[y.size()];
}

void Accumulator::add(const std::vector<Tensor>& outputs, const std::vector<Tensor>& reference, const std::string& text) {
  DUET_CHECK(!outputs.empty(), "metric ", metric_.name(), ": the model produced no outputs");
  const Tensor& y = outputs[0];
  ++samples_;
  switch (metric_.kind) {
    case MetricKind::Top1: {
      DUET_CHECK(y.dtype() == DType::Float32 && y.numel() > 0, "metric top1: the first output is not float scores");
      const int64_t classes = y.dims().empty() ? 1 : y.dims().back();
      DUET_CHECK(y.numel() == classes, "metric top1: one sample gives ", y.numel() / classes,
                 " rows of scores; top1 reads one row per sample");
      const int64_t predicted = argmax(y.data<float>(), classes);
      int64_t label = -1;
      if (!metric_.labels.empty()) {
        const auto it = std::find(metric_.labels.begin(), metric_.labels.end(), trim(text));
        DUET_CHECK(it != metric_.labels.end(), "metric top1: label '", trim(text), "' is not among labels=...");
        label = it - metric_.labels.begin();
      } else {
        char* end = nullptr;
        const std::string t = trim(text);
        label = std::strtoll(t.c_str(), &end, 10);
        DUET_CHECK(!t.empty() && end && *end == '\0', "metric top1: label '", t,
                   "' is not a class index; name the classes with top1,labels=A,B,...");
      }
      DUET_CHECK(label >= 0 && label < classes, "metric top1: label ", label, " outside the model's ", classes, " classes");
      num_ += predicted == label;
      den_ += 1;
      break;
    }
    case MetricKind::Cer: {
      std::string decoded = ctc_greedy_decode(y, metric_.labels), reference = text;
      if (metric_.ignore_spaces)
        for (std::string* t : {&decoded, &reference}) t->erase(std::remove(t->begin(), t->end(), ' '), t->end());
      num_ += static_cast<double>(edit_distance(decoded, reference));
      den_ += static_cast<double>(std::max<int64_t>(1, code_points(reference)));
      break;
    }
    case MetricKind::Boxes: {
      const std::vector<Box> got = detect_boxes(y, metric_), want = parse_boxes(text);
      const int64_t m = match_boxes(got, want, metric_.iou);
      matched_ += m;
      predicted_ += static_cast<int64_t>(got.size());
      references_ += static_cast<int64_t>(want.size());
      num_ += 2.0 * static_cast<double>(m);
      den_ += static_cast<double>(got.size() + want.size());
      break;
    }
    case MetricKind::Agreement: {
      DUET_CHECK(reference.size() == outputs.size(), "metric agreement: ", outputs.size(), " outputs vs ",
                 reference.size(), " FP32 outputs");
      // Per output: argmax agreement over rows (classes on the last axis) or 1 - relative L2; the mean over outputs.
      double sum = 0;
      for (size_t o = 0; o < outputs.size(); ++o) {
        const Tensor& a = outputs[o];
        const Tensor& r = reference[o];
        DUET_CHECK(a.dims() == r.dims() && a.dtype() == DType::Float32 && r.dtype() == DType::Float32,
                   "metric agreement: output ", o, " differs in shape or type from FP32's");
        const int64_t cols = a.dims().empty() ? 1 : a.dims().back();
        if (cols > 1) {
          const int64_t rows = a.numel() / cols;
          int64_t same = 0;
          for (int64_t i = 0; i < rows; ++i)
            same += argmax(a.data<float>() + i * cols, cols) == argmax(r.data<float>() + i * cols, cols);
          sum += rows ? static_cast<double>(same) / rows : 1;
        } else {
          double diff = 0, norm = 0;
          for (int64_t i = 0; i < a.numel(); ++i) {
            const double d = a.data<float>()[i] - r.data<float>()[i];
            diff += d * d;
            norm += static_cast<double>(r.data<float>()[i]) * r.data<float>()[i];
          }
          sum += 1 - (norm > 0 ? std::sqrt(diff / norm) : std::sqrt(diff));
        }
      }
      num_ += sum / outputs.size();
      den_ += 1;
      break;
    }
  }
}

double Accumulator::value() const { return den_ > 0 ? num_ / den_ : 0; }
double Accumulator::score() const { return metric_.kind == MetricKind::Cer ? 1 - value() : value(); }

}  // namespace duet::eval
