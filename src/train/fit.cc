#include "duet/train/fit.h"

#include <algorithm>
#include <cmath>

#include "duet/core/error.h"

namespace duet::train {

void fit_to_input(Dataset& d, const ir::Model& model, const std::string& what) {
  const ir::Value* in = model.graph->inputs.at(0);
  if (!in->type.shape.rank_known || in->type.shape.rank() < 2) return;
  Dims sample;
  for (size_t i = 1; i < in->type.shape.rank(); ++i) {
    const Dim& dim = in->type.shape.dims[i];
    if (!dim.known()) return;
    sample.push_back(dim.value);
  }
  const int64_t per = d.size() ? d.features.numel() / d.size() : 0;
  if (per != numel(sample))
    fail(what, ": samples have ", per, " values but the model input '", in->name, "' takes ", dims_str(sample), " (",
         numel(sample), ")");
  Dims dims{d.size()};
  dims.insert(dims.end(), sample.begin(), sample.end());
  d.features = d.features.reshaped(dims);
}

FitResult fit(const ir::Model& model, const Dataset& train, const Dataset* test, const TrainConfig& cfg,
              const FitOptions& options) {
  // A classifier needs two classes to learn anything (one trained to exit 0 with nothing learnt).
  DUET_CHECK(train.size() > 0, "the training data holds no samples");
  if (!train.sequences()) {
    const int64_t* y = train.labels.data<int64_t>();
    const auto [lo, hi] = std::minmax_element(y, y + train.size());
    DUET_CHECK(*lo != *hi, "the training data holds one class only (label ", *lo, "): a classifier has nothing to learn");
  }
  DUET_CHECK(!test || !test->size() || test->sequences() == train.sequences(),
             "the test data's labels are ", test && test->sequences() ? "sequences" : "classes", " but the training data's are not");
  TrainConfig config = cfg;
  if (train.sequences()) config.loss = "ctc";  // label sequences: a CTC recognizer
  if (config.sample_shape.empty()) config.sample_shape = Dims(train.features.dims().begin() + 1, train.features.dims().end());
  Trainer trainer(model, config);
  // Labels the model cannot score: another keys file, or class indices beyond the model's classes.
  if (const int64_t classes = trainer.classes(); classes > 0)
    for (const Dataset* d : {&train, test && test->size() ? test : nullptr})
      if (d && d->classes() > classes)
        fail(d == &train ? "the training" : "the test", " data's labels reach ", d->classes() - 1, " but the model scores ",
             classes, " classes", train.sequences() ? " (blank, the keys, space): the keys file is not the model's" : "");
  if (!options.resume.empty()) trainer.load_checkpoint(options.resume);
  FitResult r;
  r.root = !cfg.comm || cfg.comm->rank() == 0;
  if (options.on_start) options.on_start(trainer);
  const Dataset* held_out = test && test->size() ? test : nullptr;
  for (int64_t e = trainer.epoch(); e < cfg.epochs && !(cfg.max_steps > 0 && trainer.steps() >= cfg.max_steps); ++e) {
    std::function<void(int64_t, int64_t)> progress;
    if (options.progress)
      progress = [&options, stage = "epoch " + std::to_string(e + 1)](int64_t done, int64_t total) {
        options.progress(stage, static_cast<size_t>(done), static_cast<size_t>(total));
      };
    r.epochs.push_back(trainer.train_epoch(train, held_out, progress));
    const EpochResult& last = r.epochs.back();
    // A run that cannot learn stops with the reason, not with a model and exit 0.
    DUET_CHECK(last.steps == 0 || last.skipped_steps < last.steps, "epoch ", e + 1, ": every one of its ", last.steps,
               " optimizer steps was skipped (gradients not finite at loss scale ", last.loss_scale,
               "): lower --init-scale or check the data for NaN and Inf");
    DUET_CHECK(std::isfinite(last.train_loss), "epoch ", e + 1, ": the training loss is ", last.train_loss,
               " (the data, --scale or --lr gave non-finite values)");
    if (!options.checkpoint.empty() && r.root) trainer.save_checkpoint(options.checkpoint);
    if (options.on_epoch) options.on_epoch(e, r.epochs.back(), trainer);
  }
  r.trained = trainer.trained_model();
  if (cfg.profile) r.profile = trainer.profile();
  r.steps = trainer.steps();
  r.autocast_nodes = trainer.autocast_nodes();
  r.parameter_tensors = trainer.parameter_names().size();
  r.loss_scale = trainer.loss_scale();
  return r;
}

}  // namespace duet::train
