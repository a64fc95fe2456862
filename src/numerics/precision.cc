// Precision text form, presets and dynamic scales (see precision.h).
#include "duet/numerics/precision.h"

#include <algorithm>
#include <cmath>
#include <set>

#include "duet/core/error.h"

namespace duet::numerics {

namespace {

using emu::Scaling;

// Splits on commas outside parentheses: "x=fp(1,5,10),acc=fp32".
std::vector<std::string> split_top_level(const std::string& s) {
  std::vector<std::string> parts;
  std::string cur;
  int depth = 0;
  for (char ch : s) {
    if (ch == '(') ++depth;
    if (ch == ')') --depth;
    if (ch == ',' && depth == 0) {
      parts.push_back(cur);
      cur.clear();
    } else {
      cur += ch;
    }
  }
  parts.push_back(cur);
  return parts;
}

// `base` (a full spec) with the key=value parts `given` in place of its own:
// the text a preset with overrides, or a relative annotation over a run's
// precision, stands for. block and seed go with the scaling and rounding they
// belong to, so they leave with them.
std::string override_keys(const std::string& base, const std::vector<std::string>& given) {
  std::set<std::string> keys;
  for (const std::string& part : given) keys.insert(part.substr(0, part.find('=')));
  std::string joined;
  auto add = [&](const std::string& part) { joined += (joined.empty() ? "" : ",") + part; };
  for (const std::string& part : split_top_level(base)) {
    const std::string key = part.substr(0, part.find('='));
    const bool dependent = (key == "block" && (keys.count("x") || keys.count("w"))) || (key == "seed" && keys.count("round"));
    if (!keys.count(key) && !dependent) add(part);
  }
  for (const std::string& part : given) add(part);
  return joined;
}

Scaling parse_scaling(const std::string& s, const std::string& spec) {
  if (s == "none") return Scaling::None;
  if (s == "tensor") return Scaling::Tensor;
  if (s == "channel") return Scaling::Channel;
  if (s == "block") return Scaling::Block;
  fail("precision '", spec, "': unknown scaling '", s, "' (expected none, tensor, channel or block)");
}

// Integer formats and floats of 8 bits or fewer need a scale to use their range;
// wider floats do not.
bool narrow(const Format& f) { return !f.is_float() || f.bits() <= 8; }

void check_input_format(const Format& f, const char* which, const std::string& spec) {
  if (f.is_float()) {
    DUET_CHECK(f.fp.fits_fp32(), "precision '", spec, "': ", which, " format ", f.name, " is not exact in float32");
  } else {
    DUET_CHECK(f.int_signed, "precision '", spec, "': ", which, " format ", f.name,
               " is unsigned; dynamic symmetric scaling needs a signed integer format (int8, int4...)");
    DUET_CHECK(f.int_bits <= 24, "precision '", spec, "': ", which, " format ", f.name, " is wider than 24 bits");
  }
}

// A whole non-negative decimal integer ("32", not "32x" or "-1").
uint64_t parse_count(const std::string& value, const char* key, const std::string& spec) {
  const bool digits = !value.empty() && value.size() <= 18 &&
                      std::all_of(value.begin(), value.end(), [](char c) { return c >= '0' && c <= '9'; });
  if (!digits) fail("precision '", spec, "': ", key, " must be a non-negative integer, got '", value, "'");
  return std::stoull(value);
}

Precision preset(const char* name, const char* spec, const char* devices) {
  Precision d = parse_precision(spec);
  d.name = name;
  d.devices = devices;
  return d;
}

}  // namespace

const char* scaling_name(Scaling s) {
  switch (s) {
    case Scaling::None: return "none";
    case Scaling::Tensor: return "tensor";
    case Scaling::Channel: return "channel";
    case Scaling::Block: return "block";
  }
  return "?";
}

const char* sparsity_name(Sparsity s) { return s == Sparsity::TwoOfFour ? "2:4" : "dense"; }

std::string Precision::spec() const {
  std::string s = "x=" + x.format.name + "/" + scaling_name(x.scaling) + ",w=" + w.format.name + "/" +
                  scaling_name(w.scaling) + ",acc=" + acc_spec + ",out=" + out.name;
  if (rounding != Rounding::NearestEven) s += std::string(",round=") + rounding_name(rounding);
  if (rounding == Rounding::Stochastic) s += ",seed=" + std::to_string(seed);
  if (block > 0) s += ",block=" + std::to_string(block);
  if (sparsity != Sparsity::Dense) s += std::string(",sparsity=") + sparsity_name(sparsity);
  return s;
}

std::string Precision::str() const {
  const std::string full = spec();
  if (!name.empty() && name != "custom") return name;  // a preset, or a preset with overrides as written
  for (const Precision& p : precision_presets())
    if (p.spec() == full) return p.name;
  return full;
}

const Format& Precision::compute_format() const {
  if (weight_only()) return x.format;
  return w.format.bits() > x.format.bits() ? w.format : x.format;
}

double Precision::weight_bytes() const {
  double bytes = w.format.bits() / 8.0;
  if (w.scaling == emu::Scaling::Block && block > 0) bytes += 2.0 / block;  // one FP16 scale per block
  if (sparsity == Sparsity::TwoOfFour) bytes = 0.5 * (bytes + 0.25);        // kept half + 2-bit index each
  return bytes;
}

double Precision::activation_bytes() const { return x.format.bits() / 8.0; }

Precision parse_precision(const std::string& text) {
  const std::string spec = text;
  DUET_CHECK(!spec.empty(), "precision: empty text");
  std::vector<std::string> parts = split_top_level(spec);
  // PRESET[,key=value...]: the preset's own keys, overridden by those given.
  const Precision* base = nullptr;
  if (parts.front().find('=') == std::string::npos) {
    for (const Precision& d : precision_presets())
      if (d.name == parts.front()) base = &d;
    if (!base) {
      std::string names;
      for (const Precision& d : precision_presets()) names += (names.empty() ? "" : ", ") + d.name;
      fail("unknown precision '", parts.front(), "' (presets: ", names, "; or a spec like x=bf16,acc=fp32)");
    }
    if (parts.size() == 1) return *base;
    try {
      Precision d = parse_precision(override_keys(base->spec(), {parts.begin() + 1, parts.end()}));
      d.name = spec;
      d.devices = base->devices;
      return d;
    } catch (const Error& e) {
      fail("precision '", spec, "': ", e.what());
    }
  }
  Precision d;
  d.name = "custom";
  std::string x_spec, w_spec, acc_spec, out_spec = "fp32";
  bool have_w = false, have_acc = false;
  std::set<std::string> seen;
  for (const std::string& part : parts) {
    const size_t eq = part.find('=');
    DUET_CHECK(eq != std::string::npos && eq > 0, "precision '", spec, "': expected key=value, got '", part, "'");
    const std::string key = part.substr(0, eq), value = part.substr(eq + 1);
    DUET_CHECK(!value.empty(), "precision '", spec, "': empty value for ", key);
    DUET_CHECK(seen.insert(key).second, "precision '", spec, "': ", key, " is given twice");
    if (key == "x") {
      x_spec = value;
    } else if (key == "w") {
      w_spec = value;
      have_w = true;
    } else if (key == "acc") {
      acc_spec = value;
      have_acc = true;
    } else if (key == "out") {
      out_spec = value;
    } else if (key == "round") {
      d.rounding = parse_rounding(value);
    } else if (key == "seed") {
      d.seed = parse_count(value, "seed", spec);
    } else if (key == "block") {
      const uint64_t b = parse_count(value, "block", spec);
      DUET_CHECK(b > 0 && b <= (1u << 20), "precision '", spec, "': block must be in 1..1048576");
      d.block = static_cast<int>(b);
    } else if (key == "sparsity") {
      if (value == "2:4") d.sparsity = Sparsity::TwoOfFour;
      else DUET_CHECK(value == "dense", "precision '", spec, "': sparsity must be dense or 2:4, got '", value, "'");
    } else {
      fail("precision '", spec, "': unknown key '", key, "' (expected x, w, acc, out, round, seed, block, sparsity)");
    }
  }
  DUET_CHECK(!x_spec.empty(), "precision '", spec, "': the activation format x=... is required");
  DUET_CHECK(!seen.count("seed") || d.rounding == Rounding::Stochastic, "precision '", spec,
             "': seed applies to round=sr only");
  if (!have_w) w_spec = x_spec.substr(0, x_spec.find('/'));
  auto operand = [&](const std::string& s, bool is_x) {
    const size_t slash = s.rfind('/');
    OperandRule r;
    r.format = parse_format(s.substr(0, slash));
    check_input_format(r.format, is_x ? "x" : "w", spec);
    if (slash != std::string::npos) {
      r.scaling = parse_scaling(s.substr(slash + 1), spec);
    } else if (!is_x && !have_w && d.x.scaling == Scaling::Block) {
      r.scaling = Scaling::Block;  // w defaults to x's block scaling
    } else if (narrow(r.format)) {
      r.scaling = is_x ? Scaling::Tensor : Scaling::Channel;
    }
    return r;
  };
  d.x = operand(x_spec, true);
  d.w = operand(w_spec, false);
  DUET_CHECK(d.x.format.is_float() || !d.w.format.is_float(), "precision '", spec,
             "': integer activations need integer weights (float weights with integer activations compute nothing real)");
  DUET_CHECK(!d.weight_only() || d.w.scaling != Scaling::None, "precision '", spec,
             "': integer weights with float activations (weight-only) need scales: w=", d.w.format.name,
             "/channel or /block");
  if (!have_acc) acc_spec = d.x.format.is_float() ? "fp32" : "int32";
  d.acc_spec = acc_spec;
  d.acc = emu::parse_accumulator(acc_spec);
  DUET_CHECK(d.x.format.is_float() == (d.acc.kind == emu::AccumulatorKind::Float), "precision '", spec,
             "': integer inputs need an integer accumulator and float inputs a float one");
  d.out = parse_format(out_spec);
  DUET_CHECK(d.out.is_float() && d.out.fp.fits_fp32(), "precision '", spec, "': output format ", d.out.name,
             " must be a float format within float32");
  const bool block_scaled = d.x.scaling == Scaling::Block || d.w.scaling == Scaling::Block;
  if (block_scaled) {
    DUET_CHECK(d.block > 0, "precision '", spec, "': block scaling needs block=N");
    DUET_CHECK((d.x.scaling == Scaling::Block || d.x.scaling == Scaling::None) &&
                   (d.w.scaling == Scaling::Block || d.w.scaling == Scaling::None),
               "precision '", spec, "': block scaling on one operand cannot be combined with tensor or channel scales");
    DUET_CHECK(d.weight_only() || d.acc.chunk == 0 || d.acc.chunk == d.block, "precision '", spec, "': the accumulator promotes every ",
               d.acc.chunk, " products but the scale blocks are ", d.block, " long");
    if (!d.weight_only()) d.acc.chunk = d.block;  // weight-only: scales apply before the products
  } else {
    DUET_CHECK(d.block == 0, "precision '", spec, "': block=N applies to block scaling only");
  }
  return d;
}

bool is_relative_precision(const std::string& annotation) {
  if (annotation.empty()) return false;
  const std::vector<std::string> parts = split_top_level(annotation);
  if (parts.front().find('=') == std::string::npos) return false;  // a preset
  for (const std::string& part : parts)
    if (part.rfind("x=", 0) == 0) return false;
  return true;
}

Precision resolve_precision(const std::string& annotation, const Precision& base) {
  if (!is_relative_precision(annotation)) return parse_precision(annotation);
  Precision p = parse_precision(override_keys(base.spec(), split_top_level(annotation)));
  p.name = "custom";
  return p;
}

const std::vector<Precision>& precision_presets() {
  static const std::vector<Precision> presets = [] {
    return std::vector<Precision>{
        preset("fp32", "x=fp32,acc=fp32", "FP32 FMA in k order (this CPU's FP32 GEMM up to summation order)"),
        preset("tf32", "x=tf32,acc=fp32,round=rna",
               "NVIDIA A100/H100 TF32 tensor cores (inputs rounded as cuBLAS/CUTLASS, FP32 accumulation)"),
        preset("fp16", "x=fp16,acc=fp32", "NVIDIA T4/A10G/A100/H100 FP16 tensor cores with FP32 accumulation"),
        preset("fp16-acc16", "x=fp16,acc=fp16,out=fp16", "FP16 tensor cores with FP16 accumulation (HMMA .f16)"),
        preset("bf16", "x=bf16,acc=fp32",
               "Google TPU v4 MXU, AWS Trainium/Inferentia2, Gaudi2 MME, AVX512-BF16/AMX (BF16 in, FP32 accumulation)"),
        preset("fp8", "x=e4m3fn/tensor,w=e4m3fn/tensor,acc=hopper",
               "NVIDIA H100 FP8 tensor cores: E4M3 per-tensor scales, 22-bit (E8M13) truncating accumulator promoted to "
               "FP32 every 128 products"),
        preset("fp8-e5m2", "x=e5m2/tensor,w=e4m3fn/tensor,acc=hopper",
               "H100 FP8 with E5M2 activations (gradients' format) and E4M3 weights"),
        preset("fp8-block", "x=e4m3fn/block,w=e4m3fn/block,block=128,acc=hopper",
               "H100 FP8 with per-128 block scales along K (DeepSeek-V3's fine-grained recipe, block per row/column)"),
        preset("mxfp8", "x=e4m3fn/block,w=e4m3fn/block,block=32,acc=fp32",
               "OCP MX FP8 (E4M3, one scale per 32 values) with FP32 accumulation; scales here are not rounded to E8M0"),
        preset("int8", "x=int8/tensor,w=int8/channel,acc=int32",
               "INT8 x INT8 -> INT32: x86 VNNI, AWS Inferentia1, Google TPU v1 (8-bit), NVIDIA INT8 tensor cores"),
        preset("int8-acc16", "x=int8/tensor,w=int8/channel,acc=int16sat",
               "INT8 with a saturating 16-bit accumulator (a narrow-accumulator design point)"),
        preset("int4", "x=int4/tensor,w=int4/channel,acc=int32", "INT4 x INT4 -> INT32 (NVIDIA T4/A100 INT4 tensor cores)"),
        preset("w8a16", "x=fp16,w=int8/channel,acc=fp32",
               "INT8 weights per output channel, dequantized to FP16 for FP16 products (weight-only, LLM.int8-style serving)"),
        preset("w4a16", "x=fp16,w=int4/block,block=128,acc=fp32",
               "INT4 weights in blocks of 128 along K with FP16 scales, FP16 products (AWQ/GPTQ weight-only serving)"),
    };
  }();
  return presets;
}

std::vector<float> dynamic_scales(const Format& f, Scaling s, int block, const float* data, int64_t rows,
                                  int64_t cols, bool trans, bool is_a) {
  if (s == Scaling::None) return {};
  const double fmax = f.max_finite();
  auto at = [&](int64_t r, int64_t c) { return data[trans ? c * rows + r : r * cols + c]; };
  auto scale_of = [&](float amax) {
    const float sc = static_cast<float>(amax / fmax);
    return std::isfinite(amax) && amax > 0 && sc > 0 && std::isfinite(sc) ? sc : 1.0f;
  };
  auto amax_over = [&](int64_t r0, int64_t r1, int64_t c0, int64_t c1) {
    float a = 0;
    for (int64_t r = r0; r < r1; ++r)
      for (int64_t c = c0; c < c1; ++c) a = std::max(a, std::fabs(at(r, c)));  // NaN ignored
    return a;
  };
  std::vector<float> out;
  if (s == Scaling::Tensor) {
    out.push_back(scale_of(amax_over(0, rows, 0, cols)));
  } else if (s == Scaling::Channel) {
    if (is_a) {
      for (int64_t r = 0; r < rows; ++r) out.push_back(scale_of(amax_over(r, r + 1, 0, cols)));
    } else {
      for (int64_t c = 0; c < cols; ++c) out.push_back(scale_of(amax_over(0, rows, c, c + 1)));
    }
  } else {
    DUET_CHECK(block > 0, "dynamic_scales: block scaling needs a positive block");
    const int64_t K = is_a ? cols : rows, nblk = (K + block - 1) / block;
    if (is_a) {  // [m][kb]
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t b = 0; b < nblk; ++b)
          out.push_back(scale_of(amax_over(r, r + 1, b * block, std::min<int64_t>(K, (b + 1) * block))));
    } else {  // [kb][n]
      for (int64_t b = 0; b < nblk; ++b)
        for (int64_t c = 0; c < cols; ++c)
          out.push_back(scale_of(amax_over(b * block, std::min<int64_t>(K, (b + 1) * block), c, c + 1)));
    }
  }
  return out;
}

std::vector<float> prune_2of4(const float* data, int64_t outer, int64_t K, int64_t outer_stride, int64_t k_stride) {
  const int64_t span = std::max((outer - 1) * outer_stride + (K - 1) * k_stride + 1, int64_t(0));
  std::vector<float> out(data, data + (outer > 0 && K > 0 ? span : 0));
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t k0 = 0; k0 < K; k0 += 4) {
      const int64_t len = std::min<int64_t>(4, K - k0);
      if (len <= 2) continue;
      float* v[4];
      float mag[4];
      int order[4] = {0, 1, 2, 3};
      for (int64_t i = 0; i < len; ++i) {
        v[i] = &out[o * outer_stride + (k0 + i) * k_stride];
        mag[i] = std::isnan(*v[i]) ? INFINITY : std::fabs(*v[i]);  // NaN stays visible
      }
      std::stable_sort(order, order + len, [&](int i, int j) { return mag[i] > mag[j]; });
      for (int64_t r = 2; r < len; ++r) *v[order[r]] = 0.0f;
    }
  return out;
}

emu::GemmSpec gemm_spec(const Precision& d, int threads) {
  emu::GemmSpec g;
  g.acc = d.acc;
  g.out = d.out;
  g.threads = std::max(1, threads);
  for (auto [op, rule] : {std::pair{&g.a, &d.x}, std::pair{&g.b, &d.w}}) {
    op->format = rule->format;
    op->scaling = rule->scaling;
    op->rounding = d.rounding;
    op->seed = d.seed + (rule == &d.w ? 1 : 0);  // independent draws for the two operands
    op->block = rule->scaling == Scaling::Block ? d.block : 0;
    op->overflow = Overflow::Saturate;  // x / s can exceed max(format) by a rounding step
  }
  return g;
}

}  // namespace duet::numerics
