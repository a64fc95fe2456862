// Errors: one exception type whose message is the single line the CLI prints.
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace duet {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

// Thrown when an op, attribute value or data type has no kernel; conformance
// reports such cases as "unsupported" rather than "failed".
class Unsupported : public Error {
 public:
  explicit Unsupported(const std::string& message) : Error(message) {}
};

namespace detail {
template <typename... Args>
std::string concat(Args&&... args) {
  std::ostringstream os;
  (os << ... << std::forward<Args>(args));
  return os.str();
}
}  // namespace detail

// A check the user asked for did not hold (a conformance case failed, no plan
// meets the request): the command's own result, exit code 4.
class CheckFailed : public Error {
 public:
  explicit CheckFailed(const std::string& message) : Error(message) {}
};

template <typename... Args>
[[noreturn]] void fail(Args&&... args) {
  throw Error(detail::concat(std::forward<Args>(args)...));
}

template <typename... Args>
[[noreturn]] void unsupported(Args&&... args) {
  throw Unsupported(detail::concat(std::forward<Args>(args)...));
}

#define DUET_CHECK(cond, ...)                 \
  do {                                        \
    if (!(cond)) ::duet::fail(__VA_ARGS__);   \
  } while (0)

}  // namespace duet
