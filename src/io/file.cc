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

bool same_file(const std::string& a, const std::string& b) {
  std::error_code ec;
  return std::filesystem::equivalent(a, b, ec) && !ec;
}

}  // namespace duet::io
