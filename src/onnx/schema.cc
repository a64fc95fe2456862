// Node arity from ONNX's own operator schemas (libonnx's registry): ONNX
// defines how many inputs and outputs each op version takes, so Duet does
// not restate it per op. A node with more inputs than its op reads would
// otherwise run with the extras ignored — a silent wrong answer.
#include <onnx/defs/schema.h>

#include <limits>
#include <sstream>

#include "duet/onnx/onnx_io.h"

namespace duet::onnx_io {

namespace {
std::string count_text(int lo, int hi, const char* what) {
  std::ostringstream s;
  const bool at_least = hi == std::numeric_limits<int>::max();
  if (lo == hi) s << lo;
  else if (at_least) s << "at least " << lo;
  else s << lo << " to " << hi;
  s << " " << what << ((lo == hi || at_least) && lo == 1 ? "" : "s");
  return s.str();
}
}  // namespace

std::string arity_problem(const std::string& domain, const std::string& op_type, int64_t opset, size_t inputs,
                          size_t outputs) {
  const std::string d = domain == "ai.onnx" ? "" : domain;
  if (d != "" && d != "ai.onnx.ml") return "";
  const auto& known = onnx::OpSchemaRegistry::DomainToVersionRange::Instance().Map();
  auto range = known.find(d);
  if (range == known.end() || opset < 1) return "";
  // An opset newer than this libonnx knows (17 on Debian 12): judged by the
  // newest schema it has, lower bounds only — later versions add optional
  // inputs, not required ones — so no op reaches its kernel or shape
  // inference with fewer inputs than it needs. The one op whose later version
  // (18) made its only input optional is exempt.
  const bool newer = opset > range->second.second;
  if (newer && op_type == "OptionalHasElement") return "";
  const onnx::OpSchema* schema =
      onnx::OpSchemaRegistry::Schema(op_type, static_cast<int>(newer ? range->second.second : opset), d);
  if (!schema) {
    // An op the model's opset predates (Compress under opset 1) has no definition to run by.
    for (int v = static_cast<int>(opset) + 1; v <= range->second.second; ++v)
      if (onnx::OpSchemaRegistry::Schema(op_type, v, d))
        return op_type + " is not part of opset " + std::to_string(opset) + " (it first appears in opset " +
               std::to_string(v) + ")";
    return "";
  }
  const int in = static_cast<int>(inputs), out = static_cast<int>(outputs);
  std::ostringstream s;
  if (newer) {
    if (in < schema->min_input())
      s << "has " << inputs << " input" << (inputs == 1 ? "" : "s") << ", but " << op_type << " takes at least "
        << schema->min_input();
    else if (out < schema->min_output())
      s << "has " << outputs << " output" << (outputs == 1 ? "" : "s") << ", but " << op_type << " gives at least "
        << schema->min_output();
    return s.str();
  }
  if (in < schema->min_input() || in > schema->max_input())
    s << "has " << inputs << " input" << (inputs == 1 ? "" : "s") << ", but " << op_type << "-" << schema->since_version()
      << " takes " << count_text(schema->min_input(), schema->max_input(), "input");
  else if (out < schema->min_output() || out > schema->max_output())
    s << "has " << outputs << " output" << (outputs == 1 ? "" : "s") << ", but " << op_type << "-"
      << schema->since_version() << " gives " << count_text(schema->min_output(), schema->max_output(), "output");
  return s.str();
}

}  // namespace duet::onnx_io
