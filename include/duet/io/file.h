// Writing the files users keep (models, tensors, reports, checkpoints, device
// files) so that no reader ever finds half of one.
#pragma once
#include <string>
#include <string_view>

namespace duet::io {

// Writes `bytes` to `path` through a temporary file beside it (same folder,
// so the same file system), flushed to the disk and then renamed over `path`:
// a full disk, a file-size limit, an error or a kill mid-write leaves the
// previous file (or none) in place, never a truncated one; a kill may leave
// the temporary ".NAME.tmp.*" beside it. Throws an Error naming `what` and
// the path, with the system's reason.
void write_file_atomically(const std::string& path, std::string_view bytes, const std::string& what = "file");

// Whether two paths name the same existing file (hard links and symlinks
// included); false when either does not exist.
bool same_file(const std::string& a, const std::string& b);

}  // namespace duet::io
