#include "duet/io/preprocess.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <set>
#include <sstream>
#include <vector>

#include "duet/core/error.h"

namespace duet::io {

namespace {

// ---- resize ----

constexpr int kWeightBits = 22;  // PIL's fixed-point precision for 8-bit images

// For each output index along one axis: the first input index it reads, how
// many it reads, and their fixed-point weights (taps_per_output apart).
struct AxisTaps {
  int64_t taps_per_output = 0;
  std::vector<int64_t> first, count;
  std::vector<int32_t> weights;
};

AxisTaps bilinear_taps(int64_t in_size, int64_t out_size) {
  const double scale = static_cast<double>(in_size) / static_cast<double>(out_size);
  // Shrinking widens the triangle so every input pixel contributes (antialiasing).
  const double filter_scale = std::max(scale, 1.0);
  const double support = filter_scale;  // the triangle's radius is 1 input pixel, scaled
  AxisTaps taps;
  taps.taps_per_output = static_cast<int64_t>(std::ceil(support)) * 2 + 1;
  taps.first.resize(out_size);
  taps.count.resize(out_size);
  taps.weights.assign(out_size * taps.taps_per_output, 0);
  std::vector<double> w(taps.taps_per_output);
  for (int64_t o = 0; o < out_size; ++o) {
    const double center = (static_cast<double>(o) + 0.5) * scale;
    // Truncation toward zero, then clamping, as PIL rounds the window ends.
    const int64_t lo = std::max<int64_t>(0, static_cast<int64_t>(center - support + 0.5));
    const int64_t hi = std::min<int64_t>(in_size, static_cast<int64_t>(center + support + 0.5));
    const int64_t n = std::min(hi - lo, taps.taps_per_output);
    double total = 0.0;
    for (int64_t k = 0; k < n; ++k) {
      const double x = std::abs((static_cast<double>(lo + k) - center + 0.5) / filter_scale);
      w[k] = x < 1.0 ? 1.0 - x : 0.0;
      total += w[k];
    }
    for (int64_t k = 0; k < n; ++k) {
      const double normalized = total != 0.0 ? w[k] / total : w[k];
      taps.weights[o * taps.taps_per_output + k] = static_cast<int32_t>(0.5 + normalized * (1 << kWeightBits));
    }
    taps.first[o] = lo;
    taps.count[o] = n;
  }
  return taps;
}

uint8_t round_fixed_point(int64_t acc) {
  return static_cast<uint8_t>(std::clamp<int64_t>(acc >> kWeightBits, 0, 255));
}

// One pass along an axis of a [outer, in_size, inner] uint8 array.
std::vector<uint8_t> resample_axis(const uint8_t* in, int64_t outer, int64_t in_size, int64_t inner, int64_t out_size) {
  const AxisTaps taps = bilinear_taps(in_size, out_size);
  std::vector<uint8_t> out(static_cast<size_t>(outer * out_size * inner));
  for (int64_t a = 0; a < outer; ++a) {
    const uint8_t* src = in + a * in_size * inner;
    uint8_t* dst = out.data() + a * out_size * inner;
    for (int64_t o = 0; o < out_size; ++o) {
      const int32_t* w = &taps.weights[o * taps.taps_per_output];
      for (int64_t i = 0; i < inner; ++i) {
        int64_t acc = int64_t{1} << (kWeightBits - 1);  // rounds to nearest on the shift
        for (int64_t k = 0; k < taps.count[o]; ++k) acc += int64_t{src[(taps.first[o] + k) * inner + i]} * w[k];
        dst[o * inner + i] = round_fixed_point(acc);
      }
    }
  }
  return out;
}

// ---- spec parsing ----

std::string trim(const std::string& s) {
  const auto b = s.find_first_not_of(" \t");
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(" \t") - b + 1);
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> parts;
  std::string cur;
  std::istringstream in(s);
  while (std::getline(in, cur, sep)) parts.push_back(cur);
  if (!s.empty() && s.back() == sep) parts.push_back("");
  return parts;
}

[[noreturn]] void bad_value(const std::string& key, const std::string& value, const std::string& expected) {
  fail("preprocess spec: bad value for '", key, "': '", value, "' (expected ", expected, ")");
}

bool parse_double(const std::string& text, double* out) {
  if (text.empty()) return false;
  char* end = nullptr;
  *out = std::strtod(text.c_str(), &end);
  return end == text.c_str() + text.size() && std::isfinite(*out);
}

// "0.5", "1e-3" or "1/255".
double parse_number(const std::string& key, const std::string& text) {
  double value = 0.0;
  const auto slash = text.find('/');
  if (slash == std::string::npos) {
    if (parse_double(text, &value)) return value;
  } else {
    double num = 0.0, den = 0.0;
    if (parse_double(text.substr(0, slash), &num) && parse_double(text.substr(slash + 1), &den) && den != 0.0)
      return num / den;
  }
  bad_value(key, text, "a number such as 0.5 or 1/255");
}

std::array<double, 3> parse_triple(const std::string& key, const std::string& text) {
  const auto parts = split(text, ':');
  if (parts.size() == 1) {
    const double v = parse_number(key, parts[0]);
    return {v, v, v};
  }
  if (parts.size() != 3) bad_value(key, text, "three numbers A:B:C, one per channel, or one number for all");
  return {parse_number(key, parts[0]), parse_number(key, parts[1]), parse_number(key, parts[2])};
}

int64_t parse_size(const std::string& key, const std::string& all, const std::string& text) {
  if (text.empty() || text.size() > 9 || text.find_first_not_of("0123456789") != std::string::npos)
    bad_value(key, all, "HxW with positive integers, e.g. 48x320, or none");
  const int64_t v = std::stoll(text);
  if (v <= 0) bad_value(key, all, "HxW with positive integers, e.g. 48x320, or none");
  return v;
}

// Shortest text that parses back to the same double.
std::string number_str(double v) {
  char buf[32];
  const auto r = std::to_chars(buf, buf + sizeof(buf), v);
  return std::string(buf, r.ptr);
}

// 1/255 reads better than 0.00392156862745098 and parses back to the same double.
std::string scale_str(double v) {
  if (v > 0.0 && v < 1.0) {
    const double inverse = std::round(1.0 / v);
    if (inverse < 1e9 && 1.0 / inverse == v) return "1/" + std::to_string(static_cast<int64_t>(inverse));
  }
  return number_str(v);
}

}  // namespace

Tensor resize_bilinear(const Tensor& image, int64_t height, int64_t width) {
  DUET_CHECK(image.dtype() == DType::UInt8 && image.rank() == 3, "resize_bilinear takes a uint8 [H, W, C] image, got ",
             image.describe());
  DUET_CHECK(height > 0 && width > 0, "resize_bilinear: bad target size ", height, "x", width);
  const int64_t h = image.dim(0), w = image.dim(1), c = image.dim(2);
  DUET_CHECK(h > 0 && w > 0, "resize_bilinear: empty image ", image.describe());
  std::vector<uint8_t> pixels(image.data<uint8_t>(), image.data<uint8_t>() + image.numel());
  // Width first, then height, as PIL does: the order changes the rounding.
  if (width != w) pixels = resample_axis(pixels.data(), h, w, c, width);
  if (height != h) pixels = resample_axis(pixels.data(), 1, h, width * c, height);
  Tensor out(DType::UInt8, {height, width, c});
  std::copy(pixels.begin(), pixels.end(), out.data<uint8_t>());
  return out;
}

Preprocess Preprocess::parse(const std::string& spec) {
  Preprocess p;
  std::set<std::string> seen;
  bool pad_right = false;
  for (const std::string& raw_item : split(spec, ',')) {
    const std::string item = trim(raw_item);
    if (item.empty()) continue;
    const auto eq = item.find('=');
    const std::string key = trim(item.substr(0, eq));
    const std::string value = eq == std::string::npos ? "" : trim(item.substr(eq + 1));
    const bool flag = key == "keep_ratio";
    if (flag && eq != std::string::npos) fail("preprocess spec: 'keep_ratio' takes no value, got '", item, "'");
    if (!flag && eq == std::string::npos) {
      static const std::set<std::string> known = {"resize", "pad", "scale", "mean", "std", "order", "layout"};
      if (known.count(key)) fail("preprocess spec: '", key, "' needs a value (", key, "=...)");
    }
    DUET_CHECK(seen.insert(key).second, "preprocess spec: '", key, "' is given twice");
    if (key == "resize") {
      if (value == "none") {
        p.resize = Resize::None;
        continue;
      }
      const auto x = value.find('x');
      if (x == std::string::npos) bad_value(key, value, "HxW with positive integers, e.g. 48x320, or none");
      p.resize = Resize::Fixed;
      p.height = parse_size(key, value, value.substr(0, x));
      p.width = parse_size(key, value, value.substr(x + 1));
    } else if (key == "keep_ratio") {
      p.keep_ratio = true;
    } else if (key == "pad") {
      if (value != "right") bad_value(key, value, "right: keep_ratio pads on the right with zeros");
      pad_right = true;
    } else if (key == "scale") {
      p.scale = parse_number(key, value);
    } else if (key == "mean") {
      p.mean = parse_triple(key, value);
    } else if (key == "std") {
      p.std = parse_triple(key, value);
      for (double s : p.std) if (s == 0.0) bad_value(key, value, "non-zero divisors");
    } else if (key == "order") {
      if (value == "rgb") p.order = Order::RGB;
      else if (value == "bgr") p.order = Order::BGR;
      else bad_value(key, value, "rgb or bgr");
    } else if (key == "layout") {
      if (value == "nchw") p.layout = Layout::NCHW;
      else if (value == "nhwc") p.layout = Layout::NHWC;
      else bad_value(key, value, "nchw or nhwc");
    } else {
      fail("preprocess spec: unknown key '", key, "' (keys: resize, keep_ratio, pad, scale, mean, std, order, layout)");
    }
  }
  DUET_CHECK(!pad_right || p.keep_ratio, "preprocess spec: 'pad=right' needs 'keep_ratio' (only a kept ratio leaves room to pad)");
  DUET_CHECK(!p.keep_ratio || p.resize != Resize::None, "preprocess spec: 'keep_ratio' needs a target size, not 'resize=none'");
  return p;
}

std::string Preprocess::str() const {
  std::ostringstream os;
  if (resize == Resize::Fixed) os << "resize=" << height << "x" << width << ",";
  if (resize == Resize::None) os << "resize=none,";
  if (keep_ratio) os << "keep_ratio,pad=right,";
  os << "scale=" << scale_str(scale);
  os << ",mean=" << number_str(mean[0]) << ":" << number_str(mean[1]) << ":" << number_str(mean[2]);
  os << ",std=" << number_str(std[0]) << ":" << number_str(std[1]) << ":" << number_str(std[2]);
  os << ",order=" << (order == Order::RGB ? "rgb" : "bgr");
  os << ",layout=" << (layout == Layout::NCHW ? "nchw" : "nhwc");
  return os.str();
}

std::optional<std::pair<int64_t, int64_t>> Preprocess::output_size(const Shape& input_shape) const {
  const char* layout_name = layout == Layout::NCHW ? "nchw" : "nhwc";
  const int h_axis = layout == Layout::NCHW ? 2 : 1, w_axis = h_axis + 1, c_axis = layout == Layout::NCHW ? 1 : 3;
  Dim model_h, model_w;
  if (input_shape.rank_known) {
    DUET_CHECK(input_shape.rank() == 4, "preprocess: an image becomes a rank-4 ", layout_name, " tensor; the input is ",
               input_shape.str());
    const Dim& c = input_shape.dims[c_axis];
    DUET_CHECK(!c.known() || c.value == 3, "preprocess: the input ", input_shape.str(), " has ", c.value,
               " channels in layout ", layout_name, "; images give 3 (set layout=nchw or layout=nhwc)");
    model_h = input_shape.dims[h_axis];
    model_w = input_shape.dims[w_axis];
  }
  if (resize == Resize::Fixed) return std::make_pair(height, width);
  if (resize == Resize::ToModelInput && model_h.known() && model_w.known()) return std::make_pair(model_h.value, model_w.value);
  DUET_CHECK(!keep_ratio, "preprocess: keep_ratio needs a target size: give resize=HxW (the input is ", input_shape.str(), ")");
  return std::nullopt;
}

Tensor Preprocess::apply(const Tensor& image, const Shape& input_shape) const {
  DUET_CHECK(image.dtype() == DType::UInt8 && image.rank() == 3 && image.dim(2) == 3,
             "preprocess: expected a uint8 [H, W, 3] RGB image, got ", image.describe());
  const auto size = output_size(input_shape);
  const int64_t out_h = size ? size->first : image.dim(0), out_w = size ? size->second : image.dim(1);
  // keep_ratio: the height is matched and the width follows the aspect ratio,
  // up to the target width; the columns beyond stay zero.
  int64_t content_w = out_w;
  if (keep_ratio) {
    const double ratio_w = std::ceil(static_cast<double>(out_h) * static_cast<double>(image.dim(1)) / static_cast<double>(image.dim(0)));
    content_w = std::clamp<int64_t>(static_cast<int64_t>(ratio_w), 1, out_w);
  }
  const Tensor resized = (out_h == image.dim(0) && content_w == image.dim(1)) ? image : resize_bilinear(image, out_h, content_w);

  // One lookup table per output channel: 256 values computed in double, rounded once.
  float table[3][256];
  for (int c = 0; c < 3; ++c) {
    for (int v = 0; v < 256; ++v) table[c][v] = static_cast<float>((v * scale - mean[c]) / std[c]);
  }
  const Dims dims = layout == Layout::NCHW ? Dims{1, 3, out_h, out_w} : Dims{1, out_h, out_w, 3};
  Tensor out = Tensor::zeros(DType::Float32, dims);
  float* o = out.data<float>();
  const uint8_t* src = resized.data<uint8_t>();
  for (int c = 0; c < 3; ++c) {
    const int from = order == Order::RGB ? c : 2 - c;
    for (int64_t y = 0; y < out_h; ++y) {
      for (int64_t x = 0; x < content_w; ++x) {
        const float v = table[c][src[(y * content_w + x) * 3 + from]];
        if (layout == Layout::NCHW) o[(c * out_h + y) * out_w + x] = v;
        else o[(y * out_w + x) * 3 + c] = v;
      }
    }
  }
  return out;
}

}  // namespace duet::io
