// Fuzzes the model loader: any bytes must either load (then verify, pass the
// support check and go through shape inference and the cost model without
// crashing) or raise duet::Error — never crash or hang.
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
    duet::passes::infer_shapes(*model);
    duet::passes::node_costs(*model);
  } catch (const duet::Error&) {
  } catch (const std::bad_alloc&) {
  }
  return 0;
}
