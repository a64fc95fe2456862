// Fuzzes every parser a user feeds besides ONNX models (fuzz_model_loader):
// the first byte picks the parser, the rest is its input. Any input must parse
// or raise duet::Error — never crash, hang or allocate without bound.
//   0 .npy tensor file      1 .pb TensorProto        2 PNG image      3 JPEG image
//   4 device TOML           5 topology CSV           6 number format spec
//   7 precision text        8 preprocessing spec     9 accumulator spec
// Files are written to a scratch folder ($TMPDIR) because the readers open paths.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <fstream>
#include <string>

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

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string text(reinterpret_cast<const char*>(data) + 1, size - 1);
  try {
    switch (data[0] % 10) {
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
    }
  } catch (const duet::Error&) {
  }
  return 0;
}
