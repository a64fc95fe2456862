// The ONNX backend test suite: pass counts must not drop below the committed
// floors, and every case that does not pass must be listed, with its reason,
// in tests/conformance_known_failures.txt.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "duet/conformance/conformance.h"
#include "test_util.h"

using namespace duet;
namespace fs = std::filesystem;

namespace {

std::map<std::string, int> read_floors() {
  std::map<std::string, int> floors;
  std::ifstream f(testutil::source_dir() + "/tests/conformance_floor.txt");
  std::string line;
  while (std::getline(f, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream is(line);
    std::string folder;
    int n = 0;
    is >> folder >> n;
    floors[folder] = n;
  }
  return floors;
}

std::set<std::string> known_failures() {
  std::set<std::string> names;
  std::ifstream f(testutil::source_dir() + "/tests/conformance_known_failures.txt");
  std::string line;
  while (std::getline(f, line)) {
    if (line.empty() || line[0] == '#') continue;
    names.insert(line.substr(0, line.find_first_of(" \t")));
  }
  return names;
}

void check_folder(const std::string& folder, const std::string& backend = "reference") {
  DUET_REQUIRE_SHARED();
  const auto floors = read_floors();
  ASSERT_TRUE(floors.count(folder)) << "no floor for " << folder << " in tests/conformance_floor.txt";
  const auto known = known_failures();
  const auto cases = conformance::find_cases({testutil::shared_dir() + "/conformance/onnx-backend/" + folder});
  int passed = 0;
  std::vector<std::string> unexplained;
  for (auto& c : cases) {
    auto r = conformance::run_case(c, 1, backend);
    if (r.status == conformance::Status::Passed) ++passed;
    else if (!known.count(r.name)) unexplained.push_back(r.name + " (" + conformance::status_name(r.status) + "): " + r.detail);
  }
  std::cout << folder << " (" << backend << " backend): " << passed << " of " << cases.size() << " cases pass\n";
  EXPECT_GE(passed, floors.at(folder)) << folder << ": pass count dropped below the committed floor";
  std::string list;
  for (auto& u : unexplained) list += "  " + u + "\n";
  EXPECT_TRUE(unexplained.empty()) << unexplained.size()
                                   << " cases fail without an entry in tests/conformance_known_failures.txt:\n" << list;
}

}  // namespace

TEST(Conformance, NodeTests) { check_folder("node"); }
TEST(Conformance, PytorchConverted) { check_folder("pytorch-converted"); }
TEST(Conformance, PytorchOperator) { check_folder("pytorch-operator"); }
TEST(Conformance, Simple) { check_folder("simple"); }

// The same suite through the graph optimizer and the oneDNN cpu backend: the
// same floors and the same explained exceptions hold.
TEST(ConformanceCpuBackend, NodeTests) { check_folder("node", "cpu"); }
TEST(ConformanceCpuBackend, PytorchConverted) { check_folder("pytorch-converted", "cpu"); }
TEST(ConformanceCpuBackend, PytorchOperator) { check_folder("pytorch-operator", "cpu"); }
TEST(ConformanceCpuBackend, Simple) { check_folder("simple", "cpu"); }
