#include <gtest/gtest.h>
#include <onnx/onnx_pb.h>

#include <filesystem>
#include <fstream>

#include "duet/io/tensor_file.h"
#include "duet/onnx/onnx_io.h"
#include "test_util.h"

using namespace duet;
namespace fs = std::filesystem;

namespace {
std::string bundled_model() { return testutil::source_dir() + "/data/models/ppocr_cls_mobile_v2.0.onnx"; }

fs::path temp_dir(const std::string& name) {
  fs::path p = fs::temp_directory_path() / ("duet_test_" + name + "_" + std::to_string(::getpid()));
  fs::create_directories(p);
  return p;
}
}  // namespace

TEST(OnnxIO, ExportRoundTripsTheBundledModelBitExactly) {
  auto model = onnx_io::load_model(bundled_model());
  const std::string bytes = onnx_io::serialize_model(*model);
  auto again = onnx_io::parse_model(bytes.data(), bytes.size());
  ASSERT_EQ(again->graph->nodes.size(), model->graph->nodes.size());
  ASSERT_EQ(again->graph->initializers.size(), model->graph->initializers.size());
  for (auto& [name, t] : model->graph->initializers) {
    EXPECT_TRUE(again->graph->initializers.at(name).same_bits(t)) << name;
  }
  // Serializing the re-imported model gives the same bytes: export is stable.
  EXPECT_EQ(onnx_io::serialize_model(*again), bytes);
}

TEST(OnnxIO, ExportedModelPassesOnnxChecker) {
  if (testutil::run_command("python3 -c 'import onnx'").exit_code != 0) GTEST_SKIP() << "python3 onnx (checker) is not installed";
  auto model = onnx_io::load_model(bundled_model());
  const fs::path dir = temp_dir("checker");
  const std::string out = (dir / "exported.onnx").string();
  onnx_io::save_model(*model, out);
  auto r = testutil::run_command("python3 -c \"import onnx; onnx.checker.check_model(onnx.load('" + out +
                                "'), full_check=True); print('checker ok')\"");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("checker ok"), std::string::npos) << r.output;
  fs::remove_all(dir);
}

TEST(OnnxIO, ReadsExternalDataRelativeToTheModel) {
  const fs::path dir = temp_dir("external");
  std::vector<float> weights = {1.5f, -2.0f, 3.25f, 4.0f};
  {
    std::ofstream f(dir / "weights.bin", std::ios::binary);
    const char pad[8] = {};
    f.write(pad, 8);  // data starts at offset 8
    f.write(reinterpret_cast<const char*>(weights.data()), 16);
  }
  onnx::ModelProto mp;
  mp.set_ir_version(8);
  mp.add_opset_import()->set_version(17);
  auto* g = mp.mutable_graph();
  g->set_name("g");
  auto* init = g->add_initializer();
  init->set_name("w");
  init->set_data_type(onnx::TensorProto::FLOAT);
  init->add_dims(2);
  init->add_dims(2);
  init->set_data_location(onnx::TensorProto::EXTERNAL);
  auto add_kv = [&](const char* k, const char* v) {
    auto* e = init->add_external_data();
    e->set_key(k);
    e->set_value(v);
  };
  add_kv("location", "weights.bin");
  add_kv("offset", "8");
  add_kv("length", "16");
  auto* out = g->add_output();
  out->set_name("w");
  {
    std::ofstream f(dir / "model.onnx", std::ios::binary);
    f << mp.SerializeAsString();
  }
  auto model = onnx_io::load_model((dir / "model.onnx").string());
  const Tensor& w = model->graph->initializers.at("w");
  ASSERT_EQ(w.dims(), (Dims{2, 2}));
  for (int i = 0; i < 4; ++i) EXPECT_EQ(w.data<float>()[i], weights[i]);
  // A location that leaves the model's folder is refused.
  add_kv("location", "../escape.bin");
  init->mutable_external_data()->DeleteSubrange(0, 3);
  {
    std::ofstream f(dir / "bad.onnx", std::ios::binary);
    f << mp.SerializeAsString();
  }
  EXPECT_THROW(onnx_io::load_model((dir / "bad.onnx").string()), Error);
  // So is a symlink beside the model that leads out of its folder...
  const fs::path outside = temp_dir("external_outside");
  fs::copy_file(dir / "weights.bin", outside / "secret.bin");
  fs::create_symlink(outside / "secret.bin", dir / "link.bin");
  auto save_with = [&](const char* location, const char* file) {
    init->mutable_external_data()->Clear();
    add_kv("location", location);
    add_kv("offset", "8");
    add_kv("length", "16");
    std::ofstream f(dir / file, std::ios::binary);
    f << mp.SerializeAsString();
  };
  save_with("link.bin", "linked.onnx");
  try {
    onnx_io::load_model((dir / "linked.onnx").string());
    ADD_FAILURE() << "a symlink out of the model's folder was followed";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("leads out of the model's folder"), std::string::npos) << e.what();
  }
  // ...while a name with two dots in it is just a name.
  fs::copy_file(dir / "weights.bin", dir / "w..bin");
  save_with("w..bin", "dots.onnx");
  EXPECT_EQ(onnx_io::load_model((dir / "dots.onnx").string())->graph->initializers.at("w").data<float>()[2], 3.25f);
  fs::remove_all(dir);
  fs::remove_all(outside);
}

TEST(OnnxIO, TypedFieldsAndPackedInt4Decode) {
  onnx::TensorProto p;
  p.set_data_type(22);  // INT4 (newer than this libonnx's enum)
  p.add_dims(3);
  p.add_int32_data(0x78);  // elements 0 (-8) and 1 (7)
  p.add_int32_data(0x0F);  // element 2 (-1)
  Tensor t = onnx_io::parse_tensor_pb(p.SerializeAsString());
  EXPECT_EQ(subbyte_get(t, 0), -8);
  EXPECT_EQ(subbyte_get(t, 1), 7);
  EXPECT_EQ(subbyte_get(t, 2), -1);

  onnx::TensorProto h;
  h.set_data_type(onnx::TensorProto::FLOAT16);
  h.add_dims(1);
  h.add_int32_data(0x3C00);  // 1.0
  EXPECT_EQ(onnx_io::parse_tensor_pb(h.SerializeAsString()).get_double(0), 1.0);

  onnx::TensorProto bad;
  bad.set_data_type(onnx::TensorProto::FLOAT);
  bad.add_dims(4);
  bad.add_float_data(1.0f);
  EXPECT_THROW(onnx_io::parse_tensor_pb(bad.SerializeAsString()), Error);
}

TEST(OnnxIO, AHugeShapeOverMissingDataIsAnErrorNotAnAllocation) {
  // The fuzzer's find: a header declaring 2^38 floats over no data. The loader must name the missing data
  // (duet::Error) before it reserves a terabyte (std::bad_alloc, or an out-of-memory abort under ASan).
  for (bool raw : {false, true}) {
    onnx::TensorProto p;
    p.set_name("huge");
    p.set_data_type(onnx::TensorProto::FLOAT);
    p.add_dims(int64_t{1} << 19);
    p.add_dims(int64_t{1} << 19);
    if (raw) p.set_raw_data(std::string(16, '\0'));
    try {
      onnx_io::parse_tensor_pb(p.SerializeAsString());
      ADD_FAILURE() << "no error";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("tensor 'huge'"), std::string::npos) << e.what();
    }
  }
  onnx::TensorProto ext;
  ext.set_name("w");
  ext.set_data_type(onnx::TensorProto::FLOAT);
  ext.set_data_location(onnx::TensorProto::EXTERNAL);
  auto* kv = ext.add_external_data();
  kv->set_key("offset");
  kv->set_value("eight");
  EXPECT_THROW(onnx_io::parse_tensor_pb(ext.SerializeAsString()), Error);
}

TEST(TensorFile, NpyRoundTrip) {
  const fs::path dir = temp_dir("npy");
  Tensor t = Tensor::from_vector<float>({1, 2, 3, 4, 5, 6}, {2, 3});
  io::save_npy(t, (dir / "a.npy").string());
  Tensor back = io::load_npy((dir / "a.npy").string());
  EXPECT_TRUE(back.same_bits(t));
  if (testutil::run_command("python3 -c 'import numpy'").exit_code == 0) {
    auto r = testutil::run_command("python3 -c \"import numpy as np; a=np.load('" + (dir / "a.npy").string() +
                                  "'); print(a.shape, a.dtype, a.sum())\"");
    EXPECT_NE(r.output.find("(2, 3) float32 21.0"), std::string::npos) << r.output;
  }
  fs::remove_all(dir);
}

TEST(OnnxIO, NodeArityComesFromTheOnnxSchemas) {
  EXPECT_EQ(onnx_io::arity_problem("", "MatMul", 13, 2, 1), "");
  EXPECT_EQ(onnx_io::arity_problem("", "MatMul", 13, 3, 1), "has 3 inputs, but MatMul-13 takes 2 inputs");
  EXPECT_EQ(onnx_io::arity_problem("", "Conv", 11, 1, 1), "has 1 input, but Conv-11 takes 2 to 3 inputs");
  EXPECT_EQ(onnx_io::arity_problem("ai.onnx", "Concat", 13, 0, 1), "has 0 inputs, but Concat-13 takes at least 1 input");
  EXPECT_EQ(onnx_io::arity_problem("", "Relu", 14, 1, 0), "has 0 outputs, but Relu-14 gives 1 output");
  // Optional inputs count by position, as ONNX writes them (an empty name holds the place).
  EXPECT_EQ(onnx_io::arity_problem("", "Resize", 13, 3, 1), "");
  // Opsets past what this machine's schema library knows are held to its newest schema's lower
  // bounds (later versions add optional inputs); Duet's own domain is not judged here.
  EXPECT_EQ(onnx_io::arity_problem("", "Pad", 28, 4, 1), "");
  EXPECT_EQ(onnx_io::arity_problem("", "LSTM", 22, 2, 1), "has 2 inputs, but LSTM takes at least 3");
  EXPECT_EQ(onnx_io::arity_problem("", "Compress", 28, 0, 1), "has 0 inputs, but Compress takes at least 2");
  EXPECT_EQ(onnx_io::arity_problem("", "Compress", 1, 2, 1), "Compress is not part of opset 1 (it first appears in opset 9)");
  EXPECT_EQ(onnx_io::arity_problem("", "OptionalHasElement", 18, 0, 1), "");  // its input became optional in 18
  EXPECT_EQ(onnx_io::arity_problem("com.duet", "FusedConv", 1, 7, 1), "");
}

TEST(OnnxIo, NodeAnnotationsSurviveSaveAndLoad) {
  auto model = onnx_io::load_model(std::string(DUET_SOURCE_DIR) + "/data/models/digits_cnn.onnx");
  ir::Node* conv = nullptr;
  for (auto& n : model->graph->nodes)
    if (n->op_type == "Conv" && !n->name.empty()) conv = n.get();
  ASSERT_NE(conv, nullptr);
  conv->annotations["precision"] = "int8,sparsity=2:4";
  const std::string path = testing::TempDir() + "/annotated.onnx";
  onnx_io::save_model(*model, path);
  auto back = onnx_io::load_model(path);
  int annotated = 0;
  for (auto& n : back->graph->nodes) {
    if (n->name == conv->name) EXPECT_EQ(n->annotations.at("precision"), "int8,sparsity=2:4");
    annotated += n->annotations.count("precision");
  }
  EXPECT_EQ(annotated, 1);
  // The carrier entry is not kept as ordinary metadata (a second save writes it once).
  for (auto& [k, v] : back->metadata_props) EXPECT_NE(k.rfind(onnx_io::kAnnotationPrefix, 0), 0u) << k;
}

TEST(OnnxIo, CloneSharingInitializersCopiesTheStructureNotTheWeights) {
  auto model = onnx_io::load_model(std::string(DUET_SOURCE_DIR) + "/data/models/digits_cnn.onnx");
  model->graph->nodes.front()->annotations["precision"] = "bf16";
  auto copy = ir::clone_sharing_initializers(*model);
  ir::verify(*copy->graph);
  ASSERT_EQ(copy->graph->nodes.size(), model->graph->nodes.size());
  EXPECT_EQ(copy->graph->nodes.front()->annotations.at("precision"), "bf16");
  EXPECT_EQ(onnx_io::serialize_model(*copy), onnx_io::serialize_model(*model));  // the same model...
  for (auto& [name, t] : model->graph->initializers) EXPECT_EQ(copy->graph->initializers.at(name).raw(), t.raw());  // ...sharing weights
  copy->graph->nodes.front()->op_type = "Changed";  // structure is its own
  EXPECT_NE(model->graph->nodes.front()->op_type, "Changed");
  for (auto& n : copy->graph->nodes)
    for (auto* v : n->outputs) EXPECT_EQ(v->producer, n.get());
}
