// Detection ops: NonMaxSuppression.
#include <algorithm>
#include <numeric>

#include "duet/ops/kernel_util.h"
#include "families.h"

namespace duet::ops {

namespace {

// A box as its corner extents (min <= max on each axis).
struct Extent {
  double x_min, x_max, y_min, y_max;
  double area() const { return (x_max - x_min) * (y_max - y_min); }
};

// center_point_box 0: [y1, x1, y2, x2] with either corner order;
// center_point_box 1: [x_center, y_center, width, height].
Extent extent_of(const double* box, bool center_format) {
  if (center_format) {
    const double half_w = box[2] / 2, half_h = box[3] / 2;
    return {box[0] - half_w, box[0] + half_w, box[1] - half_h, box[1] + half_h};
  }
  return {std::min(box[1], box[3]), std::max(box[1], box[3]), std::min(box[0], box[2]), std::max(box[0], box[2])};
}

// True when the two boxes overlap with IoU strictly above the threshold.
bool suppresses(const Extent& a, const Extent& b, double iou_threshold) {
  const double ix_min = std::max(a.x_min, b.x_min), ix_max = std::min(a.x_max, b.x_max);
  if (ix_max <= ix_min) return false;
  const double iy_min = std::max(a.y_min, b.y_min), iy_max = std::min(a.y_max, b.y_max);
  if (iy_max <= iy_min) return false;
  const double inter = (ix_max - ix_min) * (iy_max - iy_min);
  const double area_a = a.area(), area_b = b.area();
  const double uni = area_a + area_b - inter;
  if (inter <= 0 || area_a <= 0 || area_b <= 0 || uni <= 0) return false;
  return inter / uni > iou_threshold;
}

std::vector<double> as_doubles(const Tensor& t) {
  std::vector<double> v(t.numel());
  for (int64_t i = 0; i < t.numel(); ++i) v[i] = t.get_double(i);
  return v;
}

void nms_kernel(KernelContext& ctx) {
  const ir::Node& node = ctx.node;
  const Tensor& boxes_t = ctx.input(0);
  const Tensor& scores_t = ctx.input(1);
  if (!dtype_is_float(boxes_t.dtype()) || !dtype_is_float(scores_t.dtype()))
    unsupported(node.label(), ": boxes and scores must be float tensors");
  if (boxes_t.rank() != 3 || boxes_t.dim(2) != 4)
    fail(node.label(), ": boxes must have shape [batches, boxes, 4], got ", dims_str(boxes_t.dims()));
  if (scores_t.rank() != 3 || scores_t.dim(0) != boxes_t.dim(0) || scores_t.dim(2) != boxes_t.dim(1))
    fail(node.label(), ": scores shape ", dims_str(scores_t.dims()), " does not match boxes ",
         dims_str(boxes_t.dims()));
  const int64_t center_point_box = node.attr_int("center_point_box", 0);
  if (center_point_box != 0 && center_point_box != 1)
    fail(node.label(), ": center_point_box must be 0 or 1");

  // Scalar inputs may be given as 0-d or 1-element tensors; empty means absent.
  auto scalar = [](const Tensor* t) { return t && t->numel() > 0 ? t : nullptr; };
  const Tensor* max_t = scalar(ctx.optional_input(2));
  const Tensor* iou_t = scalar(ctx.optional_input(3));
  const Tensor* score_t = scalar(ctx.optional_input(4));
  const int64_t max_per_class = max_t ? std::max<int64_t>(max_t->get_int(0), 0) : 0;
  const double iou_threshold = iou_t ? iou_t->get_double(0) : 0.0;
  if (iou_threshold < 0 || iou_threshold > 1) fail(node.label(), ": iou_threshold must be in [0, 1]");
  const bool filter_scores = score_t != nullptr;
  const double score_threshold = filter_scores ? score_t->get_double(0) : 0.0;

  const int64_t batches = boxes_t.dim(0), num_boxes = boxes_t.dim(1), classes = scores_t.dim(1);
  const std::vector<double> boxes = as_doubles(boxes_t);
  const std::vector<double> scores = as_doubles(scores_t);

  std::vector<int64_t> selected;  // triples (batch, class, box)
  std::vector<int64_t> order;
  std::vector<int64_t> kept;
  for (int64_t b = 0; b < batches; ++b) {
    std::vector<Extent> extents(num_boxes);
    for (int64_t i = 0; i < num_boxes; ++i) extents[i] = extent_of(&boxes[(b * num_boxes + i) * 4], center_point_box == 1);
    for (int64_t c = 0; c < classes && max_per_class > 0; ++c) {
      const double* class_scores = &scores[(b * classes + c) * num_boxes];
      order.clear();
      for (int64_t i = 0; i < num_boxes; ++i)
        if (!filter_scores || class_scores[i] > score_threshold) order.push_back(i);
      // Highest score first; equal scores keep the lower box index first.
      std::stable_sort(order.begin(), order.end(),
                       [&](int64_t l, int64_t r) { return class_scores[l] > class_scores[r]; });
      kept.clear();
      for (int64_t candidate : order) {
        if (static_cast<int64_t>(kept.size()) >= max_per_class) break;
        bool keep = true;
        for (int64_t k : kept)
          if (suppresses(extents[candidate], extents[k], iou_threshold)) { keep = false; break; }
        if (!keep) continue;
        kept.push_back(candidate);
        selected.insert(selected.end(), {b, c, candidate});
      }
    }
  }
  const int64_t count = static_cast<int64_t>(selected.size() / 3);
  Tensor& out = ctx.allocate_output(0, DType::Int64, {count, 3});
  std::copy(selected.begin(), selected.end(), out.data<int64_t>());
}

std::vector<ir::ValueType> nms_infer(InferContext& ctx) {
  return {tensor_type(DType::Int64, Shape({ctx.fresh_dim(), Dim(3)}))};
}

// Data-dependent: count the IoU tests of the worst case (every pair per class).
Cost nms_cost(const CostContext& ctx) {
  Cost c = default_cost(ctx);
  const auto& s = ctx.inputs[1].shape;
  if (s.fully_known() && s.rank() == 3) {
    const Dims d = s.concrete();
    c.flops = static_cast<double>(d[0] * d[1]) * static_cast<double>(d[2]) * static_cast<double>(d[2]) * 10.0;
  }
  return c;
}

}  // namespace

void register_detection(Registry& r) {
  r.add({.name = "NonMaxSuppression", .kernel = nms_kernel, .infer = nms_infer, .cost = nms_cost});
}

}  // namespace duet::ops
