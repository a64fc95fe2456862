// Helpers shared by the tests: where shared/ data lives, running the CLI.
#pragma once
#include <gtest/gtest.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

namespace duet::testutil {

// ../shared beside the repository (DUET_SHARED overrides). Empty when absent.
inline std::string shared_dir() {
  if (const char* env = std::getenv("DUET_SHARED")) return env;
  const std::filesystem::path p = std::filesystem::path(DUET_SOURCE_DIR).parent_path() / "shared";
  return std::filesystem::exists(p) ? p.string() : "";
}

#define DUET_REQUIRE_SHARED()                                                                  \
  do {                                                                                         \
    if (::duet::testutil::shared_dir().empty())                                                 \
      GTEST_SKIP() << "../shared (conformance suite and models) is not present beside the repository"; \
  } while (0)

struct CommandResult {
  int exit_code;
  std::string output;  // stdout and stderr together
};

inline CommandResult run_command(const std::string& cmd) {
  CommandResult r{-1, ""};
  FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  if (!p) return r;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) r.output.append(buf.data(), n);
  const int status = pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return r;
}

inline std::string cli() { return DUET_CLI; }

// True in AddressSanitizer builds (scripts/sanitize.sh). Long training runs
// are cut short there: the sanitizers look for memory and UB errors, and the
// plain run checks the training figures at full length.
#if defined(__SANITIZE_ADDRESS__)
inline constexpr bool kSanitized = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
inline constexpr bool kSanitized = true;
#else
inline constexpr bool kSanitized = false;
#endif
#else
inline constexpr bool kSanitized = false;
#endif
inline std::string source_dir() { return DUET_SOURCE_DIR; }

}  // namespace duet::testutil
