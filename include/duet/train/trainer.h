// Trainer: trains a classifier given as an ONNX-style forward graph (one float
// input -> logits [N, classes]) on the graph it runs. It builds one training
// graph (trainable initializers become inputs, SoftmaxCrossEntropyLoss on the
// logits, optional autocast, the backward pass from train::add_gradients with
// the loss scale as the seed) and one evaluation graph, runs them in
// runtime::Sessions, and updates float32 master weights with an Optimizer
// (loss scaling with a GradScaler for low-precision formats).
#pragma once
#include <cmath>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "duet/ir/graph.h"
#include "duet/runtime/session.h"
#include "duet/train/data.h"
#include "duet/train/distributed.h"
#include "duet/train/optimizer.h"
#include "duet/train/qat.h"

namespace duet::train {

struct TrainConfig {
  int64_t epochs = 15;
  int64_t batch = 64;
  OptimizerConfig optimizer;
  ScheduleConfig schedule;
  double clip_norm = 0;          // > 0: clip the global gradient norm
  // Mixed precision: "off", or a numerics::Precision text for the matrix ops
  // (bf16, fp16, tf32, fp8 = E4M3 per-tensor scaled, below; x=e4m3fn/none
  // unscaled), or a bare float format name (e4m3fn, e5m2...; see train::autocast).
  std::string amp = "off";
  // amp "fp8": E4M3 forward / E5M2 gradients with per-tensor delayed scaling
  // (Transformer Engine): scale = fp8_max / max(amax over the last
  // fp8_history steps) / 2^fp8_margin, 1 until an amax is known.
  int64_t fp8_history = 16;
  int fp8_margin = 0;
  // TF32 for the matrix ops' inputs while everything else stays float32
  // (PyTorch's allow_tf32): used when amp is off.
  bool tf32 = false;
  // Dynamic loss scaling: on by default for fp16 (narrow range), off otherwise.
  std::optional<bool> loss_scaling;
  GradScalerConfig scaler;
  uint64_t seed = 0;             // shuffling (per epoch: stream = epoch)
  int threads = 2;
  std::string backend = "reference";
  std::vector<std::string> frozen;  // initializers kept constant
  // BatchNormalization as in inference (running statistics, not updated; its
  // scale and shift still train): how pretrained models are fine-tuned on small batches.
  bool freeze_batchnorm = false;
  // Quantization-aware training: "off", "int8" (INT8 weights and UINT8
  // activations) or "int4" (INT4 weights; activations only with qat_activations).
  std::string qat = "off";
  QatOptions qat_options;        // per_channel, lsq; bits and activations follow `qat`
  std::optional<bool> qat_activations;
  bool profile = false;          // time every node of the training graph (Trainer::profile)
  int64_t max_steps = 0;         // > 0: stop an epoch once this many steps were taken in all
  // "2:4": the matrix ops' weights pruned 2:4 at the start (passes::sparsify) and
  // kept so through training (each update masked); the exported model records it.
  std::string sparsity = "dense";
  // Data parallel: each rank trains on its slice of every global batch and the
  // gradients are summed across ranks (train/distributed.h); null: one process.
  Communicator* comm = nullptr;
  bool bf16_allreduce = false;   // gradients travel as BF16
  // "cross_entropy" (labels [N]) or "ctc" (label sequences [N, S] padded with
  // -1: CtcLoss, blank 0, mean over nll / target length). A model whose output
  // is a Softmax over its last axis is trained on the Softmax's input either way.
  std::string loss = "cross_entropy";
  // Per-sample input dims to bind where the model leaves them open (a
  // recognizer's [?, 3, 48, ?]): gradients need them known. Empty: as the model says.
  Dims sample_shape;
};

struct Evaluation {
  double loss = 0;
  double accuracy = 0;  // fraction of argmax == label; ctc: of lines decoded exactly
  double cer = std::nan("");  // ctc: character error rate of the greedy decode (label edits / label length)
  int64_t samples = 0;
};

struct EpochResult {
  int64_t epoch = 0;
  double train_loss = 0;      // mean over the epoch's steps that were taken
  double last_loss = 0;       // the loss of the epoch's last step
  double train_accuracy = 0;  // on the batches as trained
  Evaluation test;
  int64_t steps = 0, skipped_steps = 0;
  double seconds = 0;         // measured wall time of the epoch's training steps
  double ms_per_step = 0;     // measured, median over the epoch's steps
  double loss_scale = 1;
  double lr = 0;
};

class Trainer {
 public:
  Trainer(const ir::Model& forward, TrainConfig config);
  ~Trainer();

  // One optimizer step on a global batch (data parallel: this rank's slice of
  // it); returns the (unscaled) mean loss over the global batch, or NaN when
  // the loss scaler skipped the step.
  double step(const Tensor& features, const Tensor& labels);
  EpochResult train_epoch(const Dataset& train, const Dataset* test,
                          const std::function<void(int64_t done, int64_t total)>& progress = {});
  Evaluation evaluate(const Dataset& data);
  // The forward graph with the current weights as initializers (float32);
  // with QAT, the QDQ model (QuantizeLinear -> DequantizeLinear, final scales).
  std::unique_ptr<ir::Model> trained_model() const;

  const std::vector<std::string>& parameter_names() const;
  std::vector<Tensor>& parameters();
  int64_t steps() const;
  int64_t epoch() const;
  double loss_scale() const;
  int autocast_nodes() const;  // matrix ops in the low precision
  int64_t classes() const;     // the scores' last dimension (classes), 0 where the model leaves it open
  const ir::Model& training_graph() const;
  // With config.profile: measured milliseconds per training step by op type
  // ("domain:op" for com.duet ops), averaged over the steps run so far.
  std::map<std::string, double> profile() const;

  // A checkpoint folder: weights, optimizer state, scaler, step and epoch;
  // resuming from it continues bit for bit.
  void save_checkpoint(const std::string& dir) const;
  void load_checkpoint(const std::string& dir);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace duet::train
