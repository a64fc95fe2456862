// Runs ONNX backend-style test folders (model.onnx + test_data_set_*/input_N.pb,
// output_N.pb) and classifies each case as passed, failed (largest error and
// where) or unsupported (the missing op or type).
#pragma once
#include <string>
#include <vector>

#include "duet/core/tensor.h"

namespace duet::conformance {

enum class Status { Passed, Failed, Unsupported };
const char* status_name(Status s);

struct Tolerance {
  double rtol = 1e-3;
  double atol = 1e-7;
};

struct CaseResult {
  std::string name;  // folder name, e.g. "test_abs"
  std::string path;
  Status status = Status::Failed;
  std::string detail;       // failure or unsupported reason; empty when passed
  double max_abs_error = 0;
  double seconds = 0;
};

// Compares like numpy.testing.assert_allclose (NaN matches NaN); integers,
// bools and strings must match exactly. Returns "" when they match, else a
// description naming the largest error and its index.
std::string compare(const Tensor& expected, const Tensor& actual, const Tolerance& tol, double* max_abs_error = nullptr);

// Tolerance for a named case: the suite's default unless the case is one the
// ONNX backend test runner gives its own tolerance.
Tolerance tolerance_for(const std::string& case_name);

// backend "reference" or "cpu" (the graph optimizer, then the oneDNN backend).
CaseResult run_case(const std::string& case_dir, int threads = 1, const std::string& backend = "reference");

// Every case folder under dirs (a dir that is itself a case is run as one).
std::vector<std::string> find_cases(const std::vector<std::string>& dirs);

}  // namespace duet::conformance
