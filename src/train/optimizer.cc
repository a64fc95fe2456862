#include "duet/train/optimizer.h"

#include <cmath>
#include <numbers>

#include "duet/core/error.h"
#include "duet/numerics/convert.h"
#include "duet/numerics/format.h"

namespace duet::train {

double scheduled_lr(const ScheduleConfig& s, double base, int64_t step) {
  if (s.warmup_steps > 0 && step < s.warmup_steps)
    return base * static_cast<double>(step + 1) / static_cast<double>(s.warmup_steps);
  const int64_t t = step - s.warmup_steps;
  if (s.kind == "constant") return base;
  if (s.kind == "step") return base * std::pow(s.gamma, static_cast<double>(t / std::max<int64_t>(1, s.step_size)));
  if (s.kind == "cosine") {
    const int64_t span = std::max<int64_t>(1, s.total_steps - s.warmup_steps);
    const double progress = std::min(1.0, static_cast<double>(t) / static_cast<double>(span));
    return s.min_lr + (base - s.min_lr) * 0.5 * (1 + std::cos(std::numbers::pi * progress));
  }
  fail("unknown learning-rate schedule '", s.kind, "' (constant, step, cosine)");
}

double clip_grad_norm(std::vector<Tensor>& grads, double max_norm) {
  double sq = 0;
  for (auto& g : grads)
    for (int64_t i = 0; i < g.numel(); ++i) sq += static_cast<double>(g.data<float>()[i]) * g.data<float>()[i];
  const double norm = std::sqrt(sq);
  const double coef = max_norm / (norm + 1e-6);
  if (coef < 1)
    for (auto& g : grads)
      for (int64_t i = 0; i < g.numel(); ++i) g.data<float>()[i] *= static_cast<float>(coef);
  return norm;
}

Optimizer::Optimizer(OptimizerConfig config) : config_(std::move(config)) {
  if (config_.kind != "sgd" && config_.kind != "adam" && config_.kind != "adamw")
    fail("unknown optimizer '", config_.kind, "' (sgd, adam, adamw)");
  if (!config_.weight_format.empty()) {
    const numerics::Format f = numerics::parse_format(config_.weight_format);
    if (!f.is_float() || !f.fp.fits_fp32()) fail("weight format ", f.name, " must be a float format");
  }
}

void Optimizer::restore_state(std::vector<Tensor> state, const std::vector<Tensor>& params) {
  const size_t per = config_.kind == "sgd" ? 1 : 2;
  if (!state.empty()) {
    if (state.size() != per * params.size())
      fail("optimizer state: ", state.size(), " tensors, but ", config_.kind, " keeps ", per, " per parameter (",
           per * params.size(), " for ", params.size(), " parameters)");
    for (size_t i = 0; i < state.size(); ++i) {
      const Tensor& p = params[i / per];
      if (state[i].dtype() != DType::Float32 || state[i].dims() != p.dims())
        fail("optimizer state ", i, " is ", state[i].describe(), ", its parameter is ", p.describe());
    }
  }
  state_ = std::move(state);
}

void Optimizer::step(std::vector<Tensor>& params, const std::vector<Tensor>& grads, double lr_d) {
  if (params.size() != grads.size()) fail("optimizer: ", params.size(), " parameters but ", grads.size(), " gradients");
  const bool adam = config_.kind != "sgd";
  const size_t per = adam ? 2 : 1;
  if (state_.empty())
    for (auto& p : params)
      for (size_t k = 0; k < per; ++k) state_.push_back(Tensor::zeros(DType::Float32, p.dims()));
  ++steps_;
  const float lr = static_cast<float>(lr_d), wd = static_cast<float>(config_.weight_decay);
  const float b1 = static_cast<float>(config_.beta1), b2 = static_cast<float>(config_.beta2);
  const float eps = static_cast<float>(config_.eps), mom = static_cast<float>(config_.momentum);
  const double bc1 = 1 - std::pow(config_.beta1, static_cast<double>(steps_));
  const double bc2 = 1 - std::pow(config_.beta2, static_cast<double>(steps_));
  const float step_size = static_cast<float>(lr_d / bc1), bc2_sqrt = static_cast<float>(std::sqrt(bc2));
  for (size_t i = 0; i < params.size(); ++i) {
    float* p = params[i].data<float>();
    const float* g = grads[i].data<float>();
    const int64_t n = params[i].numel();
    if (grads[i].numel() != n) fail("optimizer: gradient ", i, " has ", grads[i].numel(), " values, expected ", n);
    if (config_.kind == "adamw") {
      float* m = state_[2 * i].data<float>();
      float* v = state_[2 * i + 1].data<float>();
      const float decay = 1 - lr * wd;
      for (int64_t k = 0; k < n; ++k) {
        p[k] *= decay;
        m[k] = b1 * m[k] + (1 - b1) * g[k];
        v[k] = b2 * v[k] + (1 - b2) * g[k] * g[k];
        p[k] -= step_size * m[k] / (std::sqrt(v[k]) / bc2_sqrt + eps);
      }
    } else if (config_.kind == "adam") {
      float* m = state_[2 * i].data<float>();
      float* v = state_[2 * i + 1].data<float>();
      for (int64_t k = 0; k < n; ++k) {
        const float gk = g[k] + wd * p[k];
        m[k] = b1 * m[k] + (1 - b1) * gk;
        v[k] = b2 * v[k] + (1 - b2) * gk * gk;
        p[k] -= step_size * m[k] / (std::sqrt(v[k]) / bc2_sqrt + eps);
      }
    } else {
      float* buf = state_[i].data<float>();
      for (int64_t k = 0; k < n; ++k) {
        float gk = g[k] + wd * p[k];
        if (mom != 0) {
          buf[k] = steps_ == 1 ? gk : mom * buf[k] + gk;
          gk = config_.nesterov ? gk + mom * buf[k] : buf[k];
        }
        p[k] -= lr * gk;
      }
    }
    if (!config_.weight_format.empty()) {
      const numerics::Format f = numerics::parse_format(config_.weight_format);
      numerics::ConvertOptions o;
      o.rounding = config_.stochastic_rounding ? numerics::Rounding::Stochastic : numerics::Rounding::NearestEven;
      o.overflow = numerics::Overflow::Saturate;
      // Fresh random bits per step and parameter, reproducible from the seed.
      o.seed = config_.seed * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(steps_) * 1000003ull + i;
      std::vector<uint32_t> bits(static_cast<size_t>(n));
      numerics::encode_bulk(f.fp, p, bits.size(), bits.data(), o);
      numerics::decode_bulk(f.fp, bits.data(), bits.size(), p);
    }
  }
}

GradScaler::GradScaler(GradScalerConfig config) : config_(config), scale_(config.init_scale) {}

bool GradScaler::unscale_and_check(std::vector<Tensor>& grads) const {
  const float inv = static_cast<float>(1.0 / scale_);
  bool found_inf = false;
  for (auto& g : grads) {
    float* d = g.data<float>();
    for (int64_t i = 0; i < g.numel(); ++i) {
      d[i] *= inv;
      if (!std::isfinite(d[i])) found_inf = true;
    }
  }
  return found_inf;
}

void GradScaler::update(bool found_inf) {
  if (found_inf) {
    scale_ *= config_.backoff_factor;
    if (config_.min_scale) scale_ = std::max(scale_, *config_.min_scale);
    growth_tracker_ = 0;
    return;
  }
  if (++growth_tracker_ == config_.growth_interval) {
    const double grown = scale_ * config_.growth_factor;
    if (std::isfinite(grown)) scale_ = grown;  // PyTorch keeps the scale when growth overflows
    growth_tracker_ = 0;
  }
}

}  // namespace duet::train
