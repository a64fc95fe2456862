// Fuzzes the model loader: any bytes must either load (then verify and pass
// the support check without crashing) or raise duet::Error — never crash or
// hang. Shape inference is not fuzzed yet: infer functions index their inputs
// by position, and check_supported judges arity by libonnx's schemas only up
// to the opset that library knows (17 on Debian 12), so later opsets could
// reach an infer function with too few inputs.
#include <cstddef>
#include <cstdint>

#include "duet/core/error.h"
#include "duet/onnx/onnx_io.h"
#include "duet/runtime/session.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    auto model = duet::onnx_io::parse_model(data, size, "/nonexistent-fuzz-dir");
    duet::ir::verify(*model->graph);
    duet::runtime::check_supported(*model);
  } catch (const duet::Error&) {
  } catch (const std::bad_alloc&) {
  }
  return 0;
}
