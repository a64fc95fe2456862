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

// The shape tuple of a .npy header, as NumPy writes it: "()", "(4,)",
// "(1, 3, 48, 320)"; anything else (a negative, a missing comma) is refused.
Dims parse_npy_shape(const std::string& shape, const std::string& path) {
  DUET_CHECK(shape.size() >= 2 && shape.front() == '(' && shape.back() == ')', path, ": malformed .npy shape '", shape, "'");
  Dims dims;
  size_t i = 1;
  const auto skip = [&] { while (i < shape.size() && shape[i] == ' ') ++i; };
  skip();
  while (shape[i] != ')') {
    const size_t start = i;
    while (i < shape.size() && shape[i] >= '0' && shape[i] <= '9') ++i;
    DUET_CHECK(i > start && i - start <= 18, path, ": malformed .npy shape '", shape, "' (dimensions are non-negative integers)");
    dims.push_back(std::stoll(shape.substr(start, i - start)));
    skip();
    if (shape[i] == ',') {
      ++i;
      skip();
    } else {
      DUET_CHECK(shape[i] == ')', path, ": malformed .npy shape '", shape, "' (dimensions are separated by commas)");
    }
  }
  DUET_CHECK(i + 1 == shape.size(), path, ": malformed .npy shape '", shape, "'");
  return dims;
}

}  // namespace

Tensor load_npy(const std::string& path) {
  const InputFile in(path, ".npy file");
  char magic[10] = {};
  DUET_CHECK(in.size() >= 10, path, ": not a .npy file (", in.size(), " bytes)");
  in.read_at(0, magic, 10);
  DUET_CHECK(std::memcmp(magic, "\x93NUMPY", 6) == 0, path, ": not a .npy file (bad magic)");
  const int major = static_cast<uint8_t>(magic[6]);
  DUET_CHECK(major >= 1 && major <= 3, path, ": .npy format version ", major, " is not one NumPy writes (1 to 3)");
  uint32_t header_len = 0;
  int64_t offset = 10;
  if (major == 1) {
    header_len = static_cast<uint8_t>(magic[8]) | (static_cast<uint8_t>(magic[9]) << 8);
  } else {
    uint8_t b[4];
    in.read_at(8, b, 4);
    header_len = b[0] | (b[1] << 8) | (b[2] << 16) | (static_cast<uint32_t>(b[3]) << 24);
    offset = 12;
  }
  DUET_CHECK(header_len < (1u << 20), path, ": malformed .npy header");
  std::string header(header_len, '\0');
  in.read_at(offset, header.data(), header_len);
  offset += header_len;
  const std::string descr = header_field(header, "descr", path);
  const std::string fortran = header_field(header, "fortran_order", path);
  DUET_CHECK(fortran.find("False") != std::string::npos, path, ": Fortran-order .npy arrays are not supported");
  DType dt = DType::Undefined;
  for (auto& t : kNpyTypes) if (descr == t.descr) dt = t.dtype;
  if (descr == "<b1" ) dt = DType::Bool;
  DUET_CHECK(dt != DType::Undefined, path, ": unsupported .npy dtype '", descr, "' (big-endian or object arrays?)");
  const Dims dims = parse_npy_shape(header_field(header, "shape", path), path);
  // The data must be there before anything is allocated for it.
  const int64_t count = numel(dims), bytes = int64_t(dtype_storage_bytes(dt, count));
  DUET_CHECK(count < (int64_t{1} << 40) && bytes <= in.size() - offset, path, ": truncated .npy data (its header says ",
             dims_str(dims), ", ", bytes, " bytes; the file holds ", in.size() - offset, ")");
  Tensor t(dt, dims);
  in.read_at(offset, t.raw(), static_cast<int64_t>(t.nbytes()));
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
