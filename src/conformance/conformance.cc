#include "duet/conformance/conformance.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <map>
#include <sstream>

#include <fstream>
#include <nlohmann/json.hpp>

#include "duet/onnx/onnx_io.h"
#include "duet/runtime/session.h"

namespace duet::conformance {

namespace fs = std::filesystem;

const char* status_name(Status s) {
  switch (s) {
    case Status::Passed: return "passed";
    case Status::Failed: return "failed";
    case Status::Unsupported: return "unsupported";
  }
  return "?";
}

Tolerance tolerance_for(const std::string& name) {
  // Cases the ONNX backend runner checks with looser tolerances (onnx/backend/test/
  // case/node/*.py and the runner's per-case overrides).
  static const std::map<std::string, Tolerance> overrides = {};
  auto it = overrides.find(name);
  return it == overrides.end() ? Tolerance{} : it->second;
}

std::string compare(const Tensor& expected, const Tensor& actual, const Tolerance& tol, double* max_abs_error) {
  std::ostringstream os;
  if (expected.dtype() != actual.dtype()) {
    os << "output type " << dtype_name(actual.dtype()) << ", expected " << dtype_name(expected.dtype());
    return os.str();
  }
  if (expected.dims() != actual.dims()) {
    os << "output shape " << dims_str(actual.dims()) << ", expected " << dims_str(expected.dims());
    return os.str();
  }
  const int64_t n = expected.numel();
  if (expected.dtype() == DType::String) {
    for (int64_t i = 0; i < n; ++i) {
      if (expected.strings()[i] != actual.strings()[i]) {
        os << "string at index " << i << " is '" << actual.strings()[i] << "', expected '" << expected.strings()[i] << "'";
        return os.str();
      }
    }
    return "";
  }
  if (expected.dtype() == DType::Complex64 || expected.dtype() == DType::Complex128) {
    return expected.same_bits(actual) ? "" : "complex values differ";
  }
  const bool exact = !dtype_is_float(expected.dtype());
  double worst = 0, worst_excess = 0;
  int64_t worst_index = -1;
  int64_t mismatches = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (exact) {
      const int64_t e = expected.get_int(i), a = actual.get_int(i);
      if (e != a) {
        ++mismatches;
        const double d = std::fabs(static_cast<double>(e) - static_cast<double>(a));
        if (worst_index < 0 || d > worst) { worst = d; worst_index = i; }
      }
      continue;
    }
    const double e = expected.get_double(i), a = actual.get_double(i);
    if (std::isnan(e) || std::isnan(a)) {
      if (std::isnan(e) != std::isnan(a)) {
        ++mismatches;
        if (worst_index < 0) { worst = INFINITY; worst_index = i; }
      }
      continue;
    }
    if (std::isinf(e) || std::isinf(a)) {
      if (e != a) { ++mismatches; worst = INFINITY; worst_index = i; }
      continue;
    }
    const double d = std::fabs(e - a);
    const double allowed = tol.atol + tol.rtol * std::fabs(e);
    if (d > allowed) {
      ++mismatches;
      if (d - allowed > worst_excess || worst_index < 0) { worst_excess = d - allowed; worst_index = i; }
    }
    worst = std::max(worst, d);
  }
  if (max_abs_error) *max_abs_error = worst;
  if (mismatches == 0) return "";
  // index -> coordinates
  Dims coord(expected.rank());
  int64_t rem = worst_index;
  for (int64_t d = static_cast<int64_t>(expected.rank()) - 1; d >= 0; --d) {
    coord[d] = expected.dims()[d] ? rem % expected.dims()[d] : 0;
    rem = expected.dims()[d] ? rem / expected.dims()[d] : 0;
  }
  os << mismatches << " of " << n << " elements differ; worst at [";
  for (size_t d = 0; d < coord.size(); ++d) os << (d ? "," : "") << coord[d];
  os << "]: got " << actual.get_double(worst_index) << ", expected " << expected.get_double(worst_index)
     << " (max abs error " << worst << ")";
  return os.str();
}

namespace {
// Sequences compare element by element; an empty optional equals only another.
std::string compare_values(const Tensor& expected, const Tensor& actual, const Tolerance& tol, double* err) {
  if (expected.is_none() || actual.is_none()) {
    return expected.is_none() == actual.is_none() ? "" : (expected.is_none() ? "expected an empty optional" : "expected a value, got an empty optional");
  }
  if (expected.is_sequence() || actual.is_sequence()) {
    if (!expected.is_sequence() || !actual.is_sequence()) return "sequence vs tensor";
    if (expected.sequence().size() != actual.sequence().size()) {
      return "sequence length " + std::to_string(actual.sequence().size()) + ", expected " + std::to_string(expected.sequence().size());
    }
    for (size_t i = 0; i < expected.sequence().size(); ++i) {
      std::string d = compare_values(expected.sequence()[i], actual.sequence()[i], tol, err);
      if (!d.empty()) return "sequence element " + std::to_string(i) + ": " + d;
    }
    return "";
  }
  return compare(expected, actual, tol, err);
}

std::vector<std::string> sorted_files(const fs::path& dir, const std::string& prefix) {
  std::vector<std::pair<int, std::string>> files;
  for (auto& e : fs::directory_iterator(dir)) {
    const std::string n = e.path().filename().string();
    if (n.rfind(prefix, 0) == 0 && e.path().extension() == ".pb") {
      files.emplace_back(std::atoi(n.substr(prefix.size()).c_str()), e.path().string());
    }
  }
  std::sort(files.begin(), files.end());
  std::vector<std::string> r;
  for (auto& f : files) r.push_back(f.second);
  return r;
}
}  // namespace

CaseResult run_case(const std::string& case_dir, int threads, const std::string& backend) {
  CaseResult r;
  r.path = case_dir;
  r.name = fs::path(case_dir).filename().string();
  const auto start = std::chrono::steady_clock::now();
  try {
    std::shared_ptr<ir::Model> model = onnx_io::load_model((fs::path(case_dir) / "model.onnx").string());
    runtime::SessionOptions options;
    options.threads = threads;
    options.backend = backend;
    const ir::Graph& g = *model->graph;
    auto supported_kind = [](const ir::ValueType& t) {
      return t.kind == ir::ValueType::Kind::Tensor || t.kind == ir::ValueType::Kind::Sequence ||
             t.kind == ir::ValueType::Kind::Optional;
    };
    for (auto* in : g.inputs) {
      if (!supported_kind(in->type)) unsupported("input '", in->name, "' is a ", in->type.str());
    }
    for (auto* out : g.outputs) {
      if (!supported_kind(out->type)) unsupported("output '", out->name, "' is a ", out->type.str());
    }
    runtime::prepare_model(*model, options);
    runtime::Session session(model, options);
    std::vector<fs::path> sets;
    for (auto& e : fs::directory_iterator(case_dir)) {
      if (e.is_directory() && e.path().filename().string().rfind("test_data_set_", 0) == 0) sets.push_back(e.path());
    }
    std::sort(sets.begin(), sets.end());
    DUET_CHECK(!sets.empty(), "no test_data_set_* folder");
    Tolerance tol = tolerance_for(r.name);
    // A case may state its own tolerance in tolerance.json ({"rtol": .., "atol": ..}).
    if (fs::exists(fs::path(case_dir) / "tolerance.json")) {
      std::ifstream f(fs::path(case_dir) / "tolerance.json");
      auto j = nlohmann::json::parse(f, nullptr, false);
      DUET_CHECK(!j.is_discarded(), "malformed tolerance.json");
      tol.rtol = j.value("rtol", tol.rtol);
      tol.atol = j.value("atol", tol.atol);
    }
    for (auto& set : sets) {
      std::map<std::string, Tensor> feeds;
      auto inputs = sorted_files(set, "input_");
      // Inputs bind to the graph inputs that are not initializers, in order.
      std::vector<const ir::Value*> formal;
      for (auto* in : g.inputs) if (!g.initializers.count(in->name)) formal.push_back(in);
      DUET_CHECK(inputs.size() <= formal.size(), "test data has ", inputs.size(), " inputs, model takes ", formal.size());
      for (size_t i = 0; i < inputs.size(); ++i) {
        feeds[formal[i]->name] = onnx_io::load_value_pb(inputs[i], formal[i]->type);
      }
      auto outputs = session.run(feeds);
      auto expected_files = sorted_files(set, "output_");
      DUET_CHECK(expected_files.size() == outputs.size(), "model produced ", outputs.size(), " outputs, test expects ",
                 expected_files.size());
      for (size_t i = 0; i < outputs.size(); ++i) {
        Tensor expected = onnx_io::load_value_pb(expected_files[i], g.outputs[i]->type);
        double err = 0;
        std::string diff = compare_values(expected, outputs[i].tensor, tol, &err);
        r.max_abs_error = std::max(r.max_abs_error, err);
        if (!diff.empty()) {
          r.status = Status::Failed;
          r.detail = set.filename().string() + " output '" + outputs[i].name + "': " + diff;
          r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
          return r;
        }
      }
    }
    r.status = Status::Passed;
  } catch (const Unsupported& e) {
    r.status = Status::Unsupported;
    r.detail = e.what();
  } catch (const std::exception& e) {
    r.status = Status::Failed;
    r.detail = e.what();
  }
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return r;
}

std::vector<std::string> find_cases(const std::vector<std::string>& dirs) {
  std::vector<std::string> cases;
  for (auto& d : dirs) {
    std::error_code ec;
    DUET_CHECK(fs::is_directory(d, ec), "not a directory: ", d);
    if (fs::exists(fs::path(d) / "model.onnx")) {
      cases.push_back(d);
      continue;
    }
    std::vector<std::string> found;
    for (auto& e : fs::directory_iterator(d)) {
      if (e.is_directory() && fs::exists(e.path() / "model.onnx")) found.push_back(e.path().string());
    }
    std::sort(found.begin(), found.end());
    DUET_CHECK(!found.empty(), "no test cases (folders with model.onnx) in ", d);
    cases.insert(cases.end(), found.begin(), found.end());
  }
  return cases;
}

}  // namespace duet::conformance
