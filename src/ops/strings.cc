// String ops: StringConcat, StringSplit, StringNormalizer, RegexFullMatch and
// TfIdfVectorizer. Strings are UTF-8 byte strings; every op passes bytes it
// does not need to interpret through unchanged, so UTF-8 (even malformed)
// round-trips. Case mapping uses a built-in table (Latin, Greek, Cyrillic) so
// results do not depend on the host's installed locales.
#include <algorithm>
#include <exception>
#include <functional>
#include <map>
#include <pthread.h>
#include <regex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>

#include "duet/ops/kernel_util.h"
#include "families.h"

namespace duet::ops {

namespace {

const Tensor& string_input(const KernelContext& ctx, size_t i) {
  const Tensor& t = ctx.input(i);
  if (t.dtype() != DType::String)
    unsupported(ctx.node.label(), ": input ", i, " has type ", dtype_name(t.dtype()), ", expected string");
  return t;
}

std::vector<ir::ValueType> one(DType dt, Shape shape) { return {tensor_type(dt, std::move(shape))}; }

// ---------------------------------------------------------------------------
// UTF-8 helpers. Bytes that do not form a valid sequence decode to
// U+DC80 + byte (as Python's surrogateescape) and encode back to that byte.

constexpr char32_t kEscapeBase = 0xDC80;

std::u32string utf8_decode(std::string_view s) {
  std::u32string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    const auto b0 = static_cast<unsigned char>(s[i]);
    int len = b0 < 0x80 ? 1 : (b0 >> 5) == 6 ? 2 : (b0 >> 4) == 14 ? 3 : (b0 >> 3) == 30 ? 4 : 0;
    char32_t cp = len == 1 ? b0 : len == 2 ? (b0 & 0x1F) : len == 3 ? (b0 & 0x0F) : (b0 & 0x07);
    bool ok = len > 0 && i + len <= s.size();
    for (int k = 1; ok && k < len; ++k) {
      const auto b = static_cast<unsigned char>(s[i + k]);
      ok = (b & 0xC0) == 0x80;
      cp = (cp << 6) | (b & 0x3F);
    }
    // Reject overlong forms, surrogates and values past U+10FFFF.
    if (ok) {
      static constexpr char32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
      ok = cp >= kMin[len] && cp <= 0x10FFFF && !(cp >= 0xD800 && cp <= 0xDFFF);
    }
    if (!ok) {
      out.push_back(kEscapeBase + b0);
      ++i;
      continue;
    }
    out.push_back(cp);
    i += len;
  }
  return out;
}

void utf8_append(std::string& out, char32_t cp) {
  if (cp >= kEscapeBase + 0x80 && cp <= kEscapeBase + 0xFF) {
    out.push_back(static_cast<char>(cp - kEscapeBase));  // escaped raw byte
  } else if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

// --- case mapping -------------------------------------------------------------
// Simple (one to one) mappings for ASCII, Latin-1, Latin Extended-A, Greek and
// Cyrillic; other code points are left alone.

char32_t to_lower_cp(char32_t c) {
  if (c >= 'A' && c <= 'Z') return c + 32;
  if (c < 0x80) return c;
  if ((c >= 0xC0 && c <= 0xDE && c != 0xD7)) return c + 32;
  if (c >= 0x100 && c <= 0x137 && c != 0x130) return c | 1;           // pairs: even upper
  if (c == 0x130) return 'i';
  if (c >= 0x139 && c <= 0x148) return (c & 1) ? c + 1 : c;          // pairs: odd upper
  if (c >= 0x14A && c <= 0x177) return c | 1;
  if (c == 0x178) return 0xFF;
  if (c >= 0x179 && c <= 0x17E) return (c & 1) ? c + 1 : c;
  if (c >= 0x391 && c <= 0x3AB && c != 0x3A2) return c + 32;         // Greek
  if (c == 0x386) return 0x3AC;
  if (c >= 0x388 && c <= 0x38A) return c + 37;
  if (c == 0x38C) return 0x3CC;
  if (c == 0x38E || c == 0x38F) return c + 63;
  if (c >= 0x410 && c <= 0x42F) return c + 32;                       // Cyrillic
  if (c >= 0x400 && c <= 0x40F) return c + 80;
  if (c >= 0x460 && c <= 0x481) return c | 1;
  if (c >= 0x48A && c <= 0x4BF) return c | 1;
  if (c >= 0x4D0 && c <= 0x52F) return c | 1;
  return c;
}

char32_t to_upper_cp(char32_t c) {
  if (c >= 'a' && c <= 'z') return c - 32;
  if (c < 0x80) return c;
  if (c >= 0xE0 && c <= 0xFE && c != 0xF7) return c - 32;
  if (c == 0xFF) return 0x178;
  if (c == 0xB5) return 0x39C;
  if (c >= 0x100 && c <= 0x137 && c != 0x131) return c & ~char32_t{1};
  if (c == 0x131) return 'I';
  if (c >= 0x139 && c <= 0x148) return (c & 1) ? c : c - 1;
  if (c >= 0x14A && c <= 0x177) return c & ~char32_t{1};
  if (c >= 0x179 && c <= 0x17E) return (c & 1) ? c : c - 1;
  if (c == 0x17F) return 'S';
  if (c >= 0x3B1 && c <= 0x3CB && c != 0x3C2) return c - 32;         // Greek
  if (c == 0x3C2) return 0x3A3;
  if (c == 0x3AC) return 0x386;
  if (c >= 0x3AD && c <= 0x3AF) return c - 37;
  if (c == 0x3CC) return 0x38C;
  if (c == 0x3CD || c == 0x3CE) return c - 63;
  if (c >= 0x430 && c <= 0x44F) return c - 32;                       // Cyrillic
  if (c >= 0x450 && c <= 0x45F) return c - 80;
  if (c >= 0x460 && c <= 0x481) return c & ~char32_t{1};
  if (c >= 0x48A && c <= 0x4BF) return c & ~char32_t{1};
  if (c >= 0x4D0 && c <= 0x52F) return c & ~char32_t{1};
  return c;
}

// Changes case; pure ASCII strings take a fast path, others are decoded and
// re-encoded (bytes that are not valid UTF-8 are kept as they are).
std::string change_case(const std::string& s, bool upper) {
  const bool ascii = std::all_of(s.begin(), s.end(), [](char ch) { return static_cast<unsigned char>(ch) < 0x80; });
  std::string out;
  if (ascii) {
    out = s;
    for (char& ch : out) {
      if (upper && ch >= 'a' && ch <= 'z') ch = static_cast<char>(ch - 32);
      if (!upper && ch >= 'A' && ch <= 'Z') ch = static_cast<char>(ch + 32);
    }
    return out;
  }
  out.reserve(s.size());
  for (char32_t cp : utf8_decode(s)) utf8_append(out, upper ? to_upper_cp(cp) : to_lower_cp(cp));
  return out;
}

// ---------------------------------------------------------------------------
// StringConcat: elementwise a + b with numpy broadcasting.

void string_concat_kernel(KernelContext& ctx) {
  const Tensor& a = string_input(ctx, 0);
  const Tensor& b = string_input(ctx, 1);
  const Dims out_dims = broadcast_dims({a.dims(), b.dims()}, ctx.node);
  Tensor& y = ctx.allocate_output(0, DType::String, out_dims);
  const auto& sa = a.strings();
  const auto& sb = b.strings();
  auto& sy = y.strings();
  const std::array<std::vector<int64_t>, 2> strides = {broadcast_strides(a.dims(), out_dims),
                                                        broadcast_strides(b.dims(), out_dims)};
  for_each_broadcast<2>(out_dims, strides, [&](int64_t i, const std::array<int64_t, 2>& off) {
    sy[i].reserve(sa[off[0]].size() + sb[off[1]].size());
    sy[i] = sa[off[0]];
    sy[i] += sb[off[1]];
  });
}

// ---------------------------------------------------------------------------
// StringSplit: like Python's str.split(delimiter, maxsplit). Without a
// delimiter (or with ""), runs of whitespace separate and leading/trailing
// whitespace is dropped.

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'; }

std::vector<std::string> split_whitespace(const std::string& s, int64_t maxsplit) {
  std::vector<std::string> parts;
  size_t i = 0;
  const size_t n = s.size();
  while (true) {
    while (i < n && is_space(s[i])) ++i;
    if (i == n) break;
    if (maxsplit >= 0 && static_cast<int64_t>(parts.size()) == maxsplit) {
      parts.push_back(s.substr(i));  // the remainder keeps its trailing whitespace
      break;
    }
    size_t j = i;
    while (j < n && !is_space(s[j])) ++j;
    parts.push_back(s.substr(i, j - i));
    i = j;
  }
  return parts;
}

std::vector<std::string> split_delimiter(const std::string& s, const std::string& delim, int64_t maxsplit) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (maxsplit < 0 || static_cast<int64_t>(parts.size()) < maxsplit) {
    const size_t pos = s.find(delim, start);
    if (pos == std::string::npos) break;
    parts.push_back(s.substr(start, pos - start));
    start = pos + delim.size();
  }
  parts.push_back(s.substr(start));
  return parts;
}

void string_split_kernel(KernelContext& ctx) {
  const Tensor& x = string_input(ctx, 0);
  const std::string delim = ctx.node.attr_string("delimiter", "");
  // Unset or negative maxsplit means "as many splits as possible".
  const int64_t maxsplit = ctx.node.has_attr("maxsplit") ? ctx.node.attr_int("maxsplit", -1) : -1;
  const auto& sx = x.strings();
  std::vector<std::vector<std::string>> parts(sx.size());
  ctx.parallel_for(static_cast<int64_t>(sx.size()), [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i)
      parts[i] = delim.empty() ? split_whitespace(sx[i], maxsplit) : split_delimiter(sx[i], delim, maxsplit);
  });
  size_t width = 0;
  for (const auto& p : parts) width = std::max(width, p.size());
  Dims y_dims = x.dims();
  y_dims.push_back(static_cast<int64_t>(width));
  Tensor& y = ctx.allocate_output(0, DType::String, y_dims);
  auto& sy = y.strings();
  for (size_t i = 0; i < parts.size(); ++i)
    for (size_t k = 0; k < parts[i].size(); ++k) sy[i * width + k] = std::move(parts[i][k]);
  if (ctx.output_requested(1)) {
    Tensor& z = ctx.allocate_output(1, DType::Int64, x.dims());
    for (size_t i = 0; i < parts.size(); ++i) z.data<int64_t>()[i] = static_cast<int64_t>(parts[i].size());
  }
}

std::vector<ir::ValueType> string_split_infer(InferContext& ctx) {
  Shape y = ctx.inputs[0].shape;
  if (y.rank_known) y.dims.push_back(ctx.fresh_dim());
  std::vector<ir::ValueType> out = one(DType::String, y);
  if (ctx.num_outputs > 1) out.push_back(tensor_type(DType::Int64, ctx.inputs[0].shape));
  return out;
}

// ---------------------------------------------------------------------------
// StringNormalizer: drops elements equal to a stop word (compared ignoring
// case unless is_case_sensitive), then changes case. Input [C] or [1, C].

void string_normalizer_kernel(KernelContext& ctx) {
  const Tensor& x = string_input(ctx, 0);
  const ir::Node& node = ctx.node;
  const bool two_dim = x.rank() == 2;
  if (!(x.rank() == 1 || (two_dim && x.dim(0) == 1)))
    fail(node.label(), ": input must have shape [C] or [1, C], got ", dims_str(x.dims()));
  const std::string action = node.attr_string("case_change_action", "NONE");
  if (action != "NONE" && action != "LOWER" && action != "UPPER")
    fail(node.label(), ": case_change_action must be NONE, LOWER or UPPER, got '", action, "'");
  const bool case_sensitive = node.attr_int("is_case_sensitive", 0) != 0;

  std::unordered_set<std::string> stops;
  for (const std::string& w : node.attr_strings("stopwords")) stops.insert(case_sensitive ? w : change_case(w, false));

  std::vector<std::string> kept;
  for (const std::string& s : x.strings()) {
    if (!stops.empty() && stops.count(case_sensitive ? s : change_case(s, false))) continue;
    if (action == "NONE") kept.push_back(s);
    else kept.push_back(change_case(s, action == "UPPER"));
  }
  // Everything dropped: a single empty string keeps the output non-empty.
  if (kept.empty()) kept.emplace_back();
  const int64_t c = static_cast<int64_t>(kept.size());
  Tensor& y = ctx.allocate_output(0, DType::String, two_dim ? Dims{1, c} : Dims{c});
  y.strings() = std::move(kept);
}

std::vector<ir::ValueType> string_normalizer_infer(InferContext& ctx) {
  const Shape& in = ctx.inputs[0].shape;
  if (ctx.node.attr_strings("stopwords").empty()) return one(DType::String, in);
  if (!in.rank_known) return one(DType::String, in);
  std::vector<Dim> dims(in.dims);
  if (!dims.empty()) dims.back() = ctx.fresh_dim();
  return one(DType::String, Shape(dims));
}

// ---------------------------------------------------------------------------
// RegexFullMatch. The spec's RE2 syntax is translated to ECMAScript for
// std::wregex, which matches over code points (so '.' is one character, as
// in RE2). RE2 forms without an ECMAScript equivalent are rejected as
// unsupported rather than silently misread.

bool is_regex_meta(char32_t c) {
  return c == '\\' || c == '^' || c == '$' || c == '.' || c == '|' || c == '?' || c == '*' || c == '+' ||
         c == '(' || c == ')' || c == '[' || c == ']' || c == '{' || c == '}' || c == '-';
}

void append_literal(std::wstring& out, char32_t c) {
  if (is_regex_meta(c)) out.push_back(L'\\');
  out.push_back(static_cast<wchar_t>(c));
}

struct TranslatedRegex {
  std::wstring pattern;
  bool icase = false;
};

TranslatedRegex translate_re2(const std::string& re2, const ir::Node& node) {
  const std::u32string p = utf8_decode(re2);
  TranslatedRegex out;
  size_t i = 0;
  // Leading flag group: (?i), (?s), (?is)...
  bool dot_all = false;
  if (p.size() >= 3 && p[0] == '(' && p[1] == '?') {
    size_t j = 2;
    bool flags_only = true;
    while (j < p.size() && p[j] != ')') {
      if (p[j] == 'i') out.icase = true;
      else if (p[j] == 's') dot_all = true;
      else if (p[j] == 'U' || p[j] == 'm' || p[j] == '-') unsupported(node.label(), ": regex flag group is not supported");
      else { flags_only = false; break; }
      ++j;
    }
    if (flags_only && j < p.size() && j > 2) i = j + 1;
    else out.icase = dot_all = false;
  }
  bool in_class = false;
  while (i < p.size()) {
    const char32_t c = p[i];
    if (c == '\\' && i + 1 < p.size()) {
      const char32_t e = p[i + 1];
      if (e == 'Q') {  // \Q...\E literal text
        size_t j = i + 2;
        while (j < p.size() && !(p[j] == '\\' && j + 1 < p.size() && p[j + 1] == 'E')) append_literal(out.pattern, p[j++]);
        i = j + 2;
        continue;
      }
      if (e == 'x' && i + 2 < p.size() && p[i + 2] == '{') {  // \x{HHHH}
        size_t j = i + 3;
        char32_t v = 0;
        while (j < p.size() && p[j] != '}') {
          const char32_t h = p[j];
          int d = h >= '0' && h <= '9' ? int(h - '0') : h >= 'a' && h <= 'f' ? int(h - 'a' + 10) : h >= 'A' && h <= 'F' ? int(h - 'A' + 10) : -1;
          if (d < 0 || v > 0x10FFFF) fail(node.label(), ": invalid \\x{...} escape in pattern");
          v = v * 16 + d;
          ++j;
        }
        if (j >= p.size()) fail(node.label(), ": unterminated \\x{ in pattern");
        append_literal(out.pattern, v);
        i = j + 1;
        continue;
      }
      if (!in_class && e == 'A') { out.pattern += L"^"; i += 2; continue; }
      if (!in_class && e == 'z') { out.pattern += L"$"; i += 2; continue; }
      if (e == 'p' || e == 'P' || e == 'C' || e == 'z' || e == 'Z' || e == 'A')
        unsupported(node.label(), ": regex escape \\", static_cast<char>(e), " is not supported");
      out.pattern.push_back(L'\\');
      out.pattern.push_back(static_cast<wchar_t>(e));
      i += 2;
      continue;
    }
    if (in_class) {
      if (c == '[' && i + 1 < p.size() && p[i + 1] == ':') {  // [:alpha:] stays as is
        const size_t close = p.find(U":]", i + 2);
        if (close != std::u32string::npos) {
          for (size_t k = i; k < close + 2; ++k) out.pattern.push_back(static_cast<wchar_t>(p[k]));
          i = close + 2;
          continue;
        }
      }
      if (c == ']') in_class = false;
      out.pattern.push_back(static_cast<wchar_t>(c));
      ++i;
      continue;
    }
    if (c == '[') {
      in_class = true;
      out.pattern.push_back(L'[');
      ++i;
      // A leading ']' (after an optional '^') is literal in RE2.
      if (i < p.size() && p[i] == '^') { out.pattern.push_back(L'^'); ++i; }
      if (i < p.size() && p[i] == ']') { out.pattern += L"\\]"; ++i; }
      continue;
    }
    if (c == '(' && i + 2 < p.size() && p[i + 1] == '?') {
      // Named groups (?P<name>...) and (?<name>...) become plain groups.
      size_t name_at = p[i + 2] == 'P' && i + 3 < p.size() && p[i + 3] == '<' ? i + 4 : p[i + 2] == '<' ? i + 3 : 0;
      if (name_at && name_at < p.size() && p[name_at] != '=' && p[name_at] != '!') {
        const size_t close = p.find(U'>', name_at);
        if (close == std::u32string::npos) fail(node.label(), ": unterminated group name in pattern");
        out.pattern.push_back(L'(');
        i = close + 1;
        continue;
      }
      if (p[i + 2] != ':') unsupported(node.label(), ": regex group (?", static_cast<char>(p[i + 2]), " is not supported");
    }
    if (c == '.' && dot_all) { out.pattern += L"[\\s\\S]"; ++i; continue; }
    out.pattern.push_back(static_cast<wchar_t>(c));
    ++i;
  }
  return out;
}

std::wstring to_wide(const std::string& s) {
  const std::u32string u = utf8_decode(s);
  return std::wstring(u.begin(), u.end());
}

// libstdc++'s std::regex recurses once or more per input character, so long
// strings overflow an ordinary thread stack. Matching runs on a thread with a
// large (lazily committed) stack, and inputs are capped so that the cap fits.
constexpr size_t kRegexStackBytes = size_t{1} << 30;
constexpr size_t kRegexMaxChars = 100000;

void run_on_big_stack(const std::function<void()>& fn, const ir::Node& node) {
  struct Job {
    const std::function<void()>* fn;
    std::exception_ptr error;
  } job{&fn, nullptr};
  auto entry = [](void* arg) -> void* {
    auto* j = static_cast<Job*>(arg);
    try {
      (*j->fn)();
    } catch (...) {
      j->error = std::current_exception();
    }
    return nullptr;
  };
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, kRegexStackBytes);
  pthread_t thread;
  const int rc = pthread_create(&thread, &attr, entry, &job);
  pthread_attr_destroy(&attr);
  if (rc != 0) fail(node.label(), ": could not start the regex matching thread");
  pthread_join(thread, nullptr);
  if (job.error) std::rethrow_exception(job.error);
}

void regex_full_match_kernel(KernelContext& ctx) {
  static_assert(sizeof(wchar_t) == 4, "RegexFullMatch decodes to UTF-32 wchar_t");
  const Tensor& x = string_input(ctx, 0);
  if (!ctx.node.has_attr("pattern")) fail(ctx.node.label(), ": attribute 'pattern' is required");
  const std::string pattern = ctx.node.attr_string("pattern", "");
  const TranslatedRegex tr = translate_re2(pattern, ctx.node);
  std::wregex re;
  try {
    auto flags = std::regex_constants::ECMAScript | std::regex_constants::optimize;
    if (tr.icase) flags |= std::regex_constants::icase;
    re.assign(tr.pattern, flags);
  } catch (const std::regex_error& e) {
    fail(ctx.node.label(), ": invalid regex pattern '", pattern, "': ", e.what());
  }
  Tensor& y = ctx.allocate_output(0, DType::Bool, x.dims());
  const auto& sx = x.strings();
  uint8_t* out = y.data<uint8_t>();
  for (size_t i = 0; i < sx.size(); ++i)
    if (sx[i].size() > kRegexMaxChars * 4 || (sx[i].size() > kRegexMaxChars && to_wide(sx[i]).size() > kRegexMaxChars))
      unsupported(ctx.node.label(), ": element ", i, " is longer than ", kRegexMaxChars, " characters");
  run_on_big_stack([&] {
    for (size_t i = 0; i < sx.size(); ++i) {
      try {
        out[i] = std::regex_match(to_wide(sx[i]), re) ? 1 : 0;
      } catch (const std::regex_error& e) {
        fail(ctx.node.label(), ": regex matching failed on element ", i, ": ", e.what());
      }
    }
  }, ctx.node);
}

// ---------------------------------------------------------------------------
// TfIdfVectorizer. Pool n-grams are stored in a trie over token ids; each
// row is scanned for every start position and skip distance, counting
// n-grams of length [min_gram_length, max_gram_length]. Unigrams do not
// depend on the skip and are counted once.

struct TfIdfModel {
  std::unordered_map<std::string, int32_t> string_ids;
  std::unordered_map<int64_t, int32_t> int_ids;
  bool strings = false;
  struct TrieNode {
    std::unordered_map<int32_t, int32_t> children;
    int64_t output = -1;  // output coordinate of the n-gram ending here
  };
  std::vector<TrieNode> trie{1};
  int64_t min_n = 1, max_n = 1, max_skip = 0, output_size = 0;
  enum class Mode { TF, IDF, TFIDF } mode = Mode::TF;
  std::vector<float> weights;
};

TfIdfModel build_tfidf(const ir::Node& node) {
  TfIdfModel m;
  const std::string mode = node.attr_string("mode", "");
  if (mode == "TF") m.mode = TfIdfModel::Mode::TF;
  else if (mode == "IDF") m.mode = TfIdfModel::Mode::IDF;
  else if (mode == "TFIDF") m.mode = TfIdfModel::Mode::TFIDF;
  else fail(node.label(), ": mode must be TF, IDF or TFIDF, got '", mode, "'");
  m.min_n = node.attr_int("min_gram_length", 1);
  m.max_n = node.attr_int("max_gram_length", 1);
  m.max_skip = node.attr_int("max_skip_count", 0);
  if (m.min_n < 1 || m.max_n < m.min_n)
    fail(node.label(), ": invalid gram lengths min=", m.min_n, " max=", m.max_n);
  if (m.max_skip < 0) fail(node.label(), ": max_skip_count must be >= 0");
  const auto pool_ints = node.attr_ints("pool_int64s");
  const auto pool_strings = node.attr_strings("pool_strings");
  if (!pool_ints.empty() && !pool_strings.empty())
    fail(node.label(), ": only one of pool_int64s and pool_strings may be set");
  m.strings = !pool_strings.empty();
  const int64_t pool_size = static_cast<int64_t>(m.strings ? pool_strings.size() : pool_ints.size());
  // Dense token ids for the pool's vocabulary.
  std::vector<int32_t> pool(pool_size);
  for (int64_t i = 0; i < pool_size; ++i) {
    if (m.strings) pool[i] = m.string_ids.emplace(pool_strings[i], static_cast<int32_t>(m.string_ids.size())).first->second;
    else pool[i] = m.int_ids.emplace(pool_ints[i], static_cast<int32_t>(m.int_ids.size())).first->second;
  }
  const auto ngram_counts = node.attr_ints("ngram_counts");
  const auto ngram_indexes = node.attr_ints("ngram_indexes");
  if (ngram_indexes.empty()) fail(node.label(), ": ngram_indexes must not be empty");
  for (int64_t v : ngram_indexes) {
    if (v < 0) fail(node.label(), ": ngram_indexes has a negative entry ", v);
    m.output_size = std::max(m.output_size, v + 1);
  }
  m.weights = node.attr_floats("weights");
  if (!m.weights.empty() && static_cast<int64_t>(m.weights.size()) < m.output_size)
    fail(node.label(), ": weights has ", m.weights.size(), " entries, expected ", m.output_size);

  size_t ngram_id = 0;  // position of the n-gram in the pool across all sizes
  for (size_t k = 0; k < ngram_counts.size(); ++k) {
    const int64_t n = static_cast<int64_t>(k) + 1;
    const int64_t begin = ngram_counts[k];
    const int64_t end = k + 1 < ngram_counts.size() ? ngram_counts[k + 1] : pool_size;
    if (begin < 0 || end < begin || end > pool_size)
      fail(node.label(), ": ngram_counts ", begin, "..", end, " is outside the pool of ", pool_size);
    const int64_t count = (end - begin) / n;
    for (int64_t g = 0; g < count; ++g, ++ngram_id) {
      if (n < m.min_n || n > m.max_n) continue;
      if (ngram_id >= ngram_indexes.size())
        fail(node.label(), ": ngram_indexes has ", ngram_indexes.size(), " entries, fewer than the pool's n-grams");
      int32_t cur = 0;
      for (int64_t t = 0; t < n; ++t) {
        const int32_t tok = pool[begin + g * n + t];
        auto it = m.trie[cur].children.find(tok);
        if (it == m.trie[cur].children.end()) {
          m.trie.emplace_back();
          it = m.trie[cur].children.emplace(tok, static_cast<int32_t>(m.trie.size() - 1)).first;
        }
        cur = it->second;
      }
      m.trie[cur].output = ngram_indexes[ngram_id];  // a repeated n-gram keeps the last index
    }
  }
  return m;
}

void tfidf_kernel(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  const TfIdfModel m = build_tfidf(ctx.node);
  const DType dt = x.dtype();
  if (m.strings ? dt != DType::String : (dt != DType::Int32 && dt != DType::Int64))
    fail(ctx.node.label(), ": input type ", dtype_name(dt), " does not match the ",
         m.strings ? "string" : "integer", " pool");
  if (x.rank() > 2) fail(ctx.node.label(), ": input must be [C] or [N, C], got ", dims_str(x.dims()));
  const bool batched = x.rank() == 2;
  const int64_t rows = batched ? x.dim(0) : 1;
  const int64_t cols = batched ? x.dim(1) : x.numel();
  Tensor& y = ctx.allocate_output(0, DType::Float32, batched ? Dims{rows, m.output_size} : Dims{m.output_size});
  float* out = y.data<float>();

  // Token ids of the input; -1 for items not in the pool's vocabulary.
  std::vector<int32_t> tokens(x.numel(), -1);
  for (int64_t i = 0; i < x.numel(); ++i) {
    if (m.strings) {
      auto it = m.string_ids.find(x.strings()[i]);
      if (it != m.string_ids.end()) tokens[i] = it->second;
    } else {
      auto it = m.int_ids.find(x.get_int(i));
      if (it != m.int_ids.end()) tokens[i] = it->second;
    }
  }

  ctx.parallel_for(rows, [&](int64_t begin, int64_t end) {
    std::vector<int64_t> counts(m.output_size);
    for (int64_t r = begin; r < end; ++r) {
      std::fill(counts.begin(), counts.end(), 0);
      const int32_t* row = tokens.data() + r * cols;
      for (int64_t start = 0; start < cols; ++start) {
        for (int64_t skip = 0; skip <= m.max_skip; ++skip) {
          int32_t node = 0;
          int64_t pos = start;
          for (int64_t len = 1; len <= m.max_n && pos < cols; ++len, pos += skip + 1) {
            const auto& children = m.trie[node].children;
            auto it = children.find(row[pos]);
            if (it == children.end()) break;
            node = it->second;
            if (len == 1 && skip > 0) continue;  // unigrams counted at skip 0 only
            if (len >= m.min_n && m.trie[node].output >= 0) ++counts[m.trie[node].output];
          }
        }
      }
      float* o = out + r * m.output_size;
      for (int64_t k = 0; k < m.output_size; ++k) {
        const float w = m.weights.empty() ? 1.0f : m.weights[k];
        switch (m.mode) {
          case TfIdfModel::Mode::TF: o[k] = static_cast<float>(counts[k]); break;
          case TfIdfModel::Mode::IDF: o[k] = counts[k] > 0 ? w : 0.0f; break;
          case TfIdfModel::Mode::TFIDF: o[k] = w * static_cast<float>(counts[k]); break;
        }
      }
    }
  });
}

// Cost: one trie lookup per (start, skip, length) step of every row.
Cost tfidf_cost(const CostContext& ctx) {
  Cost c = default_cost(ctx);
  const ir::ValueType& x = ctx.inputs[0];
  if (!x.shape.fully_known()) return c;
  const double items = static_cast<double>(numel(x.shape.concrete()));
  const double skips = static_cast<double>(std::max<int64_t>(0, ctx.node.attr_int("max_skip_count", 0)) + 1);
  const double max_n = static_cast<double>(std::max<int64_t>(1, ctx.node.attr_int("max_gram_length", 1)));
  c.flops = items * skips * max_n;
  return c;
}

std::vector<ir::ValueType> tfidf_infer(InferContext& ctx) {
  int64_t out = 0;
  for (int64_t v : ctx.node.attr_ints("ngram_indexes")) out = std::max(out, v + 1);
  const Shape& in = ctx.inputs[0].shape;
  if (in.rank_known && in.rank() == 2) return one(DType::Float32, Shape({in.dims[0], Dim(out)}));
  if (in.rank_known) return one(DType::Float32, Shape({Dim(out)}));
  return one(DType::Float32, Shape::unknown_rank());
}

void add_string_op(Registry& r, const char* name, KernelFn kernel, InferFn infer, CostFn cost = default_cost) {
  r.add({.domain = "", .name = name, .kernel = std::move(kernel), .infer = std::move(infer), .cost = std::move(cost),
         .family = {}});
}

}  // namespace

void register_strings(Registry& r) {
  add_string_op(r, "StringConcat", string_concat_kernel, infer_broadcast(DType::String));
  add_string_op(r, "StringSplit", string_split_kernel, string_split_infer);
  add_string_op(r, "StringNormalizer", string_normalizer_kernel, string_normalizer_infer);
  add_string_op(r, "RegexFullMatch", regex_full_match_kernel,
                [](InferContext& c) { return one(DType::Bool, c.inputs[0].shape); });
  add_string_op(r, "TfIdfVectorizer", tfidf_kernel, tfidf_infer, tfidf_cost);
}

}  // namespace duet::ops
