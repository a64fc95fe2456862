#include "duet/passes/precision.h"

#include <optional>
#include <string>

#include "duet/numerics/precision.h"
#include "duet/ops/registry.h"

namespace duet::passes {

namespace {

// The format name and scaling of a value dequantized by DequantizeLinear, or
// nothing when the value is not a DequantizeLinear output.
struct Quantized {
  std::string format, scaling;
  int64_t block = 0;
};

std::optional<Quantized> dequantized(const ir::Value* v) {
  const ir::Node* dq = v ? v->producer : nullptr;
  if (!dq || dq->op_type != "DequantizeLinear" || !(dq->domain.empty() || dq->domain == "ai.onnx") || dq->inputs.empty() ||
      !dq->inputs[0])
    return std::nullopt;
  Quantized q;
  DType t = dq->inputs[0]->type.dtype;
  if (const ir::Node* ql = dq->inputs[0]->producer; t == DType::Undefined && ql && ql->op_type == "QuantizeLinear") {
    // Not inferred yet: QuantizeLinear's zero point (or output_dtype) decides, UINT8 by default.
    const ir::Value* zp = ql->inputs.size() > 2 ? ql->inputs[2] : nullptr;
    t = zp && zp->type.dtype != DType::Undefined ? zp->type.dtype
        : ql->has_attr("output_dtype")           ? static_cast<DType>(ql->attr_int("output_dtype", 2))
                                                 : DType::UInt8;
  }
  switch (t) {
    case DType::Int8: case DType::UInt8: q.format = "int8"; break;
    case DType::Int4: case DType::UInt4: q.format = "int4"; break;
    case DType::Float8E4M3FN: case DType::Float8E4M3FNUZ: q.format = "e4m3fn"; break;
    case DType::Float8E5M2: case DType::Float8E5M2FNUZ: q.format = "e5m2"; break;
    default: return std::nullopt;  // int16/int32 (biases) and unknown types say nothing of the products
  }
  const ir::Value* scale = dq->inputs.size() > 1 ? dq->inputs[1] : nullptr;
  const bool scalar = scale && scale->type.shape.rank_known &&
                      (scale->type.shape.rank() == 0 || (scale->type.shape.rank() == 1 && scale->type.shape.dims[0].known() &&
                                                         scale->type.shape.dims[0].value == 1));
  q.block = dq->attr_int("block_size", 0);
  q.scaling = q.block > 0 ? "block" : scalar ? "tensor" : "channel";
  return q;
}

// The float format a float32/16 value is computed in.
std::string float_format(const ir::Value* v) {
  if (!v) return "fp32";
  if (v->type.dtype == DType::Float16) return "fp16";
  if (v->type.dtype == DType::BFloat16) return "bf16";
  return "fp32";
}

}  // namespace

int annotate_qdq_precision(ir::Model& model) {
  int annotated = 0;
  for (auto& up : model.graph->nodes) {
    ir::Node& n = *up;
    const ops::MatrixTraits* traits = ops::matrix_traits(n);
    // A full annotation stands; a relative one (sparsity=2:4 from duet sparsify) is read over the QDQ precision.
    auto own = n.annotations.find(numerics::kPrecisionAnnotation);
    const bool relative = own != n.annotations.end() && numerics::is_relative_precision(own->second);
    if (!traits || (own != n.annotations.end() && !relative) || n.inputs.size() <= traits->weight_input) continue;
    const auto x = dequantized(n.inputs[0]), w = dequantized(n.inputs[traits->weight_input]);
    if (!x && !w) continue;
    const bool integer_x = x && x->format.rfind("int", 0) == 0, integer_w = w && w->format.rfind("int", 0) == 0;
    std::string text;
    if (x && w) {
      text = "x=" + x->format + "/tensor,w=" + w->format + "/" + w->scaling +
             (w->block > 0 ? ",block=" + std::to_string(w->block) : "") + ",acc=" + (integer_x ? "int32" : "fp32");
      if (integer_x != integer_w) continue;  // mixed integer/float operands: no device computes that product
    } else if (w && integer_w) {
      // Weight-only: the products are in the activations' float format.
      text = "x=" + float_format(n.inputs[0]) + ",w=" + w->format + "/" + w->scaling +
             (w->block > 0 ? ",block=" + std::to_string(w->block) : "") + ",acc=fp32";
    } else {
      continue;  // one side quantized to a float format, or only the activations: computed in float
    }
    n.annotations[numerics::kPrecisionAnnotation] =
        relative ? numerics::resolve_precision(own->second, numerics::parse_precision(text)).str()
                 : numerics::parse_precision(text).str();
    ++annotated;
  }
  return annotated;
}

}  // namespace duet::passes
