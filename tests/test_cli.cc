// Bad input gives one clear line naming the problem and a non-zero exit.
#include <gtest/gtest.h>
#include <onnx/onnx_pb.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>

#include "duet/io/tensor_file.h"
#include "duet/onnx/onnx_io.h"
#include "test_util.h"

using namespace duet::testutil;
namespace fs = std::filesystem;

namespace {
const std::string kModel = source_dir() + "/data/models/ppocr_cls_mobile_v2.0.onnx";
const std::string kSample = source_dir() + "/data/samples/cls/sample_0.pb";

fs::path scratch() {
  fs::path p = fs::temp_directory_path() / ("duet_cli_" + std::to_string(::getpid()));
  fs::create_directories(p);
  return p;
}

// Exactly one line, starting with "duet: error:", containing `needle`.
void expect_one_line_error(const CommandResult& r, const std::string& needle) {
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_LT(r.exit_code, 128) << "crashed: " << r.output;
  EXPECT_EQ(r.output.rfind("duet: error:", 0), 0u) << r.output;
  EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << r.output;
  EXPECT_NE(r.output.find(needle), std::string::npos) << r.output;
}
}  // namespace

TEST(CliErrors, MissingModelFile) {
  expect_one_line_error(run_command(cli() + " info /nonexistent/model.onnx"), "file not found");
}

TEST(CliErrors, TruncatedModel) {
  auto dir = scratch();
  std::ifstream in(kModel, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), {});
  std::ofstream(dir / "truncated.onnx", std::ios::binary) << bytes.substr(0, bytes.size() / 2);
  expect_one_line_error(run_command(cli() + " info " + (dir / "truncated.onnx").string()), "not a valid ONNX model");
}

TEST(CliErrors, GarbageModel) {
  auto dir = scratch();
  std::ofstream(dir / "garbage.onnx") << "this is not a protobuf at all, just text\n";
  expect_one_line_error(run_command(cli() + " run " + (dir / "garbage.onnx").string()), "not a valid ONNX model");
}

// x -> FrobnicateV2 -> y: an op no one defines.
static std::string write_unknown_op_model(const std::string& name) {
  duet::ir::Model model;
  model.opset_imports.push_back({"", 17});
  auto& g = *model.graph;
  g.inputs.push_back(g.value("x"));
  g.add_node("FrobnicateV2", {g.value("x")}, {g.value("y")}, "frob");
  g.outputs.push_back(g.value("y"));
  const std::string path = (scratch() / name).string();
  duet::onnx_io::save_model(model, path);
  return path;
}

TEST(CliErrors, UnknownOp) {
  const std::string path = write_unknown_op_model("unknown_op.onnx");
  expect_one_line_error(run_command(cli() + " run " + path), "unknown op 'FrobnicateV2'");
}

TEST(CliErrors, UnsupportedOpset) {
  duet::ir::Model model;
  model.opset_imports.push_back({"", 99});
  auto& g = *model.graph;
  g.inputs.push_back(g.value("x"));
  g.add_node("Relu", {g.value("x")}, {g.value("y")});
  g.outputs.push_back(g.value("y"));
  const std::string path = (scratch() / "opset99.onnx").string();
  duet::onnx_io::save_model(model, path);
  expect_one_line_error(run_command(cli() + " run " + path), "opset 99 is not supported");
}

TEST(CliErrors, WrongInputName) {
  expect_one_line_error(run_command(cli() + " run " + kModel + " --input nope=" + kSample), "unknown input name 'nope'");
}

TEST(CliErrors, WrongInputShape) {
  auto dir = scratch();
  auto r = run_command(cli() + " run " + kModel + " --input x=" + kSample + " --output-dir " + dir.string());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  // The classifier's output is 1x2: feeding it as x has the wrong rank.
  expect_one_line_error(run_command(cli() + " run " + kModel + " --input x=" + (dir / "softmax_0.tmp_0.pb").string()),
                        "input 'x' must have shape");
}

TEST(CliErrors, WrongInputDtype) {
  DUET_REQUIRE_SHARED();
  // An int64 tensor from the suite fed to the float classifier.
  const std::string t = shared_dir() + "/conformance/onnx-backend/node/test_argmax_default_axis_example/test_data_set_0/output_0.pb";
  expect_one_line_error(run_command(cli() + " run " + kModel + " --input x=" + t), "must be float32");
}

TEST(CliErrors, MalformedShapeOption) {
  expect_one_line_error(run_command(cli() + " info " + kModel + " --shape x=1x3xx48"), "malformed shape");
}

TEST(CliErrors, PrecisionTheModelOrBackendCannotGive) {
  expect_one_line_error(run_command(cli() + " run " + kModel + " --input x=" + kSample + " --precision int8"),
                        "this model has none: make one with duet quantize");
  expect_one_line_error(run_command(cli() + " run " + kModel + " --input x=" + kSample + " --precision bf16"),
                        "--precision bf16 needs --backend cpu");
}

TEST(Cli, RunsInBf16PrecisionOnTheCpuBackend) {
  auto r = run_command(cli() + " run " + kModel + " --input x=" + kSample + " --backend cpu --precision bf16 --json");
  EXPECT_EQ(r.exit_code, 0) << r.output;
}

TEST(Cli, EveryCommandHasHelp) {
  for (const char* c : {"info", "run", "conform"}) {
    auto r = run_command(cli() + " " + c + " --help");
    EXPECT_EQ(r.exit_code, 0) << c;
    EXPECT_NE(r.output.find("Usage"), std::string::npos) << r.output;
  }
}

TEST(Cli, InfoReportsFlopsAtBoundShapesAsJson) {
  auto r = run_command(cli() + " info " + kModel + " --shape x=1x3x48x192 --json");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("\"flops\""), std::string::npos);
  EXPECT_NE(r.output.find("\"nodes_with_unknown_shapes\": 0"), std::string::npos) << r.output;
}

TEST(Cli, RunWritesOutputsInTheInputFormat) {
  auto dir = scratch() / "run";
  auto r = run_command(cli() + " run " + kModel + " --input x=" + kSample + " --output-dir " + dir.string() + " --json");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(fs::exists(dir / "softmax_0.tmp_0.pb")) << r.output;
}

TEST(CliErrors, PlanNamesWhatIsWrongInOneLine) {
  const std::string digits = source_dir() + "/data/models/digits_cnn.onnx", data = source_dir() + "/data/samples/digits";
  expect_one_line_error(run_command(cli() + " plan " + digits), "--data DIR is required");
  expect_one_line_error(run_command(cli() + " plan " + digits + " --data " + data + " --metric wer"), "unknown metric 'wer'");
  expect_one_line_error(run_command(cli() + " plan " + digits + " --data " + data + " --objective fastest"),
                        "unknown objective 'fastest'");
  expect_one_line_error(run_command(cli() + " plan " + digits + " --data " + data + " --device nosuch"), "nosuch");
  // The bundled cls samples have no text: a task metric needs the references.
  expect_one_line_error(run_command(cli() + " plan " + kModel + " --data " + source_dir() + "/data/samples/digits"),
                        "input");
  expect_one_line_error(run_command(cli() + " plan " + digits + " --data " + data + " --max-samples 0"),
                        "--max-samples must be at least 1");
  expect_one_line_error(run_command(cli() + " plan " + digits + " --data " + data + " --arrival-rate -5"), "not negative");
  // tpu-v1 has no price in the catalog: a cost objective has nothing to minimize (stdout holds the table).
  auto cost = run_command("{ " + cli() + " plan " + digits + " --data " + data +
                          " --metric top1 --device tpu-v1 --objective cost >/dev/null; }");
  expect_one_line_error(cost, "--objective cost needs a device with a price");
  const fs::path table = scratch() / "bad.csv";
  std::ofstream(table) << "layer,option,error\nc1,int8,oops\n";
  expect_one_line_error(run_command(cli() + " plan --solve " + table.string()), "is not a finite number");
}

TEST(Cli, PlanSolvesATableAndSaysWhenNoChoiceFits) {
  const fs::path table = scratch() / "layers.csv";
  std::ofstream(table) << "layer,group,option,latency_us,error\n"
                          "conv1,,int8,100,0.01\nconv1,,bf16,200,0.001\n"
                          "conv2,res,int8,100,0.02\nconv2,res,bf16,200,0.002\n"
                          "conv3,res,int8,50,0.02\nconv3,res,bf16,90,0.002\n";
  auto ok = run_command(cli() + " plan --solve " + table.string() + " --limit latency_us=400 --json");
  ASSERT_EQ(ok.exit_code, 0) << ok.output;
  EXPECT_NE(ok.output.find("\"feasible\": true"), std::string::npos) << ok.output;
  EXPECT_NE(ok.output.find("\"latency_us\": 390.0"), std::string::npos) << ok.output;  // conv1 int8, the group bf16
  auto no = run_command(cli() + " plan --solve " + table.string() + " --limit latency_us=200");
  EXPECT_NE(no.exit_code, 0);
  EXPECT_NE(no.output.find("no plan meets latency_us <= 200"), std::string::npos) << no.output;
  EXPECT_NE(no.output.find("raise the limit to at least 250"), std::string::npos) << no.output;
}

TEST(Cli, PlanInfeasibleExitsNonZeroNamingTheBindingLimit) {
  const std::string digits = source_dir() + "/data/models/digits_cnn.onnx", data = source_dir() + "/data/samples/digits";
  auto r = run_command(cli() + " plan " + digits + " --data " + data + " --metric top1 --device t4 --max-latency-ms 0.000001");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_LT(r.exit_code, 128) << r.output;
  EXPECT_NE(r.output.find("duet: error: no plan meets --max-latency-ms"), std::string::npos) << r.output;
}

TEST(Cli, ValidateDevicesSetsModelledBesidePublishedAndNeedsAModel) {
  // Without a model for the points' workloads nothing can be checked: one clear line.
  expect_one_line_error(run_command(cli() + " validate-devices"), "--model NAME=FILE");
  expect_one_line_error(run_command(cli() + " validate-devices --model resnet50"), "NAME=FILE");
  // A table of one's own: the digits CNN "measured" at 0.5 ms on a T4, 1000/s at batch 64 on an A100.
  const fs::path dir = scratch();
  std::ofstream(dir / "points.csv") << "device_id,workload,scenario,batch,precision,metric,value,split,source\n"
                                    << "t4,digits,singlestream,1,fp16,latency,0.5,fit,a test\n"
                                    << "a100,digits,offline,64,int8,throughput,1000,check,a test\n";
  const std::string digits = source_dir() + "/data/models/digits_cnn.onnx";
  auto r = run_command(cli() + " validate-devices --points " + (dir / "points.csv").string() + " --model digits=" + digits);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("check half: 1 points"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("modelled: duet's simulator"), std::string::npos) << r.output;
  expect_one_line_error(run_command(cli() + " validate-devices --points " + (dir / "nope.csv").string()),
                        "cannot open published measurements");
}

TEST(CliErrors, ShapesWhoseElementCountOverflowsAreOneClearError) {
  for (const char* cmd : {" bench ", " info ", " simulate "})
    expect_one_line_error(run_command(cli() + cmd + kModel + " --shape x=288230376151711744x3x48x192" +
                                      (std::string(cmd) == " simulate " ? " --device t4" : "")),
                          "more elements than a 64-bit count holds");
}

TEST(CliErrors, AnOutputThatWouldDestroyAnInputOrAnotherOutputIsRefusedBeforeAnyWork) {
  const fs::path dir = scratch() / "outputs";
  fs::create_directories(dir);
  const fs::path model = dir / "model.onnx", link = dir / "link.onnx";
  fs::copy_file(kModel, model, fs::copy_options::overwrite_existing);
  fs::remove(link);
  fs::create_symlink(model, link);
  std::ifstream in(model, std::ios::binary);
  const std::string before((std::istreambuf_iterator<char>(in)), {});
  auto model_unchanged = [&] {
    std::ifstream again(model, std::ios::binary);
    EXPECT_EQ(std::string((std::istreambuf_iterator<char>(again)), {}), before);
  };
  expect_one_line_error(run_command(cli() + " optimize-graph " + model.string() + " -o " + model.string()), "would destroy it");
  model_unchanged();
  expect_one_line_error(run_command(cli() + " optimize-graph " + link.string() + " -o " + model.string()), "would destroy it");
  model_unchanged();
  expect_one_line_error(run_command(cli() + " quantize " + model.string() + " --calib " + dir.string() + " -o " +
                                    (dir / "q.html").string() + " --report " + (dir / "q.html").string()),
                        "one would overwrite the other");
  expect_one_line_error(run_command(cli() + " optimize-graph " + model.string() + " -o " + (dir / "missing" / "m.onnx").string()),
                        "does not exist");
  EXPECT_FALSE(fs::exists(dir / "missing"));
}

// A model of Identity/Neg/Log nodes from one input x (float [2]) to outputs of the given names.
static void write_unary_model(const fs::path& path, const std::vector<std::pair<std::string, std::string>>& op_and_output) {
  onnx::ModelProto mp;
  mp.set_ir_version(8);
  mp.add_opset_import()->set_version(17);
  auto* g = mp.mutable_graph();
  g->set_name("g");
  auto typed = [](onnx::ValueInfoProto* v, const std::string& name) {
    v->set_name(name);
    auto* t = v->mutable_type()->mutable_tensor_type();
    t->set_elem_type(onnx::TensorProto::FLOAT);
    t->mutable_shape()->add_dim()->set_dim_value(2);
  };
  typed(g->add_input(), "x");
  for (auto& [op, out] : op_and_output) {
    auto* n = g->add_node();
    n->set_op_type(op);
    n->add_input("x");
    n->add_output(out);
    typed(g->add_output(), out);
  }
  std::ofstream(path, std::ios::binary) << mp.SerializeAsString();
}

TEST(Cli, RunJsonSpellsNanAndInfinityAsPythonReadsThem) {
  const fs::path dir = scratch() / "nan";
  fs::create_directories(dir);
  write_unary_model(dir / "log.onnx", {{"Log", "y"}});
  duet::Tensor x = duet::Tensor::zeros(duet::DType::Float32, {2});
  x.data<float>()[0] = -1;  // log(-1) = NaN, log(0) = -inf
  duet::io::save_npy(x, (dir / "x.npy").string());
  auto r = run_command(cli() + " run " + (dir / "log.onnx").string() + " --input x=" + (dir / "x.npy").string() + " --json");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("\"NaN\""), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("\"-Infinity\""), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("null"), std::string::npos) << r.output;
}

TEST(CliErrors, LibraryTextsDoNotReachTheUser) {
  const fs::path dir = scratch() / "library";
  fs::create_directories(dir);
  // A name that is not UTF-8: --json replaces the bytes (was json.exception.type_error.316).
  onnx::ModelProto mp;
  {
    std::ifstream in(kModel, std::ios::binary);
    ASSERT_TRUE(mp.ParseFromIstream(&in));
  }
  mp.set_producer_name("\xff\xfe\xfd");
  std::ofstream(dir / "latin.onnx", std::ios::binary) << mp.SerializeAsString();
  auto r = run_command(cli() + " info " + (dir / "latin.onnx").string() + " --json");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(r.output.find("type_error"), std::string::npos) << r.output;
  // A folder that cannot be made: the reason and the path, without "filesystem error".
  r = run_command(cli() + " run " + kModel + " --input x=" + kSample + " --output-dir /proc/duet_cannot_exist");
  expect_one_line_error(r, "cannot create directories");
  EXPECT_EQ(r.output.find("filesystem error"), std::string::npos) << r.output;
}

TEST(Cli, RunGivesOutputsWhoseNamesMeetInOneFileNameAFileEach) {
  const fs::path dir = scratch() / "collide";
  fs::create_directories(dir);
  write_unary_model(dir / "two.onnx", {{"Identity", "y:0"}, {"Neg", "y_0"}});
  duet::Tensor x = duet::Tensor::zeros(duet::DType::Float32, {2});
  x.data<float>()[0] = 1, x.data<float>()[1] = 2;
  duet::io::save_npy(x, (dir / "x.npy").string());
  auto r = run_command(cli() + " run " + (dir / "two.onnx").string() + " --input x=" + (dir / "x.npy").string() +
                       " --output-dir " + (dir / "out").string() + " --json");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const duet::Tensor y = duet::io::load_npy((dir / "out" / "y_0.0.npy").string());
  const duet::Tensor neg = duet::io::load_npy((dir / "out" / "y_0.1.npy").string());
  EXPECT_EQ(y.data<float>()[1], 2.0f);
  EXPECT_EQ(neg.data<float>()[1], -2.0f);
}

TEST(Cli, BenchJsonCarriesPercentilesAndEveryRunOnRealInputs) {
  const fs::path dir = scratch() / "bench";
  fs::create_directories(dir);
  auto r = run_command(cli() + " bench " + kModel + " --input x=" + kSample + " --runs 7 --warmup 1 --export-times " +
                       (dir / "times.json").string() + " --json");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto j = nlohmann::json::parse(r.output);
  EXPECT_EQ(j["runs"], 7);
  EXPECT_EQ(j["times_ms"].size(), 7u);
  for (const char* k : {"mean_ms", "stddev_ms", "p50_ms", "p90_ms", "p95_ms", "p99_ms", "min_ms", "max_ms"}) EXPECT_TRUE(j.contains(k)) << k;
  EXPECT_LE(j["min_ms"].get<double>(), j["p50_ms"].get<double>());
  EXPECT_LE(j["p50_ms"].get<double>(), j["p90_ms"].get<double>());
  EXPECT_LE(j["p99_ms"].get<double>(), j["max_ms"].get<double>());
  EXPECT_TRUE(j["real_inputs"].get<bool>());
  EXPECT_FALSE(j["cpu"].get<std::string>().empty());
  std::ifstream times(dir / "times.json");
  EXPECT_EQ(nlohmann::json::parse(times).size(), 7u);
}

TEST(Cli, ConfigWrittenByOneRunRepeatsItsOptions) {
  const fs::path dir = scratch() / "config";
  fs::create_directories(dir);
  const std::string config = (dir / "simulate.toml").string();
  auto first = run_command(cli() + " --write-config " + config + " simulate " + kModel +
                           " --device t4,a100 --batch 1,8 --shape x=1x3x48x192 --json");
  ASSERT_EQ(first.exit_code, 0) << first.output;
  auto again = run_command(cli() + " --config " + config + " simulate --json");
  ASSERT_EQ(again.exit_code, 0) << again.output;
  const auto a = nlohmann::json::parse(first.output), b = nlohmann::json::parse(again.output);
  EXPECT_EQ(a.at("duet").at("options"), b.at("duet").at("options"));
  EXPECT_EQ(a.at("results").size(), b.at("results").size());
  // The command line still wins over the file.
  auto changed = run_command(cli() + " --config " + config + " simulate --batch 4 --json");
  ASSERT_EQ(changed.exit_code, 0) << changed.output;
  EXPECT_EQ(nlohmann::json::parse(changed.output).at("duet").at("options").at("--batch"), nlohmann::json::array({"4"}));
}

TEST(Cli, ProgressGoesToStderrWithRateAndEtaAndQuietSilencesIt) {
  const fs::path out = scratch() / "progress.json", err = scratch() / "progress.txt";
  auto text = [](const fs::path& p) {
    std::ifstream f(p);
    return std::string(std::istreambuf_iterator<char>(f), {});
  };
  auto bench = [&](const std::string& options) {
    return run_command("(" + cli() + " " + options + " > " + out.string() + " 2> " + err.string() + ")").exit_code;
  };
  // --progress draws though stderr is a file here; options of duet itself may follow the command.
  const std::string model = kModel + " --input x=" + kSample;
  ASSERT_EQ(bench("bench " + model + " --duration 1.5 --progress --json"), 0) << text(err);
  const std::string lines = text(err);
  EXPECT_NE(lines.find("bench: timed runs"), std::string::npos) << lines;
  EXPECT_NE(lines.find("/s  elapsed"), std::string::npos) << lines;
  EXPECT_NE(lines.find("ETA"), std::string::npos) << lines;
  EXPECT_NE(lines.find("100%"), std::string::npos) << lines;
  EXPECT_NO_THROW(nlohmann::json::parse(text(out)));  // stdout holds the JSON alone
  ASSERT_EQ(bench("bench " + model + " --duration 1 --progress --quiet --json"), 0);
  EXPECT_EQ(text(err), "");
  ASSERT_EQ(bench("--log-level warning bench " + model + " --duration 1 --progress"), 0);
  EXPECT_EQ(text(err), "");
  EXPECT_NE(bench("bench " + model + " --log-level chatty"), 0);
  EXPECT_NE(text(err).find("chatty not in"), std::string::npos) << text(err);
}

TEST(CliErrors, ExitCodesFollowTheDocumentedTable) {
  // README "Exit codes": 0 ok, 1 error, 2 usage, 3 unsupported, 4 a check that failed.
  EXPECT_EQ(run_command(cli() + " info " + kModel).exit_code, 0);
  EXPECT_EQ(run_command(cli() + " info /nonexistent/model.onnx").exit_code, 1);
  EXPECT_EQ(run_command(cli() + " info " + kModel + " --no-such-option").exit_code, 2);
  EXPECT_EQ(run_command(cli() + " bench " + kModel + " --runs 0").exit_code, 2);
  EXPECT_EQ(run_command(cli() + " run " + write_unknown_op_model("exit_unknown_op.onnx")).exit_code, 3);
  // conform: a failing case fails the run (4) unless failures are allowed.
  const fs::path suite = scratch() / "exit_conform" / "test_relu_wrong";
  fs::create_directories(suite / "test_data_set_0");
  write_unary_model(suite / "model.onnx", {{"Relu", "y"}});
  duet::Tensor x = duet::Tensor::zeros(duet::DType::Float32, {2}), wrong = x;
  x.data<float>()[0] = 1;
  wrong = duet::Tensor::zeros(duet::DType::Float32, {2});  // Relu(1) is 1, not 0
  duet::onnx_io::save_tensor_pb(x, "x", (suite / "test_data_set_0" / "input_0.pb").string());
  duet::onnx_io::save_tensor_pb(wrong, "y", (suite / "test_data_set_0" / "output_0.pb").string());
  auto r = run_command(cli() + " conform " + suite.string());
  EXPECT_EQ(r.exit_code, 4) << r.output;
  EXPECT_NE(r.output.find("1 conformance case failed"), std::string::npos) << r.output;
  EXPECT_EQ(run_command(cli() + " conform " + suite.string() + " --allow-failures").exit_code, 0);
}

TEST(CliErrors, ALoopThatWouldRunForeverIsOneClearError) {
  const fs::path dir = scratch() / "loop";
  fs::create_directories(dir);
  auto typed = [](onnx::ValueInfoProto* v, const std::string& name, int type, bool vector) {
    v->set_name(name);
    auto* t = v->mutable_type()->mutable_tensor_type();
    t->set_elem_type(type);
    auto* shape = t->mutable_shape();
    if (vector) shape->add_dim()->set_dim_value(2);
  };
  auto identity = [](onnx::GraphProto* g, const std::string& in, const std::string& out) {
    auto* n = g->add_node();
    n->set_op_type("Identity");
    n->add_input(in);
    n->add_output(out);
  };
  for (auto [name, trip] : std::vector<std::pair<std::string, bool>>{{"trip.onnx", true}, {"cond.onnx", false}}) {
    onnx::ModelProto mp;
    mp.set_ir_version(8);
    mp.add_opset_import()->set_version(17);
    auto* g = mp.mutable_graph();
    g->set_name("g");
    typed(g->add_input(), "x", onnx::TensorProto::FLOAT, true);
    auto* m = g->add_initializer();
    m->set_name("M");
    m->set_data_type(onnx::TensorProto::INT64);
    m->add_int64_data(int64_t(1) << 62);
    auto* c = g->add_initializer();
    c->set_name("c");
    c->set_data_type(onnx::TensorProto::BOOL);
    c->add_int32_data(1);
    auto* loop = g->add_node();
    loop->set_op_type("Loop");
    loop->add_input(trip ? "M" : "");
    loop->add_input("c");
    loop->add_input("x");
    loop->add_output("y");
    auto* a = loop->add_attribute();
    a->set_name("body");
    a->set_type(onnx::AttributeProto::GRAPH);
    auto* body = a->mutable_g();
    body->set_name("body");
    typed(body->add_input(), "i", onnx::TensorProto::INT64, false);
    typed(body->add_input(), "cond", onnx::TensorProto::BOOL, false);
    typed(body->add_input(), "x_in", onnx::TensorProto::FLOAT, true);
    identity(body, "cond", "cond_out");
    identity(body, "x_in", "x_out");
    typed(body->add_output(), "cond_out", onnx::TensorProto::BOOL, false);
    typed(body->add_output(), "x_out", onnx::TensorProto::FLOAT, true);
    typed(g->add_output(), "y", onnx::TensorProto::FLOAT, true);
    std::ofstream(dir / name, std::ios::binary) << mp.SerializeAsString();
  }
  duet::io::save_npy(duet::Tensor::zeros(duet::DType::Float32, {2}), (dir / "x.npy").string());
  expect_one_line_error(run_command(cli() + " run " + (dir / "trip.onnx").string() + " --input x=" + (dir / "x.npy").string()),
                        "over the limit");
  expect_one_line_error(run_command("DUET_MAX_LOOP_ITERATIONS=1000 " + cli() + " run " + (dir / "cond.onnx").string() +
                                    " --input x=" + (dir / "x.npy").string()),
                        "still holds after 1000 iterations");
}
