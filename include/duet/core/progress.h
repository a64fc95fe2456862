// How long work says how far it got: the stage it is in ("calibrating",
// "epoch 3", "conformance"), and done of total units of that stage (samples,
// steps, cases). Every workflow that can take minutes takes one; empty means
// nobody listens. The CLI draws it on stderr with rate and ETA
// (tools/duet/progress.cc); Python may pass any callable.
#pragma once
#include <cstddef>
#include <functional>
#include <string>

namespace duet {

using Progress = std::function<void(const std::string& stage, size_t done, size_t total)>;

}  // namespace duet
