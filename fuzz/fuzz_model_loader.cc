// Fuzzes the model loader: any bytes must either load (and then verify and
// check support without crashing) or raise duet::Error — never crash or hang.
#include <cstddef>
#include <cstdint>

#include "duet/core/error.h"
#include "duet/onnx/onnx_io.h"
#include "duet/passes/shape_inference.h"
#include "duet/runtime/session.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    auto model = duet::onnx_io::parse_model(data, size, "/nonexistent-fuzz-dir");
    duet::ir::verify(*model->graph);
    duet::runtime::check_supported(*model);
    duet::passes::ShapeInferenceOptions options;
    options.fold_limit_elements = 4096;
    duet::passes::infer_shapes(*model, options);
  } catch (const duet::Error&) {
  } catch (const std::bad_alloc&) {
  }
  return 0;
}
