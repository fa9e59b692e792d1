// Real write failures for tests of what a save does when the disk refuses it:
//   - FileSizeLimit: the kernel's per-process file size limit (RLIMIT_FSIZE, `ulimit -f`), with
//     SIGXFSZ ignored, makes every write past `bytes` in any file fail with EFBIG ("File too large").
//     It needs no privileges, so it simulates a failing writer everywhere the suite runs.
//   - SmallTmpfs: a tmpfs of a few pages mounted on a fresh directory, which ENOSPC ("No space left on
//     device") fills like a real disk. Mounting needs root (CI runs as root); elsewhere the test skips,
//     saying why.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <string>

#include <fmt/format.h>

namespace qkv::test {

class FileSizeLimit {
 public:
  explicit FileSizeLimit(rlim_t bytes) {
    struct sigaction ignore {};
    ignore.sa_handler = SIG_IGN;
    sigemptyset(&ignore.sa_mask);
    sigaction(SIGXFSZ, &ignore, &previous_action_);
    getrlimit(RLIMIT_FSIZE, &previous_limit_);
    struct rlimit limit = previous_limit_;
    limit.rlim_cur = bytes;  // the soft limit only: the hard limit lets us raise it back
    ok_ = setrlimit(RLIMIT_FSIZE, &limit) == 0;
  }
  ~FileSizeLimit() {
    setrlimit(RLIMIT_FSIZE, &previous_limit_);
    sigaction(SIGXFSZ, &previous_action_, nullptr);
  }
  FileSizeLimit(const FileSizeLimit&) = delete;
  FileSizeLimit& operator=(const FileSizeLimit&) = delete;
  bool ok() const { return ok_; }

 private:
  struct sigaction previous_action_ {};
  struct rlimit previous_limit_ {};
  bool ok_ = false;
};

class SmallTmpfs {
 public:
  // Mounts a tmpfs of `bytes` on `dir` (created); why() says why not when mounted() is false.
  SmallTmpfs(const std::filesystem::path& dir, size_t bytes) : dir_(dir) {
    std::filesystem::create_directories(dir_);
    if (::geteuid() != 0) {
      why_ = "mounting a small tmpfs needs root (CI runs the suite as root)";
      return;
    }
    const std::string options = fmt::format("size={}", bytes);
    if (::mount("tmpfs", dir_.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, options.c_str()) != 0) {
      why_ = fmt::format("cannot mount a tmpfs on {}: {} (a container without CAP_SYS_ADMIN?)", dir_.string(),
                         std::strerror(errno));
      return;
    }
    mounted_ = true;
  }
  ~SmallTmpfs() {
    if (mounted_) ::umount2(dir_.c_str(), MNT_DETACH);
  }
  SmallTmpfs(const SmallTmpfs&) = delete;
  SmallTmpfs& operator=(const SmallTmpfs&) = delete;

  bool mounted() const { return mounted_; }
  const std::string& why() const { return why_; }

 private:
  std::filesystem::path dir_;
  bool mounted_ = false;
  std::string why_;
};

// Fills the file system holding `dir` until a write fails with ENOSPC; returns the bytes written.
inline size_t fill_file_system(const std::filesystem::path& dir) {
  const int fd = ::open((dir / "filler").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) return 0;
  static const char block[4096] = {};
  size_t written = 0;
  for (ssize_t n; (n = ::write(fd, block, sizeof block)) > 0;) written += static_cast<size_t>(n);
  for (ssize_t n; (n = ::write(fd, block, 1)) > 0;) written += static_cast<size_t>(n);
  ::close(fd);
  return written;
}

}  // namespace qkv::test
