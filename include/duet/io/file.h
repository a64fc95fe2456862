// Writing the files users keep (models, tensors, reports, checkpoints, device
// files) so that no reader ever finds half of one.
#pragma once
#include <cstdint>
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

// A file opened for reading that is a regular file: a FIFO, a device
// (/dev/zero), a socket or a folder is refused when opened (they would block
// or never end); its size is known before anything is allocated for it.
class InputFile {
 public:
  InputFile(const std::string& path, const std::string& what = "file");
  ~InputFile();
  InputFile(const InputFile&) = delete;
  InputFile& operator=(const InputFile&) = delete;
  int64_t size() const { return size_; }
  // Reads n bytes at offset; fewer left in the file is an error naming `what`.
  void read_at(int64_t offset, void* into, int64_t n) const;
  std::string read_all() const;

 private:
  int fd_ = -1;
  int64_t size_ = 0;
  std::string path_, what_;
};

// The whole of a regular file (InputFile's checks).
std::string read_file(const std::string& path, const std::string& what = "file");

// Whether two paths name the same existing file (hard links and symlinks
// included); false when either does not exist.
bool same_file(const std::string& a, const std::string& b);

}  // namespace duet::io
