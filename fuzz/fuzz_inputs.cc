// Fuzzes every parser a user feeds besides ONNX models (fuzz_model_loader):
// the first byte picks the parser, the rest is its input. Any input must parse
// or raise duet::Error — never crash, hang or allocate without bound.
//   0 .npy tensor file      1 .pb TensorProto        2 PNG image      3 JPEG image
//   4 device TOML           5 topology CSV           6 number format spec
//   7 precision text        8 preprocessing spec     9 accumulator spec
//  10 training checkpoint: a checkpoint of the bundled digits CNN is written
//     once; the next byte picks one of its files (checkpoint.json or a tensor),
//     the rest replaces that file, and `train --resume`'s loader reads the folder.
// Files are written to a scratch folder ($TMPDIR) because the readers open paths.
#include <unistd.h>

#include <cstddef>
#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "duet/core/error.h"
#include "duet/io/image.h"
#include "duet/io/preprocess.h"
#include "duet/io/tensor_file.h"
#include "duet/numerics/emu_gemm.h"
#include "duet/numerics/format.h"
#include "duet/numerics/precision.h"
#include "duet/onnx/onnx_io.h"
#include "duet/sim/device.h"
#include "duet/sim/topology.h"
#include "duet/train/trainer.h"

namespace {

std::string scratch(const char* ext) {
  const char* tmp = std::getenv("TMPDIR");
  return std::string(tmp && *tmp ? tmp : "/tmp") + "/duet_fuzz_" + std::to_string(::getpid()) + ext;
}

std::string as_file(const std::string& bytes, const char* ext) {
  const std::string path = scratch(ext);
  std::ofstream(path, std::ios::binary) << bytes;
  return path;
}

void write(const std::string& path, const std::string& bytes) { std::ofstream(path, std::ios::binary) << bytes; }

struct Checkpoint {
  std::shared_ptr<duet::ir::Model> model;
  std::unique_ptr<duet::train::Trainer> trainer;
  std::string dir;
  std::vector<std::pair<std::string, std::string>> files;  // name, the bytes it was saved with
};

Checkpoint& checkpoint() {
  static Checkpoint c = [] {
    Checkpoint c;
    c.model = duet::onnx_io::load_model(std::string(DUET_SOURCE_DIR) + "/data/models/digits_cnn.onnx");
    duet::train::TrainConfig config;
    config.threads = 1;
    c.trainer = std::make_unique<duet::train::Trainer>(*c.model, config);
    c.dir = scratch("_checkpoint");
    std::filesystem::remove_all(c.dir);
    c.trainer->save_checkpoint(c.dir);
    for (auto& e : std::filesystem::directory_iterator(c.dir)) {
      std::ifstream f(e.path(), std::ios::binary);
      c.files.push_back({e.path().filename().string(), std::string(std::istreambuf_iterator<char>(f), {})});
    }
    std::sort(c.files.begin(), c.files.end());
    return c;
  }();
  return c;
}

void load_checkpoint_with(const std::string& text) {
  if (text.empty()) return;
  Checkpoint& c = checkpoint();
  const auto& [name, original] = c.files[static_cast<uint8_t>(text[0]) % c.files.size()];
  write(c.dir + "/" + name, text.substr(1));
  struct Restore {
    const std::string path, bytes;
    ~Restore() { write(path, bytes); }
  } restore{c.dir + "/" + name, original};
  c.trainer->load_checkpoint(c.dir);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string text(reinterpret_cast<const char*>(data) + 1, size - 1);
  try {
    switch (data[0] % 11) {
      case 0: duet::io::load_npy(as_file(text, ".npy")); break;
      case 1: duet::onnx_io::parse_tensor_pb(text, "/nonexistent-fuzz-dir"); break;
      case 2: duet::io::load_image(as_file(text, ".png")); break;
      case 3: duet::io::load_image(as_file(text, ".jpg")); break;
      case 4: duet::sim::parse_device_toml(text, "fuzz.toml"); break;
      case 5: duet::sim::parse_topology_csv(text, "fuzz.csv"); break;
      case 6: duet::numerics::parse_format(text); break;
      case 7: duet::numerics::parse_precision(text); break;
      case 8: duet::io::Preprocess::parse(text); break;
      case 9: duet::numerics::emu::parse_accumulator(text); break;
      case 10: load_checkpoint_with(text); break;
    }
  } catch (const duet::Error&) {
  }
  return 0;
}
