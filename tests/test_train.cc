// Training: optimizers against PyTorch's numbers, the GradScaler state
// machine, datasets, the Trainer on the digits (checkpoints, autocast, loss
// scaling) and `duet train` end to end.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <filesystem>
#include <functional>
#include <fstream>

#include "duet/io/tensor_file.h"
#include "duet/onnx/onnx_io.h"
#include "duet/passes/shape_inference.h"
#include "duet/runtime/session.h"
#include "duet/train/qat.h"
#include "duet/train/autocast.h"
#include "duet/train/data.h"
#include "duet/train/fit.h"
#include "duet/train/graph_builder.h"
#include "duet/train/models.h"
#include "duet/train/optimizer.h"
#include "duet/train/trainer.h"
#include "test_util.h"

using namespace duet;
using namespace duet::testutil;
namespace fs = std::filesystem;

namespace {

std::vector<float> run_optimizer(train::OptimizerConfig cfg) {
  // Three steps from p0 with fixed gradients (the values PyTorch 1.13 gives are below).
  std::vector<Tensor> p{Tensor::from_vector<float>({0.5f, -1.25f, 2.0f, 0.0f}, {4})};
  const std::vector<std::vector<float>> grads{{0.1f, -0.2f, 0.3f, -0.4f}, {0.05f, 0.5f, -0.25f, 1.0f}, {-0.3f, 0.1f, 0.2f, 0.0f}};
  train::Optimizer opt(cfg);
  for (auto& g : grads) opt.step(p, {Tensor::from_vector<float>(g, {4})}, cfg.lr);
  return {p[0].data<float>(), p[0].data<float>() + 4};
}

void expect_close(const std::vector<float>& got, const std::vector<float>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], want[i], 2e-6f) << "element " << i;
}

fs::path scratch(const std::string& name) {
  fs::path p = fs::temp_directory_path() / ("duet_train_" + std::to_string(::getpid())) / name;
  fs::remove_all(p);
  fs::create_directories(p);
  return p;
}

// The digits (1797 8x8 images, features / 16), or a skip when ../shared is absent.
std::string digits_path() { return shared_dir() + "/datasets/digits/digits.csv.gz"; }

train::Dataset digits() {
  train::CsvOptions csv;
  csv.sample_shape = {1, 8, 8};
  csv.scale = 1.0f / 16;
  return train::load_csv(digits_path(), csv);
}

}  // namespace

// The training pipeline from C++, no CLI: the bundled digits, the CNN builder,
// one epoch with BF16 autocast, a checkpoint, and a resumed second epoch that
// continues where the first stopped.
// --amp speaks the precision vocabulary: the bf16 preset and its full spec
// train the same steps; a precision mixed-precision training cannot mean is one error.
TEST(Fit, AmpTakesAPrecisionText) {
  train::Dataset all = train::load_dataset(source_dir() + "/data/datasets/digits/digits.csv.gz",
                                           {.sample_shape = {1, 8, 8}, .scale = 1.0f / 16});
  auto model = train::build_model("cnn", {1, 8, 8}, 10, 0);
  auto run = [&](const std::string& amp) {
    train::TrainConfig cfg;
    cfg.epochs = 1;
    cfg.max_steps = 4;
    cfg.amp = amp;
    return train::fit(*model, all, nullptr, cfg).epochs.at(0).train_loss;
  };
  const double preset = run("bf16");
  EXPECT_EQ(preset, run("x=bf16/none,w=bf16/none,acc=fp32"));
  EXPECT_NE(preset, run("off"));
  EXPECT_THROW(run("int8"), Error);
  EXPECT_THROW(run("mxfp8"), Error);
}

TEST(Fit, TrainsTheDigitsCnnForAnEpochFromCpp) {
  train::Dataset all = train::load_dataset(source_dir() + "/data/datasets/digits/digits.csv.gz",
                                           {.sample_shape = {1, 8, 8}, .scale = 1.0f / 16});
  ASSERT_EQ(all.size(), 1797);
  auto [data, test] = train::split(all, 0.2, 0);
  auto model = train::build_model("cnn", {1, 8, 8}, 10, 0);
  train::fit_to_input(data, *model, "train");
  train::TrainConfig cfg;
  cfg.epochs = 1;
  cfg.amp = "bf16";
  cfg.threads = 2;
  const fs::path dir = scratch("fit");
  train::FitOptions fo;
  fo.checkpoint = (dir / "ckpt").string();
  int starts = 0, epochs = 0;
  fo.on_start = [&](const train::Trainer& t) {
    ++starts;
    EXPECT_EQ(t.steps(), 0);
  };
  fo.on_epoch = [&](int64_t e, const train::EpochResult& r, const train::Trainer&) { EXPECT_EQ(e, epochs++); };
  const train::FitResult r = train::fit(*model, data, &test, cfg, fo);
  EXPECT_EQ(starts, 1);
  ASSERT_EQ(r.epochs.size(), 1u);
  EXPECT_EQ(r.steps, (data.size() + 63) / 64);
  EXPECT_GT(r.autocast_nodes, 0);
  EXPECT_GT(r.epochs[0].test.accuracy, 0.6);  // one epoch from scratch: measured 0.82 (2026-12-07)
  ASSERT_TRUE(r.trained);
  ASSERT_TRUE(fs::exists(dir / "ckpt"));

  cfg.epochs = 2;
  train::FitOptions resume;
  resume.resume = fo.checkpoint;
  const train::FitResult more = train::fit(*model, data, &test, cfg, resume);
  ASSERT_EQ(more.epochs.size(), 1u);  // only the second epoch runs
  EXPECT_EQ(more.steps, 2 * r.steps);
  EXPECT_LT(more.epochs[0].train_loss, r.epochs[0].train_loss);
  // A data set that does not fit the model's input is one clear error.
  train::Dataset wrong = data;
  wrong.features = wrong.features.reshaped({data.size(), 4, 16});
  auto model2 = train::build_model("mlp", {32}, 10, 0);
  EXPECT_THROW(train::fit_to_input(wrong, *model2, "train"), Error);
}

// Expected values: torch.optim.{AdamW,Adam,SGD} (PyTorch 1.13, CPU) on the same steps.
TEST(Optimizer, AdamWMatchesPyTorch) {
  train::OptimizerConfig c;
  c.kind = "adamw";
  c.lr = 0.1;
  c.weight_decay = 0.05;
  expect_close(run_optimizer(c), {0.335505426f, -1.22161925f, 1.83559358f, 0.0208187252f});
}

TEST(Optimizer, AdamWithL2DecayMatchesPyTorch) {
  train::OptimizerConfig c;
  c.kind = "adam";
  c.lr = 0.1;
  c.weight_decay = 0.05;
  expect_close(run_optimizer(c), {0.32932353f, -1.20790195f, 1.80565608f, 0.0211576335f});
}

TEST(Optimizer, SgdNesterovMatchesPyTorch) {
  train::OptimizerConfig c;
  c.kind = "sgd";
  c.lr = 0.1;
  c.momentum = 0.9;
  c.nesterov = true;
  c.weight_decay = 0.05;
  expect_close(run_optimizer(c), {0.489714354f, -1.28597116f, 1.84787202f, -0.13368775f});
  c.momentum = 0;
  c.nesterov = false;
  c.weight_decay = 0;
  expect_close(run_optimizer(c), {0.515000045f, -1.28999996f, 1.97500002f, -0.0599999987f});
}

TEST(Optimizer, SchedulesAndClipping) {
  train::ScheduleConfig s;
  s.kind = "cosine";
  s.warmup_steps = 10;
  s.total_steps = 110;
  EXPECT_DOUBLE_EQ(train::scheduled_lr(s, 1.0, 0), 0.1);   // warm-up: (step + 1) / 10
  EXPECT_DOUBLE_EQ(train::scheduled_lr(s, 1.0, 10), 1.0);  // cosine starts at the base rate
  EXPECT_NEAR(train::scheduled_lr(s, 1.0, 60), 0.5, 1e-12);
  EXPECT_NEAR(train::scheduled_lr(s, 1.0, 110), 0.0, 1e-12);
  s = {};
  s.kind = "step";
  s.step_size = 5;
  s.gamma = 0.5;
  EXPECT_DOUBLE_EQ(train::scheduled_lr(s, 1.0, 4), 1.0);
  EXPECT_DOUBLE_EQ(train::scheduled_lr(s, 1.0, 12), 0.25);
  std::vector<Tensor> g{Tensor::from_vector<float>({3, 0}, {2}), Tensor::from_vector<float>({4}, {1})};
  EXPECT_NEAR(train::clip_grad_norm(g, 1.0), 5.0, 1e-6);
  EXPECT_NEAR(g[0].data<float>()[0], 0.6f, 1e-6f);
  EXPECT_NEAR(g[1].data<float>()[0], 0.8f, 1e-6f);
}

TEST(Optimizer, StochasticRoundingOfBf16WeightsIsUnbiased) {
  // Updates far below BF16's resolution at 1.0 (2^-8 apart): round-to-nearest
  // loses every one of them, stochastic rounding keeps them on average.
  train::OptimizerConfig c;
  c.kind = "sgd";
  c.lr = 1.0;
  c.weight_decay = 0;
  c.weight_format = "bf16";
  std::vector<Tensor> nearest{Tensor::from_vector<float>(std::vector<float>(4096, 1.0f), {4096})};
  std::vector<Tensor> stochastic{nearest[0].clone()};
  const Tensor g = Tensor::from_vector<float>(std::vector<float>(4096, -1e-4f), {4096});
  train::Optimizer rne(c);
  c.stochastic_rounding = true;
  train::Optimizer sr(c);
  for (int i = 0; i < 20; ++i) {
    rne.step(nearest, {g}, 1.0);
    sr.step(stochastic, {g}, 1.0);
  }
  double mean = 0;
  for (int64_t i = 0; i < 4096; ++i) mean += stochastic[0].data<float>()[i] / 4096.0;
  EXPECT_EQ(nearest[0].data<float>()[0], 1.0f) << "round to nearest: every update is lost";
  EXPECT_NEAR(mean, 1.0 + 20 * 1e-4, 2e-4) << "stochastic rounding: the updates survive on average";
}

// PyTorch's GradScaler update (amp_update_scale): an inf/NaN step multiplies
// the scale by backoff_factor and resets the tracker; growth_interval finite
// steps in a row multiply it by growth_factor (kept when that overflows).
TEST(GradScaler, MatchesPyTorchsStateMachine) {
  train::GradScalerConfig cfg;
  cfg.growth_interval = 3;
  train::GradScaler s(cfg);
  EXPECT_EQ(s.scale(), 65536.0);
  const std::vector<std::pair<bool, double>> steps{
      {false, 65536}, {false, 65536}, {true, 32768},  {false, 32768},  {false, 32768}, {false, 65536},
      {true, 32768},  {true, 16384},  {false, 16384}, {false, 16384},  {false, 32768}, {false, 32768},
      {false, 32768}, {false, 65536}, {false, 65536}, {true, 32768},   {false, 32768}};
  for (size_t i = 0; i < steps.size(); ++i) {
    s.update(steps[i].first);
    EXPECT_EQ(s.scale(), steps[i].second) << "after step " << i;
  }
  cfg.min_scale = 1.0;
  cfg.init_scale = 2.0;
  train::GradScaler floored(cfg);
  for (int i = 0; i < 5; ++i) floored.update(true);
  EXPECT_EQ(floored.scale(), 1.0) << "the optional floor";
  std::vector<Tensor> grads{Tensor::from_vector<float>({2.0f, 4.0f}, {2})};
  train::GradScaler unit({.init_scale = 2.0});
  EXPECT_FALSE(unit.unscale_and_check(grads));
  EXPECT_EQ(grads[0].data<float>()[1], 2.0f);
  grads[0].data<float>()[0] = INFINITY;
  EXPECT_TRUE(unit.unscale_and_check(grads));
}

TEST(TrainData, CsvErrorsNameTheFileAndLine) {
  const fs::path dir = scratch("csv");
  std::ofstream(dir / "bad.csv") << "1,2,0\n3,x,1\n";
  try {
    train::load_csv((dir / "bad.csv").string());
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("bad.csv:2: 'x' is not a number"), std::string::npos) << e.what();
  }
  std::ofstream(dir / "ragged.csv") << "1,2,0\n3,1\n";
  EXPECT_THROW(train::load_csv((dir / "ragged.csv").string()), Error);
  EXPECT_THROW(train::load_csv((dir / "missing.csv").string()), Error);
  std::ofstream(dir / "ok.csv") << "a,b,label\n1,2,0\n3,4,1\n";
  const train::Dataset d = train::load_csv((dir / "ok.csv").string());
  EXPECT_EQ(d.size(), 2);
  EXPECT_EQ(d.features.dims(), (Dims{2, 2}));
  EXPECT_EQ(d.classes(), 2);
}

TEST(TrainData, SplitAndShufflingAreSeeded) {
  EXPECT_EQ(train::permutation(10, 1), train::permutation(10, 1));
  EXPECT_NE(train::permutation(10, 1), train::permutation(10, 2));
  EXPECT_NE(train::permutation(10, 1, 0), train::permutation(10, 1, 1));
  auto p = train::permutation(1000, 7);
  std::sort(p.begin(), p.end());
  for (int64_t i = 0; i < 1000; ++i) ASSERT_EQ(p[i], i);
}

TEST(Trainer, DigitsCnnReachesPyTorchAccuracy) {
  DUET_REQUIRE_SHARED();
  auto [train_set, test_set] = train::split(digits(), 0.2, 0);
  auto model = train::build_model("cnn", {1, 8, 8}, 10, 0);
  train::TrainConfig cfg;
  cfg.backend = "cpu";  // oneDNN convolutions (the reference kernels' gradients: test_autodiff.cc)
  train::Trainer t(*model, cfg);
  train::EpochResult r;
  for (int e = 0; e < (kSanitized ? 3 : 15); ++e) r = t.train_epoch(train_set, &test_set);
  // PyTorch from the same initial weights reaches 98.05% on this split (bench/train_race.py --same-init).
  EXPECT_GE(r.test.accuracy, kSanitized ? 0.8 : 0.97);
  EXPECT_LT(r.train_loss, kSanitized ? 1.0 : 0.06);
}

// 2:4 sparse training (issue 20): the matrix weights are pruned first and stay
// 2:4 through every update; the exported model records the pattern per node.
// (Measured with duet train: dense digits CNN 98.51% over seeds 0-2, pruned
// without fine-tuning 97.21%, 2:4 fine-tuned five epochs 98.89%.)
TEST(Trainer, SparseTrainingKeepsTwoOfFourAndExportsThePattern) {
  DUET_REQUIRE_SHARED();
  auto [train_set, test_set] = train::split(digits(), 0.2, 0);
  auto model = train::build_model("cnn", {1, 8, 8}, 10, 0);
  train::TrainConfig cfg;
  cfg.sparsity = "2:4";
  train::Trainer t(*model, cfg);
  train::EpochResult r;
  for (int e = 0; e < 3; ++e) r = t.train_epoch(train_set, &test_set);
  EXPECT_GE(r.test.accuracy, 0.8);  // it learns (three epochs from scratch, half the weights zero: 0.87 here)
  auto trained = t.trained_model();
  int sparse = 0;
  for (auto& n : trained->graph->nodes) {
    auto a = n->annotations.find("precision");
    if (a == n->annotations.end()) continue;
    EXPECT_EQ(a->second, "sparsity=2:4");
    const Tensor& w = trained->graph->initializers.at(n->inputs[1]->name);
    // Conv [O, I, kh, kw] along I; Gemm/MatMul weights: every 4 consecutive along K (as stored by the builder).
    const bool conv = n->op_type == "Conv";
    const int64_t K = conv ? w.dim(1) : (n->attr_int("transB", 0) ? w.dim(1) : w.dim(0));
    const int64_t after = conv ? w.dim(2) * w.dim(3) : (n->attr_int("transB", 0) ? 1 : w.dim(1));
    const int64_t before = w.numel() / (K * after);
    for (int64_t b = 0; b < before; ++b)
      for (int64_t a2 = 0; a2 < after; ++a2)
        for (int64_t k0 = 0; k0 < K; k0 += 4) {
          int nonzero = 0;
          for (int64_t k = k0; k < k0 + 4; ++k) nonzero += w.data<float>()[(b * K + k) * after + a2] != 0.0f;
          ASSERT_LE(nonzero, 2) << n->name;
        }
    ++sparse;
  }
  EXPECT_GE(sparse, 2);
  cfg.sparsity = "1:4";
  EXPECT_THROW(train::Trainer(*model, cfg), Unsupported);
}

// Inputs standardized with the training split's statistics (baked into the
// model as Sub/Mul): the anchor recipe (AdamW 1e-3, batch 64, 15
// epochs) then reaches 99.16% on this split (8 seeds: mean 98.54%; PyTorch
// 1.13 with the same standardization: 98.68%).
TEST(Trainer, StandardizedDigitsCnnReachesTheAnchorAccuracy) {
  DUET_REQUIRE_SHARED();
  auto [train_set, test_set] = train::split(digits(), 0.2, 0);
  auto model = train::build_model("cnn", {1, 8, 8}, 10, 0);
  const train::Standardization st = train::feature_statistics(train_set);
  EXPECT_NEAR(st.mean, 0.305, 0.01);  // digits / 16
  train::TrainConfig cfg;
  cfg.backend = "cpu";
  train::prepend_standardization(*model, st.mean, st.stddev);  // its constants are never trained, flag or not
  train::Trainer t(*model, cfg);
  train::EpochResult r;
  for (int e = 0; e < (kSanitized ? 3 : 15); ++e) r = t.train_epoch(train_set, &test_set);
  EXPECT_GE(r.test.accuracy, kSanitized ? 0.85 : 0.985);
  // The statistics stay constants of the exported model, not trained weights.
  std::shared_ptr<ir::Model> out = t.trained_model();
  ASSERT_TRUE(out->graph->initializers.count(train::kStandardizeMean));
  EXPECT_FLOAT_EQ(out->graph->initializers.at(train::kStandardizeMean).data<float>()[0], static_cast<float>(st.mean));
}

TEST(Trainer, Bf16Fp16AndScaledFp8AutocastTrackFp32) {
  DUET_REQUIRE_SHARED();
  auto [train_set, test_set] = train::split(digits(), 0.2, 0);
  auto model = train::build_model("cnn", {1, 8, 8}, 10, 0);
  std::map<std::string, train::EpochResult> result;
  for (std::string amp : {"off", "bf16", "fp16", "fp8"}) {
    train::TrainConfig cfg;
    cfg.amp = amp;
    cfg.backend = "cpu";
    train::Trainer t(*model, cfg);
    if (amp != "off") EXPECT_EQ(t.autocast_nodes(), 4) << "two Conv and two Gemm nodes in " << amp;
    int scales = 0;
    for (auto* v : t.training_graph().graph->inputs) scales += v->name.rfind(train::kFp8ScalePrefix, 0) == 0;
    // FP8: every float input of the four matrix ops (12) has a forward scale; all but the network input
    // also have a gradient scale.
    if (amp == "fp8") EXPECT_GT(scales, 12);
    for (int e = 0; e < (kSanitized ? 2 : 4); ++e) result[amp] = t.train_epoch(train_set, &test_set);
  }
  for (std::string amp : {"bf16", "fp16", "fp8"}) {
    EXPECT_NEAR(result[amp].train_loss, result["off"].train_loss, (amp == "fp8" ? 0.1 : 0.05) * result["off"].train_loss) << amp;
    EXPECT_NEAR(result[amp].test.accuracy, result["off"].test.accuracy, 0.02) << amp;
  }
  EXPECT_EQ(result["fp16"].loss_scale, 65536.0) << "fp16 autocast scales the loss by default";
}

TEST(Trainer, Fp16OverflowSkipsStepsAndBacksOff) {
  DUET_REQUIRE_SHARED();
  auto [train_set, test_set] = train::split(digits(), 0.2, 0);
  auto model = train::build_model("mlp", {1, 8, 8}, 10, 0);
  train::TrainConfig cfg;
  cfg.amp = "fp16";
  cfg.scaler.init_scale = std::ldexp(1.0, 40);  // scaled gradients overflow FP16 (max 65504)
  train::Trainer t(*model, cfg);
  const auto r = t.train_epoch(train_set, nullptr);
  EXPECT_GT(r.skipped_steps, 0);
  EXPECT_LT(r.loss_scale, std::ldexp(1.0, 40));
  EXPECT_EQ(r.loss_scale, std::ldexp(1.0, 40 - static_cast<int>(r.skipped_steps))) << "one halving per skipped step";
}

TEST(Trainer, CheckpointResumesBitForBit) {
  DUET_REQUIRE_SHARED();
  auto [train_set, test_set] = train::split(digits(), 0.2, 0);
  auto model = train::build_model("mlp:32", {1, 8, 8}, 10, 3);
  train::TrainConfig cfg;
  cfg.batch = 32;
  train::Trainer straight(*model, cfg);
  straight.train_epoch(train_set, nullptr);
  straight.train_epoch(train_set, nullptr);
  const fs::path dir = scratch("ckpt");
  {
    train::Trainer first(*model, cfg);
    first.train_epoch(train_set, nullptr);
    first.save_checkpoint(dir.string());
  }
  train::Trainer resumed(*model, cfg);
  resumed.load_checkpoint(dir.string());
  EXPECT_EQ(resumed.epoch(), 1);
  resumed.train_epoch(train_set, nullptr);
  for (size_t i = 0; i < straight.parameters().size(); ++i)
    EXPECT_TRUE(straight.parameters()[i].same_bits(resumed.parameters()[i])) << straight.parameter_names()[i];
}

TEST(Trainer, ACheckpointIsReplacedWholeAndAForgedOneIsOneClearError) {
  DUET_REQUIRE_SHARED();
  auto [train_set, test_set] = train::split(digits(), 0.2, 0);
  auto model = train::build_model("mlp:16", {1, 8, 8}, 10, 3);
  train::TrainConfig cfg;
  cfg.batch = 64;
  const fs::path dir = scratch("ckpt_whole");
  train::Trainer t(*model, cfg);
  t.train_epoch(train_set, nullptr);
  t.save_checkpoint(dir.string());
  const fs::path torn = scratch("ckpt_torn");
  fs::copy(dir, torn, fs::copy_options::recursive | fs::copy_options::overwrite_existing);
  t.train_epoch(train_set, nullptr);
  t.save_checkpoint(dir.string());
  // The second save replaced the first: one set of tensors, the second epoch's.
  size_t npy = 0;
  for (auto& e : fs::directory_iterator(dir)) npy += e.path().extension() == ".npy";
  EXPECT_EQ(npy, t.parameters().size() + 2 * t.parameters().size());  // parameters, Adam's two moments each
  // A save killed before its checkpoint.json: the second save's tensors sit
  // beside the first's listing, which still resumes the first epoch.
  for (auto& e : fs::directory_iterator(dir))
    if (e.path().extension() == ".npy") fs::copy_file(e.path(), torn / e.path().filename(), fs::copy_options::overwrite_existing);
  train::Trainer resumed(*model, cfg);
  resumed.load_checkpoint(torn.string());
  EXPECT_EQ(resumed.epoch(), 1);
  // Forged listings: each one clear error, the trainer left as it was.
  auto forged = [&](const std::function<void(nlohmann::json&)>& edit) {
    const fs::path f = scratch("ckpt_forged");
    fs::remove_all(f);
    fs::copy(dir, f, fs::copy_options::recursive);
    std::ifstream in(f / "checkpoint.json");
    nlohmann::json meta = nlohmann::json::parse(in);
    edit(meta);
    std::ofstream(f / "checkpoint.json") << meta.dump();
    train::Trainer victim(*model, cfg);
    try {
      victim.load_checkpoint(f.string());
    } catch (const Error& e) {
      EXPECT_EQ(victim.epoch(), 0);
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(forged([](nlohmann::json& m) { m["files"]["optimizer_state"][0] = m["files"]["parameters"][1]; }).find("optimizer state 0 is"),
            std::string::npos);
  EXPECT_NE(forged([](nlohmann::json& m) {
              m["optimizer_state"] = 1;
              m["files"]["optimizer_state"] = nlohmann::json::array({m["files"]["optimizer_state"][0]});
            }).find("keeps 2 per parameter"),
            std::string::npos);
  EXPECT_NE(forged([](nlohmann::json& m) { m["optimizer_state"] = 99; }).find("lists"), std::string::npos);
  // Found by fuzzing: a count that would list 2^50 files, a format that is not a string.
  EXPECT_NE(forged([](nlohmann::json& m) { m["optimizer_state"] = int64_t(1) << 50; }).find("optimizer state tensors for"),
            std::string::npos);
  EXPECT_NE(forged([](nlohmann::json& m) { m["format"] = 3; }).find("unknown format"), std::string::npos);
  EXPECT_NE(forged([](nlohmann::json& m) { m.erase("epoch"); }).find("missing a field"), std::string::npos);
  EXPECT_NE(forged([](nlohmann::json& m) { m["files"]["parameters"][0] = "../../etc/passwd"; }).find("not a file name"),
            std::string::npos);
  EXPECT_NE(forged([](nlohmann::json& m) { m["loss_scale"] = -1; }).find("loss scale"), std::string::npos);
}

TEST(TrainCli, TrainsExportsAndReportsJson) {
  DUET_REQUIRE_SHARED();
  const fs::path dir = scratch("cli");
  const std::string out = (dir / "mlp.onnx").string();
  const std::string report = (dir / "train.html").string();
  auto r = run_command(cli() + " train mlp --data " + digits_path() + " --scale 0.0625 --epochs 2 --json -o " + out +
                       " --report " + report);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::ifstream html(report);
  const std::string page((std::istreambuf_iterator<char>(html)), std::istreambuf_iterator<char>());
  EXPECT_NE(page.find("<svg"), std::string::npos) << "loss and accuracy curves";
  EXPECT_NE(page.find("measured"), std::string::npos);
  EXPECT_NE(r.output.find("\"test_accuracy\""), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("measured_ms_per_step_median"), std::string::npos);
  ASSERT_TRUE(fs::exists(out));
  // The trained model runs in Duet (and, being plain ONNX, in ONNX Runtime).
  r = run_command(cli() + " info " + out);
  EXPECT_EQ(r.exit_code, 0) << r.output;
}

TEST(TrainCli, BadInputGivesOneClearError) {
  auto r = run_command(cli() + " train mlp --data /nonexistent/digits.csv");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("'/nonexistent/digits.csv' does not exist"), std::string::npos) << r.output;
  const fs::path dir = scratch("clierr");
  std::ofstream(dir / "d.csv") << "1,2,0\n3,4,1\n";
  r = run_command(cli() + " train transformer --data " + (dir / "d.csv").string());
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("transformer"), std::string::npos) << r.output;
  r = run_command(cli() + " train cnn --data " + (dir / "d.csv").string());
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("cnn needs [C, H, W] samples"), std::string::npos) << r.output;
  std::ofstream(dir / "nan.csv") << "1,nan,0\n3,4,1\n1,2,0\n3,4,1\n1,2,0\n3,4,1\n";
  r = run_command(cli() + " train mlp --data " + (dir / "nan.csv").string() + " --test-fraction 0");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("nan.csv:1: feature 2 is nan (features must be finite)"), std::string::npos) << r.output;
  // Features that overflow float32 arithmetic: training stops at the first non-finite loss.
  std::ofstream(dir / "huge.csv") << "3e38,3e38,0\n-3e38,3e38,1\n";
  r = run_command(cli() + " train mlp --data " + (dir / "huge.csv").string() + " --test-fraction 0");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("training diverged at step 1: the loss is nan"), std::string::npos) << r.output;
  // Options that would train to nothing and still exit 0.
  std::ofstream(dir / "one.csv") << "1,2,3\n3,4,3\n1,2,3\n3,4,3\n";
  for (auto [args, needle] : std::vector<std::pair<std::string, std::string>>{
           {" --scale nan", "--scale: must be positive, got nan"},
           {" --lr inf", "--lr: Value inf not in range"},
           {" --init-scale 0", "--init-scale: must be positive"},
           {" --clip-norm -1", "--clip-norm: must not be negative"},
           {" --warmup -5", "--warmup: must not be negative"},
           {" --step-size 0", "--step-size: must be positive"}}) {
    r = run_command(cli() + " train mlp --data " + (dir / "d.csv").string() + args);
    EXPECT_NE(r.exit_code, 0) << args;
    EXPECT_NE(r.output.find(needle), std::string::npos) << args << ": " << r.output;
  }
  r = run_command(cli() + " train mlp --data " + (dir / "one.csv").string() + " --test-fraction 0 -o " + (dir / "one.onnx").string());
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("one class only (label 3)"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(dir / "one.onnx"));
}

TEST(Qat, FakeQuantizeIsWhatTheExportedQdqModelComputes) {
  // A small MLP with fake-quantized INT4 weights and UINT8 activations: the
  // training graph's forward and the exported QuantizeLinear/DequantizeLinear
  // model give the same outputs.
  auto model = train::build_model("mlp:16", {12}, 3, 5);
  train::QatOptions qo;
  qo.weight_bits = 4;
  auto fq = onnx_io::clone_model(*model);
  passes::infer_shapes(*fq);
  const auto tensors = train::insert_fake_quant(*fq, qo);
  ASSERT_EQ(tensors.size(), 4u) << "two weights and two activations";
  std::map<std::string, Tensor> feeds{{"input", Tensor::from_vector<float>(std::vector<float>(24, 0.3f), {2, 12})}};
  for (int i = 0; i < 24; ++i) feeds["input"].data<float>()[i] = 0.1f * static_cast<float>(i % 7) - 0.2f;
  std::map<std::string, Tensor> scales, zps;
  for (auto& q : tensors) {
    if (q.weight) {
      scales[q.tensor] = train::weight_scales(fq->graph->initializers.at(q.tensor), q);
      EXPECT_EQ(q.qmax, 7);
    } else {
      scales[q.tensor] = Tensor::scalar<float>(0.01f);
      zps[q.tensor] = Tensor::scalar<int32_t>(20);
    }
    feeds[train::kQatScalePrefix + q.tensor] = scales[q.tensor];
    if (!q.weight) feeds[train::kQatZeroPointPrefix + q.tensor] = zps[q.tensor];
  }
  std::shared_ptr<ir::Model> train_graph = onnx_io::clone_model(*fq);
  const Tensor want = runtime::Session(train_graph).run(feeds).at(0).tensor;
  train::export_qdq(*fq, scales, zps);
  int qdq = 0;
  for (auto& n : fq->graph->nodes) qdq += n->op_type == "QuantizeLinear";
  EXPECT_EQ(qdq, 4);
  EXPECT_EQ(fq->opset(""), 21) << "INT4 QuantizeLinear needs opset 21";
  std::shared_ptr<ir::Model> exported = std::move(fq);
  const Tensor got = runtime::Session(exported).run({{"input", feeds["input"]}}).at(0).tensor;
  EXPECT_TRUE(got.same_bits(want));
}

TEST(Qat, Int4WeightsTrainWithinAPointOfFp32AndExportAsQdq) {
  DUET_REQUIRE_SHARED();
  auto [train_set, test_set] = train::split(digits(), 0.2, 0);
  auto model = train::build_model("cnn", {1, 8, 8}, 10, 0);
  train::TrainConfig cfg;
  cfg.qat = "int4";
  cfg.backend = "cpu";
  train::Trainer t(*model, cfg);
  train::EpochResult r;
  for (int e = 0; e < (kSanitized ? 3 : 15); ++e) r = t.train_epoch(train_set, &test_set);
  EXPECT_GE(r.test.accuracy, kSanitized ? 0.8 : 0.9777 - 0.01) << "FP32 reaches 97.77% on this split";
  // The exported QDQ model scores the same on the test set.
  std::shared_ptr<ir::Model> qdq = t.trained_model();
  runtime::Session s(qdq);
  const Tensor logits = s.run({{"input", test_set.features}}).at(0).tensor;
  int64_t correct = 0;
  for (int64_t i = 0; i < test_set.size(); ++i) {
    const float* row = logits.data<float>() + i * 10;
    correct += std::max_element(row, row + 10) - row == test_set.labels.data<int64_t>()[i];
  }
  EXPECT_NEAR(static_cast<double>(correct) / static_cast<double>(test_set.size()), r.test.accuracy, 1e-9);
}

TEST(Trainer, BatchNormalizationTrainsOnBatchStatisticsAndExportsRunningOnes) {
  DUET_REQUIRE_SHARED();
  auto [train_set, test_set] = train::split(digits(), 0.2, 0);
  train::GraphBuilder b(13, 1);  // an opset-13 model: the trainer raises it to 14 for training_mode
  ir::Value* x = b.input("input", DType::Float32, {-1, 1, 8, 8});
  ir::Value* y = b.node("Relu", {b.batch_norm(b.conv2d(x, 1, 16, 3, 1), 16)});
  y = b.node("Flatten", {b.max_pool2d(y, 2)}, {train::attr_int("axis", 1)});
  b.output(b.linear(y, 256, 10), "logits");
  auto model = b.finish();
  train::TrainConfig cfg;
  train::Trainer t(*model, cfg);
  EXPECT_EQ(t.parameter_names().size(), 6u) << "conv, bn scale/bias, fc: running statistics are not parameters";
  train::EpochResult r;
  for (int e = 0; e < 3; ++e) r = t.train_epoch(train_set, &test_set);
  EXPECT_GT(r.test.accuracy, 0.9) << "evaluated with the running statistics";
  auto trained = t.trained_model();
  std::string bn;
  for (auto& [name, _] : trained->graph->initializers)
    if (name.find(".running_mean") != std::string::npos) bn = name.substr(0, name.find(".running_mean"));
  ASSERT_FALSE(bn.empty());
  const Tensor& mean = trained->graph->initializers.at(bn + ".running_mean");
  const Tensor& var = trained->graph->initializers.at(bn + ".running_var");
  double moved = 0;
  for (int64_t c = 0; c < 16; ++c) moved += std::fabs(mean.data<float>()[c]) + std::fabs(var.data<float>()[c] - 1);
  EXPECT_GT(moved, 0.1) << "the running statistics were updated and exported";
  // The exported model (inference-mode BatchNormalization) gives the trainer's test accuracy.
  std::shared_ptr<ir::Model> exported = std::move(trained);
  const Tensor logits = runtime::Session(exported).run({{"input", test_set.features}}).at(0).tensor;
  int64_t correct = 0;
  for (int64_t i = 0; i < test_set.size(); ++i) {
    const float* row = logits.data<float>() + i * 10;
    correct += std::max_element(row, row + 10) - row == test_set.labels.data<int64_t>()[i];
  }
  EXPECT_NEAR(static_cast<double>(correct) / static_cast<double>(test_set.size()), r.test.accuracy, 1e-9);
}

TEST(Trainer, TransformerEncoderLearnsDigitRowsAsTokens) {
  DUET_REQUIRE_SHARED();
  train::CsvOptions csv;
  csv.sample_shape = {8, 8};  // 8 tokens (image rows) of 8 features
  csv.scale = 1.0f / 16;
  auto [train_set, test_set] = train::split(train::load_csv(digits_path(), csv), 0.2, 0);
  auto model = train::build_model("transformer:16,2,1", {8, 8}, 10, 0);
  train::TrainConfig cfg;
  cfg.optimizer.lr = 3e-3;
  train::Trainer t(*model, cfg);
  train::EpochResult first = t.train_epoch(train_set, &test_set), r;
  for (int e = 1; e < 4; ++e) r = t.train_epoch(train_set, &test_set);  // 4 epochs: short enough for ASan
  EXPECT_LT(r.train_loss, 0.8 * first.train_loss);
  EXPECT_GT(r.test.accuracy, 0.6);
}

namespace {

// A text-line folder: test_data_set_i/input_0.pb (float32 [1, 1, 2, 4]) and text.txt.
fs::path text_line_folder(const std::string& name, const std::vector<std::string>& texts) {
  const fs::path dir = scratch(name);
  for (size_t i = 0; i < texts.size(); ++i) {
    const fs::path s = dir / ("test_data_set_" + std::to_string(i));
    fs::create_directories(s);
    io::save_tensor_file(Tensor::zeros(DType::Float32, {1, 1, 2, 4}), "x", (s / "input_0.pb").string());
    std::ofstream(s / "text.txt") << texts[i] << "\n";
  }
  return dir;
}

}  // namespace

TEST(TrainData, TextLinesBecomeLabelSequencesThroughTheKeys) {
  const fs::path dir = text_line_folder("lines", {"ab", "b a", "aa"});
  const std::string keys = (dir / "keys.txt").string();
  std::ofstream(keys) << "a\nb\n";
  const train::Dataset d = train::load_text_lines(dir.string(), keys);
  ASSERT_TRUE(d.sequences());
  EXPECT_EQ(d.features.dims(), (Dims{3, 1, 2, 4}));
  // a = 1, b = 2 (0 is the CTC blank), space = 3; rows padded with -1.
  EXPECT_EQ(d.labels.to_int_vector(), (std::vector<int64_t>{1, 2, -1, 2, 3, 1, 1, 1, -1}));
  const train::Dataset two = d.gather({2, 0});
  EXPECT_EQ(two.labels.to_int_vector(), (std::vector<int64_t>{1, 1, -1, 1, 2, -1}));
  // A character the keys lack is one error naming it and the sample.
  const fs::path bad = text_line_folder("lines_bad", {"ab", "abc"});
  try {
    train::load_text_lines(bad.string(), keys);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("character 'c' is not in the keys file"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("test_data_set_1"), std::string::npos) << e.what();
  }
}

TEST(Trainer, CtcRecognizerLearnsToReadSyntheticLines) {
  // Lines of up to three symbols from {1, 2}, each symbol shown for two of eight steps with blanks around it;
  // a linear map of each step's features (plus noise) to four classes under a Softmax must learn to read them.
  const int64_t T = 8, F = 4, C = 4, n = 256;
  auto make = [&](uint64_t seed) {
    train::Dataset d{Tensor(DType::Float32, {n, T, F}), Tensor(DType::Int64, {n, 3})};
    uint64_t state = seed;
    auto next = [&]() { state = state * 6364136223846793005ull + 1442695040888963407ull; return state >> 33; };
    for (int64_t i = 0; i < n; ++i) {
      const int64_t len = 1 + static_cast<int64_t>(next() % 3);
      std::vector<int64_t> frame(T, 0);
      for (int64_t k = 0; k < 3; ++k) d.labels.data<int64_t>()[i * 3 + k] = -1;
      for (int64_t k = 0; k < len; ++k) {
        const int64_t sym = 1 + static_cast<int64_t>(next() % 2);
        d.labels.data<int64_t>()[i * 3 + k] = sym;
        frame[1 + 2 * k] = frame[2 + 2 * k] = sym;  // steps 1-2, 3-4, 5-6; 0 and 7 blank
        if (k > 0 && frame[2 * k] == sym) frame[1 + 2 * k] = 0;  // a repeat needs a blank between
      }
      for (int64_t t = 0; t < T; ++t)
        for (int64_t f = 0; f < F; ++f)
          d.features.data<float>()[(i * T + t) * F + f] = (f == frame[t] ? 1.0f : 0.0f) + 0.1f * (static_cast<float>(next() % 1000) / 1000 - 0.5f);
    }
    return d;
  };
  const train::Dataset train_set = make(1), test_set = make(2);
  train::GraphBuilder b(17);
  ir::Value* x = b.input("x", DType::Float32, {n, T, F});
  ir::Value* scores = b.node("Add", {b.node("MatMul", {x, b.weight("w", {F, C}, F)}), b.initializer("bias", Tensor::zeros(DType::Float32, {C}))});
  b.output(b.node("Softmax", {scores}, {train::attr_int("axis", -1)}), "probabilities");
  auto model = b.finish();
  train::TrainConfig cfg;
  cfg.epochs = 30;
  cfg.batch = 32;
  cfg.optimizer.lr = 0.05;
  const train::FitResult r = train::fit(*model, train_set, &test_set, cfg);
  ASSERT_EQ(r.epochs.size(), 30u);
  EXPECT_LT(r.epochs.back().train_loss, 0.3 * r.epochs.front().train_loss);
  EXPECT_LT(r.epochs.back().test.cer, 0.05);
  EXPECT_GT(r.epochs.back().test.accuracy, 0.9);  // lines read exactly
  // The exported model keeps its Softmax (the loss was taken on the scores under it).
  EXPECT_EQ(r.trained->graph->outputs[0]->producer->inputs[0]->producer->op_type, "Softmax");
}

TEST(Trainer, LabelsTheModelCannotScoreAreOneClearError) {
  // A recognizer scoring 4 classes (blank, two keys, space) and lines read through a longer keys file.
  train::GraphBuilder b(17);
  ir::Value* x = b.input("x", DType::Float32, {2, 8, 4});
  b.output(b.node("MatMul", {x, b.weight("w", {4, 4}, 4)}), "scores");
  auto model = b.finish();
  train::Dataset d{Tensor::zeros(DType::Float32, {2, 8, 4}), Tensor::from_vector<int64_t>({1, 5, 2, -1}, {2, 2})};
  train::TrainConfig cfg;
  cfg.epochs = 1;
  try {
    train::fit(*model, d, nullptr, cfg);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("labels reach 5 but the model scores 4 classes"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("keys file is not the model's"), std::string::npos) << e.what();
  }
}
