// Shapes in the IR may hold symbolic dimensions ("batch", "N") or unknown
// ones; a Tensor's shape is always concrete (std::vector<int64_t>).
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace duet {

using Dims = std::vector<int64_t>;

struct Dim {
  int64_t value = -1;   // >= 0 when known
  std::string symbol;   // set when the dimension is named but not known
  Dim() = default;
  Dim(int64_t v) : value(v) {}
  static Dim named(std::string s) { Dim d; d.symbol = std::move(s); return d; }
  bool known() const { return value >= 0; }
  bool operator==(const Dim& o) const { return value == o.value && symbol == o.symbol; }
  std::string str() const;
};

// A shape of known rank with possibly unknown dimensions, or of unknown rank.
struct Shape {
  std::vector<Dim> dims;
  bool rank_known = true;

  Shape() = default;
  Shape(std::vector<Dim> d) : dims(std::move(d)) {}
  static Shape from(const Dims& d);
  static Shape unknown_rank() { Shape s; s.rank_known = false; return s; }
  size_t rank() const { return dims.size(); }
  bool fully_known() const;
  Dims concrete() const;  // throws unless fully_known()
  std::string str() const;  // "1x3xHx640", "?" for unknown rank
  bool operator==(const Shape& o) const { return rank_known == o.rank_known && dims == o.dims; }
};

int64_t numel(const Dims& d);
std::string dims_str(const Dims& d);  // "1x3x640x640" ("scalar" for rank 0)
// Parses "1x3x640x640" (also accepts commas); "scalar" or "" is rank 0.
Dims parse_dims(const std::string& s);

}  // namespace duet
