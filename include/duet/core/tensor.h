// Tensor: a typed, contiguous, 64-byte aligned array with a concrete shape.
// Storage is shared (copying a Tensor is cheap; clone() copies data). Optional
// quantization parameters describe how integer data maps to real values.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "duet/core/dtype.h"
#include "duet/core/shape.h"

namespace duet {

// Scale and zero point per tensor (axis unset, one element), per axis (one per
// slice along axis) or per block (block_size elements along axis share one).
struct QuantParams {
  std::vector<float> scale;
  std::vector<int32_t> zero_point;
  std::optional<int> axis;
  int block_size = 0;
};

// Where tensor bytes come from. The default allocator uses aligned new; the
// executor supplies a pooling allocator so buffers are reused by liveness.
class Allocator {
 public:
  virtual ~Allocator() = default;
  virtual std::shared_ptr<uint8_t> allocate(size_t bytes) = 0;
};
Allocator& default_allocator();

class Tensor {
 public:
  Tensor() = default;
  Tensor(DType dtype, Dims dims, Allocator* alloc = nullptr);  // uninitialized storage (zeroed for new pages)

  static Tensor zeros(DType dtype, Dims dims);
  template <typename T>
  static Tensor from_vector(const std::vector<T>& values, Dims dims) {
    Tensor t(dtype_of<T>::value, std::move(dims));
    for (size_t i = 0; i < values.size(); ++i) t.data<T>()[i] = values[i];
    return t;
  }
  template <typename T>
  static Tensor scalar(T v) { return from_vector<T>({v}, {}); }

  bool defined() const { return dtype_ != DType::Undefined || sequence_ || none_; }
  DType dtype() const { return dtype_; }
  const Dims& dims() const { return dims_; }
  size_t rank() const { return dims_.size(); }
  int64_t dim(int i) const { return dims_.at(i < 0 ? i + dims_.size() : i); }
  int64_t numel() const { return numel_; }
  size_t nbytes() const { return dtype_storage_bytes(dtype_, numel_); }

  void* raw() { return buffer_.get(); }
  const void* raw() const { return buffer_.get(); }
  template <typename T> T* data() { return reinterpret_cast<T*>(buffer_.get()); }
  template <typename T> const T* data() const { return reinterpret_cast<const T*>(buffer_.get()); }
  // Strings (DType::String) live outside the byte buffer.
  std::vector<std::string>& strings();
  const std::vector<std::string>& strings() const;

  // Same storage, new shape (element count must match).
  Tensor reshaped(Dims dims) const;
  Tensor clone() const;
  // Element i as double / int64 (any numeric type, sub-byte included).
  double get_double(int64_t i) const;
  int64_t get_int(int64_t i) const;
  // Values of a rank-0/1 integer tensor (shape inputs, axes, pads...).
  std::vector<int64_t> to_int_vector() const;

  const QuantParams* quant() const { return quant_.get(); }
  void set_quant(QuantParams q) { quant_ = std::make_shared<QuantParams>(std::move(q)); }

  // ONNX sequence and optional values travel through kernels as Tensors too:
  // a sequence holds its element tensors; an empty optional holds nothing.
  static Tensor make_sequence(DType element_type, std::vector<Tensor> elements);
  static Tensor make_none();
  bool is_sequence() const { return sequence_ != nullptr; }
  bool is_none() const { return none_; }
  const std::vector<Tensor>& sequence() const;
  DType sequence_element_type() const { return sequence_elem_; }

  bool same_bits(const Tensor& other) const;  // dtype, shape and bytes identical
  std::string describe() const;               // "float32[1x3x48x192]"

  // Where the bytes live: -1 host memory (what the reference kernels and the
  // cpu backend read), else the memory of the device backend with that id
  // (runtime::Backend::device_id), which only that backend reads; the session
  // moves values across at partition boundaries (Backend::to_host / to_device).
  int device() const { return device_; }
  bool on_host() const { return device_ < 0; }
  void set_device(int device) { device_ = device; }

 private:
  DType dtype_ = DType::Undefined;
  Dims dims_;
  int64_t numel_ = 0;
  std::shared_ptr<uint8_t> buffer_;
  std::shared_ptr<std::vector<std::string>> strings_;
  std::shared_ptr<QuantParams> quant_;
  std::shared_ptr<const std::vector<Tensor>> sequence_;
  DType sequence_elem_ = DType::Undefined;
  bool none_ = false;
  int device_ = -1;
};

// Packed sub-byte access (int4/uint4/float4e2m1: two per byte, low nibble
// first; int2/uint2: four per byte).
int32_t subbyte_get(const Tensor& t, int64_t i);   // raw field value, sign-extended for int4/int2
void subbyte_set(Tensor& t, int64_t i, int32_t v);  // stores the low bits of v

}  // namespace duet
