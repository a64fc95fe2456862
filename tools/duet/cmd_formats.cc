// duet formats [--json] [--spec SPEC...]: the number formats and their properties.
// duet formats convert --to FORMAT [--rounding MODE] [--overflow MODE] VALUE...:
// encode values (first rounded to float32) and show the bits and decoded values.
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdio>
#include <iostream>
#include <memory>

#include "commands.h"
#include "duet/core/error.h"
#include "duet/numerics/format.h"

namespace duet::cli {

namespace {

using numerics::Format;

std::string number(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}

// JSON has no inf/nan: write them as strings.
nlohmann::json json_number(double v) {
  if (std::isfinite(v)) return v;
  return number(v);
}

std::string hex_bits(uint32_t bits, int width) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%0*X", (width + 3) / 4, bits);
  return buf;
}

const char* specials_text(const Format& f) {
  if (!f.is_float()) return "-";
  switch (f.fp.specials) {
    case numerics::Specials::IEEE: return "inf,nan";
    case numerics::Specials::FiniteNaN: return "nan";
    case numerics::Specials::FNUZ: return "nan(0x80..)";
    case numerics::Specials::NoNaN: return "none";
    case numerics::Specials::ExponentOnly: return "nan(0xFF)";
  }
  return "?";
}

nlohmann::json format_json(const Format& f) {
  nlohmann::json j = {{"name", f.name},
                      {"kind", f.is_float() ? "float" : "integer"},
                      {"bits", f.bits()},
                      {"max", json_number(f.max_finite())},
                      {"lowest", json_number(f.lowest())},
                      {"min_normal", json_number(f.min_normal())},
                      {"min_subnormal", json_number(f.min_subnormal())},
                      {"epsilon", json_number(f.epsilon())},
                      {"has_infinity", f.has_infinity()},
                      {"has_nan", f.has_nan()},
                      {"default_overflow", numerics::overflow_name(f.default_overflow)},
                      {"description", f.description}};
  if (f.is_float()) {
    j["exponent_bits"] = f.fp.exponent_bits;
    j["mantissa_bits"] = f.fp.mantissa_bits;
    j["bias"] = f.fp.bias;
  } else {
    j["signed"] = f.int_signed;
  }
  return j;
}

int list_formats(const std::vector<std::string>& specs, bool json) {
  std::vector<Format> formats = numerics::named_formats();
  for (const auto& s : specs) formats.push_back(numerics::parse_format(s));
  if (json) {
    nlohmann::json j = nlohmann::json::array();
    for (const auto& f : formats) j.push_back(format_json(f));
    print_json(j, 1);
    return 0;
  }
  std::printf("%-22s %4s %5s %14s %14s %14s %12s  %s\n", "format", "bits", "e/m", "max", "min normal", "min subnormal",
              "epsilon", "specials");
  for (const auto& f : formats) {
    const std::string em = f.is_float() ? std::to_string(f.fp.exponent_bits) + "/" + std::to_string(f.fp.mantissa_bits) : "-";
    std::printf("%-22s %4d %5s %14s %14s %14s %12s  %s\n", f.name.c_str(), f.bits(), em.c_str(),
                number(f.max_finite()).c_str(), number(f.min_normal()).c_str(), number(f.min_subnormal()).c_str(),
                number(f.epsilon()).c_str(), specials_text(f));
  }
  return 0;
}

double parse_value(const std::string& text) {
  const char* begin = text.c_str();
  char* end = nullptr;
  const double v = std::strtod(begin, &end);
  DUET_CHECK(end != begin && *end == '\0', "not a number: '", text, "'");
  return v;
}

struct ConvertOptions {
  std::string to;
  std::string rounding = "rne";
  std::string overflow;  // empty: the format's default
  uint64_t seed = 0;
  std::vector<std::string> values;
  bool json = false;
};

int convert_values(const ConvertOptions& o) {
  const Format f = numerics::parse_format(o.to);
  const numerics::Rounding rounding = numerics::parse_rounding(o.rounding);
  const numerics::Overflow overflow = o.overflow.empty() ? f.default_overflow : numerics::parse_overflow(o.overflow);
  nlohmann::json rows = nlohmann::json::array();
  if (!o.json) {
    std::printf("format %s (%d bits), rounding %s, overflow %s\n", f.name.c_str(), f.bits(), numerics::rounding_name(rounding),
                numerics::overflow_name(overflow));
    std::printf("%-16s %-16s %-12s %-36s %-16s %s\n", "input", "float32", "hex", "binary (s e m)", "decoded", "rel. error");
  }
  for (size_t i = 0; i < o.values.size(); ++i) {
    const double input = parse_value(o.values[i]);
    const float x = static_cast<float>(input);
    const uint32_t bits = f.encode(x, rounding, overflow, numerics::stochastic_bits(o.seed, i));
    const double decoded = f.decode(bits);
    const double rel = (x != 0 && std::isfinite(x) && std::isfinite(decoded)) ? (decoded - x) / std::fabs(x) : NAN;
    if (o.json) {
      rows.push_back({{"input", o.values[i]}, {"float32", json_number(x)}, {"bits", bits}, {"hex", hex_bits(bits, f.bits())},
                      {"binary", f.bit_fields(bits)}, {"decoded", json_number(decoded)},
                      {"relative_error", json_number(rel)}});
    } else {
      std::printf("%-16s %-16s %-12s %-36s %-16s %s\n", o.values[i].c_str(), number(x).c_str(),
                  hex_bits(bits, f.bits()).c_str(), f.bit_fields(bits).c_str(), number(decoded).c_str(),
                  std::isnan(rel) ? "-" : number(rel).c_str());
    }
  }
  if (o.json) {
    nlohmann::json j = {{"format", format_json(f)},
                        {"rounding", numerics::rounding_name(rounding)},
                        {"overflow", numerics::overflow_name(overflow)},
                        {"values", rows}};
    print_json(j, 1);
  }
  return 0;
}

}  // namespace

Runner add_formats(CLI::App& app) {
  struct Options {
    bool json = false;
    std::vector<std::string> specs;
    ConvertOptions convert;
  };
  auto o = std::make_shared<Options>();
  auto* cmd = app.add_subcommand("formats", "List number formats and their properties; convert values to a format");
  cmd->add_flag("--json", o->json, "Print as JSON");
  cmd->add_option("--spec", o->specs,
                  "Also describe a run-time format spec, e.g. e3m4, 'fp(1,5,10)', 'fp(e=4,m=3,bias=7,fn,sat)', "
                  "'int(12)' (repeatable)");
  cmd->footer("Format specs: a name (fp32 tf32 fp16 bf16 e4m3fn e4m3fnuz e5m2 e5m2fnuz e2m1 e8m0 int4 uint4 int8 uint8 "
              "int16 uint16 int32 uint32), eXmY[fn|fnuz], fp(S,E,M[,bias=B][,ieee|fn|fnuz|nonan][,sat]), "
              "fp(e=E,m=M,...), int(N), uint(N).");
  auto* conv = cmd->add_subcommand("convert", "Encode values in a format: bits (hex and s/e/m fields) and decoded value");
  conv->add_option("--to", o->convert.to, "Target format or spec (e.g. e4m3fn, bf16, 'fp(1,5,10)', int8)")->required();
  conv->add_option("--rounding", o->convert.rounding, "rne (nearest-even), rtz (toward-zero), rna (nearest-away), sr (stochastic)")
      ->capture_default_str();
  conv->add_option("--overflow", o->convert.overflow, "saturate, inf or nan (default: the format's own: inf, or saturate for sat specs)");
  conv->add_option("--seed", o->convert.seed, "Seed for stochastic rounding (value i uses hash(seed, i))")->capture_default_str();
  conv->add_flag("--json", o->convert.json, "Print as JSON");
  conv->add_option("values", o->convert.values, "Values (decimal, hex float, inf, nan); use -- before negative values")
      ->required();
  return [o, conv]() {
    if (conv->parsed()) return convert_values(o->convert);
    return list_formats(o->specs, o->json);
  };
}

}  // namespace duet::cli
