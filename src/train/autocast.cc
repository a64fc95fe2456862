#include "duet/train/autocast.h"

#include <unordered_map>

#include "duet/numerics/format.h"
#include "duet/numerics/precision.h"
#include "duet/train/graph_builder.h"
#include "duet/ir/edit.h"

namespace duet::train {

namespace {
namespace gu = ir::edit;

bool is_float32(const ir::Value* v) { return v && v->type.dtype == DType::Float32; }
}  // namespace

AutocastReport autocast(ir::Model& model, const AutocastOptions& options) {
  const numerics::Format format = numerics::parse_format(options.format);  // a bad spec fails here, naming it
  if (options.scaled) numerics::parse_format(options.grad_format);
  // What the annotated nodes compute, in the one precision vocabulary: both
  // operands rounded to the format (per-tensor scales under delayed scaling),
  // FP32 accumulation, outputs rounded too unless scaled.
  const std::string scaling = options.scaled ? "/tensor" : "/none";
  const std::string annotation =
      numerics::parse_precision("x=" + format.name + scaling + ",w=" + format.name + scaling + ",acc=fp32,out=" +
                                (options.round_outputs && !options.scaled ? format.name : std::string("fp32")))
          .str();
  ir::Graph& g = *model.graph;
  if (model.opset("com.duet") == 0) model.opset_imports.push_back({"com.duet", 1});
  AutocastReport report;
  std::unordered_map<const ir::Value*, ir::Value*> rounded;  // one rounding per value
  std::vector<ir::Node*> targets;
  for (auto& n : g.nodes)
    if ((n->domain.empty() || n->domain == "ai.onnx") && options.ops.count(n->op_type)) targets.push_back(n.get());
  auto round_node = [&](ir::Value* in, ir::Value* out, const std::string& name) {
    ir::Node* r;
    if (options.scaled) {
      ir::Value* scale = g.value(kFp8ScalePrefix + in->name);
      scale->type.dtype = DType::Float32;
      scale->type.shape = Shape(std::vector<Dim>{});
      g.inputs.push_back(scale);
      ir::Value* amax = g.value(kFp8AmaxPrefix + in->name);
      amax->type = scale->type;
      g.outputs.push_back(amax);
      r = g.add_node("ScaledRoundToFormat", {in, scale}, {out, amax}, name, "com.duet");
      r->attributes.push_back(attr_string("grad_format", options.grad_format));
    } else {
      r = g.add_node("RoundToFormat", {in}, {out}, name, "com.duet");
    }
    r->attributes.push_back(attr_string("format", options.format));
    out->type = in->type;
    ++report.roundings;
    return r;
  };
  for (ir::Node* n : targets) {
    bool any = false;
    for (auto& in : n->inputs) {
      if (!is_float32(in)) continue;
      auto it = rounded.find(in);
      if (it == rounded.end()) {
        ir::Value* r = g.value(gu::fresh_name(g, in->name + "." + options.format));
        round_node(in, r, r->name);
        it = rounded.emplace(in, r).first;
      }
      in = it->second;
      any = true;
    }
    if (options.round_outputs && !options.scaled && !n->outputs.empty() && is_float32(n->outputs[0])) {
      ir::Value* out = n->outputs[0];
      ir::Value* raw = g.value(gu::fresh_name(g, out->name + ".raw"));
      raw->type = out->type;
      n->outputs[0] = raw;
      raw->producer = n;
      raw->producer_output = 0;
      round_node(raw, out, gu::fresh_name(g, out->name + "." + options.format));
      any = true;
    }
    if (any) {
      n->annotations[numerics::kPrecisionAnnotation] = annotation;
      ++report.nodes;
    }
  }
  g.topological_sort();
  return report;
}

}  // namespace duet::train
