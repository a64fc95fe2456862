// Training as one library call: the epoch loop that `duet train` runs.
//
//   train::Dataset data = train::load_dataset("digits.csv.gz", {.sample_shape = {1, 8, 8}, .scale = 0.0625f});
//   auto [train_set, test_set] = train::split(data, 0.2, 0);
//   auto model = train::build_model("cnn", {1, 8, 8}, 10, 0);
//   train::TrainConfig cfg;  cfg.epochs = 1;
//   train::FitResult r = train::fit(*model, train_set, &test_set, cfg);
//   onnx_io::save_model(*r.trained, "digits.onnx");
//
// fit() builds the Trainer (autodiff, optimizer, autocast / QAT, loss
// scaling, MPI when cfg.comm is set), resumes from a checkpoint, runs epochs
// until cfg.epochs or cfg.max_steps, checkpoints after every epoch (rank 0),
// and returns every epoch's measured figures and the trained model.
#pragma once
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "duet/core/progress.h"
#include "duet/ir/graph.h"
#include "duet/train/data.h"
#include "duet/train/trainer.h"

namespace duet::train {

struct FitOptions {
  std::string resume;      // checkpoint folder to continue from (same model, data and options)
  std::string checkpoint;  // folder written after every epoch (rank 0)
  // Called once the Trainer is built (before the first epoch), after each
  // epoch, and for the progress of each epoch's steps (stage "epoch N", steps
  // done of the epoch's); any may be empty.
  std::function<void(const Trainer&)> on_start;
  std::function<void(int64_t epoch, const EpochResult&, const Trainer&)> on_epoch;
  Progress progress;
};

struct FitResult {
  std::vector<EpochResult> epochs;      // the epochs run by this call (measured)
  std::unique_ptr<ir::Model> trained;   // trained_model(): float32 weights, or the QDQ model with QAT
  std::map<std::string, double> profile;  // cfg.profile: ms per step by op type (measured)
  int64_t steps = 0;                    // optimizer steps in all (a resumed run counts the earlier ones)
  int autocast_nodes = 0;               // matrix ops in the low precision
  size_t parameter_tensors = 0;
  double loss_scale = 1;
  bool root = true;                     // rank 0 of an MPI run (or no MPI): the rank that writes
};

// Reshapes the features to [N, sample...] of the model's first input (when
// its non-batch dimensions are known); one error naming `what` when the
// per-sample sizes disagree.
void fit_to_input(Dataset& data, const ir::Model& model, const std::string& what);

FitResult fit(const ir::Model& model, const Dataset& train, const Dataset* test, const TrainConfig& config,
              const FitOptions& options = {});

}  // namespace duet::train
