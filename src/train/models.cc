#include "duet/train/models.h"

#include <charconv>

#include "duet/core/error.h"
#include "duet/train/graph_builder.h"

namespace duet::train {

namespace {

std::pair<std::string, std::vector<int64_t>> parse_spec(const std::string& spec) {
  const size_t colon = spec.find(':');
  std::string kind = spec.substr(0, colon);
  std::vector<int64_t> sizes;
  if (colon != std::string::npos) {
    std::string rest = spec.substr(colon + 1);
    size_t p = 0;
    while (p <= rest.size()) {
      size_t q = rest.find(',', p);
      if (q == std::string::npos) q = rest.size();
      int64_t v = 0;
      auto [ptr, ec] = std::from_chars(rest.data() + p, rest.data() + q, v);
      if (ec != std::errc() || ptr != rest.data() + q || v <= 0)
        fail("model spec '", spec, "': '", rest.substr(p, q - p), "' is not a positive size");
      sizes.push_back(v);
      p = q + 1;
    }
  }
  return {kind, sizes};
}

}  // namespace

bool is_builder_spec(const std::string& s) {
  const std::string kind = s.substr(0, s.find(':'));
  return kind == "mlp" || kind == "cnn";
}

std::unique_ptr<ir::Model> build_model(const std::string& spec, const Dims& sample_shape, int64_t classes,
                                       uint32_t seed) {
  auto [kind, sizes] = parse_spec(spec);
  if (classes < 2) fail("model spec '", spec, "': need at least 2 classes, got ", classes);
  GraphBuilder b(17, seed);
  Dims in{-1};
  in.insert(in.end(), sample_shape.begin(), sample_shape.end());
  ir::Value* x = b.input("input", DType::Float32, in);
  ir::Value* logits = nullptr;
  if (kind == "mlp") {
    if (sizes.empty()) sizes = {128};
    int64_t width = numel(sample_shape);
    ir::Value* h = b.node("Flatten", {x}, {attr_int("axis", 1)});
    for (int64_t s : sizes) {
      h = b.node("Relu", {b.linear(h, width, s)});
      width = s;
    }
    logits = b.linear(h, width, classes);
  } else if (kind == "cnn") {
    if (sizes.empty()) sizes = {32, 64, 128};
    if (sizes.size() != 3) fail("model spec '", spec, "': cnn takes three sizes (C1,C2,F)");
    if (sample_shape.size() != 3) fail("model spec '", spec, "': cnn needs [C, H, W] samples, got ", dims_str(sample_shape));
    const int64_t c = sample_shape[0], h = sample_shape[1] - 4, w = sample_shape[2] - 4;
    if (h < 2 || w < 2) fail("model spec '", spec, "': samples ", dims_str(sample_shape), " are too small for two 3x3 convs and a 2x2 pool");
    ir::Value* y = b.node("Relu", {b.conv2d(x, c, sizes[0], 3)});
    y = b.node("Relu", {b.conv2d(y, sizes[0], sizes[1], 3)});
    y = b.node("Flatten", {b.max_pool2d(y, 2)}, {attr_int("axis", 1)});
    const int64_t flat = sizes[1] * (h / 2) * (w / 2);
    y = b.node("Relu", {b.linear(y, flat, sizes[2])});
    logits = b.linear(y, sizes[2], classes);
  } else {
    fail("unknown model builder '", kind, "' (mlp, cnn)");
  }
  b.output(logits, "logits");
  auto m = b.finish();
  m->doc_string = "duet train builder " + spec;
  return m;
}

}  // namespace duet::train
