#include "duet/io/file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "duet/core/error.h"

namespace duet::io {

namespace {

std::string temporary_beside(const std::string& path) {
  static std::atomic<unsigned> counter{0};
  const std::filesystem::path p(path);
  const std::string name = "." + p.filename().string() + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(counter++);
  return (p.has_parent_path() ? p.parent_path() / name : std::filesystem::path(name)).string();
}

}  // namespace

void write_file_atomically(const std::string& path, std::string_view bytes, const std::string& what) {
  DUET_CHECK(!path.empty(), "no path given for the ", what);
  struct stat st{};
  if (::stat(path.c_str(), &st) == 0)
    DUET_CHECK(S_ISREG(st.st_mode), "cannot write the ", what, " '", path, "': it exists and is not a regular file");
  const std::string tmp = temporary_beside(path);
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
  DUET_CHECK(fd >= 0, "cannot write the ", what, " '", path, "': ", std::strerror(errno));
  auto failed = [&](int err) {
    ::close(fd);
    ::unlink(tmp.c_str());
    fail("cannot write the ", what, " '", path, "': ", std::strerror(err));
  };
  for (size_t done = 0; done < bytes.size();) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) failed(n < 0 ? errno : ENOSPC);
    done += size_t(n);
  }
  if (::fsync(fd) != 0 && errno != EINVAL) failed(errno);
  if (::close(fd) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    fail("cannot write the ", what, " '", path, "': ", std::strerror(err));
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    fail("cannot write the ", what, " '", path, "': ", std::strerror(err));
  }
}

InputFile::InputFile(const std::string& path, const std::string& what) : path_(path), what_(what) {
  std::error_code ec;
  DUET_CHECK(std::filesystem::exists(path, ec), "file not found: ", path);
  DUET_CHECK(!std::filesystem::is_directory(path, ec), path, " is a directory, not a file");
  // Non-blocking, so that opening a FIFO returns; it is refused just below.
  fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  DUET_CHECK(fd_ >= 0, "cannot open the ", what, " '", path, "': ", std::strerror(errno));
  struct stat st{};
  if (::fstat(fd_, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd_);
    fail("the ", what, " '", path, "' is not a regular file (a FIFO, device or socket would block or never end)");
  }
  size_ = int64_t(st.st_size);
  ::fcntl(fd_, F_SETFL, ::fcntl(fd_, F_GETFL) & ~O_NONBLOCK);
}

InputFile::~InputFile() {
  if (fd_ >= 0) ::close(fd_);
}

void InputFile::read_at(int64_t offset, void* into, int64_t n) const {
  DUET_CHECK(offset >= 0 && n >= 0 && offset <= size_ && n <= size_ - offset, "the ", what_, " '", path_, "' is truncated: ", n,
             " bytes wanted at offset ", offset, ", the file has ", size_);
  auto* p = static_cast<char*>(into);
  for (int64_t done = 0; done < n;) {
    const ssize_t got = ::pread(fd_, p + done, size_t(n - done), offset + done);
    if (got < 0 && errno == EINTR) continue;
    DUET_CHECK(got > 0, "cannot read the ", what_, " '", path_, "': ", got < 0 ? std::strerror(errno) : "it shrank while read");
    done += got;
  }
}

std::string InputFile::read_all() const {
  std::string bytes(size_t(size_), '\0');
  read_at(0, bytes.data(), size_);
  return bytes;
}

std::string read_file(const std::string& path, const std::string& what) { return InputFile(path, what).read_all(); }

bool same_file(const std::string& a, const std::string& b) {
  std::error_code ec;
  return std::filesystem::equivalent(a, b, ec) && !ec;
}

}  // namespace duet::io
