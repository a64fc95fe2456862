#include "duet/core/tensor.h"

#include <cstdlib>
#include <cstring>
#include <new>
#include <sstream>

namespace duet {

namespace {
class AlignedAllocator final : public Allocator {
 public:
  std::shared_ptr<uint8_t> allocate(size_t bytes) override {
    const size_t size = ((bytes + 63) / 64) * 64 + 64;  // slack so vector loads past the end stay in bounds
    void* p = std::aligned_alloc(64, size);
    if (!p) throw std::bad_alloc();
    std::memset(p, 0, size);
    return std::shared_ptr<uint8_t>(static_cast<uint8_t*>(p), [](uint8_t* q) { std::free(q); });
  }
};
}  // namespace

Allocator& default_allocator() {
  static AlignedAllocator a;
  return a;
}

std::string Dim::str() const {
  if (known()) return std::to_string(value);
  return symbol.empty() ? "?" : symbol;
}

Shape Shape::from(const Dims& d) {
  Shape s;
  for (auto v : d) s.dims.emplace_back(v);
  return s;
}

bool Shape::fully_known() const {
  if (!rank_known) return false;
  for (auto& d : dims) if (!d.known()) return false;
  return true;
}

Dims Shape::concrete() const {
  DUET_CHECK(fully_known(), "shape ", str(), " is not fully known");
  Dims r;
  for (auto& d : dims) r.push_back(d.value);
  return r;
}

std::string Shape::str() const {
  if (!rank_known) return "?";
  if (dims.empty()) return "scalar";
  std::string s;
  for (size_t i = 0; i < dims.size(); ++i) s += (i ? "x" : "") + dims[i].str();
  return s;
}

int64_t numel(const Dims& d) {
  int64_t n = 1;
  for (auto v : d)
    if (v == 0) return 0;
  for (auto v : d)
    DUET_CHECK(!__builtin_mul_overflow(n, v, &n), "shape ", dims_str(d), " has more elements than a 64-bit count holds");
  return n;
}

std::string dims_str(const Dims& d) { return Shape::from(d).str(); }

Dims parse_dims(const std::string& s) {
  Dims d;
  if (s.empty() || s == "scalar") return d;
  std::string cur;
  for (char c : s + "x") {
    if (c == 'x' || c == ',' || c == 'X') {
      DUET_CHECK(!cur.empty(), "malformed shape '", s, "' (expected e.g. 1x3x224x224)");
      size_t pos = 0;
      int64_t v = -1;
      try { v = std::stoll(cur, &pos); } catch (...) { pos = 0; }
      DUET_CHECK(pos == cur.size() && v >= 0, "malformed shape '", s, "': '", cur, "' is not a dimension");
      d.push_back(v);
      cur.clear();
    } else {
      cur += c;
    }
  }
  numel(d);  // a shape whose element count overflows is refused here, before any product of it
  return d;
}

Tensor::Tensor(DType dtype, Dims dims, Allocator* alloc) : dtype_(dtype), dims_(std::move(dims)) {
  for (auto v : dims_) DUET_CHECK(v >= 0, "negative dimension in shape ", dims_str(dims_));
  numel_ = ::duet::numel(dims_);
  if (dtype_ == DType::String) {
    strings_ = std::make_shared<std::vector<std::string>>(numel_);
    return;
  }
  DUET_CHECK(dtype_ != DType::Undefined, "tensor of undefined type");
  int64_t bits = 0;
  DUET_CHECK(!__builtin_mul_overflow(numel_, int64_t(dtype_bits(dtype_)), &bits) && bits / 8 < (int64_t(1) << 50),
             "a ", dtype_name(dtype_), " tensor of shape ", dims_str(dims_), " would take more than a petabyte");
  try {
    buffer_ = (alloc ? *alloc : default_allocator()).allocate(nbytes());
  } catch (const std::bad_alloc&) {
    fail("out of memory for a ", dtype_name(dtype_), " tensor of shape ", dims_str(dims_), " (",
         double(nbytes()) / double(1 << 30), " GiB)");
  }
}

Tensor Tensor::zeros(DType dtype, Dims dims) {
  Tensor t(dtype, std::move(dims));
  if (t.buffer_) std::memset(t.raw(), 0, t.nbytes());
  return t;
}

std::vector<std::string>& Tensor::strings() {
  DUET_CHECK(strings_, "tensor is not a string tensor");
  return *strings_;
}
const std::vector<std::string>& Tensor::strings() const {
  DUET_CHECK(strings_, "tensor is not a string tensor");
  return *strings_;
}

Tensor Tensor::reshaped(Dims dims) const {
  Tensor t = *this;
  DUET_CHECK(duet::numel(dims) == numel_, "cannot reshape ", describe(), " to ", dims_str(dims));
  t.dims_ = std::move(dims);
  return t;
}

Tensor Tensor::clone() const {
  Tensor t(dtype_, dims_);
  if (dtype_ == DType::String) *t.strings_ = *strings_;
  else if (nbytes()) std::memcpy(t.raw(), raw(), nbytes());
  t.quant_ = quant_;
  return t;
}

double Tensor::get_double(int64_t i) const {
  if (dtype_is_subbyte(dtype_)) {
    const int32_t v = subbyte_get(*this, i);
    if (dtype_ == DType::Float4E2M1) return numerics::e2m1().decode(static_cast<uint32_t>(v) & 0xF);
    return v;
  }
  return dispatch_numeric(dtype_, [&](auto tag) -> double {
    using T = typename decltype(tag)::type;
    if constexpr (std::is_same_v<T, bool>) return data<uint8_t>()[i] != 0;
    else if constexpr (std::is_same_v<T, double>) return data<double>()[i];  // not through float
    else return static_cast<double>(static_cast<std::conditional_t<std::is_integral_v<T>, T, float>>(data<T>()[i]));
  });
}

int64_t Tensor::get_int(int64_t i) const {
  if (dtype_is_subbyte(dtype_)) return subbyte_get(*this, i);
  switch (dtype_) {
    case DType::Int64: return data<int64_t>()[i];
    case DType::Int32: return data<int32_t>()[i];
    case DType::UInt64: return static_cast<int64_t>(data<uint64_t>()[i]);
    default: return static_cast<int64_t>(get_double(i));
  }
}

std::vector<int64_t> Tensor::to_int_vector() const {
  std::vector<int64_t> v(numel_);
  for (int64_t i = 0; i < numel_; ++i) v[i] = get_int(i);
  return v;
}

Tensor Tensor::make_sequence(DType element_type, std::vector<Tensor> elements) {
  Tensor t;
  t.sequence_ = std::make_shared<const std::vector<Tensor>>(std::move(elements));
  t.sequence_elem_ = element_type;
  return t;
}

Tensor Tensor::make_none() {
  Tensor t;
  t.none_ = true;
  return t;
}

const std::vector<Tensor>& Tensor::sequence() const {
  DUET_CHECK(sequence_, "value is not a sequence");
  return *sequence_;
}

bool Tensor::same_bits(const Tensor& o) const {
  if (dtype_ != o.dtype_ || dims_ != o.dims_) return false;
  if (dtype_ == DType::String) return strings() == o.strings();
  return nbytes() == 0 || std::memcmp(raw(), o.raw(), nbytes()) == 0;
}

std::string Tensor::describe() const {
  return std::string(dtype_name(dtype_)) + "[" + dims_str(dims_) + "]";
}

int32_t subbyte_get(const Tensor& t, int64_t i) {
  const uint8_t* p = t.data<uint8_t>();
  const int bits = dtype_bits(t.dtype());
  const int per_byte = 8 / bits;
  const int shift = static_cast<int>(i % per_byte) * bits;
  int32_t v = (p[i / per_byte] >> shift) & ((1 << bits) - 1);
  if (dtype_is_signed(t.dtype()) && (v & (1 << (bits - 1)))) v -= (1 << bits);
  return v;
}

void subbyte_set(Tensor& t, int64_t i, int32_t v) {
  uint8_t* p = t.data<uint8_t>();
  const int bits = dtype_bits(t.dtype());
  const int per_byte = 8 / bits;
  const int shift = static_cast<int>(i % per_byte) * bits;
  const uint8_t mask = static_cast<uint8_t>(((1 << bits) - 1) << shift);
  p[i / per_byte] = static_cast<uint8_t>((p[i / per_byte] & ~mask) | ((static_cast<uint32_t>(v) << shift) & mask));
}

}  // namespace duet
