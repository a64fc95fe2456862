// duet train MODEL_OR_BUILDER --data DATA -o OUT.onnx: trains a classifier on
// Duet's own graph. Parses flags into data, a model and a train::TrainConfig,
// calls train::fit (train/fit.h: the epoch loop, checkpoints, resume), prints
// per-epoch metrics (all measured) and writes the trained model as ONNX.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include "commands.h"
#include "duet/passes/sparsify.h"
#include "duet/core/error.h"
#include "duet/onnx/onnx_io.h"
#include "duet/report/chart.h"
#include "duet/train/data.h"
#include "duet/train/fit.h"
#include "duet/train/models.h"
#include "duet/train/report.h"
#include "duet/train/trainer.h"

namespace duet::cli {

namespace {

std::string pct(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f%%", 100 * v);
  return buf;
}

}  // namespace

Runner add_train(CLI::App& app) {
  struct Options {
    std::string model, data, test, keys, output, sample_shape, amp = "off", optimizer = "adamw", schedule = "constant";
    std::string loss_scaling = "auto", weight_format, checkpoint, resume, backend = "cpu", save_init, report;
    double test_fraction = 0.2, scale = 1.0, lr = 1e-3, weight_decay = 0.01, momentum = 0.0, clip_norm = 0;
    double init_scale = 65536.0, min_scale = 0;
    int64_t epochs = 15, batch = 64, warmup = 0, step_size = 1000, classes = 0, growth_interval = 2000, max_steps = 0;
    int64_t fp8_history = 16;
    int fp8_margin = 0;
    std::string allreduce = "fp32", qat = "off", preprocess, sparsity = "dense";
    int64_t channels = 3;
    bool profile = false, standardize = false;
    bool qat_per_tensor = false, lsq = false, qat_activations = false, qat_weights_only = false;
    uint64_t seed = 0;
    int threads = 2;
    bool tf32 = false, stochastic_rounding = false, nesterov = false, json = false, freeze_batchnorm = false;
    std::vector<std::string> freeze;
  };
  auto o = std::make_shared<Options>();
  auto* cmd = app.add_subcommand("train", "Train a classifier (ONNX model or builder) with optimizers, mixed precision and loss scaling");
  cmd->add_option("model", o->model, "ONNX model (one float input -> logits) or a builder: mlp[:H,...], cnn[:C1,C2,F]")->required();
  cmd->add_option("--data", o->data, "Training data: CSV (.csv/.csv.gz, label last), a folder with x.npy and y.npy, or an "
                  "image folder DIR/<class>/<image>.png|jpg")->required();
  cmd->add_option("-o,--output", o->output, "Trained model to write (.onnx)");
  cmd->add_option("--keys", o->keys,
                  "Text lines for a CTC recognizer: --data and --test are test_data_set_* folders with text.txt beside each "
                  "input, read through this keys file (one character per line; blank 0, space last); loss CTC, CER per epoch");
  cmd->add_option("--test", o->test, "Test data (default: a seeded --test-fraction split of --data)");
  cmd->add_option("--test-fraction", o->test_fraction, "Share of --data held out for testing when --test is absent")
      ->check(CLI::Range(0.0, 0.9));
  cmd->add_option("--preprocess", o->preprocess, "Image folders: preprocessing spec, e.g. resize=32x32,scale=1/255 (io/preprocess.h)");
  cmd->add_option("--channels", o->channels, "Image folders: 1 (grey) or 3 (RGB, default)")->check(CLI::IsMember({1, 3}));
  cmd->add_option("--sample-shape", o->sample_shape, "Shape of one sample for builders, e.g. 1x8x8 (default: flat)");
  cmd->add_option("--scale", o->scale, "Multiply CSV features by this (digits: 0.0625)")->check(positive());
  cmd->add_flag("--standardize", o->standardize,
                "Standardize inputs with the training split's mean and standard deviation, baked into the model "
                "(Sub/Mul before the first layer: the exported model takes the data as given)");
  cmd->add_option("--classes", o->classes, "Classes for builders (default: max label + 1)")
      ->check(CLI::Validator(
          [](std::string& v) -> std::string {
            const long long c = std::strtoll(v.c_str(), nullptr, 10);
            return c == 0 || (c >= 2 && c <= (1 << 24)) ? std::string() : "must be 0 (from the data) or at least 2, got " + v;
          },
          "CLASSES"));
  cmd->add_option("--epochs", o->epochs, "Epochs")->check(CLI::Range(int64_t{1}, int64_t{100000}));
  cmd->add_option("--batch", o->batch, "Batch size")->check(CLI::Range(int64_t{1}, int64_t{1} << 20));
  cmd->add_option("--optimizer", o->optimizer, "sgd, adam or adamw (default)")->check(CLI::IsMember({"sgd", "adam", "adamw"}));
  cmd->add_option("--lr", o->lr, "Learning rate")->check(CLI::Range(0.0, 100.0));
  cmd->add_option("--weight-decay", o->weight_decay, "Weight decay (adamw: decoupled)")->check(CLI::Range(0.0, 10.0));
  cmd->add_option("--momentum", o->momentum, "SGD momentum")->check(CLI::Range(0.0, 1.0));
  cmd->add_flag("--nesterov", o->nesterov, "SGD with Nesterov momentum");
  cmd->add_option("--schedule", o->schedule, "Learning-rate schedule: constant, step or cosine")
      ->check(CLI::IsMember({"constant", "step", "cosine"}));
  cmd->add_option("--warmup", o->warmup, "Linear warm-up steps")->check(non_negative());
  cmd->add_option("--step-size", o->step_size, "step schedule: steps between decays (x0.1)")->check(positive());
  cmd->add_option("--clip-norm", o->clip_norm, "Clip the global gradient norm to this (0: off)")->check(non_negative());
  cmd->add_option("--amp", o->amp, "Mixed precision for Conv/MatMul/Gemm: off, bf16, fp16, or any float format (tf32, e4m3fn, e5m2, ...)");
  cmd->add_option("--fp8-history", o->fp8_history, "--amp fp8: amax history length of the delayed scaling")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 20));
  cmd->add_option("--fp8-margin", o->fp8_margin, "--amp fp8: scale = fp8_max / amax / 2^margin")->check(CLI::Range(0, 30));
  cmd->add_flag("--tf32", o->tf32, "TF32 inputs for the matrix ops while the rest stays FP32 (with --amp off)");
  cmd->add_option("--loss-scaling", o->loss_scaling, "Dynamic loss scaling: auto (on for fp16), on or off")
      ->check(CLI::IsMember({"auto", "on", "off"}));
  cmd->add_option("--init-scale", o->init_scale, "Loss scaler's initial scale (PyTorch: 65536)")->check(positive());
  cmd->add_option("--growth-interval", o->growth_interval, "Finite steps before the scale doubles (PyTorch: 2000)")
      ->check(positive());
  cmd->add_option("--min-scale", o->min_scale, "Floor for the loss scale (0: none)")->check(non_negative());
  cmd->add_option("--qat", o->qat, "Quantization-aware training: off, int8 (INT8 weights + UINT8 activations) or int4 "
                  "(INT4 weights); -o writes a QDQ model")->check(CLI::IsMember({"off", "int8", "int4"}));
  cmd->add_flag("--qat-per-tensor", o->qat_per_tensor, "QAT: one weight scale per tensor (default: per output channel)");
  cmd->add_flag("--lsq", o->lsq, "QAT: learned weight step sizes (LSQ) instead of max|w| / qmax");
  cmd->add_flag("--qat-activations", o->qat_activations, "QAT int4: also fake-quantize activations (UINT8)");
  cmd->add_flag("--qat-weights-only", o->qat_weights_only, "QAT int8: leave activations in float");
  cmd->add_option("--weight-format", o->weight_format, "Store weights in this format after each update (e.g. bf16): no FP32 master copy");
  cmd->add_flag("--stochastic-rounding", o->stochastic_rounding, "Round weight updates stochastically (with --weight-format, default bf16)");
  cmd->add_option("--freeze", o->freeze, "Initializers to keep constant");
  cmd->add_flag("--freeze-batchnorm", o->freeze_batchnorm,
                "BatchNormalization keeps its running statistics (inference mode; scale and shift still train): "
                "fine-tuning a pretrained model on small batches");
  cmd->add_option("--seed", o->seed, "Seed for initialization, the split and shuffling");
  cmd->add_option("--threads", o->threads, "Intra-op threads")->check(CLI::Range(1, 256));
  add_backend_option(cmd, o->backend, "cpu (default: oneDNN where it runs the node, reference kernels elsewhere) or reference");
  cmd->add_option("--sparsity", o->sparsity,
                  "dense, or 2:4: prune the matrix ops' weights 2:4 first (as duet sparsify) and keep them 2:4 through "
                  "training (masked updates); the model written records the pattern");
  cmd->add_option("--max-steps", o->max_steps, "Stop after this many optimizer steps in all (0: run every epoch)")
      ->check(non_negative());
  cmd->add_option("--allreduce", o->allreduce, "Under mpirun: gradients travel as fp32 (default) or bf16")
      ->check(CLI::IsMember({"fp32", "bf16"}));
  cmd->add_option("--checkpoint", o->checkpoint, "Write a checkpoint folder after every epoch");
  cmd->add_option("--resume", o->resume, "Resume from a checkpoint folder (same model, data and options)");
  cmd->add_option("--save-init", o->save_init, "Also write the model as initialized, before training (.onnx)");
  cmd->add_option("--report", o->report, "Write an HTML report (loss, accuracy and step-time curves; measured)");
  cmd->add_flag("--profile", o->profile, "Time every node of the training graph and print the time per op type (measured)");
  cmd->add_flag("--json", o->json, "Print the results as JSON");
  return [o]() {
    train::CsvOptions csv;
    csv.scale = static_cast<float>(o->scale);
    if (!o->sample_shape.empty()) csv.sample_shape = parse_dims(o->sample_shape);
    auto load = [&](const std::string& path) {
      return o->keys.empty() ? train::load_dataset(path, csv, o->preprocess, o->channels) : train::load_text_lines(path, o->keys);
    };
    train::Dataset data = load(o->data), test;
    if (!o->test.empty()) test = load(o->test);
    else std::tie(data, test) = train::split(data, o->test_fraction, o->seed);

    std::unique_ptr<ir::Model> model;
    if (train::is_builder_spec(o->model)) {
      Dims sample(data.features.dims().begin() + 1, data.features.dims().end());
      const int64_t classes = o->classes ? o->classes : std::max(data.classes(), test.classes());
      model = train::build_model(o->model, sample, classes, static_cast<uint32_t>(o->seed));
    } else {
      model = onnx_io::load_model(o->model);
    }
    if (o->standardize) {
      const train::Standardization st = train::feature_statistics(data);
      train::prepend_standardization(*model, st.mean, st.stddev);
    }
    if (!o->save_init.empty()) onnx_io::save_model(*model, o->save_init);
    train::fit_to_input(data, *model, "--data");
    if (test.size()) train::fit_to_input(test, *model, "--test");

    train::TrainConfig cfg;
    cfg.epochs = o->epochs;
    cfg.batch = o->batch;
    cfg.optimizer.kind = o->optimizer;
    cfg.optimizer.lr = o->lr;
    cfg.optimizer.weight_decay = o->weight_decay;
    cfg.optimizer.momentum = o->momentum;
    cfg.optimizer.nesterov = o->nesterov;
    cfg.optimizer.stochastic_rounding = o->stochastic_rounding;
    cfg.optimizer.weight_format = o->weight_format.empty() && o->stochastic_rounding ? "bf16" : o->weight_format;
    cfg.optimizer.seed = o->seed;
    cfg.schedule.kind = o->schedule;
    cfg.schedule.warmup_steps = o->warmup;
    cfg.schedule.step_size = o->step_size;
    cfg.schedule.total_steps = o->epochs * ((data.size() + o->batch - 1) / o->batch);
    cfg.clip_norm = o->clip_norm;
    cfg.amp = o->amp;
    cfg.tf32 = o->tf32;
    cfg.fp8_history = o->fp8_history;
    cfg.fp8_margin = o->fp8_margin;
    if (o->loss_scaling != "auto") cfg.loss_scaling = o->loss_scaling == "on";
    cfg.scaler.init_scale = o->init_scale;
    cfg.scaler.growth_interval = o->growth_interval;
    if (o->min_scale > 0) cfg.scaler.min_scale = o->min_scale;
    cfg.seed = o->seed;
    cfg.threads = o->threads;
    cfg.backend = o->backend;
    cfg.frozen = o->freeze;
    cfg.freeze_batchnorm = o->freeze_batchnorm;
    cfg.max_steps = o->max_steps;
    if (o->sparsity != "dense") passes::check_sparsity_pattern(o->sparsity);
    cfg.sparsity = o->sparsity;
    cfg.qat = o->qat;
    cfg.profile = o->profile;
    cfg.qat_options.per_channel = !o->qat_per_tensor;
    cfg.qat_options.lsq = o->lsq;
    if (o->qat_activations) cfg.qat_activations = true;
    if (o->qat_weights_only) cfg.qat_activations = false;
    cfg.comm = train::mpi_world();
    cfg.bf16_allreduce = o->allreduce == "bf16";
    const bool root = !cfg.comm || cfg.comm->rank() == 0;  // rank 0 prints and writes
    nlohmann::json epochs = nlohmann::json::array();
    train::TrainingReport report;
    report.title = "duet train " + o->model;
    train::FitOptions fo;
    fo.resume = o->resume;
    fo.checkpoint = o->checkpoint;
    fo.on_start = [&](const train::Trainer& trainer) {
      if (o->json || !root) return;
      std::cout << "training " << o->model << ": " << trainer.parameter_names().size() << " parameter tensors, "
                << data.size() << " training / " << test.size() << " test samples, amp " << cfg.amp
                << (cfg.tf32 ? " +tf32" : "") << (cfg.qat != "off" ? ", QAT " + cfg.qat : std::string()) << " ("
                << trainer.autocast_nodes() << " matrix ops low precision)" << ", backend " << cfg.backend
                << (cfg.comm ? ", data parallel over " + std::to_string(cfg.comm->size()) + " MPI ranks" : std::string())
                << "\n";
    };
    if (root) fo.progress = progress_display("train");
    fo.on_epoch = [&](int64_t e, const train::EpochResult& last, const train::Trainer& trainer) {
      nlohmann::json j = {{"epoch", e + 1},
                          {"train_loss", last.train_loss},
                          {"last_step_loss", last.last_loss},
                          {"train_accuracy", last.train_accuracy},
                          {"test_loss", last.test.loss},
                          {"test_accuracy", last.test.accuracy},
                          {"test_cer", std::isnan(last.test.cer) ? nlohmann::json(nullptr) : nlohmann::json(last.test.cer)},
                          {"steps", last.steps},
                          {"skipped_steps", last.skipped_steps},
                          {"loss_scale", last.loss_scale},
                          {"lr", last.lr},
                          {"measured_ms_per_step_median", last.ms_per_step},
                          {"measured_epoch_seconds", last.seconds}};
      epochs.push_back(j);
      report.epochs.push_back(last);
      if (!o->json && root) {
        char line[256];
        std::snprintf(line, sizeof line,
                      "epoch %3lld/%lld  loss %.4f  train acc %s  test loss %.4f  test acc %s  %.2f ms/step (measured median)",
                      static_cast<long long>(e + 1), static_cast<long long>(cfg.epochs), last.train_loss,
                      pct(last.train_accuracy).c_str(), last.test.loss, pct(last.test.accuracy).c_str(), last.ms_per_step);
        std::cout << line;
        if (!std::isnan(last.test.cer)) std::cout << "  test CER " << pct(last.test.cer);
        if (trainer.loss_scale() != 1.0 || last.skipped_steps)
          std::cout << "  scale " << last.loss_scale << " skipped " << last.skipped_steps;
        std::cout << "\n";
      }
    };
    const train::FitResult fitted = train::fit(*model, data, &test, cfg, fo);
    const train::EpochResult last = fitted.epochs.empty() ? train::EpochResult{} : fitted.epochs.back();
    if (!root) return 0;
    nlohmann::json profile = nlohmann::json::object();
    if (o->profile) {
      std::vector<std::pair<double, std::string>> rows;
      double total = 0;
      for (auto& [op, ms] : fitted.profile) {
        rows.push_back({ms, op});
        total += ms;
        profile[op] = ms;
      }
      std::sort(rows.rbegin(), rows.rend());
      if (!o->json) {
        std::cout << "profile of a training step (ms, measured, per op type):\n";
        for (auto& [ms, op] : rows) {
          char line[160];
          std::snprintf(line, sizeof line, "  %-40s %8.3f  %5.1f%%\n", op.c_str(), ms, total > 0 ? 100 * ms / total : 0.0);
          std::cout << line;
        }
      }
    }
    if (!o->output.empty()) onnx_io::save_model(*fitted.trained, o->output);
    if (!o->report.empty()) {
      report.settings = {{"model", o->model},
                         {"data", o->data + " (" + std::to_string(data.size()) + " training, " + std::to_string(test.size()) + " test samples)"},
                         {"optimizer", cfg.optimizer.kind + ", lr " + std::to_string(cfg.optimizer.lr) + ", weight decay " +
                                           std::to_string(cfg.optimizer.weight_decay) + ", schedule " + cfg.schedule.kind},
                         {"batch", std::to_string(cfg.batch)},
                         {"mixed precision", cfg.amp + (cfg.tf32 ? " + tf32" : "") + ", " +
                                                 std::to_string(fitted.autocast_nodes) + " matrix ops low precision"},
                         {"QAT", cfg.qat},
                         {"backend", cfg.backend + ", " + std::to_string(cfg.threads) + " threads"},
                         {"ranks", std::to_string(cfg.comm ? cfg.comm->size() : 1)},
                         {"steps", std::to_string(fitted.steps)}};
      duet::report::write_report(o->report, train::training_report_html(report), train::training_report_data(report));
    }
    if (o->json) {
      nlohmann::json out = {{"model", o->model},
                            {"amp", cfg.amp},
                            {"tf32", cfg.tf32},
                            {"qat", cfg.qat},
                            {"optimizer", cfg.optimizer.kind},
                            {"lr", cfg.optimizer.lr},
                            {"batch", cfg.batch},
                            {"train_samples", data.size()},
                            {"test_samples", test.size()},
                            {"autocast_nodes", fitted.autocast_nodes},
                            {"ranks", cfg.comm ? cfg.comm->size() : 1},
                            {"steps", fitted.steps},
                            {"epochs", epochs},
                            {"test_accuracy", last.test.accuracy},
                          {"test_cer", std::isnan(last.test.cer) ? nlohmann::json(nullptr) : nlohmann::json(last.test.cer)},
                            {"output", o->output}};
      if (o->profile) out["profile_ms_per_step"] = profile;
      print_json(out, 2);
    } else if (!o->output.empty()) {
      std::cout << "wrote " << o->output << " (test accuracy " << pct(last.test.accuracy) << ", measured)\n";
    }
    return 0;
  };
}

}  // namespace duet::cli
