#include "duet/io/tensor_file.h"

#include <cstring>
#include <fstream>
#include <sstream>

#include "duet/io/file.h"
#include "duet/onnx/onnx_io.h"

namespace duet::io {

namespace {

struct NpyType {
  const char* descr;
  DType dtype;
};
constexpr NpyType kNpyTypes[] = {
    {"<f4", DType::Float32}, {"<f8", DType::Float64}, {"<f2", DType::Float16}, {"|i1", DType::Int8},
    {"|u1", DType::UInt8},   {"<i2", DType::Int16},   {"<u2", DType::UInt16},  {"<i4", DType::Int32},
    {"<u4", DType::UInt32},  {"<i8", DType::Int64},   {"<u8", DType::UInt64},  {"|b1", DType::Bool},
    {"<c8", DType::Complex64}, {"<c16", DType::Complex128},
};

// Value of 'key': ... in the header dict (a Python literal).
std::string header_field(const std::string& header, const std::string& key, const std::string& path) {
  const auto k = header.find("'" + key + "'");
  DUET_CHECK(k != std::string::npos, path, ": .npy header has no '", key, "'");
  auto v = header.find(':', k);
  DUET_CHECK(v != std::string::npos, path, ": malformed .npy header");
  ++v;
  while (v < header.size() && header[v] == ' ') ++v;
  if (v < header.size() && header[v] == '(') {
    const auto e = header.find(')', v);
    DUET_CHECK(e != std::string::npos, path, ": malformed .npy shape");
    return header.substr(v, e - v + 1);
  }
  if (v < header.size() && header[v] == '\'') {
    const auto e = header.find('\'', v + 1);
    DUET_CHECK(e != std::string::npos, path, ": malformed .npy header");
    return header.substr(v + 1, e - v - 1);
  }
  auto e = header.find_first_of(",}", v);
  return header.substr(v, e - v);
}

}  // namespace

Tensor load_npy(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  DUET_CHECK(in, "file not found: ", path);
  char magic[8] = {};
  in.read(magic, 8);
  DUET_CHECK(in && std::memcmp(magic, "\x93NUMPY", 6) == 0, path, ": not a .npy file (bad magic)");
  const int major = static_cast<uint8_t>(magic[6]);
  uint32_t header_len = 0;
  if (major == 1) {
    uint8_t b[2];
    in.read(reinterpret_cast<char*>(b), 2);
    header_len = b[0] | (b[1] << 8);
  } else {
    uint8_t b[4];
    in.read(reinterpret_cast<char*>(b), 4);
    header_len = b[0] | (b[1] << 8) | (b[2] << 16) | (static_cast<uint32_t>(b[3]) << 24);
  }
  DUET_CHECK(in && header_len < (1u << 20), path, ": malformed .npy header");
  std::string header(header_len, '\0');
  in.read(header.data(), header_len);
  DUET_CHECK(in, path, ": truncated .npy header");
  const std::string descr = header_field(header, "descr", path);
  const std::string fortran = header_field(header, "fortran_order", path);
  DUET_CHECK(fortran.find("False") != std::string::npos, path, ": Fortran-order .npy arrays are not supported");
  DType dt = DType::Undefined;
  for (auto& t : kNpyTypes) if (descr == t.descr) dt = t.dtype;
  if (descr == "<b1" ) dt = DType::Bool;
  DUET_CHECK(dt != DType::Undefined, path, ": unsupported .npy dtype '", descr, "' (big-endian or object arrays?)");
  std::string shape = header_field(header, "shape", path);
  Dims dims;
  std::string cur;
  for (char c : shape) {
    if (c >= '0' && c <= '9') cur += c;
    else if (c == ',' || c == ')') {
      if (!cur.empty()) dims.push_back(std::stoll(cur));
      cur.clear();
    }
  }
  for (auto d : dims) DUET_CHECK(d >= 0 && d < (int64_t{1} << 40), path, ": bad .npy shape");
  Tensor t(dt, dims);
  in.read(static_cast<char*>(t.raw()), static_cast<std::streamsize>(t.nbytes()));
  DUET_CHECK(in.gcount() == static_cast<std::streamsize>(t.nbytes()), path, ": truncated .npy data (expected ", t.nbytes(),
             " bytes for ", t.describe(), ")");
  return t;
}

void save_npy(const Tensor& t, const std::string& path) {
  const char* descr = nullptr;
  for (auto& n : kNpyTypes) if (n.dtype == t.dtype()) descr = n.descr;
  DUET_CHECK(descr, "cannot write ", dtype_name(t.dtype()), " to .npy (NumPy has no such type); use .pb");
  std::ostringstream h;
  h << "{'descr': '" << descr << "', 'fortran_order': False, 'shape': (";
  for (size_t i = 0; i < t.rank(); ++i) h << t.dims()[i] << (t.rank() == 1 || i + 1 < t.rank() ? ", " : "");
  h << "), }";
  std::string header = h.str();
  // Pad so the data starts at a multiple of 64 bytes; the header ends in '\n'.
  const size_t total = 10 + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header += '\n';
  const uint16_t len = static_cast<uint16_t>(header.size());
  std::string bytes("\x93NUMPY\x01\x00", 8);
  bytes += static_cast<char>(len & 0xFF);
  bytes += static_cast<char>(len >> 8);
  bytes += header;
  bytes.append(static_cast<const char*>(t.raw()), t.nbytes());
  io::write_file_atomically(path, bytes, "tensor");
}

static bool is_npy(const std::string& path) {
  return path.size() >= 4 && path.compare(path.size() - 4, 4, ".npy") == 0;
}

Tensor load_tensor_file(const std::string& path) {
  return is_npy(path) ? load_npy(path) : onnx_io::load_tensor_pb(path);
}

void save_tensor_file(const Tensor& t, const std::string& name, const std::string& path) {
  if (is_npy(path)) save_npy(t, path);
  else onnx_io::save_tensor_pb(t, name, path);
}

}  // namespace duet::io
