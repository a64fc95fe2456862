// Optimizers (PyTorch's update rules, in float32 on the master weights),
// learning-rate schedules, gradient clipping by global norm, and the dynamic
// loss scaler of mixed-precision training (PyTorch's GradScaler state machine).
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "duet/core/tensor.h"

namespace duet::train {

struct OptimizerConfig {
  std::string kind = "adamw";  // sgd | adam | adamw
  double lr = 1e-3;
  double weight_decay = 0.01;  // adamw: decoupled; sgd/adam: added to the gradient
  double momentum = 0.0;       // sgd
  bool nesterov = false;       // sgd
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;  // adam/adamw
  // Weights stored in a low-precision format after each update (e.g. "bf16"),
  // rounded to nearest even or stochastically ("sr"): training without FP32
  // master weights, as on Trainium / Graphcore. Empty: float32 master weights.
  std::string weight_format;
  bool stochastic_rounding = false;
  uint64_t seed = 0;
};

struct ScheduleConfig {
  std::string kind = "constant";  // constant | step | cosine
  int64_t warmup_steps = 0;       // linear warm-up from 0 to the base rate
  int64_t step_size = 1000;       // step: multiply by gamma every step_size steps
  double gamma = 0.1;
  int64_t total_steps = 0;        // cosine: the rate reaches min_lr at total_steps
  double min_lr = 0.0;
};

// The learning rate at `step` (0-based) for base rate `base`.
double scheduled_lr(const ScheduleConfig& s, double base, int64_t step);

// Scales the gradients so their global L2 norm is at most max_norm; returns
// the norm before clipping (PyTorch's clip_grad_norm_).
double clip_grad_norm(std::vector<Tensor>& grads, double max_norm);

class Optimizer {
 public:
  explicit Optimizer(OptimizerConfig config);
  // One update of every parameter (float32 tensors, updated in place) from
  // its gradient at learning rate lr.
  void step(std::vector<Tensor>& params, const std::vector<Tensor>& grads, double lr);
  int64_t steps() const { return steps_; }
  const OptimizerConfig& config() const { return config_; }
  // State tensors (momentum / first and second moments) for checkpoints.
  const std::vector<Tensor>& state() const { return state_; }
  // Restores the state saved from an optimizer of the same kind over
  // `params`: none (it had not stepped) or one tensor per moment per
  // parameter, each float32 of its parameter's shape; throws naming the first
  // that is not, leaving the state unchanged.
  void restore_state(std::vector<Tensor> state, const std::vector<Tensor>& params);
  void set_steps(int64_t s) { steps_ = s; }

 private:
  OptimizerConfig config_;
  std::vector<Tensor> state_;  // per parameter: [m, v] (adam) or [buf] (sgd)
  int64_t steps_ = 0;
};

// PyTorch GradScaler: scale starts at init_scale; a step whose unscaled
// gradients hold inf/NaN is skipped and multiplies the scale by
// backoff_factor; growth_interval finite steps in a row multiply it by
// growth_factor. min_scale (optional) is a floor PyTorch does not have.
struct GradScalerConfig {
  double init_scale = 65536.0;
  double growth_factor = 2.0;
  double backoff_factor = 0.5;
  int64_t growth_interval = 2000;
  std::optional<double> min_scale;
};

class GradScaler {
 public:
  explicit GradScaler(GradScalerConfig config = {});
  double scale() const { return scale_; }
  // Divides the gradients by the scale and reports whether any is inf/NaN.
  bool unscale_and_check(std::vector<Tensor>& grads) const;
  // After a step: found_inf says the step was skipped. Updates the scale.
  void update(bool found_inf);
  int64_t growth_tracker() const { return growth_tracker_; }
  void restore(double scale, int64_t tracker) { scale_ = scale, growth_tracker_ = tracker; }

 private:
  GradScalerConfig config_;
  double scale_;
  int64_t growth_tracker_ = 0;
};

}  // namespace duet::train
