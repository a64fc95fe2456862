#include "duet/numerics/format.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <limits>

#include "duet/core/error.h"

namespace duet::numerics {

namespace {

Format float_format(std::string name, std::string description, const Minifloat& mf,
                    Overflow default_overflow = Overflow::Infinity) {
  Format f;
  f.name = std::move(name);
  f.description = std::move(description);
  f.kind = FormatKind::Float;
  f.fp = mf;
  f.default_overflow = mf.specials == Specials::NoNaN ? Overflow::Saturate : default_overflow;
  return f;
}

Format int_format(int bits, bool is_signed) {
  Format f;
  f.name = (is_signed ? "int" : "uint") + std::to_string(bits);
  f.description = std::string(is_signed ? "signed" : "unsigned") + " " + std::to_string(bits) + "-bit integer" +
                  (bits == 4 ? " (packed two per byte, low nibble first)" : "");
  f.kind = FormatKind::Integer;
  f.int_bits = bits;
  f.int_signed = is_signed;
  f.default_overflow = Overflow::Saturate;
  return f;
}

std::string strip_spaces(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (!std::isspace(static_cast<unsigned char>(c))) out += c;
  }
  return out;
}

int parse_int(const std::string& spec, const std::string& text) {
  DUET_CHECK(!text.empty() && text.size() < 6, "format '", spec, "': expected a small integer, got '", text, "'");
  size_t i = 0;
  if (text[0] == '-') i = 1;
  DUET_CHECK(i < text.size(), "format '", spec, "': expected an integer, got '", text, "'");
  for (; i < text.size(); ++i) {
    DUET_CHECK(std::isdigit(static_cast<unsigned char>(text[i])), "format '", spec, "': expected an integer, got '", text, "'");
  }
  return std::stoi(text);
}

Format make_float_spec(const std::string& spec, int e, int m, int bias, Specials specials, bool saturate) {
  DUET_CHECK(e >= 1 && e <= 11, "format '", spec, "': exponent bits must be 1..11, got ", e);
  DUET_CHECK(m >= 1 && m <= 23, "format '", spec, "': mantissa bits must be 1..23, got ", m);
  DUET_CHECK(1 + e + m <= 32, "format '", spec, "': at most 32 bits in all");
  DUET_CHECK(!(specials == Specials::IEEE && e < 2), "format '", spec, "': IEEE specials need at least 2 exponent bits");
  DUET_CHECK(std::abs(bias) < 4096, "format '", spec, "': bias out of range");
  return float_format(spec, "user-defined: 1 sign, " + std::to_string(e) + " exponent, " + std::to_string(m) +
                                " mantissa bits, bias " + std::to_string(bias),
                      Minifloat{spec, e, m, bias, specials}, saturate ? Overflow::Saturate : Overflow::Infinity);
}

bool parse_specials_word(const std::string& w, Specials& specials, bool& saturate) {
  if (w == "ieee") specials = Specials::IEEE;
  else if (w == "fn") specials = Specials::FiniteNaN;
  else if (w == "fnuz") specials = Specials::FNUZ;
  else if (w == "nonan") specials = Specials::NoNaN;
  else if (w == "sat") saturate = true;
  else return false;
  return true;
}

// fp(1,5,10[,opts]) or fp(e=4,m=3,bias=7,fn,sat)
Format parse_fp_call(const std::string& spec, const std::string& args) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (true) {
    const size_t comma = args.find(',', start);
    parts.push_back(args.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  int e = -1, m = -1, bias = INT32_MIN;
  Specials specials = Specials::IEEE;
  bool saturate = false;
  size_t positional = 0;
  for (const auto& p : parts) {
    const size_t eq = p.find('=');
    if (eq != std::string::npos) {
      const std::string key = p.substr(0, eq);
      const int value = parse_int(spec, p.substr(eq + 1));
      if (key == "e") e = value;
      else if (key == "m") m = value;
      else if (key == "bias") bias = value;
      else if (key == "s") DUET_CHECK(value == 1, "format '", spec, "': only one sign bit is supported");
      else fail("format '", spec, "': unknown key '", key, "' (expected e, m, bias)");
    } else if (!p.empty() && (std::isdigit(static_cast<unsigned char>(p[0])) || p[0] == '-')) {
      const int value = parse_int(spec, p);
      DUET_CHECK(positional < 3, "format '", spec, "': at most three positional numbers (sign, exponent, mantissa bits)");
      if (positional == 0) DUET_CHECK(value == 1, "format '", spec, "': the first number is the sign bit count and must be 1");
      if (positional == 1) e = value;
      if (positional == 2) m = value;
      ++positional;
    } else {
      DUET_CHECK(parse_specials_word(p, specials, saturate), "format '", spec, "': unknown option '", p,
                 "' (expected ieee, fn, fnuz, nonan, sat or key=value)");
    }
  }
  DUET_CHECK(e >= 0 && m >= 0, "format '", spec, "': needs exponent and mantissa bits, e.g. fp(1,5,10) or fp(e=4,m=3)");
  // The default bias after the range checks' inputs are known sane (e = 0 would shift by -1; found by fuzzing).
  if (bias == INT32_MIN) bias = e >= 1 ? (1 << (std::min(e, 11) - 1)) - 1 : 0;
  return make_float_spec(spec, e, m, bias, specials, saturate);
}

}  // namespace

int Format::bits() const { return is_float() ? fp.total_bits() : int_bits; }

double Format::max_finite() const {
  if (is_float()) return fp.max_finite();
  return int_signed ? std::ldexp(1.0, int_bits - 1) - 1 : std::ldexp(1.0, int_bits) - 1;
}

double Format::lowest() const {
  if (is_float()) return fp.specials == Specials::ExponentOnly ? fp.min_normal() : -fp.max_finite();
  return int_signed ? -std::ldexp(1.0, int_bits - 1) : 0.0;
}

double Format::min_normal() const { return is_float() ? fp.min_normal() : 1.0; }
double Format::min_subnormal() const { return is_float() ? fp.min_subnormal() : 1.0; }
double Format::epsilon() const { return is_float() ? fp.epsilon() : 1.0; }
bool Format::has_infinity() const { return is_float() && fp.has_infinity(); }
bool Format::has_nan() const { return is_float() && fp.has_nan(); }

uint32_t Format::encode(float x, Rounding rounding, Overflow overflow, uint64_t random_bits) const {
  if (is_float()) return fp.encode(x, rounding, overflow, random_bits);
  if (std::isnan(x)) return 0;
  const double v = x;
  double r = std::floor(v);
  const double frac = v - r;  // exact: |v| < 2^24 or v is an integer
  switch (rounding) {
    case Rounding::NearestEven:
      if (frac > 0.5 || (frac == 0.5 && std::fmod(r, 2.0) != 0.0)) r += 1;
      break;
    case Rounding::NearestAway:
      if (frac > 0.5 || (frac == 0.5 && v > 0)) r += 1;
      break;
    case Rounding::TowardZero:
      if (frac != 0 && v < 0) r += 1;
      break;
    case Rounding::Stochastic:
      if (static_cast<double>(random_bits >> 11) * 0x1p-53 < frac) r += 1;
      break;
  }
  r = std::clamp(r, lowest(), max_finite());
  const int64_t i = static_cast<int64_t>(r);
  const uint64_t mask = int_bits == 32 ? 0xFFFFFFFFull : ((uint64_t{1} << int_bits) - 1);
  return static_cast<uint32_t>(static_cast<uint64_t>(i) & mask);
}

double Format::decode(uint32_t bits) const {
  if (is_float()) return fp.decode_double(bits);
  const uint64_t mask = int_bits == 32 ? 0xFFFFFFFFull : ((uint64_t{1} << int_bits) - 1);
  const uint64_t u = bits & mask;
  if (int_signed && (u >> (int_bits - 1)) != 0) return static_cast<double>(static_cast<int64_t>(u) - static_cast<int64_t>(mask + 1));
  return static_cast<double>(u);
}

std::string Format::bit_fields(uint32_t bits) const {
  auto binary = [&](uint32_t v, int n) {
    std::string s;
    for (int i = n - 1; i >= 0; --i) s += ((v >> i) & 1) ? '1' : '0';
    return s;
  };
  if (!is_float()) return binary(bits, int_bits);
  if (fp.specials == Specials::ExponentOnly) return binary(bits, fp.exponent_bits);
  const int m = fp.mantissa_bits, e = fp.exponent_bits;
  return binary(bits >> (e + m), 1) + " " + binary(bits >> m, e) + " " + binary(bits, m);
}

const std::vector<Format>& named_formats() {
  static const std::vector<Format> formats = [] {
    std::vector<Format> f;
    f.push_back(float_format("fp32", "IEEE binary32", fp32()));
    f.push_back(float_format("tf32", "NVIDIA TensorFloat-32 (1-8-10), stored in 19 bits", tf32()));
    f.push_back(float_format("fp16", "IEEE binary16", fp16()));
    f.push_back(float_format("bf16", "bfloat16 (1-8-7)", bf16()));
    f.push_back(float_format("e4m3fn", "OCP FP8 E4M3: no infinity, one NaN per sign, max 448", e4m3fn()));
    f.push_back(float_format("e4m3fnuz", "FP8 E4M3 FNUZ (bias 8): no infinity, no -0, NaN is 0x80", e4m3fnuz()));
    f.push_back(float_format("e5m2", "OCP FP8 E5M2: IEEE-like, max 57344", e5m2()));
    f.push_back(float_format("e5m2fnuz", "FP8 E5M2 FNUZ (bias 16): no infinity, no -0, NaN is 0x80", e5m2fnuz()));
    f.push_back(float_format("e2m1", "OCP FP4 E2M1: no infinity or NaN, max 6, always saturates", e2m1()));
    f.push_back(float_format("e8m0", "OCP MX scale E8M0: unsigned powers of two 2^-127..2^127, 0xFF is NaN", e8m0()));
    for (int bits : {4, 8, 16, 32}) {
      f.push_back(int_format(bits, true));
      f.push_back(int_format(bits, false));
    }
    return f;
  }();
  return formats;
}

const Format* find_format(std::string_view name) {
  static const std::pair<std::string_view, std::string_view> aliases[] = {
      {"float32", "fp32"}, {"float", "fp32"}, {"float16", "fp16"}, {"half", "fp16"}, {"bfloat16", "bf16"},
      {"float8e4m3fn", "e4m3fn"}, {"float8e4m3fnuz", "e4m3fnuz"}, {"float8e5m2", "e5m2"},
      {"float8e5m2fnuz", "e5m2fnuz"}, {"float4e2m1", "e2m1"}, {"float8e8m0", "e8m0"}};
  for (auto [alias, target] : aliases) {
    if (name == alias) name = target;
  }
  for (const auto& f : named_formats()) {
    if (f.name == name) return &f;
  }
  return nullptr;
}

Format parse_format(const std::string& raw) {
  const std::string spec = strip_spaces(raw);
  DUET_CHECK(!spec.empty(), "empty format spec");
  if (const Format* f = find_format(spec)) return *f;
  auto call_args = [&](const std::string& head) -> std::string {
    DUET_CHECK(spec.back() == ')', "format '", spec, "': missing ')'");
    return spec.substr(head.size(), spec.size() - head.size() - 1);
  };
  auto int_spec = [&](const std::string& digits, bool is_signed) {
    const int bits = parse_int(spec, digits);
    DUET_CHECK(bits >= 2 && bits <= 32, "format '", spec, "': integer width must be 2..32, got ", bits);
    Format f = int_format(bits, is_signed);
    return f;
  };
  if (spec.rfind("fp(", 0) == 0) return parse_fp_call(spec, call_args("fp("));
  if (spec.rfind("int(", 0) == 0) return int_spec(call_args("int("), true);
  if (spec.rfind("uint(", 0) == 0) return int_spec(call_args("uint("), false);
  if (spec.rfind("uint", 0) == 0) return int_spec(spec.substr(4), false);
  if (spec.rfind("int", 0) == 0) return int_spec(spec.substr(3), true);
  // eXmY[fn|fnuz]
  if (spec[0] == 'e') {
    const size_t mpos = spec.find('m');
    if (mpos != std::string::npos && mpos > 1) {
      size_t end = mpos + 1;
      while (end < spec.size() && std::isdigit(static_cast<unsigned char>(spec[end]))) ++end;
      const int e = parse_int(spec, spec.substr(1, mpos - 1));
      const int m = parse_int(spec, spec.substr(mpos + 1, end - mpos - 1));
      Specials specials = Specials::IEEE;
      bool saturate = false;
      const std::string suffix = spec.substr(end);
      DUET_CHECK(suffix.empty() || ((suffix == "fn" || suffix == "fnuz") && parse_specials_word(suffix, specials, saturate)),
                 "format '", spec, "': unknown suffix '", suffix, "' (expected fn or fnuz)");
      DUET_CHECK(e >= 1 && e <= 11, "format '", spec, "': exponent bits must be 1..11");
      int bias = (1 << (e - 1)) - 1;
      if (specials == Specials::FNUZ) bias += 1;  // FNUZ convention (E4M3FNUZ, E5M2FNUZ)
      return make_float_spec(spec, e, m, bias, specials, saturate);
    }
  }
  fail("unknown format '", spec, "' (try e4m3fn, bf16, fp(1,5,10), fp(e=4,m=3,bias=7,fn,sat) or int(12))");
}

}  // namespace duet::numerics
